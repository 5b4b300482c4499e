/*  hgp_http.c - the gateway's HTTP/1.1 front (see .h)
 *
 *  A connection is in one state at a time:
 *
 *    IDLE ──byte──> HEAD ──head──> HANDLER ──read_body──> BODY ──> HANDLER
 *      ^                              │ reply
 *      │                              v
 *      └──────── next request ──── WRITE ──(body unread)──> DISCARD
 *                                     │ close
 *                                     v
 *                                  LINGER ──> closed
 *
 *  Sockets are edge-triggered: whenever a connection enters a state that
 *  reads, it is put on the ready list and driven (read until the kernel
 *  has nothing) before the loop waits again. Nothing recurses: an answer
 *  that lets the next pipelined request start only puts the connection on
 *  that list. A connection the handler holds is never freed under it:
 *  closing one marks it dead, and the handler's answer frees it.
 *
 *  Timeouts: every timed state has a fixed duration, so each has a list
 *  in deadline order (append at the tail, expire from the head): no heap,
 *  O(1) per request.
 */
#define _GNU_SOURCE
#include "hgp_http.h"
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define S_IN_FIRST      4096        /* a connection's first input buffer    */
#define S_OUT_FIRST     2048        /* ... and output buffer                */
#define S_BODY_KEEP     16384       /* a body buffer kept for the next      */
#define S_READ_CHUNK    16384       /* bytes read at once for chunked bodies */
#define S_DISCARD_MAX   (64 * 1024) /* an unwanted body read and dropped    */
#define S_LINGER_MS     1000        /* input dropped after shutting writes  */
#define S_ACCEPTS       64          /* accepted per wake, then others' turn */
#define S_EVENTS        64          /* epoll events per wait: the bus is looked at between waits */

typedef enum {
    S_IDLE,                         /* between requests, nothing came       */
    S_HEAD,                         /* a head is arriving                   */
    S_HANDLER,                      /* the handler holds the request        */
    S_BODY,                         /* a body asked for is arriving         */
    S_WRITE,                        /* the answer is being written          */
    S_DISCARD,                      /* an unwanted body is being dropped    */
    S_LINGER,                       /* writes shut, input dropped           */
    S_PAUSED,                       /* answered busy: not read for a while  */
    S_CLOSED                        /* freed at the end of this run         */
} s_state_t;

typedef enum {
    T_IDLE = 0, T_HEAD, T_BODY, T_WRITE, T_LINGER, T_PAUSE, T_COUNT,
    T_NONE = -1
} s_timer_t;

struct _hgp_http_req_t {
    hgp_http_t *http;
    int fd;
    s_state_t state;
    bool dead;                      /* closed while the handler held it     */
    bool drained;                   /* the last read found the socket empty:
                                       edge-triggered, the next byte wakes us */
    //  Input: the current request's head (and Content-Length body bytes
    //  that came with it) are in[0..used), what follows is the next's
    char *in;
    size_t in_size;
    size_t in_cap;
    size_t used;
    char *extra;                    /* bytes read past a chunked body       */
    size_t extra_size;
    hgp_http_head_t head;
    const char *path;
    const char *query;
    bool head_only;                 /* HEAD: no body in the answer          */
    //  The body
    bool body_asked;
    size_t body_limit;
    char *body;
    size_t body_size;
    size_t body_cap;
    int64_t reserved;               /* body bytes counted in body_bytes     */
    hgp_http_chunked_t chunked;
    int64_t discard;                /* body bytes still to drop             */
    //  Output
    char *out;
    size_t out_size;
    size_t out_sent;
    size_t out_cap;
    bool close;                     /* close after this answer              */
    bool pause;                     /* ... or read nothing for busy_pause ms */
    bool first;                     /* first request of the connection      */
    bool over;                      /* opened past max_connections          */
    uint8_t peer [16];              /* the client's address                 */
    void *user;
    //  Timer list
    s_timer_t timer;
    int64_t deadline;
    hgp_http_req_t *tprev, *tnext;
    //  All connections; ready and closed lists
    hgp_http_req_t *prev, *next;
    hgp_http_req_t *ready_next;
    bool is_ready;
};

typedef struct {
    hgp_http_req_t *first;
    hgp_http_req_t *last;
    int ms;
} s_timers_t;

struct _hgp_http_t {
    int epoll;
    int listener;
    bool accepting;
    int64_t accept_again;           /* after EMFILE: ms when to try again   */
    const hgp_http_settings_t *settings;
    hgp_http_handler_t handler;
    void *arg;
    s_timers_t timers [T_COUNT];
    hgp_http_req_t *all;            /* every open connection                */
    hgp_http_req_t *ready;          /* to drive before waiting              */
    hgp_http_req_t *graveyard;      /* closed, to free                      */
};

