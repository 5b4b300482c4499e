/*  hgp_router.c - a broker ROUTER socket and its frames (see hgp_router.h)
 *
 *  Raw libzmq calls on the socket's handle rather than zmsg_t: the broker
 *  sends and receives every request twice, and a zmsg_t costs an
 *  allocation per frame.
 */
#include "hgp_router.h"
#include "hgp_codec.h"

#define FRAME_MAX   (4 * HGP_BODY_MAX)      /* bigger frames drop the peer  */
#define MORE        (ZMQ_SNDMORE | ZMQ_DONTWAIT)
#define BATCHES     32                      /* clients with answers waiting */
#define BATCH_BYTES (256 * 1024)            /* send a client's batch past it */

/*  One client's answers waiting to go as one array */
typedef struct {
    uint8_t ident [255];        /* the client's routing id                  */
    uint8_t ident_size;
    uint32_t count;             /* reply bodies in buf                      */
    size_t start;               /* where buf's array header is              */
    hgp_buf_t buf;              /* the array: header, then the bodies       */
} s_batch_t;

struct _hgp_router_t {
    zsock_t *sock;              /* the ROUTER                               */
    void *handle;               /* its libzmq handle                        */
    char *endpoint;             /* as bound                                 */
    zmq_msg_t part [HGP_ROUTER_PARTS];  /* frames of the message received  */
    zmq_msg_t extra;            /* sink for frames beyond them              */
    s_batch_t batch [BATCHES];  /* client answers waiting, [0, nbatches)    */
    size_t nbatches;
    size_t last;                /* the batch used last (answers cluster)    */
};

static const uint8_t s_empty [1] = { 0 };

hgp_router_t *
hgp_router_new (hgp_keys_t *keys, const char *domain, const char *endpoint,
                const char *setting, int sndhwm, int rcvhwm,
                const char *routing_id, char **error_p)
{
    assert (error_p);
    zsock_t *sock = zsock_new (ZMQ_ROUTER);
    if (!sock) {
        *error_p = zsys_sprintf ("cannot create a socket: %s",
                                 zmq_strerror (errno));
        return NULL;
    }
    //  What a ROUTER client sees as our routing id (PROTOCOL.md 9.3):
    //  the broker id of our beacon, so it can address us by it
    if (routing_id)
        zsock_set_identity (sock, routing_id);
    zsock_set_router_mandatory (sock, 1);
    zsock_set_router_handover (sock, 1);
    zsock_set_sndhwm (sock, sndhwm);
    zsock_set_rcvhwm (sock, rcvhwm);
    zsock_set_maxmsgsize (sock, FRAME_MAX);
    hgp_keys_server_apply (keys, sock, domain);
    if (zsock_bind (sock, "%s", endpoint) == -1) {
        *error_p = zsys_sprintf ("cannot bind %s '%s': %s", setting, endpoint,
                                 zmq_strerror (errno));
        zsock_destroy (&sock);
        return NULL;
    }
    hgp_router_t *self = (hgp_router_t *) zmalloc (sizeof (hgp_router_t));
    assert (self);
    self->sock = sock;
    self->handle = zsock_resolve (sock);
    self->endpoint = zsock_last_endpoint (sock);
    if (!self->endpoint)
        self->endpoint = strdup (endpoint);
    for (int i = 0; i < HGP_ROUTER_PARTS; i++)
        zmq_msg_init (&self->part [i]);
    zmq_msg_init (&self->extra);
    return self;
}

void
hgp_router_destroy (hgp_router_t **self_p)
{
    assert (self_p);
    hgp_router_t *self = *self_p;
    if (!self)
        return;
    for (int i = 0; i < HGP_ROUTER_PARTS; i++)
        zmq_msg_close (&self->part [i]);
    zmq_msg_close (&self->extra);
    for (size_t i = 0; i < BATCHES; i++)
        hgp_buf_clear (&self->batch [i].buf);
    zsock_destroy (&self->sock);
    zstr_free (&self->endpoint);
    free (self);
    *self_p = NULL;
}

const char *
hgp_router_endpoint (hgp_router_t *self)
{
    return self->endpoint;
}

