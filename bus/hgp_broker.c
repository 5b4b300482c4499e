/*  hgp_broker.c - the bus: routes client requests to counter and
 *  analytics actors
 *
 *  What it does (schemas/PROTOCOL.md sections 4-6 are the contract):
 *  every client body passes hgp_request_decode; ping and actors are
 *  answered here; incr goes to the rendezvous owner of its key and get/mget
 *  to the least busy live "counter" actor, top and stats to the least busy
 *  live "analytics" actor (hgp_actors). Each actor holds at most
 *  `capacity` requests without a REPLY; the rest wait in its FIFO, at most
 *  broker/queue_limit, past which a new request is answered 503 busy; so
 *  is one that would take the bytes of all requests held (waiting and in
 *  flight) past broker/queue_bytes, so large bodies cannot grow us without
 *  bound.
 *
 *  Key invariants:
 *  - Every accepted request is an entry (hgp_entries), and every entry ends
 *    in exactly one answer to its client: the actor's REPLY, forwarded
 *    unchanged, or an error made here (504 deadline, 503 no_actor, 504 when
 *    the actor that held it died and nobody can take it over). Nothing is
 *    dropped silently; only a reply the client can no longer receive is
 *    lost.
 *  - An entry is in at most one actor list: that actor's queue (waiting)
 *    or its in-flight list (sent, no REPLY yet). An in-flight entry whose
 *    deadline passes is answered 504 and becomes an orphan: it stays in the
 *    in-flight list, still counting against capacity, because the actor
 *    still holds the request (PROTOCOL.md 5.2: never more than capacity
 *    without a REPLY). Its late REPLY frees it and is dropped.
 *  - An actor found dead (DISCONNECT, silence, send failure, replaced by a
 *    new READY) is only flagged where it is found; s_reap removes it and
 *    re-routes its entries once the current message or timer is done, so
 *    no list is ever changed under a walk.
 *
 *  Why it is built this way: the broker is the one hop every request takes
 *  twice, so the hot path avoids allocation and O(n) work per message:
 *  entries come from a pool and their deadlines from a timer wheel
 *  (hgp_entries), replies from actors are forwarded to clients as the same
 *  zmq_msg_t (zero copy), and sockets are drained in batches per poll.
 */
#include "hgp_broker.h"
#include "hgp_actors.h"
#include "hgp_announced.h"
#include "hgp_codec.h"
#include "hgp_entries.h"
#include "hgp_exporter.h"
#include "hgp_keys.h"
#include "hgp_process.h"
#include "hgp_router.h"
#include "hgp_trace.h"

#define TIMER_MS        50                  /* deadline + liveness checks   */
#define BATCH_CLIENTS   256                 /* client messages per poll     */
#define BATCH_ACTORS    4096                /* actor messages per poll: what
                                               we sent bounds them, and an
                                               unread heartbeat must not look
                                               like silence                 */
#define SLICE_MS        10                  /* most ms of client messages in
                                               a row: a flood of costly
                                               requests must not keep us
                                               from hearing actors          */
#define BATCH_BYTES     (256u << 10)        /* a REQUESTS frame goes out once
                                               it holds this much           */

/*  Socket limits. The actor SNDHWM exceeds the largest capacity (65535):
    flow control, not the HWM, bounds what we send to an actor. */
#define CLIENT_SNDHWM   100000
#define CLIENT_RCVHWM   256
#define ACTOR_SNDHWM    100000
#define ACTOR_RCVHWM    100000
#define LINGER_MS       500                 /* flush final answers on exit  */

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

/*  The stats as Prometheus series (handles into prom), published once a
    heartbeat interval: the loop's counters stay plain integers */
typedef struct {
    int requests, replies, rerouted, late, undeliverable, joins, leaves;
    int local, invalid, busy, no_actor, timeouts;
    int counters, analytics;    /* live actors of each service              */
    int queued, inflight, held, bytes, announced;
} s_series_t;

struct _hgp_broker_t {
    hgp_keys_t *keys;           /* our keypair and bus/cluster              */
    zactor_t *zap;              /* ZAP handler: who may connect (CURVE)     */
    hgp_router_t *clients;      /* ROUTER for clients (HGPC01)              */
    hgp_router_t *actors;       /* ROUTER for actors (HGPA01)               */
    char broker_id [33];        /* random per start: beacon id and the
                                   client ROUTER's routing id              */
    uint32_t queue_limit;       /* most waiting per actor                   */
    int64_t interval;           /* heartbeat interval, ms                   */
    int64_t expiry;             /* silence after which an actor is dead     */

    hgp_actors_t *table;        /* registered actors                        */
    hgp_entries_t *entries;     /* requests held, and their deadlines       */
    size_t queue_bytes;         /* most request bytes held at once          */
    size_t actor_bytes;         /* most request bytes in flight per actor   */

    int64_t now;                /* monotonic ms, refreshed per message      */
    int64_t next_timer;         /* next deadline/liveness check             */
    int64_t next_heartbeat;     /* next HEARTBEAT to actors                 */
    bool terminated;            /* $TERM seen                               */

