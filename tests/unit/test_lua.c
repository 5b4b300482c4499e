/*  test_lua.c - the Lua scripts on their own, in a plain redis-server
 *
 *  Every script the build embeds (lib/hgp_lua.h, hgp_lua_scripts) must
 *  compile: Redis compiles a script at SCRIPT LOAD, so a syntax error in
 *  any .lua fails here, without the pytest stack. Then the request record
 *  as the three scripts that read it see it: counter_incr applies and
 *  replays, counter_prepare writes a promise only under a live lease,
 *  ledger_apply keeps a batch of promises with one INCRBY and its batch key (or
 *  writes nothing when the counter moved, or settles an ordinary group
 *  with final records), and every reader takes a kept promise as applied
 *  and one its batch does not keep as pending; analytics_state keeps or
 *  restarts its epoch; and analytics_merge, fed what hgp_sums added up,
 *  leaves every ranking, window, trending set and minute hash (and their
 *  expiries) as analytics_fold leaves them judging the same events one by
 *  one, and refuses a batch it must not merge.
 *
 *  The redis-server is our own, on a Unix socket in a fresh directory (no
 *  TCP port to choose), with persistence off; it is stopped with SIGTERM
 *  at the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <hiredis.h>
#include "hgp_lua.h"
#include "hgp_sums.h"
#include <inttypes.h>
#include <math.h>

#define S_CK    "hgp:c:3:res:hits"      /* a counter key                   */
#define S_RK    "hgp:r:req-1"           /* its request record              */
#define S_HEAD  S_CK " 5 "              /* "<ck> <delta> "                 */
#define S_ACTOR "actor-a"               /* a log id                        */
#define S_LEASE "hgp:lease:" S_ACTOR

typedef struct {
    pid_t pid;                  /* our redis-server                        */
    char dir [64];              /* its directory                           */
    char sock [96];             /* its Unix socket                         */
    redisContext *c;            /* connection to it                        */
} s_redis_t;

static s_redis_t s_redis;      /* the group's server (cmocka state)       */

/*  Replies of the running test, freed after it even when an assert failed
    (cmocka leaves a test by longjmp) */
#define S_REPLIES_MAX   32
static redisReply *s_replies [S_REPLIES_MAX];
static int s_nreplies;

static redisReply *
s_keep (redisReply *reply)
{
    assert_non_null (reply);
    if (s_nreplies == S_REPLIES_MAX)
    assert_true (s_nreplies < S_REPLIES_MAX);
    s_replies [s_nreplies++] = reply;
    return reply;
}

static void
s_start_server (s_redis_t *self)
{
    snprintf (self->dir, sizeof self->dir, "/tmp/hgp_test_lua.XXXXXX");
    assert_non_null (mkdtemp (self->dir));
    snprintf (self->sock, sizeof self->sock, "%s/redis.sock", self->dir);
    char log [96];
    snprintf (log, sizeof log, "%s/redis.log", self->dir);
    self->pid = fork ();
    assert_true (self->pid >= 0);
    if (self->pid == 0) {
        int fd = open (log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2 (fd, 1);
            dup2 (fd, 2);
        }
        execlp ("redis-server", "redis-server", "--port", "0",
                "--unixsocket", self->sock, "--dir", self->dir,
                "--save", "", "--appendonly", "no", (char *) NULL);
        _exit (127);
    }
}

static int
s_setup (void **state)
{
    s_start_server (&s_redis);
    //  Up to 10 s for the socket to answer PING
    for (int i = 0; i < 200 && !s_redis.c; i++) {
        redisContext *c = redisConnectUnix (s_redis.sock);
        redisReply *reply = c && !c->err ? redisCommand (c, "PING") : NULL;
        if (reply && reply->type == REDIS_REPLY_STATUS)
            s_redis.c = c;
        else
        if (c)
            redisFree (c);
        if (reply)
            freeReplyObject (reply);
        if (!s_redis.c)
            usleep (50 * 1000);
    }
    if (!s_redis.c)
        fprintf (stderr, "test_lua: redis-server did not start (see %s)\n",
                 s_redis.dir);
    *state = &s_redis;
    return s_redis.c ? 0 : -1;
}

