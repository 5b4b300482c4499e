/*  hgp_bench.h - the load generator behind `hgp bench`
 *
 *  Keeps W requests in flight on one client and sends the next as soon as
 *  a reply comes, each to a random one of K keys "<prefix><i>"/<type>
 *  (type "bench" by default), each increment from the next of U users
 *  "<prefix>u<j>" in turn when users is set.
 *  For incr it checks exactly-once end to end: the counters must have
 *  grown by at least the acknowledged increments and at most that plus
 *  the indeterminate ones (504s, and requests given up on after their
 *  deadline). It measures; the front end (hgp_cli.c) parses the command
 *  line, decides the exit code and prints what hgp_bench_print or
 *  hgp_bench_json give it.
 *
 *  A bench borrows its client for its whole life; both belong to the
 *  calling thread.
 */
#ifndef HGP_BENCH_H_INCLUDED
#define HGP_BENCH_H_INCLUDED

#include "hgp_client.h"
#include <jansson.h>
#include <stdio.h>

typedef struct _hgp_bench_t hgp_bench_t;

/*  Longest key prefix: room is left for a 10-digit key index */
#define HGP_BENCH_PREFIX_MAX (HGP_ID_MAX - 10)

/*  What to run; hgp_bench_settings_init gives the defaults */
typedef struct {
    hgp_op_t op;                /* HGP_OP_INCR (default) or HGP_OP_GET      */
    uint64_t requests;          /* requests to send, default 100000         */
    uint32_t window;            /* requests in flight, default 128          */
    uint32_t nkeys;             /* distinct keys, default 1000              */
    char prefix [HGP_BENCH_PREFIX_MAX + 1];  /* default "bench-XXXXXXXX-",  */
                                /* random, so runs do not collide           */
    uint32_t timeout_ms;        /* deadline of each request                 */
    char type [HGP_ID_MAX + 1]; /* counter type, default "bench" (analytics
                                   ranks no type of analytics/skip)         */
    uint32_t users;             /* incr: user ids in turn, 0 = none         */
} hgp_bench_settings_t;

/*  The exactly-once check, after a run */
typedef enum {
    HGP_BENCH_VERIFY_NA,        /* op get: nothing to check                 */
    HGP_BENCH_VERIFY_OK,        /* acked <= increase <= acked + unknown     */
    HGP_BENCH_VERIFY_FAILED,    /* the counters disagree with the replies   */
    HGP_BENCH_VERIFY_UNREAD     /* could not read the counters back         */
} hgp_bench_verify_t;

/*  Fill settings with the defaults (and a fresh random prefix) */
void hgp_bench_settings_init (hgp_bench_settings_t *settings);

/*  A bench of settings over client (borrowed, connected) */
hgp_bench_t *hgp_bench_new (hgp_client_t *client,
                            const hgp_bench_settings_t *settings);
void hgp_bench_destroy (hgp_bench_t **self_p);

/*  Ping, read the counters (incr), send the load until every request is
    answered or given up on, read the counters again and verify. 0 when
    the load ran (whatever its outcome); -1 when it could not start, with
    the error reply in rep (the ping or the first read failed). Stops
    early, leaving the rest unknown, when the broker cannot be reached or
    on SIGINT (zsys_interrupted). */
int hgp_bench_run (hgp_bench_t *self, hgp_reply_t *rep);

/*  After a run: the outcome of the check */
hgp_bench_verify_t hgp_bench_verify (hgp_bench_t *self);

/*  After a run: why the counters could not be read back (error reply),
    when hgp_bench_verify says HGP_BENCH_VERIFY_UNREAD */
const hgp_reply_t *hgp_bench_unread (hgp_bench_t *self);

/*  After a run: the error that stopped sending, or NULL when every
    request was sent */
const hgp_reply_t *hgp_bench_stopped (hgp_bench_t *self);

/*  After a run: requests not sent (sending stopped, or interrupted) */
uint64_t hgp_bench_unsent (hgp_bench_t *self);

/*  After a run: was it cut short, by a send failure or SIGINT? Then the
    outcome of the unsent and unanswered requests is unknown. */
bool hgp_bench_cut (hgp_bench_t *self);

/*  After a run: the report, as lines of text */
void hgp_bench_print (hgp_bench_t *self, FILE *out);

/*  After a run: the report as one object (the caller's); its reals are
    rounded to milliseconds, print them with HGP_CLI_JSON_ROUNDED */
json_t *hgp_bench_json (hgp_bench_t *self);

#endif
