/*  hgp_gateway.c - the HTTP gateway: event loops, routes, bus calls (see .h)
 *
 *  gateway/threads event loops (default 1), each a thread that owns an
 *  HTTP front (hgp_http.h: every connection it accepted, non-blocking) and
 *  a bus link (hgp_mux.h over one hgp_client: a DEALER to the broker, or
 *  with discovery a client that follows the process's one discovery
 *  actor). The loops share the listening socket. A request is decoded
 *  (hgp_json.h), becomes one bus call (the health check three, one after
 *  the other), and is answered from the call's callback: nothing waits,
 *  so a loop carries as many requests at once as admission allows, and a
 *  slow client or a slow bus costs memory, not a thread.
 *
 *  What the edge bounds (issue 9), and where:
 *  - framing, heads, timeouts, OPTIONS * and absolute-form targets: the
 *    front (hgp_http.h, hgp_http_parser.h);
 *  - admission: past gateway/max_in_flight bus calls at once (all loops),
 *    503 busy with Retry-After at once, nothing sent; the first request of
 *    a connection opened past gateway/max_connections: 503 busy and the
 *    connection closed (health and /metrics are answered, and closed);
 *  - JSON nesting (hgp_json.h), body limits per route, query parameters on
 *    POST routes (400).
 *
 *  Everything is answered in one write: a small response is built in one
 *  buffer, header and body, so a keep-alive client never waits on Nagle
 *  (TCP_NODELAY is set as well, for the large ones).
 */
#define _GNU_SOURCE
#include "hgp_gateway.h"
#include "hgp_client.h"
#include "hgp_mux.h"
#include "hgp_discovery.h"
#include "hgp_apikeys.h"
#include "hgp_breaker.h"
#include "hgp_callstats.h"
#include "hgp_http.h"
#include "hgp_json.h"
#include "hgp_ratelimit.h"
#include "hgp_metrics.h"
#include "hgp_announcer.h"
#include "hgp_exporter.h"
#include "hgp_prom.h"
#include "hgp_trace.h"
#include "hgp_process.h"
#include <jansson.h>
#include <arpa/inet.h>
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <strings.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PREFIX_COUNTER  "/api/v1/counter/"
#define PATH_INCREMENT  "/api/v1/counter/increment"
#define PATH_BATCH      "/api/v1/counter/batch"
#define PATH_HEALTH     "/api/v1/health"
#define PREFIX_RANK     "/api/v1/rank/"
#define SUFFIX_STATS    "stats"
#define SUFFIX_UNIQUES  "uniques"
#define PATH_METRICS    "/metrics"

//  The key the health check reads through an actor to prove Redis works
#define HEALTH_RESOURCE "hgp_health"
#define HEALTH_TYPE     "probe"

#define JSON_TYPE       "application/json"
#define METRICS_TYPE    "text/plain; version=0.0.4; charset=utf-8"

//  Seconds a client told 503 busy should wait (Retry-After)
#define S_RETRY_AFTER   "1"

//  Bytes of a request head (431 beyond)
#define S_HEAD_LIMIT    (16 * 1024)

//  Stack of a loop thread: the JSON decoders run on it (HGP_JSON_STACK is
//  what they are fuzzed on; this is well above it)
#define S_LOOP_STACK    (1024 * 1024)

//  ms without a request before a loop gives free memory back
#define S_QUIET_MS      1000

//  Counters a loop remembers for stale reads before it starts again
#define S_STALE_KEYS    65536

//  ms a stopping loop waits for calls in flight before it answers them 503
#define S_DRAIN_MS      2000

typedef struct _s_loop_t s_loop_t;

//  One request being answered: taken from its loop's pool when the head
//  arrives, back when the answer is written
typedef struct _s_call_t s_call_t;
struct _s_call_t {
    s_loop_t *loop;
    hgp_http_req_t *http;           /* the front's request                  */
    hgp_route_t route;
    int64_t started;                /* usecs, for the latency histogram     */
    hgp_request_t req;              /* the bus request                      */
    hgp_reply_t rep;                /* its reply, reused by every call      */
    hgp_window_t window;            /* stats: the window asked for          */
    int step;                       /* health: which check is running       */
    json_t *checks;                 /* health: what each check found        */
    json_t *errors;
    bool admitted;                  /* counted in in_flight                 */
    hgp_breaker_t *breaker;         /* to report the answer to, if any      */
    int retry_after;                /* s, for Retry-After on an error; 0: none */
    char limits [160];              /* RateLimit-* headers for the answer   */
    char key_name [HGP_APIKEY_NAME_MAX + 1];    /* the API key's, or ""     */
    char traceparent [HGP_TRACE_SIZE];  /* ours, once on the bus; or ""     */
    s_call_t *next;                 /* free list                            */
};

struct _s_loop_t {
    hgp_gateway_t *gateway;
    pthread_t thread;
    bool started;                   /* the thread was created               */
    bool failed;                    /* it could not set up                  */
    sem_t ready;                    /* posted once set up (or failed)       */
    int wake;                       /* eventfd: stop                        */
    hgp_http_t *http;
    hgp_mux_t *mux;
    hgp_callstats_t *callstats;     /* our calls as counters; NULL: off     */
    s_call_t *free;                 /* calls to reuse                       */
    hgp_breaker_t breakers [HGP_ROUTE_COUNT];   /* one per route            */
    zhashx_t *stale;                /* "resource type" -> last value seen   */
    uint64_t id_prefix;             /* request ids: random, per loop        */
    uint64_t id_counter;            /* ... counting from a random start     */
    uint64_t requests;              /* heads seen, for the memory trim      */
    uint64_t seen;                  /* ... at the last look                 */
    int64_t quiet_since;            /* zclock_mono when it last changed     */
    bool trimmed;                   /* memory given back since then         */
};

struct _hgp_gateway_t {
    hgp_metrics_t *metrics;         /* request counters and histograms      */
    hgp_prom_t *prom;               /* process_* and build info for them    */
    hgp_announcer_t *announcer;     /* tells brokers where /metrics is      */
    char *endpoint;                 /* broker client endpoint (static mode) */
    hgp_keys_t *keys;               /* client certificate, shared by loops  */
    zactor_t *discovery;            /* the one discovery actor; NULL: static */
    char *events;                   /* its EVENTS endpoint, for the loops   */
    char *where;                    /* "beacons:IFACE:PORT", for messages   */
    char *bind;                     /* address listened on                  */
    int port;                       /* port listened on                     */
    int listener;                   /* the listening socket                 */
    int nloops;                     /* gateway/threads                      */
    s_loop_t *loops;
    hgp_http_settings_t http;       /* for the fronts                       */
    size_t body_limit;              /* bytes in an increment body           */
    size_t batch_body_limit;        /* bytes in a batch body                */
    uint32_t timeout;               /* bus deadline of a request, ms        */
    uint32_t health_timeout;        /* bus deadline of a health check, ms   */
    int breaker_failures;           /* outages in a row that open a breaker */
    int breaker_ms;                 /* ... for this long                    */
    bool stale_reads;               /* serve recent values in an outage     */
    bool call_stats;                /* count our calls as hgp counters      */
    int64_t stale_max_age;          /* ... at most this old, ms             */
    int max_in_flight;              /* bus calls at once; past it: 503 busy */
    atomic_int connections;         /* open connections, all loops          */
    atomic_llong body_bytes;        /* request bodies being read, bytes     */
    atomic_int in_flight;           /* bus calls now, all loops             */
    atomic_bool stopping;           /* tells the loops to go                */
    char *api_keys_path;            /* gateway/api_keys; NULL: no keys      */
    pthread_mutex_t keys_lock;      /* guards api_keys (reloads swap it)    */
    hgp_apikeys_t *api_keys;
    hgp_ratelimit_t *ratelimit;
};

