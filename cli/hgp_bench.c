/*  hgp_bench.c - the load generator behind `hgp bench`
 *
 *  See hgp_bench.h for the contract. Why it is built this way:
 *  - A window of W slots; a request's id is "<run>-<slot>-<seq>", so a
 *    reply finds its slot without a lookup table, and a late reply to a
 *    slot since reused (seq differs) is counted stale, not matched.
 *  - It reuses one request struct, one reply struct and the client's
 *    encode buffer, so the codec's (none, for incr and get) and libzmq's
 *    allocations are all there is per request: the bench measures the
 *    bus, not itself.
 *  - A request unanswered past its deadline plus HGP_CLIENT_GRACE_MS is
 *    given up on ("no_reply") and counted indeterminate: it may or may
 *    not have been applied, so the check allows for it either way.
 */
#include "hgp_bench.h"
#include "hgp_cli_json.h"
#include "hgp_process.h"
#include <errno.h>
#include <math.h>
#include <unistd.h>

#define S_CODES 16              /* distinct error codes we tally            */

typedef struct {
    int64_t sent_us;            /* when it was sent; 0: slot is free        */
    uint64_t seq;               /* which request it holds                   */
} s_slot_t;

typedef struct {
    char code [HGP_CODE_MAX + 1];   /* error code, or "no_reply"            */
    uint64_t count;                 /* how many                             */
} s_tally_t;

struct _hgp_bench_t {
    //  Settings
    hgp_client_t *client;       /* borrowed                                 */
    hgp_bench_settings_t set;   /* what to run                              */
    char run [40];              /* random run id, start of every req id     */
    //  Progress
    s_slot_t *slots;            /* window entries                           */
    uint32_t *free_slots;       /* stack of free slot indexes               */
    uint32_t nfree;             /* entries on it                            */
    uint64_t sent;              /* requests sent                            */
    uint64_t done;              /* requests answered or given up on         */
    uint64_t seq;               /* next request number                      */
    uint64_t rng;               /* xorshift64* state, picks keys            */
    bool sending;               /* false once a send failed                 */
    //  Results
    double seconds;             /* how long the load took                   */
    uint32_t *latency;          /* µs per reply, capped at UINT32_MAX       */
    uint64_t nlatency;          /* entries                                  */
    uint64_t ok;                /* 200 replies (acknowledged, for incr)     */
    uint64_t indeterminate;     /* 504s and requests given up on            */
    uint64_t stale;             /* replies we could not match               */
    uint64_t unsent;            /* requests not sent (broker unreachable)   */
    s_tally_t tally [S_CODES];  /* errors by code                           */
    uint32_t ntally;            /* entries used                             */
    hgp_reply_t send_error;     /* why sending stopped, if it did           */
    hgp_bench_verify_t verify;  /* outcome of the check                     */
    int64_t increase;           /* how much the counters grew               */
    hgp_reply_t unread;         /* why they could not be read back          */
    bool cut;                   /* stopped early: unknown outcomes          */
};

void
hgp_bench_settings_init (hgp_bench_settings_t *settings)
{
    memset (settings, 0, sizeof *settings);
    settings->op = HGP_OP_INCR;
    settings->requests = 100000;
    settings->window = 128;
    settings->nkeys = 1000;
    settings->timeout_ms = HGP_TIMEOUT_DEFAULT;
    snprintf (settings->type, sizeof settings->type, "bench");
    char random [33];
    hgp_process_random_id (random, sizeof random);
    snprintf (settings->prefix, sizeof settings->prefix, "bench-%.8s-",
              random);
}

hgp_bench_t *
hgp_bench_new (hgp_client_t *client, const hgp_bench_settings_t *settings)
{
    assert (client && settings);
    assert (settings->requests && settings->window && settings->nkeys);
    hgp_bench_t *self = (hgp_bench_t *) calloc (1, sizeof (hgp_bench_t));
    assert (self);
    self->client = client;
    self->set = *settings;
    hgp_process_random_id (self->run, sizeof self->run);
    self->rng = (uint64_t) zclock_usecs () ^ ((uint64_t) getpid () << 32);
    self->rng |= 1;
    self->sending = true;
    hgp_reply_init (&self->send_error);
    hgp_reply_init (&self->unread);
    return self;
}

