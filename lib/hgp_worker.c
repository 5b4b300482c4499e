/*  hgp_worker.c - an actor's links to the brokers (see .h)
 *
 *  One link per broker discovery reports, each with its own READY,
 *  heartbeats and expiry, so one silent broker costs only its own link a
 *  reconnect. Links are numbered, never reused, and a work item carries
 *  the number rather than a pointer: a reply for a broker that has left
 *  finds no link and is dropped instead of touching freed memory.
 *
 *  Sends never block (ZMQ_DONTWAIT): a broker that does not read is a dead
 *  broker, and the heartbeat expiry replaces the socket. Only the first
 *  frame of a message can fail at the high-water mark; libzmq takes the
 *  rest all or nothing.
 *
 *  Joins and leaves are applied only in hgp_worker_tick, between batches,
 *  so the owner's poll items stay valid from poll to the end of a batch.
 */
#include "hgp_worker.h"
#include "hgp_discovery.h"
#include "hgp_keys.h"
#include <inttypes.h>

/*  Our link to one broker */
typedef struct {
    uint32_t number;            /* unique in this worker, in hgp_work_t    */
    char broker_id [40];        /* from discovery, "static" without it     */
    char *endpoint;             /* its actor endpoint                      */
    char key [HGP_KEY_TXT + 1]; /* its CURVE public key, "" without CURVE  */
    zsock_t *dealer;            /* connected to endpoint                   */
    int64_t heartbeat_at;       /* next HEARTBEAT due, zclock_mono ms      */
    int64_t expiry_at;          /* broker dead if silent until then        */
    bool lost;                  /* reconnected after silence, not heard    */
    bool restart;               /* got DISCONNECT: new DEALER on next tick */
    uint64_t served;            /* replies sent on this link               */
    int64_t offset;             /* broker's clock minus ours, ms: a lower
                                   bound, the largest seen (S_CLOCK_UNKNOWN
                                   until a stamped message came)           */
    int64_t window_max;         /* the largest in the current window       */
    int64_t window_at;          /* our clock when the window began         */
    hgp_buf_t out;              /* REPLIES entries not yet sent            */
} s_link_t;

/*  The broker's clock, as seen through this link (PROTOCOL.md 5.3): each
    stamped message says the broker's clock was at least S when it left, so
    broker_now >= S + (our_now - our clock when it arrived); the largest
    such offset is the tightest bound. It is taken over windows of
    S_CLOCK_WINDOW ms so that the two clocks' drift cannot build up. A
    request's deadline in our clock is then its stamp + budget - offset:
    time it spent waiting in our socket (a pause, a stall) counts against
    its budget instead of starting it afresh. */
#define S_CLOCK_UNKNOWN     INT64_MIN
#define S_CLOCK_WINDOW      10000

/*  A REPLIES frame goes out once it holds this much (the broker drops
    frames over 2 MiB; one reply body is at most HGP_BODY_MAX) */
#define S_REPLIES_BYTES     (256u << 10)

struct _hgp_worker_t {
    hgp_keys_t *keys;           /* our actor certificate, bus/cluster      */
    zactor_t *discovery;        /* tells which brokers there are           */
    s_link_t *links [HGP_WORKER_LINKS_MAX];  /* one per broker we serve    */
    size_t nlinks;              /* entries used in links                   */
    size_t next;                /* link hgp_worker_recv tries first        */
    size_t drained;             /* links found empty in a row              */
    uint32_t numbers;           /* last link number given                  */
    hgp_ready_t ready;          /* what we announce                        */
    int64_t heartbeat;          /* heartbeat/interval, ms                  */
    int64_t expiry;             /* silence after which a broker is dead    */
    zmsg_t *msg;                /* the REQUEST(S) last returned from       */
    s_link_t *batch_link;       /* the link of a REQUESTS being read, or
                                   NULL                                    */
    hgp_batch_cur_t cur;        /* where in its frame                      */
    hgp_buf_t buf;              /* READY body                              */
};

static void
s_send (s_link_t *link, uint8_t command, const void *a, size_t asize,
        const void *b, size_t bsize)
{
    struct { const void *data; size_t size; } frames [4] = {
        { HGP_PROTO_ACTOR, strlen (HGP_PROTO_ACTOR) },
        { &command, 1 },
        { a, asize },
        { b, bsize }
    };
    size_t nframes = b ? 4 : a ? 3 : 2;
    void *socket = zsock_resolve (link->dealer);
    for (size_t i = 0; i < nframes; i++) {
        int flags = ZMQ_DONTWAIT | (i + 1 < nframes ? ZMQ_SNDMORE : 0);
        if (zmq_send (socket, frames [i].data, frames [i].size, flags) == -1) {
            //  The broker is not reading; it answers 504 for a lost REPLY
            zsys_warning ("broker %s: cannot send command %d: %s",
                          link->endpoint, command,
                          zmq_strerror (zmq_errno ()));
            return;
        }
    }
}

