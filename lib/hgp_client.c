/*  hgp_client.c - a client of the brokers' client endpoints (see .h)
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
 *
 *  With discovery (several brokers) the socket is one ROUTER connected to
 *  every live broker, and each broker's client ROUTER presents its broker
 *  id as routing id (PROTOCOL.md 9.3). So one socket still carries
 *  everything (hgp_client_sock stays meaningful), and yet we choose which
 *  broker gets a request and see which one answered. ROUTER_MANDATORY with
 *  ZMQ_IMMEDIATE makes a send to a broker with no live connection fail at
 *  once (EHOSTUNREACH) instead of queueing, and a socket monitor reports
 *  each dropped connection (ZMQ_EVENT_DISCONNECTED): that is how a kill -9
 *  of a broker is noticed within milliseconds, well before its beacon
 *  expires, even by a client with nothing new to send. (A send can still
 *  go into the old connection in the few ms before libzmq notices; such a
 *  request is pending on that broker like any other and moves with them.)
 *
 *  Invariants of the discovery path:
 *  - Every request sent and not yet answered to the caller is in
 *    `pending`, by id, with the body as first encoded and the broker that
 *    holds it. A broker that leaves or drops its connection has its
 *    pending requests re-sent elsewhere with the same id and the budget
 *    left (the body re-encoded with the new timeout_ms). Re-sending is
 *    always safe: the increment and its id record are one Lua script in
 *    Redis, so a second delivery replays instead of adding.
 *  - The caller sees at most one reply per id: the first 200, or the error
 *    of the broker that holds it now. A duplicate (from a broker we moved
 *    away from) is dropped here.
 *  - pending is bounded by what the caller sends within one deadline:
 *    entries past their deadline plus HGP_CLIENT_GRACE_MS are purged.
 */
#include "hgp_client.h"
#include "hgp_discovery.h"
#include "hgp_keys.h"
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>

#define S_BROKERS_MAX    64     /* brokers one client uses               */
#define S_PROBE_MS      100     /* retry a broker whose send failed      */
#define S_WAIT_STEP_MS   50     /* longest poll: purge and events keep up */
#define S_RETRIES_MAX     2     /* 503 no_actor / 504 tried elsewhere    */
#define S_RETRY_MIN_MS   50     /* budget worth a retry                  */
#define S_EVENTS_MS       5     /* hot path: look at discovery this often */

typedef struct {
    char id [40];               /* broker id: its ROUTER routing id         */
    char endpoint [256];        /* its client endpoint, connected           */
    bool evasive;               /* beacons late: no new work if avoidable   */
    bool up;                    /* the last send to it went through         */
    int64_t retry_at;           /* not up: try it again after this          */
    uint64_t sent;              /* requests sent to it                      */
} s_broker_t;

typedef struct {
    char id [HGP_ID_MAX + 1];   /* the request id, the table's key          */
    s_broker_t *broker;         /* holds it now; NULL: waiting for one      */
    int64_t deadline;           /* mono ms: first send + timeout_ms         */
    uint8_t *body;              /* as first encoded                         */
    size_t size;
    int retries;                /* re-sent because of an error reply        */
    bool pinned;                /* hgp_client_call_at: this broker or none  */
} s_pending_t;

struct _hgp_client_t {
    zsock_t *dealer;            /* DEALER or, with discovery, ROUTER        */
    void *handle;               /* its libzmq socket, for the hot path      */
    char *endpoint;             /* where we connect, for messages           */
    hgp_keys_t *keys;           /* our certificate, or NULL: plain sockets  */
    hgp_keys_t *own_keys;       /* keys, when we made them (new_config)     */
    hgp_buf_t buf;              /* encode buffer, reused for every request  */
    int sndtimeo;               /* ZMQ_SNDTIMEO currently set on dealer     */
    int send_wait;              /* most ms a send waits; -1: its timeout    */
    bool batching;              /* between batch_begin and batch_end        */
    uint32_t batched;           /* requests encoded into buf since begin    */
    size_t batch_start;         /* buf's array header                       */
    zmq_msg_t replies;          /* a reply batch being read                 */
    size_t replies_at;          /* where its next reply starts              */
    int replies_left;           /* replies in it not read yet               */
    //  With discovery only
    zactor_t *discovery;        /* our own discovery actor, or NULL         */
    zsock_t *events;            /* discovery events: that actor's pipe, or
                                   a SUB to a shared actor (new_shared);
                                   NULL: one static broker, plain DEALER    */
    bool shared;                /* events is our SUB                        */
    zsock_t *monitor;           /* ZMQ_EVENT_DISCONNECTED of the ROUTER     */
    s_broker_t *brokers [S_BROKERS_MAX];    /* live, in JOIN order          */
    size_t nbrokers;
    size_t rr;                  /* round-robin position                     */
    zhashx_t *pending;          /* request id -> s_pending_t                */
    bool failover_due;          /* a broker went down: move its requests    */
    int64_t purge_at;           /* next purge of stale pending entries      */
    int64_t events_at;          /* next look at discovery on the hot path   */
    hgp_request_t scratch;      /* decoded body, when re-encoding           */
    uint64_t resent;            /* requests sent again elsewhere            */
};