    hgp_request_t req;          /* decoded client request                   */
    hgp_request_t scratch;      /* decoded body when re-routing an incr     */
    hgp_buf_t buf;              /* encoded answers, reused                  */
    s_stats_t stats;            /* for the summary line                     */
    hgp_announced_t *announced; /* processes that said where metrics are    */
    hgp_prom_t *prom;           /* our series, served by exporter           */
    hgp_exporter_t *exporter;   /* GET /metrics (broker/metrics); or NULL   */
    s_series_t series;          /* handles of the series in prom            */
};


/*  --------------------------------------------------------------------
 *  Sending to clients. A client that is gone or not reading loses its
 *  answer (counted): that is all a ROUTER can do.
 */

//  Start an answer: -1 if the client cannot take it
static int
s_client_head (hgp_broker_t *self, const uint8_t *ident, size_t size)
{
    int rc = hgp_router_client_head (self->clients, ident, size);
    if (rc)
        self->stats.undeliverable++;
    return rc;
}

//  An answer: now, or with the client's others when its request came in
//  a batch (they all go at the end of this turn of the loop)
static void
s_client_send (hgp_broker_t *self, const uint8_t *ident, size_t size,
               bool batched, const uint8_t *body, size_t body_size)
{
    if (batched)
        self->stats.undeliverable += hgp_router_client_batch (
            self->clients, ident, size, body, body_size);
    else
    if (s_client_head (self, ident, size) == 0)
        hgp_router_send_last (self->clients, body, body_size);
}

//  Answer an error to a client: id is a C string ("" when unknown)
static void
s_client_error (hgp_broker_t *self, const uint8_t *ident, size_t size,
                bool batched, const char *id, const hgp_error_t *err)
{
    self->buf.size = 0;
    hgp_reply_encode_error (id, err, &self->buf);
    s_client_send (self, ident, size, batched, self->buf.data, self->buf.size);
}

//  Answer an entry's client with an error; the entry stays as it is
static void
s_entry_error (hgp_broker_t *self, hgp_entry_t *e, uint16_t status,
               const char *code, const char *message)
{
    char id [HGP_ID_MAX + 1];
    hgp_entry_id (e, id);
    hgp_error_t err;
    hgp_error_set (&err, status, code, "%s", message);
    if (status == HGP_STATUS_TIMEOUT)
        self->stats.timeouts++;
    else
    if (streq (code, "no_actor"))
        self->stats.no_actor++;
    s_client_error (self, e->data, e->ident_size, e->batched, id, &err);
}


/*  --------------------------------------------------------------------
 *  Sending to actors. A send that fails (peer gone: EHOSTUNREACH, or
 *  not reading at all: EAGAIN) means the actor is dead.
 */

//  A command with no further frames; -1 if the actor cannot be reached
static int
s_actor_command (hgp_broker_t *self, const uint8_t *identity, size_t size,
                 uint8_t cmd)
{
    return hgp_router_actor_send (self->actors, identity, size, cmd, NULL, 0);
}

//  Send the REQUESTS an actor has collected, as one message; -1 (the
//  entries stay in flight, and go elsewhere once it is removed) if the
//  actor cannot be reached
static int
s_actor_flush (hgp_broker_t *self, hgp_actor_t *actor)
{
    if (actor->out.size == 0)
        return 0;
    int rc = hgp_router_actor_send (self->actors, actor->identity,
                                    actor->identity_size, HGP_CMD_REQUESTS,
                                    actor->out.data, actor->out.size);
    actor->out.size = 0;
    return rc;
}

//  Flush every live actor's REQUESTS: once per turn of the event loop, so
//  what one turn dispatched to an actor costs one message
static void
s_flush (hgp_broker_t *self)
{
    for (size_t i = 0; i < hgp_actors_size (self->table); i++) {
        hgp_actor_t *actor = hgp_actors_at (self->table, i);
        if (!actor->dead && s_actor_flush (self, actor))
            hgp_actors_kill (self->table, actor, "unreachable");
    }
}

//  Send a REQUEST for e, or add it to the actor's REQUESTS; -1 (nothing
//  sent) if the actor cannot be reached
static int
s_dispatch (hgp_broker_t *self, hgp_actor_t *actor, hgp_entry_t *e)
{
    uint64_t token = hgp_entries_mint (self->entries, e);
    uint8_t tok [8];
    hgp_router_put_token (tok, token);
    //  The budget, and our clock when we sent it (PROTOCOL.md 5.1), so an
    //  actor can tell how long the request waited in its socket. In a
    //  batch the clock is the dispatch's, a little before the send: the
    //  actor's deadline can only come earlier for it.
    uint32_t budget = (uint32_t) (e->deadline - self->now);
    if (actor->batch) {
        if (hgp_batch_put_request (&actor->out, tok, budget, self->now,
                                   hgp_entry_body (e), e->body_size))
            return -1;
        if (actor->out.size >= BATCH_BYTES && s_actor_flush (self, actor))
            return -1;
    }
    else
    if (hgp_router_actor_request (self->actors, actor->identity,
                                  actor->identity_size, token, budget,
                                  self->now, hgp_entry_body (e),
                                  e->body_size))
        return -1;
    hgp_entries_move (self->entries, e, HGP_ENTRY_INFLIGHT);
    hgp_entry_list_push (&actor->inflight, e);
    return 0;
}

