/*  hgp_redis.c - one blocking Redis connection that comes back (see .h)
 *
 *  Blocking hiredis on purpose: each owner is a single-threaded actor whose
 *  batches are one pipelined round trip, so an event loop would add
 *  callbacks and no throughput. Every read and write has redis/timeout.
 *
 *  Reconnecting loads the scripts again (SCRIPT LOAD is idempotent), so a
 *  server that restarted or lost its script cache is handled the same way
 *  as a first connect.
 */
#include "hgp_redis.h"
#include <czmq.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <sys/socket.h>

#define S_RETRY_MIN     200         /* ms between connect attempts       */
#define S_RETRY_MAX     1000        /* ... backing off to this, idle     */

struct _hgp_redis_t {
    char *who;                  /* owner, for logs                         */
    char *host;                 /* from redis/url                          */
    int port;                   /* from redis/url, 6379 if absent          */
    char *user;                 /* AUTH user, NULL when none               */
    char *password;             /* AUTH password, NULL when none           */
    int db;                     /* SELECTed when not 0                     */
    int64_t timeout;            /* redis/timeout, ms                       */
    char address [300];         /* "host:port db N", for messages          */
    redisContext *c;            /* NULL while not connected                */
    const char *scripts [HGP_REDIS_SCRIPTS_MAX];    /* sources, not owned  */
    char shas [HGP_REDIS_SCRIPTS_MAX][41];          /* as loaded           */
    int nscripts;               /* entries used                            */
    bool up;                    /* for logging transitions only            */
    bool complained;            /* logged a failed connect since last up   */
    int64_t retry_at;           /* no idle connect attempt before this     */
    int64_t retry_delay;        /* current idle backoff, ms                */
    int64_t tried_at;           /* last failed connect attempt, mono ms    */
    uint64_t connects;          /* successful connects                     */
};

static int
s_parse_uint (const char *s, size_t len, long min, long max, long *value)
{
    if (len == 0 || len > 10)
        return -1;
    long n = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit ((unsigned char) s [i]))
            return -1;
        n = n * 10 + (s [i] - '0');
    }
    if (n < min || n > max)
        return -1;
    *value = n;
    return 0;
}

/*  redis://[[user]:password@]host[:port][/db]. NULL or a message to free.
    The message never quotes the URL: it may hold a password. */
static char *
s_url_parse (hgp_redis_t *self, const char *url)
{
    const char *problem = NULL;
    const char *scheme = "redis://";
    if (strncmp (url, scheme, strlen (scheme)) != 0) {
        problem = "it must start with redis://";
        goto failed;
    }
    const char *p = url + strlen (scheme);
    const char *at = strrchr (p, '@');
    if (at) {
        const char *colon = memchr (p, ':', (size_t) (at - p));
        if (!colon) {
            problem = "credentials must be :password@ or user:password@";
            goto failed;
        }
        if (colon + 1 == at) {
            problem = "the password is empty";
            goto failed;
        }
        if (colon > p)
            self->user = strndup (p, (size_t) (colon - p));
        self->password = strndup (colon + 1, (size_t) (at - colon - 1));
        p = at + 1;
    }
    const char *slash = strchr (p, '/');
    const char *end = slash ? slash : p + strlen (p);
    const char *host = p, *host_end = NULL, *port = NULL;
    if (*p == '[') {                    /*  [IPv6 literal]              */
        host = p + 1;
        host_end = memchr (host, ']', (size_t) (end - host));
        if (!host_end) {
            problem = "an IPv6 host needs a closing ]";
            goto failed;
        }
        if (host_end + 1 < end) {
            if (host_end [1] != ':') {
                problem = "junk after the host";
                goto failed;
            }
            port = host_end + 2;
        }
    }
    else {
        const char *colon = memchr (p, ':', (size_t) (end - p));
        host_end = colon ? colon : end;
        if (colon)
            port = colon + 1;
    }
    if (host_end == host) {
        problem = "the host is missing";
        goto failed;
    }
    if (memchr (host, '@', (size_t) (host_end - host))
    ||  (*p != '[' && memchr (host, ':', (size_t) (host_end - host)))) {
        problem = "the host is not valid";
        goto failed;
    }
    self->host = strndup (host, (size_t) (host_end - host));
    long n = 6379;
    if (port && s_parse_uint (port, (size_t) (end - port), 1, 65535, &n)) {
        problem = "the port must be a number from 1 to 65535";
        goto failed;
    }
    self->port = (int) n;
    n = 0;
    if (slash && slash [1]
    &&  s_parse_uint (slash + 1, strlen (slash + 1), 0, INT_MAX, &n)) {
        problem = "the database after / must be a number";
        goto failed;
    }
    self->db = (int) n;
    return NULL;

failed:
    return zsys_sprintf ("config: redis/url (HGP_REDIS_URL) is not valid: %s;"
                         " want redis://[[user]:password@]host[:port][/db]",
                         problem);
}

