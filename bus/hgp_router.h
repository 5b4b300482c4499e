/*  hgp_router.h - one of the broker's two ROUTER sockets and the frames on
 *  it (PROTOCOL.md 4 and 5)
 *
 *  Clients speak [routing id][empty][HGPC01][body], actors
 *  [routing id][HGPA01][command][...]: a REQUEST is
 *  [token][budget + our clock][body], a HEARTBEAT [our clock]. This class
 *  builds and checks those envelopes so the broker's loop never handles a
 *  frame by hand, and owns the socket: options (ROUTER_MANDATORY, so a
 *  send to a peer that is gone fails instead of vanishing; handover;
 *  HWMs; the largest frame), CURVE domain and bind.
 *
 *  Every send is non-blocking. A send returns -1 when the peer cannot take
 *  it (gone: EHOSTUNREACH, or not reading: EAGAIN); only the first frame
 *  can fail, so a message is either sent whole or not at all.
 *
 *  A received message stays in the router's frames until the next
 *  hgp_router_recv; frames past HGP_ROUTER_PARTS are read and dropped.
 */
#ifndef HGP_ROUTER_H_INCLUDED
#define HGP_ROUTER_H_INCLUDED

#include <czmq.h>
#include "hgp_keys.h"

#define HGP_ROUTER_PARTS    6       /* frames of a message we look at       */

typedef struct _hgp_router_t hgp_router_t;

/*  A ROUTER bound at endpoint (`setting` names it in errors) for CURVE
    domain, with routing_id as its own routing id when not NULL. NULL when
    it cannot be bound; then *error_p has why (the caller frees it). */
hgp_router_t *hgp_router_new (hgp_keys_t *keys, const char *domain,
                              const char *endpoint, const char *setting,
                              int sndhwm, int rcvhwm, const char *routing_id,
                              char **error_p);

/*  Close the socket (after linger ms, see hgp_router_set_linger) */
void hgp_router_destroy (hgp_router_t **self_p);

/*  The endpoint as bound ("tcp://127.0.0.1:*" shows its port), and the
    libzmq socket, for zmq_poll */
const char *hgp_router_endpoint (hgp_router_t *self);
void *hgp_router_handle (hgp_router_t *self);

/*  How long closing waits for answers still queued, ms */
void hgp_router_set_linger (hgp_router_t *self, int linger_ms);

/*  Receive one whole message without waiting. Returns its number of
    frames, 0 when none is waiting (or the context is gone). */
int hgp_router_recv (hgp_router_t *self);

/*  Frame i (< HGP_ROUTER_PARTS, < the count) of the received message;
    frame 0 is the sender's routing id */
zmq_msg_t *hgp_router_part (hgp_router_t *self, int i);

/*  True when the message of nparts frames is a client request:
    [id][empty][HGPC01][body] */
bool hgp_router_is_client_request (hgp_router_t *self, int nparts);

/*  The command of an actor message [id][HGPA01][command]..., or -1 when
    it is not one */
int hgp_router_actor_command (hgp_router_t *self, int nparts);

/*  A token frame (8 bytes, big-endian) and back */
void hgp_router_put_token (uint8_t *out, uint64_t token);
uint64_t hgp_router_token (const uint8_t *in);

/*  Start an answer to a client: [ident][empty][HGPC01]; the body follows
    with hgp_router_send_last. -1 if the client cannot be reached (then
    nothing was sent). */
int hgp_router_client_head (hgp_router_t *self, const uint8_t *ident,
                            size_t size);

/*  The last frame of a message: bytes, or a received zmq_msg_t passed on
    without a copy */
void hgp_router_send_last (hgp_router_t *self, const void *data, size_t size);
void hgp_router_send_msg (hgp_router_t *self, zmq_msg_t *msg);

/*  A whole answer to a client; -1 if it cannot be reached */
int hgp_router_client_send (hgp_router_t *self, const uint8_t *ident,
                            size_t size, const uint8_t *body,
                            size_t body_size);

/*  Client batches (PROTOCOL.md 4.1). The answer to a request that came in
    a client's array waits here, with that client's others, until
    hgp_router_client_flush sends each client's answers as one message:
    [ident][empty][HGPC01][array of reply bodies], or the body alone when
    there is one. Both return how many answers could not be delivered
    (their client gone or not reading; a batch is sent early when it is
    full, or when too many clients have one waiting). */
size_t hgp_router_client_batch (hgp_router_t *self, const uint8_t *ident,
                                size_t size, const void *body,
                                size_t body_size);
size_t hgp_router_client_flush (hgp_router_t *self);

/*  [identity][HGPA01][cmd], and [data] when data is not NULL; -1 if the
    actor cannot be reached */
int hgp_router_actor_send (hgp_router_t *self, const uint8_t *identity,
                           size_t size, uint8_t cmd, const void *data,
                           size_t data_size);

/*  HEARTBEAT with our clock (monotonic ms) */
int hgp_router_actor_heartbeat (hgp_router_t *self, const uint8_t *identity,
                                size_t size, int64_t clock);

/*  REQUEST: token, the budget left (ms) and our clock when we sent it, so
    the actor can tell how long the request waited in its socket */
int hgp_router_actor_request (hgp_router_t *self, const uint8_t *identity,
                              size_t size, uint64_t token, uint32_t budget,
                              int64_t clock, const uint8_t *body,
                              size_t body_size);

#endif
