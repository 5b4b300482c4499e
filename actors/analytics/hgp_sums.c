/*  hgp_sums.c - what a batch of events adds to the rankings and series,
 *  summed per Redis target (see hgp_sums.h)
 *
 *  One table of targets: sorted sets (key -> member -> sum, and the key's
 *  expiry), minute hashes (key -> field -> sum, and the key's keep-until)
 *  and HyperLogLogs of users (key -> user, no sum).
 *  hgp_sums_args writes them out in analytics_merge.lua's format into one
 *  text buffer, then points the argument vector into it.
 */
#include "hgp_sums.h"
#include <czmq.h>
#include <inttypes.h>
#include <math.h>

#define S_BUCKETS   60          /* buckets per window, as the fold script */

//  One member's (or field's) sum: integers, or doubles for trending
typedef struct {
    int64_t isum;
    double fsum;
} s_sum_t;

typedef enum { S_SET, S_HASH, S_USERS } s_kind_t;

//  One target key: its members or fields, and when it may expire
typedef struct {
    s_kind_t kind;              /* sorted set, minute hash or HyperLogLog  */
    bool trending;              /* sums are doubles                        */
    double expire;              /* sorted set: PEXPIREAT, 0 = none; hash:
                                   keep until at least                     */
    zhashx_t *sums;             /* member or field -> s_sum_t              */
} s_target_t;

//  The sorted sets an event adds to: all-time, the two windows' buckets,
//  the trending epoch. Consecutive events mostly share them (one type,
//  one bucket), so the last ones found are kept with what named them.
#define S_SETS  4

typedef struct {
    char type [256];            /* counter type of the key                 */
    double number;              /* its bucket or epoch (0 for all-time)    */
    s_target_t *target;         /* NULL: not known                         */
} s_recent_t;

struct _hgp_sums_t {
    hgp_sums_settings_t settings;
    double now;                 /* the fold's time                         */
    zhashx_t *targets;          /* key -> s_target_t                       */
    s_recent_t recent [S_SETS]; /* the sets the last event added to        */
    size_t members;             /* sums held, over all targets             */
    char *text;                 /* the arguments' text                     */
    size_t text_size, text_used;
    const char **argv;          /* into text                               */
    size_t *argvlen;
    size_t *offsets;            /* where each argument starts in text      */
    size_t argv_max, argc;
};

static void
s_target_destroy (void **item)
{
    s_target_t *target = (s_target_t *) *item;
    if (target) {
        zhashx_destroy (&target->sums);
        free (target);
        *item = NULL;
    }
}

static void
s_sum_destroy (void **item)
{
    free (*item);
    *item = NULL;
}

hgp_sums_t *
hgp_sums_new (const hgp_sums_settings_t *settings)
{
    hgp_sums_t *self = (hgp_sums_t *) zmalloc (sizeof (hgp_sums_t));
    assert (self);
    self->settings = *settings;
    self->targets = zhashx_new ();
    assert (self->targets);
    zhashx_set_destructor (self->targets, s_target_destroy);
    return self;
}

void
hgp_sums_destroy (hgp_sums_t **self_p)
{
    hgp_sums_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->targets);
    free (self->text);
    free (self->argv);
    free (self->argvlen);
    free (self->offsets);
    free (self);
    *self_p = NULL;
}

void
hgp_sums_reset (hgp_sums_t *self, int64_t now)
{
    zhashx_purge (self->targets);
    for (int i = 0; i < S_SETS; i++)
        self->recent [i].target = NULL;
    self->members = 0;
    self->now = (double) now;
}

size_t
hgp_sums_targets (hgp_sums_t *self)
{
    return self->members;
}

/*  A number the way Lua 5.1 writes one (tostring, string concatenation) */
static void
s_lua_number (char *text, size_t size, double n)
{
    snprintf (text, size, "%.14g", n);
}

static s_target_t *
s_target (hgp_sums_t *self, const char *key, s_kind_t kind, bool trending)
{
    s_target_t *target = (s_target_t *) zhashx_lookup (self->targets, key);
    if (!target) {
        target = (s_target_t *) zmalloc (sizeof (s_target_t));
        assert (target);
        target->kind = kind;
        target->trending = trending;
        target->sums = zhashx_new ();
        assert (target->sums);
        zhashx_set_destructor (target->sums, s_sum_destroy);
        zhashx_insert (self->targets, key, target);
    }
    return target;
}

/*  Sorted set slot of the event (counter type, bucket or epoch number),
    named by format (with the type and the number as Lua writes it) */
static s_target_t *
s_set (hgp_sums_t *self, int slot, const char *type, double number,
       const char *format, bool trending)
{
    s_recent_t *recent = &self->recent [slot];
    if (recent->target && recent->number == number
    &&  streq (recent->type, type))
        return recent->target;
    char key [512], text [32];
    s_lua_number (text, sizeof text, number);
    snprintf (key, sizeof key, format, type, text);
    recent->target = s_target (self, key, S_SET, trending);
    recent->number = number;
    snprintf (recent->type, sizeof recent->type, "%s", type);
    return recent->target;
}

static void
s_add (hgp_sums_t *self, s_target_t *target, const char *member,
       int64_t i, double f, double expire)
{
    s_sum_t *sum = (s_sum_t *) zhashx_lookup (target->sums, member);
    if (!sum) {
        sum = (s_sum_t *) zmalloc (sizeof (s_sum_t));
        assert (sum);
        zhashx_insert (target->sums, member, sum);
        self->members++;
    }
    sum->isum += i;
    sum->fsum += f;
    if (target->expire < expire)
        target->expire = expire;
}

void
hgp_sums_users_key (char *key, size_t size, const char *resource,
                    const char *type)
{
    snprintf (key, size, "hgp:a:u:%zu:%s:%s", strlen (resource), resource,
              type);
}