hgp_redis_t *
hgp_redis_new (hgp_config_t *config, const char *who, char **error_p)
{
    hgp_redis_t *self = (hgp_redis_t *) zmalloc (sizeof (hgp_redis_t));
    assert (self);
    self->who = strdup (who);
    self->timeout = hgp_config_int (config, "redis/timeout", 1000, 10, 60000);
    char *error = hgp_config_error (config)
                ? strdup (hgp_config_error (config))
                : s_url_parse (self, hgp_config_str (config, "redis/url",
                                                     "redis://127.0.0.1:6379"));
    if (error) {
        if (error_p)
            *error_p = error;
        else
            free (error);
        hgp_redis_destroy (&self);
        return NULL;
    }
    snprintf (self->address, sizeof self->address, "%s:%d db %d",
              self->host, self->port, self->db);
    self->retry_delay = S_RETRY_MIN;
    return self;
}

void
hgp_redis_destroy (hgp_redis_t **self_p)
{
    assert (self_p);
    hgp_redis_t *self = *self_p;
    if (self) {
        if (self->c)
            redisFree (self->c);
        free (self->who);
        free (self->host);
        free (self->user);
        free (self->password);
        free (self);
        *self_p = NULL;
    }
}

int
hgp_redis_script (hgp_redis_t *self, const char *source)
{
    assert (self->nscripts < HGP_REDIS_SCRIPTS_MAX);
    self->scripts [self->nscripts] = source;
    return self->nscripts++;
}

const char *
hgp_redis_sha (hgp_redis_t *self, int script)
{
    assert (script >= 0 && script < self->nscripts);
    return self->shas [script];
}

redisContext *
hgp_redis_context (hgp_redis_t *self)
{
    return self->c;
}

const char *
hgp_redis_address (hgp_redis_t *self)
{
    return self->address;
}

uint64_t
hgp_redis_connects (hgp_redis_t *self)
{
    return self->connects;
}

int64_t
hgp_redis_retry_at (hgp_redis_t *self)
{
    return self->c ? INT64_MAX : self->retry_at;
}

const char *
hgp_redis_why (redisContext *c)
{
    if (c->err == REDIS_ERR_IO && streq (c->errstr, strerror (EAGAIN)))
        return "timed out";
    if (c->err == REDIS_ERR_EOF || !c->errstr [0])
        return "connection closed";
    return c->errstr;
}

void
hgp_redis_drop (hgp_redis_t *self, const char *reason)
{
    if (self->c) {
        redisFree (self->c);
        self->c = NULL;
    }
    if (self->up) {
        zsys_warning ("%s: lost redis at %s (%s)", self->who, self->address,
                      reason);
        self->up = false;
    }
    //  Try again at once: most losses are a restart, the next attempt
    //  backs off if it fails
    self->retry_at = zclock_mono ();
}

/*  One command at connect time on c; the reply or NULL, reason filled */
static redisReply *
s_command (redisContext *c, int argc, const char **argv, char *reason,
           size_t size)
{
    redisReply *reply = (redisReply *) redisCommandArgv (c, argc, argv, NULL);
    if (!reply) {
        snprintf (reason, size, "%s: %s", argv [0], hgp_redis_why (c));
        return NULL;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf (reason, size, "%s: %s", argv [0], reply->str);
        freeReplyObject (reply);
        return NULL;
    }
    return reply;
}

