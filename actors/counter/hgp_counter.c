/*  hgp_counter.c - the counter actor: incr, get and mget on Redis, every
 *  increment logged to Kafka first
 *
 *  One zactor thread owns the broker links (hgp_worker: one DEALER per
 *  broker discovery reports, schemas/PROTOCOL.md sections 5 and 9), one
 *  blocking Redis connection (hgp_redis) and one Kafka producer
 *  (hgp_eventlog). Nothing else touches them, so there are no locks and
 *  no callbacks: the actor polls, drains a batch from every broker, does
 *  the batch's round trips, replies to each request on the link it came
 *  from, and polls again.
 *
 *  The write path, with counter/event_log = sync (the default), per batch:
 *
 *    1. prepare (counter_prepare.lua, pipelined with the batch's reads):
 *       one MGET reads the batch's counters, then for each increment one
 *       SET NX GET writes a *promise* "<ck> <delta> <value>?<batch>" (the
 *       value predicted from the counter read and the earlier increments
 *       of the batch on that key; the batch numbered by the script, its
 *       key hgp:b:<batch> naming us) or returns the record there (an
 *       applied one, or a promise its batch kept, answers it: replayed).
 *       The script also renews this actor's lease.
 *    2. log: produce one event per new increment (idempotent producer,
 *       acks=all), carrying the predicted value; wait for every delivery
 *       report.
 *    3. apply (hgp_ledger's script): a counter key whose promises all
 *       hold (every one logged, predicted as we predicted) costs one
 *       INCRBY by the sum of its events, checked against the value the
 *       prepare read, and no record write: the batch's key, made "kept"
 *       in the same script, keeps those promises. Any other key: one INCRBY by the sum and a final record
 *       per event. And this actor's watermark per partition; all of it
 *       atomically.
 *    4. reply, with the value Redis returned (or the promise it kept).
 *
 *  Invariants, and why they hold:
 *
 *  - Every acknowledged increment is in the log exactly once. We reply
 *    200 only after Kafka acknowledged the event (2) and Redis applied it
 *    (3). A retry of the same id finds the record: "applied" answers it
 *    without a new event; "pending" (1) means an attempt may be in the log
 *    and not applied yet, and it is not logged again: a pending record of
 *    a live actor is answered 504 (retry later), one of a dead actor that
 *    is not yet recovered too, and only once recovery has read that
 *    actor's part of the log (hgp_ledger) may another actor take the
 *    request over. A request gets a second record only if its first attempt
 *    stalled between its lease check and the produce call for longer than
 *    the lease (a paused process) and another actor served a retry
 *    meanwhile; that late record is void, because recovery fenced us in
 *    the log before reading our events, and (3) refuses once our lease is
 *    gone (hgp_ledger.h, PROTOCOL.md section 10).
 *  - Redis converges to the sum of the log after any single crash. An
 *    event is applied at most once (its record) and at least once: when we
 *    die between (2) and (3), or (3) fails or its outcome is unknown, the
 *    event is above our watermark; we then give up our log identity
 *    (retire the lease, register a new one) and whoever recovers the old
 *    identity (any counter actor, us included) applies it from the log.
 *    After a Redis reconnect we do the same, since Redis may have come back
 *    older than we left it.
 *  - No error looks like success, and no outcome is claimed that we do not
 *    know. Kafka unreachable: the event was surely not written (delivery
 *    report "not persisted", or never produced) -> 503 log_unavailable,
 *    nothing applied, and the pending record is released. An event that
 *    may have been written, or was written but not applied -> 504: it will
 *    be applied by recovery, and a retry with the same id says when.
 *    Redis unreachable before (1) -> 503 unavailable, nothing logged.
 *  - Group commit: one prepare, one Kafka wait and one apply per batch,
 *    however many increments it holds.
 *
 *  - Serving several brokers changes nothing about exactly-once: each
 *    broker routes a key to its own rendezvous owner, and while brokers
 *    disagree about the live actors (for a beacon interval after a join,
 *    a heartbeat expiry after a death) two actors may write one key. That
 *    is safe because no actor caches a value, and the pending record,
 *    the event and the applied record are keyed by request id, not by
 *    actor (PROTOCOL.md 9.5 says what is fenced and what is not).
 *  - Values are exact int64s. Lua numbers are doubles, so the off-mode
 *    script uses INCRBY's integer reply only while it is below 2^53 in
 *    magnitude, where a double is exact; beyond that, and always in
 *    hgp_ledger's apply, the value is read back with GET as a string.
 *
 *  counter/event_log = off keeps the plain path (counter_incr.lua applies
 *  and records, no Kafka); async applies first and produces the events
 *  afterwards without waiting (fire-and-forget: a crash or a Kafka outage
 *  loses events). Both exist to measure what the guarantee costs; only
 *  sync has it.
 */
#include "hgp_counter.h"
#include "hgp_codec.h"
#include "hgp_eventlog.h"
#include "hgp_exporter.h"
#include "hgp_keyspace.h"
#include "hgp_ledger.h"
#include "hgp_lua.h"
#include "hgp_process.h"
#include "hgp_prom.h"
#include "hgp_redis.h"
#include "hgp_trace.h"
#include "hgp_worker.h"
#include <inttypes.h>
#include <unistd.h>

#define S_SERVICE           "counter"
/*  Counter keys in one batch: bounds what one round trip holds in memory
    (an mget counts its keys, anything else 1); always fits one full mget */
#define S_BATCH_KEYS_MAX    (16 * HGP_MGET_MAX)
#define S_REGISTER_MS       250         /* each Kafka call of a registration */
#define S_SWEEP_MS          1000        /* between looks for dead actors     */
#define S_SLICE_MS          250         /* longest recovery work at a time   */
#define S_ADVANCE_MS        10000       /* between idle watermark moves      */
#define S_LOG_PAUSE_MS      1000        /* after Kafka failed a whole batch  */
#define S_STALL_MS          500         /* a Kafka wait this much past its
                                           time: we were not running        */

typedef enum { S_LOG_OFF, S_LOG_ASYNC, S_LOG_SYNC } s_log_mode_t;

/*  Settings, read once from the config */
typedef struct {
    int64_t heartbeat;          /* heartbeat/interval, ms                  */
    int64_t liveness;           /* heartbeat/liveness, intervals           */
    int64_t capacity;           /* counter/capacity, announced in READY    */
    int64_t batch_max;          /* counter/batch_max, requests per batch   */
    int64_t dedup_ttl;          /* counter/dedup_ttl, seconds              */
    int64_t lease;              /* counter/lease, ms                       */
    s_log_mode_t log_mode;      /* counter/event_log                       */
    bool crash_after_log;       /* counter/crash_after_log: tests only     */
    int64_t stall_before_log;   /* counter/stall_before_log: tests only    */
} s_settings_t;

/*  Our Prometheus series (handles into prom; counter/metrics) */
typedef struct {
    int batches;                /* batches served                          */
    int requests;               /* ... and the requests in them            */
    int full;                   /* batches of batch_max requests           */
    int redis;                  /* Redis round trips of step 1 (or plain)  */
    int redis_seconds;          /* ... and their time                      */
    int log_waits;              /* waits for Kafka to confirm a batch      */
    int log_seconds;            /* ... and their time                      */
    int recovered;              /* dead actors recovered by us             */
    int registered;             /* 1 while we hold a log identity          */
    int replies [HGP_PROM_STATUSES];    /* by status                      */
} s_series_t;

/*  One request of the current batch */
typedef struct {
    hgp_work_t work;            /* link, token and deadline; body unused  */
    hgp_request_t request;      /* decoded body (empty if it did not)      */
    hgp_reply_t reply;          /* the answer, final once done             */
    bool done;                  /* reply is final                          */
    char counter_key [HGP_KEYSPACE_COUNTER_MAX];   /* incr, get           */
    char record_key [HGP_KEYSPACE_RECORD_MAX];     /* incr                */
    char delta [24];            /* incr: delta in decimal, as recorded     */
    size_t slot;                /* sync incr: its counter key in prepare   */
    bool promised;              /* prepare wrote its promise (codes 0, 6)  */
    bool predicted;             /* ... with a value, promise               */
    int64_t promise;            /* the value the promise predicts          */
    int64_t base;               /* its counter as the prepare read it      */
    //  The logged path
    int link;                   /* earlier item with the same id, or -1    */
    bool logging;               /* prepared: its event is to be produced   */
    bool release;               /* prepared, then not logged: drop record  */
    int64_t value;              /* counter before it, then after it        */
    hgp_delivery_t delivery;    /* what Kafka said about its event         */
} s_item_t;

/*  What one command of a pipeline answers for */
typedef enum { S_CMD_INCRS, S_CMD_GET, S_CMD_MGET } s_command_kind_t;
typedef struct {
    s_command_kind_t kind;      /* EVALSHA for all incrs, or a read        */
    size_t item;                /* the read's item; unused for INCRS       */
} s_command_t;

