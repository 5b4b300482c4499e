/*  hgp_broker.c - the bus: routes client requests to counter and
 *  analytics actors
 *
 *  What it does (schemas/PROTOCOL.md sections 4-6 are the contract):
 *  every client body passes hgp_request_decode; ping and actors are
 *  answered here; incr goes to the rendezvous owner of its key and get/mget
 *  to the least busy live "counter" actor, top and stats to the least busy
 *  live "analytics" actor. Each actor holds at most
 *  `capacity` requests without a REPLY; the rest wait in its FIFO, at most
 *  broker/queue_limit, past which a new request is answered 503 busy; so
 *  is one that would take the bytes of all requests held (waiting and in
 *  flight) past broker/queue_bytes, so large bodies cannot grow us without
 *  bound.
 *
 *  Key invariants:
 *  - Every accepted request is an entry, and every entry ends in exactly
 *    one answer to its client: the actor's REPLY, forwarded unchanged, or an
 *    error made here (504 deadline, 503 no_actor, 504 when the actor that
 *    held it died and nobody can take it over). Nothing is dropped
 *    silently; only a reply the client can no longer receive is lost.
 *  - An entry is in at most one actor list: that actor's queue (waiting)
 *    or its in-flight list (sent, no REPLY yet). An in-flight entry whose
 *    deadline passes is answered 504 and becomes an orphan: it stays in the
 *    in-flight list, still counting against capacity, because the actor
 *    still holds the request (PROTOCOL.md 5.2: never more than capacity
 *    without a REPLY). Its late REPLY frees it and is dropped.
 *  - A token names one dispatch: (sequence << 24) | pool slot. Looking it
 *    up is an array index plus an equality check, no hashing; a re-dispatch
 *    gets a new sequence, so a stale REPLY can never match the new one.
 *  - An actor found dead (DISCONNECT, silence, send failure, replaced by a
 *    new READY) is only flagged where it is found; s_reap removes it and
 *    re-routes its entries once the current message or timer is done, so
 *    no list is ever changed under a walk.
 *
 *  Why it is built this way: the broker is the one hop every request takes
 *  twice, so the hot path avoids allocation and O(n) work per message:
 *  entries come from a pool of fixed chunks (stable pointers, reused data
 *  buffers), deadlines live in a timer wheel (O(1) add, remove and expiry
 *  per entry; the check every TIMER_MS touches only buckets now due),
 *  replies from actors are forwarded to clients as the same zmq_msg_t
 *  (zero copy), and sockets are drained in batches per poll. Actors are few,
 *  so they sit in a plain array. Request bodies are copied into the entry,
 *  not held as received zmq_msg_t: libzmq's zero-copy receive would pin an
 *  8 KiB receive buffer per long-waiting request.
 */
#include "hgp_broker.h"
#include "hgp_codec.h"
#include "hgp_keys.h"
#include "hgp_keyspace.h"
#include "hgp_process.h"
#include <malloc.h>

/*  Pool and token layout */
#define SLOT_BITS       24                  /* slot part of a token         */
#define SLOT_MAX        (1u << SLOT_BITS)   /* most entries at once         */
#define SLOT_MASK       (SLOT_MAX - 1)
#define CHUNK_BITS      10                  /* entries per pool chunk: 1024 */
#define CHUNK_SIZE      (1u << CHUNK_BITS)
#define KEEP_DATA       4096                /* free bigger buffers on reuse */

/*  Deadline wheel: 4096 ticks of 16 ms span 65.5 s, more than the longest
    budget (HGP_TIMEOUT_MAX), so a bucket holds one tick's deadlines */
#define WHEEL_SHIFT     4
#define WHEEL_SIZE      4096
#define WHEEL_MASK      (WHEEL_SIZE - 1)

#define TIMER_MS        50                  /* deadline + liveness checks   */
#define BATCH_CLIENTS   256                 /* client messages per poll     */
#define BATCH_ACTORS    4096                /* actor messages per poll: what
                                               we sent bounds them, and an
                                               unread heartbeat must not look
                                               like silence                 */
#define PARTS_MAX       6                   /* frames we look at            */
#define SLICE_MS        10                  /* most ms of client messages in
                                               a row: a flood of costly
                                               requests must not keep us
                                               from hearing actors          */
#define BATCH_BYTES     (256u << 10)        /* a REQUESTS frame goes out once
                                               it holds this much           */
#define TRIM_BYTES      (8u << 20)          /* held this much: give freed
                                               memory back once idle        */

/*  Socket limits. The actor SNDHWM exceeds the largest capacity (65535):
    flow control, not the HWM, bounds what we send to an actor. */
#define CLIENT_SNDHWM   100000
#define CLIENT_RCVHWM   256
#define ACTOR_SNDHWM    100000
#define ACTOR_RCVHWM    100000
#define FRAME_MAX       (4 * HGP_BODY_MAX)  /* bigger frames drop the peer  */
#define LINGER_MS       500                 /* flush final answers on exit  */

/*  The services the broker routes to; actors of any other service may
    register (and are listed) but get no requests */
#define S_KIND_OTHER        0
#define S_KIND_COUNTER      1       /* "counter": incr, get, mget           */
#define S_KIND_ANALYTICS    2       /* "analytics": top, stats              */

static int
s_kind_of_service (const char *service)
{
    return streq (service, "counter") ? S_KIND_COUNTER
         : streq (service, "analytics") ? S_KIND_ANALYTICS : S_KIND_OTHER;
}

static int
s_kind_of_op (int op)
{
    return op == HGP_OP_TOP || op == HGP_OP_STATS ? S_KIND_ANALYTICS
                                                  : S_KIND_COUNTER;
}

static const char *
s_service_of_op (int op)
{
    return s_kind_of_op (op) == S_KIND_ANALYTICS ? "analytics" : "counter";
}

typedef enum {
    ENTRY_FREE,                 /* on the free list                         */
    ENTRY_LOOSE,                /* being routed, in no actor list           */
    ENTRY_QUEUED,               /* in actor->queue                          */
    ENTRY_INFLIGHT,             /* in actor->inflight, client waiting       */
    ENTRY_ORPHAN                /* in actor->inflight, client answered 504  */
} entry_state_t;

typedef struct _entry_t entry_t;
typedef struct _actor_t actor_t;

struct _entry_t {
    uint64_t token;             /* current dispatch token, 0 if none        */
    int64_t deadline;           /* monotonic ms: receipt + timeout_ms       */
    actor_t *actor;             /* queued for or dispatched to, or NULL     */
    entry_t *prev;              /* neighbours in the actor's list           */
    entry_t *next;
    entry_t *tprev;             /* neighbours in the wheel bucket;          */
    entry_t *tnext;             /* tnext also links the free list           */
    uint8_t *data;              /* client routing id, request id, body      */
    uint32_t alloc;             /* bytes allocated at data                  */
    uint32_t body_size;         /* bytes of the request body                */
    uint32_t slot;              /* index in the pool                        */
    uint16_t bucket;            /* wheel bucket, when in_wheel              */
    uint8_t ident_size;         /* bytes of the client routing id           */
    uint8_t id_size;            /* bytes of the request id                  */
    uint8_t op;                 /* hgp_op_t                                 */
    uint8_t state;              /* entry_state_t                            */
    bool in_wheel;              /* linked in a wheel bucket                 */
    bool dispatched;            /* was ever sent: losing it now is a 504    */
};

typedef struct {
    entry_t *head;              /* oldest                                   */
    entry_t *tail;              /* newest                                   */
    uint32_t size;              /* entries in the list                      */
    size_t bytes;               /* their request bodies' bytes              */
} s_list_t;

struct _actor_t {
    uint8_t identity [256];     /* ROUTER routing id of its DEALER          */
    size_t identity_size;       /* bytes in identity                        */
    char service [HGP_ID_MAX + 1];  /* what it offers                       */
    char actor_id [HGP_ID_MAX + 1]; /* its self-chosen id                   */
    char key [HGP_KEY_TXT + 1]; /* CURVE key its READY came with, "" if off:
                                   the id is bound to it while registered  */
    int kind;                   /* S_KIND_*: which ops we route to it       */
    uint32_t capacity;          /* most requests it holds without a REPLY   */
    s_list_t queue;             /* waiting for capacity, FIFO               */
    s_list_t inflight;          /* sent, no REPLY yet (orphans included)    */
    uint64_t served;            /* REPLYs matched to a token                */
    int64_t last_heard;         /* monotonic ms of its last message         */
    bool batch;                 /* takes REQUESTS: dispatches collect in out */
    hgp_buf_t out;              /* REQUESTS entries not yet sent             */
    const char *dead;           /* why it is to be removed; NULL if alive   */
    bool warned;                /* logged one protocol error already        */
};