//  Can the actor take the next queued entry: under its capacity, and under
//  broker/actor_bytes in flight (one entry always goes, however large)?
//  What we send sits in libzmq's buffers and the actor's until it replies,
//  so this bounds an actor's memory by bytes as capacity does by count.
static bool
s_actor_can_take (hgp_broker_t *self, hgp_actor_t *actor)
{
    return actor->queue.size && actor->inflight.size < actor->capacity
        && (actor->inflight.size == 0
        ||  actor->inflight.bytes + actor->queue.head->body_size
            <= self->actor_bytes);
}

//  Send queued entries while the actor can take them
static void
s_actor_pump (hgp_broker_t *self, hgp_actor_t *actor)
{
    while (!actor->dead && s_actor_can_take (self, actor)) {
        hgp_entry_t *e = hgp_entry_list_pop (&actor->queue);
        if (e->deadline <= self->now) {
            s_entry_error (self, e, HGP_STATUS_TIMEOUT, "timeout",
                           "deadline passed while waiting for an actor");
            hgp_entries_move (self->entries, e, HGP_ENTRY_FREE);
        }
        else
        if (s_dispatch (self, actor, e)) {
            hgp_entry_list_push_front (&actor->queue, e);
            hgp_actors_kill (self->table, actor, "unreachable");
        }
    }
}


/*  --------------------------------------------------------------------
 *  Routing (the choice of actor is hgp_actors')
 */

//  Put a loose entry on the actor and send what it can take
static void
s_assign (hgp_broker_t *self, hgp_actor_t *actor, hgp_entry_t *e)
{
    hgp_entries_move (self->entries, e, HGP_ENTRY_QUEUED);
    hgp_entry_list_push (&actor->queue, e);
    s_actor_pump (self, actor);
}

//  Route an entry again after its actor died. It was admitted already, so
//  the queue limit does not apply: it takes no new memory.
static void
s_reroute (hgp_broker_t *self, hgp_entry_t *e)
{
    hgp_entries_move (self->entries, e, HGP_ENTRY_LOOSE);
    if (e->deadline <= self->now) {
        s_entry_error (self, e, HGP_STATUS_TIMEOUT, "timeout",
                       e->dispatched
                       ? "deadline passed; the actor holding the request died"
                       : "deadline passed while waiting for an actor");
        hgp_entries_move (self->entries, e, HGP_ENTRY_FREE);
        return;
    }
    hgp_actor_t *actor = NULL;
    if (e->op == HGP_OP_INCR) {
        hgp_error_t err;
        //  The body passed this decoder on arrival; it cannot fail now
        int rc = hgp_request_decode (&self->scratch, hgp_entry_body (e),
                                     e->body_size, &err);
        assert (rc == 0);
        actor = hgp_actors_owner (self->table, &self->scratch.key);
        hgp_request_clear (&self->scratch);
    }
    else
        actor = hgp_actors_reader (self->table, hgp_actors_kind_of_op (e->op));
    if (actor) {
        self->stats.rerouted++;
        s_assign (self, actor, e);
    }
    else {
        char message [HGP_MESSAGE_MAX + 1];
        if (e->dispatched) {
            snprintf (message, sizeof message, "the actor holding the request"
                      " died and no %s actor is live; it may or may not have"
                      " been applied", hgp_actors_service_of_op (e->op));
            s_entry_error (self, e, HGP_STATUS_TIMEOUT, "timeout", message);
        }
        else {
            snprintf (message, sizeof message, "no live actor offers the %s"
                      " service", hgp_actors_service_of_op (e->op));
            s_entry_error (self, e, HGP_STATUS_UNAVAILABLE, "no_actor",
                           message);
        }
        hgp_entries_move (self->entries, e, HGP_ENTRY_FREE);
    }
}


/*  --------------------------------------------------------------------
 *  Actor registry (the table is hgp_actors')
 */

//  Remove a dead actor and re-route everything it had: in flight first,
//  then its queue, keeping their order
static void
s_actor_remove (hgp_broker_t *self, hgp_actor_t *actor)
{
    hgp_actors_remove (self->table, actor);
    self->stats.leaves++;

    uint64_t rerouted = self->stats.rerouted;
    uint32_t held = actor->inflight.size, waiting = actor->queue.size;
    hgp_entry_t *e;
    while ((e = hgp_entry_list_pop (&actor->inflight))) {
        if (e->state == HGP_ENTRY_ORPHAN)   //  its client has its 504
            hgp_entries_move (self->entries, e, HGP_ENTRY_FREE);
        else
            s_reroute (self, e);
    }
    while ((e = hgp_entry_list_pop (&actor->queue)))
        s_reroute (self, e);
    zsys_info ("actor %s (%s) left: %s; of %u in flight and %u waiting, "
               "%llu re-routed (%zu live)",
               actor->actor_id, actor->service,
               actor->dead ? actor->dead : "removed", held, waiting,
               (unsigned long long) (self->stats.rerouted - rerouted),
               hgp_actors_size (self->table));
    hgp_actor_destroy (&actor);
}