struct _hgp_counter_t {
    zsock_t *pipe;              /* commands from the caller                */
    hgp_config_t *config;       /* the caller's, outlives us               */
    hgp_worker_t *worker;       /* to the broker                           */
    s_settings_t settings;      /* what the config said                    */
    char actor_id [33];         /* random per start, told in READY         */
    bool terminated;            /* $TERM received                          */
    int64_t upkeep_at;          /* next idle check of Redis and the log    */
    hgp_redis_t *redis;         /* the store                               */
    int incr_script;            /* script handles on redis: counter_incr   */
    int prepare_script;         /* ... and counter_prepare.lua (KEYS/ARGV) */
    hgp_ledger_t *ledger;       /* applies events, leases, recovery        */
    hgp_eventlog_t *log;        /* Kafka; NULL when event_log is off       */
    //  Our identity in the log (sync mode)
    char log_id [HGP_ID_MAX + 1];  /* actor field of our events, lease id  */
    uint32_t generation;        /* log identities we had so far            */
    uint64_t batch;             /* the batch's number, from its prepare    */
    bool registered;            /* log_id holds a lease: we may produce    */
    bool identified;            /* async: actor_id is in hgp:ids           */
    bool retire;                /* give log_id up before the next batch    */
    int partitions;             /* of the topic, when registered           */
    uint64_t redis_connects;    /* connects seen when we registered        */
    zhashx_t *limbo;            /* ids we logged, outcome unsettled        */
    int64_t register_at;        /* next registration attempt               */
    bool kafka_failed;          /* the last attempt failed at Kafka        */
    char unregistered [160];    /* why we hold no identity, for replies    */
    int64_t register_delay;     /* backoff between attempts, ms            */
    int64_t log_paused_until;   /* Kafka failed a batch: 503 until then    */
    int64_t sweep_at;           /* next look for dead actors               */
    int64_t advance_at;         /* next idle watermark move                */
    //  The batch
    s_item_t *items;            /* batch_max entries                       */
    size_t *incrs;              /* items that are incrs, in order          */
    s_command_t *commands;      /* the pipeline, batch_max + 1 entries     */
    hgp_args_t *args;           /* one Redis command's arguments           */
    size_t args_max;            /* ... at most, for a full batch           */
    char *keybuf;               /* counter keys of one mget                */
    hgp_ledger_item_t *applies; /* step 3 of the logged path               */
    const char **held;          /* ... keys of promises it leaves unsettled */
    zhashx_t *latest;           /* counter key -> last item on it, a batch */
    zhashx_t *slots;            /* prepare: counter key -> its slot + 1    */
    char lease_ms [24];         /* settings.lease in decimal               */
    hgp_buf_t buf;              /* encoded bodies, reused                  */
    //  Statistics, told in the log
    uint64_t batches;           /* batches served                          */
    uint64_t full_batches;      /* ... of them with batch_max requests     */
    size_t largest;             /* most requests in one batch              */
    hgp_prom_t *prom;           /* our series, served by exporter          */
    hgp_exporter_t *exporter;   /* GET /metrics, or NULL                   */
    s_series_t series;          /* handles into prom                       */
};
typedef struct _hgp_counter_t hgp_counter_t;


/*  --------------------------------------------------------------------------
    Settings
*/

/*  Fill s from config; NULL or a message to free */
static char *
s_settings_load (hgp_config_t *config, s_settings_t *s)
{
    memset (s, 0, sizeof *s);
    s->heartbeat = hgp_config_int (config, "heartbeat/interval", 500, 10, 60000);
    s->liveness = hgp_config_int (config, "heartbeat/liveness", 4, 1, 100);
    s->capacity = hgp_config_int (config, "counter/capacity", 2048, 1, 65535);
    s->batch_max = hgp_config_int (config, "counter/batch_max", 512, 1,
                                   HGP_LEDGER_BATCH_MAX);
    s->dedup_ttl = hgp_config_int (config, "counter/dedup_ttl", 600,
                                   1, INT32_MAX);
    s->lease = hgp_config_int (config, "counter/lease",
                               s->heartbeat * s->liveness, 100, 600000);
    s->crash_after_log = hgp_config_int (config, "counter/crash_after_log",
                                         0, 0, 1) == 1;
    s->stall_before_log = hgp_config_int (config, "counter/stall_before_log",
                                          0, 0, 60000);
    if (hgp_config_error (config))
        return strdup (hgp_config_error (config));
    const char *mode = hgp_config_str (config, "counter/event_log", "sync");
    if (streq (mode, "sync"))
        s->log_mode = S_LOG_SYNC;
    else
    if (streq (mode, "async"))
        s->log_mode = S_LOG_ASYNC;
    else
    if (streq (mode, "off"))
        s->log_mode = S_LOG_OFF;
    else
        return zsys_sprintf ("config: counter/event_log (HGP_COUNTER_EVENT_LOG)"
                             " is '%s'; want sync, async or off", mode);
    return NULL;
}

char *
hgp_counter_config_check (hgp_config_t *config)
{
    s_settings_t s;
    char *error = s_settings_load (config, &s);
    if (!error)
        error = hgp_worker_config_check (config);
    if (!error)
        error = hgp_exporter_config_check (config, "counter");
    if (!error) {
        hgp_redis_t *redis = hgp_redis_new (config, "counter", &error);
        hgp_redis_destroy (&redis);
    }
    if (!error && s.log_mode != S_LOG_OFF) {
        hgp_eventlog_t *log = hgp_eventlog_new (config, "counter", &error);
        hgp_eventlog_destroy (&log);
    }
    return error;
}


/*  --------------------------------------------------------------------------
    Replies of one item
*/

static void
s_item_fail (s_item_t *item, uint16_t status, const char *code,
             const char *format, ...) __attribute__ ((format (printf, 4, 5)));

static void
s_item_fail (s_item_t *item, uint16_t status, const char *code,
             const char *format, ...)
{
    assert (!item->done);
    char message [HGP_MESSAGE_MAX + 1];
    va_list args;
    va_start (args, format);
    vsnprintf (message, sizeof message, format, args);
    va_end (args);
    free (item->reply.values);
    item->reply.values = NULL;
    item->reply.nvalues = 0;
    item->reply.has_value = false;
    item->reply.replayed = false;
    hgp_error_set (&item->reply.error, status, code, "%s", message);
    item->done = true;
}

static void
s_item_value (s_item_t *item, int64_t value, bool replayed)
{
    assert (!item->done);
    item->reply.has_value = true;
    item->reply.value = value;
    item->reply.replayed = replayed;
    item->done = true;
}

/*  Fail every item not done yet (of kind op, or all for HGP_OP_NONE) */
static void
s_fail_pending (hgp_counter_t *self, size_t count, hgp_op_t op,
                uint16_t status, const char *code, const char *message)
{
    for (size_t i = 0; i < count; i++) {
        s_item_t *item = &self->items [i];
        if (!item->done && (op == HGP_OP_NONE || item->request.op == op))
            s_item_fail (item, status, code, "%s", message);
    }
}

/*  Fail the pending increments that we did not log: definite, except for
    ids whose earlier attempt we logged and could not settle (limbo) */
static void
s_fail_unlogged (hgp_counter_t *self, size_t count, uint16_t status,
                 const char *code, const char *message)
{
    for (size_t i = 0; i < count; i++) {
        s_item_t *item = &self->items [i];
        if (item->done || item->request.op != HGP_OP_INCR)
            continue;
        if (zhashx_lookup (self->limbo, item->request.id))
            s_item_fail (item, HGP_STATUS_TIMEOUT, "timeout",
                         "an earlier attempt of %s was logged and is not"
                         " settled yet; retry with the same id",
                         item->request.id);
        else
            s_item_fail (item, status, code, "%s", message);
    }
}


/*  --------------------------------------------------------------------------
    Our identity in the event log
*/

/*  Give up our log identity: whatever of ours is in the log and not
    applied is recovered from it by whoever recovers the old id (any
    counter actor, us included), so from here on we need a new one */
static void
s_log_retire (hgp_counter_t *self, const char *why)
{
    if (!self->registered)
        return;
    zsys_warning ("counter: giving up log identity %s (%s); its events will"
                  " be recovered from the log", self->log_id, why);
    hgp_ledger_retire (self->ledger, self->log_id);   //  else it expires
    self->registered = false;
    self->kafka_failed = false;
    snprintf (self->unregistered, sizeof self->unregistered,
              "it gave up its identity (%s)", why);
    self->retire = false;
    self->register_at = zclock_mono ();
    self->register_delay = S_REGISTER_MS;
    self->sweep_at = zclock_mono ();        //  recover it soon
}

/*  Take a new log identity: read where every partition ends now, then
    register (lease, watermarks at those ends). Needs Kafka and Redis.
    Kafka calls are short: the broker must keep hearing from us. */
static void
s_log_register (hgp_counter_t *self)
{
    int64_t now = zclock_mono ();
    if (now < self->register_at)
        return;
    if (!hgp_redis_ready (self->redis, false)) {
        //  Redis paces its own reconnects: register as soon as it is back
        self->register_at = now + S_REGISTER_MS;
        self->kafka_failed = false;
        snprintf (self->unregistered, sizeof self->unregistered,
                  "redis at %s is unreachable", hgp_redis_address (self->redis));
        return;
    }
    self->register_at = now + self->register_delay;
    self->register_delay = MIN (self->register_delay * 2, 5000);
    int partitions = hgp_eventlog_partitions (self->log, S_REGISTER_MS);
    if (partitions < 1 || partitions > HGP_LEDGER_BATCH_MAX) {
        self->kafka_failed = true;
        if (self->generation == 0 || self->register_delay < 1000)
            zsys_warning ("counter: cannot register with the event log: %s",
                          partitions < 1 ? hgp_eventlog_error (self->log)
                                         : "too many partitions");
        return;
    }
    int64_t *ends = (int64_t *) calloc ((size_t) partitions, sizeof (int64_t));
    assert (ends);
    int rc = 0;
    for (int p = 0; p < partitions && rc == 0; p++) {
        int64_t low;
        rc = hgp_eventlog_offsets (self->log, p, &low, &ends [p],
                                   S_REGISTER_MS);
    }
    char id [HGP_ID_MAX + 1], reason [256] = "";
    snprintf (id, sizeof id, "%s.%u", self->actor_id, self->generation + 1);
    self->kafka_failed = rc != 0;
    if (rc == 0)
        rc = hgp_ledger_register (self->ledger, id, ends, partitions,
                                  reason, sizeof reason);
    else
        snprintf (reason, sizeof reason, "%s", hgp_eventlog_error (self->log));
    free (ends);
    if (rc && !self->kafka_failed)
        snprintf (self->unregistered, sizeof self->unregistered,
                  "redis refused its registration: %.100s", reason);
    if (rc) {
        zsys_warning ("counter: cannot register with the event log: %s",
                      reason);
        return;
    }
    self->generation++;
    memcpy (self->log_id, id, sizeof id);
    self->registered = true;
    self->partitions = partitions;
    self->redis_connects = hgp_redis_connects (self->redis);
    self->register_delay = S_REGISTER_MS;
    //  Ids we could not settle belonged to the old identity: recovery of
    //  that one settles them, and our prepare script sees its records
    zhashx_purge (self->limbo);
    zsys_info ("counter: logging to %s topic %s (%d partitions) as %s",
               hgp_eventlog_brokers (self->log), hgp_eventlog_topic (self->log),
               partitions, self->log_id);
}

