/*  hgp_mux.h - many threads' bus calls over one bus client
 *
 *  The gateway serves each HTTP connection on its own civetweb worker
 *  thread, and a socket belongs to one thread; with a client per worker,
 *  1000 workers meant 1000 connections to each broker, each message its
 *  own syscalls, CURVE box and wake-ups on both sides. A mux is one
 *  thread (a zactor) that owns one hgp_client (one DEALER, or the
 *  discovery client's ROUTER) and carries the calls of any number of
 *  threads on it, many in flight at once, matched by request id: under
 *  load libzmq then writes and reads many messages per syscall, and the
 *  broker serves one connection instead of a thousand.
 *
 *  hgp_mux_call has hgp_client_call's contract (it always answers; what
 *  may have reached the broker without an answer in time is 504 timeout)
 *  and may be called from any thread. A call costs the caller a short
 *  lock (the queue), a semaphore wait and, when the mux was idle, one
 *  eventfd write.
 */
#ifndef HGP_MUX_H_INCLUDED
#define HGP_MUX_H_INCLUDED

#include "hgp_client.h"

typedef struct _hgp_mux_t hgp_mux_t;

/*  Start a mux whose client is hgp_client_new (endpoint, keys) or, when
    events is not NULL, hgp_client_new_shared (events, where, keys). The
    strings are copied; keys must outlive the mux. NULL if the client
    could not be made (the reason is logged). */
hgp_mux_t *hgp_mux_new (const char *endpoint, const char *events,
                        const char *where, hgp_keys_t *keys);

/*  Stop the thread; calls still waiting are answered 503 unavailable
    ("the gateway is stopping") before this returns */
void hgp_mux_destroy (hgp_mux_t **self_p);

/*  Send req and wait for its reply, as hgp_client_call does. req and rep
    stay the caller's; rep must have been set up with hgp_reply_init. */
int hgp_mux_call (hgp_mux_t *self, const hgp_request_t *req,
                  hgp_reply_t *rep);

#endif