//  Remove every actor flagged dead; removing one can flag another (a send
//  fails while re-routing), so loop until none is left
static void
s_reap (hgp_broker_t *self)
{
    while (hgp_actors_dead (self->table)) {
        hgp_actor_t *victim = hgp_actors_first_dead (self->table);
        assert (victim);
        s_actor_remove (self, victim);
    }
}

//  A READY the broker will not take, for a reason of identity rather than
//  form: logged, answered DISCONNECT, and nothing registered is touched
static void
s_actor_refuse (hgp_broker_t *self, const uint8_t *identity,
                size_t identity_size, const char *key, char **why_p)
{
    zsys_warning ("READY refused: %s (key %s)", *why_p, *key ? key : "none");
    zstr_free (why_p);
    s_actor_command (self, identity, identity_size, HGP_CMD_DISCONNECT);
}

static void
s_actor_ready (hgp_broker_t *self, hgp_actor_t *actor, const uint8_t *identity,
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
    hgp_keys_user_id (hgp_router_part (self->actors, 1), key, sizeof key);
    char *why = hgp_actors_check (self->table, actor, &ready, key,
                                  hgp_keys_cluster (self->keys));
    if (why) {
        s_actor_refuse (self, identity, identity_size, key, &why);
        return;
    }
    if (actor) {
        if (streq (actor->actor_id, ready.actor_id)
        &&  streq (actor->service, ready.service)) {
            //  The same actor again: take the new capacity, keep its work
            if (s_actor_flush (self, actor)) {
                hgp_actors_kill (self->table, actor, "unreachable");
                return;
            }
            actor->capacity = ready.capacity;
            actor->batch = ready.batch;
            strcpy (actor->metrics, ready.metrics);
            s_actor_pump (self, actor);
            return;
        }
        hgp_actors_kill (self->table, actor, "re-registered under another id");
        s_reap (self);
    }
    //  The same actor_id under another identity, same certificate: it
    //  reconnected. Flag the old registration now, reap it once the new
    //  one can take its work.
    hgp_actor_t *old = hgp_actors_named (self->table, ready.actor_id);
    if (old)
        hgp_actors_kill (self->table, old, "reconnected under a new identity");

    actor = hgp_actors_add (self->table, identity, identity_size, &ready, key,
                            self->now);
    if (!actor)
        return;                 //  it will time out and try again
    self->stats.joins++;
    zsys_info ("actor %s (%s) joined: capacity %u (%zu live)",
               actor->actor_id, actor->service, actor->capacity,
               hgp_actors_size (self->table) - (old ? 1 : 0));
    s_reap (self);
    return;

reject:
    zsys_warning ("READY refused: %s", err.message);
    if (actor)
        hgp_actors_kill (self->table, actor, "sent a bad READY");
    else
        s_actor_command (self, identity, identity_size, HGP_CMD_DISCONNECT);
}

//  A REPLY (its body a whole frame, msg, or in a REPLIES frame, data):
//  forward it to the waiting client, free the slot, send more
static void
s_actor_reply (hgp_broker_t *self, hgp_actor_t *actor, const uint8_t *t,
               zmq_msg_t *msg, const uint8_t *data, size_t size)
{
    hgp_entry_t *e = hgp_entries_lookup (self->entries, hgp_router_token (t));
    if (!e || e->list != &actor->inflight) {
        self->stats.late++;         //  after a re-dispatch, or bogus
        return;
    }
    hgp_entry_list_remove (e);
    actor->served++;
    if (e->state == HGP_ENTRY_ORPHAN)
        self->stats.late++;         //  its client had a 504 already
    else
    if (e->batched) {
        if (msg)
            s_client_send (self, e->data, e->ident_size, true,
                           (const uint8_t *) zmq_msg_data (msg),
                           zmq_msg_size (msg));
        else
            s_client_send (self, e->data, e->ident_size, true, data, size);
        self->stats.replies++;
    }
    else
    if (s_client_head (self, e->data, e->ident_size) == 0) {
        if (msg)
            hgp_router_send_msg (self->clients, msg);
        else
            hgp_router_send_last (self->clients, data, size);
        self->stats.replies++;
    }
    hgp_entries_move (self->entries, e, HGP_ENTRY_FREE);
    s_actor_pump (self, actor);
}

