/*  hgp_keys_main.c - the hgp-keys tool: create the bus's CURVE certificates
 *
 *  The layout it writes is the one lib/hgp_keys.h reads (bus/keys,
 *  "var/keys" by default): broker.cert, actors/NAME.cert, clients/NAME.cert,
 *  each with its NAME.cert_secret (mode 0600, directories 0700). It never
 *  overwrites a key: `init` creates only what is missing, so `make run`
 *  calls it on every start, and `add-actor` / `add-client` refuse a name
 *  that exists. Rotating a key is removing its files and adding it again
 *  (README, Key handling).
 */
#include "hgp_config.h"
#include "hgp_keys.h"
#include "hgp_process.h"
#include <sys/stat.h>

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: hgp-keys [-c CONFIG] [-d DIR] COMMAND\n"
        "\n"
        "Create the CURVE certificates of the hgp bus (README, Key handling).\n"
        "\n"
        "  init             create what is missing of: broker.cert, actors/local.cert,\n"
        "                   clients/local.cert (each with its _secret file)\n"
        "  add-actor NAME   create actors/NAME.cert: an actor host's certificate\n"
        "                   (copy both files to it, set bus/actor_cert = NAME there)\n"
        "  add-client NAME  create clients/NAME.cert: a client's (gateway, CLI)\n"
        "  list             show every certificate and its public key\n"
        "\n"
        "  -c, --config FILE  ZPL config file (bus/keys names the directory)\n"
        "  -d, --dir DIR      the directory, instead of bus/keys\n"
        "  -h, --help         show this help\n");
}

//  Create dir (and its parents) private to us; 0 or -1
static int
s_mkdir (const char *dir)
{
    char path [1024];
    snprintf (path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir (path, 0700);
            *p = '/';
        }
    if (mkdir (path, 0700) && errno != EEXIST) {
        fprintf (stderr, "hgp-keys: cannot create %s: %s\n", path,
                 strerror (errno));
        return -1;
    }
    return 0;
}

//  A new keypair at dir/name.cert; 1 created, 0 already there, -1 failed
static int
s_create (const char *dir, const char *sub, const char *name, bool quiet_if_any)
{
    char *folder = sub ? zsys_sprintf ("%s/%s", dir, sub) : strdup (dir);
    char *path = zsys_sprintf ("%s/%s.cert", folder, name);
    char *secret = zsys_sprintf ("%s_secret", path);
    int rc = 0;
    if (zsys_file_exists (path) || zsys_file_exists (secret)) {
        if (!quiet_if_any)
            fprintf (stderr, "hgp-keys: %s exists; remove it first to"
                     " replace it\n", path);
        rc = quiet_if_any ? 0 : -1;
        goto done;
    }
    if (s_mkdir (folder)) {
        rc = -1;
        goto done;
    }
    zcert_t *cert = zcert_new ();
    assert (cert);
    zcert_set_meta (cert, "name", "%s", name);
    zcert_set_meta (cert, "role", "%s", sub ? sub : "broker");
    mode_t mask = umask (077);          //  the secret is never readable
    int saved = zcert_save (cert, path);
    umask (mask);
    if (saved == 0) {
        chmod (secret, 0600);
        chmod (path, 0644);
        printf ("created %s (public key %s)\n", path, zcert_public_txt (cert));
        rc = 1;
    }
    else {
        fprintf (stderr, "hgp-keys: cannot write %s\n", path);
        rc = -1;
    }
    zcert_destroy (&cert);
done:
    zstr_free (&folder);
    zstr_free (&path);
    zstr_free (&secret);
    return rc;
}

static void
s_list (const char *dir, const char *sub)
{
    char *folder = sub ? zsys_sprintf ("%s/%s", dir, sub) : strdup (dir);
    zdir_t *zdir = zdir_new (folder, NULL);
    if (zdir) {
        zfile_t **files = zdir_flatten (zdir);
        for (size_t i = 0; files [i]; i++) {
            const char *file = zfile_filename (files [i], NULL);
            size_t len = strlen (file);
            if (len < 5 || !streq (file + len - 5, ".cert")
            ||  (!sub && strchr (file + strlen (folder) + 1, '/')))
                continue;
            zcert_t *cert = zcert_load (file);
            if (cert) {
                char secret [1100];
                snprintf (secret, sizeof secret, "%s_secret", file);
                printf ("%-40s %s%s\n", file, zcert_public_txt (cert),
                        zsys_file_exists (secret) ? "  (with secret)" : "");
            }
            zcert_destroy (&cert);
        }
        zdir_flatten_free (&files);
        zdir_destroy (&zdir);
    }
    zstr_free (&folder);
}

int
main (int argc, char *argv [])
{
    const char *dir = NULL, *command = NULL, *name = NULL;
    if (hgp_process_version ("hgp-keys", argc, argv))
        return 0;
    for (int i = 1; i < argc; i++) {
        if (streq (argv [i], "-h") || streq (argv [i], "--help")) {
            s_usage (stdout);
            return 0;
        }
        if (streq (argv [i], "-c") || streq (argv [i], "--config")
        ||  streq (argv [i], "-d") || streq (argv [i], "--dir")) {
            if (++i == argc) {
                fprintf (stderr, "hgp-keys: %s needs a value\n", argv [i - 1]);
                return 1;
            }
            if (argv [i - 1][1] == 'd' || argv [i - 1][2] == 'd')
                dir = argv [i];
        }
        else
        if (!command)
            command = argv [i];
        else
        if (!name)
            name = argv [i];
        else {
            s_usage (stderr);
            return 1;
        }
    }
    if (!command) {
        s_usage (stderr);
        return 1;
    }
    hgp_process_init ("hgp-keys");
    hgp_config_t *config = hgp_config_load (hgp_process_config_arg (argc, argv));
    if (!config)
        return 1;
    if (!dir)
        dir = hgp_config_str (config, "bus/keys", "var/keys");
    int rc = 0;
    bool add_actor = streq (command, "add-actor");
    if (streq (command, "init")) {
        if (s_create (dir, NULL, "broker", true) < 0
        ||  s_create (dir, "actors", "local", true) < 0
        ||  s_create (dir, "clients", "local", true) < 0)
            rc = 1;
    }
    else
    if (add_actor || streq (command, "add-client")) {
        if (!name || !hgp_id_valid (name, strlen (name))) {
            fprintf (stderr, "hgp-keys: %s needs a NAME of A-Z a-z 0-9 _ - . :\n",
                     command);
            rc = 1;
        }
        else
        if (s_create (dir, add_actor ? "actors" : "clients", name, false) < 0)
            rc = 1;
    }
    else
    if (streq (command, "list")) {
        s_list (dir, NULL);
        s_list (dir, "brokers");
        s_list (dir, "actors");
        s_list (dir, "clients");
    }
    else {
        fprintf (stderr, "hgp-keys: unknown command '%s'\n", command);
        s_usage (stderr);
        rc = 1;
    }
    hgp_config_destroy (&config);
    return rc;
}
