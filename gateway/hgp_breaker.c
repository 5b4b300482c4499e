/*  hgp_breaker.c - a circuit breaker per route (see .h)
 *
 *    CLOSED --threshold outages in a row--> OPEN --open_ms--> HALF_OPEN
 *    HALF_OPEN --probe answered--> CLOSED;  --probe an outage--> OPEN
 */
#include "hgp_breaker.h"
#include <stdio.h>
#include <string.h>

static uint64_t
s_rand (uint64_t *state)
{
    uint64_t x = (*state += 0x9e3779b97f4a7c15ULL);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

void
hgp_breaker_init (hgp_breaker_t *self, int threshold, int open_ms,
                  uint64_t seed)
{
    memset (self, 0, sizeof *self);
    self->threshold = threshold;
    self->open_ms = open_ms;
    self->jitter = seed;
}

bool
hgp_breaker_is_outage (const hgp_error_t *answer)
{
    if (answer->status == HGP_STATUS_TIMEOUT)
        return true;
    return answer->status == HGP_STATUS_UNAVAILABLE
        && (strcmp (answer->code, "unavailable") == 0
         || strcmp (answer->code, "no_actor") == 0
         || strcmp (answer->code, "log_unavailable") == 0);
}

static void
s_open (hgp_breaker_t *self, const hgp_error_t *answer, int64_t now_ms)
{
    int quarter = self->open_ms / 4;
    int jitter = quarter ? (int) (s_rand (&self->jitter) % (uint64_t) (2 * quarter + 1))
                           - quarter : 0;
    self->state = HGP_BREAKER_OPEN;
    self->open_until = now_ms + self->open_ms + jitter;
    self->last = *answer;
    self->opened++;
}

bool
hgp_breaker_allow (hgp_breaker_t *self, int64_t now_ms, hgp_error_t *error,
                   int *retry_ms)
{
    if (self->state == HGP_BREAKER_CLOSED)
        return true;
    if (self->state == HGP_BREAKER_OPEN && now_ms >= self->open_until) {
        self->state = HGP_BREAKER_HALF_OPEN;
        return true;                //  the probe
    }
    int left = self->state == HGP_BREAKER_OPEN
             ? (int) (self->open_until - now_ms) : self->open_ms / 4;
    *retry_ms = left > 0 ? left : 1;
    //  a 503's code says what is down; after 504s (outcome unknown) the
    //  refusal itself is definite, so it is plain "unavailable"
    bool definite = self->last.status == HGP_STATUS_UNAVAILABLE && self->last.code [0];
    hgp_error_set (error, HGP_STATUS_UNAVAILABLE,
                   definite ? self->last.code : "unavailable",
                   "%.200s (the gateway stopped sending for %d ms after %d "
                   "such answers in a row; nothing was sent)",
                   self->last.message, self->open_ms, self->threshold);
    return false;
}

void
hgp_breaker_report (hgp_breaker_t *self, const hgp_error_t *answer,
                    int64_t now_ms)
{
    if (self->threshold <= 0)
        return;
    if (!hgp_breaker_is_outage (answer)) {
        self->state = HGP_BREAKER_CLOSED;
        self->failures = 0;
        self->last_success = now_ms;
        return;
    }
    self->failures++;
    bool quiet = !self->last_success || now_ms - self->last_success >= self->open_ms;
    if (self->state == HGP_BREAKER_HALF_OPEN
    ||  (self->state == HGP_BREAKER_CLOSED && self->failures >= self->threshold
    &&   quiet))
        s_open (self, answer, now_ms);
}
