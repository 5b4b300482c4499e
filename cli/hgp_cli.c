/*  hgp_cli.c - bin/hgp, the command-line client of the hgp brokers
 *
 *  One process, one hgp_client_t, one command: incr, get, mget, ping,
 *  actors, top, stats, uniques, replay, bench or config. This file is the front
 *  end: global options, the command table with every command's help,
 *  usage and error reporting, connecting; the commands live by what they
 *  ask (hgp_cli.h lists the files), the load generator in hgp_bench, the
 *  replay tool in hgp_replay. `hgp --help` is the manual; it lists the
 *  exit codes scripts rely on.
 *
 *  The client is what the config says (lib/hgp_client.h): with
 *  discovery/interface set it follows broker beacons, spreads requests
 *  over every live broker and fails over with the same request id;
 *  otherwise, or with --broker, it talks to one broker. replay is the
 *  exception: it is disaster recovery for when the bus may be of no help,
 *  so it talks to Kafka and Redis itself.
 *
 *  Invariants (and those of hgp_cli.h):
 *  - 504 "timeout" is indeterminate (PROTOCOL.md §4.6) and gets its own exit
 *    code, 3, together with "cannot reach the broker": the caller must not
 *    treat an increment as failed. For incr the request id is printed so the
 *    user can retry it with --id, which the broker applies at most once.
 *  - --json output is written by jansson (hgp_cli_json.h), one object per
 *    line; logs go to stderr, so stdout holds only results.
 */
#include "hgp_cli.h"
#include "hgp_bench.h"
#include "hgp_cli_json.h"
#include "hgp_client.h"
#include "hgp_config.h"
#include "hgp_discovery.h"
#include "hgp_process.h"
#include "hgp_replay.h"
#include "hgp_trace.h"
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <inttypes.h>
#include <stdarg.h>

#define DEFAULT_ENDPOINT "tcp://127.0.0.1:5555"

static const char *s_global_help =
"Global options (before or after COMMAND, not after --):\n"
"  --broker ENDPOINT  talk to this one broker, tcp://HOST:PORT or HOST:PORT\n"
"                     (default: the brokers whose\n"
"                     beacons are heard on discovery/interface, env\n"
"                     HGP_DISCOVERY_INTERFACE; without one, config\n"
"                     broker/client_endpoint, env HGP_BROKER_CLIENT_ENDPOINT)\n"
"  -c, --config FILE  config file (default: $HGP_CONFIG, else configs/hgp.cfg)\n"
"  --timeout MS       deadline of each request, 1..60000 (default: config\n"
"                     client/timeout, env HGP_CLIENT_TIMEOUT)\n"
"  --json             print one JSON object per command on stdout\n"
"  --trace            send a sampled W3C trace with the requests and print\n"
"                     \"trace: <traceparent>\" on stderr: the broker and\n"
"                     the actors log a line with it, and an increment's\n"
"                     event in the log carries it\n"
"  --version          print the version and exit\n"
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

//  The JSON error object of a failed command; id (the request id to
//  retry with) when given
static void
s_json_error (const char *code, const char *message, int status,
              const char *id)
{
    json_t *obj = json_pack ("{s:{s:o,s:o},s:i}", "error",
                             "code", hgp_cli_json_text (code),
                             "message", hgp_cli_json_text (message),
                             "status", status);
    if (id && *id)
        json_object_set_new (obj, "id", hgp_cli_json_text (id));
    hgp_cli_json_print (&obj, HGP_CLI_JSON_EXACT);
}

//  A usage error: says what is wrong and where to look; returns
//  HGP_CLI_EXIT_USAGE

int
hgp_cli_usage_error (hgp_cli_t *app, const char *format, ...)
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
    return HGP_CLI_EXIT_USAGE;
}

int
hgp_cli_exit_code (const hgp_reply_t *rep)
{
    if (rep->error.status == HGP_STATUS_OK)
        return HGP_CLI_EXIT_OK;
    return rep->error.status == HGP_STATUS_TIMEOUT ? HGP_CLI_EXIT_UNKNOWN
                                                   : HGP_CLI_EXIT_ERROR;
}