void *
hgp_router_handle (hgp_router_t *self)
{
    return self->handle;
}

void
hgp_router_set_linger (hgp_router_t *self, int linger_ms)
{
    zsock_set_linger (self->sock, linger_ms);
}

int
hgp_router_recv (hgp_router_t *self)
{
    int n = 0;
    while (true) {
        zmq_msg_t *msg = n < HGP_ROUTER_PARTS ? &self->part [n] : &self->extra;
        if (zmq_msg_recv (msg, self->handle, ZMQ_DONTWAIT) == -1)
            return n;           //  EAGAIN on the first frame, or ETERM
        n++;
        if (!zmq_msg_more (msg))
            return n;
    }
}

zmq_msg_t *
hgp_router_part (hgp_router_t *self, int i)
{
    assert (i >= 0 && i < HGP_ROUTER_PARTS);
    return &self->part [i];
}

static bool
s_is (zmq_msg_t *msg, const char *proto)
{
    return zmq_msg_size (msg) == 6 && memcmp (zmq_msg_data (msg), proto, 6) == 0;
}

bool
hgp_router_is_client_request (hgp_router_t *self, int nparts)
{
    return nparts == 4 && zmq_msg_size (&self->part [1]) == 0
        && s_is (&self->part [2], HGP_PROTO_CLIENT);
}

int
hgp_router_actor_command (hgp_router_t *self, int nparts)
{
    if (nparts < 3 || !s_is (&self->part [1], HGP_PROTO_ACTOR)
    ||  zmq_msg_size (&self->part [2]) != 1)
        return -1;
    return *(uint8_t *) zmq_msg_data (&self->part [2]);
}

void
hgp_router_put_token (uint8_t *out, uint64_t token)
{
    for (int i = 0; i < 8; i++)
        out [i] = (uint8_t) (token >> (56 - 8 * i));
}

uint64_t
hgp_router_token (const uint8_t *in)
{
    uint64_t token = 0;
    for (int i = 0; i < 8; i++)
        token = (token << 8) | in [i];
    return token;
}

int
hgp_router_client_head (hgp_router_t *self, const uint8_t *ident, size_t size)
{
    if (zmq_send (self->handle, ident, size, MORE) == -1)
        return -1;
    zmq_send (self->handle, s_empty, 0, MORE);
    zmq_send (self->handle, HGP_PROTO_CLIENT, 6, MORE);
    return 0;
}

void
hgp_router_send_last (hgp_router_t *self, const void *data, size_t size)
{
    zmq_send (self->handle, data, size, ZMQ_DONTWAIT);
}

void
hgp_router_send_msg (hgp_router_t *self, zmq_msg_t *msg)
{
    zmq_msg_send (msg, self->handle, ZMQ_DONTWAIT);
}

int
hgp_router_client_send (hgp_router_t *self, const uint8_t *ident, size_t size,
                        const uint8_t *body, size_t body_size)
{
    if (hgp_router_client_head (self, ident, size))
        return -1;
    hgp_router_send_last (self, body, body_size);
    return 0;
}

//  Send one client's batch; the number of answers lost
static size_t
s_batch_send (hgp_router_t *self, s_batch_t *batch)
{
    size_t lost = 0;
    hgp_buf_t *buf = &batch->buf;
    if (batch->count == 1)
        lost = hgp_router_client_send (self, batch->ident, batch->ident_size,
                                       buf->data + batch->start
                                       + HGP_ARRAY_HEAD,
                                       buf->size - batch->start
                                       - HGP_ARRAY_HEAD) ? 1 : 0;
    else
    if (batch->count > 1) {
        hgp_array_finish (buf, batch->start, batch->count);
        lost = hgp_router_client_send (self, batch->ident, batch->ident_size,
                                       buf->data + batch->start,
                                       buf->size - batch->start)
             ? batch->count : 0;
    }
    batch->count = 0;
    buf->size = 0;
    if (buf->alloc > BATCH_BYTES * 2)
        hgp_buf_clear (buf);            //  a rare big one: let it go
    return lost;
}

