/*  hgp_mux.c - many threads' bus calls over one bus client (see .h)
 *
 *  A caller puts its call (on its own stack) on the submission queue and
 *  waits on the call's semaphore. The mux thread takes the whole queue at
 *  once, sends each request, matches replies to calls by request id, and
 *  answers each call by posting its semaphore. It keeps hgp_client_call's promises:
 *
 *  - every call is answered: a reply, or 504 timeout once its budget and
 *    HGP_CLIENT_GRACE_MS are gone (outcome unknown), or 503 when the mux
 *    stops;
 *  - a request no broker would take yet (all unreachable, or none known
 *    yet) is tried again on every turn until its budget is gone, as a
 *    blocking send would have waited, without holding up the others;
 *  - two calls with the same request id in flight at once (a client's
 *    retry while its first attempt waits) cannot be told apart by their
 *    replies, so the second is sent only once the first is answered; its
 *    answer is then the record's (replayed, or id_conflict).
 */
#include "hgp_mux.h"
#include <pthread.h>
#include <semaphore.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define S_EXPIRE_MS     10          /* between looks for expired calls     */
#define S_RETRY_MS      5           /* between tries of unsent requests    */
#define S_EVENTS_MS     100         /* a discovery client wants a recv     */

typedef struct _s_call_t s_call_t;
struct _s_call_t {
    const hgp_request_t *req;       /* the caller's                         */
    hgp_reply_t *rep;               /* the caller's, written when answered  */
    int64_t send_until;             /* zclock_mono: give up sending         */
    int64_t deadline;               /* zclock_mono: give up waiting         */
    sem_t done;                     /* posted once rep is final: the one
                                       thing that wakes the caller, so
                                       callers never meet on a lock      */
    s_call_t *next;                 /* queue, unsent list, or twins         */
    s_call_t *prev;                 /* in flight only                       */
    s_call_t *twins;                /* later calls with the same id         */
};

struct _hgp_mux_t {
    zactor_t *actor;                /* the mux thread                       */
    pthread_mutex_t lock;           /* guards the queue and stopping        */
    s_call_t *head;                 /* submitted, not taken yet             */
    s_call_t *tail;
    bool stopping;                  /* no new calls are taken               */
    bool failed;                    /* the thread could not make its client */
    int wake;                       /* eventfd: the queue became non-empty  */
    char *endpoint;                 /* client settings, for the thread      */
    char *events;
    char *where;
    hgp_keys_t *keys;
};

//  The mux thread's own state; nothing here is shared
typedef struct {
    hgp_mux_t *mux;
    zsock_t *pipe;
    hgp_client_t *client;
    zhashx_t *calls;                /* request id -> call in flight         */
    s_call_t *first;                /* in flight, oldest first              */
    s_call_t *last;
    s_call_t *unsent;               /* no broker took them yet              */
    hgp_reply_t scratch;            /* replies land here, then move         */
    int64_t expire_at;              /* next look for expired calls          */
    bool terminated;
} s_thread_t;


/*  --------------------------------------------------------------------
 *  Answering calls
 */

static void s_submit (s_thread_t *self, s_call_t *call);

//  The call's answer is in its rep: wake the caller, and send the first
//  of its twins (they wait for each other in turn)
static void
s_finish (s_thread_t *self, s_call_t *call)
{
    s_call_t *twins = call->twins;
    sem_post (&call->done);
    //  The caller may have returned and its call gone: use only twins
    if (twins) {
        s_call_t *next = twins->next;
        twins->next = NULL;
        twins->twins = next;
        s_submit (self, twins);
    }
}

static void
s_finish_error (s_thread_t *self, s_call_t *call, uint16_t status,
                const char *code, const char *message)
{
    hgp_reply_set_error (call->rep, call->req->id, status, code, message);
    s_finish (self, call);
}

static void
s_inflight_add (s_thread_t *self, s_call_t *call)
{
    call->prev = self->last;
    call->next = NULL;
    if (self->last)
        self->last->next = call;
    else
        self->first = call;
    self->last = call;
    zhashx_insert (self->calls, call->req->id, call);
}

static void
s_inflight_remove (s_thread_t *self, s_call_t *call)
{
    if (call->prev)
        call->prev->next = call->next;
    else
        self->first = call->next;
    if (call->next)
        call->next->prev = call->prev;
    else
        self->last = call->prev;
    zhashx_delete (self->calls, call->req->id);
    hgp_client_forget (self->client, call->req->id);
}


/*  --------------------------------------------------------------------
 *  Sending
 */

//  Try to send a call's request now: true when it went (or was answered)
static bool
s_send (s_thread_t *self, s_call_t *call)
{
    if (hgp_client_send (self->client, call->req) == 0) {
        s_inflight_add (self, call);
        return true;
    }
    int error = errno;
    if (error == EINVAL) {
        s_finish_error (self, call, HGP_STATUS_BAD_REQUEST, "invalid",
                        "request cannot be encoded (bad id or fields)");
        return true;
    }
    if (error != EAGAIN && error != EHOSTUNREACH) {
        char message [HGP_MESSAGE_MAX + 1];
        snprintf (message, sizeof message, "cannot send to the broker at "
                  "%.160s (%s); request not sent",
                  hgp_client_endpoint (self->client), zmq_strerror (error));
        s_finish_error (self, call, HGP_STATUS_TIMEOUT, "timeout", message);
        return true;
    }
    return false;
}