static void
s_actor_protocol_error (hgp_broker_t *self, hgp_actor_t *actor, const char *what)
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
s_actor_replies (hgp_broker_t *self, hgp_actor_t *actor, zmq_msg_t *frame)
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
    zmq_msg_t *part = hgp_router_part (self->actors, 0);
    const uint8_t *identity = (const uint8_t *) zmq_msg_data (&part [0]);
    size_t identity_size = zmq_msg_size (&part [0]);
    hgp_actor_t *actor = hgp_actors_lookup (self->table, identity, identity_size);
    if (actor)
        actor->last_heard = self->now;     //  any message is a sign of life

    int cmd = hgp_router_actor_command (self->actors, nparts);
    if (cmd == -1) {
        if (actor)
            s_actor_protocol_error (self, actor, "a message without HGPA01");
        else
            s_actor_command (self, identity, identity_size,
                             HGP_CMD_DISCONNECT);
        return;
    }
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
                             HGP_CMD_DISCONNECT);
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
            hgp_actors_kill (self->table, actor, "disconnected");
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
                 bool batched, const char *id)
{
    hgp_reply_t rep;
    hgp_reply_init (&rep);
    strcpy (rep.id, id);
    if (self->exporter)
        snprintf (rep.metrics, sizeof rep.metrics, "%s",
                  hgp_exporter_url (self->exporter));
    if (hgp_actors_list (self->table, self->now, &rep)
    ||  hgp_announced_list (self->announced, self->now, &rep)) {
        hgp_reply_clear (&rep);
        hgp_error_t err;
        hgp_error_set (&err, HGP_STATUS_INTERNAL, "internal", "out of memory");
        s_client_error (self, ident, size, batched, id, &err);
        return;
    }
    self->buf.size = 0;
    hgp_reply_encode (&rep, &self->buf);
    s_client_send (self, ident, size, batched, self->buf.data, self->buf.size);
    hgp_reply_clear (&rep);
}

