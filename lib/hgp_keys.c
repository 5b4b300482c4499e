/*  hgp_keys.c - CURVE certificates, the ZAP handler, the cluster name
 *  (see hgp_keys.h)
 *
 *  Why our own ZAP handler and not CZMQ's zauth: zauth keeps one set of
 *  CURVE keys for every domain, so a client certificate would open the
 *  actor endpoint as well. Ours keeps one set per domain and refuses a
 *  domain it does not know, so the broker's two ROUTERs admit two disjoint
 *  populations. It also names the peer: the User-Id it returns is the
 *  peer's public key, which libzmq attaches to every message of that
 *  connection, and which the broker binds actor ids to.
 *
 *  Why the handler must run before the broker binds: libzmq 4.3 admits
 *  every CURVE peer when no handler answers on inproc://zeromq.zap.01
 *  (unless ZMQ_ZAP_ENFORCE_DOMAIN, a draft option we set as well).
 */
#include "hgp_keys.h"
#include "hgp_codec.h"
#include <dirent.h>
#include <sys/stat.h>

#define S_ZAP_ENDPOINT      "inproc://zeromq.zap.01"
#define S_REFUSALS_LOGGED   10          /* refusals described in the log    */
#define S_REFUSALS_EVERY    1000        /* then one line per this many      */

struct _hgp_keys_t {
    bool curve;                 /* bus/curve                                */
    hgp_keys_role_t role;       /* what we loaded for                       */
    char cluster [HGP_CLUSTER_MAX + 1];     /* bus/cluster                  */
    char *dir;                  /* bus/keys                                 */
    zcert_t *cert;              /* our keypair (broker, actor, client)      */
    char broker [HGP_KEY_TXT + 1];          /* broker.cert, Z85, or ""      */
    zhashx_t *brokers;          /* trusted broker keys (Z85 -> file)        */
};


/*  --------------------------------------------------------------------
 *  Files
 */

//  Every NAME.cert in dir, public key (Z85) -> file name; an absent
//  directory is an empty set
static zhashx_t *
s_trusted_load (const char *dir)
{
    zhashx_t *set = zhashx_new ();
    assert (set);
    zhashx_set_destructor (set, (zhashx_destructor_fn *) zstr_free);
    zhashx_set_duplicator (set, (zhashx_duplicator_fn *) strdup);
    DIR *handle = opendir (dir);
    if (!handle)
        return set;
    struct dirent *entry;
    while ((entry = readdir (handle))) {
        size_t len = strlen (entry->d_name);
        if (len <= 5 || !streq (entry->d_name + len - 5, ".cert"))
            continue;
        char *path = zsys_sprintf ("%s/%s", dir, entry->d_name);
        assert (path);
        zcert_t *cert = zcert_load (path);
        if (cert)
            zhashx_update (set, zcert_public_txt (cert), entry->d_name);
        else
            zsys_warning ("keys: %s is not a certificate; ignored", path);
        zcert_destroy (&cert);
        zstr_free (&path);
    }
    closedir (handle);
    return set;
}

//  A keypair from path (NAME.cert and NAME.cert_secret), or NULL
static zcert_t *
s_keypair_load (const char *path, char **error_p)
{
    char *secret = zsys_sprintf ("%s_secret", path);
    assert (secret);
    zcert_t *cert = zsys_file_exists (secret) ? zcert_load (path) : NULL;
    static const uint8_t zero [32];
    if (cert && memcmp (zcert_secret_key (cert), zero, 32) == 0)
        zcert_destroy (&cert);
    if (!cert)
        *error_p = zsys_sprintf (
            "keys: bus/curve is on but %s cannot be read; create the keys"
            " with bin/hgp-keys (README, Key handling) or set bus/keys",
            secret);
    zstr_free (&secret);
    return cert;
}

