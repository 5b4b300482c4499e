/*  hgp_ledger.c - applying the event log to the counters (see .h)
 *
 *  Invariants, and why they hold:
 *
 *  - An event is applied at most once. The apply script reads the request
 *    record first and adds nothing when it says "applied"; INCRBY and the
 *    record are written by one script, so Redis has both or neither.
 *    Records live counter/dedup_ttl seconds; beyond that, watermarks keep
 *    recovery from reading old events at all (below).
 *  - An event in the log is applied at least once, even when the actor
 *    that produced it dies first. An actor's watermark only moves (inside
 *    the script that applied the events) past events that were applied,
 *    or that can never be (overflow); it does not move at all when Redis
 *    refused part of a batch. So everything of that actor above its
 *    watermark is found by reading the log from there, and applying an
 *    event found there twice is harmless (its record).
 *  - Recovery and the actor itself never run at once under one id: an
 *    actor recovers others only once their lease is gone, and an actor
 *    whose lease is gone stops producing under that id (hgp_counter.c).
 *    Leases are kept by the actor (hgp_ledger_renew) and expire by
 *    themselves when it dies or stalls.
 *
 *  The scripts (ledger_*.lua, each with its contract) build no keys they
 *  were not given except the leases and watermark keys of other actors
 *  and the keys of the batches whose promises they read (hgp:b:<batch>),
 *  which is fine for one Redis server (not a cluster: there it would need
 *  hash tags).
 */
#include "hgp_ledger.h"
#include "hgp_lua.h"
#include <czmq.h>
#include <inttypes.h>

#define S_REGISTRY      "hgp:actors"
#define S_IDENTITIES    "hgp:ids"           /* every log id ever registered  */
#define S_HORIZON       "hgp:ids:horizon"   /* where hgp:ids began, per part */
#define S_VOUCH_CACHE   10000       /* identities remembered by a reader   */
#define S_HORIZON_MS    1000        /* between looks for an unborn horizon */
#define S_BATCH         512         /* events per apply round trip        */
#define S_LOCK_MS       60000       /* a recovery lock outlives a recovery */
#define S_HEAD_MAX      (HGP_KEYSPACE_COUNTER_MAX + 26)   /* "<ck> <delta> " */

struct _hgp_ledger_t {
    hgp_redis_t *redis;         /* not owned                               */
    char *who;                  /* owner, for logs                         */
    char ttl [24];              /* record TTL, decimal seconds             */
    char lease_ms [24];         /* lease life, decimal ms                  */
    int apply;                  /* script handles on redis: ledger_*.lua   */
    int register_;
    int advance;
    int forget;
    int leave;
    int fence;
    hgp_args_t *args;           /* one EVALSHA's arguments                 */
    //  One hgp_ledger_apply
    char (*heads) [S_HEAD_MAX]; /* per item: "<counter key> <delta> "     */
    char (*tails) [32];         /* per item: " <partition>:<offset>"       */
    size_t *order;              /* items in the order they are sent        */
    size_t *group_of;           /* item -> its group (own: one per key)    */
    size_t *group_size;         /* events per group                        */
    size_t *group_first;        /* a group's first item                    */
    size_t *group_fill;         /* grouping: items placed per group        */
    size_t *group_at;           /* where a group starts in order           */
    bool *group_fast;           /* own: all the group's items are fast     */
    int64_t *marks;             /* per partition: highest offset to apply  */
    int32_t *marked;            /* partitions in marks, in order found     */
    zhashx_t *groups;           /* own: counter key -> group index + 1     */
    //  What hgp_ledger_vouch learnt
    zhashx_t *identities;       /* log id -> 1 registered, 2 never         */
    int64_t *horizon;           /* per partition: where hgp:ids began, -1
                                   not born yet                            */
    int64_t *horizon_at;        /* when an unborn horizon is looked at next */
    bool told_old;              /* logged that old records are trusted     */
};

