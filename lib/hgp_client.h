/*  hgp_client.h - a client of the broker's client endpoint (HGPC01)
 *
 *  One DEALER socket connected to the broker. The same class serves the CLI
 *  (one request at a time, hgp_client_call), the HTTP gateway (one client
 *  per worker thread) and the bench (many requests in flight with
 *  hgp_client_send / hgp_client_recv, matched by id). Like every socket, a
 *  client belongs to one thread.
 *
 *  hgp_client_call never leaves the caller without an answer: whatever goes
 *  wrong locally becomes an error reply (status, code, message), so the
 *  caller prints or forwards one struct. A request that may have reached the
 *  broker but got no answer in time is 504 "timeout": indeterminate, retry
 *  with the same id (PROTOCOL.md §4.6). It is never reported as a success.
 *
 *  Replies are written into a caller's hgp_reply_t. It must have been set
 *  up with hgp_reply_init once; the client clears it before filling it, so
 *  the same struct can be reused without leaks. Clear it when done.
 */
#ifndef HGP_CLIENT_H_INCLUDED
#define HGP_CLIENT_H_INCLUDED

#include <czmq.h>
#include "hgp_codec.h"

/*  Extra milliseconds hgp_client_call waits past the request's deadline, so
    the broker's own 504 (or a last-moment reply) can arrive first */
#define HGP_CLIENT_GRACE_MS  250

typedef struct _hgp_client_t hgp_client_t;

/*  Connect to endpoint (e.g. "tcp://127.0.0.1:5555"). NULL (errno set) if
    the endpoint is not valid. Connecting is asynchronous: an absent broker shows up as
    timeouts, not here. */
hgp_client_t *hgp_client_new (const char *endpoint);

void hgp_client_destroy (hgp_client_t **self_p);

/*  The endpoint given to new */
const char *hgp_client_endpoint (hgp_client_t *self);

/*  The DEALER socket, for zpoller / zmq_poll (readable = a reply waits).
    Do not send or receive on it directly. */
zsock_t *hgp_client_sock (hgp_client_t *self);

/*  Send one request without waiting for the reply. Blocks at most
    req->timeout_ms while the broker cannot be reached (then nothing was
    sent). 0 when sent; -1 when req cannot be encoded (errno EINVAL) or was
    not sent (errno from libzmq, EAGAIN when the broker is unreachable). */
int hgp_client_send (hgp_client_t *self, const hgp_request_t *req);

/*  Receive the next reply, whatever its id, waiting at most timeout_ms
    (0: do not wait, -1: forever). 0 and a filled rep, or -1 on timeout or
    interrupt (rep cleared). A reply that cannot be decoded is still
    returned, as status 500 "internal" with id "". */
int hgp_client_recv (hgp_client_t *self, hgp_reply_t *rep, int timeout_ms);

/*  Send req and wait for the reply with its id, until req->timeout_ms plus
    HGP_CLIENT_GRACE_MS. Replies to other ids (left over from earlier calls)
    are dropped; an error reply with id "" (the broker could not read our
    request, or we could not read its reply) is taken as the answer. Always
    returns 0 with rep filled:
    - the broker's reply, checked to carry what req->op needs (a 200 without
      its value becomes 500 "internal");
    - 504 "timeout" when no reply came in time or the broker was unreachable
      (indeterminate: retry with the same id);
    - 400 "invalid" when req cannot be encoded (nothing sent). */
int hgp_client_call (hgp_client_t *self, const hgp_request_t *req,
                     hgp_reply_t *rep);

#endif
