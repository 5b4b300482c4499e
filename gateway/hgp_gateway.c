/*  hgp_gateway.c - civetweb server, one bus client per worker thread (see .h)
 *
 *  With discovery, one discovery actor per process: a client per worker
 *  with its own listener would be 1024 threads and UDP sockets, all
 *  hearing the same beacons. The workers' clients subscribe to the actor's
 *  events instead (lib/hgp_discovery.h, EVENTS); in static mode the actor
 *  only logs the mode and goes, and the workers have plain DEALERs.
 *
 *  Thread sizing, the decision that matters most here:
 *
 *  civetweb 1.15 hands an accepted connection to one worker thread for the
 *  connection's whole keep-alive life: the worker loops reading request
 *  after request on it, and waits up to keep_alive_timeout_ms for the next
 *  one before it lets go. So the number of keep-alive connections served
 *  at once is num_threads; the rest sit accepted-but-unserved in
 *  connection_queue (for ever, while the served clients keep their
 *  connections busy), and beyond that in the kernel's listen backlog.
 *  civetweb's defaults (50 threads, queue 20) serve ~70 clients and stall
 *  everyone else. Each worker also blocks on its own DEALER for the bus
 *  call, so threads is also the most requests in flight on the bus.
 *
 *  To serve 1000 concurrent keep-alive clients:
 *  - threads = 1024: one per connection plus room for health checks and
 *    scrapes. An idle thread costs a few KiB resident (its 100 KiB stack,
 *    fixed when libcivetweb was built, is mostly untouched) and one idle
 *    DEALER; the bus queues fine at this depth (the broker holds up to
 *    10,000 per actor). The stack is measured and logged at start; what
 *    runs on it is bounded (JSON nesting, see hgp_json.h).
 *  - queue = 1024: when every client reconnects at once (a restart, a load
 *    balancer flip) accepted connections wait here, in order, rather than
 *    the master thread blocking in accept().
 *  - backlog = 1024: the kernel's accept queue for the SYN burst before
 *    the master thread accepts them (capped by net.core.somaxconn, 4096 on
 *    current Linux). Too small and clients see connect() retries of 1 s.
 *  - keep_alive = 5000 ms: long enough that a client pausing between
 *    requests keeps its connection, short enough that connections
 *    abandoned without a FIN free their thread soon.
 *  That is 1024 HTTP sockets + 1024 DEALERs (a TCP socket and an eventfd
 *  each) open at once, so we raise RLIMIT_NOFILE if we can and ZeroMQ's
 *  socket limit (1023 by default) to fit.
 *
 *  Hostile input (issue 9) is bounded before it costs more than seconds:
 *  header_timeout and body_timeout for slow clients (a housekeeper thread
 *  interrupts body reads past their deadline, see s_read), max_in_flight
 *  for admission (503 busy below the worker count, see s_bus_call),
 *  ambiguous framing refused before a body byte is read (s_check_framing),
 *  and the requests civetweb would leave unanswered (OPTIONS *, another
 *  server's absolute URI, its own 4xx) answered in JSON from its
 *  connection_close and http_error callbacks.
 *
 *  Everything is answered in one write: a small response is built in one
 *  buffer, header and body, so a keep-alive client never waits on Nagle
 *  (tcp_nodelay is set as well, for the large ones).
 */
#define _GNU_SOURCE                 //  strcasestr
#include "hgp_gateway.h"
#include "hgp_client.h"
#include "hgp_mux.h"
#include "hgp_discovery.h"
#include "hgp_json.h"
#include "hgp_metrics.h"
#include "hgp_process.h"
#include <civetweb.h>
#include <jansson.h>
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#define PREFIX_COUNTER  "/api/v1/counter/"
#define PATH_INCREMENT  "/api/v1/counter/increment"
#define PATH_BATCH      "/api/v1/counter/batch"
#define PATH_HEALTH     "/api/v1/health"
#define PREFIX_RANK     "/api/v1/rank/"
#define SUFFIX_STATS    "stats"
#define PATH_METRICS    "/metrics"

//  The key the health check reads through an actor to prove Redis works
#define HEALTH_RESOURCE "hgp_health"
#define HEALTH_TYPE     "probe"

#define JSON_TYPE       "application/json"

//  Statuses the bus has no name for
#define S_STATUS_REQUEST_TIMEOUT    408
#define S_STATUS_MISDIRECTED        421

//  Seconds a client told 503 busy should wait (Retry-After)
#define S_RETRY_AFTER   "1"

//  What s_read returns when the body deadline passed
#define S_READ_TIMEOUT  (-100)
#define METRICS_TYPE    "text/plain; version=0.0.4; charset=utf-8"

//  What each civetweb worker thread owns. The lock guards read_deadline
//  and interrupted, which the housekeeper reads from its own thread.

typedef struct {
    hgp_mux_t *mux;                 /* the bus link this thread's calls use */
    hgp_reply_t reply;              /* reused by every call                 */
    uint64_t id_prefix;             /* request ids: random, per thread      */
    uint64_t id_counter;            /* ... counting from a random start     */
    bool id_seeded;                 /* the two above are set                */
    pthread_t thread;               /* the worker thread                    */
    pthread_mutex_t lock;           /* guards the two below                 */
    int64_t read_deadline;          /* usecs; 0: not in a body read         */
    bool interrupted;               /* the housekeeper cut that read short  */
    int slot;                       /* index in the gateway's workers       */
    bool edge_answered;             /* s_http_error answered on this conn   */
    bool counted;                   /* its connection is in connections     */
    bool first;                     /* this is the connection's first request */
} s_worker_t;

struct _hgp_gateway_t {
    struct mg_context *web;         /* civetweb server                      */
    bool library;                   /* mg_init_library was called           */
    hgp_metrics_t *metrics;         /* request counters and histograms      */
    char *endpoint;                 /* broker client endpoint (static mode) */
    hgp_keys_t *keys;               /* client certificate, shared by workers */
    zactor_t *discovery;            /* the one discovery actor; NULL: static */
    char *events;                   /* its EVENTS endpoint, for the workers */
    char *where;                    /* "beacons:IFACE:PORT", for messages   */
    char *bind;                     /* address listened on                  */
    int port;                       /* port listened on                     */
    int threads;                    /* civetweb worker threads              */
    hgp_mux_t **muxes;              /* bus links, shared by the workers     */
    int nmuxes;                     /* gateway/bus_links                    */
    size_t body_limit;              /* bytes in an increment body           */
    size_t batch_body_limit;        /* bytes in a batch body                */
    uint32_t timeout;               /* bus deadline of a request, ms        */
    uint32_t health_timeout;        /* bus deadline of a health check, ms   */
    int header_timeout;             /* ms to send a request's headers       */
    int body_timeout;               /* ms to send a request's body          */
    int max_in_flight;              /* bus calls at once; past it: 503 busy */
    int max_connections;            /* connections held; a new one past it:
                                       503 busy                            */
    atomic_int connections;         /* connections that hold a worker       */
    atomic_int in_flight;           /* bus calls now                        */
    atomic_uint_fast64_t requests;  /* requests begun, for the housekeeper  */
    atomic_bool stack_logged;       /* a worker logged its stack size       */
    s_worker_t *_Atomic *workers;   /* [threads] as they start, for the     */
    atomic_int nworkers;            /* ... housekeeper's body deadlines     */
    pthread_t housekeeper;          /* body deadlines, memory trim          */
    bool housekeeping;              /* housekeeper was started              */
    atomic_bool stopping;           /* tells the housekeeper to go          */
};


//  One request being answered

