/*  hgp_cli.c - bin/hgp, the command-line client of the hgp brokers
 *
 *  One process, one hgp_client_t, one command: incr, get, mget, ping,
 *  actors, top, stats or bench. The client is what the config says
 *  (lib/hgp_client.h): with discovery/interface set it follows broker
 *  beacons, spreads requests over every live broker and fails over with the
 *  same request id; otherwise, or with --broker, it talks to one broker.
 *  `hgp --help` is the manual; it lists the exit codes scripts rely on.
 *
 *  replay is the exception: it is disaster recovery for when the bus may
 *  be of no help, so it talks to Kafka and Redis itself (hgp_ledger), with
 *  the same code the counter actors use to apply events.
 *
 *  Invariants:
 *  - A value is printed only for a status 200 reply that carries it; every
 *    other outcome is "hgp: <code>: <message>" on stderr (and a JSON error
 *    object on stdout with --json) and a non-zero exit.
 *  - 504 "timeout" is indeterminate (PROTOCOL.md §4.6) and gets its own exit
 *    code, 3, together with "cannot reach the broker": the caller must not
 *    treat an increment as failed. For incr the request id is printed so the
 *    user can retry it with --id, which the broker applies at most once.
 *  - Arguments are checked here with the codec's own rules (hgp_id_valid,
 *    non-zero 64-bit delta) so a typo is a usage error (exit 2), not a 400.
 *
 *  The bench keeps W requests in flight on one DEALER and sends the next as
 *  soon as a reply comes. It reuses one request struct, one reply struct and
 *  the client's encode buffer, so the codec's (none, for incr and get) and
 *  libzmq's allocations are all there is per request. For incr it checks
 *  exactly-once end to end: the counters must have grown by at least the
 *  acknowledged increments and at most that plus the indeterminate ones.
 */
#include "hgp_client.h"
#include "hgp_config.h"
#include "hgp_discovery.h"
#include "hgp_eventlog.h"
#include "hgp_ledger.h"
#include "hgp_process.h"
#include "hgp_redis.h"
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <time.h>
#include <unistd.h>

#define EXIT_OK         0       /* success                                  */
#define EXIT_ERROR      1       /* error reply, definite                    */
#define EXIT_USAGE      2       /* bad command line or config               */
#define EXIT_UNKNOWN    3       /* 504 timeout or broker unreachable        */

#define DEFAULT_ENDPOINT "tcp://127.0.0.1:5555"

struct _s_command_t;

typedef struct {
    bool json;                  /* --json: one JSON object per command      */
    const char *config_path;    /* -c FILE, or NULL for the default search  */
    const char *broker;         /* --broker, or NULL: from the config       */
    uint32_t timeout_ms;        /* --timeout, or 0: from the config         */
    hgp_config_t *config;       /* loaded on first need                     */
    hgp_client_t *client;       /* connected on first need                  */
    hgp_keys_t *keys;           /* client certificate, for --broker         */
    int64_t settle_ms;          /* time to hear every broker's beacon       */
    const struct _s_command_t *command;  /* the command being run           */
} s_app_t;

typedef int (s_handler_fn) (s_app_t *app, int argc, char *argv []);

typedef struct _s_command_t {
    const char *name;           /* as typed                                 */
    const char *synopsis;       /* arguments, for usage lines               */
    const char *summary;        /* one line for `hgp --help`                */
    const char *help;           /* the rest of `hgp COMMAND --help`         */
    s_handler_fn *handler;      /* runs it; returns the exit code           */
} s_command_t;

static const char *s_global_help =
"Global options (before COMMAND):\n"
"  --broker ENDPOINT  talk to this one broker (default: the brokers whose\n"
"                     beacons are heard on discovery/interface, env\n"
"                     HGP_DISCOVERY_INTERFACE; without one, config\n"
"                     broker/client_endpoint, env HGP_BROKER_CLIENT_ENDPOINT)\n"
"  -c, --config FILE  config file (default: $HGP_CONFIG, else configs/hgp.cfg)\n"
"  --timeout MS       deadline of each request, 1..60000 (default: config\n"
"                     client/timeout, env HGP_CLIENT_TIMEOUT)\n"
"  --json             print one JSON object per command on stdout\n"
"  -h, --help         this help; `hgp COMMAND --help` for one command\n";

static const char *s_exit_help =
"Ids (RES, TYPE, REQUEST_ID, USER_ID, P) are 1-128 bytes of A-Z a-z 0-9 _ - . :\n"
"Put `--` before a positional argument that starts with '-' but is not a\n"
"number.\n"
"\n"
"Exit codes:\n"
"  0  success\n"
"  1  error reply: definite, nothing was applied (or bench verify FAILED)\n"
"  2  usage error (bad arguments or config)\n"
"  3  outcome unknown: 504 timeout or broker unreachable; an incr may or may\n"
"     not have been applied, retry it with the same --id\n"
"Errors print \"hgp: <code>: <message>\" on stderr and never a value.\n";

//  --------------------------------------------------------------------------
//  Output helpers

static void s_usage (FILE *out);

//  Length of a valid UTF-8 sequence at p, or 0 if it is not one

static int
s_utf8_len (const unsigned char *p)
{
    unsigned char c = p [0];
    int len;
    unsigned char lo = 0x80, hi = 0xbf;     //  range of the second byte
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else
    if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;           //  no overlongs
        if (c == 0xed) hi = 0x9f;           //  no surrogates
    }
    else
    if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;           //  nothing past U+10FFFF
    }
    else
        return 0;
    if (p [1] < lo || p [1] > hi)
        return 0;
    for (int i = 2; i < len; i++)
        if (p [i] < 0x80 || p [i] > 0xbf)
            return 0;
    return len;
}

//  Print s as a JSON string. Messages come from the network and may be cut
//  mid-character by the codec, so bytes that are not UTF-8 become U+FFFD.

static void
s_json_str (const char *s)
{
    const unsigned char *p = (const unsigned char *) s;
    putchar ('"');
    while (*p) {
        if (*p == '"' || *p == '\\') {
            putchar ('\\');
            putchar (*p++);
        }
        else
        if (*p < 0x20) {
            printf ("\\u%04x", *p);
            p++;
        }
        else
        if (*p < 0x80)
            putchar (*p++);
        else {
            int len = s_utf8_len (p);
            if (len) {
                fwrite (p, 1, (size_t) len, stdout);
                p += len;
            }
            else {
                fputs ("\\ufffd", stdout);
                p++;
            }
        }
    }
    putchar ('"');
}

static void
s_json_error (const char *code, const char *message, int status,
              const char *id)
{
    printf ("{\"error\":{\"code\":");
    s_json_str (code);
    printf (",\"message\":");
    s_json_str (message);
    printf ("},\"status\":%d", status);
    if (id && *id) {
        printf (",\"id\":");
        s_json_str (id);
    }
    printf ("}\n");
}

//  A usage error: says what is wrong and where to look; returns EXIT_USAGE