static int
s_fail (char *reason, size_t size, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
s_fail (char *reason, size_t size, const char *format, ...)
{
    if (reason && size) {
        va_list args;
        va_start (args, format);
        vsnprintf (reason, size, format, args);
        va_end (args);
    }
    return -1;
}

void
hgp_ledger_item_event (hgp_ledger_item_t *item, const hgp_event_t *event,
                       int32_t partition, int64_t offset)
{
    memset (item, 0, sizeof *item);
    hgp_keyspace_counter (&event->key, item->counter_key,
                          sizeof item->counter_key);
    hgp_keyspace_record (event->id, item->record_key, sizeof item->record_key);
    snprintf (item->delta, sizeof item->delta, "%" PRId64, event->delta);
    item->partition = partition;
    item->offset = offset;
}

hgp_ledger_t *
hgp_ledger_new (hgp_redis_t *redis, const char *who, int64_t dedup_ttl,
                int64_t lease_ms)
{
    hgp_ledger_t *self = (hgp_ledger_t *) zmalloc (sizeof (hgp_ledger_t));
    assert (self);
    self->redis = redis;
    self->who = strdup (who);
    snprintf (self->ttl, sizeof self->ttl, "%" PRId64, dedup_ttl);
    snprintf (self->lease_ms, sizeof self->lease_ms, "%" PRId64, lease_ms);
    self->apply = hgp_redis_script (redis, hgp_lua_ledger_apply);
    self->register_ = hgp_redis_script (redis, hgp_lua_ledger_register);
    self->advance = hgp_redis_script (redis, hgp_lua_ledger_advance);
    self->forget = hgp_redis_script (redis, hgp_lua_ledger_forget);
    self->leave = hgp_redis_script (redis, hgp_lua_ledger_leave);
    self->fence = hgp_redis_script (redis, hgp_lua_ledger_fence);
    //  The biggest EVALSHA: the apply script over HGP_LEDGER_BATCH_MAX
    //  items (3 + 2 keys + a key per group and per item + 4 + a size per
    //  group + 4 per item + 2 per partition: 9 + 10n at most), or
    //  register over as many partitions (3 + 6 + 2 per partition)
    self->args = hgp_args_new ();
    size_t n = HGP_LEDGER_BATCH_MAX;
    self->heads = calloc (n, S_HEAD_MAX);
    self->tails = calloc (n, 32);
    self->order = (size_t *) calloc (n, sizeof (size_t));
    self->group_of = (size_t *) calloc (n, sizeof (size_t));
    self->group_size = (size_t *) calloc (n, sizeof (size_t));
    self->group_first = (size_t *) calloc (n, sizeof (size_t));
    self->group_fill = (size_t *) calloc (n, sizeof (size_t));
    self->group_at = (size_t *) calloc (n, sizeof (size_t));
    self->group_fast = (bool *) calloc (n, sizeof (bool));
    self->marks = (int64_t *) calloc (n, sizeof (int64_t));
    self->marked = (int32_t *) calloc (n, sizeof (int32_t));
    self->groups = zhashx_new ();
    assert (self->heads && self->tails && self->order && self->group_of
            && self->group_size && self->group_first && self->group_fill
            && self->group_at && self->group_fast
            && self->marks && self->marked && self->groups);
    self->identities = zhashx_new ();
    self->horizon = (int64_t *) calloc (HGP_LEDGER_BATCH_MAX, sizeof (int64_t));
    self->horizon_at = (int64_t *) calloc (HGP_LEDGER_BATCH_MAX,
                                           sizeof (int64_t));
    assert (self->identities
            && self->horizon && self->horizon_at);
    for (size_t p = 0; p < HGP_LEDGER_BATCH_MAX; p++)
        self->horizon [p] = -1;
    return self;
}

void
hgp_ledger_destroy (hgp_ledger_t **self_p)
{
    assert (self_p);
    hgp_ledger_t *self = *self_p;
    if (self) {
        free (self->who);
        hgp_args_destroy (&self->args);
        free (self->heads);
        free (self->tails);
        free (self->order);
        free (self->group_of);
        free (self->group_size);
        free (self->group_first);
        free (self->group_fill);
        free (self->group_at);
        free (self->group_fast);
        free (self->marks);
        free (self->marked);
        zhashx_destroy (&self->groups);
        zhashx_destroy (&self->identities);
        free (self->horizon);
        free (self->horizon_at);
        free (self);
        *self_p = NULL;
    }
}

const char *
hgp_ledger_ttl (hgp_ledger_t *self)
{
    return self->ttl;
}

/*  The most arguments of one EVALSHA after its first three: the apply
    of a full batch */
#define S_ARGS_MAX      (13 + 11 * (size_t) HGP_LEDGER_BATCH_MAX)

/*  EVALSHA script with the arguments in self->args, numkeys of them keys.
    The reply (caller frees), or NULL: *definite tells whether the script
    surely did not run (hgp_redis_eval). */
static redisReply *
s_evalsha (hgp_ledger_t *self, int script, int numkeys, bool *definite,
           char *reason, size_t size)
{
    hgp_args_set_int (self->args, 2, numkeys);
    return hgp_redis_eval (self->redis, script, self->args, definite, reason,
                           size);
}

/*  The order items are sent in. Own: grouped by counter key, groups in
    order of first appearance and events in batch order within each (the
    order the values were predicted in); otherwise every item its own
    group, in log order. Fills order, group_first, group_size; returns the
    number of groups. */
static size_t
s_group (hgp_ledger_t *self, bool own, const hgp_ledger_item_t *items,
         size_t count)
{
    if (!own) {
        for (size_t i = 0; i < count; i++) {
            self->order [i] = i;
            self->group_first [i] = i;
            self->group_size [i] = 1;
        }
        return count;
    }
    zhashx_purge (self->groups);
    size_t ngroups = 0;
    for (size_t i = 0; i < count; i++) {
        size_t g = (size_t) zhashx_lookup (self->groups, items [i].counter_key);
        if (g == 0) {
            g = ++ngroups;
            zhashx_insert (self->groups, items [i].counter_key, (void *) g);
            self->group_first [g - 1] = i;
            self->group_size [g - 1] = 0;
        }
        self->group_of [i] = g - 1;
        self->group_size [g - 1]++;
    }
    //  group_fill: where the next item of each group goes
    size_t at = 0;
    for (size_t g = 0; g < ngroups; g++) {
        self->group_fill [g] = at;
        at += self->group_size [g];
    }
    for (size_t i = 0; i < count; i++)
        self->order [self->group_fill [self->group_of [i]]++] = i;
    return ngroups;
}

/*  Keep the highest offset to apply per partition; returns the new
    number of partitions marked */
static size_t
s_mark (hgp_ledger_t *self, size_t nmarks, int32_t partition, int64_t offset)
{
    for (size_t m = 0; m < nmarks; m++)
        if (self->marked [m] == partition) {
            self->marks [m] = MAX (self->marks [m], offset);
            return nmarks;
        }
    self->marked [nmarks] = partition;
    self->marks [nmarks] = offset;
    return nmarks + 1;
}

#define S_MOVED     3           /* s_apply_once: a fast key moved           */

//  One EVALSHA of the apply script (see hgp_ledger_apply)
static int
s_apply_once (hgp_ledger_t *self, const char *actor, uint64_t batch,
              hgp_ledger_item_t *items, size_t count,
              const char *const *held, size_t nheld, char *reason,
              size_t size)
{
    bool own = batch != 0;
    size_t ngroups = s_group (self, own, items, count);
    //  A group is fast when all its items are (own only); where each
    //  group starts in order []
    size_t nfast = 0, nslow = 0, slow_items = 0, at = 0;
    for (size_t g = 0; g < ngroups; g++) {
        bool fast = own;
        for (size_t k = 0; k < self->group_size [g]; k++) {
            hgp_ledger_item_t *item = &items [self->order [at + k]];
            fast = fast && item->fast && !item->release;
        }
        self->group_at [g] = at;
        self->group_fast [g] = fast;
        if (fast)
            nfast++;
        else {
            nslow++;
            slow_items += self->group_size [g];
        }
        at += self->group_size [g];
    }
    char wm [HGP_ID_MAX + 16];
    snprintf (wm, sizeof wm, "hgp:wm:%s", actor ? actor : "");
    hgp_args_t *args = self->args;
    hgp_args_evalsha (args, S_ARGS_MAX);
    hgp_args_add_str (args, S_REGISTRY);
    hgp_args_add_str (args, wm);
    for (int fast = 1; fast >= 0; fast--)
        for (size_t g = 0; g < ngroups; g++)
            if (self->group_fast [g] == fast)
                hgp_args_add_str (args, items [self->group_first [g]].counter_key);
    for (size_t g = 0; g < ngroups; g++)
        for (size_t k = 0; !self->group_fast [g] && k < self->group_size [g]; k++)
            hgp_args_add_str (args, items [self->order [self->group_at [g] + k]]
                                .record_key);
    int numkeys = hgp_args_count (args) - 3;
    hgp_args_add_str (args, self->ttl);
    hgp_args_add_str (args, actor ? actor : "");
    hgp_args_add_str (args, own ? "1" : "0");
    hgp_args_add_int (args, (int64_t) nslow);
    if (own)
        hgp_args_add_int (args, (int64_t) batch);
    else
        hgp_args_add_str (args, "");
    hgp_args_add_int (args, (int64_t) nfast);
    //  Keys whose promises of this batch the mark does not keep: the
    //  ordinary groups' (their records are written final or released
    //  here) and the held ones
    size_t nx = own ? nslow + nheld : 0;
    hgp_args_add_int (args, (int64_t) nx);
    for (size_t g = 0; g < ngroups; g++) {
        if (!self->group_fast [g])
            continue;
        int64_t sum = 0;
        for (size_t k = 0; k < self->group_size [g]; k++)
            sum += strtoll (items [self->order [self->group_at [g] + k]].delta,
                            NULL, 10);
        hgp_args_add_int (args, (int64_t) sum);
        hgp_args_add_int (args, (int64_t) items [self->group_first [g]].base);
    }
    for (size_t g = 0; own && g < ngroups; g++)
        if (!self->group_fast [g])
            hgp_args_add_str (args, items [self->group_first [g]].counter_key);
    for (size_t h = 0; own && h < nheld; h++)
        hgp_args_add_str (args, held [h]);
    for (size_t g = 0; own && g < ngroups; g++) {
        if (self->group_fast [g])
            continue;
        hgp_args_add_int (args, (int64_t) self->group_size [g]);
    }
    size_t nmarks = 0;
    for (size_t k = 0; k < count; k++) {
        hgp_ledger_item_t *item = &items [self->order [k]];
        if (!item->release)
            nmarks = s_mark (self, nmarks, item->partition, item->offset);
    }
    size_t slot = 0;
    for (size_t g = 0; g < ngroups; g++)
        for (size_t k = 0; !self->group_fast [g] && k < self->group_size [g];
             k++, slot++) {
            hgp_ledger_item_t *item = &items [self->order [self->group_at [g] + k]];
            snprintf (self->heads [slot], S_HEAD_MAX, "%s %s ",
                      item->counter_key, item->delta);
            snprintf (self->tails [slot], 32, " %" PRId32 ":%" PRId64,
                      item->partition, item->offset);
            hgp_args_add_str (args, item->release ? "r" : "a");
            hgp_args_add_str (args, item->delta);
            hgp_args_add_str (args, self->heads [slot]);
            hgp_args_add_str (args, self->tails [slot]);
        }
    for (size_t m = 0; m < nmarks; m++) {
        hgp_args_add_int (args, (int64_t) self->marked [m]);
        hgp_args_add_int (args, (int64_t) self->marks [m]);
    }
    bool definite;
    redisReply *reply = s_evalsha (self, self->apply, numkeys, &definite,
                                   reason, size);
    if (!reply)
        return definite ? 1 : -1;
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == -9) {
        freeReplyObject (reply);
        s_fail (reason, size, "the lease of %s is gone: it may be fenced"
                " already, so it applies nothing more", actor);
        return 2;
    }
    //  Own: {events, fast groups}, or {-8, moved fast groups}
    redisReply *events = reply, *fast = NULL;
    if (own && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
    &&  reply->element [0]->type == REDIS_REPLY_INTEGER
    &&  reply->element [0]->integer == -8
    &&  reply->element [1]->type == REDIS_REPLY_ARRAY) {
        redisReply *moved = reply->element [1];
        for (size_t j = 0; j < moved->elements; j++) {
            long long f = moved->element [j]->integer;
            //  The f-th fast group (1-based) is applied like the others
            for (size_t g = 0, seen = 0; g < ngroups; g++)
                if (self->group_fast [g] && (long long) ++seen == f)
                    for (size_t k = 0; k < self->group_size [g]; k++)
                        items [self->order [self->group_at [g] + k]].fast = false;
        }
        freeReplyObject (reply);
        return S_MOVED;
    }
    if (own) {
        events = NULL;
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
        &&  reply->element [0]->type == REDIS_REPLY_ARRAY
        &&  reply->element [1]->type == REDIS_REPLY_ARRAY
        &&  reply->element [1]->elements == nfast) {
            events = reply->element [0];
            fast = reply->element [1];
        }
    }
    int rc = 0;
    if (!events || events->type != REDIS_REPLY_ARRAY
    ||  events->elements != slow_items) {
        rc = s_fail (reason, size, "redis: the apply script gave a reply of"
                     " type %d", reply->type);
        zsys_error ("%s: %s", self->who, reason);
    }
    slot = 0;
    size_t f = 0;
    for (size_t g = 0; rc == 0 && g < ngroups; g++) {
        if (self->group_fast [g]) {
            redisReply *r = fast->element [f++];
            int code = r->type == REDIS_REPLY_ARRAY && r->elements >= 1
                    && r->element [0]->type == REDIS_REPLY_INTEGER
                     ? (int) r->element [0]->integer : -99;
            int64_t value = items [self->group_first [g]].base;
            for (size_t k = 0; k < self->group_size [g]; k++) {
                hgp_ledger_item_t *item = &items [self->order [self->group_at [g] + k]];
                item->text [0] = 0;
                if (code == 0) {
                    value += strtoll (item->delta, NULL, 10);
                    item->code = HGP_LEDGER_APPLIED;
                    item->value = value;
                }
                else {
                    item->code = HGP_LEDGER_REFUSED;
                    if (r->type == REDIS_REPLY_ARRAY && r->elements > 1
                    &&  r->element [1]->type == REDIS_REPLY_STRING)
                        snprintf (item->text, sizeof item->text, "%.*s",
                                  (int) r->element [1]->len,
                                  r->element [1]->str);
                }
            }
            continue;
        }
        for (size_t k = 0; rc == 0 && k < self->group_size [g]; k++) {
            redisReply *r = events->element [slot++];
            hgp_ledger_item_t *item = &items [self->order [self->group_at [g] + k]];
            if (r->type != REDIS_REPLY_ARRAY || r->elements < 1
            ||  r->element [0]->type != REDIS_REPLY_INTEGER) {
                rc = s_fail (reason, size, "redis: malformed apply result");
                break;
            }
            item->code = (int) r->element [0]->integer;
            item->text [0] = 0;
            const char *text = r->elements > 1
                            && r->element [1]->type == REDIS_REPLY_STRING
                             ? r->element [1]->str : NULL;
            size_t len = text ? r->element [1]->len : 0;
            if (item->code == HGP_LEDGER_APPLIED
            ||  item->code == HGP_LEDGER_ALREADY) {
                if (!text || hgp_redis_int64 (text, len, &item->value)) {
                    rc = s_fail (reason, size, "redis: the counter %s does"
                                 " not hold an integer", item->counter_key);
                    break;
                }
            }
            else
            if (text)
                snprintf (item->text, sizeof item->text, "%.*s", (int) len,
                          text);
        }
    }
    freeReplyObject (reply);
    return rc;
}

