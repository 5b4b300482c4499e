/*  hgp_discovery.c - broker beacons and the live broker set (see .h)
 *
 *  One zactor thread owns one CZMQ zbeacon (itself a zactor with a UDP
 *  socket) and a small table of the brokers it has heard, and tells its
 *  owner on the pipe (LISTEN) and/or every subscriber on an XPUB (EVENTS). Every beacon goes
 *  through hgp_beacon_decode, the codec's one validating reader, before
 *  anything looks at it; junk on the port is counted and logged a few
 *  times, never trusted.
 *
 *  Invariants:
 *  - The owner hears JOIN exactly once per broker id before any other event
 *    for it, and nothing after its LEAVE. A broker id is random per broker
 *    start, so a restarted broker is a new JOIN, never a resurrection: ids
 *    that left are remembered for the expiry time and their late "alive"
 *    beacons (UDP may reorder) are ignored.
 *  - Two brokers never share an endpoint in the table: a new id heard at
 *    the address and port of a known one means the old process is gone,
 *    so the old one LEAVEs ("replaced") before the new one JOINs. Owners
 *    can then key connections by endpoint without ambiguity.
 *  - No beacon leaves the process unless discovery/interface names a real,
 *    up, non-loopback IPv4 interface. zbeacon given an empty interface
 *    picks the first one it finds, which on a developer machine is the
 *    real network, so we never hand it one.
 *
 *  Why timers, not TCP, decide: a broker is dropped for silence because a
 *  beacon is the only thing every listener shares. TCP tells each owner
 *  something faster about its own connections (the client uses that too),
 *  but only a beacon timeout also covers a broker that is alive but cut
 *  off, and it gives every listener the same answer.
 */
#include "hgp_discovery.h"
#include "hgp_codec.h"
#include "hgp_keys.h"
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>

#define S_LEFT_MAX      64          /* ids that left, remembered            */
#define S_BAD_LOGGED    5           /* junk beacons we describe in the log  */
#define S_LEAVING_COPIES 3          /* leaving beacons sent on $TERM        */
#define S_LEAVING_GAP   10          /* ms between them                      */

typedef struct {
    char id [40];                   /* broker id, 32 hex digits             */
    char address [64];              /* where its beacons come from          */
    uint16_t client_port;           /* as beaconed                          */
    uint16_t actor_port;
    char client_endpoint [256];     /* tcp://address:client_port            */
    char actor_endpoint [256];      /* tcp://address:actor_port             */
    char key [HGP_KEY_TXT + 1];     /* its CURVE public key, Z85, or ""     */
    int64_t heard_at;               /* mono ms of its last beacon           */
    bool evasive;                   /* told the owner EVASIVE               */
} s_peer_t;

typedef struct {
    char id [40];                   /* a broker id that left                */
    int64_t at;                     /* when, mono ms                        */
} s_left_t;

typedef struct {
    zsock_t *pipe;                  /* to the owner                         */
    zactor_t *beacon;               /* zbeacon, NULL in static mode         */
    char *interface;                /* discovery/interface                  */
    char hostname [64];             /* the interface's address (zbeacon)    */
    int port;                       /* discovery/port                       */
    int64_t interval;               /* discovery/interval, ms               */
    char *static_reason;            /* why static, NULL when beaconing      */
    char *static_client;            /* broker/client_endpoint               */
    char *static_actor;             /* broker/actor_endpoint                */
    hgp_keys_t *keys;               /* cluster and trusted broker keys; NULL
                                       when they could not be read (then no
                                       beacon is trusted)                  */
    bool listening;                 /* LISTEN or EVENTS: hearing beacons    */
    bool piped;                     /* LISTEN: events go to the pipe        */
    zsock_t *events;                /* EVENTS: XPUB for subscribers, or NULL */
    bool publishing;                /* PUBLISH received and beaconing       */
    bool logged;                    /* told the log which mode we are in    */
    hgp_beacon_t published;         /* what we beacon                       */
    s_peer_t peers [HGP_DISCOVERY_MAX];
    size_t npeers;
    s_left_t left [S_LEFT_MAX];     /* ring of ids that left                */
    size_t left_next;
    uint64_t bad;                   /* beacons that did not decode          */
    uint64_t overflow;              /* brokers ignored: table full          */
    uint64_t foreign;               /* beacons of another cluster           */
    uint64_t untrusted;             /* beacons with a key we do not trust   */
    bool terminated;                /* $TERM                                */
} s_self_t;


