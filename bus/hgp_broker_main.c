/*  hgp_broker_main.c - the hgp-broker process
 *
 *  Two actors wired together: the broker (bus/hgp_broker.c) and, once it
 *  has bound, discovery (lib/hgp_discovery.c) publishing its beacon: its id
 *  and the two ports it bound. Waits for SIGINT or SIGTERM; then stops
 *  discovery first, which beacons "leaving" so clients and actors drop us
 *  at once and stop sending, and then the broker, which answers what is
 *  still pending and logs a summary. Exit 0 after a clean stop, 1 when the
 *  config is bad, an endpoint cannot be bound, or the broker stopped on
 *  its own.
 */
#include "hgp_broker.h"
#include "hgp_config.h"
#include "hgp_discovery.h"
#include "hgp_process.h"

//  The port of a bound "tcp://host:port", as a string into buf; NULL when
//  the endpoint is not TCP (nothing a beacon can advertise)
static const char *
s_port (const char *endpoint, char *buf, size_t size)
{
    const char *colon = strrchr (endpoint, ':');
    if (strncmp (endpoint, "tcp://", 6) != 0 || !colon || !colon [1])
        return NULL;
    snprintf (buf, size, "%s", colon + 1);
    return buf;
}

//  Start discovery and publish our beacon; NULL when the config is bad
static zactor_t *
s_discovery_start (zactor_t *broker, hgp_config_t *config)
{
    zactor_t *discovery = zactor_new (hgp_discovery_actor, config);
    assert (discovery);
    char *id = NULL, *client_endpoint = NULL, *actor_endpoint = NULL;
    zstr_send (broker, "ID");
    id = zstr_recv (broker);
    zstr_send (broker, "KEY");
    char *key = zstr_recv (broker);
    zstr_send (broker, "ENDPOINTS");
    zstr_recvx (broker, &client_endpoint, &actor_endpoint, NULL);
    char client_port [16], actor_port [16];
    if (id && client_endpoint && actor_endpoint
    &&  s_port (client_endpoint, client_port, sizeof client_port)
    &&  s_port (actor_endpoint, actor_port, sizeof actor_port))
        zstr_sendx (discovery, "PUBLISH", id, client_port, actor_port,
                    client_endpoint, actor_endpoint, key ? key : "", NULL);
    else {
        zstr_send (discovery, "MODE");
        char *mode = zstr_recv (discovery);
        if (mode && streq (mode, "beacon"))
            zsys_error ("hgp-broker: cannot beacon %s / %s: beacons carry"
                        " TCP ports only", client_endpoint, actor_endpoint);
        zstr_free (&mode);
    }
    zstr_free (&id);
    zstr_free (&key);
    zstr_free (&client_endpoint);
    zstr_free (&actor_endpoint);
    return discovery;
}

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
        "HGP_BROKER_QUEUE_LIMIT, HGP_HEARTBEAT_INTERVAL, HGP_HEARTBEAT_LIVENESS,\n"
        "HGP_DISCOVERY_INTERFACE, HGP_DISCOVERY_PORT, HGP_DISCOVERY_INTERVAL,\n"
        "HGP_BUS_CURVE, HGP_BUS_CLUSTER, HGP_BUS_KEYS (CURVE keys: bin/hgp-keys).\n"
        "With discovery/interface set to a broadcast interface the broker\n"
        "beacons its id and ports there; bind tcp://*:PORT (or the interface's\n"
        "address) so peers that hear it can connect.\n"
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
    char *error = hgp_discovery_config_check (config);
    if (error) {
        zsys_error ("%s", error);
        free (error);
        hgp_config_destroy (&config);
        return 1;
    }

    //  The actor reads its settings and binds before zactor_new returns
    zactor_t *broker = zactor_new (hgp_broker_actor, config);
    assert (broker);
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
        hgp_config_destroy (&config);
        return rc;
    }
    zstr_free (&status);
    zactor_t *discovery = s_discovery_start (broker, config);
    hgp_config_destroy (&config);

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
    //  Leaving beacon first: peers stop sending before we stop answering
    zactor_destroy (&discovery);
    zactor_destroy (&broker);
    return rc;
}
