/*  hgp_json.h - the HTTP gateway's JSON bodies <-> the codec's structs
 *
 *  The one validating decoder between untrusted HTTP bytes and the bus: a
 *  JSON body (plus, for increments, the Idempotency-Key header) goes in, a
 *  complete hgp_request_t comes out, or an hgp_error_t whose status and
 *  code become the HTTP status and JSON error body. Whatever decodes here
 *  is fit to send: ids are checked with hgp_id_valid, delta is a non-zero
 *  int64, a batch has 1..1000 keys. Nothing downstream re-checks, and a
 *  rejected body reaches nothing (a bad request changes nothing).
 *
 *  Pure functions, no I/O and no global state, so they are unit-tested
 *  (tests/unit/test_json.c) and fuzzed (tests/fuzz/fuzz_json.c) directly.
 *
 *  Bodies accepted (unknown keys are an error, as on the wire: a typo such
 *  as "detla" must not silently become delta 1):
 *
 *    increment  {"resource_id": ID, "counter_type": ID,
 *                "delta"?: INT, "user_id"?: ID, "request_id"?: ID}
 *    batch      {"queries": [{"resource_id": ID, "counter_type": ID}, ...]}
 *               ("items" is accepted as an alias of "queries")
 *
 *  The analytics reads (rank, stats) take their parameters from the path
 *  and the query string instead; see hgp_json_decode_rank below.
 *
 *  ID is a JSON string of 1-128 bytes of [A-Za-z0-9_.:-]. delta defaults
 *  to 1 and is an exact JSON integer (no fraction, no exponent) in the
 *  signed 64-bit range, non-zero: [-9223372036854775808, -1] or
 *  [1, 9223372036854775807]. Anything else is 400 "invalid" (JSON that
 *  does not parse is 400 "malformed"); a batch of more than 1000 queries is
 *  413 "too_large", the same as the wire protocol. A body nested more than
 *  HGP_JSON_DEPTH_MAX levels (arrays and objects) is 400 "invalid" before
 *  it is parsed, whatever else it holds.
 *
 *  Stack: the decoders run on the gateway's event loops (1 MiB stacks).
 *  HGP_JSON_STACK is a tenth of that: the fuzz driver runs the decoders on
 *  a thread with exactly this stack, so a decoder that recurses too deep
 *  crashes there long before it could in the gateway (1000 '[' once
 *  crashed a 100 KiB worker inside jansson).
 */
#ifndef HGP_JSON_H_INCLUDED
#define HGP_JSON_H_INCLUDED

#include <stddef.h>
#include "hgp_codec.h"

#ifdef __cplusplus
extern "C" {
#endif

/*  Deepest nesting of arrays and objects a body may have (ours need 2) */
#define HGP_JSON_DEPTH_MAX 32

/*  Stack bytes of the threads the decoders run on (see above) */
#define HGP_JSON_STACK (100 * 1024)

/*  Decode an increment body into req (op incr, key, delta, user_id, id).
    idempotency_key is the Idempotency-Key header or NULL; it and the body's
    request_id must agree when both are present. req->id is "" when neither
    was given: the caller then picks a random id, so the bus can still
    re-dispatch the request safely. 0 on success, -1 and err otherwise (req
    is then cleared). */
int hgp_json_decode_increment (const char *body, size_t size,
                               const char *idempotency_key,
                               hgp_request_t *req, hgp_error_t *err);

/*  Decode a batch body into req (op mget, keys, nkeys); req->id is left
    "" for the caller. req owns keys: hgp_request_clear frees them. 0, or -1
    and err (req cleared, nothing allocated). */
int hgp_json_decode_batch (const char *body, size_t size,
                           hgp_request_t *req, hgp_error_t *err);

/*  {"resource_id", "counter_type", "value"} for a 200 get, plus
    "replayed" and "request_id" when request_id is not NULL (increments).
    Returns a string for the caller to free, NULL if out of memory. */
char *hgp_json_encode_value (const hgp_key_t *key, int64_t value,
                             bool replayed, const char *request_id);

/*  {"results": [{"resource_id", "counter_type", "value"}, ...]} pairing
    req->keys with rep->values (rep->nvalues must equal req->nkeys) */
char *hgp_json_encode_values (const hgp_request_t *req,
                              const hgp_reply_t *rep);

/*  Query strings of the analytics reads (GET, so no body). Parameters are
    name=value pairs joined by '&', names and values of [A-Za-z0-9_]; a
    parameter that is not listed, given twice or without a value is 400
    "invalid", like an unknown key in a body.

      rank   window=all|1h|24h|trending (default all), limit=1..100
             (default 10)
      stats  window=1h|24h (default 24h)

    query may be NULL (no '?'). */
#define HGP_JSON_RANK_LIMIT_MAX HGP_LIMIT_MAX

/*  Decode GET /api/v1/rank/{counter_type}?... into req (op top,
    counter_type, window, limit); req->id is left "" for the caller. */
int hgp_json_decode_rank (const char *counter_type, const char *query,
                          hgp_request_t *req, hgp_error_t *err);

/*  Decode GET /api/v1/counter/{resource_id}/{counter_type}/stats?... into
    req (op stats, key) and *window (HGP_WINDOW_1H or HGP_WINDOW_24H) */
int hgp_json_decode_stats (const char *resource_id, size_t resource_len,
                           const char *counter_type, size_t type_len,
                           const char *query, hgp_request_t *req,
                           hgp_window_t *window, hgp_error_t *err);

/*  Decode GET /api/v1/counter/{resource_id}/{counter_type}/uniques into
    req (op uniques, key); it takes no query parameters */
int hgp_json_decode_uniques (const char *resource_id, size_t resource_len,
                             const char *counter_type, size_t type_len,
                             const char *query, hgp_request_t *req,
                             hgp_error_t *err);

/*  A 200 uniques reply as lib/hgp_views.h shapes it */
char *hgp_json_encode_uniques (const hgp_key_t *key, const hgp_reply_t *rep);

/*  A 200 top reply as lib/hgp_views.h shapes it: {"counter_type",
    "window", "ranking": [{"resource_id", "value" or "score"}, ...]} */
char *hgp_json_encode_ranking (const char *counter_type, hgp_window_t window,
                               const hgp_reply_t *rep);

/*  A 200 stats reply cut to window, as lib/hgp_views.h shapes it (the
    series of every bucket of the window, zeros included). NULL also when
    the reply's bucket_ms is 0. */
char *hgp_json_encode_series (const hgp_key_t *key, hgp_window_t window,
                              int64_t now_ms, const hgp_reply_t *rep);

/*  {"error": {"code", "message"}}, plus "request_id" at top level when not
    NULL (so a client can retry a 504 increment with the same id) */
char *hgp_json_encode_error (const hgp_error_t *err, const char *request_id);

#ifdef __cplusplus
}
#endif
#endif