static int64_t
s_usecs (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


/*  --------------------------------------------------------------------
 *  Calls: taken per request, answered once
 */

static s_call_t *
s_call_take (s_loop_t *loop, hgp_http_req_t *http)
{
    s_call_t *call = loop->free;
    if (call)
        loop->free = call->next;
    else {
        call = (s_call_t *) zmalloc (sizeof (s_call_t));
        assert (call);
        hgp_reply_init (&call->rep);
    }
    call->loop = loop;
    call->http = http;
    call->route = HGP_ROUTE_UNMATCHED;
    call->started = s_usecs ();
    call->step = 0;
    call->admitted = false;
    call->breaker = NULL;
    call->retry_after = 0;
    call->limits [0] = 0;
    call->key_name [0] = 0;
    call->traceparent [0] = 0;
    call->next = NULL;
    hgp_request_init (&call->req);
    hgp_http_req_set_user (http, call);
    hgp_metrics_begin (loop->gateway->metrics);
    return call;
}

static void
s_call_give (s_call_t *call)
{
    s_loop_t *loop = call->loop;
    hgp_request_clear (&call->req);
    hgp_reply_clear (&call->rep);
    json_decref (call->checks);
    json_decref (call->errors);
    call->checks = call->errors = NULL;
    call->http = NULL;
    call->next = loop->free;
    loop->free = call;
}

//  The routes whose calls are counted as api.<route> (the API's own, not
//  health, metrics or what matched no route)
static bool
s_counted_route (hgp_route_t route)
{
    return route == HGP_ROUTE_INCREMENT || route == HGP_ROUTE_GET
        || route == HGP_ROUTE_BATCH || route == HGP_ROUTE_RANK
        || route == HGP_ROUTE_STATS || route == HGP_ROUTE_UNIQUES;
}

//  Write the answer, count it, and give the call back
static void
s_send (s_call_t *call, int status, const char *type, const char *body,
        size_t size, const char *extra)
{
    hgp_gateway_t *self = call->loop->gateway;
    hgp_metrics_end (self->metrics, call->route, status,
                     s_usecs () - call->started);
    if (call->loop->callstats && s_counted_route (call->route))
        hgp_callstats_count (call->loop->callstats,
                             hgp_metrics_route_name (call->route),
                             call->key_name, status);
    char headers [512];
    if (call->limits [0] || call->traceparent [0]) {
        snprintf (headers, sizeof headers, "%s%s%s%s%s", call->limits,
                  call->traceparent [0] ? "traceparent: " : "",
                  call->traceparent, call->traceparent [0] ? "\r\n" : "",
                  extra ? extra : "");
        extra = headers;
    }
    if (hgp_trace_sampled (call->traceparent))
        zsys_info ("trace %s: gateway answered %d", call->traceparent, status);
    hgp_http_reply (call->http, status, type, body, size, extra);
    s_call_give (call);
}

//  Send a JSON text made by hgp_json (NULL: it ran out of memory) and free it
static void
s_send_json (s_call_t *call, int status, char *json, const char *extra)
{
    if (!json) {
        static const char oom [] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        s_send (call, HGP_STATUS_INTERNAL, JSON_TYPE, oom, sizeof oom - 1,
                NULL);
        return;
    }
    s_send (call, status, JSON_TYPE, json, strlen (json), extra);
    free (json);
}

//  An error as {"error": {code, message}}; the bus's status is the HTTP
//  status, except that a status which is not an error cannot be one
static void
s_send_error (s_call_t *call, const hgp_error_t *error,
              const char *request_id, const char *extra)
{
    int status = error->status;
    if (status < 400 || status > 599)
        status = HGP_STATUS_INTERNAL;
    //  busy (ours or the broker's), an open breaker: say when to come back
    char retry [48];
    if (call->retry_after > 0 && !extra) {
        snprintf (retry, sizeof retry, "Retry-After: %d\r\n", call->retry_after);
        extra = retry;
    }
    if (status == HGP_STATUS_UNAVAILABLE && streq (error->code, "busy")
    &&  !extra)
        extra = "Retry-After: " S_RETRY_AFTER "\r\n";
    if (status == HGP_STATUS_INTERNAL)
        zsys_warning ("gateway: %s %s: 500 %s: %s",
                      hgp_http_req_method (call->http),
                      hgp_http_req_path (call->http), error->code,
                      error->message);
    s_send_json (call, status, hgp_json_encode_error (error, request_id),
                 extra);
}

static void
s_fail (s_call_t *call, uint16_t status, const char *code,
        const char *message, const char *extra)
{
    hgp_error_t error;
    hgp_error_set (&error, status, code, "%s", message);
    s_send_error (call, &error, NULL, extra);
}


/*  --------------------------------------------------------------------
 *  The bus
 */

//  A fresh request id for a request the client gave none (and for reads),
//  so a re-dispatch inside the bus stays idempotent. 32 hex digits like
//  hgp_process_random_id, but without its cost on the hot path (a UUID
//  costs four system calls): each loop draws 128 random bits once, then
//  counts. The first 64 bits tell loops and processes apart (a collision
//  needs two of them to draw the same 64 random bits), the counter makes
//  every id of one loop different.
static void
s_new_id (s_loop_t *loop, hgp_request_t *req)
{
    snprintf (req->id, sizeof req->id, "%016" PRIx64 "%016" PRIx64,
              loop->id_prefix, loop->id_counter++);
}

//  Our hop of the trace: the client's traceparent with us as the parent,
//  or a new trace, not sampled (lib/hgp_trace.h)
static void
s_trace_begin (s_call_t *call)
{
    s_loop_t *loop = call->loop;
    const char *given = hgp_http_req_header (call->http, "traceparent");
    char trace_id [33];
    bool sampled = false;
    if (!hgp_trace_parse (given, trace_id, &sampled))
        snprintf (trace_id, sizeof trace_id, "%016" PRIx64 "%016" PRIx64,
                  loop->id_prefix, loop->id_counter++);
    uint64_t span = (loop->id_prefix ^ (loop->id_counter++ * 0x9e3779b97f4a7c15ULL));
    hgp_trace_format (call->traceparent, trace_id, span, sampled);
    if (sampled)
        zsys_info ("trace %s: gateway %s %s (request %s)", call->traceparent,
                   hgp_http_req_method (call->http),
                   hgp_http_req_path (call->http), call->req.id);
}

//  503 busy, counted, for a call refused by admission
static void
s_busy (s_call_t *call)
{
    hgp_gateway_t *self = call->loop->gateway;
    hgp_metrics_refused (self->metrics, HGP_REFUSED_BUSY);
    hgp_error_t error;
    hgp_error_set (&error, HGP_STATUS_UNAVAILABLE, "busy",
        "the gateway has %d requests in flight, its limit "
        "(gateway/max_in_flight); retry after " S_RETRY_AFTER " s",
        self->max_in_flight);
    //  A client that retries at once, ignoring Retry-After, would turn
    //  these answers into the overload: its next request waits unread
    //  for gateway/busy_pause ms
    hgp_http_req_set_pause (call->http);
    s_send_error (call, &error, NULL, NULL);
}

//  Admission: at most gateway/max_in_flight calls are on the bus at once,
//  over all loops. Past it the answer is 503 busy at once and nothing is
//  sent (so nothing is applied: busy is definite), so admitted requests
//  keep the latency the bus gives at that depth. The connection stays
//  open: a busy answer costs a read and a write, a close would cost both
//  sides a new connection per try (measured: 4x fewer busy answers a
//  second, and admitted p99 up by half, under a 320-client flood).
static bool
s_admit (s_call_t *call)
{
    hgp_gateway_t *self = call->loop->gateway;
    if (call->admitted)
        return true;
    if (atomic_fetch_add (&self->in_flight, 1) >= self->max_in_flight) {
        atomic_fetch_sub (&self->in_flight, 1);
        return false;
    }
    call->admitted = true;
    return true;
}

static void
s_release (s_call_t *call)
{
    if (call->breaker) {
        hgp_breaker_report (call->breaker, &call->rep.error, zclock_mono ());
        call->breaker = NULL;
    }
    if (call->admitted) {
        atomic_fetch_sub (&call->loop->gateway->in_flight, 1);
        call->admitted = false;
    }
}

//  Send call->req with a fresh id unless it has one (a client's
//  Idempotency-Key) and deadline timeout_ms; done (call) runs with the
//  reply in call->rep. The caller admitted the call.
static void
s_bus_call (s_call_t *call, uint32_t timeout_ms, hgp_mux_done_fn *done)
{
    //  An open breaker answers for the bus (health always asks it)
    if (call->route != HGP_ROUTE_HEALTH) {
        hgp_breaker_t *breaker = &call->loop->breakers [call->route];
        hgp_error_t error;
        int retry_ms = 0;
        if (!hgp_breaker_allow (breaker, zclock_mono (), &error, &retry_ms)) {
            //  answered as the bus would have: the route's callback decides
            //  (a read may be served stale)
            hgp_reply_clear (&call->rep);
            call->rep.error = error;
            call->retry_after = (retry_ms + 999) / 1000;
            done (call);
            return;
        }
        call->breaker = breaker;
    }
    if (!call->req.id [0])
        s_new_id (call->loop, &call->req);
    if (!call->traceparent [0])
        s_trace_begin (call);
    snprintf (call->req.trace, sizeof call->req.trace, "%s", call->traceparent);
    call->req.timeout_ms = timeout_ms;
    hgp_mux_call (call->loop->mux, &call->req, &call->rep, done, call);
}

static bool
s_admission_full (hgp_gateway_t *self)
{
    return atomic_load (&self->in_flight) >= self->max_in_flight;
}


//  A request decoded (rc 0, else err says why): admit it and send it, with
//  done to answer it
static void
s_send_decoded (s_call_t *call, int rc, const hgp_error_t *err,
                hgp_mux_done_fn *done)
{
    if (rc)
        s_send_error (call, err, NULL, NULL);
    else
    if (!s_admit (call))
        s_busy (call);
    else
        s_bus_call (call, call->loop->gateway->timeout, done);
}


/*  --------------------------------------------------------------------
 *  Endpoints
 */

//  Stale reads: the last value each loop saw of a counter (from a read or
//  an increment's answer), served when a read cannot be answered fresh
//  because of an outage, if it is at most gateway/stale_max_age old.
//  Bounded: the table starts empty again at S_STALE_KEYS counters.

typedef struct {
    int64_t value;
    int64_t as_of_ms;               /* wall clock, when it was the value    */
} s_stale_t;

static void
s_stale_key (const hgp_key_t *key, char *out, size_t size)
{
    snprintf (out, size, "%s %s", key->resource_id, key->counter_type);
}

static void
s_stale_note (s_call_t *call)
{
    s_loop_t *loop = call->loop;
    if (!loop->stale)
        return;
    char key [2 * HGP_ID_MAX + 2];
    s_stale_key (&call->req.key, key, sizeof key);
    s_stale_t *entry = (s_stale_t *) zhashx_lookup (loop->stale, key);
    if (!entry) {
        if (zhashx_size (loop->stale) >= S_STALE_KEYS)
            zhashx_purge (loop->stale);
        entry = (s_stale_t *) zmalloc (sizeof (s_stale_t));
        zhashx_insert (loop->stale, key, entry);
    }
    entry->value = call->rep.value;
    entry->as_of_ms = zclock_time ();
}

//  A read that failed for an outage: the last value, if recent; true
//  when answered
static bool
s_stale_answer (s_call_t *call)
{
    s_loop_t *loop = call->loop;
    if (!loop->stale || call->req.op != HGP_OP_GET
    ||  !hgp_breaker_is_outage (&call->rep.error))
        return false;
    char key [2 * HGP_ID_MAX + 2];
    s_stale_key (&call->req.key, key, sizeof key);
    s_stale_t *entry = (s_stale_t *) zhashx_lookup (loop->stale, key);
    if (!entry || zclock_time () - entry->as_of_ms > loop->gateway->stale_max_age)
        return false;
    json_t *json = json_pack ("{s:s, s:s, s:I, s:b, s:I}",
        "resource_id", call->req.key.resource_id,
        "counter_type", call->req.key.counter_type,
        "value", (json_int_t) entry->value, "stale", 1,
        "as_of_ms", (json_int_t) entry->as_of_ms);
    char *text = json ? json_dumps (json, JSON_COMPACT) : NULL;
    json_decref (json);
    s_send_json (call, HGP_STATUS_OK, text, NULL);
    return true;
}

static void
s_value_done (void *arg)
{
    s_call_t *call = (s_call_t *) arg;
    s_release (call);
    if (call->rep.error.status == HGP_STATUS_OK)
        s_stale_note (call);
    if (call->rep.error.status != HGP_STATUS_OK && s_stale_answer (call))
        return;
    if (call->rep.error.status != HGP_STATUS_OK)
        s_send_error (call, &call->rep.error,
                      call->req.op == HGP_OP_INCR ? call->req.id : NULL, NULL);
    else
        s_send_json (call, HGP_STATUS_OK,
            hgp_json_encode_value (&call->req.key, call->rep.value,
                                   call->rep.replayed,
                                   call->req.op == HGP_OP_INCR ? call->req.id
                                                               : NULL),
            NULL);
}

static void
s_increment (s_call_t *call, const char *body, size_t size)
{
    hgp_error_t err;
    int rc = hgp_json_decode_increment (body, size,
        hgp_http_req_header (call->http, "Idempotency-Key"), &call->req, &err);
    s_send_decoded (call, rc, &err, s_value_done);
}

static void
s_get (s_call_t *call, const char *resource, size_t resource_len,
       const char *type)
{
    if (!hgp_id_valid (resource, resource_len)) {
        s_fail (call, HGP_STATUS_BAD_REQUEST, "invalid",
            "resource_id in the path must be 1-128 bytes of "
            "A-Z a-z 0-9 _ - . :", NULL);
        return;
    }
    if (!hgp_id_valid (type, strlen (type))) {
        s_fail (call, HGP_STATUS_BAD_REQUEST, "invalid",
            "counter_type in the path must be 1-128 bytes of "
            "A-Z a-z 0-9 _ - . :", NULL);
        return;
    }
    if (!s_admit (call)) {
        s_busy (call);
        return;
    }
    call->req.op = HGP_OP_GET;
    memcpy (call->req.key.resource_id, resource, resource_len);
    call->req.key.resource_id [resource_len] = 0;
    strcpy (call->req.key.counter_type, type);
    s_bus_call (call, call->loop->gateway->timeout, s_value_done);
}

//  The answer of a call whose success is one JSON text made by encode
static void
s_answer (s_call_t *call, char *(*encode) (s_call_t *call))
{
    s_release (call);
    if (call->rep.error.status != HGP_STATUS_OK)
        s_send_error (call, &call->rep.error, NULL, NULL);
    else
        s_send_json (call, HGP_STATUS_OK, encode (call), NULL);
}

static char *
s_encode_values (s_call_t *call)
{
    return hgp_json_encode_values (&call->req, &call->rep);
}

static void
s_batch_done (void *arg)
{
    s_answer ((s_call_t *) arg, s_encode_values);
}

static void
s_batch (s_call_t *call, const char *body, size_t size)
{
    hgp_error_t err;
    int rc = hgp_json_decode_batch (body, size, &call->req, &err);
    s_send_decoded (call, rc, &err, s_batch_done);
}

//  Analytics reads: top, stats and uniques go to an analytics actor (503
//  no_actor when none is up, like any service without actors). The query
//  string is decoded by hgp_json like a body would be.

static char *
s_encode_ranking (s_call_t *call)
{
    return hgp_json_encode_ranking (call->req.key.counter_type,
                                    call->req.window, &call->rep);
}

static void
s_rank_done (void *arg)
{
    s_answer ((s_call_t *) arg, s_encode_ranking);
}

static void
s_rank (s_call_t *call, const char *counter_type)
{
    hgp_error_t err;
    int rc = hgp_json_decode_rank (counter_type, hgp_http_req_query (call->http),
                                   &call->req, &err);
    s_send_decoded (call, rc, &err, s_rank_done);
}

static void
s_stats_done (void *arg)
{
    s_call_t *call = (s_call_t *) arg;
    s_release (call);
    if (call->rep.error.status != HGP_STATUS_OK)
        s_send_error (call, &call->rep.error, NULL, NULL);
    else
    if (call->rep.bucket_ms == 0)
        s_fail (call, HGP_STATUS_INTERNAL, "internal",
                "the analytics actor sent stats without bucket_ms", NULL);
    else
        s_send_json (call, HGP_STATUS_OK,
            hgp_json_encode_series (&call->req.key, call->window,
                                    zclock_time (), &call->rep), NULL);
}

static void
s_stats (s_call_t *call, const char *resource, size_t resource_len,
         const char *type, size_t type_len)
{
    hgp_error_t err;
    int rc = hgp_json_decode_stats (resource, resource_len, type, type_len,
                                    hgp_http_req_query (call->http), &call->req,
                                    &call->window, &err);
    s_send_decoded (call, rc, &err, s_stats_done);
}

static char *
s_encode_uniques (s_call_t *call)
{
    return hgp_json_encode_uniques (&call->req.key, &call->rep);
}

static void
s_uniques_done (void *arg)
{
    s_answer ((s_call_t *) arg, s_encode_uniques);
}

static void
s_uniques (s_call_t *call, const char *resource, size_t resource_len,
           const char *type, size_t type_len)
{
    hgp_error_t err;
    int rc = hgp_json_decode_uniques (resource, resource_len, type, type_len,
                                      hgp_http_req_query (call->http),
                                      &call->req, &err);
    s_send_decoded (call, rc, &err, s_uniques_done);
}

//  Health: each check really goes through the bus, one after the other.
//  bus: the broker answers ping. actors: it sees a live "counter" actor.
//  redis: a get of a probe key is answered by an actor, which had to read
//  Redis to answer it (503 "unavailable" from the actor means it cannot
//  reach Redis). A check that cannot run because an earlier one failed is
//  "unknown".

static void
s_check_failed (s_call_t *call, const char *name, const hgp_error_t *error)
{
    json_object_set_new (call->checks, name, json_string ("fail"));
    json_t *message = json_string (error->message);
    json_object_set_new (call->errors, name, json_pack ("{s:s, s:i, s:o*}",
        "code", error->code, "status", error->status, "message", message));
}

static void
s_health_answer (s_call_t *call, bool ok)
{
    s_release (call);
    json_t *json = json_pack ("{s:s, s:O}", "status", ok ? "ok" : "fail",
                              "checks", call->checks);
    if (json && !ok)
        json_object_set (json, "errors", call->errors);
    char *text = json ? json_dumps (json, JSON_COMPACT) : NULL;
    json_decref (json);
    s_send_json (call, ok ? HGP_STATUS_OK : HGP_STATUS_UNAVAILABLE, text,
                 NULL);
}

static void s_health_step (void *arg);

//  Start the next check (each its own request id)
static void
s_health_next (s_call_t *call, hgp_op_t op)
{
    hgp_request_clear (&call->req);
    hgp_request_init (&call->req);
    call->req.op = op;
    if (op == HGP_OP_GET) {
        strcpy (call->req.key.resource_id, HEALTH_RESOURCE);
        strcpy (call->req.key.counter_type, HEALTH_TYPE);
    }
    call->step++;
    s_bus_call (call, call->loop->gateway->health_timeout, s_health_step);
}

static void
s_health_step (void *arg)
{
    s_call_t *call = (s_call_t *) arg;
    hgp_reply_t *rep = &call->rep;
    bool ok = rep->error.status == HGP_STATUS_OK;
    if (call->step == 1) {              //  ping
        if (!ok) {
            s_check_failed (call, "bus", &rep->error);
            s_health_answer (call, false);
            return;
        }
        json_object_set_new (call->checks, "bus", json_string ("ok"));
        s_health_next (call, HGP_OP_ACTORS);
    }
    else
    if (call->step == 2) {              //  actors
        if (!ok) {
            s_check_failed (call, "actors", &rep->error);
            s_health_answer (call, false);
            return;
        }
        size_t live = 0;
        for (size_t i = 0; i < rep->nactors; i++)
            if (streq (rep->actors [i].service, "counter"))
                live++;
        if (live == 0) {
            hgp_error_t error;
            hgp_error_set (&error, HGP_STATUS_UNAVAILABLE, "no_actor",
                           "the broker sees no live counter actor");
            s_check_failed (call, "actors", &error);
            s_health_answer (call, false);
            return;
        }
        json_object_set_new (call->checks, "actors", json_string ("ok"));
        s_health_next (call, HGP_OP_GET);
    }
    else {                              //  a read through an actor
        if (ok)
            json_object_set_new (call->checks, "redis", json_string ("ok"));
        else
        if (streq (rep->error.code, "no_actor"))  //  it died since the listing
            s_check_failed (call, "actors", &rep->error);
        else
            s_check_failed (call, "redis", &rep->error);
        s_health_answer (call, ok);
    }
}

static void
s_health (s_call_t *call)
{
    call->checks = json_pack ("{s:s, s:s, s:s}",
        "bus", "unknown", "actors", "unknown", "redis", "unknown");
    call->errors = json_object ();
    assert (call->checks && call->errors);
    if (!s_admit (call)) {
        s_busy (call);
        return;
    }
    s_health_next (call, HGP_OP_PING);
}

static void
s_metrics (s_call_t *call)
{
    char *ours = hgp_metrics_render (call->loop->gateway->metrics);
    char *process = hgp_prom_render (call->loop->gateway->prom);
    char *text = ours && process ? zsys_sprintf ("%s%s", ours, process) : NULL;
    free (ours);
    free (process);
    if (!text) {
        s_fail (call, HGP_STATUS_INTERNAL, "internal", "out of memory", NULL);
        return;
    }
    s_send (call, HGP_STATUS_OK, METRICS_TYPE, text, strlen (text), NULL);
    free (text);
}


/*  --------------------------------------------------------------------
 *  Routing: a table of path patterns, each with its method and handler
 */

//  The POST routes: everything is in the body; a parameter would be
//  silently ignored (?delta=1000 applied 1), so it is refused like an
//  unknown body field
static void
s_read_post (s_call_t *call, bool increment)
{
    hgp_gateway_t *self = call->loop->gateway;
    if (hgp_http_req_query (call->http)) {
        s_fail (call, HGP_STATUS_BAD_REQUEST, "invalid",
            increment ? "POST /api/v1/counter/increment takes no query "
                        "parameters; send delta and the rest in the "
                        "JSON body"
                      : "POST /api/v1/counter/batch takes no query "
                        "parameters; send queries in the JSON body",
            NULL);
        return;
    }
    //  Full already: busy before reading and decoding a body that could
    //  not be sent
    if (s_admission_full (self)) {
        s_busy (call);
        return;
    }
    hgp_http_read_body (call->http, increment ? self->body_limit
                                              : self->batch_body_limit);
}

//  What a pattern's "*" segments matched (a segment may be empty: the
//  handler says why that is not an id)
typedef struct {
    const char *at [3];
    size_t len [3];
    int count;
} s_args_t;

typedef void (s_handler_fn) (s_call_t *call, const s_args_t *args);

typedef struct {
    const char *pattern;            /* segments; "*" matches any one       */
    hgp_route_t route;              /* for metrics                          */
    bool post;                      /* POST with a body; else GET and HEAD  */
    s_handler_fn *handler;
} s_route_t;

static void
s_route_increment (s_call_t *call, const s_args_t *args)
{
    s_read_post (call, true);
}

static void
s_route_batch (s_call_t *call, const s_args_t *args)
{
    s_read_post (call, false);
}

//  The counter type is the path's last segment, so it ends the string
static void
s_route_get (s_call_t *call, const s_args_t *args)
{
    //  Like rank and stats, which take only the parameters they know: a
    //  parameter here would be silently ignored
    if (hgp_http_req_query (call->http)) {
        s_fail (call, HGP_STATUS_BAD_REQUEST, "invalid",
                "GET /api/v1/counter/{resource_id}/{counter_type} takes no"
                " query parameters", NULL);
        return;
    }
    s_get (call, args->at [0], args->len [0], args->at [1]);
}

static void
s_route_stats (s_call_t *call, const s_args_t *args)
{
    s_stats (call, args->at [0], args->len [0], args->at [1], args->len [1]);
}

static void
s_route_uniques (s_call_t *call, const s_args_t *args)
{
    s_uniques (call, args->at [0], args->len [0], args->at [1], args->len [1]);
}

static void
s_route_rank (s_call_t *call, const s_args_t *args)
{
    s_rank (call, args->at [0]);
}

static void
s_route_health (s_call_t *call, const s_args_t *args)
{
    s_health (call);
}

//  Live: the process answers, nothing else is asked (a liveness probe must
//  not fail because a dependency did)
static void
s_route_live (s_call_t *call, const s_args_t *args)
{
    static const char ok [] = "{\"status\":\"ok\"}";
    s_send (call, HGP_STATUS_OK, JSON_TYPE, ok, sizeof ok - 1, NULL);
}

static void
s_route_metrics (s_call_t *call, const s_args_t *args)
{
    s_metrics (call);
}

//  First match wins: the fixed paths before the patterns they would match
static const s_route_t s_routes [] = {
    { PATH_INCREMENT, HGP_ROUTE_INCREMENT, true, s_route_increment },
    { PATH_BATCH, HGP_ROUTE_BATCH, true, s_route_batch },
    { PREFIX_COUNTER "*/*/" SUFFIX_STATS, HGP_ROUTE_STATS, false, s_route_stats },
    { PREFIX_COUNTER "*/*/" SUFFIX_UNIQUES, HGP_ROUTE_UNIQUES, false,
      s_route_uniques },
    { PREFIX_COUNTER "*/*", HGP_ROUTE_GET, false, s_route_get },
    { PREFIX_RANK "*", HGP_ROUTE_RANK, false, s_route_rank },
    { PATH_HEALTH, HGP_ROUTE_HEALTH, false, s_route_health },
    { "/readyz", HGP_ROUTE_HEALTH, false, s_route_health },
    { "/health", HGP_ROUTE_HEALTH, false, s_route_health },
    { "/healthz", HGP_ROUTE_LIVE, false, s_route_live },
    { PATH_METRICS, HGP_ROUTE_METRICS, false, s_route_metrics },
};
#define S_ROUTES ((int) (sizeof s_routes / sizeof s_routes [0]))

//  Whether path matches pattern segment by segment; args gets the "*"s
static bool
s_match (const char *pattern, const char *path, s_args_t *args)
{
    args->count = 0;
    while (*pattern) {
        if (*pattern == '*') {
            const char *end = strchr (path, '/');
            size_t len = end ? (size_t) (end - path) : strlen (path);
            if (args->count == 3)
                return false;
            args->at [args->count] = path;
            args->len [args->count++] = len;
            path += len;
            pattern++;
        }
        else
        if (*pattern++ != *path++)
            return false;
    }
    return !*path;
}

//  API keys: the key the request carries (Bearer or X-API-Key), or NULL
static const char *
s_presented_key (s_call_t *call)
{
    const char *auth = hgp_http_req_header (call->http, "Authorization");
    if (auth && strncasecmp (auth, "Bearer ", 7) == 0) {
        auth += 7;
        while (*auth == ' ')
            auth++;
        return auth;
    }
    return hgp_http_req_header (call->http, "X-API-Key");
}

//  The /api/ routes but health need a key when keys are configured, and
//  take tokens from the rate limits; false when answered (401, 429)
static bool
s_guard (s_call_t *call)
{
    hgp_gateway_t *self = call->loop->gateway;
    size_t index = SIZE_MAX;
    if (self->api_keys_path) {
        const char *key = s_presented_key (call);
        pthread_mutex_lock (&self->keys_lock);
        const hgp_apikey_t *found = key && self->api_keys
            ? hgp_apikeys_find (self->api_keys, key, &index) : NULL;
        pthread_mutex_unlock (&self->keys_lock);
        if (found)
            snprintf (call->key_name, sizeof call->key_name, "%s",
                      found->name);
        if (!found) {
            s_fail (call, 401, "unauthorized", key
                ? "unknown API key"
                : "this route needs an API key: Authorization: Bearer KEY or "
                  "X-API-Key: KEY", "WWW-Authenticate: Bearer\r\n");
            return false;
        }
    }
    if (!hgp_ratelimit_active (self->ratelimit))
        return true;
    hgp_ratelimit_verdict_t verdict;
    hgp_ratelimit_take (self->ratelimit, hgp_http_req_peer (call->http),
                        index, s_usecs (), &verdict);
    if (!verdict.limited)
        return true;
    snprintf (call->limits, sizeof call->limits,
              "RateLimit-Limit: %.0f\r\nRateLimit-Remaining: %.0f\r\n"
              "RateLimit-Reset: %.0f\r\n", verdict.limit, verdict.remaining,
              ceil (verdict.reset));
    if (verdict.allowed)
        return true;
    char retry [64];
    int seconds = (int) ceil (verdict.retry_after);
    snprintf (retry, sizeof retry, "Retry-After: %d\r\n", seconds < 1 ? 1 : seconds);
    char message [128];
    snprintf (message, sizeof message, "over the rate limit; retry after %d s",
              seconds < 1 ? 1 : seconds);
    s_fail (call, 429, "rate_limited", message, retry);
    return false;
}

static void
s_route (s_call_t *call)
{
    const char *method = hgp_http_req_method (call->http);
    const char *path = hgp_http_req_path (call->http);
    bool get = streq (method, "GET") || streq (method, "HEAD");
    bool post = streq (method, "POST");
    s_args_t args;
    for (int i = 0; i < S_ROUTES; i++) {
        const s_route_t *route = &s_routes [i];
        if (!s_match (route->pattern, path, &args))
            continue;
        call->route = route->route;
        if (route->post && !post)
            s_fail (call, 405, "method_not_allowed",
                    "use POST with a JSON body", "Allow: POST\r\n");
        else
        if (!route->post && !get)
            s_fail (call, 405, "method_not_allowed", "use GET",
                    "Allow: GET, HEAD\r\n");
        else
        if (strncmp (route->pattern, "/api/", 5) != 0
        ||  route->route == HGP_ROUTE_HEALTH || s_guard (call))
            route->handler (call, &args);
        return;
    }
    call->route = HGP_ROUTE_UNMATCHED;
    s_fail (call, HGP_STATUS_NOT_FOUND, "not_found",
        "no such endpoint; see POST /api/v1/counter/increment, GET "
        "/api/v1/counter/{resource_id}/{counter_type}, POST "
        "/api/v1/counter/batch, GET /api/v1/rank/{counter_type}, GET "
        "/api/v1/counter/{resource_id}/{counter_type}/stats, GET "
        "/api/v1/counter/{resource_id}/{counter_type}/uniques, GET "
        "/api/v1/health (also /readyz), GET /healthz, GET /metrics", NULL);
}

//  The front's callbacks

static void
s_on_head (void *arg, hgp_http_req_t *http)
{
    s_loop_t *loop = (s_loop_t *) arg;
    hgp_gateway_t *self = loop->gateway;
    loop->requests++;
    s_call_t *call = s_call_take (loop, http);
    //  A connection past max_connections: busy, and it closes; health and
    //  /metrics are answered (monitoring must see an overload) but close
    //  too, so they hold no connection either
    if (hgp_http_req_over (http) && hgp_http_req_first (http)) {
        const char *path = hgp_http_req_path (http);
        hgp_http_req_set_close (http);
        if (!streq (path, PATH_HEALTH) && !streq (path, PATH_METRICS)) {
            call->route = HGP_ROUTE_NONE;
            hgp_metrics_refused (self->metrics, HGP_REFUSED_BUSY);
            hgp_error_t error;
            hgp_error_set (&error, HGP_STATUS_UNAVAILABLE, "busy",
                "the gateway holds %d connections, its limit "
                "(gateway/max_connections); retry after " S_RETRY_AFTER " s",
                self->http.max_connections);
            s_send_error (call, &error, NULL, NULL);
            return;
        }
    }
    s_route (call);
}

static void
s_on_body (void *arg, hgp_http_req_t *http, const hgp_http_error_t *err)
{
    s_loop_t *loop = (s_loop_t *) arg;
    s_call_t *call = (s_call_t *) hgp_http_req_user (http);
    assert (call && call->loop == loop);
    if (err) {
        if (err->status == 408)
            hgp_metrics_refused (loop->gateway->metrics,
                                 HGP_REFUSED_BODY_TIMEOUT);
        if (err->status == HGP_STATUS_UNAVAILABLE)
            hgp_metrics_refused (loop->gateway->metrics, HGP_REFUSED_BUSY);
        s_fail (call, (uint16_t) err->status, err->code, err->message, NULL);
        return;
    }
    size_t size;
    const char *body = hgp_http_req_body (http, &size);
    if (call->route == HGP_ROUTE_INCREMENT)
        s_increment (call, body, size);
    else
        s_batch (call, body, size);
}

static void
s_on_edge (void *arg, hgp_http_edge_t why, int status)
{
    s_loop_t *loop = (s_loop_t *) arg;
    hgp_metrics_t *metrics = loop->gateway->metrics;
    if (why == HGP_HTTP_EDGE_HEADER_TIMEOUT)
        hgp_metrics_refused (metrics, HGP_REFUSED_HEADER_TIMEOUT);
    else
    if (why == HGP_HTTP_EDGE_FRAMING)
        hgp_metrics_refused (metrics, HGP_REFUSED_FRAMING);
    hgp_metrics_begin (metrics);
    hgp_metrics_end (metrics, HGP_ROUTE_NONE, status, 0);
}


/*  --------------------------------------------------------------------
 *  Loops
 */

static void
s_loop_seed_ids (s_loop_t *loop)
{
    char seed [33];
    hgp_process_random_id (seed, sizeof seed);
    char half [17];
    memcpy (half, seed, 16);
    half [16] = 0;
    loop->id_prefix = strtoull (half, NULL, 16);
    loop->id_counter = strtoull (seed + 16, NULL, 16);
}

//  Set up what the thread owns: its bus client and link, its front
static bool
s_loop_setup (s_loop_t *loop)
{
    hgp_gateway_t *self = loop->gateway;
    hgp_client_t *client = self->events
        ? hgp_client_new_shared (self->events, self->where, self->keys)
        : hgp_client_new (self->endpoint, self->keys);
    if (!client) {
        zsys_error ("gateway: cannot create a bus client for %s",
                    self->events ? self->where : self->endpoint);
        return false;
    }
    loop->mux = hgp_mux_new (client);
    if (self->call_stats) {
        char prefix [48];
        snprintf (prefix, sizeof prefix, "calls-%016" PRIx64, loop->id_prefix);
        loop->callstats = hgp_callstats_new (loop->mux, prefix);
    }
    static const hgp_http_handler_t handler = {
        .head = s_on_head, .body = s_on_body, .edge = s_on_edge };
    loop->http = hgp_http_new (self->listener, &self->http, &handler, loop);
    if (!loop->http) {
        zsys_error ("gateway: cannot set up epoll: %s", strerror (errno));
        return false;
    }
    size_t fd_size = sizeof (int);
    int bus_fd = -1;
    zmq_getsockopt (zsock_resolve (hgp_mux_sock (loop->mux)), ZMQ_FD,
                    &bus_fd, &fd_size);
    if (hgp_http_watch (loop->http, bus_fd)
    ||  hgp_http_watch (loop->http, loop->wake)) {
        zsys_error ("gateway: cannot poll the bus: %s", strerror (errno));
        return false;
    }
    return true;
}

//  Stopping: no new connections; the calls in flight get S_DRAIN_MS to be
//  answered, then the rest are answered 503 (the mux does that); what is
//  written is flushed as far as the clients read it
static void
s_loop_drain (s_loop_t *loop)
{
    hgp_http_stop_accepting (loop->http);
    int64_t until = zclock_mono () + S_DRAIN_MS;
    if (loop->callstats)
        hgp_callstats_tick (loop->callstats, INT64_MAX);    //  the last ones
    while (hgp_mux_open (loop->mux) && zclock_mono () < until) {
        int wait = hgp_mux_run (loop->mux);
        hgp_http_run (loop->http, MIN (wait, 10));
    }
    hgp_mux_destroy (&loop->mux);
    hgp_http_run (loop->http, 0);
}

//  Under load glibc's arenas grow to the peak and keep it: once a second
//  has passed without a new request, give the free pages back (once per
//  quiet spell), so the gateway returns near its idle size
static void
s_loop_trim (s_loop_t *loop)
{
    int64_t now = zclock_mono ();
    if (loop->requests != loop->seen) {
        loop->seen = loop->requests;
        loop->quiet_since = now;
        loop->trimmed = false;
    }
    else
    if (!loop->trimmed && now - loop->quiet_since >= S_QUIET_MS) {
        malloc_trim (0);
        loop->trimmed = true;
    }
}

static void *
s_loop_run (void *args)
{
    s_loop_t *loop = (s_loop_t *) args;
    hgp_gateway_t *self = loop->gateway;
    s_loop_seed_ids (loop);
    for (int r = 0; r < HGP_ROUTE_COUNT; r++)
        hgp_breaker_init (&loop->breakers [r], self->breaker_failures,
                          self->breaker_ms, loop->id_counter + (uint64_t) r);
    if (self->stale_reads) {
        loop->stale = zhashx_new ();
        assert (loop->stale);
        zhashx_set_destructor (loop->stale, (zhashx_destructor_fn *) zstr_free);
    }
    loop->failed = !s_loop_setup (loop);
    sem_post (&loop->ready);
    if (!loop->failed)
        while (!atomic_load (&self->stopping)) {
            if (loop->callstats)
                hgp_callstats_tick (loop->callstats, zclock_mono ());
            int wait = hgp_mux_run (loop->mux);
            if (hgp_http_run (loop->http, wait)) {
                zsys_error ("gateway: epoll failed: %s", strerror (errno));
                break;
            }
            s_loop_trim (loop);
        }
    if (loop->mux && loop->http)
        s_loop_drain (loop);
    hgp_mux_destroy (&loop->mux);
    //  After the mux: destroying it answers the flushes still out
    hgp_callstats_destroy (&loop->callstats);
    hgp_http_destroy (&loop->http);
    zhashx_destroy (&loop->stale);
    while (loop->free) {
        s_call_t *call = loop->free;
        loop->free = call->next;
        hgp_reply_clear (&call->rep);
        free (call);
    }
    return NULL;
}

static bool
s_loop_start (hgp_gateway_t *self, s_loop_t *loop)
{
    loop->gateway = self;
    loop->wake = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    sem_init (&loop->ready, 0, 0);
    if (loop->wake < 0)
        return false;
    pthread_attr_t attr;
    pthread_attr_init (&attr);
    pthread_attr_setstacksize (&attr, S_LOOP_STACK);
    int rc = pthread_create (&loop->thread, &attr, s_loop_run, loop);
    pthread_attr_destroy (&attr);
    if (rc)
        return false;
    loop->started = true;
    sem_wait (&loop->ready);
    return !loop->failed;
}


/*  --------------------------------------------------------------------
 *  Life cycle
 */

//  Each connection is a socket; a loop's bus link a DEALER (with discovery
//  a ROUTER, its monitor's two PAIRs and a SUB) with their mailboxes
static void
s_raise_fd_limit (int connections, int loops)
{
    rlim_t need = (rlim_t) connections + (rlim_t) loops * 16 + 256;
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) || limit.rlim_cur >= need)
        return;
    limit.rlim_cur = limit.rlim_max == RLIM_INFINITY || limit.rlim_max >= need
                   ? need : limit.rlim_max;
    setrlimit (RLIMIT_NOFILE, &limit);
    if (limit.rlim_cur < need)
        zsys_warning ("gateway: open files limited to %llu, max_connections "
                      "%d needs about %llu: raise ulimit -n or lower "
                      "gateway/max_connections",
                      (unsigned long long) limit.rlim_cur, connections,
                      (unsigned long long) need);
}

