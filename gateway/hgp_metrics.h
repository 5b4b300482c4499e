/*  hgp_metrics.h - the gateway's request counters and latency histograms
 *
 *  Every worker thread records every answered request; GET /metrics renders
 *  them in the Prometheus text format (version 0.0.4):
 *
 *    hgp_gateway_http_requests_total{route, status}           counter
 *    hgp_gateway_http_request_duration_seconds{route, le}     histogram
 *    hgp_gateway_http_requests_in_flight                       gauge
 *    hgp_gateway_worker_threads                                gauge
 *    hgp_gateway_http_refused_total{reason}                    counter
 *
 *  refused counts the edge's own refusals, each also counted in
 *  requests_total by its status: busy (503, admission), framing (400,
 *  RFC 9112 6.3), header_timeout and body_timeout (408).
 *
 *  Routes and statuses are small fixed sets, so every series is a slot in
 *  a fixed array of atomics: recording is a few relaxed atomic adds, no
 *  lock and no allocation on the hot path, whatever the thread count.
 */
#ifndef HGP_METRICS_H_INCLUDED
#define HGP_METRICS_H_INCLUDED

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    HGP_ROUTE_INCREMENT = 0,    /* POST /api/v1/counter/increment         */
    HGP_ROUTE_GET,              /* GET  /api/v1/counter/{r}/{t}           */
    HGP_ROUTE_BATCH,            /* POST /api/v1/counter/batch             */
    HGP_ROUTE_HEALTH,           /* GET  /api/v1/health                    */
    HGP_ROUTE_METRICS,          /* GET  /metrics                          */
    HGP_ROUTE_RANK,             /* GET  /api/v1/rank/{t}                  */
    HGP_ROUTE_STATS,            /* GET  /api/v1/counter/{r}/{t}/stats     */
    HGP_ROUTE_LIVE,             /* GET  /healthz                          */
    HGP_ROUTE_UNIQUES,          /* GET  /api/v1/counter/{r}/{t}/uniques   */
    HGP_ROUTE_UNMATCHED,        /* anything else (404)                    */
    HGP_ROUTE_NONE,             /* refused before routing: bad request    */
                                /* line or headers, header timeout, *     */
    HGP_ROUTE_COUNT
} hgp_route_t;

typedef enum {
    HGP_REFUSED_BUSY = 0,       /* 503 busy: past gateway/max_in_flight   */
    HGP_REFUSED_FRAMING,        /* 400: Content-Length/Transfer-Encoding  */
    HGP_REFUSED_HEADER_TIMEOUT, /* 408: headers not in header_timeout     */
    HGP_REFUSED_BODY_TIMEOUT,   /* 408: body not in body_timeout       */
    HGP_REFUSED_COUNT
} hgp_refused_t;

typedef struct _hgp_metrics_t hgp_metrics_t;

hgp_metrics_t *hgp_metrics_new (int worker_threads);
void hgp_metrics_destroy (hgp_metrics_t **self_p);

/*  The route's label value, e.g. "increment" */
const char *hgp_metrics_route_name (hgp_route_t route);

/*  A request started / finished; call both, from any thread */
void hgp_metrics_begin (hgp_metrics_t *self);
void hgp_metrics_end (hgp_metrics_t *self, hgp_route_t route, int status,
                      int64_t usecs);

/*  The edge refused a request for reason (count it in _end as well) */
void hgp_metrics_refused (hgp_metrics_t *self, hgp_refused_t reason);

/*  The text exposition; the caller frees it. NULL if out of memory. */
char *hgp_metrics_render (hgp_metrics_t *self);

#ifdef __cplusplus
}
#endif
#endif