/*  --------------------------------------------------------------------
 *  Settings and the choice of mode
 */

char *
hgp_discovery_config_check (hgp_config_t *config)
{
    const char *interface = hgp_config_str (config, "discovery/interface", "");
    hgp_config_int (config, "discovery/port", HGP_DISCOVERY_PORT, 1, 65535);
    hgp_config_int (config, "discovery/interval", HGP_DISCOVERY_INTERVAL,
                    10, 10000);
    if (hgp_config_error (config))
        return strdup (hgp_config_error (config));
    if (strlen (interface) >= IFNAMSIZ && !streq (interface, "*"))
        return zsys_sprintf ("config: discovery/interface"
                             " (HGP_DISCOVERY_INTERFACE) '%s' is longer than"
                             " any interface name", interface);
    //  Every process that looks for brokers checks the bus section too
    return hgp_keys_config_check (config);
}

//  Why interface cannot carry beacons, or NULL when it can. zbeacon uses
//  the interfaces ziflist lists (up, IPv4, broadcast, not loopback), so we
//  ask ziflist, and getifaddrs only to explain a refusal.
char *
hgp_discovery_interface_problem (const char *interface)
{
    if (streq (interface, ""))
        return strdup ("no discovery/interface configured");
    if (streq (interface, "*"))
        return NULL;
    ziflist_t *list = ziflist_new ();
    assert (list);
    bool usable = false;
    for (const char *name = ziflist_first (list); name;
         name = ziflist_next (list))
        if (streq (name, interface))
            usable = true;
    ziflist_destroy (&list);
    if (usable)
        return NULL;
    bool exists = false, loopback = false;
    struct ifaddrs *addrs = NULL;
    if (getifaddrs (&addrs) == 0) {
        for (struct ifaddrs *a = addrs; a; a = a->ifa_next)
            if (a->ifa_name && streq (a->ifa_name, interface)) {
                exists = true;
                loopback = loopback || (a->ifa_flags & IFF_LOOPBACK);
            }
        freeifaddrs (addrs);
    }
    if (loopback)
        return zsys_sprintf ("discovery/interface %s is loopback, where"
                             " zbeacon cannot broadcast", interface);
    if (!exists)
        return zsys_sprintf ("discovery/interface %s does not exist",
                             interface);
    return zsys_sprintf ("discovery/interface %s is down or has no IPv4"
                         " broadcast address", interface);
}

//  zsys_set_interface is one process-wide string that zbeacon reads from
//  its own thread, so it is set once, under a lock, and never changed:
//  a second discovery actor in the process must want the same interface.
static pthread_mutex_t s_interface_lock = PTHREAD_MUTEX_INITIALIZER;
static char s_interface_set [IFNAMSIZ + 1];

static char *
s_interface_claim (const char *interface)
{
    char *problem = NULL;
    pthread_mutex_lock (&s_interface_lock);
    if (!s_interface_set [0]) {
        zsys_set_interface (interface);
        snprintf (s_interface_set, sizeof s_interface_set, "%s", interface);
    }
    else
    if (!streq (s_interface_set, interface))
        problem = zsys_sprintf ("this process beacons on %s already; one"
                                " interface per process", s_interface_set);
    pthread_mutex_unlock (&s_interface_lock);
    return problem;
}

static s_self_t *
s_self_new (zsock_t *pipe, hgp_config_t *config)
{
    s_self_t *self = (s_self_t *) zmalloc (sizeof (s_self_t));
    assert (self);
    self->pipe = pipe;
    char *error = hgp_discovery_config_check (config);
    if (error)
        zsys_error ("%s", error);
    assert (!error);                //  main calls hgp_discovery_config_check
    self->interface = strdup (hgp_config_str (config, "discovery/interface",
                                              ""));
    self->port = (int) hgp_config_int (config, "discovery/port",
                                       HGP_DISCOVERY_PORT, 1, 65535);
    self->interval = hgp_config_int (config, "discovery/interval",
                                     HGP_DISCOVERY_INTERVAL, 10, 10000);
    self->static_client = strdup (hgp_config_str (
        config, "broker/client_endpoint", "tcp://127.0.0.1:5555"));
    self->static_actor = strdup (hgp_config_str (
        config, "broker/actor_endpoint", "tcp://127.0.0.1:5556"));
    char *keys_error = NULL;
    self->keys = hgp_keys_new (config, HGP_KEYS_LISTENER, &keys_error);
    if (!self->keys) {
        zsys_error ("discovery: %s; no broker is trusted", keys_error);
        zstr_free (&keys_error);
    }

    self->static_reason = hgp_discovery_interface_problem (self->interface);
    if (!self->static_reason)
        self->static_reason = s_interface_claim (self->interface);
    if (!self->static_reason) {
        self->beacon = zactor_new (zbeacon, NULL);
        assert (self->beacon);
        zsock_send (self->beacon, "si", "CONFIGURE", self->port);
        char *hostname = zstr_recv (self->beacon);
        if (hostname && *hostname)
            snprintf (self->hostname, sizeof self->hostname, "%s", hostname);
        else {
            self->static_reason = zsys_sprintf (
                "zbeacon could not open UDP port %d on %s", self->port,
                self->interface);
            zactor_destroy (&self->beacon);
        }
        zstr_free (&hostname);
    }
    return self;
}