typedef struct {
    uint64_t requests;          /* client messages received                 */
    uint64_t replies;           /* actor replies forwarded to clients       */
    uint64_t local;             /* ping/actors answered here                */
    uint64_t invalid;           /* 400/404/413 from decoding                */
    uint64_t busy;              /* 503 busy                                 */
    uint64_t no_actor;          /* 503 no_actor                             */
    uint64_t timeouts;          /* 504 from us                              */
    uint64_t rerouted;          /* entries moved off a dead actor           */
    uint64_t late;              /* REPLYs to unknown or orphaned tokens     */
    uint64_t undeliverable;     /* answers the client could not take        */
    uint64_t joins;             /* READYs accepted                          */
    uint64_t leaves;            /* actors removed                           */
} s_stats_t;

struct _hgp_broker_t {
    hgp_keys_t *keys;           /* our keypair and bus/cluster              */
    zactor_t *zap;              /* ZAP handler: who may connect (CURVE)     */
    zsock_t *client_sock;       /* ROUTER for clients                       */
    zsock_t *actor_sock;        /* ROUTER for actors                        */
    void *clients;              /* its libzmq handle                        */
    void *actors;               /* its libzmq handle                        */
    char *client_endpoint;      /* as bound                                 */
    char *actor_endpoint;       /* as bound                                 */
    char broker_id [33];        /* random per start: beacon id and the
                                   client ROUTER's routing id              */
    uint32_t queue_limit;       /* most waiting per actor                   */
    int64_t interval;           /* heartbeat interval, ms                   */
    int64_t expiry;             /* silence after which an actor is dead     */

    actor_t **live;             /* registered actors                        */
    size_t nlive;               /* entries used in live                     */
    size_t live_alloc;          /* entries allocated in live                */
    size_t ndead;               /* actors flagged dead, not yet reaped      */
    size_t rr;                  /* rotates ties among idle readers          */

    entry_t **chunks;           /* pool: chunks of CHUNK_SIZE entries       */
    size_t nchunks;             /* chunks allocated                         */
    entry_t *free_entries;      /* free list, linked by tnext               */
    size_t nentries;            /* entries in use                           */
    size_t held_bytes;          /* request bytes held in entries in use     */
    size_t queue_bytes;         /* most request bytes held at once          */
    size_t actor_bytes;         /* most request bytes in flight per actor   */
    bool trim;                  /* held TRIM_BYTES since the last trim      */
    uint64_t seq;               /* dispatch sequence, high part of tokens   */

    entry_t *wheel [WHEEL_SIZE];/* deadline buckets                         */
    int64_t wheel_tick;         /* last tick whose bucket was expired       */

    int64_t now;                /* monotonic ms, refreshed per message      */
    int64_t next_timer;         /* next deadline/liveness check             */
    int64_t next_heartbeat;     /* next HEARTBEAT to actors                 */
    bool terminated;            /* $TERM seen                               */

    zmq_msg_t part [PARTS_MAX]; /* frames of the message being handled     */
    zmq_msg_t extra;            /* sink for frames beyond PARTS_MAX         */
    hgp_request_t req;          /* decoded client request                   */
    hgp_request_t scratch;      /* decoded body when re-routing an incr     */
    hgp_buf_t buf;              /* encoded answers, reused                  */
    s_stats_t stats;            /* for the summary line                     */
};

static const uint8_t s_cmd_request [1] = { HGP_CMD_REQUEST };
static const uint8_t s_cmd_requests [1] = { HGP_CMD_REQUESTS };
static const uint8_t s_cmd_heartbeat [1] = { HGP_CMD_HEARTBEAT };
static const uint8_t s_cmd_disconnect [1] = { HGP_CMD_DISCONNECT };


/*  --------------------------------------------------------------------
 *  Intrusive lists of entries (an actor's queue and in-flight list)
 */

static void
s_list_push (s_list_t *list, entry_t *e)
{
    e->next = NULL;
    e->prev = list->tail;
    if (list->tail)
        list->tail->next = e;
    else
        list->head = e;
    list->tail = e;
    list->size++;
    list->bytes += e->body_size;
}

static void
s_list_push_front (s_list_t *list, entry_t *e)
{
    e->prev = NULL;
    e->next = list->head;
    if (list->head)
        list->head->prev = e;
    else
        list->tail = e;
    list->head = e;
    list->size++;
    list->bytes += e->body_size;
}

static void
s_list_remove (s_list_t *list, entry_t *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        list->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        list->tail = e->prev;
    e->prev = e->next = NULL;
    list->size--;
    list->bytes -= e->body_size;
}

static entry_t *
s_list_pop (s_list_t *list)
{
    entry_t *e = list->head;
    if (e)
        s_list_remove (list, e);
    return e;
}


/*  --------------------------------------------------------------------
 *  Entry pool and deadline wheel
 */

static inline entry_t *
s_entry_at (hgp_broker_t *self, uint32_t slot)
{
    return &self->chunks [slot >> CHUNK_BITS][slot & (CHUNK_SIZE - 1)];
}

static int
s_pool_grow (hgp_broker_t *self)
{
    if ((self->nchunks + 1) * CHUNK_SIZE > SLOT_MAX)
        return -1;
    entry_t **chunks = (entry_t **) realloc (self->chunks,
                           (self->nchunks + 1) * sizeof (entry_t *));
    if (!chunks)
        return -1;
    self->chunks = chunks;
    entry_t *chunk = (entry_t *) calloc (CHUNK_SIZE, sizeof (entry_t));
    if (!chunk)
        return -1;
    self->chunks [self->nchunks] = chunk;
    uint32_t base = (uint32_t) (self->nchunks * CHUNK_SIZE);
    //  Push in reverse so low slots are used first
    for (uint32_t i = CHUNK_SIZE; i-- > 0;) {
        chunk [i].slot = base + i;
        chunk [i].tnext = self->free_entries;
        self->free_entries = &chunk [i];
    }
    self->nchunks++;
    return 0;
}

static void
s_wheel_add (hgp_broker_t *self, entry_t *e)
{
    int64_t tick = e->deadline >> WHEEL_SHIFT;
    if (tick <= self->wheel_tick)
        tick = self->wheel_tick + 1;    //  already due: next expiry run
    e->bucket = (uint16_t) (tick & WHEEL_MASK);
    entry_t **head = &self->wheel [e->bucket];
    e->tprev = NULL;
    e->tnext = *head;
    if (*head)
        (*head)->tprev = e;
    *head = e;
    e->in_wheel = true;
}

static void
s_wheel_remove (hgp_broker_t *self, entry_t *e)
{
    if (!e->in_wheel)
        return;
    if (e->tprev)
        e->tprev->tnext = e->tnext;
    else
        self->wheel [e->bucket] = e->tnext;
    if (e->tnext)
        e->tnext->tprev = e->tprev;
    e->tprev = e->tnext = NULL;
    e->in_wheel = false;
}

//  Take a free entry and copy the request into it; NULL when the pool is
//  at SLOT_MAX or memory is short
static entry_t *
s_entry_new (hgp_broker_t *self, const uint8_t *ident, size_t ident_size,
             const hgp_request_t *req, const uint8_t *body, size_t body_size)
{
    if (!self->free_entries && s_pool_grow (self))
        return NULL;
    entry_t *e = self->free_entries;
    size_t id_size = strlen (req->id);
    size_t need = ident_size + id_size + body_size;
    if (need > e->alloc) {
        size_t alloc = need < 256 ? 256 : need;
        uint8_t *data = (uint8_t *) realloc (e->data, alloc);
        if (!data)
            return NULL;
        e->data = data;
        e->alloc = (uint32_t) alloc;
    }
    self->free_entries = e->tnext;
    self->nentries++;
    self->held_bytes += need;
    if (self->held_bytes >= TRIM_BYTES)
        self->trim = true;
    memcpy (e->data, ident, ident_size);
    memcpy (e->data + ident_size, req->id, id_size);
    memcpy (e->data + ident_size + id_size, body, body_size);
    e->ident_size = (uint8_t) ident_size;
    e->id_size = (uint8_t) id_size;
    e->body_size = (uint32_t) body_size;
    e->op = (uint8_t) req->op;
    e->deadline = self->now + req->timeout_ms;
    e->token = 0;
    e->actor = NULL;
    e->prev = e->next = NULL;
    e->state = ENTRY_LOOSE;
    e->dispatched = false;
    s_wheel_add (self, e);
    return e;
}

//  Bytes of the request an entry holds (what broker/queue_bytes bounds)
static inline size_t
s_entry_bytes (const entry_t *e)
{
    return (size_t) e->ident_size + e->id_size + e->body_size;
}

//  Give an entry (in no actor list) back to the pool
static void
s_entry_free (hgp_broker_t *self, entry_t *e)
{
    assert (e->state != ENTRY_FREE);
    s_wheel_remove (self, e);
    if (e->alloc > KEEP_DATA) {
        free (e->data);
        e->data = NULL;
        e->alloc = 0;
    }
    self->held_bytes -= s_entry_bytes (e);
    e->token = 0;
    e->actor = NULL;
    e->state = ENTRY_FREE;
    e->tnext = self->free_entries;
    self->free_entries = e;
    self->nentries--;
}

