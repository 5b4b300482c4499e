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
 *  - Nesting is refused past HGP_JSON_DEPTH_MAX by s_depth_ok BEFORE
 *    jansson sees the body. jansson recurses once per level (up to 2048)
 *    and the gateway's old civetweb workers ran on 100 KiB stacks: 1000
 *    '[' was a SIGSEGV. Our bodies are two levels deep; the scan is one pass that
 *    counts brackets outside strings, so it costs no stack at all.
 */
#include "hgp_json.h"
#include "hgp_views.h"
#include <jansson.h>
#include <math.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MIN(a, b) ((a) < (b) ? (a) : (b))

#define BAD(err, ...) \
    hgp_error_set ((err), HGP_STATUS_BAD_REQUEST, "invalid", __VA_ARGS__)

static bool
s_eq (const char *a, const char *b)
{
    return strcmp (a, b) == 0;
}

static const char s_id_rule [] = "1-128 bytes of A-Z a-z 0-9 _ - . :";

//  Whether no bracket in body is nested deeper than HGP_JSON_DEPTH_MAX.
//  Brackets inside strings do not count; a backslash escapes the next
//  byte (enough to find the string's end: \" and \\ are the only escapes
//  that could hide a quote). Unbalanced or broken JSON passes here and is
//  jansson's to refuse: this only bounds how deep jansson will recurse.

static bool
s_depth_ok (const char *body, size_t size)
{
    size_t depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < size; i++) {
        char c = body [i];
        if (in_string) {
            if (c == '\\')
                i++;
            else
            if (c == '"')
                in_string = false;
        }
        else
        if (c == '"')
            in_string = true;
        else
        if (c == '[' || c == '{') {
            if (++depth > HGP_JSON_DEPTH_MAX)
                return false;
        }
        else
        if ((c == ']' || c == '}') && depth > 0)
            depth--;
    }
    return true;
}

//  Parse body; a JSON object or -1 with err (400 malformed/invalid)

