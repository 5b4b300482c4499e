/*  hgp_broker_main.c - the hgp-broker process
 *
 *  Reads the config, starts the broker actor (bus/hgp_broker.c) and waits
 *  for SIGINT or SIGTERM; then stops the actor, which answers what is still
 *  pending and logs a summary. Exit 0 after a clean stop, 1 when the config
 *  is bad, an endpoint cannot be bound, or the broker stopped on its own.
 */
#include "hgp_broker.h"
#include "hgp_config.h"
#include "hgp_process.h"

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: hgp-broker [-c CONFIG]\n"
        "\n"
        "The hgp message broker (schemas/PROTOCOL.md). Clients connect to\n"
        "broker/client_endpoint, actors to broker/actor_endpoint.\n"
        "\n"
        "  -c, --config FILE  ZPL config file (default: $HGP_CONFIG, else\n"
        "                     configs/hgp.cfg if present, else built-in defaults)\n"
        "  --selftest         run the broker's self test on loopback and exit\n"
        "  -h, --help         show this help\n"
        "\n"
        "Every setting can be overridden by the environment, HGP_<SECTION>_<KEY>:\n"
        "HGP_BROKER_CLIENT_ENDPOINT, HGP_BROKER_ACTOR_ENDPOINT,\n"
        "HGP_BROKER_QUEUE_LIMIT, HGP_HEARTBEAT_INTERVAL, HGP_HEARTBEAT_LIVENESS.\n"
        "Logs go to stdout. SIGINT or SIGTERM stops it cleanly.\n");
}

int
main (int argc, char *argv [])
{
    bool selftest = false;
    for (int i = 1; i < argc; i++) {
        if (streq (argv [i], "-h") || streq (argv [i], "--help")) {
            s_usage (stdout);
            return 0;
        }
        else
        if (streq (argv [i], "-c") || streq (argv [i], "--config")) {
            if (++i == argc) {
                fprintf (stderr, "hgp-broker: %s needs a file name\n",
                         argv [i - 1]);
                s_usage (stderr);
                return 1;
            }
        }
        else
        if (streq (argv [i], "--selftest"))
            selftest = true;
        else {
            fprintf (stderr, "hgp-broker: unknown argument '%s'\n", argv [i]);
            s_usage (stderr);
            return 1;
        }
    }
    hgp_process_init ("hgp-broker");
    if (selftest) {
        hgp_broker_test (true);
        return 0;
    }
    hgp_config_t *config = hgp_config_load (hgp_process_config_arg (argc, argv));
    if (!config)
        return 1;               //  hgp_config_load said why
    zsys_info ("hgp-broker: config from %s", hgp_config_source (config));

    //  The actor reads its settings and binds before zactor_new returns
    zactor_t *broker = zactor_new (hgp_broker_actor, config);
    assert (broker);
    hgp_config_destroy (&config);
    zstr_send (broker, "STATUS");
    char *status = zstr_recv (broker);
    int rc = 0;
    if (!status || !streq (status, "OK")) {
        if (status)
            zsys_error ("hgp-broker: %s", status + (strncmp (status, "ERROR ", 6)
                                                    ? 0 : 6));
        rc = zsys_interrupted ? 0 : 1;
        zstr_free (&status);
        zactor_destroy (&broker);
        return rc;
    }
    zstr_free (&status);

    //  The broker never speaks unasked unless it stopped on its own
    zpoller_t *poller = zpoller_new (broker, NULL);
    assert (poller);
    while (!zsys_interrupted) {
        void *which = zpoller_wait (poller, 1000);
        if (which == broker) {
            char *why = zstr_recv (broker);
            zsys_error ("hgp-broker: the broker stopped: %s",
                        why ? why : "(no reason)");
            zstr_free (&why);
            rc = 1;
            break;
        }
        if (zpoller_terminated (poller))
            break;
    }
    zpoller_destroy (&poller);
    zactor_destroy (&broker);
    return rc;
}