char *
hgp_keys_config_check (hgp_config_t *config)
{
    hgp_config_int (config, "bus/curve", 1, 0, 1);
    if (hgp_config_error (config))
        return strdup (hgp_config_error (config));
    const char *cluster = hgp_config_str (config, "bus/cluster", "hgp");
    if (strlen (cluster) > HGP_CLUSTER_MAX
    ||  !hgp_id_valid (cluster, strlen (cluster)))
        return zsys_sprintf ("config: bus/cluster (HGP_BUS_CLUSTER) '%s' is"
                             " not 1-%d bytes of A-Z a-z 0-9 _ - . :",
                             cluster, HGP_CLUSTER_MAX);
    const char *names [] = { "bus/actor_cert", "bus/client_cert", NULL };
    for (int i = 0; names [i]; i++) {
        const char *name = hgp_config_str (config, names [i], "local");
        if (!hgp_id_valid (name, strlen (name)) || strchr (name, '/')) {
            char env [64];
            return zsys_sprintf ("config: %s (%s) '%s' is not a certificate"
                                 " name (A-Z a-z 0-9 _ - . :)", names [i],
                                 hgp_config_env_name (names [i], env,
                                                      sizeof env), name);
        }
    }
    if (!*hgp_config_str (config, "bus/keys", "var/keys"))
        return strdup ("config: bus/keys (HGP_BUS_KEYS) is empty");
    return NULL;
}

hgp_keys_t *
hgp_keys_new (hgp_config_t *config, hgp_keys_role_t role, char **error_p)
{
    char *error = hgp_keys_config_check (config);
    hgp_keys_t *self = NULL;
    if (error)
        goto done;
    self = (hgp_keys_t *) zmalloc (sizeof (hgp_keys_t));
    assert (self);
    self->role = role;
    self->curve = hgp_config_int (config, "bus/curve", 1, 0, 1) == 1;
    snprintf (self->cluster, sizeof self->cluster, "%s",
              hgp_config_str (config, "bus/cluster", "hgp"));
    self->dir = strdup (hgp_config_str (config, "bus/keys", "var/keys"));
    assert (self->dir);
    self->brokers = zhashx_new ();
    assert (self->brokers);
    if (!self->curve)
        goto done;

    char *path = NULL;
    if (role == HGP_KEYS_BROKER) {
        path = zsys_sprintf ("%s/broker.cert", self->dir);
        self->cert = s_keypair_load (path, &error);
    }
    else {
        zhashx_destroy (&self->brokers);
        path = zsys_sprintf ("%s/brokers", self->dir);
        self->brokers = s_trusted_load (path);
        zstr_free (&path);
        path = zsys_sprintf ("%s/broker.cert", self->dir);
        zcert_t *broker = zcert_load (path);
        if (broker) {
            snprintf (self->broker, sizeof self->broker, "%s",
                      zcert_public_txt (broker));
            zhashx_update (self->brokers, self->broker, "broker.cert");
        }
        else
        if (zhashx_size (self->brokers) == 0)
            error = zsys_sprintf ("keys: bus/curve is on but %s cannot be"
                                  " read: no broker is trusted; copy it from"
                                  " the broker host (README, Key handling)",
                                  path);
        zcert_destroy (&broker);
        zstr_free (&path);
        if (!error && role != HGP_KEYS_LISTENER) {
            bool actor = role == HGP_KEYS_ACTOR;
            const char *name = hgp_config_str (
                config, actor ? "bus/actor_cert" : "bus/client_cert", "local");
            path = zsys_sprintf ("%s/%s/%s.cert", self->dir,
                                 actor ? "actors" : "clients", name);
            self->cert = s_keypair_load (path, &error);
        }
    }
    zstr_free (&path);
done:
    if (error && self)
        hgp_keys_destroy (&self);
    if (error_p)
        *error_p = error;
    else
        free (error);
    return self;
}

void
hgp_keys_destroy (hgp_keys_t **self_p)
{
    assert (self_p);
    hgp_keys_t *self = *self_p;
    if (self) {
        zcert_destroy (&self->cert);
        zhashx_destroy (&self->brokers);
        free (self->dir);
        free (self);
        *self_p = NULL;
    }
}

void
hgp_keys_log (hgp_keys_t *self, const char *who)
{
    if (self->curve)
        zsys_info ("%s: bus secured with CURVE, cluster '%s', keys in %s%s%s",
                   who, self->cluster, self->dir,
                   self->cert ? ", public key " : "",
                   self->cert ? zcert_public_txt (self->cert) : "");
    else
        zsys_warning ("%s: bus/curve = 0: the bus is NOT authenticated nor"
                      " encrypted; anyone who reaches the broker can"
                      " register as an actor or read replies (cluster '%s')",
                      who, self->cluster);
}

