/*  hgp_analytics.c - the analytics actor: rankings and series from the log
 *
 *  One zactor thread owns a Kafka consumer (group analytics/group on the
 *  event topic), a Redis connection (hgp_redis) and the links to the
 *  brokers (hgp_worker, service "analytics": one per broker discovery
 *  reports, the same code as the counter's). It polls the three, folds consumed
 *  events into Redis in batches, and answers top and stats from Redis.
 *
 *  What it keeps, per counter type T (Redis keys, PROTOCOL.md section 7):
 *
 *  - all-time sums: sorted set hgp:a:all:T, member resource_id, score
 *    minus the sum. Exact as long as a sum stays within 2^53 (a double).
 *  - windowed sums, for the two windows W (analytics/window_1h and
 *    window_24h): 60 buckets of W/60 ms each, sorted sets
 *    hgp:a:w:<1h|24h>:T:<bucket>, each expiring once it has left the
 *    window. A query adds up the last 60 buckets (ZUNIONSTORE), so "the
 *    last hour" is the last 59 to 60 minutes. Events older than the window
 *    when they arrive go to the all-time sums only.
 *  - trending: forward decay (Cormode et al.). An event of delta d at time
 *    t adds d * 2^((t - L) / half_life) to its resource's score, L being a
 *    landmark, so the update is a plain ZINCRBY and the order of the
 *    scores is the order of the decayed sums at any later time. To keep
 *    the factors within a double, the landmark moves every 16 half-lives:
 *    one sorted set per epoch (hgp:a:tr:T:<epoch>), a query adds the
 *    current and the previous epoch (weight 2^-16) and reports the score
 *    decayed to now. Older epochs (< 2^-16 of their weight) expire.
 *  - per resource R: counts per bucket (analytics/bucket, one minute) over
 *    analytics/span (24 h), hash hgp:a:m:<len(R)>:R:T, field = bucket.
 *
 *  Scores in the sorted sets are negated sums, so that ZRANGEBYSCORE
 *  lists the biggest first and Redis breaks ties by member: equal scores
 *  rank by resource_id ascending, bytewise. Deterministic, and documented
 *  in PROTOCOL.md. Only resources whose sum (or score) is positive are
 *  ranked.
 *
 *  Each event counts once, and why:
 *  - The script that folds a batch in also records, per partition, the
 *    offset of the last event it applied (hash hgp:a:off), atomically
 *    with the sums, and skips any event at or below it. Kafka may deliver
 *    an event again (a rebalance, a restart after a crash before the
 *    commit); it is skipped.
 *  - Offsets are committed to Kafka only after the script applied the
 *    batch (gathered, at most once a second, and when partitions are
 *    revoked or the actor stops), and on assignment we start each
 *    partition right after the offset recorded in Redis (the source of
 *    truth; the committed offset is at most that). A crash anywhere loses
 *    nothing and counts nothing twice.
 *  - A counter actor that was recovered by another is fenced: a fence
 *    record naming its log id in every partition. Its events after the
 *    fence are void (PROTOCOL.md section 10: it stalled past its lease and
 *    logged late; a retry was logged by someone else). The fold script
 *    keeps the fences it passed in hgp:a:fences, with the offsets, and
 *    skips such events, so a restart in the middle of a partition still
 *    knows them.
 *  - Redis unavailable: the batch is dropped, its partitions go back to
 *    its first offsets and pause, and consumption resumes when Redis is
 *    back. Between batches this actor holds nothing Kafka does not.
 *  - Redis lost the state (FLUSHALL), or the log is another one (a new
 *    mock cluster): hgp:a:log names the log and an epoch, the fold script
 *    refuses a batch read under another epoch, and every actor then reads
 *    its partitions again from the start (analytics_state.lua). So the
 *    rankings are rebuilt from the log, as `hgp replay` rebuilds the
 *    counters.
 *  - What the log no longer has cannot count: events its retention
 *    dropped before we read them (an actor down, or behind, for longer
 *    than the topic keeps). librdkafka goes on from the log's start; the
 *    jump in offsets is logged as an error and counted
 *    (hgp_analytics_lost_total), never passed over in silence.
 */
#include "hgp_analytics.h"
#include "hgp_codec.h"
#include "hgp_eventlog.h"
#include "hgp_exporter.h"
#include "hgp_ledger.h"
#include "hgp_lua.h"
#include "hgp_process.h"
#include "hgp_redis.h"
#include "hgp_sums.h"
#include "hgp_trace.h"
#include "hgp_worker.h"
#include <inttypes.h>
#include <math.h>
#include <fcntl.h>
#include <unistd.h>
#include <librdkafka/rdkafka.h>

#define S_SERVICE       "analytics"
#define S_BUCKETS       60          /* buckets per window                  */
#define S_EPOCH         16          /* half-lives per trending epoch       */
#define S_OFFSETS       "hgp:a:off"
#define S_FENCES        "hgp:a:fences"
#define S_ASOF          "hgp:a:asof"    /* partition -> folded up to, ms   */
#define S_ASOF_FIELDS   64              /* partitions per HSET             */
#define S_PARTS_MAX     1024            /* partitions whose start we keep  */
#define S_FETCH_WAIT_MS 500             /* fetch.wait.max.ms (the default) */
#define S_ASOF_MARGIN_MS 1000           /* ... how old a log's end may be  */
#define S_ASOF_META_MS  200             /* to learn the topic's partitions */
#define S_RETRY_MS      500         /* retry a batch Redis refused         */
#define S_COMMIT_MS     1000        /* commit offsets to Kafka at most so  */
#define S_SKIP_MAX      8           /* prefixes in analytics/skip           */

/*  Settings, read once from the config */
typedef struct {
    int64_t heartbeat;          /* heartbeat/interval, ms                  */
    int64_t liveness;           /* heartbeat/liveness                      */
    int64_t capacity;           /* analytics/capacity, told in READY       */
    int64_t batch_max;          /* analytics/batch_max, events per fold    */
    int64_t fold_ms;            /* analytics/fold_ms, most a fold waits    */
    const char *group;          /* analytics/group, the consumer group     */
    int64_t session_timeout;    /* analytics/session_timeout, ms           */
    int64_t window [2];         /* analytics/window_1h, window_24h, ms     */
    int64_t half_life;          /* analytics/half_life, ms                 */
    int64_t bucket;             /* analytics/bucket, ms                    */
    int64_t span;               /* analytics/span, ms                      */
    char skip [S_SKIP_MAX][HGP_ID_MAX + 1];    /* analytics/skip: prefixes */
    int nskip;                  /* ... of counter types not ranked         */
    char no_uniques [S_SKIP_MAX][HGP_ID_MAX + 1];
                                /* analytics/no_uniques: prefixes of       */
    int nno_uniques;            /* ... types whose users are not counted   */
} s_settings_t;

/*  Our Prometheus series (handles into prom; analytics/metrics) */
typedef struct {
    int folded, skipped, forged, void_events, unranked, lost;
    int merged, judged;         /* folds, by how they were applied         */
    int fold_seconds;           /* time in fold calls to Redis             */
    int lag;                    /* events in the log not folded in yet     */
    int replies [HGP_PROM_STATUSES];
} s_series_t;

/*  One consumed record waiting to be folded in */
typedef struct {
    int32_t partition;
    int64_t offset;
    bool event;                 /* false: not an event, only moves offset  */
    bool user;                  /* its user counts among the distinct ones */
    hgp_event_t ev;             /* when event                              */
} s_record_t;

