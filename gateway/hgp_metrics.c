/*  hgp_metrics.c - lock-free request metrics (see hgp_metrics.h)
 *
 *  Invariants and why:
 *  - A histogram stores per-bucket counts (not cumulative) and renders the
 *    running sum, so one request costs one bucket increment, not up to 15.
 *    _count is rendered as the +Inf bucket, the sum of the buckets read, so
 *    a scrape taken while requests finish still has le="+Inf" == _count,
 *    which Prometheus checks. _sum is read separately and may be one
 *    request ahead or behind; Prometheus tolerates that.
 *  - Statuses outside the fixed list land in "other" (label "000") rather
 *    than being lost, so the per-status counters always add up to the
 *    requests answered.
 *  - Series that have never been hit are not printed for the counter
 *    (absent means zero to Prometheus), keeping a scrape a few dozen lines.
 *    Histograms are printed for every route so rate() queries find them.
 *  - Each slot is its own cache line: a thousand threads bumping
 *    neighbouring counters would otherwise fight over a handful of lines.
 */
#include "hgp_metrics.h"
#include "hgp_prom.h"
#include <assert.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *s_route_names [HGP_ROUTE_COUNT] = {
    "increment", "get", "batch", "health", "metrics", "rank", "stats", "live",
    "uniques", "unmatched", "none"
};

static const char *s_refused_names [HGP_REFUSED_COUNT] = {
    "busy", "framing", "header_timeout", "body_timeout"
};

//  Statuses the gateway answers with; the last slot is "anything else"
static const int s_statuses [] = {
    200, 400, 404, 405, 408, 409, 411, 413, 421, 500, 503, 504, 505, 0
};
#define STATUS_COUNT ((int) (sizeof s_statuses / sizeof s_statuses [0]))

//  Histogram upper bounds in microseconds, rendered as seconds
static const int64_t s_bounds [] = {
    250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
    250000, 500000, 1000000, 2500000, 5000000, 10000000
};
#define BOUND_COUNT ((int) (sizeof s_bounds / sizeof s_bounds [0]))

typedef struct {
    _Alignas (64) atomic_uint_fast64_t value;
} s_slot_t;

typedef struct {
    s_slot_t buckets [BOUND_COUNT + 1];         /* last one: over all bounds */
    s_slot_t sum_usecs;                         /* total latency             */
} s_histogram_t;

struct _hgp_metrics_t {
    s_slot_t requests [HGP_ROUTE_COUNT][STATUS_COUNT];  /* by route, status */
    s_histogram_t latency [HGP_ROUTE_COUNT];            /* by route         */
    s_slot_t in_flight;                                 /* requests now     */
    s_slot_t refused [HGP_REFUSED_COUNT];               /* by reason        */
    int worker_threads;                                 /* as configured    */
};

hgp_metrics_t *
hgp_metrics_new (int worker_threads)
{
    hgp_metrics_t *self = (hgp_metrics_t *) aligned_alloc (
        64, (sizeof (hgp_metrics_t) + 63) / 64 * 64);
    if (!self)
        return NULL;
    memset (self, 0, sizeof *self);     //  all-zero is a valid atomic zero
    self->worker_threads = worker_threads;
    return self;
}