static void s_drive (hgp_http_req_t *conn);

static int64_t
s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


/*  --------------------------------------------------------------------
 *  Timers, ready list, closing
 */

static void
s_timer_clear (hgp_http_req_t *conn)
{
    if (conn->timer == T_NONE)
        return;
    s_timers_t *list = &conn->http->timers [conn->timer];
    if (conn->tprev)
        conn->tprev->tnext = conn->tnext;
    else
        list->first = conn->tnext;
    if (conn->tnext)
        conn->tnext->tprev = conn->tprev;
    else
        list->last = conn->tprev;
    conn->tprev = conn->tnext = NULL;
    conn->timer = T_NONE;
}

static void
s_timer_set (hgp_http_req_t *conn, s_timer_t timer)
{
    s_timer_clear (conn);
    s_timers_t *list = &conn->http->timers [timer];
    conn->timer = timer;
    conn->deadline = s_now () + list->ms;
    conn->tprev = list->last;
    if (list->last)
        list->last->tnext = conn;
    else
        list->first = conn;
    list->last = conn;
}

static void
s_make_ready (hgp_http_req_t *conn)
{
    if (conn->is_ready || conn->state == S_CLOSED)
        return;
    conn->is_ready = true;
    conn->ready_next = conn->http->ready;
    conn->http->ready = conn;
}

static void
s_body_release (hgp_http_req_t *conn)
{
    if (conn->reserved) {
        atomic_fetch_sub (conn->http->settings->body_bytes, conn->reserved);
        conn->reserved = 0;
    }
}

static void
s_free (hgp_http_req_t *conn)
{
    s_body_release (conn);
    free (conn->in);
    free (conn->extra);
    free (conn->body);
    free (conn->out);
    free (conn);
}

//  Close now. A connection the handler holds stays allocated (dead) until
//  its answer; any other goes to the graveyard, freed after this run.
static void
s_close (hgp_http_req_t *conn)
{
    hgp_http_t *self = conn->http;
    if (conn->fd >= 0) {
        close (conn->fd);
        conn->fd = -1;
        atomic_fetch_sub (self->settings->connections, 1);
        if (conn->prev)
            conn->prev->next = conn->next;
        else
            self->all = conn->next;
        if (conn->next)
            conn->next->prev = conn->prev;
        conn->prev = conn->next = NULL;
    }
    s_timer_clear (conn);
    if (conn->state == S_HANDLER) {
        conn->dead = true;
        return;
    }
    if (conn->state != S_CLOSED) {
        conn->state = S_CLOSED;
        conn->next = self->graveyard;
        self->graveyard = conn;
    }
}


/*  --------------------------------------------------------------------
 *  Writing
 */

static void s_request_done (hgp_http_req_t *conn);

//  Write what is left of the answer; done, waiting for EPOLLOUT, or closed
static void
s_flush (hgp_http_req_t *conn)
{
    while (conn->out_sent < conn->out_size) {
        ssize_t n = send (conn->fd, conn->out + conn->out_sent,
                          conn->out_size - conn->out_sent, MSG_NOSIGNAL);
        if (n > 0) {
            conn->out_sent += (size_t) n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (conn->state != S_WRITE) {
                conn->state = S_WRITE;
                s_timer_set (conn, T_WRITE);
            }
            return;
        }
        s_close (conn);             //  the client went away
        return;
    }
    s_request_done (conn);
}

static bool
s_out_reserve (hgp_http_req_t *conn, size_t size)
{
    if (conn->out_cap >= size)
        return true;
    size_t cap = conn->out_cap ? conn->out_cap : S_OUT_FIRST;
    while (cap < size)
        cap *= 2;
    char *out = (char *) realloc (conn->out, cap);
    if (!out)
        return false;
    conn->out = out;
    conn->out_cap = cap;
    return true;
}

static char *
s_put (char *p, const char *text, size_t len)
{
    memcpy (p, text, len);
    return p + len;
}

#define S_PUT(p, literal)   s_put ((p), (literal), sizeof (literal) - 1)