typedef struct {
    zsock_t *pipe;              /* commands from the caller                */
    s_settings_t settings;      /* what the config said                    */
    char actor_id [33];         /* random per start, told in READY         */
    bool terminated;            /* $TERM received                          */
    hgp_config_t *config;       /* the caller's, outlives us               */
    hgp_worker_t *worker;       /* to the brokers                          */
    hgp_redis_t *redis;         /* the store                               */
    int fold_script;            /* script handles on redis: analytics_fold */
    int merge_script;           /* ... analytics_merge (the common case)   */
    int state_script;           /* ... and analytics_state.lua (KEYS/ARGV) */
    char state [400];           /* what hgp:a:log said we build on, or ""  */
    int64_t check_at;           /* next look at hgp:a:log while idle       */
    hgp_eventlog_t *log;        /* settings of the event log               */
    rd_kafka_t *consumer;       /* member of the group                     */
    int wakeup [2];             /* librdkafka writes here when it has news */
    bool more;                  /* the consumer queue may not be empty     */
    bool paused;                /* partitions paused, waiting for Redis    */
    int64_t retry_at;           /* when to look at Redis again             */
    s_record_t *records;        /* the pending batch                       */
    size_t nrecords;            /* records in it                           */
    int64_t fold_at;            /* when it is folded at the latest         */
    hgp_sums_t *sums;           /* its contributions, per target           */
    hgp_args_t *args;           /* one EVALSHA's arguments                 */
    rd_kafka_topic_partition_list_t *commit;
                                /* offsets folded in, not yet committed    */
    int64_t commit_at;          /* when the next commit may go             */
    uint64_t folded;            /* events applied, for the log             */
    uint64_t folds;             /* fold script calls that applied          */
    uint64_t judged;            /* folds that went event by event          */
    uint64_t skipped;           /* redelivered events skipped              */
    uint64_t forged;            /* records of identities that never
                                   registered, not counted                 */
    uint64_t unranked;          /* events of analytics/skip types          */
    uint64_t lost;              /* records the log dropped before we read
                                   them (retention): never folded in       */
    hgp_ledger_t *ledger;       /* vouches for the log identities          */
    hgp_buf_t buf;              /* encoded replies                         */
    hgp_prom_t *prom;           /* our series, served by exporter          */
    hgp_exporter_t *exporter;   /* GET /metrics, or NULL                   */
    s_series_t series;          /* handles into prom                       */
    int64_t publish_at;         /* next look at the lag                    */
    int64_t next [S_PARTS_MAX];     /* each partition's offset expected
                                       next, -1 unknown: a record past it
                                       means the log dropped those between */
    int64_t start [S_PARTS_MAX];    /* each partition's first offset read
                                       since assigned, for the lag of one
                                       that brought nothing yet            */
} s_analytics_t;

static void s_asof_folded (s_analytics_t *self);
static void s_asof_read (s_analytics_t *self, hgp_reply_t *rep);


/*  --------------------------------------------------------------------------
    Settings
*/

/*  A list of counter-type prefixes (analytics/skip, analytics/no_uniques),
    separated by commas or spaces, into prefixes; NULL or what is wrong */
static char *
s_prefixes_load (const char *name, const char *list,
                 char prefixes [S_SKIP_MAX][HGP_ID_MAX + 1], int *count)
{
    *count = 0;
    const char *p = list;
    while (*p) {
        size_t len = strcspn (p, ", ");
        if (len) {
            if (*count == S_SKIP_MAX || !hgp_id_valid (p, len)) {
                char env [64];
                hgp_config_env_name (name, env, sizeof env);
                return zsys_sprintf ("config: %s (%s) is '%s'; want at most"
                                     " %d counter type prefixes (ids),"
                                     " separated by commas", name, env, list,
                                     S_SKIP_MAX);
            }
            memcpy (prefixes [*count], p, len);
            prefixes [(*count)++][len] = 0;
        }
        p += len;
        p += strspn (p, ", ");
    }
    return NULL;
}

//  Does counter_type start with one of the prefixes?
static bool
s_prefixed (char prefixes [S_SKIP_MAX][HGP_ID_MAX + 1], int count,
            const char *counter_type)
{
    for (int i = 0; i < count; i++)
        if (strncmp (counter_type, prefixes [i], strlen (prefixes [i])) == 0)
            return true;
    return false;
}

//  Is an event of this counter type left out of rankings and stats?
static bool
s_skipped_type (s_settings_t *s, const char *counter_type)
{
    return s_prefixed (s->skip, s->nskip, counter_type);
}

static char *
s_settings_load (hgp_config_t *config, s_settings_t *s)
{
    memset (s, 0, sizeof *s);
    s->heartbeat = hgp_config_int (config, "heartbeat/interval", 500, 10, 60000);
    s->liveness = hgp_config_int (config, "heartbeat/liveness", 4, 1, 100);
    s->capacity = hgp_config_int (config, "analytics/capacity", 256, 1, 65535);
    s->batch_max = hgp_config_int (config, "analytics/batch_max", 4000, 1,
                                   10000);
    s->fold_ms = hgp_config_int (config, "analytics/fold_ms", 200, 0, 10000);
    s->group = hgp_config_str (config, "analytics/group", "hgp-analytics");
    s->session_timeout = hgp_config_int (config, "analytics/session_timeout",
                                         6000, 1000, 300000);
    s->window [0] = hgp_config_int (config, "analytics/window_1h", 3600000,
                                    60, INT32_MAX);
    s->window [1] = hgp_config_int (config, "analytics/window_24h", 86400000,
                                    60, INT32_MAX);
    s->half_life = hgp_config_int (config, "analytics/half_life", 3600000,
                                   1, INT32_MAX);
    s->bucket = hgp_config_int (config, "analytics/bucket", 60000, 1,
                                INT32_MAX);
    s->span = hgp_config_int (config, "analytics/span", 86400000, 1,
                              INT64_MAX / 4);
    if (hgp_config_error (config))
        return strdup (hgp_config_error (config));
    char *error = s_prefixes_load ("analytics/skip",
                                   hgp_config_str (config, "analytics/skip",
                                                   "bench"),
                                   s->skip, &s->nskip);
    if (!error)
        error = s_prefixes_load ("analytics/no_uniques",
                                 hgp_config_str (config, "analytics/no_uniques",
                                                 ""),
                                 s->no_uniques, &s->nno_uniques);
    if (error)
        return error;
    if (s->window [0] % S_BUCKETS || s->window [1] % S_BUCKETS)
        return strdup ("config: analytics/window_1h and window_24h must be"
                       " multiples of 60 ms (they are cut in 60 buckets)");
    if (s->span % s->bucket || s->span / s->bucket > HGP_MINUTES_MAX)
        return zsys_sprintf ("config: analytics/span must be a multiple of"
                             " analytics/bucket, at most %d buckets",
                             HGP_MINUTES_MAX);
    if (!hgp_id_valid (s->group, strlen (s->group)))
        return strdup ("config: analytics/group must be an id");
    return NULL;
}

char *
hgp_analytics_config_check (hgp_config_t *config)
{
    s_settings_t s;
    char *error = s_settings_load (config, &s);
    if (!error)
        error = hgp_worker_config_check (config);
    if (!error)
        error = hgp_exporter_config_check (config, "analytics");
    if (!error) {
        hgp_redis_t *redis = hgp_redis_new (config, "analytics", &error);
        hgp_redis_destroy (&redis);
    }
    if (!error) {
        hgp_eventlog_t *log = hgp_eventlog_new (config, "analytics", &error);
        hgp_eventlog_destroy (&log);
    }
    return error;
}


/*  --------------------------------------------------------------------------
    Consuming: the group, batches, the fold script
*/

/*  Commit the offsets folded in so far to Kafka (asynchronously): when
    force, or once S_COMMIT_MS passed since the last commit. Only Kafka's
    view of the group (its lag) waits for it: every reader starts a
    partition after the offset in hgp:a:off (s_assign), and when it falls
    back to the committed offset, that is at most hgp:a:off and the fold
    script skips what it applied. So one OffsetCommit a second instead of
    one per fold loses nothing and counts nothing twice. */
static void
s_commit (s_analytics_t *self, bool force)
{
    if (!self->commit || (!force && zclock_mono () < self->commit_at))
        return;
    if (self->commit->cnt > 0 && self->consumer)
        rd_kafka_commit (self->consumer, self->commit, 1);
    rd_kafka_topic_partition_list_destroy (self->commit);
    self->commit = NULL;
    self->commit_at = zclock_mono () + S_COMMIT_MS;
}

/*  On assignment, start each partition right after what Redis says we
    applied: Redis is the truth, Kafka's committed offset at most that. If
    Redis cannot say now, the committed offsets are safe too (the fold
    script skips what it applied). */
/*  Learn (or start) the state of the analytics in Redis (analytics_state.lua).
    -1 when Redis or Kafka cannot say; else 0 when it is the one we read
    from, 1 when it changed under us (our positions are worthless) */
static int
s_adopt (s_analytics_t *self)
{
    if (!hgp_redis_ready (self->redis, true))
        return -1;
    char *cluster = rd_kafka_clusterid (self->consumer, 1000);
    if (!cluster)
        return -1;
    char log [300], epoch [33], reason [256];
    snprintf (log, sizeof log, "%s/%s", cluster, hgp_eventlog_topic (self->log));
    rd_kafka_mem_free (self->consumer, cluster);
    hgp_process_random_id (epoch, sizeof epoch);
    const char *argv [] = {
        "EVALSHA", hgp_redis_sha (self->redis, self->state_script),
        "3", "hgp:a:log", S_OFFSETS, S_FENCES, log, epoch
    };
    redisReply *reply = hgp_redis_command (self->redis, 8, argv, NULL,
                                           reason, sizeof reason);
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        if (reply)
            freeReplyObject (reply);
        return -1;
    }
    long long code = reply->element [0]->integer;
    const char *state = reply->element [1]->str;
    if (code == 1)
        zsys_warning ("analytics: the event log is %s, not the one the"
                      " rankings in redis were built from: reading it from"
                      " the start (sums so far are kept)", log);
    else
    if (code == 2 && self->state [0])
        zsys_warning ("analytics: redis lost the analytics state (flushed?):"
                      " rebuilding it from the start of the log");
    int rc = self->state [0] && !streq (self->state, state) ? 1 : 0;
    snprintf (self->state, sizeof self->state, "%s", state);
    freeReplyObject (reply);
    return rc;
}

