/*  hgp_process.c - process set-up shared by every binary (see .h)
 */
#include "hgp_process.h"
#include <czmq.h>
#include <signal.h>

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
