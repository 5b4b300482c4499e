/*  hgp_counter.c - the counter actor: incr, get and mget on Redis
 *
 *  One zactor thread owns one DEALER per broker it knows (schemas/PROTOCOL.md
 *  sections 5 and 9), the discovery actor that tells it which brokers
 *  exist (lib/hgp_discovery.c: beacons, or the one static endpoint), and
 *  one blocking hiredis connection. Nothing else touches any of them, so
 *  there are no locks and no callbacks: the actor polls, drains what the
 *  brokers sent, goes to Redis once for all of it, replies to each broker
 *  on its own DEALER, and polls again.
 *
 *  Invariants, and why they hold:
 *
 *  - An acknowledged incr is applied exactly once. The increment and its
 *    idempotency record ("hgp:r:<id>" = "<counter key> <delta> <value>",
 *    PROTOCOL.md section 7) are written by one Lua script, so Redis applies
 *    both or neither. A retry of the same id, through this actor or any
 *    other, after a crash or a broker redelivery, finds the record and
 *    replays the recorded value instead of adding again. Nothing about
 *    idempotency lives in this process, so losing the process loses nothing.
 *
 *  - No error looks like success, and no outcome is claimed that we do not
 *    know. Every request gets exactly one reply. When we know Redis did not
 *    run an increment (not connected, NOSCRIPT, a refusal before the script
 *    ran) the reply is the definite 503 unavailable; once the script may
 *    have run and we did not see its answer (I/O error, timeout, an odd
 *    reply) it is the indeterminate 504 timeout, which clients settle by
 *    retrying with the same id. Reads change nothing, so their failures are
 *    always definite.
 *
 *  - Values are exact int64s. Lua numbers are doubles, so the script uses
 *    INCRBY's integer reply only while it is below 2^53 in magnitude, where
 *    a double is exact (and saves a GET per increment); beyond that the
 *    value is read back with GET, as a string, and parsed here.
 *
 *  - Group commit. Whatever the broker has sent when the DEALER becomes
 *    readable (up to counter/batch_max requests) goes to Redis in one
 *    pipelined round trip: one EVALSHA for all increments, then a GET or
 *    MGET per read. Throughput grows with load instead of being one round
 *    trip per request, and the script keeps increments in arrival order,
 *    so two requests with the same id in one batch still count once.
 *
 *  - The actor outlives its peers. Each broker link has its own READY and
 *    heartbeat state: a silent broker (heartbeat/interval x
 *    heartbeat/liveness) or a DISCONNECT gets a fresh DEALER and READY on
 *    that link only; a broker that discovery says left (leaving beacon, or
 *    no beacon for 8 intervals) loses its link. A lost Redis connection is
 *    reopened (and the script loaded again) at most every 200 ms to 1 s,
 *    without restarting anything.
 *
 *  - Serving several brokers changes nothing about exactly-once: each
 *    broker routes a key to its own rendezvous owner, and while brokers
 *    disagree about the live actors (for a beacon interval after a join,
 *    a heartbeat expiry after a death) two actors may write one key. That
 *    is safe because no actor caches a value and the Lua script makes
 *    increment plus idempotency record one atomic step in Redis
 *    (PROTOCOL.md 9.5 says what is fenced and what is not).
 */
#include "hgp_counter.h"
#include "hgp_codec.h"
#include "hgp_discovery.h"
#include "hgp_keyspace.h"
#include "hgp_process.h"
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <sys/socket.h>
#include <hiredis.h>

#define S_SERVICE           "counter"
#define S_RETRY_MIN         200         /* ms between Redis connect attempts */
#define S_RETRY_MAX         1000        /* ... backing off to this           */
/*  Counter keys in one batch: bounds what one round trip holds in memory
    (an mget counts its keys, anything else 1); always fits one full mget */
#define S_BATCH_KEYS_MAX    (16 * HGP_MGET_MAX)

/*  The whole write path. See the top of the file for why it looks like this.
    Result per increment: {0, value} applied, {1, value} replayed,
    {-1, ""} id used for another key or delta, {-2, err} overflow,
    {-3, err} refused by Redis for another reason. -1..-3 changed nothing:
    the record GET comes first and INCRBY is the first write, run by
    pcall so its refusal (overflow, OOM, READONLY) does not abort the
    script. */
static const char *s_incr_script =
    "local out = {}\n"
    "for i = 1, #KEYS / 2 do\n"
    "  local ck, rk, delta = KEYS[2 * i - 1], KEYS[2 * i], ARGV[i + 1]\n"
    "  local head = ck .. ' ' .. delta .. ' '\n"
    "  local rec = redis.pcall('GET', rk)\n"
    "  if type(rec) == 'table' and rec.err then\n"
    "    out[i] = {-3, rec.err}\n"
    "  elseif rec then\n"
    "    if string.sub(rec, 1, #head) == head then\n"
    "      out[i] = {1, string.sub(rec, #head + 1)}\n"
    "    else\n"
    "      out[i] = {-1, ''}\n"
    "    end\n"
    "  else\n"
    "    local r = redis.pcall('INCRBY', ck, delta)\n"
    "    if type(r) == 'table' and r.err then\n"
    "      if string.find(r.err, 'overflow', 1, true) then\n"
    "        out[i] = {-2, r.err}\n"
    "      else\n"
    "        out[i] = {-3, r.err}\n"
    "      end\n"
    "    else\n"
    "      local value\n"
    "      if r > -9007199254740992 and r < 9007199254740992 then\n"
    "        value = string.format('%d', r)\n"
    "      else\n"
    "        value = redis.call('GET', ck)\n"
    "      end\n"
    "      redis.call('SET', rk, head .. value, 'EX', ARGV[1])\n"
    "      out[i] = {0, value}\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n";

/*  Settings, read once from the config */
typedef struct {
    const char *endpoint;       /* broker/actor_endpoint, the config's     */
    int64_t heartbeat;          /* heartbeat/interval, ms                  */
    int64_t liveness;           /* heartbeat/liveness, intervals           */
    int64_t redis_timeout;      /* redis/timeout, ms, connect and replies  */
    int64_t capacity;           /* counter/capacity, announced in READY    */
    int64_t batch_max;          /* counter/batch_max, requests per batch   */
    int64_t dedup_ttl;          /* counter/dedup_ttl, seconds              */
    char *redis_host;           /* from redis/url                          */
    int redis_port;             /* from redis/url, 6379 if absent          */
    char *redis_user;           /* AUTH user, NULL when none               */
    char *redis_password;       /* AUTH password, NULL when none           */
    int redis_db;               /* SELECTed when not 0                     */
} s_settings_t;