//  Bind and listen on bind:port (numeric address, IPv4 or IPv6)
/*  Tell the brokers where our /metrics is (gateway/announce), so `hgp
    targets` lists this gateway */
static void
s_announce (hgp_gateway_t *self, hgp_config_t *config)
{
    if (hgp_config_int (config, "gateway/announce", 1, 0, 1) != 1)
        return;
    char url [HGP_EXPORTER_URL_MAX];
    if (hgp_exporter_format_url (self->bind, self->port, url, sizeof url) == 0)
        self->announcer = hgp_announcer_new (config, "gateway", url);
}

static int
s_listen (hgp_gateway_t *self, int backlog)
{
    char port [16];
    snprintf (port, sizeof port, "%d", self->port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV
    };
    struct addrinfo *found = NULL;
    int rc = getaddrinfo (self->bind, port, &hints, &found);
    if (rc) {
        zsys_error ("gateway: cannot listen on %s:%d: gateway/bind must be "
                    "a numeric address (%s)", self->bind, self->port,
                    gai_strerror (rc));
        return -1;
    }
    int fd = socket (found->ai_family,
                     SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind (fd, found->ai_addr, found->ai_addrlen)
    ||  listen (fd, backlog)) {
        zsys_error ("gateway: cannot listen on %s:%d: %s", self->bind,
                    self->port, strerror (errno));
        if (fd >= 0)
            close (fd);
        freeaddrinfo (found);
        return -1;
    }
    freeaddrinfo (found);
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    if (getsockname (fd, (struct sockaddr *) &addr, &len) == 0)
        self->port = addr.ss_family == AF_INET6
            ? ntohs (((struct sockaddr_in6 *) &addr)->sin6_port)
            : ntohs (((struct sockaddr_in *) &addr)->sin_port);
    return fd;
}

