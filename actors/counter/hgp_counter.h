/*  hgp_counter.h - the counter actor: incr, get and mget on Redis
 *
 *  A counter process is this one actor plus main. The actor learns the
 *  brokers from lib/hgp_discovery (their beacons, or the one static
 *  broker/actor_endpoint), connects a DEALER to each one's actor endpoint,
 *  announces itself as service "counter" on each (schemas/PROTOCOL.md
 *  sections 5 and 9) and serves the requests they route to it from Redis,
 *  in group commits: everything that is waiting when it wakes up, from all
 *  brokers, goes to Redis in one pipelined round trip.
 *
 *  With counter/event_log = sync (the default) every increment is logged
 *  to Kafka (hgp_eventlog) before it is applied and acknowledged. An
 *  acknowledged increment is exactly one event in the log and is applied
 *  exactly once, across retries, actor deaths and Redis restarts; see
 *  hgp_counter.c for how.
 */
#ifndef HGP_COUNTER_H_INCLUDED
#define HGP_COUNTER_H_INCLUDED

#include <czmq.h>
#include "hgp_config.h"

#ifdef __cplusplus
extern "C" {
#endif

/*  Read and check every setting the counter uses (broker/actor_endpoint,
    the discovery, heartbeat, redis, kafka and counter sections). NULL when all are
    good, else one message for the operator, which the caller frees. Call it
    before starting the actor: the actor asserts what this checks. */
char *hgp_counter_config_check (hgp_config_t *config);

/*  The actor: zactor_new (hgp_counter_actor, config). config must outlive
    it. Commands on the pipe: "$TERM" (sends DISCONNECT to every broker and
    ends). It never gives up on a broker discovery still reports, nor on
    Redis: it reconnects to them for as long as it runs. */
void hgp_counter_actor (zsock_t *pipe, void *args);

#ifdef __cplusplus
}
#endif
#endif
