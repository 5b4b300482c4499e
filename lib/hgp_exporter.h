/*  hgp_exporter.h - serves a process's hgp_prom series at GET /metrics
 *
 *  A zactor with one ZMQ_STREAM socket: plain HTTP/1.1 on the address
 *  of `<section>/metrics` ("127.0.0.1:0" by default: loopback, a free
 *  port; "" turns it off), one answer per connection, then closed. Made
 *  for Prometheus and curl, and bounded against anything else: request
 *  heads of at most 8 KiB (431 beyond), 5 s to send one (closed after),
 *  at most 64 connections at once (a new one closes the oldest, so idle
 *  connections cannot keep a scrape out). Any method but GET is 405, any
 *  path but /metrics 404.
 *
 *  The address is the process's metrics URL, logged at start, told to
 *  the broker (READY or announce, PROTOCOL.md 4.5) and so listed by
 *  `hgp actors` and `hgp targets`.
 */
#ifndef HGP_EXPORTER_H_INCLUDED
#define HGP_EXPORTER_H_INCLUDED

#include "hgp_config.h"
#include "hgp_prom.h"

#define HGP_EXPORTER_URL_MAX 128

typedef struct _hgp_exporter_t hgp_exporter_t;

/*  Serve prom (which must outlive the exporter) on the address of
    `<section>/metrics` in config. NULL with *error NULL when the key is
    empty (off); NULL with *error set (to free) when the address is not
    valid or cannot be bound. */
hgp_exporter_t *hgp_exporter_new (hgp_config_t *config, const char *section,
                                  hgp_prom_t *prom, char **error);
/*  The same for a process that serves on without metrics when it must
    (an actor, the mock): a failure is logged, and NULL returned */
hgp_exporter_t *hgp_exporter_start (hgp_config_t *config, const char *section,
                                    hgp_prom_t *prom);
void hgp_exporter_destroy (hgp_exporter_t **self_p);

/*  NULL when `<section>/metrics` is well-formed, else a message to free */
char *hgp_exporter_config_check (hgp_config_t *config, const char *section);

/*  "http://127.0.0.1:PORT/metrics": where it listens */
const char *hgp_exporter_url (hgp_exporter_t *self);

/*  The metrics URL of a listener on host:port into url (size at least
    HGP_EXPORTER_URL_MAX); a wildcard host (*, 0.0.0.0, ::) becomes this
    host's name. Also for a listener someone else runs (the gateway serves
    /metrics on its own port). 0, or -1 when not valid. */
int hgp_exporter_format_url (const char *host, int port, char *url,
                             size_t size);

#endif
