/*  hgp_counter_main.c - hgp-counter: one counter actor in a process
 *
 *  Checks the configuration, starts the actor (hgp_counter.c) and waits for
 *  SIGTERM or SIGINT; destroying the actor tells every broker DISCONNECT,
 *  so a clean stop hands its queued requests (and its keys) to the other
 *  actors at once instead of after the heartbeat expiry. Exit 0 after a clean stop, 1 on a
 *  bad configuration or command line.
 */
#include "hgp_counter.h"
#include "hgp_config.h"
#include "hgp_process.h"
#include <signal.h>

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: hgp-counter [-c CONFIG]\n"
        "\n"
        "Serves the counter service (incr, get, mget) from Redis to the hgp\n"
        "brokers, logging every increment to Kafka before applying it. Runs\n"
        "until SIGTERM or SIGINT.\n"
        "\n"
        "  -c, --config FILE  ZPL config (default: $HGP_CONFIG, else\n"
        "                     configs/hgp.cfg if present, else defaults)\n"
        "  -h, --help         this text\n"
        "\n"
        "Settings used: discovery/interface, discovery/port,\n"
        "discovery/interval, broker/actor_endpoint (when discovery is off),\n"
        "heartbeat/interval, heartbeat/liveness, redis/url, redis/timeout,\n"
        "counter/capacity, counter/batch_max, counter/dedup_ttl,\n"
        "counter/event_log, counter/lease, kafka/brokers, kafka/topic,\n"
        "kafka/timeout. Each can be overridden by HGP_<SECTION>_<KEY>, e.g.\n"
        "HGP_KAFKA_BROKERS.\n"
        "\n"
        "With discovery/interface set, it serves every broker whose beacon it\n"
        "hears there; start more hgp-counter processes to scale out.\n");
}

int
main (int argc, char *argv [])
{
    for (int i = 1; i < argc; i++) {
        if (streq (argv [i], "-h") || streq (argv [i], "--help")) {
            s_usage (stdout);
            return 0;
        }
        if ((streq (argv [i], "-c") || streq (argv [i], "--config"))
        &&  i + 1 < argc)
            i++;
        else {
            fprintf (stderr, "hgp-counter: unexpected argument '%s'\n\n",
                     argv [i]);
            s_usage (stderr);
            return 1;
        }
    }
    hgp_process_init ("hgp-counter");
    //  hiredis writes with write(2): a Redis that went away must be an
    //  EPIPE we turn into a 503/504, not a signal that kills us
    signal (SIGPIPE, SIG_IGN);

    hgp_config_t *config = hgp_config_load (hgp_process_config_arg (argc, argv));
    if (!config)
        return 1;                       //  hgp_config_load said why
    char *error = hgp_counter_config_check (config);
    if (error) {
        zsys_error ("%s (config from %s)", error, hgp_config_source (config));
        free (error);
        hgp_config_destroy (&config);
        return 1;
    }
    zsys_info ("hgp-counter: config from %s", hgp_config_source (config));

    zactor_t *counter = zactor_new (hgp_counter_actor, config);
    assert (counter);
    while (!zsys_interrupted)
        zclock_sleep (100);
    zsys_info ("hgp-counter: stopping");
    zactor_destroy (&counter);
    hgp_config_destroy (&config);
    return 0;
}
