/*  hgp_counter_main.c - hgp-counter: one counter actor in a process
 *
 *  Checks the configuration, starts the actor (hgp_counter.c) and waits for
 *  SIGTERM or SIGINT; destroying the actor tells every broker DISCONNECT,
 *  so a clean stop hands its queued requests (and its keys) to the other
 *  actors at once instead of after the heartbeat expiry. Exit 0 after a
 *  clean stop, 1 on a bad configuration or command line
 *  (hgp_process_run_actor).
 */
#include "hgp_counter.h"
#include "hgp_config.h"
#include "hgp_process.h"

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
    return hgp_process_run_actor ("hgp-counter", argc, argv, s_usage,
                                  hgp_counter_config_check,
                                  hgp_counter_actor);
}
