/*  hgp_json.c - JSON bodies <-> codec structs (see hgp_json.h)
 *
 *  jansson parses; everything else here is checking. Choices worth knowing:
 *
 *  - Duplicate object keys are rejected (JSON_REJECT_DUPLICATES): with
 *    "last one wins", {"delta": 1, "delta": 1000} would mean whatever the
 *    parser of the day decides.
 *  - Only JSON integer tokens are deltas. jansson parses them with strtoll
 *    and reports one outside int64 as json_error_numeric_overflow, which
 *    we answer as 400 "invalid" for delta rather than "malformed": the JSON
 *    is fine, the value is out of range. 1.0 and 1e3 are reals and are
 *    refused: accepting them would mean deciding which doubles are "exact",
 *    and above 2^53 none reliably are.
 *  - Replies are built from strings the codec already validated (ids) or
 *    that jansson escapes (error messages), so the output is always valid
 *    JSON whatever the broker said.
 */
#include "hgp_json.h"
#include <jansson.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAD(err, ...) \
    hgp_error_set ((err), HGP_STATUS_BAD_REQUEST, "invalid", __VA_ARGS__)

static bool
s_eq (const char *a, const char *b)
{
    return strcmp (a, b) == 0;
}

static const char s_id_rule [] = "1-128 bytes of A-Z a-z 0-9 _ - . :";

//  Parse body; a JSON object or -1 with err (400 malformed/invalid)