//  A new call: wait behind a call with the same id, or go now, or later
static void
s_submit (s_thread_t *self, s_call_t *call)
{
    s_call_t *same = (s_call_t *) zhashx_lookup (self->calls, call->req->id);
    if (!same)
        for (s_call_t *c = self->unsent; c && !same; c = c->next)
            if (streq (c->req->id, call->req->id))
                same = c;
    if (same) {
        //  Last in line behind it
        call->next = NULL;
        s_call_t **tail = &same->twins;
        while (*tail)
            tail = &(*tail)->next;
        *tail = call;
        return;
    }
    if (!s_send (self, call)) {
        call->next = self->unsent;
        self->unsent = call;
    }
}

//  Unsent calls: try again, or give up on those whose budget is gone
static void
s_retry_unsent (s_thread_t *self, int64_t now)
{
    s_call_t *list = self->unsent;
    self->unsent = NULL;
    while (list) {
        s_call_t *call = list;
        list = call->next;
        if (s_send (self, call))
            continue;
        if (now >= call->send_until) {
            char message [HGP_MESSAGE_MAX + 1];
            snprintf (message, sizeof message, "cannot reach the broker at"
                      " %.160s within %u ms; request not sent",
                      hgp_client_endpoint (self->client),
                      call->req->timeout_ms ? call->req->timeout_ms
                                            : HGP_TIMEOUT_DEFAULT);
            s_finish_error (self, call, HGP_STATUS_TIMEOUT, "timeout",
                            message);
            continue;
        }
        call->next = self->unsent;
        self->unsent = call;
    }
}

//  Take everything callers submitted since the last look
static void
s_take_queue (s_thread_t *self)
{
    uint64_t count;
    if (read (self->mux->wake, &count, sizeof count) < 0
    &&  errno != EAGAIN)
        zsys_warning ("mux: cannot read its eventfd: %s", strerror (errno));
    pthread_mutex_lock (&self->mux->lock);
    s_call_t *list = self->mux->head;
    self->mux->head = self->mux->tail = NULL;
    pthread_mutex_unlock (&self->mux->lock);
    while (list) {
        s_call_t *call = list;
        list = call->next;
        call->next = NULL;
        s_submit (self, call);
    }
}


/*  --------------------------------------------------------------------
 *  Receiving
 */

static void
s_recv_replies (s_thread_t *self)
{
    while (hgp_client_recv (self->client, &self->scratch, 0) == 0) {
        s_call_t *call = self->scratch.id [0]
            ? (s_call_t *) zhashx_lookup (self->calls, self->scratch.id)
            : NULL;
        if (!call)
            //  Late (its call expired), or an error about a request the
            //  broker could not read, which we cannot pin on anyone
            continue;
        s_inflight_remove (self, call);
        //  The reply moves to the caller; the caller's old one is freed
        //  by the next hgp_client_recv into scratch
        hgp_reply_t old = *call->rep;
        *call->rep = self->scratch;
        self->scratch = old;
        hgp_client_check (call->req, call->rep);
        s_finish (self, call);
    }
}

static void
s_expire (s_thread_t *self, int64_t now)
{
    s_call_t *call = self->first;
    while (call) {
        s_call_t *next = call->next;
        if (now >= call->deadline) {
            s_inflight_remove (self, call);
            char message [HGP_MESSAGE_MAX + 1];
            snprintf (message, sizeof message, "no reply from the broker at"
                      " %.160s within %u ms; outcome unknown, retry with the"
                      " same id", hgp_client_endpoint (self->client),
                      (call->req->timeout_ms ? call->req->timeout_ms
                                             : HGP_TIMEOUT_DEFAULT)
                      + HGP_CLIENT_GRACE_MS);
            s_finish_error (self, call, HGP_STATUS_TIMEOUT, "timeout",
                            message);
        }
        call = next;
    }
    self->expire_at = now + S_EXPIRE_MS;
}

//  Answer every call we hold or that is queued: we are stopping
static void
s_drain (s_thread_t *self)
{
    pthread_mutex_lock (&self->mux->lock);
    self->mux->stopping = true;
    pthread_mutex_unlock (&self->mux->lock);
    s_take_queue (self);
    //  Answering a call can submit its twins: loop until none is left
    while (self->first || self->unsent) {
        while (self->first) {
            s_call_t *call = self->first;
            s_inflight_remove (self, call);
            s_finish_error (self, call, HGP_STATUS_UNAVAILABLE, "unavailable",
                            "the gateway is stopping; outcome unknown, retry"
                            " with the same id");
        }
        while (self->unsent) {
            s_call_t *call = self->unsent;
            self->unsent = call->next;
            s_finish_error (self, call, HGP_STATUS_UNAVAILABLE, "unavailable",
                            "the gateway is stopping; the request was not"
                            " sent");
        }
    }
}


/*  --------------------------------------------------------------------
 *  The thread
 */

