/*  hgp_gateway.h - the HTTP gateway: JSON over HTTP in, HGPC01 on the bus out
 *
 *  gateway/threads event loops (default 1) share the listening socket.
 *  Each serves every connection it accepted through its HTTP front
 *  (hgp_http.h: non-blocking sockets, epoll, strict HTTP/1.1) and owns one
 *  bus link (lib/hgp_mux.h over one hgp_client): a DEALER to
 *  broker/client_endpoint, or with discovery a client that follows the
 *  process's ONE discovery actor (hgp_client_new_shared): it connects to
 *  every live broker, spreads requests over them and re-sends a dead
 *  broker's requests elsewhere with the same id, like the CLI.
 *  A request is decoded (gateway/hgp_json.h), becomes one bus call, and is
 *  answered when the reply comes; nothing blocks: the bus's status and
 *  error code become the HTTP status and JSON error body one for one.
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
 *  bind, port, threads, backlog, keep_alive, body_limit,
 *  batch_body_limit, timeout, health_timeout, header_timeout, body_timeout,
 *  max_in_flight, max_connections; broker/client_endpoint and the
 *  discovery section.
 *
 *  At the edge (README "Limits at the HTTP edge"): JSON nested past 32
 *  levels is 400; heads past 16 KiB are 431; heads past header_timeout and
 *  bodies past body_timeout are 408 and closed; past max_in_flight bus
 *  calls, or for the first request of a connection past max_connections,
 *  the answer is 503 busy with Retry-After, at once; a body of ambiguous
 *  length (RFC 9112 6.3) is 400 and closed before a byte of it is read;
 *  query parameters on POST routes are 400; OPTIONS * is 200 with Allow; an
 *  absolute-form target is served for our own port and 421 for another.
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
    bound (e.g. it is taken). config need not outlive the gateway. */
hgp_gateway_t *hgp_gateway_new (hgp_config_t *config);

/*  Stop accepting, give requests in flight up to 2 s to be answered (then
    503 unavailable), close every connection and free everything. */
void hgp_gateway_destroy (hgp_gateway_t **self_p);

/*  Read gateway/api_keys again (on SIGHUP): 0, or -1 and a log line when
    the file is bad (the keys loaded before stay). Each key's rate bucket
    starts full again. */
int hgp_gateway_reload (hgp_gateway_t *self);

/*  The TCP port actually listened on (useful when configured as 0) */
int hgp_gateway_port (hgp_gateway_t *self);

#ifdef __cplusplus
}
#endif
#endif
