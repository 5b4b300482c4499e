/*  test_codec.c - the wire codec accepts what PROTOCOL.md allows and
 *  rejects everything else with the right status and code.
 *
 *  Bodies are built by hand with msgpack-c's packer where the test needs
 *  something our encoder would never produce (a duplicate key, a uint64
 *  over INT64_MAX, a hostile array header).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <msgpack.h>
#include <string.h>
#include <stdlib.h>
#include "hgp_codec.h"

/*  Decode bytes as a request, expect failure with status and code */
static void
s_expect_reject (const void *data, size_t size, int status, const char *code)
{
    hgp_request_t req;
    hgp_error_t err = { 0 };
    assert_int_equal (hgp_request_decode (&req, data, size, &err), -1);
    assert_int_equal (err.status, status);
    assert_string_equal (err.code, code);
    assert_true (strlen (err.message) > 0);
    assert_null (req.keys);
}

/*  A packer over an sbuffer, and helpers to write a map of strings */
typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} body_t;

static void
s_body_init (body_t *b, size_t entries)
{
    msgpack_sbuffer_init (&b->sb);
    msgpack_packer_init (&b->pk, &b->sb, msgpack_sbuffer_write);
    msgpack_pack_map (&b->pk, entries);
}

static void
s_str (body_t *b, const char *s)
{
    msgpack_pack_str (&b->pk, strlen (s));
    msgpack_pack_str_body (&b->pk, s, strlen (s));
}

static void
s_kv (body_t *b, const char *k, const char *v)
{
    s_str (b, k);
    s_str (b, v);
}

static void
test_incr_round_trips_with_every_field (void **state)
{
    hgp_request_t req, out;
    hgp_request_init (&req);
    req.op = HGP_OP_INCR;
    strcpy (req.id, "req-1");
    strcpy (req.trace, "trace.9");
    strcpy (req.key.resource_id, "post:42");
    strcpy (req.key.counter_type, "like");
    strcpy (req.user_id, "u_7");
    req.delta = INT64_MIN;
    req.timeout_ms = 1234;
    hgp_buf_t buf = { 0 };
    assert_int_equal (hgp_request_encode (&req, &buf), 0);
    hgp_error_t err = { 0 };
    assert_int_equal (hgp_request_decode (&out, buf.data, buf.size, &err), 0);
    assert_int_equal (out.op, HGP_OP_INCR);
    assert_string_equal (out.id, "req-1");
    assert_string_equal (out.trace, "trace.9");
    assert_string_equal (out.key.resource_id, "post:42");
    assert_string_equal (out.key.counter_type, "like");
    assert_string_equal (out.user_id, "u_7");
    assert_true (out.delta == INT64_MIN);
    assert_int_equal (out.timeout_ms, 1234);
    hgp_request_clear (&out);
    hgp_buf_clear (&buf);
}

static void
test_mget_round_trips_1000_keys (void **state)
{
    hgp_request_t req, out;
    hgp_request_init (&req);
    req.op = HGP_OP_MGET;
    strcpy (req.id, "m");
    req.nkeys = HGP_MGET_MAX;
    req.keys = calloc (req.nkeys, sizeof (hgp_key_t));
    for (size_t i = 0; i < req.nkeys; i++) {
        snprintf (req.keys [i].resource_id, HGP_ID_MAX + 1, "r%zu", i);
        strcpy (req.keys [i].counter_type, "view");
    }
    hgp_buf_t buf = { 0 };
    assert_int_equal (hgp_request_encode (&req, &buf), 0);
    hgp_error_t err = { 0 };
    assert_int_equal (hgp_request_decode (&out, buf.data, buf.size, &err), 0);
    assert_int_equal (out.nkeys, HGP_MGET_MAX);
    assert_string_equal (out.keys [999].resource_id, "r999");
    assert_int_equal (out.timeout_ms, HGP_TIMEOUT_DEFAULT);
    hgp_request_clear (&out);
    hgp_request_clear (&req);
    hgp_buf_clear (&buf);
}

static void
test_reply_round_trips_values_and_errors (void **state)
{
    hgp_reply_t rep, out;
    hgp_reply_init (&rep);
    strcpy (rep.id, "x");
    rep.has_value = true;
    rep.value = INT64_MAX;
    rep.replayed = true;
    hgp_buf_t buf = { 0 };
    hgp_error_t err = { 0 };
    assert_int_equal (hgp_reply_encode (&rep, &buf), 0);
    assert_int_equal (hgp_reply_decode (&out, buf.data, buf.size, &err), 0);
    assert_int_equal (out.error.status, 200);
    assert_true (out.has_value && out.replayed && out.value == INT64_MAX);
    hgp_reply_clear (&out);
    hgp_buf_clear (&buf);

    hgp_error_t busy;
    hgp_error_set (&busy, 503, "busy", "queue full (%d)", 10000);
    assert_int_equal (hgp_reply_encode_error ("x", &busy, &buf), 0);
    assert_int_equal (hgp_reply_decode (&out, buf.data, buf.size, &err), 0);
    assert_int_equal (out.error.status, 503);
    assert_string_equal (out.error.code, "busy");
    assert_string_equal (out.error.message, "queue full (10000)");
    assert_false (out.has_value);
    hgp_reply_clear (&out);
    hgp_buf_clear (&buf);
}

static void
test_actors_reply_round_trips (void **state)
{
    hgp_reply_t rep, out;
    hgp_reply_init (&rep);
    strcpy (rep.id, "a");
    hgp_actor_info_t rows [2] = {
        { "counter", "abc", 2048, 3, 1, 20, 99, "http://127.0.0.1:9100/metrics" },
        { "counter", "def", 1, 0, 0, 499, 0, "" }
    };
    rep.actors = rows;
    rep.nactors = 2;
    hgp_process_info_t procs [1] = {
        { "gateway", "http://10.0.0.1:8080/metrics", 1500 } };
    rep.processes = procs;
    rep.nprocesses = 1;
    strcpy (rep.metrics, "http://127.0.0.1:9101/metrics");
    hgp_buf_t buf = { 0 };
    hgp_error_t err = { 0 };
    assert_int_equal (hgp_reply_encode (&rep, &buf), 0);
    assert_int_equal (hgp_reply_decode (&out, buf.data, buf.size, &err), 0);
    assert_int_equal (out.nactors, 2);
    assert_string_equal (out.actors [1].actor_id, "def");
    assert_int_equal (out.actors [0].capacity, 2048);
    assert_int_equal (out.actors [0].served, 99);
    assert_string_equal (out.actors [0].metrics, "http://127.0.0.1:9100/metrics");
    assert_string_equal (out.actors [1].metrics, "");
    assert_int_equal (out.nprocesses, 1);
    assert_string_equal (out.processes [0].role, "gateway");
    assert_string_equal (out.processes [0].metrics,
                         "http://10.0.0.1:8080/metrics");
    assert_int_equal (out.processes [0].idle_ms, 1500);
    assert_string_equal (out.metrics, "http://127.0.0.1:9101/metrics");
    hgp_reply_clear (&out);
    hgp_buf_clear (&buf);
}