static int
s_teardown (void **state)
{
    if (s_redis.c)
        redisFree (s_redis.c);
    if (s_redis.pid > 0) {
        kill (s_redis.pid, SIGTERM);
        int status;
        waitpid (s_redis.pid, &status, 0);
    }
    char path [128];
    snprintf (path, sizeof path, "%s/redis.log", s_redis.dir);
    unlink (path);
    unlink (s_redis.sock);
    rmdir (s_redis.dir);
    return 0;
}

//  Each test starts from an empty server with no scripts cached
static int
s_flush (void **state)
{
    s_keep (redisCommand (s_redis.c, "FLUSHALL"));
    s_keep (redisCommand (s_redis.c, "SCRIPT FLUSH"));
    return 0;
}

static int
s_free_replies (void **state)
{
    while (s_nreplies > 0)
        freeReplyObject (s_replies [--s_nreplies]);
    return 0;
}

//  EVAL source with numkeys keys then args, all in the NULL-ended list
static redisReply *
s_eval (const char *source, int numkeys, ...)
{
    const char *argv [32] = { "EVAL", source, NULL };
    char nk [12];
    snprintf (nk, sizeof nk, "%d", numkeys);
    argv [2] = nk;
    int argc = 3;
    va_list args;
    va_start (args, numkeys);
    const char *arg;
    while ((arg = va_arg (args, const char *)) != NULL) {
        assert_true (argc < 32);
        argv [argc++] = arg;
    }
    va_end (args);
    redisReply *reply = s_keep (redisCommandArgv (s_redis.c, argc, argv,
                                                  NULL));
    if (reply->type == REDIS_REPLY_ERROR)
        fprintf (stderr, "test_lua: EVAL: %s\n", reply->str);
    return reply;
}

//  reply is {code, text}
static void
s_assert_result (redisReply *reply, long long code, const char *text)
{
    assert_int_equal (reply->type, REDIS_REPLY_ARRAY);
    assert_int_equal (reply->elements, 2);
    assert_int_equal (reply->element [0]->type, REDIS_REPLY_INTEGER);
    assert_int_equal (reply->element [0]->integer, code);
    assert_int_equal (reply->element [1]->type, REDIS_REPLY_STRING);
    assert_string_equal (reply->element [1]->str, text);
}

//  The string at key, "" when absent
static void
s_assert_get (const char *key, const char *expected)
{
    redisReply *reply = s_keep (redisCommand (s_redis.c, "GET %s", key));
    assert_string_equal (reply->type == REDIS_REPLY_STRING ? reply->str : "",
                         expected);
}

static void
test_every_embedded_script_loads_into_a_plain_redis (void **state)
{
    int count = 0, failed = 0;
    for (const hgp_lua_script_t *s = hgp_lua_scripts; s->name; s++) {
        count++;
        assert_true (strlen (s->source) > 0);
        for (const hgp_lua_script_t *t = hgp_lua_scripts; t < s; t++)
            assert_string_not_equal (t->name, s->name);
        redisReply *reply = s_keep (redisCommand (s_redis.c, "SCRIPT LOAD %s",
                                                  s->source));
        if (reply->type == REDIS_REPLY_STRING && reply->len == 40)
            printf ("    %-20s %s  %zu bytes\n", s->name, reply->str,
                    strlen (s->source));
        else {
            fprintf (stderr, "test_lua: %s does not load: %s\n", s->file,
                     reply->type == REDIS_REPLY_ERROR ? reply->str : "?");
            failed++;
        }
    }
    printf ("    %d scripts, %d failed to load\n", count, failed);
    assert_int_equal (failed, 0);
    //  The eleven of hgp_lua.h: a .lua file gone from the tree fails here
    //  (a file without a declaration fails the build)
    assert_int_equal (count, 11);
}

