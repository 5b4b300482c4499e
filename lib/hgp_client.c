/*  hgp_client.c - a DEALER client of the broker's client endpoint (see .h)
 *
 *  Why it is built this way:
 *
 *  - DEALER, not REQ: a REQ socket is stuck forever when one reply is lost,
 *    and it allows one request in flight. A DEALER lets the bench keep many
 *    requests outstanding and lets hgp_client_call simply ignore a late reply
 *    to an earlier request that it already reported as a timeout.
 *  - ZMQ_IMMEDIATE: without it a message sent while the broker is down waits
 *    in a local queue and can be delivered minutes later, long after the
 *    caller was told "timeout". With it, send blocks until a connection
 *    exists, up to the request's deadline, and then fails: nothing sent.
 *  - The hot path (send, recv) uses the raw libzmq handle and one reused
 *    encode buffer: no zmsg/zframe allocations per request, so a single
 *    thread can drive the broker at full speed.
 *  - Every failure the network or the broker can cause becomes an error
 *    reply for the caller, never a default value that looks like success.
 */
#include "hgp_client.h"
#include <errno.h>

struct _hgp_client_t {
    zsock_t *dealer;            /* DEALER connected to the broker           */
    void *handle;               /* its libzmq socket, for the hot path      */
    char *endpoint;             /* where we connect, for messages           */
    hgp_buf_t buf;              /* encode buffer, reused for every request  */
    int sndtimeo;               /* ZMQ_SNDTIMEO currently set on dealer     */
    int rcvtimeo;               /* ZMQ_RCVTIMEO currently set on dealer     */
};

hgp_client_t *
hgp_client_new (const char *endpoint)
{
    assert (endpoint);
    hgp_client_t *self = (hgp_client_t *) zmalloc (sizeof (hgp_client_t));
    assert (self);
    self->dealer = zsock_new (ZMQ_DEALER);
    assert (self->dealer);
    self->handle = zsock_resolve (self->dealer);
    self->endpoint = strdup (endpoint);
    assert (self->endpoint);
    zsock_set_linger (self->dealer, 0);
    zsock_set_immediate (self->dealer, 1);
    //  A bench keeps a window of requests in flight; keep the default HWM
    //  from being the limit for any sane window
    zsock_set_sndhwm (self->dealer, 100000);
    zsock_set_rcvhwm (self->dealer, 100000);
    self->sndtimeo = -1;
    self->rcvtimeo = -1;
    if (zsock_connect (self->dealer, "%s", endpoint)) {
        int error = errno;          //  for the caller's message
        hgp_client_destroy (&self);
        errno = error;
        return NULL;
    }
    return self;
}

void
hgp_client_destroy (hgp_client_t **self_p)
{
    assert (self_p);
    hgp_client_t *self = *self_p;
    if (self) {
        zsock_destroy (&self->dealer);
        hgp_buf_clear (&self->buf);
        free (self->endpoint);
        free (self);
        *self_p = NULL;
    }
}

const char *
hgp_client_endpoint (hgp_client_t *self)
{
    assert (self);
    return self->endpoint;
}

zsock_t *
hgp_client_sock (hgp_client_t *self)
{
    assert (self);
    return self->dealer;
}

int
hgp_client_send (hgp_client_t *self, const hgp_request_t *req)
{
    assert (self);
    assert (req);
    self->buf.size = 0;
    if (hgp_request_encode (req, &self->buf)) {
        errno = EINVAL;
        return -1;
    }
    int timeout = req->timeout_ms ? (int) req->timeout_ms : HGP_TIMEOUT_DEFAULT;
    if (timeout != self->sndtimeo) {
        zsock_set_sndtimeo (self->dealer, timeout);
        self->sndtimeo = timeout;
    }
    //  Only the first frame can block or fail; once it is accepted libzmq
    //  takes the rest of the message, all or nothing
    if (zmq_send (self->handle, "", 0, ZMQ_SNDMORE) == -1)
        return -1;
    if (zmq_send (self->handle, HGP_PROTO_CLIENT, strlen (HGP_PROTO_CLIENT),
                  ZMQ_SNDMORE) == -1
    ||  zmq_send (self->handle, self->buf.data, self->buf.size, 0) == -1)
        return -1;
    return 0;
}

//  Receive one whole message, keeping its first three frames in frames [];
//  further frames are dropped. Returns the number of frames the message
//  had, or -1 (errno EAGAIN, EINTR...) with nothing kept.

static int
s_recv_frames (hgp_client_t *self, zmq_msg_t *frames, int flags)
{
    int count = 0;
    bool more = true;
    while (more) {
        zmq_msg_t scratch;
        zmq_msg_t *msg = count < 3 ? &frames [count] : &scratch;
        zmq_msg_init (msg);
        if (zmq_msg_recv (msg, self->handle, count ? 0 : flags) == -1) {
            int saved = errno;
            zmq_msg_close (msg);
            for (int i = 0; i < count && i < 3; i++)
                zmq_msg_close (&frames [i]);
            errno = saved;
            return -1;
        }
        more = zmq_msg_more (msg);
        if (msg == &scratch)
            zmq_msg_close (&scratch);
        count++;
    }
    return count;
}