/*  Our link to one broker: a DEALER with its own READY and heartbeats */
typedef struct {
    char broker_id [40];        /* from discovery, "static" without it     */
    char *endpoint;             /* its actor endpoint                      */
    zsock_t *dealer;            /* connected to endpoint                   */
    int64_t heartbeat_at;       /* next HEARTBEAT due, zclock_mono ms      */
    int64_t expiry_at;          /* broker dead if silent until then        */
    bool lost;                  /* reconnected after silence, not heard yet */
    bool restart;               /* got DISCONNECT: new DEALER after batch  */
    uint64_t served;            /* replies sent on this link               */
} s_link_t;

#define S_LINKS_MAX         64          /* brokers served at once           */

/*  One request of the current batch */
typedef struct {
    s_link_t *link;             /* the broker it came from, answered there */
    uint8_t token [8];          /* the broker's handle, echoed in REPLY    */
    int64_t deadline;           /* zclock_mono ms when its budget ends     */
    hgp_request_t request;      /* decoded body (empty if it did not)      */
    hgp_reply_t reply;          /* the answer, final once done             */
    bool done;                  /* reply is final                          */
    char counter_key [HGP_KEYSPACE_COUNTER_MAX];   /* incr, get           */
    char record_key [HGP_KEYSPACE_RECORD_MAX];     /* incr                */
    char delta [24];            /* incr: delta in decimal, as recorded     */
} s_item_t;

/*  What one command of a pipeline answers for */
typedef enum { S_CMD_INCRS, S_CMD_GET, S_CMD_MGET } s_command_kind_t;
typedef struct {
    s_command_kind_t kind;      /* EVALSHA for all incrs, or a read        */
    size_t item;                /* the read's item; unused for INCRS       */
} s_command_t;

struct _hgp_counter_t {
    zsock_t *pipe;              /* commands from the caller                */
    zactor_t *discovery;        /* tells which brokers there are           */
    s_link_t *links [S_LINKS_MAX];  /* one per broker we serve             */
    size_t nlinks;              /* entries used in links                   */
    size_t next_link;           /* first link drained next time (fairness) */
    s_settings_t settings;      /* what the config said                    */
    char actor_id [33];         /* random per start, told in READY         */
    bool terminated;            /* $TERM received                          */
    redisContext *redis;        /* NULL while not connected                */
    char sha [41];              /* the script's SHA1, loaded on redis      */
    bool redis_up;              /* for logging transitions only            */
    bool redis_complained;      /* logged a failed connect since last up   */
    int64_t redis_retry_at;     /* no idle connect attempt before this     */
    int64_t redis_retry_delay;  /* current idle backoff, ms                */
    int64_t redis_tried_at;     /* last failed connect attempt, mono ms   */
    s_item_t *items;            /* the batch, batch_max entries            */
    size_t *incrs;              /* items that are incrs, in order          */
    s_command_t *commands;      /* the pipeline, batch_max + 1 entries     */
    const char **argv;          /* one Redis command's arguments           */
    size_t *argvlen;            /* ... and their lengths                   */
    char *keybuf;               /* counter keys of one mget                */
    char ttl [24];              /* dedup_ttl in decimal, script ARGV[1]    */
    hgp_buf_t buf;              /* encoded bodies, reused                  */
};
typedef struct _hgp_counter_t hgp_counter_t;


/*  --------------------------------------------------------------------------
    Settings
*/

static void
s_settings_clear (s_settings_t *s)
{
    free (s->redis_host);
    free (s->redis_user);
    free (s->redis_password);
    memset (s, 0, sizeof *s);
}

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

/*  redis://[[user]:password@]host[:port][/db]. Returns NULL or a message
    to free. The message never quotes the URL: it may hold a password. */
static char *
s_redis_url_parse (const char *url, s_settings_t *s)
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
            s->redis_user = strndup (p, (size_t) (colon - p));
        s->redis_password = strndup (colon + 1, (size_t) (at - colon - 1));
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
    s->redis_host = strndup (host, (size_t) (host_end - host));
    long n = 6379;
    if (port && s_parse_uint (port, (size_t) (end - port), 1, 65535, &n)) {
        problem = "the port must be a number from 1 to 65535";
        goto failed;
    }
    s->redis_port = (int) n;
    n = 0;
    if (slash && slash [1]
    &&  s_parse_uint (slash + 1, strlen (slash + 1), 0, INT_MAX, &n)) {
        problem = "the database after / must be a number";
        goto failed;
    }
    s->redis_db = (int) n;
    return NULL;

failed:
    return zsys_sprintf ("config: redis/url (HGP_REDIS_URL) is not valid: %s;"
                         " want redis://[[user]:password@]host[:port][/db]",
                         problem);
}

/*  Fill s from config; NULL or a message to free */
static char *
s_settings_load (hgp_config_t *config, s_settings_t *s)
{
    memset (s, 0, sizeof *s);
    s->endpoint = hgp_config_str (config, "broker/actor_endpoint",
                                  "tcp://127.0.0.1:5556");
    s->heartbeat = hgp_config_int (config, "heartbeat/interval", 500, 10, 60000);
    s->liveness = hgp_config_int (config, "heartbeat/liveness", 4, 1, 100);
    s->redis_timeout = hgp_config_int (config, "redis/timeout", 1000, 10, 60000);
    s->capacity = hgp_config_int (config, "counter/capacity", 2048, 1, 65535);
    s->batch_max = hgp_config_int (config, "counter/batch_max", 512, 1, 65535);
    s->dedup_ttl = hgp_config_int (config, "counter/dedup_ttl", 600,
                                   1, INT32_MAX);
    if (hgp_config_error (config))
        return strdup (hgp_config_error (config));
    return s_redis_url_parse (
        hgp_config_str (config, "redis/url", "redis://127.0.0.1:6379"), s);
}

char *
hgp_counter_config_check (hgp_config_t *config)
{
    s_settings_t s;
    char *error = s_settings_load (config, &s);
    if (!error)
        error = hgp_discovery_config_check (config);
    if (!error) {
        //  Only libzmq knows what endpoints it takes; ask it
        zsock_t *probe = zsock_new (ZMQ_DEALER);
        assert (probe);
        if (zsock_connect (probe, "%s", s.endpoint) == -1)
            error = zsys_sprintf ("config: broker/actor_endpoint"
                                  " (HGP_BROKER_ACTOR_ENDPOINT) '%s' is not a"
                                  " ZeroMQ endpoint: %s",
                                  s.endpoint, zmq_strerror (zmq_errno ()));
        zsock_destroy (&probe);
    }
    s_settings_clear (&s);
    return error;
}


/*  --------------------------------------------------------------------------
    Replies of one item
*/