/*  announce: role and metrics both required, and a URL is a URL */
static void
test_announce_round_trips_and_wants_a_url (void **state)
{
    hgp_request_t req, out;
    hgp_request_init (&req);
    req.op = HGP_OP_ANNOUNCE;
    strcpy (req.id, "an1");
    strcpy (req.role, "gateway");
    strcpy (req.metrics, "http://127.0.0.1:8080/metrics");
    hgp_buf_t buf = { 0 };
    hgp_error_t err = { 0 };
    assert_int_equal (hgp_request_encode (&req, &buf), 0);
    assert_int_equal (hgp_request_decode (&out, buf.data, buf.size, &err), 0);
    assert_int_equal (out.op, HGP_OP_ANNOUNCE);
    assert_string_equal (out.role, "gateway");
    assert_string_equal (out.metrics, "http://127.0.0.1:8080/metrics");
    hgp_request_clear (&out);
    hgp_buf_clear (&buf);
    const char *bad [] = { "", "http://", "ftp://x/metrics", "http://a b/m",
                           "http://a\"b/m", "127.0.0.1:80" };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        strcpy (req.metrics, bad [i]);
        assert_int_equal (hgp_request_encode (&req, &buf), -1);
        hgp_buf_clear (&buf);
    }
    char longer [HGP_URL_MAX + 2];
    memset (longer, 'a', sizeof longer);
    memcpy (longer, "http://", 7);
    longer [HGP_URL_MAX + 1] = 0;
    assert_false (hgp_url_valid (longer, HGP_URL_MAX + 1));
    assert_true (hgp_url_valid (longer, HGP_URL_MAX));
    /*  A URL where an id belongs, or metrics on another op: refused */
    strcpy (req.metrics, "http://x/metrics");
    strcpy (req.role, "a/b");
    assert_int_equal (hgp_request_encode (&req, &buf), -1);
    hgp_buf_clear (&buf);
}

static void
test_truncated_body_is_malformed_at_every_cut (void **state)
{
    hgp_request_t req;
    hgp_request_init (&req);
    req.op = HGP_OP_INCR;
    strcpy (req.id, "cut");
    strcpy (req.key.resource_id, "r");
    strcpy (req.key.counter_type, "t");
    req.delta = 300;
    hgp_buf_t buf = { 0 };
    assert_int_equal (hgp_request_encode (&req, &buf), 0);
    for (size_t cut = 1; cut < buf.size; cut++) {
        hgp_request_t out;
        hgp_error_t err = { 0 };
        assert_int_equal (hgp_request_decode (&out, buf.data, cut, &err), -1);
        assert_int_equal (err.status, 400);
    }
    hgp_buf_clear (&buf);
}

static void
test_trailing_bytes_are_malformed (void **state)
{
    body_t b;
    s_body_init (&b, 2);
    s_kv (&b, "op", "ping");
    s_kv (&b, "id", "p1");
    msgpack_pack_nil (&b.pk);
    s_expect_reject (b.sb.data, b.sb.size, 400, "malformed");
    msgpack_sbuffer_destroy (&b.sb);
}

static void
test_duplicate_key_is_malformed (void **state)
{
    body_t b;
    s_body_init (&b, 3);
    s_kv (&b, "op", "ping");
    s_kv (&b, "id", "p1");
    s_kv (&b, "id", "p2");
    s_expect_reject (b.sb.data, b.sb.size, 400, "malformed");
    msgpack_sbuffer_destroy (&b.sb);
}

static void
test_unknown_key_is_invalid (void **state)
{
    body_t b;
    s_body_init (&b, 3);
    s_kv (&b, "op", "ping");
    s_kv (&b, "id", "p1");
    s_kv (&b, "detla", "1");
    s_expect_reject (b.sb.data, b.sb.size, 400, "invalid");
    msgpack_sbuffer_destroy (&b.sb);
}

static void
test_unknown_op_is_404 (void **state)
{
    body_t b;
    s_body_init (&b, 2);
    s_kv (&b, "op", "decr");
    s_kv (&b, "id", "p1");
    s_expect_reject (b.sb.data, b.sb.size, 404, "unknown_op");
    msgpack_sbuffer_destroy (&b.sb);
}

static void
test_ids_outside_charset_or_length_are_invalid (void **state)
{
    const char *bad [] = { "", "a b", "a/b", "caf\xc3\xa9", "x\n", NULL };
    for (int i = 0; bad [i]; i++) {
        body_t b;
        s_body_init (&b, 2);
        s_kv (&b, "op", "ping");
        s_kv (&b, "id", bad [i]);
        s_expect_reject (b.sb.data, b.sb.size, 400, "invalid");
        msgpack_sbuffer_destroy (&b.sb);
    }
    char longid [HGP_ID_MAX + 2];
    memset (longid, 'a', sizeof longid - 1);
    longid [sizeof longid - 1] = 0;
    assert_false (hgp_id_valid (longid, strlen (longid)));
    assert_true (hgp_id_valid (longid, HGP_ID_MAX));
    assert_true (hgp_id_valid ("A-z_0.9:x", 9));
}

