/*  hgp_process.h - what every hgp binary does first
 *
 *  Logs go to stdout, line-buffered, through CZMQ's zsys_* functions (the
 *  one logging facility of hgp); SIGINT and SIGTERM set zsys_interrupted
 *  so main loops can stop cleanly.
 */
#ifndef HGP_PROCESS_H_INCLUDED
#define HGP_PROCESS_H_INCLUDED

#include <stddef.h>
#include <stdio.h>
#include <czmq.h>
#include "hgp_config.h"

/*  The release every binary reports (--version) and exports in logs */
#define HGP_VERSION     "0.10.0"

/*  When argv holds --version: print "<name> <version> (...)" on stdout
    (the protocol and the library versions it runs with) and return true:
    main then exits 0. Every hgp binary takes it. */
bool hgp_process_version (const char *name, int argc, char *argv []);

/*  Set up logging and signals for the process called name */
void hgp_process_init (const char *name);

/*  Find "-c FILE" / "--config FILE" in argv; NULL if absent */
const char *hgp_process_config_arg (int argc, char *argv []);

/*  The whole main of a process that runs one zactor (hgp-counter,
    hgp-analytics): -h/--help prints usage to stdout (exit 0), -c/--config
    FILE picks the config, anything else is an error (usage to stderr,
    exit 1). Then hgp_process_init, load the config, check it (check
    returns NULL or a message to free: exit 1), run actor with the config
    as its argument until SIGINT or SIGTERM, destroy it. Returns the exit
    code: 0 after a clean stop. */
int hgp_process_run_actor (const char *name, int argc, char *argv [],
                           void (*usage) (FILE *out),
                           char *(*check) (hgp_config_t *config),
                           zactor_fn *actor);

/*  A fresh random id of 32 hex digits into buf (size >= 33) */
char *hgp_process_random_id (char *buf, size_t size);

#endif