static void
test_counter_incr_applies_once_then_replays (void **state)
{
    redisReply *reply = s_eval (hgp_lua_counter_incr, 2, S_CK, S_RK,
                                "60", "5", NULL);
    assert_int_equal (reply->elements, 1);
    s_assert_result (reply->element [0], 0, "5");
    s_assert_get (S_RK, S_HEAD "5");

    //  The same id again: replayed, nothing added
    reply = s_eval (hgp_lua_counter_incr, 2, S_CK, S_RK, "60", "5", NULL);
    s_assert_result (reply->element [0], 1, "5");

    //  The same id with another delta: refused, nothing added
    reply = s_eval (hgp_lua_counter_incr, 2, S_CK, S_RK, "60", "6", NULL);
    s_assert_result (reply->element [0], -1, "");
    s_assert_get (S_CK, "5");
}

//  counter_prepare for one increment of 5 on S_CK by S_ACTOR (the n-th
//  prepare is batch n)
static redisReply *
s_prepare (void)
{
    return s_eval (hgp_lua_counter_prepare, 4, "hgp:actors", S_LEASE,
                   S_RK, S_CK, S_ACTOR, "10000", "60", "1", "5", NULL);
}

//  reply is {{{code, text}...}, {value}, batch}
static void
s_assert_prepared (redisReply *reply, long long code, const char *text,
                   const char *value)
{
    assert_int_equal (reply->type, REDIS_REPLY_ARRAY);
    assert_int_equal (reply->elements, 3);
    assert_true (reply->element [0]->elements >= 1);
    s_assert_result (reply->element [0]->element [0], code, text);
    assert_int_equal (reply->element [1]->elements, 1);
    assert_string_equal (reply->element [1]->element [0]->str, value);
}

static void
test_counter_prepare_writes_a_promise_only_under_a_lease (void **state)
{
    redisReply *reply = s_prepare ();
    assert_int_equal (reply->type, REDIS_REPLY_INTEGER);
    assert_int_equal (reply->integer, -9);
    s_assert_get (S_RK, "");

    s_keep (redisCommand (s_redis.c, "SET %s 1 PX 10000", S_LEASE));
    reply = s_prepare ();
    s_assert_prepared (reply, 0, "5", "0");
    assert_string_equal (reply->element [2]->str, "1");
    s_assert_get (S_RK, S_HEAD "5?1");
    s_assert_get ("hgp:b:1", "p " S_ACTOR);

    //  Again in a later batch, the first never applied: promised again
    reply = s_prepare ();
    s_assert_prepared (reply, 6, "5", "0");
    s_assert_get (S_RK, S_HEAD "5?2");
    s_assert_get (S_CK, "");

    //  The same id twice in one batch: the second is the first's
    s_keep (redisCommand (s_redis.c, "DEL %s", S_RK));
    reply = s_eval (hgp_lua_counter_prepare, 5, "hgp:actors", S_LEASE,
                    S_RK, S_RK, S_CK, S_ACTOR, "10000", "60", "1", "5",
                    "1", "5", NULL);
    assert_int_equal (reply->element [0]->elements, 2);
    s_assert_result (reply->element [0]->element [0], 0, "5");
    s_assert_result (reply->element [0]->element [1], 3, "");

    //  Another live actor's promise is pending there: not ours to take
    s_keep (redisCommand (s_redis.c, "SET hgp:lease:other 1 PX 10000"));
    s_keep (redisCommand (s_redis.c, "SET hgp:b:90 %s", "p other"));
    s_keep (redisCommand (s_redis.c, "SET %s %s", S_RK, S_HEAD "5?90"));
    reply = s_prepare ();
    s_assert_prepared (reply, 2, "other", "0");
}

//  Own apply of batch 1: S_CK one fast group, its sum 5 from base
static redisReply *
s_apply_fast (const char *base, const char *held)
{
    if (held)
        return s_eval (hgp_lua_ledger_apply, 3, "hgp:actors",
                       "hgp:wm:" S_ACTOR, S_CK,
                       "60", S_ACTOR, "1", "0", "1", "1", "1", "5", base,
                       held, "0", "7", NULL);
    return s_eval (hgp_lua_ledger_apply, 3, "hgp:actors", "hgp:wm:" S_ACTOR,
                   S_CK, "60", S_ACTOR, "1", "0", "1", "1", "0", "5", base,
                   "0", "7", NULL);
}

