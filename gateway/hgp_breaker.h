/*  hgp_breaker.h - a circuit breaker per route, so an outage fails fast
 *
 *  When a dependency hangs (Redis stopped, Kafka paused), each bus call
 *  waits for the actor's own timeout (about a second) or the deadline
 *  before it fails, and every client keeps paying that. A breaker counts a
 *  route's consecutive outage answers (503 unavailable, no_actor or
 *  log_unavailable; 504 timeout; not busy, which is load): at
 *  gateway/breaker_failures in a row, with no success for breaker_ms, it
 *  opens for breaker_ms, jittered by up to a quarter either way so many
 *  gateways do not probe in step. ("No success" keeps a failover blip
 *  closed: an actor killed under load times out the few requests it held
 *  while the others keep succeeding.) While open, the route's
 *  requests are answered at once with the last outage's code, nothing is
 *  sent (so nothing is applied) and Retry-After says when to come back.
 *  Then one request goes through as a probe (half-open): an answer that is
 *  not an outage closes the breaker, an outage opens it again.
 *
 *  One breaker per route per event loop (a loop's calls are its own), so
 *  no lock; with several loops each learns the outage on its own.
 */
#ifndef HGP_BREAKER_H_INCLUDED
#define HGP_BREAKER_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>
#include "hgp_codec.h"

typedef enum {
    HGP_BREAKER_CLOSED = 0,         /* calls go through                     */
    HGP_BREAKER_OPEN,               /* calls are refused until open_until   */
    HGP_BREAKER_HALF_OPEN           /* one probe is out                     */
} hgp_breaker_state_t;

typedef struct {
    hgp_breaker_state_t state;
    int failures;                   /* outage answers in a row              */
    int threshold;                  /* ... that open it; 0: never           */
    int open_ms;                    /* how long it stays open (± 25 %)      */
    int64_t open_until;             /* ms, monotonic                        */
    int64_t last_success;           /* ms, monotonic; 0: none yet           */
    uint64_t jitter;                /* random state for the jitter          */
    hgp_error_t last;               /* the outage that opened it            */
    uint64_t opened;                /* times it opened, for metrics         */
} hgp_breaker_t;

void hgp_breaker_init (hgp_breaker_t *self, int threshold, int open_ms,
                       uint64_t seed);

/*  May a call go now? false: refused, *error filled with a 503 in the last
    outage's code, and *retry_ms when to come back. true for the probe of a
    half-open breaker (the caller must then report its answer). */
bool hgp_breaker_allow (hgp_breaker_t *self, int64_t now_ms,
                        hgp_error_t *error, int *retry_ms);

/*  The answer of a call that was allowed */
void hgp_breaker_report (hgp_breaker_t *self, const hgp_error_t *answer,
                         int64_t now_ms);

/*  Whether an answer counts as an outage */
bool hgp_breaker_is_outage (const hgp_error_t *answer);

#endif
