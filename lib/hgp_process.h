/*  hgp_process.h - what every hgp binary does first
 *
 *  Logs go to stdout, line-buffered, through CZMQ's zsys_* functions (the
 *  one logging facility of hgp); SIGINT and SIGTERM set zsys_interrupted
 *  so main loops can stop cleanly.
 */
#ifndef HGP_PROCESS_H_INCLUDED
#define HGP_PROCESS_H_INCLUDED

#include <stddef.h>

/*  Set up logging and signals for the process called name */
void hgp_process_init (const char *name);

/*  Find "-c FILE" / "--config FILE" in argv; NULL if absent */
const char *hgp_process_config_arg (int argc, char *argv []);

/*  A fresh random id of 32 hex digits into buf (size >= 33) */
char *hgp_process_random_id (char *buf, size_t size);

#endif