typedef struct {
    struct mg_connection *conn;             /* civetweb's connection      */
    const struct mg_request_info *info;     /* method, path, headers      */
    hgp_gateway_t *gateway;                 /* settings, metrics          */
    s_worker_t *worker;                     /* this thread's bus client   */
    bool head;                              /* HEAD: headers only         */
    bool close;                             /* close after answering      */
    int64_t body_deadline;                  /* usecs; 0: body not begun   */
} s_call_t;

static int64_t
s_usecs (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

//  --------------------------------------------------------------------
//  Writing responses

//  Whether civetweb will keep the connection open after this response: the
//  same rule as its should_keep_alive, which it does not export

static bool
s_keep_alive (s_call_t *call)
{
    if (call->close)
        return false;
    const char *connection = mg_get_header (call->conn, "Connection");
    if (connection)
        return strcasestr (connection, "keep-alive") != NULL;
    return call->info->http_version && streq (call->info->http_version, "1.1");
}

static int
s_send (s_call_t *call, int status, const char *type, const char *body,
        size_t size, const char *extra_headers)
{
    bool keep = s_keep_alive (call);
    if (!keep)
        mg_disable_connection_keep_alive (call->conn);
    char buffer [8192];
    int header = snprintf (buffer, sizeof buffer,
        "HTTP/1.1 %d %s\r\n"
        "Content-Type: %s\r\n"
        "Content-Length: %zu\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: %s\r\n"
        "%s\r\n",
        status, mg_get_response_code_text (call->conn, status), type, size,
        keep ? "keep-alive" : "close", extra_headers ? extra_headers : "");
    assert (header > 0 && (size_t) header < sizeof buffer);
    if (call->head)
        mg_write (call->conn, buffer, (size_t) header);
    else
    if ((size_t) header + size <= sizeof buffer) {
        memcpy (buffer + header, body, size);
        mg_write (call->conn, buffer, (size_t) header + size);
    }
    else {
        mg_write (call->conn, buffer, (size_t) header);
        mg_write (call->conn, body, size);
    }
    return status;
}

//  Send a JSON text made by hgp_json (NULL: it ran out of memory) and free it

static int
s_send_json (s_call_t *call, int status, char *json, const char *extra)
{
    if (!json) {
        static const char oom [] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        return s_send (call, HGP_STATUS_INTERNAL, JSON_TYPE, oom,
                       sizeof oom - 1, NULL);
    }
    s_send (call, status, JSON_TYPE, json, strlen (json), extra);
    free (json);
    return status;
}

//  An error as {"error": {code, message}}; the bus's status is the HTTP
//  status, except that a status which is not an error cannot be one

static int
s_send_error (s_call_t *call, const hgp_error_t *error,
              const char *request_id, const char *extra)
{
    int status = error->status;
    if (status < 400 || status > 599)
        status = HGP_STATUS_INTERNAL;
    //  busy (ours or the broker's): say when to come back, and give the
    //  worker back, so connections queued behind this one get their answer
    //  now instead of waiting for this client's keep-alive to end
    if (status == HGP_STATUS_UNAVAILABLE && streq (error->code, "busy")
    &&  !extra) {
        extra = "Retry-After: " S_RETRY_AFTER "\r\n";
        call->close = true;
    }
    if (status == HGP_STATUS_INTERNAL)
        zsys_warning ("gateway: %s %s: 500 %s: %s", call->info->request_method,
                      call->info->local_uri, error->code, error->message);
    return s_send_json (call, status,
                        hgp_json_encode_error (error, request_id), extra);
}

static int
s_fail (s_call_t *call, uint16_t status, const char *code,
        const char *message, const char *extra)
{
    hgp_error_t error;
    hgp_error_set (&error, status, code, "%s", message);
    return s_send_error (call, &error, NULL, extra);
}

//  --------------------------------------------------------------------
//  Reading bodies

//  mg_read, bounded by the request's body deadline (gateway/body_timeout
//  from the first byte of body asked for). civetweb bounds only each wait
//  for more bytes (request_timeout_ms), and one mg_read keeps reading until
//  it has len bytes, across chunks: a client trickling a byte now and then
//  would hold the worker for ever. So the worker publishes its deadline,
//  and past it the housekeeper interrupts the read with SIGURG: civetweb's
//  poll returns EINTR and mg_read gives up. The housekeeper repeats the
//  signal each tick until the read returns, so a signal that lands just
//  before the poll is not lost. Returns mg_read's result or S_READ_TIMEOUT.

static int
s_read (s_call_t *call, void *buf, size_t len)
{
    if (!call->body_deadline)
        call->body_deadline = s_usecs ()
                            + (int64_t) call->gateway->body_timeout * 1000;
    if (s_usecs () >= call->body_deadline)
        return S_READ_TIMEOUT;
    s_worker_t *worker = call->worker;
    if (!worker)
        return mg_read (call->conn, buf, len);
    pthread_mutex_lock (&worker->lock);
    worker->read_deadline = call->body_deadline;
    worker->interrupted = false;
    pthread_mutex_unlock (&worker->lock);
    int n = mg_read (call->conn, buf, len);
    //  Once we hold the lock no signal is pending for us: the housekeeper
    //  sends it holding the lock, and it is delivered before we return
    //  from the kernel with the lock
    pthread_mutex_lock (&worker->lock);
    worker->read_deadline = 0;
    bool interrupted = worker->interrupted;
    pthread_mutex_unlock (&worker->lock);
    if (interrupted || (n <= 0 && s_usecs () >= call->body_deadline))
        return S_READ_TIMEOUT;
    return n;
}

static int
s_body_timeout (s_call_t *call, size_t size, hgp_error_t *err)
{
    call->close = true;
    hgp_metrics_refused (call->gateway->metrics, HGP_REFUSED_BODY_TIMEOUT);
    return hgp_error_set (err, S_STATUS_REQUEST_TIMEOUT, "timeout",
        "the body did not arrive within %d ms (%zu bytes came)",
        call->gateway->body_timeout, size);
}

//  Read the whole body, at most limit bytes, into a NUL-terminated buffer
//  for the caller to free. The declared Content-Length is checked before a
//  byte is read; a chunked body is read up to limit + 1 bytes and no
//  further; either must arrive within body_timeout (408 timeout). On any
//  error the rest of the body is left unread, so the connection is closed
//  after the answer.

static int
s_read_body (s_call_t *call, size_t limit, char **body_p, size_t *size_p,
             hgp_error_t *err)
{
    long long length = call->info->content_length;
    if (length < 0) {
        //  No Content-Length: a body only if it is chunked (RFC 9112 6.3)
        const char *encoding = mg_get_header (call->conn, "Transfer-Encoding");
        if (!encoding || !strcasestr (encoding, "chunked"))
            length = 0;
    }
    if (length > (long long) limit) {
        call->close = true;
        return hgp_error_set (err, HGP_STATUS_TOO_LARGE, "too_large",
            "body is %lld bytes; this endpoint takes at most %zu",
            length, limit);
    }
    size_t want = length >= 0 ? (size_t) length : limit + 1;
    size_t alloc = length >= 0 ? want : (want < 16384 ? want : 16384);
    char *body = (char *) malloc (alloc + 1);
    if (!body)
        return hgp_error_set (err, HGP_STATUS_INTERNAL, "internal",
                              "out of memory");
    size_t size = 0;
    while (size < want) {
        if (size == alloc) {
            alloc = alloc * 2 < want ? alloc * 2 : want;
            char *grown = (char *) realloc (body, alloc + 1);
            if (!grown) {
                free (body);
                return hgp_error_set (err, HGP_STATUS_INTERNAL, "internal",
                                      "out of memory");
            }
            body = grown;
        }
        int n = s_read (call, body + size, alloc - size);
        if (n == S_READ_TIMEOUT) {
            free (body);
            return s_body_timeout (call, size, err);
        }
        if (n == 0 && length < 0)
            break;                      //  last chunk
        if (n <= 0) {
            free (body);
            call->close = true;
            return hgp_error_set (err, HGP_STATUS_BAD_REQUEST, "malformed",
                "body ended after %zu of %lld bytes (or a bad chunk)",
                size, length);
        }
        size += (size_t) n;
    }
    if (size > limit) {
        free (body);
        call->close = true;
        return hgp_error_set (err, HGP_STATUS_TOO_LARGE, "too_large",
            "chunked body is over %zu bytes, the most this endpoint takes",
            limit);
    }
    body [size] = 0;
    *body_p = body;
    *size_p = size;
    return 0;
}

//  A request answered without looking at its body (404, 405) must still
//  get it off the connection, or the next request would be read from the
//  middle of it. Small bodies are read and dropped (within body_timeout);
//  past 64 KiB we close.

static void
s_discard_body (s_call_t *call)
{
    long long length = call->info->content_length;
    const char *encoding = mg_get_header (call->conn, "Transfer-Encoding");
    bool chunked = length < 0 && encoding && strcasestr (encoding, "chunked");
    if (length <= 0 && !chunked)
        return;
    if (length > 64 * 1024) {
        call->close = true;
        return;
    }
    char scratch [4096];
    size_t total = 0;
    int n;
    while ((n = s_read (call, scratch, sizeof scratch)) > 0)
        if ((total += (size_t) n) > 64 * 1024) {
            call->close = true;
            return;
        }
    if (n == S_READ_TIMEOUT)
        hgp_metrics_refused (call->gateway->metrics,
                             HGP_REFUSED_BODY_TIMEOUT);
    if (n < 0)
        call->close = true;
}

//  --------------------------------------------------------------------
//  Framing (RFC 9112 6.3)

//  Whether a Content-Length value is digits, or a list of the same digits
//  ("5, 5", which RFC 9110 8.6 lets a recipient take as 5); *value is it

static bool
s_content_length (const char *text, unsigned long long *value)
{
    bool have = false;
    const char *p = text;
    while (true) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p < '0' || *p > '9')
            return false;
        unsigned long long v = 0;
        while (*p >= '0' && *p <= '9') {
            if (v > 999999999999999ULL)
                return false;           //  no body of ours is a petabyte
            v = v * 10 + (unsigned long long) (*p++ - '0');
        }
        if (have && v != *value)
            return false;
        *value = v;
        have = true;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == 0)
            return true;
        if (*p++ != ',')
            return false;
    }
}