static int
s_usage_error (s_app_t *app, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

static int
s_usage_error (s_app_t *app, const char *format, ...)
{
    char message [512];
    va_list args;
    va_start (args, format);
    vsnprintf (message, sizeof message, format, args);
    va_end (args);
    fprintf (stderr, "hgp: usage: %s\n", message);
    if (app->command)
        fprintf (stderr, "usage: hgp [GLOBAL OPTIONS] %s%s%s\n"
                 "Try 'hgp %s --help'.\n", app->command->name,
                 *app->command->synopsis ? " " : "",
                 app->command->synopsis, app->command->name);
    else
        fprintf (stderr, "Try 'hgp --help'.\n");
    if (app->json)
        s_json_error ("usage", message, HGP_STATUS_BAD_REQUEST, NULL);
    return EXIT_USAGE;
}

static int
s_exit_code (const hgp_reply_t *rep)
{
    if (rep->error.status == HGP_STATUS_OK)
        return EXIT_OK;
    return rep->error.status == HGP_STATUS_TIMEOUT ? EXIT_UNKNOWN : EXIT_ERROR;
}

//  Report an error reply; returns the exit code. id, when given, is the
//  request id the user can retry with.

static int
s_reply_error (s_app_t *app, const hgp_reply_t *rep, const char *id)
{
    assert (rep->error.status != HGP_STATUS_OK);
    const char *code = rep->error.code [0] ? rep->error.code : "internal";
    fprintf (stderr, "hgp: %s: %s\n", code, rep->error.message);
    if (id && rep->error.status == HGP_STATUS_TIMEOUT)
        fprintf (stderr, "hgp: request id %s; retry with --id %s, it is "
                 "applied at most once\n", id, id);
    if (app->json)
        s_json_error (code, rep->error.message, rep->error.status, id);
    return s_exit_code (rep);
}

//  --------------------------------------------------------------------------
//  Argument helpers

//  Is arg an option (as opposed to a positional, which may be "-5")?

static bool
s_is_option (const char *arg)
{
    return arg [0] == '-' && arg [1] && !isdigit ((unsigned char) arg [1]);
}

//  The last branch of a command's argument loop: an unknown option is an
//  error, else arg is the next of at most max positionals. 0 or an exit code.

static int
s_positional (s_app_t *app, const char *arg, bool options,
              const char **pos, int *npos, int max)
{
    if (options && s_is_option (arg))
        return s_usage_error (app, "unknown option '%s'", arg);
    if (*npos >= max)
        return s_usage_error (app, "too many arguments");
    pos [(*npos)++] = arg;
    return 0;
}

//  Does argv [*i] name option `name`, as "name VALUE" or "name=VALUE"? If so
//  set *value (NULL when the value is missing) and step *i past it.

static bool
s_option (int argc, char *argv [], int *i, const char *name,
          const char **value)
{
    const char *arg = argv [*i];
    size_t len = strlen (name);
    if (strncmp (arg, name, len) != 0)
        return false;
    if (arg [len] == '=') {
        *value = arg + len + 1;
        return true;
    }
    if (arg [len])
        return false;
    *value = *i + 1 < argc ? argv [++*i] : NULL;
    return true;
}

static bool
s_is_help (const char *arg)
{
    return streq (arg, "--help") || streq (arg, "-h");
}

//  Strict signed 64-bit decimal: all of s, no overflow

static bool
s_parse_int64 (const char *s, int64_t *out)
{
    if (!*s || isspace ((unsigned char) *s))
        return false;
    errno = 0;
    char *end = NULL;
    long long n = strtoll (s, &end, 10);
    if (errno || *end)
        return false;
    *out = (int64_t) n;
    return true;
}

static bool
s_parse_range (const char *s, int64_t min, int64_t max, int64_t *out)
{
    return s && s_parse_int64 (s, out) && *out >= min && *out <= max;
}

static int
s_check_id (s_app_t *app, const char *what, const char *s)
{
    if (hgp_id_valid (s, strlen (s)))
        return 0;
    return s_usage_error (app, "%s '%s' is not an id: want 1-%d bytes of "
                          "A-Z a-z 0-9 _ - . :", what, s, HGP_ID_MAX);
}

//  --------------------------------------------------------------------------
//  Connecting

//  Say what is wrong with the settings (problem is ours to free); returns
//  EXIT_USAGE
static int
s_config_problem (s_app_t *app, char *problem)
{
    fprintf (stderr, "hgp: %s\n", problem);
    if (app->json)
        s_json_error ("usage", problem, HGP_STATUS_BAD_REQUEST, NULL);
    free (problem);
    return EXIT_USAGE;
}

//  Load the config and connect, once. Returns 0 or an exit code.

static int
s_connect (s_app_t *app)
{
    if (app->client)
        return 0;
    app->config = hgp_config_load (app->config_path);
    if (!app->config) {
        fprintf (stderr, "hgp: config: cannot load %s\n",
                 app->config_path ? app->config_path : "the config");
        if (app->json)
            s_json_error ("usage", "cannot load the config",
                          HGP_STATUS_BAD_REQUEST, NULL);
        return EXIT_USAGE;
    }
    const char *endpoint = app->broker;
    if (!endpoint)
        endpoint = hgp_config_str (app->config, "broker/client_endpoint",
                                   DEFAULT_ENDPOINT);
    if (!app->timeout_ms)
        app->timeout_ms = (uint32_t) hgp_config_int (
            app->config, "client/timeout", HGP_TIMEOUT_DEFAULT, 1,
            HGP_TIMEOUT_MAX);
    //  Two beacon intervals and a little: every live broker has beaconed
    app->settle_ms = 2 * hgp_config_int (app->config, "discovery/interval",
                                         HGP_DISCOVERY_INTERVAL, 10, 10000)
                   + 50;
    char *problem = hgp_config_error (app->config)
                  ? strdup (hgp_config_error (app->config))
                  : hgp_discovery_config_check (app->config);
    if (problem)
        return s_config_problem (app, problem);
    if (app->broker) {
        app->keys = hgp_keys_new (app->config, HGP_KEYS_CLIENT, &problem);
        if (problem)
            return s_config_problem (app, problem);
    }
    app->client = app->broker ? hgp_client_new (endpoint, app->keys)
                              : hgp_client_new_config (app->config);
    if (!app->client) {
        char message [300];
        snprintf (message, sizeof message, "cannot connect to '%s': %s",
                  endpoint, zmq_strerror (errno));
        fprintf (stderr, "hgp: usage: %s\n", message);
        if (app->json)
            s_json_error ("usage", message, HGP_STATUS_BAD_REQUEST, NULL);
        return EXIT_USAGE;
    }
    return 0;
}

//  A request of op with a fresh random id and the app's deadline

static void
s_request (s_app_t *app, hgp_request_t *req, hgp_op_t op)
{
    hgp_request_init (req);
    req->op = op;
    req->timeout_ms = app->timeout_ms;
    hgp_process_random_id (req->id, sizeof req->id);
}

//  Read nkeys counters into values, in requests of at most HGP_MGET_MAX
//  keys. 0, or -1 with the first error reply in rep.

static int
s_mget (s_app_t *app, hgp_key_t *keys, size_t nkeys, int64_t *values,
        hgp_reply_t *rep)
{
    for (size_t done = 0; done < nkeys; ) {
        size_t chunk = nkeys - done < HGP_MGET_MAX
                     ? nkeys - done : HGP_MGET_MAX;
        hgp_request_t req;
        s_request (app, &req, HGP_OP_MGET);
        req.keys = keys + done;         //  borrowed: never clear req
        req.nkeys = chunk;
        hgp_client_call (app->client, &req, rep);
        if (rep->error.status != HGP_STATUS_OK)
            return -1;
        memcpy (values + done, rep->values, chunk * sizeof (int64_t));
        done += chunk;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  incr RES TYPE [DELTA] [--id REQUEST_ID] [--user USER_ID]

static int
s_cmd_incr (s_app_t *app, int argc, char *argv [])
{
    const char *pos [3];
    int npos = 0;
    const char *id = NULL, *user = NULL;
    bool options = true;
    for (int i = 0; i < argc; i++) {
        const char *value;
        if (options && streq (argv [i], "--"))
            options = false;
        else
        if (options && s_option (argc, argv, &i, "--id", &value)) {
            if (!value)
                return s_usage_error (app, "--id needs a REQUEST_ID");
            id = value;
        }
        else
        if (options && s_option (argc, argv, &i, "--user", &value)) {
            if (!value)
                return s_usage_error (app, "--user needs a USER_ID");
            user = value;
        }
        else {
            int err = s_positional (app, argv [i], options, pos, &npos, 3);
            if (err)
                return err;
        }
    }
    if (npos < 2)
        return s_usage_error (app, "incr needs RES and TYPE");
    int rc;
    if ((rc = s_check_id (app, "RES", pos [0]))
    ||  (rc = s_check_id (app, "TYPE", pos [1]))
    ||  (id && (rc = s_check_id (app, "REQUEST_ID", id)))
    ||  (user && (rc = s_check_id (app, "USER_ID", user))))
        return rc;
    int64_t delta = 1;
    if (npos == 3 && !s_parse_int64 (pos [2], &delta))
        return s_usage_error (app, "DELTA '%s' is not a signed 64-bit "
                              "integer", pos [2]);
    if (delta == 0)
        return s_usage_error (app, "DELTA must not be 0");
    if ((rc = s_connect (app)))
        return rc;

    hgp_request_t req;
    s_request (app, &req, HGP_OP_INCR);
    if (id)
        snprintf (req.id, sizeof req.id, "%s", id);
    snprintf (req.key.resource_id, sizeof req.key.resource_id, "%s", pos [0]);
    snprintf (req.key.counter_type, sizeof req.key.counter_type, "%s",
              pos [1]);
    req.delta = delta;
    if (user)
        snprintf (req.user_id, sizeof req.user_id, "%s", user);

    hgp_reply_t rep;
    hgp_reply_init (&rep);
    hgp_client_call (app->client, &req, &rep);
    if (rep.error.status != HGP_STATUS_OK)
        rc = s_reply_error (app, &rep, req.id);
    else
    if (app->json) {
        printf ("{\"status\":200,\"id\":");
        s_json_str (req.id);
        printf (",\"resource_id\":");
        s_json_str (req.key.resource_id);
        printf (",\"counter_type\":");
        s_json_str (req.key.counter_type);
        printf (",\"delta\":%lld,\"value\":%lld,\"replayed\":%s}\n",
                (long long) delta, (long long) rep.value,
                rep.replayed ? "true" : "false");
    }
    else
        printf ("%lld%s\n", (long long) rep.value,
                rep.replayed ? " (replayed)" : "");
    hgp_reply_clear (&rep);
    return rc;
}

//  --------------------------------------------------------------------------
//  get RES TYPE

//  What get and stats share: take RES TYPE from the arguments, connect,
//  send op about that counter. 0 with rep filled (possibly an error reply,
//  clear it after), else an exit code and rep untouched.
static int
s_counter_call (s_app_t *app, int argc, char *argv [], hgp_op_t op,
                const char *name, hgp_request_t *req, hgp_reply_t *rep)
{
    const char *pos [2];
    int npos = 0;
    bool options = true;
    for (int i = 0; i < argc; i++) {
        if (options && streq (argv [i], "--"))
            options = false;
        else {
            int err = s_positional (app, argv [i], options, pos, &npos, 2);
            if (err)
                return err;
        }
    }
    if (npos < 2)
        return s_usage_error (app, "%s needs RES and TYPE", name);
    int rc;
    if ((rc = s_check_id (app, "RES", pos [0]))
    ||  (rc = s_check_id (app, "TYPE", pos [1]))
    ||  (rc = s_connect (app)))
        return rc;
    s_request (app, req, op);
    snprintf (req->key.resource_id, sizeof req->key.resource_id, "%s",
              pos [0]);
    snprintf (req->key.counter_type, sizeof req->key.counter_type, "%s",
              pos [1]);
    hgp_reply_init (rep);
    hgp_client_call (app->client, req, rep);
    return 0;
}

static int
s_cmd_get (s_app_t *app, int argc, char *argv [])
{
    hgp_request_t req;
    hgp_reply_t rep;
    int rc = s_counter_call (app, argc, argv, HGP_OP_GET, "get", &req, &rep);
    if (rc)
        return rc;
    if (rep.error.status != HGP_STATUS_OK)
        rc = s_reply_error (app, &rep, NULL);
    else
    if (app->json) {
        printf ("{\"status\":200,\"resource_id\":");
        s_json_str (req.key.resource_id);
        printf (",\"counter_type\":");
        s_json_str (req.key.counter_type);
        printf (",\"value\":%lld}\n", (long long) rep.value);
    }
    else
        printf ("%lld\n", (long long) rep.value);
    hgp_reply_clear (&rep);
    return rc;
}

//  --------------------------------------------------------------------------
//  mget RES:TYPE...

static int
s_cmd_mget (s_app_t *app, int argc, char *argv [])
{
    hgp_key_t *keys = (hgp_key_t *) calloc (argc ? (size_t) argc : 1,
                                            sizeof (hgp_key_t));
    int64_t *values = (int64_t *) calloc (argc ? (size_t) argc : 1,
                                          sizeof (int64_t));
    assert (keys && values);
    size_t nkeys = 0;
    bool options = true;
    int rc = 0;
    for (int i = 0; i < argc && !rc; i++) {
        const char *arg = argv [i];
        if (options && streq (arg, "--")) {
            options = false;
            continue;
        }
        if (options && s_is_option (arg)) {
            rc = s_usage_error (app, "unknown option '%s'", arg);
            break;
        }
        //  Split at the last ':': resource ids may contain ':', so the
        //  counter type is what follows the last one
        const char *colon = strrchr (arg, ':');
        if (!colon) {
            rc = s_usage_error (app, "key '%s' is not RES:TYPE", arg);
            break;
        }
        size_t rlen = (size_t) (colon - arg);
        if (!hgp_id_valid (arg, rlen) || !hgp_id_valid (colon + 1,
                                                         strlen (colon + 1))) {
            rc = s_usage_error (app, "key '%s' is not RES:TYPE with two ids "
                                "(1-%d bytes of A-Z a-z 0-9 _ - . :, no ':' "
                                "in TYPE)", arg, HGP_ID_MAX);
            break;
        }
        memcpy (keys [nkeys].resource_id, arg, rlen);
        keys [nkeys].resource_id [rlen] = 0;
        snprintf (keys [nkeys].counter_type,
                  sizeof keys [nkeys].counter_type, "%s", colon + 1);
        nkeys++;
    }
    if (!rc && nkeys == 0)
        rc = s_usage_error (app, "mget needs at least one RES:TYPE");
    if (!rc)
        rc = s_connect (app);
    if (!rc) {
        hgp_reply_t rep;
        hgp_reply_init (&rep);
        if (s_mget (app, keys, nkeys, values, &rep))
            rc = s_reply_error (app, &rep, NULL);
        else
        if (app->json) {
            printf ("{\"status\":200,\"values\":[");
            for (size_t i = 0; i < nkeys; i++) {
                printf ("%s{\"resource_id\":", i ? "," : "");
                s_json_str (keys [i].resource_id);
                printf (",\"counter_type\":");
                s_json_str (keys [i].counter_type);
                printf (",\"value\":%lld}", (long long) values [i]);
            }
            printf ("]}\n");
        }
        else
            for (size_t i = 0; i < nkeys; i++)
                printf ("%s %s %lld\n", keys [i].resource_id,
                        keys [i].counter_type, (long long) values [i]);
        hgp_reply_clear (&rep);
    }
    free (keys);
    free (values);
    return rc;
}

//  --------------------------------------------------------------------------
//  ping, actors: no arguments

static int
s_no_arguments (s_app_t *app, int argc, char *argv [])
{
    for (int i = 0; i < argc; i++)
        if (s_is_option (argv [i]))
            return s_usage_error (app, "unknown option '%s'", argv [i]);
    if (argc)
        return s_usage_error (app, "%s takes no arguments",
                              app->command->name);
    return 0;
}

//  The brokers this client knows, after listening long enough to hear
//  every live one; a static client has one at once. NULL (and an error
//  printed, *rc set) when there is none.
static hgp_client_broker_t *
s_brokers (s_app_t *app, size_t *count, int *rc)
{
    hgp_client_broker_t *list = (hgp_client_broker_t *)
        calloc (64, sizeof (hgp_client_broker_t));
    assert (list);
    size_t n = hgp_client_brokers (app->client, (int) app->settle_ms, list, 64);
    *count = n < 64 ? n : 64;
    if (*count == 0) {
        hgp_reply_t rep;
        hgp_reply_init (&rep);
        hgp_error_set (&rep.error, HGP_STATUS_TIMEOUT, "timeout",
                       "no broker beacon heard (%s) within %lld ms",
                       hgp_client_endpoint (app->client),
                       (long long) app->settle_ms);
        *rc = s_reply_error (app, &rep, NULL);
        free (list);
        return NULL;
    }
    return list;
}

//  Worse of two exit codes: unknown (3) over error (1) over ok
static int
s_worse (int a, int b)
{
    int rank_a = a == EXIT_UNKNOWN ? 2 : a != EXIT_OK;
    int rank_b = b == EXIT_UNKNOWN ? 2 : b != EXIT_OK;
    return rank_a >= rank_b ? a : b;
}

//  hgp config KEY...: the value each setting has for this process (file,
//  then HGP_<SECTION>_<KEY>), one per line, for scripts such as make run
static int
s_cmd_config (s_app_t *app, int argc, char *argv [])
{
    if (argc < 1)
        return s_usage_error (app, "config needs a SECTION/KEY");
    hgp_config_t *config = hgp_config_load (app->config_path);
    if (!config)
        return EXIT_USAGE;              //  hgp_config_load said why
    int rc = EXIT_OK;
    for (int i = 0; i < argc; i++) {
        const char *value = hgp_config_str (config, argv [i], NULL);
        if (value)
            printf ("%s\n", value);
        else {
            char env [128];
            fprintf (stderr, "hgp: %s is not set in %s nor by %s\n", argv [i],
                     hgp_config_source (config),
                     hgp_config_env_name (argv [i], env, sizeof env));
            printf ("\n");
            rc = EXIT_ERROR;
        }
    }
    hgp_config_destroy (&config);
    return rc;
}

static int
s_cmd_ping (s_app_t *app, int argc, char *argv [])
{
    int rc;
    if ((rc = s_no_arguments (app, argc, argv)) || (rc = s_connect (app)))
        return rc;
    size_t nbrokers;
    hgp_client_broker_t *brokers = s_brokers (app, &nbrokers, &rc);
    if (!brokers)
        return rc;
    //  Every broker answers for itself
    for (size_t i = 0; i < nbrokers; i++) {
        hgp_request_t req;
        s_request (app, &req, HGP_OP_PING);
        hgp_reply_t rep;
        hgp_reply_init (&rep);
        int64_t start = zclock_usecs ();
        hgp_client_call_at (app->client, brokers [i].broker_id, &req, &rep);
        int64_t usecs = zclock_usecs () - start;
        if (rep.error.status != HGP_STATUS_OK)
            rc = s_worse (rc, s_reply_error (app, &rep, NULL));
        else
        if (app->json) {
            printf ("{\"status\":200,\"broker\":");
            s_json_str (brokers [i].endpoint);
            printf (",\"broker_id\":");
            s_json_str (brokers [i].broker_id);
            printf (",\"latency_us\":%lld}\n", (long long) usecs);
        }
        else
            printf ("pong from %s in %lld us\n", brokers [i].endpoint,
                    (long long) usecs);
        hgp_reply_clear (&rep);
    }
    free (brokers);
    return rc;
}

static void
s_json_actor (const hgp_actor_info_t *a, const char *broker_id)
{
    printf ("{\"service\":");
    s_json_str (a->service);
    printf (",\"actor_id\":");
    s_json_str (a->actor_id);
    if (broker_id) {
        printf (",\"broker_id\":");
        s_json_str (broker_id);
    }
    printf (",\"capacity\":%u,\"inflight\":%u,\"queued\":%u,"
            "\"idle_ms\":%u,\"served\":%llu}", a->capacity, a->inflight,
            a->queued, a->idle_ms, (unsigned long long) a->served);
}

//  What every broker sees: its own liveness (from our discovery) and its
//  actors (from its actors listing). One listing per broker, because each
//  broker has its own view: an actor joins each broker on its own.
static int
s_cmd_actors (s_app_t *app, int argc, char *argv [])
{
    int rc;
    if ((rc = s_no_arguments (app, argc, argv)) || (rc = s_connect (app)))
        return rc;
    size_t nbrokers;
    hgp_client_broker_t *brokers = s_brokers (app, &nbrokers, &rc);
    if (!brokers)
        return rc;
    hgp_reply_t *reps = (hgp_reply_t *) calloc (nbrokers, sizeof (hgp_reply_t));
    assert (reps);
    for (size_t i = 0; i < nbrokers; i++) {
        hgp_request_t req;
        s_request (app, &req, HGP_OP_ACTORS);
        hgp_reply_init (&reps [i]);
        hgp_client_call_at (app->client, brokers [i].broker_id, &req,
                            &reps [i]);
        if (reps [i].error.status != HGP_STATUS_OK) {
            const char *code = reps [i].error.code [0] ? reps [i].error.code
                                                       : "internal";
            fprintf (stderr, "hgp: broker %s: %s: %s\n", brokers [i].endpoint,
                     code, reps [i].error.message);
            rc = s_worse (rc, s_exit_code (&reps [i]));
        }
    }
    //  Services: each distinct actor once, with what all brokers saw of it
    size_t nactors = 0, nservices = 0;
    uint64_t served = 0;
    char seen [HGP_ACTORS_MAX][HGP_ID_MAX + 1];
    char services [16][HGP_ID_MAX + 1];
    for (size_t i = 0; i < nbrokers; i++)
        for (size_t j = 0; j < reps [i].nactors; j++) {
            hgp_actor_info_t *a = &reps [i].actors [j];
            served += a->served;
            size_t k = 0;
            while (k < nactors && strcmp (seen [k], a->actor_id))
                k++;
            if (k == nactors && nactors < HGP_ACTORS_MAX)
                snprintf (seen [nactors++], HGP_ID_MAX + 1, "%s", a->actor_id);
            k = 0;
            while (k < nservices && strcmp (services [k], a->service))
                k++;
            if (k == nservices && nservices < 16)
                snprintf (services [nservices++], HGP_ID_MAX + 1, "%s",
                          a->service);
        }

    if (app->json) {
        int status = HGP_STATUS_OK;
        for (size_t i = 0; i < nbrokers && status == HGP_STATUS_OK; i++)
            status = reps [i].error.status;
        printf ("{\"status\":%d,\"brokers\":[", status);
        for (size_t i = 0; i < nbrokers; i++) {
            hgp_client_broker_t *b = &brokers [i];
            printf ("%s{\"broker_id\":", i ? "," : "");
            s_json_str (b->broker_id);
            printf (",\"endpoint\":");
            s_json_str (b->endpoint);
            printf (",\"state\":");
            s_json_str (b->state);
            printf (",\"beacon_ms\":%lld,\"status\":%d", (long long) b->beacon_ms,
                    reps [i].error.status);
            if (reps [i].error.status != HGP_STATUS_OK) {
                printf (",\"error\":{\"code\":");
                s_json_str (reps [i].error.code);
                printf (",\"message\":");
                s_json_str (reps [i].error.message);
                printf ("}");
            }
            printf (",\"actors\":[");
            for (size_t j = 0; j < reps [i].nactors; j++) {
                printf ("%s", j ? "," : "");
                s_json_actor (&reps [i].actors [j], NULL);
            }
            printf ("]}");
        }
        //  Flat, as before brokers were many: one row per (broker, actor)
        printf ("],\"actors\":[");
        bool first = true;
        for (size_t i = 0; i < nbrokers; i++)
            for (size_t j = 0; j < reps [i].nactors; j++) {
                printf ("%s", first ? "" : ",");
                first = false;
                s_json_actor (&reps [i].actors [j], brokers [i].broker_id);
            }
        printf ("],\"distinct_actors\":%zu,\"served\":%llu}\n", nactors,
                (unsigned long long) served);
    }
    else {
        int ew = (int) strlen ("ENDPOINT");
        for (size_t i = 0; i < nbrokers; i++) {
            int len = (int) strlen (brokers [i].endpoint);
            ew = len > ew ? len : ew;
        }
        printf ("%-32s  %-*s  %-8s  %9s  %s\n", "BROKER", ew, "ENDPOINT",
                "STATE", "BEACON_MS", "ANSWER");
        for (size_t i = 0; i < nbrokers; i++) {
            hgp_client_broker_t *b = &brokers [i];
            char beacon [24] = "-";
            if (!streq (b->state, "static"))
                snprintf (beacon, sizeof beacon, "%lld",
                          (long long) b->beacon_ms);
            char answer [64];
            if (reps [i].error.status == HGP_STATUS_OK)
                snprintf (answer, sizeof answer, "%zu actors",
                          reps [i].nactors);
            else
                snprintf (answer, sizeof answer, "%d %s",
                          reps [i].error.status, reps [i].error.code);
            printf ("%-32s  %-*s  %-8s  %9s  %s\n", b->broker_id, ew,
                    b->endpoint, b->state, beacon, answer);
        }
        int sw = (int) strlen ("SERVICE"), aw = (int) strlen ("ACTOR_ID");
        for (size_t i = 0; i < nbrokers; i++)
            for (size_t j = 0; j < reps [i].nactors; j++) {
                int len = (int) strlen (reps [i].actors [j].service);
                sw = len > sw ? len : sw;
                len = (int) strlen (reps [i].actors [j].actor_id);
                aw = len > aw ? len : aw;
            }
        printf ("\n%-*s  %-*s  %-8s  %8s  %8s  %8s  %8s  %12s\n", sw,
                "SERVICE", aw, "ACTOR_ID", "BROKER", "CAPACITY", "INFLIGHT",
                "QUEUED", "IDLE_MS", "SERVED");
        for (size_t i = 0; i < nbrokers; i++)
            for (size_t j = 0; j < reps [i].nactors; j++) {
                hgp_actor_info_t *a = &reps [i].actors [j];
                printf ("%-*s  %-*s  %-8.8s  %8u  %8u  %8u  %8u  %12llu\n",
                        sw, a->service, aw, a->actor_id,
                        brokers [i].broker_id, a->capacity, a->inflight,
                        a->queued, a->idle_ms, (unsigned long long) a->served);
            }
        printf ("\n");
        for (size_t k = 0; k < nservices; k++) {
            size_t actors = 0;
            uint64_t n = 0;
            for (size_t a = 0; a < nactors; a++) {
                bool in = false;
                for (size_t i = 0; i < nbrokers; i++)
                    for (size_t j = 0; j < reps [i].nactors; j++)
                        if (streq (reps [i].actors [j].actor_id, seen [a])
                        &&  streq (reps [i].actors [j].service, services [k])) {
                            in = true;
                            n += reps [i].actors [j].served;
                        }
                actors += in;
            }
            printf ("service %s: %zu actors on %zu brokers, %llu served\n",
                    services [k], actors, nbrokers, (unsigned long long) n);
        }
        if (nservices == 0)
            printf ("no actors on %zu brokers\n", nbrokers);
    }
    for (size_t i = 0; i < nbrokers; i++)
        hgp_reply_clear (&reps [i]);
    free (reps);
    free (brokers);
    return rc;
}

//  --------------------------------------------------------------------------
//  top TYPE [--window W] [--limit N]

static int
s_cmd_top (s_app_t *app, int argc, char *argv [])
{
    const char *pos [1];
    int npos = 0;
    bool options = true;
    hgp_window_t window = HGP_WINDOW_ALL;
    int64_t limit = HGP_LIMIT_DEFAULT;
    for (int i = 0; i < argc; i++) {
        const char *value;
        if (options && streq (argv [i], "--"))
            options = false;
        else
        if (options && s_option (argc, argv, &i, "--window", &value)) {
            if (!value || hgp_window_from_name (value, &window))
                return s_usage_error (app, "--window wants all, 1h, 24h or"
                                      " trending");
        }
        else
        if (options && s_option (argc, argv, &i, "--limit", &value)) {
            if (!s_parse_range (value, 1, HGP_LIMIT_MAX, &limit))
                return s_usage_error (app, "--limit wants 1..%d",
                                      HGP_LIMIT_MAX);
        }
        else {
            int err = s_positional (app, argv [i], options, pos, &npos, 1);
            if (err)
                return err;
        }
    }
    if (npos < 1)
        return s_usage_error (app, "top needs TYPE");
    int rc;
    if ((rc = s_check_id (app, "TYPE", pos [0])) || (rc = s_connect (app)))
        return rc;
    hgp_request_t req;
    s_request (app, &req, HGP_OP_TOP);
    snprintf (req.key.counter_type, sizeof req.key.counter_type, "%s",
              pos [0]);
    req.window = window;
    req.limit = (uint32_t) limit;
    hgp_reply_t rep;
    hgp_reply_init (&rep);
    hgp_client_call (app->client, &req, &rep);
    bool trending = window == HGP_WINDOW_TRENDING;
    if (rep.error.status != HGP_STATUS_OK)
        rc = s_reply_error (app, &rep, NULL);
    else
    if (app->json) {
        printf ("{\"status\":200,\"counter_type\":");
        s_json_str (req.key.counter_type);
        printf (",\"window\":\"%s\",\"ranking\":[", hgp_window_name (window));
        for (size_t i = 0; i < rep.nranking; i++) {
            printf ("%s{\"resource_id\":", i ? "," : "");
            s_json_str (rep.ranking [i].resource_id);
            if (trending)
                printf (",\"score\":%.17g}", rep.ranking [i].score);
            else
                printf (",\"count\":%lld}", (long long) rep.ranking [i].count);
        }
        printf ("]}\n");
    }
    else
        for (size_t i = 0; i < rep.nranking; i++) {
            if (trending)
                printf ("%zu %s %.3f\n", i + 1, rep.ranking [i].resource_id,
                        rep.ranking [i].score);
            else
                printf ("%zu %s %lld\n", i + 1, rep.ranking [i].resource_id,
                        (long long) rep.ranking [i].count);
        }
    hgp_reply_clear (&rep);
    return rc;
}

//  --------------------------------------------------------------------------
//  stats RES TYPE

static int
s_cmd_stats (s_app_t *app, int argc, char *argv [])
{
    hgp_request_t req;
    hgp_reply_t rep;
    int rc = s_counter_call (app, argc, argv, HGP_OP_STATS, "stats", &req,
                             &rep);
    if (rc)
        return rc;
    if (rep.error.status != HGP_STATUS_OK)
        rc = s_reply_error (app, &rep, NULL);
    else
    if (app->json) {
        printf ("{\"status\":200,\"resource_id\":");
        s_json_str (req.key.resource_id);
        printf (",\"counter_type\":");
        s_json_str (req.key.counter_type);
        printf (",\"total\":%lld,\"trending\":%.17g,\"bucket_ms\":%u,"
                "\"buckets\":[", (long long) rep.total, rep.trending,
                rep.bucket_ms);
        for (size_t i = 0; i < rep.nbuckets; i++)
            printf ("%s[%lld,%lld]", i ? "," : "",
                    (long long) rep.buckets [i].start_ms,
                    (long long) rep.buckets [i].count);
        printf ("]}\n");
    }
    else {
        printf ("total %lld\ntrending %.3f\n", (long long) rep.total,
                rep.trending);
        for (size_t i = 0; i < rep.nbuckets; i++) {
            time_t t = (time_t) (rep.buckets [i].start_ms / 1000);
            struct tm tm;
            gmtime_r (&t, &tm);
            char when [32];
            strftime (when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
            printf ("%s %lld\n", when, (long long) rep.buckets [i].count);
        }
    }
    hgp_reply_clear (&rep);
    return rc;
}

//  --------------------------------------------------------------------------
//  replay [--reset]

static bool s_replay_quiet;

static void
s_replay_progress (int32_t partition, const hgp_ledger_stats_t *stats)
{
    if (!s_replay_quiet)
        fprintf (stderr, "replay: partition %d done; %" PRIu64 " events read"
                 " so far, %" PRIu64 " applied\n", partition, stats->read,
                 stats->applied);
}

//  Delete every key matching pattern; how many, or -1
static long long
s_delete_keys (hgp_redis_t *redis, const char *pattern, bool only_count)
{
    char cursor [32] = "0", reason [256];
    long long found = 0;
    do {
        const char *scan [] = { "SCAN", cursor, "MATCH", pattern, "COUNT",
                                "1000" };
        redisReply *reply = hgp_redis_command (redis, 6, scan, NULL, reason,
                                               sizeof reason);
        if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
            fprintf (stderr, "hgp: redis: %s\n", reply ? "odd SCAN" : reason);
            if (reply)
                freeReplyObject (reply);
            return -1;
        }
        snprintf (cursor, sizeof cursor, "%s", reply->element [0]->str);
        redisReply *keys = reply->element [1];
        found += (long long) keys->elements;
        if (!only_count && keys->elements) {
            const char **argv = (const char **) calloc (keys->elements + 1,
                                                        sizeof (char *));
            assert (argv);
            argv [0] = "UNLINK";
            for (size_t i = 0; i < keys->elements; i++)
                argv [i + 1] = keys->element [i]->str;
            redisReply *gone = hgp_redis_command (redis,
                                                  (int) keys->elements + 1,
                                                  argv, NULL, reason,
                                                  sizeof reason);
            free (argv);
            if (!gone) {
                fprintf (stderr, "hgp: redis: %s\n", reason);
                freeReplyObject (reply);
                return -1;
            }
            freeReplyObject (gone);
        }
        freeReplyObject (reply);
        if (only_count && found)
            break;
    } while (strcmp (cursor, "0") != 0);
    return found;
}

static int
s_cmd_replay (s_app_t *app, int argc, char *argv [])
{
    bool reset = false;
    for (int i = 0; i < argc; i++) {
        if (streq (argv [i], "--reset"))
            reset = true;
        else
            return s_usage_error (app, "unexpected argument '%s'", argv [i]);
    }
    s_replay_quiet = app->json;
    app->config = hgp_config_load (app->config_path);
    if (!app->config) {
        fprintf (stderr, "hgp: config: cannot load %s\n",
                 app->config_path ? app->config_path : "the config");
        return EXIT_USAGE;
    }
    char *error = NULL;
    int64_t ttl = hgp_config_int (app->config, "counter/dedup_ttl", 600, 1,
                                  INT32_MAX);
    hgp_redis_t *redis = hgp_redis_new (app->config, "replay", &error);
    hgp_eventlog_t *log = error ? NULL
                        : hgp_eventlog_new (app->config, "replay", &error);
    if (error) {
        hgp_redis_destroy (&redis);
        int rc = s_usage_error (app, "%s", error);
        free (error);
        return rc;
    }
    hgp_ledger_t *ledger = hgp_ledger_new (redis, "replay", ttl, 1000);
    int rc = EXIT_ERROR;
    char message [512] = "";
    hgp_ledger_stats_t stats = { 0 };
    if (!hgp_redis_ready (redis, true)) {
        snprintf (message, sizeof message, "cannot reach redis at %s",
                  hgp_redis_address (redis));
        goto done;
    }
    long long existing = s_delete_keys (redis, "hgp:c:*", !reset);
    if (existing < 0) {
        snprintf (message, sizeof message, "cannot read redis");
        goto done;
    }
    if (existing && !reset) {
        snprintf (message, sizeof message, "redis at %s already holds"
                  " counters (hgp:c:*); replaying onto them would count"
                  " events again whose request records have expired. Flush"
                  " them first, or pass --reset to delete the counters and"
                  " request records (hgp:c:*, hgp:r:*) before replaying",
                  hgp_redis_address (redis));
        goto done;
    }
    if (reset && s_delete_keys (redis, "hgp:r:*", false) < 0) {
        snprintf (message, sizeof message, "cannot delete request records");
        goto done;
    }
    if (!app->json)
        fprintf (stderr, "replay: reading %s at kafka %s into redis at %s\n",
                 hgp_eventlog_topic (log), hgp_eventlog_brokers (log),
                 hgp_redis_address (redis));
    if (hgp_ledger_replay (ledger, log, &stats, s_replay_progress, message,
                           sizeof message) == 0)
        rc = EXIT_OK;

done:
    if (rc == EXIT_OK) {
        if (app->json)
            printf ("{\"status\":200,\"read\":%" PRIu64 ",\"applied\":%"
                    PRIu64 ",\"already\":%" PRIu64 ",\"bad\":%" PRIu64
                    ",\"fences\":%" PRIu64 ",\"void\":%" PRIu64
                    ",\"unregistered\":%" PRIu64 "}\n",
                    stats.read, stats.applied, stats.already, stats.bad,
                    stats.fences, stats.voided, stats.unregistered);
        else
            printf ("replay: %" PRIu64 " events read, %" PRIu64 " applied, %"
                    PRIu64 " already applied (same request id), %" PRIu64
                    " not applicable; %" PRIu64 " fences, %" PRIu64 " void"
                    " events of fenced actors; %" PRIu64 " records of"
                    " identities that never registered, ignored\n",
                    stats.read, stats.applied, stats.already, stats.bad,
                    stats.fences, stats.voided, stats.unregistered);
        if (stats.bad)
            rc = EXIT_ERROR;
    }
    else {
        fprintf (stderr, "hgp: replay: %s\n", message);
        if (app->json)
            s_json_error ("replay", message, HGP_STATUS_UNAVAILABLE, NULL);
    }
    hgp_ledger_destroy (&ledger);
    hgp_eventlog_destroy (&log);
    hgp_redis_destroy (&redis);
    return rc;
}

//  --------------------------------------------------------------------------
//  bench

#define BENCH_CODES 16          /* distinct error codes we tally            */

typedef struct {
    int64_t sent_us;            /* when it was sent; 0: slot is free        */
    uint64_t seq;               /* which request it holds                   */
} s_slot_t;

typedef struct {
    char code [HGP_CODE_MAX + 1];   /* error code, or "no_reply"            */
    uint64_t count;                 /* how many                             */
} s_tally_t;

typedef struct {
    //  Settings
    hgp_op_t op;                /* HGP_OP_INCR or HGP_OP_GET                */
    uint64_t requests;          /* -n                                       */
    uint32_t window;            /* -w                                       */
    uint32_t nkeys;             /* -k                                       */
    char prefix [HGP_ID_MAX - 9];   /* --prefix: keys are "<prefix><i>",    */
                                    /* room left for a 10-digit <i>         */
    char run [40];              /* random run id, start of every req id     */
    //  Progress
    s_slot_t *slots;            /* window entries                           */
    uint32_t *free_slots;       /* stack of free slot indexes               */
    uint32_t nfree;             /* entries on it                            */
    uint64_t sent;              /* requests sent                            */
    uint64_t done;              /* requests answered or given up on         */
    uint64_t seq;               /* next request number                      */
    uint64_t rng;               /* xorshift64* state, picks keys            */
    //  Results
    uint32_t *latency;          /* µs per reply, capped at UINT32_MAX       */
    uint64_t nlatency;          /* entries                                  */
    uint64_t ok;                /* 200 replies (acknowledged, for incr)     */
    uint64_t indeterminate;     /* 504s and requests given up on            */
    uint64_t stale;             /* replies we could not match               */
    uint64_t unsent;            /* requests not sent (broker unreachable)   */
    s_tally_t tally [BENCH_CODES];  /* errors by code                       */
    uint32_t ntally;            /* entries used                             */
    hgp_reply_t send_error;     /* why sending stopped, if it did           */
} s_bench_t;

static void
s_bench_count (s_bench_t *self, const char *code, uint64_t n)
{
    uint32_t i;
    for (i = 0; i < self->ntally; i++)
        if (streq (self->tally [i].code, code))
            break;
    if (i == self->ntally) {
        if (self->ntally == BENCH_CODES)
            i = BENCH_CODES - 1;        //  the last row takes the rest
        else {
            snprintf (self->tally [i].code, sizeof self->tally [i].code,
                      "%s", self->ntally == BENCH_CODES - 1 ? "other" : code);
            self->ntally++;
        }
    }
    self->tally [i].count += n;
}

static void
s_bench_key (s_bench_t *self, uint32_t index, hgp_key_t *key)
{
    snprintf (key->resource_id, sizeof key->resource_id, "%s%u",
              self->prefix, index);
    snprintf (key->counter_type, sizeof key->counter_type, "bench");
}

//  Read all counters of the run into values (nkeys entries)

static int
s_bench_read (s_app_t *app, s_bench_t *self, int64_t *values,
              hgp_reply_t *rep)
{
    hgp_key_t *keys = (hgp_key_t *) calloc (HGP_MGET_MAX, sizeof (hgp_key_t));
    assert (keys);
    int rc = 0;
    for (uint32_t base = 0; base < self->nkeys && !rc; base += HGP_MGET_MAX) {
        uint32_t chunk = self->nkeys - base < HGP_MGET_MAX
                       ? self->nkeys - base : HGP_MGET_MAX;
        for (uint32_t i = 0; i < chunk; i++)
            s_bench_key (self, base + i, &keys [i]);
        rc = s_mget (app, keys, chunk, values + base, rep);
    }
    free (keys);
    return rc;
}

static uint64_t
s_bench_random (s_bench_t *self)
{
    self->rng ^= self->rng >> 12;
    self->rng ^= self->rng << 25;
    self->rng ^= self->rng >> 27;
    return self->rng * 0x2545f4914f6cdd1dULL;
}

//  Send one request into a free slot. -1 when it could not be sent.

static int
s_bench_send (s_app_t *app, s_bench_t *self, hgp_request_t *req)
{
    uint32_t slot = self->free_slots [--self->nfree];
    uint64_t seq = self->seq++;
    snprintf (req->id, sizeof req->id, "%s-%u-%llu", self->run, slot,
              (unsigned long long) seq);
    s_bench_key (self, (uint32_t) (s_bench_random (self) % self->nkeys),
                 &req->key);
    self->slots [slot].seq = seq;
    self->slots [slot].sent_us = zclock_usecs ();
    if (hgp_client_send (app->client, req)) {
        self->slots [slot].sent_us = 0;
        self->free_slots [self->nfree++] = slot;
        hgp_error_set (&self->send_error.error, HGP_STATUS_TIMEOUT, "timeout",
                       "cannot send to the broker at %s within %u ms",
                       hgp_client_endpoint (app->client), req->timeout_ms);
        return -1;
    }
    self->sent++;
    return 0;
}

//  The slot a reply id names, or -1 when it is not one we wait for

static int
s_bench_slot (s_bench_t *self, const char *id)
{
    size_t runlen = strlen (self->run);
    if (strncmp (id, self->run, runlen) != 0 || id [runlen] != '-')
        return -1;
    char *end;
    errno = 0;
    unsigned long slot = strtoul (id + runlen + 1, &end, 10);
    if (errno || *end != '-' || slot >= self->window)
        return -1;
    unsigned long long seq = strtoull (end + 1, &end, 10);
    if (errno || *end || !self->slots [slot].sent_us
    ||  self->slots [slot].seq != seq)
        return -1;
    return (int) slot;
}

static void
s_bench_release (s_bench_t *self, uint32_t slot)
{
    self->slots [slot].sent_us = 0;
    self->free_slots [self->nfree++] = slot;
    self->done++;
}

//  Give up on requests past their deadline: their outcome is unknown

static void
s_bench_expire (s_bench_t *self, int64_t now, int64_t patience_us)
{
    for (uint32_t slot = 0; slot < self->window; slot++)
        if (self->slots [slot].sent_us
        &&  now - self->slots [slot].sent_us > patience_us) {
            s_bench_release (self, slot);
            self->indeterminate++;
            s_bench_count (self, "no_reply", 1);
        }
}

static int
s_compare_u32 (const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
    return x < y ? -1 : x > y;
}

//  Nearest-rank percentile q (0..1] of sorted values

static uint32_t
s_percentile (const uint32_t *sorted, uint64_t n, double q)
{
    if (n == 0)
        return 0;
    uint64_t rank = (uint64_t) (q * (double) n + 0.999999);
    rank = rank < 1 ? 1 : rank > n ? n : rank;
    return sorted [rank - 1];
}

static int
s_bench_parse (s_app_t *app, s_bench_t *self, int argc, char *argv [])
{
    self->op = HGP_OP_INCR;
    self->requests = 100000;
    self->window = 128;
    self->nkeys = 1000;
    char random [33];
    hgp_process_random_id (random, sizeof random);
    snprintf (self->prefix, sizeof self->prefix, "bench-%.8s-", random);
    for (int i = 0; i < argc; i++) {
        const char *value;
        int64_t n;
        if (s_option (argc, argv, &i, "-n", &value)) {
            if (!s_parse_range (value, 1, 100000000, &n))
                return s_usage_error (app, "-n wants 1..100000000 requests");
            self->requests = (uint64_t) n;
        }
        else
        if (s_option (argc, argv, &i, "-w", &value)) {
            if (!s_parse_range (value, 1, 100000, &n))
                return s_usage_error (app, "-w wants a window of 1..100000");
            self->window = (uint32_t) n;
        }
        else
        if (s_option (argc, argv, &i, "-k", &value)) {
            if (!s_parse_range (value, 1, 10000000, &n))
                return s_usage_error (app, "-k wants 1..10000000 keys");
            self->nkeys = (uint32_t) n;
        }
        else
        if (s_option (argc, argv, &i, "--op", &value)) {
            if (value && streq (value, "incr"))
                self->op = HGP_OP_INCR;
            else
            if (value && streq (value, "get"))
                self->op = HGP_OP_GET;
            else
                return s_usage_error (app, "--op wants incr or get");
        }
        else
        if (s_option (argc, argv, &i, "--prefix", &value)) {
            //  Room for the largest key index after the prefix
            if (!value || !hgp_id_valid (value, strlen (value))
            ||  strlen (value) > HGP_ID_MAX - 10)
                return s_usage_error (app, "--prefix wants 1-%d bytes of "
                                      "A-Z a-z 0-9 _ - . :", HGP_ID_MAX - 10);
            snprintf (self->prefix, sizeof self->prefix, "%s", value);
        }
        else
        if (s_is_option (argv [i]))
            return s_usage_error (app, "unknown option '%s'", argv [i]);
        else
            return s_usage_error (app, "unexpected argument '%s'", argv [i]);
    }
    return 0;
}

typedef enum {
    S_VERIFY_NA,                /* op get: nothing to check                 */
    S_VERIFY_OK,                /* acked <= increase <= acked + unknown     */
    S_VERIFY_FAILED,            /* the counters disagree with the replies   */
    S_VERIFY_UNREAD             /* could not read the counters back         */
} s_verify_t;

static void
s_bench_report (s_app_t *app, s_bench_t *self, double seconds,
                s_verify_t verify, int64_t increase, const hgp_reply_t *rep)
{
    qsort (self->latency, self->nlatency, sizeof (uint32_t), s_compare_u32);
    uint32_t p50 = s_percentile (self->latency, self->nlatency, 0.50);
    uint32_t p99 = s_percentile (self->latency, self->nlatency, 0.99);
    uint32_t p999 = s_percentile (self->latency, self->nlatency, 0.999);
    uint32_t max = self->nlatency ? self->latency [self->nlatency - 1] : 0;
    double rps = seconds > 0 ? (double) self->done / seconds : 0;
    uint64_t errors = 0;
    for (uint32_t i = 0; i < self->ntally; i++)
        errors += self->tally [i].count;

    if (app->json) {
        printf ("{\"status\":200,\"op\":\"%s\",\"requests\":%llu,"
                "\"window\":%u,\"keys\":%u,\"prefix\":",
                hgp_op_name (self->op),
                (unsigned long long) self->requests, self->window,
                self->nkeys);
        s_json_str (self->prefix);
        printf (",\"broker\":");
        s_json_str (hgp_client_endpoint (app->client));
        printf (",\"sent\":%llu,\"done\":%llu,\"elapsed_s\":%.3f,"
                "\"requests_per_s\":%.0f,\"latency_us\":{\"p50\":%u,"
                "\"p99\":%u,\"p99_9\":%u,\"max\":%u},\"ok\":%llu,"
                "\"errors\":{", (unsigned long long) self->sent,
                (unsigned long long) self->done, seconds, rps, p50, p99,
                p999, max, (unsigned long long) self->ok);
        for (uint32_t i = 0; i < self->ntally; i++) {
            printf ("%s", i ? "," : "");
            s_json_str (self->tally [i].code);
            printf (":%llu", (unsigned long long) self->tally [i].count);
        }
        printf ("},\"indeterminate\":%llu,\"stale\":%llu,\"verify\":",
                (unsigned long long) self->indeterminate,
                (unsigned long long) self->stale);
        if (verify == S_VERIFY_NA)
            printf ("null");
        else
        if (verify == S_VERIFY_UNREAD) {
            printf ("{\"ok\":null,\"error\":{\"code\":");
            s_json_str (rep->error.code);
            printf (",\"message\":");
            s_json_str (rep->error.message);
            printf ("},\"status\":%d}", rep->error.status);
        }
        else
            printf ("{\"ok\":%s,\"acked\":%llu,\"increase\":%lld,"
                    "\"indeterminate\":%llu}",
                    verify == S_VERIFY_OK ? "true" : "false",
                    (unsigned long long) self->ok, (long long) increase,
                    (unsigned long long) self->indeterminate);
        printf (",\"unsent\":%llu,\"resent\":%llu}\n",
                (unsigned long long) self->unsent,
                (unsigned long long) hgp_client_resent (app->client));
        return;
    }
    printf ("bench: %s, %llu requests, window %u, %u keys "
            "\"%s<0..%u>\"/bench, broker %s\n", hgp_op_name (self->op),
            (unsigned long long) self->requests, self->window, self->nkeys,
            self->prefix, self->nkeys - 1, hgp_client_endpoint (app->client));
    printf ("requests/s: %.0f (%llu in %.3f s)\n", rps,
            (unsigned long long) self->done, seconds);
    printf ("latency us: p50 %u  p99 %u  p99.9 %u  max %u\n",
            p50, p99, p999, max);
    printf ("replies: %llu ok, %llu errors, %llu indeterminate, "
            "%llu stale\n", (unsigned long long) self->ok,
            (unsigned long long) errors,
            (unsigned long long) self->indeterminate,
            (unsigned long long) self->stale);
    if (self->ntally) {
        printf ("errors:");
        for (uint32_t i = 0; i < self->ntally; i++)
            printf (" %s=%llu", self->tally [i].code,
                    (unsigned long long) self->tally [i].count);
        printf ("\n");
    }
    if (self->unsent)
        printf ("unsent: %llu\n",
                (unsigned long long) self->unsent);
    if (hgp_client_resent (app->client))
        printf ("failover: %llu requests re-sent to another broker with the"
                " same id\n",
                (unsigned long long) hgp_client_resent (app->client));
    if (verify == S_VERIFY_NA)
        printf ("verify: n/a (op %s)\n", hgp_op_name (self->op));
    else
    if (verify == S_VERIFY_UNREAD)
        printf ("verify: unknown (cannot read the counters back: %s)\n",
                rep->error.code);
    else
    if (verify == S_VERIFY_OK)
        printf ("verify: ok (increase %lld, acked %llu, indeterminate "
                "%llu)\n", (long long) increase,
                (unsigned long long) self->ok,
                (unsigned long long) self->indeterminate);
    else
        printf ("verify: FAILED: counters grew by %lld, want acked %llu <= "
                "increase <= acked + indeterminate %llu\n",
                (long long) increase, (unsigned long long) self->ok,
                (unsigned long long) (self->ok + self->indeterminate));
}

static int
s_cmd_bench (s_app_t *app, int argc, char *argv [])
{
    s_bench_t bench, *self = &bench;
    memset (self, 0, sizeof *self);
    int rc;
    if ((rc = s_bench_parse (app, self, argc, argv)) || (rc = s_connect (app)))
        return rc;
    hgp_process_random_id (self->run, sizeof self->run);
    self->rng = (uint64_t) zclock_usecs () ^ ((uint64_t) getpid () << 32);
    self->rng |= 1;
    hgp_reply_init (&self->send_error);
    hgp_reply_t rep;
    hgp_reply_init (&rep);

    //  With discovery: hear every live broker first, so the load is spread
    //  over all of them from the first request
    hgp_client_brokers (app->client, (int) app->settle_ms, NULL, 0);
    //  Is anyone there? Fail fast, before a long run of timeouts
    hgp_request_t req;
    s_request (app, &req, HGP_OP_PING);
    hgp_client_call (app->client, &req, &rep);
    if (rep.error.status != HGP_STATUS_OK) {
        rc = s_reply_error (app, &rep, NULL);
        hgp_reply_clear (&rep);
        return rc;
    }
    bool verify = self->op == HGP_OP_INCR;
    int64_t *before = NULL;
    if (verify) {
        before = (int64_t *) calloc (self->nkeys, sizeof (int64_t));
        assert (before);
        if (s_bench_read (app, self, before, &rep)) {
            rc = s_reply_error (app, &rep, NULL);
            hgp_reply_clear (&rep);
            free (before);
            return rc;
        }
    }
    self->slots = (s_slot_t *) calloc (self->window, sizeof (s_slot_t));
    self->free_slots = (uint32_t *) calloc (self->window, sizeof (uint32_t));
    self->latency = (uint32_t *) calloc (self->requests, sizeof (uint32_t));
    assert (self->slots && self->free_slots && self->latency);
    for (uint32_t i = 0; i < self->window; i++)
        self->free_slots [self->nfree++] = self->window - 1 - i;

    //  One request struct for the whole run: only id and key change
    s_request (app, &req, self->op);
    req.delta = 1;
    int64_t patience_us = (int64_t) (app->timeout_ms + HGP_CLIENT_GRACE_MS)
                        * 1000;
    int64_t start = zclock_usecs ();
    int64_t next_expire = start + 10000;
    bool sending = true;
    while (self->done < self->sent || (sending && self->sent < self->requests)) {
        if (zsys_interrupted)
            break;
        while (sending && self->nfree && self->sent < self->requests)
            if (s_bench_send (app, self, &req))
                sending = false;
        int64_t now;
        if (hgp_client_recv (app->client, &rep, 10) == 0) {
            now = zclock_usecs ();
            int slot = s_bench_slot (self, rep.id);
            if (slot < 0)
                self->stale++;
            else {
                int64_t usecs = now - self->slots [slot].sent_us;
                self->latency [self->nlatency++] =
                    usecs > UINT32_MAX ? UINT32_MAX : (uint32_t) usecs;
                s_bench_release (self, (uint32_t) slot);
                if (rep.error.status == HGP_STATUS_OK)
                    self->ok++;
                else {
                    s_bench_count (self, rep.error.code [0]
                                   ? rep.error.code : "internal", 1);
                    if (rep.error.status == HGP_STATUS_TIMEOUT)
                        self->indeterminate++;
                }
            }
        }
        else
            now = zclock_usecs ();
        if (now >= next_expire) {
            s_bench_expire (self, now, patience_us);
            next_expire = now + 10000;
        }
    }
    double seconds = (double) (zclock_usecs () - start) / 1e6;
    //  Requests still out (interrupted): their outcome is unknown
    for (uint32_t slot = 0; slot < self->window; slot++)
        if (self->slots [slot].sent_us) {
            s_bench_release (self, slot);
            self->indeterminate++;
            s_bench_count (self, "no_reply", 1);
        }
    self->unsent = self->requests - self->sent;

    if (!sending)
        fprintf (stderr, "hgp: %s: %s; %llu requests not sent\n",
                 self->send_error.error.code, self->send_error.error.message,
                 (unsigned long long) self->unsent);
    int64_t increase = 0;
    s_verify_t outcome = S_VERIFY_NA;
    if (verify) {
        int64_t *after = (int64_t *) calloc (self->nkeys, sizeof (int64_t));
        assert (after);
        outcome = S_VERIFY_OK;
        if (s_bench_read (app, self, after, &rep)) {
            outcome = S_VERIFY_UNREAD;
            fprintf (stderr, "hgp: %s: %s\n", rep.error.code,
                     rep.error.message);
        }
        else
            for (uint32_t i = 0; i < self->nkeys; i++) {
                int64_t diff;
                if (__builtin_sub_overflow (after [i], before [i], &diff)
                ||  __builtin_add_overflow (increase, diff, &increase)) {
                    outcome = S_VERIFY_FAILED;
                    break;
                }
            }
        free (after);
        if (outcome == S_VERIFY_OK
        && (increase < 0 || (uint64_t) increase < self->ok
        ||  (uint64_t) increase > self->ok + self->indeterminate))
            outcome = S_VERIFY_FAILED;
    }
    s_bench_report (app, self, seconds, outcome, increase, &rep);
    if (outcome == S_VERIFY_FAILED)
        rc = EXIT_ERROR;
    else
    if (outcome == S_VERIFY_UNREAD)
        rc = s_exit_code (&rep);
    else
    if (!sending || zsys_interrupted)
        rc = EXIT_UNKNOWN;
    else
        rc = EXIT_OK;

    hgp_reply_clear (&rep);
    hgp_reply_clear (&self->send_error);
    free (before);
    free (self->slots);
    free (self->free_slots);
    free (self->latency);
    return rc;
}

//  --------------------------------------------------------------------------
//  Command table and main

static const s_command_t s_commands [] = {
    { "incr", "RES TYPE [DELTA] [--id REQUEST_ID] [--user USER_ID]",
      "add DELTA (default 1) to a counter, print the new value",
      "Adds DELTA, a non-zero signed 64-bit integer (default 1, may be\n"
      "negative), to counter TYPE of resource RES and prints the new value,\n"
      "with \" (replayed)\" when REQUEST_ID had already been applied.\n"
      "\n"
      "  --id REQUEST_ID  the idempotency key. Default: 32 random hex digits,\n"
      "                   shown when the outcome is unknown. Retrying with the\n"
      "                   same id, key and delta is applied at most once\n"
      "                   (within counter/dedup_ttl); the same id with another\n"
      "                   key or delta is 409 id_conflict.\n"
      "  --user USER_ID   who did it; carried into the event log\n"
      "\n"
      "Example: hgp incr post_42 like; hgp incr post_42 like -1 --id undo-7\n",
      s_cmd_incr },
    { "get", "RES TYPE",
      "print a counter's value (0 if never incremented)",
      "Prints the value of counter TYPE of resource RES; a counter never\n"
      "incremented is 0. Sees every increment acknowledged before it.\n",
      s_cmd_get },
    { "mget", "RES:TYPE...",
      "print \"RES TYPE VALUE\" for each key",
      "Prints one line \"RES TYPE VALUE\" per key, in the order given.\n"
      "Each key is split at its LAST ':', because resource ids may contain\n"
      "':' (\"user:7:like\" is resource \"user:7\", type \"like\"); so a\n"
      "counter type used here must not contain ':'. More than 1000 keys are\n"
      "read in several requests, and nothing is printed unless all succeed.\n",
      s_cmd_mget },
    { "config", "SECTION/KEY...",
      "print the value of each setting, as hgp processes would read it",
      "Prints one line per SECTION/KEY: its value from the config file, or\n"
      "from HGP_<SECTION>_<KEY> when that is set. A key set in neither\n"
      "prints an empty line and makes the exit status 1.\n"
      "\n"
      "Example: hgp config broker/client_endpoint gateway/port\n",
      s_cmd_config },
    { "ping", "",
      "check that every broker answers",
      "Asks each broker itself (no actor involved) to answer and prints the\n"
      "round-trip time. With discovery: every broker heard within two\n"
      "beacon intervals.\n",
      s_cmd_ping },
    { "actors", "",
      "list brokers, and the actors and services each broker sees",
      "Asks every known broker (with discovery: every broker heard within\n"
      "two beacon intervals) for its actors. Prints the brokers (id,\n"
      "endpoint, state: alive, evasive (beacons late) or static, ms since\n"
      "its last beacon), then one row per broker and actor: service,\n"
      "actor_id, broker, capacity, inflight, queued (waiting in that broker),\n"
      "idle_ms (since that broker last heard from it) and served (replies\n"
      "sent through that broker), then a line per service. Exits 3 (or 1)\n"
      "when a broker did not answer, after printing what the others said.\n",
      s_cmd_actors },
    { "top", "TYPE [--window all|1h|24h|trending] [--limit N]",
      "print the resources of TYPE with the biggest counts",
      "Prints \"RANK RESOURCE COUNT\" lines, best first, from the analytics\n"
      "service. --window: all (all-time sums, the default), 1h or 24h (sums\n"
      "over the last hour or day, at 1/60 of the window's granularity), or\n"
      "trending (a score that halves every analytics/half_life, one hour by\n"
      "default; printed as a decimal). --limit: 1..1000, default 10.\n"
      "Ties rank by resource id, ascending bytewise. Resources whose sum is\n"
      "not positive are not ranked. The ranking follows the event log, so\n"
      "it may lag the counters by the analytics actors' delay.\n",
      s_cmd_top },
    { "stats", "RES TYPE",
      "print a resource's total, trending score and counts per minute",
      "Prints \"total N\", \"trending S\" and one \"TIME COUNT\" line per\n"
      "minute of the last 24 hours that has events (UTC; the widths are\n"
      "analytics/bucket and analytics/span), from the analytics service.\n",
      s_cmd_stats },
    { "replay", "[--reset]",
      "rebuild the counters in Redis from the event log (disaster recovery)",
      "Reads every partition of the event log from its first event up to\n"
      "where it ended when the replay started, and applies each event to\n"
      "Redis as the counter actors do: once per request id. Talks to Kafka\n"
      "(kafka/brokers) and Redis (redis/url) directly, not through the\n"
      "broker.\n"
      "\n"
      "Refuses when Redis already holds counters (hgp:c:*), since events\n"
      "whose request records expired would count twice; --reset deletes the\n"
      "counters and request records first. Refuses when a partition no\n"
      "longer starts at offset 0 (retention dropped events): the counts\n"
      "would be short. Run it with no traffic; increments acknowledged\n"
      "during a replay are applied exactly once too, but the counters are\n"
      "only complete once it has finished. Exits 0 when every event was\n"
      "applied or already applied, 1 otherwise.\n"
      "\n"
      "Records written under a log identity that never registered in\n"
      "Redis (hgp:ids) are forgeries: they are counted and ignored, and\n"
      "each such identity is named once on stderr.\n",
      s_cmd_replay },
    { "bench", "[-n N] [-w W] [-k K] [--op incr|get] [--prefix P]",
      "load test with an exactly-once check",
      "Sends N requests (default 100000), W in flight at once (default 128),\n"
      "over K keys \"P<i>\"/\"bench\" (default 1000; P defaults to a random\n"
      "\"bench-XXXXXXXX-\" so runs do not collide), each to a random key.\n"
      "Prints requests/s, p50/p99/p99.9/max latency in microseconds, and\n"
      "errors by code (\"no_reply\": given up on locally after the deadline).\n"
      "\n"
      "With --op incr (the default) it reads all K counters before and after\n"
      "and verifies acked <= increase <= acked + indeterminate (504s and\n"
      "no_reply may or may not have been applied). Prints \"verify: ok\" or\n"
      "\"verify: FAILED ...\"; a failed check exits 1. Exits 3 when the\n"
      "broker cannot be reached or the run was interrupted.\n"
      "\n"
      "  -n N             requests, 1..100000000\n"
      "  -w W             window: requests in flight, 1..100000\n"
      "  -k K             distinct keys, 1..10000000\n"
      "  --op incr|get    what to send (incr adds 1)\n"
      "  --prefix P       resource id prefix, up to 118 bytes\n",
      s_cmd_bench },
};

#define COMMANDS (sizeof s_commands / sizeof s_commands [0])

static void
s_usage (FILE *out)
{
    fprintf (out, "usage: hgp [GLOBAL OPTIONS] COMMAND [ARGS]\n\n"
             "Client of the hgp brokers: counters over the HGP/1 protocol "
             "(schemas/PROTOCOL.md).\n\nCommands:\n");
    for (size_t i = 0; i < COMMANDS; i++) {
        fprintf (out, "  %s%s%s\n", s_commands [i].name,
                 *s_commands [i].synopsis ? " " : "",
                 s_commands [i].synopsis);
        fprintf (out, "      %s\n", s_commands [i].summary);
    }
    fprintf (out, "\n%s\n%s", s_global_help, s_exit_help);
}

static void
s_command_usage (const s_command_t *command)
{
    printf ("usage: hgp [GLOBAL OPTIONS] %s%s%s\n\n%s\n"
            "Global options, id syntax and exit codes: hgp --help\n",
            command->name, *command->synopsis ? " " : "", command->synopsis,
            command->help);
}

int
main (int argc, char *argv [])
{
    //  Logs (from the config loader, CZMQ) go to stderr: stdout is for
    //  results, which scripts parse
    zsys_set_logstream (stderr);
    zsys_set_logsystem (false);
    zsys_set_logident ("hgp");
    zsys_set_linger (0);

    s_app_t app_struct, *app = &app_struct;
    memset (app, 0, sizeof *app);
    int i;
    for (i = 1; i < argc && s_is_option (argv [i]); i++) {
        const char *value;
        int64_t n;
        if (s_is_help (argv [i])) {
            s_usage (stdout);
            return EXIT_OK;
        }
        else
        if (streq (argv [i], "--json"))
            app->json = true;
        else
        if (s_option (argc, argv, &i, "--broker", &value)) {
            if (!value || !*value)
                return s_usage_error (app, "--broker needs an ENDPOINT");
            app->broker = value;
        }
        else
        if (s_option (argc, argv, &i, "-c", &value)
        ||  s_option (argc, argv, &i, "--config", &value)) {
            if (!value || !*value)
                return s_usage_error (app, "-c needs a CONFIG file");
            app->config_path = value;
        }
        else
        if (s_option (argc, argv, &i, "--timeout", &value)) {
            if (!s_parse_range (value, 1, HGP_TIMEOUT_MAX, &n))
                return s_usage_error (app, "--timeout wants 1..%d ms",
                                      HGP_TIMEOUT_MAX);
            app->timeout_ms = (uint32_t) n;
        }
        else
            return s_usage_error (app, "unknown option '%s'", argv [i]);
    }
    if (i == argc) {
        s_usage (stderr);
        return EXIT_USAGE;
    }
    const char *name = argv [i++];
    if (streq (name, "help")) {
        if (i == argc) {
            s_usage (stdout);
            return EXIT_OK;
        }
        name = argv [i];
        for (size_t c = 0; c < COMMANDS; c++)
            if (streq (name, s_commands [c].name)) {
                s_command_usage (&s_commands [c]);
                return EXIT_OK;
            }
        return s_usage_error (app, "unknown command '%s'", name);
    }
    for (size_t c = 0; c < COMMANDS; c++)
        if (streq (name, s_commands [c].name))
            app->command = &s_commands [c];
    if (!app->command)
        return s_usage_error (app, "unknown command '%s'", name);
    for (int j = i; j < argc && !streq (argv [j], "--"); j++)
        if (s_is_help (argv [j])) {
            s_command_usage (app->command);
            return EXIT_OK;
        }
    int rc = app->command->handler (app, argc - i, argv + i);
    hgp_client_destroy (&app->client);
    hgp_keys_destroy (&app->keys);
    hgp_config_destroy (&app->config);
    return rc;
}
