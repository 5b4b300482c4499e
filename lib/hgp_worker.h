/*  hgp_worker.h - an actor's links to the brokers (HGPA01, PROTOCOL.md 5, 9)
 *
 *  What every actor process does on the bus, once, for the counter and the
 *  analytics actor alike: a discovery actor (lib/hgp_discovery.c: beacons,
 *  or the one static broker) tells which brokers exist, and each broker
 *  gets its own link: a DEALER to its actor endpoint, READY with the
 *  service, actor id and capacity, heartbeats both ways, and a fresh
 *  socket and READY when that broker goes silent or says DISCONNECT. A
 *  broker that discovery says left loses its link. The owner only
 *  receives REQUESTs and sends REPLYs; it polls the sockets
 *  hgp_worker_pollitems gives, and calls hgp_worker_tick when
 *  hgp_worker_wake_at is due and after each batch.
 *
 *  Cost: we announce `batch` in READY, so a broker sends what it
 *  dispatched to us in one turn as one REQUESTS message, and the replies
 *  to those go back as one REPLIES per flush: the link costs a message
 *  (a CURVE box, a wake-up) per batch, not per request. The owner sees
 *  single requests and replies either way.
 *
 *  With CURVE (bus/curve, lib/hgp_keys.h) each link is a CURVE client with
 *  our actor certificate (bus/keys/actors/<bus/actor_cert>) of the key
 *  discovery gave for that broker, and READY carries bus/cluster.
 *
 *  Like a socket, an hgp_worker_t belongs to one thread.
 */
#ifndef HGP_WORKER_H_INCLUDED
#define HGP_WORKER_H_INCLUDED

#include <czmq.h>
#include "hgp_codec.h"
#include "hgp_config.h"

#define HGP_WORKER_LINKS_MAX    64      /* brokers served at once           */
/*  Poll items hgp_worker_pollitems may fill: the links and discovery */
#define HGP_WORKER_POLL_MAX     (HGP_WORKER_LINKS_MAX + 1)

typedef struct _hgp_worker_t hgp_worker_t;

/*  One REQUEST from a broker */
typedef struct {
    uint32_t link;              /* the broker's link, answered there       */
    uint8_t token [8];          /* the broker's handle, echoed in REPLY    */
    int64_t deadline;           /* zclock_mono ms when its budget ends     */
    const uint8_t *body;        /* the client's request body               */
    size_t size;                /* bytes in body                           */
    bool batched;               /* came in REQUESTS: its REPLY waits for
                                   hgp_worker_flush, in one REPLIES        */
} hgp_work_t;

/*  Check the settings the worker uses (discovery and bus sections, the
    actor certificate, and broker/actor_endpoint for the static fallback).
    NULL when good, else one message for the operator, to free. */
char *hgp_worker_config_check (hgp_config_t *config);

/*  Start discovery; links and READYs follow as brokers are found. config
    must have passed hgp_worker_config_check and outlive the worker. */
hgp_worker_t *hgp_worker_new (hgp_config_t *config, const char *service,
                              const char *actor_id, uint32_t capacity,
                              int64_t heartbeat, int64_t liveness);

/*  Send DISCONNECT to every broker (so each hands our requests on at
    once), wait a moment for it to leave, close */
void hgp_worker_destroy (hgp_worker_t **self_p);

/*  The actor's metrics URL, told in every READY from now on (call it
    right after _new, before the first link, so every broker hears it) */
void hgp_worker_set_metrics (hgp_worker_t *self, const char *url);

/*  Put the sockets to poll for input into items (room for
    HGP_WORKER_POLL_MAX); returns how many. Do not read or write them:
    when any is readable, call hgp_worker_recv until it returns 0, then
    hgp_worker_tick. The set changes only in hgp_worker_tick. */
size_t hgp_worker_pollitems (hgp_worker_t *self, zmq_pollitem_t *items);

/*  Receive the next REQUEST from any broker without waiting: 1 and work
    filled (its body stays valid until the next call), or 0 when nothing
    is waiting. Links are tried in turn from a start that moves on every
    tick, so a busy broker cannot starve another. A link that got
    DISCONNECT is skipped until the next tick connects it again (replies
    until then still go out on the old socket; the broker drops what it
    no longer wants). A malformed REQUEST with a token is returned with
    body NULL: answer it 400 malformed. Heartbeats are consumed here. */
int hgp_worker_recv (hgp_worker_t *self, hgp_work_t *work);

/*  Send a REPLY for work's token on the link it came from (dropped when
    that broker has left since: it answered its client already) */
void hgp_worker_reply (hgp_worker_t *self, const hgp_work_t *work,
                       const void *body, size_t size);

/*  Send the replies collected for REQUESTS, one REPLIES per broker.
    hgp_worker_tick does it first; call it when a batch is answered. */
void hgp_worker_flush (hgp_worker_t *self);

/*  True when requests were read from a socket and not all returned yet:
    poll would not say so, so call hgp_worker_recv (hgp_worker_wake_at is
    now meanwhile) */
bool hgp_worker_pending (hgp_worker_t *self);

/*  Brokers joining and leaving, heartbeats, reconnect after silence or
    DISCONNECT. Cheap; call it when hgp_worker_wake_at is due, and after
    each batch. */
void hgp_worker_tick (hgp_worker_t *self);

/*  When the next tick is due, zclock_mono ms */
int64_t hgp_worker_wake_at (hgp_worker_t *self);

/*  Brokers served now */
size_t hgp_worker_links (hgp_worker_t *self);

#endif