//  The broker's clock was at least clock now: learn the offset, return it
static int64_t
s_link_learn (s_link_t *link, int64_t clock)
{
    int64_t now = zclock_mono ();
    int64_t sample = clock - now;
    if (sample > link->window_max)
        link->window_max = sample;
    if (sample > link->offset)
        link->offset = sample;
    if (now - link->window_at >= S_CLOCK_WINDOW) {
        link->offset = link->window_max;
        link->window_max = sample;
        link->window_at = now;
    }
    return clock;
}

//  A stamp frame from the broker: its clock (8 bytes, big-endian) when it
//  sent the message; learn the offset. Returns the stamp, or
//  S_CLOCK_UNKNOWN if the frame holds none.
static int64_t
s_link_clock (s_link_t *link, const uint8_t *stamp, size_t size)
{
    if (size != 8)
        return S_CLOCK_UNKNOWN;
    uint64_t clock = 0;
    for (int i = 0; i < 8; i++)
        clock = clock << 8 | stamp [i];
    return s_link_learn (link, (int64_t) clock);
}

/*  Send the link's collected REPLIES, as one message */
static void
s_link_flush (s_link_t *link)
{
    if (link->out.size) {
        s_send (link, HGP_CMD_REPLIES, link->out.data, link->out.size,
                NULL, 0);
        link->out.size = 0;
    }
}

/*  A fresh DEALER to the link's broker, and READY on it */
static void
s_connect (hgp_worker_t *self, s_link_t *link)
{
    zsock_destroy (&link->dealer);
    link->dealer = zsock_new (ZMQ_DEALER);
    assert (link->dealer);
    //  The broker holds at most capacity requests here; room for their
    //  replies and heartbeats on top
    int hwm = (int) self->ready.capacity + 1000;
    zsock_set_sndhwm (link->dealer, hwm);
    zsock_set_rcvhwm (link->dealer, hwm);
    zsock_set_rcvtimeo (link->dealer, 0);       //  we only read when ready
    zsock_set_linger (link->dealer, 0);
    //  Discovery checked the key is one we trust (hgp_keys.h)
    if (hgp_keys_client_apply (self->keys, link->dealer, link->key))
        zsys_error ("broker %s: no CURVE key for it; it cannot hear us",
                    link->endpoint);
    else
    if (zsock_connect (link->dealer, "%s", link->endpoint) == -1)
        //  The config check tried the static one; a beaconed one is
        //  tcp://address:port built by discovery. Keep the link: its
        //  expiry tries again, and the log says why.
        zsys_error ("broker %s: cannot connect: %s", link->endpoint,
                    zmq_strerror (zmq_errno ()));
    self->buf.size = 0;
    int rc = hgp_ready_encode (&self->ready, &self->buf);
    assert (rc == 0);
    s_send (link, HGP_CMD_READY, self->buf.data, self->buf.size, NULL, 0);
    int64_t now = zclock_mono ();
    link->heartbeat_at = now + self->heartbeat;
    link->expiry_at = now + self->expiry;
    link->restart = false;
    //  Perhaps another broker process: learn its clock afresh
    link->offset = link->window_max = S_CLOCK_UNKNOWN;
    link->window_at = now;
}

static s_link_t *
s_link_lookup (hgp_worker_t *self, const char *broker_id)
{
    for (size_t i = 0; i < self->nlinks; i++)
        if (streq (self->links [i]->broker_id, broker_id))
            return self->links [i];
    return NULL;
}

static void
s_link_add (hgp_worker_t *self, const char *broker_id, const char *endpoint,
            const char *key)
{
    if (self->nlinks == HGP_WORKER_LINKS_MAX) {
        zsys_warning ("broker %s at %s: not served, %d brokers already",
                      broker_id, endpoint, HGP_WORKER_LINKS_MAX);
        return;
    }
    s_link_t *link = (s_link_t *) zmalloc (sizeof (s_link_t));
    assert (link);
    link->number = ++self->numbers;
    snprintf (link->broker_id, sizeof link->broker_id, "%s", broker_id);
    link->endpoint = strdup (endpoint);
    assert (link->endpoint);
    snprintf (link->key, sizeof link->key, "%s", key);
    self->links [self->nlinks++] = link;
    s_connect (self, link);
    zsys_info ("%s: broker %s at %s: serving it (%zu brokers)",
               self->ready.service, broker_id, endpoint, self->nlinks);
}

