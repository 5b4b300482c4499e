/*  hgp_discovery.h - which brokers exist: UDP beacons, or the static config
 *
 *  Brokers announce themselves with a beacon (schemas/PROTOCOL.md section
 *  9): a small UDP broadcast every discovery/interval ms on discovery/port
 *  of discovery/interface, carrying the broker's id, its two TCP ports, its
 *  CURVE public key and the cluster name, and a "leaving" beacon when it
 *  stops cleanly. Listeners ignore beacons of another cluster (bus/cluster)
 *  and of brokers whose key they do not trust. Counter actors, the client
 *  library (so the gateway) and the CLI listen and keep the set of live
 *  brokers. This one class is both sides, as a zactor (CZMQ zbeacon inside):
 *
 *      zactor_t *discovery = zactor_new (hgp_discovery_actor, config);
 *      zstr_send (discovery, "MODE");          //  "beacon" or "static"
 *      char *mode = zstr_recv (discovery);
 *      zstr_send (discovery, "LISTEN");        //  events follow, see below
 *      ...
 *      zactor_destroy (&discovery);            //  a publisher says LEAVING
 *
 *  Events, one message each, read with hgp_discovery_event_recv:
 *      JOIN id client_endpoint actor_endpoint key    heard a broker first;
 *                      key is its CURVE public key (Z85, checked against
 *                      the trusted ones: hgp_keys.h), "" without CURVE
 *      EVASIVE id      silent for EVASIVE intervals: prefer other brokers
 *      ALIVE id        heard again after EVASIVE
 *      LEAVE id why    its leaving beacon ("left"), silence for EXPIRED
 *                      intervals ("expired"), a new broker at its address
 *                      ("replaced"), or new ports ("moved", then a JOIN)
 *  With the default interval of 250 ms a broker killed with SIGKILL is
 *  EVASIVE after 1 s and LEAVEs after 2 s; Zyre's timers are the same
 *  idea at 5 s and 30 s, too slow for a failover within 3 s.
 *
 *  Static fallback. No beacon is ever sent or heard when
 *  discovery/interface is empty (the default), names a loopback interface
 *  (zbeacon cannot broadcast on `lo`), or names an interface that is
 *  absent, down or without an IPv4 broadcast address. Then LISTEN reports
 *  one broker, id "static", at broker/client_endpoint and
 *  broker/actor_endpoint, which never leaves, and PUBLISH does nothing. The
 *  reason is logged on LISTEN or PUBLISH. So a default config never puts a
 *  packet on a real network.
 *
 *  Commands on the pipe:
 *      MODE            reply "beacon" or "static" (ask before LISTEN)
 *      ADDRESS         reply the address peers that hear our beacons
 *                      connect to (the interface's IPv4 address), "*" for
 *                      interface "*" (any of ours), "" in static mode
 *      LISTEN [quiet]  start reporting brokers; "quiet" does not log the
 *                      mode (the CLI, whose stderr is for errors)
 *      PUBLISH id client_port actor_port client_endpoint actor_endpoint key
 *                      a broker: beacon id, ports, its CURVE public key
 *                      (Z85, "" without CURVE) and bus/cluster every
 *                      interval. The caller has checked that it listens
 *                      where peers will connect (hgp_discovery_bound_check)
 *      BROKERS         reply "BROKERS" count, then per broker: id,
 *                      client_endpoint, actor_endpoint, state ("alive",
 *                      "evasive", "static"), ms since its last beacon
 *      EVENTS endpoint start listening, and publish every event on an
 *                      XPUB bound at endpoint (inproc://...), for many
 *                      subscribers in other threads; signals 0 when bound,
 *                      else 1. Logs the mode like LISTEN. See below.
 *      BEACON address data   handle data as if zbeacon had heard it from
 *                      address (the unit tests' way in, no network)
 *      $TERM           a publisher sends LEAVING a few times, then ends
 *
 *  Many listeners, one actor (EVENTS). A zactor pipe has one reader, so a
 *  process with many threads that each need the broker set (the gateway:
 *  one client per worker) runs one actor and lets each thread subscribe:
 *  a SUB connected to the endpoint, subscribed to "JOIN", "EVASIVE",
 *  "ALIVE" and "LEAVE", and then, after connecting, to a topic of its own,
 *  "@" and 16 hex digits, unique in the process. That last subscription
 *  makes the actor send the current table to that subscriber alone, each
 *  message [topic][event], as JOIN then ALIVE or EVASIVE per broker (JOIN
 *  static in static mode). Events published before the snapshot may reach
 *  the subscriber first; they are older than it, so a subscriber that
 *  applies everything in order (a JOIN of a known id changes nothing)
 *  ends up with the actor's table, and every event after it.
 *
 *  zsys_set_interface is process-global, so the first discovery actor of a
 *  process sets it and every later one must agree (one interface per
 *  process); ZSYS_INTERFACE from the environment is overridden by the
 *  config, never used on its own.
 */
