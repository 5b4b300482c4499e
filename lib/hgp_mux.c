/*  hgp_mux.c - many bus calls in flight over one bus client (see .h)
 *
 *  A call is a small record from a free list: the caller's request and
 *  reply, its two deadlines, and its callback. It is in exactly one place
 *  at a time: in flight (a list oldest first, and a hash by request id),
 *  unsent (no broker took it yet), or waiting behind a twin with the same
 *  id. Answering a call returns its record to the free list before the
 *  callback runs, so a callback that starts the next call (the health
 *  check's next step) reuses it.
 */
#include "hgp_mux.h"

#define S_EXPIRE_MS     10          /* between looks for expired calls     */
#define S_RETRY_MS      5           /* between tries of unsent requests    */
#define S_EVENTS_MS     100         /* a discovery client wants a recv     */
#define S_BATCH_MAX     256         /* requests in one message to the broker */

typedef struct _s_call_t s_call_t;
struct _s_call_t {
    const hgp_request_t *req;       /* the caller's                         */
    hgp_reply_t *rep;               /* the caller's, written when answered  */
    hgp_mux_done_fn *done;          /* tells the caller                     */
    void *arg;
    int64_t send_until;             /* zclock_mono: give up sending         */
    int64_t deadline;               /* zclock_mono: give up waiting         */
    s_call_t *next;                 /* in flight, unsent, twins or free     */
    s_call_t *prev;                 /* in flight only                       */
    s_call_t *twins;                /* later calls with the same id         */
};

struct _hgp_mux_t {
    hgp_client_t *client;
    zhashx_t *calls;                /* request id -> call in flight         */
    s_call_t *first;                /* in flight, oldest first              */
    s_call_t *last;
    s_call_t *unsent;               /* no broker took them yet              */
    s_call_t *free;                 /* records to reuse                     */
    hgp_reply_t scratch;            /* replies land here, then move         */
    int64_t expire_at;              /* next look for expired calls          */
    size_t open;                    /* calls not answered yet               */
    bool batch_ok;                  /* the client sends batches             */
    bool batch_open;                /* requests wait for s_flush            */
    uint32_t batch_n;               /* how many: the newest in flight       */
};


/*  --------------------------------------------------------------------
 *  Answering calls
 */

static void s_submit (hgp_mux_t *self, s_call_t *call);

//  The call's answer is in its rep: give the record back, tell the caller,
//  and send the first of its twins (they wait for each other in turn)
static void
s_finish (hgp_mux_t *self, s_call_t *call)
{
    s_call_t *twins = call->twins;
    hgp_mux_done_fn *done = call->done;
    void *arg = call->arg;
    call->next = self->free;
    self->free = call;
    self->open--;
    done (arg);
    if (twins) {
        s_call_t *next = twins->next;
        twins->next = NULL;
        twins->twins = next;
        s_submit (self, twins);
    }
}

static void
s_finish_error (hgp_mux_t *self, s_call_t *call, uint16_t status,
                const char *code, const char *message)
{
    hgp_reply_set_error (call->rep, call->req->id, status, code, message);
    s_finish (self, call);
}

static void
s_inflight_add (hgp_mux_t *self, s_call_t *call)
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
s_inflight_remove (hgp_mux_t *self, s_call_t *call)
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

static void s_flush (hgp_mux_t *self);

//  A send the client refused with error: true when that answered the call
//  (a broker that cannot take it now, EAGAIN or EHOSTUNREACH, is no
//  answer: the call waits to be sent again)
static bool
s_send_failed (hgp_mux_t *self, s_call_t *call, int error)
{
    if (error == EAGAIN || error == EHOSTUNREACH)
        return false;
    char message [HGP_MESSAGE_MAX + 1];
    snprintf (message, sizeof message, "cannot send to the broker at "
              "%.160s (%s); request not sent",
              hgp_client_endpoint (self->client), zmq_strerror (error));
    s_finish_error (self, call, HGP_STATUS_TIMEOUT, "timeout", message);
    return true;
}

//  Try to send a call's request now: true when it went (or was answered).
//  Requests go in batches (PROTOCOL.md 4.1): one message to the broker
//  for all that are sent in one turn of the owner's loop, when hgp_mux_run
//  flushes them. Until then they count as in flight.
static bool
s_send (hgp_mux_t *self, s_call_t *call)
{
    if (self->batch_ok && !self->batch_open) {
        if (hgp_client_batch_begin (self->client) == 0) {
            self->batch_open = true;
            self->batch_n = 0;
        }
        else
            self->batch_ok = false;     //  a discovery client: one by one
    }
    if (hgp_client_send (self->client, call->req) == 0) {
        s_inflight_add (self, call);
        if (self->batch_open && ++self->batch_n == S_BATCH_MAX)
            s_flush (self);
        return true;
    }
    int error = errno;
    if (error == EINVAL) {
        s_finish_error (self, call, HGP_STATUS_BAD_REQUEST, "invalid",
                        "request cannot be encoded (bad id or fields)");
        return true;
    }
    return s_send_failed (self, call, error);
}