/*  Read every assigned partition again from its first event */
static void
s_rewind (s_analytics_t *self)
{
    //  Redis changed under us: what it said about identities may too
    hgp_ledger_vouch_reset (self->ledger);
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment (self->consumer, &parts) || !parts)
        return;
    for (int i = 0; i < parts->cnt; i++)
        parts->elems [i].offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_error_t *error = rd_kafka_seek_partitions (self->consumer, parts,
                                                        1000);
    if (error) {
        zsys_warning ("analytics: cannot rewind: %s",
                      rd_kafka_error_string (error));
        rd_kafka_error_destroy (error);
    }
    rd_kafka_topic_partition_list_destroy (parts);
    self->nrecords = 0;
    self->more = true;
    //  Offsets of the state we left behind: not Kafka's business any more
    if (self->commit) {
        rd_kafka_topic_partition_list_destroy (self->commit);
        self->commit = NULL;
    }
}

static void
s_assign (s_analytics_t *self, rd_kafka_topic_partition_list_t *parts)
{
    //  Unsure which state the offsets in Redis belong to: committed
    //  offsets, which are safe (the fold script skips what it applied)
    redisContext *c = s_adopt (self) < 0 ? NULL
                    : hgp_redis_context (self->redis);
    if (c && parts->cnt > 0) {
        const char **argv = (const char **) calloc ((size_t) parts->cnt + 2,
                                                    sizeof (char *));
        char (*names) [16] = calloc ((size_t) parts->cnt, 16);
        assert (argv && names);
        argv [0] = "HMGET";
        argv [1] = S_OFFSETS;
        for (int i = 0; i < parts->cnt; i++) {
            snprintf (names [i], 16, "%d", parts->elems [i].partition);
            argv [i + 2] = names [i];
        }
        char reason [256];
        redisReply *reply = hgp_redis_command (self->redis, parts->cnt + 2,
                                               argv, NULL, reason,
                                               sizeof reason);
        if (reply && reply->type == REDIS_REPLY_ARRAY
        &&  (int) reply->elements == parts->cnt)
            for (int i = 0; i < parts->cnt; i++) {
                redisReply *r = reply->element [i];
                parts->elems [i].offset = r->type == REDIS_REPLY_STRING
                    ? strtoll (r->str, NULL, 10) + 1 : RD_KAFKA_OFFSET_BEGINNING;
            }
        else
            zsys_warning ("analytics: starting from the committed offsets:"
                          " %s", reply ? "odd reply" : reason);
        if (reply)
            freeReplyObject (reply);
        free (argv);
        free (names);
    }
    //  Where reading starts, for the lag of a partition that brings nothing
    //  (-1: the committed offset, unknown here)
    for (int i = 0; i < parts->cnt; i++) {
        int32_t p = parts->elems [i].partition;
        int64_t offset = parts->elems [i].offset;
        if (p >= 0 && p < S_PARTS_MAX) {
            self->start [p] = offset == RD_KAFKA_OFFSET_BEGINNING ? 0
                            : offset >= 0 ? offset : -1;
            self->next [p] = offset >= 0 ? offset : -1;
        }
    }
    rd_kafka_assign (self->consumer, parts);
    self->paused = false;
    zsys_info ("analytics: assigned %d partitions", parts->cnt);
}

static void
s_rebalance_cb (rd_kafka_t *rk, rd_kafka_resp_err_t err,
                rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    s_analytics_t *self = (s_analytics_t *) opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        s_assign (self, parts);
    else {
        //  What we hold of them is not ours to apply any more; the next
        //  owner starts after what Redis says was applied. What we folded
        //  goes to Kafka now, while the partitions are still ours.
        self->nrecords = 0;
        s_commit (self, true);
        rd_kafka_assign (rk, NULL);
        zsys_info ("analytics: partitions revoked");
    }
}

static void
s_error_cb (rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    static int last = 0;
    if (err != last)
        zsys_warning ("analytics: kafka: %s", reason);
    last = err;
}

static void
s_log_cb (const rd_kafka_t *rk, int level, const char *facility,
          const char *line)
{
    zsys_warning ("analytics: kafka: %s: %s", facility, line);
}

static int
s_consumer_new (s_analytics_t *self)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new ();
    char errstr [256], session [24], heartbeat [24], fetch_wait [24];
    snprintf (fetch_wait, sizeof fetch_wait, "%d", S_FETCH_WAIT_MS);
    snprintf (session, sizeof session, "%" PRId64,
              self->settings.session_timeout);
    snprintf (heartbeat, sizeof heartbeat, "%" PRId64,
              MAX (self->settings.session_timeout / 6, 100));
    const char *pairs [] = {
        "bootstrap.servers", hgp_eventlog_brokers (self->log),
        "group.id", self->settings.group,
        "client.id", self->actor_id,
        "enable.auto.commit", "false",
        "enable.auto.offset.store", "false",
        //  A start the log no longer has (retention dropped it): its first
        //  record; s_take counts what was skipped (hgp_analytics_lost_total)
        "auto.offset.reset", "earliest",
        "session.timeout.ms", session,
        "heartbeat.interval.ms", heartbeat,
        "socket.nagle.disable", "true",
        "log_level", "4",
        "log.connection.close", "false",
        "reconnect.backoff.max.ms", "1000",
        "fetch.wait.max.ms", fetch_wait,
        NULL
    };
    for (const char **p = pairs; *p; p += 2)
        if (rd_kafka_conf_set (conf, p [0], p [1], errstr, sizeof errstr)) {
            zsys_error ("analytics: kafka setting %s: %s", p [0], errstr);
            rd_kafka_conf_destroy (conf);
            return -1;
        }
    if (hgp_eventlog_conf_security (self->log, conf)) {
        rd_kafka_conf_destroy (conf);
        return -1;
    }
    rd_kafka_conf_set_opaque (conf, self);
    rd_kafka_conf_set_rebalance_cb (conf, s_rebalance_cb);
    rd_kafka_conf_set_error_cb (conf, s_error_cb);
    rd_kafka_conf_set_log_cb (conf, s_log_cb);
    self->consumer = rd_kafka_new (RD_KAFKA_CONSUMER, conf, errstr,
                                   sizeof errstr);
    if (!self->consumer) {
        zsys_error ("analytics: cannot create a kafka consumer: %s", errstr);
        return -1;
    }
    //  Everything (messages, rebalances, errors) through one queue, which
    //  writes to our pipe when it becomes non-empty: we poll it with the
    //  sockets instead of waking up to look
    rd_kafka_poll_set_consumer (self->consumer);
    rd_kafka_queue_t *queue = rd_kafka_queue_get_consumer (self->consumer);
    rd_kafka_queue_io_event_enable (queue, self->wakeup [1], "1", 1);
    rd_kafka_queue_destroy (queue);
    rd_kafka_topic_partition_list_t *topics =
        rd_kafka_topic_partition_list_new (1);
    rd_kafka_topic_partition_list_add (topics, hgp_eventlog_topic (self->log),
                                       RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe (self->consumer, topics);
    rd_kafka_topic_partition_list_destroy (topics);
    if (err) {
        zsys_error ("analytics: cannot subscribe: %s", rd_kafka_err2str (err));
        return -1;
    }
    self->more = true;
    return 0;
}

/*  Take one consumed message into the pending batch */
/*  Records of a partition come in offset order, one after the other: our
    producers are idempotent, not transactional, and nothing compacts the
    topic. A record past the offset we expect means the log dropped the
    ones between before we read them (retention: librdkafka's mock keeps 5
    MB per partition, and librdkafka went on from the log's start,
    auto.offset.reset). They are missing from the rankings for good: say
    so and count them. */
static void
s_check_gap (s_analytics_t *self, const rd_kafka_message_t *m)
{
    int32_t p = m->partition;
    if (p < 0 || p >= S_PARTS_MAX)
        return;
    int64_t expected = self->next [p];
    self->next [p] = m->offset + 1;
    if (expected < 0 || m->offset <= expected)
        return;
    self->lost += (uint64_t) (m->offset - expected);
    zsys_error ("analytics: partition %" PRId32 ": the log dropped offsets %"
                PRId64 "..%" PRId64 " before they were read (retention): %"
                PRId64 " records are missing from the rankings and stats"
                " (hgp_analytics_lost_total)", p, expected, m->offset - 1,
                m->offset - expected);
}

