/*  hgp_worker.c - an actor's link to the broker (see .h)
 *
 *  Sends never block (ZMQ_DONTWAIT): a broker that does not read is a dead
 *  broker, and the heartbeat expiry replaces the socket. Only the first
 *  frame of a message can fail at the high-water mark; libzmq takes the
 *  rest all or nothing.
 */
#include "hgp_worker.h"

struct _hgp_worker_t {
    zsock_t *dealer;            /* to the broker's actor endpoint          */
    char *endpoint;             /* broker/actor_endpoint                   */
    hgp_ready_t ready;          /* what we announce                        */
    int64_t heartbeat;          /* heartbeat/interval, ms                  */
    int64_t expiry;             /* silence after which the broker is dead  */
    int64_t heartbeat_at;       /* next HEARTBEAT due                      */
    int64_t expiry_at;          /* broker dead if silent until then        */
    bool lost;                  /* reconnected after silence, not heard    */
    bool disconnected;          /* got DISCONNECT: reconnect on next tick  */
    zmsg_t *msg;                /* the REQUEST last returned               */
    hgp_buf_t buf;              /* READY body                              */
};

static void
s_send (hgp_worker_t *self, uint8_t command, const void *a, size_t asize,
        const void *b, size_t bsize)
{
    struct { const void *data; size_t size; } frames [4] = {
        { HGP_PROTO_ACTOR, strlen (HGP_PROTO_ACTOR) },
        { &command, 1 },
        { a, asize },
        { b, bsize }
    };
    size_t nframes = b ? 4 : a ? 3 : 2;
    void *socket = zsock_resolve (self->dealer);
    for (size_t i = 0; i < nframes; i++) {
        int flags = ZMQ_DONTWAIT | (i + 1 < nframes ? ZMQ_SNDMORE : 0);
        if (zmq_send (socket, frames [i].data, frames [i].size, flags) == -1) {
            //  The broker is not reading; it answers 504 for a lost REPLY
            zsys_warning ("broker: cannot send command %d: %s", command,
                          zmq_strerror (zmq_errno ()));
            return;
        }
    }
}

static void
s_connect (hgp_worker_t *self)
{
    zsock_destroy (&self->dealer);
    self->dealer = zsock_new (ZMQ_DEALER);
    assert (self->dealer);
    //  The broker holds at most capacity requests here; room for their
    //  replies and heartbeats on top
    int hwm = (int) self->ready.capacity + 1000;
    zsock_set_sndhwm (self->dealer, hwm);
    zsock_set_rcvhwm (self->dealer, hwm);
    zsock_set_rcvtimeo (self->dealer, 0);       //  we only read when ready
    zsock_set_linger (self->dealer, 0);
    int rc = zsock_connect (self->dealer, "%s", self->endpoint);
    assert (rc == 0);                   //  the owner checked the endpoint
    self->buf.size = 0;
    rc = hgp_ready_encode (&self->ready, &self->buf);
    assert (rc == 0);
    s_send (self, HGP_CMD_READY, self->buf.data, self->buf.size, NULL, 0);
    int64_t now = zclock_mono ();
    self->heartbeat_at = now + self->heartbeat;
    self->expiry_at = now + self->expiry;
    self->disconnected = false;
}

hgp_worker_t *
hgp_worker_new (const char *endpoint, const char *service,
                const char *actor_id, uint32_t capacity, int64_t heartbeat,
                int64_t liveness)
{
    hgp_worker_t *self = (hgp_worker_t *) zmalloc (sizeof (hgp_worker_t));
    assert (self);
    self->endpoint = strdup (endpoint);
    snprintf (self->ready.service, sizeof self->ready.service, "%s", service);
    snprintf (self->ready.actor_id, sizeof self->ready.actor_id, "%s",
              actor_id);
    self->ready.capacity = capacity;
    self->heartbeat = heartbeat;
    self->expiry = heartbeat * liveness;
    s_connect (self);
    return self;
}

