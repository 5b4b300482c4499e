/*  hgp_callstats.h - the gateway's count of its own calls, as hgp counters
 *
 *  Every answered call of an /api/ route adds 1 to counter (api.<route>,
 *  calls), and to (api.<route>, errors) when it was not a 2xx; a call made
 *  with an API key adds the same to (key.<name>, calls|errors). So API
 *  statistics are read, ranked and charted with the API itself:
 *  GET /api/v1/counter/api.increment/calls, /api/v1/rank/calls, .../stats.
 *
 *  Counts are summed in memory and flushed once a second as one increment
 *  per counter, through the bus and the event log like any other. Each
 *  flush has a request id of its own; a flush that fails is sent again
 *  with the same id and delta until it is settled (so a retried flush
 *  counts once), while new counts wait for the next one. Nothing here
 *  ever blocks a request: a flush is a call on the loop's mux, answered
 *  later. Counts are kept for at most S_KEYS_MAX counters; beyond that
 *  (a flood of distinct key names cannot happen: keys come from the keys
 *  file) new ones are dropped and counted in the log.
 *
 *  One per gateway event loop, used only by that loop's thread.
 */
#ifndef HGP_CALLSTATS_H_INCLUDED
#define HGP_CALLSTATS_H_INCLUDED

#include "hgp_mux.h"

typedef struct _hgp_callstats_t hgp_callstats_t;

/*  Stats flushed over mux (which must outlive it), with request ids made
    from id_prefix (an id of at most 64 bytes, unique to this loop) */
hgp_callstats_t *hgp_callstats_new (hgp_mux_t *mux, const char *id_prefix);
void hgp_callstats_destroy (hgp_callstats_t **self_p);

/*  One answered call of route (its name, e.g. "increment"), made with the
    API key named key (or NULL), answered with HTTP status */
void hgp_callstats_count (hgp_callstats_t *self, const char *route,
                          const char *key, int status);

/*  Flush when a second has passed since the last one (now: zclock_mono) */
void hgp_callstats_tick (hgp_callstats_t *self, int64_t now);

#endif
