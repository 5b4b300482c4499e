/*  hgp_exporter.c - GET /metrics over a ZMQ_STREAM socket (see the .h)
 *
 *  ZMQ_STREAM hands us raw TCP bytes per connection, each message framed
 *  as [routing id][bytes]; an empty bytes frame means connected or
 *  disconnected (the same frame for both: a known id going empty is a
 *  disconnect), and sending [id][""] closes. Each connection gets one
 *  bounded buffer until its head is complete; then one answer, then the
 *  close. Nothing here is on a hot path: a scrape a few seconds apart.
 */
#include "hgp_exporter.h"
#include <czmq.h>

#define S_HEAD_MAX      8192        /* bytes of a request head            */
#define S_CONN_MAX      64          /* connections at once                */
#define S_CONN_MS       5000        /* to send a whole head               */
#define S_SWEEP_MS      1000

typedef struct {
    hgp_prom_t *prom;
    char endpoint [HGP_EXPORTER_URL_MAX];   /* tcp://host:port|*          */
    char url [HGP_EXPORTER_URL_MAX];        /* filled by the actor        */
    char error [256];                       /* ... or this                */
} s_args_t;

struct _hgp_exporter_t {
    zactor_t *actor;
    s_args_t args;
};

typedef struct {
    uint8_t id [256];
    size_t id_size;
    char head [S_HEAD_MAX + 1];
    size_t size;
    int64_t since;
} s_conn_t;


/*  --------------------------------------------------------------------
 *  The actor
 */

