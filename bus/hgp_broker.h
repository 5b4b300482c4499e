/*  hgp_broker.h - the bus: routes client requests to counter and analytics
 *  actors
 *
 *  The broker binds two ROUTER sockets, one for clients (HGPC01) and one for
 *  actors (HGPA01), and implements schemas/PROTOCOL.md sections 4-6: it
 *  answers ping and actors itself, sends each incr to the rendezvous owner
 *  of its key among "counter" actors, each get/mget to the least busy
 *  counter actor and each top/stats to the least busy "analytics" actor,
 *  keeps at most `capacity` requests in flight per actor with a bounded
 *  FIFO behind it, enforces deadlines, and re-routes the requests of an
 *  actor that dies.
 *
 *  It runs as a zactor (one thread owns both sockets):
 *
 *      zactor_t *broker = zactor_new (hgp_broker_actor, config);
 *      zstr_send (broker, "STATUS");
 *      char *status = zstr_recv (broker);  //  "OK" or "ERROR <why>"
 *      ...
 *      zactor_destroy (&broker);           //  answers what is pending
 *
 *  Once zactor_new returns, the broker has read its settings and either
 *  bound both endpoints and is serving, or failed (a bad setting, an endpoint
 *  in use); "STATUS" tells which. A broker that stops serving on its own
 *  sends "ERROR <why>" on the pipe unasked, so anything readable on the
 *  pipe that the owner did not ask for means the broker is gone.
 *
 *  Pipe commands:
 *      $TERM       stop: answer pending requests, log a summary, exit
 *      STATUS      reply "OK", or "ERROR <why>" if the broker failed
 *      ENDPOINTS   reply two frames: client endpoint, actor endpoint, as
 *                  bound (so "tcp://127.0.0.1:*" shows its real port)
 *      ID          reply the broker id: 32 hex digits, random per start.
 *                  It is the routing id of the client ROUTER (so ROUTER
 *                  clients can address this broker) and the id main puts
 *                  in the beacon (lib/hgp_discovery.h).
 *      KEY         reply the broker's CURVE public key (Z85), "" when
 *                  bus/curve is 0; main puts it in the beacon.
 *
 *  With CURVE (bus/curve, on by default; lib/hgp_keys.h) the broker runs
 *  a ZAP handler and admits on the actor endpoint only trusted actor
 *  certificates, on the client endpoint only trusted client certificates.
 *  A READY of another cluster (bus/cluster) is refused, and an actor id is
 *  bound to the certificate that registered it: a READY with that id from
 *  another certificate is refused and evicts nothing.
 *
 *  Settings (configs/hgp.cfg, HGP_<SECTION>_<KEY> overrides):
 *  broker/client_endpoint, broker/actor_endpoint, broker/queue_limit,
 *  broker/queue_bytes, broker/actor_bytes, heartbeat/interval,
 *  heartbeat/liveness, bus/curve, bus/cluster, bus/keys.
 */
#ifndef HGP_BROKER_H_INCLUDED
#define HGP_BROKER_H_INCLUDED

#include <czmq.h>
#include "hgp_config.h"

typedef struct _hgp_broker_t hgp_broker_t;

/*  Read the broker's settings from config and bind both endpoints. NULL
    when a setting is bad or an endpoint cannot be bound; then *error_p (if
    error_p is not NULL) gets the reason, which the caller frees. The
    broker's sockets belong to the calling thread: new, run and destroy
    must all be called from it. */
hgp_broker_t *hgp_broker_new (hgp_config_t *config, char **error_p);

/*  Close the sockets and free everything; requests still pending are
    dropped (hgp_broker_run answers them before it returns) */
void hgp_broker_destroy (hgp_broker_t **self_p);

/*  Serve until "$TERM" arrives on pipe, answering the other pipe commands.
    Before returning, answers every pending request and tells actors
    DISCONNECT. 0 after $TERM, -1 when the sockets failed (context gone). */
int hgp_broker_run (hgp_broker_t *self, zsock_t *pipe);

/*  The zactor body: args is the hgp_config_t *, read only until the
    handshake (so the caller may destroy it once zactor_new returned) */
void hgp_broker_actor (zsock_t *pipe, void *args);

#endif
