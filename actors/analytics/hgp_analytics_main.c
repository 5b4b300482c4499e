/*  hgp_analytics_main.c - hgp-analytics: one analytics actor in a process
 *
 *  Checks the configuration, starts the actor (hgp_analytics.c) and waits
 *  for SIGTERM or SIGINT; destroying the actor leaves the consumer group
 *  (so its partitions move at once) and tells the broker DISCONNECT. Exit 0
 *  after a clean stop, 1 on a bad configuration or command line.
 */
#include "hgp_analytics.h"
#include "hgp_config.h"
#include "hgp_process.h"

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: hgp-analytics [-c CONFIG]\n"
        "\n"
        "Consumes the event log (Kafka topic kafka/topic) in consumer group\n"
        "analytics/group, keeps rankings and per-resource series in Redis,\n"
        "and serves top and stats to an hgp broker. Runs until SIGTERM or\n"
        "SIGINT.\n"
        "\n"
        "  -c, --config FILE  ZPL config (default: $HGP_CONFIG, else\n"
        "                     configs/hgp.cfg if present, else defaults)\n"
        "  -h, --help         this text\n"
        "\n"
        "Settings used: discovery/*, broker/actor_endpoint (when discovery\n"
        "is off), heartbeat/*, redis/*,\n"
        "kafka/brokers, kafka/topic, analytics/*. Each can be overridden by\n"
        "HGP_<SECTION>_<KEY>, e.g. HGP_KAFKA_BROKERS.\n");
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
            fprintf (stderr, "hgp-analytics: unexpected argument '%s'\n\n",
                     argv [i]);
            s_usage (stderr);
            return 1;
        }
    }
    hgp_process_init ("hgp-analytics");
    hgp_config_t *config = hgp_config_load (hgp_process_config_arg (argc, argv));
    if (!config)
        return 1;
    char *error = hgp_analytics_config_check (config);
    if (error) {
        zsys_error ("%s (config from %s)", error, hgp_config_source (config));
        free (error);
        hgp_config_destroy (&config);
        return 1;
    }
    zsys_info ("hgp-analytics: config from %s", hgp_config_source (config));
    zactor_t *analytics = zactor_new (hgp_analytics_actor, config);
    assert (analytics);
    while (!zsys_interrupted)
        zclock_sleep (100);
    zsys_info ("hgp-analytics: stopping");
    zactor_destroy (&analytics);
    hgp_config_destroy (&config);
    return 0;
}