static void
s_self_destroy (s_self_t **self_p)
{
    s_self_t *self = *self_p;
    if (!self)
        return;
    zactor_destroy (&self->beacon);
    zsock_destroy (&self->events);
    free (self->interface);
    free (self->static_reason);
    free (self->static_client);
    free (self->static_actor);
    hgp_keys_destroy (&self->keys);
    free (self);
    *self_p = NULL;
}

static void
s_log_mode (s_self_t *self, bool quiet)
{
    if (self->logged)
        return;
    self->logged = true;
    if (self->beacon) {
        const char *note = streq (self->interface, "*")
                         ? " (every interface: this reaches real networks)"
                         : "";
        if (!quiet)
            zsys_info ("discovery: beacons on %s (%s), UDP port %d, every"
                       " %" PRId64 " ms; a broker silent %" PRId64 " ms is"
                       " evasive, %" PRId64 " ms is gone%s", self->interface,
                       self->hostname, self->port, self->interval,
                       self->interval * HGP_DISCOVERY_EVASIVE,
                       self->interval * HGP_DISCOVERY_EXPIRED, note);
    }
    else
    if (!quiet)
        zsys_info ("discovery: off (%s); using the static endpoints"
                   " broker/client_endpoint=%s broker/actor_endpoint=%s",
                   self->static_reason, self->static_client,
                   self->static_actor);
}


/*  --------------------------------------------------------------------
 *  Telling the owner, and the EVENTS subscribers
 */

//  One event, [kind][id][detail][detail2] with the details that are not
//  NULL, to the pipe (LISTEN) and to every subscriber (EVENTS)
static void
s_emit (s_self_t *self, const char *kind, const char *id, const char *detail,
        const char *detail2, const char *detail3)
{
    if (self->piped)
        zstr_sendx (self->pipe, kind, id, detail, detail2, detail3, NULL);
    if (self->events)
        zstr_sendx (self->events, kind, id, detail, detail2, detail3, NULL);
}

//  The key the static broker is checked against: broker.cert's
static const char *
s_static_key (s_self_t *self)
{
    return self->keys ? hgp_keys_broker (self->keys) : "";
}

//  A subscriber's own topic ("@..."): the whole table to it alone, as
//  JOIN then ALIVE or EVASIVE per broker. Its kind subscriptions came on
//  the same pipe before this one, so events from now on reach it as well,
//  after this snapshot; those sent before it are older than the snapshot,
//  and replaying them first leaves the subscriber in the same state.
static void
s_snapshot (s_self_t *self, const char *topic)
{
    if (!self->beacon)
        zstr_sendx (self->events, topic, "JOIN", HGP_DISCOVERY_STATIC_ID,
                    self->static_client, self->static_actor,
                    s_static_key (self), NULL);
    for (size_t i = 0; i < self->npeers; i++) {
        s_peer_t *peer = &self->peers [i];
        zstr_sendx (self->events, topic, "JOIN", peer->id,
                    peer->client_endpoint, peer->actor_endpoint, peer->key,
                    NULL);
        zstr_sendx (self->events, topic,
                    peer->evasive ? "EVASIVE" : "ALIVE", peer->id, NULL);
    }
}

