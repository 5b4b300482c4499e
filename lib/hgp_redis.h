/*  hgp_redis.h - one blocking Redis connection that comes back by itself
 *
 *  Shared by everything that keeps state in Redis: the counter actor, the
 *  analytics actor and `hgp replay`. It reads redis/url and redis/timeout,
 *  connects (AUTH, SELECT), loads the caller's Lua scripts on every
 *  connect, and reconnects with backoff after a loss, so a Redis restart
 *  never needs a restart of ours. It never sends a request on its own: the
 *  owner decides when a round trip happens and what a failure means.
 *
 *  Like a socket, an hgp_redis_t belongs to one thread.
 */
#ifndef HGP_REDIS_H_INCLUDED
#define HGP_REDIS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <hiredis.h>
#include "hgp_args.h"
#include "hgp_config.h"

typedef struct _hgp_redis_t hgp_redis_t;

#define HGP_REDIS_SCRIPTS_MAX 12    /* Lua scripts one connection loads */

/*  Read redis/url and redis/timeout. NULL when they are bad; then
    *error_p (if not NULL) gets a message for the operator, which never
    quotes the URL (it may hold a password). who names the owner in logs.
    Does not connect: the first hgp_redis_ready does. */
hgp_redis_t *hgp_redis_new (hgp_config_t *config, const char *who,
                            char **error_p);
void hgp_redis_destroy (hgp_redis_t **self_p);

/*  Add a Lua script, loaded with SCRIPT LOAD on every connect. Returns its
    handle for hgp_redis_sha. Call before the first connect. */
int hgp_redis_script (hgp_redis_t *self, const char *source);

/*  The SHA1 of a script, as loaded (40 hex digits) */
const char *hgp_redis_sha (hgp_redis_t *self, int script);

/*  A connection that looks alive, connecting first if needed; NULL when
    Redis cannot be reached. Connect attempts back off from 200 ms to 1 s
    while idle (demand false); with requests waiting (demand true) they are
    made every 200 ms. Logs only transitions (lost, back). */
redisContext *hgp_redis_ready (hgp_redis_t *self, bool demand);

/*  The current connection or NULL, without checks or connects */
redisContext *hgp_redis_context (hgp_redis_t *self);

/*  Close the connection after a failure; reason goes to the log */
void hgp_redis_drop (hgp_redis_t *self, const char *reason);

/*  After NOSCRIPT: load every script again on the connection. 0, or -1
    and the connection dropped. */
int hgp_redis_reload (hgp_redis_t *self);

/*  While idle: has the server closed the connection? Drops it if so, so
    the log says when Redis went away and the next request reconnects
    instead of failing. */
void hgp_redis_check (hgp_redis_t *self);

/*  When an idle connect attempt is next due (zclock_mono ms), for poll
    timeouts; INT64_MAX while connected */
int64_t hgp_redis_retry_at (hgp_redis_t *self);

/*  Successful connects so far: a change means a new connection, so
    anything cached about the server may be stale */
uint64_t hgp_redis_connects (hgp_redis_t *self);

/*  "host:port db N", for messages */
const char *hgp_redis_address (hgp_redis_t *self);

/*  One command on the current connection (which must exist). The reply,
    or NULL with reason filled (and the connection dropped when it broke).
    An error reply is returned as NULL too, its text in reason. */
redisReply *hgp_redis_command (hgp_redis_t *self, int argc,
                               const char **argv, const size_t *argvlen,
                               char *reason, size_t size);

/*  Queue args as one command on the current connection (which must
    exist), to pipeline it with others: 0, or -1 when hiredis could not
    buffer it (the connection is then dropped) */
int hgp_redis_append (hgp_redis_t *self, const hgp_args_t *args);

/*  EVALSHA of script with args (started with hgp_args_evalsha; the SHA is
    set here), connecting first if needed, and once more after loading the
    scripts again if Redis lost them (NOSCRIPT: it ran nothing). The reply
    (caller frees), or NULL with reason filled: then *definite (unless
    NULL) says whether the script surely did not run (unreachable, or an
    error Redis gives before running any of it, hgp_redis_refused) or may
    have (the connection broke after the send). */
redisReply *hgp_redis_eval (hgp_redis_t *self, int script, hgp_args_t *args,
                            bool *definite, char *reason, size_t size);

/*  Why c failed, in words: hiredis reports its timeouts as a bare EAGAIN */
const char *hgp_redis_why (redisContext *c);

/*  Is error Redis saying "not now" (OOM, READONLY, LOADING...)? Then the
    store is unavailable rather than the request wrong. */
bool hgp_redis_unavailable (const char *error);

/*  Did Redis refuse an EVALSHA before running any of the script? Only
    errors that processCommand gives and no redis.call inside a script can
    raise (NOSCRIPT, LOADING, BUSY, NOAUTH). */
bool hgp_redis_refused (const char *error);

/*  Exact decimal int64 as Redis writes them: no spaces, no '+'. 0 or -1 */
int hgp_redis_int64 (const char *s, size_t len, int64_t *value);

#endif