//  One request body, alone in its message or one of a batch's
static void
s_client_request (hgp_broker_t *self, const uint8_t *ident, size_t ident_size,
                  const uint8_t *body, size_t body_size, bool batched)
{
    hgp_error_t err;
    self->stats.requests++;
    hgp_request_t *req = &self->req;
    if (hgp_request_decode (req, body, body_size, &err)) {
        self->stats.invalid++;
        s_client_error (self, ident, ident_size, batched, req->id, &err);
        hgp_request_clear (req);
        return;
    }
    if (req->op == HGP_OP_PING || req->op == HGP_OP_ACTORS
    ||  req->op == HGP_OP_ANNOUNCE) {
        self->stats.local++;
        if (req->op == HGP_OP_ACTORS)
            s_client_actors (self, ident, ident_size, batched, req->id);
        else
        if (req->op == HGP_OP_ANNOUNCE
        &&  hgp_announced_heard (self->announced, req->role, req->metrics,
                                 self->now)) {
            self->stats.busy++;
            hgp_error_set (&err, HGP_STATUS_UNAVAILABLE, "busy",
                           "%d processes announced already", HGP_PROCESSES_MAX);
            s_client_error (self, ident, ident_size, batched, req->id, &err);
        }
        else {
            hgp_reply_t rep;
            hgp_reply_init (&rep);
            strcpy (rep.id, req->id);
            self->buf.size = 0;
            hgp_reply_encode (&rep, &self->buf);
            s_client_send (self, ident, ident_size, batched,
                           self->buf.data, self->buf.size);
        }
        hgp_request_clear (req);
        return;
    }
    hgp_actor_t *actor = req->op == HGP_OP_INCR
        ? hgp_actors_owner (self->table, &req->key)
        : hgp_actors_reader (self->table, hgp_actors_kind_of_op (req->op));
    hgp_entry_t *e = NULL;
    if (!actor) {
        self->stats.no_actor++;
        hgp_error_set (&err, HGP_STATUS_UNAVAILABLE, "no_actor",
                       "no live actor offers the %s service",
                       hgp_actors_service_of_op (req->op));
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
    if (hgp_entries_held (self->entries) + body_size > self->queue_bytes) {
        self->stats.busy++;
        hgp_error_set (&err, HGP_STATUS_UNAVAILABLE, "busy",
                       "the broker holds %zu bytes of requests and %zu more "
                       "would pass broker/queue_bytes; back off",
                       hgp_entries_held (self->entries), body_size);
    }
    else
    if (!(e = hgp_entries_take (self->entries, ident, ident_size, req->id,
                                body, body_size, req->op,
                                self->now + req->timeout_ms, batched))) {
        self->stats.busy++;
        hgp_error_set (&err, HGP_STATUS_UNAVAILABLE, "busy",
                       "the broker holds %zu requests, its limit; back off",
                       hgp_entries_size (self->entries));
    }
    if (hgp_trace_sampled (req->trace)) {
        if (e)
            zsys_info ("trace %s: broker %s %s to %s actor %s", req->trace,
                       hgp_op_name (req->op), req->id, actor->service,
                       actor->actor_id);
        else
            zsys_info ("trace %s: broker %s %s: %d %s", req->trace,
                       hgp_op_name (req->op), req->id, err.status, err.code);
    }
    if (e)
        s_assign (self, actor, e);
    else
        s_client_error (self, ident, ident_size, batched, req->id, &err);
    hgp_request_clear (req);
}

//  A batch that is not one (PROTOCOL.md 4.1): answered with id "" in a
//  batch. counted: it is a request of its own in the stats.
static void
s_batch_malformed (hgp_broker_t *self, const uint8_t *ident, size_t size,
                   bool counted, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    char message [HGP_MESSAGE_MAX + 1];
    vsnprintf (message, sizeof message, format, args);
    va_end (args);
    hgp_error_t err;
    hgp_error_set (&err, HGP_STATUS_BAD_REQUEST, "malformed", "%s", message);
    if (counted)
        self->stats.requests++;
    self->stats.invalid++;
    s_client_error (self, ident, size, true, "", &err);
}

//  A client message: one request body, or an array of them (a batch,
//  PROTOCOL.md 4.1), each handled as if it had come alone
static void
s_client_message (hgp_broker_t *self, int nparts)
{
    zmq_msg_t *part = hgp_router_part (self->clients, 0);
    const uint8_t *ident = (const uint8_t *) zmq_msg_data (&part [0]);
    size_t ident_size = zmq_msg_size (&part [0]);
    hgp_error_t err;
    if (!hgp_router_is_client_request (self->clients, nparts)) {
        hgp_error_set (&err, HGP_STATUS_BAD_REQUEST, "malformed",
                       "want frames [empty][HGPC01][body]");
        self->stats.requests++;
        self->stats.invalid++;
        s_client_error (self, ident, ident_size, false, "", &err);
        return;
    }
    const uint8_t *body = (const uint8_t *) zmq_msg_data (&part [3]);
    size_t body_size = zmq_msg_size (&part [3]);
    size_t at;
    int count = hgp_array_open (body, body_size, &at);
    if (count < 0) {
        s_client_request (self, ident, ident_size, body, body_size, false);
        return;
    }
    if (count == 0 || count > HGP_ARRAY_MAX) {
        s_batch_malformed (self, ident, ident_size, true, "a batch holds 1 to"
                           " %d requests, not %d", HGP_ARRAY_MAX, count);
        return;
    }
    for (int i = 0; i < count; i++) {
        const uint8_t *elem;
        size_t elem_size;
        if (hgp_array_next (body, body_size, &at, &elem, &elem_size)) {
            s_batch_malformed (self, ident, ident_size, true, "batch element"
                               " %d of %d is not a whole msgpack value; it and"
                               " the %d after it were not read", i + 1, count,
                               count - i - 1);
            return;
        }
        s_client_request (self, ident, ident_size, elem, elem_size, true);
    }
    if (at != body_size)
        s_batch_malformed (self, ident, ident_size, false, "%zu bytes after"
                           " the batch's %d requests (they were handled)",
                           body_size - at, count);
}


/*  --------------------------------------------------------------------
 *  Timers: deadlines, actor liveness, heartbeats
 */

//  An entry's deadline passed (hgp_entries_expire_fn): answer 504. A
//  queued one is let go; one the actor holds stays, an orphan, until its
//  REPLY frees the slot.
static void
s_entry_expire (hgp_entry_t *e, void *arg)
{
    hgp_broker_t *self = (hgp_broker_t *) arg;
    bool queued = e->state == HGP_ENTRY_QUEUED;
    s_entry_error (self, e, HGP_STATUS_TIMEOUT, "timeout", queued
                   ? "deadline passed while waiting for an actor"
                   : "deadline passed before the actor replied; "
                     "it may or may not have been applied");
    if (queued) {
        hgp_entry_list_remove (e);
        hgp_entries_move (self->entries, e, HGP_ENTRY_FREE);
    }
    else
        hgp_entries_move (self->entries, e, HGP_ENTRY_ORPHAN);
}

/*  --------------------------------------------------------------------
 *  Metrics (broker/metrics): what the summary line says, as series
 */

static void
s_metrics_declare (hgp_broker_t *self)
{
    hgp_prom_t *p = self->prom;
    s_series_t *m = &self->series;
    const hgp_prom_type_t C = HGP_PROM_COUNTER, G = HGP_PROM_GAUGE;
    m->requests = hgp_prom_declare (p, C, "hgp_broker_requests_total", "",
        "Client requests received (each element of a batch counts).", 1);
    m->replies = hgp_prom_declare (p, C, "hgp_broker_replies_total", "",
        "Actor replies forwarded to clients.", 1);
    const char *answers = "hgp_broker_answers_total";
    const char *help = "Requests the broker answered itself, by code: local"
        " (ping, actors, announce), invalid (400/404/413), busy and no_actor"
        " (503), timeout (504).";
    m->local = hgp_prom_declare (p, C, answers, "code=\"local\"", help, 1);
    m->invalid = hgp_prom_declare (p, C, answers, "code=\"invalid\"", help, 1);
    m->busy = hgp_prom_declare (p, C, answers, "code=\"busy\"", help, 1);
    m->no_actor = hgp_prom_declare (p, C, answers, "code=\"no_actor\"", help, 1);
    m->timeouts = hgp_prom_declare (p, C, answers, "code=\"timeout\"", help, 1);
    m->rerouted = hgp_prom_declare (p, C, "hgp_broker_rerouted_total", "",
        "Requests moved off a dead actor to another (re-dispatches).", 1);
    m->late = hgp_prom_declare (p, C, "hgp_broker_late_replies_total", "",
        "Replies for requests already answered (504) or unknown.", 1);
    m->undeliverable = hgp_prom_declare (p, C,
        "hgp_broker_undeliverable_total", "",
        "Answers a client was gone for or could not take.", 1);
    m->joins = hgp_prom_declare (p, C, "hgp_broker_actor_joins_total", "",
        "READYs accepted.", 1);
    m->leaves = hgp_prom_declare (p, C, "hgp_broker_actor_leaves_total", "",
        "Actors removed (dead, silent, replaced).", 1);
    const char *actors = "hgp_broker_actors";
    help = "Live actors this broker routes to, by service.";
    m->counters = hgp_prom_declare (p, G, actors, "service=\"counter\"",
                                    help, 1);
    m->analytics = hgp_prom_declare (p, G, actors, "service=\"analytics\"",
                                     help, 1);
    m->queued = hgp_prom_declare (p, G, "hgp_broker_queued_requests", "",
        "Requests waiting in the broker for an actor's capacity.", 1);
    m->inflight = hgp_prom_declare (p, G, "hgp_broker_inflight_requests", "",
        "Requests sent to actors and not answered yet.", 1);
    m->held = hgp_prom_declare (p, G, "hgp_broker_held_requests", "",
        "Requests the broker holds in all (queued, in flight, orphaned).", 1);
    m->bytes = hgp_prom_declare (p, G, "hgp_broker_held_bytes", "",
        "Bytes of the requests held (broker/queue_bytes bounds it).", 1);
    m->announced = hgp_prom_declare (p, G, "hgp_broker_announced_processes",
        "", "Processes that announced their metrics URL (not actors).", 1);
}

static void
s_metrics_publish (hgp_broker_t *self)
{
    hgp_prom_t *p = self->prom;
    const s_series_t *m = &self->series;
    const s_stats_t *st = &self->stats;
    hgp_prom_set (p, m->requests, (int64_t) st->requests);
    hgp_prom_set (p, m->replies, (int64_t) st->replies);
    hgp_prom_set (p, m->local, (int64_t) st->local);
    hgp_prom_set (p, m->invalid, (int64_t) st->invalid);
    hgp_prom_set (p, m->busy, (int64_t) st->busy);
    hgp_prom_set (p, m->no_actor, (int64_t) st->no_actor);
    hgp_prom_set (p, m->timeouts, (int64_t) st->timeouts);
    hgp_prom_set (p, m->rerouted, (int64_t) st->rerouted);
    hgp_prom_set (p, m->late, (int64_t) st->late);
    hgp_prom_set (p, m->undeliverable, (int64_t) st->undeliverable);
    hgp_prom_set (p, m->joins, (int64_t) st->joins);
    hgp_prom_set (p, m->leaves, (int64_t) st->leaves);
    int64_t counters = 0, analytics = 0, queued = 0, inflight = 0;
    for (size_t i = 0; i < hgp_actors_size (self->table); i++) {
        hgp_actor_t *a = hgp_actors_at (self->table, i);
        if (a->dead)
            continue;
        counters += streq (a->service, "counter");
        analytics += streq (a->service, "analytics");
        queued += a->queue.size;
        inflight += a->inflight.size;
    }
    hgp_prom_set (p, m->counters, counters);
    hgp_prom_set (p, m->analytics, analytics);
    hgp_prom_set (p, m->queued, queued);
    hgp_prom_set (p, m->inflight, inflight);
    hgp_prom_set (p, m->held, (int64_t) hgp_entries_size (self->entries));
    hgp_prom_set (p, m->bytes, (int64_t) hgp_entries_held (self->entries));
    hgp_announced_expire (self->announced, self->now);
    hgp_prom_set (p, m->announced,
                  (int64_t) hgp_announced_size (self->announced));
}

static void
s_timers (hgp_broker_t *self)
{
    hgp_entries_expire (self->entries, self->now, s_entry_expire, self);
    bool beat = self->now >= self->next_heartbeat;
    if (beat) {
        self->next_heartbeat = self->now + self->interval;
        s_metrics_publish (self);
    }
    for (size_t i = 0; i < hgp_actors_size (self->table); i++) {
        hgp_actor_t *a = hgp_actors_at (self->table, i);
        if (self->now - a->last_heard > self->expiry) {
            //  It may only be stalled: tell it to start over
            s_actor_command (self, a->identity, a->identity_size,
                             HGP_CMD_DISCONNECT);
            hgp_actors_kill (self->table, a, "silent too long");
        }
        else
        if (beat && hgp_router_actor_heartbeat (self->actors, a->identity,
                                                a->identity_size, self->now))
            hgp_actors_kill (self->table, a, "unreachable");
    }
    s_reap (self);
    //  glibc keeps freed heap for reuse; after a burst of large requests
    //  that is most of our RSS, so hand it back once the burst is over
    hgp_entries_trim (self->entries);
    self->next_timer = self->now + TIMER_MS;
}


/*  --------------------------------------------------------------------
 *  Event loop
 */

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
        zstr_sendx (pipe, hgp_router_endpoint (self->clients),
                    hgp_router_endpoint (self->actors), NULL);
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
    for (size_t i = 0; i < hgp_actors_size (self->table); i++) {
        hgp_actor_t *a = hgp_actors_at (self->table, i);
        s_actor_command (self, a->identity, a->identity_size,
                         HGP_CMD_DISCONNECT);
        hgp_entry_t *e;
        while ((e = hgp_entry_list_pop (&a->inflight))) {
            if (e->state == HGP_ENTRY_INFLIGHT)
                s_entry_error (self, e, HGP_STATUS_TIMEOUT, "timeout",
                    "the broker stopped while an actor held the request; "
                    "it may or may not have been applied");
            hgp_entries_move (self->entries, e, HGP_ENTRY_FREE);
        }
        while ((e = hgp_entry_list_pop (&a->queue))) {
            if (e->dispatched)
                s_entry_error (self, e, HGP_STATUS_TIMEOUT, "timeout",
                    "the broker stopped; the request may or may not have "
                    "been applied");
            else
                s_entry_error (self, e, HGP_STATUS_UNAVAILABLE, "no_actor",
                               "the broker is stopping");
            hgp_entries_move (self->entries, e, HGP_ENTRY_FREE);
        }
    }
    self->stats.undeliverable += hgp_router_client_flush (self->clients);
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
    hgp_router_set_linger (self->clients, LINGER_MS);
    hgp_router_set_linger (self->actors, LINGER_MS);
}

