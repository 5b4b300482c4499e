/*  hgp_announced.h - the processes that told a broker where their metrics are
 *
 *  Actors say where their metrics are in READY; every other process that
 *  wants to be scraped (the gateway, hgp-kafka-mock) sends the client op
 *  `announce` {role, metrics} every HGP_ANNOUNCE_MS (PROTOCOL.md 4.5). The
 *  broker keeps what it heard here, one entry per URL, at most
 *  HGP_PROCESSES_MAX, and forgets an entry silent for HGP_ANNOUNCE_TTL_MS;
 *  the `actors` reply lists them, so `hgp targets` finds every process
 *  that any broker sees. A full table refuses new URLs (503 busy) rather
 *  than forget live ones: an announcer cannot push others out.
 */
#ifndef HGP_ANNOUNCED_H_INCLUDED
#define HGP_ANNOUNCED_H_INCLUDED

#include "hgp_codec.h"

/*  HGP_ANNOUNCE_MS and HGP_ANNOUNCE_TTL_MS are the protocol's (codec) */

typedef struct _hgp_announced_t hgp_announced_t;

hgp_announced_t *hgp_announced_new (void);
void hgp_announced_destroy (hgp_announced_t **self_p);

/*  Heard role at metrics at now (monotonic ms): 0, or -1 when the table
    is full of other live URLs */
int hgp_announced_heard (hgp_announced_t *self, const char *role,
                         const char *metrics, int64_t now);

/*  Forget the entries silent since before now - HGP_ANNOUNCE_TTL_MS */
void hgp_announced_expire (hgp_announced_t *self, int64_t now);

size_t hgp_announced_size (hgp_announced_t *self);

/*  The live entries into rep->processes (owned by rep): 0, -1 when out
    of memory */
int hgp_announced_list (hgp_announced_t *self, int64_t now, hgp_reply_t *rep);

#endif
