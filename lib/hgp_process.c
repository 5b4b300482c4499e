/*  hgp_process.c - process set-up shared by every binary (see .h)
 */
#include "hgp_process.h"
#include <czmq.h>
#include <signal.h>

bool
hgp_process_version (const char *name, int argc, char *argv [])
{
    for (int i = 1; i < argc; i++) {
        if (streq (argv [i], "--"))
            break;
        if (streq (argv [i], "--version")) {
            int major, minor, patch;
            zmq_version (&major, &minor, &patch);
            printf ("%s %s (protocol HGP/1; libzmq %d.%d.%d, CZMQ %d.%d.%d)\n",
                    name, HGP_VERSION, major, minor, patch, CZMQ_VERSION_MAJOR,
                    CZMQ_VERSION_MINOR, CZMQ_VERSION_PATCH);
            return true;
        }
    }
    return false;
}

void
hgp_process_init (const char *name)
{
    setvbuf (stdout, NULL, _IOLBF, 0);
    zsys_init ();
    zsys_set_logident (name);
    zsys_set_logstream (stdout);
    zsys_set_logsystem (false);
    /*  Our sockets are few and long-lived; the default 1000 linger would
        make a clean shutdown wait on a dead peer */
    zsys_set_linger (0);
    /*  A peer (Redis, a client) that closes its end must be an error
        return from write(), not the death of the process */
    signal (SIGPIPE, SIG_IGN);
}

const char *
hgp_process_config_arg (int argc, char *argv [])
{
    for (int i = 1; i + 1 < argc; i++)
        if (streq (argv [i], "-c") || streq (argv [i], "--config"))
            return argv [i + 1];
    return NULL;
}

int
hgp_process_run_actor (const char *name, int argc, char *argv [],
                       void (*usage) (FILE *out),
                       char *(*check) (hgp_config_t *config),
                       zactor_fn *actor)
{
    if (hgp_process_version (name, argc, argv))
        return 0;
    for (int i = 1; i < argc; i++) {
        if (streq (argv [i], "-h") || streq (argv [i], "--help")) {
            usage (stdout);
            return 0;
        }
        if ((streq (argv [i], "-c") || streq (argv [i], "--config"))
        &&  i + 1 < argc)
            i++;
        else {
            fprintf (stderr, "%s: unexpected argument '%s'\n\n", name,
                     argv [i]);
            usage (stderr);
            return 1;
        }
    }
    hgp_process_init (name);
    hgp_config_t *config = hgp_config_load (hgp_process_config_arg (argc, argv));
    if (!config)
        return 1;                       //  hgp_config_load said why
    char *error = check (config);
    if (error) {
        zsys_error ("%s (config from %s)", error, hgp_config_source (config));
        free (error);
        hgp_config_destroy (&config);
        return 1;
    }
    zsys_info ("%s: config from %s", name, hgp_config_source (config));
    zactor_t *running = zactor_new (actor, config);
    assert (running);
    while (!zsys_interrupted)
        zclock_sleep (100);
    zsys_info ("%s: stopping", name);
    zactor_destroy (&running);
    hgp_config_destroy (&config);
    return 0;
}

char *
hgp_process_random_id (char *buf, size_t size)
{
    assert (size >= 33);
    zuuid_t *uuid = zuuid_new ();
    assert (uuid);
    snprintf (buf, size, "%s", zuuid_str (uuid));
    zuuid_destroy (&uuid);
    for (char *p = buf; *p; p++)
        *p = (char) tolower ((unsigned char) *p);
    return buf;
}
