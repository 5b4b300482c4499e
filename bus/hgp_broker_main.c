/*  hgp_broker_main.c - the hgp-broker process
 *
 *  Two actors wired together: discovery (lib/hgp_discovery.c) and the
 *  broker (bus/hgp_broker.c). With discovery/interface set, discovery
 *  starts first and says which address peers that hear our beacons
 *  connect to; the broker binds its endpoints' ports there (or on every
 *  address, when an endpoint says tcp://\*:PORT), so one config serves the
 *  broker and the actors that find it, and once it has bound, main checks
 *  that it listens where the beacon points (else a clear error and exit
 *  1: a beacon that sends peers where nothing answers is worse than none)
 *  and publishes its id and the two ports. Waits for SIGINT or SIGTERM; then stops
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

//  The port of a bound "tcp://host:port", as a string into buf
static const char *
s_port (const char *endpoint, char *buf, size_t size)
{
    const char *colon = strrchr (endpoint, ':');
    snprintf (buf, size, "%s", colon ? colon + 1 : "");
    return buf;
}

//  Where peers that hear our beacons connect: the interface's address, "*"
//  for every one, or "" when we do not beacon (static endpoints)
static char *
s_beacon_address (zactor_t *discovery)
{
    zstr_send (discovery, "ADDRESS");
    char *address = zstr_recv (discovery);
    return address ? address : strdup ("");
}

//  A broker that beacons binds what it beacons: the endpoints' ports on
//  the interface's address (or every address). Put that in the config
//  for the broker actor to bind; 0, or -1 with a message to free
static int
s_bind_where_we_beacon (hgp_config_t *config, const char *address,
                        char **error_p)
{
    const char *settings [] = { "broker/client_endpoint",
                                "broker/actor_endpoint" };
    const char *defaults [] = { "tcp://127.0.0.1:5555",
                                "tcp://127.0.0.1:5556" };
    for (int i = 0; i < 2; i++) {
        const char *endpoint = hgp_config_str (config, settings [i],
                                               defaults [i]);
        char *bind = hgp_discovery_bind_endpoint (endpoint, address,
                                                  settings [i], error_p);
        if (!bind)
            return -1;
        if (!streq (bind, endpoint))
            zsys_info ("hgp-broker: %s is %s; binding %s, where peers that"
                       " hear our beacons connect (discovery/interface)",
                       settings [i], endpoint, bind);
        hgp_config_set (config, settings [i], bind);
        free (bind);
    }
    return 0;
}

//  Publish our beacon once the broker has bound, after checking that it
//  listens where the beacon sends peers (address; "" in static mode, where
//  PUBLISH only logs why nothing is beaconed); -1 and a message to free
static int
s_publish (zactor_t *discovery, zactor_t *broker, const char *address,
           char **error_p)
{
    char *id = NULL, *key = NULL, *client_endpoint = NULL,
         *actor_endpoint = NULL;
    zstr_send (broker, "ID");
    id = zstr_recv (broker);
    zstr_send (broker, "KEY");
    key = zstr_recv (broker);
    zstr_send (broker, "ENDPOINTS");
    zstr_recvx (broker, &client_endpoint, &actor_endpoint, NULL);
    assert (id && client_endpoint && actor_endpoint);
    int rc = 0;
    if (*address)
        rc = hgp_discovery_bound_check (client_endpoint, address,
                                        "broker/client_endpoint", error_p);
    if (rc == 0 && *address)
        rc = hgp_discovery_bound_check (actor_endpoint, address,
                                        "broker/actor_endpoint", error_p);
    if (rc == 0) {
        char client_port [16], actor_port [16];
        zstr_sendx (discovery, "PUBLISH", id,
                    s_port (client_endpoint, client_port, sizeof client_port),
                    s_port (actor_endpoint, actor_port, sizeof actor_port),
                    client_endpoint, actor_endpoint, key ? key : "", NULL);
    }
    zstr_free (&id);
    zstr_free (&key);
    zstr_free (&client_endpoint);
    zstr_free (&actor_endpoint);
    return rc;
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
        "  -h, --help         show this help\n"
        "\n"
        "Every setting can be overridden by the environment, HGP_<SECTION>_<KEY>:\n"
        "HGP_BROKER_CLIENT_ENDPOINT, HGP_BROKER_ACTOR_ENDPOINT,\n"
        "HGP_BROKER_QUEUE_LIMIT, HGP_HEARTBEAT_INTERVAL, HGP_HEARTBEAT_LIVENESS,\n"
        "HGP_DISCOVERY_INTERFACE, HGP_DISCOVERY_PORT, HGP_DISCOVERY_INTERVAL,\n"
        "HGP_BUS_CURVE, HGP_BUS_CLUSTER, HGP_BUS_KEYS (CURVE keys: bin/hgp-keys).\n"
        "With discovery/interface set to a broadcast interface the broker\n"
        "binds the ports of its endpoints on that interface's address (every\n"
        "address for tcp://*:PORT) and beacons its id and ports there.\n"
        "Logs go to stdout. SIGINT or SIGTERM stops it cleanly.\n");
}

int
main (int argc, char *argv [])
{
    if (hgp_process_version ("hgp-broker", argc, argv))
        return 0;
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
        else {
            fprintf (stderr, "hgp-broker: unknown argument '%s'\n", argv [i]);
            s_usage (stderr);
            return 1;
        }
    }
    hgp_process_init ("hgp-broker");
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

    //  Discovery first: where we beacon decides what the broker binds
    zactor_t *discovery = zactor_new (hgp_discovery_actor, config);
    assert (discovery);
    char *address = s_beacon_address (discovery);
    if (*address && s_bind_where_we_beacon (config, address, &error)) {
        zsys_error ("hgp-broker: %s", error);
        free (error);
        zstr_free (&address);
        zactor_destroy (&discovery);
        hgp_config_destroy (&config);
        return 1;
    }
    //  The actor reads its settings and binds before zactor_new returns
    zactor_t *broker = zactor_new (hgp_broker_actor, config);
    assert (broker);
    zstr_send (broker, "STATUS");
    char *status = zstr_recv (broker);
    int rc = 0;
    bool started = status && streq (status, "OK");
    if (!started) {
        if (status)
            zsys_error ("hgp-broker: %s", status + (strncmp (status, "ERROR ", 6)
                                                    ? 0 : 6));
        rc = zsys_interrupted ? 0 : 1;
    }
    else
    if (s_publish (discovery, broker, address, &error)) {
        zsys_error ("hgp-broker: %s", error);
        free (error);
        started = false;
        rc = 1;
    }
    zstr_free (&status);
    zstr_free (&address);
    hgp_config_destroy (&config);
    if (!started) {
        zactor_destroy (&discovery);
        zactor_destroy (&broker);
        return rc;
    }
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