static void
test_delta_zero_and_uint64_overflow_are_invalid (void **state)
{
    body_t b;
    s_body_init (&b, 5);
    s_kv (&b, "op", "incr");
    s_kv (&b, "id", "d");
    s_kv (&b, "resource_id", "r");
    s_kv (&b, "counter_type", "t");
    s_str (&b, "delta");
    msgpack_pack_uint64 (&b.pk, (uint64_t) INT64_MAX + 1);
    s_expect_reject (b.sb.data, b.sb.size, 400, "invalid");
    msgpack_sbuffer_destroy (&b.sb);

    s_body_init (&b, 5);
    s_kv (&b, "op", "incr");
    s_kv (&b, "id", "d");
    s_kv (&b, "resource_id", "r");
    s_kv (&b, "counter_type", "t");
    s_str (&b, "delta");
    msgpack_pack_int (&b.pk, 0);
    s_expect_reject (b.sb.data, b.sb.size, 400, "invalid");
    msgpack_sbuffer_destroy (&b.sb);

    /*  delta as a string is a type error, not a number */
    s_body_init (&b, 5);
    s_kv (&b, "op", "incr");
    s_kv (&b, "id", "d");
    s_kv (&b, "resource_id", "r");
    s_kv (&b, "counter_type", "t");
    s_kv (&b, "delta", "1");
    s_expect_reject (b.sb.data, b.sb.size, 400, "invalid");
    msgpack_sbuffer_destroy (&b.sb);
}

static void
test_missing_and_misplaced_fields_are_invalid (void **state)
{
    body_t b;
    s_body_init (&b, 3);          /* incr without counter_type, delta */
    s_kv (&b, "op", "incr");
    s_kv (&b, "id", "d");
    s_kv (&b, "resource_id", "r");
    s_expect_reject (b.sb.data, b.sb.size, 400, "invalid");
    msgpack_sbuffer_destroy (&b.sb);

    s_body_init (&b, 5);          /* get with a delta */
    s_kv (&b, "op", "get");
    s_kv (&b, "id", "d");
    s_kv (&b, "resource_id", "r");
    s_kv (&b, "counter_type", "t");
    s_str (&b, "delta");
    msgpack_pack_int (&b.pk, 1);
    s_expect_reject (b.sb.data, b.sb.size, 400, "invalid");
    msgpack_sbuffer_destroy (&b.sb);
}

static void
test_error_reply_keeps_the_request_id (void **state)
{
    body_t b;
    s_body_init (&b, 2);
    s_kv (&b, "id", "keep-me");
    s_kv (&b, "op", "nope");
    hgp_request_t req;
    hgp_error_t err = { 0 };
    assert_int_equal (hgp_request_decode (&req, (uint8_t *) b.sb.data, b.sb.size, &err), -1);
    assert_string_equal (req.id, "keep-me");
    msgpack_sbuffer_destroy (&b.sb);

    /*  the id comes after the bad field, behind values of other types */
    s_body_init (&b, 4);
    s_kv (&b, "op", "incr");
    s_str (&b, "delta");
    msgpack_pack_int (&b.pk, 0);
    s_str (&b, "junk");
    msgpack_pack_array (&b.pk, 2);
    msgpack_pack_double (&b.pk, 1.5);
    msgpack_pack_map (&b.pk, 1);
    msgpack_pack_bin (&b.pk, 2);
    msgpack_pack_bin_body (&b.pk, "xy", 2);
    msgpack_pack_nil (&b.pk);
    s_kv (&b, "id", "found-later");
    assert_int_equal (hgp_request_decode (&req, (uint8_t *) b.sb.data, b.sb.size, &err), -1);
    assert_string_equal (req.id, "found-later");
    assert_string_equal (err.code, "invalid");
    msgpack_sbuffer_destroy (&b.sb);
}

static void
test_oversize_inputs_are_413 (void **state)
{
    static uint8_t big [HGP_BODY_MAX + 1];
    s_expect_reject (big, sizeof big, 413, "too_large");

    body_t b;
    s_body_init (&b, 3);
    s_kv (&b, "op", "mget");
    s_kv (&b, "id", "m");
    s_str (&b, "keys");
    msgpack_pack_array (&b.pk, HGP_MGET_MAX + 1);
    for (int i = 0; i < HGP_MGET_MAX + 1; i++) {
        msgpack_pack_array (&b.pk, 2);
        s_str (&b, "r");
        s_str (&b, "t");
    }
    s_expect_reject (b.sb.data, b.sb.size, 413, "too_large");
    msgpack_sbuffer_destroy (&b.sb);
}

static void
test_hostile_array_header_allocates_nothing_big (void **state)
{
    /*  {"op":"mget","id":"m","keys": array32 of 1000 claimed, 0 present} */
    body_t b;
    s_body_init (&b, 3);
    s_kv (&b, "op", "mget");
    s_kv (&b, "id", "m");
    s_str (&b, "keys");
    msgpack_pack_array (&b.pk, 1000);
    s_expect_reject (b.sb.data, b.sb.size, 400, "malformed");
    msgpack_sbuffer_destroy (&b.sb);

    /*  a map32 header claiming 4 billion entries */
    const uint8_t map32 [] = { 0xdf, 0xff, 0xff, 0xff, 0xff };
    s_expect_reject (map32, sizeof map32, 400, "malformed");
    /*  not a map at all */
    const uint8_t nil [] = { 0xc0 };
    s_expect_reject (nil, sizeof nil, 400, "malformed");
}

/*  Decode bytes as a request, expect failure with that exact message */
static void
s_expect_message (const void *data, size_t size, const char *code,
                  const char *message)
{
    hgp_request_t req;
    hgp_error_t err = { 0 };
    assert_int_equal (hgp_request_decode (&req, data, size, &err), -1);
    assert_string_equal (err.code, code);
    assert_string_equal (err.message, message);
}