static void
s_item_fail (s_item_t *item, uint16_t status, const char *code,
             const char *format, ...) __attribute__ ((format (printf, 4, 5)));

static void
s_item_fail (s_item_t *item, uint16_t status, const char *code,
             const char *format, ...)
{
    assert (!item->done);
    char message [HGP_MESSAGE_MAX + 1];
    va_list args;
    va_start (args, format);
    vsnprintf (message, sizeof message, format, args);
    va_end (args);
    free (item->reply.values);
    item->reply.values = NULL;
    item->reply.nvalues = 0;
    item->reply.has_value = false;
    item->reply.replayed = false;
    hgp_error_set (&item->reply.error, status, code, "%s", message);
    item->done = true;
}

static void
s_item_value (s_item_t *item, int64_t value, bool replayed)
{
    assert (!item->done);
    item->reply.has_value = true;
    item->reply.value = value;
    item->reply.replayed = replayed;
    item->done = true;
}

/*  Exact decimal int64, as Redis writes them: no spaces, no '+' */
static int
s_parse_int64 (const char *s, size_t len, int64_t *value)
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

/*  Is error Redis saying "not now" (out of memory, read-only replica,
    loading, failing to persist...)? Then the store is unavailable rather
    than our request wrong. Used where nothing can have changed anyway: a
    read, or a refused INCRBY inside the script. */
static bool
s_store_unavailable (const char *error)
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

/*  Did Redis refuse the EVALSHA before running any of the script? Only
    errors that processCommand gives and no redis.call inside a script can
    raise (Redis 7 passes those on with their own codes, so "OOM" or
    "NOPERM" on an EVALSHA may come from the SET after an INCRBY). */
static bool
s_script_refused (const char *error)
{
    static const char *prefixes [] = { "NOSCRIPT", "LOADING", "BUSY", "NOAUTH" };
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes [0]; i++)
        if (strncmp (error, prefixes [i], strlen (prefixes [i])) == 0)
            return true;
    return false;
}


/*  --------------------------------------------------------------------------
    Redis connection
*/

static void
s_redis_drop (hgp_counter_t *self, const char *reason)
{
    if (self->redis) {
        redisFree (self->redis);
        self->redis = NULL;
    }
    if (self->redis_up) {
        zsys_warning ("redis: lost %s:%d (%s); requests get 503/504 until"
                      " it is back", self->settings.redis_host,
                      self->settings.redis_port, reason);
        self->redis_up = false;
    }
    //  Try again at once: most losses are a restart, the next attempt
    //  backs off if it fails
    self->redis_retry_at = zclock_mono ();
}

/*  Why c failed, in words for the log: hiredis reports its socket
    timeouts as a bare EAGAIN */
static const char *
s_redis_why (redisContext *c)
{
    if (c->err == REDIS_ERR_IO && streq (c->errstr, strerror (EAGAIN)))
        return "timed out";
    if (c->err == REDIS_ERR_EOF || !c->errstr [0])
        return "connection closed";
    return c->errstr;
}

/*  One command at connect time; the reply, or NULL with reason filled */
static redisReply *
s_redis_command (redisContext *c, int argc, const char **argv,
                 char *reason, size_t size)
{
    redisReply *reply = (redisReply *) redisCommandArgv (c, argc, argv, NULL);
    if (!reply) {
        snprintf (reason, size, "%s: %s", argv [0], s_redis_why (c));
        return NULL;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf (reason, size, "%s: %s", argv [0], reply->str);
        freeReplyObject (reply);
        return NULL;
    }
    return reply;
}

/*  SCRIPT LOAD on c, the SHA1 into sha; 0 or -1 with reason filled */
static int
s_script_load (redisContext *c, char *sha, char *reason, size_t size)
{
    const char *argv [] = { "SCRIPT", "LOAD", s_incr_script };
    redisReply *reply = s_redis_command (c, 3, argv, reason, size);
    if (!reply)
        return -1;
    int rc = -1;
    if (reply->type == REDIS_REPLY_STRING && reply->len == 40) {
        memcpy (sha, reply->str, 40);
        sha [40] = 0;
        rc = 0;
    }
    else
        snprintf (reason, size, "SCRIPT LOAD: unexpected reply");
    freeReplyObject (reply);
    return rc;
}

/*  After NOSCRIPT: load the script again on the current connection; on
    failure drop it (the next connect loads again, with backoff). 0 or -1 */
static int
s_redis_reload_script (hgp_counter_t *self)
{
    if (!self->redis)
        return -1;
    char reason [256];
    if (s_script_load (self->redis, self->sha, reason, sizeof reason) == 0)
        return 0;
    zsys_error ("redis: cannot load the counter script (%s)", reason);
    s_redis_drop (self, reason);
    return -1;
}

/*  Connect, AUTH, SELECT, SCRIPT LOAD. 0 when connected. Logs only
    transitions. Two paces: while idle (demand false) attempts back off
    from 200 ms to 1 s; with requests waiting (demand true) we try every
    200 ms, so service resumes within 200 ms of Redis coming back. */
static int
s_redis_connect (hgp_counter_t *self, bool demand)
{
    assert (!self->redis);
    s_settings_t *s = &self->settings;
    int64_t now = zclock_mono ();
    if (demand ? now < self->redis_tried_at + S_RETRY_MIN
               : now < self->redis_retry_at)
        return -1;
    self->redis_tried_at = now;

    struct timeval tv = {
        .tv_sec = (time_t) (s->redis_timeout / 1000),
        .tv_usec = (suseconds_t) (s->redis_timeout % 1000) * 1000
    };
    char reason [256] = "";
    redisContext *c = redisConnectWithTimeout (s->redis_host, s->redis_port, tv);
    if (!c || c->err) {
        snprintf (reason, sizeof reason, "%s", c ? c->errstr : "out of memory");
        goto failed;
    }
    if (redisSetTimeout (c, tv) != REDIS_OK) {
        snprintf (reason, sizeof reason, "cannot set timeout: %s", c->errstr);
        goto failed;
    }
    redisEnableKeepAlive (c);           //  best effort: detects dead peers
    if (s->redis_password) {
        const char *argv [] = { "AUTH", s->redis_user, s->redis_password };
        if (!s->redis_user)
            argv [1] = s->redis_password;
        redisReply *reply = s_redis_command (c, s->redis_user ? 3 : 2, argv,
                                             reason, sizeof reason);
        if (!reply)
            goto failed;
        freeReplyObject (reply);
    }
    if (s->redis_db) {
        char db [16];
        snprintf (db, sizeof db, "%d", s->redis_db);
        const char *argv [] = { "SELECT", db };
        redisReply *reply = s_redis_command (c, 2, argv, reason, sizeof reason);
        if (!reply)
            goto failed;
        freeReplyObject (reply);
    }
    if (s_script_load (c, self->sha, reason, sizeof reason))
        goto failed;
    self->redis = c;
    zsys_info ("redis: connected to %s:%d db %d", s->redis_host,
               s->redis_port, s->redis_db);
    self->redis_up = true;
    self->redis_complained = false;
    self->redis_retry_delay = S_RETRY_MIN;
    self->redis_tried_at = 0;           //  only failed attempts hold us back
    return 0;

failed:
    if (c)
        redisFree (c);
    if (!self->redis_complained)
        zsys_warning ("redis: cannot connect to %s:%d (%s); retrying, requests"
                      " get 503 unavailable meanwhile",
                      s->redis_host, s->redis_port, reason);
    self->redis_complained = true;
    self->redis_retry_at = zclock_mono () + self->redis_retry_delay;
    self->redis_retry_delay = MIN (self->redis_retry_delay * 2, S_RETRY_MAX);
    return -1;
}