//  Close a link; polite tells the broker DISCONNECT first and lets it leave
static void
s_link_remove (hgp_worker_t *self, s_link_t *link, bool polite)
{
    //  The rest of a REQUESTS from it: that broker answers them itself
    if (self->batch_link == link) {
        self->batch_link = NULL;
        zmsg_destroy (&self->msg);
    }
    if (polite) {
        s_link_flush (link);
        s_send (link, HGP_CMD_DISCONNECT, NULL, 0, NULL, 0);
        zsock_set_linger (link->dealer, (int) MIN (self->heartbeat, 1000));
    }
    size_t i = 0;
    while (self->links [i] != link)
        i++;
    memmove (&self->links [i], &self->links [i + 1],
             (self->nlinks - i - 1) * sizeof (s_link_t *));
    self->nlinks--;
    self->next = 0;
    self->drained = 0;
    zsock_destroy (&link->dealer);
    hgp_buf_clear (&link->out);
    free (link->endpoint);
    free (link);
}

//  Discovery says a broker joined or left. Evasive brokers keep their
//  link: our own heartbeats tell whether the broker still talks to us.
static void
s_discovery_recv (hgp_worker_t *self)
{
    hgp_discovery_event_t event;
    if (hgp_discovery_event_recv (self->discovery, &event))
        return;
    s_link_t *link = s_link_lookup (self, event.broker_id);
    if (streq (event.kind, "JOIN")) {
        if (link && streq (link->endpoint, event.actor_endpoint)
        &&  streq (link->key, event.server_key))
            return;
        if (link)
            s_link_remove (self, link, false);
        s_link_add (self, event.broker_id, event.actor_endpoint,
                    event.server_key);
    }
    else
    if (streq (event.kind, "LEAVE") && link) {
        zsys_info ("%s: broker %s at %s: %s; %" PRIu64 " replies sent to it,"
                   " closing the link (%zu brokers left)", self->ready.service,
                   link->broker_id, link->endpoint, event.reason,
                   link->served, self->nlinks - 1);
        s_link_remove (self, link, false);
    }
}

char *
hgp_worker_config_check (hgp_config_t *config)
{
    char *error = hgp_discovery_config_check (config);
    if (error)
        return error;
    //  The certificate must be there now, not at the first connect
    hgp_keys_t *keys = hgp_keys_new (config, HGP_KEYS_ACTOR, &error);
    hgp_keys_destroy (&keys);
    if (error)
        return error;
    const char *endpoint = hgp_config_str (config, "broker/actor_endpoint",
                                           "tcp://127.0.0.1:5556");
    if (hgp_config_error (config))
        return strdup (hgp_config_error (config));
    //  Beacons tell where each broker is: the static endpoint is not ours
    //  to check (it may well be the broker's tcp://*:PORT)
    char *problem = hgp_discovery_interface_problem (
        hgp_config_str (config, "discovery/interface", ""));
    if (!problem)
        return NULL;
    zstr_free (&problem);
    //  Only libzmq knows what endpoints it takes; ask it
    zsock_t *probe = zsock_new (ZMQ_DEALER);
    assert (probe);
    if (zsock_connect (probe, "%s", endpoint) == -1)
        error = zsys_sprintf ("config: broker/actor_endpoint"
                              " (HGP_BROKER_ACTOR_ENDPOINT) '%s' is not a"
                              " ZeroMQ endpoint: %s",
                              endpoint, zmq_strerror (zmq_errno ()));
    zsock_destroy (&probe);
    return error;
}

void
hgp_worker_set_metrics (hgp_worker_t *self, const char *url)
{
    if (url && hgp_url_valid (url, strlen (url)))
        snprintf (self->ready.metrics, sizeof self->ready.metrics, "%s", url);
}

hgp_worker_t *
hgp_worker_new (hgp_config_t *config, const char *service,
                const char *actor_id, uint32_t capacity, int64_t heartbeat,
                int64_t liveness)
{
    hgp_worker_t *self = (hgp_worker_t *) zmalloc (sizeof (hgp_worker_t));
    assert (self);
    snprintf (self->ready.service, sizeof self->ready.service, "%s", service);
    snprintf (self->ready.actor_id, sizeof self->ready.actor_id, "%s",
              actor_id);
    self->ready.capacity = capacity;
    self->ready.batch = true;           //  we read REQUESTS
    char *error = NULL;
    self->keys = hgp_keys_new (config, HGP_KEYS_ACTOR, &error);
    if (error)
        zsys_error ("%s", error);
    assert (self->keys);        //  hgp_worker_config_check said so
    snprintf (self->ready.cluster, sizeof self->ready.cluster, "%s",
              hgp_keys_cluster (self->keys));
    hgp_keys_log (self->keys, service);
    self->heartbeat = heartbeat;
    self->expiry = heartbeat * liveness;
    self->discovery = zactor_new (hgp_discovery_actor, config);
    assert (self->discovery);
    zstr_send (self->discovery, "LISTEN");  //  links come as JOIN events
    return self;
}

