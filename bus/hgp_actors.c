/*  hgp_actors.c - the broker's actor table and routing (see hgp_actors.h)
 *
 *  A plain array: a broker has a handful of actors, and a walk over a few
 *  cache lines beats any index for them. Routing walks it once per
 *  request; lookups by routing id once per actor message.
 */
#include "hgp_actors.h"
#include "hgp_keyspace.h"

struct _hgp_actors_t {
    hgp_actor_t **live;         /* registered actors, in join order         */
    size_t nlive;               /* entries used in live                     */
    size_t alloc;               /* entries allocated in live                */
    size_t ndead;               /* actors flagged dead, not yet removed     */
    size_t rr;                  /* rotates ties among idle readers          */
};

int
hgp_actors_kind_of_service (const char *service)
{
    return streq (service, "counter") ? HGP_KIND_COUNTER
         : streq (service, "analytics") ? HGP_KIND_ANALYTICS : HGP_KIND_OTHER;
}

int
hgp_actors_kind_of_op (int op)
{
    return op == HGP_OP_TOP || op == HGP_OP_STATS || op == HGP_OP_UNIQUES
           ? HGP_KIND_ANALYTICS : HGP_KIND_COUNTER;
}

const char *
hgp_actors_service_of_op (int op)
{
    return hgp_actors_kind_of_op (op) == HGP_KIND_ANALYTICS ? "analytics"
                                                            : "counter";
}

hgp_actors_t *
hgp_actors_new (void)
{
    return (hgp_actors_t *) zmalloc (sizeof (hgp_actors_t));
}

void
hgp_actors_destroy (hgp_actors_t **self_p)
{
    assert (self_p);
    hgp_actors_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->nlive; i++)
        hgp_actor_destroy (&self->live [i]);
    free (self->live);
    free (self);
    *self_p = NULL;
}

size_t
hgp_actors_size (hgp_actors_t *self)
{
    return self->nlive;
}

hgp_actor_t *
hgp_actors_at (hgp_actors_t *self, size_t i)
{
    assert (i < self->nlive);
    return self->live [i];
}

hgp_actor_t *
hgp_actors_lookup (hgp_actors_t *self, const uint8_t *identity, size_t size)
{
    for (size_t i = 0; i < self->nlive; i++) {
        hgp_actor_t *a = self->live [i];
        if (a->identity_size == size && memcmp (a->identity, identity, size) == 0)
            return a;
    }
    return NULL;
}

hgp_actor_t *
hgp_actors_named (hgp_actors_t *self, const char *actor_id)
{
    for (size_t i = 0; i < self->nlive; i++)
        if (streq (self->live [i]->actor_id, actor_id))
            return self->live [i];
    return NULL;
}

char *
hgp_actors_check (hgp_actors_t *self, hgp_actor_t *actor,
                  const hgp_ready_t *ready, const char *key,
                  const char *cluster)
{
    if (!streq (ready->cluster, cluster))
        return zsys_sprintf ("actor %s (%s) is of cluster '%s', this broker"
                             " serves '%s' (bus/cluster)", ready->actor_id,
                             ready->service, ready->cluster, cluster);
    //  An actor id belongs to the certificate that announced it, as long
    //  as it is registered: another one cannot take it over nor evict it
    hgp_actor_t *owner = hgp_actors_named (self, ready->actor_id);
    if (owner && owner != actor && !streq (owner->key, key))
        return zsys_sprintf ("actor id %s is registered under another"
                             " certificate", ready->actor_id);
    //  libzmq cannot change a connection's key; refuse, do not trust
    if (actor && !streq (actor->key, key))
        return zsys_sprintf ("actor %s changed certificate", actor->actor_id);
    return NULL;
}