static void
s_take (s_analytics_t *self, rd_kafka_message_t *m)
{
    s_check_gap (self, m);
    if (self->nrecords == 0)
        self->fold_at = zclock_mono () + self->settings.fold_ms;
    s_record_t *rec = &self->records [self->nrecords++];
    rec->partition = m->partition;
    rec->offset = m->offset;
    rec->event = false;
    rec->user = false;
    rec->ev.ts = 0;                 //  no time unless it decodes
    hgp_error_t error = { 0 };
    const void *value = NULL;
    size_t size = 0;
    rd_kafka_headers_t *headers = NULL;
    bool signed_ = rd_kafka_message_headers (m, &headers) == 0
                && rd_kafka_header_get_last (headers, "hgp", &value, &size) == 0
                && size == strlen (HGP_PROTO_EVENT)
                && memcmp (value, HGP_PROTO_EVENT, size) == 0;
    if (!signed_)
        zsys_warning ("analytics: record at [%d] %" PRId64 " has no hgp=%s"
                      " header; skipped", m->partition, m->offset,
                      HGP_PROTO_EVENT);
    else
    if (hgp_event_decode (&rec->ev, m->payload, m->len, &error))
        zsys_warning ("analytics: record at [%d] %" PRId64 " is not an"
                      " event (%s); skipped", m->partition, m->offset,
                      error.message);
    else
    if (!rec->ev.fence [0]
    &&  s_skipped_type (&self->settings, rec->ev.key.counter_type)) {
        //  analytics/skip: only moves the offset, like a non-event
        self->unranked++;
    }
    else {
        rec->event = true;
        rec->user = !rec->ev.fence [0] && rec->ev.user_id [0]
                 && !s_prefixed (self->settings.no_uniques,
                                 self->settings.nno_uniques,
                                 rec->ev.key.counter_type);
    }
}

/*  Events and fences of log identities that never registered are
    forgeries (hgp_ledger_vouch): they count for nothing and fence
    nothing, and only move the offset. 0, or -1 when Redis failed. */
static int
s_vouch (s_analytics_t *self)
{
    for (size_t i = 0; i < self->nrecords; i++) {
        s_record_t *rec = &self->records [i];
        if (!rec->event)
            continue;
        int vouch = hgp_ledger_vouch (self->ledger, rec->ev.actor,
                                      rec->partition, rec->offset);
        if (vouch < 0)
            return -1;
        if (vouch == 0) {
            rec->event = false;
            rec->user = false;
            self->forged++;
        }
    }
    return 0;
}

/*  The batch event by event, judged in Redis (analytics_fold.lua) */
static redisReply *
s_fold_events (s_analytics_t *self, char *reason, size_t size)
{
    s_settings_t *s = &self->settings;
    hgp_args_t *args = self->args;
    hgp_args_evalsha (args, 11 + 8 * self->nrecords);
    hgp_args_set_int (args, 2, 3);
    hgp_args_add_str (args, S_OFFSETS);
    hgp_args_add_str (args, "hgp:a:log");
    hgp_args_add_str (args, S_FENCES);
    hgp_args_add_int (args, zclock_time ());
    hgp_args_add_int (args, s->window [0]);
    hgp_args_add_int (args, s->window [1]);
    hgp_args_add_int (args, s->half_life);
    hgp_args_add_int (args, s->half_life * S_EPOCH);
    hgp_args_add_int (args, s->bucket);
    hgp_args_add_int (args, s->span);
    hgp_args_add_str (args, self->state);
    for (size_t i = 0; i < self->nrecords; i++) {
        s_record_t *rec = &self->records [i];
        hgp_args_add_int (args, rec->partition);
        hgp_args_add_int (args, rec->offset);
        hgp_args_add_str (args, rec->event ? rec->ev.key.counter_type : "");
        hgp_args_add_str (args, rec->event ? rec->ev.key.resource_id : "");
        hgp_args_add_int (args, rec->event ? rec->ev.delta : 0);
        hgp_args_add_int (args, rec->event ? (int64_t) rec->ev.ts : 0);
        hgp_args_add_str (args, !rec->event ? ""
                          : rec->ev.fence [0] ? rec->ev.fence : rec->ev.actor);
        hgp_args_add_str (args, rec->user ? rec->ev.user_id : "");
    }
    return hgp_redis_eval (self->redis, self->fold_script, args, NULL, reason,
                           size);
}

/*  Where a batch lies in one partition */
typedef struct {
    int32_t partition;
    int64_t first, last;
} s_span_t;

#define S_MERGE_SPANS   64      /* most partitions in a merged batch       */

/*  Sum the batch in hgp_sums: false when it is not for analytics_merge.lua
    (a fence in it, a delta too big to sum, offsets not rising in a
    partition, too many partitions). spans and pairs get where it lies and
    who produced its events. */
static bool
s_sum_batch (s_analytics_t *self, int64_t now, s_span_t *spans,
             size_t *nspans, zhashx_t *pairs, size_t *events)
{
    hgp_sums_reset (self->sums, now);
    *nspans = 0;
    *events = 0;
    const s_record_t *last = NULL;      //  the last producer added to pairs
    for (size_t i = 0; i < self->nrecords; i++) {
        s_record_t *rec = &self->records [i];
        size_t k = 0;
        while (k < *nspans && spans [k].partition != rec->partition)
            k++;
        if (k == *nspans) {
            if (k == S_MERGE_SPANS)
                return false;
            spans [k].partition = rec->partition;
            spans [k].first = rec->offset;
            (*nspans)++;
        }
        else
        if (rec->offset <= spans [k].last)
            return false;
        spans [k].last = rec->offset;
        if (!rec->event)
            continue;               //  only moves the offset
        if (rec->ev.fence [0]
        ||  hgp_sums_add (self->sums, rec->ev.key.counter_type,
                          rec->ev.key.resource_id, rec->ev.delta,
                          (int64_t) rec->ev.ts,
                          rec->user ? rec->ev.user_id : NULL))
            return false;
        //  Runs of one producer in one partition are the usual
        if (!last || last->partition != rec->partition
        ||  !streq (last->ev.actor, rec->ev.actor)) {
            char pair [HGP_ID_MAX + 16];
            snprintf (pair, sizeof pair, "%d %s", rec->partition,
                      rec->ev.actor);
            zhashx_insert (pairs, pair, (void *) 1);
            last = rec;
        }
        (*events)++;
    }
    return true;
}

/*  The batch summed here, written in one command per target
    (analytics_merge.lua). false when the batch is not for it; else the
    reply (NULL, with reason, when Redis did not answer). */
static bool
s_fold_merged (s_analytics_t *self, redisReply **reply, char *reason,
               size_t size)
{
    int64_t now = zclock_time ();
    s_span_t spans [S_MERGE_SPANS];
    size_t nspans, events;
    zhashx_t *pairs = zhashx_new ();
    assert (pairs);
    if (!s_sum_batch (self, now, spans, &nspans, pairs, &events)) {
        zhashx_destroy (&pairs);
        return false;
    }
    size_t *targetlen;
    size_t ntargets;
    const char **targets = hgp_sums_args (self->sums, &targetlen, &ntargets);
    size_t max = 13 + 3 * nspans + zhashx_size (pairs) + ntargets;
    hgp_args_t *args = self->args;
    hgp_args_evalsha (args, max);
    hgp_args_set_int (args, 2, 3);
    hgp_args_add_str (args, S_OFFSETS);
    hgp_args_add_str (args, "hgp:a:log");
    hgp_args_add_str (args, S_FENCES);
    hgp_args_add_str (args, self->state);
    hgp_args_add_int (args, (int64_t) now);
    hgp_args_add_int (args, (int64_t) self->settings.bucket);
    hgp_args_add_int (args, (int64_t) self->settings.span);
    hgp_args_add_int (args, (int64_t) events);
    hgp_args_add_int (args, (int64_t) nspans);
    for (size_t k = 0; k < nspans; k++) {
        hgp_args_add_int (args, (int64_t) spans [k].partition);
        hgp_args_add_int (args, (int64_t) spans [k].first);
        hgp_args_add_int (args, (int64_t) spans [k].last);
    }
    hgp_args_add_int (args, (int64_t) (zhashx_size (pairs)));
    for (void *one = zhashx_first (pairs); one; one = zhashx_next (pairs))
        hgp_args_add_str (args, (const char *) zhashx_cursor (pairs));
    for (size_t t = 0; t < ntargets; t++)
        hgp_args_add (args, targets [t], targetlen [t]);
    *reply = hgp_redis_eval (self->redis, self->merge_script, args, NULL,
                             reason, size);
    zhashx_destroy (&pairs);
    return true;
}

