/*  hgp_sums.h - what a batch of events adds to the rankings and series,
 *  summed per Redis target
 *
 *  The analytics actor folds events into sorted sets (all-time, the two
 *  windows' buckets, trending epochs) and per-resource minute hashes
 *  (PROTOCOL.md section 7), and adds users to each counter's HyperLogLog
 *  of distinct users (hgp:a:u:..., PFADD: adding one twice changes
 *  nothing, so a user is listed once per batch). Judged one by one inside Redis, every event
 *  costs the fold script its arguments, its key names and its table work:
 *  about 25 us of Redis per event. This class does that arithmetic in the
 *  actor instead: each event's contributions are added up per (key,
 *  member) and per (key, field), with each key's expiry, exactly as
 *  analytics_fold.lua would, and the result is handed to
 *  analytics_merge.lua as a list of targets (its comment is the format).
 *  Redis then runs one command per distinct target, not per event.
 *
 *  Numbers the fold script computes as Lua doubles (bucket indexes,
 *  expiries) are computed here as doubles by the same formulas and
 *  written as Lua writes them ("%.14g"), so both paths name the same keys
 *  and set the same expiries. Integer sums are int64 (exact); trending
 *  increments are doubles summed in the events' order, written with 17
 *  digits.
 */
#ifndef HGP_SUMS_H_INCLUDED
#define HGP_SUMS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _hgp_sums_t hgp_sums_t;

//  What the sums depend on (analytics settings, all in ms)
typedef struct {
    int64_t window [2];         /* window_1h, window_24h                   */
    int64_t half_life;          /* trending half-life                      */
    int64_t epoch;              /* trending epoch (half_life * 16)         */
    int64_t bucket;             /* minute hash bucket width                */
    int64_t span;               /* how far back the minute hashes keep     */
} hgp_sums_settings_t;

//  Deltas at or beyond this (in absolute value) are not summed here: the
//  fold script handles them event by event (as exact text)
#define HGP_SUMS_DELTA_MAX  ((int64_t) 1 << 39)

hgp_sums_t *
    hgp_sums_new (const hgp_sums_settings_t *settings);
void
    hgp_sums_destroy (hgp_sums_t **self_p);

//  Forget every target; now (ms, wall clock) is the fold's time, as the
//  fold script's ARGV[1]
void
    hgp_sums_reset (hgp_sums_t *self, int64_t now);

//  Add one event (counter type, resource, delta, timestamp in ms, and
//  the user to count among the counter's distinct users, or NULL). -1
//  (nothing added) when |delta| >= HGP_SUMS_DELTA_MAX
int
    hgp_sums_add (hgp_sums_t *self, const char *type, const char *resource,
                  int64_t delta, int64_t ts, const char *user);

//  The targets as analytics_merge.lua's trailing arguments; valid until
//  the next reset or add. *argc gets their count.
const char **
    hgp_sums_args (hgp_sums_t *self, size_t **argvlen, size_t *argc);

//  The key of the HyperLogLog of a counter's users, into key (size bytes:
//  2 * HGP_ID_MAX + 32 holds any); the one the targets name
void
    hgp_sums_users_key (char *key, size_t size, const char *resource,
                        const char *type);

//  Distinct targets (members and fields) held now
size_t
    hgp_sums_targets (hgp_sums_t *self);

#endif