//  A request whose body length is ambiguous is refused before anything
//  reads it, and the connection is closed: civetweb 1.15 would take the
//  first Content-Length, or chunked over Content-Length, and run whatever
//  a front proxy that chose differently saw as body as the next request.
//  Ambiguous: Transfer-Encoding and Content-Length together, either given
//  twice with different values, or a Content-Length that is not a number
//  (or a list of one number). 0, or -1 and err.

static int
s_check_framing (s_call_t *call, hgp_error_t *err)
{
    const struct mg_request_info *info = call->info;
    unsigned long long length = 0;
    int lengths = 0, encodings = 0;
    for (int i = 0; i < info->num_headers; i++) {
        const char *name = info->http_headers [i].name;
        const char *value = info->http_headers [i].value;
        if (!name || !value)
            continue;
        if (strcasecmp (name, "Content-Length") == 0) {
            unsigned long long this_one = 0;
            if (!s_content_length (value, &this_one)
            ||  (lengths && this_one != length))
                goto ambiguous;
            length = this_one;
            lengths++;
        }
        else
        if (strcasecmp (name, "Transfer-Encoding") == 0)
            encodings++;
    }
    if (encodings > 1 || (encodings && lengths))
        goto ambiguous;
    return 0;

ambiguous:
    call->close = true;
    hgp_metrics_refused (call->gateway->metrics, HGP_REFUSED_FRAMING);
    return hgp_error_set (err, HGP_STATUS_BAD_REQUEST, "malformed",
        "the body's length is ambiguous (Transfer-Encoding with "
        "Content-Length, or Content-Length values that differ or are not "
        "a number); refused and the connection closed (RFC 9112 6.3)");
}

//  --------------------------------------------------------------------
//  Endpoints

//  A fresh request id for a request the client gave none (and for reads),
//  so a re-dispatch inside the bus stays idempotent. 32 hex digits like
//  hgp_process_random_id, but without its cost on the hot path (a UUID
//  costs four system calls, a third of this gateway's own per request on
//  a VM): each thread draws 128 random bits once, then counts. The first
//  64 bits tell threads and processes apart (a collision needs two of them
//  to draw the same 64 random bits), the counter makes every id of one
//  thread different.

static void
s_new_id (s_worker_t *worker, hgp_request_t *req)
{
    if (!worker->id_seeded) {
        char seed [33];
        hgp_process_random_id (seed, sizeof seed);
        char half [17];
        memcpy (half, seed, 16);
        half [16] = 0;
        worker->id_prefix = strtoull (half, NULL, 16);
        worker->id_counter = strtoull (seed + 16, NULL, 16);
        worker->id_seeded = true;
    }
    snprintf (req->id, sizeof req->id, "%016" PRIx64 "%016" PRIx64,
              worker->id_prefix, worker->id_counter++);
}

//  Send req over this thread's bus client, with a fresh id unless it has
//  one (a client's Idempotency-Key), and deadline timeout_ms. Returns the
//  reply, the worker's own: valid until its next call.

//
//  Admission: at most gateway/max_in_flight calls are on the bus at once.
//  Past it the reply is 503 busy at once, nothing is sent (so nothing is
//  applied: busy is definite), and s_send_error adds Retry-After. The
//  limit sits below the worker count so that workers stay free to answer
//  busy (and /metrics) in microseconds while the bus is full, and admitted
//  requests keep the latency the bus gives at that depth.

//
//  The same holds for connections: civetweb ties a worker to a keep-alive
//  connection for its life, so with every worker held, new connections
//  wait in its queue for seconds, however idle the bus. At most
//  gateway/max_connections connections keep a worker; the first request of
//  one more is answered busy at once and its connection closed, by one of
//  the workers kept in reserve above that limit.

static bool
s_admission_full (hgp_gateway_t *self)
{
    return atomic_load (&self->in_flight) >= self->max_in_flight;
}

static bool
s_connections_full (s_call_t *call)
{
    return call->worker && call->worker->first
        && atomic_load (&call->gateway->connections)
           > call->gateway->max_connections;
}

//  The worker's reply, set to 503 busy (and counted)

static const hgp_error_t *
s_busy (s_call_t *call)
{
    hgp_gateway_t *self = call->gateway;
    hgp_reply_t *rep = &call->worker->reply;
    hgp_metrics_refused (self->metrics, HGP_REFUSED_BUSY);
    hgp_reply_clear (rep);
    if (s_connections_full (call))
        hgp_error_set (&rep->error, HGP_STATUS_UNAVAILABLE, "busy",
            "the gateway holds %d connections, its limit "
            "(gateway/max_connections); retry after " S_RETRY_AFTER " s",
            self->max_connections);
    else
        hgp_error_set (&rep->error, HGP_STATUS_UNAVAILABLE, "busy",
            "the gateway has %d requests in flight, its limit "
            "(gateway/max_in_flight); retry after " S_RETRY_AFTER " s",
            self->max_in_flight);
    return &rep->error;
}

static hgp_reply_t *
s_bus_call (s_call_t *call, hgp_request_t *req, uint32_t timeout_ms)
{
    hgp_gateway_t *self = call->gateway;
    hgp_reply_t *rep = &call->worker->reply;
    if (atomic_fetch_add (&self->in_flight, 1) >= self->max_in_flight) {
        atomic_fetch_sub (&self->in_flight, 1);
        s_busy (call);
        return rep;
    }
    if (!req->id [0])
        s_new_id (call->worker, req);
    req->timeout_ms = timeout_ms;
    hgp_mux_call (call->worker->mux, req, rep);
    atomic_fetch_sub (&self->in_flight, 1);
    return rep;
}

