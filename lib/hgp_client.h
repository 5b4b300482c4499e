/*  hgp_client.h - a client of the brokers' client endpoints (HGPC01)
 *
 *  The same class serves the CLI (one request at a time, hgp_client_call),
 *  the HTTP gateway (one client per worker thread) and the bench (many
 *  requests in flight with hgp_client_send / hgp_client_recv, matched by
 *  id). Like every socket, a client belongs to one thread. Two kinds:
 *
 *  - hgp_client_new (endpoint): one DEALER connected to one broker, as
 *    always. Nothing else changes for code written against it.
 *  - hgp_client_new_config (config): when discovery/interface names a
 *    broadcast interface, the client follows broker beacons
 *    (lib/hgp_discovery.h, PROTOCOL.md section 9): it connects to every
 *    live broker, spreads requests over them round-robin, and when a broker
 *    dies (its connection drops, or its beacon goes silent or says leaving)
 *    re-sends every request still waiting on it to another broker with the
 *    SAME request id and the budget that is left, so an increment is still
 *    applied at most once. A 503 no_actor or 504 from one broker is retried
 *    once or twice on another while budget remains. Without a usable
 *    interface it is exactly hgp_client_new (broker/client_endpoint).
 *    Each such client runs its own discovery thread and UDP listener.
 *  - hgp_client_new_shared (events, where): the same as the one above, but
 *    it follows a discovery actor someone else owns, through that actor's
 *    EVENTS endpoint (lib/hgp_discovery.h), instead of running its own.
 *    So a process with many clients (the gateway: one per worker thread)
 *    has one discovery thread and one UDP listener in all.
 *
 *  hgp_client_call never leaves the caller without an answer: whatever goes
 *  wrong locally becomes an error reply (status, code, message), so the
 *  caller prints or forwards one struct. A request that may have reached the
 *  broker but got no answer in time is 504 "timeout": indeterminate, retry
 *  with the same id (PROTOCOL.md §4.6). It is never reported as a success.
 *
 *  Replies are written into a caller's hgp_reply_t. It must have been set
 *  up with hgp_reply_init once; the client clears it before filling it, so
 *  the same struct can be reused without leaks. Clear it when done.
 */
#ifndef HGP_CLIENT_H_INCLUDED
#define HGP_CLIENT_H_INCLUDED

#include <czmq.h>
#include "hgp_codec.h"
#include "hgp_config.h"
#include "hgp_keys.h"

/*  Extra milliseconds hgp_client_call waits past the request's deadline, so
    the broker's own 504 (or a last-moment reply) can arrive first */
#define HGP_CLIENT_GRACE_MS  250

typedef struct _hgp_client_t hgp_client_t;

/*  Connect to endpoint (e.g. "tcp://127.0.0.1:5555"). With keys (CURVE on,
    lib/hgp_keys.h) the connection is a CURVE client with our client
    certificate, of the broker whose key is broker.cert; keys NULL, or
    with bus/curve = 0: a plain socket. keys must outlive the client. NULL
    (errno set) if the endpoint is not valid (EINVAL also: no broker key).
    Connecting is asynchronous: an absent broker, or one that refuses our
    certificate, shows up as timeouts, not here. */
hgp_client_t *hgp_client_new (const char *endpoint, hgp_keys_t *keys);

/*  A client as the config says: following broker beacons when discovery is
    on (see above), else connected to broker/client_endpoint. NULL (errno
    set) if that endpoint is not valid, or (EACCES, logged) when the client
    certificate cannot be read. It loads its own keys (HGP_KEYS_CLIENT).
    The caller checks the config first (hgp_config_error,
    hgp_discovery_config_check) and may destroy it once this returns. */
hgp_client_t *hgp_client_new_config (hgp_config_t *config);

/*  A discovery client that follows the discovery actor whose EVENTS
    endpoint is events (the owner created that actor in beacon mode and
    sent it "EVENTS endpoint" first); where names the brokers in messages,
    e.g. "beacons:eth1:5670"; keys as for hgp_client_new (the broker keys
    come with discovery's JOIN events). NULL (errno set) if events cannot
    be connected. The actor and keys must outlive every client made this
    way. */
hgp_client_t *hgp_client_new_shared (const char *events, const char *where,
                                     hgp_keys_t *keys);

void hgp_client_destroy (hgp_client_t **self_p);

/*  The endpoint given to new; for a discovery client "beacons:IFACE:PORT" */
const char *hgp_client_endpoint (hgp_client_t *self);