/*  Fold the pending batch into Redis and commit its offsets. 0 when it is
    done (or empty), -1 when it must be tried again. A batch that needs no
    judging (the usual) is summed here and merged; one that does (after a
    redelivery, with fences) goes event by event. */
static int
s_fold (s_analytics_t *self)
{
    if (self->nrecords == 0)
        return 0;
    if (!hgp_redis_ready (self->redis, true) || s_vouch (self))
        return -1;
    char reason [256];
    redisReply *reply = NULL;
    int64_t start = zclock_usecs ();
    bool merged = s_fold_merged (self, &reply, reason, sizeof reason);
    if (merged && reply && reply->type == REDIS_REPLY_ARRAY
    &&  reply->elements == 3 && reply->element [0]->integer == -9) {
        freeReplyObject (reply);
        merged = false;
    }
    if (!merged) {
        reply = s_fold_events (self, reason, sizeof reason);
        self->judged++;
    }
    hgp_prom_add (self->prom, self->series.fold_seconds,
                  zclock_usecs () - start);
    if (!reply) {
        //  Applied or not, the offsets in Redis say which: trying again
        //  is safe
        zsys_warning ("analytics: cannot fold %zu events in: %s; will retry",
                      self->nrecords, reason);
        return -1;
    }
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3
    &&  reply->element [0]->integer == -1) {
        //  The state changed (a flush, another log) or we never knew it:
        //  nothing was folded. Learn it; if it moved, read all again.
        freeReplyObject (reply);
        int changed = s_adopt (self);
        if (changed < 0)
            return -1;
        if (changed) {
            s_rewind (self);
            return 0;
        }
        return s_fold (self);       //  same state, now known: once more
    }
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3) {
        self->folded += (uint64_t) reply->element [0]->integer;
        self->skipped += (uint64_t) reply->element [1]->integer;
        hgp_prom_add (self->prom, self->series.void_events,
                      reply->element [2]->integer);
        hgp_prom_add (self->prom, merged ? self->series.merged
                                         : self->series.judged, 1);
        if (reply->element [2]->integer > 0)
            zsys_info ("analytics: %lld void events (of fenced actors,"
                       " PROTOCOL.md 10) not counted",
                       reply->element [2]->integer);
    }
    freeReplyObject (reply);
    self->folds++;
    s_asof_folded (self);

    //  Commit after applying (at most once a second): the next owner of a
    //  partition starts at the offset in Redis anyway, this keeps Kafka's
    //  view (lag) right
    if (!self->commit)
        self->commit = rd_kafka_topic_partition_list_new (8);
    for (size_t i = 0; i < self->nrecords; i++) {
        s_record_t *rec = &self->records [i];
        rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find (
            self->commit, hgp_eventlog_topic (self->log), rec->partition);
        if (!tp)
            tp = rd_kafka_topic_partition_list_add (
                self->commit, hgp_eventlog_topic (self->log), rec->partition);
        if (rec->offset + 1 > tp->offset)
            tp->offset = rec->offset + 1;
    }
    self->nrecords = 0;
    s_commit (self, false);
    return 0;
}

static void
s_pause (s_analytics_t *self, bool pause)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment (self->consumer, &parts) == 0 && parts) {
        if (pause)
            rd_kafka_pause_partitions (self->consumer, parts);
        else
            rd_kafka_resume_partitions (self->consumer, parts);
        rd_kafka_topic_partition_list_destroy (parts);
    }
    self->paused = pause;
}

/*  Redis did not take the batch: drop it, go back to its first offsets
    and pause until Redis is back. Kafka holds the events; we hold
    nothing, so no rebalance or restart can lose them. */
static void
s_back_off (s_analytics_t *self)
{
    rd_kafka_topic_partition_list_t *seek =
        rd_kafka_topic_partition_list_new (8);
    for (size_t i = 0; i < self->nrecords; i++) {
        s_record_t *rec = &self->records [i];
        rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find (
            seek, hgp_eventlog_topic (self->log), rec->partition);
        if (!tp)
            rd_kafka_topic_partition_list_add (
                seek, hgp_eventlog_topic (self->log), rec->partition)->offset
                = rec->offset;
        else
        if (rec->offset < tp->offset)
            tp->offset = rec->offset;
    }
    s_pause (self, true);
    rd_kafka_error_t *error = rd_kafka_seek_partitions (self->consumer, seek,
                                                        1000);
    if (error) {
        zsys_warning ("analytics: cannot seek back: %s",
                      rd_kafka_error_string (error));
        rd_kafka_error_destroy (error);
    }
    rd_kafka_topic_partition_list_destroy (seek);
    self->nrecords = 0;
    self->retry_at = zclock_mono () + S_RETRY_MS;
}

/*  Consume what is there, in batches, and fold each in */
static void
s_consume (s_analytics_t *self)
{
    char drain [64];
    while (read (self->wakeup [0], drain, sizeof drain) > 0)
        ;
    rd_kafka_message_t *m;
    if (self->paused) {
        //  Waiting for Redis. Polling keeps the group's rebalances going;
        //  messages fetched before the seek are dropped (fetched again)
        while ((m = rd_kafka_consumer_poll (self->consumer, 0)))
            rd_kafka_message_destroy (m);
        if (zclock_mono () < self->retry_at)
            return;
        if (!hgp_redis_ready (self->redis, true)) {
            self->retry_at = zclock_mono () + S_RETRY_MS;
            return;
        }
        s_pause (self, false);
    }
    self->more = false;
    while ((m = rd_kafka_consumer_poll (self->consumer, 0))) {
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                zsys_warning ("analytics: kafka: %s",
                              rd_kafka_message_errstr (m));
        }
        else
            s_take (self, m);
        rd_kafka_message_destroy (m);
        if (self->nrecords == (size_t) self->settings.batch_max) {
            if (s_fold (self))
                s_back_off (self);
            else
                self->more = true;  //  the queue may hold more: come back
            return;
        }
        if (self->paused)
            return;                 //  a rebalance happened in the poll
    }
    //  The queue is empty: fold once the batch's first record waited
    //  analytics/fold_ms, so that folds are big enough to sum well
    if (self->nrecords > 0 && zclock_mono () >= self->fold_at && s_fold (self))
        s_back_off (self);
}


/*  --------------------------------------------------------------------------
    Queries: top and stats
*/

static void
s_fail (hgp_reply_t *rep, uint16_t status, const char *code,
        const char *message)
{
    free (rep->ranking);
    rep->ranking = NULL;
    rep->nranking = 0;
    free (rep->buckets);
    rep->buckets = NULL;
    rep->nbuckets = 0;
    rep->has_stats = false;
    hgp_error_set (&rep->error, status, code, "%s", message);
}

/*  A sorted-set score (negated sum) as a count */
static int64_t
s_count (const char *score)
{
    return -(int64_t) llround (strtod (score, NULL));
}

