/*  hgp_gateway.h - the HTTP gateway: JSON over HTTP in, HGPC01 on the bus out
 *
 *  A civetweb server whose worker threads each own one hgp_client_t, made
 *  in civetweb's init_thread hook and destroyed in exit_thread, so a socket
 *  is only ever used by the thread that made it. Without discovery (the
 *  default) that client is a DEALER to broker/client_endpoint. With
 *  discovery the gateway runs ONE discovery actor for the process and each
 *  worker's client follows it (hgp_client_new_shared): it connects to every
 *  live broker, spreads requests over them and re-sends a dead broker's
 *  requests elsewhere with the same id, like the CLI, without a discovery
 *  thread and UDP socket per worker.
 *  A worker decodes the request (gateway/hgp_json.h), makes one blocking
 *  hgp_client_call, and writes the reply: the bus's status and error code
 *  become the HTTP status and JSON error body one for one.
 *
 *    POST /api/v1/counter/increment        incr
 *    GET  /api/v1/counter/{resource}/{type} get
 *    POST /api/v1/counter/batch            mget
 *    GET  /api/v1/rank/{type}?window=&limit=  top (analytics actors)
 *    GET  /api/v1/counter/{resource}/{type}/stats?window=  stats, cut to
 *                                          the window as a per-minute series
 *    GET  /api/v1/health                   ping + actors + get of a probe key
 *    GET  /metrics                         Prometheus text format
 *
 *  Settings (configs/hgp.cfg section "gateway", env HGP_GATEWAY_<KEY>):
 *  bind, port, threads, queue, backlog, keep_alive, body_limit,
 *  batch_body_limit, timeout, health_timeout, header_timeout, body_timeout,
 *  max_in_flight, max_connections; broker/client_endpoint and the
 *  discovery section.
 *
 *  At the edge (README "Limits at the HTTP edge"): JSON nested past 32
 *  levels is 400; headers past header_timeout and bodies past body_timeout
 *  are 408 and closed; past max_in_flight bus calls, or for the first
 *  request of a connection past max_connections, the answer is 503 busy
 *  with Retry-After, at once; a body of ambiguous length (RFC 9112 6.3) is
 *  400 and closed before a byte of it is read; query parameters on POST
 *  routes are 400; OPTIONS * is 200 with Allow; an absolute-form target is
 *  served for our own port and 421 for another.
 */
#ifndef HGP_GATEWAY_H_INCLUDED
#define HGP_GATEWAY_H_INCLUDED

#include "hgp_config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _hgp_gateway_t hgp_gateway_t;

/*  Read and check the settings, bind the port and start serving. NULL, and
    one log line saying why, when a setting is bad or the port cannot be
    bound (e.g. it is taken). Create the gateway before any other ZeroMQ
    socket of the process: it raises the process's socket limit to fit one
    socket per worker thread, which ZeroMQ only allows while none exist.
    config need not outlive the gateway. */
hgp_gateway_t *hgp_gateway_new (hgp_config_t *config);

/*  Stop accepting, let requests in flight finish (each is bounded by its
    bus deadline), close every worker's socket and free everything. */
void hgp_gateway_destroy (hgp_gateway_t **self_p);

/*  The TCP port actually listened on (useful when configured as 0) */
int hgp_gateway_port (hgp_gateway_t *self);

#ifdef __cplusplus
}
#endif
#endif