//  Recovery (not own) applying the event at 0:7 again
static redisReply *
s_apply_again (void)
{
    return s_eval (hgp_lua_ledger_apply, 4, "hgp:actors", "hgp:wm:" S_ACTOR,
                   S_CK, S_RK, "60", S_ACTOR, "", "1", "", "0", "0",
                   "a", "5", S_HEAD, " 0:7", NULL);
}

static void
test_ledger_apply_keeps_a_batch_of_promises_with_one_incrby (void **state)
{
    s_keep (redisCommand (s_redis.c, "SET %s 1 PX 10000", S_LEASE));
    s_keep (redisCommand (s_redis.c, "HSET hgp:actors %s x", S_ACTOR));
    s_prepare ();

    //  The counter moved since the prepare read 0: nothing written
    s_keep (redisCommand (s_redis.c, "SET %s 3", S_CK));
    redisReply *reply = s_apply_fast ("0", NULL);
    assert_int_equal (reply->type, REDIS_REPLY_ARRAY);
    assert_int_equal (reply->element [0]->integer, -8);
    assert_int_equal (reply->element [1]->elements, 1);
    assert_int_equal (reply->element [1]->element [0]->integer, 1);
    s_assert_get (S_CK, "3");
    s_assert_get ("hgp:b:1", "p " S_ACTOR);
    s_keep (redisCommand (s_redis.c, "DEL %s", S_CK));

    //  Still at 0: one INCRBY, the record untouched, the batch kept
    reply = s_apply_fast ("0", NULL);
    assert_int_equal (reply->elements, 2);
    assert_int_equal (reply->element [0]->elements, 0);
    assert_int_equal (reply->element [1]->elements, 1);
    assert_int_equal (reply->element [1]->element [0]->element [0]->integer, 0);
    s_assert_get (S_CK, "5");
    s_assert_get (S_RK, S_HEAD "5?1");
    s_assert_get ("hgp:b:1", "k " S_ACTOR);
    reply = s_keep (redisCommand (s_redis.c, "HGET hgp:wm:%s 0", S_ACTOR));
    assert_string_equal (reply->str, "7");

    //  Every reader takes the kept promise as applied, with its value
    reply = s_eval (hgp_lua_counter_incr, 2, S_CK, S_RK, "60", "5", NULL);
    s_assert_result (reply->element [0], 1, "5");
    s_assert_prepared (s_prepare (), 1, "5", "5");
    reply = s_apply_again ();
    s_assert_result (reply->element [0], 1, "5");
    s_assert_get (S_CK, "5");
}

static void
test_a_promise_its_batch_does_not_keep_is_pending (void **state)
{
    s_keep (redisCommand (s_redis.c, "SET %s 1 PX 10000", S_LEASE));
    s_keep (redisCommand (s_redis.c, "HSET hgp:actors %s x", S_ACTOR));
    s_prepare ();
    //  The batch applies another key fast and holds S_CK (the log did not
    //  confirm its event): S_CK's promise is not kept
    redisReply *reply = s_apply_fast ("0", S_CK);
    assert_int_equal (reply->elements, 2);
    s_assert_get ("hgp:b:1", "k " S_ACTOR " " S_CK);
    reply = s_eval (hgp_lua_counter_incr, 2, S_CK, S_RK, "60", "5", NULL);
    s_assert_result (reply->element [0], 2, S_ACTOR);
    //  Recovery applies it from the log: once, with a final record
    s_keep (redisCommand (s_redis.c, "DEL %s", S_CK));
    reply = s_apply_again ();
    s_assert_result (reply->element [0], 0, "5");
    s_assert_get (S_RK, S_HEAD "5 0:7");
    reply = s_apply_again ();
    s_assert_result (reply->element [0], 1, "5");
}