/*  --------------------------------------------------------------------
 *  Construction
 */

hgp_client_t *
hgp_client_new (const char *endpoint, hgp_keys_t *keys)
{
    assert (endpoint);
    hgp_client_t *self = (hgp_client_t *) zmalloc (sizeof (hgp_client_t));
    assert (self);
    self->keys = keys;
    self->send_wait = -1;
    zmq_msg_init (&self->replies);
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
    if (keys && hgp_keys_client_apply (keys, self->dealer,
                                       hgp_keys_broker (keys))) {
        hgp_client_destroy (&self);
        errno = EINVAL;             //  no broker.cert to check it against
        return NULL;
    }
    if (zsock_connect (self->dealer, "%s", endpoint)) {
        int error = errno;          //  for the caller's message
        hgp_client_destroy (&self);
        errno = error;
        return NULL;
    }
    return self;
}

static void
s_pending_destroy (void **item_p)
{
    s_pending_t *pending = (s_pending_t *) *item_p;
    if (pending) {
        free (pending->body);
        free (pending);
        *item_p = NULL;
    }
}

//  The discovery path's client, without its source of events yet: one
//  ROUTER to be connected to every broker, its monitor, the pending table
static hgp_client_t *
s_router_new (const char *where, hgp_keys_t *keys)
{
    hgp_client_t *self = (hgp_client_t *) zmalloc (sizeof (hgp_client_t));
    assert (self);
    self->keys = keys;
    self->send_wait = -1;
    zmq_msg_init (&self->replies);
    self->dealer = zsock_new (ZMQ_ROUTER);
    assert (self->dealer);
    self->handle = zsock_resolve (self->dealer);
    self->endpoint = strdup (where);
    assert (self->endpoint);
    zsock_set_linger (self->dealer, 0);
    zsock_set_immediate (self->dealer, 1);
    zsock_set_router_mandatory (self->dealer, 1);
    //  A broker that reconnects presents the same routing id: take it
    zsock_set_router_handover (self->dealer, 1);
    zsock_set_sndhwm (self->dealer, 100000);
    zsock_set_rcvhwm (self->dealer, 100000);
    //  Dropped connections, as they happen (see the top of the file)
    char monitor [64];
    snprintf (monitor, sizeof monitor, "inproc://hgp-client-monitor-%p",
              (void *) self);
    int rc = zmq_socket_monitor (self->handle, monitor,
                                 ZMQ_EVENT_DISCONNECTED);
    assert (rc == 0);
    self->monitor = zsock_new (ZMQ_PAIR);
    assert (self->monitor);
    zsock_set_linger (self->monitor, 0);
    rc = zsock_connect (self->monitor, "%s", monitor);
    assert (rc == 0);
    self->pending = zhashx_new ();
    assert (self->pending);
    zhashx_set_destructor (self->pending, s_pending_destroy);
    hgp_request_init (&self->scratch);
    self->purge_at = zclock_mono ();
    return self;
}

hgp_client_t *
hgp_client_new_config (hgp_config_t *config)
{
    assert (config);
    const char *endpoint = hgp_config_str (config, "broker/client_endpoint",
                                           "tcp://127.0.0.1:5555");
    char *error = NULL;
    hgp_keys_t *keys = hgp_keys_new (config, HGP_KEYS_CLIENT, &error);
    if (!keys) {
        zsys_error ("%s", error);
        zstr_free (&error);
        errno = EACCES;
        return NULL;
    }
    zactor_t *discovery = zactor_new (hgp_discovery_actor, config);
    assert (discovery);
    zstr_send (discovery, "MODE");
    char *mode = zstr_recv (discovery);
    bool beacon = mode && streq (mode, "beacon");
    zstr_free (&mode);
    hgp_client_t *self = NULL;
    if (!beacon) {
        zactor_destroy (&discovery);
        self = hgp_client_new (endpoint, keys);
        if (self)
            self->own_keys = keys;
        else
            hgp_keys_destroy (&keys);
        return self;
    }
    char *where = zsys_sprintf ("beacons:%s:%s",
        hgp_config_str (config, "discovery/interface", ""),
        hgp_config_str (config, "discovery/port", "5670"));
    assert (where);
    self = s_router_new (where, keys);
    self->own_keys = keys;
    zstr_free (&where);
    self->discovery = discovery;
    self->events = zactor_sock (discovery);
    zstr_sendx (self->discovery, "LISTEN", "quiet", NULL);
    return self;
}

hgp_client_t *
hgp_client_new_shared (const char *events, const char *where,
                       hgp_keys_t *keys)
{
    assert (events);
    assert (where);
    //  Unique per client for the life of the process, so a snapshot can
    //  never go to a later client at the same address (hgp_discovery.h)
    static atomic_uint_fast64_t s_topics = 0;
    char topic [24];
    snprintf (topic, sizeof topic, "@%016" PRIx64,
              (uint64_t) atomic_fetch_add (&s_topics, 1) + 1);
    zsock_t *sub = zsock_new (ZMQ_SUB);
    assert (sub);
    zsock_set_linger (sub, 0);
    zsock_set_rcvhwm (sub, 0);          //  never drop an event
    const char *kinds [] = { "JOIN", "EVASIVE", "ALIVE", "LEAVE", NULL };
    for (int i = 0; kinds [i]; i++)
        zsock_set_subscribe (sub, kinds [i]);
    if (zsock_connect (sub, "%s", events)) {
        int error = errno;
        zsock_destroy (&sub);
        errno = error;
        return NULL;
    }
    //  After connecting: this one asks for the snapshot, which must come
    //  after the kinds are subscribed
    zsock_set_subscribe (sub, topic);
    hgp_client_t *self = s_router_new (where, keys);
    self->events = sub;
    self->shared = true;
    return self;
}