static void
s_top (s_analytics_t *self, const hgp_request_t *req, hgp_reply_t *rep)
{
    s_settings_t *s = &self->settings;
    int64_t now = zclock_time ();
    const char *type = req->key.counter_type;
    char key [HGP_ID_MAX + 64], tmp [64], limit [16];
    snprintf (tmp, sizeof tmp, "hgp:a:tmp:%s", self->actor_id);
    snprintf (limit, sizeof limit, "%u", req->limit);
    const char *source = key;
    double factor = 1.0;
    char reason [256];

    //  Windows and trending: add up their sets into a scratch key first
    if (req->window != HGP_WINDOW_ALL) {
        const char *argv [S_BUCKETS + 8];
        char names [S_BUCKETS][HGP_ID_MAX + 64];
        int argc = 0, nkeys;
        argv [argc++] = "ZUNIONSTORE";
        argv [argc++] = tmp;
        argv [argc++] = "";                 //  numkeys, below
        char weight [32], count [8];
        if (req->window == HGP_WINDOW_TRENDING) {
            int64_t epoch = s->half_life * S_EPOCH;
            int64_t e = now / epoch;
            snprintf (names [0], sizeof names [0], "hgp:a:tr:%s:%" PRId64, type, e);
            snprintf (names [1], sizeof names [1], "hgp:a:tr:%s:%" PRId64, type,
                      e - 1);
            argv [argc++] = names [0];
            argv [argc++] = names [1];
            nkeys = 2;
            snprintf (weight, sizeof weight, "%.17g", pow (2.0, -S_EPOCH));
            argv [argc++] = "WEIGHTS";
            argv [argc++] = "1";
            argv [argc++] = weight;
            //  Scores are relative to the epoch's landmark: decay to now
            factor = pow (2.0, (double) (e * epoch - now) / (double) s->half_life);
        }
        else {
            int w = req->window == HGP_WINDOW_1H ? 0 : 1;
            int64_t b = s->window [w] / S_BUCKETS;
            int64_t last = now / b;
            for (int i = 0; i < S_BUCKETS; i++) {
                snprintf (names [i], sizeof names [i], "hgp:a:w:%s:%s:%" PRId64,
                          w ? "24h" : "1h", type, last - i);
                argv [argc++] = names [i];
            }
            nkeys = S_BUCKETS;
        }
        snprintf (count, sizeof count, "%d", nkeys);
        argv [2] = count;
        redisReply *reply = hgp_redis_command (self->redis, argc, argv, NULL,
                                               reason, sizeof reason);
        if (!reply) {
            s_fail (rep, HGP_STATUS_UNAVAILABLE, "unavailable", reason);
            return;
        }
        freeReplyObject (reply);
        source = tmp;
    }
    else
        snprintf (key, sizeof key, "hgp:a:all:%s", type);

    //  Best first, ties by member: the sets hold negated sums
    const char *range [] = { "ZRANGEBYSCORE", source, "-inf", "(0",
                             "WITHSCORES", "LIMIT", "0", limit };
    redisReply *reply = hgp_redis_command (self->redis, 8, range, NULL,
                                           reason, sizeof reason);
    if (source == tmp) {
        const char *del [] = { "DEL", tmp };
        redisReply *gone = hgp_redis_context (self->redis)
                         ? hgp_redis_command (self->redis, 2, del, NULL,
                                              reason, sizeof reason)
                         : NULL;
        if (gone)
            freeReplyObject (gone);
    }
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        s_fail (rep, HGP_STATUS_UNAVAILABLE, "unavailable",
                reply ? "redis gave an odd reply" : reason);
        if (reply)
            freeReplyObject (reply);
        return;
    }
    size_t n = reply->elements / 2;
    rep->ranking = (hgp_rank_t *) calloc (n ? n : 1, sizeof (hgp_rank_t));
    assert (rep->ranking);
    rep->window = req->window;
    for (size_t i = 0; i < n; i++) {
        hgp_rank_t *r = &rep->ranking [rep->nranking];
        const char *member = reply->element [2 * i]->str;
        if (!hgp_id_valid (member, strlen (member)))
            continue;
        snprintf (r->resource_id, sizeof r->resource_id, "%s", member);
        const char *score = reply->element [2 * i + 1]->str;
        r->score = -strtod (score, NULL) * factor;
        r->count = s_count (score);
        rep->nranking++;
    }
    freeReplyObject (reply);
}

static int
s_compare_buckets (const void *a, const void *b)
{
    int64_t x = ((const hgp_bucket_t *) a)->start_ms;
    int64_t y = ((const hgp_bucket_t *) b)->start_ms;
    return x < y ? -1 : x > y;
}

static void
s_stats (s_analytics_t *self, const hgp_request_t *req, hgp_reply_t *rep)
{
    s_settings_t *s = &self->settings;
    int64_t now = zclock_time ();
    const char *r = req->key.resource_id, *t = req->key.counter_type;
    int64_t epoch = s->half_life * S_EPOCH;
    int64_t e = now / epoch;
    char all [HGP_ID_MAX + 16], minutes [2 * HGP_ID_MAX + 32];
    char tr0 [HGP_ID_MAX + 48], tr1 [HGP_ID_MAX + 48];
    snprintf (all, sizeof all, "hgp:a:all:%s", t);
    snprintf (minutes, sizeof minutes, "hgp:a:m:%zu:%s:%s", strlen (r), r, t);
    snprintf (tr0, sizeof tr0, "hgp:a:tr:%s:%" PRId64, t, e);
    snprintf (tr1, sizeof tr1, "hgp:a:tr:%s:%" PRId64, t, e - 1);
    const char *argv [4][3] = {
        { "ZSCORE", all, r }, { "HGETALL", minutes, NULL },
        { "ZSCORE", tr0, r }, { "ZSCORE", tr1, r }
    };
    redisReply *replies [4] = { NULL };
    char reason [256] = "";
    for (int i = 0; i < 4; i++) {
        if (!hgp_redis_context (self->redis))
            break;
        replies [i] = hgp_redis_command (self->redis, argv [i][2] ? 3 : 2,
                                         argv [i], NULL, reason, sizeof reason);
        if (!replies [i])
            break;
    }
    if (!replies [3]) {
        s_fail (rep, HGP_STATUS_UNAVAILABLE, "unavailable",
                reason [0] ? reason : "redis connection broke");
        goto done;
    }
    rep->has_stats = true;
    rep->total = replies [0]->type == REDIS_REPLY_STRING
               ? s_count (replies [0]->str) : 0;
    double raw0 = replies [2]->type == REDIS_REPLY_STRING
                ? -strtod (replies [2]->str, NULL) : 0;
    double raw1 = replies [3]->type == REDIS_REPLY_STRING
                ? -strtod (replies [3]->str, NULL) : 0;
    rep->trending = (raw0 + raw1 * pow (2.0, -S_EPOCH))
                  * pow (2.0, (double) (e * epoch - now) / (double) s->half_life);
    rep->bucket_ms = (uint32_t) s->bucket;
    size_t fields = replies [1]->type == REDIS_REPLY_ARRAY
                  ? replies [1]->elements / 2 : 0;
    rep->buckets = (hgp_bucket_t *) calloc (fields ? fields : 1,
                                            sizeof (hgp_bucket_t));
    assert (rep->buckets);
    int64_t last = now / s->bucket;
    int64_t first = last - s->span / s->bucket + 1;
    for (size_t i = 0; i < fields; i++) {
        int64_t idx = strtoll (replies [1]->element [2 * i]->str, NULL, 10);
        int64_t count = strtoll (replies [1]->element [2 * i + 1]->str, NULL, 10);
        if (idx < first || idx > last || count == 0
        ||  rep->nbuckets == HGP_MINUTES_MAX)
            continue;
        rep->buckets [rep->nbuckets].start_ms = idx * s->bucket;
        rep->buckets [rep->nbuckets].count = count;
        rep->nbuckets++;
    }
    qsort (rep->buckets, rep->nbuckets, sizeof (hgp_bucket_t),
           s_compare_buckets);
done:
    for (int i = 0; i < 4; i++)
        if (replies [i])
            freeReplyObject (replies [i]);
}

/*  The distinct users of one counter, as its HyperLogLog estimates them
    (PFCOUNT: a standard error of 0.81 %) */
static void
s_uniques (s_analytics_t *self, const hgp_request_t *req, hgp_reply_t *rep)
{
    char key [2 * HGP_ID_MAX + 32];
    hgp_sums_users_key (key, sizeof key, req->key.resource_id,
                        req->key.counter_type);
    const char *argv [] = { "PFCOUNT", key };
    char reason [256] = "";
    redisReply *reply = hgp_redis_command (self->redis, 2, argv, NULL,
                                           reason, sizeof reason);
    if (!reply || reply->type != REDIS_REPLY_INTEGER || reply->integer < 0)
        s_fail (rep, HGP_STATUS_UNAVAILABLE, "unavailable",
                reason [0] ? reason : "redis gave no count");
    else {
        rep->has_uniques = true;
        rep->uniques = (uint64_t) reply->integer;
        rep->approximate = true;
    }
    if (reply)
        freeReplyObject (reply);
}