static void
test_ledger_apply_settles_an_ordinary_group_once (void **state)
{
    s_keep (redisCommand (s_redis.c, "SET %s 1 PX 10000", S_LEASE));
    s_keep (redisCommand (s_redis.c, "HSET hgp:actors %s x", S_ACTOR));
    s_prepare ();
    //  Own apply of batch 1 with S_CK as an ordinary group of one event
    redisReply *reply = s_eval (hgp_lua_ledger_apply, 4, "hgp:actors",
                                "hgp:wm:" S_ACTOR, S_CK, S_RK,
                                "60", S_ACTOR, "1", "1", "1", "0", "1",
                                S_CK, "1", "a", "5", S_HEAD, " 0:7",
                                "0", "7", NULL);
    assert_int_equal (reply->type, REDIS_REPLY_ARRAY);
    assert_int_equal (reply->elements, 2);
    s_assert_result (reply->element [0]->element [0], 0, "5");
    s_assert_get (S_CK, "5");
    s_assert_get (S_RK, S_HEAD "5 0:7");
    reply = s_eval (hgp_lua_counter_incr, 2, S_CK, S_RK, "60", "5", NULL);
    s_assert_result (reply->element [0], 1, "5");
    reply = s_apply_again ();
    s_assert_result (reply->element [0], 1, "5");
    s_assert_get (S_CK, "5");
}

static void
test_analytics_state_keeps_its_epoch_for_the_same_log (void **state)
{
    redisReply *reply = s_eval (hgp_lua_analytics_state, 3, "hgp:a:log",
                                "hgp:a:off", "hgp:a:fences",
                                "cluster/topic", "1", NULL);
    s_assert_result (reply, 2, "cluster/topic 1");
    reply = s_eval (hgp_lua_analytics_state, 3, "hgp:a:log", "hgp:a:off",
                    "hgp:a:fences", "cluster/topic", "2", NULL);
    s_assert_result (reply, 0, "cluster/topic 1");
    reply = s_eval (hgp_lua_analytics_state, 3, "hgp:a:log", "hgp:a:off",
                    "hgp:a:fences", "other/topic", "3", NULL);
    s_assert_result (reply, 1, "other/topic 3");
}

/*  --------------------------------------------------------------------------
    analytics_merge against analytics_fold
*/

#define S_EVENTS    400
#define S_NOW       ((int64_t) 1800000000000)
static const hgp_sums_settings_t s_sums_settings = {
    { 60000, 600000 }, 10000, 160000, 1000, 60000
};

typedef struct {
    int32_t partition;
    int64_t offset;
    char type [8], resource [16];
    int64_t delta, ts;
    char user [8];              /* "" for an event without a user          */
} s_event_t;

//  Deterministic events: two types, 12 resources, deltas of both signs,
//  times over the last 400 s (so across windows, epochs and buckets, some
//  out of every window), on two partitions
static void
s_events (s_event_t *events, int count)
{
    uint32_t x = 12345;
    int64_t offsets [2] = { 10, 20 };
    for (int i = 0; i < count; i++) {
        x = x * 1103515245 + 12345;
        s_event_t *e = &events [i];
        e->partition = (int32_t) ((x >> 8) % 2);
        e->offset = offsets [e->partition]++;
        snprintf (e->type, sizeof e->type, "%s", (x >> 12) % 3 ? "likes" : "views");
        snprintf (e->resource, sizeof e->resource, "r:%u", (x >> 16) % 12);
        int64_t delta = (int64_t) ((x >> 20) % 15) - 5;
        e->delta = delta ? delta : 7;
        e->ts = S_NOW - (int64_t) ((x >> 4) % 400000);
        if ((x >> 24) % 4)
            snprintf (e->user, sizeof e->user, "u%u", (x >> 26) % 9);
    }
}

//  Run an EVAL of source with argv [3..] given; argv [0..2] are filled in
static redisReply *
s_eval_argv (const char *source, const char **argv, size_t *argvlen,
             size_t argc)
{
    argv [0] = "EVAL";
    argv [1] = source;
    argv [2] = "3";
    argvlen [0] = 4;
    argvlen [1] = strlen (source);
    argvlen [2] = 1;
    redisReply *reply = s_keep (redisCommandArgv (s_redis.c, (int) argc,
                                                  argv, argvlen));
    if (reply->type == REDIS_REPLY_ERROR)
        fprintf (stderr, "test_lua: EVAL: %s\n", reply->str);
    return reply;
}