int
hgp_sums_add (hgp_sums_t *self, const char *type, const char *resource,
              int64_t delta, int64_t ts, const char *user)
{
    if (delta <= -HGP_SUMS_DELTA_MAX || delta >= HGP_SUMS_DELTA_MAX)
        return -1;
    const hgp_sums_settings_t *s = &self->settings;
    //  The fold script's arithmetic, in its order, in doubles
    double d = (double) delta, t = (double) ts, now = self->now;
    char key [512], number [32];

    //  (the all-time set has no number: "%.0s" prints none)
    s_add (self, s_set (self, 0, type, 0, "hgp:a:all:%s%.0s", false),
           resource, -delta, 0, 0);

    static const char *const formats [2] = {
        "hgp:a:w:1h:%s:%s", "hgp:a:w:24h:%s:%s"
    };
    for (int w = 0; w < 2; w++) {
        double b = (double) s->window [w] / S_BUCKETS;
        double idx = floor (t / b);
        double expire = (idx + 1) * b + (double) s->window [w];
        if (expire > now)
            s_add (self, s_set (self, 1 + w, type, idx, formats [w], false),
                   resource, -delta, 0, expire);
    }

    double epoch = (double) s->epoch;
    double e = floor (t / epoch);
    if ((e + 2) * epoch > now) {
        double f = pow (2, (t - e * epoch) / (double) s->half_life);
        s_add (self, s_set (self, 3, type, e, "hgp:a:tr:%s:%s", true),
               resource, 0, -d * f, (e + 2) * epoch);
    }

    double bucket = (double) s->bucket;
    double m = floor (t / bucket);
    double until = (m + 1) * bucket + (double) s->span;
    if (until > now) {
        snprintf (key, sizeof key, "hgp:a:m:%zu:%s:%s", strlen (resource),
                  resource, type);
        s_lua_number (number, sizeof number, m);
        s_add (self, s_target (self, key, S_HASH, false), number, delta, 0,
               until);
    }
    if (user && *user) {
        hgp_sums_users_key (key, sizeof key, resource, type);
        //  A member without a sum: listed once, however often it came
        s_add (self, s_target (self, key, S_USERS, false), user, 0, 0, 0);
    }
    return 0;
}


/*  --------------------------------------------------------------------------
    Writing the targets out
*/

static void
s_text (hgp_sums_t *self, const char *text)
{
    size_t len = strlen (text);
    if (self->text_used + len + 1 > self->text_size) {
        self->text_size = MAX (self->text_size * 2,
                               self->text_used + len + 1 + 4096);
        self->text = (char *) realloc (self->text, self->text_size);
        assert (self->text);
    }
    if (self->argc == self->argv_max) {
        self->argv_max = MAX (self->argv_max * 2, 256);
        self->offsets = (size_t *) realloc (self->offsets,
                                            self->argv_max * sizeof (size_t));
        self->argvlen = (size_t *) realloc (self->argvlen,
                                            self->argv_max * sizeof (size_t));
        assert (self->offsets && self->argvlen);
    }
    memcpy (self->text + self->text_used, text, len + 1);
    self->offsets [self->argc] = self->text_used;
    self->argvlen [self->argc] = len;
    self->argc++;
    self->text_used += len + 1;
}

static void
s_target_write (hgp_sums_t *self, const char *key, s_target_t *target)
{
    char number [32];
    if (target->kind == S_USERS) {
        s_text (self, "u");
        s_text (self, key);
        s_text (self, "");
        snprintf (number, sizeof number, "%zu", zhashx_size (target->sums));
        s_text (self, number);
        for (void *one = zhashx_first (target->sums); one;
             one = zhashx_next (target->sums))
            s_text (self, (const char *) zhashx_cursor (target->sums));
        return;
    }
    //  Members whose sum is zero add nothing (as in the fold script)
    size_t count = 0;
    for (s_sum_t *sum = (s_sum_t *) zhashx_first (target->sums); sum;
         sum = (s_sum_t *) zhashx_next (target->sums))
        if (target->trending ? sum->fsum != 0 : sum->isum != 0)
            count++;
    s_text (self, target->kind == S_HASH ? "h" : "z");
    s_text (self, key);
    if (target->expire > 0)
        s_lua_number (number, sizeof number, target->expire);
    s_text (self, target->expire > 0 ? number : "");
    snprintf (number, sizeof number, "%zu", count);
    s_text (self, number);
    for (s_sum_t *sum = (s_sum_t *) zhashx_first (target->sums); sum;
         sum = (s_sum_t *) zhashx_next (target->sums)) {
        if (target->trending ? sum->fsum == 0 : sum->isum == 0)
            continue;
        s_text (self, (const char *) zhashx_cursor (target->sums));
        if (target->trending)
            snprintf (number, sizeof number, "%.17g", sum->fsum);
        else
            snprintf (number, sizeof number, "%" PRId64, sum->isum);
        s_text (self, number);
    }
}

const char **
hgp_sums_args (hgp_sums_t *self, size_t **argvlen, size_t *argc)
{
    self->argc = 0;
    self->text_used = 0;
    for (s_target_t *target = (s_target_t *) zhashx_first (self->targets);
         target; target = (s_target_t *) zhashx_next (self->targets))
        s_target_write (self, (const char *) zhashx_cursor (self->targets),
                        target);
    //  The text is complete: now it no longer moves
    self->argv = (const char **) realloc (self->argv,
                                          MAX (self->argc, 1) * sizeof (char *));
    assert (self->argv);
    for (size_t i = 0; i < self->argc; i++)
        self->argv [i] = self->text + self->offsets [i];
    *argvlen = self->argvlen;
    *argc = self->argc;
    return self->argv;
}
