/*  hgp_http.h - the gateway's HTTP/1.1 front: one event loop, many connections
 *
 *  civetweb gives each keep-alive connection a thread for the connection's
 *  whole life, and each of those threads blocked in its bus call: 1000
 *  clients were 1000 threads, their stacks and context switches, a second
 *  cost of every request on top of the work (issue 10), and a client past
 *  the thread count waited in a queue (issue 9). Here one thread serves
 *  every connection it accepted from non-blocking sockets and epoll, and
 *  never waits: a request goes to the handler, which answers now or later
 *  (after its bus call, lib/hgp_mux.h) with hgp_http_reply.
 *
 *  What the front does on its own, before and around the handler:
 *  - reads and checks the head (hgp_http_parser.h: strict framing, 431 past
 *    head_limit), and answers what needs no route: OPTIONS * (200 with
 *    Allow), another method on * (400), an absolute-form target naming
 *    another port (421; our own port is served as its path);
 *  - timeouts: header_timeout from a request's first byte (408, closed),
 *    keep_alive for an idle connection (closed), body_timeout for a body
 *    asked for (the handler is told, and answers 408) and for a response
 *    the client does not read (closed);
 *  - bodies: Content-Length or chunked, bounded by the limit the handler
 *    gives; Expect: 100-continue; a body the handler did not want is read
 *    and dropped if at most 64 KiB with a Content-Length, else the
 *    connection closes after the answer;
 *  - keep-alive by version and Connection, pipelined requests in order
 *    (the next is read only once the current one is answered), and a
 *    lingering close (write side shut, then input dropped for up to a
 *    second) so a client reads its answer before the connection goes.
 *
 *  Several loops may share one listening socket (EPOLLEXCLUSIVE); each is
 *  its own thread's, with its own connections. Not thread safe otherwise.
 */
#ifndef HGP_HTTP_H_INCLUDED
#define HGP_HTTP_H_INCLUDED

#include "hgp_http_parser.h"
#include <stdatomic.h>

typedef struct _hgp_http_t hgp_http_t;
typedef struct _hgp_http_req_t hgp_http_req_t;

//  Why the front answered or closed on its own (for metrics)
typedef enum {
    HGP_HTTP_EDGE_HEAD = 0,         /* a refused head (status 4xx/5xx)      */
    HGP_HTTP_EDGE_FRAMING,          /* 400: the body's length is ambiguous  */
    HGP_HTTP_EDGE_HEADER_TIMEOUT,   /* 408: head not in header_timeout      */
    HGP_HTTP_EDGE_UNROUTED          /* OPTIONS *, *, another server's URI   */
} hgp_http_edge_t;

typedef struct {
    /*  A request's head arrived: answer it (hgp_http_reply), now or later,
        or ask for its body (hgp_http_read_body) */
    void (*head) (void *arg, hgp_http_req_t *req);
    /*  The body asked for is in (err NULL), or could not be read (err:
        408 timeout, 413 too_large, 400 malformed): answer either way */
    void (*body) (void *arg, hgp_http_req_t *req, const hgp_http_error_t *err);
    /*  The front answered a request itself, with status */
    void (*edge) (void *arg, hgp_http_edge_t why, int status);
} hgp_http_handler_t;

typedef struct {
    size_t head_limit;              /* bytes of a head; 431 beyond          */
    int header_timeout;             /* ms                                   */
    int body_timeout;               /* ms                                   */
    int keep_alive;                 /* ms an idle connection is kept        */
    int max_connections;            /* past it a connection is "over"       */
    atomic_int *connections;        /* open connections, all loops          */
    int64_t body_bytes_max;         /* bodies being read at once, in bytes  */
    atomic_llong *body_bytes;       /* ... now, all loops                   */
    int port;                       /* ours, for absolute-form targets      */
    const char *allow;              /* methods served, for OPTIONS *        */
    int busy_pause;                 /* ms a paused connection is not read   */
} hgp_http_settings_t;

/*  A loop on the listening socket listener (non-blocking, bound, listening;
    the caller keeps it). settings, and what it points to, must outlive the
    loop. NULL if epoll cannot be set up (errno). */
hgp_http_t *hgp_http_new (int listener, const hgp_http_settings_t *settings,
                          const hgp_http_handler_t *handler, void *arg);

/*  Close every connection; requests the handler still holds are dropped
    when it answers them (so answer them first, e.g. by destroying the
    mux whose callbacks answer) */
void hgp_http_destroy (hgp_http_t **self_p);

/*  Wake this loop when fd is readable (the bus socket's ZMQ_FD, a stop
    eventfd); what to do then is the caller's, after hgp_http_run */
int hgp_http_watch (hgp_http_t *self, int fd);

/*  Wait at most wait_ms for something to happen and deal with it: accept,
    read, call the handler, write, expire. Returns 0, or -1 when epoll
    failed (errno). */
int hgp_http_run (hgp_http_t *self, int wait_ms);

/*  Stop accepting (the listener leaves this loop's epoll) */
void hgp_http_stop_accepting (hgp_http_t *self);

/*  The request: method, path (the target's path, for absolute-form too),
    query (after '?': "" for a bare '?', NULL without one), a header
    (first if repeated, NULL if absent). Valid until hgp_http_reply. */
const char *hgp_http_req_method (hgp_http_req_t *req);
const char *hgp_http_req_path (hgp_http_req_t *req);
const char *hgp_http_req_query (hgp_http_req_t *req);
const char *hgp_http_req_header (hgp_http_req_t *req, const char *name);

/*  The client's address: 16 bytes, IPv6 or IPv4-mapped (::ffff:a.b.c.d) */
const uint8_t *hgp_http_req_peer (hgp_http_req_t *req);

/*  Whether this is its connection's first request; whether that
    connection was opened past max_connections */
bool hgp_http_req_first (hgp_http_req_t *req);
bool hgp_http_req_over (hgp_http_req_t *req);

/*  Read the body, at most limit bytes (a Content-Length above it is 413
    before a byte is read), then call handler->body. The bytes a body may
    take (its Content-Length, or limit when chunked) are reserved against
    settings->body_bytes_max until the answer is written; past it the body
    is refused 503 busy before a byte is read. */
void hgp_http_read_body (hgp_http_req_t *req, size_t limit);

/*  The body read (NUL-terminated; size bytes), after handler->body */
const char *hgp_http_req_body (hgp_http_req_t *req, size_t *size);

/*  The handler's own pointer for this request */
void hgp_http_req_set_user (hgp_http_req_t *req, void *user);
void *hgp_http_req_user (hgp_http_req_t *req);

/*  Close the connection after the answer */
void hgp_http_req_set_close (hgp_http_req_t *req);

/*  After the answer, read nothing more of this connection for
    settings->busy_pause ms (an answer of busy: a client that retries at
    once waits in its socket, not in our loop) */
void hgp_http_req_set_pause (hgp_http_req_t *req);

/*  Answer: status, Content-Type type, body of size bytes (none for HEAD),
    extra header lines (each ending in CRLF, or NULL). The request is done:
    req is not valid after this. */
void hgp_http_reply (hgp_http_req_t *req, int status, const char *type,
                     const char *body, size_t size, const char *extra);

#endif
