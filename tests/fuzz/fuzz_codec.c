/*  fuzz_codec.c - fuzz harness for every decoder of the wire codec
 *
 *  libFuzzer entry point (make fuzz builds it with clang -fsanitize=fuzzer);
 *  the same function is driven by fuzz_smoke.c under gcc + ASan in
 *  `make test`. Properties checked beyond "does not crash":
 *  - whatever decodes, re-encodes and decodes to the same thing;
 *  - a failed decode always says why (status >= 400, a code, a message);
 *  - a beacon that decodes is byte-identical to its re-encoding.
 */
#include "hgp_codec.h"
#include <assert.h>
#include <string.h>
#include <stdlib.h>

static void
s_check_error (const hgp_error_t *err)
{
    if (!(err->status >= 400 && err->code [0] && err->message [0]))
        abort ();
}

static void
s_request (const uint8_t *data, size_t size)
{
    hgp_request_t req, again;
    hgp_error_t err = { 0 };
    if (hgp_request_decode (&req, data, size, &err)) {
        s_check_error (&err);
        return;
    }
    hgp_buf_t buf = { 0 };
    if (hgp_request_encode (&req, &buf))
        abort ();
    if (hgp_request_decode (&again, buf.data, buf.size, &err))
        abort ();
    if (again.op != req.op || again.delta != req.delta
    ||  again.nkeys != req.nkeys || strcmp (again.id, req.id)
    ||  memcmp (&again.key, &req.key, sizeof req.key)
    ||  (req.nkeys && memcmp (again.keys, req.keys,
                              req.nkeys * sizeof (hgp_key_t))))
        abort ();
    hgp_request_clear (&again);
    hgp_request_clear (&req);
    hgp_buf_clear (&buf);
}

static void
s_reply (const uint8_t *data, size_t size)
{
    hgp_reply_t rep, again;
    hgp_error_t err = { 0 };
    if (hgp_reply_decode (&rep, data, size, &err)) {
        s_check_error (&err);
        return;
    }
    hgp_buf_t buf = { 0 };
    if (hgp_reply_encode (&rep, &buf) == 0) {
        if (hgp_reply_decode (&again, buf.data, buf.size, &err))
            abort ();
        if (again.error.status != rep.error.status
        ||  again.nvalues != rep.nvalues || again.nactors != rep.nactors)
            abort ();
        hgp_reply_clear (&again);
    }
    hgp_reply_clear (&rep);
    hgp_buf_clear (&buf);
}

static void
s_ready (const uint8_t *data, size_t size)
{
    hgp_ready_t ready;
    hgp_error_t err = { 0 };
    if (hgp_ready_decode (&ready, data, size, &err))
        s_check_error (&err);
}

static void
s_event (const uint8_t *data, size_t size)
{
    hgp_event_t event, again;
    hgp_error_t err = { 0 };
    if (hgp_event_decode (&event, data, size, &err)) {
        s_check_error (&err);
        return;
    }
    hgp_buf_t buf = { 0 };
    if (hgp_event_encode (&event, &buf)
    ||  hgp_event_decode (&again, buf.data, buf.size, &err)
    ||  memcmp (&event, &again, sizeof event))
        abort ();
    hgp_buf_clear (&buf);
}

/*  A beacon that decodes re-encodes to the very same bytes: the layout
    is fixed, so there is exactly one encoding of each beacon */
static void
s_beacon (const uint8_t *data, size_t size)
{
    hgp_beacon_t beacon;
    hgp_error_t err = { 0 };
    if (hgp_beacon_decode (&beacon, data, size, &err)) {
        s_check_error (&err);
        return;
    }
    uint8_t wire [HGP_BEACON_MAX];
    int n = hgp_beacon_encode (&beacon, wire, sizeof wire);
    if (n < 0 || size != (size_t) n || memcmp (wire, data, size) != 0)
        abort ();
}

/*  A batch frame, read as requests and as replies: every entry lies
    inside the frame, and the entries read re-encode to the bytes they
    came from (the heads are fixed, so each entry has one encoding) */
static void
s_batch (const uint8_t *data, size_t size, bool replies)
{
    hgp_batch_cur_t cur;
    hgp_batch_begin (&cur, data, size, replies);
    hgp_buf_t buf = { 0 };
    hgp_batch_entry_t entry;
    int rc;
    while ((rc = hgp_batch_next (&cur, &entry)) == 1) {
        if (entry.token < data || entry.body < data
        ||  entry.body + entry.size > data + size)
            abort ();
        int put = replies
                ? hgp_batch_put_reply (&buf, entry.token, entry.body,
                                       entry.size)
                : hgp_batch_put_request (&buf, entry.token, entry.budget,
                                         entry.clock, entry.body, entry.size);
        if (put)
            abort ();
    }
    if (buf.size > size || (buf.size && memcmp (buf.data, data, buf.size))
    ||  (rc == 0 && buf.size != size))
        abort ();
    hgp_buf_clear (&buf);
}

/*  A client batch (an array of bodies, PROTOCOL.md 4.1), read as the
    broker reads one: every element lies inside the frame, after the one
    before it, and decodes (or not) as a request on its own; rebuilt with
    hgp_array_start/finish, the elements read give the same bytes after
    the header */
static void
s_client_batch (const uint8_t *data, size_t size)
{
    size_t at;
    int count = hgp_array_open (data, size, &at);
    if (count < 0)
        return;
    hgp_buf_t buf = { 0 };
    size_t start;
    if (hgp_array_start (&buf, &start))
        abort ();
    size_t first = at;
    int i;
    for (i = 0; i < count && i <= HGP_ARRAY_MAX; i++) {
        const uint8_t *elem;
        size_t elem_size;
        size_t before = at;
        if (hgp_array_next (data, size, &at, &elem, &elem_size))
            break;
        if (elem != data + before || elem_size == 0 || at > size
        ||  at != before + elem_size)
            abort ();
        s_request (elem, elem_size);
        if (hgp_buf_append (&buf, elem, elem_size))
            abort ();
    }
    hgp_array_finish (&buf, start, (uint32_t) i);
    if (buf.size - HGP_ARRAY_HEAD != at - first
    ||  memcmp (buf.data + HGP_ARRAY_HEAD, data + first, at - first))
        abort ();
    size_t again;
    if (hgp_array_open (buf.data, buf.size, &again) != i
    ||  again != HGP_ARRAY_HEAD)
        abort ();
    hgp_buf_clear (&buf);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    s_request (data, size);
    s_reply (data, size);
    s_ready (data, size);
    s_event (data, size);
    s_beacon (data, size);
    s_batch (data, size, false);
    s_batch (data, size, true);
    s_client_batch (data, size);
    return 0;
}
