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
    return hgp_process_run_actor ("hgp-analytics", argc, argv, s_usage,
                                  hgp_analytics_config_check,
                                  hgp_analytics_actor);
}