static void
test_keys_of_the_wrong_type_are_invalid_wherever_keys_stands (void **state)
{
    //  {"op":"mget","id":"m","keys":[[1,2]]} with keys last, then first
    for (int last = 1; last >= 0; last--) {
        body_t b;
        s_body_init (&b, 3);
        if (!last) {
            s_str (&b, "keys");
            msgpack_pack_array (&b.pk, 1);
            msgpack_pack_array (&b.pk, 2);
            msgpack_pack_int (&b.pk, 1);
            msgpack_pack_int (&b.pk, 2);
        }
        s_kv (&b, "op", "mget");
        s_kv (&b, "id", "m");
        if (last) {
            s_str (&b, "keys");
            msgpack_pack_array (&b.pk, 1);
            msgpack_pack_array (&b.pk, 2);
            msgpack_pack_int (&b.pk, 1);
            msgpack_pack_int (&b.pk, 2);
        }
        s_expect_message (b.sb.data, b.sb.size, "invalid",
                          "keys[].resource_id must be a string");
        msgpack_sbuffer_destroy (&b.sb);
    }
    //  {"op":"mget","id":"m","keys":[[]]} and [7], keys last
    for (int empty = 1; empty >= 0; empty--) {
        body_t b;
        s_body_init (&b, 3);
        s_kv (&b, "op", "mget");
        s_kv (&b, "id", "m");
        s_str (&b, "keys");
        msgpack_pack_array (&b.pk, 1);
        if (empty)
            msgpack_pack_array (&b.pk, 0);
        else
            msgpack_pack_int (&b.pk, 7);
        s_expect_message (b.sb.data, b.sb.size, "invalid", empty
            ? "each entry of keys must be [resource_id, counter_type]"
            : "each entry of keys must be an array");
        msgpack_sbuffer_destroy (&b.sb);
    }
}

static void
test_range_messages_name_the_range_accepted (void **state)
{
    const int64_t timeouts [] = { 0, -1, 60001 };
    for (size_t i = 0; i < 3; i++) {
        body_t b;
        s_body_init (&b, 3);
        s_kv (&b, "op", "ping");
        s_kv (&b, "id", "p");
        s_str (&b, "timeout_ms");
        msgpack_pack_int64 (&b.pk, timeouts [i]);
        s_expect_message (b.sb.data, b.sb.size, "invalid",
                          "timeout_ms must be from 1 to 60000");
        msgpack_sbuffer_destroy (&b.sb);
    }
}

static void
test_ready_round_trips_and_rejects_zero_capacity (void **state)
{
    hgp_ready_t ready = { "counter", "f00d", 64, "hgp", false, "" }, out;
    hgp_buf_t buf = { 0 };
    hgp_error_t err = { 0 };
    assert_int_equal (hgp_ready_encode (&ready, &buf), 0);
    assert_int_equal (hgp_ready_decode (&out, buf.data, buf.size, &err), 0);
    assert_string_equal (out.service, "counter");
    assert_int_equal (out.capacity, 64);
    assert_string_equal (out.cluster, "hgp");
    hgp_buf_clear (&buf);
    ready.capacity = 0;
    assert_int_equal (hgp_ready_encode (&ready, &buf), -1);
    hgp_buf_clear (&buf);
    /*  The cluster is required, and an id of at most 64 bytes */
    ready.capacity = 64;
    ready.cluster [0] = 0;
    assert_int_equal (hgp_ready_encode (&ready, &buf), -1);
    memset (ready.cluster, 'c', 64);
    ready.cluster [64] = 0;
    assert_int_equal (hgp_ready_encode (&ready, &buf), 0);
    hgp_buf_clear (&buf);
    const uint8_t no_cluster [] = {
        0x83, 0xa7, 's', 'e', 'r', 'v', 'i', 'c', 'e', 0xa1, 'c',
        0xa8, 'a', 'c', 't', 'o', 'r', '_', 'i', 'd', 0xa1, 'a',
        0xa8, 'c', 'a', 'p', 'a', 'c', 'i', 't', 'y', 0x01 };
    assert_int_equal (hgp_ready_decode (&out, no_cluster, sizeof no_cluster,
                                        &err), -1);
    assert_string_equal (err.code, "invalid");
}

static void
test_ready_batch_is_optional_and_round_trips (void **state)
{
    hgp_ready_t ready = { "counter", "f00d", 64, "hgp", false, "" }, out;
    hgp_buf_t buf = { 0 };
    hgp_error_t err = { 0 };
    assert_int_equal (hgp_ready_encode (&ready, &buf), 0);
    assert_int_equal (hgp_ready_decode (&out, buf.data, buf.size, &err), 0);
    assert_false (out.batch);
    hgp_buf_clear (&buf);
    ready.batch = true;
    assert_int_equal (hgp_ready_encode (&ready, &buf), 0);
    assert_int_equal (hgp_ready_decode (&out, buf.data, buf.size, &err), 0);
    assert_true (out.batch);
    assert_int_equal (out.capacity, 64);
    assert_string_equal (out.metrics, "");
    hgp_buf_clear (&buf);
    /*  metrics is optional too, and must be a URL */
    strcpy (ready.metrics, "http://127.0.0.1:49152/metrics");
    assert_int_equal (hgp_ready_encode (&ready, &buf), 0);
    assert_int_equal (hgp_ready_decode (&out, buf.data, buf.size, &err), 0);
    assert_string_equal (out.metrics, "http://127.0.0.1:49152/metrics");
    hgp_buf_clear (&buf);
    strcpy (ready.metrics, "not a url");
    assert_int_equal (hgp_ready_encode (&ready, &buf), -1);
    hgp_buf_clear (&buf);
}

