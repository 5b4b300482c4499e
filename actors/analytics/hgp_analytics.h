/*  hgp_analytics.h - the analytics actor: rankings and per-resource series
 *  from the event log
 *
 *  An analytics process is this one actor plus main. The actor is a member
 *  of a Kafka consumer group on the event topic (analytics/group), so the
 *  partitions are shared among the analytics processes that run. It folds
 *  every event into Redis: per counter type the all-time sums (exact), sums
 *  over two sliding windows (1 h and 24 h by default), and a forward-decayed
 *  "trending" score; per resource, counts per minute over the last 24 h.
 *  It also connects a DEALER to the broker as service "analytics" and
 *  answers top and stats (schemas/PROTOCOL.md sections 4.4 and 4.7) from
 *  Redis, so any analytics actor can answer for every partition.
 *
 *  Each event counts once, across redeliveries, rebalances and crashes; see
 *  hgp_analytics.c for how.
 */
#ifndef HGP_ANALYTICS_H_INCLUDED
#define HGP_ANALYTICS_H_INCLUDED

#include <czmq.h>
#include "hgp_config.h"

#ifdef __cplusplus
extern "C" {
#endif

/*  Read and check every setting the actor uses. NULL when all are good,
    else one message for the operator, which the caller frees. */
char *hgp_analytics_config_check (hgp_config_t *config);

/*  The actor: zactor_new (hgp_analytics_actor, config). config must
    outlive it. "$TERM" on the pipe leaves the group and ends it. */
void hgp_analytics_actor (zsock_t *pipe, void *args);

#ifdef __cplusplus
}
#endif
#endif