int
hgp_ledger_apply (hgp_ledger_t *self, const char *actor, uint64_t batch,
                  hgp_ledger_item_t *items, size_t count,
                  const char *const *held, size_t nheld,
                  char *reason, size_t size)
{
    assert (count <= HGP_LEDGER_BATCH_MAX);
    assert (nheld <= HGP_LEDGER_BATCH_MAX);
    if (count == 0)
        return 0;
    if (!actor)
        batch = 0;
    //  A fast key that moved is sent again as an ordinary one: the
    //  script wrote nothing then. Twice at most; then none is fast.
    for (int attempt = 0; attempt < 3; attempt++) {
        if (attempt == 2)
            for (size_t i = 0; i < count; i++)
                items [i].fast = false;
        int rc = s_apply_once (self, actor, batch, items, count, held, nheld,
                               reason, size);
        if (rc != S_MOVED)
            return rc;
    }
    return s_fail (reason, size, "redis: the apply script kept answering"
                   " that counters moved");
}

int
hgp_ledger_identify (hgp_ledger_t *self, const char *actor)
{
    char now [24];
    snprintf (now, sizeof now, "%" PRId64, zclock_time ());
    const char *argv [] = { "HSET", S_IDENTITIES, actor, now };
    char reason [256];
    redisReply *reply = hgp_redis_command (self->redis, 4, argv, NULL,
                                           reason, sizeof reason);
    if (!reply)
        return -1;
    freeReplyObject (reply);
    return 0;
}

