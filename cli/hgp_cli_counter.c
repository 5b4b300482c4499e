/*  hgp_cli_counter.c - the commands of bin/hgp about counters
 *
 *  incr, get and mget are answered by the counter actors, top and stats
 *  by the analytics actors; each is one request (mget: one per
 *  HGP_MGET_MAX keys), its reply printed as text or, with --json, as one
 *  object. The contract they keep is in hgp_cli.h; the front end that
 *  runs them is hgp_cli.c.
 */
#include "hgp_cli.h"
#include "hgp_cli_json.h"
#include "hgp_views.h"
#include <time.h>

//  Read nkeys counters into values, in requests of at most HGP_MGET_MAX
//  keys. 0, or -1 with the first error reply in rep.

static int
s_mget (hgp_cli_t *app, hgp_key_t *keys, size_t nkeys, int64_t *values,
        hgp_reply_t *rep)
{
    for (size_t done = 0; done < nkeys; ) {
        size_t chunk = nkeys - done < HGP_MGET_MAX
                     ? nkeys - done : HGP_MGET_MAX;
        hgp_request_t req;
        hgp_cli_request (app, &req, HGP_OP_MGET);
        req.keys = keys + done;         //  borrowed: never clear req
        req.nkeys = chunk;
        hgp_client_call (app->client, &req, rep);
        if (rep->error.status != HGP_STATUS_OK)
            return -1;
        memcpy (values + done, rep->values, chunk * sizeof (int64_t));
        done += chunk;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  incr RES TYPE [DELTA] [--id REQUEST_ID] [--user USER_ID]

int
hgp_cli_incr (hgp_cli_t *app, int argc, char *argv [])
{
    const char *pos [3];
    int npos = 0;
    const char *id = NULL, *user = NULL;
    bool options = true;
    for (int i = 0; i < argc; i++) {
        const char *value;
        if (options && streq (argv [i], "--"))
            options = false;
        else
        if (options && hgp_cli_option (argc, argv, &i, "--id", &value)) {
            if (!value)
                return hgp_cli_usage_error (app, "--id needs a REQUEST_ID");
            id = value;
        }
        else
        if (options && hgp_cli_option (argc, argv, &i, "--user", &value)) {
            if (!value)
                return hgp_cli_usage_error (app, "--user needs a USER_ID");
            user = value;
        }
        else {
            int err = hgp_cli_positional (app, argv [i], options, pos,
                                          &npos, 3);
            if (err)
                return err;
        }
    }
    if (npos < 2)
        return hgp_cli_usage_error (app, "incr needs RES and TYPE");
    int rc;
    if ((rc = hgp_cli_check_id (app, "RES", pos [0]))
    ||  (rc = hgp_cli_check_id (app, "TYPE", pos [1]))
    ||  (id && (rc = hgp_cli_check_id (app, "REQUEST_ID", id)))
    ||  (user && (rc = hgp_cli_check_id (app, "USER_ID", user))))
        return rc;
    int64_t delta = 1;
    if (npos == 3 && !hgp_cli_parse_int64 (pos [2], &delta))
        return hgp_cli_usage_error (app, "DELTA '%s' is not a signed 64-bit "
                                    "integer", pos [2]);
    if (delta == 0)
        return hgp_cli_usage_error (app, "DELTA must not be 0");
    if ((rc = hgp_cli_connect (app)))
        return rc;

    hgp_request_t req;
    hgp_cli_request (app, &req, HGP_OP_INCR);
    if (id)
        snprintf (req.id, sizeof req.id, "%s", id);
    snprintf (req.key.resource_id, sizeof req.key.resource_id, "%s", pos [0]);
    snprintf (req.key.counter_type, sizeof req.key.counter_type, "%s",
              pos [1]);
    req.delta = delta;
    if (user)
        snprintf (req.user_id, sizeof req.user_id, "%s", user);

    hgp_reply_t rep;
    hgp_reply_init (&rep);
    hgp_client_call (app->client, &req, &rep);
    if (rep.error.status != HGP_STATUS_OK)
        rc = hgp_cli_reply_error (app, &rep, req.id);
    else
    if (app->json) {
        json_t *obj = json_pack ("{s:i,s:o,s:o,s:o,s:I,s:I,s:b}",
            "status", HGP_STATUS_OK, "id", hgp_cli_json_text (req.id),
            "resource_id", hgp_cli_json_text (req.key.resource_id),
            "counter_type", hgp_cli_json_text (req.key.counter_type),
            "delta", (json_int_t) delta, "value", (json_int_t) rep.value,
            "replayed", rep.replayed);
        hgp_cli_json_print (&obj, HGP_CLI_JSON_EXACT);
    }
    else
        printf ("%lld%s\n", (long long) rep.value,
                rep.replayed ? " (replayed)" : "");
    hgp_reply_clear (&rep);
    return rc;
}

//  --------------------------------------------------------------------------
//  get RES TYPE

//  What get and stats share: take RES TYPE from the arguments, connect,
//  send op about that counter. 0 with rep filled (possibly an error reply,
//  clear it after), else an exit code and rep untouched.
static int
s_counter_call (hgp_cli_t *app, int argc, char *argv [], hgp_op_t op,
                const char *name, hgp_request_t *req, hgp_reply_t *rep,
                hgp_window_t *window)
{
    const char *pos [2];
    int npos = 0;
    bool options = true;
    for (int i = 0; i < argc; i++) {
        const char *value;
        if (options && streq (argv [i], "--"))
            options = false;
        else
        if (options && window
        &&  hgp_cli_option (argc, argv, &i, "--window", &value)) {
            if (!value || hgp_window_from_name (value, window)
            ||  (*window != HGP_WINDOW_1H && *window != HGP_WINDOW_24H))
                return hgp_cli_usage_error (app, "--window wants 1h or 24h");
        }
        else {
            int err = hgp_cli_positional (app, argv [i], options, pos,
                                          &npos, 2);
            if (err)
                return err;
        }
    }
    if (npos < 2)
        return hgp_cli_usage_error (app, "%s needs RES and TYPE", name);
    int rc;
    if ((rc = hgp_cli_check_id (app, "RES", pos [0]))
    ||  (rc = hgp_cli_check_id (app, "TYPE", pos [1]))
    ||  (rc = hgp_cli_connect (app)))
        return rc;
    hgp_cli_request (app, req, op);
    snprintf (req->key.resource_id, sizeof req->key.resource_id, "%s",
              pos [0]);
    snprintf (req->key.counter_type, sizeof req->key.counter_type, "%s",
              pos [1]);
    hgp_reply_init (rep);
    hgp_client_call (app->client, req, rep);
    return 0;
}

//  {"status":200} and then what view holds (lib/hgp_views.h: the shape the
//  HTTP API answers), printed; view is taken
static void
s_print_view (json_t *view, int digits)
{
    json_t *obj = json_pack ("{s:i}", "status", HGP_STATUS_OK);
    json_object_update (obj, view);
    json_decref (view);
    hgp_cli_json_print (&obj, digits);
}

//  {"status":200,"resource_id":...,"counter_type":...}: the start of what
//  get and stats print
static json_t *
s_json_counter (const hgp_key_t *key)
{
    return json_pack ("{s:i,s:o,s:o}", "status", HGP_STATUS_OK,
                      "resource_id", hgp_cli_json_text (key->resource_id),
                      "counter_type", hgp_cli_json_text (key->counter_type));
}

int
hgp_cli_get (hgp_cli_t *app, int argc, char *argv [])
{
    hgp_request_t req;
    hgp_reply_t rep;
    int rc = s_counter_call (app, argc, argv, HGP_OP_GET, "get", &req, &rep,
                             NULL);
    if (rc)
        return rc;
    if (rep.error.status != HGP_STATUS_OK)
        rc = hgp_cli_reply_error (app, &rep, NULL);
    else
    if (app->json) {
        json_t *obj = s_json_counter (&req.key);
        json_object_set_new (obj, "value", json_integer (rep.value));
        hgp_cli_json_print (&obj, HGP_CLI_JSON_EXACT);
    }
    else
        printf ("%lld\n", (long long) rep.value);
    hgp_reply_clear (&rep);
    return rc;
}

//  --------------------------------------------------------------------------
//  mget RES:TYPE...

int
hgp_cli_mget (hgp_cli_t *app, int argc, char *argv [])
{
    hgp_key_t *keys = (hgp_key_t *) calloc (argc ? (size_t) argc : 1,
                                            sizeof (hgp_key_t));
    int64_t *values = (int64_t *) calloc (argc ? (size_t) argc : 1,
                                          sizeof (int64_t));
    assert (keys && values);
    size_t nkeys = 0;
    bool options = true;
    int rc = 0;
    for (int i = 0; i < argc && !rc; i++) {
        const char *arg = argv [i];
        if (options && streq (arg, "--")) {
            options = false;
            continue;
        }
        if (options && hgp_cli_is_option (arg)) {
            rc = hgp_cli_usage_error (app, "unknown option '%s'", arg);
            break;
        }
        //  Split at the last ':': resource ids may contain ':', so the
        //  counter type is what follows the last one
        const char *colon = strrchr (arg, ':');
        if (!colon) {
            rc = hgp_cli_usage_error (app, "key '%s' is not RES:TYPE", arg);
            break;
        }
        size_t rlen = (size_t) (colon - arg);
        if (!hgp_id_valid (arg, rlen) || !hgp_id_valid (colon + 1,
                                                         strlen (colon + 1))) {
            rc = hgp_cli_usage_error (app, "key '%s' is not RES:TYPE with "
                                      "two ids (1-%d bytes of A-Z a-z 0-9 _ "
                                      "- . :, no ':' in TYPE)", arg,
                                      HGP_ID_MAX);
            break;
        }
        memcpy (keys [nkeys].resource_id, arg, rlen);
        keys [nkeys].resource_id [rlen] = 0;
        snprintf (keys [nkeys].counter_type,
                  sizeof keys [nkeys].counter_type, "%s", colon + 1);
        nkeys++;
    }
    if (!rc && nkeys == 0)
        rc = hgp_cli_usage_error (app, "mget needs at least one RES:TYPE");
    if (!rc)
        rc = hgp_cli_connect (app);
    if (!rc) {
        hgp_reply_t rep;
        hgp_reply_init (&rep);
        if (s_mget (app, keys, nkeys, values, &rep))
            rc = hgp_cli_reply_error (app, &rep, NULL);
        else
        if (app->json) {
            json_t *list = json_array ();
            for (size_t i = 0; i < nkeys; i++)
                json_array_append_new (list, json_pack ("{s:o,s:o,s:I}",
                    "resource_id", hgp_cli_json_text (keys [i].resource_id),
                    "counter_type", hgp_cli_json_text (keys [i].counter_type),
                    "value", (json_int_t) values [i]));
            //  "results", as POST /api/v1/counter/batch answers
            json_t *obj = json_pack ("{s:i,s:o}", "status", HGP_STATUS_OK,
                                     "results", list);
            hgp_cli_json_print (&obj, HGP_CLI_JSON_EXACT);
        }
        else
            for (size_t i = 0; i < nkeys; i++)
                printf ("%s %s %lld\n", keys [i].resource_id,
                        keys [i].counter_type, (long long) values [i]);
        hgp_reply_clear (&rep);
    }
    free (keys);
    free (values);
    return rc;
}

//  --------------------------------------------------------------------------
//  top TYPE [--window W] [--limit N]

int
hgp_cli_top (hgp_cli_t *app, int argc, char *argv [])
{
    const char *pos [1];
    int npos = 0;
    bool options = true;
    hgp_window_t window = HGP_WINDOW_ALL;
    int64_t limit = HGP_LIMIT_DEFAULT;
    for (int i = 0; i < argc; i++) {
        const char *value;
        if (options && streq (argv [i], "--"))
            options = false;
        else
        if (options && hgp_cli_option (argc, argv, &i, "--window", &value)) {
            if (!value || hgp_window_from_name (value, &window))
                return hgp_cli_usage_error (app, "--window wants all, 1h, "
                                            "24h or trending");
        }
        else
        if (options && hgp_cli_option (argc, argv, &i, "--limit", &value)) {
            if (!hgp_cli_parse_range (value, 1, HGP_LIMIT_MAX, &limit))
                return hgp_cli_usage_error (app, "--limit wants 1..%d",
                                            HGP_LIMIT_MAX);
        }
        else {
            int err = hgp_cli_positional (app, argv [i], options, pos,
                                          &npos, 1);
            if (err)
                return err;
        }
    }
    if (npos < 1)
        return hgp_cli_usage_error (app, "top needs TYPE");
    int rc;
    if ((rc = hgp_cli_check_id (app, "TYPE", pos [0]))
    ||  (rc = hgp_cli_connect (app)))
        return rc;
    hgp_request_t req;
    hgp_cli_request (app, &req, HGP_OP_TOP);
    snprintf (req.key.counter_type, sizeof req.key.counter_type, "%s",
              pos [0]);
    req.window = window;
    req.limit = (uint32_t) limit;
    hgp_reply_t rep;
    hgp_reply_init (&rep);
    hgp_client_call (app->client, &req, &rep);
    bool trending = window == HGP_WINDOW_TRENDING;
    if (rep.error.status != HGP_STATUS_OK)
        rc = hgp_cli_reply_error (app, &rep, NULL);
    else
    if (app->json) {
        //  The shape of GET /api/v1/rank/{type} (lib/hgp_views.h)
        s_print_view (hgp_view_ranking (req.key.counter_type, window, &rep),
                      HGP_CLI_JSON_ROUNDED);
    }
    else
        for (size_t i = 0; i < rep.nranking; i++) {
            if (trending)
                printf ("%zu %s %.3f\n", i + 1, rep.ranking [i].resource_id,
                        rep.ranking [i].score);
            else
                printf ("%zu %s %lld\n", i + 1, rep.ranking [i].resource_id,
                        (long long) rep.ranking [i].count);
        }
    hgp_reply_clear (&rep);
    return rc;
}

//  --------------------------------------------------------------------------
//  stats RES TYPE

int
hgp_cli_stats (hgp_cli_t *app, int argc, char *argv [])
{
    hgp_request_t req;
    hgp_reply_t rep;
    hgp_window_t window = HGP_WINDOW_24H;
    int rc = s_counter_call (app, argc, argv, HGP_OP_STATS, "stats", &req,
                             &rep, &window);
    if (rc)
        return rc;
    if (rep.error.status != HGP_STATUS_OK)
        rc = hgp_cli_reply_error (app, &rep, NULL);
    else
    if (app->json) {
        //  The shape of GET /api/v1/counter/{r}/{t}/stats (lib/hgp_views.h)
        s_print_view (hgp_view_series (&req.key, window, zclock_time (), &rep),
                      HGP_CLI_JSON_ROUNDED);
    }
    else {
        printf ("total %lld\ntrending %.3f\n", (long long) rep.total,
                rep.trending);
        int64_t since = zclock_time ()
                      - (window == HGP_WINDOW_1H ? 3600000 : 86400000);
        for (size_t i = 0; i < rep.nbuckets; i++) {
            if (rep.buckets [i].start_ms + (int64_t) rep.bucket_ms <= since)
                continue;           //  before the window
            time_t t = (time_t) (rep.buckets [i].start_ms / 1000);
            struct tm tm;
            gmtime_r (&t, &tm);
            char when [32];
            strftime (when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
            printf ("%s %lld\n", when, (long long) rep.buckets [i].count);
        }
    }
    hgp_reply_clear (&rep);
    return rc;
}

//  --------------------------------------------------------------------------
//  uniques RES TYPE

int
hgp_cli_uniques (hgp_cli_t *app, int argc, char *argv [])
{
    hgp_request_t req;
    hgp_reply_t rep;
    int rc = s_counter_call (app, argc, argv, HGP_OP_UNIQUES, "uniques", &req,
                             &rep, NULL);
    if (rc)
        return rc;
    if (rep.error.status != HGP_STATUS_OK)
        rc = hgp_cli_reply_error (app, &rep, NULL);
    else
    if (app->json) {
        //  The shape of GET /api/v1/counter/{r}/{t}/uniques (lib/hgp_views.h)
        s_print_view (hgp_view_uniques (&req.key, &rep), HGP_CLI_JSON_EXACT);
    }
    else
        printf ("%llu\n", (unsigned long long) rep.uniques);
    hgp_reply_clear (&rep);
    return rc;
}
