/*  hgp_cli.h - what the commands of bin/hgp share (private to bin/hgp)
 *
 *  bin/hgp is one front end (hgp_cli.c: global options, the command
 *  table, usage, errors, connecting) and its commands, grouped by what
 *  they ask: hgp_cli_counter.c (incr, get, mget, top, stats: about
 *  counters), hgp_cli_broker.c (ping, actors: about the bus itself);
 *  config, replay and bench are short front ends in hgp_cli.c over
 *  hgp_config, hgp_replay and hgp_bench.
 *
 *  Every command keeps the CLI's contract:
 *  - A value is printed only for a status 200 reply that carries it;
 *    every other outcome goes through hgp_cli_reply_error or
 *    hgp_cli_usage_error: "hgp: <code>: <message>" on stderr (and a JSON
 *    error object on stdout with --json) and a non-zero exit code.
 *  - Arguments are checked with the codec's own rules (hgp_id_valid,
 *    non-zero 64-bit delta), so a typo is a usage error (exit 2), not a
 *    400 from the broker.
 */
#ifndef HGP_CLI_H_INCLUDED
#define HGP_CLI_H_INCLUDED

#include "hgp_client.h"
#include "hgp_config.h"
#include "hgp_keys.h"

#define HGP_CLI_EXIT_OK      0  /* success                                  */
#define HGP_CLI_EXIT_ERROR   1  /* error reply, definite                    */
#define HGP_CLI_EXIT_USAGE   2  /* bad command line or config               */
#define HGP_CLI_EXIT_UNKNOWN 3  /* 504 timeout or broker unreachable        */

typedef struct _hgp_cli_command_t hgp_cli_command_t;

/*  One run of bin/hgp: the global options, and what they lead to */
typedef struct {
    bool json;                  /* --json: one JSON object per command      */
    bool trace;                 /* --trace: requests carry a sampled trace  */
    char traceparent [56];      /* ... this one, printed on stderr          */
    const char *config_path;    /* -c FILE, or NULL for the default search  */
    const char *broker;         /* --broker, or NULL: from the config       */
    char broker_tcp [300];      /* --broker HOST:PORT as tcp://HOST:PORT    */
    uint32_t timeout_ms;        /* --timeout, or 0: from the config         */
    hgp_config_t *config;       /* loaded on first need                     */
    hgp_client_t *client;       /* connected on first need                  */
    hgp_keys_t *keys;           /* client certificate, for --broker         */
    int64_t settle_ms;          /* time to hear every broker's beacon       */
    const hgp_cli_command_t *command;   /* the command being run            */
} hgp_cli_t;

/*  A command: runs with the arguments after its name, returns the exit
    code */
typedef int (hgp_cli_handler_fn) (hgp_cli_t *app, int argc, char *argv []);

struct _hgp_cli_command_t {
    const char *name;           /* as typed                                 */
    const char *synopsis;       /* arguments, for usage lines               */
    const char *summary;        /* one line for `hgp --help`                */
    const char *help;           /* the rest of `hgp COMMAND --help`         */
    hgp_cli_handler_fn *handler;    /* runs it                              */
};

/*  Errors. A usage error says what is wrong and where to look; returns
    HGP_CLI_EXIT_USAGE. */
int hgp_cli_usage_error (hgp_cli_t *app, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

/*  Report an error reply; returns its exit code. id, when given, is the
    request id the user can retry with (named on a 504). */
int hgp_cli_reply_error (hgp_cli_t *app, const hgp_reply_t *rep,
                         const char *id);

/*  The exit code of a reply: ok, error (definite) or unknown (504) */
int hgp_cli_exit_code (const hgp_reply_t *rep);

/*  Arguments. Is arg an option (as opposed to a positional, which may be
    "-5")? */
bool hgp_cli_is_option (const char *arg);

/*  The last branch of a command's argument loop: an unknown option is an
    error, else arg is the next of at most max positionals. 0 or an exit
    code. */
int hgp_cli_positional (hgp_cli_t *app, const char *arg, bool options,
                        const char **pos, int *npos, int max);

/*  Does argv [*i] name option `name`, as "name VALUE" or "name=VALUE"? If
    so set *value (NULL when the value is missing) and step *i past it. */
bool hgp_cli_option (int argc, char *argv [], int *i, const char *name,
                     const char **value);

/*  Strict signed 64-bit decimal: all of s, no overflow */
bool hgp_cli_parse_int64 (const char *s, int64_t *out);

/*  The same within min..max; false for s NULL */
bool hgp_cli_parse_range (const char *s, int64_t min, int64_t max,
                          int64_t *out);

/*  0 if s is an id, else a usage error naming what it should be */
int hgp_cli_check_id (hgp_cli_t *app, const char *what, const char *s);

/*  Load the config and connect, once. 0 or an exit code. */
int hgp_cli_connect (hgp_cli_t *app);

/*  A request of op with a fresh random id and the app's deadline */
void hgp_cli_request (hgp_cli_t *app, hgp_request_t *req, hgp_op_t op);

/*  The commands of hgp_cli_counter.c and hgp_cli_broker.c */
hgp_cli_handler_fn hgp_cli_incr, hgp_cli_get, hgp_cli_mget, hgp_cli_top,
                   hgp_cli_stats, hgp_cli_uniques, hgp_cli_ping, hgp_cli_actors,
                   hgp_cli_targets;

#endif
