/*  hgp_gateway_main.c - bin/hgp-gateway: the HTTP gateway process
 *
 *  hgp-gateway [-c CONFIG]. Settings come from the config file's "gateway"
 *  and "broker" sections, each overridable by HGP_<SECTION>_<KEY> in the
 *  environment (HGP_GATEWAY_PORT, HGP_BROKER_CLIENT_ENDPOINT...). Logs go
 *  to stdout. SIGTERM or SIGINT stops it cleanly: no new connections,
 *  requests in flight are answered, exit 0. A bad setting or a port that
 *  cannot be bound (taken) is one log line and exit 1.
 */
#include "hgp_gateway.h"
#include "hgp_config.h"
#include "hgp_process.h"
#include <czmq.h>
#include <signal.h>

//  SIGHUP: read the API keys again (the loop below does it, not the handler)
static volatile sig_atomic_t s_reload = 0;

static void
s_on_hup (int signum)
{
    s_reload = 1;
}

int
main (int argc, char *argv [])
{
    if (hgp_process_version ("hgp-gateway", argc, argv))
        return 0;
    for (int i = 1; i < argc; i++)
        if (streq (argv [i], "-h") || streq (argv [i], "--help")) {
            printf ("usage: hgp-gateway [-c CONFIG]\n"
                    "  settings: section gateway of CONFIG (default "
                    "$HGP_CONFIG, else configs/hgp.cfg),\n"
                    "  each overridable as HGP_GATEWAY_<KEY>, e.g. "
                    "HGP_GATEWAY_PORT=8081\n");
            return 0;
        }
    hgp_process_init ("hgp-gateway");
    hgp_config_t *config = hgp_config_load (hgp_process_config_arg (argc, argv));
    if (!config)
        return 1;
    hgp_gateway_t *gateway = hgp_gateway_new (config);
    hgp_config_destroy (&config);
    if (!gateway)
        return 1;
    //  The signal handler only sets zsys_interrupted; the event loops
    //  do the work, so the main thread just waits to be told to stop
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_hup;
    sigemptyset (&action.sa_mask);
    sigaction (SIGHUP, &action, NULL);
    while (!zsys_interrupted) {
        zclock_sleep (100);
        if (s_reload) {
            s_reload = 0;
            hgp_gateway_reload (gateway);
        }
    }
    zsys_info ("gateway: stopping");
    hgp_gateway_destroy (&gateway);
    zsys_info ("gateway: stopped");
    return 0;
}
