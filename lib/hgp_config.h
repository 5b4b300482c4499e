/*  hgp_config.h - configuration: a ZPL file plus HGP_<SECTION>_<KEY> overrides
 *
 *  Every binary reads its settings through this class and nothing else, so
 *  the rule "every key can be overridden by the environment" holds by
 *  construction: a lookup of "broker/client_endpoint" first consults
 *  HGP_BROKER_CLIENT_ENDPOINT, then the file, then the built-in default.
 *  Bad values (a non-number, out of range) do not abort at the lookup: the
 *  first one is remembered and main checks hgp_config_error() once after
 *  reading everything, so the operator gets one clear message.
 *
 *  A process may also set a value itself (hgp_config_set): what its main
 *  derived from other settings, e.g. the broker's bind endpoints from
 *  discovery/interface. A set value wins over the environment and the file.
 */
#ifndef HGP_CONFIG_H_INCLUDED
#define HGP_CONFIG_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct _hgp_config_t hgp_config_t;

/*  Load a ZPL file. path NULL: $HGP_CONFIG, else configs/hgp.cfg if it
    exists, else defaults only. NULL (and a log line) when a named file
    cannot be read or parsed. */
hgp_config_t *hgp_config_load (const char *path);
void hgp_config_destroy (hgp_config_t **self_p);

/*  The file actually loaded, or "(defaults)" */
const char *hgp_config_source (hgp_config_t *self);

/*  String value of "section/key"; the returned string is the config's */
const char *hgp_config_str (hgp_config_t *self, const char *path,
                            const char *dflt);

/*  Set "section/key" to value for this process: later lookups return it,
    before the environment and the file. The config keeps a copy. */
void hgp_config_set (hgp_config_t *self, const char *path, const char *value);

/*  Integer value of "section/key" within [min, max]; on a bad value
    records an error and returns dflt */
int64_t hgp_config_int (hgp_config_t *self, const char *path, int64_t dflt,
                        int64_t min, int64_t max);

/*  First error recorded by a lookup, or NULL */
const char *hgp_config_error (hgp_config_t *self);

/*  Name of the environment variable for a path, into buf; returns buf */
char *hgp_config_env_name (const char *path, char *buf, size_t size);

#endif