static void
s_push (const char **argv, size_t *argvlen, size_t *argc, const char *arg)
{
    argv [*argc] = arg;
    argvlen [*argc] = strlen (arg);
    (*argc)++;
}

static int
s_text_compare (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

//  Everything the analytics keys hold, as one text: keys sorted, set
//  scores to 12 significant digits (trending sums are doubles summed in
//  another order), hash fields sorted, every expiry
static char *
s_snapshot (void)
{
    redisReply *keys = redisCommand (s_redis.c, "KEYS hgp:a:*");
    assert_non_null (keys);
    size_t n = keys->elements;
    char **names = calloc (n + 1, sizeof (char *));
    for (size_t i = 0; i < n; i++)
        names [i] = strdup (keys->element [i]->str);
    freeReplyObject (keys);
    qsort (names, n, sizeof (char *), s_text_compare);
    size_t size = 1 << 20, used = 0;
    char *text = calloc (1, size);
    for (size_t i = 0; i < n; i++) {
        redisReply *type = redisCommand (s_redis.c, "TYPE %s", names [i]);
        redisReply *pexp = redisCommand (s_redis.c, "PEXPIRETIME %s", names [i]);
        used += (size_t) snprintf (text + used, size - used, "%s %s %lld:",
                                   names [i], type->str, pexp->integer);
        if (strcmp (type->str, "string") == 0) {
            //  a HyperLogLog of users (what it counts), or a plain string
            bool users = strncmp (names [i], "hgp:a:u:", 8) == 0;
            redisReply *value = redisCommand (s_redis.c, users ? "PFCOUNT %s"
                                              : "GET %s", names [i]);
            if (users)
                used += (size_t) snprintf (text + used, size - used,
                                           " %lld\n", value->integer);
            else
                used += (size_t) snprintf (text + used, size - used,
                                           " %s\n", value->str);
            freeReplyObject (value);
            freeReplyObject (type);
            freeReplyObject (pexp);
            free (names [i]);
            continue;
        }
        bool zset = strcmp (type->str, "zset") == 0;
        redisReply *all = zset
            ? redisCommand (s_redis.c, "ZRANGE %s 0 -1 WITHSCORES", names [i])
            : redisCommand (s_redis.c, "HGETALL %s", names [i]);
        //  members or fields sorted: a hash's order is not its content
        size_t m = all->elements / 2;
        char **pairs = calloc (m + 1, sizeof (char *));
        for (size_t j = 0; j < m; j++) {
            char pair [128];
            snprintf (pair, sizeof pair, "%s=%.12g", all->element [2 * j]->str,
                      strtod (all->element [2 * j + 1]->str, NULL));
            pairs [j] = strdup (pair);
        }
        qsort (pairs, m, sizeof (char *), s_text_compare);
        for (size_t j = 0; j < m; j++) {
            used += (size_t) snprintf (text + used, size - used, " %s", pairs [j]);
            free (pairs [j]);
        }
        used += (size_t) snprintf (text + used, size - used, "\n");
        free (pairs);
        freeReplyObject (all);
        freeReplyObject (type);
        freeReplyObject (pexp);
        free (names [i]);
        assert_true (used < size - 256);
    }
    free (names);
    return text;
}

//  The events folded event by event (analytics_fold.lua)
static void
s_fold_events (const s_event_t *events, int count)
{
    size_t max = 20 + 8 * (size_t) count, argc = 3;
    const char **argv = calloc (max, sizeof (char *));
    size_t *argvlen = calloc (max, sizeof (size_t));
    char (*numbers) [24] = calloc (20 + 4 * (size_t) count, 24);
    size_t used = 0;
#define S_NUM(n) (snprintf (numbers [used], 24, "%" PRId64, (int64_t) (n)), \
                  s_push (argv, argvlen, &argc, numbers [used++]))
    const hgp_sums_settings_t *s = &s_sums_settings;
    s_push (argv, argvlen, &argc, "hgp:a:off");
    s_push (argv, argvlen, &argc, "hgp:a:log");
    s_push (argv, argvlen, &argc, "hgp:a:fences");
    S_NUM (S_NOW);
    S_NUM (s->window [0]);
    S_NUM (s->window [1]);
    S_NUM (s->half_life);
    S_NUM (s->epoch);
    S_NUM (s->bucket);
    S_NUM (s->span);
    s_push (argv, argvlen, &argc, "state-1");
    for (int i = 0; i < count; i++) {
        S_NUM (events [i].partition);
        S_NUM (events [i].offset);
        s_push (argv, argvlen, &argc, events [i].type);
        s_push (argv, argvlen, &argc, events [i].resource);
        S_NUM (events [i].delta);
        S_NUM (events [i].ts);
        s_push (argv, argvlen, &argc, "actor-a");
        s_push (argv, argvlen, &argc, events [i].user);
    }
#undef S_NUM
    redisReply *reply = s_eval_argv (hgp_lua_analytics_fold, argv, argvlen, argc);
    assert_int_equal (reply->type, REDIS_REPLY_ARRAY);
    assert_int_equal (reply->element [0]->integer, count);
    free (argv);
    free (argvlen);
    free (numbers);
}