void
hgp_ledger_vouch_reset (hgp_ledger_t *self)
{
    zhashx_purge (self->identities);
    for (size_t p = 0; p < HGP_LEDGER_BATCH_MAX; p++) {
        self->horizon [p] = -1;
        self->horizon_at [p] = 0;
    }
    self->told_old = false;
}

/*  Where hgp:ids began in partition (-1: not yet); -2 when Redis failed */
static int64_t
s_horizon (hgp_ledger_t *self, int32_t partition)
{
    if (self->horizon [partition] >= 0
    ||  zclock_mono () < self->horizon_at [partition])
        return self->horizon [partition];
    char part [16], reason [256];
    snprintf (part, sizeof part, "%" PRId32, partition);
    const char *argv [] = { "HGET", S_HORIZON, part };
    redisReply *reply = hgp_redis_command (self->redis, 3, argv, NULL,
                                           reason, sizeof reason);
    if (!reply)
        return -2;
    int64_t at = -1;
    if (reply->type == REDIS_REPLY_STRING
    &&  hgp_redis_int64 (reply->str, reply->len, &at))
        at = -1;
    freeReplyObject (reply);
    self->horizon [partition] = at;
    self->horizon_at [partition] = zclock_mono () + S_HORIZON_MS;
    return at;
}