hgp_actor_t *
hgp_actors_add (hgp_actors_t *self, const uint8_t *identity,
                size_t identity_size, const hgp_ready_t *ready,
                const char *key, int64_t now)
{
    assert (identity_size <= sizeof ((hgp_actor_t *) 0)->identity);
    if (self->nlive == self->alloc) {
        size_t alloc = self->alloc ? self->alloc * 2 : 16;
        hgp_actor_t **live = (hgp_actor_t **) realloc (self->live,
                                 alloc * sizeof (hgp_actor_t *));
        if (!live)
            return NULL;
        self->live = live;
        self->alloc = alloc;
    }
    hgp_actor_t *actor = (hgp_actor_t *) zmalloc (sizeof (hgp_actor_t));
    if (!actor)
        return NULL;
    memcpy (actor->identity, identity, identity_size);
    actor->identity_size = identity_size;
    strcpy (actor->service, ready->service);
    strcpy (actor->actor_id, ready->actor_id);
    snprintf (actor->key, sizeof actor->key, "%s", key);
    actor->kind = hgp_actors_kind_of_service (ready->service);
    actor->capacity = ready->capacity;
    actor->batch = ready->batch;
    strcpy (actor->metrics, ready->metrics);
    actor->last_heard = now;
    self->live [self->nlive++] = actor;
    return actor;
}

void
hgp_actors_kill (hgp_actors_t *self, hgp_actor_t *actor, const char *why)
{
    if (!actor->dead) {
        actor->dead = why;
        self->ndead++;
    }
}

size_t
hgp_actors_dead (hgp_actors_t *self)
{
    return self->ndead;
}

hgp_actor_t *
hgp_actors_first_dead (hgp_actors_t *self)
{
    for (size_t i = 0; i < self->nlive; i++)
        if (self->live [i]->dead)
            return self->live [i];
    return NULL;
}

void
hgp_actors_remove (hgp_actors_t *self, hgp_actor_t *actor)
{
    size_t i = 0;
    while (i < self->nlive && self->live [i] != actor)
        i++;
    assert (i < self->nlive);
    memmove (&self->live [i], &self->live [i + 1],
             (self->nlive - i - 1) * sizeof (hgp_actor_t *));
    self->nlive--;
    if (actor->dead)
        self->ndead--;
}

void
hgp_actor_destroy (hgp_actor_t **actor_p)
{
    assert (actor_p);
    hgp_actor_t *actor = *actor_p;
    if (!actor)
        return;
    hgp_buf_clear (&actor->out);
    free (actor);
    *actor_p = NULL;
}

int
hgp_actors_list (hgp_actors_t *self, int64_t now, hgp_reply_t *rep)
{
    size_t n = self->nlive < HGP_ACTORS_MAX ? self->nlive : HGP_ACTORS_MAX;
    rep->actors = (hgp_actor_info_t *) calloc (n ? n : 1,
                                               sizeof (hgp_actor_info_t));
    if (!rep->actors)
        return -1;
    rep->nactors = n;
    for (size_t i = 0; i < n; i++) {
        hgp_actor_t *a = self->live [i];
        hgp_actor_info_t *info = &rep->actors [i];
        strcpy (info->service, a->service);
        strcpy (info->actor_id, a->actor_id);
        info->capacity = a->capacity;
        info->inflight = a->inflight.size;
        info->queued = a->queue.size;
        int64_t idle = now - a->last_heard;
        info->idle_ms = idle < 0 ? 0 : idle > UINT32_MAX ? UINT32_MAX
                                                         : (uint32_t) idle;
        info->served = a->served;
        strcpy (info->metrics, a->metrics);
    }
    return 0;
}

hgp_actor_t *
hgp_actors_owner (hgp_actors_t *self, const hgp_key_t *key)
{
    hgp_actor_t *best = NULL;
    uint64_t best_w = 0;
    for (size_t i = 0; i < self->nlive; i++) {
        hgp_actor_t *a = self->live [i];
        if (a->kind != HGP_KIND_COUNTER || a->dead)
            continue;
        uint64_t w = hgp_keyspace_weight (a->actor_id, key);
        if (!best || w > best_w
        || (w == best_w && strcmp (a->actor_id, best->actor_id) < 0)) {
            best = a;
            best_w = w;
        }
    }
    return best;
}

hgp_actor_t *
hgp_actors_reader (hgp_actors_t *self, int kind)
{
    hgp_actor_t *best = NULL;
    uint64_t best_load = 0;
    size_t n = self->nlive;
    if (n == 0)
        return NULL;
    size_t start = self->rr++ % n;
    for (size_t k = 0; k < n; k++) {
        hgp_actor_t *a = self->live [(start + k) % n];
        if (a->kind != kind || a->dead)
            continue;
        uint64_t load = (uint64_t) a->inflight.size + a->queue.size;
        if (!best || load < best_load) {
            best = a;
            best_load = load;
        }
    }
    return best;
}