//  Report an error reply; returns the exit code. id, when given, is the
//  request id the user can retry with.

int
hgp_cli_reply_error (hgp_cli_t *app, const hgp_reply_t *rep, const char *id)
{
    assert (rep->error.status != HGP_STATUS_OK);
    const char *code = rep->error.code [0] ? rep->error.code : "internal";
    fprintf (stderr, "hgp: %s: %s\n", code, rep->error.message);
    if (id && rep->error.status == HGP_STATUS_TIMEOUT)
        fprintf (stderr, "hgp: request id %s; retry with --id %s, it is "
                 "applied at most once\n", id, id);
    if (app->json)
        s_json_error (code, rep->error.message, rep->error.status, id);
    return hgp_cli_exit_code (rep);
}

//  --------------------------------------------------------------------------
//  Argument helpers

//  Is arg an option (as opposed to a positional, which may be "-5")?

bool
hgp_cli_is_option (const char *arg)
{
    return arg [0] == '-' && arg [1] && !isdigit ((unsigned char) arg [1]);
}

//  The last branch of a command's argument loop: an unknown option is an
//  error, else arg is the next of at most max positionals. 0 or an exit code.

int
hgp_cli_positional (hgp_cli_t *app, const char *arg, bool options,
                    const char **pos, int *npos, int max)
{
    if (options && hgp_cli_is_option (arg))
        return hgp_cli_usage_error (app, "unknown option '%s'", arg);
    if (*npos >= max)
        return hgp_cli_usage_error (app, "too many arguments");
    pos [(*npos)++] = arg;
    return 0;
}

//  Does argv [*i] name option `name`, as "name VALUE" or "name=VALUE"? If so
//  set *value (NULL when the value is missing) and step *i past it.

bool
hgp_cli_option (int argc, char *argv [], int *i, const char *name,
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

bool
hgp_cli_parse_int64 (const char *s, int64_t *out)
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

bool
hgp_cli_parse_range (const char *s, int64_t min, int64_t max, int64_t *out)
{
    return s && hgp_cli_parse_int64 (s, out) && *out >= min && *out <= max;
}

int
hgp_cli_check_id (hgp_cli_t *app, const char *what, const char *s)
{
    if (hgp_id_valid (s, strlen (s)))
        return 0;
    return hgp_cli_usage_error (app, "%s '%s' is not an id: want 1-%d bytes of "
                                "A-Z a-z 0-9 _ - . :", what, s, HGP_ID_MAX);
}

//  --------------------------------------------------------------------------
//  Connecting

//  Say what is wrong with the settings (problem is ours to free); returns
//  HGP_CLI_EXIT_USAGE
static int
s_config_problem (hgp_cli_t *app, char *problem)
{
    fprintf (stderr, "hgp: %s\n", problem);
    if (app->json)
        s_json_error ("usage", problem, HGP_STATUS_BAD_REQUEST, NULL);
    free (problem);
    return HGP_CLI_EXIT_USAGE;
}

//  Load the config and connect, once. Returns 0 or an exit code.

//  Can a TCP connection to endpoint (tcp://HOST:PORT) be opened? 0 yes,
//  or not TCP, or no answer within wait_ms (ZeroMQ keeps trying); -1 and
//  why when the host refuses it or cannot be reached: a broker that is
//  not there is said at once, as redis-cli and kcat say it, instead of
//  after the request's whole deadline
static int
s_tcp_probe (const char *endpoint, int wait_ms, char *why, size_t size)
{
    if (strncmp (endpoint, "tcp://", 6) != 0)
        return 0;
    char host [256];
    snprintf (host, sizeof host, "%s", endpoint + 6);
    char *colon = strrchr (host, ':');
    if (!colon)
        return 0;
    *colon = 0;
    const char *port = colon + 1;
    char *name = host;
    if (*name == '[' && name [strlen (name) - 1] == ']') {
        name [strlen (name) - 1] = 0;
        name++;
    }
    if (streq (name, "*"))
        return 0;
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *addrs = NULL;
    int gai = getaddrinfo (name, port, &hints, &addrs);
    if (gai) {
        snprintf (why, size, "%s", gai_strerror (gai));
        return -1;
    }
    int rc = 0;
    int fd = socket (addrs->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd >= 0) {
        int error = 0;
        if (connect (fd, addrs->ai_addr, addrs->ai_addrlen) < 0) {
            error = errno;
            if (error == EINPROGRESS) {
                struct pollfd item = { fd, POLLOUT, 0 };
                error = 0;
                if (poll (&item, 1, wait_ms) == 1) {
                    socklen_t len = sizeof error;
                    getsockopt (fd, SOL_SOCKET, SO_ERROR, &error, &len);
                }
            }
        }
        if (error == ECONNREFUSED || error == EHOSTUNREACH
        ||  error == ENETUNREACH || error == EADDRNOTAVAIL) {
            snprintf (why, size, "%s", strerror (error));
            rc = -1;
        }
        close (fd);
    }
    freeaddrinfo (addrs);
    return rc;
}

int
hgp_cli_connect (hgp_cli_t *app)
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
        return HGP_CLI_EXIT_USAGE;
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
    //  One static broker: say at once when nothing listens there
    const char *iface = hgp_config_str (app->config, "discovery/interface", "");
    char why [128];
    if ((app->broker || !*iface)
    &&  s_tcp_probe (endpoint, 1000, why, sizeof why)) {
        char message [400];
        snprintf (message, sizeof message, "cannot connect to the broker at"
                  " %s: %s; nothing was sent (is hgp-broker running there?"
                  " `make run` starts one)", endpoint, why);
        fprintf (stderr, "hgp: unavailable: %s\n", message);
        if (app->json)
            s_json_error ("unavailable", message, HGP_STATUS_UNAVAILABLE, NULL);
        return HGP_CLI_EXIT_UNKNOWN;
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
        return HGP_CLI_EXIT_USAGE;
    }
    return 0;
}

