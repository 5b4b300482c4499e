/*  hgp_config.c - ZPL config with environment overrides (see hgp_config.h)
 *
 *  ZPL parsing is CZMQ's zconfig; we add only the override rule and range
 *  checks. Strings handed out for environment values are kept in a zhash so
 *  they live as long as the config and callers never free them.
 */
#include "hgp_config.h"
#include <czmq.h>
#include <ctype.h>
#include <errno.h>

struct _hgp_config_t {
    zconfig_t *root;            /* parsed file, or NULL for defaults only  */
    char *source;               /* file name loaded, or "(defaults)"       */
    char *error;                /* first bad value seen, or NULL           */
    zhash_t *set;               /* path -> value set by the process, or NULL */
};

char *
hgp_config_env_name (const char *path, char *buf, size_t size)
{
    assert (size > 4);
    size_t len = (size_t) snprintf (buf, size, "HGP_");
    for (const char *p = path; *p && len + 1 < size; p++)
        buf [len++] = (*p == '/' || *p == '-' || *p == '.')
                    ? '_' : (char) toupper ((unsigned char) *p);
    buf [len] = 0;
    return buf;
}

hgp_config_t *
hgp_config_load (const char *path)
{
    if (!path)
        path = getenv ("HGP_CONFIG");
    bool named = path != NULL;
    if (!path && zsys_file_exists ("configs/hgp.cfg"))
        path = "configs/hgp.cfg";

    hgp_config_t *self = (hgp_config_t *) zmalloc (sizeof (hgp_config_t));
    assert (self);
    if (path) {
        if (named && !zsys_file_exists (path)) {
            zsys_error ("config: cannot read %s", path);
            free (self);
            return NULL;
        }
        self->root = zconfig_load (path);
        if (!self->root) {
            zsys_error ("config: cannot parse %s (ZPL syntax)", path);
            free (self);
            return NULL;
        }
        self->source = strdup (path);
    }
    else
        self->source = strdup ("(defaults)");
    return self;
}

void
hgp_config_destroy (hgp_config_t **self_p)
{
    assert (self_p);
    hgp_config_t *self = *self_p;
    if (self) {
        zconfig_destroy (&self->root);
        zhash_destroy (&self->set);
        free (self->source);
        free (self->error);
        free (self);
        *self_p = NULL;
    }
}

const char *
hgp_config_source (hgp_config_t *self)
{
    return self->source;
}

void
hgp_config_set (hgp_config_t *self, const char *path, const char *value)
{
    assert (self && path && value);
    if (!self->set) {
        self->set = zhash_new ();
        assert (self->set);
        zhash_autofree (self->set);     //  values are copied
    }
    zhash_update (self->set, path, (void *) value);
}

const char *
hgp_config_str (hgp_config_t *self, const char *path, const char *dflt)
{
    if (self->set) {
        const char *set = (const char *) zhash_lookup (self->set, path);
        if (set)
            return set;
    }
    char name [256];
    const char *value = getenv (hgp_config_env_name (path, name, sizeof name));
    if (value)
        return value;
    if (self->root) {
        value = zconfig_get (self->root, path, NULL);
        if (value)
            return value;
    }
    return dflt;
}

static void
s_error (hgp_config_t *self, const char *path, const char *value,
         int64_t min, int64_t max)
{
    if (self->error)
        return;
    char name [256];
    hgp_config_env_name (path, name, sizeof name);
    self->error = zsys_sprintf (
        "config: %s (%s) is '%s'; want an integer from %lld to %lld",
        path, name, value, (long long) min, (long long) max);
}

int64_t
hgp_config_int (hgp_config_t *self, const char *path, int64_t dflt,
                int64_t min, int64_t max)
{
    const char *value = hgp_config_str (self, path, NULL);
    if (!value)
        return dflt;
    errno = 0;
    char *end = NULL;
    long long n = strtoll (value, &end, 10);
    if (errno || end == value || *end || n < min || n > max) {
        s_error (self, path, value, min, max);
        return dflt;
    }
    return (int64_t) n;
}

const char *
hgp_config_error (hgp_config_t *self)
{
    return self->error;
}