void
hgp_metrics_destroy (hgp_metrics_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

const char *
hgp_metrics_route_name (hgp_route_t route)
{
    assert (route >= 0 && route < HGP_ROUTE_COUNT);
    return s_route_names [route];
}

void
hgp_metrics_begin (hgp_metrics_t *self)
{
    atomic_fetch_add_explicit (&self->in_flight.value, 1,
                               memory_order_relaxed);
}

void
hgp_metrics_end (hgp_metrics_t *self, hgp_route_t route, int status,
                 int64_t usecs)
{
    assert (route >= 0 && route < HGP_ROUTE_COUNT);
    int s = 0;
    while (s < STATUS_COUNT - 1 && s_statuses [s] != status)
        s++;
    int b = 0;
    while (b < BOUND_COUNT && usecs > s_bounds [b])
        b++;
    if (usecs < 0)
        usecs = 0;
    atomic_fetch_add_explicit (&self->requests [route][s].value, 1,
                               memory_order_relaxed);
    atomic_fetch_add_explicit (&self->latency [route].buckets [b].value, 1,
                               memory_order_relaxed);
    atomic_fetch_add_explicit (&self->latency [route].sum_usecs.value,
                               (uint64_t) usecs, memory_order_relaxed);
    atomic_fetch_sub_explicit (&self->in_flight.value, 1,
                               memory_order_relaxed);
}

void
hgp_metrics_refused (hgp_metrics_t *self, hgp_refused_t reason)
{
    assert (reason >= 0 && reason < HGP_REFUSED_COUNT);
    atomic_fetch_add_explicit (&self->refused [reason].value, 1,
                               memory_order_relaxed);
}

static uint64_t
s_read (s_slot_t *slot)
{
    return atomic_load_explicit (&slot->value, memory_order_relaxed);
}

char *
hgp_metrics_render (hgp_metrics_t *self)
{
    hgp_prom_text_t text;
    hgp_prom_text_init (&text);

    hgp_prom_printf (&text,
        "# HELP hgp_gateway_http_requests_total HTTP requests answered, "
        "by route and status (status 000: any other).\n"
        "# TYPE hgp_gateway_http_requests_total counter\n");
    for (int r = 0; r < HGP_ROUTE_COUNT; r++)
        for (int s = 0; s < STATUS_COUNT; s++) {
            uint64_t n = s_read (&self->requests [r][s]);
            if (n)
                hgp_prom_printf (&text, "hgp_gateway_http_requests_total"
                          "{route=\"%s\",status=\"%03d\"} %llu\n",
                          s_route_names [r], s_statuses [s],
                          (unsigned long long) n);
        }

    hgp_prom_printf (&text,
        "# HELP hgp_gateway_http_request_duration_seconds Time from "
        "reading the request line to the last byte of the response, by "
        "route.\n"
        "# TYPE hgp_gateway_http_request_duration_seconds histogram\n");
    for (int r = 0; r < HGP_ROUTE_COUNT; r++) {
        s_histogram_t *h = &self->latency [r];
        uint64_t cumulative = 0;
        for (int b = 0; b <= BOUND_COUNT; b++) {
            cumulative += s_read (&h->buckets [b]);
            if (b < BOUND_COUNT)
                hgp_prom_printf (&text, "hgp_gateway_http_request_duration_seconds"
                          "_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                          s_route_names [r], (double) s_bounds [b] / 1e6,
                          (unsigned long long) cumulative);
            else
                hgp_prom_printf (&text, "hgp_gateway_http_request_duration_seconds"
                          "_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                          s_route_names [r], (unsigned long long) cumulative);
        }
        hgp_prom_printf (&text, "hgp_gateway_http_request_duration_seconds_sum"
                  "{route=\"%s\"} %.6f\n", s_route_names [r],
                  (double) s_read (&h->sum_usecs) / 1e6);
        hgp_prom_printf (&text, "hgp_gateway_http_request_duration_seconds_count"
                  "{route=\"%s\"} %llu\n", s_route_names [r],
                  (unsigned long long) cumulative);
    }

    //  The scrape itself is in flight; it is part of the truth
    hgp_prom_printf (&text,
        "# HELP hgp_gateway_http_requests_in_flight HTTP requests being "
        "handled now.\n"
        "# TYPE hgp_gateway_http_requests_in_flight gauge\n"
        "hgp_gateway_http_requests_in_flight %llu\n"
        "# HELP hgp_gateway_worker_threads Event loop threads serving the "
        "HTTP connections, each with its own bus link.\n"
        "# TYPE hgp_gateway_worker_threads gauge\n"
        "hgp_gateway_worker_threads %d\n",
        (unsigned long long) s_read (&self->in_flight),
        self->worker_threads);
    hgp_prom_printf (&text,
        "# HELP hgp_gateway_http_refused_total Requests the gateway refused "
        "itself, by reason: busy (503, past max_in_flight), framing (400, "
        "RFC 9112 6.3), header_timeout and body_timeout (408).\n"
        "# TYPE hgp_gateway_http_refused_total counter\n");
    for (int r = 0; r < HGP_REFUSED_COUNT; r++)
        hgp_prom_printf (&text, "hgp_gateway_http_refused_total{reason=\"%s\"} "
                  "%llu\n", s_refused_names [r],
                  (unsigned long long) s_read (&self->refused [r]));

    if (text.failed) {
        free (text.data);
        return NULL;
    }
    return text.data;
}