int
hgp_ledger_vouch (hgp_ledger_t *self, const char *actor, int32_t partition,
                  int64_t offset)
{
    if (partition < 0 || partition >= HGP_LEDGER_BATCH_MAX)
        return 0;
    void *known = zhashx_lookup (self->identities, actor);
    if (known == (void *) 1)
        return 1;
    int64_t horizon = s_horizon (self, partition);
    if (horizon == -2)
        return -1;
    if (horizon < 0 || offset < horizon) {
        if (!self->told_old) {
            self->told_old = true;
            zsys_warning ("%s: records at [%d] %" PRId64 " are older than the"
                          " registry of log identities (hgp:ids); they are"
                          " trusted as written", self->who, partition, offset);
        }
        return 2;
    }
    if (!known) {
        const char *argv [] = { "HEXISTS", S_IDENTITIES, actor };
        char reason [256];
        redisReply *reply = hgp_redis_command (self->redis, 3, argv, NULL,
                                               reason, sizeof reason);
        if (!reply)
            return -1;
        bool registered = reply->type == REDIS_REPLY_INTEGER
                       && reply->integer == 1;
        freeReplyObject (reply);
        if (zhashx_size (self->identities) >= S_VOUCH_CACHE)
            zhashx_purge (self->identities);
        known = registered ? (void *) 1 : (void *) 2;
        zhashx_insert (self->identities, actor, known);
        if (!registered)
            zsys_warning ("%s: ignoring records of log identity %s, which"
                          " never registered (first at [%d] %" PRId64 ")",
                          self->who, actor, partition, offset);
    }
    return known == (void *) 1 ? 1 : 0;
}

int
hgp_ledger_register (hgp_ledger_t *self, const char *actor,
                     const int64_t *ends, int partitions,
                     char *reason, size_t size)
{
    assert (partitions > 0 && partitions <= HGP_LEDGER_BATCH_MAX);
    char wm [HGP_ID_MAX + 16], lease [HGP_ID_MAX + 16];
    snprintf (wm, sizeof wm, "hgp:wm:%s", actor);
    snprintf (lease, sizeof lease, "hgp:lease:%s", actor);
    hgp_args_evalsha (self->args, S_ARGS_MAX);
    hgp_args_add_str (self->args, S_REGISTRY);
    hgp_args_add_str (self->args, wm);
    hgp_args_add_str (self->args, lease);
    hgp_args_add_str (self->args, S_IDENTITIES);
    hgp_args_add_str (self->args, S_HORIZON);
    hgp_args_add_str (self->args, actor);
    hgp_args_add_str (self->args, self->lease_ms);
    hgp_args_add_int (self->args, zclock_time ());
    for (int p = 0; p < partitions; p++) {
        hgp_args_add_int (self->args, p);
        hgp_args_add_int (self->args, ends [p] - 1);
    }
    bool definite;
    redisReply *reply = s_evalsha (self, self->register_, 5, &definite,
                                   reason, size);
    if (!reply)
        return -1;
    freeReplyObject (reply);
    return 0;
}

/*  A simple command; its integer reply, or -1 */
static long long
s_integer (hgp_ledger_t *self, int argc, const char **argv)
{
    if (!hgp_redis_ready (self->redis, true))
        return -1;
    char reason [256];
    redisReply *reply = hgp_redis_command (self->redis, argc, argv, NULL,
                                           reason, sizeof reason);
    if (!reply)
        return -1;
    long long n = reply->type == REDIS_REPLY_INTEGER ? reply->integer
                : reply->type == REDIS_REPLY_STATUS ? 1
                : reply->type == REDIS_REPLY_NIL ? 0 : -1;
    freeReplyObject (reply);
    return n;
}

int
hgp_ledger_renew (hgp_ledger_t *self, const char *actor)
{
    char lease [HGP_ID_MAX + 16];
    snprintf (lease, sizeof lease, "hgp:lease:%s", actor);
    const char *argv [] = { "PEXPIRE", lease, self->lease_ms };
    long long n = s_integer (self, 3, argv);
    return n < 0 ? -1 : n > 0 ? 1 : 0;
}

int
hgp_ledger_leave (hgp_ledger_t *self, const char *actor)
{
    char wm [HGP_ID_MAX + 16], lease [HGP_ID_MAX + 16], reason [256];
    snprintf (wm, sizeof wm, "hgp:wm:%s", actor);
    snprintf (lease, sizeof lease, "hgp:lease:%s", actor);
    hgp_args_evalsha (self->args, S_ARGS_MAX);
    hgp_args_add_str (self->args, S_REGISTRY);
    hgp_args_add_str (self->args, wm);
    hgp_args_add_str (self->args, lease);
    hgp_args_add_str (self->args, actor);
    bool definite;
    redisReply *reply = s_evalsha (self, self->leave, 3, &definite,
                                   reason, sizeof reason);
    if (!reply)
        return -1;
    freeReplyObject (reply);
    return 0;
}

int
hgp_ledger_retire (hgp_ledger_t *self, const char *actor)
{
    char lease [HGP_ID_MAX + 16];
    snprintf (lease, sizeof lease, "hgp:lease:%s", actor);
    const char *argv [] = { "DEL", lease };
    return s_integer (self, 2, argv) < 0 ? -1 : 0;
}

int
hgp_ledger_advance (hgp_ledger_t *self, const char *actor, int32_t partition,
           int64_t offset)
{
    char wm [HGP_ID_MAX + 16], part [16], off [24], reason [256];
    snprintf (wm, sizeof wm, "hgp:wm:%s", actor);
    snprintf (part, sizeof part, "%" PRId32, partition);
    snprintf (off, sizeof off, "%" PRId64, offset);
    hgp_args_evalsha (self->args, S_ARGS_MAX);
    hgp_args_add_str (self->args, S_REGISTRY);
    hgp_args_add_str (self->args, wm);
    hgp_args_add_str (self->args, actor);
    hgp_args_add_str (self->args, part);
    hgp_args_add_str (self->args, off);
    bool definite;
    redisReply *reply = s_evalsha (self, self->advance, 2, &definite,
                                   reason, sizeof reason);
    if (!reply)
        return -1;
    freeReplyObject (reply);
    return 0;
}


/*  --------------------------------------------------------------------------
    Reading the log and applying it: recovery and replay
*/