static void
test_batch_entries_round_trip_and_a_cut_frame_stops_at_the_cut (void **state)
{
    const uint8_t t1 [8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    const uint8_t t2 [8] = { 9, 9, 9, 9, 9, 9, 9, 9 };
    hgp_buf_t buf = { 0 };
    assert_int_equal (hgp_batch_put_request (&buf, t1, 4999,
                                             0x0102030405060708LL, "abc", 3),
                      0);
    assert_int_equal (hgp_batch_put_request (&buf, t2, 1, -1, "", 0), 0);
    assert_int_equal (buf.size, 2 * HGP_BATCH_REQUEST_HEAD + 3);
    /*  Big-endian on the wire */
    assert_int_equal (buf.data [8], 0);
    assert_int_equal (buf.data [11], 4999 & 0xff);
    assert_int_equal (buf.data [12], 1);
    assert_int_equal (buf.data [23], 3);
    hgp_batch_cur_t cur;
    hgp_batch_entry_t e;
    hgp_batch_begin (&cur, buf.data, buf.size, false);
    assert_int_equal (hgp_batch_next (&cur, &e), 1);
    assert_memory_equal (e.token, t1, 8);
    assert_int_equal (e.budget, 4999);
    assert_true (e.clock == 0x0102030405060708LL);
    assert_int_equal (e.size, 3);
    assert_memory_equal (e.body, "abc", 3);
    assert_int_equal (hgp_batch_next (&cur, &e), 1);
    assert_memory_equal (e.token, t2, 8);
    assert_true (e.clock == -1);
    assert_int_equal (e.size, 0);
    assert_int_equal (hgp_batch_next (&cur, &e), 0);
    /*  A frame cut inside the second entry: the first still reads */
    hgp_batch_begin (&cur, buf.data, HGP_BATCH_REQUEST_HEAD + 3 + 10, false);
    assert_int_equal (hgp_batch_next (&cur, &e), 1);
    assert_int_equal (hgp_batch_next (&cur, &e), -1);
    /*  A body size past the frame's end */
    hgp_batch_begin (&cur, buf.data, HGP_BATCH_REQUEST_HEAD + 2, false);
    assert_int_equal (hgp_batch_next (&cur, &e), -1);
    hgp_buf_clear (&buf);

    assert_int_equal (hgp_batch_put_reply (&buf, t2, "reply", 5), 0);
    assert_int_equal (buf.size, HGP_BATCH_REPLY_HEAD + 5);
    hgp_batch_begin (&cur, buf.data, buf.size, true);
    assert_int_equal (hgp_batch_next (&cur, &e), 1);
    assert_memory_equal (e.token, t2, 8);
    assert_int_equal (e.size, 5);
    assert_memory_equal (e.body, "reply", 5);
    assert_int_equal (hgp_batch_next (&cur, &e), 0);
    hgp_buf_clear (&buf);
}

static void
test_top_and_stats_requests_round_trip_and_check_their_fields (void **state)
{
    hgp_request_t req, out;
    hgp_request_init (&req);
    req.op = HGP_OP_TOP;
    strcpy (req.id, "t1");
    strcpy (req.key.counter_type, "like");
    req.window = HGP_WINDOW_TRENDING;
    req.limit = 1000;
    hgp_buf_t buf = { 0 };
    hgp_error_t err = { 0 };
    assert_int_equal (hgp_request_encode (&req, &buf), 0);
    assert_int_equal (hgp_request_decode (&out, buf.data, buf.size, &err), 0);
    assert_int_equal (out.op, HGP_OP_TOP);
    assert_int_equal (out.window, HGP_WINDOW_TRENDING);
    assert_int_equal (out.limit, 1000);
    assert_string_equal (out.key.counter_type, "like");
    hgp_buf_clear (&buf);

    //  Defaults: window all, limit 10
    body_t b;
    s_body_init (&b, 3);
    s_kv (&b, "op", "top");
    s_kv (&b, "id", "t2");
    s_kv (&b, "counter_type", "like");
    assert_int_equal (hgp_request_decode (&out, (uint8_t *) b.sb.data,
                                          b.sb.size, &err), 0);
    assert_int_equal (out.window, HGP_WINDOW_ALL);
    assert_int_equal (out.limit, HGP_LIMIT_DEFAULT);
    msgpack_sbuffer_destroy (&b.sb);

    //  A window that is not one of the four, a limit out of range, a
    //  window on another op, stats without its resource
    s_body_init (&b, 4);
    s_kv (&b, "op", "top");
    s_kv (&b, "id", "t3");
    s_kv (&b, "counter_type", "like");
    s_kv (&b, "window", "week");
    s_expect_reject (b.sb.data, b.sb.size, 400, "invalid");
    msgpack_sbuffer_destroy (&b.sb);
    for (int limit = 0; limit <= 1001; limit += 1001) {
        s_body_init (&b, 4);
        s_kv (&b, "op", "top");
        s_kv (&b, "id", "t4");
        s_kv (&b, "counter_type", "like");
        s_str (&b, "limit");
        msgpack_pack_int (&b.pk, limit);
        s_expect_reject (b.sb.data, b.sb.size, 400, "invalid");
        msgpack_sbuffer_destroy (&b.sb);
    }
    s_body_init (&b, 5);
    s_kv (&b, "op", "get");
    s_kv (&b, "id", "t5");
    s_kv (&b, "resource_id", "r");
    s_kv (&b, "counter_type", "like");
    s_kv (&b, "window", "1h");
    s_expect_reject (b.sb.data, b.sb.size, 400, "invalid");
    msgpack_sbuffer_destroy (&b.sb);
    s_body_init (&b, 3);
    s_kv (&b, "op", "stats");
    s_kv (&b, "id", "t6");
    s_kv (&b, "counter_type", "like");
    s_expect_reject (b.sb.data, b.sb.size, 400, "invalid");
    msgpack_sbuffer_destroy (&b.sb);
}

static void
test_top_and_stats_replies_round_trip (void **state)
{
    hgp_reply_t rep, out;
    hgp_reply_init (&rep);
    strcpy (rep.id, "q");
    rep.window = HGP_WINDOW_ALL;
    rep.nranking = 2;
    rep.ranking = (hgp_rank_t *) calloc (2, sizeof (hgp_rank_t));
    strcpy (rep.ranking [0].resource_id, "a");
    rep.ranking [0].count = INT64_MAX;
    strcpy (rep.ranking [1].resource_id, "b");
    rep.ranking [1].count = 3;
    hgp_buf_t buf = { 0 };
    hgp_error_t err = { 0 };
    assert_int_equal (hgp_reply_encode (&rep, &buf), 0);
    assert_int_equal (hgp_reply_decode (&out, buf.data, buf.size, &err), 0);
    assert_int_equal (out.nranking, 2);
    assert_int_equal (out.ranking [0].count, INT64_MAX);    //  exact
    assert_string_equal (out.ranking [1].resource_id, "b");
    hgp_reply_clear (&out);
    hgp_buf_clear (&buf);

    //  Trending scores travel as floats
    rep.window = HGP_WINDOW_TRENDING;
    rep.ranking [0].score = 2.5;
    rep.ranking [1].score = 0.125;
    assert_int_equal (hgp_reply_encode (&rep, &buf), 0);
    assert_int_equal (hgp_reply_decode (&out, buf.data, buf.size, &err), 0);
    assert_int_equal (out.window, HGP_WINDOW_TRENDING);
    assert_true (out.ranking [0].score == 2.5 && out.ranking [1].score == 0.125);
    hgp_reply_clear (&out);
    hgp_reply_clear (&rep);
    hgp_buf_clear (&buf);

    hgp_reply_init (&rep);
    strcpy (rep.id, "s");
    rep.has_stats = true;
    rep.total = -7;
    rep.trending = 1.5;
    rep.bucket_ms = 60000;
    rep.nbuckets = 2;
    rep.buckets = (hgp_bucket_t *) calloc (2, sizeof (hgp_bucket_t));
    rep.buckets [0] = (hgp_bucket_t) { 60000, -10 };
    rep.buckets [1] = (hgp_bucket_t) { 120000, 3 };
    assert_int_equal (hgp_reply_encode (&rep, &buf), 0);
    assert_int_equal (hgp_reply_decode (&out, buf.data, buf.size, &err), 0);
    assert_true (out.has_stats && out.total == -7 && out.trending == 1.5);
    assert_int_equal (out.bucket_ms, 60000);
    assert_int_equal (out.nbuckets, 2);
    assert_int_equal (out.buckets [1].start_ms, 120000);
    assert_int_equal (out.buckets [0].count, -10);
    hgp_reply_clear (&out);
    hgp_reply_clear (&rep);
    hgp_buf_clear (&buf);

    //  Half a stats reply is invalid
    body_t b;
    s_body_init (&b, 3);
    s_kv (&b, "id", "s");
    s_str (&b, "status");
    msgpack_pack_int (&b.pk, 200);
    s_str (&b, "total");
    msgpack_pack_int (&b.pk, 1);
    assert_int_equal (hgp_reply_decode (&out, (uint8_t *) b.sb.data,
                                        b.sb.size, &err), -1);
    assert_string_equal (err.code, "invalid");
    msgpack_sbuffer_destroy (&b.sb);
}

static void
test_uniques_request_and_reply_round_trip (void **state)
{
    hgp_request_t req, out;
    hgp_request_init (&req);
    req.op = HGP_OP_UNIQUES;
    strcpy (req.id, "u1");
    strcpy (req.key.resource_id, "post_1");
    strcpy (req.key.counter_type, "view");
    hgp_buf_t buf = { 0 };
    hgp_error_t err = { 0 };
    assert_int_equal (hgp_request_encode (&req, &buf), 0);
    assert_int_equal (hgp_request_decode (&out, buf.data, buf.size, &err), 0);
    assert_int_equal (out.op, HGP_OP_UNIQUES);
    assert_string_equal (hgp_op_name (out.op), "uniques");
    assert_string_equal (out.key.resource_id, "post_1");
    assert_string_equal (out.key.counter_type, "view");
    hgp_buf_clear (&buf);

    //  Without its resource, or with a delta: invalid
    body_t b;
    s_body_init (&b, 3);
    s_kv (&b, "op", "uniques");
    s_kv (&b, "id", "u2");
    s_kv (&b, "counter_type", "view");
    s_expect_reject (b.sb.data, b.sb.size, 400, "invalid");
    msgpack_sbuffer_destroy (&b.sb);
    s_body_init (&b, 5);
    s_kv (&b, "op", "uniques");
    s_kv (&b, "id", "u3");
    s_kv (&b, "resource_id", "r");
    s_kv (&b, "counter_type", "view");
    s_str (&b, "delta");
    msgpack_pack_int (&b.pk, 1);
    s_expect_reject (b.sb.data, b.sb.size, 400, "invalid");
    msgpack_sbuffer_destroy (&b.sb);

    hgp_reply_t rep, got;
    hgp_reply_init (&rep);
    strcpy (rep.id, "u1");
    rep.has_uniques = true;
    rep.uniques = 100123;
    rep.approximate = true;
    rep.has_as_of = true;
    rep.as_of_ms = 1700000000000;
    assert_int_equal (hgp_reply_encode (&rep, &buf), 0);
    assert_int_equal (hgp_reply_decode (&got, buf.data, buf.size, &err), 0);
    assert_true (got.has_uniques && got.approximate);
    assert_int_equal (got.uniques, 100123);
    assert_int_equal (got.as_of_ms, 1700000000000);
    hgp_reply_clear (&got);
    hgp_buf_clear (&buf);

    //  uniques without approximate is half a reply
    s_body_init (&b, 3);
    s_kv (&b, "id", "u1");
    s_str (&b, "status");
    msgpack_pack_int (&b.pk, 200);
    s_str (&b, "uniques");
    msgpack_pack_int (&b.pk, 5);
    assert_int_equal (hgp_reply_decode (&got, (uint8_t *) b.sb.data,
                                        b.sb.size, &err), -1);
    assert_string_equal (err.code, "invalid");
    msgpack_sbuffer_destroy (&b.sb);
}

static void
test_events_round_trip_and_anything_else_is_rejected (void **state)
{
    hgp_event_t ev, out;
    memset (&ev, 0, sizeof ev);
    strcpy (ev.id, "req-1");
    strcpy (ev.key.resource_id, "post:42");
    strcpy (ev.key.counter_type, "like");
    ev.delta = INT64_MIN;
    ev.value = -1;
    ev.ts = 1700000000123ULL;
    strcpy (ev.actor, "a1.1");
    hgp_buf_t buf = { 0 };
    hgp_error_t err = { 0 };
    assert_int_equal (hgp_event_encode (&ev, &buf), 0);
    assert_int_equal (hgp_event_decode (&out, buf.data, buf.size, &err), 0);
    assert_int_equal (memcmp (&ev, &out, sizeof ev), 0);   //  no user_id
    hgp_buf_clear (&buf);
    strcpy (ev.user_id, "u_7");
    assert_int_equal (hgp_event_encode (&ev, &buf), 0);
    assert_int_equal (hgp_event_decode (&out, buf.data, buf.size, &err), 0);
    assert_string_equal (out.user_id, "u_7");
    assert_string_equal (out.trace, "");
    hgp_buf_clear (&buf);
    strcpy (ev.trace, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    assert_int_equal (hgp_event_encode (&ev, &buf), 0);
    assert_int_equal (hgp_event_decode (&out, buf.data, buf.size, &err), 0);
    assert_int_equal (memcmp (&ev, &out, sizeof ev), 0);
    hgp_buf_clear (&buf);
    ev.trace [0] = 0;
    ev.delta = 0;
    assert_int_equal (hgp_event_encode (&ev, &buf), -1);
    hgp_buf_clear (&buf);

    //  Missing actor; an unknown key; delta 0 on the wire
    body_t b;
    s_body_init (&b, 6);
    s_kv (&b, "id", "x");
    s_kv (&b, "resource_id", "r");
    s_kv (&b, "counter_type", "t");
    s_str (&b, "delta");
    msgpack_pack_int (&b.pk, 1);
    s_str (&b, "value");
    msgpack_pack_int (&b.pk, 1);
    s_str (&b, "ts");
    msgpack_pack_int (&b.pk, 1);
    assert_int_equal (hgp_event_decode (&out, (uint8_t *) b.sb.data,
                                        b.sb.size, &err), -1);
    assert_string_equal (err.code, "invalid");
    msgpack_sbuffer_destroy (&b.sb);
    s_body_init (&b, 8);
    s_kv (&b, "id", "x");
    s_kv (&b, "resource_id", "r");
    s_kv (&b, "counter_type", "t");
    s_str (&b, "delta");
    msgpack_pack_int (&b.pk, 0);
    s_str (&b, "value");
    msgpack_pack_int (&b.pk, 1);
    s_str (&b, "ts");
    msgpack_pack_int (&b.pk, 1);
    s_kv (&b, "actor", "a");
    s_kv (&b, "colour", "red");
    assert_int_equal (hgp_event_decode (&out, (uint8_t *) b.sb.data,
                                        b.sb.size, &err), -1);
    assert_string_equal (err.code, "invalid");
    msgpack_sbuffer_destroy (&b.sb);
}

static void
test_fences_round_trip_and_do_not_mix_with_increments (void **state)
{
    hgp_event_t fence, out;
    memset (&fence, 0, sizeof fence);
    strcpy (fence.fence, "deadbeef.3");
    strcpy (fence.actor, "cafe.1");
    fence.ts = 1700000000999ULL;
    hgp_buf_t buf = { 0 };
    hgp_error_t err = { 0 };
    assert_int_equal (hgp_event_encode (&fence, &buf), 0);
    assert_int_equal (hgp_event_decode (&out, buf.data, buf.size, &err), 0);
    assert_int_equal (memcmp (&fence, &out, sizeof fence), 0);
    hgp_buf_clear (&buf);

    //  On the wire: exactly {fence, ts, actor}
    body_t b;
    s_body_init (&b, 3);
    s_kv (&b, "fence", "x.1");
    s_str (&b, "ts");
    msgpack_pack_int (&b.pk, 5);
    s_kv (&b, "actor", "y.2");
    assert_int_equal (hgp_event_decode (&out, (uint8_t *) b.sb.data,
                                        b.sb.size, &err), 0);
    assert_string_equal (out.fence, "x.1");
    assert_string_equal (out.actor, "y.2");
    assert_int_equal (out.ts, 5);
    msgpack_sbuffer_destroy (&b.sb);
    //  A fence with an increment's keys, or without its actor, is invalid
    s_body_init (&b, 4);
    s_kv (&b, "fence", "x.1");
    s_str (&b, "ts");
    msgpack_pack_int (&b.pk, 5);
    s_kv (&b, "actor", "y.2");
    s_kv (&b, "id", "req");
    assert_int_equal (hgp_event_decode (&out, (uint8_t *) b.sb.data,
                                        b.sb.size, &err), -1);
    assert_string_equal (err.code, "invalid");
    assert_string_equal (out.fence, "");
    msgpack_sbuffer_destroy (&b.sb);
    s_body_init (&b, 2);
    s_kv (&b, "fence", "x.1");
    s_str (&b, "ts");
    msgpack_pack_int (&b.pk, 5);
    assert_int_equal (hgp_event_decode (&out, (uint8_t *) b.sb.data,
                                        b.sb.size, &err), -1);
    msgpack_sbuffer_destroy (&b.sb);
    //  An id outside the charset is not encoded
    strcpy (fence.fence, "bad id");
    assert_int_equal (hgp_event_encode (&fence, &buf), -1);
    hgp_buf_clear (&buf);
}

static void
test_beacon_round_trips_alive_and_leaving (void **state)
{
    hgp_beacon_t beacon = { HGP_BEACON_ALIVE,
                            "00ff10203040506070809a0b0c0d0e0f", 5555, 65535,
                            { 0 }, "hgp" };
    for (int i = 0; i < 32; i++)
        beacon.public_key [i] = (uint8_t) (i + 1);
    uint8_t wire [HGP_BEACON_MAX];
    assert_int_equal (hgp_beacon_encode (&beacon, wire, sizeof wire),
                      HGP_BEACON_FIXED + 3);
    /*  The layout of PROTOCOL.md 9.1, byte for byte */
    const uint8_t want [HGP_BEACON_FIXED + 3] = {
        'H', 'G', 'P', 'B', 2, 1,
        0x00, 0xff, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60,
        0x70, 0x80, 0x9a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
        0x15, 0xb3, 0xff, 0xff,
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
        17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
        3, 'h', 'g', 'p'
    };
    assert_memory_equal (wire, want, sizeof want);
    hgp_beacon_t out;
    hgp_error_t err = { 0 };
    assert_int_equal (hgp_beacon_decode (&out, wire, sizeof want, &err), 0);
    assert_int_equal (out.state, HGP_BEACON_ALIVE);
    assert_string_equal (out.broker_id, beacon.broker_id);
    assert_int_equal (out.client_port, 5555);
    assert_int_equal (out.actor_port, 65535);
    assert_memory_equal (out.public_key, beacon.public_key, 32);
    assert_string_equal (out.cluster, "hgp");

    beacon.state = HGP_BEACON_LEAVING;
    assert_int_equal (hgp_beacon_encode (&beacon, wire, sizeof wire),
                      HGP_BEACON_FIXED + 3);
    assert_int_equal (hgp_beacon_decode (&out, wire, sizeof want, &err), 0);
    assert_int_equal (out.state, HGP_BEACON_LEAVING);
}

static void
test_beacon_encoder_refuses_what_the_decoder_would (void **state)
{
    uint8_t wire [HGP_BEACON_MAX];
    hgp_beacon_t ok = { HGP_BEACON_ALIVE, "0123456789abcdef0123456789abcdef",
                        1, 2, { 0 }, "c" };
    hgp_beacon_t bad = ok;
    bad.client_port = 0;
    assert_int_equal (hgp_beacon_encode (&bad, wire, sizeof wire), -1);
    bad = ok;
    strcpy (bad.broker_id, "00000000000000000000000000000000");
    assert_int_equal (hgp_beacon_encode (&bad, wire, sizeof wire), -1);
    bad = ok;
    strcpy (bad.broker_id, "0123456789ABCDEF0123456789abcdef");
    assert_int_equal (hgp_beacon_encode (&bad, wire, sizeof wire), -1);
    bad = ok;
    strcpy (bad.broker_id, "0123");
    assert_int_equal (hgp_beacon_encode (&bad, wire, sizeof wire), -1);
    bad = ok;
    bad.state = (hgp_beacon_state_t) 3;
    assert_int_equal (hgp_beacon_encode (&bad, wire, sizeof wire), -1);
    bad = ok;
    strcpy (bad.cluster, "no spaces");
    assert_int_equal (hgp_beacon_encode (&bad, wire, sizeof wire), -1);
    bad.cluster [0] = 0;
    assert_int_equal (hgp_beacon_encode (&bad, wire, sizeof wire), -1);
    assert_int_equal (hgp_beacon_encode (&ok, wire, HGP_BEACON_FIXED), -1);
}

/*  Decode bytes as a beacon, expect failure with code */
static void
s_beacon_reject (const uint8_t *data, size_t size, const char *code)
{
    hgp_beacon_t out;
    hgp_error_t err = { 0 };
    assert_int_equal (hgp_beacon_decode (&out, data, size, &err), -1);
    assert_int_equal (err.status, 400);
    assert_string_equal (err.code, code);
    assert_true (strlen (err.message) > 0);
    assert_int_equal (out.client_port, 0);
}

static void
test_beacon_decoder_rejects_junk_versions_and_zeros (void **state)
{
    hgp_beacon_t ok = { HGP_BEACON_ALIVE, "0123456789abcdef0123456789abcdef",
                        7000, 7001, { 0 }, "hgp" };
    const size_t SIZE = HGP_BEACON_FIXED + 3;
    uint8_t wire [HGP_BEACON_MAX + 1];
    assert_int_equal (hgp_beacon_encode (&ok, wire, sizeof wire), SIZE);
    uint8_t bad [HGP_BEACON_MAX + 1];
    /*  Every cut, and one byte too many */
    for (size_t cut = 0; cut < SIZE; cut++)
        s_beacon_reject (wire, cut, "malformed");
    wire [SIZE] = 0;
    s_beacon_reject (wire, SIZE + 1, "malformed");
    /*  Another tag (a Zyre beacon on the same port), another version */
    memcpy (bad, wire, SIZE);
    memcpy (bad, "ZRE\x01", 4);
    s_beacon_reject (bad, SIZE, "malformed");
    memcpy (bad, wire, SIZE);
    bad [4] = 1;
    s_beacon_reject (bad, SIZE, "invalid");
    /*  Unknown state, zero id, zero ports */
    memcpy (bad, wire, SIZE);
    bad [5] = 0;
    s_beacon_reject (bad, SIZE, "invalid");
    memcpy (bad, wire, SIZE);
    memset (bad + 6, 0, HGP_BROKER_ID_SIZE);
    s_beacon_reject (bad, SIZE, "invalid");
    memcpy (bad, wire, SIZE);
    bad [22] = bad [23] = 0;
    s_beacon_reject (bad, SIZE, "invalid");
    memcpy (bad, wire, SIZE);
    bad [24] = bad [25] = 0;
    s_beacon_reject (bad, SIZE, "invalid");
    /*  A cluster name of the wrong length or characters */
    memcpy (bad, wire, SIZE);
    bad [58] = 4;
    s_beacon_reject (bad, SIZE, "malformed");
    memcpy (bad, wire, SIZE);
    bad [HGP_BEACON_FIXED] = ' ';
    s_beacon_reject (bad, SIZE, "invalid");
    memcpy (bad, wire, SIZE);
    bad [58] = 0;
    s_beacon_reject (bad, HGP_BEACON_FIXED, "malformed");
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_incr_round_trips_with_every_field),
        cmocka_unit_test (test_mget_round_trips_1000_keys),
        cmocka_unit_test (test_reply_round_trips_values_and_errors),
        cmocka_unit_test (test_actors_reply_round_trips),
        cmocka_unit_test (test_truncated_body_is_malformed_at_every_cut),
        cmocka_unit_test (test_trailing_bytes_are_malformed),
        cmocka_unit_test (test_duplicate_key_is_malformed),
        cmocka_unit_test (test_unknown_key_is_invalid),
        cmocka_unit_test (test_unknown_op_is_404),
        cmocka_unit_test (test_ids_outside_charset_or_length_are_invalid),
        cmocka_unit_test (test_delta_zero_and_uint64_overflow_are_invalid),
        cmocka_unit_test (test_missing_and_misplaced_fields_are_invalid),
        cmocka_unit_test (test_error_reply_keeps_the_request_id),
        cmocka_unit_test (test_oversize_inputs_are_413),
        cmocka_unit_test (test_hostile_array_header_allocates_nothing_big),
        cmocka_unit_test (test_keys_of_the_wrong_type_are_invalid_wherever_keys_stands),
        cmocka_unit_test (test_range_messages_name_the_range_accepted),
        cmocka_unit_test (test_ready_round_trips_and_rejects_zero_capacity),
        cmocka_unit_test (test_ready_batch_is_optional_and_round_trips),
        cmocka_unit_test (test_batch_entries_round_trip_and_a_cut_frame_stops_at_the_cut),
        cmocka_unit_test (test_top_and_stats_requests_round_trip_and_check_their_fields),
        cmocka_unit_test (test_top_and_stats_replies_round_trip),
        cmocka_unit_test (test_uniques_request_and_reply_round_trip),
        cmocka_unit_test (test_events_round_trip_and_anything_else_is_rejected),
        cmocka_unit_test (test_announce_round_trips_and_wants_a_url),
        cmocka_unit_test (test_fences_round_trip_and_do_not_mix_with_increments),
        cmocka_unit_test (test_beacon_round_trips_alive_and_leaving),
        cmocka_unit_test (test_beacon_encoder_refuses_what_the_decoder_would),
        cmocka_unit_test (test_beacon_decoder_rejects_junk_versions_and_zeros),
    };
    return cmocka_run_group_tests_name ("codec", tests, NULL, NULL);
}
