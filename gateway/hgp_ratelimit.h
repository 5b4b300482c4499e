/*  hgp_ratelimit.h - token buckets: global, per client address, per API key
 *
 *  Section ratelimit: rate and burst (the whole gateway), per_ip_rate and
 *  per_ip_burst (each client address), per_key_rate and per_key_burst
 *  (each API key, unless its line in the keys file gives its own); a rate
 *  of 0 means unlimited (the default). A request takes one token from each
 *  bucket that applies, or from none: a request refused by one bucket
 *  costs the others nothing.
 *
 *  The per-address buckets live in a fixed table (ratelimit/table, 65536
 *  addresses): when it is full, the least recently used address gives up
 *  its bucket, so a million source addresses cost the same memory as the
 *  table. An evicted address starts again with a full burst; that is the
 *  price of bounded memory. Buckets are per gateway process, shared by its
 *  loops under one lock (uncontended with the default single loop).
 */
#ifndef HGP_RATELIMIT_H_INCLUDED
#define HGP_RATELIMIT_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "hgp_config.h"

typedef struct _hgp_ratelimit_t hgp_ratelimit_t;

/*  What a request was told, for the RateLimit headers of the IETF httpapi
    draft: the tightest bucket that applied */
typedef struct {
    bool limited;                   /* some bucket applied                  */
    bool allowed;                   /* the request may go                   */
    double limit;                   /* that bucket's burst                  */
    double remaining;               /* tokens left in it                    */
    double reset;                   /* seconds until it is full again       */
    double retry_after;             /* refused: seconds until one token     */
} hgp_ratelimit_verdict_t;

/*  From section ratelimit of config (a bad setting shows in
    hgp_config_error, as for any other) */
hgp_ratelimit_t *hgp_ratelimit_new (hgp_config_t *config);
void hgp_ratelimit_destroy (hgp_ratelimit_t **self_p);

/*  Whether any limit is configured at all (else no header is sent) */
bool hgp_ratelimit_active (hgp_ratelimit_t *self);

/*  Key buckets: forget the old ones, make count new ones with their rates
    (-1: the per_key default). After an API keys reload. */
void hgp_ratelimit_set_keys (hgp_ratelimit_t *self, size_t count,
                             const double *rates, const double *bursts);

/*  Take a token for a request from address (16 bytes: IPv6, or IPv4
    mapped) and key index (SIZE_MAX: no key), at now_us (monotonic) */
void hgp_ratelimit_take (hgp_ratelimit_t *self, const uint8_t address [16],
                         size_t key, int64_t now_us,
                         hgp_ratelimit_verdict_t *verdict);

#endif