void
hgp_worker_destroy (hgp_worker_t **self_p)
{
    assert (self_p);
    hgp_worker_t *self = *self_p;
    if (self) {
        //  Each broker redelivers what it had sent us that is still
        //  unread to the other actors
        while (self->nlinks)
            s_link_remove (self, self->links [0], true);
        zactor_destroy (&self->discovery);
        hgp_keys_destroy (&self->keys);
        zmsg_destroy (&self->msg);
        hgp_buf_clear (&self->buf);
        free (self);
        *self_p = NULL;
    }
}

size_t
hgp_worker_pollitems (hgp_worker_t *self, zmq_pollitem_t *items)
{
    size_t n = 0;
    for (size_t i = 0; i < self->nlinks; i++)
        items [n++] = (zmq_pollitem_t) {
            zsock_resolve (self->links [i]->dealer), 0, ZMQ_POLLIN, 0 };
    items [n++] = (zmq_pollitem_t) {
        zsock_resolve (self->discovery), 0, ZMQ_POLLIN, 0 };
    return n;
}

/*  The next entry of the REQUESTS being read into work: true, or false
    when it has no more (or the rest is not entries) */
static bool
s_batch_next (hgp_worker_t *self, hgp_work_t *work)
{
    s_link_t *link = self->batch_link;
    hgp_batch_entry_t entry;
    int rc = hgp_batch_next (&self->cur, &entry);
    if (rc == 1) {
        work->link = link->number;
        memcpy (work->token, entry.token, sizeof work->token);
        //  Never later than now + budget: offset >= clock - now
        work->deadline = s_link_learn (link, entry.clock) + entry.budget
                       - link->offset;
        work->body = entry.body;
        work->size = entry.size;
        work->batched = true;
        return true;
    }
    if (rc == -1)
        //  The broker times those out (504)
        zsys_warning ("broker %s: dropped the rest of a malformed REQUESTS",
                      link->endpoint);
    self->batch_link = NULL;
    return false;
}

int
hgp_worker_recv (hgp_worker_t *self, hgp_work_t *work)
{
    if (self->batch_link && s_batch_next (self, work))
        return 1;
    zmsg_destroy (&self->msg);
    while (self->nlinks && self->drained < self->nlinks) {
        s_link_t *link = self->links [self->next % self->nlinks];
        zmsg_t *msg = link->restart ? NULL : zmsg_recv (link->dealer);
        if (!msg) {
            self->next = (self->next + 1) % self->nlinks;
            self->drained++;
            continue;
        }
        link->expiry_at = zclock_mono () + self->expiry;
        if (link->lost) {
            zsys_info ("broker %s: heard from it again", link->endpoint);
            link->lost = false;
        }
        zframe_t *signature = zmsg_first (msg);
        zframe_t *command = zmsg_next (msg);
        if (!command || !zframe_streq (signature, HGP_PROTO_ACTOR)
        ||  zframe_size (command) != 1) {
            zsys_warning ("broker %s: dropped a message that is not %s",
                          link->endpoint, HGP_PROTO_ACTOR);
            zmsg_destroy (&msg);
            continue;
        }
        uint8_t cmd = zframe_data (command) [0];
        if (cmd == HGP_CMD_DISCONNECT) {
            zsys_info ("broker %s: got DISCONNECT, sending READY again",
                       link->endpoint);
            link->restart = true;
            zmsg_destroy (&msg);
            continue;
        }
        if (cmd == HGP_CMD_HEARTBEAT) {
            zframe_t *stamp = zmsg_next (msg);
            if (stamp)
                s_link_clock (link, zframe_data (stamp), zframe_size (stamp));
        }
        if (cmd == HGP_CMD_REQUESTS) {
            zframe_t *frame = zmsg_next (msg);
            if (!frame || zmsg_next (msg)) {
                zsys_warning ("broker %s: dropped a REQUESTS that is not"
                              " one frame of entries", link->endpoint);
                zmsg_destroy (&msg);
                continue;
            }
            hgp_batch_begin (&self->cur, zframe_data (frame),
                             zframe_size (frame), false);
            self->msg = msg;
            self->batch_link = link;
            if (s_batch_next (self, work))
                return 1;
            zmsg_destroy (&self->msg);
            continue;
        }
        if (cmd != HGP_CMD_REQUEST) {
            if (cmd != HGP_CMD_HEARTBEAT)
                zsys_warning ("broker %s: dropped unknown command %d",
                              link->endpoint, cmd);
            zmsg_destroy (&msg);
            continue;
        }
        zframe_t *token = zmsg_next (msg);
        zframe_t *budget = zmsg_next (msg);
        zframe_t *body = zmsg_next (msg);
        if (!token || zframe_size (token) != sizeof work->token) {
            //  No token, no way to answer: the broker times it out (504)
            zsys_warning ("broker %s: dropped a REQUEST without an 8-byte"
                          " token", link->endpoint);
            zmsg_destroy (&msg);
            continue;
        }
        work->link = link->number;
        memcpy (work->token, zframe_data (token), sizeof work->token);
        work->batched = false;
        work->body = NULL;
        work->size = 0;
        work->deadline = zclock_mono ();
        size_t bsize = budget ? zframe_size (budget) : 0;
        if ((bsize == 4 || bsize == 12) && body && !zmsg_next (msg)) {
            const uint8_t *b = zframe_data (budget);
            uint32_t ms = (uint32_t) b [0] << 24 | (uint32_t) b [1] << 16
                        | (uint32_t) b [2] << 8 | (uint32_t) b [3];
            int64_t sent = s_link_clock (link, b + 4, bsize - 4);
            //  Never later than now + budget: offset >= sent - now
            if (sent != S_CLOCK_UNKNOWN)
                work->deadline = sent + ms - link->offset;
            else
                work->deadline += ms;
            work->body = zframe_data (body);
            work->size = zframe_size (body);
        }
        self->msg = msg;
        return 1;
    }
    //  Everything drained: the next call looks at every link again
    self->drained = 0;
    return 0;
}

