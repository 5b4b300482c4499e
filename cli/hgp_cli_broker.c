/*  hgp_cli_broker.c - the commands of bin/hgp about the bus itself
 *
 *  ping and actors ask every broker this client knows (with discovery:
 *  every broker heard within two beacon intervals), each for itself, no
 *  actor involved: each broker has its own view, since an actor joins
 *  each broker on its own. The worst answer decides the exit code, after
 *  what the others said is printed. The contract they keep is in
 *  hgp_cli.h; the front end that runs them is hgp_cli.c.
 */
#include "hgp_cli.h"
#include "hgp_cli_json.h"

//  --------------------------------------------------------------------------
//  ping, actors: no arguments

static int
s_no_arguments (hgp_cli_t *app, int argc, char *argv [])
{
    for (int i = 0; i < argc; i++)
        if (hgp_cli_is_option (argv [i]))
            return hgp_cli_usage_error (app, "unknown option '%s'", argv [i]);
    if (argc)
        return hgp_cli_usage_error (app, "%s takes no arguments",
                                    app->command->name);
    return 0;
}

//  The brokers this client knows, after listening long enough to hear
//  every live one; a static client has one at once. NULL (and an error
//  printed, *rc set) when there is none.
static hgp_client_broker_t *
s_brokers (hgp_cli_t *app, size_t *count, int *rc)
{
    hgp_client_broker_t *list = (hgp_client_broker_t *)
        calloc (64, sizeof (hgp_client_broker_t));
    assert (list);
    size_t n = hgp_client_brokers (app->client, (int) app->settle_ms, list, 64);
    *count = n < 64 ? n : 64;
    if (*count == 0) {
        hgp_reply_t rep;
        hgp_reply_init (&rep);
        hgp_error_set (&rep.error, HGP_STATUS_TIMEOUT, "timeout",
                       "no broker beacon heard (%s) within %lld ms",
                       hgp_client_endpoint (app->client),
                       (long long) app->settle_ms);
        *rc = hgp_cli_reply_error (app, &rep, NULL);
        free (list);
        return NULL;
    }
    return list;
}

//  Worse of two exit codes: unknown (3) over error (1) over ok
static int
s_worse (int a, int b)
{
    int rank_a = a == HGP_CLI_EXIT_UNKNOWN ? 2 : a != HGP_CLI_EXIT_OK;
    int rank_b = b == HGP_CLI_EXIT_UNKNOWN ? 2 : b != HGP_CLI_EXIT_OK;
    return rank_a >= rank_b ? a : b;
}

int
hgp_cli_ping (hgp_cli_t *app, int argc, char *argv [])
{
    int rc;
    if ((rc = s_no_arguments (app, argc, argv)) || (rc = hgp_cli_connect (app)))
        return rc;
    size_t nbrokers;
    hgp_client_broker_t *brokers = s_brokers (app, &nbrokers, &rc);
    if (!brokers)
        return rc;
    //  Every broker answers for itself
    for (size_t i = 0; i < nbrokers; i++) {
        hgp_request_t req;
        hgp_cli_request (app, &req, HGP_OP_PING);
        hgp_reply_t rep;
        hgp_reply_init (&rep);
        int64_t start = zclock_usecs ();
        hgp_client_call_at (app->client, brokers [i].broker_id, &req, &rep);
        int64_t usecs = zclock_usecs () - start;
        if (rep.error.status != HGP_STATUS_OK)
            rc = s_worse (rc, hgp_cli_reply_error (app, &rep, NULL));
        else
        if (app->json) {
            json_t *obj = json_pack ("{s:i,s:o,s:o,s:I}",
                "status", HGP_STATUS_OK,
                "broker", hgp_cli_json_text (brokers [i].endpoint),
                "broker_id", hgp_cli_json_text (brokers [i].broker_id),
                "latency_us", (json_int_t) usecs);
            hgp_cli_json_print (&obj, HGP_CLI_JSON_EXACT);
        }
        else
            printf ("pong from %s in %lld us\n", brokers [i].endpoint,
                    (long long) usecs);
        hgp_reply_clear (&rep);
    }
    free (brokers);
    return rc;
}

//  What `hgp actors` heard: every broker's answer, and each distinct
//  actor and service once, with what all brokers saw of it
typedef struct {
    hgp_client_broker_t *brokers;   /* the brokers asked                    */
    hgp_reply_t *reps;              /* their answers, one each              */
    size_t nbrokers;                /* entries of both                      */
    char seen [HGP_ACTORS_MAX][HGP_ID_MAX + 1];  /* distinct actor ids      */
    size_t nactors;                 /* entries used                         */
    char services [16][HGP_ID_MAX + 1];          /* distinct services       */
    size_t nservices;               /* entries used                         */
    uint64_t served;                /* replies of all actors, all brokers   */
} s_census_t;