int
hgp_broker_run (hgp_broker_t *self, zsock_t *pipe)
{
    assert (self);
    assert (pipe);
    zmq_pollitem_t items [] = {
        { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 },
        { hgp_router_handle (self->actors), 0, ZMQ_POLLIN, 0 },
        { hgp_router_handle (self->clients), 0, ZMQ_POLLIN, 0 }
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
                         && (n = hgp_router_recv (self->actors)); i++) {
                self->now = zclock_mono ();
                s_actor_message (self, n);
                if (hgp_actors_dead (self->table))
                    s_reap (self);
            }
        }
        if (items [2].revents & ZMQ_POLLIN) {
            int n;
            int64_t until = self->now + SLICE_MS;
            for (int i = 0; i < BATCH_CLIENTS && self->now < until
                         && (n = hgp_router_recv (self->clients)); i++) {
                self->now = zclock_mono ();
                s_client_message (self, n);
                if (hgp_actors_dead (self->table))
                    s_reap (self);
            }
        }
        if (self->now >= self->next_timer)
            s_timers (self);
        //  Removing a dead actor dispatches its work to others: flush
        //  again until no send failed
        s_flush (self);
        while (hgp_actors_dead (self->table)) {
            s_reap (self);
            s_flush (self);
        }
        self->stats.undeliverable += hgp_router_client_flush (self->clients);
    }
    s_shutdown (self);
    return rc;
}


