/*  hgp_replay.c - `hgp replay`: the counters rebuilt from the event log
 *
 *  See hgp_replay.h. Keys are found with SCAN, never KEYS, so a big
 *  Redis is not blocked, and deleted with UNLINK, which frees them off
 *  the main thread. The check for existing counters stops at the first
 *  one found.
 */
#include "hgp_replay.h"
#include "hgp_eventlog.h"
#include "hgp_redis.h"
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _hgp_replay_t {
    hgp_redis_t *redis;         /* the counters' Redis                      */
    hgp_eventlog_t *log;        /* the event log, read from the start       */
    hgp_ledger_t *ledger;       /* applies events as the counters do        */
};

hgp_replay_t *
hgp_replay_new (hgp_config_t *config, char **error_p)
{
    assert (config && error_p);
    *error_p = NULL;
    int64_t ttl = hgp_config_int (config, "counter/dedup_ttl", 600, 1,
                                  INT32_MAX);
    hgp_redis_t *redis = hgp_redis_new (config, "replay", error_p);
    hgp_eventlog_t *log = *error_p ? NULL
                        : hgp_eventlog_new (config, "replay", error_p);
    if (*error_p) {
        hgp_redis_destroy (&redis);
        return NULL;
    }
    hgp_replay_t *self = (hgp_replay_t *) calloc (1, sizeof (hgp_replay_t));
    assert (self);
    self->redis = redis;
    self->log = log;
    self->ledger = hgp_ledger_new (redis, "replay", ttl, 1000);
    return self;
}

void
hgp_replay_destroy (hgp_replay_t **self_p)
{
    assert (self_p);
    hgp_replay_t *self = *self_p;
    if (!self)
        return;
    hgp_ledger_destroy (&self->ledger);
    hgp_eventlog_destroy (&self->log);
    hgp_redis_destroy (&self->redis);
    free (self);
    *self_p = NULL;
}

static void
s_progress (int32_t partition, const hgp_ledger_stats_t *stats)
{
    fprintf (stderr, "replay: partition %d done; %" PRIu64 " events read"
             " so far, %" PRIu64 " applied\n", partition, stats->read,
             stats->applied);
}

//  UNLINK the keys of one SCAN page; 0 or -1
static int
s_unlink (hgp_redis_t *redis, redisReply *keys)
{
    char reason [256];
    const char **argv = (const char **) calloc (keys->elements + 1,
                                                sizeof (char *));
    assert (argv);
    argv [0] = "UNLINK";
    for (size_t i = 0; i < keys->elements; i++)
        argv [i + 1] = keys->element [i]->str;
    redisReply *gone = hgp_redis_command (redis, (int) keys->elements + 1,
                                          argv, NULL, reason, sizeof reason);
    free (argv);
    if (!gone) {
        fprintf (stderr, "hgp: redis: %s\n", reason);
        return -1;
    }
    freeReplyObject (gone);
    return 0;
}

//  Delete every key matching pattern (only_count: stop at the first one
//  and delete nothing); how many, or -1
static long long
s_delete_keys (hgp_redis_t *redis, const char *pattern, bool only_count)
{
    char cursor [32] = "0", reason [256];
    long long found = 0;
    do {
        const char *scan [] = { "SCAN", cursor, "MATCH", pattern, "COUNT",
                                "1000" };
        redisReply *reply = hgp_redis_command (redis, 6, scan, NULL, reason,
                                               sizeof reason);
        if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
            fprintf (stderr, "hgp: redis: %s\n", reply ? "odd SCAN" : reason);
            if (reply)
                freeReplyObject (reply);
            return -1;
        }
        snprintf (cursor, sizeof cursor, "%s", reply->element [0]->str);
        redisReply *keys = reply->element [1];
        found += (long long) keys->elements;
        int rc = !only_count && keys->elements ? s_unlink (redis, keys) : 0;
        freeReplyObject (reply);
        if (rc)
            return -1;
        if (only_count && found)
            break;
    } while (strcmp (cursor, "0") != 0);
    return found;
}

//  Make Redis ready for the replay: no counters in it, or none left with
//  reset. 0, or -1 with the reason in message.
static int
s_prepare (hgp_replay_t *self, bool reset, char *message, size_t size)
{
    const char *address = hgp_redis_address (self->redis);
    if (!hgp_redis_ready (self->redis, true)) {
        snprintf (message, size, "cannot reach redis at %s", address);
        return -1;
    }
    long long existing = s_delete_keys (self->redis, "hgp:c:*", !reset);
    if (existing < 0) {
        snprintf (message, size, "cannot read redis");
        return -1;
    }
    if (existing && !reset) {
        snprintf (message, size, "redis at %s already holds"
                  " counters (hgp:c:*); replaying onto them would count"
                  " events again whose request records have expired. Flush"
                  " them first, or pass --reset to delete the counters and"
                  " request records (hgp:c:*, hgp:r:*) before replaying",
                  address);
        return -1;
    }
    if (reset && s_delete_keys (self->redis, "hgp:r:*", false) < 0) {
        snprintf (message, size, "cannot delete request records");
        return -1;
    }
    return 0;
}

int
hgp_replay_run (hgp_replay_t *self, bool reset, bool verbose,
                hgp_ledger_stats_t *stats, char *message, size_t size)
{
    assert (self && stats && message && size);
    memset (stats, 0, sizeof *stats);
    message [0] = 0;
    if (s_prepare (self, reset, message, size))
        return -1;
    if (verbose)
        fprintf (stderr, "replay: reading %s at kafka %s into redis at %s\n",
                 hgp_eventlog_topic (self->log),
                 hgp_eventlog_brokers (self->log),
                 hgp_redis_address (self->redis));
    return hgp_ledger_replay (self->ledger, self->log, stats,
                              verbose ? s_progress : NULL, message, size);
}