static int
s_increment (s_call_t *call)
{
    hgp_gateway_t *self = call->gateway;
    char *body;
    size_t size;
    hgp_error_t err;
    if (s_read_body (call, self->body_limit, &body, &size, &err))
        return s_send_error (call, &err, NULL, NULL);
    hgp_request_t req;
    int rc = hgp_json_decode_increment (
        body, size, mg_get_header (call->conn, "Idempotency-Key"), &req, &err);
    free (body);
    if (rc)
        return s_send_error (call, &err, NULL, NULL);
    hgp_reply_t *rep = s_bus_call (call, &req, self->timeout);
    if (rep->error.status != HGP_STATUS_OK)
        return s_send_error (call, &rep->error, req.id, NULL);
    return s_send_json (call, HGP_STATUS_OK,
        hgp_json_encode_value (&req.key, rep->value, rep->replayed, req.id),
        NULL);
}

static int
s_get (s_call_t *call, const char *resource, size_t resource_len,
       const char *type)
{
    hgp_gateway_t *self = call->gateway;
    hgp_request_t req;
    hgp_request_init (&req);
    if (!hgp_id_valid (resource, resource_len))
        return s_fail (call, HGP_STATUS_BAD_REQUEST, "invalid",
            "resource_id in the path must be 1-128 bytes of "
            "A-Z a-z 0-9 _ - . :", NULL);
    if (!hgp_id_valid (type, strlen (type)))
        return s_fail (call, HGP_STATUS_BAD_REQUEST, "invalid",
            "counter_type in the path must be 1-128 bytes of "
            "A-Z a-z 0-9 _ - . :", NULL);
    req.op = HGP_OP_GET;
    memcpy (req.key.resource_id, resource, resource_len);
    req.key.resource_id [resource_len] = 0;
    strcpy (req.key.counter_type, type);
    hgp_reply_t *rep = s_bus_call (call, &req, self->timeout);
    if (rep->error.status != HGP_STATUS_OK)
        return s_send_error (call, &rep->error, NULL, NULL);
    return s_send_json (call, HGP_STATUS_OK,
        hgp_json_encode_value (&req.key, rep->value, false, NULL), NULL);
}

static int
s_batch (s_call_t *call)
{
    hgp_gateway_t *self = call->gateway;
    char *body;
    size_t size;
    hgp_error_t err;
    if (s_read_body (call, self->batch_body_limit, &body, &size, &err))
        return s_send_error (call, &err, NULL, NULL);
    hgp_request_t req;
    int rc = hgp_json_decode_batch (body, size, &req, &err);
    free (body);
    if (rc)
        return s_send_error (call, &err, NULL, NULL);
    hgp_reply_t *rep = s_bus_call (call, &req, self->timeout);
    int status;
    if (rep->error.status != HGP_STATUS_OK)
        status = s_send_error (call, &rep->error, NULL, NULL);
    else
        status = s_send_json (call, HGP_STATUS_OK,
                              hgp_json_encode_values (&req, rep), NULL);
    hgp_request_clear (&req);
    return status;
}

//  Analytics reads: top and stats go to an analytics actor (503 no_actor
//  when none is up, like any service without actors). The query string is
//  decoded by hgp_json like a body would be.

static int
s_rank (s_call_t *call, const char *counter_type)
{
    hgp_request_t req;
    hgp_error_t err;
    if (hgp_json_decode_rank (counter_type, call->info->query_string, &req,
                              &err))
        return s_send_error (call, &err, NULL, NULL);
    hgp_reply_t *rep = s_bus_call (call, &req, call->gateway->timeout);
    if (rep->error.status != HGP_STATUS_OK)
        return s_send_error (call, &rep->error, NULL, NULL);
    return s_send_json (call, HGP_STATUS_OK,
                        hgp_json_encode_ranking (req.window, rep), NULL);
}

static int
s_stats (s_call_t *call, const char *resource, size_t resource_len,
         const char *type, size_t type_len)
{
    hgp_request_t req;
    hgp_window_t window;
    hgp_error_t err;
    if (hgp_json_decode_stats (resource, resource_len, type, type_len,
                               call->info->query_string, &req, &window, &err))
        return s_send_error (call, &err, NULL, NULL);
    hgp_reply_t *rep = s_bus_call (call, &req, call->gateway->timeout);
    if (rep->error.status != HGP_STATUS_OK)
        return s_send_error (call, &rep->error, NULL, NULL);
    if (rep->bucket_ms == 0)
        return s_fail (call, HGP_STATUS_INTERNAL, "internal",
                       "the analytics actor sent stats without bucket_ms",
                       NULL);
    return s_send_json (call, HGP_STATUS_OK,
        hgp_json_encode_series (&req.key, window, zclock_time (), rep), NULL);
}

//  Health: each check really goes through the bus. bus: the broker answers
//  ping. actors: it sees a live "counter" actor. redis: a get of a probe
//  key is answered by an actor, which had to read Redis to answer it (503
//  "unavailable" from the actor means it cannot reach Redis). A check that
//  cannot run because an earlier one failed is "unknown".

static void
s_check_failed (json_t *checks, json_t *errors, const char *name,
                const hgp_error_t *error)
{
    json_object_set_new (checks, name, json_string ("fail"));
    json_t *message = json_string (error->message);
    json_object_set_new (errors, name, json_pack ("{s:s, s:i, s:o*}",
        "code", error->code, "status", error->status, "message", message));
}

static int
s_health (s_call_t *call)
{
    hgp_gateway_t *self = call->gateway;
    hgp_reply_t *rep;
    json_t *checks = json_pack ("{s:s, s:s, s:s}",
        "bus", "unknown", "actors", "unknown", "redis", "unknown");
    json_t *errors = json_object ();
    bool ok = false;

    hgp_request_t req;
    hgp_request_init (&req);
    req.op = HGP_OP_PING;
    rep = s_bus_call (call, &req, self->health_timeout);
    if (rep->error.status != HGP_STATUS_OK) {
        s_check_failed (checks, errors, "bus", &rep->error);
        goto done;
    }
    json_object_set_new (checks, "bus", json_string ("ok"));

    req.op = HGP_OP_ACTORS;
    req.id [0] = 0;                 //  each check its own request id
    rep = s_bus_call (call, &req, self->health_timeout);
    if (rep->error.status != HGP_STATUS_OK) {
        s_check_failed (checks, errors, "actors", &rep->error);
        goto done;
    }
    size_t live = 0;
    for (size_t i = 0; i < rep->nactors; i++)
        if (streq (rep->actors [i].service, "counter"))
            live++;
    if (live == 0) {
        hgp_error_t error;
        hgp_error_set (&error, HGP_STATUS_UNAVAILABLE, "no_actor",
                       "the broker sees no live counter actor");
        s_check_failed (checks, errors, "actors", &error);
        goto done;
    }
    json_object_set_new (checks, "actors", json_string ("ok"));

    req.op = HGP_OP_GET;
    strcpy (req.key.resource_id, HEALTH_RESOURCE);
    strcpy (req.key.counter_type, HEALTH_TYPE);
    req.id [0] = 0;
    rep = s_bus_call (call, &req, self->health_timeout);
    if (rep->error.status == HGP_STATUS_OK) {
        json_object_set_new (checks, "redis", json_string ("ok"));
        ok = true;
    }
    else
    if (streq (rep->error.code, "no_actor"))    //  it died since the listing
        s_check_failed (checks, errors, "actors", &rep->error);
    else
        s_check_failed (checks, errors, "redis", &rep->error);

done:;
    json_t *json = json_pack ("{s:s, s:o}", "status", ok ? "ok" : "fail",
                              "checks", checks);
    if (json && !ok)
        json_object_set (json, "errors", errors);
    json_decref (errors);
    char *text = json ? json_dumps (json, JSON_COMPACT) : NULL;
    json_decref (json);
    return s_send_json (call, ok ? HGP_STATUS_OK : HGP_STATUS_UNAVAILABLE,
                        text, NULL);
}