/*  --------------------------------------------------------------------
 *  Construction
 */

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
    hgp_request_init (&self->req);
    hgp_request_init (&self->scratch);
    self->now = zclock_mono ();
    self->table = hgp_actors_new ();
    self->entries = hgp_entries_new (self->now);
    self->announced = hgp_announced_new ();
    self->prom = hgp_prom_new ("broker");
    assert (self->table && self->entries && self->announced && self->prom);
    s_metrics_declare (self);
    self->exporter = hgp_exporter_new (config, "broker", self->prom, &error);
    if (error) {
        hgp_broker_destroy (&self);
        goto fail;
    }
    self->next_timer = self->now + TIMER_MS;
    self->next_heartbeat = self->now + self->interval;

    hgp_process_random_id (self->broker_id, sizeof self->broker_id);
    //  The ZAP handler answers before anything can connect (hgp_keys.c)
    if (hgp_keys_curve (keys)) {
        self->zap = zactor_new (hgp_keys_zap_actor, keys);
        assert (self->zap);
    }
    self->clients = hgp_router_new (keys, HGP_ZAP_CLIENTS, client_endpoint,
                                    "broker/client_endpoint", CLIENT_SNDHWM,
                                    CLIENT_RCVHWM, self->broker_id, &error);
    if (self->clients)
        self->actors = hgp_router_new (keys, HGP_ZAP_ACTORS, actor_endpoint,
                                       "broker/actor_endpoint", ACTOR_SNDHWM,
                                       ACTOR_RCVHWM, NULL, &error);
    if (!self->actors) {
        hgp_broker_destroy (&self);
        goto fail;
    }
    zsys_info ("hgp-broker: %s: clients at %s, actors at %s "
               "(queue limit %u per actor, %zu bytes in flight per actor, "
               "%zu bytes in all, heartbeat %lld ms x %lld)", self->broker_id,
               hgp_router_endpoint (self->clients),
               hgp_router_endpoint (self->actors), self->queue_limit,
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
    hgp_exporter_destroy (&self->exporter);
    hgp_prom_destroy (&self->prom);
    hgp_announced_destroy (&self->announced);
    hgp_actors_destroy (&self->table);
    hgp_entries_destroy (&self->entries);
    hgp_request_clear (&self->req);
    hgp_request_clear (&self->scratch);
    hgp_buf_clear (&self->buf);
    hgp_router_destroy (&self->clients);
    hgp_router_destroy (&self->actors);
    zactor_destroy (&self->zap);
    hgp_keys_destroy (&self->keys);
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