typedef struct {
    hgp_ledger_t *self;
    const char *only;           /* apply only this actor's events, or NULL */
    const char *wm_actor;       /* whose watermark advances, or NULL       */
    zhashx_t *fenced;           /* log ids fenced so far in the partition  */
    int32_t partition;          /* being read                              */
    int64_t last;               /* last offset read in it, -1 if none      */
    uint64_t unsaved;           /* records read since progress was saved   */
    hgp_ledger_item_t *items;   /* batch waiting to be applied             */
    size_t count;               /* items in it                             */
    hgp_ledger_stats_t *stats;  /* what happened                           */
    char reason [256];          /* why it failed                           */
} s_reading_t;

/*  Apply the waiting batch; 0 or -1 */
static int
s_flush (s_reading_t *r)
{
    if (r->count == 0)
        return 0;
    int rc = hgp_ledger_apply (r->self, r->wm_actor, 0, r->items, r->count,
                               NULL, 0,
                               r->reason, sizeof r->reason);
    if (rc)
        return -1;
    for (size_t i = 0; i < r->count; i++) {
        hgp_ledger_item_t *item = &r->items [i];
        if (item->code == HGP_LEDGER_APPLIED)
            r->stats->applied++;
        else
        if (item->code == HGP_LEDGER_ALREADY)
            r->stats->already++;
        else
        if (item->code == HGP_LEDGER_REFUSED) {
            snprintf (r->reason, sizeof r->reason, "redis refused %.100s: %.100s",
                      item->record_key, item->text);
            return -1;
        }
        else {
            //  In the log but impossible to apply; say so loudly
            r->stats->bad++;
            zsys_error ("%s: event %s at [%d] %" PRId64 " cannot be applied:"
                        " %s", r->self->who, item->record_key,
                        item->partition, item->offset,
                        item->code == HGP_LEDGER_CONFLICT
                        ? "its id is recorded for another increment"
                        : item->text);
        }
    }
    r->count = 0;
    return 0;
}

/*  Apply what waits, then move the watermark over what was read: every
    event of wm_actor up to r->last is applied now. A long read of other
    actors' events is not repeated after an interruption. */
static int
s_save (s_reading_t *r)
{
    if (s_flush (r))
        return -1;
    if (r->wm_actor && r->last >= 0 && r->unsaved) {
        if (hgp_ledger_advance (r->self, r->wm_actor, r->partition, r->last))
            return -1;
    }
    r->unsaved = 0;
    return 0;
}

/*  Store offset as the fence of r->only in r->partition, unless an
    earlier one is stored. 0 or -1. */
static int
s_store_fence (s_reading_t *r, int64_t offset)
{
    char key [HGP_ID_MAX + 16], part [16], off [24];
    snprintf (key, sizeof key, "hgp:fence:%s", r->only);
    snprintf (part, sizeof part, "%" PRId32, r->partition);
    snprintf (off, sizeof off, "%" PRId64, offset);
    hgp_args_evalsha (r->self->args, S_ARGS_MAX);
    hgp_args_add_str (r->self->args, key);
    hgp_args_add_str (r->self->args, part);
    hgp_args_add_str (r->self->args, off);
    bool definite;
    redisReply *reply = s_evalsha (r->self, r->self->fence, 1, &definite,
                                   r->reason, sizeof r->reason);
    if (!reply)
        return -1;
    freeReplyObject (reply);
    return 0;
}

static int
s_on_event (const hgp_event_t *event, const hgp_error_t *error,
            int32_t partition, int64_t offset, void *arg)
{
    s_reading_t *r = (s_reading_t *) arg;
    r->stats->read++;
    //  The previous record is done with (applied or batched)
    if (r->unsaved >= 4096 && s_save (r))
        return -1;
    r->last = offset;
    r->unsaved++;
    if (!event) {
        r->stats->bad++;
        zsys_error ("%s: record at [%d] %" PRId64 " is not an event: %s",
                    r->self->who, partition, offset, error->message);
        return 0;
    }
    //  A record of an identity that never registered is a forgery: it
    //  counts for nothing, and a fence of one voids nothing. Recovery
    //  reads one registered actor's events, so it checks fences only.
    if (event->fence [0] || !r->only) {
        int vouch = hgp_ledger_vouch (r->self, event->actor, partition, offset);
        if (vouch < 0) {
            snprintf (r->reason, sizeof r->reason, "redis failed while"
                      " checking the log identity %s", event->actor);
            return -1;
        }
        if (vouch == 0) {
            r->stats->unregistered++;
            return 0;
        }
    }
    if (event->fence [0]) {
        //  From here on the fenced actor's events in this partition are
        //  void. When we recover that actor, its stored fence must not be
        //  later than this one (a fence written by an earlier recovery
        //  that died before storing it): store it before our watermark
        //  moves past it, so a resumed recovery stops here too.
        zhashx_update (r->fenced, event->fence, (void *) 1);
        if (r->only && streq (event->fence, r->only)
        &&  (s_flush (r) || s_store_fence (r, offset)))
            return -1;
        r->stats->fences++;
        return 0;
    }
    if (zhashx_lookup (r->fenced, event->actor)) {
        r->stats->voided++;
        return 0;
    }
    if (r->only && !streq (event->actor, r->only)) {
        r->stats->skipped++;
        return 0;
    }
    hgp_ledger_item_event (&r->items [r->count++], event, partition, offset);
    if (r->count == S_BATCH)
        return s_flush (r);
    return 0;
}

/*  Read partition [from, to) and apply (only's) events. 0 or -1. */
static int
s_apply_range (s_reading_t *r, hgp_eventlog_t *log, int32_t partition,
               int64_t from, int64_t to, int64_t deadline)
{
    r->count = 0;
    r->partition = partition;
    r->last = -1;
    r->unsaved = 0;
    zhashx_purge (r->fenced);
    if (hgp_eventlog_read (log, partition, from, to, s_on_event, r, deadline)) {
        if (!r->reason [0])
            snprintf (r->reason, sizeof r->reason, "%s",
                      hgp_eventlog_error (log));
        s_save (r);             //  keep the progress
        return -1;
    }
    return s_save (r);
}