#ifndef HGP_DISCOVERY_H_INCLUDED
#define HGP_DISCOVERY_H_INCLUDED

#include <czmq.h>
#include "hgp_config.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HGP_DISCOVERY_PORT      5670    /* default UDP port                 */
#define HGP_DISCOVERY_INTERVAL  250     /* default ms between beacons       */
#define HGP_DISCOVERY_EVASIVE   4       /* silent intervals: EVASIVE        */
#define HGP_DISCOVERY_EXPIRED   8       /* silent intervals: LEAVE expired  */
#define HGP_DISCOVERY_MAX       256     /* brokers tracked at once          */
#define HGP_DISCOVERY_STATIC_ID "static"

/*  One event from a discovery actor */
typedef struct {
    char kind [8];                  /* JOIN, EVASIVE, ALIVE or LEAVE        */
    char broker_id [40];            /* 32 hex digits, or "static"           */
    char client_endpoint [256];     /* JOIN only                            */
    char actor_endpoint [256];      /* JOIN only                            */
    char server_key [41];           /* JOIN only: its CURVE public key, Z85,
                                       "" when the bus runs without CURVE  */
    char reason [32];               /* LEAVE only                           */
} hgp_discovery_event_t;

/*  Check the discovery settings (discovery/interface, port, interval).
    NULL when good, else one message for the operator, to free. Call it in
    main before starting the actor: the actor asserts what this checks. */
char *hgp_discovery_config_check (hgp_config_t *config);

/*  Why interface cannot carry beacons (a message to free), or NULL when it
    can: then a discovery actor of this config beacons and listens there */
char *hgp_discovery_interface_problem (const char *interface);

/*  What a broker that beacons binds for its setting (broker/client_endpoint
    or broker/actor_endpoint) = endpoint, when peers that hear the beacon
    connect to address (ADDRESS): endpoint itself when it binds every
    address or address already, else tcp://address:PORT with endpoint's
    port ("*" for any free one). A new string, or NULL and *error_p when
    endpoint is not TCP (a beacon carries ports only). */
char *hgp_discovery_bind_endpoint (const char *endpoint, const char *address,
                                   const char *setting, char **error_p);

/*  0 when bound (an endpoint as libzmq reports it bound) accepts peers
    that connect to address and its port, else -1 and *error_p: a broker
    never beacons an address it does not listen on */
int hgp_discovery_bound_check (const char *bound, const char *address,
                               const char *setting, char **error_p);

/*  The actor. args is the hgp_config_t *, read only until zactor_new
    returns, so the caller may destroy the config afterwards. */
void hgp_discovery_actor (zsock_t *pipe, void *args);

/*  Parse an event message (frames as above); 0, or -1 if msg is not one */
int hgp_discovery_event_parse (zmsg_t *msg, hgp_discovery_event_t *event);

/*  Receive one event from the actor, waiting as its rcvtimeo says. 0, or
    -1 when interrupted or what came was not an event (then dropped) */
int hgp_discovery_event_recv (zactor_t *self, hgp_discovery_event_t *event);

#ifdef __cplusplus
}
#endif
#endif