//  XPUB hands up subscriptions (VERBOSE: every one, even a repeat):
//  [0x01 topic] subscribe, [0x00 topic] unsubscribe. Only our own
//  snapshot topics matter; kind subscriptions and leaving are nothing to do.
static void
s_events_recv (s_self_t *self)
{
    zframe_t *frame = zframe_recv (self->events);
    if (!frame)
        return;
    size_t size = zframe_size (frame);
    const char *data = (const char *) zframe_data (frame);
    if (size > 2 && size < 64 && data [0] == 1 && data [1] == '@') {
        char topic [64];
        memcpy (topic, data + 1, size - 1);
        topic [size - 1] = 0;
        s_snapshot (self, topic);
    }
    zframe_destroy (&frame);
}


/*  --------------------------------------------------------------------
 *  The broker table
 */

static s_peer_t *
s_peer_lookup (s_self_t *self, const char *id)
{
    for (size_t i = 0; i < self->npeers; i++)
        if (streq (self->peers [i].id, id))
            return &self->peers [i];
    return NULL;
}

static bool
s_peer_left (s_self_t *self, const char *id, int64_t now)
{
    int64_t memory = self->interval * HGP_DISCOVERY_EXPIRED;
    for (size_t i = 0; i < S_LEFT_MAX; i++)
        if (self->left [i].id [0] && streq (self->left [i].id, id)
        &&  now - self->left [i].at < memory)
            return true;
    return false;
}

//  Tell the owner and drop the row; unless the broker only moved, remember
//  its id as gone so a late "alive" beacon cannot bring it back
static void
s_peer_leave (s_self_t *self, s_peer_t *peer, const char *why, int64_t now)
{
    if (self->listening)
        s_emit (self, "LEAVE", peer->id, why, NULL, NULL);
    if (!streq (why, "moved")) {
        s_left_t *left = &self->left [self->left_next++ % S_LEFT_MAX];
        snprintf (left->id, sizeof left->id, "%s", peer->id);
        left->at = now;
    }
    size_t index = (size_t) (peer - self->peers);
    memmove (&self->peers [index], &self->peers [index + 1],
             (self->npeers - index - 1) * sizeof (s_peer_t));
    self->npeers--;
}

static void
s_peer_join (s_self_t *self, const char *address, const hgp_beacon_t *beacon,
             const char *key, int64_t now)
{
    char client_endpoint [256], actor_endpoint [256];
    snprintf (client_endpoint, sizeof client_endpoint, "tcp://%s:%u",
              address, beacon->client_port);
    snprintf (actor_endpoint, sizeof actor_endpoint, "tcp://%s:%u",
              address, beacon->actor_port);
    //  Someone else at that endpoint has stopped: its port is taken
    size_t i = 0;
    while (i < self->npeers)
        if (streq (self->peers [i].client_endpoint, client_endpoint)
        ||  streq (self->peers [i].actor_endpoint, actor_endpoint))
            s_peer_leave (self, &self->peers [i], "replaced", now);
        else
            i++;
    if (self->npeers == HGP_DISCOVERY_MAX) {
        if (self->overflow++ == 0)
            zsys_warning ("discovery: more than %d brokers; ignoring the"
                          " rest", HGP_DISCOVERY_MAX);
        return;
    }
    s_peer_t *peer = &self->peers [self->npeers++];
    memset (peer, 0, sizeof *peer);
    snprintf (peer->id, sizeof peer->id, "%s", beacon->broker_id);
    snprintf (peer->address, sizeof peer->address, "%s", address);
    peer->client_port = beacon->client_port;
    peer->actor_port = beacon->actor_port;
    memcpy (peer->client_endpoint, client_endpoint, sizeof client_endpoint);
    memcpy (peer->actor_endpoint, actor_endpoint, sizeof actor_endpoint);
    snprintf (peer->key, sizeof peer->key, "%s", key);
    peer->heard_at = now;
    if (self->listening)
        s_emit (self, "JOIN", peer->id, peer->client_endpoint,
                peer->actor_endpoint, peer->key);
}

