/*  hgp_kafka_mock.c - hgp-kafka-mock: a local Kafka for `make run` and tests
 *
 *  No Kafka server is packaged in Debian, so local runs use librdkafka's
 *  mock cluster (rdkafka_mock.h): real Kafka brokers on loopback that speak
 *  the real wire protocol (produce, idempotent producers, fetch, consumer
 *  groups with offset commits), with everything held in this process's
 *  memory. This program creates one, creates the event topic with
 *  kafka/partitions partitions, prints the bootstrap address and waits for
 *  SIGTERM. Every hgp process then uses it through HGP_KAFKA_BROKERS, the
 *  same way it would use real brokers.
 *
 *  What it is not: durable. Stopping this process loses the whole log, and
 *  librdkafka keeps at most 5 MB (or 100,000 produce batches) per
 *  partition, dropping the oldest beyond that (`hgp replay` notices and
 *  refuses). Anything that needs the log to survive needs real Kafka.
 *
 *  The mock picks its own free ports; there is no way to choose them. So
 *  the address is printed on stdout as "HGP_KAFKA_BROKERS=<host:port,...>"
 *  and, with --address-file, also written (atomically) to a file that
 *  scripts and tests wait for.
 *
 *  Its process metrics (CPU above all: the mock's cost grows with the log)
 *  are at kafka/metrics, announced to the brokers as role "kafka" unless
 *  kafka/announce is 0.
 */
#include "hgp_announcer.h"
#include "hgp_config.h"
#include "hgp_exporter.h"
#include "hgp_process.h"
#include <czmq.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: hgp-kafka-mock [-c CONFIG] [--address-file FILE]\n"
        "\n"
        "Starts an in-memory Kafka cluster (librdkafka's mock cluster) with\n"
        "topic kafka/topic of kafka/partitions partitions, prints\n"
        "HGP_KAFKA_BROKERS=<bootstrap address> and runs until SIGTERM or\n"
        "SIGINT. The log lives in memory only: it is lost when this stops.\n"
        "\n"
        "  -c, --config FILE     ZPL config (default: $HGP_CONFIG, else\n"
        "                        configs/hgp.cfg if present, else defaults)\n"
        "  --address-file FILE   also write the address to FILE\n"
        "  --brokers N           mock brokers, 1..9 (default 1)\n"
        "  -h, --help            this text\n");
}

int
main (int argc, char *argv [])
{
    const char *address_file = NULL;
    int brokers = 1;
    if (hgp_process_version ("hgp-kafka-mock", argc, argv))
        return 0;
    for (int i = 1; i < argc; i++) {
        if (streq (argv [i], "-h") || streq (argv [i], "--help")) {
            s_usage (stdout);
            return 0;
        }
        if ((streq (argv [i], "-c") || streq (argv [i], "--config"))
        &&  i + 1 < argc)
            i++;
        else
        if (streq (argv [i], "--address-file") && i + 1 < argc)
            address_file = argv [++i];
        else
        if (streq (argv [i], "--brokers") && i + 1 < argc
        &&  atoi (argv [i + 1]) >= 1 && atoi (argv [i + 1]) <= 9)
            brokers = atoi (argv [++i]);
        else {
            fprintf (stderr, "hgp-kafka-mock: unexpected argument '%s'\n\n",
                     argv [i]);
            s_usage (stderr);
            return 1;
        }
    }
    hgp_process_init ("hgp-kafka-mock");
    hgp_config_t *config = hgp_config_load (hgp_process_config_arg (argc, argv));
    if (!config)
        return 1;
    const char *topic = hgp_config_str (config, "kafka/topic", "counter_events");
    int64_t partitions = hgp_config_int (config, "kafka/partitions", 8, 1, 1000);
    if (hgp_config_error (config)) {
        zsys_error ("%s", hgp_config_error (config));
        hgp_config_destroy (&config);
        return 1;
    }

    //  The mock cluster needs a client handle for its bookkeeping; it runs
    //  its brokers on threads of its own
    char errstr [512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new ();
    rd_kafka_conf_set (conf, "log_level", "4", errstr, sizeof errstr);
    //  The mock brokers' sockets take their options from this handle.
    //  Without TCP_NODELAY, pipelined produce responses wait for the
    //  client's delayed ACK: 40 ms per batch on loopback.
    rd_kafka_conf_set (conf, "socket.nagle.disable", "true", errstr,
                       sizeof errstr);
    rd_kafka_t *rk = rd_kafka_new (RD_KAFKA_PRODUCER, conf, errstr,
                                   sizeof errstr);
    if (!rk) {
        zsys_error ("hgp-kafka-mock: cannot create a client: %s", errstr);
        hgp_config_destroy (&config);
        return 1;
    }
    rd_kafka_mock_cluster_t *cluster = rd_kafka_mock_cluster_new (rk, brokers);
    if (!cluster) {
        zsys_error ("hgp-kafka-mock: cannot create the mock cluster");
        rd_kafka_destroy (rk);
        hgp_config_destroy (&config);
        return 1;
    }
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create (
        cluster, topic, (int) partitions, brokers);
    if (err) {
        zsys_error ("hgp-kafka-mock: cannot create topic %s: %s", topic,
                    rd_kafka_err2str (err));
        rd_kafka_mock_cluster_destroy (cluster);
        rd_kafka_destroy (rk);
        hgp_config_destroy (&config);
        return 1;
    }
    const char *address = rd_kafka_mock_cluster_bootstraps (cluster);
    if (address_file) {
        char *tmp = zsys_sprintf ("%s.tmp", address_file);
        FILE *f = fopen (tmp, "w");
        if (!f || fprintf (f, "%s\n", address) < 0 || fclose (f)
        ||  rename (tmp, address_file)) {
            zsys_error ("hgp-kafka-mock: cannot write %s", address_file);
            zstr_free (&tmp);
            rd_kafka_mock_cluster_destroy (cluster);
            rd_kafka_destroy (rk);
            hgp_config_destroy (&config);
            return 1;
        }
        zstr_free (&tmp);
    }
    hgp_prom_t *prom = hgp_prom_new ("kafka-mock");
    assert (prom);
    int series = hgp_prom_declare (prom, HGP_PROM_GAUGE,
        "hgp_kafka_mock_partitions", "", "Partitions of the event topic.", 1);
    hgp_prom_set (prom, series, partitions);
    hgp_exporter_t *exporter = hgp_exporter_start (config, "kafka", prom);
    hgp_announcer_t *announcer = NULL;
    if (exporter && hgp_config_int (config, "kafka/announce", 1, 0, 1) == 1)
        announcer = hgp_announcer_new (config, "kafka",
                                       hgp_exporter_url (exporter));
    printf ("HGP_KAFKA_BROKERS=%s\n", address);
    zsys_info ("hgp-kafka-mock: %d broker(s) at %s, topic %s with %d"
               " partitions; in memory only, lost when this stops",
               brokers, address, topic, (int) partitions);

    while (!zsys_interrupted)
        zclock_sleep (100);

    zsys_info ("hgp-kafka-mock: stopping; the log is gone");
    hgp_announcer_destroy (&announcer);
    hgp_exporter_destroy (&exporter);
    hgp_prom_destroy (&prom);
    if (address_file)
        unlink (address_file);
    rd_kafka_mock_cluster_destroy (cluster);
    rd_kafka_destroy (rk);
    hgp_config_destroy (&config);
    return 0;
}