//  A request of op with a fresh random id and the app's deadline

void
hgp_cli_request (hgp_cli_t *app, hgp_request_t *req, hgp_op_t op)
{
    hgp_request_init (req);
    req->op = op;
    req->timeout_ms = app->timeout_ms;
    hgp_process_random_id (req->id, sizeof req->id);
    if (app->trace) {
        if (!app->traceparent [0]) {
            char trace_id [33], span [33];
            hgp_process_random_id (trace_id, sizeof trace_id);
            hgp_process_random_id (span, sizeof span);
            hgp_trace_format (app->traceparent, trace_id,
                              strtoull (span + 16, NULL, 16), true);
            fprintf (stderr, "trace: %s\n", app->traceparent);
        }
        snprintf (req->trace, sizeof req->trace, "%s", app->traceparent);
    }
}

//  hgp config KEY...: the value each setting has for this process (file,
//  then HGP_<SECTION>_<KEY>), one per line, for scripts such as make run
static int
s_cmd_config (hgp_cli_t *app, int argc, char *argv [])
{
    if (argc < 1)
        return hgp_cli_usage_error (app, "config needs a SECTION/KEY");
    hgp_config_t *config = hgp_config_load (app->config_path);
    if (!config)
        return HGP_CLI_EXIT_USAGE;              //  hgp_config_load said why
    int rc = HGP_CLI_EXIT_OK;
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
            rc = HGP_CLI_EXIT_ERROR;
        }
    }
    hgp_config_destroy (&config);
    return rc;
}

//  --------------------------------------------------------------------------
//  replay [--reset]

