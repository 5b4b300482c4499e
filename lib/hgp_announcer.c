/*  hgp_announcer.c - announce to every broker (see hgp_announcer.h)
 *
 *  The client is made in the caller's thread (it reads the config, which
 *  may be gone later) and then belongs to the actor's thread alone.
 */
#include "hgp_announcer.h"
#include "hgp_client.h"
#include "hgp_process.h"

#define S_CALL_MS       500         /* each broker's answer               */
#define S_BROKERS_MAX   16

typedef struct {
    hgp_client_t *client;
    char role [HGP_ID_MAX + 1];
    char metrics [HGP_URL_MAX + 1];
} s_args_t;

struct _hgp_announcer_t {
    zactor_t *actor;
    s_args_t args;
};

//  One round: every broker the client knows
static void
s_round (s_args_t *args, bool *refused)
{
    hgp_client_broker_t brokers [S_BROKERS_MAX];
    size_t n = hgp_client_brokers (args->client, 0, brokers, S_BROKERS_MAX);
    for (size_t i = 0; i < n && i < S_BROKERS_MAX; i++) {
        hgp_request_t req;
        hgp_request_init (&req);
        req.op = HGP_OP_ANNOUNCE;
        req.timeout_ms = S_CALL_MS;
        hgp_process_random_id (req.id, sizeof req.id);
        snprintf (req.role, sizeof req.role, "%s", args->role);
        snprintf (req.metrics, sizeof req.metrics, "%s", args->metrics);
        hgp_reply_t rep;
        hgp_reply_init (&rep);
        hgp_client_call_at (args->client, brokers [i].broker_id, &req, &rep);
        //  A broker that says no (not a timeout) is worth one line
        if (rep.error.status != HGP_STATUS_OK
        &&  rep.error.status != HGP_STATUS_TIMEOUT && !*refused) {
            zsys_warning ("announce to broker %s: %d %s: %s",
                          brokers [i].broker_id, rep.error.status,
                          rep.error.code, rep.error.message);
            *refused = true;
        }
        hgp_reply_clear (&rep);
    }
}

static void
s_actor (zsock_t *pipe, void *arg)
{
    s_args_t *args = (s_args_t *) arg;
    zsock_signal (pipe, 0);
    bool refused = false;
    zpoller_t *poller = zpoller_new (pipe, NULL);
    int64_t next = zclock_mono ();
    while (true) {
        int64_t wait = next - zclock_mono ();
        if (wait > 0 && zpoller_wait (poller, (int) wait) == pipe) {
            char *command = zstr_recv (pipe);
            bool term = !command || streq (command, "$TERM");
            zstr_free (&command);
            if (term)
                break;
            continue;
        }
        if (zpoller_terminated (poller))
            break;
        s_round (args, &refused);
        next = zclock_mono () + HGP_ANNOUNCE_MS;
    }
    zpoller_destroy (&poller);
}

hgp_announcer_t *
hgp_announcer_new (hgp_config_t *config, const char *role,
                   const char *metrics)
{
    hgp_announcer_t *self = (hgp_announcer_t *) calloc (1, sizeof *self);
    if (!self)
        return NULL;
    snprintf (self->args.role, sizeof self->args.role, "%s", role);
    snprintf (self->args.metrics, sizeof self->args.metrics, "%s", metrics);
    self->args.client = hgp_client_new_config (config);
    if (!self->args.client) {
        zsys_error ("announce: no client of the brokers: %s",
                    strerror (errno));
        free (self);
        return NULL;
    }
    self->actor = zactor_new (s_actor, &self->args);
    assert (self->actor);
    return self;
}

void
hgp_announcer_destroy (hgp_announcer_t **self_p)
{
    if (self_p && *self_p) {
        hgp_announcer_t *self = *self_p;
        zactor_destroy (&self->actor);
        hgp_client_destroy (&self->args.client);
        free (self);
        *self_p = NULL;
    }
}