/*  Answer one REQUEST */
static void
s_serve (s_analytics_t *self, const hgp_work_t *work)
{
    hgp_request_t req;
    hgp_reply_t rep;
    hgp_reply_init (&rep);
    hgp_error_t error;
    char req_trace [HGP_ID_MAX + 1] = "";
    if (!work->body)
        hgp_error_set (&rep.error, HGP_STATUS_BAD_REQUEST, "malformed",
                       "a REQUEST has 5 frames: %s, 0x02, token, budget (4"
                       " bytes), body", HGP_PROTO_ACTOR);
    else
    if (hgp_request_decode (&req, work->body, work->size, &error)) {
        snprintf (rep.id, sizeof rep.id, "%s", req.id);
        rep.error = error;
    }
    else {
        snprintf (rep.id, sizeof rep.id, "%s", req.id);
        memcpy (req_trace, req.trace, sizeof req_trace);
        if (zclock_mono () >= work->deadline)
            hgp_error_set (&rep.error, HGP_STATUS_TIMEOUT, "timeout",
                           "the budget ran out before analytics started it");
        else
        if (req.op == HGP_OP_TOP || req.op == HGP_OP_STATS
        ||  req.op == HGP_OP_UNIQUES) {
            if (!hgp_redis_ready (self->redis, true))
                s_fail (&rep, HGP_STATUS_UNAVAILABLE, "unavailable",
                        "analytics cannot reach redis");
            else
            if (req.op == HGP_OP_TOP)
                s_top (self, &req, &rep);
            else
            if (req.op == HGP_OP_STATS)
                s_stats (self, &req, &rep);
            else
                s_uniques (self, &req, &rep);
            if (rep.error.status == HGP_STATUS_OK)
                s_asof_read (self, &rep);
        }
        else
        if (req.op != HGP_OP_PING)
            hgp_error_set (&rep.error, HGP_STATUS_INTERNAL, "internal",
                           "op %s is not served by an analytics actor",
                           hgp_op_name (req.op));
        hgp_request_clear (&req);
    }
    self->buf.size = 0;
    if (hgp_reply_encode (&rep, &self->buf)) {
        hgp_error_set (&error, HGP_STATUS_INTERNAL, "internal",
                       "analytics could not encode its reply");
        self->buf.size = 0;
        hgp_reply_encode_error (rep.id, &error, &self->buf);
    }
    hgp_worker_reply (self->worker, work, self->buf.data,
                      self->buf.size);
    hgp_prom_count_status (self->prom, self->series.replies,
                           rep.error.status);
    if (hgp_trace_sampled (req_trace))
        zsys_info ("trace %s: analytics %s: %d%s%s", req_trace, rep.id,
                   rep.error.status, rep.error.code [0] ? " " : "",
                   rep.error.code);
    hgp_reply_clear (&rep);
}


/*  --------------------------------------------------------------------------
    Metrics (analytics/metrics)
*/

static void
s_metrics_declare (s_analytics_t *self)
{
    hgp_prom_t *p = self->prom;
    s_series_t *m = &self->series;
    const hgp_prom_type_t C = HGP_PROM_COUNTER;
    m->folded = hgp_prom_declare (p, C, "hgp_analytics_events_total", "",
        "Events folded into rankings, windows and series.", 1);
    m->skipped = hgp_prom_declare (p, C, "hgp_analytics_redelivered_total",
        "", "Events read again and skipped (folded before).", 1);
    m->forged = hgp_prom_declare (p, C, "hgp_analytics_forged_total", "",
        "Records of identities that never registered, not counted.", 1);
    m->void_events = hgp_prom_declare (p, C, "hgp_analytics_void_total", "",
        "Events of fenced actors past their fence, not counted.", 1);
    m->unranked = hgp_prom_declare (p, C, "hgp_analytics_unranked_total", "",
        "Events of counter types in analytics/skip, not ranked.", 1);
    m->lost = hgp_prom_declare (p, C, "hgp_analytics_lost_total", "",
        "Records the log dropped (retention) before they were read: missing"
        " from rankings and stats for good.", 1);
    const char *folds = "hgp_analytics_folds_total";
    const char *help = "Fold calls to Redis that applied, by how: merged"
        " (sums per target) or judged (event by event).";
    m->merged = hgp_prom_declare (p, C, folds, "how=\"merged\"", help, 1);
    m->judged = hgp_prom_declare (p, C, folds, "how=\"judged\"", help, 1);
    m->fold_seconds = hgp_prom_declare (p, C,
        "hgp_analytics_fold_seconds_total", "", "Time in fold calls.",
        1000000);
    m->lag = hgp_prom_declare (p, HGP_PROM_GAUGE, "hgp_analytics_lag_events",
        "", "Events of this actor's partitions not folded in yet (the log's"
        " end as last fetched, less what was folded).", 1);
    hgp_prom_declare_statuses (p, "hgp_analytics_replies_total",
        "Replies sent (top, stats), by status.", m->replies);
}

/*  --------------------------------------------------------------------------
    How far the log is folded in (hgp:a:asof, PROTOCOL.md 7): per partition,
    the newest event timestamp folded in (its append came after it), or
    when its reader had read and folded all of it up to the end the last
    fetch saw (less how old that may be). Top and stats answer the least of
    them as as_of_ms: every increment acknowledged before it (so appended
    before it) is in.
*/

static void
s_asof_write (s_analytics_t *self, const int32_t *parts, const int64_t *ms,
              int n)
{
    if (!hgp_redis_context (self->redis))
        return;
    for (int at = 0; at < n; at += S_ASOF_FIELDS) {
        const char *argv [2 + 2 * S_ASOF_FIELDS];
        char text [2 * S_ASOF_FIELDS][24];
        int argc = 0;
        argv [argc++] = "HSET";
        argv [argc++] = S_ASOF;
        for (int i = at; i < n && i < at + S_ASOF_FIELDS; i++) {
            snprintf (text [argc - 2], 24, "%d", (int) parts [i]);
            argv [argc] = text [argc - 2];
            argc++;
            snprintf (text [argc - 2], 24, "%" PRId64, ms [i]);
            argv [argc] = text [argc - 2];
            argc++;
        }
        char reason [256];
        redisReply *reply = hgp_redis_command (self->redis, argc, argv, NULL,
                                               reason, sizeof reason);
        if (!reply)
            return;                 //  the next fold writes it again
        freeReplyObject (reply);
    }
}

//  After a fold: the newest timestamp folded in, per partition of the batch
static void
s_asof_folded (s_analytics_t *self)
{
    int32_t parts [S_MERGE_SPANS];
    int64_t ms [S_MERGE_SPANS];
    int n = 0;
    for (size_t i = 0; i < self->nrecords; i++) {
        const s_record_t *rec = &self->records [i];
        if (rec->ev.ts == 0)
            continue;               //  not decoded: no time
        int k = 0;
        while (k < n && parts [k] != rec->partition)
            k++;
        if (k == n) {
            if (n == S_MERGE_SPANS)
                continue;           //  more at the next fold
            parts [n] = rec->partition;
            ms [n++] = 0;
        }
        if ((int64_t) rec->ev.ts > ms [k])
            ms [k] = (int64_t) rec->ev.ts;
    }
    s_asof_write (self, parts, ms, n);
}

//  The least of hgp:a:asof over every partition of the topic into rep: 0
//  while one has no entry (nothing of it read and folded yet)
static void
s_asof_read (s_analytics_t *self, hgp_reply_t *rep)
{
    int partitions = hgp_eventlog_partitions (self->log, S_ASOF_META_MS);
    const char *argv [] = { "HGETALL", S_ASOF };
    char reason [256];
    redisReply *reply = partitions > 0
        ? hgp_redis_command (self->redis, 2, argv, NULL, reason, sizeof reason)
        : NULL;
    rep->has_as_of = true;
    rep->as_of_ms = 0;
    if (!reply)
        return;
    int found = 0;
    int64_t least = INT64_MAX;
    for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY
                    && i + 1 < reply->elements; i += 2) {
        redisReply *field = reply->element [i], *value = reply->element [i + 1];
        int64_t p, ms;
        if (field->type == REDIS_REPLY_STRING && value->type == REDIS_REPLY_STRING
        &&  hgp_redis_int64 (field->str, field->len, &p) == 0
        &&  hgp_redis_int64 (value->str, value->len, &ms) == 0
        &&  p >= 0 && p < partitions) {
            found++;
            least = MIN (least, ms);
        }
    }
    freeReplyObject (reply);
    if (found == partitions)
        rep->as_of_ms = least;
}

//  Does the batch hold records of partition?
static bool
s_pending (s_analytics_t *self, int32_t partition)
{
    for (size_t i = 0; i < self->nrecords; i++)
        if (self->records [i].partition == partition)
            return true;
    return false;
}

//  Once a second: how far we are in the log. Returns the lag (for every
//  partition we hold, its end as the last fetch saw it less our position,
//  plus what waits for its fold) and records in hgp:a:asof the partitions
//  read and folded to that end
static int64_t
s_progress (s_analytics_t *self)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (!self->consumer || rd_kafka_assignment (self->consumer, &parts))
        return 0;
    int64_t lag = 0;
    int32_t caught [S_MERGE_SPANS];
    int64_t now [S_MERGE_SPANS];
    int ncaught = 0;
    if (rd_kafka_position (self->consumer, parts) == RD_KAFKA_RESP_ERR_NO_ERROR)
        for (int i = 0; i < parts->cnt; i++) {
            int64_t low, high;
            rd_kafka_topic_partition_t *tp = &parts->elems [i];
            //  Nothing read since assigned: where the reading started
            int64_t at = tp->offset >= 0 ? tp->offset
                       : tp->partition >= 0 && tp->partition < S_PARTS_MAX
                       ? self->start [tp->partition] : -1;
            if (at < 0
            ||  rd_kafka_get_watermark_offsets (self->consumer, tp->topic,
                    tp->partition, &low, &high) != RD_KAFKA_RESP_ERR_NO_ERROR
            ||  high < 0)
                continue;
            if (high > at)
                lag += high - at;
            else
            if (!s_pending (self, tp->partition) && ncaught < S_MERGE_SPANS) {
                //  Read to its end as the last fetch saw it, and folded. The
                //  fetcher long-polls at most S_FETCH_WAIT_MS, so that end is
                //  at most that old (S_ASOF_MARGIN_MS with the round trip):
                //  everything appended before then is in
                caught [ncaught] = tp->partition;
                now [ncaught++] = zclock_time () - S_ASOF_MARGIN_MS;
            }
        }
    rd_kafka_topic_partition_list_destroy (parts);
    s_asof_write (self, caught, now, ncaught);
    return lag + (int64_t) self->nrecords;
}