//  The events summed by hgp_sums and merged (analytics_merge.lua); the
//  reply's first element
static long long
s_merge_events (const s_event_t *events, int count)
{
    hgp_sums_t *sums = hgp_sums_new (&s_sums_settings);
    hgp_sums_reset (sums, S_NOW);
    int64_t first [2] = { -1, -1 }, last [2] = { -1, -1 };
    for (int i = 0; i < count; i++) {
        assert_int_equal (hgp_sums_add (sums, events [i].type,
                                        events [i].resource, events [i].delta,
                                        events [i].ts, events [i].user), 0);
        int32_t p = events [i].partition;
        if (first [p] < 0)
            first [p] = events [i].offset;
        last [p] = events [i].offset;
    }
    size_t *targetlen, ntargets;
    const char **targets = hgp_sums_args (sums, &targetlen, &ntargets);
    size_t max = 32 + ntargets, argc = 3;
    const char **argv = calloc (max, sizeof (char *));
    size_t *argvlen = calloc (max, sizeof (size_t));
    char numbers [16][24];
    size_t used = 0;
#define S_NUM(n) (snprintf (numbers [used], 24, "%" PRId64, (int64_t) (n)), \
                  s_push (argv, argvlen, &argc, numbers [used++]))
    s_push (argv, argvlen, &argc, "hgp:a:off");
    s_push (argv, argvlen, &argc, "hgp:a:log");
    s_push (argv, argvlen, &argc, "hgp:a:fences");
    s_push (argv, argvlen, &argc, "state-1");
    S_NUM (S_NOW);
    S_NUM (s_sums_settings.bucket);
    S_NUM (s_sums_settings.span);
    S_NUM (count);
    S_NUM (2);
    for (int p = 0; p < 2; p++) {
        S_NUM (p);
        S_NUM (first [p]);
        S_NUM (last [p]);
    }
    S_NUM (2);
    s_push (argv, argvlen, &argc, "0 actor-a");
    s_push (argv, argvlen, &argc, "1 actor-a");
#undef S_NUM
    memcpy (argv + argc, targets, ntargets * sizeof (char *));
    memcpy (argvlen + argc, targetlen, ntargets * sizeof (size_t));
    argc += ntargets;
    redisReply *reply = s_eval_argv (hgp_lua_analytics_merge, argv, argvlen,
                                     argc);
    free (argv);
    free (argvlen);
    hgp_sums_destroy (&sums);
    assert_int_equal (reply->type, REDIS_REPLY_ARRAY);
    return reply->element [0]->integer;
}

