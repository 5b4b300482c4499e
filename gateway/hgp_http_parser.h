/*  hgp_http_parser.h - HTTP/1.1 request heads and chunked bodies, no I/O
 *
 *  The gateway's HTTP front (hgp_http.h) reads bytes; this file decides
 *  what they mean, so every rule about framing lives in one place and can
 *  be fuzzed on its own (tests/fuzz/fuzz_http.c). Strict where leniency
 *  lets two parsers disagree about where a request ends (RFC 9112):
 *
 *  - lines end in CRLF; a bare CR or LF, a NUL, obs-fold (a header line
 *    starting with a space) or a space before a header's colon is 400;
 *  - the request line is METHOD SP TARGET SP HTTP/1.x with single spaces;
 *    another HTTP version is 505;
 *  - Content-Length must be digits (or a list of the same digits, RFC 9110
 *    8.6); Transfer-Encoding must be exactly "chunked"; both at once, or
 *    either twice with different values, is 400 (RFC 9112 6.3), another
 *    transfer coding 501;
 *  - a head is at most a caller's limit (431 beyond) and 64 header lines.
 *  Every refusal closes the connection: after it nothing on the connection
 *  can be trusted to start a request.
 */
#ifndef HGP_HTTP_PARSER_H_INCLUDED
#define HGP_HTTP_PARSER_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HGP_HTTP_HEADERS_MAX    64

typedef struct {
    const char *name;               /* NUL-terminated, in the caller's buffer */
    const char *value;              /* trimmed, NUL-terminated              */
} hgp_http_header_t;

typedef struct {
    const char *method;             /* e.g. "GET"                           */
    const char *target;             /* as sent: origin, absolute or '*' form */
    int minor;                      /* HTTP/1.minor: 0 or 1                 */
    hgp_http_header_t headers [HGP_HTTP_HEADERS_MAX];
    int nheaders;
    size_t size;                    /* bytes of the head, blank line included */
    int64_t content_length;         /* -1: none                             */
    bool chunked;                   /* Transfer-Encoding: chunked           */
    bool keep_alive;                /* by version and Connection            */
    bool expect_continue;           /* Expect: 100-continue                 */
} hgp_http_head_t;

/*  Why a request was refused: an HTTP status, an error code of ours
    ("malformed", "too_large", "unsupported") and a message */
typedef struct {
    int status;
    const char *code;
    char message [256];
    bool framing;                   /* the body's length was ambiguous      */
} hgp_http_error_t;

/*  Look for a whole head at the start of buf (len bytes); empty lines
    before it are skipped (RFC 9112 2.2), *skipped says how many bytes.
    Returns 1 and fills head when complete (the buffer is written into:
    names and values become NUL-terminated strings inside it, so it must
    stay put while head is used), 0 while more bytes are needed (and fewer
    than limit came), -1 and err when the head is refused. */
int hgp_http_parse_head (char *buf, size_t len, size_t limit,
                         hgp_http_head_t *head, size_t *skipped,
                         hgp_http_error_t *err);

/*  The value of header name (case-insensitive), the first if repeated;
    NULL if absent */
const char *hgp_http_head_get (const hgp_http_head_t *head, const char *name);

/*  A chunked body, decoded as bytes arrive */
typedef struct {
    int state;
    uint64_t remaining;             /* data bytes left in this chunk        */
    size_t line;                    /* bytes of the size or trailer line    */
    int digits;                     /* hex digits of the size               */
    bool done;                      /* the last chunk and trailers came     */
} hgp_http_chunked_t;

void hgp_http_chunked_init (hgp_http_chunked_t *self);

/*  Decode in (len bytes), appending data to out (*out_len bytes so far,
    at most out_max). Returns the bytes of in consumed (all of them unless
    the body ended inside it: then self->done), or -1 and err: a bad chunk
    (400) or data past out_max (413). */
int64_t hgp_http_chunked_feed (hgp_http_chunked_t *self, const char *in,
                               size_t len, char *out, size_t *out_len,
                               size_t out_max, hgp_http_error_t *err);

/*  The reason phrase of an HTTP status, e.g. "Not Found" */
const char *hgp_http_status_text (int status);

#endif