static json_t *
s_parse (const char *body, size_t size, hgp_error_t *err)
{
    if (!s_depth_ok (body, size)) {
        BAD (err, "JSON is nested more than %d levels deep",
             HGP_JSON_DEPTH_MAX);
        return NULL;
    }
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

/*  The fields of an increment, for "did you mean" */
static const char *const s_increment_fields [] = {
    "resource_id", "counter_type", "delta", "user_id", "request_id", NULL
};

/*  Edit distance of a and b (insertions, deletions, substitutions, and
    swaps of two neighbours), at most 3: names longer than 32 are far */
static int
s_distance (const char *a, const char *b)
{
    size_t m = strlen (a), n = strlen (b);
    if (m > 32 || n > 32)
        return 3;
    int d [33][33];
    for (size_t i = 0; i <= m; i++)
        d [i][0] = (int) i;
    for (size_t j = 0; j <= n; j++)
        d [0][j] = (int) j;
    for (size_t i = 1; i <= m; i++)
        for (size_t j = 1; j <= n; j++) {
            int cost = a [i - 1] == b [j - 1] ? 0 : 1;
            int best = S_MIN (d [i - 1][j] + 1, d [i][j - 1] + 1);
            best = S_MIN (best, d [i - 1][j - 1] + cost);
            if (i > 1 && j > 1 && a [i - 1] == b [j - 2]
            &&  a [i - 2] == b [j - 1])
                best = S_MIN (best, d [i - 2][j - 2] + 1);
            d [i][j] = best;
        }
    return S_MIN (d [m][n], 3);
}

/*  The allowed name within two edits of name (the nearest), else NULL */
static const char *
s_near (const char *name, const char *const *allowed)
{
    const char *near = NULL;
    int best = 3;
    for (const char *const *a = allowed; *a; a++) {
        int d = s_distance (name, *a);
        if (d < best) {
            best = d;
            near = *a;
        }
    }
    return near;
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

    bool have_resource = false, have_type = false, have_delta = false;
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
        if (s_eq (name, "delta") || s_eq (name, "increment")) {
            //  "increment" is the older API's name of the same field
            if (have_delta)
                rc = BAD (err, "delta and increment are the same field;"
                          " send one");
            else
            if (!json_is_integer (value))
                rc = BAD (err, "%s must be a JSON integer (no fraction or "
                          "exponent), non-zero, in the signed 64-bit range",
                          name);
            else {
                req->delta = (int64_t) json_integer_value (value);
                if (req->delta == 0)
                    rc = BAD (err, "%s must not be 0", name);
            }
            have_delta = true;
        }
        else {
            const char *near = s_near (name, s_increment_fields);
            if (near)
                rc = BAD (err, "unknown field \"%.64s\" (did you mean"
                          " \"%s\"?)", name, near);
            else
                rc = BAD (err, "unknown field \"%.64s\" (allowed:"
                          " resource_id, counter_type, delta, user_id,"
                          " request_id)", name);
        }
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
s_dump_flags (json_t *json, size_t flags)
{
    if (!json)
        return NULL;
    char *text = json_dumps (json, flags);
    json_decref (json);
    return text;
}

static char *
s_dump (json_t *json)
{
    return s_dump_flags (json, JSON_COMPACT);
}

//  Text that needs no JSON escaping: what hgp_id_valid admits always is
static bool
s_plain (const char *s)
{
    for (; *s; s++)
        if (*s == '"' || *s == '\\' || (unsigned char) *s < 0x20
        ||  (unsigned char) *s >= 0x7f)
            return false;
    return true;
}

static char *
s_put (char *p, const char *s)
{
    size_t len = strlen (s);
    memcpy (p, s, len);
    return p + len;
}

//  The answer of every increment and get, the hot path: written straight
//  into one buffer (ids need no escaping), the same bytes jansson writes
static char *
s_encode_value_plain (const hgp_key_t *key, int64_t value, bool replayed,
                      const char *request_id)
{
    size_t need = strlen (key->resource_id) + strlen (key->counter_type)
                + (request_id ? strlen (request_id) : 0) + 128;
    char *text = (char *) malloc (need);
    if (!text)
        return NULL;
    char *p = s_put (text, "{\"resource_id\":\"");
    p = s_put (p, key->resource_id);
    p = s_put (p, "\",\"counter_type\":\"");
    p = s_put (p, key->counter_type);
    p = s_put (p, "\",\"value\":");
    char digits [24];
    int n = 0;
    uint64_t v = value < 0 ? 0 - (uint64_t) value : (uint64_t) value;
    do {
        digits [n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v);
    if (value < 0)
        *p++ = '-';
    while (n)
        *p++ = digits [--n];
    if (request_id) {
        p = s_put (p, replayed ? ",\"replayed\":true,\"request_id\":\""
                               : ",\"replayed\":false,\"request_id\":\"");
        p = s_put (p, request_id);
        *p++ = '"';
    }
    *p++ = '}';
    *p = 0;
    return text;
}

char *
hgp_json_encode_value (const hgp_key_t *key, int64_t value, bool replayed,
                       const char *request_id)
{
    if (s_plain (key->resource_id) && s_plain (key->counter_type)
    &&  (!request_id || s_plain (request_id)))
        return s_encode_value_plain (key, value, replayed, request_id);
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


//  --------------------------------------------------------------------
//  Query strings (rank, stats)

#define S_PARAM_MAX 16                  /* bytes of a name or a value       */

static bool
s_param_char (char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9') || c == '_';
}

//  Next name=value of *query into name and value; 1, 0 at the end, or -1
//  with err

static int
s_param_next (const char **query, char *name, char *value, hgp_error_t *err)
{
    const char *p = *query;
    if (!p || !*p)
        return 0;
    char *out [2] = { name, value };
    for (int part = 0; part < 2; part++) {
        size_t n = 0;
        while (s_param_char (*p)) {
            if (n == S_PARAM_MAX) {
                BAD (err, "query parameter names and values are at most %d"
                     " characters", S_PARAM_MAX);
                return -1;
            }
            out [part][n++] = *p++;
        }
        out [part][n] = 0;
        if (n == 0 || (part == 0 && *p != '=')
        ||  (part == 1 && *p && *p != '&')) {
            BAD (err, "query must be name=value pairs joined by '&', of"
                 " A-Z a-z 0-9 _");
            return -1;
        }
        p++;                            //  past '=', '&' or the NUL
        if (part == 1 && !p [-1])
            p--;
        else
        if (part == 1 && !*p) {
            //  "limit=1&": a pair promised and not there
            BAD (err, "query must be name=value pairs joined by '&', of"
                 " A-Z a-z 0-9 _ (it ends in '&')");
            return -1;
        }
    }
    *query = p;
    return 1;
}

int
hgp_json_decode_rank (const char *counter_type, const char *query,
                      hgp_request_t *req, hgp_error_t *err)
{
    hgp_request_init (req);
    if (!hgp_id_valid (counter_type, strlen (counter_type)))
        return BAD (err, "counter_type in the path must be %s", s_id_rule);
    req->op = HGP_OP_TOP;
    strcpy (req->key.counter_type, counter_type);
    req->window = HGP_WINDOW_ALL;
    req->limit = HGP_LIMIT_DEFAULT;
    bool seen_window = false, seen_limit = false;
    char name [S_PARAM_MAX + 1], value [S_PARAM_MAX + 1];
    int rc;
    while ((rc = s_param_next (&query, name, value, err)) == 1) {
        if (s_eq (name, "window") && !seen_window) {
            seen_window = true;
            if (hgp_window_from_name (value, &req->window))
                return BAD (err, "window must be all, 1h, 24h or trending");
        }
        else
        if (s_eq (name, "limit") && !seen_limit) {
            seen_limit = true;
            char *end;
            long limit = strtol (value, &end, 10);
            if (*end || value [0] == '0' || limit < 1
            ||  limit > HGP_JSON_RANK_LIMIT_MAX)
                return BAD (err, "limit must be an integer from 1 to %d",
                            HGP_JSON_RANK_LIMIT_MAX);
            req->limit = (uint32_t) limit;
        }
        else
            return BAD (err, "'%s' is not a parameter of rank, or is given"
                        " twice (window, limit)", name);
    }
    return rc;
}

//  The counter key of a path's {resource_id}/{counter_type}, for op
static int
s_path_key (const char *resource_id, size_t resource_len,
            const char *counter_type, size_t type_len, hgp_op_t op,
            hgp_request_t *req, hgp_error_t *err)
{
    hgp_request_init (req);
    if (!hgp_id_valid (resource_id, resource_len))
        return BAD (err, "resource_id in the path must be %s", s_id_rule);
    if (!hgp_id_valid (counter_type, type_len))
        return BAD (err, "counter_type in the path must be %s", s_id_rule);
    req->op = op;
    memcpy (req->key.resource_id, resource_id, resource_len);
    req->key.resource_id [resource_len] = 0;
    memcpy (req->key.counter_type, counter_type, type_len);
    req->key.counter_type [type_len] = 0;
    return 0;
}

int
hgp_json_decode_uniques (const char *resource_id, size_t resource_len,
                         const char *counter_type, size_t type_len,
                         const char *query, hgp_request_t *req,
                         hgp_error_t *err)
{
    if (s_path_key (resource_id, resource_len, counter_type, type_len,
                    HGP_OP_UNIQUES, req, err))
        return -1;
    if (query)
        return BAD (err, "GET /api/v1/counter/{resource_id}/{counter_type}"
                    "/uniques takes no query parameters");
    return 0;
}

char *
hgp_json_encode_uniques (const hgp_key_t *key, const hgp_reply_t *rep)
{
    return s_dump (hgp_view_uniques (key, rep));
}

int
hgp_json_decode_stats (const char *resource_id, size_t resource_len,
                       const char *counter_type, size_t type_len,
                       const char *query, hgp_request_t *req,
                       hgp_window_t *window, hgp_error_t *err)
{
    if (s_path_key (resource_id, resource_len, counter_type, type_len,
                    HGP_OP_STATS, req, err))
        return -1;
    *window = HGP_WINDOW_24H;
    bool seen_window = false;
    char name [S_PARAM_MAX + 1], value [S_PARAM_MAX + 1];
    int rc;
    while ((rc = s_param_next (&query, name, value, err)) == 1) {
        if (s_eq (name, "window") && !seen_window) {
            seen_window = true;
            if (hgp_window_from_name (value, window)
            ||  (*window != HGP_WINDOW_1H && *window != HGP_WINDOW_24H))
                return BAD (err, "window must be 1h or 24h");
        }
        else
            return BAD (err, "'%s' is not a parameter of stats, or is given"
                        " twice (window)", name);
    }
    return rc;
}

//  A trending score as the API shows it: to 3 decimals (the decayed sums
//  are floats; 17 digits of one say nothing a reader can use)

//  Reals written with 15 significant digits: a score rounded to 3
//  decimals prints as such (7.999, not 7.9989999999999997)
static char *
s_dump_scores (json_t *json)
{
    return s_dump_flags (json, JSON_COMPACT | JSON_REAL_PRECISION (15));
}

char *
hgp_json_encode_ranking (const char *counter_type, hgp_window_t window,
                         const hgp_reply_t *rep)
{
    return s_dump_scores (hgp_view_ranking (counter_type, window, rep));
}

char *
hgp_json_encode_series (const hgp_key_t *key, hgp_window_t window,
                        int64_t now_ms, const hgp_reply_t *rep)
{
    return s_dump_scores (hgp_view_series (key, window, now_ms, rep));
}