/*  Read hash key (partition -> offset) into at[0..partitions), -1 where
    absent. 0 or -1. */
static int
s_read_offsets (hgp_ledger_t *self, const char *key, int64_t *at,
                int partitions, char *reason, size_t size)
{
    for (int p = 0; p < partitions; p++)
        at [p] = -1;
    const char *argv [] = { "HGETALL", key };
    redisReply *reply = hgp_redis_command (self->redis, 2, argv, NULL,
                                           reason, size);
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        if (reply)
            freeReplyObject (reply);
        return -1;
    }
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        int p = atoi (reply->element [i]->str);
        if (p >= 0 && p < partitions)
            at [p] = strtoll (reply->element [i + 1]->str, NULL, 10);
    }
    freeReplyObject (reply);
    return 0;
}

/*  Fence actor in every partition that has no fence stored yet (a fence
    record written by me, its offset kept in hgp:fence:<actor>), then
    fill at[] with the stored fence offsets. 0 or -1 (reason says why). */
static int
s_fence (hgp_ledger_t *self, hgp_eventlog_t *log, const char *actor,
         const char *me, int partitions, int64_t *at, int64_t deadline,
         char *reason, size_t size)
{
    char key [HGP_ID_MAX + 16];
    snprintf (key, sizeof key, "hgp:fence:%s", actor);
    if (s_read_offsets (self, key, at, partitions, reason, size))
        return -1;
    int missing = 0;
    for (int p = 0; p < partitions; p++)
        missing += at [p] < 0;
    if (missing == 0)
        return 0;
    hgp_event_t fence;
    memset (&fence, 0, sizeof fence);
    snprintf (fence.fence, sizeof fence.fence, "%s", actor);
    snprintf (fence.actor, sizeof fence.actor, "%s", me);
    fence.ts = (uint64_t) zclock_time ();
    hgp_delivery_t *sent = (hgp_delivery_t *) calloc ((size_t) partitions,
                                                      sizeof (hgp_delivery_t));
    assert (sent);
    for (int p = 0; p < partitions; p++)
        if (at [p] < 0)
            hgp_eventlog_produce_to (log, &fence, p, &sent [p]);
    int64_t left = MIN (hgp_eventlog_timeout (log), deadline - zclock_mono ());
    hgp_eventlog_wait (log, (int) MAX (left, 50));
    int rc = 0;
    for (int p = 0; p < partitions && rc == 0; p++) {
        if (at [p] >= 0)
            continue;
        if (sent [p].status != HGP_LOG_PERSISTED) {
            rc = s_fail (reason, size, "cannot fence %s in partition %d: %s",
                         actor, p, sent [p].error);
            break;
        }
        char part [16], off [24];
        snprintf (part, sizeof part, "%d", p);
        snprintf (off, sizeof off, "%" PRId64, sent [p].offset);
        hgp_args_evalsha (self->args, S_ARGS_MAX);
        hgp_args_add_str (self->args, key);
        hgp_args_add_str (self->args, part);
        hgp_args_add_str (self->args, off);
        bool definite;
        redisReply *reply = s_evalsha (self, self->fence, 1, &definite,
                                       reason, size);
        if (!reply)
            rc = -1;
        else
            freeReplyObject (reply);
    }
    free (sent);
    if (rc == 0)
        rc = s_read_offsets (self, key, at, partitions, reason, size);
    for (int p = 0; p < partitions && rc == 0; p++)
        if (at [p] < 0)
            rc = s_fail (reason, size, "the fence of %s in partition %d is"
                         " gone from redis", actor, p);
    return rc;
}

/*  Recover one dead actor, whose lock we hold: fence it, then apply its
    events up to the fences. 0 or -1 (logged). */
static int
s_recover (hgp_ledger_t *self, hgp_eventlog_t *log, const char *actor,
           const char *me, int64_t deadline)
{
    hgp_ledger_stats_t stats = { 0 };
    s_reading_t r = { self, actor, actor, NULL, 0, -1, 0, NULL, 0, &stats, "" };
    int partitions = hgp_eventlog_partitions (
        log, (int) MAX (1, MIN (hgp_eventlog_timeout (log),
                                deadline - zclock_mono ())));
    if (partitions < 0) {
        zsys_warning ("%s: cannot recover actor %s yet: %s", self->who, actor,
                      hgp_eventlog_error (log));
        return -1;
    }
    if (!hgp_redis_ready (self->redis, true))
        return -1;
    char wm [HGP_ID_MAX + 16];
    snprintf (wm, sizeof wm, "hgp:wm:%s", actor);
    int64_t *marks = (int64_t *) calloc ((size_t) partitions, sizeof (int64_t));
    int64_t *fences = (int64_t *) calloc ((size_t) partitions, sizeof (int64_t));
    r.items = (hgp_ledger_item_t *) calloc (S_BATCH, sizeof (hgp_ledger_item_t));
    r.fenced = zhashx_new ();
    assert (marks && fences && r.items && r.fenced);
    int rc = s_read_offsets (self, wm, marks, partitions, r.reason,
                             sizeof r.reason);
    if (rc == 0)
        rc = s_fence (self, log, actor, me, partitions, fences, deadline,
                      r.reason, sizeof r.reason);
    for (int32_t p = 0; p < partitions && rc == 0; p++) {
        //  A partition without a watermark was added after the actor
        //  registered: read all of it. Its events after the fence are
        //  void: nobody applies them.
        int64_t from = marks [p] + 1;
        if (zclock_mono () >= deadline) {
            snprintf (r.reason, sizeof r.reason, "out of time");
            rc = -1;
        }
        else
        if (from < fences [p]) {
            rc = s_apply_range (&r, log, p, from, fences [p], deadline);
            //  All of its events below the fence are applied now
            if (rc == 0)
                rc = hgp_ledger_advance (self, actor, p, fences [p] - 1);
        }
    }
    zhashx_destroy (&r.fenced);
    free (r.items);
    free (fences);
    free (marks);
    if (rc && zclock_mono () >= deadline)
        //  A slice of work done, its progress saved; the next sweep goes on
        zsys_info ("%s: recovering actor %s: %" PRIu64 " records read, %"
                   PRIu64 " of its events applied so far", self->who, actor,
                   stats.read, stats.applied);
    else
    if (rc)
        zsys_warning ("%s: recovery of actor %s stopped: %s", self->who, actor,
                      r.reason [0] ? r.reason : "redis failed");
    if (rc)
        return -1;
    zsys_info ("%s: recovered actor %s (fenced): %" PRIu64 " records read, %"
               PRIu64 " of its events applied now, %" PRIu64 " were applied"
               " already%s", self->who, actor, stats.read, stats.applied,
               stats.already, stats.bad ? " (some could not be: see above)" : "");
    return 0;
}