//  The outcome of a replay that read the log through
static void
s_replay_report (hgp_cli_t *app, const hgp_ledger_stats_t *stats)
{
    if (app->json) {
        json_t *obj = json_pack ("{s:i,s:o,s:o,s:o,s:o,s:o,s:o,s:o}",
            "status", HGP_STATUS_OK,
            "read", hgp_cli_json_uint (stats->read),
            "applied", hgp_cli_json_uint (stats->applied),
            "already", hgp_cli_json_uint (stats->already),
            "bad", hgp_cli_json_uint (stats->bad),
            "fences", hgp_cli_json_uint (stats->fences),
            "void", hgp_cli_json_uint (stats->voided),
            "unregistered", hgp_cli_json_uint (stats->unregistered));
        hgp_cli_json_print (&obj, HGP_CLI_JSON_EXACT);
    }
    else
        printf ("replay: %" PRIu64 " events read, %" PRIu64 " applied, %"
                PRIu64 " already applied (same request id), %" PRIu64
                " not applicable; %" PRIu64 " fences, %" PRIu64 " void"
                " events of fenced actors; %" PRIu64 " records of"
                " identities that never registered, ignored\n",
                stats->read, stats->applied, stats->already, stats->bad,
                stats->fences, stats->voided, stats->unregistered);
}

static int
s_cmd_replay (hgp_cli_t *app, int argc, char *argv [])
{
    bool reset = false;
    for (int i = 0; i < argc; i++) {
        if (streq (argv [i], "--reset"))
            reset = true;
        else
            return hgp_cli_usage_error (app, "unexpected argument '%s'",
                                        argv [i]);
    }
    app->config = hgp_config_load (app->config_path);
    if (!app->config) {
        fprintf (stderr, "hgp: config: cannot load %s\n",
                 app->config_path ? app->config_path : "the config");
        return HGP_CLI_EXIT_USAGE;
    }
    char *error = NULL;
    hgp_replay_t *replay = hgp_replay_new (app->config, &error);
    if (!replay) {
        int rc = hgp_cli_usage_error (app, "%s", error);
        free (error);
        return rc;
    }
    char message [512];
    hgp_ledger_stats_t stats;
    int rc = HGP_CLI_EXIT_ERROR;
    if (hgp_replay_run (replay, reset, !app->json, &stats, message,
                        sizeof message) == 0) {
        s_replay_report (app, &stats);
        rc = stats.bad ? HGP_CLI_EXIT_ERROR : HGP_CLI_EXIT_OK;
    }
    else {
        fprintf (stderr, "hgp: replay: %s\n", message);
        if (app->json)
            s_json_error ("replay", message, HGP_STATUS_UNAVAILABLE, NULL);
    }
    hgp_replay_destroy (&replay);
    return rc;
}

//  --------------------------------------------------------------------------
//  bench [-n N] [-w W] [-k K] [--op incr|get] [--prefix P] [--type T]
//        [--users U]