size_t
hgp_router_client_flush (hgp_router_t *self)
{
    size_t lost = 0;
    for (size_t i = 0; i < self->nbatches; i++)
        lost += s_batch_send (self, &self->batch [i]);
    self->nbatches = 0;
    self->last = 0;
    return lost;
}

static s_batch_t *
s_batch_find (hgp_router_t *self, const uint8_t *ident, size_t size)
{
    if (self->last < self->nbatches) {
        s_batch_t *batch = &self->batch [self->last];
        if (batch->ident_size == size && memcmp (batch->ident, ident, size) == 0)
            return batch;
    }
    for (size_t i = 0; i < self->nbatches; i++) {
        s_batch_t *batch = &self->batch [i];
        if (batch->ident_size == size && memcmp (batch->ident, ident, size) == 0) {
            self->last = i;
            return batch;
        }
    }
    return NULL;
}

size_t
hgp_router_client_batch (hgp_router_t *self, const uint8_t *ident,
                         size_t size, const void *body, size_t body_size)
{
    assert (size <= sizeof self->batch [0].ident);
    size_t lost = 0;
    s_batch_t *batch = s_batch_find (self, ident, size);
    if (!batch) {
        if (self->nbatches == BATCHES)
            lost += hgp_router_client_flush (self);
        self->last = self->nbatches++;
        batch = &self->batch [self->last];
        memcpy (batch->ident, ident, size);
        batch->ident_size = (uint8_t) size;
        batch->count = 0;
        batch->buf.size = 0;
    }
    if (batch->count == 0 && hgp_array_start (&batch->buf, &batch->start))
        return lost + 1;                //  out of memory: lost
    if (hgp_buf_append (&batch->buf, body, body_size)) {
        if (batch->count == 0)
            batch->buf.size = batch->start;     //  no header without a body
        return lost + 1;
    }
    batch->count++;
    if (batch->count == HGP_ARRAY_MAX || batch->buf.size >= BATCH_BYTES)
        lost += s_batch_send (self, batch);
    return lost;
}

//  [identity][HGPA01][cmd], more to follow when more
static int
s_actor_head (hgp_router_t *self, const uint8_t *identity, size_t size,
              uint8_t cmd, bool more)
{
    if (zmq_send (self->handle, identity, size, MORE) == -1)
        return -1;
    //  The rest of a message cannot fail once its first frame went in
    zmq_send (self->handle, HGP_PROTO_ACTOR, 6, MORE);
    zmq_send (self->handle, &cmd, 1, more ? MORE : ZMQ_DONTWAIT);
    return 0;
}

int
hgp_router_actor_send (hgp_router_t *self, const uint8_t *identity,
                       size_t size, uint8_t cmd, const void *data,
                       size_t data_size)
{
    if (s_actor_head (self, identity, size, cmd, data != NULL))
        return -1;
    if (data)
        hgp_router_send_last (self, data, data_size);
    return 0;
}

int
hgp_router_actor_heartbeat (hgp_router_t *self, const uint8_t *identity,
                            size_t size, int64_t clock)
{
    uint8_t frame [8];
    hgp_router_put_token (frame, (uint64_t) clock);
    return hgp_router_actor_send (self, identity, size, HGP_CMD_HEARTBEAT,
                                  frame, sizeof frame);
}

int
hgp_router_actor_request (hgp_router_t *self, const uint8_t *identity,
                          size_t size, uint64_t token, uint32_t budget,
                          int64_t clock, const uint8_t *body,
                          size_t body_size)
{
    if (s_actor_head (self, identity, size, HGP_CMD_REQUEST, true))
        return -1;
    uint8_t tok [8];
    hgp_router_put_token (tok, token);
    uint8_t bud [12] = { (uint8_t) (budget >> 24), (uint8_t) (budget >> 16),
                         (uint8_t) (budget >> 8), (uint8_t) budget };
    hgp_router_put_token (bud + 4, (uint64_t) clock);
    zmq_send (self->handle, tok, sizeof tok, MORE);
    zmq_send (self->handle, bud, sizeof bud, MORE);
    hgp_router_send_last (self, body, body_size);
    return 0;
}