//  One discovery actor for the whole process, which logs whether it hears
//  beacons or why it uses the static endpoint. In static mode it goes at
//  once and each loop has a plain DEALER, as without it.
static bool
s_start_discovery (hgp_gateway_t *self, hgp_config_t *config)
{
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
        return true;
    }
    zactor_destroy (&self->discovery);
    zstr_free (&self->events);
    //  Prove the static endpoint is usable once here rather than failing
    //  in every loop
    hgp_client_t *probe = hgp_client_new (self->endpoint, self->keys);
    if (!probe) {
        zsys_error ("gateway: broker/client_endpoint '%s' is not a valid "
                    "ZeroMQ endpoint", self->endpoint);
        return false;
    }
    hgp_client_destroy (&probe);
    return true;
}

hgp_gateway_t *
hgp_gateway_new (hgp_config_t *config)
{
    assert (config);
    hgp_gateway_t *self = (hgp_gateway_t *) zmalloc (sizeof (hgp_gateway_t));
    assert (self);
    pthread_mutex_init (&self->keys_lock, NULL);
    self->listener = -1;
    self->endpoint = strdup (hgp_config_str (config, "broker/client_endpoint",
                                             "tcp://127.0.0.1:5555"));
    self->bind = strdup (hgp_config_str (config, "gateway/bind", "127.0.0.1"));
    self->port = (int) hgp_config_int (config, "gateway/port", 8080, 0, 65535);
    self->nloops = (int) hgp_config_int (config, "gateway/threads", 1, 1, 64);
    int backlog = (int) hgp_config_int (config, "gateway/backlog",
                                        4096, 1, 65535);
    self->http.keep_alive = (int) hgp_config_int (
        config, "gateway/keep_alive", 5000, 0, 3600000);
    self->body_limit = (size_t) hgp_config_int (
        config, "gateway/body_limit", 64 * 1024, 64, 16 * 1024 * 1024);
    self->batch_body_limit = (size_t) hgp_config_int (
        config, "gateway/batch_body_limit", 256 * 1024, 64, 16 * 1024 * 1024);
    self->timeout = (uint32_t) hgp_config_int (
        config, "gateway/timeout", HGP_TIMEOUT_DEFAULT, 1, HGP_TIMEOUT_MAX);
    self->health_timeout = (uint32_t) hgp_config_int (
        config, "gateway/health_timeout", 2000, 1, HGP_TIMEOUT_MAX);
    self->breaker_failures = (int) hgp_config_int (
        config, "gateway/breaker_failures", 5, 0, 1000000);
    self->breaker_ms = (int) hgp_config_int (
        config, "gateway/breaker_ms", 1000, 10, 600000);
    self->stale_reads = hgp_config_int (config, "gateway/stale_reads", 1, 0, 1) == 1;
    self->call_stats = hgp_config_int (config, "gateway/call_stats", 1, 0, 1) == 1;
    self->stale_max_age = hgp_config_int (
        config, "gateway/stale_max_age", 60000, 1, 86400000);
    self->http.header_timeout = (int) hgp_config_int (
        config, "gateway/header_timeout", 3000, 100, 3600000);
    self->http.body_timeout = (int) hgp_config_int (
        config, "gateway/body_timeout", 5000, 100, 3600000);
    self->max_in_flight = (int) hgp_config_int (
        config, "gateway/max_in_flight", 4096, 1, 1000000);
    self->http.max_connections = (int) hgp_config_int (
        config, "gateway/max_connections", 10000, 1, 1000000);
    self->http.busy_pause = (int) hgp_config_int (
        config, "gateway/busy_pause", 100, 0, 1000);
    self->http.body_bytes_max = hgp_config_int (
        config, "gateway/body_bytes", 64 * 1024 * 1024, 64, 1LL << 40);
    if (hgp_config_error (config)) {
        zsys_error ("%s", hgp_config_error (config));
        hgp_gateway_destroy (&self);
        return NULL;
    }
    self->http.head_limit = S_HEAD_LIMIT;
    self->http.connections = &self->connections;
    self->http.body_bytes = &self->body_bytes;
    self->http.allow = "GET, HEAD, POST";
    self->metrics = hgp_metrics_new (self->nloops);
    self->prom = hgp_prom_new ("gateway");
    assert (self->metrics && self->prom);
    self->ratelimit = hgp_ratelimit_new (config);
    if (hgp_config_error (config)) {
        zsys_error ("%s", hgp_config_error (config));
        hgp_gateway_destroy (&self);
        return NULL;
    }
    const char *keys_path = hgp_config_str (config, "gateway/api_keys", "");
    if (*keys_path) {
        self->api_keys_path = strdup (keys_path);
        if (hgp_gateway_reload (self)) {
            hgp_gateway_destroy (&self);
            return NULL;
        }
    }

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
    s_raise_fd_limit (self->http.max_connections, self->nloops);
    if (!s_start_discovery (self, config)) {
        hgp_gateway_destroy (&self);
        return NULL;
    }
    //  jansson seeds its hash function on first use; do it once, here,
    //  not racing in the loops
    json_object_seed (0);
    self->listener = s_listen (self, backlog);
    if (self->listener < 0) {
        hgp_gateway_destroy (&self);
        return NULL;
    }
    self->http.port = self->port;
    self->loops = (s_loop_t *) zmalloc (self->nloops * sizeof (s_loop_t));
    assert (self->loops);
    for (int i = 0; i < self->nloops; i++)
        if (!s_loop_start (self, &self->loops [i])) {
            hgp_gateway_destroy (&self);
            return NULL;
        }
    s_announce (self, config);
    zsys_info ("gateway: listening on http://%s:%d, bus at %s; threads=%d "
               "max_in_flight=%d max_connections=%d backlog=%d "
               "keep_alive=%dms header_timeout=%dms body_timeout=%dms "
               "timeout=%ums body_limit=%zu batch_body_limit=%zu",
               self->bind, self->port, self->events ? self->where
                                                    : self->endpoint,
               self->nloops, self->max_in_flight, self->http.max_connections,
               backlog, self->http.keep_alive, self->http.header_timeout,
               self->http.body_timeout, self->timeout, self->body_limit,
               self->batch_body_limit);
    return self;
}