void
hgp_worker_destroy (hgp_worker_t **self_p)
{
    assert (self_p);
    hgp_worker_t *self = *self_p;
    if (self) {
        s_send (self, HGP_CMD_DISCONNECT, NULL, 0, NULL, 0);
        zsock_set_linger (self->dealer, (int) MIN (self->heartbeat, 1000));
        zsock_destroy (&self->dealer);
        zmsg_destroy (&self->msg);
        hgp_buf_clear (&self->buf);
        free (self->endpoint);
        free (self);
        *self_p = NULL;
    }
}

zsock_t *
hgp_worker_sock (hgp_worker_t *self)
{
    return self->dealer;
}

int
hgp_worker_recv (hgp_worker_t *self, hgp_work_t *work)
{
    zmsg_destroy (&self->msg);
    while (!self->disconnected) {
        zmsg_t *msg = zmsg_recv (self->dealer);
        if (!msg)
            return 0;                   //  drained
        self->expiry_at = zclock_mono () + self->expiry;
        if (self->lost) {
            zsys_info ("broker: heard from %s again", self->endpoint);
            self->lost = false;
        }
        zframe_t *signature = zmsg_first (msg);
        zframe_t *command = zmsg_next (msg);
        if (!command || !zframe_streq (signature, HGP_PROTO_ACTOR)
        ||  zframe_size (command) != 1) {
            zsys_warning ("broker: dropped a message that is not %s",
                          HGP_PROTO_ACTOR);
            zmsg_destroy (&msg);
            continue;
        }
        uint8_t cmd = zframe_data (command) [0];
        if (cmd == HGP_CMD_DISCONNECT) {
            zsys_info ("broker: got DISCONNECT, sending READY again");
            self->disconnected = true;
            zmsg_destroy (&msg);
            return 0;
        }
        if (cmd != HGP_CMD_REQUEST) {
            if (cmd != HGP_CMD_HEARTBEAT)
                zsys_warning ("broker: dropped unknown command %d", cmd);
            zmsg_destroy (&msg);
            continue;
        }
        zframe_t *token = zmsg_next (msg);
        zframe_t *budget = zmsg_next (msg);
        zframe_t *body = zmsg_next (msg);
        if (!token || zframe_size (token) != sizeof work->token) {
            //  No token, no way to answer: the broker times it out (504)
            zsys_warning ("broker: dropped a REQUEST without an 8-byte token");
            zmsg_destroy (&msg);
            continue;
        }
        memcpy (work->token, zframe_data (token), sizeof work->token);
        work->body = NULL;
        work->size = 0;
        work->deadline = zclock_mono ();
        if (budget && zframe_size (budget) == 4 && body && !zmsg_next (msg)) {
            const uint8_t *b = zframe_data (budget);
            uint32_t ms = (uint32_t) b [0] << 24 | (uint32_t) b [1] << 16
                        | (uint32_t) b [2] << 8 | (uint32_t) b [3];
            work->deadline += ms;
            work->body = zframe_data (body);
            work->size = zframe_size (body);
        }
        self->msg = msg;
        return 1;
    }
    return 0;
}

void
hgp_worker_reply (hgp_worker_t *self, const uint8_t *token, const void *body,
                  size_t size)
{
    s_send (self, HGP_CMD_REPLY, token, 8, body, size);
}

void
hgp_worker_tick (hgp_worker_t *self)
{
    if (self->disconnected) {
        s_connect (self);
        return;
    }
    int64_t now = zclock_mono ();
    if (now >= self->expiry_at) {
        if (!self->lost)
            zsys_warning ("broker: silent for %lld ms, connecting again to %s",
                          (long long) self->expiry, self->endpoint);
        self->lost = true;
        s_connect (self);
    }
    else
    if (now >= self->heartbeat_at) {
        s_send (self, HGP_CMD_HEARTBEAT, NULL, 0, NULL, 0);
        self->heartbeat_at = now + self->heartbeat;
    }
}

int64_t
hgp_worker_wake_at (hgp_worker_t *self)
{
    return self->disconnected ? zclock_mono ()
                              : MIN (self->heartbeat_at, self->expiry_at);
}