static void
s_census_count (s_census_t *self)
{
    for (size_t i = 0; i < self->nbrokers; i++)
        for (size_t j = 0; j < self->reps [i].nactors; j++) {
            hgp_actor_info_t *a = &self->reps [i].actors [j];
            self->served += a->served;
            size_t k = 0;
            while (k < self->nactors && strcmp (self->seen [k], a->actor_id))
                k++;
            if (k == self->nactors && self->nactors < HGP_ACTORS_MAX)
                snprintf (self->seen [self->nactors++], HGP_ID_MAX + 1, "%s",
                          a->actor_id);
            k = 0;
            while (k < self->nservices
               &&  strcmp (self->services [k], a->service))
                k++;
            if (k == self->nservices && self->nservices < 16)
                snprintf (self->services [self->nservices++], HGP_ID_MAX + 1,
                          "%s", a->service);
        }
}

static json_t *
s_json_actor (const hgp_actor_info_t *a, const char *broker_id)
{
    json_t *obj = json_pack ("{s:o,s:o}",
                             "service", hgp_cli_json_text (a->service),
                             "actor_id", hgp_cli_json_text (a->actor_id));
    if (broker_id)
        json_object_set_new (obj, "broker_id", hgp_cli_json_text (broker_id));
    json_t *rest = json_pack ("{s:I,s:I,s:I,s:I,s:o}",
                              "capacity", (json_int_t) a->capacity,
                              "inflight", (json_int_t) a->inflight,
                              "queued", (json_int_t) a->queued,
                              "idle_ms", (json_int_t) a->idle_ms,
                              "served", hgp_cli_json_uint (a->served));
    json_object_update (obj, rest);
    json_decref (rest);
    if (a->metrics [0])
        json_object_set_new (obj, "metrics", hgp_cli_json_text (a->metrics));
    return obj;
}

//  One broker and its answer, with the actors it listed
static json_t *
s_json_broker (const hgp_client_broker_t *b, const hgp_reply_t *rep)
{
    json_t *obj = json_pack ("{s:o,s:o,s:o,s:I,s:i}",
                             "broker_id", hgp_cli_json_text (b->broker_id),
                             "endpoint", hgp_cli_json_text (b->endpoint),
                             "state", hgp_cli_json_text (b->state),
                             "beacon_ms", (json_int_t) b->beacon_ms,
                             "status", (int) rep->error.status);
    if (rep->error.status != HGP_STATUS_OK)
        json_object_set_new (obj, "error", json_pack ("{s:o,s:o}",
            "code", hgp_cli_json_text (rep->error.code),
            "message", hgp_cli_json_text (rep->error.message)));
    json_t *actors = json_array ();
    for (size_t j = 0; j < rep->nactors; j++)
        json_array_append_new (actors, s_json_actor (&rep->actors [j], NULL));
    json_object_set_new (obj, "actors", actors);
    if (rep->metrics [0])
        json_object_set_new (obj, "metrics", hgp_cli_json_text (rep->metrics));
    json_t *processes = json_array ();
    for (size_t j = 0; j < rep->nprocesses; j++)
        json_array_append_new (processes, json_pack ("{s:o,s:o,s:I}",
            "role", hgp_cli_json_text (rep->processes [j].role),
            "metrics", hgp_cli_json_text (rep->processes [j].metrics),
            "idle_ms", (json_int_t) rep->processes [j].idle_ms));
    json_object_set_new (obj, "processes", processes);
    return obj;
}

static void
s_actors_json (const s_census_t *self)
{
    int status = HGP_STATUS_OK;
    for (size_t i = 0; i < self->nbrokers && status == HGP_STATUS_OK; i++)
        status = self->reps [i].error.status;
    json_t *brokers = json_array ();
    //  Flat, as before brokers were many: one row per (broker, actor)
    json_t *actors = json_array ();
    for (size_t i = 0; i < self->nbrokers; i++) {
        json_array_append_new (brokers, s_json_broker (&self->brokers [i],
                                                       &self->reps [i]));
        for (size_t j = 0; j < self->reps [i].nactors; j++)
            json_array_append_new (actors, s_json_actor (
                &self->reps [i].actors [j], self->brokers [i].broker_id));
    }
    json_t *obj = json_pack ("{s:i,s:o,s:o,s:o,s:o}", "status", status,
                             "brokers", brokers, "actors", actors,
                             "distinct_actors",
                             hgp_cli_json_uint (self->nactors),
                             "served", hgp_cli_json_uint (self->served));
    hgp_cli_json_print (&obj, HGP_CLI_JSON_EXACT);
}

