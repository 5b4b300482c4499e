/*  hgp_announcer.h - tells every broker where a process's metrics are
 *
 *  Actors say it in READY. A process that is no actor (the gateway,
 *  hgp-kafka-mock) runs an announcer: a zactor with its own client of the
 *  brokers (as the config says: static endpoint or beacons) that sends
 *  `announce` {role, metrics} to each broker it knows every
 *  HGP_ANNOUNCE_MS (PROTOCOL.md 4.5). Brokers list what they heard in the
 *  `actors` reply, so `hgp targets` can hand Prometheus every process.
 *  Nothing depends on it: a broker that is down or refuses is tried again
 *  at the next round, and a lost announce costs a scrape target for
 *  seconds, never a request.
 */
#ifndef HGP_ANNOUNCER_H_INCLUDED
#define HGP_ANNOUNCER_H_INCLUDED

#include "hgp_config.h"

typedef struct _hgp_announcer_t hgp_announcer_t;

/*  Announce role (an id) at metrics (an http:// URL) to the brokers of
    config (which may be destroyed once this returns). NULL when the
    client cannot be made (logged). */
hgp_announcer_t *hgp_announcer_new (hgp_config_t *config, const char *role,
                                    const char *metrics);
void hgp_announcer_destroy (hgp_announcer_t **self_p);

#endif