int
hgp_ledger_recover_dead (hgp_ledger_t *self, hgp_eventlog_t *log,
                         const char *me, int64_t deadline)
{
    if (!hgp_redis_ready (self->redis, false))
        return -1;
    char reason [256];
    const char *keys [] = { "HKEYS", S_REGISTRY };
    redisReply *actors = hgp_redis_command (self->redis, 2, keys, NULL,
                                            reason, sizeof reason);
    if (!actors)
        return -1;
    int recovered = 0;
    for (size_t i = 0; i < actors->elements && recovered >= 0; i++) {
        if (zclock_mono () >= deadline)
            break;
        const char *actor = actors->element [i]->str;
        if (actors->element [i]->type != REDIS_REPLY_STRING
        ||  streq (actor, me) || !hgp_id_valid (actor, strlen (actor)))
            continue;
        char lease [HGP_ID_MAX + 16], lock [HGP_ID_MAX + 24];
        snprintf (lease, sizeof lease, "hgp:lease:%s", actor);
        const char *exists [] = { "EXISTS", lease };
        long long alive = s_integer (self, 2, exists);
        if (alive != 0) {
            if (alive < 0)
                recovered = -1;
            continue;
        }
        snprintf (lock, sizeof lock, "hgp:recovering:%s", actor);
        char ms [16];
        snprintf (ms, sizeof ms, "%d", S_LOCK_MS);
        const char *take [] = { "SET", lock, me, "NX", "PX", ms };
        if (s_integer (self, 6, take) != 1)
            continue;               //  someone else is on it
        zsys_info ("%s: actor %s lost its lease; recovering its events",
                   self->who, actor);
        if (s_recover (self, log, actor, me, deadline) == 0) {
            char wm [HGP_ID_MAX + 16], fence [HGP_ID_MAX + 16];
            snprintf (wm, sizeof wm, "hgp:wm:%s", actor);
            snprintf (fence, sizeof fence, "hgp:fence:%s", actor);
            hgp_args_evalsha (self->args, S_ARGS_MAX);
            hgp_args_add_str (self->args, S_REGISTRY);
            hgp_args_add_str (self->args, wm);
            hgp_args_add_str (self->args, lock);
            hgp_args_add_str (self->args, fence);
            hgp_args_add_str (self->args, actor);
            hgp_args_add_str (self->args, me);
            bool definite;
            redisReply *reply = s_evalsha (self, self->forget, 4,
                                           &definite, reason, sizeof reason);
            if (reply) {
                freeReplyObject (reply);
                recovered++;
            }
            else
                recovered = -1;
        }
        else {
            const char *unlock [] = { "DEL", lock };
            s_integer (self, 2, unlock);
            recovered = -1;
        }
    }
    freeReplyObject (actors);
    return recovered;
}

int
hgp_ledger_replay (hgp_ledger_t *self, hgp_eventlog_t *log,
                   hgp_ledger_stats_t *stats,
                   void (*progress) (int32_t partition,
                                     const hgp_ledger_stats_t *stats),
                   char *reason, size_t size)
{
    memset (stats, 0, sizeof *stats);
    int timeout = (int) hgp_eventlog_timeout (log);
    int partitions = hgp_eventlog_partitions (log, timeout);
    if (partitions < 0)
        return s_fail (reason, size, "%s", hgp_eventlog_error (log));
    int64_t *high = (int64_t *) calloc ((size_t) partitions, sizeof (int64_t));
    assert (high);
    int rc = 0;
    //  Check every partition first: refuse before changing anything
    for (int32_t p = 0; p < partitions && rc == 0; p++) {
        int64_t low;
        if (hgp_eventlog_offsets (log, p, &low, &high [p], timeout))
            rc = s_fail (reason, size, "%s", hgp_eventlog_error (log));
        else
        if (low > 0)
            rc = s_fail (reason, size, "partition %d of %s starts at offset"
                         " %" PRId64 ", not 0: the log lost its oldest events"
                         " (retention), so a replay would undercount",
                         p, hgp_eventlog_topic (log), low);
    }
    s_reading_t r = { self, NULL, NULL, NULL, 0, -1, 0, NULL, 0, stats, "" };
    r.items = (hgp_ledger_item_t *) calloc (S_BATCH, sizeof (hgp_ledger_item_t));
    r.fenced = zhashx_new ();
    assert (r.items && r.fenced);
    for (int32_t p = 0; p < partitions && rc == 0; p++) {
        //  No deadline but a generous one per partition: a replay is as
        //  long as the log
        if (s_apply_range (&r, log, p, 0, high [p],
                           zclock_mono () + 3600 * 1000))
            rc = s_fail (reason, size, "partition %d: %s", p, r.reason);
        else
        if (progress)
            progress (p, stats);
    }
    zhashx_destroy (&r.fenced);
    free (r.items);
    free (high);
    return rc;
}
