/*  hgp_ratelimit.c - token buckets (see .h)
 *
 *  A bucket holds up to burst tokens and gains rate tokens a second; it is
 *  brought up to date lazily, when a request looks at it. The address
 *  table is open addressing over a power of two of slots, with a window
 *  of S_PROBE slots per address: an address not found in its window takes
 *  a free slot there, or the least recently used one.
 */
#include "hgp_ratelimit.h"
#include <czmq.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

#define S_PROBE     8

typedef struct {
    double rate;
    double burst;
    double tokens;
    int64_t at_us;                  /* when tokens was last brought up to date */
} s_bucket_t;

typedef struct {
    uint8_t address [16];
    bool used;
    int64_t seen_us;                /* last request, for eviction           */
    s_bucket_t bucket;
} s_slot_t;

struct _hgp_ratelimit_t {
    pthread_mutex_t lock;
    s_bucket_t global;
    double ip_rate, ip_burst;
    double key_rate, key_burst;
    s_slot_t *slots;
    size_t nslots;
    s_bucket_t *keys;
    size_t nkeys;
    atomic_bool active;             /* some bucket has a rate: set with them */
};

static void
s_bucket_init (s_bucket_t *bucket, double rate, double burst)
{
    bucket->rate = rate;
    bucket->burst = burst > 0 ? burst : (rate > 0 ? rate : 0);
    bucket->tokens = bucket->burst;
    bucket->at_us = 0;
}

static void
s_refill (s_bucket_t *bucket, int64_t now_us)
{
    if (bucket->at_us && now_us > bucket->at_us)
        bucket->tokens = fmin (bucket->burst, bucket->tokens
                         + bucket->rate * (double) (now_us - bucket->at_us) / 1e6);
    bucket->at_us = now_us;
}

//  The tightest of the buckets that apply goes into the verdict
static void
s_note (const s_bucket_t *bucket, hgp_ratelimit_verdict_t *verdict)
{
    double remaining = floor (bucket->tokens);
    if (verdict->limited && remaining >= verdict->remaining)
        return;
    verdict->limited = true;
    verdict->limit = bucket->burst;
    verdict->remaining = remaining < 0 ? 0 : remaining;
    verdict->reset = (bucket->burst - bucket->tokens) / bucket->rate;
}

static s_bucket_t *
s_address_bucket (hgp_ratelimit_t *self, const uint8_t address [16],
                  int64_t now_us)
{
    uint64_t hash = 1469598103934665603ULL;
    for (int i = 0; i < 16; i++)
        hash = (hash ^ address [i]) * 1099511628211ULL;
    size_t mask = self->nslots - 1;
    s_slot_t *free_slot = NULL, *oldest = NULL;
    for (size_t p = 0; p < S_PROBE; p++) {
        s_slot_t *slot = &self->slots [(hash + p) & mask];
        if (slot->used && memcmp (slot->address, address, 16) == 0) {
            slot->seen_us = now_us;
            return &slot->bucket;
        }
        if (!slot->used && !free_slot)
            free_slot = slot;
        if (slot->used && (!oldest || slot->seen_us < oldest->seen_us))
            oldest = slot;
    }
    s_slot_t *slot = free_slot ? free_slot : oldest;
    memcpy (slot->address, address, 16);
    slot->used = true;
    slot->seen_us = now_us;
    s_bucket_init (&slot->bucket, self->ip_rate, self->ip_burst);
    return &slot->bucket;
}

hgp_ratelimit_t *
hgp_ratelimit_new (hgp_config_t *config)
{
    hgp_ratelimit_t *self = (hgp_ratelimit_t *) zmalloc (sizeof (hgp_ratelimit_t));
    assert (self);
    pthread_mutex_init (&self->lock, NULL);
    double rate = (double) hgp_config_int (config, "ratelimit/rate", 0, 0, 1000000000);
    double burst = (double) hgp_config_int (config, "ratelimit/burst", 0, 0, 1000000000);
    s_bucket_init (&self->global, rate, burst);
    self->ip_rate = (double) hgp_config_int (config, "ratelimit/per_ip_rate", 0, 0, 1000000000);
    self->ip_burst = (double) hgp_config_int (config, "ratelimit/per_ip_burst", 0, 0, 1000000000);
    self->key_rate = (double) hgp_config_int (config, "ratelimit/per_key_rate", 0, 0, 1000000000);
    self->key_burst = (double) hgp_config_int (config, "ratelimit/per_key_burst", 0, 0, 1000000000);
    size_t table = (size_t) hgp_config_int (config, "ratelimit/table", 65536, 16, 1 << 24);
    self->nslots = 16;
    while (self->nslots < table)
        self->nslots *= 2;
    if (self->ip_rate > 0) {
        self->slots = (s_slot_t *) calloc (self->nslots, sizeof (s_slot_t));
        assert (self->slots);
    }
    atomic_store (&self->active, rate > 0 || self->ip_rate > 0);
    return self;
}

void
hgp_ratelimit_destroy (hgp_ratelimit_t **self_p)
{
    hgp_ratelimit_t *self = *self_p;
    if (self) {
        pthread_mutex_destroy (&self->lock);
        free (self->slots);
        free (self->keys);
        free (self);
        *self_p = NULL;
    }
}

bool
hgp_ratelimit_active (hgp_ratelimit_t *self)
{
    return atomic_load (&self->active);
}

void
hgp_ratelimit_set_keys (hgp_ratelimit_t *self, size_t count,
                        const double *rates, const double *bursts)
{
    s_bucket_t *keys = count ? (s_bucket_t *) calloc (count, sizeof (s_bucket_t))
                             : NULL;
    bool keyed = false;
    for (size_t i = 0; i < count; i++) {
        bool own = rates [i] >= 0;
        s_bucket_init (&keys [i], own ? rates [i] : self->key_rate,
                       own ? bursts [i] : self->key_burst);
        keyed |= keys [i].rate > 0;
    }
    pthread_mutex_lock (&self->lock);
    free (self->keys);
    self->keys = keys;
    self->nkeys = count;
    atomic_store (&self->active, self->global.rate > 0 || self->ip_rate > 0 || keyed);
    pthread_mutex_unlock (&self->lock);
}

void
hgp_ratelimit_take (hgp_ratelimit_t *self, const uint8_t address [16],
                    size_t key, int64_t now_us,
                    hgp_ratelimit_verdict_t *verdict)
{
    memset (verdict, 0, sizeof *verdict);
    verdict->allowed = true;
    s_bucket_t *buckets [3];
    int n = 0;
    pthread_mutex_lock (&self->lock);
    if (self->global.rate > 0)
        buckets [n++] = &self->global;
    if (self->ip_rate > 0)
        buckets [n++] = s_address_bucket (self, address, now_us);
    if (key < self->nkeys && self->keys [key].rate > 0)
        buckets [n++] = &self->keys [key];
    for (int i = 0; i < n; i++) {
        s_refill (buckets [i], now_us);
        if (buckets [i]->tokens < 1) {
            verdict->allowed = false;
            double wait = (1 - buckets [i]->tokens) / buckets [i]->rate;
            if (wait > verdict->retry_after)
                verdict->retry_after = wait;
        }
    }
    //  All or none: a refused request takes nothing
    for (int i = 0; i < n && verdict->allowed; i++)
        buckets [i]->tokens -= 1;
    for (int i = 0; i < n; i++)
        s_note (buckets [i], verdict);
    pthread_mutex_unlock (&self->lock);
}