//  One bench option at argv [*i] into settings; 0 or an exit code
static int
s_bench_option (hgp_cli_t *app, hgp_bench_settings_t *set, int argc,
                char *argv [], int *i)
{
    const char *value;
    int64_t n;
    if (hgp_cli_option (argc, argv, i, "-n", &value)) {
        if (!hgp_cli_parse_range (value, 1, 100000000, &n))
            return hgp_cli_usage_error (app, "-n wants 1..100000000 requests");
        set->requests = (uint64_t) n;
    }
    else
    if (hgp_cli_option (argc, argv, i, "-w", &value)) {
        if (!hgp_cli_parse_range (value, 1, 100000, &n))
            return hgp_cli_usage_error (app, "-w wants a window of 1..100000");
        set->window = (uint32_t) n;
    }
    else
    if (hgp_cli_option (argc, argv, i, "-k", &value)) {
        if (!hgp_cli_parse_range (value, 1, 10000000, &n))
            return hgp_cli_usage_error (app, "-k wants 1..10000000 keys");
        set->nkeys = (uint32_t) n;
    }
    else
    if (hgp_cli_option (argc, argv, i, "--op", &value)) {
        if (value && streq (value, "incr"))
            set->op = HGP_OP_INCR;
        else
        if (value && streq (value, "get"))
            set->op = HGP_OP_GET;
        else
            return hgp_cli_usage_error (app, "--op wants incr or get");
    }
    else
    if (hgp_cli_option (argc, argv, i, "--prefix", &value)) {
        //  Room for the largest key index after the prefix
        if (!value || !hgp_id_valid (value, strlen (value))
        ||  strlen (value) > HGP_BENCH_PREFIX_MAX)
            return hgp_cli_usage_error (app, "--prefix wants 1-%d bytes of "
                                        "A-Z a-z 0-9 _ - . :",
                                        HGP_BENCH_PREFIX_MAX);
        snprintf (set->prefix, sizeof set->prefix, "%s", value);
    }
    else
    if (hgp_cli_option (argc, argv, i, "--type", &value)) {
        if (!value || !hgp_id_valid (value, strlen (value)))
            return hgp_cli_usage_error (app, "--type wants a counter type:"
                                        " 1-%d bytes of A-Z a-z 0-9 _ - . :",
                                        HGP_ID_MAX);
        snprintf (set->type, sizeof set->type, "%s", value);
    }
    else
    if (hgp_cli_option (argc, argv, i, "--users", &value)) {
        if (!hgp_cli_parse_range (value, 1, 99999999, &n))
            return hgp_cli_usage_error (app, "--users wants 1..99999999");
        set->users = (uint32_t) n;
    }
    else
    if (hgp_cli_is_option (argv [*i]))
        return hgp_cli_usage_error (app, "unknown option '%s'", argv [*i]);
    else
        return hgp_cli_usage_error (app, "unexpected argument '%s'", argv [*i]);
    return 0;
}

//  The exit code of a bench that ran, after its warnings on stderr
static int
s_bench_outcome (hgp_bench_t *bench)
{
    const hgp_reply_t *stopped = hgp_bench_stopped (bench);
    if (stopped)
        fprintf (stderr, "hgp: %s: %s; %llu requests not sent\n",
                 stopped->error.code, stopped->error.message,
                 (unsigned long long) hgp_bench_unsent (bench));
    hgp_bench_verify_t verify = hgp_bench_verify (bench);
    const hgp_reply_t *unread = hgp_bench_unread (bench);
    if (verify == HGP_BENCH_VERIFY_UNREAD)
        fprintf (stderr, "hgp: %s: %s\n", unread->error.code,
                 unread->error.message);
    if (verify == HGP_BENCH_VERIFY_FAILED)
        return HGP_CLI_EXIT_ERROR;
    if (verify == HGP_BENCH_VERIFY_UNREAD)
        return hgp_cli_exit_code (unread);
    return hgp_bench_cut (bench) ? HGP_CLI_EXIT_UNKNOWN : HGP_CLI_EXIT_OK;
}

static int
s_cmd_bench (hgp_cli_t *app, int argc, char *argv [])
{
    hgp_bench_settings_t settings;
    hgp_bench_settings_init (&settings);
    int rc = 0;
    for (int i = 0; i < argc && !rc; i++)
        rc = s_bench_option (app, &settings, argc, argv, &i);
    if (rc || (rc = hgp_cli_connect (app)))
        return rc;
    settings.timeout_ms = app->timeout_ms;
    //  With discovery: hear every live broker first, so the load is spread
    //  over all of them from the first request
    hgp_client_brokers (app->client, (int) app->settle_ms, NULL, 0);
    hgp_bench_t *bench = hgp_bench_new (app->client, &settings);
    hgp_reply_t rep;
    hgp_reply_init (&rep);
    if (hgp_bench_run (bench, &rep))
        rc = hgp_cli_reply_error (app, &rep, NULL);
    else {
        rc = s_bench_outcome (bench);
        if (app->json) {
            json_t *obj = hgp_bench_json (bench);
            hgp_cli_json_print (&obj, HGP_CLI_JSON_ROUNDED);
        }
        else
            hgp_bench_print (bench, stdout);
    }
    hgp_reply_clear (&rep);
    hgp_bench_destroy (&bench);
    return rc;
}

//  --------------------------------------------------------------------------
//  Command table and main