void
hgp_gateway_destroy (hgp_gateway_t **self_p)
{
    if (self_p && *self_p) {
        hgp_announcer_destroy (&(*self_p)->announcer);
        hgp_prom_destroy (&(*self_p)->prom);
    }
    assert (self_p);
    hgp_gateway_t *self = *self_p;
    if (!self)
        return;
    atomic_store (&self->stopping, true);
    for (int i = 0; self->loops && i < self->nloops; i++) {
        s_loop_t *loop = &self->loops [i];
        if (loop->started) {
            uint64_t one = 1;
            if (write (loop->wake, &one, sizeof one) < 0)
                zsys_warning ("gateway: cannot wake a loop: %s",
                              strerror (errno));
            pthread_join (loop->thread, NULL);
        }
        if (loop->wake > 0)
            close (loop->wake);
        sem_destroy (&loop->ready);
    }
    free (self->loops);
    if (self->listener >= 0)
        close (self->listener);
    //  After the loops' links, which followed it
    zactor_destroy (&self->discovery);
    hgp_keys_destroy (&self->keys);
    zstr_free (&self->events);
    zstr_free (&self->where);
    hgp_metrics_destroy (&self->metrics);
    hgp_apikeys_destroy (&self->api_keys);
    hgp_ratelimit_destroy (&self->ratelimit);
    pthread_mutex_destroy (&self->keys_lock);
    free (self->api_keys_path);
    free (self->endpoint);
    free (self->bind);
    free (self);
    *self_p = NULL;
}

int
hgp_gateway_reload (hgp_gateway_t *self)
{
    assert (self);
    if (!self->api_keys_path)
        return 0;
    char *error = NULL;
    hgp_apikeys_t *keys = hgp_apikeys_load (self->api_keys_path, &error);
    if (!keys) {
        zsys_error ("%s%s", error, self->api_keys ? "; the keys loaded before stay" : "");
        free (error);
        return -1;
    }
    size_t count = hgp_apikeys_size (keys);
    double *rates = (double *) calloc (count + 1, sizeof (double));
    double *bursts = (double *) calloc (count + 1, sizeof (double));
    assert (rates && bursts);
    hgp_apikeys_limits (keys, rates, bursts);
    pthread_mutex_lock (&self->keys_lock);
    hgp_apikeys_t *old = self->api_keys;
    self->api_keys = keys;
    hgp_ratelimit_set_keys (self->ratelimit, count, rates, bursts);
    pthread_mutex_unlock (&self->keys_lock);
    hgp_apikeys_destroy (&old);
    free (rates);
    free (bursts);
    zsys_info ("gateway: %zu API keys from %s", count, self->api_keys_path);
    return 0;
}

int
hgp_gateway_port (hgp_gateway_t *self)
{
    assert (self);
    return self->port;
}
