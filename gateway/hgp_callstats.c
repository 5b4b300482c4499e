/*  hgp_callstats.c - the gateway's count of its own calls (see .h)
 *
 *  A counter is in one of three states: idle (nothing to send), waiting
 *  (counts summed, the next tick sends them as a flush with a new id), or
 *  flushing (one increment of `sending` in flight, or failed and to be
 *  sent again with the same id). At most one flush per counter is out, so
 *  a failed one can be sent again with its id and delta unchanged: the
 *  broker and the counter apply an id once.
 */
#include "hgp_callstats.h"
#include <inttypes.h>

#define S_FLUSH_MS      1000        /* between flushes                      */
#define S_KEYS_MAX      1024        /* counters kept                        */
#define S_TIMEOUT_MS    3000        /* bus deadline of a flush              */

typedef struct {
    hgp_callstats_t *owner;
    hgp_key_t key;                  /* (api.<route> | key.<name>, type)     */
    int64_t waiting;                /* counted, not in a flush yet          */
    int64_t sending;                /* the flush's delta; 0: no flush       */
    bool in_flight;                 /* the flush is on the bus now          */
    char id [HGP_ID_MAX + 1];       /* the flush's request id               */
    hgp_request_t req;
    hgp_reply_t rep;
} s_stat_t;

struct _hgp_callstats_t {
    hgp_mux_t *mux;
    char prefix [65];               /* request ids: prefix-<seq>            */
    uint64_t seq;
    zhashx_t *stats;                /* "resource type" -> s_stat_t          */
    int64_t flush_at;               /* next flush, zclock_mono              */
    bool told_full;                 /* logged that the table is full        */
};

static void
s_stat_destroy (void **item)
{
    s_stat_t *stat = (s_stat_t *) *item;
    hgp_request_clear (&stat->req);
    hgp_reply_clear (&stat->rep);
    free (stat);
    *item = NULL;
}

hgp_callstats_t *
hgp_callstats_new (hgp_mux_t *mux, const char *id_prefix)
{
    assert (mux);
    assert (id_prefix && strlen (id_prefix) <= 64);
    hgp_callstats_t *self = (hgp_callstats_t *) zmalloc (sizeof *self);
    assert (self);
    self->mux = mux;
    snprintf (self->prefix, sizeof self->prefix, "%s", id_prefix);
    self->stats = zhashx_new ();
    assert (self->stats);
    zhashx_set_destructor (self->stats, s_stat_destroy);
    self->flush_at = zclock_mono () + S_FLUSH_MS;
    return self;
}

void
hgp_callstats_destroy (hgp_callstats_t **self_p)
{
    assert (self_p);
    hgp_callstats_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->stats);
    free (self);
    *self_p = NULL;
}

static void
s_add (hgp_callstats_t *self, const char *prefix, const char *name,
       const char *type)
{
    char resource [HGP_ID_MAX + 1];
    int len = snprintf (resource, sizeof resource, "%s%s", prefix, name);
    if (len < 0 || (size_t) len >= sizeof resource
    ||  !hgp_id_valid (resource, (size_t) len))
        return;                     //  a key name that is not an id
    char lookup [2 * HGP_ID_MAX + 2];
    snprintf (lookup, sizeof lookup, "%s %s", resource, type);
    s_stat_t *stat = (s_stat_t *) zhashx_lookup (self->stats, lookup);
    if (!stat) {
        if (zhashx_size (self->stats) >= S_KEYS_MAX) {
            if (!self->told_full)
                zsys_warning ("gateway: call statistics keep %d counters;"
                              " %s and other new ones are not counted",
                              S_KEYS_MAX, lookup);
            self->told_full = true;
            return;
        }
        stat = (s_stat_t *) zmalloc (sizeof *stat);
        assert (stat);
        stat->owner = self;
        snprintf (stat->key.resource_id, sizeof stat->key.resource_id, "%s",
                  resource);
        snprintf (stat->key.counter_type, sizeof stat->key.counter_type,
                  "%s", type);
        hgp_request_init (&stat->req);
        hgp_reply_init (&stat->rep);
        zhashx_insert (self->stats, lookup, stat);
    }
    stat->waiting++;
}

void
hgp_callstats_count (hgp_callstats_t *self, const char *route,
                     const char *key, int status)
{
    assert (self);
    assert (route);
    bool error = status < 200 || status > 299;
    s_add (self, "api.", route, "calls");
    if (error)
        s_add (self, "api.", route, "errors");
    if (key && *key) {
        s_add (self, "key.", key, "calls");
        if (error)
            s_add (self, "key.", key, "errors");
    }
}

//  A flush was answered: settled, or to be sent again with its id
static void
s_flushed (void *arg)
{
    s_stat_t *stat = (s_stat_t *) arg;
    stat->in_flight = false;
    uint16_t status = stat->rep.error.status;
    if (status == HGP_STATUS_OK)
        stat->sending = 0;
    else
    if (status != HGP_STATUS_TIMEOUT && status != HGP_STATUS_UNAVAILABLE) {
        //  Definite and never going to pass (a bug, or a counter at the
        //  end of int64): drop these counts rather than retry forever
        zsys_warning ("gateway: call statistics for %s/%s lost %" PRId64
                      " calls: %d %s: %s", stat->key.resource_id,
                      stat->key.counter_type, stat->sending, status,
                      stat->rep.error.code, stat->rep.error.message);
        stat->sending = 0;
    }
    hgp_reply_clear (&stat->rep);
}

static void
s_flush (hgp_callstats_t *self, s_stat_t *stat)
{
    if (stat->in_flight)
        return;
    if (stat->sending == 0) {
        if (stat->waiting == 0)
            return;
        stat->sending = stat->waiting;
        stat->waiting = 0;
        snprintf (stat->id, sizeof stat->id, "%s-%" PRIu64, self->prefix,
                  self->seq++);
    }
    hgp_request_clear (&stat->req);
    stat->req.op = HGP_OP_INCR;
    memcpy (stat->req.id, stat->id, sizeof stat->req.id);
    stat->req.key = stat->key;
    stat->req.delta = stat->sending;
    stat->req.timeout_ms = S_TIMEOUT_MS;
    stat->in_flight = true;
    hgp_mux_call (self->mux, &stat->req, &stat->rep, s_flushed, stat);
}

void
hgp_callstats_tick (hgp_callstats_t *self, int64_t now)
{
    assert (self);
    if (now < self->flush_at)
        return;
    self->flush_at = zclock_mono () + S_FLUSH_MS;
    for (s_stat_t *stat = (s_stat_t *) zhashx_first (self->stats); stat;
         stat = (s_stat_t *) zhashx_next (self->stats))
        s_flush (self, stat);
}
