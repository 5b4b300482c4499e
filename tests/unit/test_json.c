/*  test_json.c - the gateway's JSON decoders accept exactly the documented
 *  bodies (gateway/hgp_json.h) and turn everything else into the right
 *  status and code; the encoders always produce valid JSON.
 *
 *  Encoded output is parsed back with jansson rather than compared as
 *  text, so the tests do not depend on key order or spacing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hgp_json.h"

static int
s_incr (const char *body, const char *key, hgp_request_t *req,
        hgp_error_t *err)
{
    memset (err, 0, sizeof *err);
    return hgp_json_decode_increment (body, strlen (body), key, req, err);
}

//  Expect the increment body to be refused with status and code, leaving
//  req cleared

static void
s_incr_rejects (const char *body, const char *key, int status,
                const char *code)
{
    hgp_request_t req;
    hgp_error_t err;
    if (s_incr (body, key, &req, &err) != -1)
        fail_msg ("accepted: %s", body);
    if (err.status != status || strcmp (err.code, code))
        fail_msg ("%s -> %d %s (%s), want %d %s", body, err.status, err.code,
                  err.message, status, code);
    assert_true (strlen (err.message) > 0);
    assert_int_equal (req.op, HGP_OP_NONE);
    assert_null (req.keys);
}

static void
s_batch_rejects (const char *body, int status, const char *code)
{
    hgp_request_t req;
    hgp_error_t err = { 0 };
    if (hgp_json_decode_batch (body, strlen (body), &req, &err) != -1)
        fail_msg ("accepted: %.200s", body);
    if (err.status != status || strcmp (err.code, code))
        fail_msg ("%.200s -> %d %s (%s), want %d %s", body, err.status,
                  err.code, err.message, status, code);
    assert_true (strlen (err.message) > 0);
    assert_null (req.keys);
    assert_int_equal (req.nkeys, 0);
}

static void
test_increment_defaults_delta_to_one_and_leaves_id_to_the_caller (void **state)
{
    hgp_request_t req;
    hgp_error_t err;
    assert_int_equal (s_incr ("{\"resource_id\": \"post_42\", "
                              "\"counter_type\": \"like\"}", NULL, &req, &err), 0);
    assert_int_equal (req.op, HGP_OP_INCR);
    assert_string_equal (req.key.resource_id, "post_42");
    assert_string_equal (req.key.counter_type, "like");
    assert_true (req.delta == 1);
    assert_string_equal (req.id, "");
    assert_string_equal (req.user_id, "");
    hgp_request_clear (&req);
}

static void
test_increment_takes_every_field (void **state)
{
    hgp_request_t req;
    hgp_error_t err;
    assert_int_equal (s_incr ("{\"resource_id\":\"a:b.c-d_e\",\"counter_type\":\"t\","
                              "\"delta\":-7,\"user_id\":\"u1\",\"request_id\":\"r-1\"}",
                              NULL, &req, &err), 0);
    assert_true (req.delta == -7);
    assert_string_equal (req.key.resource_id, "a:b.c-d_e");
    assert_string_equal (req.user_id, "u1");
    assert_string_equal (req.id, "r-1");
    hgp_request_clear (&req);
}

static void
test_increment_accepts_the_whole_int64_range (void **state)
{
    hgp_request_t req;
    hgp_error_t err;
    assert_int_equal (s_incr ("{\"resource_id\":\"r\",\"counter_type\":\"t\","
                              "\"delta\":9223372036854775807}", NULL, &req, &err), 0);
    assert_true (req.delta == INT64_MAX);
    assert_int_equal (s_incr ("{\"resource_id\":\"r\",\"counter_type\":\"t\","
                              "\"delta\":-9223372036854775808}", NULL, &req, &err), 0);
    assert_true (req.delta == INT64_MIN);
}

static void
test_increment_refuses_bad_deltas (void **state)
{
    const char *deltas [] = {
        "0", "-0", "1.0", "1.5", "1e3", "\"1\"", "true", "null", "[]", "{}",
        "9223372036854775808", "-9223372036854775809",
        "99999999999999999999999999",
    };
    for (size_t i = 0; i < sizeof deltas / sizeof deltas [0]; i++) {
        char body [256];
        snprintf (body, sizeof body,
                  "{\"resource_id\":\"r\",\"counter_type\":\"t\",\"delta\":%s}",
                  deltas [i]);
        s_incr_rejects (body, NULL, 400, "invalid");
    }
}

static void
test_increment_refuses_bad_ids (void **state)
{
    char long_id [200];
    memset (long_id, 'x', 129);
    long_id [129] = 0;
    char body [512];
    const char *ids [] = {
        "\"\"", "\"a/b\"", "\"a b\"", "\"caf\\u00e9\"", "\"a%2Fb\"", "7",
        "null", "[\"a\"]",
    };
    const char *fields [] = { "resource_id", "counter_type" };
    for (size_t f = 0; f < 2; f++)
        for (size_t i = 0; i < sizeof ids / sizeof ids [0]; i++) {
            snprintf (body, sizeof body, "{\"%s\":%s,\"%s\":\"ok\"}",
                      fields [f], ids [i], fields [1 - f]);
            s_incr_rejects (body, NULL, 400, "invalid");
        }
    snprintf (body, sizeof body,
              "{\"resource_id\":\"%s\",\"counter_type\":\"t\"}", long_id);
    s_incr_rejects (body, NULL, 400, "invalid");
    long_id [128] = 0;          //  128 bytes is the most, and fine
    snprintf (body, sizeof body,
              "{\"resource_id\":\"%s\",\"counter_type\":\"t\"}", long_id);
    hgp_request_t req;
    hgp_error_t err;
    assert_int_equal (s_incr (body, NULL, &req, &err), 0);
    assert_int_equal (strlen (req.key.resource_id), 128);
    s_incr_rejects ("{\"resource_id\":\"r\",\"counter_type\":\"t\",\"user_id\":\"a b\"}",
                    NULL, 400, "invalid");
    s_incr_rejects ("{\"resource_id\":\"r\",\"counter_type\":\"t\",\"request_id\":\"\"}",
                    NULL, 400, "invalid");
}

static void
test_increment_needs_resource_and_type_and_nothing_unknown (void **state)
{
    s_incr_rejects ("{\"counter_type\":\"t\"}", NULL, 400, "invalid");
    s_incr_rejects ("{\"resource_id\":\"r\"}", NULL, 400, "invalid");
    s_incr_rejects ("{}", NULL, 400, "invalid");
    s_incr_rejects ("{\"resource_id\":\"r\",\"counter_type\":\"t\",\"detla\":5}",
                    NULL, 400, "invalid");
    s_incr_rejects ("[]", NULL, 400, "invalid");
    s_incr_rejects ("\"r\"", NULL, 400, "invalid");
    s_incr_rejects ("42", NULL, 400, "invalid");
}

static void
test_increment_refuses_json_that_does_not_parse (void **state)
{
    s_incr_rejects ("", NULL, 400, "malformed");
    s_incr_rejects ("{", NULL, 400, "malformed");
    s_incr_rejects ("{\"resource_id\":\"r\",\"counter_type\":\"t\"} x", NULL, 400,
                    "malformed");
    s_incr_rejects ("{'resource_id':'r'}", NULL, 400, "malformed");
    //  last-one-wins would make the delta depend on the parser
    s_incr_rejects ("{\"resource_id\":\"r\",\"counter_type\":\"t\",\"delta\":1,"
                    "\"delta\":1000}", NULL, 400, "malformed");
    s_incr_rejects ("{\"resource_id\":\"a\\u0000b\",\"counter_type\":\"t\"}",
                    NULL, 400, "malformed");
    s_incr_rejects ("{\"resource_id\":\"\xff\",\"counter_type\":\"t\"}", NULL, 400,
                    "malformed");
    //  embedded NUL in the raw bytes
    hgp_request_t req;
    hgp_error_t err;
    const char raw [] = "{\"resource_id\":\"r\",\"counter_type\":\"t\"}\0{}";
    assert_int_equal (hgp_json_decode_increment (raw, sizeof raw - 1, NULL,
                                                 &req, &err), -1);
    assert_int_equal (err.status, 400);
}

//  Brackets inside strings are not nesting; past HGP_JSON_DEPTH_MAX real
//  nesting is refused as invalid before jansson sees it

static void
test_nesting_past_the_limit_is_invalid_and_strings_do_not_count (void **state)
{
    char body [4096];
    //  32 levels: parsed (and refused for what it is: not our object)
    int n = 0;
    for (int i = 0; i < HGP_JSON_DEPTH_MAX; i++)
        body [n++] = '[';
    for (int i = 0; i < HGP_JSON_DEPTH_MAX; i++)
        body [n++] = ']';
    body [n] = 0;
    hgp_request_t req;
    hgp_error_t err;
    assert_int_equal (s_incr (body, NULL, &req, &err), -1);
    assert_null (strstr (err.message, "nested"));
    //  33 levels: refused as too deep
    memmove (body + 1, body, (size_t) n + 1);
    body [0] = '[';
    strcat (body, "]");
    s_incr_rejects (body, NULL, 400, "invalid");
    assert_int_equal (s_incr (body, NULL, &req, &err), -1);
    assert_non_null (strstr (err.message, "nested"));
    //  unbalanced and deep is still too deep
    memset (body, '{', 1000);
    body [1000] = 0;
    s_incr_rejects (body, NULL, 400, "invalid");
    //  1000 brackets inside a string (and an escaped quote) are one id
    //  that is refused for its characters, not for depth
    strcpy (body, "{\"resource_id\":\"\\\"");
    memset (body + strlen (body), '[', 1000);
    body [strlen ("{\"resource_id\":\"\\\"") + 1000] = 0;
    strcat (body, "\",\"counter_type\":\"t\"}");
    assert_int_equal (s_incr (body, NULL, &req, &err), -1);
    assert_string_equal (err.code, "invalid");
    assert_null (strstr (err.message, "nested"));
    assert_non_null (strstr (err.message, "resource_id"));
    //  the same in a batch
    memset (body, '[', 40);
    body [40] = 0;
    s_batch_rejects (body, 400, "invalid");
}

static void
test_idempotency_key_header_and_request_id_must_agree (void **state)
{
    hgp_request_t req;
    hgp_error_t err;
    const char *plain = "{\"resource_id\":\"r\",\"counter_type\":\"t\"}";
    const char *with_id = "{\"resource_id\":\"r\",\"counter_type\":\"t\","
                          "\"request_id\":\"k1\"}";
    assert_int_equal (s_incr (plain, "k1", &req, &err), 0);
    assert_string_equal (req.id, "k1");
    assert_int_equal (s_incr (with_id, "k1", &req, &err), 0);
    assert_string_equal (req.id, "k1");
    assert_int_equal (s_incr (with_id, NULL, &req, &err), 0);
    assert_string_equal (req.id, "k1");
    s_incr_rejects (with_id, "k2", 400, "invalid");
    s_incr_rejects (plain, "bad key", 400, "invalid");
    s_incr_rejects (plain, "", 400, "invalid");
}

static void
test_batch_keeps_request_order_and_accepts_items_alias (void **state)
{
    hgp_request_t req;
    hgp_error_t err;
    const char *bodies [] = {
        "{\"queries\":[{\"resource_id\":\"a\",\"counter_type\":\"x\"},"
        "{\"counter_type\":\"y\",\"resource_id\":\"b\"},"
        "{\"resource_id\":\"a\",\"counter_type\":\"x\"}]}",
        "{\"items\":[{\"resource_id\":\"a\",\"counter_type\":\"x\"},"
        "{\"counter_type\":\"y\",\"resource_id\":\"b\"},"
        "{\"resource_id\":\"a\",\"counter_type\":\"x\"}]}",
    };
    for (int i = 0; i < 2; i++) {
        assert_int_equal (hgp_json_decode_batch (bodies [i], strlen (bodies [i]),
                                                 &req, &err), 0);
        assert_int_equal (req.op, HGP_OP_MGET);
        assert_int_equal (req.nkeys, 3);
        assert_string_equal (req.keys [0].resource_id, "a");
        assert_string_equal (req.keys [1].resource_id, "b");
        assert_string_equal (req.keys [1].counter_type, "y");
        assert_string_equal (req.keys [2].counter_type, "x");
        hgp_request_clear (&req);
    }
}

static char *
s_batch_body (const char *list, size_t n)
{
    size_t one = strlen ("{\"resource_id\":\"r00000\",\"counter_type\":\"t\"},");
    char *body = (char *) malloc (n * one + 64);
    size_t size = (size_t) sprintf (body, "{\"%s\":[", list);
    for (size_t i = 0; i < n; i++)
        size += (size_t) sprintf (body + size,
            "{\"resource_id\":\"r%05zu\",\"counter_type\":\"t\"}%s", i,
            i + 1 < n ? "," : "");
    strcpy (body + size, "]}");
    return body;
}

static void
test_batch_takes_1000_queries_and_refuses_1001_as_too_large (void **state)
{
    char *body = s_batch_body ("queries", 1000);
    hgp_request_t req;
    hgp_error_t err;
    assert_int_equal (hgp_json_decode_batch (body, strlen (body), &req, &err), 0);
    assert_int_equal (req.nkeys, 1000);
    assert_string_equal (req.keys [999].resource_id, "r00999");
    hgp_request_clear (&req);
    free (body);
    body = s_batch_body ("items", 1001);
    s_batch_rejects (body, 413, "too_large");
    free (body);
}

static void
test_batch_refuses_bad_shapes (void **state)
{
    s_batch_rejects ("{}", 400, "invalid");
    s_batch_rejects ("{\"queries\":[]}", 400, "invalid");
    s_batch_rejects ("{\"queries\":{}}", 400, "invalid");
    s_batch_rejects ("{\"queries\":[1]}", 400, "invalid");
    s_batch_rejects ("{\"queries\":[{\"resource_id\":\"a\"}]}", 400, "invalid");
    s_batch_rejects ("{\"queries\":[{\"resource_id\":\"a\",\"counter_type\":\"b\","
                     "\"delta\":1}]}", 400, "invalid");
    s_batch_rejects ("{\"queries\":[{\"resource_id\":\"a\",\"counter_type\":\"b\"},"
                     "{\"resource_id\":\"a/b\",\"counter_type\":\"b\"}]}",
                     400, "invalid");
    s_batch_rejects ("{\"queries\":[{\"resource_id\":\"a\",\"counter_type\":\"b\"}],"
                     "\"items\":[{\"resource_id\":\"a\",\"counter_type\":\"b\"}]}",
                     400, "invalid");
    s_batch_rejects ("{\"queries\":[],\"extra\":1}", 400, "invalid");
    s_batch_rejects ("[{\"resource_id\":\"a\",\"counter_type\":\"b\"}]", 400,
                     "invalid");
    s_batch_rejects ("{\"queries\":[", 400, "malformed");
}

static json_t *
s_load (char *text)
{
    assert_non_null (text);
    json_error_t jerr;
    json_t *json = json_loads (text, 0, &jerr);
    if (!json)
        fail_msg ("not JSON: %s (%s)", text, jerr.text);
    free (text);
    return json;
}

static void
test_value_replies_carry_replayed_and_request_id_only_for_increments (void **state)
{
    hgp_key_t key = { "post_1", "like" };
    json_t *json = s_load (hgp_json_encode_value (&key, INT64_MIN, false, NULL));
    assert_string_equal (json_string_value (json_object_get (json, "resource_id")),
                         "post_1");
    assert_string_equal (json_string_value (json_object_get (json, "counter_type")),
                         "like");
    assert_true (json_integer_value (json_object_get (json, "value")) == INT64_MIN);
    assert_null (json_object_get (json, "replayed"));
    assert_null (json_object_get (json, "request_id"));
    json_decref (json);

    json = s_load (hgp_json_encode_value (&key, 5, true, "r1"));
    assert_true (json_is_true (json_object_get (json, "replayed")));
    assert_string_equal (json_string_value (json_object_get (json, "request_id")),
                         "r1");
    json_decref (json);
    //  The bytes, as README shows them (written without jansson)
    char *text = hgp_json_encode_value (&key, -42, false, "r-1");
    assert_string_equal (text, "{\"resource_id\":\"post_1\",\"counter_type\":"
                         "\"like\",\"value\":-42,\"replayed\":false,"
                         "\"request_id\":\"r-1\"}");
    free (text);
    text = hgp_json_encode_value (&key, INT64_MAX, true, NULL);
    assert_string_equal (text, "{\"resource_id\":\"post_1\",\"counter_type\":"
                         "\"like\",\"value\":9223372036854775807}");
    free (text);
}

static void
test_batch_results_pair_keys_with_values_in_order (void **state)
{
    hgp_key_t keys [3] = { { "a", "x" }, { "b", "y" }, { "a", "x" } };
    int64_t values [3] = { 3, INT64_MAX, 3 };
    hgp_request_t req;
    hgp_request_init (&req);
    req.op = HGP_OP_MGET;
    req.keys = keys;
    req.nkeys = 3;
    hgp_reply_t rep;
    hgp_reply_init (&rep);
    rep.values = values;
    rep.nvalues = 3;
    json_t *json = s_load (hgp_json_encode_values (&req, &rep));
    json_t *results = json_object_get (json, "results");
    assert_int_equal (json_array_size (results), 3);
    json_t *second = json_array_get (results, 1);
    assert_string_equal (json_string_value (json_object_get (second, "resource_id")),
                         "b");
    assert_true (json_integer_value (json_object_get (second, "value")) == INT64_MAX);
    json_decref (json);
}

static void
test_error_bodies_escape_any_message (void **state)
{
    hgp_error_t err;
    hgp_error_set (&err, 503, "unavailable", "redis \"down\"\n\tat <%s>", "x");
    json_t *json = s_load (hgp_json_encode_error (&err, "rid"));
    json_t *error = json_object_get (json, "error");
    assert_string_equal (json_string_value (json_object_get (error, "code")),
                         "unavailable");
    assert_string_equal (json_string_value (json_object_get (error, "message")),
                         "redis \"down\"\n\tat <x>");
    assert_string_equal (json_string_value (json_object_get (json, "request_id")),
                         "rid");
    json_decref (json);

    //  bytes from the wire that are not UTF-8 still give a JSON error body
    hgp_error_set (&err, 500, "internal", "bad \xff\xfe bytes");
    json = s_load (hgp_json_encode_error (&err, NULL));
    assert_non_null (json_object_get (json_object_get (json, "error"), "message"));
    assert_null (json_object_get (json, "request_id"));
    json_decref (json);
}

static void
test_rank_query_defaults_and_takes_window_and_limit (void **state)
{
    hgp_request_t req;
    hgp_error_t err;
    assert_int_equal (hgp_json_decode_rank ("like", NULL, &req, &err), 0);
    assert_int_equal (req.op, HGP_OP_TOP);
    assert_string_equal (req.key.counter_type, "like");
    assert_int_equal (req.window, HGP_WINDOW_ALL);
    assert_int_equal (req.limit, 10);
    assert_int_equal (hgp_json_decode_rank ("like", "limit=100&window=trending",
                                            &req, &err), 0);
    assert_int_equal (req.window, HGP_WINDOW_TRENDING);
    assert_int_equal (req.limit, 100);
    assert_int_equal (hgp_json_decode_rank ("t", "window=24h", &req, &err), 0);
    assert_int_equal (req.window, HGP_WINDOW_24H);
    assert_int_equal (req.limit, 10);
}

static void
test_rank_and_stats_queries_refuse_anything_else_as_400 (void **state)
{
    const char *rank [] = { "window=week", "limit=0", "limit=1001", "limit=1x",
        "limit=-1", "limit=07", "limit=", "window", "=1h", "window=1h&&limit=2",
        "limit=1&limit=2", "colour=red", "window=1h%26", "limit=12345678901234567",
        "window=ALL" };
    hgp_request_t req;
    hgp_error_t err;
    for (size_t i = 0; i < sizeof rank / sizeof rank [0]; i++) {
        memset (&err, 0, sizeof err);
        if (hgp_json_decode_rank ("like", rank [i], &req, &err) != -1)
            fail_msg ("rank accepted %s", rank [i]);
        assert_int_equal (err.status, 400);
        assert_string_equal (err.code, "invalid");
    }
    assert_int_equal (hgp_json_decode_rank ("", NULL, &req, &err), -1);
    assert_int_equal (hgp_json_decode_rank ("a b", NULL, &req, &err), -1);
    const char *stats [] = { "window=all", "window=trending", "window=7d",
        "limit=3", "window=1h&window=1h" };
    hgp_window_t window;
    for (size_t i = 0; i < sizeof stats / sizeof stats [0]; i++) {
        memset (&err, 0, sizeof err);
        if (hgp_json_decode_stats ("r", 1, "t", 1, stats [i], &req, &window,
                                   &err) != -1)
            fail_msg ("stats accepted %s", stats [i]);
        assert_int_equal (err.status, 400);
    }
    assert_int_equal (hgp_json_decode_stats ("r", 1, "t", 1, "window=1h", &req,
                                             &window, &err), 0);
    assert_int_equal (window, HGP_WINDOW_1H);
    assert_int_equal (req.op, HGP_OP_STATS);
    assert_string_equal (req.key.resource_id, "r");
    assert_int_equal (hgp_json_decode_stats ("r%2F", 4, "t", 1, NULL, &req,
                                             &window, &err), -1);
}

static void
test_series_has_one_entry_per_bucket_of_the_window_zeros_included (void **state)
{
    hgp_key_t key = { "song", "play" };
    int64_t now = 1700000000000LL + 30000;      //  mid-minute
    int64_t minute = now - now % 60000;
    hgp_bucket_t buckets [3] = {
        { minute - 2 * 3600000, 7 },            //  outside 1h, inside 24h
        { minute - 59 * 60000, 2 },             //  first bucket of 1h
        { minute, 3 }                           //  the current one
    };
    hgp_reply_t rep;
    hgp_reply_init (&rep);
    rep.has_stats = true;
    rep.total = 12;
    rep.trending = 1.5;
    rep.bucket_ms = 60000;
    rep.buckets = buckets;
    rep.nbuckets = 3;
    char *text = hgp_json_encode_series (&key, HGP_WINDOW_1H, now, &rep);
    json_t *json = json_loads (text, 0, NULL);
    assert_non_null (json);
    json_t *series = json_object_get (json, "series");
    assert_int_equal (json_array_size (series), 60);
    assert_int_equal (json_integer_value (json_object_get (json, "sum")), 5);
    assert_int_equal (json_integer_value (json_object_get (json, "total")), 12);
    assert_int_equal (json_integer_value (json_object_get (
        json_array_get (series, 0), "count")), 2);
    assert_int_equal (json_integer_value (json_object_get (
        json_array_get (series, 59), "start_ms")), minute);
    json_decref (json);
    free (text);
    text = hgp_json_encode_series (&key, HGP_WINDOW_24H, now, &rep);
    json = json_loads (text, 0, NULL);
    assert_int_equal (json_array_size (json_object_get (json, "series")), 1440);
    assert_int_equal (json_integer_value (json_object_get (json, "sum")), 12);
    assert_string_equal (json_string_value (json_object_get (json, "window")),
                         "24h");
    json_decref (json);
    free (text);
    rep.bucket_ms = 0;
    assert_null (hgp_json_encode_series (&key, HGP_WINDOW_1H, now, &rep));
    rep.buckets = NULL;                 //  not ours to free
    rep.nbuckets = 0;
    hgp_reply_clear (&rep);
}

static void
test_ranking_is_an_ordered_list_with_value_or_score (void **state)
{
    hgp_rank_t ranks [2] = { { "a", 5, 7.9998367269969544 }, { "b", 3, 2.5 } };
    hgp_reply_t rep;
    hgp_reply_init (&rep);
    rep.ranking = ranks;
    rep.nranking = 2;
    char *text = hgp_json_encode_ranking ("like", HGP_WINDOW_ALL, &rep);
    assert_string_equal (text, "{\"counter_type\":\"like\",\"window\":\"all\","
                               "\"ranking\":[{\"resource_id\":\"a\",\"value\":5},"
                               "{\"resource_id\":\"b\",\"value\":3}]}");
    free (text);
    text = hgp_json_encode_ranking ("like", HGP_WINDOW_TRENDING, &rep);
    json_t *root = json_loads (text, 0, NULL);
    json_t *json = json_object_get (root, "ranking");
    assert_true (json_is_real (json_object_get (json_array_get (json, 1),
                                                "score")));
    assert_null (json_object_get (json_array_get (json, 1), "value"));
    json_decref (root);
    //  Issue 15: scores to 3 decimals, printed as such
    assert_string_equal (text, "{\"counter_type\":\"like\",\"window\":\"trending\","
                               "\"ranking\":[{\"resource_id\":\"a\",\"score\":8.0},"
                               "{\"resource_id\":\"b\",\"score\":2.5}]}");
    free (text);
    rep.ranking = NULL;
    rep.nranking = 0;
    hgp_reply_clear (&rep);
}

//  Issue 15: the older API of this kind of service spelled the delta
//  "increment"; near misses of a field name say what was meant
static void
test_increment_takes_the_older_name_and_says_what_was_meant (void **state)
{
    hgp_request_t req;
    hgp_error_t err;
    assert_int_equal (s_incr ("{\"resource_id\":\"p\",\"counter_type\":\"like\","
                              "\"user_id\":\"u1\",\"increment\":3}", NULL,
                              &req, &err), 0);
    assert_true (req.delta == 3);
    hgp_request_clear (&req);
    s_incr_rejects ("{\"resource_id\":\"p\",\"counter_type\":\"like\","
                    "\"delta\":1,\"increment\":1}", NULL, 400, "invalid");
    s_incr_rejects ("{\"resource_id\":\"p\",\"counter_type\":\"like\","
                    "\"increment\":0}", NULL, 400, "invalid");
    assert_int_equal (s_incr ("{\"resource_id\":\"p\",\"counter_type\":\"like\","
                              "\"detla\":2}", NULL, &req, &err), -1);
    assert_string_equal (err.message,
                         "unknown field \"detla\" (did you mean \"delta\"?)");
    assert_int_equal (s_incr ("{\"resource_id\":\"p\",\"countertype\":\"like\"}",
                              NULL, &req, &err), -1);
    assert_string_equal (err.message, "unknown field \"countertype\" (did you"
                         " mean \"counter_type\"?)");
    assert_int_equal (s_incr ("{\"resource_id\":\"p\",\"counter_type\":\"like\","
                              "\"amount\":2}", NULL, &req, &err), -1);
    assert_string_equal (err.message, "unknown field \"amount\" (allowed:"
                         " resource_id, counter_type, delta, user_id,"
                         " request_id)");
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_increment_defaults_delta_to_one_and_leaves_id_to_the_caller),
        cmocka_unit_test (test_increment_takes_every_field),
        cmocka_unit_test (test_increment_takes_the_older_name_and_says_what_was_meant),
        cmocka_unit_test (test_increment_accepts_the_whole_int64_range),
        cmocka_unit_test (test_increment_refuses_bad_deltas),
        cmocka_unit_test (test_increment_refuses_bad_ids),
        cmocka_unit_test (test_increment_needs_resource_and_type_and_nothing_unknown),
        cmocka_unit_test (test_increment_refuses_json_that_does_not_parse),
        cmocka_unit_test (test_nesting_past_the_limit_is_invalid_and_strings_do_not_count),
        cmocka_unit_test (test_idempotency_key_header_and_request_id_must_agree),
        cmocka_unit_test (test_batch_keeps_request_order_and_accepts_items_alias),
        cmocka_unit_test (test_batch_takes_1000_queries_and_refuses_1001_as_too_large),
        cmocka_unit_test (test_batch_refuses_bad_shapes),
        cmocka_unit_test (test_value_replies_carry_replayed_and_request_id_only_for_increments),
        cmocka_unit_test (test_batch_results_pair_keys_with_values_in_order),
        cmocka_unit_test (test_error_bodies_escape_any_message),
        cmocka_unit_test (test_rank_query_defaults_and_takes_window_and_limit),
        cmocka_unit_test (test_rank_and_stats_queries_refuse_anything_else_as_400),
        cmocka_unit_test (test_series_has_one_entry_per_bucket_of_the_window_zeros_included),
        cmocka_unit_test (test_ranking_is_an_ordered_list_with_value_or_score),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