static int
s_metrics (s_call_t *call)
{
    char *text = hgp_metrics_render (call->gateway->metrics);
    if (!text)
        return s_fail (call, HGP_STATUS_INTERNAL, "internal",
                       "out of memory", NULL);
    s_send (call, HGP_STATUS_OK, METRICS_TYPE, text, strlen (text), NULL);
    free (text);
    return HGP_STATUS_OK;
}

//  --------------------------------------------------------------------
//  Routing

static int
s_dispatch (s_call_t *call, hgp_route_t *route_p)
{
    const char *method = call->info->request_method;
    //  With decode_url off the raw path is what we see: a %-escape is not
    //  an id character, so it cannot smuggle a '/' into an id
    const char *path = call->info->local_uri_raw ? call->info->local_uri_raw
                                                 : call->info->local_uri;
    if (!path)
        path = "";
    bool get = streq (method, "GET") || streq (method, "HEAD");
    bool post = streq (method, "POST");
    call->head = streq (method, "HEAD");
    //  Before routing, so nothing of an ambiguous body is ever read
    hgp_error_t err;
    if (s_check_framing (call, &err)) {
        *route_p = HGP_ROUTE_NONE;
        call->head = false;
        return s_send_error (call, &err, NULL, NULL);
    }

    if (streq (path, PATH_INCREMENT) || streq (path, PATH_BATCH)) {
        bool increment = streq (path, PATH_INCREMENT);
        *route_p = increment ? HGP_ROUTE_INCREMENT : HGP_ROUTE_BATCH;
        call->head = false;
        if (!post) {
            s_discard_body (call);
            return s_fail (call, 405, "method_not_allowed",
                           "use POST with a JSON body", "Allow: POST\r\n");
        }
        //  Everything is in the body; a parameter would be silently
        //  ignored (?delta=1000 applied 1), so it is refused like an
        //  unknown body field
        if (call->info->query_string) {
            s_discard_body (call);
            return s_fail (call, HGP_STATUS_BAD_REQUEST, "invalid",
                increment ? "POST /api/v1/counter/increment takes no query "
                            "parameters; send delta and the rest in the "
                            "JSON body"
                          : "POST /api/v1/counter/batch takes no query "
                            "parameters; send queries in the JSON body",
                NULL);
        }
        if (!call->worker || !call->worker->mux)
            return s_fail (call, HGP_STATUS_INTERNAL, "internal",
                           "worker thread has no bus client", NULL);
        //  Full already: busy before reading and decoding a body that
        //  could not be sent (the connection closes, so it can stay unread)
        if (s_admission_full (call->gateway))
            return s_send_error (call, s_busy (call), NULL, NULL);
        return increment ? s_increment (call) : s_batch (call);
    }
    if (streq (path, PATH_HEALTH) || streq (path, PATH_METRICS)) {
        bool health = streq (path, PATH_HEALTH);
        *route_p = health ? HGP_ROUTE_HEALTH : HGP_ROUTE_METRICS;
        if (!get) {
            s_discard_body (call);
            return s_fail (call, 405, "method_not_allowed", "use GET",
                           "Allow: GET, HEAD\r\n");
        }
        if (health && (!call->worker || !call->worker->mux))
            return s_fail (call, HGP_STATUS_INTERNAL, "internal",
                           "worker thread has no bus client", NULL);
        return health ? s_health (call) : s_metrics (call);
    }
    //  /api/v1/rank/{counter_type}: exactly one segment
    size_t prefix = strlen (PREFIX_RANK);
    if (strncmp (path, PREFIX_RANK, prefix) == 0
    &&  !strchr (path + prefix, '/')) {
        *route_p = HGP_ROUTE_RANK;
        if (!get) {
            s_discard_body (call);
            return s_fail (call, 405, "method_not_allowed", "use GET",
                           "Allow: GET, HEAD\r\n");
        }
        if (!call->worker || !call->worker->mux)
            return s_fail (call, HGP_STATUS_INTERNAL, "internal",
                           "worker thread has no bus client", NULL);
        return s_rank (call, path + prefix);
    }
    //  /api/v1/counter/{resource_id}/{counter_type}: exactly two segments,
    //  or three with "stats" last
    prefix = strlen (PREFIX_COUNTER);
    if (strncmp (path, PREFIX_COUNTER, prefix) == 0) {
        const char *resource = path + prefix;
        const char *slash = strchr (resource, '/');
        const char *third = slash ? strchr (slash + 1, '/') : NULL;
        if (third && streq (third + 1, SUFFIX_STATS)
        &&  !strchr (third + 1, '/')) {
            *route_p = HGP_ROUTE_STATS;
            if (!get) {
                s_discard_body (call);
                return s_fail (call, 405, "method_not_allowed", "use GET",
                               "Allow: GET, HEAD\r\n");
            }
            if (!call->worker || !call->worker->mux)
                return s_fail (call, HGP_STATUS_INTERNAL, "internal",
                               "worker thread has no bus client", NULL);
            return s_stats (call, resource, (size_t) (slash - resource),
                            slash + 1, (size_t) (third - slash - 1));
        }
        if (slash && !third) {
            *route_p = HGP_ROUTE_GET;
            if (!get) {
                s_discard_body (call);
                return s_fail (call, 405, "method_not_allowed", "use GET",
                               "Allow: GET, HEAD\r\n");
            }
            if (!call->worker || !call->worker->mux)
                return s_fail (call, HGP_STATUS_INTERNAL, "internal",
                               "worker thread has no bus client", NULL);
            return s_get (call, resource, (size_t) (slash - resource),
                          slash + 1);
        }
    }
    *route_p = HGP_ROUTE_UNMATCHED;
    call->head = false;
    s_discard_body (call);
    return s_fail (call, HGP_STATUS_NOT_FOUND, "not_found",
        "no such endpoint; see POST /api/v1/counter/increment, GET "
        "/api/v1/counter/{resource_id}/{counter_type}, POST "
        "/api/v1/counter/batch, GET /api/v1/rank/{counter_type}, GET "
        "/api/v1/counter/{resource_id}/{counter_type}/stats, GET "
        "/api/v1/health, GET /metrics", NULL);
}

//  civetweb calls this for every request; answering here (returning the
//  status) means civetweb adds nothing of its own

static int
s_begin_request (struct mg_connection *conn)
{
    int64_t started = s_usecs ();
    s_call_t call = {
        .conn = conn,
        .info = mg_get_request_info (conn),
        .worker = (s_worker_t *) mg_get_thread_pointer (conn)
    };
    call.gateway = (hgp_gateway_t *) call.info->user_data;
    //  Only a sign of activity for the housekeeper
    atomic_fetch_add_explicit (&call.gateway->requests, 1,
                               memory_order_relaxed);
    //  A connection counts from its first request until it closes
    if (call.worker) {
        call.worker->first = !call.worker->counted;
        if (!call.worker->counted) {
            atomic_fetch_add (&call.gateway->connections, 1);
            call.worker->counted = true;
        }
    }
    hgp_metrics_begin (call.gateway->metrics);
    hgp_route_t route = HGP_ROUTE_UNMATCHED;
    int status;
    //  One connection too many: busy, and it closes; health and /metrics
    //  are answered (monitoring must see an overload) but close too, so
    //  they keep no worker either
    const char *path = call.info->local_uri ? call.info->local_uri : "";
    if (s_connections_full (&call)
    &&  !streq (path, PATH_HEALTH) && !streq (path, PATH_METRICS)) {
        route = HGP_ROUTE_NONE;
        status = s_send_error (&call, s_busy (&call), NULL, NULL);
    }
    else {
        call.close = s_connections_full (&call);
        status = s_dispatch (&call, &route);
    }
    hgp_metrics_end (call.gateway->metrics, route, status,
                     s_usecs () - started);
    return status;
}