void
hgp_bench_destroy (hgp_bench_t **self_p)
{
    assert (self_p);
    hgp_bench_t *self = *self_p;
    if (!self)
        return;
    hgp_reply_clear (&self->send_error);
    hgp_reply_clear (&self->unread);
    free (self->slots);
    free (self->free_slots);
    free (self->latency);
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Requests and keys

//  A request of op with a fresh random id and the bench's deadline
static void
s_request (hgp_bench_t *self, hgp_request_t *req, hgp_op_t op)
{
    hgp_request_init (req);
    req->op = op;
    req->timeout_ms = self->set.timeout_ms;
    hgp_process_random_id (req->id, sizeof req->id);
}

static void
s_key (hgp_bench_t *self, uint32_t index, hgp_key_t *key)
{
    snprintf (key->resource_id, sizeof key->resource_id, "%s%u",
              self->set.prefix, index);
    snprintf (key->counter_type, sizeof key->counter_type, "%s",
              self->set.type);
}

//  Read all counters of the run into values (nkeys entries), in requests
//  of at most HGP_MGET_MAX keys. 0, or -1 with the error reply in rep.
static int
s_read (hgp_bench_t *self, int64_t *values, hgp_reply_t *rep)
{
    hgp_key_t *keys = (hgp_key_t *) calloc (HGP_MGET_MAX, sizeof (hgp_key_t));
    assert (keys);
    int rc = 0;
    for (uint32_t base = 0; base < self->set.nkeys && !rc;
         base += HGP_MGET_MAX) {
        uint32_t chunk = self->set.nkeys - base < HGP_MGET_MAX
                       ? self->set.nkeys - base : HGP_MGET_MAX;
        for (uint32_t i = 0; i < chunk; i++)
            s_key (self, base + i, &keys [i]);
        hgp_request_t req;
        s_request (self, &req, HGP_OP_MGET);
        req.keys = keys;                //  borrowed: never clear req
        req.nkeys = chunk;
        hgp_client_call (self->client, &req, rep);
        if (rep->error.status != HGP_STATUS_OK)
            rc = -1;
        else
            memcpy (values + base, rep->values, chunk * sizeof (int64_t));
    }
    free (keys);
    return rc;
}

static uint64_t
s_random (hgp_bench_t *self)
{
    self->rng ^= self->rng >> 12;
    self->rng ^= self->rng << 25;
    self->rng ^= self->rng >> 27;
    return self->rng * 0x2545f4914f6cdd1dULL;
}

//  --------------------------------------------------------------------------
//  The window

static void
s_count (hgp_bench_t *self, const char *code, uint64_t n)
{
    uint32_t i;
    for (i = 0; i < self->ntally; i++)
        if (streq (self->tally [i].code, code))
            break;
    if (i == self->ntally) {
        if (self->ntally == S_CODES)
            i = S_CODES - 1;            //  the last row takes the rest
        else {
            snprintf (self->tally [i].code, sizeof self->tally [i].code,
                      "%s", self->ntally == S_CODES - 1 ? "other" : code);
            self->ntally++;
        }
    }
    self->tally [i].count += n;
}

//  Send one request into a free slot. -1 when it could not be sent.
static int
s_send (hgp_bench_t *self, hgp_request_t *req)
{
    uint32_t slot = self->free_slots [--self->nfree];
    uint64_t seq = self->seq++;
    snprintf (req->id, sizeof req->id, "%s-%u-%llu", self->run, slot,
              (unsigned long long) seq);
    s_key (self, (uint32_t) (s_random (self) % self->set.nkeys), &req->key);
    if (self->set.users && req->op == HGP_OP_INCR) {
        //  prefix (at most HGP_ID_MAX - 10) + "u" + at most 8 digits fits
        char user [HGP_ID_MAX + 32];
        int len = snprintf (user, sizeof user, "%su%u", self->set.prefix,
                            (uint32_t) (seq % self->set.users));
        assert (len > 0 && len <= HGP_ID_MAX);
        memcpy (req->user_id, user, (size_t) len + 1);
    }
    self->slots [slot].seq = seq;
    self->slots [slot].sent_us = zclock_usecs ();
    if (hgp_client_send (self->client, req)) {
        self->slots [slot].sent_us = 0;
        self->free_slots [self->nfree++] = slot;
        hgp_error_set (&self->send_error.error, HGP_STATUS_TIMEOUT, "timeout",
                       "cannot send to the broker at %s within %u ms",
                       hgp_client_endpoint (self->client), req->timeout_ms);
        return -1;
    }
    self->sent++;
    return 0;
}

//  The slot a reply id names, or -1 when it is not one we wait for
static int
s_slot (hgp_bench_t *self, const char *id)
{
    size_t runlen = strlen (self->run);
    if (strncmp (id, self->run, runlen) != 0 || id [runlen] != '-')
        return -1;
    char *end;
    errno = 0;
    unsigned long slot = strtoul (id + runlen + 1, &end, 10);
    if (errno || *end != '-' || slot >= self->set.window)
        return -1;
    unsigned long long seq = strtoull (end + 1, &end, 10);
    if (errno || *end || !self->slots [slot].sent_us
    ||  self->slots [slot].seq != seq)
        return -1;
    return (int) slot;
}

static void
s_release (hgp_bench_t *self, uint32_t slot)
{
    self->slots [slot].sent_us = 0;
    self->free_slots [self->nfree++] = slot;
    self->done++;
}

//  A reply came at now: match it, time it, count its outcome
static void
s_on_reply (hgp_bench_t *self, const hgp_reply_t *rep, int64_t now)
{
    int slot = s_slot (self, rep->id);
    if (slot < 0) {
        self->stale++;
        return;
    }
    int64_t usecs = now - self->slots [slot].sent_us;
    self->latency [self->nlatency++] =
        usecs > UINT32_MAX ? UINT32_MAX : (uint32_t) usecs;
    s_release (self, (uint32_t) slot);
    if (rep->error.status == HGP_STATUS_OK)
        self->ok++;
    else {
        s_count (self, rep->error.code [0] ? rep->error.code : "internal", 1);
        if (rep->error.status == HGP_STATUS_TIMEOUT)
            self->indeterminate++;
    }
}

//  Give up on requests sent before now - patience_us (all of them with
//  patience_us -1): their outcome is unknown
static void
s_expire (hgp_bench_t *self, int64_t now, int64_t patience_us)
{
    for (uint32_t slot = 0; slot < self->set.window; slot++)
        if (self->slots [slot].sent_us
        && (patience_us < 0
        ||  now - self->slots [slot].sent_us > patience_us)) {
            s_release (self, slot);
            self->indeterminate++;
            s_count (self, "no_reply", 1);
        }
}

//  Fill the free slots, in one message to the broker (a batch, PROTOCOL.md
//  4.1). When the batch cannot go, none of it went: its slots are free
//  again and sending stops, as when one request cannot go.
static void
s_refill (hgp_bench_t *self, hgp_request_t *req, uint64_t requests)
{
    if (!self->sending || !self->nfree || self->sent >= requests)
        return;
    bool batch = hgp_client_batch_begin (self->client) == 0;
    uint32_t nfree = self->nfree;
    uint64_t sent = self->sent;
    while (self->sending && self->nfree && self->sent < requests)
        if (s_send (self, req))
            self->sending = false;
    if (batch && hgp_client_batch_end (self->client)) {
        for (uint32_t i = self->nfree; i < nfree; i++)
            self->slots [self->free_slots [i]].sent_us = 0;
        self->nfree = nfree;
        self->sent = sent;
        self->sending = false;
        hgp_error_set (&self->send_error.error, HGP_STATUS_TIMEOUT, "timeout",
                       "cannot send to the broker at %s within %u ms",
                       hgp_client_endpoint (self->client), req->timeout_ms);
    }
}

//  Keep the window full until every request is sent and answered or
//  given up on, sending stopped, or SIGINT
static void
s_load (hgp_bench_t *self, hgp_reply_t *rep)
{
    uint32_t window = self->set.window;
    self->slots = (s_slot_t *) calloc (window, sizeof (s_slot_t));
    self->free_slots = (uint32_t *) calloc (window, sizeof (uint32_t));
    self->latency = (uint32_t *) calloc (self->set.requests,
                                         sizeof (uint32_t));
    assert (self->slots && self->free_slots && self->latency);
    for (uint32_t i = 0; i < window; i++)
        self->free_slots [self->nfree++] = window - 1 - i;

    //  One request struct for the whole run: only id and key change
    hgp_request_t req;
    s_request (self, &req, self->set.op);
    req.delta = 1;
    int64_t patience_us = (int64_t) (self->set.timeout_ms
                                     + HGP_CLIENT_GRACE_MS) * 1000;
    uint64_t requests = self->set.requests;
    int64_t start = zclock_usecs ();
    int64_t next_expire = start + 10000;
    while (self->done < self->sent
       || (self->sending && self->sent < requests)) {
        if (zsys_interrupted)
            break;
        s_refill (self, &req, requests);
        //  Every reply waiting, then refill: the slots they free go in
        //  one batch
        int got = hgp_client_recv (self->client, rep, 10);
        int64_t now = zclock_usecs ();
        for (uint32_t n = 0; got == 0 && n < window; n++) {
            s_on_reply (self, rep, now);
            got = hgp_client_recv (self->client, rep, 0);
            now = zclock_usecs ();
        }
        if (got == 0)
            s_on_reply (self, rep, now);
        if (now >= next_expire) {
            s_expire (self, now, patience_us);
            next_expire = now + 10000;
        }
    }
    self->seconds = (double) (zclock_usecs () - start) / 1e6;
    //  Requests still out (interrupted): their outcome is unknown
    s_expire (self, 0, -1);
    self->unsent = requests - self->sent;
}

//  Compare the counters now with before: the exactly-once check
static void
s_check (hgp_bench_t *self, const int64_t *before)
{
    int64_t *after = (int64_t *) calloc (self->set.nkeys, sizeof (int64_t));
    assert (after);
    self->verify = HGP_BENCH_VERIFY_OK;
    if (s_read (self, after, &self->unread))
        self->verify = HGP_BENCH_VERIFY_UNREAD;
    else
        for (uint32_t i = 0; i < self->set.nkeys; i++) {
            int64_t diff;
            if (__builtin_sub_overflow (after [i], before [i], &diff)
            ||  __builtin_add_overflow (self->increase, diff,
                                        &self->increase)) {
                self->verify = HGP_BENCH_VERIFY_FAILED;
                break;
            }
        }
    free (after);
    if (self->verify == HGP_BENCH_VERIFY_OK
    && (self->increase < 0 || (uint64_t) self->increase < self->ok
    ||  (uint64_t) self->increase > self->ok + self->indeterminate))
        self->verify = HGP_BENCH_VERIFY_FAILED;
}

int
hgp_bench_run (hgp_bench_t *self, hgp_reply_t *rep)
{
    assert (self && rep);
    //  Is anyone there? Fail fast, before a long run of timeouts
    hgp_request_t req;
    s_request (self, &req, HGP_OP_PING);
    hgp_client_call (self->client, &req, rep);
    if (rep->error.status != HGP_STATUS_OK)
        return -1;
    int64_t *before = NULL;
    if (self->set.op == HGP_OP_INCR) {
        before = (int64_t *) calloc (self->set.nkeys, sizeof (int64_t));
        assert (before);
        if (s_read (self, before, rep)) {
            free (before);
            return -1;
        }
    }
    s_load (self, rep);
    self->verify = HGP_BENCH_VERIFY_NA;
    if (before)
        s_check (self, before);
    free (before);
    self->cut = !self->sending || zsys_interrupted;
    return 0;
}

//  --------------------------------------------------------------------------
//  Outcome

hgp_bench_verify_t
hgp_bench_verify (hgp_bench_t *self)
{
    assert (self);
    return self->verify;
}

const hgp_reply_t *
hgp_bench_unread (hgp_bench_t *self)
{
    assert (self);
    return &self->unread;
}

const hgp_reply_t *
hgp_bench_stopped (hgp_bench_t *self)
{
    assert (self);
    return self->sending ? NULL : &self->send_error;
}

uint64_t
hgp_bench_unsent (hgp_bench_t *self)
{
    assert (self);
    return self->unsent;
}

bool
hgp_bench_cut (hgp_bench_t *self)
{
    assert (self);
    return self->cut;
}

//  --------------------------------------------------------------------------
//  Report

//  Latency percentiles in µs, from the sorted latencies
typedef struct {
    uint32_t p50, p99, p999, max;
} s_latency_t;

static int
s_compare_u32 (const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
    return x < y ? -1 : x > y;
}

//  Nearest-rank percentile q (0..1] of sorted values
static uint32_t
s_percentile (const uint32_t *sorted, uint64_t n, double q)
{
    if (n == 0)
        return 0;
    uint64_t rank = (uint64_t) (q * (double) n + 0.999999);
    rank = rank < 1 ? 1 : rank > n ? n : rank;
    return sorted [rank - 1];
}

static s_latency_t
s_latency (hgp_bench_t *self)
{
    qsort (self->latency, self->nlatency, sizeof (uint32_t), s_compare_u32);
    s_latency_t lat = {
        s_percentile (self->latency, self->nlatency, 0.50),
        s_percentile (self->latency, self->nlatency, 0.99),
        s_percentile (self->latency, self->nlatency, 0.999),
        self->nlatency ? self->latency [self->nlatency - 1] : 0
    };
    return lat;
}

static double
s_rate (hgp_bench_t *self)
{
    return self->seconds > 0 ? (double) self->done / self->seconds : 0;
}

static void
s_print_verify (hgp_bench_t *self, FILE *out)
{
    if (self->verify == HGP_BENCH_VERIFY_NA)
        fprintf (out, "verify: n/a (op %s)\n", hgp_op_name (self->set.op));
    else
    if (self->verify == HGP_BENCH_VERIFY_UNREAD)
        fprintf (out, "verify: unknown (cannot read the counters back: %s)\n",
                 self->unread.error.code);
    else
    if (self->verify == HGP_BENCH_VERIFY_OK)
        fprintf (out, "verify: ok (increase %lld, acked %llu, indeterminate "
                 "%llu)\n", (long long) self->increase,
                 (unsigned long long) self->ok,
                 (unsigned long long) self->indeterminate);
    else
        fprintf (out, "verify: FAILED: counters grew by %lld, want acked %llu"
                 " <= increase <= acked + indeterminate %llu\n",
                 (long long) self->increase, (unsigned long long) self->ok,
                 (unsigned long long) (self->ok + self->indeterminate));
}

void
hgp_bench_print (hgp_bench_t *self, FILE *out)
{
    assert (self && out);
    s_latency_t lat = s_latency (self);
    uint64_t errors = 0;
    for (uint32_t i = 0; i < self->ntally; i++)
        errors += self->tally [i].count;
    const hgp_bench_settings_t *set = &self->set;
    fprintf (out, "bench: %s, %llu requests, window %u, %u keys "
             "\"%s<0..%u>\"/%s, broker %s\n", hgp_op_name (set->op),
             (unsigned long long) set->requests, set->window, set->nkeys,
             set->prefix, set->nkeys - 1, set->type,
             hgp_client_endpoint (self->client));
    if (set->users)
        fprintf (out, "users: %u \"%su<0..%u>\", in turn\n", set->users,
                 set->prefix, set->users - 1);
    fprintf (out, "requests/s: %.0f (%llu in %.3f s)\n", s_rate (self),
             (unsigned long long) self->done, self->seconds);
    fprintf (out, "latency us: p50 %u  p99 %u  p99.9 %u  max %u\n",
             lat.p50, lat.p99, lat.p999, lat.max);
    fprintf (out, "replies: %llu ok, %llu errors, %llu indeterminate, "
             "%llu stale\n", (unsigned long long) self->ok,
             (unsigned long long) errors,
             (unsigned long long) self->indeterminate,
             (unsigned long long) self->stale);
    if (self->ntally) {
        fprintf (out, "errors:");
        for (uint32_t i = 0; i < self->ntally; i++)
            fprintf (out, " %s=%llu", self->tally [i].code,
                     (unsigned long long) self->tally [i].count);
        fprintf (out, "\n");
    }
    if (self->unsent)
        fprintf (out, "unsent: %llu\n", (unsigned long long) self->unsent);
    uint64_t resent = hgp_client_resent (self->client);
    if (resent)
        fprintf (out, "failover: %llu requests re-sent to another broker "
                 "with the same id\n", (unsigned long long) resent);
    s_print_verify (self, out);
}

static json_t *
s_json_verify (hgp_bench_t *self)
{
    if (self->verify == HGP_BENCH_VERIFY_NA)
        return json_null ();
    if (self->verify == HGP_BENCH_VERIFY_UNREAD)
        return json_pack ("{s:n,s:{s:o,s:o},s:i}", "ok",
                          "error",
                          "code", hgp_cli_json_text (self->unread.error.code),
                          "message",
                          hgp_cli_json_text (self->unread.error.message),
                          "status", (int) self->unread.error.status);
    return json_pack ("{s:b,s:o,s:I,s:o}",
                      "ok", self->verify == HGP_BENCH_VERIFY_OK,
                      "acked", hgp_cli_json_uint (self->ok),
                      "increase", (json_int_t) self->increase,
                      "indeterminate",
                      hgp_cli_json_uint (self->indeterminate));
}

json_t *
hgp_bench_json (hgp_bench_t *self)
{
    assert (self);
    s_latency_t lat = s_latency (self);
    json_t *errors = json_object ();
    for (uint32_t i = 0; i < self->ntally; i++) {
        json_t *key = hgp_cli_json_text (self->tally [i].code);
        json_object_set_new (errors, json_string_value (key),
                             hgp_cli_json_uint (self->tally [i].count));
        json_decref (key);
    }
    const hgp_bench_settings_t *set = &self->set;
    //  Seconds to the millisecond, rate to the request, as ever
    double seconds = round (self->seconds * 1000) / 1000;
    json_t *obj = json_pack (
        "{s:i,s:s,s:o,s:I,s:I,s:o,s:o,s:o,s:o,s:o,s:I,"
        "s:{s:I,s:I,s:I,s:I},s:o,s:o,s:o,s:o,s:o,s:I,s:o,s:o,s:o}",
        "status", HGP_STATUS_OK,
        "op", hgp_op_name (set->op),
        "requests", hgp_cli_json_uint (set->requests),
        "window", (json_int_t) set->window,
        "keys", (json_int_t) set->nkeys,
        "prefix", hgp_cli_json_text (set->prefix),
        "broker", hgp_cli_json_text (hgp_client_endpoint (self->client)),
        "sent", hgp_cli_json_uint (self->sent),
        "done", hgp_cli_json_uint (self->done),
        "elapsed_s", hgp_cli_json_real (seconds),
        "requests_per_s", (json_int_t) nearbyint (s_rate (self)),
        "latency_us", "p50", (json_int_t) lat.p50,
                      "p99", (json_int_t) lat.p99,
                      "p99_9", (json_int_t) lat.p999,
                      "max", (json_int_t) lat.max,
        "ok", hgp_cli_json_uint (self->ok),
        "errors", errors,
        "indeterminate", hgp_cli_json_uint (self->indeterminate),
        "stale", hgp_cli_json_uint (self->stale),
        "type", hgp_cli_json_text (set->type),
        "users", (json_int_t) set->users,
        "verify", s_json_verify (self),
        "unsent", hgp_cli_json_uint (self->unsent),
        "resent", hgp_cli_json_uint (hgp_client_resent (self->client)));
    assert (obj);
    return obj;
}