/*  Is the idle connection still open? A server that closed it (restart,
    timeout, kill) left an EOF or a goodbye error in our receive buffer.
    Seeing that before writing turns what would be an indeterminate 504
    into a reconnect, or at worst a definite 503. */
static bool
s_redis_alive (hgp_counter_t *self)
{
    char byte;
    ssize_t rc = recv (self->redis->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return rc == -1 && (errno == EAGAIN || errno == EWOULDBLOCK
                        || errno == EINTR);
}

/*  0 when there is a connection that looks alive */
static int
s_redis_ready (hgp_counter_t *self)
{
    if (self->redis && !s_redis_alive (self))
        s_redis_drop (self, "closed by the server");
    if (!self->redis)
        s_redis_connect (self, true);
    return self->redis ? 0 : -1;
}


/*  --------------------------------------------------------------------------
    One pipelined round trip
*/

/*  Fail every item not done yet (of kind op, or all for HGP_OP_NONE) */
static void
s_fail_pending (hgp_counter_t *self, size_t count, hgp_op_t op,
                uint16_t status, const char *code, const char *message)
{
    for (size_t i = 0; i < count; i++) {
        s_item_t *item = &self->items [i];
        if (!item->done && (op == HGP_OP_NONE || item->request.op == op))
            s_item_fail (item, status, code, "%s", message);
    }
}

/*  Commands from first on got no reply: the connection broke */
static void
s_commands_lost (hgp_counter_t *self, size_t count, size_t first,
                 size_t ncommands, const char *reason)
{
    for (size_t k = first; k < ncommands; k++) {
        s_command_t *command = &self->commands [k];
        if (command->kind == S_CMD_INCRS)
            s_fail_pending (self, count, HGP_OP_INCR, HGP_STATUS_TIMEOUT,
                            "timeout", "redis connection broke after the"
                            " increment was sent; outcome unknown, retry with"
                            " the same id");
        else {
            s_item_t *item = &self->items [command->item];
            if (!item->done)
                s_item_fail (item, HGP_STATUS_UNAVAILABLE, "unavailable",
                             "redis connection broke: %s", reason);
        }
    }
}

static void
s_incr_result (hgp_counter_t *self, s_item_t *item, redisReply *result)
{
    hgp_request_t *req = &item->request;
    if (result->type != REDIS_REPLY_ARRAY || result->elements != 2
    ||  result->element [0]->type != REDIS_REPLY_INTEGER
    ||  result->element [1]->type != REDIS_REPLY_STRING) {
        zsys_error ("redis: counter script gave a malformed result for %s",
                    req->id);
        s_item_fail (item, HGP_STATUS_TIMEOUT, "timeout",
                     "redis gave an unexpected answer; outcome unknown,"
                     " retry with the same id");
        return;
    }
    long long code = result->element [0]->integer;
    const char *text = result->element [1]->str;
    size_t len = result->element [1]->len;
    int64_t value;
    switch (code) {
        case 0:
        case 1:
            if (s_parse_int64 (text, len, &value) == 0)
                s_item_value (item, value, code == 1);
            else {
                //  Applied, but we cannot say to what: not definite
                zsys_error ("redis: non-integer counter value for %s", req->id);
                s_item_fail (item, HGP_STATUS_TIMEOUT, "timeout",
                             "redis holds a value that is not an integer;"
                             " outcome unknown");
            }
            break;
        case -1:
            s_item_fail (item, HGP_STATUS_CONFLICT, "id_conflict",
                         "id %s was already used for a different key or"
                         " delta", req->id);
            break;
        case -2:
            s_item_fail (item, HGP_STATUS_BAD_REQUEST, "overflow",
                         "%s/%s %+" PRId64 " would leave the signed 64-bit"
                         " range; nothing changed", req->key.resource_id,
                         req->key.counter_type, req->delta);
            break;
        case -3:
            //  INCRBY (or the record GET) refused: nothing changed
            if (s_store_unavailable (text))
                s_item_fail (item, HGP_STATUS_UNAVAILABLE, "unavailable",
                             "redis refused the write: %.*s", (int) len, text);
            else {
                zsys_error ("redis: refused %s: %.*s", req->id, (int) len, text);
                s_item_fail (item, HGP_STATUS_INTERNAL, "internal",
                             "redis refused the increment: %.*s",
                             (int) len, text);
            }
            break;
        default:
            zsys_error ("redis: counter script gave code %lld for %s",
                        code, req->id);
            s_item_fail (item, HGP_STATUS_TIMEOUT, "timeout",
                         "redis gave an unexpected answer; outcome unknown,"
                         " retry with the same id");
    }
}

/*  The EVALSHA reply; true when it was NOSCRIPT (incrs left pending) */
static bool
s_incrs_result (hgp_counter_t *self, size_t count, size_t nincrs,
                redisReply *reply)
{
    if (reply->type == REDIS_REPLY_ERROR) {
        if (strncmp (reply->str, "NOSCRIPT", 8) == 0)
            return true;
        if (s_script_refused (reply->str)) {
            char message [HGP_MESSAGE_MAX + 1];
            snprintf (message, sizeof message, "redis refused the write: %s",
                      reply->str);
            s_fail_pending (self, count, HGP_OP_INCR, HGP_STATUS_UNAVAILABLE,
                            "unavailable", message);
        }
        else {
            zsys_error ("redis: counter script failed: %s", reply->str);
            s_fail_pending (self, count, HGP_OP_INCR, HGP_STATUS_TIMEOUT,
                            "timeout", "the redis script failed part way;"
                            " outcome unknown, retry with the same id");
        }
        return false;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != nincrs) {
        zsys_error ("redis: counter script gave a reply of type %d, %zu"
                    " elements for %zu increments", reply->type,
                    reply->elements, nincrs);
        s_fail_pending (self, count, HGP_OP_INCR, HGP_STATUS_TIMEOUT, "timeout",
                        "redis gave an unexpected answer; outcome unknown,"
                        " retry with the same id");
        return false;
    }
    for (size_t j = 0; j < nincrs; j++)
        s_incr_result (self, &self->items [self->incrs [j]],
                       reply->element [j]);
    return false;
}

static void
s_get_result (s_item_t *item, redisReply *reply)
{
    int64_t value = 0;
    if (reply->type == REDIS_REPLY_NIL)
        s_item_value (item, 0, false);
    else
    if (reply->type == REDIS_REPLY_STRING
    &&  s_parse_int64 (reply->str, reply->len, &value) == 0)
        s_item_value (item, value, false);
    else
    if (reply->type == REDIS_REPLY_ERROR && s_store_unavailable (reply->str))
        s_item_fail (item, HGP_STATUS_UNAVAILABLE, "unavailable",
                     "redis refused the read: %s", reply->str);
    else
        s_item_fail (item, HGP_STATUS_INTERNAL, "internal",
                     "redis key %s does not hold an integer", item->counter_key);
}

static void
s_mget_result (s_item_t *item, redisReply *reply)
{
    hgp_request_t *req = &item->request;
    if (reply->type == REDIS_REPLY_ERROR) {
        if (s_store_unavailable (reply->str))
            s_item_fail (item, HGP_STATUS_UNAVAILABLE, "unavailable",
                         "redis refused the read: %s", reply->str);
        else
            s_item_fail (item, HGP_STATUS_INTERNAL, "internal",
                         "redis refused the read: %s", reply->str);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != req->nkeys) {
        s_item_fail (item, HGP_STATUS_INTERNAL, "internal",
                     "redis gave an unexpected answer to MGET");
        return;
    }
    int64_t *values = (int64_t *) calloc (req->nkeys, sizeof (int64_t));
    assert (values);
    for (size_t k = 0; k < req->nkeys; k++) {
        redisReply *element = reply->element [k];
        if (element->type == REDIS_REPLY_NIL)
            values [k] = 0;
        else
        if (element->type != REDIS_REPLY_STRING
        ||  s_parse_int64 (element->str, element->len, &values [k])) {
            free (values);
            s_item_fail (item, HGP_STATUS_INTERNAL, "internal",
                         "the counter %s/%s does not hold an integer",
                         req->keys [k].resource_id, req->keys [k].counter_type);
            return;
        }
    }
    item->reply.values = values;
    item->reply.nvalues = req->nkeys;
    item->done = true;
}

/*  Append a command to the pipeline; false (and the connection dropped,
    nothing of this pipeline sent) if hiredis could not buffer it */
static bool
s_append (hgp_counter_t *self, int argc)
{
    if (redisAppendCommandArgv (self->redis, argc, self->argv,
                                self->argvlen) == REDIS_OK)
        return true;
    zsys_error ("redis: cannot buffer a command: %s", self->redis->errstr);
    s_redis_drop (self, "out of memory");
    return false;
}

static void
s_arg (hgp_counter_t *self, int *argc, const char *arg, size_t len)
{
    self->argv [*argc] = arg;
    self->argvlen [*argc] = len;
    (*argc)++;
}

/*  Send every pending incr (one EVALSHA) and, if with_reads, every pending
    read, then read the answers. Returns true if the EVALSHA got NOSCRIPT:
    those incrs were not run and are still pending. */
static bool
s_round_trip (hgp_counter_t *self, size_t count, bool with_reads)
{
    assert (self->redis);
    size_t ncommands = 0;
    size_t nincrs = 0;
    for (size_t i = 0; i < count; i++)
        if (!self->items [i].done && self->items [i].request.op == HGP_OP_INCR)
            self->incrs [nincrs++] = i;

    if (nincrs) {
        char numkeys [24];
        snprintf (numkeys, sizeof numkeys, "%zu", nincrs * 2);
        int argc = 0;
        s_arg (self, &argc, "EVALSHA", 7);
        s_arg (self, &argc, self->sha, 40);
        s_arg (self, &argc, numkeys, strlen (numkeys));
        for (size_t j = 0; j < nincrs; j++) {
            s_item_t *item = &self->items [self->incrs [j]];
            s_arg (self, &argc, item->counter_key, strlen (item->counter_key));
            s_arg (self, &argc, item->record_key, strlen (item->record_key));
        }
        s_arg (self, &argc, self->ttl, strlen (self->ttl));
        for (size_t j = 0; j < nincrs; j++) {
            s_item_t *item = &self->items [self->incrs [j]];
            s_arg (self, &argc, item->delta, strlen (item->delta));
        }
        if (!s_append (self, argc))
            return false;               //  nothing sent: caller answers 503
        self->commands [ncommands++] = (s_command_t) { S_CMD_INCRS, 0 };
    }
    for (size_t i = 0; with_reads && i < count; i++) {
        s_item_t *item = &self->items [i];
        if (item->done)
            continue;
        int argc = 0;
        if (item->request.op == HGP_OP_GET) {
            s_arg (self, &argc, "GET", 3);
            s_arg (self, &argc, item->counter_key, strlen (item->counter_key));
            if (!s_append (self, argc))
                return false;
            self->commands [ncommands++] = (s_command_t) { S_CMD_GET, i };
        }
        else
        if (item->request.op == HGP_OP_MGET) {
            s_arg (self, &argc, "MGET", 4);
            for (size_t k = 0; k < item->request.nkeys; k++) {
                char *key = self->keybuf + k * HGP_KEYSPACE_COUNTER_MAX;
                size_t len = hgp_keyspace_counter (&item->request.keys [k], key,
                                                   HGP_KEYSPACE_COUNTER_MAX);
                s_arg (self, &argc, key, len);
            }
            if (!s_append (self, argc))
                return false;
            self->commands [ncommands++] = (s_command_t) { S_CMD_MGET, i };
        }
    }

    bool noscript = false;
    for (size_t k = 0; k < ncommands; k++) {
        redisReply *reply = NULL;
        if (redisGetReply (self->redis, (void **) &reply) != REDIS_OK) {
            char reason [128];
            snprintf (reason, sizeof reason, "%s", s_redis_why (self->redis));
            if (reply)
                freeReplyObject (reply);
            s_commands_lost (self, count, k, ncommands, reason);
            s_redis_drop (self, reason);
            return noscript;
        }
        s_command_t *command = &self->commands [k];
        if (command->kind == S_CMD_INCRS)
            noscript = s_incrs_result (self, count, nincrs, reply);
        else
        if (command->kind == S_CMD_GET)
            s_get_result (&self->items [command->item], reply);
        else
            s_mget_result (&self->items [command->item], reply);
        freeReplyObject (reply);
    }
    return noscript;
}


/*  --------------------------------------------------------------------------
    A batch: accept, apply, reply
*/

static void
s_expire (hgp_counter_t *self, size_t count)
{
    int64_t now = zclock_mono ();
    for (size_t i = 0; i < count; i++) {
        s_item_t *item = &self->items [i];
        if (!item->done && now >= item->deadline)
            s_item_fail (item, HGP_STATUS_TIMEOUT, "timeout",
                         "the budget ran out before the counter started it");
    }
}

static void
s_batch_apply (hgp_counter_t *self, size_t count)
{
    s_expire (self, count);
    size_t pending = 0;
    for (size_t i = 0; i < count; i++) {
        s_item_t *item = &self->items [i];
        if (item->done)
            continue;
        hgp_request_t *req = &item->request;
        switch (req->op) {
            case HGP_OP_INCR:
                hgp_keyspace_record (req->id, item->record_key,
                                     sizeof item->record_key);
                snprintf (item->delta, sizeof item->delta, "%" PRId64,
                          req->delta);
                //  fall through
            case HGP_OP_GET:
                hgp_keyspace_counter (&req->key, item->counter_key,
                                      sizeof item->counter_key);
                //  fall through
            case HGP_OP_MGET:
                pending++;
                break;
            case HGP_OP_PING:
                item->done = true;      //  200, nothing else
                break;
            default:
                s_item_fail (item, HGP_STATUS_INTERNAL, "internal",
                             "op %s is answered by the broker, not a counter",
                             hgp_op_name (req->op));
        }
    }
    if (!pending)
        return;

    char message [HGP_MESSAGE_MAX + 1];
    if (s_redis_ready (self)) {
        snprintf (message, sizeof message, "the counter cannot reach redis at"
                  " %s:%d; nothing was applied", self->settings.redis_host,
                  self->settings.redis_port);
        s_fail_pending (self, count, HGP_OP_NONE, HGP_STATUS_UNAVAILABLE,
                        "unavailable", message);
        return;
    }
    s_expire (self, count);             //  connecting may have taken a while
    if (s_round_trip (self, count, true)) {
        //  NOSCRIPT: the server lost our script (SCRIPT FLUSH, failover)
        //  and ran nothing, so loading it and sending again is safe
        zsys_warning ("redis: counter script missing (NOSCRIPT), loading it"
                      " again");
        if (s_redis_reload_script (self) == 0) {
            s_expire (self, count);
            s_round_trip (self, count, false);
        }
    }
    //  Whatever is still pending was never sent (no connection, or
    //  NOSCRIPT twice): surely not applied
    snprintf (message, sizeof message, "the counter lost redis at %s:%d"
              " before sending; nothing was applied",
              self->settings.redis_host, self->settings.redis_port);
    s_fail_pending (self, count, HGP_OP_NONE, HGP_STATUS_UNAVAILABLE,
                    "unavailable", message);
}

/*  --------------------------------------------------------------------------
    Broker links
*/

static void
s_link_send (s_link_t *link, uint8_t command, const void *a, size_t asize,
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
            //  Only the first frame can fail (high-water mark): the broker
            //  is not reading. It answers 504 for a lost REPLY.
            zsys_warning ("broker %s: cannot send command %d: %s",
                          link->endpoint, command,
                          zmq_strerror (zmq_errno ()));
            return;
        }
    }
}