void
hgp_worker_reply (hgp_worker_t *self, const hgp_work_t *work,
                  const void *body, size_t size)
{
    for (size_t i = 0; i < self->nlinks; i++) {
        s_link_t *link = self->links [i];
        if (link->number == work->link) {
            if (work->batched) {
                if (hgp_batch_put_reply (&link->out, work->token, body,
                                         (uint32_t) size))
                    zsys_error ("broker %s: out of memory for a reply",
                                link->endpoint);
                if (link->out.size >= S_REPLIES_BYTES)
                    s_link_flush (link);
            }
            else
                s_send (link, HGP_CMD_REPLY, work->token, sizeof work->token,
                        body, size);
            link->served++;
            return;
        }
    }
}

void
hgp_worker_flush (hgp_worker_t *self)
{
    for (size_t i = 0; i < self->nlinks; i++)
        s_link_flush (self->links [i]);
}

bool
hgp_worker_pending (hgp_worker_t *self)
{
    return self->batch_link != NULL;
}

void
hgp_worker_tick (hgp_worker_t *self)
{
    //  Replies first, on the sockets they belong to
    hgp_worker_flush (self);
    //  Discovery next: only here may links come and go
    while (zsock_events (zactor_sock (self->discovery)) & ZMQ_POLLIN)
        s_discovery_recv (self);
    int64_t now = zclock_mono ();
    for (size_t i = 0; i < self->nlinks; i++) {
        s_link_t *link = self->links [i];
        if (link->restart)
            s_connect (self, link);
        else
        if (now >= link->expiry_at) {
            if (!link->lost)
                zsys_warning ("broker %s: silent for %" PRId64 " ms,"
                              " connecting again", link->endpoint,
                              self->expiry);
            link->lost = true;
            s_connect (self, link);
        }
        else
        if (now >= link->heartbeat_at) {
            s_send (link, HGP_CMD_HEARTBEAT, NULL, 0, NULL, 0);
            link->heartbeat_at = now + self->heartbeat;
        }
    }
    //  A busy broker cannot keep the first slots of every batch
    if (self->nlinks)
        self->next = (self->next + 1) % self->nlinks;
    self->drained = 0;
}

int64_t
hgp_worker_wake_at (hgp_worker_t *self)
{
    int64_t wake = zclock_mono () + self->heartbeat;
    if (self->batch_link)
        return zclock_mono ();      //  requests read, not yet returned
    for (size_t i = 0; i < self->nlinks; i++) {
        s_link_t *link = self->links [i];
        if (link->restart)
            return zclock_mono ();
        wake = MIN (wake, MIN (link->heartbeat_at, link->expiry_at));
    }
    return wake;
}

size_t
hgp_worker_links (hgp_worker_t *self)
{
    return self->nlinks;
}
