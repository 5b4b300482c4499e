/*  hgp_views.h - the JSON shapes of rankings and series, for HTTP and CLI
 *
 *  One owner for what `GET /api/v1/rank/{type}` and `hgp --json top`
 *  print, for `GET .../stats` and `hgp --json stats`, and for `GET .../uniques`
 *  and `hgp --json uniques`, so the two
 *  never disagree (issue 15). jansson values; the caller dumps them
 *  (reals with 15 significant digits: a score rounded to 3 decimals
 *  prints as such). Only the gateway and bin/hgp link jansson, and only
 *  they call these.
 */
#ifndef HGP_VIEWS_H_INCLUDED
#define HGP_VIEWS_H_INCLUDED

#include <jansson.h>
#include "hgp_codec.h"

/*  A 200 top reply as {"counter_type", "window", "ranking": [{"resource_id",
    "value"}, ...]}, best first; "score" (to 3 decimals) instead of "value"
    for the trending window; "as_of_ms" when the reply has it (every
    event logged before it is folded in). NULL when out of memory. */
json_t *hgp_view_ranking (const char *counter_type, hgp_window_t window,
                          const hgp_reply_t *rep);

/*  A 200 stats reply cut to window (1h or 24h), as {"resource_id",
    "counter_type", "window", "bucket_ms", "total" (all-time), "trending"
    (to 3 decimals), "sum" (of the window), "series": [{"start_ms",
    "count"}, ...]}: one entry per bucket of the window ending with the
    bucket now_ms is in, oldest first, zeros included, so a chart needs no
    gap filling; "as_of_ms" as above. NULL when out of memory or the
    reply's bucket_ms is 0. */
json_t *hgp_view_series (const hgp_key_t *key, hgp_window_t window,
                         int64_t now_ms, const hgp_reply_t *rep);

/*  A 200 uniques reply as {"resource_id", "counter_type", "uniques",
    "approximate": true}; "as_of_ms" as above. NULL when out of memory. */
json_t *hgp_view_uniques (const hgp_key_t *key, const hgp_reply_t *rep);

/*  A score as both print it: to 3 decimals, 0 if not finite */
double hgp_view_score (double score);

#endif
