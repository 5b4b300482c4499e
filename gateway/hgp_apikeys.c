/*  hgp_apikeys.c - the gateway's API keys (see .h)
 */
#include "hgp_apikeys.h"
#include <czmq.h>
#include "hgp_codec.h"

struct _hgp_apikeys_t {
    hgp_apikey_t *keys;
    size_t size;
};

static char *
s_error (const char *path, int line, const char *what)
{
    return zsys_sprintf ("gateway/api_keys %s line %d: %s", path, line, what);
}

//  One line, comment already cut: "name key [rate burst]"; 1 when it
//  held a key, 0 when blank, -1 when bad (*what says why)
static int
s_parse_line (char *text, hgp_apikey_t *entry, const char **what)
{
    char *save = NULL;
    char *name = strtok_r (text, " \t\r\n", &save);
    if (!name)
        return 0;
    char *key = strtok_r (NULL, " \t\r\n", &save);
    char *rate = strtok_r (NULL, " \t\r\n", &save);
    char *burst = strtok_r (NULL, " \t\r\n", &save);
    if (strtok_r (NULL, " \t\r\n", &save) || !key || (rate && !burst)) {
        *what = "want: name key [rate burst]";
        return -1;
    }
    if (strlen (name) > HGP_APIKEY_NAME_MAX || !hgp_id_valid (name, strlen (name))) {
        *what = "the name must be 1-64 bytes of A-Z a-z 0-9 _ - . :";
        return -1;
    }
    size_t len = strlen (key);
    if (len < 16 || len > HGP_APIKEY_MAX) {
        *what = "the key must be 16 to 128 visible characters";
        return -1;
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char) key [i] <= 0x20 || (unsigned char) key [i] >= 0x7f) {
            *what = "the key must be 16 to 128 visible characters";
            return -1;
        }
    memset (entry, 0, sizeof *entry);
    strcpy (entry->name, name);
    strcpy (entry->key, key);
    entry->rate = entry->burst = -1;
    if (rate) {
        char *end1, *end2;
        entry->rate = strtod (rate, &end1);
        entry->burst = strtod (burst, &end2);
        if (*end1 || *end2 || !(entry->rate >= 0) || !(entry->burst >= 0)
        ||  entry->rate > 1e9 || entry->burst > 1e9) {
            *what = "rate and burst must be numbers from 0 (unlimited) up";
            return -1;
        }
    }
    return 1;
}

hgp_apikeys_t *
hgp_apikeys_load (const char *path, char **error)
{
    *error = NULL;
    FILE *file = fopen (path, "r");
    if (!file) {
        *error = zsys_sprintf ("gateway/api_keys: cannot read %s: %s", path,
                               strerror (errno));
        return NULL;
    }
    hgp_apikeys_t *self = (hgp_apikeys_t *) zmalloc (sizeof (hgp_apikeys_t));
    size_t cap = 0;
    char line [1024];
    int number = 0;
    while (fgets (line, sizeof line, file)) {
        number++;
        if (!strchr (line, '\n') && !feof (file)) {
            *error = s_error (path, number, "line too long");
            break;
        }
        char *hash = strchr (line, '#');
        if (hash)
            *hash = 0;
        hgp_apikey_t entry;
        const char *what = NULL;
        int rc = s_parse_line (line, &entry, &what);
        if (rc < 0) {
            *error = s_error (path, number, what);
            break;
        }
        if (rc == 0)
            continue;
        for (size_t i = 0; i < self->size; i++)
            if (streq (self->keys [i].name, entry.name)
            ||  streq (self->keys [i].key, entry.key)) {
                *error = s_error (path, number,
                                  "a name or key given twice");
                break;
            }
        if (*error)
            break;
        if (self->size == cap) {
            cap = cap ? cap * 2 : 8;
            self->keys = (hgp_apikey_t *) realloc (self->keys,
                                                   cap * sizeof (hgp_apikey_t));
            assert (self->keys);
        }
        self->keys [self->size++] = entry;
    }
    fclose (file);
    if (*error)
        hgp_apikeys_destroy (&self);
    return self;
}

void
hgp_apikeys_destroy (hgp_apikeys_t **self_p)
{
    hgp_apikeys_t *self = *self_p;
    if (self) {
        if (self->keys)
            memset (self->keys, 0, self->size * sizeof (hgp_apikey_t));
        free (self->keys);
        free (self);
        *self_p = NULL;
    }
}

//  Equal in time that depends only on HGP_APIKEY_MAX: every byte of both
//  padded buffers is looked at
static bool
s_same (const char *held, const char *given, size_t given_len)
{
    unsigned diff = (unsigned) (strlen (held) ^ given_len);
    for (size_t i = 0; i <= HGP_APIKEY_MAX; i++) {
        unsigned char a = (unsigned char) held [i < HGP_APIKEY_MAX ? i : HGP_APIKEY_MAX];
        unsigned char b = i < given_len ? (unsigned char) given [i] : 0;
        diff |= (unsigned) (a ^ b);
    }
    return diff == 0;
}

const hgp_apikey_t *
hgp_apikeys_find (hgp_apikeys_t *self, const char *key, size_t *index)
{
    size_t len = strnlen (key, HGP_APIKEY_MAX + 1);
    const hgp_apikey_t *found = NULL;
    for (size_t i = 0; i < self->size; i++)
        if (s_same (self->keys [i].key, key, len) && !found) {
            found = &self->keys [i];
            *index = i;
        }
    return len > HGP_APIKEY_MAX ? NULL : found;
}

size_t
hgp_apikeys_size (hgp_apikeys_t *self)
{
    return self->size;
}

void
hgp_apikeys_limits (hgp_apikeys_t *self, double *rates, double *bursts)
{
    for (size_t i = 0; i < self->size; i++) {
        rates [i] = self->keys [i].rate;
        bursts [i] = self->keys [i].burst;
    }
}
