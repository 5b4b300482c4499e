/*  hgp_trace.h - W3C trace context (traceparent) as hgp carries it
 *
 *  A request's `trace` (PROTOCOL.md 4.2) is a W3C traceparent,
 *  "00-<trace-id: 32 hex>-<parent-id: 16 hex>-<flags: 2 hex>" (55 bytes,
 *  an id). The gateway takes the client's `traceparent` header when it is
 *  well-formed (else starts a new trace, not sampled), makes itself the
 *  parent (a new parent-id, the same trace-id and flags), puts that in the
 *  bus request and answers it in its own `traceparent` header. Every
 *  process that handles a request whose trace is sampled (flags bit 0)
 *  logs a line naming it, and the counter stores it in the request's
 *  event (an unsampled trace is carried and answered, not logged or
 *  stored: it would cost every event 60 bytes).
 */
#ifndef HGP_TRACE_H_INCLUDED
#define HGP_TRACE_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

#define HGP_TRACE_SIZE  56              /* a traceparent and its NUL        */

/*  A well-formed traceparent (version 00..fe, lower-case hex, trace-id and
    parent-id not all zeros)? Its trace-id into trace_id (33 bytes) and
    its sampled flag, when not NULL. */
bool hgp_trace_parse (const char *text, char *trace_id, bool *sampled);

/*  "00-trace_id-<span as 16 hex>-0x" into out (HGP_TRACE_SIZE) */
void hgp_trace_format (char *out, const char *trace_id, uint64_t span,
                       bool sampled);

/*  Is text a well-formed traceparent with the sampled flag? ("" is not) */
bool hgp_trace_sampled (const char *text);

#endif