static int
s_load_scripts (hgp_redis_t *self, redisContext *c, char *reason, size_t size)
{
    for (int i = 0; i < self->nscripts; i++) {
        const char *argv [] = { "SCRIPT", "LOAD", self->scripts [i] };
        redisReply *reply = s_command (c, 3, argv, reason, size);
        if (!reply)
            return -1;
        int rc = -1;
        if (reply->type == REDIS_REPLY_STRING && reply->len == 40) {
            memcpy (self->shas [i], reply->str, 40);
            self->shas [i][40] = 0;
            rc = 0;
        }
        else
            snprintf (reason, size, "SCRIPT LOAD: unexpected reply");
        freeReplyObject (reply);
        if (rc)
            return -1;
    }
    return 0;
}

int
hgp_redis_reload (hgp_redis_t *self)
{
    if (!self->c)
        return -1;
    char reason [256];
    if (s_load_scripts (self, self->c, reason, sizeof reason) == 0)
        return 0;
    zsys_error ("%s: cannot load scripts into redis (%s)", self->who, reason);
    hgp_redis_drop (self, reason);
    return -1;
}

/*  Connect, AUTH, SELECT, SCRIPT LOAD. 0 when connected. */
static int
s_connect (hgp_redis_t *self, bool demand)
{
    assert (!self->c);
    int64_t now = zclock_mono ();
    if (demand ? now < self->tried_at + S_RETRY_MIN : now < self->retry_at)
        return -1;
    self->tried_at = now;

    struct timeval tv = {
        .tv_sec = (time_t) (self->timeout / 1000),
        .tv_usec = (suseconds_t) (self->timeout % 1000) * 1000
    };
    char reason [256] = "";
    redisContext *c = redisConnectWithTimeout (self->host, self->port, tv);
    if (!c || c->err) {
        snprintf (reason, sizeof reason, "%s", c ? c->errstr : "out of memory");
        goto failed;
    }
    if (redisSetTimeout (c, tv) != REDIS_OK) {
        snprintf (reason, sizeof reason, "cannot set timeout: %s", c->errstr);
        goto failed;
    }
    redisEnableKeepAlive (c);           //  best effort: detects dead peers
    if (self->password) {
        const char *argv [] = { "AUTH", self->user, self->password };
        if (!self->user)
            argv [1] = self->password;
        redisReply *reply = s_command (c, self->user ? 3 : 2, argv,
                                       reason, sizeof reason);
        if (!reply)
            goto failed;
        freeReplyObject (reply);
    }
    if (self->db) {
        char db [16];
        snprintf (db, sizeof db, "%d", self->db);
        const char *argv [] = { "SELECT", db };
        redisReply *reply = s_command (c, 2, argv, reason, sizeof reason);
        if (!reply)
            goto failed;
        freeReplyObject (reply);
    }
    if (s_load_scripts (self, c, reason, sizeof reason))
        goto failed;
    self->c = c;
    zsys_info ("%s: connected to redis at %s", self->who, self->address);
    self->up = true;
    self->complained = false;
    self->retry_delay = S_RETRY_MIN;
    self->tried_at = 0;                 //  only failed attempts hold us back
    self->connects++;
    return 0;

failed:
    if (c)
        redisFree (c);
    if (!self->complained)
        zsys_warning ("%s: cannot connect to redis at %s (%s); retrying",
                      self->who, self->address, reason);
    self->complained = true;
    self->retry_at = zclock_mono () + self->retry_delay;
    self->retry_delay = MIN (self->retry_delay * 2, S_RETRY_MAX);
    return -1;
}

/*  Is the idle connection still open? A server that closed it (restart,
    timeout, kill) left an EOF or a goodbye error in our receive buffer.
    Seeing that before writing turns what would be an indeterminate outcome
    into a reconnect. */