bool
hgp_keys_curve (hgp_keys_t *self)
{
    return self->curve;
}

const char *
hgp_keys_cluster (hgp_keys_t *self)
{
    return self->cluster;
}

const char *
hgp_keys_public (hgp_keys_t *self)
{
    return self->cert ? zcert_public_txt (self->cert) : "";
}

const char *
hgp_keys_broker (hgp_keys_t *self)
{
    return self->role == HGP_KEYS_BROKER ? hgp_keys_public (self)
                                         : self->broker;
}

bool
hgp_keys_trusts_broker (hgp_keys_t *self, const char *key)
{
    if (!self->curve)
        return !key || !*key;
    return key && *key && zhashx_lookup (self->brokers, key) != NULL;
}

int
hgp_keys_client_apply (hgp_keys_t *self, zsock_t *sock,
                       const char *server_key)
{
    if (!self || !self->curve)
        return 0;
    assert (self->cert);
    if (!server_key || strlen (server_key) != HGP_KEY_TXT)
        return -1;
    zcert_apply (self->cert, sock);
    zsock_set_curve_serverkey (sock, server_key);
    return 0;
}

void
hgp_keys_server_apply (hgp_keys_t *self, zsock_t *sock, const char *domain)
{
    if (!self->curve)
        return;
    assert (self->role == HGP_KEYS_BROKER && self->cert);
    zcert_apply (self->cert, sock);
    zsock_set_curve_server (sock, 1);
    zsock_set_zap_domain (sock, domain);
    //  Draft in 4.3: refuse when no ZAP handler answers (where it is
    //  built in; otherwise starting the handler first is what holds)
    int on = 1;
    zmq_setsockopt (zsock_resolve (sock), 93 /* ZMQ_ZAP_ENFORCE_DOMAIN */,
                    &on, sizeof on);
}

void
hgp_keys_user_id (zmq_msg_t *frame, char *buf, size_t size)
{
    const char *user = zmq_msg_gets (frame, "User-Id");
    snprintf (buf, size, "%s", user ? user : "");
}


/*  --------------------------------------------------------------------
 *  The ZAP handler
 */

typedef struct {
    char *path;                 /* actors/ or clients/                      */
    struct timespec mtime;      /* of the directory when loaded             */
    bool loaded;                /* set holds what path held then            */
    zhashx_t *set;              /* Z85 public key -> file name              */
} s_domain_t;

typedef struct {
    zsock_t *pipe;              /* to the owner                             */
    zsock_t *handler;           /* REP bound at inproc://zeromq.zap.01      */
    s_domain_t domains [2];     /* HGP_ZAP_ACTORS, HGP_ZAP_CLIENTS          */
    uint64_t admitted;          /* handshakes allowed                       */
    uint64_t refused;           /* handshakes refused                       */
} s_zap_t;

//  The domain's set, read again when its directory changed
static zhashx_t *
s_domain_set (s_domain_t *domain)
{
    struct stat st;
    struct timespec mtime = { 0, 0 };
    if (stat (domain->path, &st) == 0)
        mtime = st.st_mtim;
    if (!domain->loaded || mtime.tv_sec != domain->mtime.tv_sec
    ||  mtime.tv_nsec != domain->mtime.tv_nsec) {
        zhashx_destroy (&domain->set);
        domain->set = s_trusted_load (domain->path);
        if (domain->loaded)
            zsys_info ("keys: %s changed: %zu certificates trusted",
                       domain->path, zhashx_size (domain->set));
        domain->mtime = mtime;
        domain->loaded = true;
    }
    return domain->set;
}

static void
s_zap_refuse (s_zap_t *self, const char *why, const char *domain,
              const char *address, const char *key)
{
    self->refused++;
    if (self->refused <= S_REFUSALS_LOGGED
    ||  self->refused % S_REFUSALS_EVERY == 0)
        zsys_warning ("keys: refused a connection from %s to %s: %s%s%s"
                      " (%" PRIu64 " refused so far)", address,
                      *domain ? domain : "(no domain)", why,
                      key ? ", key " : "", key ? key : "", self->refused);
}