//  Answer a request civetweb itself refused or did not route, in our JSON,
//  and count it (route "none"); the connection closes after it

static void
s_edge_answer (struct mg_connection *conn, int status, const char *code,
               const char *message, const char *extra)
{
    hgp_gateway_t *self = (hgp_gateway_t *) mg_get_user_data (
        mg_get_context (conn));
    s_call_t call = {
        .conn = conn,
        .info = mg_get_request_info (conn),
        .gateway = self,
        .worker = (s_worker_t *) mg_get_thread_pointer (conn),
        .close = true
    };
    hgp_metrics_begin (self->metrics);
    if (status == 200)
        s_send (&call, status, JSON_TYPE, "", 0, extra);
    else {
        hgp_error_t error;
        hgp_error_set (&error, (uint16_t) status, code, "%s", message);
        s_send_json (&call, status, hgp_json_encode_error (&error, NULL),
                     extra);
    }
    hgp_metrics_end (self->metrics, HGP_ROUTE_NONE, status, 0);
    if (call.worker)
        call.worker->edge_answered = true;
}

//  civetweb's own errors (bad request line or headers, headers too large,
//  headers not complete in time), in the same JSON as ours. civetweb says
//  "Malformed message" when the headers were incomplete at request_timeout
//  (header_timeout), or the peer closed mid-headers (then nobody reads
//  this): we answer 408.

static int
s_http_error (struct mg_connection *conn, int status, const char *message)
{
    hgp_gateway_t *self = (hgp_gateway_t *) mg_get_user_data (
        mg_get_context (conn));
    if (status == 400 && streq (message, "Malformed message")) {
        hgp_metrics_refused (self->metrics, HGP_REFUSED_HEADER_TIMEOUT);
        char text [128];
        snprintf (text, sizeof text, "the request's headers did not arrive "
                  "within %d ms", self->header_timeout);
        s_edge_answer (conn, S_STATUS_REQUEST_TIMEOUT, "timeout", text, NULL);
    }
    else
        s_edge_answer (conn, status,
                       status == 413 ? "too_large"
                     : status >= 500 ? "unsupported" : "malformed",
                       message, NULL);
    return 0;
}

//  The answer to a request civetweb parsed but did not route

static void
s_answer_unrouted (struct mg_connection *conn,
                   const struct mg_request_info *info)
{
    const char *uri = info->request_uri;
    if (streq (uri, "*")) {
        if (streq (info->request_method, "OPTIONS"))
            s_edge_answer (conn, 200, NULL, NULL,
                           "Allow: GET, HEAD, POST\r\n");
        else
            s_edge_answer (conn, HGP_STATUS_BAD_REQUEST, "invalid",
                "the asterisk-form request target is only for OPTIONS",
                NULL);
    }
    else
    if (strncasecmp (uri, "http://", 7) == 0
    ||  strncasecmp (uri, "https://", 8) == 0)
        s_edge_answer (conn, S_STATUS_MISDIRECTED, "misdirected",
            "the absolute-form target names another server; this gateway "
            "is not a proxy", NULL);
}

//  civetweb 1.15 answers nothing at all to a request it parsed but does
//  not route: the asterisk-form (OPTIONS *) and an absolute-form URI for
//  another port. It closes the connection, calling this first, so we
//  answer here: OPTIONS * is 200 with the methods we serve in Allow, any
//  other method on * is 400, another server's URI is 421 Misdirected.
//  A request civetweb did route, or already answered (s_http_error), or
//  none at all (an idle keep-alive timing out) gets nothing more.

static void
s_connection_close (const struct mg_connection *const_conn)
{
    struct mg_connection *conn = (struct mg_connection *) const_conn;
    s_worker_t *worker = (s_worker_t *) mg_get_thread_pointer (conn);
    bool answered = worker && worker->edge_answered;
    if (worker && worker->counted) {
        hgp_gateway_t *gateway = (hgp_gateway_t *) mg_get_user_data (
            mg_get_context (conn));
        atomic_fetch_sub (&gateway->connections, 1);
        worker->counted = false;
    }
    const struct mg_request_info *info = mg_get_request_info (conn);
    if (!answered && info && !info->local_uri && info->request_uri
    &&  info->request_method && info->http_version
    &&  (streq (info->http_version, "1.0")
    ||   streq (info->http_version, "1.1")))
        s_answer_unrouted (conn, info);
    //  Last, since answering sets it: the worker's next connection starts
    //  unanswered
    if (worker)
        worker->edge_answered = false;
}

//  The housekeeper's signal: its only effect is to make a blocking poll
//  in the worker it was sent to return EINTR (installed without
//  SA_RESTART)

static void
s_on_interrupt (int signum)
{
}

//  Worker threads (type 1) get their own bus client; civetweb's master and
//  timer threads serve no requests and get none

static void *
s_init_thread (const struct mg_context *ctx, int thread_type)
{
    if (thread_type != 1)
        return NULL;
    hgp_gateway_t *self = (hgp_gateway_t *) mg_get_user_data (ctx);
    s_worker_t *worker = (s_worker_t *) zmalloc (sizeof (s_worker_t));
    assert (worker);
    hgp_reply_init (&worker->reply);
    worker->thread = pthread_self ();
    pthread_mutex_init (&worker->lock, NULL);
    worker->slot = atomic_fetch_add (&self->nworkers, 1);
    //  Workers share the few bus links, in turn
    worker->mux = self->muxes [worker->slot % self->nmuxes];
    if (worker->slot < self->threads)
        atomic_store (&self->workers [worker->slot], worker);

    //  The stack is libcivetweb's build-time choice; say what it is once
    pthread_attr_t attr;
    size_t stack = 0;
    if (pthread_getattr_np (pthread_self (), &attr) == 0) {
        pthread_attr_getstacksize (&attr, &stack);
        pthread_attr_destroy (&attr);
    }
    if (!atomic_exchange (&self->stack_logged, true)) {
        if (stack < HGP_JSON_STACK)
            zsys_warning ("gateway: worker threads have %zu-byte stacks, "
                          "less than the %d the JSON decoders are tested on "
                          "(HGP_JSON_STACK)", stack, HGP_JSON_STACK);
        else
            zsys_info ("gateway: worker threads have %zu-byte stacks", stack);
    }
    return worker;
}

static void
s_exit_thread (const struct mg_context *ctx, int thread_type, void *pointer)
{
    s_worker_t *worker = (s_worker_t *) pointer;
    if (worker) {
        hgp_gateway_t *self = (hgp_gateway_t *) mg_get_user_data (ctx);
        if (worker->slot < self->threads)
            atomic_store (&self->workers [worker->slot], NULL);
        hgp_reply_clear (&worker->reply);
        pthread_mutex_destroy (&worker->lock);
        free (worker);
    }
}

//  --------------------------------------------------------------------
//  The housekeeper: one thread, a tick every 100 ms
//
//  - Body deadlines: a worker past its read_deadline is sent SIGURG, every
//    tick until its read returns (see s_read).
//  - Memory: under load glibc's arenas grow to the peak and keep it; once
//    a second has passed without a new request, malloc_trim gives the
//    free pages back (once per quiet spell).