/*  Give up an identity that must go, take a new one when one is due */
static void
s_log_identity (hgp_counter_t *self)
{
    if (self->registered
    &&  (self->retire
         || hgp_redis_connects (self->redis) != self->redis_connects))
        s_log_retire (self, self->retire ? "a batch was not settled"
                                         : "redis reconnected");
    if (!self->registered)
        s_log_register (self);
}

/*  Between batches: keep the identity valid, recover dead actors, and
    move our watermarks over partitions we did not write to lately */
static void
s_log_upkeep (hgp_counter_t *self)
{
    if (self->settings.log_mode == S_LOG_ASYNC && !self->identified
    &&  hgp_redis_context (self->redis))
        //  No lease, no recovery, but readers trust only identities
        //  that registered (hgp_ledger_vouch)
        self->identified = hgp_ledger_identify (self->ledger,
                                                self->actor_id) == 0;
    if (self->settings.log_mode != S_LOG_SYNC)
        return;
    s_log_identity (self);
    hgp_prom_set (self->prom, self->series.registered, self->registered);
    if (!self->registered)
        return;
    if (!hgp_redis_context (self->redis))
        return;
    int renewed = hgp_ledger_renew (self->ledger, self->log_id);
    if (renewed == 0) {
        s_log_retire (self, "its lease expired");
        return;
    }
    int64_t now = zclock_mono ();
    if (renewed == 1 && now >= self->sweep_at) {
        //  A slice at a time: the broker must keep hearing from us, and
        //  requests keep coming
        self->sweep_at = now + S_SWEEP_MS;
        int recovered = hgp_ledger_recover_dead (
            self->ledger, self->log, self->log_id,
            now + MIN (self->settings.heartbeat / 2, S_SLICE_MS));
        if (recovered > 0)
            hgp_prom_add (self->prom, self->series.recovered, recovered);
    }
    if (renewed == 1 && now >= self->advance_at) {
        //  Nothing of ours is outstanding between batches: every event we
        //  produced is applied, so all of each partition up to now is done
        self->advance_at = now + S_ADVANCE_MS;
        for (int p = 0; p < self->partitions; p++) {
            int64_t low, high;
            if (hgp_eventlog_offsets (self->log, p, &low, &high,
                                      S_REGISTER_MS))
                break;
            if (high > 0)
                hgp_ledger_advance (self->ledger, self->log_id, p, high - 1);
        }
    }
}


/*  --------------------------------------------------------------------------
    One pipelined round trip: the increments' script and the reads
*/

/*  Commands from first on got no reply: the connection broke. prepare:
    the script was the logged path's step 1, which logs nothing, so its
    failure is definite. */
static void
s_commands_lost (hgp_counter_t *self, size_t count, size_t first,
                 size_t ncommands, bool prepare, const char *reason)
{
    for (size_t k = first; k < ncommands; k++) {
        s_command_t *command = &self->commands [k];
        if (command->kind == S_CMD_INCRS && prepare)
            s_fail_unlogged (self, count, HGP_STATUS_UNAVAILABLE,
                             "unavailable", "redis connection broke before"
                             " the increment was logged; nothing was applied");
        else
        if (command->kind == S_CMD_INCRS)
            s_fail_pending (self, count, HGP_OP_INCR, HGP_STATUS_TIMEOUT,
                            "timeout", "redis connection broke after the"
                            " increment was sent; outcome unknown, retry with"
                            " the same id");
        else {
            s_item_t *item = &self->items [command->item];
            if (!item->done)
                s_item_fail (item, HGP_STATUS_UNAVAILABLE, "unavailable",
                             "redis connection broke: %s", reason);
        }
    }
}

/*  A {code, text} result of a script; false when it is not one */
static bool
s_result (redisReply *r, long long *code, const char **text, size_t *len)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
    ||  r->element [0]->type != REDIS_REPLY_INTEGER
    ||  (r->element [1]->type != REDIS_REPLY_STRING
      && r->element [1]->type != REDIS_REPLY_NIL))
        return false;
    *code = r->element [0]->integer;
    *text = r->element [1]->type == REDIS_REPLY_STRING ? r->element [1]->str
                                                        : "";
    *len = r->element [1]->type == REDIS_REPLY_STRING ? r->element [1]->len : 0;
    return true;
}

/*  A value in a script result; false (item failed 504) if it is not an
    integer: applied or not, we cannot say to what */
static bool
s_result_value (s_item_t *item, const char *text, size_t len, int64_t *value)
{
    if (hgp_redis_int64 (text, len, value) == 0)
        return true;
    zsys_error ("redis: non-integer counter value for %s", item->request.id);
    s_item_fail (item, HGP_STATUS_TIMEOUT, "timeout",
                 "redis holds a value that is not an integer; outcome unknown");
    return false;
}

/*  Redis refused a write before it changed anything */
static void
s_item_refused (s_item_t *item, const char *text, size_t len)
{
    if (hgp_redis_unavailable (text))
        s_item_fail (item, HGP_STATUS_UNAVAILABLE, "unavailable",
                     "redis refused the write: %.*s", (int) len, text);
    else {
        zsys_error ("redis: refused %s: %.*s", item->request.id, (int) len,
                    text);
        s_item_fail (item, HGP_STATUS_INTERNAL, "internal",
                     "redis refused the increment: %.*s", (int) len, text);
    }
}

/*  One result of the plain script */
static void
s_incr_result (hgp_counter_t *self, s_item_t *item, redisReply *result)
{
    hgp_request_t *req = &item->request;
    long long code;
    const char *text;
    size_t len;
    int64_t value;
    if (!s_result (result, &code, &text, &len)) {
        zsys_error ("redis: counter script gave a malformed result for %s",
                    req->id);
        s_item_fail (item, HGP_STATUS_TIMEOUT, "timeout",
                     "redis gave an unexpected answer; outcome unknown,"
                     " retry with the same id");
        return;
    }
    switch (code) {
        case 0:
        case 1:
            if (s_result_value (item, text, len, &value)) {
                s_item_value (item, value, code == 1);
                item->value = value;
            }
            break;
        case -1:
            s_item_fail (item, HGP_STATUS_CONFLICT, "id_conflict",
                         "id %s was already used for a different key or"
                         " delta", req->id);
            break;
        case -2:
            s_item_fail (item, HGP_STATUS_BAD_REQUEST, "overflow",
                         "%s/%s %+" PRId64 " would leave the signed 64-bit"
                         " range; nothing changed", req->key.resource_id,
                         req->key.counter_type, req->delta);
            break;
        case -3:
            s_item_refused (item, text, len);
            break;
        case 2:
            s_item_fail (item, HGP_STATUS_TIMEOUT, "timeout",
                         "an attempt of %s by actor %.*s is in the event log"
                         " and not applied yet; retry with the same id",
                         req->id, (int) len, text);
            break;
        default:
            zsys_error ("redis: counter script gave code %lld for %s",
                        code, req->id);
            s_item_fail (item, HGP_STATUS_TIMEOUT, "timeout",
                         "redis gave an unexpected answer; outcome unknown,"
                         " retry with the same id");
    }
}

/*  The id of item j appeared earlier in the batch: its answer follows the
    earlier one's */
static int
s_earlier (hgp_counter_t *self, size_t j)
{
    for (size_t k = 0; k < j; k++) {
        s_item_t *other = &self->items [self->incrs [k]];
        if (streq (other->request.id, self->items [self->incrs [j]].request.id))
            return (int) self->incrs [k];
    }
    return -1;
}