static void
s_batch_reply (hgp_counter_t *self, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        s_item_t *item = &self->items [i];
        if (!item->done) {
            //  A bug; say so without claiming an outcome we do not know
            zsys_error ("counter: request %s left unanswered", item->reply.id);
            if (item->request.op == HGP_OP_INCR)
                s_item_fail (item, HGP_STATUS_TIMEOUT, "timeout",
                             "internal error; outcome unknown");
            else
                s_item_fail (item, HGP_STATUS_INTERNAL, "internal",
                             "internal error");
        }
        self->buf.size = 0;
        if (hgp_reply_encode (&item->reply, &self->buf)) {
            zsys_error ("counter: cannot encode the reply to %s", item->reply.id);
            hgp_error_t error;
            hgp_error_set (&error, HGP_STATUS_INTERNAL, "internal",
                           "the counter could not encode its reply");
            self->buf.size = 0;
            int rc = hgp_reply_encode_error (item->reply.id, &error, &self->buf);
            assert (rc == 0);
        }
        s_link_send (item->link, HGP_CMD_REPLY, item->token,
                     sizeof item->token, self->buf.data, self->buf.size);
        item->link->served++;
        hgp_request_clear (&item->request);
        hgp_reply_clear (&item->reply);
    }
}

/*  Take a REQUEST into item; false if it cannot even be answered */
static bool
s_item_accept (s_item_t *item, s_link_t *link, zmsg_t *msg)
{
    item->link = link;
    zframe_t *token = zmsg_next (msg);
    zframe_t *budget = zmsg_next (msg);
    zframe_t *body = zmsg_next (msg);
    if (!token || zframe_size (token) != sizeof item->token) {
        //  No token, no way to answer: the broker times it out (504)
        zsys_warning ("broker: dropped a REQUEST without an 8-byte token");
        return false;
    }
    memcpy (item->token, zframe_data (token), sizeof item->token);
    hgp_request_init (&item->request);
    hgp_reply_init (&item->reply);
    item->done = false;
    if (!budget || zframe_size (budget) != 4 || !body || zmsg_next (msg)) {
        s_item_fail (item, HGP_STATUS_BAD_REQUEST, "malformed",
                     "a REQUEST has 5 frames: %s, 0x02, token, budget (4"
                     " bytes), body", HGP_PROTO_ACTOR);
        return true;
    }
    const uint8_t *b = zframe_data (budget);
    uint32_t ms = (uint32_t) b [0] << 24 | (uint32_t) b [1] << 16
                | (uint32_t) b [2] << 8 | (uint32_t) b [3];
    item->deadline = zclock_mono () + ms;
    hgp_error_t error;
    int rc = hgp_request_decode (&item->request, zframe_data (body),
                                 zframe_size (body), &error);
    if (hgp_id_valid (item->request.id, strlen (item->request.id)))
        memcpy (item->reply.id, item->request.id, sizeof item->reply.id);
    if (rc) {
        item->reply.error = error;
        item->done = true;
    }
    return true;
}