static void
s_mux_actor (zsock_t *pipe, void *args)
{
    hgp_mux_t *mux = (hgp_mux_t *) args;
    s_thread_t self = { .mux = mux, .pipe = pipe };
    self.client = mux->events
                ? hgp_client_new_shared (mux->events, mux->where, mux->keys)
                : hgp_client_new (mux->endpoint, mux->keys);
    if (!self.client) {
        zsys_error ("mux: cannot create a bus client for %s",
                    mux->events ? mux->where : mux->endpoint);
        mux->failed = true;
        zsock_signal (pipe, 1);
        return;
    }
    //  Never block the thread on one request: unsent ones wait in a list
    hgp_client_set_send_wait (self.client, 0);
    self.calls = zhashx_new ();
    assert (self.calls);
    hgp_reply_init (&self.scratch);
    zsock_signal (pipe, 0);

    zmq_pollitem_t items [] = {
        { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 },
        { zsock_resolve (hgp_client_sock (self.client)), 0, ZMQ_POLLIN, 0 },
        { NULL, mux->wake, ZMQ_POLLIN, 0 }
    };
    self.expire_at = zclock_mono () + S_EXPIRE_MS;
    while (!self.terminated) {
        int64_t now = zclock_mono ();
        int64_t wait = MIN (self.expire_at - now, S_EVENTS_MS);
        if (self.unsent)
            wait = MIN (wait, S_RETRY_MS);
        if (zmq_poll (items, 3, (long) MAX (wait, 0)) == -1) {
            if (zmq_errno () == EINTR)
                continue;
            zsys_error ("mux: poll failed: %s", zmq_strerror (zmq_errno ()));
            break;
        }
        if (items [0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv (pipe);
            if (!command || streq (command, "$TERM"))
                self.terminated = true;
            zstr_free (&command);
        }
        //  Replies first: they free room at the broker for new requests
        s_recv_replies (&self);
        if (items [2].revents & ZMQ_POLLIN)
            s_take_queue (&self);
        now = zclock_mono ();
        if (self.unsent)
            s_retry_unsent (&self, now);
        if (now >= self.expire_at)
            s_expire (&self, now);
    }
    s_drain (&self);
    hgp_reply_clear (&self.scratch);
    zhashx_destroy (&self.calls);
    hgp_client_destroy (&self.client);
}


/*  --------------------------------------------------------------------
 *  Public API
 */

hgp_mux_t *
hgp_mux_new (const char *endpoint, const char *events, const char *where,
             hgp_keys_t *keys)
{
    hgp_mux_t *self = (hgp_mux_t *) zmalloc (sizeof (hgp_mux_t));
    assert (self);
    pthread_mutex_init (&self->lock, NULL);
    self->wake = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert (self->wake >= 0);
    self->endpoint = endpoint ? strdup (endpoint) : NULL;
    self->events = events ? strdup (events) : NULL;
    self->where = where ? strdup (where) : NULL;
    self->keys = keys;
    self->actor = zactor_new (s_mux_actor, self);
    assert (self->actor);
    //  zactor_new returns once the thread signalled, whatever it said
    if (self->failed) {
        hgp_mux_destroy (&self);
        return NULL;
    }
    return self;
}

void
hgp_mux_destroy (hgp_mux_t **self_p)
{
    assert (self_p);
    hgp_mux_t *self = *self_p;
    if (!self)
        return;
    zactor_destroy (&self->actor);
    close (self->wake);
    pthread_mutex_destroy (&self->lock);
    free (self->endpoint);
    free (self->events);
    free (self->where);
    free (self);
    *self_p = NULL;
}

int
hgp_mux_call (hgp_mux_t *self, const hgp_request_t *req, hgp_reply_t *rep)
{
    assert (self);
    assert (req);
    assert (rep);
    uint32_t timeout = req->timeout_ms ? req->timeout_ms : HGP_TIMEOUT_DEFAULT;
    int64_t now = zclock_mono ();
    s_call_t call = {
        .req = req,
        .rep = rep,
        .send_until = now + timeout,
        .deadline = now + timeout + HGP_CLIENT_GRACE_MS
    };
    sem_init (&call.done, 0, 0);
    pthread_mutex_lock (&self->lock);
    if (self->stopping) {
        pthread_mutex_unlock (&self->lock);
        sem_destroy (&call.done);
        hgp_reply_set_error (rep, req->id, HGP_STATUS_UNAVAILABLE,
                             "unavailable", "the gateway is stopping; the"
                             " request was not sent");
        return 0;
    }
    bool was_empty = self->head == NULL;
    if (self->tail)
        self->tail->next = &call;
    else
        self->head = &call;
    self->tail = &call;
    pthread_mutex_unlock (&self->lock);
    if (was_empty) {
        uint64_t one = 1;
        if (write (self->wake, &one, sizeof one) < 0)
            zsys_warning ("mux: cannot write its eventfd: %s",
                          strerror (errno));
    }
    while (sem_wait (&call.done) == -1 && errno == EINTR)
        ;                           //  the housekeeper's SIGURG, or others
    sem_destroy (&call.done);
    return 0;
}