/*  One result of the prepare script; values: the counters it read */
static void
s_prepare_result (hgp_counter_t *self, size_t j, redisReply *result,
                  redisReply *values)
{
    s_item_t *item = &self->items [self->incrs [j]];
    hgp_request_t *req = &item->request;
    long long code;
    const char *text;
    size_t len;
    int64_t value;
    if (!s_result (result, &code, &text, &len)) {
        //  Step 1 logs nothing: whatever it did, nothing gets applied
        zsys_error ("redis: prepare script gave a malformed result for %s",
                    req->id);
        s_item_fail (item, HGP_STATUS_INTERNAL, "internal",
                     "redis gave an unexpected answer; nothing was applied");
        return;
    }
    switch (code) {
        case 3:
            item->link = s_earlier (self, j);
            if (item->link < 0) {
                zsys_error ("redis: prepare script says %s came earlier in"
                            " the batch, and it did not", req->id);
                s_item_fail (item, HGP_STATUS_INTERNAL, "internal",
                             "redis gave an unexpected answer; nothing was"
                             " applied");
            }
            break;                  //  answered with the earlier one
        case 6:
            //  Our promise of an earlier batch, promised again: never
            //  applied, unless its attempt was logged and is unsettled
            item->promised = true;
            if (zhashx_lookup (self->limbo, req->id)) {
                s_item_fail (item, HGP_STATUS_TIMEOUT, "timeout",
                             "an earlier attempt of %s was logged and is not"
                             " settled yet; retry with the same id", req->id);
                break;
            }
            //  fall through
        case 0: {
            item->promised = true;
            item->predicted = len > 0
                           && hgp_redis_int64 (text, len, &item->promise) == 0;
            redisReply *counter = values->element [item->slot];
            if (counter->type != REDIS_REPLY_STRING) {
                zsys_error ("redis: prepare script read no counter for %s",
                            req->id);
                s_item_fail (item, HGP_STATUS_INTERNAL, "internal",
                             "redis gave an unexpected answer; nothing was"
                             " applied");
                break;
            }
            if (s_result_value (item, counter->str, counter->len, &value)) {
                item->value = value;
                item->base = value;
                item->logging = true;
            }
            break;
        }
        case 1:
            if (s_result_value (item, text, len, &value))
                s_item_value (item, value, true);
            break;
        case -1:
            s_item_fail (item, HGP_STATUS_CONFLICT, "id_conflict",
                         "id %s was already used for a different key or"
                         " delta", req->id);
            break;
        case 2:
            s_item_fail (item, HGP_STATUS_TIMEOUT, "timeout",
                         "an attempt of %s is in progress at counter %.*s;"
                         " retry with the same id", req->id, (int) len, text);
            break;
        case 5:
            s_item_fail (item, HGP_STATUS_TIMEOUT, "timeout",
                         "an attempt of %s by counter %.*s, which died, is"
                         " being recovered from the event log; retry with the"
                         " same id", req->id, (int) len, text);
            break;
        case -3:
            s_item_refused (item, text, len);
            break;
        default:
            zsys_error ("redis: prepare script gave code %lld for %s",
                        code, req->id);
            s_item_fail (item, HGP_STATUS_INTERNAL, "internal",
                         "redis gave an unexpected answer; nothing was"
                         " applied");
    }
}

/*  The EVALSHA reply; true when it was NOSCRIPT (incrs left pending) */
static bool
s_incrs_result (hgp_counter_t *self, size_t count, size_t nincrs,
                bool prepare, redisReply *reply)
{
    if (reply->type == REDIS_REPLY_ERROR) {
        if (strncmp (reply->str, "NOSCRIPT", 8) == 0)
            return true;
        if (prepare || hgp_redis_refused (reply->str)) {
            char message [HGP_MESSAGE_MAX + 1];
            snprintf (message, sizeof message, "redis refused the write: %s;"
                      " nothing was applied", reply->str);
            s_fail_unlogged (self, count, HGP_STATUS_UNAVAILABLE,
                             "unavailable", message);
        }
        else {
            zsys_error ("redis: counter script failed: %s", reply->str);
            s_fail_pending (self, count, HGP_OP_INCR, HGP_STATUS_TIMEOUT,
                            "timeout", "the redis script failed part way;"
                            " outcome unknown, retry with the same id");
        }
        return false;
    }
    if (prepare && reply->type == REDIS_REPLY_INTEGER && reply->integer == -9) {
        //  Our lease expired (we stalled, or Redis lost it): a new identity
        self->retire = true;
        s_fail_unlogged (self, count, HGP_STATUS_UNAVAILABLE,
                         "unavailable", "the counter's event-log identity"
                         " expired in redis; it is registering a new one;"
                         " nothing was applied");
        return false;
    }
    //  The prepare script answers {results, values, batch}, the plain one
    //  results
    redisReply *results = reply, *values = NULL;
    if (prepare && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3
    &&  reply->element [2]->type == REDIS_REPLY_STRING) {
        results = reply->element [0];
        values = reply->element [1];
        self->batch = strtoull (reply->element [2]->str, NULL, 10);
    }
    size_t nslots = 0;
    for (size_t j = 0; prepare && j < nincrs; j++)
        nslots = MAX (nslots, self->items [self->incrs [j]].slot + 1);
    if (results->type != REDIS_REPLY_ARRAY || results->elements != nincrs
    ||  (prepare && (!values || values->type != REDIS_REPLY_ARRAY
                     || values->elements != nslots))) {
        zsys_error ("redis: counter script gave a reply of type %d, %zu"
                    " elements for %zu increments", reply->type,
                    reply->elements, nincrs);
        if (prepare)
            s_fail_unlogged (self, count, HGP_STATUS_INTERNAL, "internal",
                             "redis gave an unexpected answer; nothing was"
                             " applied");
        else
            s_fail_pending (self, count, HGP_OP_INCR, HGP_STATUS_TIMEOUT,
                            "timeout", "redis gave an unexpected answer;"
                            " outcome unknown, retry with the same id");
        return false;
    }
    for (size_t j = 0; j < nincrs; j++) {
        if (prepare)
            s_prepare_result (self, j, results->element [j], values);
        else
            s_incr_result (self, &self->items [self->incrs [j]],
                           results->element [j]);
    }
    return false;
}

static void
s_get_result (s_item_t *item, redisReply *reply)
{
    int64_t value = 0;
    if (reply->type == REDIS_REPLY_NIL)
        s_item_value (item, 0, false);
    else
    if (reply->type == REDIS_REPLY_STRING
    &&  hgp_redis_int64 (reply->str, reply->len, &value) == 0)
        s_item_value (item, value, false);
    else
    if (reply->type == REDIS_REPLY_ERROR && hgp_redis_unavailable (reply->str))
        s_item_fail (item, HGP_STATUS_UNAVAILABLE, "unavailable",
                     "redis refused the read: %s", reply->str);
    else
        s_item_fail (item, HGP_STATUS_INTERNAL, "internal",
                     "redis key %s does not hold an integer", item->counter_key);
}

static void
s_mget_result (s_item_t *item, redisReply *reply)
{
    hgp_request_t *req = &item->request;
    if (reply->type == REDIS_REPLY_ERROR) {
        if (hgp_redis_unavailable (reply->str))
            s_item_fail (item, HGP_STATUS_UNAVAILABLE, "unavailable",
                         "redis refused the read: %s", reply->str);
        else
            s_item_fail (item, HGP_STATUS_INTERNAL, "internal",
                         "redis refused the read: %s", reply->str);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != req->nkeys) {
        s_item_fail (item, HGP_STATUS_INTERNAL, "internal",
                     "redis gave an unexpected answer to MGET");
        return;
    }
    int64_t *values = (int64_t *) calloc (req->nkeys, sizeof (int64_t));
    assert (values);
    for (size_t k = 0; k < req->nkeys; k++) {
        redisReply *element = reply->element [k];
        if (element->type == REDIS_REPLY_NIL)
            values [k] = 0;
        else
        if (element->type != REDIS_REPLY_STRING
        ||  hgp_redis_int64 (element->str, element->len, &values [k])) {
            free (values);
            s_item_fail (item, HGP_STATUS_INTERNAL, "internal",
                         "the counter %s/%s does not hold an integer",
                         req->keys [k].resource_id, req->keys [k].counter_type);
            return;
        }
    }
    item->reply.values = values;
    item->reply.nvalues = req->nkeys;
    item->done = true;
}

/*  Arguments of the biggest command a batch of n requests sends: the
    prepare EVALSHA (EVALSHA, sha, numkeys, 2 registry/lease keys, 2n
    counter and record keys, log id, lease, ttl, batch, n slots and n
    deltas: 9 + 4n; the plain script needs 4 + 3n), or one MGET of a full
    mget */
static size_t
s_argv_max (size_t n)
{
    return MAX (9 + 4 * n, 1 + HGP_MGET_MAX);
}

/*  Send every pending incr (one EVALSHA of the plain or the prepare
    script) and, if with_reads, every pending read, then read the answers.
    Returns true if the EVALSHA got NOSCRIPT: those incrs were not run and
    are still pending. */
