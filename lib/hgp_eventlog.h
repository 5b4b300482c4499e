/*  hgp_eventlog.h - the event log: Kafka topic kafka/topic (counter_events)
 *
 *  Every applied increment is one record: key = the counter's Redis key
 *  (so one counter's events stay in order on one partition), value = the
 *  event as msgpack (hgp_event_encode, PROTOCOL.md section 10), header
 *  "hgp" = "HGPE01", timestamp = the event's ts. A fence (hgp_event_t with
 *  fence set, written by recovery, see hgp_ledger.h) has no key and goes
 *  to one partition (hgp_eventlog_produce_to).
 *
 *  Two halves, each created on first use:
 *  - the producer (counter actors): librdkafka's idempotent producer
 *    (acks=all, no reordering or duplicates from its own retries).
 *    hgp_eventlog_produce queues events of a batch, hgp_eventlog_wait
 *    blocks until each one has a definite outcome: persisted (partition and
 *    offset known), not persisted (surely not in the log), or unknown (may
 *    be in the log). It never leaves an event outstanding: at its deadline
 *    it purges what is left, which turns queued events into "not persisted"
 *    and in-flight ones into "unknown".
 *  - the reader (recovery, `hgp replay`): reads one partition from an
 *    offset to an end offset, without a consumer group.
 *
 *  The analytics actor's consumer group is its own business; it takes the
 *  settings from here (hgp_eventlog_brokers, hgp_eventlog_topic).
 *
 *  Like a socket, an hgp_eventlog_t belongs to one thread.
 */
#ifndef HGP_EVENTLOG_H_INCLUDED
#define HGP_EVENTLOG_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>
#include "hgp_codec.h"
#include "hgp_config.h"

typedef struct _hgp_eventlog_t hgp_eventlog_t;

typedef enum {
    HGP_LOG_PENDING = 0,        /* queued, no outcome yet                  */
    HGP_LOG_PERSISTED,          /* in the log at partition/offset          */
    HGP_LOG_NOT_PERSISTED,      /* surely not in the log                   */
    HGP_LOG_UNKNOWN             /* may or may not be in the log            */
} hgp_log_status_t;

/*  The outcome of one produced event; the caller owns it and must keep it
    in place until hgp_eventlog_wait returned */
typedef struct {
    hgp_log_status_t status;    /* see above                               */
    int32_t partition;          /* when persisted                          */
    int64_t offset;             /* when persisted                          */
    char error [128];           /* why, when not persisted or unknown      */
} hgp_delivery_t;

/*  Called by hgp_eventlog_read for each record: event is NULL (and error
    says why) when the value does not decode. Return 0 to go on, -1 to
    stop the read (which then returns -1). */
typedef int (hgp_eventlog_fn) (const hgp_event_t *event,
                               const hgp_error_t *error, int32_t partition,
                               int64_t offset, void *arg);

/*  Read kafka/brokers, kafka/topic, kafka/timeout. NULL when a setting is
    bad; then *error_p (if not NULL) says why. Connects nothing yet. */
hgp_eventlog_t *hgp_eventlog_new (hgp_config_t *config, const char *who,
                                  char **error_p);

/*  Put the security settings of the config (kafka/security_protocol,
    sasl_mechanism, sasl_username, sasl_password, ssl_ca_location,
    ssl_certificate_location, ssl_key_location, ssl_key_password; checked
    by hgp_eventlog_new) on conf, for a Kafka client made elsewhere (the
    analytics consumer). Every hgp Kafka client uses them. 0 or -1. */
typedef struct rd_kafka_conf_s rd_kafka_conf_t;
int hgp_eventlog_conf_security (hgp_eventlog_t *self, rd_kafka_conf_t *conf);
void hgp_eventlog_destroy (hgp_eventlog_t **self_p);

const char *hgp_eventlog_brokers (hgp_eventlog_t *self);
const char *hgp_eventlog_topic (hgp_eventlog_t *self);
/*  kafka/timeout: ms for a produce to be acknowledged, and for metadata */
int64_t hgp_eventlog_timeout (hgp_eventlog_t *self);

/*  The last error any call below reported, for messages */
const char *hgp_eventlog_error (hgp_eventlog_t *self);

/*  Partitions of the topic, asked of the cluster (cached once known).
    -1 when the cluster cannot be reached within timeout_ms. */
int hgp_eventlog_partitions (hgp_eventlog_t *self, int timeout_ms);

/*  First offset still in the log and the next offset to be written, for
    one partition. 0, or -1 when the cluster did not answer in time. */
int hgp_eventlog_offsets (hgp_eventlog_t *self, int32_t partition,
                          int64_t *low, int64_t *high, int timeout_ms);

/*  Queue event under key (keylen bytes). 0 when queued, its outcome to
    come in *delivery; -1 when it was not queued (delivery says why, status
    NOT_PERSISTED). */
int hgp_eventlog_produce (hgp_eventlog_t *self, const hgp_event_t *event,
                          const char *key, size_t keylen,
                          hgp_delivery_t *delivery);

/*  Queue event (a fence, PROTOCOL.md section 10) to one partition,
    without a key; otherwise as hgp_eventlog_produce */
int hgp_eventlog_produce_to (hgp_eventlog_t *self, const hgp_event_t *event,
                             int32_t partition, hgp_delivery_t *delivery);
/*  Wait until every queued event has its outcome, at most timeout_ms; then
    purge the rest (see the top). Returns how many events ended other than
    persisted. With timeout_ms 0 it only collects outcomes already known,
    and purges nothing (fire-and-forget: deliveries may stay pending, so
    their hgp_delivery_t must then live as long as the log). */
int hgp_eventlog_wait (hgp_eventlog_t *self, int timeout_ms);

/*  Events queued whose outcome is not known yet */
int hgp_eventlog_outstanding (hgp_eventlog_t *self);

/*  Read partition from offset from up to (not including) offset to,
    calling fn for each record, until deadline (zclock_mono ms). 0 when
    all were read, -1 on error, deadline or fn's -1. */
int hgp_eventlog_read (hgp_eventlog_t *self, int32_t partition, int64_t from,
                       int64_t to, hgp_eventlog_fn *fn, void *arg,
                       int64_t deadline);

#endif