/*  A fresh DEALER to the link's broker, and READY on it */
static void
s_link_connect (hgp_counter_t *self, s_link_t *link)
{
    zsock_destroy (&link->dealer);
    link->dealer = zsock_new (ZMQ_DEALER);
    assert (link->dealer);
    //  The broker holds at most capacity requests here; room for their
    //  replies and heartbeats on top
    int hwm = (int) self->settings.capacity + 1000;
    zsock_set_sndhwm (link->dealer, hwm);
    zsock_set_rcvhwm (link->dealer, hwm);
    zsock_set_rcvtimeo (link->dealer, 0);       //  we only read when ready
    zsock_set_linger (link->dealer, 0);
    if (zsock_connect (link->dealer, "%s", link->endpoint) == -1)
        //  hgp_counter_config_check tried the static one; a beaconed one
        //  is tcp://address:port built by discovery. Keep the link: its
        //  expiry tries again, and the log says why.
        zsys_error ("broker %s: cannot connect: %s", link->endpoint,
                    zmq_strerror (zmq_errno ()));

    hgp_ready_t ready;
    memset (&ready, 0, sizeof ready);
    snprintf (ready.service, sizeof ready.service, "%s", S_SERVICE);
    snprintf (ready.actor_id, sizeof ready.actor_id, "%s", self->actor_id);
    ready.capacity = (uint32_t) self->settings.capacity;
    self->buf.size = 0;
    int rc = hgp_ready_encode (&ready, &self->buf);
    assert (rc == 0);
    s_link_send (link, HGP_CMD_READY, self->buf.data, self->buf.size,
                 NULL, 0);
    int64_t now = zclock_mono ();
    link->heartbeat_at = now + self->settings.heartbeat;
    link->expiry_at = now + self->settings.heartbeat * self->settings.liveness;
    link->restart = false;
}