static bool
s_round_trip (hgp_counter_t *self, size_t count, bool with_reads,
              bool prepare)
{
    assert (hgp_redis_context (self->redis));
    size_t ncommands = 0;
    size_t nincrs = 0;
    for (size_t i = 0; i < count; i++)
        if (!self->items [i].done && self->items [i].request.op == HGP_OP_INCR)
            self->incrs [nincrs++] = i;

    hgp_args_t *args = self->args;
    char lease [HGP_ID_MAX + 16];
    if (nincrs && prepare) {
        hgp_args_evalsha (args, self->args_max);
        hgp_args_set (args, 1, hgp_redis_sha (self->redis,
                                              self->prepare_script), 40);
        snprintf (lease, sizeof lease, "hgp:lease:%s", self->log_id);
        hgp_args_add (args, "hgp:actors", 10);
        hgp_args_add (args, lease, strlen (lease));
        for (size_t j = 0; j < nincrs; j++) {
            s_item_t *item = &self->items [self->incrs [j]];
            hgp_args_add (args, item->record_key, strlen (item->record_key));
        }
        //  Each counter key once: the script reads it once
        zhashx_purge (self->slots);
        size_t nslots = 0;
        for (size_t j = 0; j < nincrs; j++) {
            s_item_t *item = &self->items [self->incrs [j]];
            size_t slot = (size_t) zhashx_lookup (self->slots,
                                                  item->counter_key);
            if (slot == 0) {
                slot = ++nslots;
                zhashx_insert (self->slots, item->counter_key, (void *) slot);
                hgp_args_add (args, item->counter_key,
                              strlen (item->counter_key));
            }
            item->slot = slot - 1;
        }
        hgp_args_set_int (args, 2, (int64_t) (2 + nincrs + nslots));
        const char *ttl = hgp_ledger_ttl (self->ledger);
        self->batch = 0;                //  the prepare numbers it
        hgp_args_add (args, self->log_id, strlen (self->log_id));
        hgp_args_add (args, self->lease_ms, strlen (self->lease_ms));
        hgp_args_add (args, ttl, strlen (ttl));
        for (size_t j = 0; j < nincrs; j++) {
            s_item_t *item = &self->items [self->incrs [j]];
            hgp_args_add_int (args, (int64_t) item->slot + 1);
            hgp_args_add (args, item->delta, strlen (item->delta));
        }
        if (hgp_redis_append (self->redis, args))
            return false;               //  nothing sent: caller answers 503
        self->commands [ncommands++] = (s_command_t) { S_CMD_INCRS, 0 };
    }
    else
    if (nincrs) {
        hgp_args_evalsha (args, self->args_max);
        hgp_args_set (args, 1, hgp_redis_sha (self->redis, self->incr_script),
                      40);
        hgp_args_set_int (args, 2, (int64_t) nincrs * 2);
        for (size_t j = 0; j < nincrs; j++) {
            s_item_t *item = &self->items [self->incrs [j]];
            hgp_args_add (args, item->counter_key, strlen (item->counter_key));
            hgp_args_add (args, item->record_key, strlen (item->record_key));
        }
        const char *ttl = hgp_ledger_ttl (self->ledger);
        hgp_args_add (args, ttl, strlen (ttl));
        for (size_t j = 0; j < nincrs; j++) {
            s_item_t *item = &self->items [self->incrs [j]];
            hgp_args_add (args, item->delta, strlen (item->delta));
        }
        if (hgp_redis_append (self->redis, args))
            return false;               //  nothing sent: caller answers 503
        self->commands [ncommands++] = (s_command_t) { S_CMD_INCRS, 0 };
    }
    for (size_t i = 0; with_reads && i < count; i++) {
        s_item_t *item = &self->items [i];
        if (item->done)
            continue;
        hgp_args_start (args, self->args_max);
        if (item->request.op == HGP_OP_GET) {
            hgp_args_add (args, "GET", 3);
            hgp_args_add (args, item->counter_key, strlen (item->counter_key));
            if (hgp_redis_append (self->redis, args))
                return false;
            self->commands [ncommands++] = (s_command_t) { S_CMD_GET, i };
        }
        else
        if (item->request.op == HGP_OP_MGET) {
            hgp_args_add (args, "MGET", 4);
            for (size_t k = 0; k < item->request.nkeys; k++) {
                char *key = self->keybuf + k * HGP_KEYSPACE_COUNTER_MAX;
                size_t len = hgp_keyspace_counter (&item->request.keys [k], key,
                                                   HGP_KEYSPACE_COUNTER_MAX);
                hgp_args_add (args, key, len);
            }
            if (hgp_redis_append (self->redis, args))
                return false;
            self->commands [ncommands++] = (s_command_t) { S_CMD_MGET, i };
        }
    }

    bool noscript = false;
    redisContext *c = hgp_redis_context (self->redis);
    for (size_t k = 0; k < ncommands; k++) {
        redisReply *reply = NULL;
        if (redisGetReply (c, (void **) &reply) != REDIS_OK) {
            char reason [128];
            snprintf (reason, sizeof reason, "%s", hgp_redis_why (c));
            if (reply)
                freeReplyObject (reply);
            s_commands_lost (self, count, k, ncommands, prepare, reason);
            hgp_redis_drop (self->redis, reason);
            return noscript;
        }
        s_command_t *command = &self->commands [k];
        if (command->kind == S_CMD_INCRS)
            noscript = s_incrs_result (self, count, nincrs, prepare, reply);
        else
        if (command->kind == S_CMD_GET)
            s_get_result (&self->items [command->item], reply);
        else
            s_mget_result (&self->items [command->item], reply);
        freeReplyObject (reply);
    }
    return noscript;
}

/*  Step 1 and the reads (or the plain path), reloading the scripts once
    if Redis lost them */
static void
s_redis_batch (hgp_counter_t *self, size_t count, bool prepare)
{
    int64_t start = zclock_usecs ();
    int noscript = s_round_trip (self, count, true, prepare);
    hgp_prom_add (self->prom, self->series.redis, 1);
    hgp_prom_add (self->prom, self->series.redis_seconds,
                  zclock_usecs () - start);
    if (noscript) {
        //  NOSCRIPT: the server lost our scripts (SCRIPT FLUSH, failover)
        //  and ran nothing, so loading them and sending again is safe
        zsys_warning ("redis: counter script missing (NOSCRIPT), loading it"
                      " again");
        if (hgp_redis_reload (self->redis) == 0)
            s_round_trip (self, count, false, prepare);
    }
}


/*  --------------------------------------------------------------------------
    The logged path: steps 2 to 4
*/

/*  The event of an increment item, with the counter's value after it, as
    written by actor (PROTOCOL.md 10) */
static void
s_event_fill (hgp_event_t *event, const s_item_t *item, int64_t value,
              const char *actor)
{
    memset (event, 0, sizeof *event);
    memcpy (event->id, item->request.id, sizeof event->id);
    event->key = item->request.key;
    event->delta = item->request.delta;
    memcpy (event->user_id, item->request.user_id, sizeof event->user_id);
    if (hgp_trace_sampled (item->request.trace))   //  the rest: no bytes
        memcpy (event->trace, item->request.trace, sizeof event->trace);
    event->value = value;
    event->ts = (uint64_t) zclock_time ();
    snprintf (event->actor, sizeof event->actor, "%s", actor);
}

/*  The values the events will carry: the counter as the prepare script
    read it, plus the earlier increments of this batch on the same key */
static void
s_predict (hgp_counter_t *self, size_t count)
{
    zhashx_purge (self->latest);
    for (size_t i = 0; i < count; i++) {
        s_item_t *item = &self->items [i];
        if (!item->logging)
            continue;
        s_item_t *before = (s_item_t *) zhashx_lookup (self->latest,
                                                       item->counter_key);
        int64_t base = before ? before->value : item->value;
        if (__builtin_add_overflow (base, item->request.delta, &item->value)) {
            item->logging = false;
            item->release = true;
            s_item_fail (item, HGP_STATUS_BAD_REQUEST, "overflow",
                         "%s/%s %+" PRId64 " would leave the signed 64-bit"
                         " range; nothing changed",
                         item->request.key.resource_id,
                         item->request.key.counter_type, item->request.delta);
            continue;
        }
        zhashx_update (self->latest, item->counter_key, item);
    }
}

/*  An event we logged and could not apply or settle: answered 504, and
    our identity must go so that recovery applies it from the log */
static void
s_limbo (hgp_counter_t *self, s_item_t *item, const char *why)
{
    zhashx_insert (self->limbo, item->request.id, (void *) 1);
    self->retire = true;
    if (!item->done)
        s_item_fail (item, HGP_STATUS_TIMEOUT, "timeout", "%s; outcome unknown,"
                     " retry with the same id", why);
}

/*  Prepared increments whose budget is gone: released, answered 504
    (the broker did already), nothing logged or applied */
static void
s_expire_prepared (hgp_counter_t *self, size_t count, int64_t now)
{
    for (size_t i = 0; i < count; i++) {
        s_item_t *item = &self->items [i];
        if (!item->logging || now < item->work.deadline)
            continue;
        item->logging = false;
        item->release = true;
        s_item_fail (item, HGP_STATUS_TIMEOUT, "timeout",
                     "the budget ran out before the increment was logged;"
                     " nothing was applied");
    }
}

/*  Which counter keys of the batch can be applied fast (one INCRBY, no
    record writes: hgp_ledger_apply): those where every increment the
    prepare promised is logged and was promised the value we predicted,
    so the promises are right once the sum is added to what the prepare
    read. Called once the log has answered; self->latest then holds the
    keys that cannot (a released increment, one the log did not confirm,
    a promise without a value, or one that differs from ours). */
static void
s_fast_keys (hgp_counter_t *self, size_t count)
{
    zhashx_purge (self->latest);
    for (size_t i = 0; i < count; i++) {
        s_item_t *item = &self->items [i];
        if (!item->promised)
            continue;
        bool right = item->logging && item->predicted
                  && item->promise == item->value;
        if (!right)
            zhashx_update (self->latest, item->counter_key, item);
    }
}

static bool
s_fast_key (hgp_counter_t *self, s_item_t *item)
{
    return item->promised && !zhashx_lookup (self->latest, item->counter_key);
}

