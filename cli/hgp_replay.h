/*  hgp_replay.h - `hgp replay`: the counters rebuilt from the event log
 *
 *  Disaster recovery for when the bus may be of no help, so it talks to
 *  Kafka and Redis itself, and applies events with the code the counter
 *  actors use (hgp_ledger_replay): once per request id, fences and
 *  forged identities respected. What it adds is the guard around it:
 *  it refuses to replay onto counters already in Redis, because events
 *  whose request records have expired would count twice; with reset it
 *  deletes the counters and the request records first.
 *
 *  The front end (hgp_cli.c) parses the command line and prints the
 *  outcome; progress lines go to stderr from here when asked for.
 */
#ifndef HGP_REPLAY_H_INCLUDED
#define HGP_REPLAY_H_INCLUDED

#include "hgp_config.h"
#include "hgp_ledger.h"

typedef struct _hgp_replay_t hgp_replay_t;

/*  A replay with the config's Redis, event log and counter/dedup_ttl.
    Connects to nothing yet. NULL when the settings are bad, with a
    message for the operator in *error_p (the caller's to free). */
hgp_replay_t *hgp_replay_new (hgp_config_t *config, char **error_p);
void hgp_replay_destroy (hgp_replay_t **self_p);

/*  Read every partition from its start to where it ended when the replay
    started, applying each event to Redis. reset: delete the counters and
    request records first, instead of refusing when counters exist.
    verbose: progress lines on stderr. 0 when the log was read through
    (stats says how many events applied, and how many could not be), or
    -1 with the reason in message. */
int hgp_replay_run (hgp_replay_t *self, bool reset, bool verbose,
                    hgp_ledger_stats_t *stats, char *message, size_t size);

#endif