//  One ZAP request: version, request id, domain, address, routing id,
//  mechanism, credentials (RFC 27)
static void
s_zap_request (s_zap_t *self)
{
    zmsg_t *request = zmsg_recv (self->handler);
    if (!request)
        return;
    char *version = zmsg_popstr (request);
    char *sequence = zmsg_popstr (request);
    char *domain = zmsg_popstr (request);
    char *address = zmsg_popstr (request);
    char *identity = zmsg_popstr (request);
    char *mechanism = zmsg_popstr (request);
    zframe_t *credentials = zmsg_pop (request);
    zmsg_destroy (&request);

    const char *status = "400", *text = "refused";
    char key [HGP_KEY_TXT + 1] = "";
    s_domain_t *which = NULL;
    if (domain && streq (domain, HGP_ZAP_ACTORS))
        which = &self->domains [0];
    else
    if (domain && streq (domain, HGP_ZAP_CLIENTS))
        which = &self->domains [1];
    if (!version || !streq (version, "1.0") || !mechanism)
        s_zap_refuse (self, "not a ZAP 1.0 request", domain ? domain : "",
                      address ? address : "?", NULL);
    else
    if (!which)
        s_zap_refuse (self, "unknown ZAP domain", domain ? domain : "",
                      address ? address : "?", NULL);
    else
    if (!streq (mechanism, "CURVE") || !credentials
    ||  zframe_size (credentials) != 32)
        s_zap_refuse (self, "no CURVE certificate", domain,
                      address ? address : "?", NULL);
    else {
        zmq_z85_encode (key, zframe_data (credentials), 32);
        if (zhashx_lookup (s_domain_set (which), key)) {
            status = "200";
            text = "OK";
            self->admitted++;
        }
        else
            s_zap_refuse (self, "certificate not trusted", domain,
                          address ? address : "?", key);
    }
    bool ok = streq (status, "200");
    zstr_sendx (self->handler, "1.0", sequence ? sequence : "", status, text,
                ok ? key : "", "", NULL);
    zstr_free (&version);
    zstr_free (&sequence);
    zstr_free (&domain);
    zstr_free (&address);
    zstr_free (&identity);
    zstr_free (&mechanism);
    zframe_destroy (&credentials);
}

void
hgp_keys_zap_actor (zsock_t *pipe, void *args)
{
    hgp_keys_t *keys = (hgp_keys_t *) args;
    s_zap_t self = { .pipe = pipe };
    self.domains [0].path = zsys_sprintf ("%s/actors", keys->dir);
    self.domains [1].path = zsys_sprintf ("%s/clients", keys->dir);
    for (int i = 0; i < 2; i++)
        s_domain_set (&self.domains [i]);
    self.handler = zsock_new (ZMQ_REP);
    assert (self.handler);
    int rc = zsock_bind (self.handler, S_ZAP_ENDPOINT);
    zsys_info ("keys: %zu actor and %zu client certificates trusted (%s, %s)",
               zhashx_size (self.domains [0].set),
               zhashx_size (self.domains [1].set),
               self.domains [0].path, self.domains [1].path);
    zsock_signal (pipe, rc == 0 ? 0 : 1);
    zpoller_t *poller = rc == 0 ? zpoller_new (pipe, self.handler, NULL)
                                : zpoller_new (pipe, NULL);
    assert (poller);
    while (true) {
        void *which = zpoller_wait (poller, -1);
        if (which == self.handler)
            s_zap_request (&self);
        else
        if (which == pipe) {
            char *command = zstr_recv (pipe);
            bool term = !command || streq (command, "$TERM");
            zstr_free (&command);
            if (term)
                break;
        }
        else
        if (zpoller_terminated (poller))
            break;
    }
    if (self.refused)
        zsys_info ("keys: %" PRIu64 " connections admitted, %" PRIu64
                   " refused", self.admitted, self.refused);
    zpoller_destroy (&poller);
    zsock_destroy (&self.handler);
    for (int i = 0; i < 2; i++) {
        zhashx_destroy (&self.domains [i].set);
        zstr_free (&self.domains [i].path);
    }
}