#define S_TICK_MSECS    100
#define S_QUIET_TICKS   10

static void
s_cut_late_reads (hgp_gateway_t *self)
{
    int64_t now = s_usecs ();
    for (int i = 0; i < self->threads; i++) {
        s_worker_t *worker = atomic_load (&self->workers [i]);
        if (!worker)
            continue;
        pthread_mutex_lock (&worker->lock);
        if (worker->read_deadline && now >= worker->read_deadline) {
            worker->interrupted = true;
            pthread_kill (worker->thread, SIGURG);
        }
        pthread_mutex_unlock (&worker->lock);
    }
}

static void *
s_housekeeper (void *args)
{
    hgp_gateway_t *self = (hgp_gateway_t *) args;
    uint64_t seen = atomic_load (&self->requests);
    int quiet = 0;
    bool trimmed = true;
    while (!atomic_load (&self->stopping)) {
        zclock_sleep (S_TICK_MSECS);
        s_cut_late_reads (self);
        uint64_t requests = atomic_load (&self->requests);
        if (requests != seen) {
            seen = requests;
            quiet = 0;
            trimmed = false;
        }
        else
        if (!trimmed && ++quiet >= S_QUIET_TICKS) {
            malloc_trim (0);
            trimmed = true;
        }
    }
    return NULL;
}

//  civetweb's first complaint in this thread: when mg_start2 fails its own
//  error text is generic ("Failed to setup server ports") and the reason
//  ("Address already in use") was only logged

static __thread char s_last_log [256];

static int
s_log_message (const struct mg_connection *conn, const char *message)
{
    zsys_warning ("civetweb: %s", message);
    if (!s_last_log [0])
        snprintf (s_last_log, sizeof s_last_log, "%s", message);
    return 1;
}

//  --------------------------------------------------------------------
//  Life cycle

//  Each worker holds a client HTTP socket, a DEALER TCP socket and the
//  DEALER's mailbox; with discovery a ROUTER with a TCP connection per
//  broker, its monitor's two PAIRs and the SUB for events, each with a
//  mailbox. Make sure that many descriptors fit (per_thread each).

static void
s_raise_fd_limit (int threads, int per_thread)
{
    rlim_t need = (rlim_t) threads * (rlim_t) per_thread + 256;
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) || limit.rlim_cur >= need)
        return;
    limit.rlim_cur = limit.rlim_max == RLIM_INFINITY || limit.rlim_max >= need
                   ? need : limit.rlim_max;
    setrlimit (RLIMIT_NOFILE, &limit);
    if (limit.rlim_cur < need)
        zsys_warning ("gateway: open files limited to %llu, %d threads need "
                      "about %llu: raise ulimit -n or lower gateway/threads",
                      (unsigned long long) limit.rlim_cur, threads,
                      (unsigned long long) need);
}

hgp_gateway_t *
hgp_gateway_new (hgp_config_t *config)
{
    assert (config);
    hgp_gateway_t *self = (hgp_gateway_t *) zmalloc (sizeof (hgp_gateway_t));
    assert (self);
    self->endpoint = strdup (hgp_config_str (config, "broker/client_endpoint",
                                             "tcp://127.0.0.1:5555"));
    self->bind = strdup (hgp_config_str (config, "gateway/bind", "127.0.0.1"));
    self->port = (int) hgp_config_int (config, "gateway/port", 8080, 0, 65535);
    self->threads = (int) hgp_config_int (config, "gateway/threads",
                                          1024, 1, 16384);
    self->nmuxes = (int) hgp_config_int (config, "gateway/bus_links",
                                         1, 1, 64);
    int queue = (int) hgp_config_int (config, "gateway/queue", 1024, 1, 65536);
    int backlog = (int) hgp_config_int (config, "gateway/backlog",
                                        1024, 1, 65535);
    int keep_alive = (int) hgp_config_int (config, "gateway/keep_alive",
                                           5000, 0, 3600000);
    self->body_limit = (size_t) hgp_config_int (
        config, "gateway/body_limit", 64 * 1024, 64, 16 * 1024 * 1024);
    self->batch_body_limit = (size_t) hgp_config_int (
        config, "gateway/batch_body_limit", 256 * 1024, 64, 16 * 1024 * 1024);
    self->timeout = (uint32_t) hgp_config_int (
        config, "gateway/timeout", HGP_TIMEOUT_DEFAULT, 1, HGP_TIMEOUT_MAX);
    self->health_timeout = (uint32_t) hgp_config_int (
        config, "gateway/health_timeout", 2000, 1, HGP_TIMEOUT_MAX);
    self->header_timeout = (int) hgp_config_int (
        config, "gateway/header_timeout", 3000, 100, 3600000);
    self->body_timeout = (int) hgp_config_int (
        config, "gateway/body_timeout", 5000, 100, 3600000);
    //  Both limits keep the same reserve of workers free to answer busy,
    //  health and /metrics at once: a 64th, at least 2 (1008 of 1024, so
    //  1000 keep-alive clients with a request each are all admitted)
    int reserve = self->threads / 64 > 2 ? self->threads / 64 : 2;
    int spare = self->threads > reserve ? self->threads - reserve : 1;
    self->max_in_flight = (int) hgp_config_int (
        config, "gateway/max_in_flight", spare, 1, 16384);
    self->max_connections = (int) hgp_config_int (
        config, "gateway/max_connections", spare, 1, 65536);
    if (hgp_config_error (config)) {
        zsys_error ("%s", hgp_config_error (config));
        hgp_gateway_destroy (&self);
        return NULL;
    }
    self->metrics = hgp_metrics_new (self->threads);
    assert (self->metrics);
    if (self->max_in_flight >= self->threads
    ||  self->max_connections >= self->threads)
        zsys_warning ("gateway: max_in_flight=%d or max_connections=%d is "
                      "not below threads=%d: no worker is left to answer "
                      "busy, so overload waits in civetweb's queue instead",
                      self->max_in_flight, self->max_connections,
                      self->threads);
    self->workers = (s_worker_t *_Atomic *) calloc (
        (size_t) self->threads, sizeof (s_worker_t *));
    assert (self->workers);
    //  s_read's deadline signal; without SA_RESTART so a poll returns EINTR
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_interrupt;
    sigemptyset (&action.sa_mask);
    sigaction (SIGURG, &action, NULL);

    char *problem = hgp_discovery_config_check (config);
    if (!problem)
        self->keys = hgp_keys_new (config, HGP_KEYS_CLIENT, &problem);
    if (problem) {
        zsys_error ("%s", problem);
        free (problem);
        hgp_gateway_destroy (&self);
        return NULL;
    }
    hgp_keys_log (self->keys, "hgp-gateway");
    //  Before any socket exists (see the .h): room for a discovery
    //  worker's four sockets (ROUTER, SUB, the monitor's two PAIRs)
    zsys_set_max_sockets ((size_t) self->threads * 4 + 64);

    //  One discovery actor for the whole process, which logs whether it
    //  hears beacons or why it uses the static endpoint. In static mode it
    //  goes at once and each worker has a plain DEALER, as without it.
    self->discovery = zactor_new (hgp_discovery_actor, config);
    assert (self->discovery);
    zstr_send (self->discovery, "MODE");
    char *mode = zstr_recv (self->discovery);
    bool beacon = mode && streq (mode, "beacon");
    zstr_free (&mode);
    self->events = zsys_sprintf ("inproc://hgp-gateway-discovery-%p",
                                 (void *) self);
    assert (self->events);
    zsock_send (self->discovery, "ss", "EVENTS", self->events);
    if (zsock_wait (self->discovery) != 0)
        beacon = false;             //  logged; cannot happen on inproc
    if (beacon) {
        self->where = zsys_sprintf ("beacons:%s:%s",
            hgp_config_str (config, "discovery/interface", ""),
            hgp_config_str (config, "discovery/port", "5670"));
        assert (self->where);
    }
    else {
        zactor_destroy (&self->discovery);
        zstr_free (&self->events);
    }
    s_raise_fd_limit (self->threads, beacon ? 8 : 3);
    //  Prove the static endpoint is usable once here rather than failing
    //  in every worker
    hgp_client_t *probe = beacon ? NULL
                                 : hgp_client_new (self->endpoint, self->keys);
    if (!beacon && !probe) {
        zsys_error ("gateway: broker/client_endpoint '%s' is not a valid "
                    "ZeroMQ endpoint", self->endpoint);
        hgp_gateway_destroy (&self);
        return NULL;
    }
    hgp_client_destroy (&probe);
    //  The bus links every worker's calls go over (lib/hgp_mux.h). With
    //  discovery each link follows the one actor: a link must not run its
    //  own (a thread and a UDP socket each).
    self->muxes = (hgp_mux_t **) zmalloc (self->nmuxes * sizeof (hgp_mux_t *));
    assert (self->muxes);
    for (int i = 0; i < self->nmuxes; i++) {
        self->muxes [i] = hgp_mux_new (self->endpoint, self->events,
                                       self->where, self->keys);
        if (!self->muxes [i]) {
            zsys_error ("gateway: cannot create a bus client for %s",
                        self->events ? self->where : self->endpoint);
            hgp_gateway_destroy (&self);
            return NULL;
        }
    }
    //  jansson seeds its hash function on first use; do it once, here,
    //  not racing in a thousand threads
    json_object_seed (0);

    char listen [300], threads [16], queue_s [16], backlog_s [16], keep [16];
    char header_ms [16];
    snprintf (header_ms, sizeof header_ms, "%d", self->header_timeout);
    snprintf (listen, sizeof listen, "%s:%d", self->bind, self->port);
    snprintf (threads, sizeof threads, "%d", self->threads);
    snprintf (queue_s, sizeof queue_s, "%d", queue);
    snprintf (backlog_s, sizeof backlog_s, "%d", backlog);
    snprintf (keep, sizeof keep, "%d", keep_alive);
    const char *options [] = {
        "listening_ports", listen,
        "num_threads", threads,
        "connection_queue", queue_s,
        "listen_backlog", backlog_s,
        "enable_keep_alive", "yes",
        "keep_alive_timeout_ms", keep,
        //  a client has this long to send a request's headers (civetweb
        //  checks it after each read, so a trickle is cut between one and
        //  two header_timeouts in); it is also civetweb's longest wait for
        //  one read of a body, which s_read bounds by body_timeout
        "request_timeout_ms", header_ms,
        "tcp_nodelay", "1",
        //  accept absolute-form targets for our own port (RFC 9112 3.2.2):
        //  the domain check wants authentication_domain, which we lack
        "enable_auth_domain_check", "no",
        //  we parse raw paths ourselves; see s_dispatch
        "decode_url", "no",
        NULL
    };
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    callbacks.begin_request = s_begin_request;
    callbacks.init_thread = s_init_thread;
    callbacks.exit_thread = s_exit_thread;
    callbacks.log_message = s_log_message;
    callbacks.http_error = s_http_error;
    callbacks.connection_close = s_connection_close;

    mg_init_library (0);
    self->library = true;
    char error_text [256] = "";
    unsigned error_code = 0;
    struct mg_error_data error = { &error_code, error_text, sizeof error_text };
    struct mg_init_data init = { &callbacks, self, options };
    s_last_log [0] = 0;
    self->web = mg_start2 (&init, &error);
    if (!self->web) {
        zsys_error ("gateway: cannot listen on %s: %s", listen,
                    s_last_log [0] ? s_last_log
                  : error_text [0] ? error_text : "civetweb failed to start");
        hgp_gateway_destroy (&self);
        return NULL;
    }
    struct mg_server_port ports [4];
    memset (ports, 0, sizeof ports);
    if (mg_get_server_ports (self->web, 4, ports) > 0)
        self->port = ports [0].port;
    if (pthread_create (&self->housekeeper, NULL, s_housekeeper, self)) {
        zsys_error ("gateway: cannot start the housekeeping thread");
        hgp_gateway_destroy (&self);
        return NULL;
    }
    self->housekeeping = true;
    zsys_info ("gateway: listening on http://%s:%d, bus at %s; threads=%d "
               "bus_links=%d max_in_flight=%d max_connections=%d queue=%d "
               "backlog=%d "
               "keep_alive=%dms "
               "header_timeout=%dms body_timeout=%dms timeout=%ums "
               "body_limit=%zu batch_body_limit=%zu",
               self->bind, self->port, self->events ? self->where
                                                    : self->endpoint,
               self->threads, self->nmuxes, self->max_in_flight,
               self->max_connections, queue, backlog,
               keep_alive, self->header_timeout, self->body_timeout,
               self->timeout, self->body_limit, self->batch_body_limit);
    return self;
}