//  A beacon of our cluster from a broker whose key we trust: 0 and its key
//  (Z85, "" for a broker without CURVE) in key. Otherwise -1, logged the
//  first few times: a second cluster on the same network, or someone
//  beaconing a broker we have no reason to believe.
static int
s_beacon_trusted (s_self_t *self, const char *address,
                  const hgp_beacon_t *beacon, char *key)
{
    static const uint8_t zero [32];
    key [0] = 0;
    if (memcmp (beacon->public_key, zero, 32) != 0)
        zmq_z85_encode (key, beacon->public_key, 32);
    const char *cluster = self->keys ? hgp_keys_cluster (self->keys) : "";
    if (!streq (beacon->cluster, cluster)) {
        if (self->foreign++ < S_BAD_LOGGED)
            zsys_warning ("discovery: ignoring broker %s at %s: it is of"
                          " cluster '%s', we are of '%s' (bus/cluster)%s",
                          beacon->broker_id, address, beacon->cluster,
                          cluster, self->foreign == S_BAD_LOGGED
                          ? " (further ones are not logged)" : "");
        return -1;
    }
    if (!self->keys || !hgp_keys_trusts_broker (self->keys, key)) {
        if (self->untrusted++ < S_BAD_LOGGED)
            zsys_warning ("discovery: ignoring broker %s at %s: %s%s",
                          beacon->broker_id, address, !*key
                          ? "it runs without CURVE (bus/curve = 0)"
                          : self->keys && !hgp_keys_curve (self->keys)
                          ? "it uses CURVE and we do not (bus/curve = 0)"
                          : "its key is not broker.cert nor in brokers/",
                          self->untrusted == S_BAD_LOGGED
                          ? " (further ones are not logged)" : "");
        return -1;
    }
    return 0;
}

static void
s_beacon_heard (s_self_t *self, const char *address, const uint8_t *data,
                size_t size)
{
    hgp_beacon_t beacon;
    hgp_error_t err;
    if (hgp_beacon_decode (&beacon, data, size, &err)) {
        if (self->bad++ < S_BAD_LOGGED)
            zsys_warning ("discovery: ignoring a beacon from %s: %s%s",
                          address, err.message,
                          self->bad == S_BAD_LOGGED
                          ? " (further ones are not logged)" : "");
        return;
    }
    char key [HGP_KEY_TXT + 1];
    if (s_beacon_trusted (self, address, &beacon, key))
        return;
    int64_t now = zclock_mono ();
    s_peer_t *peer = s_peer_lookup (self, beacon.broker_id);
    if (beacon.state == HGP_BEACON_LEAVING) {
        if (peer)
            s_peer_leave (self, peer, "left", now);
        return;
    }
    if (!peer) {
        if (!s_peer_left (self, beacon.broker_id, now))
            s_peer_join (self, address, &beacon, key, now);
        return;
    }
    if (!streq (peer->address, address)
    ||  peer->client_port != beacon.client_port
    ||  peer->actor_port != beacon.actor_port
    ||  !streq (peer->key, key)) {
        //  Same broker, new address: owners must reconnect. Not "left":
        //  it is still there, so it may JOIN at once.
        s_peer_leave (self, peer, "moved", now);
        s_peer_join (self, address, &beacon, key, now);
        return;
    }
    peer->heard_at = now;
    if (peer->evasive) {
        peer->evasive = false;
        if (self->listening)
            s_emit (self, "ALIVE", peer->id, NULL, NULL, NULL);
    }
}

//  Evasive and expired brokers; returns ms until the next check is due
static int64_t
s_peers_check (s_self_t *self)
{
    int64_t now = zclock_mono ();
    int64_t evasive = self->interval * HGP_DISCOVERY_EVASIVE;
    int64_t expired = self->interval * HGP_DISCOVERY_EXPIRED;
    size_t i = 0;
    while (i < self->npeers) {
        s_peer_t *peer = &self->peers [i];
        int64_t silent = now - peer->heard_at;
        if (silent >= expired) {
            s_peer_leave (self, peer, "expired", now);
            continue;
        }
        if (silent >= evasive && !peer->evasive) {
            peer->evasive = true;
            if (self->listening)
                s_emit (self, "EVASIVE", peer->id, NULL, NULL, NULL);
        }
        i++;
    }
    //  Check at a quarter interval, so expiry is late by at most that
    return MAX (self->interval / 4, 5);
}


/*  --------------------------------------------------------------------
 *  Publishing (brokers)
 */

//  Host and port of "tcp://host:port" into host/port; -1 when endpoint is
//  not TCP or has no port
static int
s_tcp_split (const char *endpoint, char *host, size_t host_size, char *port,
             size_t port_size)
{
    if (strncmp (endpoint, "tcp://", 6) != 0)
        return -1;
    const char *start = endpoint + 6;
    const char *colon = strrchr (start, ':');
    if (!colon || !colon [1] || (size_t) (colon - start) >= host_size
    ||  strlen (colon + 1) >= port_size)
        return -1;
    memcpy (host, start, (size_t) (colon - start));
    host [colon - start] = 0;
    snprintf (port, port_size, "%s", colon + 1);
    return 0;
}

