/*  hgp_worker.h - an actor's link to the broker (HGPA01, PROTOCOL.md 5)
 *
 *  What every actor process does on the bus, once: a DEALER to the
 *  broker's actor endpoint, READY with the service, actor id and capacity,
 *  heartbeats both ways, and a fresh socket and READY when the broker goes
 *  silent or says DISCONNECT. The owner only receives REQUESTs and sends
 *  REPLYs; it calls hgp_worker_tick when hgp_worker_wake_at is due and
 *  after each batch.
 *
 *  Like a socket, an hgp_worker_t belongs to one thread.
 */
#ifndef HGP_WORKER_H_INCLUDED
#define HGP_WORKER_H_INCLUDED

#include <czmq.h>
#include "hgp_codec.h"

typedef struct _hgp_worker_t hgp_worker_t;

/*  One REQUEST from the broker */
typedef struct {
    uint8_t token [8];          /* the broker's handle, echoed in REPLY    */
    int64_t deadline;           /* zclock_mono ms when its budget ends     */
    const uint8_t *body;        /* the client's request body               */
    size_t size;                /* bytes in body                           */
} hgp_work_t;

/*  Connect (asynchronously) and send READY. endpoint must be valid. */
hgp_worker_t *hgp_worker_new (const char *endpoint, const char *service,
                              const char *actor_id, uint32_t capacity,
                              int64_t heartbeat, int64_t liveness);

/*  Send DISCONNECT (so the broker hands our requests on at once), wait a
    moment for it to leave, close */
void hgp_worker_destroy (hgp_worker_t **self_p);

/*  The socket, to poll for input (do not read or write it directly) */
zsock_t *hgp_worker_sock (hgp_worker_t *self);

/*  Receive the next REQUEST without waiting: 1 and work filled (its body
    stays valid until the next call), or 0 when nothing is waiting or the
    broker said DISCONNECT (the next tick connects again; replies until
    then still go out on the old socket, the broker drops what it no
    longer wants). A malformed REQUEST with a token is returned with body
    NULL: answer it 400 malformed. Heartbeats are consumed here. */
int hgp_worker_recv (hgp_worker_t *self, hgp_work_t *work);

/*  Send a REPLY for token */
void hgp_worker_reply (hgp_worker_t *self, const uint8_t *token,
                       const void *body, size_t size);

/*  Heartbeat, reconnect after silence or DISCONNECT. Cheap; call it when
    hgp_worker_wake_at is due, and after each batch. */
void hgp_worker_tick (hgp_worker_t *self);

/*  When the next tick is due, zclock_mono ms */
int64_t hgp_worker_wake_at (hgp_worker_t *self);

#endif