static bool
s_alive (hgp_redis_t *self)
{
    char byte;
    ssize_t rc = recv (self->c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return rc == -1 && (errno == EAGAIN || errno == EWOULDBLOCK
                        || errno == EINTR);
}

void
hgp_redis_check (hgp_redis_t *self)
{
    if (self->c && !s_alive (self))
        hgp_redis_drop (self, "closed by the server");
}

redisContext *
hgp_redis_ready (hgp_redis_t *self, bool demand)
{
    hgp_redis_check (self);
    if (!self->c)
        s_connect (self, demand);
    return self->c;
}

redisReply *
hgp_redis_command (hgp_redis_t *self, int argc, const char **argv,
                   const size_t *argvlen, char *reason, size_t size)
{
    assert (self->c);
    redisReply *reply = (redisReply *) redisCommandArgv (self->c, argc, argv,
                                                         argvlen);
    if (!reply) {
        snprintf (reason, size, "%s: %s", argv [0], hgp_redis_why (self->c));
        hgp_redis_drop (self, reason);
        return NULL;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf (reason, size, "%s: %s", argv [0], reply->str);
        freeReplyObject (reply);
        return NULL;
    }
    return reply;
}

int
hgp_redis_append (hgp_redis_t *self, const hgp_args_t *args)
{
    assert (self->c);
    if (redisAppendCommandArgv (self->c, hgp_args_count (args),
                                hgp_args_argv (args),
                                hgp_args_lens (args)) == REDIS_OK)
        return 0;
    zsys_error ("%s: redis: cannot buffer a command: %s", self->who,
                self->c->errstr);
    hgp_redis_drop (self, "out of memory");
    return -1;
}

redisReply *
hgp_redis_eval (hgp_redis_t *self, int script, hgp_args_t *args,
                bool *definite, char *reason, size_t size)
{
    bool surely_not = true;
    redisReply *result = NULL;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!hgp_redis_ready (self, true)) {
            snprintf (reason, size, "redis at %s is unreachable",
                      hgp_redis_address (self));
            break;
        }
        hgp_args_set (args, 1, hgp_redis_sha (self, script), 40);
        redisReply *reply = (redisReply *) redisCommandArgv (
            self->c, hgp_args_count (args), hgp_args_argv (args),
            hgp_args_lens (args));
        if (!reply) {
            //  Sent, or partly sent, and no answer: it may have run
            snprintf (reason, size, "redis at %s: %s",
                      hgp_redis_address (self), hgp_redis_why (self->c));
            hgp_redis_drop (self, reason);
            surely_not = false;
            break;
        }
        if (reply->type != REDIS_REPLY_ERROR) {
            result = reply;
            break;
        }
        snprintf (reason, size, "redis at %s: %s", hgp_redis_address (self),
                  reply->str);
        bool noscript = strncmp (reply->str, "NOSCRIPT", 8) == 0;
        surely_not = hgp_redis_refused (reply->str);
        freeReplyObject (reply);
        if (!noscript || hgp_redis_reload (self))
            break;
    }
    if (definite)
        *definite = surely_not;
    return result;
}

bool
hgp_redis_unavailable (const char *error)
{
    static const char *prefixes [] = {
        "LOADING", "BUSY", "MASTERDOWN", "NOAUTH", "NOPERM", "OOM",
        "READONLY", "MISCONF", "NOREPLICAS"
    };
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes [0]; i++)
        if (strncmp (error, prefixes [i], strlen (prefixes [i])) == 0)
            return true;
    return false;
}

bool
hgp_redis_refused (const char *error)
{
    static const char *prefixes [] = { "NOSCRIPT", "LOADING", "BUSY", "NOAUTH" };
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes [0]; i++)
        if (strncmp (error, prefixes [i], strlen (prefixes [i])) == 0)
            return true;
    return false;
}

int
hgp_redis_int64 (const char *s, size_t len, int64_t *value)
{
    char text [24];
    if (len == 0 || len >= sizeof text
    ||  !(s [0] == '-' || isdigit ((unsigned char) s [0])))
        return -1;
    memcpy (text, s, len);
    text [len] = 0;
    errno = 0;
    char *end = NULL;
    long long n = strtoll (text, &end, 10);
    if (errno || end != text + len || end == text
    ||  (text [0] == '-' && len == 1))
        return -1;
    *value = (int64_t) n;
    return 0;
}