static bool
s_wildcard (const char *host)
{
    return streq (host, "*") || streq (host, "0.0.0.0");
}

char *
hgp_discovery_bind_endpoint (const char *endpoint, const char *address,
                             const char *setting, char **error_p)
{
    assert (endpoint && address && setting && error_p);
    char host [256], port [16];
    if (s_tcp_split (endpoint, host, sizeof host, port, sizeof port)) {
        *error_p = zsys_sprintf ("%s is '%s', but beacons carry TCP ports"
                                 " only: with discovery/interface set it must"
                                 " be tcp://HOST:PORT", setting, endpoint);
        return NULL;
    }
    if (s_wildcard (host) || streq (host, address))
        return strdup (endpoint);
    return zsys_sprintf ("tcp://%s:%s", address, port);
}

int
hgp_discovery_bound_check (const char *bound, const char *address,
                           const char *setting, char **error_p)
{
    assert (bound && address && setting && error_p);
    char host [256], port [16];
    if (s_tcp_split (bound, host, sizeof host, port, sizeof port)) {
        *error_p = zsys_sprintf ("%s is bound as '%s': beacons carry TCP"
                                 " ports only, so peers could not reach it",
                                 setting, bound);
        return -1;
    }
    if (s_wildcard (host) || streq (host, address))
        return 0;
    *error_p = zsys_sprintf ("%s is bound on %s, but peers that hear the"
                             " beacon connect to %s:%s, where nothing"
                             " listens; bind tcp://*:%s or tcp://%s:%s",
                             setting, bound, address, port, port, address,
                             port);
    return -1;
}

static void
s_publish (s_self_t *self, zmsg_t *msg)
{
    char *id = zmsg_popstr (msg);
    char *client_port = zmsg_popstr (msg);
    char *actor_port = zmsg_popstr (msg);
    char *client_endpoint = zmsg_popstr (msg);
    char *actor_endpoint = zmsg_popstr (msg);
    char *key = zmsg_popstr (msg);
    assert (id && client_port && actor_port);   //  a bug in our caller
    s_log_mode (self, false);
    if (self->beacon) {
        hgp_beacon_t *beacon = &self->published;
        beacon->state = HGP_BEACON_ALIVE;
        snprintf (beacon->broker_id, sizeof beacon->broker_id, "%s", id);
        beacon->client_port = (uint16_t) atoi (client_port);
        beacon->actor_port = (uint16_t) atoi (actor_port);
        memset (beacon->public_key, 0, sizeof beacon->public_key);
        if (key && strlen (key) == HGP_KEY_TXT)
            zmq_z85_decode (beacon->public_key, key);
        snprintf (beacon->cluster, sizeof beacon->cluster, "%s",
                  self->keys ? hgp_keys_cluster (self->keys) : "hgp");
        uint8_t wire [HGP_BEACON_MAX];
        int size = hgp_beacon_encode (beacon, wire, sizeof wire);
        assert (size > 0);
        zsock_send (self->beacon, "sbi", "PUBLISH", wire, (size_t) size,
                    (int) self->interval);
        self->publishing = true;
        zsys_info ("discovery: broker %s beacons clients tcp://%s:%s,"
                   " actors tcp://%s:%s", id, self->hostname, client_port,
                   self->hostname, actor_port);
    }
    zstr_free (&id);
    zstr_free (&client_port);
    zstr_free (&actor_port);
    zstr_free (&client_endpoint);
    zstr_free (&actor_endpoint);
    zstr_free (&key);
}

//  Say LEAVING a few times (UDP may drop one), then stop beaconing
static void
s_unpublish (s_self_t *self)
{
    if (!self->publishing)
        return;
    self->published.state = HGP_BEACON_LEAVING;
    uint8_t wire [HGP_BEACON_MAX];
    int size = hgp_beacon_encode (&self->published, wire, sizeof wire);
    assert (size > 0);
    zsock_send (self->beacon, "sbi", "PUBLISH", wire, (size_t) size,
                S_LEAVING_GAP);
    zclock_sleep (S_LEAVING_COPIES * S_LEAVING_GAP - S_LEAVING_GAP / 2);
    zstr_sendx (self->beacon, "SILENCE", NULL);
    self->publishing = false;
    zsys_info ("discovery: broker %s said it is leaving",
               self->published.broker_id);
}