//  Send the open batch. When it cannot go, none of it went: its calls (the
//  newest in flight) go back to wait, or fail as s_send would fail them.
static void
s_flush (hgp_mux_t *self)
{
    if (!self->batch_open)
        return;
    self->batch_open = false;
    uint32_t n = self->batch_n;
    self->batch_n = 0;
    if (hgp_client_batch_end (self->client) == 0)
        return;
    int error = errno;
    s_call_t *list = NULL;
    for (uint32_t i = 0; i < n; i++) {
        s_call_t *call = self->last;
        assert (call);
        s_inflight_remove (self, call);
        call->next = list;
        list = call;
    }
    while (list) {
        s_call_t *call = list;
        list = call->next;
        if (!s_send_failed (self, call, error)) {
            call->next = self->unsent;
            self->unsent = call;
        }
    }
}

//  A new call: wait behind a call with the same id, or go now, or later
static void
s_submit (hgp_mux_t *self, s_call_t *call)
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
s_retry_unsent (hgp_mux_t *self, int64_t now)
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


/*  --------------------------------------------------------------------
 *  Receiving
 */

static void
s_recv_replies (hgp_mux_t *self)
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
s_expire (hgp_mux_t *self, int64_t now)
{
    //  Oldest first, and a callback only appends: stop at the first call
    //  that is still in time once the list was walked as it stood
    s_call_t *call = self->first;
    s_call_t *stop = self->last;
    while (call) {
        s_call_t *next = call == stop ? NULL : call->next;
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


/*  --------------------------------------------------------------------
 *  Public API
 */

hgp_mux_t *
hgp_mux_new (hgp_client_t *client)
{
    assert (client);
    hgp_mux_t *self = (hgp_mux_t *) zmalloc (sizeof (hgp_mux_t));
    assert (self);
    self->client = client;
    self->batch_ok = true;
    //  Never block the loop on one request: unsent ones wait in a list
    hgp_client_set_send_wait (client, 0);
    self->calls = zhashx_new ();
    assert (self->calls);
    hgp_reply_init (&self->scratch);
    self->expire_at = zclock_mono () + S_EXPIRE_MS;
    return self;
}

void
hgp_mux_destroy (hgp_mux_t **self_p)
{
    assert (self_p);
    hgp_mux_t *self = *self_p;
    if (!self)
        return;
    s_flush (self);
    self->batch_ok = false;             //  what is answered below goes alone
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
    while (self->free) {
        s_call_t *call = self->free;
        self->free = call->next;
        free (call);
    }
    hgp_reply_clear (&self->scratch);
    zhashx_destroy (&self->calls);
    hgp_client_destroy (&self->client);
    free (self);
    *self_p = NULL;
}

void
hgp_mux_call (hgp_mux_t *self, const hgp_request_t *req, hgp_reply_t *rep,
              hgp_mux_done_fn *done, void *arg)
{
    assert (self);
    assert (req);
    assert (rep);
    assert (done);
    s_call_t *call = self->free;
    if (call)
        self->free = call->next;
    else {
        call = (s_call_t *) malloc (sizeof (s_call_t));
        assert (call);
    }
    uint32_t timeout = req->timeout_ms ? req->timeout_ms : HGP_TIMEOUT_DEFAULT;
    int64_t now = zclock_mono ();
    *call = (s_call_t) {
        .req = req,
        .rep = rep,
        .done = done,
        .arg = arg,
        .send_until = now + timeout,
        .deadline = now + timeout + HGP_CLIENT_GRACE_MS
    };
    self->open++;
    s_submit (self, call);
}

zsock_t *
hgp_mux_sock (hgp_mux_t *self)
{
    assert (self);
    return hgp_client_sock (self->client);
}

int
hgp_mux_run (hgp_mux_t *self)
{
    assert (self);
    //  What the owner sent since the last run, then replies: they free
    //  room at the broker for new requests
    s_flush (self);
    s_recv_replies (self);
    int64_t now = zclock_mono ();
    if (self->unsent)
        s_retry_unsent (self, now);
    if (now >= self->expire_at)
        s_expire (self, now);
    //  Last, whatever was sent above: the owner waits on the socket's
    //  ZMQ_FD, which only signals again once a receive found nothing.
    //  Callbacks may have sent more: nothing waits past this run.
    s_recv_replies (self);
    while (self->batch_open) {
        s_flush (self);
        s_recv_replies (self);
    }
    int64_t wait = MIN (self->expire_at - now, S_EVENTS_MS);
    if (!self->first && !self->unsent)
        wait = S_EVENTS_MS;
    if (self->unsent)
        wait = MIN (wait, S_RETRY_MS);
    return (int) MAX (wait, 0);
}

size_t
hgp_mux_open (hgp_mux_t *self)
{
    assert (self);
    return self->open;
}
