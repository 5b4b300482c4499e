/*  hgp_eventlog.c - the event log on Kafka (see .h)
 *
 *  Why it is built this way:
 *
 *  - Idempotent producer (enable.idempotence: acks=all, in-order retries
 *    without duplicates). The counter acknowledges an increment only once
 *    Kafka acknowledged its event, so an acknowledged increment is in the
 *    log; librdkafka's own retries must then not add a second copy.
 *  - Outcomes come from delivery reports, through the opaque pointer of
 *    each message, and are classified with rd_kafka_message_status: an
 *    error on a message that never left the queue is "not persisted" (the
 *    counter can answer 503: nothing happened), anything that may have
 *    reached a broker is "unknown" (504, and the counter must find out
 *    from the log before it trusts its records again).
 *  - Nothing is left in flight between batches: hgp_eventlog_wait purges at
 *    its deadline. A late acknowledgement of a message the counter already
 *    gave up on would otherwise be an event nobody applies.
 *  - The reader uses assign(), not a consumer group, and auto.offset.reset
 *    "error": a recovery that starts below what the log still holds
 *    (retention dropped events) must fail loudly, not skip ahead.
 */
#include "hgp_eventlog.h"
#include <czmq.h>
#include <librdkafka/rdkafka.h>

/*  Security settings, passed to librdkafka as they are: config key under
    kafka/, librdkafka property. An empty value leaves librdkafka's
    default (plaintext, no authentication). */
static const char *const s_security [][2] = {
    { "security_protocol",          "security.protocol" },
    { "sasl_mechanism",             "sasl.mechanisms" },
    { "sasl_username",              "sasl.username" },
    { "sasl_password",              "sasl.password" },
    { "ssl_ca_location",            "ssl.ca.location" },
    { "ssl_certificate_location",   "ssl.certificate.location" },
    { "ssl_key_location",           "ssl.key.location" },
    { "ssl_key_password",           "ssl.key.password" },
};
#define S_SECURITY_MAX  (sizeof s_security / sizeof s_security [0])

struct _hgp_eventlog_t {
    char *who;                  /* owner, for logs and client.id           */
    char *brokers;              /* kafka/brokers                           */
    char *topic_name;           /* kafka/topic                             */
    int64_t timeout;            /* kafka/timeout, ms                       */
    rd_kafka_t *producer;       /* NULL until the first produce            */
    rd_kafka_topic_t *topic;    /* the producer's topic handle             */
    rd_kafka_t *reader;         /* NULL until the first read or query      */
    int partitions;             /* known partition count, 0 if not yet     */
    int outstanding;            /* produced, no delivery report yet        */
    int failed;                 /* reports other than persisted, this wait */
    char error [256];           /* last error, for messages                */
    rd_kafka_resp_err_t last_err;   /* last error callback, to log changes */
    hgp_buf_t buf;              /* encoded event, reused                   */
    char *security [S_SECURITY_MAX];    /* s_security values, NULL unset   */
};

/*  Read the security settings into values; NULL, or a message to free
    when librdkafka refuses one */
static char *
s_security_load (hgp_config_t *config, char **values)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new ();
    char *error = NULL;
    for (size_t i = 0; i < S_SECURITY_MAX && !error; i++) {
        char path [64], env [64], errstr [256];
        snprintf (path, sizeof path, "kafka/%s", s_security [i][0]);
        const char *value = hgp_config_str (config, path, "");
        if (!*value)
            continue;
        if (rd_kafka_conf_set (conf, s_security [i][1], value, errstr,
                               sizeof errstr) != RD_KAFKA_CONF_OK)
            error = zsys_sprintf ("config: %s (%s): %s", path,
                                  hgp_config_env_name (path, env, sizeof env),
                                  errstr);
        else
            values [i] = strdup (value);
    }
    rd_kafka_conf_destroy (conf);
    return error;
}