static void
s_log_batch (hgp_counter_t *self, size_t count, int64_t prepared_at)
{
    s_predict (self, count);
    //  Our lease was renewed when step 1 was sent. If we stalled so long
    //  since that it may have expired, another actor may be recovering
    //  us: produce nothing under this identity
    int64_t now = zclock_mono ();
    bool stale = now - prepared_at > self->settings.lease / 2;
    //  The last look at the budgets: a request whose budget ran out
    //  while we prepared it (a slow Redis, a stall) is not logged, so it
    //  is not applied after the broker answered its client 504. What is
    //  left (a stall from here to the produce call, and time spent in
    //  our socket before we read it) is PROTOCOL.md 9.5's to say.
    s_expire_prepared (self, count, now);
    if (self->settings.stall_before_log && !stale) {
        //  Fault injection for tests, once: a process paused right after
        //  its lease check, as a zombie would be. Its lease runs out, it
        //  is recovered and fenced, then it hands its events to Kafka.
        zsys_warning ("counter: stall_before_log is set; pausing %" PRId64
                      " ms before logging", self->settings.stall_before_log);
        zclock_sleep ((int) self->settings.stall_before_log);
        self->settings.stall_before_log = 0;
    }
    int64_t wait = hgp_eventlog_timeout (self->log);
    size_t produced = 0;
    for (size_t i = 0; i < count; i++) {
        s_item_t *item = &self->items [i];
        if (!item->logging)
            continue;
        if (stale) {
            item->logging = false;
            item->release = true;
            s_item_fail (item, HGP_STATUS_UNAVAILABLE, "unavailable",
                         "the counter stalled before logging, so its"
                         " event-log identity may have expired; nothing was"
                         " applied");
            continue;
        }
        hgp_event_t event;
        s_event_fill (&event, item, item->value, self->log_id);
        if (hgp_eventlog_produce (self->log, &event, item->counter_key,
                                  strlen (item->counter_key), &item->delivery))
            continue;               //  delivery says not persisted
        produced++;
        wait = MIN (wait, item->work.deadline - now - 20);
    }
    if (stale)
        self->retire = true;
    //  Wait for Kafka, but never so long that the broker takes our silence
    //  for death
    wait = MAX (wait, 200);
    wait = MIN (wait, self->settings.heartbeat * self->settings.liveness / 2);
    if (produced) {
        int64_t start = zclock_usecs ();
        hgp_eventlog_wait (self->log, (int) wait);
        hgp_prom_add (self->prom, self->series.log_waits, 1);
        hgp_prom_add (self->prom, self->series.log_seconds,
                      zclock_usecs () - start);
    }
    //  Producing and waiting lasting far longer than the wait means this
    //  process did not run (stopped, starved): events that then timed out
    //  unsent timed out because of us, not because Kafka was down, and the
    //  answer says so
    int64_t stalled = zclock_mono () - now - wait;
    if (stalled < S_STALL_MS)
        stalled = 0;

    //  Step 3: apply what is in the log, release what surely is not
    s_fast_keys (self, count);
    size_t napplies = 0;
    size_t unsent = 0, sent = 0;
    for (size_t i = 0; i < count; i++) {
        s_item_t *item = &self->items [i];
        if (item->logging) {
            if (item->delivery.status == HGP_LOG_NOT_PERSISTED) {
                item->logging = false;
                item->release = true;
                unsent++;
                if (stalled)
                    s_item_fail (item, HGP_STATUS_UNAVAILABLE, "unavailable",
                                 "the counter stalled for %" PRId64 " ms while"
                                 " logging and the event timed out before it"
                                 " reached the event log (%s); nothing was"
                                 " applied", stalled + wait,
                                 item->delivery.error);
                else
                    s_item_fail (item, HGP_STATUS_UNAVAILABLE,
                                 "log_unavailable", "the event log (kafka at"
                                 " %s) did not take the event: %s; nothing was"
                                 " applied", hgp_eventlog_brokers (self->log),
                                 item->delivery.error);
            }
            else
            if (item->delivery.status != HGP_LOG_PERSISTED) {
                item->logging = false;
                sent++;
                s_limbo (self, item, "the event log did not confirm the"
                         " event in time");
            }
            else
                sent++;
        }
        if (item->logging || item->release) {
            hgp_ledger_item_t *a = &self->applies [napplies++];
            memset (a, 0, sizeof *a);
            memcpy (a->counter_key, item->counter_key, sizeof a->counter_key);
            memcpy (a->record_key, item->record_key, sizeof a->record_key);
            memcpy (a->delta, item->delta, sizeof a->delta);
            a->partition = item->logging ? item->delivery.partition : -1;
            a->offset = item->logging ? item->delivery.offset : -1;
            a->release = item->release;
            a->fast = item->logging && s_fast_key (self, item);
            a->base = item->base;
        }
    }
    //  Kafka took none of them: do not make the next batches wait for it
    //  too, answer them at once for a while
    if (unsent && !sent && !stalled)
        self->log_paused_until = zclock_mono () + S_LOG_PAUSE_MS;
    if (self->settings.crash_after_log && sent) {
        //  Fault injection for tests: die with events logged and not
        //  applied, as a kill -9 at the worst moment would
        zsys_warning ("counter: crash_after_log is set; exiting now");
        _exit (70);
    }
    if (napplies == 0)
        return;
    if (self->batch == 0) {
        //  Cannot be: a prepare that numbered nothing logged nothing. Never
        //  apply as someone else's recovery would (no lease check)
        zsys_error ("counter: a logged batch has no number; not applying it");
        for (size_t i = 0; i < count; i++)
            if (self->items [i].logging)
                s_limbo (self, &self->items [i], "the event is logged and"
                         " this actor lost track of its batch");
        return;
    }
    //  Promised, and neither applied nor released now (the log did not
    //  confirm it, or an earlier attempt is unsettled): the batch's mark
    //  must not keep its promise
    size_t nheld = 0;
    for (size_t i = 0; i < count; i++) {
        s_item_t *item = &self->items [i];
        if (item->promised && !item->logging && !item->release)
            self->held [nheld++] = item->counter_key;
    }
    char reason [256];
    int rc = hgp_ledger_apply (self->ledger, self->log_id, self->batch,
                               self->applies, napplies, self->held, nheld,
                               reason, sizeof reason);
    size_t a = 0;
    for (size_t i = 0; i < count; i++) {
        s_item_t *item = &self->items [i];
        if (!item->logging && !item->release)
            continue;
        hgp_ledger_item_t *result = &self->applies [a++];
        if (item->release)
            continue;               //  answered already; a failed release
                                    //  leaves a record we take over later
        if (rc)
            s_limbo (self, item, rc == 2 ? "the event is logged and this"
                     " actor's lease ran out before applying it"
                     : rc > 0 ? "the event is logged but redis did"
                     " not apply it yet" : "the event is logged and redis"
                     " did not confirm applying it");
        else
        if (result->code == HGP_LEDGER_APPLIED
        ||  result->code == HGP_LEDGER_ALREADY)
            s_item_value (item, result->value, false);
        else
        if (result->code == HGP_LEDGER_REFUSED)
            s_limbo (self, item, "the event is logged but redis refused to"
                     " apply it yet");
        else {
            //  Logged, and never applicable: a second writer moved the
            //  counter between our prepare and apply
            zsys_error ("counter: event %s at [%d] %" PRId64 " cannot be"
                        " applied: %s", item->request.id, result->partition,
                        result->offset, result->code == HGP_LEDGER_OVERFLOW
                        ? result->text : "id conflict");
            s_item_fail (item, HGP_STATUS_INTERNAL, "internal",
                         "the increment was logged but cannot be applied");
        }
    }
    if (rc)
        zsys_warning ("counter: a logged batch was not applied: %s", reason);
}

/*  After the plain path: the events of what was applied now, produced
    without waiting (fire-and-forget) */
static void
s_log_async (hgp_counter_t *self, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        s_item_t *item = &self->items [i];
        if (item->request.op != HGP_OP_INCR || !item->done
        ||  item->reply.error.status != HGP_STATUS_OK || item->reply.replayed)
            continue;
        hgp_event_t event;
        s_event_fill (&event, item, item->reply.value, self->actor_id);
        hgp_eventlog_produce (self->log, &event, item->counter_key,
                              strlen (item->counter_key), NULL);
    }
    int lost = hgp_eventlog_wait (self->log, 0);
    if (lost)
        zsys_warning ("counter: %d events did not reach the log (event_log"
                      " is async: nothing waits for them)", lost);
}


/*  --------------------------------------------------------------------------
    A batch: accept, apply, reply
*/

static void
s_expire (hgp_counter_t *self, size_t count)
{
    int64_t now = zclock_mono ();
    for (size_t i = 0; i < count; i++) {
        s_item_t *item = &self->items [i];
        if (!item->done && now >= item->work.deadline)
            s_item_fail (item, HGP_STATUS_TIMEOUT, "timeout",
                         "the budget ran out before the counter started it");
    }
}

/*  Items answered like an earlier one with the same id */
static void
s_links (hgp_counter_t *self, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        s_item_t *item = &self->items [i];
        if (item->link < 0 || item->done)
            continue;
        s_item_t *first = &self->items [item->link];
        assert (first->done);
        if (first->reply.error.status == HGP_STATUS_OK)
            s_item_value (item, first->reply.value, true);
        else
            s_item_fail (item, first->reply.error.status,
                         first->reply.error.code, "%s",
                         first->reply.error.message);
    }
}

/*  Nothing can be logged now: say what is really missing. Kafka when it
    failed the last batch or the last registration; otherwise Redis, which
    holds our identity (unreachable, refused it, or we are registering
    again after a reconnect, and that cannot name Kafka, which is fine) */