static json_t *
s_parse (const char *body, size_t size, hgp_error_t *err)
{
    json_error_t jerr;
    json_t *root = json_loadb (body, size,
                               JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        if (json_error_code (&jerr) == json_error_numeric_overflow)
            BAD (err, "a number is outside the signed 64-bit integer range "
                 "(delta must be in [-9223372036854775808, "
                 "9223372036854775807] and not 0)");
        else
            hgp_error_set (err, HGP_STATUS_BAD_REQUEST, "malformed",
                           "body is not valid JSON: %s (line %d, column %d)",
                           jerr.text, jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object (root)) {
        json_decref (root);
        BAD (err, "body must be a JSON object");
        return NULL;
    }
    return root;
}

//  Copy a JSON string holding an id into out [HGP_ID_MAX + 1]

static int
s_id (json_t *value, char *out, const char *what, hgp_error_t *err)
{
    if (!json_is_string (value))
        return BAD (err, "%s must be a string of %s", what, s_id_rule);
    const char *s = json_string_value (value);
    size_t len = json_string_length (value);
    if (!hgp_id_valid (s, len))
        return BAD (err, "%s must be %s", what, s_id_rule);
    memcpy (out, s, len);
    out [len] = 0;
    return 0;
}

//  One {"resource_id", "counter_type"} object, as in a batch query

static int
s_key (json_t *obj, hgp_key_t *key, size_t index, hgp_error_t *err)
{
    char what [64];
    if (!json_is_object (obj))
        return BAD (err, "queries[%zu] must be an object with resource_id "
                    "and counter_type", index);
    const char *name;
    json_t *value;
    bool have_resource = false, have_type = false;
    json_object_foreach (obj, name, value) {
        if (s_eq (name, "resource_id")) {
            snprintf (what, sizeof what, "queries[%zu].resource_id", index);
            if (s_id (value, key->resource_id, what, err))
                return -1;
            have_resource = true;
        }
        else
        if (s_eq (name, "counter_type")) {
            snprintf (what, sizeof what, "queries[%zu].counter_type", index);
            if (s_id (value, key->counter_type, what, err))
                return -1;
            have_type = true;
        }
        else
            return BAD (err, "queries[%zu] has unknown field \"%.64s\" "
                        "(allowed: resource_id, counter_type)", index, name);
    }
    if (!have_resource || !have_type)
        return BAD (err, "queries[%zu] needs %s", index,
                    have_resource ? "counter_type" : "resource_id");
    return 0;
}

int
hgp_json_decode_increment (const char *body, size_t size,
                           const char *idempotency_key,
                           hgp_request_t *req, hgp_error_t *err)
{
    hgp_request_init (req);
    req->op = HGP_OP_INCR;
    req->delta = 1;
    json_t *root = s_parse (body, size, err);
    if (!root)
        goto failed;

    bool have_resource = false, have_type = false;
    const char *name;
    json_t *value;
    json_object_foreach (root, name, value) {
        int rc = 0;
        if (s_eq (name, "resource_id")) {
            rc = s_id (value, req->key.resource_id, "resource_id", err);
            have_resource = true;
        }
        else
        if (s_eq (name, "counter_type")) {
            rc = s_id (value, req->key.counter_type, "counter_type", err);
            have_type = true;
        }
        else
        if (s_eq (name, "user_id"))
            rc = s_id (value, req->user_id, "user_id", err);
        else
        if (s_eq (name, "request_id"))
            rc = s_id (value, req->id, "request_id", err);
        else
        if (s_eq (name, "delta")) {
            if (!json_is_integer (value))
                rc = BAD (err, "delta must be a JSON integer (no fraction or "
                          "exponent), non-zero, in the signed 64-bit range");
            else {
                req->delta = (int64_t) json_integer_value (value);
                if (req->delta == 0)
                    rc = BAD (err, "delta must not be 0");
            }
        }
        else
            rc = BAD (err, "unknown field \"%.64s\" (allowed: resource_id, "
                      "counter_type, delta, user_id, request_id)", name);
        if (rc)
            goto failed;
    }
    if (!have_resource || !have_type) {
        BAD (err, "%s is required", have_resource ? "counter_type"
                                                  : "resource_id");
        goto failed;
    }
    if (idempotency_key) {
        size_t len = strlen (idempotency_key);
        if (!hgp_id_valid (idempotency_key, len)) {
            BAD (err, "Idempotency-Key header must be %s", s_id_rule);
            goto failed;
        }
        if (req->id [0] && !s_eq (req->id, idempotency_key)) {
            BAD (err, "Idempotency-Key header and request_id differ; "
                 "send one, or the same in both");
            goto failed;
        }
        memcpy (req->id, idempotency_key, len + 1);
    }
    json_decref (root);
    return 0;

failed:
    json_decref (root);
    hgp_request_clear (req);
    return -1;
}

int
hgp_json_decode_batch (const char *body, size_t size,
                       hgp_request_t *req, hgp_error_t *err)
{
    hgp_request_init (req);
    req->op = HGP_OP_MGET;
    json_t *root = s_parse (body, size, err);
    if (!root)
        goto failed;

    json_t *list = NULL;
    const char *name;
    json_t *value;
    json_object_foreach (root, name, value) {
        if (s_eq (name, "queries") || s_eq (name, "items")) {
            if (list) {
                BAD (err, "send \"queries\" or its alias \"items\", not both");
                goto failed;
            }
            list = value;
        }
        else {
            BAD (err, "unknown field \"%.64s\" (allowed: queries, or its "
                 "alias items)", name);
            goto failed;
        }
    }
    if (!list) {
        BAD (err, "queries is required: [{\"resource_id\": ..., "
             "\"counter_type\": ...}, ...]");
        goto failed;
    }
    if (!json_is_array (list)) {
        BAD (err, "queries must be an array");
        goto failed;
    }
    size_t n = json_array_size (list);
    if (n == 0) {
        BAD (err, "queries must not be empty");
        goto failed;
    }
    if (n > HGP_MGET_MAX) {
        hgp_error_set (err, HGP_STATUS_TOO_LARGE, "too_large",
                       "%zu queries; at most %d per batch", n, HGP_MGET_MAX);
        goto failed;
    }
    req->keys = (hgp_key_t *) calloc (n, sizeof (hgp_key_t));
    if (!req->keys) {
        hgp_error_set (err, HGP_STATUS_INTERNAL, "internal", "out of memory");
        goto failed;
    }
    req->nkeys = n;
    for (size_t i = 0; i < n; i++)
        if (s_key (json_array_get (list, i), &req->keys [i], i, err))
            goto failed;
    json_decref (root);
    return 0;

failed:
    json_decref (root);
    hgp_request_clear (req);
    return -1;
}

static char *
s_dump (json_t *json)
{
    if (!json)
        return NULL;
    char *text = json_dumps (json, JSON_COMPACT);
    json_decref (json);
    return text;
}

char *
hgp_json_encode_value (const hgp_key_t *key, int64_t value, bool replayed,
                       const char *request_id)
{
    json_t *json = json_pack ("{s:s, s:s, s:I}",
                              "resource_id", key->resource_id,
                              "counter_type", key->counter_type,
                              "value", (json_int_t) value);
    if (json && request_id) {
        json_object_set_new (json, "replayed", json_boolean (replayed));
        json_object_set_new (json, "request_id", json_string (request_id));
    }
    return s_dump (json);
}

char *
hgp_json_encode_values (const hgp_request_t *req, const hgp_reply_t *rep)
{
    assert (rep->nvalues == req->nkeys);
    json_t *results = json_array ();
    for (size_t i = 0; results && i < req->nkeys; i++) {
        json_t *row = json_pack ("{s:s, s:s, s:I}",
                                 "resource_id", req->keys [i].resource_id,
                                 "counter_type", req->keys [i].counter_type,
                                 "value", (json_int_t) rep->values [i]);
        if (json_array_append_new (results, row)) {
            json_decref (results);
            return NULL;
        }
    }
    return s_dump (json_pack ("{s:o}", "results", results));
}

char *
hgp_json_encode_error (const hgp_error_t *err, const char *request_id)
{
    //  Messages come from the broker or the actors; jansson escapes them,
    //  and an invalid UTF-8 one (they are bytes on the wire) must not turn
    //  the error into no answer at all
    json_t *message = json_string (err->message);
    if (!message)
        message = json_string ("(error message was not valid UTF-8)");
    json_t *json = json_pack ("{s:{s:s, s:o}}", "error",
                              "code", err->code [0] ? err->code : "internal",
                              "message", message);
    if (json && request_id && request_id [0])
        json_object_set_new (json, "request_id", json_string (request_id));
    return s_dump (json);
}