//  Build the answer in conn->out: one buffer, one write for small ones.
//  Written by hand, not with snprintf: every answer passes here.
static bool
s_compose (hgp_http_req_t *conn, int status, const char *type,
           const char *body, size_t size, const char *extra)
{
    if (status < 100 || status > 999)
        return false;
    const char *reason = hgp_http_status_text (status);
    extra = extra ? extra : "";
    size_t reason_len = strlen (reason), type_len = strlen (type);
    size_t extra_len = strlen (extra);
    //  The fixed parts, 3 status digits and 20 length digits at most
    size_t bound = 160 + reason_len + type_len + extra_len;
    if (!s_out_reserve (conn, bound + (conn->head_only ? 0 : size)))
        return false;
    char *p = S_PUT (conn->out, "HTTP/1.1 ");
    *p++ = (char) ('0' + status / 100);
    *p++ = (char) ('0' + status / 10 % 10);
    *p++ = (char) ('0' + status % 10);
    *p++ = ' ';
    p = s_put (p, reason, reason_len);
    p = S_PUT (p, "\r\nContent-Type: ");
    p = s_put (p, type, type_len);
    p = S_PUT (p, "\r\nContent-Length: ");
    char digits [24];
    int n = 0;
    size_t v = size;
    do {
        digits [n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = digits [--n];
    p = S_PUT (p, "\r\nCache-Control: no-store\r\nConnection: ");
    p = conn->close ? S_PUT (p, "close") : S_PUT (p, "keep-alive");
    p = S_PUT (p, "\r\n");
    p = s_put (p, extra, extra_len);
    p = S_PUT (p, "\r\n");
    if (!conn->head_only && size)
        p = s_put (p, body, size);
    conn->out_size = (size_t) (p - conn->out);
    conn->out_sent = 0;
    return true;
}

//  An answer of the front's own, in the handler's JSON error shape; the
//  connection closes after it unless keep is set
static void
s_edge (hgp_http_req_t *conn, hgp_http_edge_t why, int status,
        const char *code, const char *message, const char *extra, bool keep)
{
    hgp_http_t *self = conn->http;
    char body [512];
    size_t size = 0;
    if (code) {
        int n = snprintf (body, sizeof body,
                          "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}",
                          code, message);
        size = n > 0 && (size_t) n < sizeof body ? (size_t) n : 0;
    }
    conn->close = !keep || conn->close;
    conn->head_only = false;
    conn->state = S_WRITE;
    s_timer_clear (conn);
    if (self->handler.edge)
        self->handler.edge (self->arg, why, status);
    if (!s_compose (conn, status, "application/json", body, size, extra)) {
        s_close (conn);
        return;
    }
    s_flush (conn);
}


/*  --------------------------------------------------------------------
 *  Between requests
 */

//  Shut our side, then drop what the client still sends until it closes
//  or S_LINGER_MS: closing with unread input would reset the connection,
//  and a reset can destroy the answer before the client read it
static void
s_linger (hgp_http_req_t *conn)
{
    shutdown (conn->fd, SHUT_WR);
    conn->state = S_LINGER;
    s_timer_set (conn, T_LINGER);
    s_make_ready (conn);
}

//  Wait for the next request: drop the unwanted body first, if any
static void
s_next_request (hgp_http_req_t *conn)
{
    if (conn->discard) {
        conn->state = S_DISCARD;
        s_timer_set (conn, T_BODY);
    }
    else {
        conn->state = conn->in_size ? S_HEAD : S_IDLE;
        s_timer_set (conn, conn->in_size ? T_HEAD : T_IDLE);
    }
}

//  The answer is written: next request, drop an unwanted body, or close
static void
s_request_done (hgp_http_req_t *conn)
{
    s_timer_clear (conn);
    s_body_release (conn);
    if (conn->out_cap > S_BODY_KEEP) {
        //  a large answer's buffer is not kept for the connection's life
        free (conn->out);
        conn->out = NULL;
        conn->out_cap = 0;
    }
    bool unread = !conn->body_asked
               && (conn->head.chunked || conn->head.content_length > 0);
    if (unread && (conn->head.chunked
               ||  conn->head.content_length > S_DISCARD_MAX
               ||  (conn->head.expect_continue && conn->head.minor == 1)))
        conn->close = true;         //  not worth reading, or never sent
    if (conn->close || !conn->http->settings->keep_alive) {
        s_linger (conn);
        return;
    }
    conn->discard = unread ? conn->head.content_length : 0;
    //  What follows this request's bytes is the next one's start
    memmove (conn->in, conn->in + conn->used, conn->in_size - conn->used);
    conn->in_size -= conn->used;
    conn->used = 0;
    if (conn->extra_size) {
        //  ... after the bytes read past a chunked body (none are left in
        //  in then: the chunked body consumed them)
        if (conn->in_cap < conn->in_size + conn->extra_size) {
            char *in = (char *) realloc (conn->in,
                                         conn->in_size + conn->extra_size);
            if (!in) {
                s_close (conn);
                return;
            }
            conn->in = in;
            conn->in_cap = conn->in_size + conn->extra_size;
        }
        memcpy (conn->in + conn->in_size, conn->extra, conn->extra_size);
        conn->in_size += conn->extra_size;
        conn->extra_size = 0;
    }
    free (conn->extra);
    conn->extra = NULL;
    if (conn->body_cap > S_BODY_KEEP) {
        free (conn->body);
        conn->body = NULL;
        conn->body_cap = 0;
    }
    conn->body_size = 0;
    conn->body_asked = false;
    conn->path = conn->query = NULL;
    conn->head_only = false;
    conn->first = false;
    conn->user = NULL;
    if (conn->pause && conn->http->settings->busy_pause > 0) {
        //  Told to come back later: what it sends meanwhile waits in the
        //  socket, and costs us nothing until the pause is over
        conn->pause = false;
        conn->state = S_PAUSED;
        s_timer_set (conn, T_PAUSE);
        return;
    }
    conn->pause = false;
    s_next_request (conn);
    //  Nothing buffered and nothing left in the socket at the last read:
    //  the next request's first byte is an epoll event, no read needed now
    if (conn->discard || conn->in_size || !conn->drained)
        s_make_ready (conn);
}


/*  --------------------------------------------------------------------
 *  Reading heads
 */

//  Port of an absolute-form target's authority ("host:port" or "[v6]:port")
static int
s_authority_port (const char *authority, size_t len, bool https)
{
    const char *end = authority + len;
    const char *p = authority;
    if (p < end && *p == '[') {
        p = (const char *) memchr (p, ']', len);
        if (!p)
            return -1;
    }
    const char *colon = (const char *) memchr (p, ':', (size_t) (end - p));
    if (!colon)
        return https ? 443 : 80;
    int port = 0;
    for (const char *d = colon + 1; d < end; d++) {
        if (*d < '0' || *d > '9' || port > 65535)
            return -1;
        port = port * 10 + (*d - '0');
    }
    return colon + 1 < end ? port : (https ? 443 : 80);
}

//  The target's path and query; false when the front answered already
static bool
s_route_target (hgp_http_req_t *conn)
{
    hgp_http_t *self = conn->http;
    char *target = (char *) conn->head.target;
    if (target [0] == '*' && target [1] == 0) {
        if (strcmp (conn->head.method, "OPTIONS") == 0) {
            char allow [128];
            snprintf (allow, sizeof allow, "Allow: %s\r\n",
                      self->settings->allow);
            s_edge (conn, HGP_HTTP_EDGE_UNROUTED, 200, NULL, NULL, allow,
                    true);
        }
        else
            s_edge (conn, HGP_HTTP_EDGE_UNROUTED, 400, "invalid",
                    "the asterisk-form request target is only for OPTIONS",
                    NULL, false);
        return false;
    }
    bool https = strncasecmp (target, "https://", 8) == 0;
    if (https || strncasecmp (target, "http://", 7) == 0) {
        char *authority = target + (https ? 8 : 7);
        char *path = authority + strcspn (authority, "/?");
        if (s_authority_port (authority, (size_t) (path - authority), https)
            != self->settings->port) {
            s_edge (conn, HGP_HTTP_EDGE_UNROUTED, 421, "misdirected",
                    "the absolute-form target names another server; this "
                    "gateway is not a proxy", NULL, false);
            return false;
        }
        target = path;
    }
    else
    if (target [0] != '/') {
        s_edge (conn, HGP_HTTP_EDGE_HEAD, 400, "malformed",
                "the request target must be a path (or * for OPTIONS)",
                NULL, false);
        return false;
    }
    char *question = strchr (target, '?');
    if (question) {
        *question = 0;
        conn->query = question + 1;
    }
    conn->path = target [0] ? target : "/";
    return true;
}

//  A whole head is in: hand the request to the handler
static void
s_dispatch (hgp_http_req_t *conn, size_t skipped)
{
    hgp_http_t *self = conn->http;
    conn->used = skipped + conn->head.size;
    conn->close = !conn->head.keep_alive;
    if (!s_route_target (conn))
        return;
    conn->head_only = strcmp (conn->head.method, "HEAD") == 0;
    conn->state = S_HANDLER;
    s_timer_clear (conn);
    self->handler.head (self->arg, conn);
}

static bool
s_in_reserve (hgp_http_req_t *conn, size_t max)
{
    if (conn->in_size < conn->in_cap)
        return true;
    if (conn->in_cap >= max)
        return false;
    size_t cap = conn->in_cap ? conn->in_cap * 2 : S_IN_FIRST;
    if (cap > max)
        cap = max;
    char *in = (char *) realloc (conn->in, cap);
    if (!in)
        return false;
    conn->in = in;
    conn->in_cap = cap;
    return true;
}

static void
s_read_head (hgp_http_req_t *conn)
{
    size_t limit = conn->http->settings->head_limit;
    while (true) {
        if (conn->in_size) {
            hgp_http_error_t err;
            size_t skipped = 0;
            int rc = hgp_http_parse_head (conn->in, conn->in_size, limit,
                                          &conn->head, &skipped, &err);
            if (rc == 1) {
                s_dispatch (conn, skipped);
                return;
            }
            if (rc < 0) {
                s_edge (conn, err.framing ? HGP_HTTP_EDGE_FRAMING
                                          : HGP_HTTP_EDGE_HEAD,
                        err.status, err.code,
                        err.message, NULL, false);
                return;
            }
            if (conn->state == S_IDLE) {
                conn->state = S_HEAD;
                s_timer_set (conn, T_HEAD);
            }
        }
        if (!s_in_reserve (conn, limit + 2)) {
            s_edge (conn, HGP_HTTP_EDGE_HEAD, 431, "too_large",
                    "the request's head is larger than this gateway takes",
                    NULL, false);
            return;
        }
        size_t room = conn->in_cap - conn->in_size;
        ssize_t n = recv (conn->fd, conn->in + conn->in_size, room, 0);
        conn->drained = n < 0 || (size_t) n < room;
        if (n > 0) {
            conn->in_size += (size_t) n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        s_close (conn);             //  closed by the client, or reset
        return;
    }
}


/*  --------------------------------------------------------------------
 *  Reading bodies
 */

static void
s_body_failed (hgp_http_req_t *conn, int status, const char *code,
               const char *message)
{
    hgp_http_t *self = conn->http;
    hgp_http_error_t err = { .status = status, .code = code };
    snprintf (err.message, sizeof err.message, "%s", message);
    conn->close = true;
    conn->body_asked = true;        //  nothing more of it is read
    conn->state = S_HANDLER;
    s_timer_clear (conn);
    self->handler.body (self->arg, conn, &err);
}

static void
s_body_complete (hgp_http_req_t *conn)
{
    hgp_http_t *self = conn->http;
    conn->body [conn->body_size] = 0;
    conn->state = S_HANDLER;
    s_timer_clear (conn);
    self->handler.body (self->arg, conn, NULL);
}

//  Chunked bytes: decode; bytes past the body's end are kept for the next
//  request. True when the body is complete or failed (answered).
static bool
s_feed_chunked (hgp_http_req_t *conn, const char *data, size_t size,
                bool from_in)
{
    hgp_http_error_t err;
    int64_t used = hgp_http_chunked_feed (&conn->chunked, data, size,
                                          conn->body, &conn->body_size,
                                          conn->body_limit, &err);
    if (used < 0) {
        s_body_failed (conn, err.status, err.code, err.message);
        return true;
    }
    if (from_in)
        conn->used += (size_t) used;
    if (!conn->chunked.done)
        return false;
    size_t rest = size - (size_t) used;
    if (rest && !from_in) {
        conn->extra = (char *) malloc (rest);
        if (!conn->extra) {
            s_body_failed (conn, 500, "internal", "out of memory");
            return true;
        }
        memcpy (conn->extra, data + used, rest);
        conn->extra_size = rest;
    }
    s_body_complete (conn);
    return true;
}

static void
s_read_body (hgp_http_req_t *conn)
{
    char chunk [S_READ_CHUNK];
    //  Reads sized to the body leave what follows in the socket
    conn->drained = false;
    while (true) {
        ssize_t n;
        if (conn->head.chunked)
            n = recv (conn->fd, chunk, sizeof chunk, 0);
        else
            n = recv (conn->fd, conn->body + conn->body_size,
                      (size_t) conn->head.content_length - conn->body_size, 0);
        if (n > 0) {
            if (conn->head.chunked) {
                if (s_feed_chunked (conn, chunk, (size_t) n, false))
                    return;
            }
            else {
                conn->body_size += (size_t) n;
                if (conn->body_size == (size_t) conn->head.content_length) {
                    s_body_complete (conn);
                    return;
                }
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n == 0) {
            char message [160];
            snprintf (message, sizeof message, "the body ended after %zu "
                      "bytes (the client closed its side)", conn->body_size);
            s_body_failed (conn, 400, "malformed", message);
        }
        else
            s_close (conn);
        return;
    }
}

//  An unwanted body with a Content-Length: read and dropped
static void
s_read_discard (hgp_http_req_t *conn)
{
    size_t have = conn->in_size < (size_t) conn->discard
                ? conn->in_size : (size_t) conn->discard;
    memmove (conn->in, conn->in + have, conn->in_size - have);
    conn->in_size -= have;
    conn->discard -= (int64_t) have;
    conn->drained = false;
    char scratch [4096];
    while (conn->discard > 0) {
        size_t want = conn->discard < (int64_t) sizeof scratch
                    ? (size_t) conn->discard : sizeof scratch;
        ssize_t n = recv (conn->fd, scratch, want, 0);
        if (n > 0) {
            conn->discard -= n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        s_close (conn);
        return;
    }
    conn->state = conn->in_size ? S_HEAD : S_IDLE;
    s_timer_set (conn, conn->in_size ? T_HEAD : T_IDLE);
    s_make_ready (conn);
}

static void
s_read_linger (hgp_http_req_t *conn)
{
    char scratch [4096];
    while (true) {
        ssize_t n = recv (conn->fd, scratch, sizeof scratch, 0);
        if (n > 0 || (n < 0 && errno == EINTR))
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        s_close (conn);
        return;
    }
}

//  Whatever this connection can do now without waiting
static void
s_drive (hgp_http_req_t *conn)
{
    switch (conn->state) {
        case S_IDLE:
        case S_HEAD:    s_read_head (conn);     break;
        case S_BODY:    s_read_body (conn);     break;
        case S_WRITE:   s_flush (conn);         break;
        case S_DISCARD: s_read_discard (conn);  break;
        case S_LINGER:  s_read_linger (conn);   break;
        case S_HANDLER:
        case S_PAUSED:
        case S_CLOSED:                          break;
    }
}


/*  --------------------------------------------------------------------
 *  The loop
 */

static void
s_accept (hgp_http_t *self)
{
    const hgp_http_settings_t *settings = self->settings;
    for (int i = 0; i < S_ACCEPTS; i++) {
        struct sockaddr_storage addr;
        socklen_t addr_len = sizeof addr;
        int fd = accept4 (self->listener, (struct sockaddr *) &addr, &addr_len,
                          SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS
            ||  errno == ENOMEM) {
                //  Out of descriptors: leave the backlog alone a moment
                //  instead of spinning on it
                epoll_ctl (self->epoll, EPOLL_CTL_DEL, self->listener, NULL);
                self->accept_again = s_now () + 100;
            }
            return;
        }
        int one = 1;
        setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        hgp_http_req_t *conn = (hgp_http_req_t *) calloc (1, sizeof *conn);
        if (!conn) {
            close (fd);
            return;
        }
        conn->http = self;
        conn->fd = fd;
        if (addr.ss_family == AF_INET6)
            memcpy (conn->peer, &((struct sockaddr_in6 *) &addr)->sin6_addr, 16);
        else
        if (addr.ss_family == AF_INET) {
            conn->peer [10] = conn->peer [11] = 0xff;
            memcpy (conn->peer + 12, &((struct sockaddr_in *) &addr)->sin_addr, 4);
        }
        conn->timer = T_NONE;
        conn->first = true;
        conn->state = S_HEAD;       //  its first byte sets no new deadline
        int open = atomic_fetch_add (settings->connections, 1) + 1;
        conn->over = open > settings->max_connections;
        struct epoll_event event = {
            .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
            .data.ptr = conn
        };
        conn->next = self->all;
        if (self->all)
            self->all->prev = conn;
        self->all = conn;
        if (epoll_ctl (self->epoll, EPOLL_CTL_ADD, fd, &event)) {
            s_close (conn);
            continue;
        }
        //  A new connection's first request has header_timeout to arrive
        s_timer_set (conn, T_HEAD);
        s_make_ready (conn);
    }
}

static void
s_expire (hgp_http_t *self, int64_t now)
{
    for (int t = 0; t < T_COUNT; t++) {
        s_timers_t *list = &self->timers [t];
        while (list->first && list->first->deadline <= now) {
            hgp_http_req_t *conn = list->first;
            s_timer_clear (conn);
            if (t == T_HEAD && conn->in_size && conn->state == S_HEAD) {
                char message [128];
                snprintf (message, sizeof message, "the request's headers "
                          "did not arrive within %d ms",
                          self->settings->header_timeout);
                s_edge (conn, HGP_HTTP_EDGE_HEADER_TIMEOUT, 408, "timeout",
                        message, NULL, false);
            }
            else
            if (t == T_PAUSE && conn->state == S_PAUSED) {
                //  Read again: the next request (or the end) is waiting
                conn->drained = false;
                s_next_request (conn);
                s_make_ready (conn);
            }
            else
            if (t == T_BODY && conn->state == S_BODY) {
                char message [160];
                snprintf (message, sizeof message, "the body did not arrive "
                          "within %d ms (%zu bytes came)",
                          self->settings->body_timeout, conn->body_size);
                s_body_failed (conn, 408, "timeout", message);
            }
            else
                s_close (conn);
        }
    }
}

static int
s_next_deadline (hgp_http_t *self, int64_t now, int wait_ms)
{
    for (int t = 0; t < T_COUNT; t++) {
        hgp_http_req_t *first = self->timers [t].first;
        if (first) {
            int64_t in = first->deadline - now;
            if (in < wait_ms)
                wait_ms = in < 0 ? 0 : (int) in;
        }
    }
    if (self->accept_again) {
        int64_t in = self->accept_again - now;
        if (in < wait_ms)
            wait_ms = in < 0 ? 0 : (int) in;
    }
    return wait_ms;
}

static void
s_run_ready (hgp_http_t *self)
{
    //  Driving one may make others (or itself) ready again: take the list
    //  as it stands, and leave what it adds for the next turn
    hgp_http_req_t *list = self->ready;
    self->ready = NULL;
    while (list) {
        hgp_http_req_t *conn = list;
        list = conn->ready_next;
        conn->is_ready = false;
        s_drive (conn);
    }
}

//  Free the closed, except those still on the ready list (next time)
static void
s_bury (hgp_http_t *self)
{
    hgp_http_req_t *keep = NULL;
    while (self->graveyard) {
        hgp_http_req_t *conn = self->graveyard;
        self->graveyard = conn->next;
        if (conn->is_ready) {
            conn->next = keep;
            keep = conn;
        }
        else
            s_free (conn);
    }
    self->graveyard = keep;
}

int
hgp_http_run (hgp_http_t *self, int wait_ms)
{
    //  Work done here (a request handed on) may have sent on the bus: come
    //  back at once, so the owner looks at the bus before anyone waits
    bool worked = self->ready != NULL;
    s_run_ready (self);
    int64_t now = s_now ();
    if (self->accept_again && now >= self->accept_again) {
        self->accept_again = 0;
        if (self->accepting) {
            struct epoll_event event = {
                .events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = self };
            epoll_ctl (self->epoll, EPOLL_CTL_ADD, self->listener, &event);
        }
    }
    int wait = worked || self->ready ? 0 : s_next_deadline (self, now, wait_ms);
    struct epoll_event events [S_EVENTS];
    int n = epoll_wait (self->epoll, events, S_EVENTS, wait);
    if (n < 0 && errno != EINTR)
        return -1;
    for (int i = 0; i < n; i++) {
        void *ptr = events [i].data.ptr;
        if (ptr == self)
            s_accept (self);
        else
        if (ptr) {
            hgp_http_req_t *conn = (hgp_http_req_t *) ptr;
            if (conn->state != S_CLOSED && conn->fd >= 0)
                s_drive (conn);
        }
    }
    s_run_ready (self);
    s_expire (self, s_now ());
    s_bury (self);
    return 0;
}


/*  --------------------------------------------------------------------
 *  Public API
 */

hgp_http_t *
hgp_http_new (int listener, const hgp_http_settings_t *settings,
              const hgp_http_handler_t *handler, void *arg)
{
    hgp_http_t *self = (hgp_http_t *) calloc (1, sizeof (hgp_http_t));
    if (!self)
        return NULL;
    self->epoll = epoll_create1 (EPOLL_CLOEXEC);
    if (self->epoll < 0) {
        free (self);
        return NULL;
    }
    self->listener = listener;
    self->settings = settings;
    self->handler = *handler;
    self->arg = arg;
    self->timers [T_IDLE].ms = settings->keep_alive;
    self->timers [T_HEAD].ms = settings->header_timeout;
    self->timers [T_BODY].ms = settings->body_timeout;
    self->timers [T_WRITE].ms = settings->body_timeout;
    self->timers [T_LINGER].ms = S_LINGER_MS;
    self->timers [T_PAUSE].ms = settings->busy_pause;
    struct epoll_event event = {
        .events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = self };
    if (epoll_ctl (self->epoll, EPOLL_CTL_ADD, listener, &event)) {
        close (self->epoll);
        free (self);
        return NULL;
    }
    self->accepting = true;
    return self;
}

void
hgp_http_destroy (hgp_http_t **self_p)
{
    hgp_http_t *self = *self_p;
    if (!self)
        return;
    while (self->all) {
        hgp_http_req_t *conn = self->all;
        bool held = conn->state == S_HANDLER;
        s_close (conn);             //  takes it off the list
        if (held)
            s_free (conn);          //  its handler answered already (.h)
    }
    while (self->graveyard) {
        hgp_http_req_t *conn = self->graveyard;
        self->graveyard = conn->next;
        s_free (conn);
    }
    close (self->epoll);
    free (self);
    *self_p = NULL;
}

int
hgp_http_watch (hgp_http_t *self, int fd)
{
    struct epoll_event event = { .events = EPOLLIN | EPOLLET, .data.ptr = NULL };
    return epoll_ctl (self->epoll, EPOLL_CTL_ADD, fd, &event);
}

void
hgp_http_stop_accepting (hgp_http_t *self)
{
    if (self->accepting)
        epoll_ctl (self->epoll, EPOLL_CTL_DEL, self->listener, NULL);
    self->accepting = false;
}

const char *
hgp_http_req_method (hgp_http_req_t *req)
{
    return req->head.method;
}

const char *
hgp_http_req_path (hgp_http_req_t *req)
{
    return req->path;
}

const char *
hgp_http_req_query (hgp_http_req_t *req)
{
    return req->query;
}

const char *
hgp_http_req_header (hgp_http_req_t *req, const char *name)
{
    return hgp_http_head_get (&req->head, name);
}

const uint8_t *
hgp_http_req_peer (hgp_http_req_t *req)
{
    return req->peer;
}

bool
hgp_http_req_first (hgp_http_req_t *req)
{
    return req->first;
}

bool
hgp_http_req_over (hgp_http_req_t *req)
{
    return req->over;
}

void
hgp_http_read_body (hgp_http_req_t *req, size_t limit)
{
    req->body_asked = true;
    req->body_limit = limit;
    int64_t length = req->head.content_length;
    if (!req->head.chunked && length > (int64_t) limit) {
        char message [160];
        snprintf (message, sizeof message, "body is %lld bytes; this "
                  "endpoint takes at most %zu", (long long) length, limit);
        s_body_failed (req, 413, "too_large", message);
        return;
    }
    //  A chunked body is decoded into room for all of it
    size_t cap = req->head.chunked ? limit : (length > 0 ? (size_t) length : 0);
    const hgp_http_settings_t *settings = req->http->settings;
    if (cap) {
        int64_t held = atomic_fetch_add (settings->body_bytes, (int64_t) cap);
        if (held + (int64_t) cap > settings->body_bytes_max) {
            atomic_fetch_sub (settings->body_bytes, (int64_t) cap);
            char message [200];
            snprintf (message, sizeof message, "the gateway is reading %lld "
                      "bytes of request bodies and %zu more would pass "
                      "gateway/body_bytes; retry after 1 s", (long long) held,
                      cap);
            s_body_failed (req, 503, "busy", message);
            return;
        }
        req->reserved = (int64_t) cap;
    }
    if (req->body_cap < cap + 1) {
        char *body = (char *) realloc (req->body, cap + 1);
        if (!body) {
            s_body_failed (req, 500, "internal", "out of memory");
            return;
        }
        req->body = body;
        req->body_cap = cap + 1;
    }
    req->body_size = 0;
    size_t avail = req->in_size - req->used;
    if (req->head.chunked) {
        hgp_http_chunked_init (&req->chunked);
        if (avail && s_feed_chunked (req, req->in + req->used, avail, true))
            return;
    }
    else {
        size_t take = (size_t) (length > 0 ? length : 0);
        if (take > avail)
            take = avail;
        memcpy (req->body, req->in + req->used, take);
        req->body_size = take;
        req->used += take;
        if (req->body_size == (size_t) (length > 0 ? length : 0)) {
            s_body_complete (req);
            return;
        }
    }
    //  More to come: ask for it, if the client waits to be asked
    if (req->head.expect_continue && req->head.minor == 1 && !avail) {
        static const char go [] = "HTTP/1.1 100 Continue\r\n\r\n";
        //  A failure shows in the body read that follows
        (void) !send (req->fd, go, sizeof go - 1, MSG_NOSIGNAL);
    }
    req->state = S_BODY;
    s_timer_set (req, T_BODY);
    s_make_ready (req);
}

const char *
hgp_http_req_body (hgp_http_req_t *req, size_t *size)
{
    *size = req->body_size;
    return req->body ? req->body : "";
}

void
hgp_http_req_set_user (hgp_http_req_t *req, void *user)
{
    req->user = user;
}

void *
hgp_http_req_user (hgp_http_req_t *req)
{
    return req->user;
}

void
hgp_http_req_set_close (hgp_http_req_t *req)
{
    req->close = true;
}

void
hgp_http_req_set_pause (hgp_http_req_t *req)
{
    req->pause = true;
}

void
hgp_http_reply (hgp_http_req_t *req, int status, const char *type,
                const char *body, size_t size, const char *extra)
{
    if (req->dead) {
        //  The connection went while the handler worked: nobody to tell
        req->state = S_CLOSED;
        req->next = req->http->graveyard;
        req->http->graveyard = req;
        return;
    }
    if (req->state == S_BODY)
        req->close = true;          //  answered with its body half read
    if (!req->http->settings->keep_alive)
        req->close = true;
    if (!s_compose (req, status, type, body, size, extra)) {
        s_close (req);
        return;
    }
    req->state = S_WRITE;
    s_timer_clear (req);
    s_flush (req);
}