static void
s_fail_unregistered (hgp_counter_t *self, size_t count)
{
    char message [HGP_MESSAGE_MAX + 1];
    if (self->kafka_failed || zclock_mono () < self->log_paused_until) {
        snprintf (message, sizeof message, "the event log (kafka at %s) is"
                  " unavailable%s%s; nothing was applied",
                  hgp_eventlog_brokers (self->log),
                  hgp_eventlog_error (self->log) [0] ? ": " : "",
                  hgp_eventlog_error (self->log));
        s_fail_unlogged (self, count, HGP_STATUS_UNAVAILABLE,
                         "log_unavailable", message);
    }
    else {
        snprintf (message, sizeof message, "the counter has no event-log"
                  " identity in redis yet (%s); nothing was applied",
                  self->unregistered [0] ? self->unregistered
                                         : "registering");
        s_fail_unlogged (self, count, HGP_STATUS_UNAVAILABLE, "unavailable",
                         message);
    }
}

static void
s_batch_apply (hgp_counter_t *self, size_t count)
{
    s_expire (self, count);
    size_t pending = 0, nincrs = 0;
    for (size_t i = 0; i < count; i++) {
        s_item_t *item = &self->items [i];
        item->link = -1;
        item->logging = false;
        item->release = false;
        item->promised = false;
        item->predicted = false;
        if (item->done)
            continue;
        hgp_request_t *req = &item->request;
        switch (req->op) {
            case HGP_OP_INCR:
                hgp_keyspace_record (req->id, item->record_key,
                                     sizeof item->record_key);
                snprintf (item->delta, sizeof item->delta, "%" PRId64,
                          req->delta);
                nincrs++;
                //  fall through
            case HGP_OP_GET:
                hgp_keyspace_counter (&req->key, item->counter_key,
                                      sizeof item->counter_key);
                //  fall through
            case HGP_OP_MGET:
                pending++;
                break;
            case HGP_OP_PING:
                item->done = true;      //  200, nothing else
                break;
            default:
                s_item_fail (item, HGP_STATUS_INTERNAL, "internal",
                             "op %s is not served by a counter actor",
                             hgp_op_name (req->op));
        }
    }
    if (!pending)
        return;

    char message [HGP_MESSAGE_MAX + 1];
    if (!hgp_redis_ready (self->redis, true)) {
        snprintf (message, sizeof message, "the counter cannot reach redis at"
                  " %s; nothing was applied", hgp_redis_address (self->redis));
        s_fail_unlogged (self, count, HGP_STATUS_UNAVAILABLE, "unavailable",
                         message);
        s_fail_pending (self, count, HGP_OP_NONE, HGP_STATUS_UNAVAILABLE,
                        "unavailable", message);
        return;
    }
    bool sync = self->settings.log_mode == S_LOG_SYNC;
    if (sync && nincrs) {
        //  Not registered yet, or Kafka just failed a whole batch: nothing
        //  can be logged, so nothing is tried
        if (self->retire || !self->registered)
            s_log_identity (self);      //  at once if it is due
        if (!self->registered || self->retire
        ||  zclock_mono () < self->log_paused_until)
            s_fail_unregistered (self, count);
    }
    s_expire (self, count);             //  connecting may have taken a while
    int64_t prepared_at = zclock_mono ();
    s_redis_batch (self, count, sync);
    if (sync)
        s_log_batch (self, count, prepared_at);
    else
    if (self->settings.log_mode == S_LOG_ASYNC)
        s_log_async (self, count);
    s_links (self, count);
    //  Whatever is still pending was never sent (no connection, or
    //  NOSCRIPT twice): surely not applied
    snprintf (message, sizeof message, "the counter lost redis at %s"
              " before sending; nothing was applied",
              hgp_redis_address (self->redis));
    s_fail_unlogged (self, count, HGP_STATUS_UNAVAILABLE, "unavailable",
                     message);
    s_fail_pending (self, count, HGP_OP_NONE, HGP_STATUS_UNAVAILABLE,
                    "unavailable", message);
}

/*  --------------------------------------------------------------------------
    Broker links
*/

/*  A sampled request's line (lib/hgp_trace.h) */
static void
s_trace_log (const s_item_t *item)
{
    const hgp_request_t *req = &item->request;
    const hgp_reply_t *rep = &item->reply;
    if (rep->error.status == HGP_STATUS_OK)
        zsys_info ("trace %s: counter %s %s %s/%s: 200 value %" PRId64 "%s",
                   req->trace, hgp_op_name (req->op), req->id,
                   req->key.resource_id, req->key.counter_type, rep->value,
                   rep->replayed ? " (replayed)" : "");
    else
        zsys_info ("trace %s: counter %s %s: %d %s", req->trace,
                   hgp_op_name (req->op), req->id, rep->error.status,
                   rep->error.code);
}

static void
s_batch_reply (hgp_counter_t *self, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        s_item_t *item = &self->items [i];
        if (!item->done) {
            //  A bug; say so without claiming an outcome we do not know
            zsys_error ("counter: request %s left unanswered", item->reply.id);
            if (item->request.op == HGP_OP_INCR)
                s_item_fail (item, HGP_STATUS_TIMEOUT, "timeout",
                             "internal error; outcome unknown");
            else
                s_item_fail (item, HGP_STATUS_INTERNAL, "internal",
                             "internal error");
        }
        self->buf.size = 0;
        if (hgp_reply_encode (&item->reply, &self->buf)) {
            zsys_error ("counter: cannot encode the reply to %s", item->reply.id);
            hgp_error_t error;
            hgp_error_set (&error, HGP_STATUS_INTERNAL, "internal",
                           "the counter could not encode its reply");
            self->buf.size = 0;
            int rc = hgp_reply_encode_error (item->reply.id, &error, &self->buf);
            assert (rc == 0);
        }
        hgp_worker_reply (self->worker, &item->work, self->buf.data,
                          self->buf.size);
        hgp_prom_count_status (self->prom, self->series.replies,
                               item->reply.error.status);
        if (hgp_trace_sampled (item->request.trace))
            s_trace_log (item);
        hgp_request_clear (&item->request);
        hgp_reply_clear (&item->reply);
    }
}

/*  Take a REQUEST into item */
static void
s_item_accept (s_item_t *item, const hgp_work_t *work)
{
    item->work = *work;
    item->work.body = NULL;             //  valid only until the next recv
    item->work.size = 0;
    hgp_request_init (&item->request);
    hgp_reply_init (&item->reply);
    item->done = false;
    if (!work->body) {
        s_item_fail (item, HGP_STATUS_BAD_REQUEST, "malformed",
                     "a REQUEST has 5 frames: %s, 0x02, token, budget (4"
                     " bytes), body", HGP_PROTO_ACTOR);
        return;
    }
    hgp_error_t error;
    int rc = hgp_request_decode (&item->request, work->body, work->size,
                                 &error);
    if (hgp_id_valid (item->request.id, strlen (item->request.id)))
        memcpy (item->reply.id, item->request.id, sizeof item->reply.id);
    if (rc) {
        item->reply.error = error;
        item->done = true;
    }
}

/*  Batch statistics; the first full batch is worth a line: it is the
    size every per-batch buffer must hold */
static void
s_batch_count (hgp_counter_t *self, size_t count)
{
    self->batches++;
    self->largest = MAX (self->largest, count);
    hgp_prom_add (self->prom, self->series.batches, 1);
    hgp_prom_add (self->prom, self->series.requests, (int64_t) count);
    if (count == (size_t) self->settings.batch_max)
        hgp_prom_add (self->prom, self->series.full, 1);
    if (count == (size_t) self->settings.batch_max
    &&  self->full_batches++ == 0)
        zsys_info ("counter: first full batch (%zu requests)", count);
}

/*  Drain what the brokers sent, up to one batch, and serve it. The worker
    drains its links in turn from a rotating start, so a busy broker cannot
    starve another of batch slots; a batch mixes brokers, each reply goes
    back on its own link. */
static void
s_links_recv (hgp_counter_t *self)
{
    size_t count = 0;
    size_t keys = 0;
    hgp_work_t work;
    while (count < (size_t) self->settings.batch_max
       &&  keys < S_BATCH_KEYS_MAX && hgp_worker_recv (self->worker, &work)) {
        s_item_t *item = &self->items [count++];
        s_item_accept (item, &work);
        keys += item->request.op == HGP_OP_MGET ? item->request.nkeys : 1;
    }
    if (count) {
        s_batch_count (self, count);
        s_batch_apply (self, count);
        s_batch_reply (self, count);
    }
    hgp_worker_tick (self->worker);
}


/*  --------------------------------------------------------------------------
    The actor
*/

static void
s_metrics_declare (hgp_counter_t *self)
{
    hgp_prom_t *p = self->prom;
    s_series_t *m = &self->series;
    const hgp_prom_type_t C = HGP_PROM_COUNTER;
    m->batches = hgp_prom_declare (p, C, "hgp_counters_batches_total", "",
        "Batches served (one Redis round trip or two, one Kafka wait).", 1);
    m->requests = hgp_prom_declare (p, C, "hgp_counters_batch_requests_total",
        "", "Requests in the batches served (per batch: the batch size).", 1);
    m->full = hgp_prom_declare (p, C, "hgp_counters_full_batches_total", "",
        "Batches of counter/batch_max requests.", 1);
    m->redis = hgp_prom_declare (p, C, "hgp_counters_redis_round_trips_total",
        "", "Redis round trips of the batches' first step.", 1);
    m->redis_seconds = hgp_prom_declare (p, C,
        "hgp_counters_redis_round_trip_seconds_total", "",
        "Time in those round trips.", 1000000);
    m->log_waits = hgp_prom_declare (p, C, "hgp_counters_log_waits_total", "",
        "Waits for the event log to confirm a batch's events.", 1);
    m->log_seconds = hgp_prom_declare (p, C,
        "hgp_counters_log_wait_seconds_total", "", "Time in those waits.",
        1000000);
    m->recovered = hgp_prom_declare (p, C, "hgp_counters_recoveries_total", "",
        "Dead actors this one recovered from the log.", 1);
    m->registered = hgp_prom_declare (p, HGP_PROM_GAUGE,
        "hgp_counters_log_registered", "",
        "1 while this actor holds an event log identity (sync mode).", 1);
    hgp_prom_declare_statuses (p, "hgp_counters_replies_total",
        "Replies sent, by status.", m->replies);
}