static s_link_t *
s_link_lookup (hgp_counter_t *self, const char *broker_id)
{
    for (size_t i = 0; i < self->nlinks; i++)
        if (streq (self->links [i]->broker_id, broker_id))
            return self->links [i];
    return NULL;
}

static void
s_link_add (hgp_counter_t *self, const char *broker_id, const char *endpoint)
{
    if (self->nlinks == S_LINKS_MAX) {
        zsys_warning ("broker %s at %s: not served, %d brokers already",
                      broker_id, endpoint, S_LINKS_MAX);
        return;
    }
    s_link_t *link = (s_link_t *) zmalloc (sizeof (s_link_t));
    assert (link);
    snprintf (link->broker_id, sizeof link->broker_id, "%s", broker_id);
    link->endpoint = strdup (endpoint);
    assert (link->endpoint);
    self->links [self->nlinks++] = link;
    s_link_connect (self, link);
    zsys_info ("broker %s at %s: serving it (%zu brokers)", broker_id,
               endpoint, self->nlinks);
}

//  Close a link; polite tells the broker DISCONNECT first and lets it leave
static void
s_link_remove (hgp_counter_t *self, s_link_t *link, bool polite)
{
    if (polite) {
        s_link_send (link, HGP_CMD_DISCONNECT, NULL, 0, NULL, 0);
        zsock_set_linger (link->dealer,
                          (int) MIN (self->settings.heartbeat, 1000));
    }
    size_t i = 0;
    while (self->links [i] != link)
        i++;
    memmove (&self->links [i], &self->links [i + 1],
             (self->nlinks - i - 1) * sizeof (s_link_t *));
    self->nlinks--;
    zsock_destroy (&link->dealer);
    free (link->endpoint);
    free (link);
}

//  Discovery says a broker joined or left. Evasive brokers keep their
//  link: our own heartbeats tell whether the broker still talks to us.
static void
s_discovery_recv (hgp_counter_t *self)
{
    hgp_discovery_event_t event;
    if (hgp_discovery_event_recv (self->discovery, &event))
        return;
    s_link_t *link = s_link_lookup (self, event.broker_id);
    if (streq (event.kind, "JOIN")) {
        if (link && streq (link->endpoint, event.actor_endpoint))
            return;
        if (link)
            s_link_remove (self, link, false);
        s_link_add (self, event.broker_id, event.actor_endpoint);
    }
    else
    if (streq (event.kind, "LEAVE") && link) {
        zsys_info ("broker %s at %s: %s; %" PRIu64 " replies sent to it,"
                   " closing the link (%zu brokers left)", link->broker_id,
                   link->endpoint, event.reason, link->served,
                   self->nlinks - 1);
        s_link_remove (self, link, false);
    }
}

/*  Drain what the brokers sent, up to one batch, and serve it. Links are
    drained in turn from a rotating start, so a busy broker cannot starve
    another of batch slots. */
static void
s_links_recv (hgp_counter_t *self, zmq_pollitem_t *items)
{
    size_t count = 0;
    size_t keys = 0;
    size_t n = self->nlinks;
    size_t start = self->next_link++;
    for (size_t k = 0; k < n; k++) {
        size_t index = (start + k) % n;
        if (!(items [index].revents & ZMQ_POLLIN))
            continue;
        s_link_t *link = self->links [index];
        while (count < (size_t) self->settings.batch_max
           &&  keys < S_BATCH_KEYS_MAX && !link->restart) {
            zmsg_t *msg = zmsg_recv (link->dealer);
            if (!msg)
                break;                  //  drained
            link->expiry_at = zclock_mono ()
                            + self->settings.heartbeat
                            * self->settings.liveness;
            if (link->lost) {
                zsys_info ("broker %s: heard from it again", link->endpoint);
                link->lost = false;
            }
            zframe_t *signature = zmsg_first (msg);
            zframe_t *command = zmsg_next (msg);
            if (!command || !zframe_streq (signature, HGP_PROTO_ACTOR)
            ||  zframe_size (command) != 1)
                zsys_warning ("broker %s: dropped a message that is not %s",
                              link->endpoint, HGP_PROTO_ACTOR);
            else
            switch (zframe_data (command) [0]) {
                case HGP_CMD_REQUEST: {
                    s_item_t *item = &self->items [count];
                    if (s_item_accept (item, link, msg)) {
                        keys += item->request.op == HGP_OP_MGET
                              ? item->request.nkeys : 1;
                        count++;
                    }
                    break;
                }
                case HGP_CMD_HEARTBEAT:
                    break;
                case HGP_CMD_DISCONNECT:
                    link->restart = true;
                    break;
                default:
                    zsys_warning ("broker %s: dropped unknown command %d",
                                  link->endpoint, zframe_data (command) [0]);
            }
            zmsg_destroy (&msg);
        }
    }
    if (count) {
        s_batch_apply (self, count);
        //  On the old socket even after DISCONNECT: the broker drops what
        //  it no longer wants, and redelivers by id what it wants again
        s_batch_reply (self, count);
    }
    for (size_t i = 0; i < self->nlinks; i++)
        if (self->links [i]->restart) {
            zsys_info ("broker %s: got DISCONNECT, sending READY again",
                       self->links [i]->endpoint);
            s_link_connect (self, self->links [i]);
        }
}