static void
s_send (zsock_t *stream, const s_conn_t *conn, const char *data, size_t size)
{
    //  Never wait: a peer that is gone or not reading loses its answer
    void *handle = zsock_resolve (stream);
    if (zmq_send (handle, conn->id, conn->id_size,
                  ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0)
        zmq_send (handle, data, size, ZMQ_DONTWAIT);
}

static void
s_close (zsock_t *stream, zhashx_t *conns, const char *key)
{
    s_conn_t *conn = (s_conn_t *) zhashx_lookup (conns, key);
    if (conn) {
        s_send (stream, conn, "", 0);
        zhashx_delete (conns, key);
    }
}

static void
s_answer (zsock_t *stream, const s_conn_t *conn, int status,
          const char *reason, const char *body)
{
    char *text = zsys_sprintf (
        "HTTP/1.1 %d %s\r\n"
        "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
        "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
        status, reason, strlen (body), body);
    if (text) {
        s_send (stream, conn, text, strlen (text));
        zstr_free (&text);
    }
}

//  Full: the connection that has had longest makes room (a scrape takes
//  milliseconds, so idle connections cannot keep one out)
static void
s_close_oldest (zsock_t *stream, zhashx_t *conns)
{
    const char *oldest = NULL;
    int64_t since = INT64_MAX;
    for (s_conn_t *conn = (s_conn_t *) zhashx_first (conns); conn;
         conn = (s_conn_t *) zhashx_next (conns))
        if (conn->since < since) {
            since = conn->since;
            oldest = (const char *) zhashx_cursor (conns);
        }
    if (oldest) {
        char key [2 * 256 + 1];
        snprintf (key, sizeof key, "%s", oldest);
        s_close (stream, conns, key);
    }
}

//  A whole head: answer it
static void
s_serve (zsock_t *stream, hgp_prom_t *prom, const s_conn_t *conn)
{
    char method [16] = "", target [256] = "";
    if (sscanf (conn->head, "%15s %255s HTTP/1.", method, target) != 2)
        s_answer (stream, conn, 400, "Bad Request", "bad request line\n");
    else
    if (strcmp (method, "GET"))
        s_answer (stream, conn, 405, "Method Not Allowed", "GET only\n");
    else
    if (strcmp (target, "/metrics") && strncmp (target, "/metrics?", 9))
        s_answer (stream, conn, 404, "Not Found", "try /metrics\n");
    else {
        char *body = hgp_prom_render (prom);
        if (body)
            s_answer (stream, conn, 200, "OK", body);
        else
            s_answer (stream, conn, 500, "Internal Server Error",
                      "out of memory\n");
        free (body);
    }
}

static void
s_key (const uint8_t *id, size_t size, char *key)
{
    static const char hex [] = "0123456789abcdef";
    for (size_t i = 0; i < size; i++) {
        key [2 * i] = hex [id [i] >> 4];
        key [2 * i + 1] = hex [id [i] & 15];
    }
    key [2 * size] = 0;
}

//  One message off the stream socket
static void
s_on_stream (zsock_t *stream, zhashx_t *conns, hgp_prom_t *prom)
{
    zmsg_t *msg = zmsg_recv (stream);
    zframe_t *id = msg ? zmsg_first (msg) : NULL;
    zframe_t *data = msg ? zmsg_next (msg) : NULL;
    if (!id || !data || zframe_size (id) > sizeof ((s_conn_t *) 0)->id) {
        zmsg_destroy (&msg);
        return;
    }
    char key [2 * 256 + 1];
    s_key (zframe_data (id), zframe_size (id), key);
    s_conn_t *conn = (s_conn_t *) zhashx_lookup (conns, key);
    if (zframe_size (data) == 0) {
        if (conn)                       //  it went away
            zhashx_delete (conns, key);
        else {                          //  a new one
            conn = (s_conn_t *) calloc (1, sizeof *conn);
            if (conn) {
                memcpy (conn->id, zframe_data (id), zframe_size (id));
                conn->id_size = zframe_size (id);
                conn->since = zclock_mono ();
                zhashx_insert (conns, key, conn);
                if (zhashx_size (conns) > S_CONN_MAX)
                    s_close_oldest (stream, conns);
            }
        }
        zmsg_destroy (&msg);
        return;
    }
    if (conn) {
        size_t size = zframe_size (data);
        if (size > S_HEAD_MAX - conn->size) {
            s_answer (stream, conn, 431, "Request Header Fields Too Large",
                      "request head over 8 KiB\n");
            s_close (stream, conns, key);
        }
        else {
            memcpy (conn->head + conn->size, zframe_data (data), size);
            conn->size += size;
            conn->head [conn->size] = 0;
            if (strstr (conn->head, "\r\n\r\n") || strstr (conn->head, "\n\n")) {
                s_serve (stream, prom, conn);
                s_close (stream, conns, key);
            }
        }
    }
    zmsg_destroy (&msg);
}

//  Close every connection older than S_CONN_MS
static void
s_sweep (zsock_t *stream, zhashx_t *conns)
{
    int64_t now = zclock_mono ();
    zlist_t *old = zlist_new ();
    for (s_conn_t *conn = (s_conn_t *) zhashx_first (conns); conn;
         conn = (s_conn_t *) zhashx_next (conns))
        if (now - conn->since > S_CONN_MS)
            zlist_append (old, (void *) zhashx_cursor (conns));
    for (char *key = (char *) zlist_first (old); key;
         key = (char *) zlist_next (old))
        s_close (stream, conns, key);
    zlist_destroy (&old);
}

static void
s_conn_free (void **item)
{
    free (*item);
    *item = NULL;
}

static void
s_actor (zsock_t *pipe, void *arg)
{
    s_args_t *args = (s_args_t *) arg;
    zsock_t *stream = zsock_new (ZMQ_STREAM);
    int port = stream ? zsock_bind (stream, "%s", args->endpoint) : -1;
    if (port < 0)
        snprintf (args->error, sizeof args->error, "%s",
                  stream ? zmq_strerror (zmq_errno ()) : "no socket");
    else {
        zsock_set_linger (stream, 0);
        char host [64] = "";
        sscanf (args->endpoint, "tcp://%63[^:]", host);
        hgp_exporter_format_url (host, port, args->url, sizeof args->url);
    }
    zsock_signal (pipe, 0);

    zhashx_t *conns = zhashx_new ();
    zhashx_set_destructor (conns, s_conn_free);
    zpoller_t *poller = zpoller_new (pipe, port >= 0 ? stream : NULL, NULL);
    int64_t sweep_at = zclock_mono () + S_SWEEP_MS;
    while (true) {
        void *which = zpoller_wait (poller, S_SWEEP_MS);
        if (which == pipe) {
            char *command = zstr_recv (pipe);
            bool term = !command || streq (command, "$TERM");
            zstr_free (&command);
            if (term)
                break;
        }
        else
        if (which == stream)
            s_on_stream (stream, conns, args->prom);
        else
        if (zpoller_terminated (poller))
            break;
        if (zclock_mono () >= sweep_at) {
            s_sweep (stream, conns);
            sweep_at = zclock_mono () + S_SWEEP_MS;
        }
    }
    zpoller_destroy (&poller);
    zhashx_destroy (&conns);
    zsock_destroy (&stream);
}


/*  --------------------------------------------------------------------
 *  The caller's side
 */

int
hgp_exporter_format_url (const char *host, int port, char *url, size_t size)
{
    if (!host || !*host || port < 1 || port > 65535)
        return -1;
    //  Listening on every address: others reach us by our host name
    char *name = NULL;
    if (streq (host, "*") || streq (host, "0.0.0.0") || streq (host, "::"))
        host = name = zsys_hostname ();
    int n = snprintf (url, size, "http://%s:%d/metrics",
                      host ? host : "localhost", port);
    zstr_free (&name);
    return n > 0 && (size_t) n < size ? 0 : -1;
}

//  "host:port" (port 0: any free one) as a ZeroMQ endpoint
static int
s_endpoint (const char *address, char *endpoint, size_t size)
{
    const char *colon = strrchr (address, ':');
    if (!colon || colon == address || colon - address > 63)
        return -1;
    char *end;
    long port = strtol (colon + 1, &end, 10);
    if (end == colon + 1 || *end || port < 0 || port > 65535)
        return -1;
    for (const char *p = address; p < colon; p++)
        if (!isalnum ((unsigned char) *p) && !strchr (".-*", *p))
            return -1;
    int n = port ? snprintf (endpoint, size, "tcp://%.*s:%ld",
                             (int) (colon - address), address, port)
                 : snprintf (endpoint, size, "tcp://%.*s:*",
                             (int) (colon - address), address);
    return n > 0 && (size_t) n < size ? 0 : -1;
}

//  The setting's value, its path and its variable's name
static const char *
s_setting (hgp_config_t *config, const char *section, char *path,
           size_t path_size, char *env, size_t env_size)
{
    snprintf (path, path_size, "%s/metrics", section);
    hgp_config_env_name (path, env, env_size);
    return hgp_config_str (config, path, "127.0.0.1:0");
}

static char *
s_bad_setting (const char *path, const char *env, const char *address)
{
    return zsys_sprintf ("config: %s (%s) is '%s'; want HOST:PORT (port 0:"
                         " any free one), or empty for none", path, env,
                         address);
}

char *
hgp_exporter_config_check (hgp_config_t *config, const char *section)
{
    char path [64], env [96], endpoint [HGP_EXPORTER_URL_MAX];
    const char *address = s_setting (config, section, path, sizeof path,
                                     env, sizeof env);
    if (*address && s_endpoint (address, endpoint, sizeof endpoint))
        return s_bad_setting (path, env, address);
    return NULL;
}

hgp_exporter_t *
hgp_exporter_new (hgp_config_t *config, const char *section,
                  hgp_prom_t *prom, char **error)
{
    *error = NULL;
    char path [64], env [96];
    const char *address = s_setting (config, section, path, sizeof path,
                                     env, sizeof env);
    if (!*address)
        return NULL;
    hgp_exporter_t *self = (hgp_exporter_t *) calloc (1, sizeof *self);
    if (!self) {
        *error = strdup ("out of memory");
        return NULL;
    }
    self->args.prom = prom;
    if (s_endpoint (address, self->args.endpoint,
                    sizeof self->args.endpoint)) {
        *error = s_bad_setting (path, env, address);
        free (self);
        return NULL;
    }
    self->actor = zactor_new (s_actor, &self->args);
    if (!self->actor || self->args.error [0]) {
        *error = zsys_sprintf ("%s (%s): cannot listen on %s: %s", path, env,
                               address, self->args.error [0]
                               ? self->args.error : "no thread");
        hgp_exporter_destroy (&self);
        return NULL;
    }
    zsys_info ("metrics at %s", self->args.url);
    return self;
}

hgp_exporter_t *
hgp_exporter_start (hgp_config_t *config, const char *section,
                    hgp_prom_t *prom)
{
    char *error = NULL;
    hgp_exporter_t *self = hgp_exporter_new (config, section, prom, &error);
    if (error) {
        zsys_error ("%s: no metrics: %s", section, error);
        zstr_free (&error);
    }
    return self;
}

void
hgp_exporter_destroy (hgp_exporter_t **self_p)
{
    if (self_p && *self_p) {
        zactor_destroy (&(*self_p)->actor);
        free (*self_p);
        *self_p = NULL;
    }
}

const char *
hgp_exporter_url (hgp_exporter_t *self)
{
    return self->args.url;
}