int
hgp_client_recv (hgp_client_t *self, hgp_reply_t *rep, int timeout_ms)
{
    assert (self);
    assert (rep);
    hgp_reply_clear (rep);

    //  One blocking receive with ZMQ_RCVTIMEO, not a probe, a zmq_poll and
    //  a second receive: each of those is a system call or two on the
    //  mailbox, and the gateway pays them once per HTTP request
    if (timeout_ms < 0)
        timeout_ms = -1;        //  wait for ever
    if (timeout_ms != 0 && timeout_ms != self->rcvtimeo) {
        zmq_setsockopt (self->handle, ZMQ_RCVTIMEO, &timeout_ms,
                        sizeof timeout_ms);
        self->rcvtimeo = timeout_ms;
    }
    zmq_msg_t frames [3];
    int count = s_recv_frames (self, frames, timeout_ms ? 0 : ZMQ_DONTWAIT);
    if (count == -1)
        return -1;              //  errno EAGAIN when the time ran out
    int kept = count < 3 ? count : 3;
    if (count == 3
    &&  zmq_msg_size (&frames [0]) == 0
    &&  zmq_msg_size (&frames [1]) == strlen (HGP_PROTO_CLIENT)
    &&  memcmp (zmq_msg_data (&frames [1]), HGP_PROTO_CLIENT,
                strlen (HGP_PROTO_CLIENT)) == 0) {
        hgp_error_t err;
        if (hgp_reply_decode (rep, (const uint8_t *) zmq_msg_data (&frames [2]),
                              zmq_msg_size (&frames [2]), &err))
            hgp_error_set (&rep->error, HGP_STATUS_INTERNAL, "internal",
                           "undecodable reply from the broker (%s: %s); "
                           "the request's outcome is unknown",
                           err.code, err.message);
    }
    else
        hgp_error_set (&rep->error, HGP_STATUS_INTERNAL, "internal",
                       "reply from the broker is not [empty][%s][body] "
                       "(%d frames); the request's outcome is unknown",
                       HGP_PROTO_CLIENT, count);
    for (int i = 0; i < kept; i++)
        zmq_msg_close (&frames [i]);
    return 0;
}

//  A 200 reply must carry what the op promises (PROTOCOL.md §4.3); the
//  codec cannot check this because it does not know the request

static void
s_check_shape (const hgp_request_t *req, hgp_reply_t *rep)
{
    if (rep->error.status != HGP_STATUS_OK)
        return;
    const char *missing = NULL;
    switch (req->op) {
        case HGP_OP_INCR:
        case HGP_OP_GET:
            if (!rep->has_value)
                missing = "value";
            break;
        case HGP_OP_MGET:
            if (!rep->values || rep->nvalues != req->nkeys)
                missing = "one value per key";
            break;
        case HGP_OP_ACTORS:
            if (!rep->actors)
                missing = "actors";
            break;
        default:
            break;
    }
    if (missing) {
        char id [HGP_ID_MAX + 1];
        memcpy (id, rep->id, sizeof id);
        hgp_reply_clear (rep);
        memcpy (rep->id, id, sizeof id);
        hgp_error_set (&rep->error, HGP_STATUS_INTERNAL, "internal",
                       "broker replied 200 to %s without %s",
                       hgp_op_name (req->op), missing);
    }
}

static void
s_local_error (hgp_reply_t *rep, const char *id, uint16_t status,
               const char *code, const char *message)
{
    hgp_reply_clear (rep);
    snprintf (rep->id, sizeof rep->id, "%s", id);
    hgp_error_set (&rep->error, status, code, "%s", message);
}

int
hgp_client_call (hgp_client_t *self, const hgp_request_t *req,
                 hgp_reply_t *rep)
{
    assert (self);
    assert (req);
    assert (rep);
    char message [HGP_MESSAGE_MAX + 1];
    uint32_t timeout = req->timeout_ms ? req->timeout_ms : HGP_TIMEOUT_DEFAULT;
    int64_t deadline = zclock_mono () + timeout + HGP_CLIENT_GRACE_MS;

    if (hgp_client_send (self, req)) {
        int error = errno;
        if (error == EINVAL)
            snprintf (message, sizeof message,
                      "request cannot be encoded (bad id or fields)");
        else
        if (error == EAGAIN)
            snprintf (message, sizeof message, "cannot reach the broker at "
                      "%s within %u ms; request not sent", self->endpoint,
                      timeout);
        else
            snprintf (message, sizeof message, "cannot send to the broker at "
                      "%s (%s); request not sent", self->endpoint,
                      zmq_strerror (error));
        if (error == EINVAL)
            s_local_error (rep, req->id, HGP_STATUS_BAD_REQUEST, "invalid",
                           message);
        else
            s_local_error (rep, req->id, HGP_STATUS_TIMEOUT, "timeout",
                           message);
        return 0;
    }
    while (true) {
        int64_t left = deadline - zclock_mono ();
        if (left < 0)
            left = 0;
        if (hgp_client_recv (self, rep, (int) left) == 0) {
            if (streq (rep->id, req->id)
            || (rep->id [0] == 0 && rep->error.status != HGP_STATUS_OK)) {
                s_check_shape (req, rep);
                return 0;
            }
            continue;           //  a late reply to an earlier request
        }
        if (zsys_interrupted || (errno != EINTR && errno != EAGAIN))
            break;              //  Ctrl-C, or the socket is unusable
        if (zclock_mono () >= deadline)
            break;
    }
    if (zsys_interrupted)
        snprintf (message, sizeof message, "interrupted before the reply "
                  "came; outcome unknown, retry with the same id");
    else
        snprintf (message, sizeof message, "no reply from the broker at %s "
                  "within %u ms; outcome unknown, retry with the same id",
                  self->endpoint, timeout + HGP_CLIENT_GRACE_MS);
    s_local_error (rep, req->id, HGP_STATUS_TIMEOUT, "timeout", message);
    return 0;
}