/*  --------------------------------------------------------------------
 *  The actor
 */

static void
s_brokers_reply (s_self_t *self)
{
    zmsg_t *reply = zmsg_new ();
    zmsg_addstr (reply, "BROKERS");
    int64_t now = zclock_mono ();
    bool fixed = !self->beacon;
    zmsg_addstrf (reply, "%zu", self->npeers + (fixed ? 1 : 0));
    if (fixed) {
        zmsg_addstr (reply, HGP_DISCOVERY_STATIC_ID);
        zmsg_addstr (reply, self->static_client);
        zmsg_addstr (reply, self->static_actor);
        zmsg_addstr (reply, "static");
        zmsg_addstr (reply, "0");
    }
    for (size_t i = 0; i < self->npeers; i++) {
        s_peer_t *peer = &self->peers [i];
        zmsg_addstr (reply, peer->id);
        zmsg_addstr (reply, peer->client_endpoint);
        zmsg_addstr (reply, peer->actor_endpoint);
        zmsg_addstr (reply, peer->evasive ? "evasive" : "alive");
        zmsg_addstrf (reply, "%" PRId64, now - peer->heard_at);
    }
    zmsg_send (&reply, self->pipe);
}

//  Start hearing beacons (once, for LISTEN and EVENTS alike)
static void
s_listen (s_self_t *self)
{
    if (self->listening)
        return;
    self->listening = true;
    if (self->beacon)
        zsock_send (self->beacon, "sb", "SUBSCRIBE", HGP_BEACON_TAG,
                    strlen (HGP_BEACON_TAG));
}

static void
s_pipe_command (s_self_t *self)
{
    zmsg_t *msg = zmsg_recv (self->pipe);
    if (!msg) {
        self->terminated = true;        //  interrupted: the owner is going
        return;
    }
    char *command = zmsg_popstr (msg);
    if (!command)
        zsys_warning ("discovery: empty command");
    else
    if (streq (command, "$TERM"))
        self->terminated = true;
    else
    if (streq (command, "MODE"))
        zstr_send (self->pipe, self->beacon ? "beacon" : "static");
    else
    if (streq (command, "ADDRESS"))
        zstr_send (self->pipe, !self->beacon ? ""
                             : streq (self->interface, "*") ? "*"
                             : self->hostname);
    else
    if (streq (command, "LISTEN")) {
        char *option = zmsg_popstr (msg);
        s_log_mode (self, option && streq (option, "quiet"));
        zstr_free (&option);
        if (!self->piped) {
            self->piped = true;
            if (!self->beacon)
                zstr_sendx (self->pipe, "JOIN", HGP_DISCOVERY_STATIC_ID,
                            self->static_client, self->static_actor,
                            s_static_key (self), NULL);
        }
        s_listen (self);
    }
    else
    if (streq (command, "EVENTS")) {
        char *endpoint = zmsg_popstr (msg);
        int rc = -1;
        if (endpoint && !self->events) {
            self->events = zsock_new (ZMQ_XPUB);
            assert (self->events);
            zsock_set_linger (self->events, 0);
            zsock_set_xpub_verbose (self->events, 1);
            //  Events are few and none may be dropped, even for a
            //  subscriber that has not read for a long while
            zsock_set_sndhwm (self->events, 0);
            rc = zsock_bind (self->events, "%s", endpoint);
            if (rc == 0) {
                s_log_mode (self, false);
                s_listen (self);
            }
            else {
                zsys_error ("discovery: cannot bind events on %s", endpoint);
                zsock_destroy (&self->events);
            }
        }
        zstr_free (&endpoint);
        zsock_signal (self->pipe, rc == 0 ? 0 : 1);
    }
    else
    if (streq (command, "PUBLISH"))
        s_publish (self, msg);
    else
    if (streq (command, "BROKERS"))
        s_brokers_reply (self);
    else
    if (streq (command, "BEACON")) {
        char *address = zmsg_popstr (msg);
        zframe_t *data = zmsg_pop (msg);
        if (address && data)
            s_beacon_heard (self, address, zframe_data (data),
                            zframe_size (data));
        zstr_free (&address);
        zframe_destroy (&data);
    }
    else
        zsys_warning ("discovery: unknown command '%s'", command);
    zstr_free (&command);
    zmsg_destroy (&msg);
}