//  The brokers' table: id, endpoint, state, beacon age, answer
static void
s_actors_print_brokers (const s_census_t *self)
{
    int ew = (int) strlen ("ENDPOINT");
    for (size_t i = 0; i < self->nbrokers; i++) {
        int len = (int) strlen (self->brokers [i].endpoint);
        ew = len > ew ? len : ew;
    }
    printf ("%-32s  %-*s  %-8s  %9s  %s\n", "BROKER", ew, "ENDPOINT",
            "STATE", "BEACON_MS", "ANSWER");
    for (size_t i = 0; i < self->nbrokers; i++) {
        const hgp_client_broker_t *b = &self->brokers [i];
        const hgp_reply_t *rep = &self->reps [i];
        char beacon [24] = "-";
        if (!streq (b->state, "static"))
            snprintf (beacon, sizeof beacon, "%lld",
                      (long long) b->beacon_ms);
        char answer [64];
        if (rep->error.status == HGP_STATUS_OK)
            snprintf (answer, sizeof answer, "%zu actors", rep->nactors);
        else
            snprintf (answer, sizeof answer, "%d %s", rep->error.status,
                      rep->error.code);
        printf ("%-32s  %-*s  %-8s  %9s  %s\n", b->broker_id, ew,
                b->endpoint, b->state, beacon, answer);
    }
}

//  The actors' table: one row per broker and actor
static void
s_actors_print_actors (const s_census_t *self)
{
    int sw = (int) strlen ("SERVICE"), aw = (int) strlen ("ACTOR_ID");
    for (size_t i = 0; i < self->nbrokers; i++)
        for (size_t j = 0; j < self->reps [i].nactors; j++) {
            int len = (int) strlen (self->reps [i].actors [j].service);
            sw = len > sw ? len : sw;
            len = (int) strlen (self->reps [i].actors [j].actor_id);
            aw = len > aw ? len : aw;
        }
    printf ("\n%-*s  %-*s  %-8s  %8s  %8s  %8s  %8s  %12s\n", sw,
            "SERVICE", aw, "ACTOR_ID", "BROKER", "CAPACITY", "INFLIGHT",
            "QUEUED", "IDLE_MS", "SERVED");
    for (size_t i = 0; i < self->nbrokers; i++)
        for (size_t j = 0; j < self->reps [i].nactors; j++) {
            hgp_actor_info_t *a = &self->reps [i].actors [j];
            printf ("%-*s  %-*s  %-8.8s  %8u  %8u  %8u  %8u  %12llu\n",
                    sw, a->service, aw, a->actor_id,
                    self->brokers [i].broker_id, a->capacity, a->inflight,
                    a->queued, a->idle_ms, (unsigned long long) a->served);
        }
    printf ("\n");
}

//  A line per service: its distinct actors and what they served
static void
s_actors_print_services (const s_census_t *self)
{
    for (size_t k = 0; k < self->nservices; k++) {
        size_t actors = 0;
        uint64_t n = 0;
        for (size_t a = 0; a < self->nactors; a++) {
            bool in = false;
            for (size_t i = 0; i < self->nbrokers; i++)
                for (size_t j = 0; j < self->reps [i].nactors; j++) {
                    const hgp_actor_info_t *info = &self->reps [i].actors [j];
                    if (streq (info->actor_id, self->seen [a])
                    &&  streq (info->service, self->services [k])) {
                        in = true;
                        n += info->served;
                    }
                }
            actors += in;
        }
        printf ("service %s: %zu actors on %zu brokers, %llu served\n",
                self->services [k], actors, self->nbrokers,
                (unsigned long long) n);
    }
    if (self->nservices == 0)
        printf ("no actors on %zu brokers\n", self->nbrokers);
}

//  What every broker sees: its own liveness (from our discovery) and its
//  actors (from its actors listing). One listing per broker, because each
//  broker has its own view: an actor joins each broker on its own.
static s_census_t *
s_census_take (hgp_cli_t *app, int *rc_p)
{
    int rc = *rc_p;
    s_census_t *census = (s_census_t *) calloc (1, sizeof (s_census_t));
    assert (census);
    census->brokers = s_brokers (app, &census->nbrokers, rc_p);
    if (!census->brokers) {
        free (census);
        return NULL;
    }
    census->reps = (hgp_reply_t *) calloc (census->nbrokers,
                                           sizeof (hgp_reply_t));
    assert (census->reps);
    for (size_t i = 0; i < census->nbrokers; i++) {
        hgp_reply_t *rep = &census->reps [i];
        hgp_request_t req;
        hgp_cli_request (app, &req, HGP_OP_ACTORS);
        hgp_reply_init (rep);
        hgp_client_call_at (app->client, census->brokers [i].broker_id, &req,
                            rep);
        if (rep->error.status != HGP_STATUS_OK) {
            const char *code = rep->error.code [0] ? rep->error.code
                                                   : "internal";
            fprintf (stderr, "hgp: broker %s: %s: %s\n",
                     census->brokers [i].endpoint, code, rep->error.message);
            rc = s_worse (rc, hgp_cli_exit_code (rep));
        }
    }
    s_census_count (census);
    *rc_p = rc;
    return census;
}