static void
s_metrics_publish (s_analytics_t *self)
{
    if (zclock_mono () < self->publish_at)
        return;
    self->publish_at = zclock_mono () + 1000;
    hgp_prom_set (self->prom, self->series.folded, (int64_t) self->folded);
    hgp_prom_set (self->prom, self->series.skipped, (int64_t) self->skipped);
    hgp_prom_set (self->prom, self->series.forged, (int64_t) self->forged);
    hgp_prom_set (self->prom, self->series.unranked, (int64_t) self->unranked);
    hgp_prom_set (self->prom, self->series.lost, (int64_t) self->lost);
    hgp_prom_set (self->prom, self->series.lag, s_progress (self));
}


/*  --------------------------------------------------------------------------
    The actor
*/

static s_analytics_t *
s_analytics_new (zsock_t *actor_pipe, hgp_config_t *config)
{
    s_analytics_t *self = (s_analytics_t *) zmalloc (sizeof (s_analytics_t));
    assert (self);
    self->pipe = actor_pipe;
    self->config = config;
    char *error = s_settings_load (config, &self->settings);
    if (!error)
        self->redis = hgp_redis_new (config, "analytics", &error);
    if (!error)
        self->log = hgp_eventlog_new (config, "analytics", &error);
    if (error)
        zsys_error ("%s", error);
    assert (!error);            //  main calls hgp_analytics_config_check
    hgp_process_random_id (self->actor_id, sizeof self->actor_id);
    self->prom = hgp_prom_new ("analytics");
    assert (self->prom);
    s_metrics_declare (self);
    self->exporter = hgp_exporter_start (config, "analytics", self->prom);
    self->fold_script = hgp_redis_script (self->redis,
                                          hgp_lua_analytics_fold);
    self->merge_script = hgp_redis_script (self->redis,
                                           hgp_lua_analytics_merge);
    hgp_sums_settings_t sums = {
        { self->settings.window [0], self->settings.window [1] },
        self->settings.half_life, self->settings.half_life * S_EPOCH,
        self->settings.bucket, self->settings.span
    };
    self->sums = hgp_sums_new (&sums);
    self->state_script = hgp_redis_script (self->redis,
                                           hgp_lua_analytics_state);
    self->ledger = hgp_ledger_new (self->redis, "analytics", 1, 1000);
    int rc = pipe (self->wakeup);
    assert (rc == 0);
    for (int i = 0; i < 2; i++)
        fcntl (self->wakeup [i], F_SETFL, O_NONBLOCK);
    size_t batch = (size_t) self->settings.batch_max;
    self->records = (s_record_t *) calloc (batch, sizeof (s_record_t));
    self->args = hgp_args_new ();
    assert (self->records);
    return self;
}

static void
s_analytics_destroy (s_analytics_t **self_p)
{
    s_analytics_t *self = *self_p;
    if (!self)
        return;
    //  The last offsets folded in go first (close waits for the commit)
    s_commit (self, true);
    if (self->consumer) {
        //  Leave the group now, so our partitions move at once
        rd_kafka_consumer_close (self->consumer);
        rd_kafka_destroy (self->consumer);
    }
    hgp_worker_destroy (&self->worker);
    hgp_exporter_destroy (&self->exporter);
    hgp_prom_destroy (&self->prom);
    hgp_eventlog_destroy (&self->log);
    hgp_ledger_destroy (&self->ledger);
    hgp_redis_destroy (&self->redis);
    hgp_sums_destroy (&self->sums);
    close (self->wakeup [0]);
    close (self->wakeup [1]);
    free (self->records);
    hgp_args_destroy (&self->args);
    hgp_buf_clear (&self->buf);
    free (self);
    *self_p = NULL;
}

void
hgp_analytics_actor (zsock_t *pipe, void *args)
{
    s_analytics_t *self = s_analytics_new (pipe, (hgp_config_t *) args);
    zsock_signal (pipe, 0);
    s_settings_t *s = &self->settings;
    zsys_info ("analytics: actor %s, group %s on %s at kafka %s, redis %s,"
               " windows %" PRId64 "/%" PRId64 " ms, half-life %" PRId64 " ms",
               self->actor_id, s->group, hgp_eventlog_topic (self->log),
               hgp_eventlog_brokers (self->log),
               hgp_redis_address (self->redis), s->window [0], s->window [1],
               s->half_life);
    hgp_redis_ready (self->redis, false);
    if (s_consumer_new (self))
        zsys_error ("analytics: no consumer: rankings will not move");
    self->worker = hgp_worker_new (self->config, S_SERVICE, self->actor_id,
                                   (uint32_t) s->capacity, s->heartbeat,
                                   s->liveness);
    if (self->exporter)
        hgp_worker_set_metrics (self->worker,
                                hgp_exporter_url (self->exporter));
    uint64_t reported = 0;
    int64_t report_at = zclock_mono () + 10000;
    while (!self->terminated) {
        int64_t now = zclock_mono ();
        int64_t wake = MIN (hgp_worker_wake_at (self->worker), self->check_at);
        if (self->more)
            wake = now;
        if (self->paused)
            wake = MIN (wake, self->retry_at);
        if (self->commit)
            wake = MIN (wake, self->commit_at);
        if (self->nrecords > 0)
            wake = MIN (wake, self->fold_at);
        zmq_pollitem_t items [2 + HGP_WORKER_POLL_MAX] = {
            { zsock_resolve (self->pipe), 0, ZMQ_POLLIN, 0 },
            { NULL, self->wakeup [0], ZMQ_POLLIN, 0 }
        };
        size_t n = 2 + hgp_worker_pollitems (self->worker, items + 2);
        if (zmq_poll (items, (int) n, (long) MAX (wake - now, 0)) == -1) {
            if (zmq_errno () == EINTR)
                continue;
            break;
        }
        if (items [0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv (self->pipe);
            if (command && streq (command, "$TERM"))
                self->terminated = true;
            zstr_free (&command);
            if (self->terminated)
                break;
        }
        bool input = false;
        for (size_t i = 2; i < n; i++)
            input |= (items [i].revents & ZMQ_POLLIN) != 0;
        if (input || hgp_worker_pending (self->worker)) {
            hgp_work_t work;
            for (int i = 0; i < 256 && hgp_worker_recv (self->worker, &work);
                 i++)
                s_serve (self, &work);
            hgp_worker_flush (self->worker);
        }
        if (self->consumer
        &&  ((items [1].revents & ZMQ_POLLIN) || self->more
             || (self->paused && zclock_mono () >= self->retry_at)
             || (self->nrecords > 0 && zclock_mono () >= self->fold_at)))
            s_consume (self);
        hgp_worker_tick (self->worker);
        s_commit (self, false);
        s_metrics_publish (self);
        if (self->consumer && !self->paused && zclock_mono () >= self->check_at) {
            //  While no events come, notice a flushed Redis anyway
            self->check_at = zclock_mono () + 2000;
            if (self->state [0] && s_adopt (self) == 1)
                s_rewind (self);
        }
        if (zclock_mono () >= report_at) {
            report_at = zclock_mono () + 10000;
            if (self->folded != reported)
                zsys_info ("analytics: %" PRIu64 " events folded in (%"
                           PRIu64 " folds), %" PRIu64 " redeliveries skipped,"
                           " %" PRIu64 " records of unregistered identities"
                           " ignored", self->folded, self->folds,
                           self->skipped, self->forged);
            reported = self->folded;
        }
    }
    //  What waits for its fold goes in now (else the next owner of the
    //  partitions reads it again: nothing lost either way)
    if (self->consumer && !self->paused && s_fold (self))
        zsys_warning ("analytics: the last %zu events were not folded in;"
                      " whoever reads the partitions next will",
                      self->nrecords);
    zsys_info ("analytics: actor %s stopped after %" PRIu64 " events in %"
               PRIu64 " folds (%" PRIu64 " judged event by event, %" PRIu64
               " records of unregistered identities ignored)",
               self->actor_id, self->folded, self->folds, self->judged,
               self->forged);
    s_analytics_destroy (&self);
}