static const hgp_cli_command_t s_commands [] = {
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
      hgp_cli_incr },
    { "get", "RES TYPE",
      "print a counter's value (0 if never incremented)",
      "Prints the value of counter TYPE of resource RES; a counter never\n"
      "incremented is 0. Sees every increment acknowledged before it.\n",
      hgp_cli_get },
    { "mget", "RES:TYPE...",
      "print \"RES TYPE VALUE\" for each key",
      "Prints one line \"RES TYPE VALUE\" per key, in the order given.\n"
      "Each key is split at its LAST ':', because resource ids may contain\n"
      "':' (\"user:7:like\" is resource \"user:7\", type \"like\"); so a\n"
      "counter type used here must not contain ':'. More than 1000 keys are\n"
      "read in several requests, and nothing is printed unless all succeed.\n",
      hgp_cli_mget },
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
      hgp_cli_ping },
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
      hgp_cli_actors },
    { "targets", "",
      "print a Prometheus file_sd target list of every process",
      "Asks every known broker (as actors does) where the metrics of the\n"
      "processes it sees are: itself, its actors (from their READY) and the\n"
      "processes that announced themselves (gateways, hgp-kafka-mock), and\n"
      "prints them as a Prometheus file_sd list, grouped by role (label\n"
      "role: broker, counter, analytics, gateway, kafka; job \"hgp\"). Write\n"
      "it where configs/prometheus.yml's file_sd_configs look, e.g.\n"
      "  bin/hgp targets > var/targets.json\n"
      "and run it again as processes come and go. Exits as actors does.\n",
      hgp_cli_targets },
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
      hgp_cli_top },
    { "stats", "RES TYPE [--window 1h|24h]",
      "print a resource's total, trending score and counts per minute",
      "Prints \"total N\", \"trending S\" and one \"TIME COUNT\" line per\n"
      "minute of the window (24h by default) that has events (UTC; the\n"
      "width is analytics/bucket), from the analytics service. With --json:\n"
      "what GET /api/v1/counter/RES/TYPE/stats answers (every minute of the\n"
      "window, zeros included), plus \"status\".\n",
      hgp_cli_stats },
    { "uniques", "RES TYPE",
      "print how many distinct users a counter has seen (estimated)",
      "Prints the number of distinct user_ids among the increments of\n"
      "RES/TYPE that carried one, as the analytics service's HyperLogLog\n"
      "estimates it (standard error 0.81 %; types in analytics/no_uniques\n"
      "are not counted). With --json: what GET\n"
      "/api/v1/counter/RES/TYPE/uniques answers, plus \"status\".\n",
      hgp_cli_uniques },
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
    { "bench", "[-n N] [-w W] [-k K] [--op incr|get] [--prefix P] [--type T]"
      " [--users U]",
      "load test with an exactly-once check",
      "Sends N requests (default 100000), W in flight at once (default 128),\n"
      "over K keys \"P<i>\"/T (default 1000; P defaults to a random\n"
      "\"bench-XXXXXXXX-\" so runs do not collide, T to \"bench\", a type\n"
      "analytics does not rank), each to a random key. With --users, each\n"
      "increment carries user_id \"P\"u<j>, the next of U in turn.\n"
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
      "  --prefix P       resource id prefix, up to 118 bytes\n"
      "  --type T         counter type (default bench)\n"
      "  --users U        user ids in turn, 1..99999999\n",
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
s_command_usage (const hgp_cli_command_t *command)
{
    printf ("usage: hgp [GLOBAL OPTIONS] %s%s%s\n\n%s\n"
            "Global options, id syntax and exit codes: hgp --help\n",
            command->name, *command->synopsis ? " " : "", command->synopsis,
            command->help);
}

//  A global option at argv [*i] (stepping past its value): 1 taken, 0
//  not a global option, or minus an exit code (a bad value, reported)
static int
s_global_option (hgp_cli_t *app, int argc, char *argv [], int *i)
{
    const char *value;
    int64_t n;
    if (streq (argv [*i], "--json"))
        app->json = true;
    else
    if (streq (argv [*i], "--trace"))
        app->trace = true;
    else
    if (hgp_cli_option (argc, argv, i, "--broker", &value)) {
        if (!value || !*value)
            return -hgp_cli_usage_error (app, "--broker needs an ENDPOINT");
        app->broker = value;
        //  HOST:PORT is TCP; anything else must name its transport
        if (!strstr (value, "://")) {
            const char *colon = strrchr (value, ':');
            if (!colon || colon == value || !colon [1]
            ||  strspn (colon + 1, "0123456789") != strlen (colon + 1))
                return -hgp_cli_usage_error (app, "--broker wants an "
                    "endpoint like tcp://HOST:PORT (or HOST:PORT), not '%s'",
                    value);
            snprintf (app->broker_tcp, sizeof app->broker_tcp, "tcp://%s",
                      value);
            app->broker = app->broker_tcp;
        }
    }
    else
    if (hgp_cli_option (argc, argv, i, "-c", &value)
    ||  hgp_cli_option (argc, argv, i, "--config", &value)) {
        if (!value || !*value)
            return -hgp_cli_usage_error (app, "-c needs a CONFIG file");
        app->config_path = value;
    }
    else
    if (hgp_cli_option (argc, argv, i, "--timeout", &value)) {
        if (!hgp_cli_parse_range (value, 1, HGP_TIMEOUT_MAX, &n))
            return -hgp_cli_usage_error (app, "--timeout wants 1..%d ms",
                                         HGP_TIMEOUT_MAX);
        app->timeout_ms = (uint32_t) n;
    }
    else
        return 0;
    return 1;
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

    hgp_cli_t app_struct, *app = &app_struct;
    memset (app, 0, sizeof *app);
    if (hgp_process_version ("hgp", argc, argv))
        return HGP_CLI_EXIT_OK;
    int i, rc;
    for (i = 1; i < argc && hgp_cli_is_option (argv [i]); i++) {
        if (s_is_help (argv [i])) {
            s_usage (stdout);
            return HGP_CLI_EXIT_OK;
        }
        if ((rc = s_global_option (app, argc, argv, &i)) < 0)
            return -rc;
        if (rc == 0)
            return hgp_cli_usage_error (app, "unknown option '%s'", argv [i]);
    }
    if (i == argc) {
        s_usage (stderr);
        return HGP_CLI_EXIT_USAGE;
    }
    const char *name = argv [i++];
    if (streq (name, "help")) {
        if (i == argc) {
            s_usage (stdout);
            return HGP_CLI_EXIT_OK;
        }
        name = argv [i];
        for (size_t c = 0; c < COMMANDS; c++)
            if (streq (name, s_commands [c].name)) {
                s_command_usage (&s_commands [c]);
                return HGP_CLI_EXIT_OK;
            }
        return hgp_cli_usage_error (app, "unknown command '%s'", name);
    }
    for (size_t c = 0; c < COMMANDS; c++)
        if (streq (name, s_commands [c].name))
            app->command = &s_commands [c];
    if (!app->command)
        return hgp_cli_usage_error (app, "unknown command '%s'", name);
    for (int j = i; j < argc && !streq (argv [j], "--"); j++)
        if (s_is_help (argv [j])) {
            s_command_usage (app->command);
            return HGP_CLI_EXIT_OK;
        }
    //  Global options after the command: taken out of its arguments
    char **args = (char **) calloc ((size_t) argc + 1, sizeof (char *));
    assert (args);
    int nargs = 0;
    bool rest = false;
    for (int j = i; j < argc; j++) {
        rest = rest || streq (argv [j], "--");
        rc = rest ? 0 : s_global_option (app, argc, argv, &j);
        if (rc < 0) {
            free (args);
            return -rc;
        }
        if (rc == 0)
            args [nargs++] = argv [j];
    }
    rc = app->command->handler (app, nargs, args);
    free (args);
    hgp_client_destroy (&app->client);
    hgp_keys_destroy (&app->keys);
    hgp_config_destroy (&app->config);
    return rc;
}