static void
test_analytics_merge_ends_where_the_fold_ends (void **state)
{
    //  Three folds each way: the second finds what the first left (sums
    //  to add to, zeros to remove), the third is the first's events again
    //  at later offsets (every minute field there already)
    s_event_t *events = calloc (S_EVENTS + S_EVENTS / 2, sizeof (s_event_t));
    s_events (events, S_EVENTS);
    for (int i = 0; i < S_EVENTS / 2; i++) {
        events [S_EVENTS + i] = events [i];
        events [S_EVENTS + i].offset += 1000;
    }
    s_keep (redisCommand (s_redis.c, "SET hgp:a:log state-1"));
    for (int fold = 0; fold < 3; fold++)
        s_fold_events (events + fold * S_EVENTS / 2, S_EVENTS / 2);
    char *judged = s_snapshot ();
    s_keep (redisCommand (s_redis.c, "FLUSHALL"));
    s_keep (redisCommand (s_redis.c, "SET hgp:a:log state-1"));
    for (int fold = 0; fold < 3; fold++)
        assert_int_equal (s_merge_events (events + fold * S_EVENTS / 2,
                                          S_EVENTS / 2), S_EVENTS / 2);
    char *merged = s_snapshot ();
    //  Sets of both types, windows, trending and minute hashes
    assert_non_null (strstr (merged, "hgp:a:w:1h:likes:"));
    assert_non_null (strstr (merged, "hgp:a:w:24h:views:"));
    assert_non_null (strstr (merged, "hgp:a:tr:likes:"));
    assert_non_null (strstr (merged, "hgp:a:m:3:r:1:views hash"));
    //  ... and the users of a counter (nine users in all, here all nine)
    assert_non_null (strstr (merged, "hgp:a:u:3:r:2:likes string -1: 9\n"));
    assert_string_equal (merged, judged);

    //  The same batch again: its offsets are applied, nothing changes
    assert_int_equal (s_merge_events (events, S_EVENTS / 2), -9);
    //  A producer fenced in a partition, offsets not yet applied: not
    //  merged either
    redisReply *offsets = s_keep (redisCommand (s_redis.c,
                                                "HMGET hgp:a:off 0 1"));
    assert_int_equal (offsets->elements, 2);
    s_keep (redisCommand (s_redis.c, "HDEL hgp:a:off 0 1"));
    s_keep (redisCommand (s_redis.c, "HSET hgp:a:fences %s 5", "1 actor-a"));
    assert_int_equal (s_merge_events (events, S_EVENTS / 2), -9);
    s_keep (redisCommand (s_redis.c, "DEL hgp:a:fences"));
    s_keep (redisCommand (s_redis.c, "HSET hgp:a:off 0 %s 1 %s",
                          offsets->element [0]->str,
                          offsets->element [1]->str));
    char *after = s_snapshot ();
    assert_string_equal (after, merged);
    //  A state that is not ours: nothing
    s_keep (redisCommand (s_redis.c, "SET hgp:a:log state-2"));
    assert_int_equal (s_merge_events (events, 1), -1);
    //  A delta past 2^39 is not summed here
    hgp_sums_t *sums = hgp_sums_new (&s_sums_settings);
    hgp_sums_reset (sums, S_NOW);
    assert_int_equal (hgp_sums_add (sums, "likes", "r", HGP_SUMS_DELTA_MAX,
                                    S_NOW, "u1"), -1);
    assert_int_equal (hgp_sums_targets (sums), 0);
    hgp_sums_destroy (&sums);
    free (after);
    free (judged);
    free (merged);
    free (events);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (
            test_every_embedded_script_loads_into_a_plain_redis, s_flush,
            s_free_replies),
        cmocka_unit_test_setup_teardown (
            test_counter_incr_applies_once_then_replays, s_flush,
            s_free_replies),
        cmocka_unit_test_setup_teardown (
            test_counter_prepare_writes_a_promise_only_under_a_lease,
            s_flush, s_free_replies),
        cmocka_unit_test_setup_teardown (
            test_ledger_apply_keeps_a_batch_of_promises_with_one_incrby,
            s_flush, s_free_replies),
        cmocka_unit_test_setup_teardown (
            test_a_promise_its_batch_does_not_keep_is_pending, s_flush,
            s_free_replies),
        cmocka_unit_test_setup_teardown (
            test_ledger_apply_settles_an_ordinary_group_once, s_flush,
            s_free_replies),
        cmocka_unit_test_setup_teardown (
            test_analytics_state_keeps_its_epoch_for_the_same_log, s_flush,
            s_free_replies),
        cmocka_unit_test_setup_teardown (
            test_analytics_merge_ends_where_the_fold_ends, s_flush,
            s_free_replies),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}