void
hgp_client_destroy (hgp_client_t **self_p)
{
    assert (self_p);
    hgp_client_t *self = *self_p;
    if (self) {
        if (self->monitor)
            zmq_socket_monitor (self->handle, NULL, 0);
        zsock_destroy (&self->monitor);
        zsock_destroy (&self->dealer);
        if (self->shared)
            zsock_destroy (&self->events);
        zactor_destroy (&self->discovery);
        for (size_t i = 0; i < self->nbrokers; i++)
            free (self->brokers [i]);
        zhashx_destroy (&self->pending);
        hgp_request_clear (&self->scratch);
        hgp_buf_clear (&self->buf);
        zmq_msg_close (&self->replies);
        hgp_keys_destroy (&self->own_keys);
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

uint64_t
hgp_client_resent (hgp_client_t *self)
{
    assert (self);
    return self->resent;
}


/*  --------------------------------------------------------------------
 *  Discovery path: brokers and where requests go
 */

static s_broker_t *
s_broker_lookup (hgp_client_t *self, const char *id, size_t len)
{
    for (size_t i = 0; i < self->nbrokers; i++)
        if (strlen (self->brokers [i]->id) == len
        &&  memcmp (self->brokers [i]->id, id, len) == 0)
            return self->brokers [i];
    return NULL;
}

//  Send one encoded body to broker. 0, or -1 with errno: EHOSTUNREACH (no
//  live connection to it), EAGAIN (its queue is full). A broker that was
//  up and is not any more has lost what it held: failover is due.
static int
s_broker_send (hgp_client_t *self, s_broker_t *broker, const uint8_t *body,
               size_t size)
{
    if (zmq_send (self->handle, broker->id, strlen (broker->id),
                  ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) {
        int error = zmq_errno ();
        if (error == EHOSTUNREACH) {
            if (broker->up)
                self->failover_due = true;
            broker->up = false;
            broker->retry_at = zclock_mono () + S_PROBE_MS;
        }
        errno = error;
        return -1;
    }
    //  The rest of a message cannot fail once its first frame went in
    zmq_send (self->handle, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (self->handle, HGP_PROTO_CLIENT, strlen (HGP_PROTO_CLIENT),
              ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (self->handle, body, size, ZMQ_DONTWAIT);
    broker->up = true;
    broker->sent++;
    return 0;
}

//  Send body to the next broker that takes it, round-robin, never to
//  exclude. First pass: brokers that are up (or due a retry) and not
//  evasive; second pass: any. The broker used, or NULL.
static s_broker_t *
s_place (hgp_client_t *self, const uint8_t *body, size_t size,
         s_broker_t *exclude)
{
    size_t n = self->nbrokers;
    if (n == 0)
        return NULL;
    int64_t now = zclock_mono ();
    size_t start = self->rr++;
    for (int pass = 0; pass < 2; pass++)
        for (size_t k = 0; k < n; k++) {
            s_broker_t *broker = self->brokers [(start + k) % n];
            if (broker == exclude)
                continue;
            if (pass == 0 && (broker->evasive
                              || (!broker->up && now < broker->retry_at)))
                continue;
            if (s_broker_send (self, broker, body, size) == 0)
                return broker;
        }
    return NULL;
}

//  Re-send a pending request elsewhere with what is left of its budget.
//  Leaves it waiting (broker NULL) when no broker takes it now.
static void
s_pending_resend (hgp_client_t *self, s_pending_t *pending,
                  s_broker_t *exclude)
{
    pending->broker = NULL;
    int64_t left = pending->deadline - zclock_mono ();
    if (left < 1 || pending->pinned)
        return;                         //  the caller times it out
    hgp_error_t err;
    if (hgp_request_decode (&self->scratch, pending->body, pending->size,
                            &err))
        return;                         //  we encoded it: cannot happen
    self->scratch.timeout_ms = (uint32_t) MIN (left, HGP_TIMEOUT_MAX);
    self->buf.size = 0;
    int rc = hgp_request_encode (&self->scratch, &self->buf);
    hgp_request_clear (&self->scratch);
    if (rc)
        return;
    pending->broker = s_place (self, self->buf.data, self->buf.size, exclude);
    if (pending->broker)
        self->resent++;
}

//  Move every request off brokers that are down or gone (broker NULL
//  marks the latter). Re-sending can find another broker down, so go
//  round until nothing is due; each broker goes down at most once a round.
static void
s_failover (hgp_client_t *self)
{
    for (size_t round = 0; self->failover_due && round <= self->nbrokers;
         round++) {
        self->failover_due = false;
        zlistx_t *moving = zlistx_new ();
        assert (moving);
        for (s_pending_t *p = (s_pending_t *) zhashx_first (self->pending);
             p; p = (s_pending_t *) zhashx_next (self->pending))
            if (!p->broker || !p->broker->up)
                zlistx_add_end (moving, p);
        for (s_pending_t *p = (s_pending_t *) zlistx_first (moving);
             p; p = (s_pending_t *) zlistx_next (moving))
            s_pending_resend (self, p, p->broker);
        zlistx_destroy (&moving);
    }
}

static void
s_broker_join (hgp_client_t *self, const hgp_discovery_event_t *event)
{
    if (s_broker_lookup (self, event->broker_id, strlen (event->broker_id)))
        return;
    if (self->nbrokers == S_BROKERS_MAX) {
        zsys_warning ("client: ignoring broker %s, %d known already",
                      event->broker_id, S_BROKERS_MAX);
        return;
    }
    //  libzmq takes the server key at connect: one ROUTER, a key per
    //  broker. Discovery only reports brokers whose key we trust.
    if ((self->keys && hgp_keys_client_apply (self->keys, self->dealer,
                                              event->server_key))
    ||  zsock_connect (self->dealer, "%s", event->client_endpoint)) {
        zsys_warning ("client: cannot connect to broker %s at %s",
                      event->broker_id, event->client_endpoint);
        return;
    }
    s_broker_t *broker = (s_broker_t *) zmalloc (sizeof (s_broker_t));
    assert (broker);
    snprintf (broker->id, sizeof broker->id, "%s", event->broker_id);
    snprintf (broker->endpoint, sizeof broker->endpoint, "%s",
              event->client_endpoint);
    self->brokers [self->nbrokers++] = broker;
    //  Something may have been waiting for any broker at all
    self->failover_due = true;
}

static void
s_broker_leave (hgp_client_t *self, s_broker_t *broker)
{
    zsock_disconnect (self->dealer, "%s", broker->endpoint);
    for (s_pending_t *p = (s_pending_t *) zhashx_first (self->pending);
         p; p = (s_pending_t *) zhashx_next (self->pending))
        if (p->broker == broker) {
            p->broker = NULL;
            self->failover_due = true;
        }
    size_t i = 0;
    while (self->brokers [i] != broker)
        i++;
    memmove (&self->brokers [i], &self->brokers [i + 1],
             (self->nbrokers - i - 1) * sizeof (s_broker_t *));
    self->nbrokers--;
    free (broker);
}

static void
s_event (hgp_client_t *self, zmsg_t *msg)
{
    hgp_discovery_event_t event;
    if (hgp_discovery_event_parse (msg, &event))
        return;
    if (streq (event.kind, "JOIN")) {
        s_broker_join (self, &event);
        return;
    }
    s_broker_t *broker = s_broker_lookup (self, event.broker_id,
                                          strlen (event.broker_id));
    if (!broker)
        return;
    if (streq (event.kind, "LEAVE"))
        s_broker_leave (self, broker);
    else
        broker->evasive = streq (event.kind, "EVASIVE");
}

//  The monitor says a connection dropped: [event, value][endpoint]. The
//  broker is down until a send goes through again; what it held moves.
static void
s_disconnected (hgp_client_t *self, zmsg_t *msg)
{
    zframe_t *head = zmsg_first (msg);
    zframe_t *address = zmsg_next (msg);
    uint16_t event = 0;
    if (!head || zframe_size (head) != 6 || !address)
        return;
    memcpy (&event, zframe_data (head), sizeof event);
    if (event != ZMQ_EVENT_DISCONNECTED)
        return;
    for (size_t i = 0; i < self->nbrokers; i++) {
        s_broker_t *broker = self->brokers [i];
        if (zframe_streq (address, broker->endpoint) && broker->up) {
            broker->up = false;
            broker->retry_at = zclock_mono () + S_PROBE_MS;
            self->failover_due = true;
        }
    }
}

//  Take what discovery and the monitor have said, waiting up to wait_ms
//  for the first message; then re-send whatever is due
static void
s_events (hgp_client_t *self, int wait_ms)
{
    self->events_at = zclock_mono () + S_EVENTS_MS;
    zmq_pollitem_t items [] = {
        { zsock_resolve (self->events), 0, ZMQ_POLLIN, 0 },
        { zsock_resolve (self->monitor), 0, ZMQ_POLLIN, 0 }
    };
    while (zmq_poll (items, 2, wait_ms) > 0) {
        if (items [0].revents & ZMQ_POLLIN) {
            zmsg_t *msg = zmsg_recv (self->events);
            //  A snapshot for us comes as [our topic][event]
            zframe_t *first = msg ? zmsg_first (msg) : NULL;
            if (first && zframe_size (first) > 0
            &&  zframe_data (first) [0] == '@') {
                first = zmsg_pop (msg);
                zframe_destroy (&first);
            }
            if (msg)
                s_event (self, msg);
            zmsg_destroy (&msg);
        }
        if (items [1].revents & ZMQ_POLLIN) {
            zmsg_t *msg = zmsg_recv (self->monitor);
            if (msg)
                s_disconnected (self, msg);
            zmsg_destroy (&msg);
        }
        wait_ms = 0;
    }
    if (self->failover_due)
        s_failover (self);
}

//  Drop pending requests well past their deadline: their caller gave up
static void
s_purge (hgp_client_t *self)
{
    int64_t now = zclock_mono ();
    if (now < self->purge_at)
        return;
    self->purge_at = now + S_WAIT_STEP_MS;
    zlistx_t *stale = zlistx_new ();
    assert (stale);
    for (s_pending_t *p = (s_pending_t *) zhashx_first (self->pending);
         p; p = (s_pending_t *) zhashx_next (self->pending))
        if (now > p->deadline + HGP_CLIENT_GRACE_MS)
            zlistx_add_end (stale, p->id);
        else
        if (!p->broker && !p->pinned)
            self->failover_due = true;  //  try again to find it a broker
    for (const char *id = (const char *) zlistx_first (stale); id;
         id = (const char *) zlistx_next (stale))
        zhashx_delete (self->pending, id);
    zlistx_destroy (&stale);
}

//  Send a request on the discovery path: to broker `only` if given, else
//  wherever it goes. Waits for a broker up to the request's timeout.
static int
s_discovery_send (hgp_client_t *self, const hgp_request_t *req,
                  s_broker_t *only)
{
    self->buf.size = 0;
    if (hgp_request_encode (req, &self->buf)) {
        errno = EINVAL;
        return -1;
    }
    int64_t timeout = req->timeout_ms ? req->timeout_ms : HGP_TIMEOUT_DEFAULT;
    int64_t wait = self->send_wait >= 0 ? MIN (self->send_wait, timeout)
                                        : timeout;
    //  Events may free the broker `only` (it left): keep its id, look it up
    char only_id [sizeof only->id] = "";
    if (only)
        snprintf (only_id, sizeof only_id, "%s", only->id);
    int64_t start = zclock_mono ();
    if (start >= self->events_at)
        s_events (self, 0);
    if (only_id [0])
        only = s_broker_lookup (self, only_id, strlen (only_id));
    s_broker_t *broker = NULL;
    int error = EAGAIN;
    while (!only_id [0] || only) {
        if (only) {
            if (s_broker_send (self, only, self->buf.data, self->buf.size) == 0)
                broker = only;
            else
                error = errno;
        }
        else
            broker = s_place (self, self->buf.data, self->buf.size, NULL);
        if (broker || zsys_interrupted || zclock_mono () - start >= wait)
            break;
        //  Nobody took it: a broker may be connecting or about to be heard
        s_events (self, 5);
        if (only_id [0])                //  NULL when it left meanwhile
            only = s_broker_lookup (self, only_id, strlen (only_id));
    }
    if (self->failover_due)
        s_failover (self);
    if (!broker) {
        errno = only_id [0] ? error : EAGAIN;
        return -1;
    }
    //  A retry of an id still pending (the caller's own retry) replaces it
    s_pending_t *pending = (s_pending_t *) zmalloc (sizeof (s_pending_t));
    assert (pending);
    snprintf (pending->id, sizeof pending->id, "%s", req->id);
    pending->broker = broker;
    pending->deadline = start + timeout;
    pending->body = (uint8_t *) malloc (self->buf.size);
    assert (pending->body);
    memcpy (pending->body, self->buf.data, self->buf.size);
    pending->size = self->buf.size;
    pending->pinned = only != NULL;
    zhashx_update (self->pending, pending->id, pending);
    return 0;
}


/*  --------------------------------------------------------------------
 *  Sending and receiving
 */

//  [empty][HGPC01][body] on the DEALER. Only the first frame can block or
//  fail; once it is accepted libzmq takes the rest, all or nothing.
static int
s_send_body (hgp_client_t *self, const uint8_t *body, size_t size)
{
    if (zmq_send (self->handle, "", 0, ZMQ_SNDMORE) == -1)
        return -1;
    if (zmq_send (self->handle, HGP_PROTO_CLIENT, strlen (HGP_PROTO_CLIENT),
                  ZMQ_SNDMORE) == -1
    ||  zmq_send (self->handle, body, size, 0) == -1)
        return -1;
    return 0;
}

int
hgp_client_send (hgp_client_t *self, const hgp_request_t *req)
{
    assert (self);
    assert (req);
    if (self->events)
        return s_discovery_send (self, req, NULL);
    size_t before = self->batching ? self->buf.size : 0;
    self->buf.size = before;
    if (hgp_request_encode (req, &self->buf)) {
        self->buf.size = before;
        errno = EINVAL;
        return -1;
    }
    int timeout = req->timeout_ms ? (int) req->timeout_ms : HGP_TIMEOUT_DEFAULT;
    if (self->send_wait >= 0)
        timeout = MIN (timeout, self->send_wait);
    if (timeout != self->sndtimeo) {
        zsock_set_sndtimeo (self->dealer, timeout);
        self->sndtimeo = timeout;
    }
    if (self->batching) {
        self->batched++;
        return 0;
    }
    return s_send_body (self, self->buf.data, self->buf.size);
}

int
hgp_client_batch_begin (hgp_client_t *self)
{
    assert (self);
    assert (!self->batching);
    if (self->events) {
        errno = ENOTSUP;
        return -1;
    }
    self->buf.size = 0;
    if (hgp_array_start (&self->buf, &self->batch_start)) {
        errno = ENOMEM;
        return -1;
    }
    self->batching = true;
    self->batched = 0;
    return 0;
}

int
hgp_client_batch_end (hgp_client_t *self)
{
    assert (self);
    assert (self->batching);
    self->batching = false;
    if (self->batched == 0)
        return 0;
    //  One request goes as itself: a batch of one would only cost bytes
    if (self->batched == 1)
        return s_send_body (self, self->buf.data + HGP_ARRAY_HEAD,
                            self->buf.size - HGP_ARRAY_HEAD);
    hgp_array_finish (&self->buf, self->batch_start, self->batched);
    return s_send_body (self, self->buf.data, self->buf.size);
}

//  Receive one whole message, keeping its first `keep` (at most 4) frames
//  in frames []; further frames are dropped. Returns the number of frames
//  the message had, or -1 (errno EAGAIN, EINTR...) with nothing kept.

static int
s_recv_frames (hgp_client_t *self, zmq_msg_t *frames, int keep, int flags)
{
    int count = 0;
    bool more = true;
    while (more) {
        zmq_msg_t scratch;
        zmq_msg_t *msg = count < keep ? &frames [count] : &scratch;
        zmq_msg_init (msg);
        if (zmq_msg_recv (msg, self->handle, count ? 0 : flags) == -1) {
            int saved = errno;
            zmq_msg_close (msg);
            for (int i = 0; i < count && i < keep; i++)
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

//  Decode [empty][HGPC01][body] into rep; anything else becomes a 500
static bool
s_envelope_ok (zmq_msg_t *frames, int count)
{
    return count == 3
        && zmq_msg_size (&frames [0]) == 0
        && zmq_msg_size (&frames [1]) == strlen (HGP_PROTO_CLIENT)
        && memcmp (zmq_msg_data (&frames [1]), HGP_PROTO_CLIENT,
                   strlen (HGP_PROTO_CLIENT)) == 0;
}

static void
s_reply_decode (zmq_msg_t *frames, int count, hgp_reply_t *rep)
{
    if (s_envelope_ok (frames, count)) {
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
}

//  One message from the ROUTER, without waiting. 1: rep is for the caller;
//  0: something came and was dropped or re-sent; -1: nothing waiting.
static int
s_discovery_recv_one (hgp_client_t *self, hgp_reply_t *rep)
{
    zmq_msg_t frames [4];
    int count = s_recv_frames (self, frames, 4, ZMQ_DONTWAIT);
    if (count == -1)
        return -1;
    int kept = count < 4 ? count : 4;
    s_broker_t *from = count > 0
        ? s_broker_lookup (self, (const char *) zmq_msg_data (&frames [0]),
                           zmq_msg_size (&frames [0]))
        : NULL;
    s_reply_decode (frames + 1, count - 1, rep);
    for (int i = 0; i < kept; i++)
        zmq_msg_close (&frames [i]);

    s_pending_t *pending = rep->id [0]
        ? (s_pending_t *) zhashx_lookup (self->pending, rep->id) : NULL;
    if (!pending)
        //  Errors without an id are the caller's; anything else is a
        //  duplicate, or late for a request its caller gave up on
        return rep->id [0] ? 0 : 1;
    uint16_t status = rep->error.status;
    if (status != HGP_STATUS_OK && from != pending->broker)
        return 0;                       //  from a broker we moved away from
    bool retry = !pending->pinned && pending->retries < S_RETRIES_MAX
              && pending->deadline - zclock_mono () >= S_RETRY_MIN_MS
              && ((status == HGP_STATUS_UNAVAILABLE
                   && streq (rep->error.code, "no_actor"))
                  || status == HGP_STATUS_TIMEOUT);
    if (retry) {
        //  Safe for both: no_actor applied nothing, and a 504 is settled by
        //  the same id anywhere. Nothing else to try: give the caller this.
        pending->retries++;
        s_pending_resend (self, pending, from);
        if (pending->broker)
            return 0;
    }
    zhashx_delete (self->pending, rep->id);
    return 1;
}

static int
s_discovery_recv (hgp_client_t *self, hgp_reply_t *rep, int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? -1 : zclock_mono () + timeout_ms;
    //  Discovery and the monitor are looked at every S_EVENTS_MS, and at
    //  once when a wait below was woken by them: a poll per reply would
    //  cost more than the rest of the hot path
    bool heard = false;
    while (true) {
        if (heard || zclock_mono () >= self->events_at)
            s_events (self, 0);
        s_purge (self);
        if (self->failover_due)
            s_failover (self);
        int rc = s_discovery_recv_one (self, rep);
        if (rc == 1)
            return 0;
        hgp_reply_clear (rep);
        if (rc == 0)
            continue;                   //  maybe more waiting
        if (zmq_errno () != EAGAIN)
            return -1;                  //  EINTR, or the socket is gone
        int64_t left = deadline < 0 ? S_WAIT_STEP_MS
                                    : deadline - zclock_mono ();
        if (left <= 0 || zsys_interrupted) {
            errno = EAGAIN;
            return -1;
        }
        zmq_pollitem_t items [] = {
            { self->handle, 0, ZMQ_POLLIN, 0 },
            { zsock_resolve (self->events), 0, ZMQ_POLLIN, 0 },
            { zsock_resolve (self->monitor), 0, ZMQ_POLLIN, 0 }
        };
        if (zmq_poll (items, 3, (long) MIN (left, S_WAIT_STEP_MS)) == -1)
            return -1;
        heard = (items [1].revents & ZMQ_POLLIN)
             || (items [2].revents & ZMQ_POLLIN);
    }
}

//  The next reply of the batch being read into rep; a batch that breaks
//  off gives one 500 and ends
static void
s_replies_next (hgp_client_t *self, hgp_reply_t *rep)
{
    const uint8_t *data = (const uint8_t *) zmq_msg_data (&self->replies);
    size_t size = zmq_msg_size (&self->replies);
    const uint8_t *elem;
    size_t elem_size;
    hgp_error_t err;
    if (hgp_array_next (data, size, &self->replies_at, &elem, &elem_size)) {
        hgp_error_set (&rep->error, HGP_STATUS_INTERNAL, "internal",
                       "a reply batch from the broker breaks off with %d "
                       "replies unread; the outcome of those requests is "
                       "unknown", self->replies_left);
        self->replies_left = 0;
    }
    else {
        self->replies_left--;
        if (hgp_reply_decode (rep, elem, elem_size, &err))
            hgp_error_set (&rep->error, HGP_STATUS_INTERNAL, "internal",
                           "undecodable reply in a batch from the broker "
                           "(%s: %s); the request's outcome is unknown",
                           err.code, err.message);
    }
    if (self->replies_left == 0) {
        zmq_msg_close (&self->replies);
        zmq_msg_init (&self->replies);
    }
}

int
hgp_client_recv (hgp_client_t *self, hgp_reply_t *rep, int timeout_ms)
{
    assert (self);
    assert (rep);
    hgp_reply_clear (rep);
    if (self->events)
        return s_discovery_recv (self, rep, timeout_ms);
    if (self->replies_left > 0) {
        s_replies_next (self, rep);
        return 0;
    }

    zmq_msg_t frames [3];
    //  Fast path: under load a reply is usually waiting already
    int count = s_recv_frames (self, frames, 3, ZMQ_DONTWAIT);
    if (count == -1) {
        if (errno != EAGAIN || timeout_ms == 0)
            return -1;
        zmq_pollitem_t item = { self->handle, 0, ZMQ_POLLIN, 0 };
        int rc = zmq_poll (&item, 1, timeout_ms);
        if (rc == 0)
            errno = EAGAIN;
        if (rc <= 0)
            return -1;
        count = s_recv_frames (self, frames, 3, ZMQ_DONTWAIT);
        if (count == -1)
            return -1;
    }
    int kept = count < 3 ? count : 3;
    size_t at;
    int batch = count == 3
        ? hgp_array_open ((const uint8_t *) zmq_msg_data (&frames [2]),
                          zmq_msg_size (&frames [2]), &at)
        : -1;
    if (batch > 0 && s_envelope_ok (frames, count)) {
        //  Replies to a batch we sent: keep the frame, read one by one
        zmq_msg_move (&self->replies, &frames [2]);
        self->replies_at = at;
        self->replies_left = batch;
        s_replies_next (self, rep);
    }
    else
        s_reply_decode (frames, count, rep);
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
        case HGP_OP_TOP:
            if (!rep->ranking)
                missing = "a ranking";
            break;
        case HGP_OP_STATS:
            if (!rep->has_stats)
                missing = "stats";
            break;
        case HGP_OP_UNIQUES:
            if (!rep->has_uniques)
                missing = "uniques";
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
    hgp_reply_set_error (rep, id, status, code, message);
}

//  Send req (to broker `only`, if given) and wait for its reply
static int
s_call (hgp_client_t *self, const hgp_request_t *req, hgp_reply_t *rep,
        s_broker_t *only)
{
    char message [HGP_MESSAGE_MAX + 1];
    uint32_t timeout = req->timeout_ms ? req->timeout_ms : HGP_TIMEOUT_DEFAULT;
    int64_t deadline = zclock_mono () + timeout + HGP_CLIENT_GRACE_MS;
    //  A copy: the broker may leave (and be freed) while we wait
    char where [256];
    snprintf (where, sizeof where, "%s", only ? only->endpoint : self->endpoint);
    bool one = only != NULL;

    int rc = self->events ? s_discovery_send (self, req, only)
                             : hgp_client_send (self, req);
    if (rc) {
        int error = errno;
        if (error == EINVAL)
            snprintf (message, sizeof message,
                      "request cannot be encoded (bad id or fields)");
        else
        if (error == EAGAIN || error == EHOSTUNREACH)
            snprintf (message, sizeof message, "cannot reach %s%.160s within %u"
                      " ms; request not sent", self->events && !one
                      ? "any broker found by " : "the broker at ", where,
                      timeout);
        else
            snprintf (message, sizeof message, "cannot send to the broker at "
                      "%.160s (%s); request not sent", where,
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
    if (self->events)
        zhashx_delete (self->pending, req->id);
    if (zsys_interrupted)
        snprintf (message, sizeof message, "interrupted before the reply "
                  "came; outcome unknown, retry with the same id");
    else
        snprintf (message, sizeof message, "no reply from %s%.160s within %u"
                  " ms; outcome unknown, retry with the same id",
                  self->events && !one ? "the brokers found by "
                                           : "the broker at ", where,
                  timeout + HGP_CLIENT_GRACE_MS);
    s_local_error (rep, req->id, HGP_STATUS_TIMEOUT, "timeout", message);
    return 0;
}

void
hgp_client_set_send_wait (hgp_client_t *self, int wait_ms)
{
    assert (self);
    self->send_wait = wait_ms;
}

void
hgp_client_forget (hgp_client_t *self, const char *id)
{
    assert (self);
    if (self->events)
        zhashx_delete (self->pending, id);
}

void
hgp_client_check (const hgp_request_t *req, hgp_reply_t *rep)
{
    s_check_shape (req, rep);
}

int
hgp_client_call (hgp_client_t *self, const hgp_request_t *req,
                 hgp_reply_t *rep)
{
    assert (self);
    assert (req);
    assert (rep);
    return s_call (self, req, rep, NULL);
}

int
hgp_client_call_at (hgp_client_t *self, const char *broker_id,
                    const hgp_request_t *req, hgp_reply_t *rep)
{
    assert (self);
    assert (broker_id);
    assert (req);
    assert (rep);
    if (!self->events)
        return s_call (self, req, rep, NULL);
    s_broker_t *broker = s_broker_lookup (self, broker_id, strlen (broker_id));
    if (!broker) {
        char message [HGP_MESSAGE_MAX + 1];
        snprintf (message, sizeof message, "broker %s is not known (any"
                  " more)", broker_id);
        s_local_error (rep, req->id, HGP_STATUS_UNAVAILABLE, "no_broker",
                       message);
        return 0;
    }
    return s_call (self, req, rep, broker);
}

size_t
hgp_client_brokers (hgp_client_t *self, int wait_ms,
                    hgp_client_broker_t *out, size_t max)
{
    assert (self);
    if (!self->events) {
        if (max > 0) {
            memset (out, 0, sizeof *out);
            snprintf (out->broker_id, sizeof out->broker_id, "%s",
                      HGP_DISCOVERY_STATIC_ID);
            snprintf (out->endpoint, sizeof out->endpoint, "%s",
                      self->endpoint);
            snprintf (out->state, sizeof out->state, "static");
            out->connected = true;
        }
        return 1;
    }
    int64_t until = zclock_mono () + MAX (wait_ms, 0);
    do
        s_events (self, (int) MAX (until - zclock_mono (), 0));
    while (zclock_mono () < until && !zsys_interrupted);
    if (self->shared) {
        //  The shared actor's pipe is its owner's: what we know is ours
        for (size_t i = 0; i < self->nbrokers && i < max; i++) {
            s_broker_t *broker = self->brokers [i];
            hgp_client_broker_t *row = &out [i];
            memset (row, 0, sizeof *row);
            snprintf (row->broker_id, sizeof row->broker_id, "%s", broker->id);
            snprintf (row->endpoint, sizeof row->endpoint, "%s",
                      broker->endpoint);
            snprintf (row->state, sizeof row->state, "%s",
                      broker->evasive ? "evasive" : "alive");
            row->beacon_ms = -1;
            row->connected = broker->up;
            row->sent = broker->sent;
        }
        return self->nbrokers;
    }

    //  Ages and states from discovery; events that come first are events
    zstr_send (self->discovery, "BROKERS");
    size_t count = 0;
    while (true) {
        zmsg_t *msg = zmsg_recv (self->discovery);
        if (!msg)
            return 0;                   //  interrupted
        if (!zframe_streq (zmsg_first (msg), "BROKERS")) {
            s_event (self, msg);
            zmsg_destroy (&msg);
            continue;
        }
        char *head = zmsg_popstr (msg);
        zstr_free (&head);
        char *rows = zmsg_popstr (msg);
        size_t nrows = rows ? (size_t) atoi (rows) : 0;
        zstr_free (&rows);
        for (size_t i = 0; i < nrows; i++) {
            char *id = zmsg_popstr (msg), *client = zmsg_popstr (msg);
            char *actor = zmsg_popstr (msg), *state = zmsg_popstr (msg);
            char *age = zmsg_popstr (msg);
            s_broker_t *broker = id ? s_broker_lookup (self, id, strlen (id))
                                    : NULL;
            if (broker && count < max) {
                hgp_client_broker_t *row = &out [count];
                memset (row, 0, sizeof *row);
                snprintf (row->broker_id, sizeof row->broker_id, "%s", id);
                snprintf (row->endpoint, sizeof row->endpoint, "%s", client);
                snprintf (row->state, sizeof row->state, "%s", state);
                row->beacon_ms = age ? atoll (age) : 0;
                row->connected = broker->up;
                row->sent = broker->sent;
            }
            if (broker)
                count++;
            zstr_free (&id);
            zstr_free (&client);
            zstr_free (&actor);
            zstr_free (&state);
            zstr_free (&age);
        }
        zmsg_destroy (&msg);
        break;
    }
    if (self->failover_due)
        s_failover (self);
    return count;
}