static void
s_beacon_recv (s_self_t *self)
{
    char *address = zstr_recv (self->beacon);
    zframe_t *data = address ? zframe_recv (self->beacon) : NULL;
    if (address && data && self->listening)
        s_beacon_heard (self, address, zframe_data (data),
                        zframe_size (data));
    zstr_free (&address);
    zframe_destroy (&data);
}

void
hgp_discovery_actor (zsock_t *pipe, void *args)
{
    s_self_t *self = s_self_new (pipe, (hgp_config_t *) args);
    zsock_signal (pipe, 0);
    int64_t check_at = zclock_mono ();
    while (!self->terminated) {
        zmq_pollitem_t items [3] = {
            { zsock_resolve (self->pipe), 0, ZMQ_POLLIN, 0 }
        };
        int nitems = 1, beacon_at = -1, events_at = -1;
        if (self->beacon) {
            beacon_at = nitems;
            items [nitems++] = (zmq_pollitem_t) {
                zsock_resolve (self->beacon), 0, ZMQ_POLLIN, 0 };
        }
        if (self->events) {
            events_at = nitems;
            items [nitems++] = (zmq_pollitem_t) {
                zsock_resolve (self->events), 0, ZMQ_POLLIN, 0 };
        }
        int64_t wait = MAX (check_at - zclock_mono (), 0);
        if (zmq_poll (items, nitems, (long) wait) == -1) {
            if (zmq_errno () == EINTR)
                continue;           //  signals are main's business
            break;                  //  context terminated
        }
        if (items [0].revents & ZMQ_POLLIN)
            s_pipe_command (self);
        //  A socket a command made just now was not polled yet
        if (beacon_at > 0 && self->beacon
        &&  (items [beacon_at].revents & ZMQ_POLLIN))
            s_beacon_recv (self);
        if (events_at > 0 && self->events
        &&  (items [events_at].revents & ZMQ_POLLIN))
            s_events_recv (self);
        if (zclock_mono () >= check_at)
            check_at = zclock_mono () + s_peers_check (self);
    }
    s_unpublish (self);
    if (self->bad || self->foreign || self->untrusted)
        zsys_info ("discovery: beacons ignored: %" PRIu64 " not valid, %"
                   PRIu64 " of another cluster, %" PRIu64 " from untrusted"
                   " brokers", self->bad, self->foreign, self->untrusted);
    s_self_destroy (&self);
}


/*  --------------------------------------------------------------------
 *  Owner side
 */

int
hgp_discovery_event_parse (zmsg_t *msg, hgp_discovery_event_t *event)
{
    memset (event, 0, sizeof *event);
    size_t frames = zmsg_size (msg);
    zframe_t *frame = zmsg_first (msg);
    if (!frame || zframe_size (frame) >= sizeof event->kind)
        return -1;
    memcpy (event->kind, zframe_data (frame), zframe_size (frame));
    bool join = streq (event->kind, "JOIN");
    bool leave = streq (event->kind, "LEAVE");
    if (!(join || leave || streq (event->kind, "EVASIVE")
                        || streq (event->kind, "ALIVE"))
    ||  frames != (join ? 5u : leave ? 3u : 2u))
        return -1;
    struct { char *out; size_t size; } fields [4] = {
        { event->broker_id, sizeof event->broker_id },
        { join ? event->client_endpoint : event->reason,
          join ? sizeof event->client_endpoint : sizeof event->reason },
        { event->actor_endpoint, sizeof event->actor_endpoint },
        { event->server_key, sizeof event->server_key }
    };
    for (size_t i = 0; i + 1 < frames; i++) {
        frame = zmsg_next (msg);
        if (zframe_size (frame) >= fields [i].size)
            return -1;
        memcpy (fields [i].out, zframe_data (frame), zframe_size (frame));
        fields [i].out [zframe_size (frame)] = 0;
    }
    return 0;
}

int
hgp_discovery_event_recv (zactor_t *self, hgp_discovery_event_t *event)
{
    zmsg_t *msg = zmsg_recv (self);
    if (!msg)
        return -1;
    int rc = hgp_discovery_event_parse (msg, event);
    if (rc)
        zsys_warning ("discovery: dropped a message that is not an event");
    zmsg_destroy (&msg);
    return rc;
}