int
hgp_eventlog_conf_security (hgp_eventlog_t *self, rd_kafka_conf_t *conf)
{
    for (size_t i = 0; i < S_SECURITY_MAX; i++) {
        char errstr [256];
        if (self->security [i]
        &&  rd_kafka_conf_set (conf, s_security [i][1], self->security [i],
                               errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
            zsys_error ("%s: kafka setting %s: %s", self->who,
                        s_security [i][1], errstr);
            return -1;
        }
    }
    return 0;
}

hgp_eventlog_t *
hgp_eventlog_new (hgp_config_t *config, const char *who, char **error_p)
{
    const char *brokers = hgp_config_str (config, "kafka/brokers",
                                          "127.0.0.1:9092");
    const char *topic = hgp_config_str (config, "kafka/topic",
                                        "counter_events");
    int64_t timeout = hgp_config_int (config, "kafka/timeout", 1000, 10, 300000);
    char *error = NULL;
    if (hgp_config_error (config))
        error = strdup (hgp_config_error (config));
    else
    if (!*brokers)
        error = strdup ("config: kafka/brokers (HGP_KAFKA_BROKERS) is empty");
    else
    if (!*topic || strlen (topic) > 249)
        error = strdup ("config: kafka/topic (HGP_KAFKA_TOPIC) must be 1-249"
                        " characters");
    char *security [S_SECURITY_MAX] = { NULL };
    if (!error)
        error = s_security_load (config, security);
    if (error) {
        for (size_t i = 0; i < S_SECURITY_MAX; i++)
            free (security [i]);
        if (error_p)
            *error_p = error;
        else
            free (error);
        return NULL;
    }
    hgp_eventlog_t *self = (hgp_eventlog_t *) zmalloc (sizeof (hgp_eventlog_t));
    assert (self);
    memcpy (self->security, security, sizeof security);
    self->who = strdup (who);
    self->brokers = strdup (brokers);
    self->topic_name = strdup (topic);
    self->timeout = timeout;
    return self;
}

void
hgp_eventlog_destroy (hgp_eventlog_t **self_p)
{
    assert (self_p);
    hgp_eventlog_t *self = *self_p;
    if (!self)
        return;
    if (self->producer) {
        //  Nothing should be outstanding (wait purges); if something is,
        //  its outcome is nobody's business any more
        rd_kafka_purge (self->producer, RD_KAFKA_PURGE_F_QUEUE
                                      | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush (self->producer, 100);
        rd_kafka_topic_destroy (self->topic);
        rd_kafka_destroy (self->producer);
    }
    if (self->reader) {
        rd_kafka_consumer_close (self->reader);
        rd_kafka_destroy (self->reader);
    }
    hgp_buf_clear (&self->buf);
    free (self->who);
    free (self->brokers);
    free (self->topic_name);
    for (size_t i = 0; i < S_SECURITY_MAX; i++)
        free (self->security [i]);
    free (self);
    *self_p = NULL;
}

const char *
hgp_eventlog_brokers (hgp_eventlog_t *self)
{
    return self->brokers;
}

const char *
hgp_eventlog_topic (hgp_eventlog_t *self)
{
    return self->topic_name;
}

int64_t
hgp_eventlog_timeout (hgp_eventlog_t *self)
{
    return self->timeout;
}

const char *
hgp_eventlog_error (hgp_eventlog_t *self)
{
    return self->error;
}

static int
s_fail (hgp_eventlog_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

static int
s_fail (hgp_eventlog_t *self, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (self->error, sizeof self->error, format, args);
    va_end (args);
    return -1;
}

/*  librdkafka's errors (all brokers down, connection refused...): log the
    changes, not every retry */
static void
s_error_cb (rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    hgp_eventlog_t *self = (hgp_eventlog_t *) opaque;
    if (err != (int) self->last_err)
        zsys_warning ("%s: kafka at %s: %s", self->who, self->brokers, reason);
    self->last_err = (rd_kafka_resp_err_t) err;
    snprintf (self->error, sizeof self->error, "kafka at %s: %s",
              self->brokers, reason);
}

/*  librdkafka's own log lines, through ours */
static void
s_log_cb (const rd_kafka_t *rk, int level, const char *facility,
          const char *line)
{
    if (level <= 3)
        zsys_error ("kafka: %s: %s", facility, line);
    else
        zsys_warning ("kafka: %s: %s", facility, line);
}

static void
s_dr_cb (rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    hgp_eventlog_t *self = (hgp_eventlog_t *) opaque;
    hgp_delivery_t *d = (hgp_delivery_t *) m->_private;
    self->outstanding--;
    if (m->err)
        self->failed++;
    if (!d)
        return;                 //  fire-and-forget
    if (!m->err) {
        d->status = HGP_LOG_PERSISTED;
        d->partition = m->partition;
        d->offset = m->offset;
        return;
    }
    d->status = rd_kafka_message_status (m) == RD_KAFKA_MSG_STATUS_NOT_PERSISTED
              ? HGP_LOG_NOT_PERSISTED : HGP_LOG_UNKNOWN;
    snprintf (d->error, sizeof d->error, "%s", rd_kafka_err2str (m->err));
}

static rd_kafka_conf_t *
s_conf (hgp_eventlog_t *self, const char *const *pairs)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new ();
    char errstr [256];
    char timeout [24];
    snprintf (timeout, sizeof timeout, "%lld", (long long) self->timeout);
    const char *common [] = {
        "bootstrap.servers", self->brokers,
        "client.id", self->who,
        "log_level", "4",
        "log.connection.close", "false",
        "socket.timeout.ms", "10000",
        "socket.nagle.disable", "true",
        "reconnect.backoff.ms", "50",
        "reconnect.backoff.max.ms", "1000",
        NULL
    };
    for (const char *const *p = common; *p; p += 2) {
        int rc = rd_kafka_conf_set (conf, p [0], p [1], errstr, sizeof errstr);
        assert (rc == RD_KAFKA_CONF_OK);
    }
    for (const char *const *p = pairs; *p; p += 2) {
        const char *value = streq (p [1], "$timeout") ? timeout : p [1];
        int rc = rd_kafka_conf_set (conf, p [0], value, errstr, sizeof errstr);
        if (rc != RD_KAFKA_CONF_OK)
            zsys_error ("%s: kafka setting %s=%s: %s", self->who, p [0],
                        value, errstr);
        assert (rc == RD_KAFKA_CONF_OK);
    }
    int rc = hgp_eventlog_conf_security (self, conf);
    assert (rc == 0);                   //  checked in hgp_eventlog_new
    rd_kafka_conf_set_opaque (conf, self);
    rd_kafka_conf_set_error_cb (conf, s_error_cb);
    rd_kafka_conf_set_log_cb (conf, s_log_cb);
    return conf;
}

static int
s_producer (hgp_eventlog_t *self)
{
    if (self->producer)
        return 0;
    static const char *const pairs [] = {
        "enable.idempotence", "true",       //  implies acks=all
        "acks", "all",
        //  A sync batch's events go at once anyway (hgp_eventlog_wait
        //  flushes, and a flush ignores linger.ms); lingering keeps them
        //  from leaving one by one while the batch is still produced, so
        //  they make one record batch per partition instead of many. That
        //  matters to readers: every Fetch returns at most one batch per
        //  partition from librdkafka's mock, which also finds a fetch
        //  offset by walking the partition's batches from the start.
        "linger.ms", "5",
        "message.timeout.ms", "$timeout",
        "queue.buffering.max.messages", "1000000",
        NULL
    };
    rd_kafka_conf_t *conf = s_conf (self, pairs);
    rd_kafka_conf_set_dr_msg_cb (conf, s_dr_cb);
    char errstr [256];
    self->producer = rd_kafka_new (RD_KAFKA_PRODUCER, conf, errstr,
                                   sizeof errstr);
    if (!self->producer)
        return s_fail (self, "cannot create a kafka producer: %s", errstr);
    self->topic = rd_kafka_topic_new (self->producer, self->topic_name, NULL);
    assert (self->topic);
    return 0;
}

static int
s_reader (hgp_eventlog_t *self)
{
    if (self->reader)
        return 0;
    //  assign() needs a group.id, but no group is joined and nothing is
    //  committed
    static const char *const pairs [] = {
        "group.id", "hgp-reader",
        "enable.auto.commit", "false",
        "enable.auto.offset.store", "false",
        "enable.partition.eof", "true",
        "auto.offset.reset", "error",
        //  we read ranges that exist: a fetch long-polling at the end of
        //  one partition would hold up the first fetch of the next
        "fetch.wait.max.ms", "10",
        //  a broker that creates topics on demand creates ours on the
        //  first metadata request (real Kafka with auto-create on)
        "allow.auto.create.topics", "true",
        NULL
    };
    rd_kafka_conf_t *conf = s_conf (self, pairs);
    char errstr [256];
    self->reader = rd_kafka_new (RD_KAFKA_CONSUMER, conf, errstr,
                                 sizeof errstr);
    if (!self->reader)
        return s_fail (self, "cannot create a kafka reader: %s", errstr);
    return 0;
}

int
hgp_eventlog_partitions (hgp_eventlog_t *self, int timeout_ms)
{
    if (self->partitions > 0)
        return self->partitions;
    if (s_reader (self))
        return -1;
    rd_kafka_topic_t *topic = rd_kafka_topic_new (self->reader,
                                                  self->topic_name, NULL);
    assert (topic);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata (self->reader, 0, topic, &md,
                                                 timeout_ms);
    rd_kafka_topic_destroy (topic);
    if (err)
        return s_fail (self, "kafka at %s: no metadata for topic %s: %s",
                       self->brokers, self->topic_name, rd_kafka_err2str (err));
    int count = -1;
    if (md->topic_cnt == 1 && !md->topics [0].err
    &&  md->topics [0].partition_cnt > 0)
        count = md->topics [0].partition_cnt;
    else
        s_fail (self, "kafka at %s: topic %s: %s", self->brokers,
                self->topic_name, md->topic_cnt == 1
                ? rd_kafka_err2str (md->topics [0].err) : "not found");
    rd_kafka_metadata_destroy (md);
    self->partitions = count > 0 ? count : 0;
    return count;
}

int
hgp_eventlog_offsets (hgp_eventlog_t *self, int32_t partition,
                      int64_t *low, int64_t *high, int timeout_ms)
{
    if (s_reader (self))
        return -1;
    rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets (
        self->reader, self->topic_name, partition, low, high, timeout_ms);
    if (err)
        return s_fail (self, "kafka at %s: no offsets for %s [%d]: %s",
                       self->brokers, self->topic_name, partition,
                       rd_kafka_err2str (err));
    return 0;
}

/*  Queue one record: by key (partition RD_KAFKA_PARTITION_UA) or to a
    partition (key NULL) */
static int
s_produce (hgp_eventlog_t *self, const hgp_event_t *event, const char *key,
           size_t keylen, int32_t partition, hgp_delivery_t *delivery)
{
    if (delivery)
        memset (delivery, 0, sizeof *delivery);
    if (s_producer (self))
        goto failed;
    self->buf.size = 0;
    if (hgp_event_encode (event, &self->buf)) {
        s_fail (self, "event %s cannot be encoded",
                event->fence [0] ? event->fence : event->id);
        goto failed;
    }
    rd_kafka_resp_err_t err = rd_kafka_producev (
        self->producer,
        RD_KAFKA_V_RKT (self->topic),
        RD_KAFKA_V_PARTITION (partition),
        RD_KAFKA_V_KEY (key, keylen),
        RD_KAFKA_V_VALUE (self->buf.data, self->buf.size),
        RD_KAFKA_V_MSGFLAGS (RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_TIMESTAMP ((int64_t) event->ts),
        RD_KAFKA_V_HEADER ("hgp", HGP_PROTO_EVENT,
                           (ssize_t) strlen (HGP_PROTO_EVENT)),
        RD_KAFKA_V_OPAQUE (delivery),
        RD_KAFKA_V_END);
    if (err) {
        s_fail (self, "kafka refused to queue an event: %s",
                rd_kafka_err2str (err));
        goto failed;
    }
    self->outstanding++;
    return 0;

failed:
    if (delivery) {
        delivery->status = HGP_LOG_NOT_PERSISTED;
        snprintf (delivery->error, sizeof delivery->error, "%.127s",
                  self->error);
    }
    return -1;
}

int
hgp_eventlog_produce (hgp_eventlog_t *self, const hgp_event_t *event,
                      const char *key, size_t keylen, hgp_delivery_t *delivery)
{
    return s_produce (self, event, key, keylen, RD_KAFKA_PARTITION_UA,
                      delivery);
}

int
hgp_eventlog_produce_to (hgp_eventlog_t *self, const hgp_event_t *event,
                         int32_t partition, hgp_delivery_t *delivery)
{
    return s_produce (self, event, NULL, 0, partition, delivery);
}

int
hgp_eventlog_outstanding (hgp_eventlog_t *self)
{
    return self->outstanding;
}

int
hgp_eventlog_wait (hgp_eventlog_t *self, int timeout_ms)
{
    self->failed = 0;
    if (!self->producer)
        return 0;
    if (timeout_ms == 0) {
        rd_kafka_poll (self->producer, 0);
        return self->failed;
    }
    int64_t deadline = zclock_mono () + timeout_ms;
    while (self->outstanding > 0) {
        int64_t left = deadline - zclock_mono ();
        if (left <= 0)
            break;
        //  flush sends what is queued without lingering, and serves the
        //  delivery reports
        rd_kafka_flush (self->producer, (int) MIN (left, 100));
    }
    if (self->outstanding > 0) {
        zsys_warning ("%s: %d events unacknowledged by kafka after %d ms;"
                      " purging them", self->who, self->outstanding,
                      timeout_ms);
        rd_kafka_purge (self->producer, RD_KAFKA_PURGE_F_QUEUE
                                      | RD_KAFKA_PURGE_F_INFLIGHT);
        //  Purged messages get their reports on the next poll
        for (int i = 0; i < 50 && self->outstanding > 0; i++)
            rd_kafka_poll (self->producer, 10);
        if (self->outstanding > 0)
            zsys_error ("%s: %d purged events still without a report",
                        self->who, self->outstanding);
    }
    char errstr [256];
    rd_kafka_resp_err_t fatal = rd_kafka_fatal_error (self->producer, errstr,
                                                      sizeof errstr);
    if (fatal) {
        //  The idempotent producer cannot go on (e.g. sequence gaps): a
        //  new one starts a new producer id
        zsys_error ("%s: kafka producer failed for good (%s); starting a"
                    " new one", self->who, errstr);
        rd_kafka_purge (self->producer, RD_KAFKA_PURGE_F_QUEUE
                                      | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush (self->producer, 100);
        rd_kafka_topic_destroy (self->topic);
        rd_kafka_destroy (self->producer);
        self->producer = NULL;
        self->topic = NULL;
        self->outstanding = 0;
    }
    return self->failed;
}

int
hgp_eventlog_read (hgp_eventlog_t *self, int32_t partition, int64_t from,
                   int64_t to, hgp_eventlog_fn *fn, void *arg,
                   int64_t deadline)
{
    if (from >= to)
        return 0;
    if (s_reader (self))
        return -1;
    rd_kafka_topic_partition_list_t *list =
        rd_kafka_topic_partition_list_new (1);
    rd_kafka_topic_partition_list_add (list, self->topic_name,
                                       partition)->offset = from;
    rd_kafka_resp_err_t err = rd_kafka_assign (self->reader, list);
    rd_kafka_topic_partition_list_destroy (list);
    if (err)
        return s_fail (self, "cannot read %s [%d]: %s", self->topic_name,
                       partition, rd_kafka_err2str (err));
    int rc = 0;
    int64_t next = from;            //  next offset we expect
    while (next < to) {
        int64_t left = deadline - zclock_mono ();
        if (left <= 0) {
            rc = s_fail (self, "reading %s [%d] timed out at offset %lld of"
                         " %lld", self->topic_name, partition,
                         (long long) next, (long long) to);
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll (self->reader,
                                                        (int) MIN (left, 100));
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->offset < to) {
                rc = s_fail (self, "%s [%d] ends at %lld, before %lld",
                             self->topic_name, partition,
                             (long long) m->offset, (long long) to);
                rd_kafka_message_destroy (m);
                break;
            }
        }
        else
        if (m->err) {
            rc = s_fail (self, "reading %s [%d] at %lld: %s", self->topic_name,
                         partition, (long long) next,
                         rd_kafka_message_errstr (m));
            rd_kafka_message_destroy (m);
            break;
        }
        else
        if (m->partition == partition && m->offset >= next) {
            if (m->offset != next && next == from) {
                //  The first record is not the one we asked for: the log
                //  no longer holds it
                rc = s_fail (self, "%s [%d] starts at %lld, not %lld:"
                             " events were dropped", self->topic_name,
                             partition, (long long) m->offset,
                             (long long) from);
                rd_kafka_message_destroy (m);
                break;
            }
            next = m->offset + 1;
            if (m->offset < to) {
                hgp_event_t event;
                hgp_error_t error = { 0 };
                int decoded = hgp_event_decode (&event, m->payload, m->len,
                                                &error);
                if (fn (decoded == 0 ? &event : NULL, &error, partition,
                        m->offset, arg)) {
                    rc = s_fail (self, "reading %s [%d] stopped at %lld",
                                 self->topic_name, partition,
                                 (long long) m->offset);
                    rd_kafka_message_destroy (m);
                    break;
                }
            }
        }
        rd_kafka_message_destroy (m);
    }
    rd_kafka_assign (self->reader, NULL);
    return rc;
}