//  mg_stop sets a stop flag and joins civetweb's master thread, which only
//  looks at the flag when its poll on the listening socket returns: after
//  a connection or after 2 s (civetweb's SOCKET_TIMEOUT_QUANTUM). So we run
//  mg_stop in a helper thread and knock on our own port until it is done,
//  which makes SIGTERM take milliseconds instead of 2 s.

typedef struct {
    struct mg_context *web;         /* server to stop                       */
    atomic_bool done;               /* mg_stop returned                     */
} s_stopper_t;

static void *
s_stopper (void *args)
{
    s_stopper_t *stopper = (s_stopper_t *) args;
    mg_stop (stopper->web);         //  joins every worker: exit_thread ran
    atomic_store (&stopper->done, true);
    return NULL;
}

static void
s_knock (hgp_gateway_t *self)
{
    struct sockaddr_in addr;
    memset (&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons ((uint16_t) self->port);
    if (inet_pton (AF_INET, self->bind, &addr.sin_addr) != 1
    ||  addr.sin_addr.s_addr == htonl (INADDR_ANY))
        addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        connect (fd, (struct sockaddr *) &addr, sizeof addr);
        close (fd);
    }
}

static void
s_stop_web (hgp_gateway_t *self)
{
    s_stopper_t stopper = { self->web, false };
    pthread_t thread;
    if (pthread_create (&thread, NULL, s_stopper, &stopper)) {
        mg_stop (self->web);
        return;
    }
    while (!atomic_load (&stopper.done)) {
        s_knock (self);
        zclock_sleep (20);
    }
    pthread_join (thread, NULL);
}

void
hgp_gateway_destroy (hgp_gateway_t **self_p)
{
    assert (self_p);
    hgp_gateway_t *self = *self_p;
    if (self) {
        //  The housekeeper first: it looks at workers, which mg_stop frees
        //  (reads in progress end on civetweb's stop flag instead)
        if (self->housekeeping) {
            atomic_store (&self->stopping, true);
            pthread_join (self->housekeeper, NULL);
        }
        if (self->web)
            s_stop_web (self);
        if (self->library)
            mg_exit_library ();
        //  After the workers, whose calls they carry
        for (int i = 0; self->muxes && i < self->nmuxes; i++)
            hgp_mux_destroy (&self->muxes [i]);
        free (self->muxes);
        //  After the links, which followed it
        zactor_destroy (&self->discovery);
        hgp_keys_destroy (&self->keys);
        zstr_free (&self->events);
        zstr_free (&self->where);
        hgp_metrics_destroy (&self->metrics);
        free ((void *) self->workers);
        free (self->endpoint);
        free (self->bind);
        free (self);
        *self_p = NULL;
    }
}

int
hgp_gateway_port (hgp_gateway_t *self)
{
    assert (self);
    return self->port;
}
