/*  hgp_views.c - rankings and series as JSON (see hgp_views.h) */
#include "hgp_views.h"
#include <math.h>

double
hgp_view_score (double score)
{
    return isfinite (score) ? round (score * 1000) / 1000 : 0;
}

//  "as_of_ms" when the reply knows it
static json_t *
s_as_of (json_t *view, const hgp_reply_t *rep)
{
    if (view && rep->has_as_of)
        json_object_set_new (view, "as_of_ms", json_integer (rep->as_of_ms));
    return view;
}

json_t *
hgp_view_ranking (const char *counter_type, hgp_window_t window,
                  const hgp_reply_t *rep)
{
    json_t *rows = json_array ();
    bool trending = window == HGP_WINDOW_TRENDING;
    for (size_t i = 0; rows && i < rep->nranking; i++) {
        const hgp_rank_t *rank = &rep->ranking [i];
        json_t *row = trending
            ? json_pack ("{s:s, s:f}", "resource_id", rank->resource_id,
                         "score", hgp_view_score (rank->score))
            : json_pack ("{s:s, s:I}", "resource_id", rank->resource_id,
                         "value", (json_int_t) rank->count);
        if (json_array_append_new (rows, row)) {
            json_decref (rows);
            return NULL;
        }
    }
    if (!rows)
        return NULL;
    return s_as_of (json_pack ("{s:s, s:s, s:o}", "counter_type", counter_type,
                               "window", hgp_window_name (window),
                               "ranking", rows), rep);
}

json_t *
hgp_view_series (const hgp_key_t *key, hgp_window_t window, int64_t now_ms,
                 const hgp_reply_t *rep)
{
    int64_t width = rep->bucket_ms;
    if (width <= 0)
        return NULL;
    int64_t length = window == HGP_WINDOW_1H ? 3600000 : 86400000;
    int64_t n = length / width;
    if (n < 1)
        n = 1;
    if (n > HGP_MINUTES_MAX)
        n = HGP_MINUTES_MAX;
    int64_t last = now_ms - now_ms % width;
    int64_t first = last - (n - 1) * width;
    json_t *series = json_array ();
    int64_t sum = 0;
    size_t b = 0;                       //  reply buckets, oldest first
    for (int64_t i = 0; series && i < n; i++) {
        int64_t start = first + i * width;
        int64_t count = 0;
        while (b < rep->nbuckets && rep->buckets [b].start_ms < start)
            b++;
        if (b < rep->nbuckets && rep->buckets [b].start_ms == start)
            count = rep->buckets [b].count;
        sum += count;
        json_t *row = json_pack ("{s:I, s:I}", "start_ms", (json_int_t) start,
                                 "count", (json_int_t) count);
        if (json_array_append_new (series, row)) {
            json_decref (series);
            return NULL;
        }
    }
    if (!series)
        return NULL;
    return s_as_of (json_pack ("{s:s, s:s, s:s, s:I, s:I, s:f, s:I, s:o}",
        "resource_id", key->resource_id, "counter_type", key->counter_type,
        "window", hgp_window_name (window), "bucket_ms", (json_int_t) width,
        "total", (json_int_t) rep->total,
        "trending", hgp_view_score (rep->trending),
        "sum", (json_int_t) sum, "series", series), rep);
}

json_t *
hgp_view_uniques (const hgp_key_t *key, const hgp_reply_t *rep)
{
    return s_as_of (json_pack ("{s:s, s:s, s:I, s:b}",
                               "resource_id", key->resource_id,
                               "counter_type", key->counter_type,
                               "uniques", (json_int_t) rep->uniques,
                               "approximate", rep->approximate), rep);
}
