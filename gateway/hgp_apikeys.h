/*  hgp_apikeys.h - the gateway's API keys: a file of "name key [rate burst]"
 *
 *  With gateway/api_keys set, every /api/ route but health needs a key
 *  (Authorization: Bearer KEY, or X-API-Key: KEY). The file holds one key
 *  per line: a name (1-64 bytes of A-Z a-z 0-9 _ - . :, what the key is
 *  logged and counted as), the key (16-128 visible ASCII bytes, no
 *  spaces), and optionally the key's own rate limit (requests a second,
 *  and a burst); '#' starts a comment. A key is looked up in time that
 *  does not depend on where (or whether) it differs from any key held, so
 *  timing tells an attacker nothing; keys are never logged.
 */
#ifndef HGP_APIKEYS_H_INCLUDED
#define HGP_APIKEYS_H_INCLUDED

#include <stddef.h>

#define HGP_APIKEY_NAME_MAX  64
#define HGP_APIKEY_MAX       128

typedef struct {
    char name [HGP_APIKEY_NAME_MAX + 1];
    char key [HGP_APIKEY_MAX + 1];
    double rate;                    /* requests a second; -1: the default   */
    double burst;                   /* -1: the default                      */
} hgp_apikey_t;

typedef struct _hgp_apikeys_t hgp_apikeys_t;

/*  Read path. NULL and *error (the caller frees it: the file, the line
    and what is wrong with it) if it cannot be read or a line is bad. */
hgp_apikeys_t *hgp_apikeys_load (const char *path, char **error);

void hgp_apikeys_destroy (hgp_apikeys_t **self_p);

/*  The entry whose key is key (NUL-terminated), or NULL; its index in
    *index. Compares against every key, in constant time for each. */
const hgp_apikey_t *hgp_apikeys_find (hgp_apikeys_t *self, const char *key,
                                      size_t *index);

size_t hgp_apikeys_size (hgp_apikeys_t *self);

/*  Each key's own rate and burst (-1: the per-key default), in file order */
void hgp_apikeys_limits (hgp_apikeys_t *self, double *rates, double *bursts);

#endif
