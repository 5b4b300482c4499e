/*  hgp_mux.h - many bus calls in flight over one bus client, on one thread
 *
 *  The gateway's HTTP loop (gateway/hgp_http.h) serves thousands of
 *  connections on one thread and must never block on the bus: it starts a
 *  call, goes on serving, and answers the HTTP request when the call is
 *  done. A mux carries those calls over one hgp_client (one DEALER, or the
 *  discovery client's ROUTER), many in flight at once, matched by request
 *  id: under load libzmq then writes and reads many messages per syscall,
 *  and the broker serves one connection per loop instead of one per HTTP
 *  connection.
 *
 *  A call keeps hgp_client_call's promises:
 *  - it is always answered, through its done callback, exactly once: a
 *    reply, or 504 timeout once its budget and HGP_CLIENT_GRACE_MS are gone
 *    (outcome unknown), or 503 when the mux is destroyed;
 *  - a request no broker would take yet (all unreachable, or none known
 *    yet) is tried again on every run until its budget is gone, as a
 *    blocking send would have waited, without holding up the others;
 *  - two calls with the same request id in flight at once (a client's retry
 *    while its first attempt waits) cannot be told apart by their replies,
 *    so the second is sent only once the first is answered; its answer is
 *    then the record's (replayed, or id_conflict).
 *
 *  Not thread safe: a mux, its client and its callbacks belong to the
 *  thread that made them. The owner polls hgp_mux_sock and calls
 *  hgp_mux_run after anything that may have sent or received, and at the
 *  latest after the milliseconds hgp_mux_run returned.
 */
#ifndef HGP_MUX_H_INCLUDED
#define HGP_MUX_H_INCLUDED

#include "hgp_client.h"

typedef struct _hgp_mux_t hgp_mux_t;

/*  Called once a call's rep is final. It may start new calls; it must not
    destroy the mux. */
typedef void (hgp_mux_done_fn) (void *arg);

/*  A mux over client, which it takes over (and destroys) */
hgp_mux_t *hgp_mux_new (hgp_client_t *client);

/*  Answer every call still open 503 unavailable ("the gateway is
    stopping"), through its callback, then destroy the client */
void hgp_mux_destroy (hgp_mux_t **self_p);

/*  Start a call: send req (now, or as soon as a broker takes it) and
    answer into rep, then call done (arg). req and rep stay the caller's
    and must stay valid until done is called; rep must have been set up
    with hgp_reply_init. done may be called before this returns (a request
    that cannot be encoded, a mux that is stopping). */
void hgp_mux_call (hgp_mux_t *self, const hgp_request_t *req,
                   hgp_reply_t *rep, hgp_mux_done_fn *done, void *arg);

/*  The socket replies arrive on, to poll (zsock_fd for epoll) */
zsock_t *hgp_mux_sock (hgp_mux_t *self);

/*  Take the replies that arrived, retry unsent requests, expire the late:
    callbacks run from here. Returns the most milliseconds the owner may
    wait before calling it again. */
int hgp_mux_run (hgp_mux_t *self);

/*  Calls started and not yet answered */
size_t hgp_mux_open (hgp_mux_t *self);

#endif