static inline const uint8_t *
s_entry_body (entry_t *e)
{
    return e->data + e->ident_size + e->id_size;
}


/*  --------------------------------------------------------------------
 *  Sending to clients. A client that is gone or not reading loses its
 *  answer (counted): that is all a ROUTER can do.
 */

static void
s_client_send_head (hgp_broker_t *self, const uint8_t *ident, size_t size,
                    bool *ok)
{
    *ok = zmq_send (self->clients, ident, size,
                    ZMQ_SNDMORE | ZMQ_DONTWAIT) != -1;
    if (*ok) {
        zmq_send (self->clients, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send (self->clients, HGP_PROTO_CLIENT, 6,
                  ZMQ_SNDMORE | ZMQ_DONTWAIT);
    }
    else
        self->stats.undeliverable++;
}

static void
s_client_send (hgp_broker_t *self, const uint8_t *ident, size_t size,
               const uint8_t *body, size_t body_size)
{
    bool ok;
    s_client_send_head (self, ident, size, &ok);
    if (ok)
        zmq_send (self->clients, body, body_size, ZMQ_DONTWAIT);
}

//  Answer an error to a client: id is a C string ("" when unknown)
static void
s_client_error (hgp_broker_t *self, const uint8_t *ident, size_t size,
                const char *id, const hgp_error_t *err)
{
    self->buf.size = 0;
    hgp_reply_encode_error (id, err, &self->buf);
    s_client_send (self, ident, size, self->buf.data, self->buf.size);
}

//  Answer an entry's client with an error; the entry stays as it is
static void
s_entry_error (hgp_broker_t *self, entry_t *e, uint16_t status,
               const char *code, const char *message)
{
    char id [HGP_ID_MAX + 1];
    memcpy (id, e->data + e->ident_size, e->id_size);
    id [e->id_size] = 0;
    hgp_error_t err;
    hgp_error_set (&err, status, code, "%s", message);
    if (status == HGP_STATUS_TIMEOUT)
        self->stats.timeouts++;
    else
    if (streq (code, "no_actor"))
        self->stats.no_actor++;
    s_client_error (self, e->data, e->ident_size, id, &err);
}


/*  --------------------------------------------------------------------
 *  Sending to actors. A send that fails (peer gone: EHOSTUNREACH, or
 *  not reading at all: EAGAIN) means the actor is dead.
 */

static void
s_actor_kill (hgp_broker_t *self, actor_t *actor, const char *why)
{
    if (!actor->dead) {
        actor->dead = why;
        self->ndead++;
    }
}

//  A command to an actor, with one further frame of size bytes when data
//  is not NULL; -1 if the actor cannot be reached
static int
s_actor_send (hgp_broker_t *self, const uint8_t *identity, size_t size,
              const uint8_t *cmd, const void *data, size_t data_size)
{
    if (zmq_send (self->actors, identity, size,
                  ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1)
        return -1;
    zmq_send (self->actors, HGP_PROTO_ACTOR, 6, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (self->actors, cmd, 1, data ? ZMQ_SNDMORE | ZMQ_DONTWAIT
                                         : ZMQ_DONTWAIT);
    if (data)
        zmq_send (self->actors, data, data_size, ZMQ_DONTWAIT);
    return 0;
}

//  A command with no further frames; -1 if the actor cannot be reached
static int
s_actor_command (hgp_broker_t *self, const uint8_t *identity, size_t size,
                 const uint8_t *cmd)
{
    return s_actor_send (self, identity, size, cmd, NULL, 0);
}

//  Our monotonic clock, ms, as 8 bytes big-endian
static void
s_put_clock (uint8_t *out, int64_t now)
{
    for (int i = 0; i < 8; i++)
        out [i] = (uint8_t) ((uint64_t) now >> (56 - 8 * i));
}

//  HEARTBEAT to an actor, with our clock (PROTOCOL.md 5.3); -1 if it
//  cannot be reached
static int
s_actor_heartbeat (hgp_broker_t *self, actor_t *actor)
{
    uint8_t clock [8];
    s_put_clock (clock, self->now);
    return s_actor_send (self, actor->identity, actor->identity_size,
                         s_cmd_heartbeat, clock, sizeof clock);
}

//  Send the REQUESTS an actor has collected, as one message; -1 (the
//  entries stay in flight, and go elsewhere once it is removed) if the
//  actor cannot be reached
static int
s_actor_flush (hgp_broker_t *self, actor_t *actor)
{
    if (actor->out.size == 0)
        return 0;
    int rc = s_actor_send (self, actor->identity, actor->identity_size,
                           s_cmd_requests, actor->out.data, actor->out.size);
    actor->out.size = 0;
    return rc;
}

//  Flush every live actor's REQUESTS: once per turn of the event loop, so
//  what one turn dispatched to an actor costs one message
static void
s_flush (hgp_broker_t *self)
{
    for (size_t i = 0; i < self->nlive; i++) {
        actor_t *actor = self->live [i];
        if (!actor->dead && s_actor_flush (self, actor))
            s_actor_kill (self, actor, "unreachable");
    }
}

//  Send a REQUEST for e, or add it to the actor's REQUESTS; -1 (nothing
//  sent) if the actor cannot be reached
static int
s_dispatch (hgp_broker_t *self, actor_t *actor, entry_t *e)
{
    uint64_t token = (++self->seq << SLOT_BITS) | e->slot;
    uint8_t tok [8];
    for (int i = 0; i < 8; i++)
        tok [i] = (uint8_t) (token >> (56 - 8 * i));
    //  The budget, and our clock when we sent it (PROTOCOL.md 5.1), so an
    //  actor can tell how long the request waited in its socket. In a
    //  batch the clock is the dispatch's, a little before the send: the
    //  actor's deadline can only come earlier for it.
    uint32_t budget = (uint32_t) (e->deadline - self->now);
    if (actor->batch) {
        if (hgp_batch_put_request (&actor->out, tok, budget, self->now,
                                   s_entry_body (e), e->body_size))
            return -1;
        if (actor->out.size >= BATCH_BYTES && s_actor_flush (self, actor))
            return -1;
    }
    else {
        if (zmq_send (self->actors, actor->identity, actor->identity_size,
                      ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1)
            return -1;
        //  The rest of a message cannot fail once its first frame went in
        uint8_t bud [12] = { (uint8_t) (budget >> 24), (uint8_t) (budget >> 16),
                             (uint8_t) (budget >> 8), (uint8_t) budget };
        s_put_clock (bud + 4, self->now);
        zmq_send (self->actors, HGP_PROTO_ACTOR, 6, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send (self->actors, s_cmd_request, 1, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send (self->actors, tok, 8, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send (self->actors, bud, sizeof bud, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send (self->actors, s_entry_body (e), e->body_size, ZMQ_DONTWAIT);
    }
    e->token = token;
    e->state = ENTRY_INFLIGHT;
    e->dispatched = true;
    s_list_push (&actor->inflight, e);
    return 0;
}

//  Can the actor take the next queued entry: under its capacity, and under
//  broker/actor_bytes in flight (one entry always goes, however large)?
//  What we send sits in libzmq's buffers and the actor's until it replies,
//  so this bounds an actor's memory by bytes as capacity does by count.
static bool
s_actor_can_take (hgp_broker_t *self, actor_t *actor)
{
    return actor->queue.size && actor->inflight.size < actor->capacity
        && (actor->inflight.size == 0
        ||  actor->inflight.bytes + actor->queue.head->body_size
            <= self->actor_bytes);
}

//  Send queued entries while the actor can take them
static void
s_actor_pump (hgp_broker_t *self, actor_t *actor)
{
    while (!actor->dead && s_actor_can_take (self, actor)) {
        entry_t *e = s_list_pop (&actor->queue);
        if (e->deadline <= self->now) {
            s_entry_error (self, e, HGP_STATUS_TIMEOUT, "timeout",
                           "deadline passed while waiting for an actor");
            s_entry_free (self, e);
        }
        else
        if (s_dispatch (self, actor, e)) {
            s_list_push_front (&actor->queue, e);
            s_actor_kill (self, actor, "unreachable");
        }
    }
}


/*  --------------------------------------------------------------------
 *  Routing
 */

//  The live counter actor that owns key: highest rendezvous weight, ties
//  to the lower actor_id (PROTOCOL.md 5.4)
static actor_t *
s_route_owner (hgp_broker_t *self, const hgp_key_t *key)
{
    actor_t *best = NULL;
    uint64_t best_w = 0;
    for (size_t i = 0; i < self->nlive; i++) {
        actor_t *a = self->live [i];
        if (a->kind != S_KIND_COUNTER || a->dead)
            continue;
        uint64_t w = hgp_keyspace_weight (a->actor_id, key);
        if (!best || w > best_w
        || (w == best_w && strcmp (a->actor_id, best->actor_id) < 0)) {
            best = a;
            best_w = w;
        }
    }
    return best;
}

//  The live actor of kind with the fewest requests on it (in flight plus
//  waiting); ties rotate so idle readers share the load
static actor_t *
s_route_reader (hgp_broker_t *self, int kind)
{
    actor_t *best = NULL;
    uint64_t best_load = 0;
    size_t n = self->nlive;
    if (n == 0)
        return NULL;
    size_t start = self->rr++ % n;
    for (size_t k = 0; k < n; k++) {
        actor_t *a = self->live [(start + k) % n];
        if (a->kind != kind || a->dead)
            continue;
        uint64_t load = (uint64_t) a->inflight.size + a->queue.size;
        if (!best || load < best_load) {
            best = a;
            best_load = load;
        }
    }
    return best;
}

//  Put a loose entry on the actor and send what it can take
static void
s_assign (hgp_broker_t *self, actor_t *actor, entry_t *e)
{
    e->actor = actor;
    e->state = ENTRY_QUEUED;
    s_list_push (&actor->queue, e);
    s_actor_pump (self, actor);
}

//  Route an entry again after its actor died. It was admitted already, so
//  the queue limit does not apply: it takes no new memory.
static void
s_reroute (hgp_broker_t *self, entry_t *e)
{
    e->state = ENTRY_LOOSE;
    e->actor = NULL;
    e->token = 0;
    if (e->deadline <= self->now) {
        s_entry_error (self, e, HGP_STATUS_TIMEOUT, "timeout",
                       e->dispatched
                       ? "deadline passed; the actor holding the request died"
                       : "deadline passed while waiting for an actor");
        s_entry_free (self, e);
        return;
    }
    actor_t *actor = NULL;
    if (e->op == HGP_OP_INCR) {
        hgp_error_t err;
        //  The body passed this decoder on arrival; it cannot fail now
        int rc = hgp_request_decode (&self->scratch, s_entry_body (e),
                                     e->body_size, &err);
        assert (rc == 0);
        actor = s_route_owner (self, &self->scratch.key);
        hgp_request_clear (&self->scratch);
    }
    else
        actor = s_route_reader (self, s_kind_of_op (e->op));
    if (actor) {
        self->stats.rerouted++;
        s_assign (self, actor, e);
    }
    else {
        char message [HGP_MESSAGE_MAX + 1];
        if (e->dispatched) {
            snprintf (message, sizeof message, "the actor holding the request"
                      " died and no %s actor is live; it may or may not have"
                      " been applied", s_service_of_op (e->op));
            s_entry_error (self, e, HGP_STATUS_TIMEOUT, "timeout", message);
        }
        else {
            snprintf (message, sizeof message, "no live actor offers the %s"
                      " service", s_service_of_op (e->op));
            s_entry_error (self, e, HGP_STATUS_UNAVAILABLE, "no_actor",
                           message);
        }
        s_entry_free (self, e);
    }
}


/*  --------------------------------------------------------------------
 *  Actor registry
 */

static actor_t *
s_actor_lookup (hgp_broker_t *self, const uint8_t *identity, size_t size)
{
    for (size_t i = 0; i < self->nlive; i++) {
        actor_t *a = self->live [i];
        if (a->identity_size == size && memcmp (a->identity, identity, size) == 0)
            return a;
    }
    return NULL;
}

//  Remove a dead actor and re-route everything it had: in flight first,
//  then its queue, keeping their order
static void
s_actor_remove (hgp_broker_t *self, actor_t *actor)
{
    size_t i = 0;
    while (self->live [i] != actor)
        i++;
    memmove (&self->live [i], &self->live [i + 1],
             (self->nlive - i - 1) * sizeof (actor_t *));
    self->nlive--;
    if (actor->dead)
        self->ndead--;
    self->stats.leaves++;

    uint64_t rerouted = self->stats.rerouted;
    uint32_t held = actor->inflight.size, waiting = actor->queue.size;
    entry_t *e;
    while ((e = s_list_pop (&actor->inflight))) {
        if (e->state == ENTRY_ORPHAN)
            s_entry_free (self, e);     //  its client has its 504
        else
            s_reroute (self, e);
    }
    while ((e = s_list_pop (&actor->queue)))
        s_reroute (self, e);
    zsys_info ("actor %s (%s) left: %s; of %u in flight and %u waiting, "
               "%llu re-routed (%zu live)",
               actor->actor_id, actor->service,
               actor->dead ? actor->dead : "removed", held, waiting,
               (unsigned long long) (self->stats.rerouted - rerouted),
               self->nlive);
    hgp_buf_clear (&actor->out);
    free (actor);
}

//  Remove every actor flagged dead; removing one can flag another (a send
//  fails while re-routing), so loop until none is left
static void
s_reap (hgp_broker_t *self)
{
    while (self->ndead) {
        actor_t *victim = NULL;
        for (size_t i = 0; i < self->nlive && !victim; i++)
            if (self->live [i]->dead)
                victim = self->live [i];
        assert (victim);
        s_actor_remove (self, victim);
    }
}

//  The live registration of actor_id, or NULL
static actor_t *
s_actor_named (hgp_broker_t *self, const char *actor_id)
{
    for (size_t i = 0; i < self->nlive; i++)
        if (streq (self->live [i]->actor_id, actor_id))
            return self->live [i];
    return NULL;
}

//  A READY the broker will not take, for a reason of identity rather than
//  form: logged, answered DISCONNECT, and nothing registered is touched
static void
s_actor_refuse (hgp_broker_t *self, const uint8_t *identity,
                size_t identity_size, const char *key, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    char *why = zsys_vprintf (fmt, args);
    va_end (args);
    zsys_warning ("READY refused: %s (key %s)", why, *key ? key : "none");
    free (why);
    s_actor_command (self, identity, identity_size, s_cmd_disconnect);
}

static void
s_actor_ready (hgp_broker_t *self, actor_t *actor, const uint8_t *identity,
               size_t identity_size, zmq_msg_t *body, int nparts)
{
    hgp_ready_t ready;
    hgp_error_t err;
    if (nparts != 4) {
        hgp_error_set (&err, HGP_STATUS_BAD_REQUEST, "malformed",
                       "READY has %d frames, want 4", nparts);
        goto reject;
    }
    if (hgp_ready_decode (&ready, (const uint8_t *) zmq_msg_data (body),
                          zmq_msg_size (body), &err))
        goto reject;
    //  Who the ZAP handler said this connection is (its public key)
    char key [HGP_KEY_TXT + 1];
    hgp_keys_user_id (&self->part [1], key, sizeof key);
    if (!streq (ready.cluster, hgp_keys_cluster (self->keys))) {
        s_actor_refuse (self, identity, identity_size, key,
                        "actor %s (%s) is of cluster '%s', this broker"
                        " serves '%s' (bus/cluster)", ready.actor_id,
                        ready.service, ready.cluster,
                        hgp_keys_cluster (self->keys));
        return;
    }
    //  An actor id belongs to the certificate that announced it, as long
    //  as it is registered: another one cannot take it over nor evict it
    actor_t *owner = s_actor_named (self, ready.actor_id);
    if (owner && owner != actor && !streq (owner->key, key)) {
        s_actor_refuse (self, identity, identity_size, key,
                        "actor id %s is registered under another"
                        " certificate", ready.actor_id);
        return;
    }
    if (actor && !streq (actor->key, key)) {
        //  libzmq cannot change a connection's key; refuse, do not trust
        s_actor_refuse (self, identity, identity_size, key,
                        "actor %s changed certificate", actor->actor_id);
        return;
    }

    if (actor) {
        if (streq (actor->actor_id, ready.actor_id)
        &&  streq (actor->service, ready.service)) {
            //  The same actor again: take the new capacity, keep its work
            if (s_actor_flush (self, actor)) {
                s_actor_kill (self, actor, "unreachable");
                return;
            }
            actor->capacity = ready.capacity;
            actor->batch = ready.batch;
            s_actor_pump (self, actor);
            return;
        }
        s_actor_kill (self, actor, "re-registered under another id");
        s_reap (self);
    }
    //  The same actor_id under another identity, same certificate: it
    //  reconnected. Flag the old registration now, reap it once the new
    //  one can take its work.
    actor_t *old = s_actor_named (self, ready.actor_id);
    if (old)
        s_actor_kill (self, old, "reconnected under a new identity");

    if (self->nlive == self->live_alloc) {
        size_t alloc = self->live_alloc ? self->live_alloc * 2 : 16;
        actor_t **live = (actor_t **) realloc (self->live,
                                               alloc * sizeof (actor_t *));
        if (!live)
            return;             //  it will time out and try again
        self->live = live;
        self->live_alloc = alloc;
    }
    actor = (actor_t *) zmalloc (sizeof (actor_t));
    if (!actor)
        return;
    memcpy (actor->identity, identity, identity_size);
    actor->identity_size = identity_size;
    strcpy (actor->service, ready.service);
    strcpy (actor->actor_id, ready.actor_id);
    strcpy (actor->key, key);
    actor->kind = s_kind_of_service (ready.service);
    actor->capacity = ready.capacity;
    actor->batch = ready.batch;
    actor->last_heard = self->now;
    self->live [self->nlive++] = actor;
    self->stats.joins++;
    zsys_info ("actor %s (%s) joined: capacity %u (%zu live)",
               actor->actor_id, actor->service, actor->capacity,
               self->nlive - (old ? 1 : 0));
    s_reap (self);
    return;

reject:
    zsys_warning ("READY refused: %s", err.message);
    if (actor)
        s_actor_kill (self, actor, "sent a bad READY");
    else
        s_actor_command (self, identity, identity_size, s_cmd_disconnect);
}

//  A REPLY (its body a whole frame, msg, or in a REPLIES frame, data):
//  forward it to the waiting client, free the slot, send more
static void
s_actor_reply (hgp_broker_t *self, actor_t *actor, const uint8_t *t,
               zmq_msg_t *msg, const uint8_t *data, size_t size)
{
    uint64_t token = 0;
    for (int i = 0; i < 8; i++)
        token = (token << 8) | t [i];
    uint32_t slot = (uint32_t) (token & SLOT_MASK);
    entry_t *e = slot < self->nchunks * CHUNK_SIZE ? s_entry_at (self, slot)
                                                   : NULL;
    if (!e || token == 0 || e->token != token || e->actor != actor) {
        self->stats.late++;         //  after a re-dispatch, or bogus
        return;
    }
    s_list_remove (&actor->inflight, e);
    actor->served++;
    if (e->state == ENTRY_ORPHAN)
        self->stats.late++;         //  its client had a 504 already
    else {
        bool ok;
        s_client_send_head (self, e->data, e->ident_size, &ok);
        if (ok) {
            if (msg)
                zmq_msg_send (msg, self->clients, ZMQ_DONTWAIT);
            else
                zmq_send (self->clients, data, size, ZMQ_DONTWAIT);
            self->stats.replies++;
        }
    }
    s_entry_free (self, e);
    s_actor_pump (self, actor);
}

static void
s_actor_protocol_error (hgp_broker_t *self, actor_t *actor, const char *what)
{
    if (!actor->warned)
        zsys_warning ("actor %s sent %s; ignoring such messages",
                      actor->actor_id, what);
    actor->warned = true;
}

//  REPLIES: each entry as a REPLY, up to the first that is not one. The
//  actor may die while we forward them (a send fails in s_actor_pump);
//  its remaining replies are then late.
static void
s_actor_replies (hgp_broker_t *self, actor_t *actor, zmq_msg_t *frame)
{
    hgp_batch_cur_t cur;
    hgp_batch_begin (&cur, (const uint8_t *) zmq_msg_data (frame),
                     zmq_msg_size (frame), true);
    hgp_batch_entry_t entry;
    int rc;
    while ((rc = hgp_batch_next (&cur, &entry)) == 1)
        s_actor_reply (self, actor, entry.token, NULL, entry.body, entry.size);
    if (rc == -1)
        s_actor_protocol_error (self, actor, "a malformed REPLIES entry");
}

static void
s_actor_message (hgp_broker_t *self, int nparts)
{
    zmq_msg_t *part = self->part;
    const uint8_t *identity = (const uint8_t *) zmq_msg_data (&part [0]);
    size_t identity_size = zmq_msg_size (&part [0]);
    actor_t *actor = s_actor_lookup (self, identity, identity_size);
    if (actor)
        actor->last_heard = self->now;     //  any message is a sign of life

    if (nparts < 3 || zmq_msg_size (&part [1]) != 6
    ||  memcmp (zmq_msg_data (&part [1]), HGP_PROTO_ACTOR, 6) != 0
    ||  zmq_msg_size (&part [2]) != 1) {
        if (actor)
            s_actor_protocol_error (self, actor, "a message without HGPA01");
        else
            s_actor_command (self, identity, identity_size,
                             s_cmd_disconnect);
        return;
    }
    uint8_t cmd = *(uint8_t *) zmq_msg_data (&part [2]);
    if (cmd == HGP_CMD_READY) {
        s_actor_ready (self, actor, identity, identity_size, &part [3],
                       nparts);
        return;
    }
    if (!actor) {
        //  A peer we do not know, or no longer know: it must start over.
        //  Never answer a DISCONNECT, or two confused peers ping-pong.
        if (cmd != HGP_CMD_DISCONNECT)
            s_actor_command (self, identity, identity_size,
                             s_cmd_disconnect);
        return;
    }
    switch (cmd) {
        case HGP_CMD_REPLY:
            if (nparts == 5 && zmq_msg_size (&part [3]) == 8)
                s_actor_reply (self, actor,
                               (const uint8_t *) zmq_msg_data (&part [3]),
                               &part [4], NULL, 0);
            else
                s_actor_protocol_error (self, actor, "a malformed REPLY");
            break;
        case HGP_CMD_REPLIES:
            if (nparts == 4)
                s_actor_replies (self, actor, &part [3]);
            else
                s_actor_protocol_error (self, actor, "a malformed REPLIES");
            break;
        case HGP_CMD_HEARTBEAT:
            break;
        case HGP_CMD_DISCONNECT:
            s_actor_kill (self, actor, "disconnected");
            break;
        default:
            s_actor_protocol_error (self, actor, "an unknown command");
    }
}


/*  --------------------------------------------------------------------
 *  Client requests
 */

static void
s_client_actors (hgp_broker_t *self, const uint8_t *ident, size_t size,
                 const char *id)
{
    hgp_reply_t rep;
    hgp_reply_init (&rep);
    strcpy (rep.id, id);
    size_t n = self->nlive < HGP_ACTORS_MAX ? self->nlive : HGP_ACTORS_MAX;
    //  Non-NULL even when empty, so the reply carries "actors": []
    rep.actors = (hgp_actor_info_t *) calloc (n ? n : 1,
                                              sizeof (hgp_actor_info_t));
    if (!rep.actors) {
        hgp_error_t err;
        hgp_error_set (&err, HGP_STATUS_INTERNAL, "internal", "out of memory");
        s_client_error (self, ident, size, id, &err);
        return;
    }
    rep.nactors = n;
    for (size_t i = 0; i < n; i++) {
        actor_t *a = self->live [i];
        hgp_actor_info_t *info = &rep.actors [i];
        strcpy (info->service, a->service);
        strcpy (info->actor_id, a->actor_id);
        info->capacity = a->capacity;
        info->inflight = a->inflight.size;
        info->queued = a->queue.size;
        int64_t idle = self->now - a->last_heard;
        info->idle_ms = idle < 0 ? 0 : idle > UINT32_MAX ? UINT32_MAX
                                                         : (uint32_t) idle;
        info->served = a->served;
    }
    self->buf.size = 0;
    hgp_reply_encode (&rep, &self->buf);
    s_client_send (self, ident, size, self->buf.data, self->buf.size);
    hgp_reply_clear (&rep);
}

static void
s_client_message (hgp_broker_t *self, int nparts)
{
    zmq_msg_t *part = self->part;
    const uint8_t *ident = (const uint8_t *) zmq_msg_data (&part [0]);
    size_t ident_size = zmq_msg_size (&part [0]);
    hgp_error_t err;
    self->stats.requests++;

    if (nparts != 4 || zmq_msg_size (&part [1]) != 0
    ||  zmq_msg_size (&part [2]) != 6
    ||  memcmp (zmq_msg_data (&part [2]), HGP_PROTO_CLIENT, 6) != 0) {
        hgp_error_set (&err, HGP_STATUS_BAD_REQUEST, "malformed",
                       "want frames [empty][HGPC01][body]");
        self->stats.invalid++;
        s_client_error (self, ident, ident_size, "", &err);
        return;
    }
    const uint8_t *body = (const uint8_t *) zmq_msg_data (&part [3]);
    size_t body_size = zmq_msg_size (&part [3]);
    hgp_request_t *req = &self->req;
    if (hgp_request_decode (req, body, body_size, &err)) {
        self->stats.invalid++;
        s_client_error (self, ident, ident_size, req->id, &err);
        hgp_request_clear (req);
        return;
    }
    if (req->op == HGP_OP_PING || req->op == HGP_OP_ACTORS) {
        self->stats.local++;
        if (req->op == HGP_OP_ACTORS)
            s_client_actors (self, ident, ident_size, req->id);
        else {
            hgp_reply_t rep;
            hgp_reply_init (&rep);
            strcpy (rep.id, req->id);
            self->buf.size = 0;
            hgp_reply_encode (&rep, &self->buf);
            s_client_send (self, ident, ident_size,
                           self->buf.data, self->buf.size);
        }
        hgp_request_clear (req);
        return;
    }
    actor_t *actor = req->op == HGP_OP_INCR
                   ? s_route_owner (self, &req->key)
                   : s_route_reader (self, s_kind_of_op (req->op));
    entry_t *e = NULL;
    if (!actor) {
        self->stats.no_actor++;
        hgp_error_set (&err, HGP_STATUS_UNAVAILABLE, "no_actor",
                       "no live actor offers the %s service",
                       s_service_of_op (req->op));
    }
    else
    if ((actor->inflight.size >= actor->capacity || actor->queue.size)
    &&   actor->queue.size >= self->queue_limit) {
        self->stats.busy++;
        hgp_error_set (&err, HGP_STATUS_UNAVAILABLE, "busy",
                       "%u requests wait for actor %s; back off",
                       actor->queue.size, actor->actor_id);
    }
    else
    if (self->held_bytes + body_size > self->queue_bytes) {
        self->stats.busy++;
        hgp_error_set (&err, HGP_STATUS_UNAVAILABLE, "busy",
                       "the broker holds %zu bytes of requests and %zu more "
                       "would pass broker/queue_bytes; back off",
                       self->held_bytes, body_size);
    }
    else
    if (!(e = s_entry_new (self, ident, ident_size, req, body, body_size))) {
        self->stats.busy++;
        hgp_error_set (&err, HGP_STATUS_UNAVAILABLE, "busy",
                       "the broker holds %zu requests, its limit; back off",
                       self->nentries);
    }
    if (e)
        s_assign (self, actor, e);
    else
        s_client_error (self, ident, ident_size, req->id, &err);
    hgp_request_clear (req);
}


/*  --------------------------------------------------------------------
 *  Timers: deadlines, actor liveness, heartbeats
 */

static void
s_entry_expire (hgp_broker_t *self, entry_t *e)
{
    s_entry_error (self, e, HGP_STATUS_TIMEOUT, "timeout",
                   e->state == ENTRY_QUEUED
                   ? "deadline passed while waiting for an actor"
                   : "deadline passed before the actor replied; "
                     "it may or may not have been applied");
    if (e->state == ENTRY_QUEUED) {
        s_list_remove (&e->actor->queue, e);
        s_entry_free (self, e);
    }
    else {
        assert (e->state == ENTRY_INFLIGHT);
        //  The actor still holds it: keep the slot until its REPLY
        e->state = ENTRY_ORPHAN;
        s_wheel_remove (self, e);
    }
}

//  Answer every entry whose deadline has passed. Only buckets of ticks
//  wholly in the past are visited; an entry of a later wheel turn (after a
//  stall) is left for its turn.
static void
s_wheel_expire (hgp_broker_t *self)
{
    int64_t last = (self->now >> WHEEL_SHIFT) - 1;
    if (last - self->wheel_tick > WHEEL_SIZE)
        self->wheel_tick = last - WHEEL_SIZE;
    while (self->wheel_tick < last) {
        self->wheel_tick++;
        entry_t *e = self->wheel [self->wheel_tick & WHEEL_MASK];
        while (e) {
            entry_t *next = e->tnext;   //  expiring e touches no other entry
            if (e->deadline <= self->now)
                s_entry_expire (self, e);
            e = next;
        }
    }
}

static void
s_timers (hgp_broker_t *self)
{
    s_wheel_expire (self);
    bool beat = self->now >= self->next_heartbeat;
    if (beat)
        self->next_heartbeat = self->now + self->interval;
    for (size_t i = 0; i < self->nlive; i++) {
        actor_t *a = self->live [i];
        if (self->now - a->last_heard > self->expiry) {
            //  It may only be stalled: tell it to start over
            s_actor_command (self, a->identity, a->identity_size,
                             s_cmd_disconnect);
            s_actor_kill (self, a, "silent too long");
        }
        else
        if (beat && s_actor_heartbeat (self, a))
            s_actor_kill (self, a, "unreachable");
    }
    s_reap (self);
    //  glibc keeps freed heap for reuse; after a burst of large requests
    //  that is most of our RSS, so hand it back once the burst is over
    if (self->trim && self->held_bytes < TRIM_BYTES / 8) {
        malloc_trim (0);
        self->trim = false;
    }
    self->next_timer = self->now + TIMER_MS;
}


/*  --------------------------------------------------------------------
 *  Event loop
 */

//  Receive one whole message from socket without waiting: its first
//  PARTS_MAX frames in self->part. Returns the number of frames, or 0.
static int
s_recv (hgp_broker_t *self, void *socket)
{
    int n = 0;
    while (true) {
        zmq_msg_t *msg = n < PARTS_MAX ? &self->part [n] : &self->extra;
        if (zmq_msg_recv (msg, socket, ZMQ_DONTWAIT) == -1)
            return n;           //  EAGAIN on the first frame, or ETERM
        n++;
        if (!zmq_msg_more (msg))
            return n;
    }
}

static void
s_pipe_command (hgp_broker_t *self, zsock_t *pipe)
{
    char *command = zstr_recv (pipe);
    if (!command)
        return;
    if (streq (command, "$TERM"))
        self->terminated = true;
    else
    if (streq (command, "STATUS"))
        zstr_send (pipe, "OK");
    else
    if (streq (command, "ENDPOINTS"))
        zstr_sendx (pipe, self->client_endpoint, self->actor_endpoint, NULL);
    else
    if (streq (command, "ID"))
        zstr_send (pipe, self->broker_id);
    else
    if (streq (command, "KEY"))
        zstr_send (pipe, hgp_keys_public (self->keys));
    else
        zsys_warning ("broker: unknown pipe command '%s'", command);
    free (command);
}

//  Answer everything pending and tell actors to start over (with the next
//  broker). In flight: 504, it may have been applied. Waiting, never sent:
//  503 no_actor, it was not.
static void
s_shutdown (hgp_broker_t *self)
{
    self->now = zclock_mono ();
    for (size_t i = 0; i < self->nlive; i++) {
        actor_t *a = self->live [i];
        s_actor_command (self, a->identity, a->identity_size,
                         s_cmd_disconnect);
        entry_t *e;
        while ((e = s_list_pop (&a->inflight))) {
            if (e->state == ENTRY_INFLIGHT)
                s_entry_error (self, e, HGP_STATUS_TIMEOUT, "timeout",
                    "the broker stopped while an actor held the request; "
                    "it may or may not have been applied");
            s_entry_free (self, e);
        }
        while ((e = s_list_pop (&a->queue))) {
            if (e->dispatched)
                s_entry_error (self, e, HGP_STATUS_TIMEOUT, "timeout",
                    "the broker stopped; the request may or may not have "
                    "been applied");
            else
                s_entry_error (self, e, HGP_STATUS_UNAVAILABLE, "no_actor",
                               "the broker is stopping");
            s_entry_free (self, e);
        }
    }
    const s_stats_t *s = &self->stats;
    zsys_info ("hgp-broker: stopped; %llu requests: %llu replies forwarded, "
               "%llu answered locally, %llu invalid, %llu busy, "
               "%llu no_actor, %llu timeouts; %llu re-routed, "
               "%llu late replies dropped, %llu answers undeliverable; "
               "%llu actor joins, %llu leaves",
               (unsigned long long) s->requests,
               (unsigned long long) s->replies,
               (unsigned long long) s->local,
               (unsigned long long) s->invalid,
               (unsigned long long) s->busy,
               (unsigned long long) s->no_actor,
               (unsigned long long) s->timeouts,
               (unsigned long long) s->rerouted,
               (unsigned long long) s->late,
               (unsigned long long) s->undeliverable,
               (unsigned long long) s->joins,
               (unsigned long long) s->leaves);
    //  Give the answers above a moment to leave when the sockets close
    zsock_set_linger (self->client_sock, LINGER_MS);
    zsock_set_linger (self->actor_sock, LINGER_MS);
}

int
hgp_broker_run (hgp_broker_t *self, zsock_t *pipe)
{
    assert (self);
    assert (pipe);
    zmq_pollitem_t items [] = {
        { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 },
        { self->actors, 0, ZMQ_POLLIN, 0 },
        { self->clients, 0, ZMQ_POLLIN, 0 }
    };
    int rc = 0;
    self->terminated = false;
    while (!self->terminated) {
        self->now = zclock_mono ();
        int64_t wait = self->next_timer - self->now;
        wait = wait < 0 ? 0 : wait > TIMER_MS ? TIMER_MS : wait;
        if (zmq_poll (items, 3, (long) wait) == -1) {
            if (errno == EINTR)
                continue;       //  signals are main's business
            zsys_error ("broker: poll failed: %s", zmq_strerror (errno));
            rc = -1;
            break;
        }
        self->now = zclock_mono ();
        if (items [0].revents & ZMQ_POLLIN)
            s_pipe_command (self, pipe);
        //  Actors first: their replies free capacity for new requests
        if (items [1].revents & ZMQ_POLLIN) {
            int n;
            for (int i = 0; i < BATCH_ACTORS
                         && (n = s_recv (self, self->actors)); i++) {
                self->now = zclock_mono ();
                s_actor_message (self, n);
                if (self->ndead)
                    s_reap (self);
            }
        }
        if (items [2].revents & ZMQ_POLLIN) {
            int n;
            int64_t until = self->now + SLICE_MS;
            for (int i = 0; i < BATCH_CLIENTS && self->now < until
                         && (n = s_recv (self, self->clients)); i++) {
                self->now = zclock_mono ();
                s_client_message (self, n);
                if (self->ndead)
                    s_reap (self);
            }
        }
        if (self->now >= self->next_timer)
            s_timers (self);
        //  Removing a dead actor dispatches its work to others: flush
        //  again until no send failed
        s_flush (self);
        while (self->ndead) {
            s_reap (self);
            s_flush (self);
        }
    }
    s_shutdown (self);
    return rc;
}


/*  --------------------------------------------------------------------
 *  Construction
 */

static zsock_t *
s_bind (hgp_keys_t *keys, const char *domain, const char *endpoint,
        const char *setting, int sndhwm, int rcvhwm, const char *routing_id,
        char **bound, char **error_p)
{
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
    *bound = zsock_last_endpoint (sock);
    if (!*bound)
        *bound = strdup (endpoint);
    return sock;
}

hgp_broker_t *
hgp_broker_new (hgp_config_t *config, char **error_p)
{
    assert (config);
    char *error = NULL;
    const char *client_endpoint = hgp_config_str (
        config, "broker/client_endpoint", "tcp://127.0.0.1:5555");
    const char *actor_endpoint = hgp_config_str (
        config, "broker/actor_endpoint", "tcp://127.0.0.1:5556");
    int64_t queue_limit = hgp_config_int (
        config, "broker/queue_limit", 10000, 0, 1000000);
    //  At least a few of the largest bodies, so every valid request fits
    int64_t queue_bytes = hgp_config_int (
        config, "broker/queue_bytes", 64 << 20, 4 * HGP_BODY_MAX,
        (int64_t) 1 << 40);
    int64_t actor_bytes = hgp_config_int (
        config, "broker/actor_bytes", 16 << 20, HGP_BODY_MAX,
        (int64_t) 1 << 40);
    int64_t interval = hgp_config_int (
        config, "heartbeat/interval", 500, 10, 60000);
    int64_t liveness = hgp_config_int (
        config, "heartbeat/liveness", 4, 1, 100);
    if (hgp_config_error (config)) {
        error = strdup (hgp_config_error (config));
        goto fail;
    }
    hgp_keys_t *keys = hgp_keys_new (config, HGP_KEYS_BROKER, &error);
    if (!keys)
        goto fail;
    hgp_broker_t *self = (hgp_broker_t *) zmalloc (sizeof (hgp_broker_t));
    assert (self);
    self->keys = keys;
    self->queue_limit = (uint32_t) queue_limit;
    self->queue_bytes = (size_t) queue_bytes;
    self->actor_bytes = (size_t) actor_bytes;
    self->interval = interval;
    self->expiry = interval * liveness;
    for (int i = 0; i < PARTS_MAX; i++)
        zmq_msg_init (&self->part [i]);
    zmq_msg_init (&self->extra);
    hgp_request_init (&self->req);
    hgp_request_init (&self->scratch);
    self->now = zclock_mono ();
    self->wheel_tick = (self->now >> WHEEL_SHIFT) - 1;
    self->next_timer = self->now + TIMER_MS;
    self->next_heartbeat = self->now + self->interval;

    hgp_process_random_id (self->broker_id, sizeof self->broker_id);
    //  The ZAP handler answers before anything can connect (hgp_keys.c)
    if (hgp_keys_curve (keys)) {
        self->zap = zactor_new (hgp_keys_zap_actor, keys);
        assert (self->zap);
    }
    self->client_sock = s_bind (keys, HGP_ZAP_CLIENTS, client_endpoint,
                                "broker/client_endpoint", CLIENT_SNDHWM,
                                CLIENT_RCVHWM, self->broker_id,
                                &self->client_endpoint, &error);
    if (self->client_sock)
        self->actor_sock = s_bind (keys, HGP_ZAP_ACTORS, actor_endpoint,
                                   "broker/actor_endpoint", ACTOR_SNDHWM,
                                   ACTOR_RCVHWM, NULL, &self->actor_endpoint,
                                   &error);
    if (!self->actor_sock) {
        hgp_broker_destroy (&self);
        goto fail;
    }
    self->clients = zsock_resolve (self->client_sock);
    self->actors = zsock_resolve (self->actor_sock);
    zsys_info ("hgp-broker: %s: clients at %s, actors at %s "
               "(queue limit %u per actor, %zu bytes in flight per actor, "
               "%zu bytes in all, heartbeat %lld ms x %lld)", self->broker_id,
               self->client_endpoint, self->actor_endpoint, self->queue_limit,
               self->actor_bytes, self->queue_bytes, (long long) interval,
               (long long) liveness);
    hgp_keys_log (keys, "hgp-broker");
    return self;

fail:
    if (error_p)
        *error_p = error;
    else
        free (error);
    return NULL;
}

void
hgp_broker_destroy (hgp_broker_t **self_p)
{
    assert (self_p);
    hgp_broker_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->nlive; i++) {
        hgp_buf_clear (&self->live [i]->out);
        free (self->live [i]);
    }
    free (self->live);
    for (size_t i = 0; i < self->nchunks; i++) {
        for (size_t j = 0; j < CHUNK_SIZE; j++)
            free (self->chunks [i][j].data);
        free (self->chunks [i]);
    }
    free (self->chunks);
    for (int i = 0; i < PARTS_MAX; i++)
        zmq_msg_close (&self->part [i]);
    zmq_msg_close (&self->extra);
    hgp_request_clear (&self->req);
    hgp_request_clear (&self->scratch);
    hgp_buf_clear (&self->buf);
    zsock_destroy (&self->client_sock);
    zsock_destroy (&self->actor_sock);
    zactor_destroy (&self->zap);
    hgp_keys_destroy (&self->keys);
    zstr_free (&self->client_endpoint);
    zstr_free (&self->actor_endpoint);
    free (self);
    *self_p = NULL;
}

void
hgp_broker_actor (zsock_t *pipe, void *args)
{
    char *error = NULL;
    hgp_broker_t *self = hgp_broker_new ((hgp_config_t *) args, &error);
    zsock_signal (pipe, self ? 0 : 1);
    if (self) {
        int rc = hgp_broker_run (self, pipe);
        hgp_broker_destroy (&self);
        if (rc == 0)
            return;
        error = strdup ("the broker's sockets failed");
        zstr_sendf (pipe, "ERROR %s", error);   //  unasked: we are gone
    }
    //  Failed: say why to whoever asks, until told to go
    while (true) {
        char *command = zstr_recv (pipe);
        if (!command) {
            if (errno == EINTR)
                continue;
            break;
        }
        bool term = streq (command, "$TERM");
        if (streq (command, "STATUS"))
            zstr_sendf (pipe, "ERROR %s", error);
        free (command);
        if (term)
            break;
    }
    free (error);
}


/*  --------------------------------------------------------------------
 *  Selftest: a client and a fake actor on loopback
 */

static void
s_test_send_request (zsock_t *client, hgp_op_t op, const char *id,
                     const char *resource)
{
    hgp_request_t req;
    hgp_request_init (&req);
    req.op = op;
    strcpy (req.id, id);
    strcpy (req.key.resource_id, resource);
    strcpy (req.key.counter_type, "like");
    req.delta = 1;
    req.timeout_ms = 2000;
    hgp_buf_t buf = { NULL, 0, 0 };
    int rc = hgp_request_encode (&req, &buf);
    assert (rc == 0);
    zframe_t *body = zframe_new (buf.data, buf.size);
    zsock_send (client, "zsf", HGP_PROTO_CLIENT, body);
    zframe_destroy (&body);
    hgp_buf_clear (&buf);
}

//  Receive a reply; returns its status, fills id
static int
s_test_recv_reply (zsock_t *client, char *id, hgp_reply_t *rep)
{
    zmsg_t *msg = zmsg_recv (client);
    assert (msg);
    assert (zmsg_size (msg) == 3);
    zframe_t *empty = zmsg_pop (msg);
    assert (zframe_size (empty) == 0);
    zframe_destroy (&empty);
    char *proto = zmsg_popstr (msg);
    assert (streq (proto, HGP_PROTO_CLIENT));
    free (proto);
    zframe_t *body = zmsg_pop (msg);
    hgp_error_t err;
    int rc = hgp_reply_decode (rep, zframe_data (body), zframe_size (body),
                               &err);
    assert (rc == 0);
    zframe_destroy (&body);
    zmsg_destroy (&msg);
    if (id)
        strcpy (id, rep->id);
    return rep->error.status;
}

static void
s_test_ready (zsock_t *actor, const char *actor_id, uint32_t capacity)
{
    hgp_ready_t ready;
    memset (&ready, 0, sizeof ready);
    strcpy (ready.service, "counter");
    strcpy (ready.actor_id, actor_id);
    strcpy (ready.cluster, "hgp");
    ready.capacity = capacity;
    hgp_buf_t buf = { NULL, 0, 0 };
    int rc = hgp_ready_encode (&ready, &buf);
    assert (rc == 0);
    uint8_t cmd = HGP_CMD_READY;
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, HGP_PROTO_ACTOR);
    zmsg_addmem (msg, &cmd, 1);
    zmsg_addmem (msg, buf.data, buf.size);
    zmsg_send (&msg, actor);
    hgp_buf_clear (&buf);
}

//  Receive the next REQUEST (skipping heartbeats); returns the message:
//  [HGPA01][0x02][token][budget][body]
static zmsg_t *
s_test_recv_request (zsock_t *actor)
{
    while (true) {
        zmsg_t *msg = zmsg_recv (actor);
        assert (msg);
        zmsg_first (msg);                       //  HGPA01
        zframe_t *cmd = zmsg_next (msg);
        assert (cmd && zframe_size (cmd) == 1);
        if (zframe_data (cmd) [0] == HGP_CMD_REQUEST) {
            assert (zmsg_size (msg) == 5);
            return msg;
        }
        assert (zframe_data (cmd) [0] == HGP_CMD_HEARTBEAT);
        zmsg_destroy (&msg);
    }
}

static void
s_test_reply (zsock_t *actor, zmsg_t *request, int64_t value)
{
    zmsg_first (request);                       //  HGPA01
    zmsg_next (request);                        //  REQUEST
    zframe_t *token = zmsg_next (request);
    zmsg_next (request);                        //  budget
    zframe_t *body = zmsg_next (request);
    hgp_request_t req;
    hgp_error_t err;
    int rc = hgp_request_decode (&req, zframe_data (body), zframe_size (body),
                                 &err);
    assert (rc == 0);
    hgp_reply_t rep;
    hgp_reply_init (&rep);
    strcpy (rep.id, req.id);
    rep.has_value = true;
    rep.value = value;
    hgp_buf_t buf = { NULL, 0, 0 };
    hgp_reply_encode (&rep, &buf);
    uint8_t cmd = HGP_CMD_REPLY;
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, HGP_PROTO_ACTOR);
    zmsg_addmem (msg, &cmd, 1);
    zmsg_addmem (msg, zframe_data (token), zframe_size (token));
    zmsg_addmem (msg, buf.data, buf.size);
    zmsg_send (&msg, actor);
    hgp_buf_clear (&buf);
    hgp_request_clear (&req);
}

static size_t
s_test_actor_count (zsock_t *client)
{
    s_test_send_request (client, HGP_OP_ACTORS, "list", "x");
    hgp_reply_t rep;
    hgp_reply_init (&rep);
    int status = s_test_recv_reply (client, NULL, &rep);
    assert (status == 200);
    size_t n = rep.nactors;
    hgp_reply_clear (&rep);
    return n;
}

void
hgp_broker_test (bool verbose)
{
    printf (" * hgp_broker: ");
    setenv ("HGP_BROKER_CLIENT_ENDPOINT", "tcp://127.0.0.1:*", 1);
    setenv ("HGP_BROKER_ACTOR_ENDPOINT", "tcp://127.0.0.1:*", 1);
    setenv ("HGP_BROKER_QUEUE_LIMIT", "1", 1);
    setenv ("HGP_HEARTBEAT_INTERVAL", "100", 1);
    setenv ("HGP_HEARTBEAT_LIVENESS", "10", 1);
    setenv ("HGP_BUS_CURVE", "0", 1);       //  plain sockets below
    hgp_config_t *config = hgp_config_load (NULL);
    assert (config);
    zactor_t *broker = zactor_new (hgp_broker_actor, config);
    assert (broker);
    hgp_config_destroy (&config);
    zstr_send (broker, "STATUS");
    char *status = zstr_recv (broker);
    assert (status && streq (status, "OK"));
    free (status);
    char *client_ep = NULL, *actor_ep = NULL;
    zstr_send (broker, "ENDPOINTS");
    zstr_recvx (broker, &client_ep, &actor_ep, NULL);
    if (verbose)
        printf ("clients at %s, actors at %s ", client_ep, actor_ep);

    zsock_t *client = zsock_new_dealer (client_ep);
    assert (client);
    zsock_set_rcvtimeo (client, 3000);
    hgp_reply_t rep;
    hgp_reply_init (&rep);
    char id [HGP_ID_MAX + 1];

    //  ping is answered by the broker; incr without actors is 503 no_actor
    s_test_send_request (client, HGP_OP_PING, "p1", "x");
    assert (s_test_recv_reply (client, id, &rep) == 200);
    assert (streq (id, "p1"));
    hgp_reply_clear (&rep);
    s_test_send_request (client, HGP_OP_INCR, "i0", "post_1");
    assert (s_test_recv_reply (client, id, &rep) == 503);
    assert (streq (rep.error.code, "no_actor"));
    hgp_reply_clear (&rep);

    //  A message of the wrong shape gets 400 malformed
    zsock_send (client, "zss", "HTTP/1.1", "GET");
    assert (s_test_recv_reply (client, id, &rep) == 400);
    assert (streq (rep.error.code, "malformed") && streq (id, ""));
    hgp_reply_clear (&rep);

    //  A fake actor with capacity 1 (queue limit is 1)
    zsock_t *actor = zsock_new_dealer (actor_ep);
    assert (actor);
    zsock_set_rcvtimeo (actor, 3000);
    s_test_ready (actor, "fake-1", 1);
    while (s_test_actor_count (client) != 1)
        zclock_sleep (10);

    //  Three increments: one in flight, one waiting, one refused busy
    s_test_send_request (client, HGP_OP_INCR, "i1", "post_1");
    s_test_send_request (client, HGP_OP_INCR, "i2", "post_1");
    s_test_send_request (client, HGP_OP_INCR, "i3", "post_1");
    assert (s_test_recv_reply (client, id, &rep) == 503);
    assert (streq (rep.error.code, "busy") && streq (id, "i3"));
    hgp_reply_clear (&rep);

    //  The actor's reply reaches the client unchanged, then the next goes out
    zmsg_t *request = s_test_recv_request (actor);
    s_test_reply (actor, request, 41);
    zmsg_destroy (&request);
    assert (s_test_recv_reply (client, id, &rep) == 200);
    assert (streq (id, "i1") && rep.value == 41);
    hgp_reply_clear (&rep);

    //  The actor leaves holding i2: nobody can take it over, and it had been
    //  sent, so the answer is 504 (indeterminate), not 503
    request = s_test_recv_request (actor);
    zmsg_destroy (&request);
    uint8_t cmd = HGP_CMD_DISCONNECT;
    zsock_send (actor, "sb", HGP_PROTO_ACTOR, &cmd, (size_t) 1);
    assert (s_test_recv_reply (client, id, &rep) == 504);
    assert (streq (id, "i2"));
    hgp_reply_clear (&rep);

    //  A message from a peer the broker does not know gets DISCONNECT
    cmd = HGP_CMD_HEARTBEAT;
    zsock_send (actor, "sb", HGP_PROTO_ACTOR, &cmd, (size_t) 1);
    zmsg_t *msg = zmsg_recv (actor);
    assert (msg && zmsg_size (msg) == 2);
    zframe_t *frame = zmsg_last (msg);
    assert (zframe_data (frame) [0] == HGP_CMD_DISCONNECT);
    zmsg_destroy (&msg);

    //  A new actor that never answers: the request times out with 504, the
    //  actor is dropped for silence, and its late reply is ignored
    zsock_destroy (&actor);
    actor = zsock_new_dealer (actor_ep);
    assert (actor);
    zsock_set_rcvtimeo (actor, 3000);
    s_test_ready (actor, "fake-2", 4);
    while (s_test_actor_count (client) != 1)
        zclock_sleep (10);
    s_test_send_request (client, HGP_OP_GET, "g1", "post_1");
    request = s_test_recv_request (actor);
    assert (s_test_recv_reply (client, id, &rep) == 504);
    assert (streq (id, "g1"));
    hgp_reply_clear (&rep);
    while (s_test_actor_count (client) != 0)
        zclock_sleep (20);
    s_test_reply (actor, request, 1);
    zmsg_destroy (&request);

    zsock_destroy (&actor);
    zsock_destroy (&client);
    zstr_free (&client_ep);
    zstr_free (&actor_ep);
    zactor_destroy (&broker);
    printf ("OK\n");
}