static void
s_census_destroy (s_census_t **self_p)
{
    s_census_t *census = *self_p;
    if (!census)
        return;
    for (size_t i = 0; i < census->nbrokers; i++)
        hgp_reply_clear (&census->reps [i]);
    free (census->reps);
    free (census->brokers);
    free (census);
    *self_p = NULL;
}

//  actors and targets: no arguments, every broker's listing; NULL and *rc
//  set when there is none
static s_census_t *
s_census_run (hgp_cli_t *app, int argc, char *argv [], int *rc)
{
    if ((*rc = s_no_arguments (app, argc, argv)) || (*rc = hgp_cli_connect (app)))
        return NULL;
    return s_census_take (app, rc);
}

int
hgp_cli_actors (hgp_cli_t *app, int argc, char *argv [])
{
    int rc;
    s_census_t *census = s_census_run (app, argc, argv, &rc);
    if (!census)
        return rc;
    if (app->json)
        s_actors_json (census);
    else {
        s_actors_print_brokers (census);
        s_actors_print_actors (census);
        s_actors_print_services (census);
    }
    s_census_destroy (&census);
    return rc;
}


//  --------------------------------------------------------------------------
//  targets: a Prometheus file_sd list of every process the brokers see

//  Add url under role to groups (one group per role and URL scheme and
//  path, each URL once)
static void
s_target_add (json_t *groups, const char *role, const char *url)
{
    const char *scheme = strncmp (url, "https://", 8) == 0 ? "https" : "http";
    const char *host = url + strlen (scheme) + 3;
    const char *slash = strchr (host, '/');
    char hostport [HGP_URL_MAX + 1];
    snprintf (hostport, sizeof hostport, "%.*s",
              (int) (slash ? slash - host : (ptrdiff_t) strlen (host)), host);
    const char *path = slash ? slash : "/metrics";
    size_t i;
    json_t *group;
    json_array_foreach (groups, i, group) {
        json_t *labels = json_object_get (group, "labels");
        json_t *targets = json_object_get (group, "targets");
        size_t j;
        json_t *t;
        json_array_foreach (targets, j, t)
            if (streq (json_string_value (t), hostport)
            &&  streq (json_string_value (json_object_get (labels,
                                          "__metrics_path__")), path))
                return;             //  heard from another broker already
        if (streq (json_string_value (json_object_get (labels, "role")), role)
        &&  streq (json_string_value (json_object_get (labels, "__scheme__")),
                   scheme)
        &&  streq (json_string_value (json_object_get (labels,
                                      "__metrics_path__")), path)) {
            json_array_append_new (targets, json_string (hostport));
            return;
        }
    }
    json_array_append_new (groups, json_pack ("{s:[s],s:{s:s,s:s,s:s,s:s}}",
        "targets", hostport, "labels", "job", "hgp", "role", role,
        "__scheme__", scheme, "__metrics_path__", path));
}

int
hgp_cli_targets (hgp_cli_t *app, int argc, char *argv [])
{
    int rc;
    s_census_t *census = s_census_run (app, argc, argv, &rc);
    if (!census)
        return rc;
    json_t *groups = json_array ();
    for (size_t i = 0; i < census->nbrokers; i++) {
        const hgp_reply_t *r = &census->reps [i];
        if (r->metrics [0])
            s_target_add (groups, "broker", r->metrics);
        for (size_t j = 0; j < r->nactors; j++)
            if (r->actors [j].metrics [0])
                s_target_add (groups, r->actors [j].service,
                              r->actors [j].metrics);
        for (size_t j = 0; j < r->nprocesses; j++)
            s_target_add (groups, r->processes [j].role,
                          r->processes [j].metrics);
    }
    char *text = json_dumps (groups, JSON_INDENT (2) | JSON_PRESERVE_ORDER);
    if (text)
        printf ("%s\n", text);
    free (text);
    json_decref (groups);
    s_census_destroy (&census);
    return rc;
}