/*  Heartbeats and silence, per link; returns the earliest time due */
static int64_t
s_links_timers (hgp_counter_t *self, int64_t now)
{
    s_settings_t *s = &self->settings;
    int64_t wake = now + s->heartbeat;
    bool beat = false;
    for (size_t i = 0; i < self->nlinks; i++) {
        s_link_t *link = self->links [i];
        if (now >= link->expiry_at) {
            if (!link->lost)
                zsys_warning ("broker %s: silent for %" PRId64 " ms,"
                              " connecting again", link->endpoint,
                              s->heartbeat * s->liveness);
            link->lost = true;
            s_link_connect (self, link);
        }
        if (now >= link->heartbeat_at) {
            s_link_send (link, HGP_CMD_HEARTBEAT, NULL, 0, NULL, 0);
            link->heartbeat_at = now + s->heartbeat;
            beat = true;
        }
        wake = MIN (wake, MIN (link->heartbeat_at, link->expiry_at));
    }
    //  Notice a lost Redis while idle, so the log tells when
    if (beat && self->redis && !s_redis_alive (self))
        s_redis_drop (self, "closed by the server");
    return wake;
}


/*  --------------------------------------------------------------------------
    The actor
*/

static hgp_counter_t *
s_counter_new (zsock_t *pipe, hgp_config_t *config)
{
    hgp_counter_t *self = (hgp_counter_t *) zmalloc (sizeof (hgp_counter_t));
    assert (self);
    self->pipe = pipe;
    char *error = s_settings_load (config, &self->settings);
    if (error)
        zsys_error ("%s", error);
    assert (!error);                    //  main calls hgp_counter_config_check
    hgp_process_random_id (self->actor_id, sizeof self->actor_id);
    snprintf (self->ttl, sizeof self->ttl, "%" PRId64,
              self->settings.dedup_ttl);
    self->redis_retry_delay = S_RETRY_MIN;
    self->discovery = zactor_new (hgp_discovery_actor, config);
    assert (self->discovery);

    size_t batch = (size_t) self->settings.batch_max;
    self->items = (s_item_t *) calloc (batch, sizeof (s_item_t));
    self->incrs = (size_t *) calloc (batch, sizeof (size_t));
    self->commands = (s_command_t *) calloc (batch + 1, sizeof (s_command_t));
    size_t argc = MAX (4 + 3 * batch, 1 + HGP_MGET_MAX);
    self->argv = (const char **) calloc (argc, sizeof (char *));
    self->argvlen = (size_t *) calloc (argc, sizeof (size_t));
    self->keybuf = (char *) malloc (HGP_MGET_MAX * HGP_KEYSPACE_COUNTER_MAX);
    assert (self->items && self->incrs && self->commands && self->argv
            && self->argvlen && self->keybuf);
    return self;
}

static void
s_counter_destroy (hgp_counter_t **self_p)
{
    assert (self_p);
    hgp_counter_t *self = *self_p;
    if (self) {
        while (self->nlinks)
            s_link_remove (self, self->links [0], false);
        zactor_destroy (&self->discovery);
        if (self->redis)
            redisFree (self->redis);
        s_settings_clear (&self->settings);
        free (self->items);
        free (self->incrs);
        free (self->commands);
        free (self->argv);
        free (self->argvlen);
        free (self->keybuf);
        hgp_buf_clear (&self->buf);
        free (self);
        *self_p = NULL;
    }
}

static void
s_pipe_recv (hgp_counter_t *self)
{
    zmsg_t *msg = zmsg_recv (self->pipe);
    if (!msg)
        return;                         //  interrupted
    char *command = zmsg_popstr (msg);
    if (command && streq (command, "$TERM"))
        self->terminated = true;
    else
        zsys_warning ("counter: unknown pipe command '%s'",
                      command ? command : "");
    zstr_free (&command);
    zmsg_destroy (&msg);
}

void
hgp_counter_actor (zsock_t *pipe, void *args)
{
    hgp_counter_t *self = s_counter_new (pipe, (hgp_config_t *) args);
    zsock_signal (pipe, 0);
    s_settings_t *s = &self->settings;
    zsys_info ("counter: actor %s, capacity %" PRId64 " per broker, batch %"
               PRId64 ", redis %s:%d db %d", self->actor_id, s->capacity,
               s->batch_max, s->redis_host, s->redis_port, s->redis_db);
    s_redis_connect (self, false);      //  failure is logged and retried
    zstr_send (self->discovery, "LISTEN");  //  links come as JOIN events

    zmq_pollitem_t items [2 + S_LINKS_MAX];
    int64_t wake = zclock_mono ();
    while (!self->terminated) {
        int64_t now = zclock_mono ();
        if (!self->redis)
            wake = MIN (wake, self->redis_retry_at);
        size_t n = self->nlinks;
        for (size_t i = 0; i < n; i++)
            items [i] = (zmq_pollitem_t) {
                zsock_resolve (self->links [i]->dealer), 0, ZMQ_POLLIN, 0 };
        items [n] = (zmq_pollitem_t) {
            zsock_resolve (self->pipe), 0, ZMQ_POLLIN, 0 };
        items [n + 1] = (zmq_pollitem_t) {
            zsock_resolve (self->discovery), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (items, (int) n + 2, (long) MAX (wake - now, 0)) == -1) {
            if (zmq_errno () == EINTR)
                continue;
            zsys_error ("counter: poll failed: %s", zmq_strerror (zmq_errno ()));
            break;
        }
        if (items [n].revents & ZMQ_POLLIN)
            s_pipe_recv (self);
        if (self->terminated)
            break;
        //  Input before timers: after a pause (SIGSTOP, a slow Redis) the
        //  brokers' messages are waiting and prove them alive
        s_links_recv (self, items);
        //  Only now may links come and go: items [] indexes them
        if (items [n + 1].revents & ZMQ_POLLIN)
            s_discovery_recv (self);
        now = zclock_mono ();
        wake = s_links_timers (self, now);
        if (!self->redis && now >= self->redis_retry_at)
            s_redis_connect (self, false);
    }
    //  DISCONNECT to every broker, with a moment to leave: each redelivers
    //  what it had sent us that is still unread to the other actors
    zsys_info ("counter: actor %s stopped", self->actor_id);
    while (self->nlinks)
        s_link_remove (self, self->links [0], true);
    s_counter_destroy (&self);
}