static hgp_counter_t *
s_counter_new (zsock_t *pipe, hgp_config_t *config)
{
    hgp_counter_t *self = (hgp_counter_t *) zmalloc (sizeof (hgp_counter_t));
    assert (self);
    self->pipe = pipe;
    self->config = config;
    char *error = s_settings_load (config, &self->settings);
    if (!error)
        self->redis = hgp_redis_new (config, "counter", &error);
    if (!error && self->settings.log_mode != S_LOG_OFF)
        self->log = hgp_eventlog_new (config, "counter", &error);
    if (error)
        zsys_error ("%s", error);
    assert (!error);                    //  main calls hgp_counter_config_check
    hgp_process_random_id (self->actor_id, sizeof self->actor_id);
    self->prom = hgp_prom_new ("counter");
    assert (self->prom);
    s_metrics_declare (self);
    self->exporter = hgp_exporter_start (config, "counter", self->prom);
    self->incr_script = hgp_redis_script (self->redis, hgp_lua_counter_incr);
    self->prepare_script = hgp_redis_script (self->redis,
                                             hgp_lua_counter_prepare);
    self->ledger = hgp_ledger_new (self->redis, "counter",
                                   self->settings.dedup_ttl,
                                   self->settings.lease);
    snprintf (self->lease_ms, sizeof self->lease_ms, "%" PRId64,
              self->settings.lease);
    self->limbo = zhashx_new ();
    self->latest = zhashx_new ();
    self->slots = zhashx_new ();
    assert (self->limbo && self->latest && self->slots);
    self->register_delay = S_REGISTER_MS;

    size_t batch = (size_t) self->settings.batch_max;
    self->items = (s_item_t *) calloc (batch, sizeof (s_item_t));
    self->incrs = (size_t *) calloc (batch, sizeof (size_t));
    self->commands = (s_command_t *) calloc (batch + 1, sizeof (s_command_t));
    self->args_max = s_argv_max (batch);
    self->args = hgp_args_new ();
    hgp_args_start (self->args, self->args_max);
    self->keybuf = (char *) malloc (HGP_MGET_MAX * HGP_KEYSPACE_COUNTER_MAX);
    self->applies = (hgp_ledger_item_t *) calloc (batch,
                                                  sizeof (hgp_ledger_item_t));
    self->held = (const char **) calloc (batch, sizeof (char *));
    assert (self->items && self->incrs && self->commands && self->keybuf && self->applies && self->held);
    return self;
}

static void
s_counter_destroy (hgp_counter_t **self_p)
{
    assert (self_p);
    hgp_counter_t *self = *self_p;
    if (self) {
        hgp_worker_destroy (&self->worker);
        hgp_exporter_destroy (&self->exporter);
        hgp_prom_destroy (&self->prom);
        hgp_ledger_destroy (&self->ledger);
        hgp_eventlog_destroy (&self->log);
        hgp_redis_destroy (&self->redis);
        zhashx_destroy (&self->limbo);
        zhashx_destroy (&self->latest);
        zhashx_destroy (&self->slots);
        free (self->items);
        free (self->incrs);
        free (self->commands);
        hgp_args_destroy (&self->args);
        free (self->keybuf);
        free (self->applies);
        free (self->held);
        hgp_buf_clear (&self->buf);
        free (self);
        *self_p = NULL;
    }
}

static void
s_pipe_recv (hgp_counter_t *self)
{
    zmsg_t *msg = zmsg_recv (self->pipe);
    if (!msg)
        return;                         //  interrupted
    char *command = zmsg_popstr (msg);
    if (command && streq (command, "$TERM"))
        self->terminated = true;
    else
        zsys_warning ("counter: unknown pipe command '%s'",
                      command ? command : "");
    zstr_free (&command);
    zmsg_destroy (&msg);
}

/*  Why we cannot serve yet, or NULL when we can: Redis connected (scripts
    loaded, so not loading its data either) and, with the event log, our
    identity in it registered (sync: a lease; async: vouched for readers).
    Until then we send no READY: a broker would route keys to us that we
    could only answer 503. */
static const char *
s_not_ready (hgp_counter_t *self)
{
    if (!hgp_redis_context (self->redis))
        return "redis is not connected";
    if (self->settings.log_mode == S_LOG_SYNC && !self->registered)
        return "no event log identity yet";
    if (self->settings.log_mode == S_LOG_ASYNC && !self->identified)
        return "no event log identity yet";
    return NULL;
}

/*  Once we can serve: links to the brokers (discovery), READY to each */
static void
s_serve_when_ready (hgp_counter_t *self)
{
    if (self->worker || s_not_ready (self))
        return;
    zsys_info ("counter: ready: redis connected%s; announcing to the brokers",
               self->settings.log_mode == S_LOG_OFF ? ""
               : ", event log identity registered");
    self->worker = hgp_worker_new (self->config, S_SERVICE, self->actor_id,
                                   (uint32_t) self->settings.capacity,
                                   self->settings.heartbeat,
                                   self->settings.liveness);
    if (self->exporter)
        hgp_worker_set_metrics (self->worker,
                                hgp_exporter_url (self->exporter));
}

void
hgp_counter_actor (zsock_t *pipe, void *args)
{
    hgp_counter_t *self = s_counter_new (pipe, (hgp_config_t *) args);
    zsock_signal (pipe, 0);
    s_settings_t *s = &self->settings;
    static const char *modes [] = { "off", "async", "sync" };
    zsys_info ("counter: actor %s, capacity %" PRId64 " per broker, batch %"
               PRId64 ", redis %s, event log %s%s%s", self->actor_id,
               s->capacity, s->batch_max,
               hgp_redis_address (self->redis), modes [s->log_mode],
               self->log ? " to kafka at " : "",
               self->log ? hgp_eventlog_brokers (self->log) : "");
    hgp_redis_ready (self->redis, false);   //  failure is logged and retried
    s_log_upkeep (self);
    s_serve_when_ready (self);
    self->upkeep_at = zclock_mono () + s->heartbeat;

    zmq_pollitem_t items [1 + HGP_WORKER_POLL_MAX];
    while (!self->terminated) {
        int64_t now = zclock_mono ();
        int64_t wake = self->upkeep_at;
        if (self->worker)
            wake = MIN (wake, hgp_worker_wake_at (self->worker));
        wake = MIN (wake, hgp_redis_retry_at (self->redis));
        if (s->log_mode == S_LOG_SYNC && !self->registered)
            wake = MIN (wake, self->register_at);
        items [0] = (zmq_pollitem_t) {
            zsock_resolve (self->pipe), 0, ZMQ_POLLIN, 0 };
        size_t n = 1;
        if (self->worker)
            n += hgp_worker_pollitems (self->worker, items + 1);
        if (zmq_poll (items, (int) n, (long) MAX (wake - now, 0)) == -1) {
            if (zmq_errno () == EINTR)
                continue;
            zsys_error ("counter: poll failed: %s", zmq_strerror (zmq_errno ()));
            break;
        }
        if (items [0].revents & ZMQ_POLLIN)
            s_pipe_recv (self);
        if (self->terminated)
            break;
        //  Input before timers: after a pause (SIGSTOP, a slow Redis) the
        //  brokers' messages are waiting and prove them alive
        bool input = false;
        for (size_t i = 1; i < n; i++)
            input |= (items [i].revents & ZMQ_POLLIN) != 0;
        if (self->worker && (input || hgp_worker_pending (self->worker)))
            s_links_recv (self);
        if (self->retire)
            s_log_upkeep (self);
        if (self->worker)
            hgp_worker_tick (self->worker);
        now = zclock_mono ();
        if (now >= self->upkeep_at) {
            self->upkeep_at = now + s->heartbeat;
            //  Notice a lost Redis while idle, so the log tells when
            hgp_redis_check (self->redis);
            s_log_upkeep (self);
        }
        else
        if (s->log_mode == S_LOG_SYNC && !self->registered
        &&  now >= self->register_at)
            s_log_upkeep (self);
        if (!hgp_redis_context (self->redis)
        &&  now >= hgp_redis_retry_at (self->redis)) {
            hgp_redis_ready (self->redis, false);
            if (!self->worker && hgp_redis_context (self->redis))
                s_log_upkeep (self);    //  register at once, not next beat
        }
        if (!self->worker)
            s_serve_when_ready (self);
    }
    //  DISCONNECT to every broker: each redelivers anything it had sent us
    //  that is still unread to the other actors
    hgp_worker_destroy (&self->worker);
    //  A clean stop between batches leaves nothing of ours unapplied,
    //  unless a batch was not settled: then recovery must look
    if (self->registered && hgp_redis_context (self->redis)) {
        if (self->retire)
            hgp_ledger_retire (self->ledger, self->log_id);
        else
            hgp_ledger_leave (self->ledger, self->log_id);
    }
    zsys_info ("counter: actor %s stopped after %" PRIu64 " batches (%"
               PRIu64 " full, largest %zu requests)", self->actor_id,
               self->batches, self->full_batches, self->largest);
    s_counter_destroy (&self);
}