/*  The socket replies arrive on, for zpoller / zmq_poll (readable = a reply
    may wait). Do not send or receive on it directly. A discovery client
    also needs hgp_client_recv to be called now and then (every 100 ms is
    plenty) when nothing arrives, to notice brokers that leave; a gateway
    that polls should use a timeout and call hgp_client_recv (self, rep, 0)
    on it. hgp_client_recv can return -1 (EAGAIN) after the socket polled
    readable: what came was a duplicate it dropped. */
zsock_t *hgp_client_sock (hgp_client_t *self);

/*  A broker as this client sees it */
typedef struct {
    char broker_id [40];            /* 32 hex digits, or "static"           */
    char endpoint [256];            /* its client endpoint                  */
    char state [8];                 /* "alive", "evasive" or "static"       */
    int64_t beacon_ms;              /* since its last beacon; 0 if static   */
    bool connected;                 /* our last send to it went through     */
    uint64_t sent;                  /* requests this client sent it         */
} hgp_client_broker_t;

/*  Listen to discovery for wait_ms (a fresh client has heard nothing yet;
    two beacon intervals hear every live broker), then fill out with up to
    max brokers. Returns how many there are (may exceed max). A static
    client has one, "static", and does not wait. A shared client reports
    beacon_ms -1 (the actor's ages are its owner's to ask). */
size_t hgp_client_brokers (hgp_client_t *self, int wait_ms,
                           hgp_client_broker_t *out, size_t max);

/*  hgp_client_call to one broker (an id from hgp_client_brokers), with no
    failover: for asking each broker what it sees. 504 timeout when that
    broker does not answer, 503 no_broker when it is not known. A static
    client ignores the id. */
int hgp_client_call_at (hgp_client_t *self, const char *broker_id,
                        const hgp_request_t *req, hgp_reply_t *rep);

/*  Requests sent again to another broker (failover or retry) so far */
uint64_t hgp_client_resent (hgp_client_t *self);

/*  Send one request without waiting for the reply. Blocks at most
    req->timeout_ms while the broker cannot be reached (then nothing was
    sent). 0 when sent; -1 when req cannot be encoded (errno EINVAL) or was
    not sent (errno from libzmq, EAGAIN when the broker is unreachable). */
int hgp_client_send (hgp_client_t *self, const hgp_request_t *req);

/*  Batches (PROTOCOL.md 4.1): between batch_begin and batch_end every
    hgp_client_send only encodes its request (-1 EINVAL as before, else 0),
    and batch_end sends them all as one message: one CURVE box and one
    wake-up for the lot. batch_end returns 0 when they went, or -1 (errno
    as for hgp_client_send) when none of them did. batch_begin is -1
    (ENOTSUP) for a discovery client, which sends one by one. Replies come
    one by one from hgp_client_recv as always. */
int hgp_client_batch_begin (hgp_client_t *self);
int hgp_client_batch_end (hgp_client_t *self);

/*  Receive the next reply, whatever its id, waiting at most timeout_ms
    (0: do not wait, -1: forever). 0 and a filled rep, or -1 on timeout or
    interrupt (rep cleared). A reply that cannot be decoded is still
    returned, as status 500 "internal" with id "". */
int hgp_client_recv (hgp_client_t *self, hgp_reply_t *rep, int timeout_ms);

/*  Make hgp_client_send wait at most wait_ms (0: not at all) for a broker
    to take a request, instead of the request's timeout; -1 restores that.
    For a caller with many requests in flight on one client (lib/hgp_mux),
    which must not stop for one that cannot go yet. */
void hgp_client_set_send_wait (hgp_client_t *self, int wait_ms);

/*  The caller gave up on request id: a discovery client stops tracking it
    for failover (a static client tracks nothing) */
void hgp_client_forget (hgp_client_t *self, const char *id);

/*  What hgp_client_call does to a reply: a 200 without what req->op
    promises (PROTOCOL.md 4.3) becomes 500 "internal" */
void hgp_client_check (const hgp_request_t *req, hgp_reply_t *rep);

/*  Send req and wait for the reply with its id, until req->timeout_ms plus
    HGP_CLIENT_GRACE_MS. Replies to other ids (left over from earlier calls)
    are dropped; an error reply with id "" (the broker could not read our
    request, or we could not read its reply) is taken as the answer. Always
    returns 0 with rep filled:
    - the broker's reply, checked to carry what req->op needs (a 200 without
      its value becomes 500 "internal");
    - 504 "timeout" when no reply came in time or the broker was unreachable
      (indeterminate: retry with the same id);
    - 400 "invalid" when req cannot be encoded (nothing sent). */
int hgp_client_call (hgp_client_t *self, const hgp_request_t *req,
                     hgp_reply_t *rep);

#endif
