/*  hgp_codec.c - encode and validate HGP/1 bodies (schemas/PROTOCOL.md)
 *
 *  Encoding uses msgpack-c's packer. Decoding does NOT use msgpack-c's
 *  unpacker, on purpose: the unpacker allocates a whole array or map as
 *  soon as it reads the header, so five hostile bytes claiming four billion
 *  elements make it ask for gigabytes. Our reader is a cursor over the
 *  bytes that never allocates more than the bytes in hand can justify, reads
 *  only the shapes the spec allows, and turns every deviation into a typed
 *  error: structural damage is 400 "malformed", a bad field 400 "invalid",
 *  a body or key list over the limits 413 "too_large".
 */
#include "hgp_codec.h"
#include <msgpack.h>
#include <assert.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAP_MAX 32          /* more keys than any body can legally have */

/*  --------------------------------------------------------------------
 *  Small helpers
 */

void
hgp_buf_clear (hgp_buf_t *self)
{
    free (self->data);
    self->data = NULL;
    self->size = self->alloc = 0;
}

static int
s_buf_write (void *data, const char *bytes, size_t len)
{
    hgp_buf_t *buf = (hgp_buf_t *) data;
    if (buf->size + len > buf->alloc) {
        size_t alloc = buf->alloc ? buf->alloc : 256;
        while (alloc < buf->size + len)
            alloc *= 2;
        uint8_t *grown = (uint8_t *) realloc (buf->data, alloc);
        if (!grown)
            return -1;
        buf->data = grown;
        buf->alloc = alloc;
    }
    memcpy (buf->data + buf->size, bytes, len);
    buf->size += len;
    return 0;
}

int
hgp_buf_append (hgp_buf_t *self, const void *data, size_t size)
{
    return s_buf_write (self, (const char *) data, size);
}

int
hgp_error_set (hgp_error_t *err, uint16_t status, const char *code,
               const char *fmt, ...)
{
    if (!err)
        return -1;
    err->status = status;
    snprintf (err->code, sizeof err->code, "%s", code);
    va_list args;
    va_start (args, fmt);
    vsnprintf (err->message, sizeof err->message, fmt, args);
    va_end (args);
    return -1;
}

static const char *s_op_names [] = {
    "", "incr", "get", "mget", "ping", "actors", "top", "stats", "announce",
    "uniques"
};

const char *
hgp_op_name (hgp_op_t op)
{
    return (op > HGP_OP_NONE && op <= HGP_OP_UNIQUES) ? s_op_names [op] : "";
}

hgp_op_t
hgp_op_from_name (const char *name)
{
    for (int op = HGP_OP_INCR; op <= HGP_OP_UNIQUES; op++)
        if (strcmp (name, s_op_names [op]) == 0)
            return (hgp_op_t) op;
    return HGP_OP_NONE;
}

static const char *s_window_names [] = { "all", "1h", "24h", "trending" };

const char *
hgp_window_name (hgp_window_t window)
{
    return (window >= HGP_WINDOW_ALL && window <= HGP_WINDOW_TRENDING)
           ? s_window_names [window] : "";
}

int
hgp_window_from_name (const char *name, hgp_window_t *window)
{
    for (int w = HGP_WINDOW_ALL; w <= HGP_WINDOW_TRENDING; w++)
        if (strcmp (name, s_window_names [w]) == 0) {
            *window = (hgp_window_t) w;
            return 0;
        }
    return -1;
}

bool
hgp_id_valid (const char *s, size_t len)
{
    if (len < 1 || len > HGP_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s [i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        ||    (c >= '0' && c <= '9') || c == '_' || c == '-'
        ||    c == '.' || c == ':'))
            return false;
    }
    return true;
}

bool
hgp_url_valid (const char *s, size_t len)
{
    size_t head = len >= 7 && memcmp (s, "http://", 7) == 0 ? 7
                : len >= 8 && memcmp (s, "https://", 8) == 0 ? 8 : 0;
    if (head == 0 || len == head || len > HGP_URL_MAX)
        return false;
    for (size_t i = head; i < len; i++)
        if (s [i] <= ' ' || s [i] > '~' || s [i] == '"' || s [i] == '\\')
            return false;
    return true;
}

/*  --------------------------------------------------------------------
 *  The reader: a cursor over untrusted bytes
 */

typedef struct {
    const uint8_t *p;           /* next byte                                */
    const uint8_t *end;         /* one past the last byte                   */
    hgp_error_t *err;           /* where failures are described             */
} s_cur_t;

static int
s_truncated (s_cur_t *cur)
{
    return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST, "malformed",
                          "msgpack body is truncated");
}

static int
s_need (s_cur_t *cur, size_t n)
{
    return (size_t) (cur->end - cur->p) >= n ? 0 : s_truncated (cur);
}


static uint64_t
s_be (const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p [i];
    return v;
}

/*  Read a length header of a family (fixed range, 8/16/32-bit forms) */
static int
s_read_len (s_cur_t *cur, uint8_t fix_lo, uint8_t fix_hi, uint8_t fix_mask,
            int op8, int op16, int op32, uint32_t *len)
{
    if (s_need (cur, 1))
        return -1;
    uint8_t b = *cur->p;
    int width = 0;
    if (b >= fix_lo && b <= fix_hi) {
        *len = b & fix_mask;
        cur->p++;
        return 0;
    }
    if (op8 >= 0 && b == op8)
        width = 1;
    else
    if (b == op16)
        width = 2;
    else
    if (b == op32)
        width = 4;
    else
        return 1;               /* not this family; caller reports */
    if (s_need (cur, 1 + width))
        return -1;
    *len = (uint32_t) s_be (cur->p + 1, width);
    cur->p += 1 + width;
    return 0;
}

static int
s_map (s_cur_t *cur, uint32_t *n, const char *what)
{
    int rc = s_read_len (cur, 0x80, 0x8f, 0x0f, -1, 0xde, 0xdf, n);
    /*  a body that is not a map at all is structural damage; a field
        that should be a map and is not is a bad field */
    if (rc > 0)
        return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST,
                              strstr (what, "body") ? "malformed" : "invalid",
                              "%s must be a map", what);
    if (rc == 0 && *n > MAP_MAX)
        return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST, "malformed",
                              "%s has %u keys, more than any valid body",
                              what, *n);
    return rc;
}

static int
s_array (s_cur_t *cur, uint32_t *n, const char *what)
{
    int rc = s_read_len (cur, 0x90, 0x9f, 0x0f, -1, 0xdc, 0xdd, n);
    if (rc > 0)
        return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST, "invalid",
                              "%s must be an array", what);
    return rc;
}

/*  An array of at most max elements into *items: a zeroed allocation of
    *n elements of size bytes, never for elements the body has no bytes
    for. Only the one byte every msgpack object takes is required here,
    not the smallest *valid* element: an element of the wrong type must
    be reported as such by the element's own reader, wherever the array
    stands in the body. 0 or -1, error set. */
static int
s_list (s_cur_t *cur, const char *what, uint32_t max, size_t size,
        void **items, uint32_t *n)
{
    if (s_array (cur, n, what))
        return -1;
    if (*n > max)
        return hgp_error_set (cur->err, HGP_STATUS_TOO_LARGE, "too_large",
                              "%u %s, more than the limit of %u", *n, what,
                              max);
    if (s_need (cur, (size_t) *n))
        return -1;
    *items = calloc (*n ? *n : 1, size);
    if (!*items)
        return hgp_error_set (cur->err, HGP_STATUS_INTERNAL, "internal",
                              "out of memory");
    return 0;
}

/*  A str; *s points into the input, not terminated */
static int
s_str (s_cur_t *cur, const char **s, uint32_t *len, const char *what)
{
    int rc = s_read_len (cur, 0xa0, 0xbf, 0x1f, 0xd9, 0xda, 0xdb, len);
    if (rc > 0)
        return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST, "invalid",
                              "%s must be a string", what);
    if (rc < 0 || s_need (cur, *len))
        return -1;
    *s = (const char *) cur->p;
    cur->p += *len;
    return 0;
}

/*  A str that must be an id; copied, terminated, into out */
static int
s_id (s_cur_t *cur, char *out, const char *what)
{
    const char *s;
    uint32_t len;
    if (s_str (cur, &s, &len, what))
        return -1;
    if (!hgp_id_valid (s, len))
        return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST, "invalid",
            "%s must be 1-%d bytes of A-Z a-z 0-9 _ - . :", what, HGP_ID_MAX);
    memcpy (out, s, len);
    out [len] = 0;
    return 0;
}

/*  A str that must be a metrics URL; copied, terminated, into out */
static int
s_url (s_cur_t *cur, char *out, const char *what)
{
    const char *s;
    uint32_t len;
    if (s_str (cur, &s, &len, what))
        return -1;
    if (!hgp_url_valid (s, len))
        return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST, "invalid",
            "%s must be an http:// or https:// URL of at most %d bytes",
            what, HGP_URL_MAX);
    memcpy (out, s, len);
    out [len] = 0;
    return 0;
}

/*  A str of any content up to max bytes (error messages), terminated */
static int
s_text (s_cur_t *cur, char *out, size_t max, const char *what)
{
    const char *s;
    uint32_t len;
    if (s_str (cur, &s, &len, what))
        return -1;
    if (len > max)
        len = (uint32_t) max;   /* messages are for humans; cut, not fail */
    memcpy (out, s, len);
    out [len] = 0;
    return 0;
}

/*  Any msgpack integer that fits int64 */
static int
s_int (s_cur_t *cur, int64_t *v, const char *what)
{
    if (s_need (cur, 1))
        return -1;
    uint8_t b = *cur->p;
    if (b <= 0x7f) { *v = b; cur->p++; return 0; }
    if (b >= 0xe0) { *v = (int8_t) b; cur->p++; return 0; }
    int width;
    bool is_signed;
    switch (b) {
        case 0xcc: width = 1; is_signed = false; break;
        case 0xcd: width = 2; is_signed = false; break;
        case 0xce: width = 4; is_signed = false; break;
        case 0xcf: width = 8; is_signed = false; break;
        case 0xd0: width = 1; is_signed = true; break;
        case 0xd1: width = 2; is_signed = true; break;
        case 0xd2: width = 4; is_signed = true; break;
        case 0xd3: width = 8; is_signed = true; break;
        default:
            return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST, "invalid",
                                  "%s must be an integer", what);
    }
    if (s_need (cur, 1 + width))
        return -1;
    uint64_t raw = s_be (cur->p + 1, width);
    cur->p += 1 + width;
    if (is_signed) {
        int shift = 64 - 8 * width;
        /*  sign-extend through an unsigned shift, no UB */
        *v = (int64_t) (raw << shift) >> shift;
    }
    else {
        if (raw > (uint64_t) INT64_MAX)
            return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST, "invalid",
                                  "%s is out of the signed 64-bit range", what);
        *v = (int64_t) raw;
    }
    return 0;
}

/*  An integer from min to max; the message names the range we accept */
static int
s_urange (s_cur_t *cur, uint64_t min, uint64_t max, uint64_t *v,
          const char *what)
{
    int64_t n;
    if (s_int (cur, &n, what))
        return -1;
    if (n < 0 || (uint64_t) n < min || (uint64_t) n > max)
        return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST, "invalid",
                              "%s must be from %llu to %llu", what,
                              (unsigned long long) min,
                              (unsigned long long) max);
    *v = (uint64_t) n;
    return 0;
}

static int
s_uint (s_cur_t *cur, uint64_t max, uint64_t *v, const char *what)
{
    return s_urange (cur, 0, max, v, what);
}

/*  A float64 or float32, or any integer (as a double) */
static int
s_float (s_cur_t *cur, double *v, const char *what)
{
    if (s_need (cur, 1))
        return -1;
    uint8_t b = *cur->p;
    if (b == 0xcb || b == 0xca) {
        int width = b == 0xcb ? 8 : 4;
        if (s_need (cur, 1 + width))
            return -1;
        uint64_t raw = s_be (cur->p + 1, width);
        cur->p += 1 + width;
        if (width == 8)
            memcpy (v, &raw, sizeof *v);
        else {
            uint32_t raw32 = (uint32_t) raw;
            float f;
            memcpy (&f, &raw32, sizeof f);
            *v = f;
        }
        return 0;
    }
    int64_t n;
    if (s_int (cur, &n, what))
        return -1;
    *v = (double) n;
    return 0;
}

static int
s_bool (s_cur_t *cur, bool *v, const char *what)
{
    if (s_need (cur, 1))
        return -1;
    if (*cur->p != 0xc2 && *cur->p != 0xc3)
        return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST, "invalid",
                              "%s must be a boolean", what);
    *v = *cur->p++ == 0xc3;
    return 0;
}

/*  A window name (all, 1h, 24h, trending) */
static int
s_window (s_cur_t *cur, hgp_window_t *window)
{
    const char *s;
    uint32_t len;
    if (s_str (cur, &s, &len, "window"))
        return -1;
    char name [12] = "";
    if (len < sizeof name) {
        memcpy (name, s, len);
        name [len] = 0;
    }
    if (hgp_window_from_name (name, window))
        return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST, "invalid",
                              "window must be one of all, 1h, 24h, trending");
    return 0;
}

/*  Read a map key and return its index in names, or -1 with an error.
    seen is a bitmask that catches repeated keys. */
static int
s_key (s_cur_t *cur, const char *const *names, int count, uint32_t *seen)
{
    const char *s;
    uint32_t len;
    if (s_str (cur, &s, &len, "map key"))
        return -1;
    for (int i = 0; i < count; i++)
        if (strlen (names [i]) == len && memcmp (names [i], s, len) == 0) {
            if (*seen & (1u << i))
                return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST,
                    "malformed", "key '%s' appears twice", names [i]);
            *seen |= 1u << i;
            return i;
        }
    char shown [48];
    uint32_t n = len < 40 ? len : 40;
    for (uint32_t i = 0; i < n; i++)
        shown [i] = (s [i] >= 0x20 && s [i] < 0x7f) ? s [i] : '?';
    shown [n] = 0;
    return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST, "invalid",
                          "unknown key '%s%s'", shown, len > 40 ? "..." : "");
}

/*  Skip one value of any type, to depth 8. Every element consumes at
    least one byte, so this is linear in the input however large the
    headers claim to be. */
static int
s_skip (s_cur_t *cur, int depth)
{
    if (depth > 8 || s_need (cur, 1))
        return -1;
    uint8_t b = *cur->p++;
    uint64_t n = 0;             /* bytes to skip */
    uint64_t items = 0;         /* values to skip (maps: 2 per entry) */
    if (b <= 0x7f || b >= 0xe0 || (b >= 0xc0 && b <= 0xc3 && b != 0xc1))
        return 0;
    if (b >= 0x80 && b <= 0x8f) items = 2 * (b & 0x0f);
    else if (b >= 0x90 && b <= 0x9f) items = b & 0x0f;
    else if (b >= 0xa0 && b <= 0xbf) n = b & 0x1f;
    else {
        static const struct { uint8_t op, len_width, fixed, kind; } forms [] = {
            /* kind: 0 bytes, 1 array, 2 map, 3 ext (len + type byte) */
            { 0xc4, 1, 0, 0 }, { 0xc5, 2, 0, 0 }, { 0xc6, 4, 0, 0 },
            { 0xc7, 1, 0, 3 }, { 0xc8, 2, 0, 3 }, { 0xc9, 4, 0, 3 },
            { 0xca, 0, 4, 0 }, { 0xcb, 0, 8, 0 },
            { 0xcc, 0, 1, 0 }, { 0xcd, 0, 2, 0 }, { 0xce, 0, 4, 0 }, { 0xcf, 0, 8, 0 },
            { 0xd0, 0, 1, 0 }, { 0xd1, 0, 2, 0 }, { 0xd2, 0, 4, 0 }, { 0xd3, 0, 8, 0 },
            { 0xd4, 0, 2, 0 }, { 0xd5, 0, 3, 0 }, { 0xd6, 0, 5, 0 }, { 0xd7, 0, 9, 0 },
            { 0xd8, 0, 17, 0 },
            { 0xd9, 1, 0, 0 }, { 0xda, 2, 0, 0 }, { 0xdb, 4, 0, 0 },
            { 0xdc, 2, 0, 1 }, { 0xdd, 4, 0, 1 }, { 0xde, 2, 0, 2 }, { 0xdf, 4, 0, 2 },
        };
        size_t i;
        for (i = 0; i < sizeof forms / sizeof forms [0]; i++)
            if (forms [i].op == b)
                break;
        if (i == sizeof forms / sizeof forms [0])
            return -1;          /* 0xc1, never used */
        n = forms [i].fixed;
        if (forms [i].len_width) {
            if (s_need (cur, forms [i].len_width))
                return -1;
            uint64_t len = s_be (cur->p, forms [i].len_width);
            cur->p += forms [i].len_width;
            if (forms [i].kind == 0) n = len;
            if (forms [i].kind == 1) items = len;
            if (forms [i].kind == 2) items = 2 * len;
            if (forms [i].kind == 3) n = len + 1;
        }
    }
    if (s_need (cur, n))
        return -1;
    cur->p += n;
    for (uint64_t i = 0; i < items; i++)
        if (s_skip (cur, depth + 1))
            return -1;
    return 0;
}

/*  After a failed decode: find a valid top-level "id" anywhere in the
    map, so the error reply can reach a client that matches by id. */
static void
s_find_id (const uint8_t *data, size_t size, char *id)
{
    hgp_error_t ignored;
    s_cur_t cur = { data, data + size, &ignored };
    uint32_t n;
    if (size > HGP_BODY_MAX
    ||  s_read_len (&cur, 0x80, 0x8f, 0x0f, -1, 0xde, 0xdf, &n))
        return;
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        uint32_t len;
        if (s_str (&cur, &s, &len, "key"))
            return;
        if (len == 2 && memcmp (s, "id", 2) == 0) {
            char found [HGP_ID_MAX + 1];
            if (s_id (&cur, found, "id") == 0)
                memcpy (id, found, sizeof found);
            return;
        }
        if (s_skip (&cur, 0))
            return;
    }
}

static int
s_begin (s_cur_t *cur, const uint8_t *data, size_t size, hgp_error_t *err)
{
    cur->p = data;
    cur->end = data + size;
    cur->err = err;
    if (size > HGP_BODY_MAX)
        return hgp_error_set (err, HGP_STATUS_TOO_LARGE, "too_large",
                              "body is %zu bytes, over the limit of %d",
                              size, HGP_BODY_MAX);
    if (size == 0)
        return hgp_error_set (err, HGP_STATUS_BAD_REQUEST, "malformed",
                              "body is empty");
    return 0;
}

static int
s_finish (s_cur_t *cur)
{
    if (cur->p != cur->end)
        return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST, "malformed",
                              "%zu trailing bytes after the msgpack map",
                              (size_t) (cur->end - cur->p));
    return 0;
}

/*  --------------------------------------------------------------------
 *  Requests
 */

enum {
    RQ_OP, RQ_ID, RQ_TIMEOUT, RQ_TRACE, RQ_RESOURCE, RQ_TYPE, RQ_DELTA,
    RQ_USER, RQ_KEYS, RQ_WINDOW, RQ_LIMIT, RQ_ROLE, RQ_METRICS, RQ_COUNT
};
static const char *const s_request_keys [RQ_COUNT] = {
    "op", "id", "timeout_ms", "trace", "resource_id", "counter_type",
    "delta", "user_id", "keys", "window", "limit", "role", "metrics"
};

/*  Which keys each op takes (bitmask over RQ_*) */
#define BIT(k) (1u << (k))
#define COMMON (BIT (RQ_OP) | BIT (RQ_ID) | BIT (RQ_TIMEOUT) | BIT (RQ_TRACE))

static uint32_t
s_allowed (hgp_op_t op)
{
    switch (op) {
        case HGP_OP_INCR:
            return COMMON | BIT (RQ_RESOURCE) | BIT (RQ_TYPE) | BIT (RQ_DELTA)
                          | BIT (RQ_USER);
        case HGP_OP_GET:
            return COMMON | BIT (RQ_RESOURCE) | BIT (RQ_TYPE);
        case HGP_OP_MGET:
            return COMMON | BIT (RQ_KEYS);
        case HGP_OP_TOP:
            return COMMON | BIT (RQ_TYPE) | BIT (RQ_WINDOW) | BIT (RQ_LIMIT);
        case HGP_OP_STATS:
        case HGP_OP_UNIQUES:
            return COMMON | BIT (RQ_RESOURCE) | BIT (RQ_TYPE);
        case HGP_OP_ANNOUNCE:
            return COMMON | BIT (RQ_ROLE) | BIT (RQ_METRICS);
        default:
            return COMMON;
    }
}

static uint32_t
s_required (hgp_op_t op)
{
    uint32_t base = BIT (RQ_OP) | BIT (RQ_ID);
    switch (op) {
        case HGP_OP_INCR:
            return base | BIT (RQ_RESOURCE) | BIT (RQ_TYPE) | BIT (RQ_DELTA);
        case HGP_OP_GET:
            return base | BIT (RQ_RESOURCE) | BIT (RQ_TYPE);
        case HGP_OP_MGET:
            return base | BIT (RQ_KEYS);
        case HGP_OP_TOP:
            return base | BIT (RQ_TYPE);
        case HGP_OP_STATS:
        case HGP_OP_UNIQUES:
            return base | BIT (RQ_RESOURCE) | BIT (RQ_TYPE);
        case HGP_OP_ANNOUNCE:
            return base | BIT (RQ_ROLE) | BIT (RQ_METRICS);
        default:
            return base;
    }
}

void
hgp_request_init (hgp_request_t *req)
{
    memset (req, 0, sizeof *req);
    req->timeout_ms = HGP_TIMEOUT_DEFAULT;
    req->window = HGP_WINDOW_ALL;
    req->limit = HGP_LIMIT_DEFAULT;
}

void
hgp_request_clear (hgp_request_t *req)
{
    free (req->keys);
    hgp_request_init (req);
}

static int
s_keys (s_cur_t *cur, hgp_request_t *req)
{
    uint32_t n;
    if (s_list (cur, "keys", HGP_MGET_MAX, sizeof (hgp_key_t),
                (void **) &req->keys, &n))
        return -1;
    if (n == 0)
        return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST, "invalid",
                              "keys must not be empty");
    for (uint32_t i = 0; i < n; i++) {
        uint32_t pair;
        if (s_array (cur, &pair, "each entry of keys"))
            return -1;
        if (pair != 2)
            return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST, "invalid",
                "each entry of keys must be [resource_id, counter_type]");
        if (s_id (cur, req->keys [i].resource_id, "keys[].resource_id")
        ||  s_id (cur, req->keys [i].counter_type, "keys[].counter_type"))
            return -1;
        req->nkeys = i + 1;
    }
    return 0;
}

static int
s_request_field (s_cur_t *cur, hgp_request_t *req, int key)
{
    const char *s;
    uint32_t len;
    uint64_t u;
    switch (key) {
        case RQ_OP:
            if (s_str (cur, &s, &len, "op"))
                return -1;
            char name [16] = "";
            if (len < sizeof name) {
                memcpy (name, s, len);
                name [len] = 0;
            }
            req->op = hgp_op_from_name (name);
            if (req->op == HGP_OP_NONE)
                return hgp_error_set (cur->err, HGP_STATUS_NOT_FOUND,
                    "unknown_op",
                    "op must be one of incr, get, mget, ping, actors, top,"
                    " stats, announce, uniques");
            return 0;
        case RQ_ID:
            return s_id (cur, req->id, "id");
        case RQ_TIMEOUT:
            if (s_urange (cur, 1, HGP_TIMEOUT_MAX, &u, "timeout_ms"))
                return -1;
            req->timeout_ms = (uint32_t) u;
            return 0;
        case RQ_TRACE:
            return s_id (cur, req->trace, "trace");
        case RQ_RESOURCE:
            return s_id (cur, req->key.resource_id, "resource_id");
        case RQ_TYPE:
            return s_id (cur, req->key.counter_type, "counter_type");
        case RQ_DELTA:
            if (s_int (cur, &req->delta, "delta"))
                return -1;
            if (req->delta == 0)
                return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST,
                    "invalid", "delta must not be 0");
            return 0;
        case RQ_USER:
            return s_id (cur, req->user_id, "user_id");
        case RQ_KEYS:
            return s_keys (cur, req);
        case RQ_WINDOW:
            return s_window (cur, &req->window);
        case RQ_LIMIT:
            if (s_urange (cur, 1, HGP_LIMIT_MAX, &u, "limit"))
                return -1;
            req->limit = (uint32_t) u;
            return 0;
        case RQ_ROLE:
            return s_id (cur, req->role, "role");
        case RQ_METRICS:
            return s_url (cur, req->metrics, "metrics");
    }
    assert (false);
    return -1;
}

int
hgp_request_decode (hgp_request_t *req, const uint8_t *data, size_t size,
                    hgp_error_t *err)
{
    hgp_request_init (req);
    s_cur_t cur;
    if (s_begin (&cur, data, size, err))
        return -1;
    uint32_t n;
    if (s_map (&cur, &n, "request body"))
        goto fail;
    uint32_t seen = 0;
    for (uint32_t i = 0; i < n; i++) {
        int key = s_key (&cur, s_request_keys, RQ_COUNT, &seen);
        if (key < 0 || s_request_field (&cur, req, key))
            goto fail;
    }
    if (s_finish (&cur))
        goto fail;
    if (!(seen & BIT (RQ_OP))) {
        hgp_error_set (err, HGP_STATUS_BAD_REQUEST, "invalid", "op is missing");
        goto fail;
    }
    uint32_t missing = s_required (req->op) & ~seen;
    uint32_t extra = seen & ~s_allowed (req->op);
    for (int k = 0; k < RQ_COUNT; k++) {
        if (missing & BIT (k)) {
            hgp_error_set (err, HGP_STATUS_BAD_REQUEST, "invalid",
                           "%s is required for %s", s_request_keys [k],
                           hgp_op_name (req->op));
            goto fail;
        }
        if (extra & BIT (k)) {
            hgp_error_set (err, HGP_STATUS_BAD_REQUEST, "invalid",
                           "%s is not allowed for %s", s_request_keys [k],
                           hgp_op_name (req->op));
            goto fail;
        }
    }
    return 0;

fail:
    {
        /*  Keep the id, so the error reply can carry it, even when the
            field that failed came before it */
        char id [HGP_ID_MAX + 1];
        memcpy (id, req->id, sizeof id);
        if (!id [0])
            s_find_id (data, size, id);
        hgp_request_clear (req);
        memcpy (req->id, id, sizeof id);
    }
    return -1;
}

/*  --------------------------------------------------------------------
 *  Encoding
 */

static void
s_pack_str (msgpack_packer *pk, const char *s)
{
    size_t len = strlen (s);
    msgpack_pack_str (pk, len);
    msgpack_pack_str_body (pk, s, len);
}

static void
s_pack_key (msgpack_packer *pk, const hgp_key_t *key)
{
    msgpack_pack_array (pk, 2);
    s_pack_str (pk, key->resource_id);
    s_pack_str (pk, key->counter_type);
}

int
hgp_request_encode (const hgp_request_t *req, hgp_buf_t *buf)
{
    if (req->op == HGP_OP_NONE || !hgp_id_valid (req->id, strlen (req->id)))
        return -1;
    bool incr = req->op == HGP_OP_INCR;
    bool keyed = incr || req->op == HGP_OP_GET || req->op == HGP_OP_STATS
              || req->op == HGP_OP_UNIQUES;
    bool mget = req->op == HGP_OP_MGET;
    bool top = req->op == HGP_OP_TOP;
    bool announce = req->op == HGP_OP_ANNOUNCE;
    if (mget && (req->nkeys < 1 || req->nkeys > HGP_MGET_MAX))
        return -1;
    if (announce && (!hgp_id_valid (req->role, strlen (req->role))
                 ||  !hgp_url_valid (req->metrics, strlen (req->metrics))))
        return -1;
    if (incr && req->delta == 0)
        return -1;
    if (top && (req->limit < 1 || req->limit > HGP_LIMIT_MAX
            ||  !*hgp_window_name (req->window)))
        return -1;
    size_t count = 3 + (req->trace [0] ? 1 : 0) + (keyed ? 2 : 0)
                 + (incr ? 1 : 0) + (incr && req->user_id [0] ? 1 : 0)
                 + (mget ? 1 : 0) + (top ? 3 : 0) + (announce ? 2 : 0);
    msgpack_packer pk;
    msgpack_packer_init (&pk, buf, s_buf_write);
    msgpack_pack_map (&pk, count);
    s_pack_str (&pk, "op");
    s_pack_str (&pk, hgp_op_name (req->op));
    s_pack_str (&pk, "id");
    s_pack_str (&pk, req->id);
    s_pack_str (&pk, "timeout_ms");
    msgpack_pack_uint32 (&pk, req->timeout_ms);
    if (req->trace [0]) {
        s_pack_str (&pk, "trace");
        s_pack_str (&pk, req->trace);
    }
    if (keyed) {
        s_pack_str (&pk, "resource_id");
        s_pack_str (&pk, req->key.resource_id);
        s_pack_str (&pk, "counter_type");
        s_pack_str (&pk, req->key.counter_type);
    }
    if (incr) {
        s_pack_str (&pk, "delta");
        msgpack_pack_int64 (&pk, req->delta);
        if (req->user_id [0]) {
            s_pack_str (&pk, "user_id");
            s_pack_str (&pk, req->user_id);
        }
    }
    if (mget) {
        s_pack_str (&pk, "keys");
        msgpack_pack_array (&pk, req->nkeys);
        for (size_t i = 0; i < req->nkeys; i++)
            s_pack_key (&pk, &req->keys [i]);
    }
    if (top) {
        s_pack_str (&pk, "counter_type");
        s_pack_str (&pk, req->key.counter_type);
        s_pack_str (&pk, "window");
        s_pack_str (&pk, hgp_window_name (req->window));
        s_pack_str (&pk, "limit");
        msgpack_pack_uint32 (&pk, req->limit);
    }
    if (announce) {
        s_pack_str (&pk, "role");
        s_pack_str (&pk, req->role);
        s_pack_str (&pk, "metrics");
        s_pack_str (&pk, req->metrics);
    }
    return 0;
}

/*  --------------------------------------------------------------------
 *  Replies
 */

void
hgp_reply_init (hgp_reply_t *rep)
{
    memset (rep, 0, sizeof *rep);
    rep->error.status = HGP_STATUS_OK;
}

void
hgp_reply_clear (hgp_reply_t *rep)
{
    free (rep->values);
    free (rep->actors);
    free (rep->processes);
    free (rep->ranking);
    free (rep->buckets);
    hgp_reply_init (rep);
}

static void
s_pack_error (msgpack_packer *pk, const hgp_error_t *error)
{
    s_pack_str (pk, "error");
    msgpack_pack_map (pk, 2);
    s_pack_str (pk, "code");
    s_pack_str (pk, error->code [0] ? error->code : "internal");
    s_pack_str (pk, "message");
    s_pack_str (pk, error->message);
}

static void
s_pack_actor (msgpack_packer *pk, const hgp_actor_info_t *a)
{
    msgpack_pack_map (pk, a->metrics [0] ? 8 : 7);
    s_pack_str (pk, "service");   s_pack_str (pk, a->service);
    s_pack_str (pk, "actor_id");  s_pack_str (pk, a->actor_id);
    s_pack_str (pk, "capacity");  msgpack_pack_uint32 (pk, a->capacity);
    s_pack_str (pk, "inflight");  msgpack_pack_uint32 (pk, a->inflight);
    s_pack_str (pk, "queued");    msgpack_pack_uint32 (pk, a->queued);
    s_pack_str (pk, "idle_ms");   msgpack_pack_uint32 (pk, a->idle_ms);
    s_pack_str (pk, "served");    msgpack_pack_uint64 (pk, a->served);
    if (a->metrics [0]) {
        s_pack_str (pk, "metrics");
        s_pack_str (pk, a->metrics);
    }
}

static void
s_pack_process (msgpack_packer *pk, const hgp_process_info_t *p)
{
    msgpack_pack_map (pk, 3);
    s_pack_str (pk, "role");      s_pack_str (pk, p->role);
    s_pack_str (pk, "metrics");   s_pack_str (pk, p->metrics);
    s_pack_str (pk, "idle_ms");   msgpack_pack_uint32 (pk, p->idle_ms);
}

int
hgp_reply_encode (const hgp_reply_t *rep, hgp_buf_t *buf)
{
    if (rep->error.status != HGP_STATUS_OK)
        return hgp_reply_encode_error (rep->id, &rep->error, buf);
    if (rep->nactors > HGP_ACTORS_MAX || rep->nvalues > HGP_MGET_MAX
    ||  rep->nprocesses > HGP_PROCESSES_MAX
    ||  rep->nranking > HGP_LIMIT_MAX || rep->nbuckets > HGP_MINUTES_MAX)
        return -1;
    bool values = rep->values != NULL;
    bool actors = rep->actors != NULL;
    bool processes = rep->processes != NULL;
    bool metrics = rep->metrics [0] != 0;
    bool ranking = rep->ranking != NULL;
    if (ranking && !*hgp_window_name (rep->window))
        return -1;
    size_t count = 2 + (rep->has_value ? 1 : 0) + (rep->replayed ? 1 : 0)
                 + (values ? 1 : 0) + (actors ? 1 : 0) + (ranking ? 2 : 0)
                 + (processes ? 1 : 0) + (metrics ? 1 : 0)
                 + (rep->has_as_of ? 1 : 0)
                 + (rep->has_stats ? 4 : 0)
                 + (rep->has_uniques ? 2 : 0);
    msgpack_packer pk;
    msgpack_packer_init (&pk, buf, s_buf_write);
    msgpack_pack_map (&pk, count);
    s_pack_str (&pk, "id");
    s_pack_str (&pk, rep->id);
    s_pack_str (&pk, "status");
    msgpack_pack_uint16 (&pk, HGP_STATUS_OK);
    if (rep->has_value) {
        s_pack_str (&pk, "value");
        msgpack_pack_int64 (&pk, rep->value);
    }
    if (rep->replayed) {
        s_pack_str (&pk, "replayed");
        msgpack_pack_true (&pk);
    }
    if (values) {
        s_pack_str (&pk, "values");
        msgpack_pack_array (&pk, rep->nvalues);
        for (size_t i = 0; i < rep->nvalues; i++)
            msgpack_pack_int64 (&pk, rep->values [i]);
    }
    if (actors) {
        s_pack_str (&pk, "actors");
        msgpack_pack_array (&pk, rep->nactors);
        for (size_t i = 0; i < rep->nactors; i++)
            s_pack_actor (&pk, &rep->actors [i]);
    }
    if (processes) {
        s_pack_str (&pk, "processes");
        msgpack_pack_array (&pk, rep->nprocesses);
        for (size_t i = 0; i < rep->nprocesses; i++)
            s_pack_process (&pk, &rep->processes [i]);
    }
    if (metrics) {
        s_pack_str (&pk, "metrics");
        s_pack_str (&pk, rep->metrics);
    }
    if (rep->has_as_of) {
        s_pack_str (&pk, "as_of_ms");
        msgpack_pack_int64 (&pk, rep->as_of_ms);
    }
    if (ranking) {
        //  Counts are exact integers; the trending score is a float
        s_pack_str (&pk, "window");
        s_pack_str (&pk, hgp_window_name (rep->window));
        s_pack_str (&pk, "ranking");
        msgpack_pack_array (&pk, rep->nranking);
        for (size_t i = 0; i < rep->nranking; i++) {
            msgpack_pack_array (&pk, 2);
            s_pack_str (&pk, rep->ranking [i].resource_id);
            if (rep->window == HGP_WINDOW_TRENDING)
                msgpack_pack_double (&pk, rep->ranking [i].score);
            else
                msgpack_pack_int64 (&pk, rep->ranking [i].count);
        }
    }
    if (rep->has_uniques) {
        s_pack_str (&pk, "uniques");
        msgpack_pack_uint64 (&pk, rep->uniques);
        s_pack_str (&pk, "approximate");
        if (rep->approximate)
            msgpack_pack_true (&pk);
        else
            msgpack_pack_false (&pk);
    }
    if (rep->has_stats) {
        s_pack_str (&pk, "total");
        msgpack_pack_int64 (&pk, rep->total);
        s_pack_str (&pk, "trending");
        msgpack_pack_double (&pk, rep->trending);
        s_pack_str (&pk, "bucket_ms");
        msgpack_pack_uint32 (&pk, rep->bucket_ms);
        s_pack_str (&pk, "buckets");
        msgpack_pack_array (&pk, rep->nbuckets);
        for (size_t i = 0; i < rep->nbuckets; i++) {
            msgpack_pack_array (&pk, 2);
            msgpack_pack_int64 (&pk, rep->buckets [i].start_ms);
            msgpack_pack_int64 (&pk, rep->buckets [i].count);
        }
    }
    return 0;
}

void
hgp_reply_set_error (hgp_reply_t *rep, const char *id, uint16_t status,
                     const char *code, const char *message)
{
    hgp_reply_clear (rep);
    snprintf (rep->id, sizeof rep->id, "%s", id);
    hgp_error_set (&rep->error, status, code, "%s", message);
}

int
hgp_reply_encode_error (const char *id, const hgp_error_t *error,
                        hgp_buf_t *buf)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buf, s_buf_write);
    msgpack_pack_map (&pk, 3);
    s_pack_str (&pk, "id");
    s_pack_str (&pk, id ? id : "");
    s_pack_str (&pk, "status");
    msgpack_pack_uint16 (&pk, error->status == HGP_STATUS_OK
                              ? HGP_STATUS_INTERNAL : error->status);
    s_pack_error (&pk, error);
    return 0;
}

enum {
    RP_ID, RP_STATUS, RP_ERROR, RP_VALUE, RP_REPLAYED, RP_VALUES, RP_ACTORS,
    RP_WINDOW, RP_RANKING, RP_TOTAL, RP_TRENDING, RP_BUCKET_MS, RP_BUCKETS,
    RP_PROCESSES, RP_METRICS, RP_AS_OF, RP_UNIQUES, RP_APPROXIMATE, RP_COUNT
};
static const char *const s_reply_keys [RP_COUNT] = {
    "id", "status", "error", "value", "replayed", "values", "actors",
    "window", "ranking", "total", "trending", "bucket_ms", "buckets",
    "processes", "metrics", "as_of_ms", "uniques", "approximate"
};

/*  A 2-element array; -1 unless it is one */
static int
s_pair (s_cur_t *cur, const char *what)
{
    uint32_t n;
    if (s_array (cur, &n, what))
        return -1;
    if (n != 2)
        return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST, "invalid",
                              "%s must have 2 elements", what);
    return 0;
}

/*  ranking: [[resource_id, count or score], ...] */
static int
s_ranking (s_cur_t *cur, hgp_reply_t *rep)
{
    uint32_t n;
    if (s_list (cur, "ranking", HGP_LIMIT_MAX, sizeof (hgp_rank_t),
                (void **) &rep->ranking, &n))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        hgp_rank_t *r = &rep->ranking [i];
        if (s_pair (cur, "ranking entry")
        ||  s_id (cur, r->resource_id, "ranking[].resource_id"))
            return -1;
        if (s_need (cur, 1))
            return -1;
        if (*cur->p == 0xcb || *cur->p == 0xca) {
            if (s_float (cur, &r->score, "ranking[].score"))
                return -1;
        }
        else {
            if (s_int (cur, &r->count, "ranking[].count"))
                return -1;
            r->score = (double) r->count;
        }
        rep->nranking = i + 1;
    }
    return 0;
}

/*  buckets: [[start_ms, count], ...] */
static int
s_buckets (s_cur_t *cur, hgp_reply_t *rep)
{
    uint32_t n;
    if (s_list (cur, "buckets", HGP_MINUTES_MAX, sizeof (hgp_bucket_t),
                (void **) &rep->buckets, &n))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        hgp_bucket_t *b = &rep->buckets [i];
        if (s_pair (cur, "bucket")
        ||  s_int (cur, &b->start_ms, "buckets[].start_ms")
        ||  s_int (cur, &b->count, "buckets[].count"))
            return -1;
        rep->nbuckets = i + 1;
    }
    return 0;
}

enum { AC_SERVICE, AC_ID, AC_CAPACITY, AC_INFLIGHT, AC_QUEUED, AC_IDLE,
       AC_SERVED, AC_METRICS, AC_COUNT };
static const char *const s_actor_keys [AC_COUNT] = {
    "service", "actor_id", "capacity", "inflight", "queued", "idle_ms",
    "served", "metrics"
};

static int
s_actor (s_cur_t *cur, hgp_actor_info_t *a)
{
    uint32_t n, seen = 0;
    uint64_t u;
    if (s_map (cur, &n, "actors entry"))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        int key = s_key (cur, s_actor_keys, AC_COUNT, &seen);
        int rc = -1;
        switch (key) {
            case AC_SERVICE: rc = s_id (cur, a->service, "service"); break;
            case AC_ID:      rc = s_id (cur, a->actor_id, "actor_id"); break;
            case AC_METRICS: rc = s_url (cur, a->metrics, "metrics"); break;
            case AC_SERVED:
                rc = s_uint (cur, INT64_MAX, &u, "served");
                a->served = u;
                break;
            case AC_CAPACITY: case AC_INFLIGHT: case AC_QUEUED: case AC_IDLE:
                rc = s_uint (cur, UINT32_MAX, &u, s_actor_keys [key]);
                if (key == AC_CAPACITY) a->capacity = (uint32_t) u;
                if (key == AC_INFLIGHT) a->inflight = (uint32_t) u;
                if (key == AC_QUEUED)   a->queued = (uint32_t) u;
                if (key == AC_IDLE)     a->idle_ms = (uint32_t) u;
                break;
        }
        if (rc)
            return -1;
    }
    if (!(seen & BIT (AC_SERVICE)) || !(seen & BIT (AC_ID)))
        return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST, "invalid",
                              "actors entry needs service and actor_id");
    return 0;
}

static int
s_process (s_cur_t *cur, hgp_process_info_t *p)
{
    static const char *const names [] = { "role", "metrics", "idle_ms" };
    uint32_t n, seen = 0;
    uint64_t u;
    if (s_map (cur, &n, "processes entry"))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        int key = s_key (cur, names, 3, &seen);
        if (key < 0
        || (key == 0 && s_id (cur, p->role, "processes[].role"))
        || (key == 1 && s_url (cur, p->metrics, "processes[].metrics"))
        || (key == 2 && s_uint (cur, UINT32_MAX, &u, "processes[].idle_ms")))
            return -1;
        if (key == 2)
            p->idle_ms = (uint32_t) u;
    }
    if ((seen & 3) != 3)
        return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST, "invalid",
                              "processes entry needs role and metrics");
    return 0;
}

static int
s_error_map (s_cur_t *cur, hgp_error_t *error)
{
    static const char *const names [] = { "code", "message" };
    uint32_t n, seen = 0;
    if (s_map (cur, &n, "error"))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        int key = s_key (cur, names, 2, &seen);
        if (key < 0)
            return -1;
        if (key == 0 && s_text (cur, error->code, HGP_CODE_MAX, "error.code"))
            return -1;
        if (key == 1
        &&  s_text (cur, error->message, HGP_MESSAGE_MAX, "error.message"))
            return -1;
    }
    if (!(seen & 1) || !error->code [0])
        return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST, "invalid",
                              "error.code is missing");
    return 0;
}

static int
s_reply_field (s_cur_t *cur, hgp_reply_t *rep, int key)
{
    uint32_t n;
    uint64_t u;
    switch (key) {
        case RP_ID:
            return s_text (cur, rep->id, HGP_ID_MAX, "id");
        case RP_STATUS:
            if (s_uint (cur, 599, &u, "status"))
                return -1;
            if (u < 100)
                return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST,
                                      "invalid", "status must be 100-599");
            rep->error.status = (uint16_t) u;
            return 0;
        case RP_ERROR:
            return s_error_map (cur, &rep->error);
        case RP_VALUE:
            rep->has_value = true;
            return s_int (cur, &rep->value, "value");
        case RP_REPLAYED:
            return s_bool (cur, &rep->replayed, "replayed");
        case RP_VALUES:
            if (s_list (cur, "values", HGP_MGET_MAX, sizeof (int64_t),
                        (void **) &rep->values, &n))
                return -1;
            for (uint32_t i = 0; i < n; i++) {
                if (s_int (cur, &rep->values [i], "values[]"))
                    return -1;
                rep->nvalues = i + 1;
            }
            return 0;
        case RP_ACTORS:
            if (s_list (cur, "actors", HGP_ACTORS_MAX,
                        sizeof (hgp_actor_info_t), (void **) &rep->actors, &n))
                return -1;
            for (uint32_t i = 0; i < n; i++) {
                if (s_actor (cur, &rep->actors [i]))
                    return -1;
                rep->nactors = i + 1;
            }
            return 0;
        case RP_WINDOW:
            return s_window (cur, &rep->window);
        case RP_RANKING:
            return s_ranking (cur, rep);
        case RP_TOTAL:
            rep->has_stats = true;
            return s_int (cur, &rep->total, "total");
        case RP_TRENDING:
            return s_float (cur, &rep->trending, "trending");
        case RP_BUCKET_MS:
            if (s_uint (cur, UINT32_MAX, &u, "bucket_ms"))
                return -1;
            rep->bucket_ms = (uint32_t) u;
            return 0;
        case RP_BUCKETS:
            return s_buckets (cur, rep);
        case RP_PROCESSES:
            if (s_list (cur, "processes", HGP_PROCESSES_MAX,
                        sizeof (hgp_process_info_t), (void **) &rep->processes,
                        &n))
                return -1;
            for (uint32_t i = 0; i < n; i++) {
                if (s_process (cur, &rep->processes [i]))
                    return -1;
                rep->nprocesses = i + 1;
            }
            return 0;
        case RP_METRICS:
            return s_url (cur, rep->metrics, "metrics");
        case RP_AS_OF:
            rep->has_as_of = true;
            return s_int (cur, &rep->as_of_ms, "as_of_ms");
        case RP_UNIQUES:
            rep->has_uniques = true;
            return s_uint (cur, UINT64_MAX, &rep->uniques, "uniques");
        case RP_APPROXIMATE:
            return s_bool (cur, &rep->approximate, "approximate");
    }
    assert (false);
    return -1;
}

int
hgp_reply_decode (hgp_reply_t *rep, const uint8_t *data, size_t size,
                  hgp_error_t *err)
{
    hgp_reply_init (rep);
    s_cur_t cur;
    if (s_begin (&cur, data, size, err))
        return -1;
    uint32_t n, seen = 0;
    if (s_map (&cur, &n, "reply body"))
        goto fail;
    for (uint32_t i = 0; i < n; i++) {
        int key = s_key (&cur, s_reply_keys, RP_COUNT, &seen);
        if (key < 0 || s_reply_field (&cur, rep, key))
            goto fail;
    }
    if (s_finish (&cur))
        goto fail;
    if (!(seen & BIT (RP_ID)) || !(seen & BIT (RP_STATUS))) {
        hgp_error_set (err, HGP_STATUS_BAD_REQUEST, "invalid",
                       "reply needs id and status");
        goto fail;
    }
    if ((rep->error.status == HGP_STATUS_OK) == ((seen & BIT (RP_ERROR)) != 0)) {
        hgp_error_set (err, HGP_STATUS_BAD_REQUEST, "invalid",
                       "a reply has an error exactly when status is not 200");
        goto fail;
    }
    uint32_t stats = BIT (RP_TOTAL) | BIT (RP_TRENDING) | BIT (RP_BUCKET_MS)
                   | BIT (RP_BUCKETS);
    uint32_t top = BIT (RP_WINDOW) | BIT (RP_RANKING);
    uint32_t uniques = BIT (RP_UNIQUES) | BIT (RP_APPROXIMATE);
    if ((seen & stats && (seen & stats) != stats)
    ||  (seen & top && (seen & top) != top)
    ||  (seen & uniques && (seen & uniques) != uniques)) {
        hgp_error_set (err, HGP_STATUS_BAD_REQUEST, "invalid",
                       "a stats reply needs total, trending, bucket_ms and"
                       " buckets; a top reply window and ranking; a uniques"
                       " reply uniques and approximate");
        goto fail;
    }
    return 0;
fail:
    hgp_reply_clear (rep);
    return -1;
}

/*  --------------------------------------------------------------------
 *  Events of the log (PROTOCOL.md section 10)
 */

enum {
    EV_ID, EV_RESOURCE, EV_TYPE, EV_DELTA, EV_USER, EV_VALUE, EV_TS, EV_ACTOR,
    EV_FENCE, EV_TRACE, EV_COUNT
};
static const char *const s_event_keys [EV_COUNT] = {
    "id", "resource_id", "counter_type", "delta", "user_id", "value", "ts",
    "actor", "fence", "trace"
};

/*  A fence: {fence, ts, actor} and nothing else */
static int
s_fence_encode (const hgp_event_t *event, hgp_buf_t *buf)
{
    if (!hgp_id_valid (event->fence, strlen (event->fence))
    ||  !hgp_id_valid (event->actor, strlen (event->actor))
    ||  event->ts > (uint64_t) INT64_MAX)
        return -1;
    msgpack_packer pk;
    msgpack_packer_init (&pk, buf, s_buf_write);
    msgpack_pack_map (&pk, 3);
    s_pack_str (&pk, "fence");
    s_pack_str (&pk, event->fence);
    s_pack_str (&pk, "ts");
    msgpack_pack_uint64 (&pk, event->ts);
    s_pack_str (&pk, "actor");
    s_pack_str (&pk, event->actor);
    return 0;
}

int
hgp_event_encode (const hgp_event_t *event, hgp_buf_t *buf)
{
    if (event->fence [0])
        return s_fence_encode (event, buf);
    if (!hgp_id_valid (event->id, strlen (event->id))
    ||  !hgp_id_valid (event->key.resource_id, strlen (event->key.resource_id))
    ||  !hgp_id_valid (event->key.counter_type,
                       strlen (event->key.counter_type))
    ||  !hgp_id_valid (event->actor, strlen (event->actor))
    ||  (event->user_id [0]
         && !hgp_id_valid (event->user_id, strlen (event->user_id)))
    ||  (event->trace [0]
         && !hgp_id_valid (event->trace, strlen (event->trace)))
    ||  event->delta == 0 || event->ts > (uint64_t) INT64_MAX)
        return -1;
    msgpack_packer pk;
    msgpack_packer_init (&pk, buf, s_buf_write);
    msgpack_pack_map (&pk, 7 + (event->user_id [0] ? 1 : 0)
                           + (event->trace [0] ? 1 : 0));
    s_pack_str (&pk, "id");
    s_pack_str (&pk, event->id);
    s_pack_str (&pk, "resource_id");
    s_pack_str (&pk, event->key.resource_id);
    s_pack_str (&pk, "counter_type");
    s_pack_str (&pk, event->key.counter_type);
    s_pack_str (&pk, "delta");
    msgpack_pack_int64 (&pk, event->delta);
    if (event->user_id [0]) {
        s_pack_str (&pk, "user_id");
        s_pack_str (&pk, event->user_id);
    }
    s_pack_str (&pk, "value");
    msgpack_pack_int64 (&pk, event->value);
    s_pack_str (&pk, "ts");
    msgpack_pack_uint64 (&pk, event->ts);
    s_pack_str (&pk, "actor");
    s_pack_str (&pk, event->actor);
    if (event->trace [0]) {
        s_pack_str (&pk, "trace");
        s_pack_str (&pk, event->trace);
    }
    return 0;
}

int
hgp_event_decode (hgp_event_t *event, const uint8_t *data, size_t size,
                  hgp_error_t *err)
{
    memset (event, 0, sizeof *event);
    s_cur_t cur;
    if (s_begin (&cur, data, size, err))
        return -1;
    uint32_t n, seen = 0;
    uint64_t u;
    if (s_map (&cur, &n, "event body"))
        goto fail;
    for (uint32_t i = 0; i < n; i++) {
        int key = s_key (&cur, s_event_keys, EV_COUNT, &seen);
        int rc = -1;
        switch (key) {
            case EV_ID:
                rc = s_id (&cur, event->id, "id");
                break;
            case EV_RESOURCE:
                rc = s_id (&cur, event->key.resource_id, "resource_id");
                break;
            case EV_TYPE:
                rc = s_id (&cur, event->key.counter_type, "counter_type");
                break;
            case EV_DELTA:
                rc = s_int (&cur, &event->delta, "delta");
                if (rc == 0 && event->delta == 0)
                    rc = hgp_error_set (err, HGP_STATUS_BAD_REQUEST,
                                        "invalid", "delta must not be 0");
                break;
            case EV_USER:
                rc = s_id (&cur, event->user_id, "user_id");
                break;
            case EV_VALUE:
                rc = s_int (&cur, &event->value, "value");
                break;
            case EV_TS:
                rc = s_uint (&cur, INT64_MAX, &u, "ts");
                event->ts = u;
                break;
            case EV_ACTOR:
                rc = s_id (&cur, event->actor, "actor");
                break;
            case EV_FENCE:
                rc = s_id (&cur, event->fence, "fence");
                break;
            case EV_TRACE:
                rc = s_id (&cur, event->trace, "trace");
                break;
        }
        if (rc)
            goto fail;
    }
    if (s_finish (&cur))
        goto fail;
    if (seen & BIT (EV_FENCE)) {
        //  A fence carries fence, ts and actor, nothing of an increment
        if (seen != (BIT (EV_FENCE) | BIT (EV_TS) | BIT (EV_ACTOR))) {
            hgp_error_set (err, HGP_STATUS_BAD_REQUEST, "invalid",
                           "a fence has fence, ts and actor, nothing else");
            goto fail;
        }
        return 0;
    }
    for (int k = 0; k < EV_COUNT; k++)
        if (k != EV_USER && k != EV_FENCE && k != EV_TRACE
        &&  !(seen & BIT (k))) {
            hgp_error_set (err, HGP_STATUS_BAD_REQUEST, "invalid",
                           "event needs %s", s_event_keys [k]);
            goto fail;
        }
    return 0;
fail:
    memset (event, 0, sizeof *event);
    return -1;
}

/*  --------------------------------------------------------------------
 *  READY
 */

//  A cluster name: an id of at most HGP_CLUSTER_NAME_MAX bytes
static bool
s_cluster_valid (const char *s, size_t len)
{
    return len <= HGP_CLUSTER_NAME_MAX && hgp_id_valid (s, len);
}

static int
s_cluster (s_cur_t *cur, char *out)
{
    const char *s;
    uint32_t len;
    if (s_str (cur, &s, &len, "cluster"))
        return -1;
    if (!s_cluster_valid (s, len))
        return hgp_error_set (cur->err, HGP_STATUS_BAD_REQUEST, "invalid",
            "cluster must be 1-%d bytes of A-Z a-z 0-9 _ - . :",
            HGP_CLUSTER_NAME_MAX);
    memcpy (out, s, len);
    out [len] = 0;
    return 0;
}

int
hgp_ready_encode (const hgp_ready_t *ready, hgp_buf_t *buf)
{
    if (!hgp_id_valid (ready->service, strlen (ready->service))
    ||  !hgp_id_valid (ready->actor_id, strlen (ready->actor_id))
    ||  !s_cluster_valid (ready->cluster, strlen (ready->cluster))
    ||  ready->capacity < 1 || ready->capacity > 65535
    ||  (ready->metrics [0]
         && !hgp_url_valid (ready->metrics, strlen (ready->metrics))))
        return -1;
    msgpack_packer pk;
    msgpack_packer_init (&pk, buf, s_buf_write);
    msgpack_pack_map (&pk, 4 + (ready->batch ? 1 : 0)
                           + (ready->metrics [0] ? 1 : 0));
    s_pack_str (&pk, "service");
    s_pack_str (&pk, ready->service);
    s_pack_str (&pk, "actor_id");
    s_pack_str (&pk, ready->actor_id);
    s_pack_str (&pk, "capacity");
    msgpack_pack_uint32 (&pk, ready->capacity);
    s_pack_str (&pk, "cluster");
    s_pack_str (&pk, ready->cluster);
    if (ready->batch) {
        s_pack_str (&pk, "batch");
        msgpack_pack_true (&pk);
    }
    if (ready->metrics [0]) {
        s_pack_str (&pk, "metrics");
        s_pack_str (&pk, ready->metrics);
    }
    return 0;
}

int
hgp_ready_decode (hgp_ready_t *ready, const uint8_t *data, size_t size,
                  hgp_error_t *err)
{
    static const char *const names [] = {
        "service", "actor_id", "capacity", "cluster", "batch", "metrics" };
    memset (ready, 0, sizeof *ready);
    s_cur_t cur;
    if (s_begin (&cur, data, size, err))
        return -1;
    uint32_t n, seen = 0;
    uint64_t u;
    if (s_map (&cur, &n, "READY body"))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        int key = s_key (&cur, names, 6, &seen);
        if (key < 0
        || (key == 0 && s_id (&cur, ready->service, "service"))
        || (key == 1 && s_id (&cur, ready->actor_id, "actor_id"))
        || (key == 2 && s_uint (&cur, 65535, &u, "capacity"))
        || (key == 3 && s_cluster (&cur, ready->cluster))
        || (key == 4 && s_bool (&cur, &ready->batch, "batch"))
        || (key == 5 && s_url (&cur, ready->metrics, "metrics")))
            return -1;
        if (key == 2)
            ready->capacity = (uint32_t) u;
    }
    if (s_finish (&cur))
        return -1;
    if ((seen & 15) != 15 || ready->capacity == 0)
        return hgp_error_set (err, HGP_STATUS_BAD_REQUEST, "invalid",
            "READY needs service, actor_id, capacity 1-65535 and cluster");
    return 0;
}

/*  --------------------------------------------------------------------
 *  Batches of REQUESTs and REPLYs (PROTOCOL.md 5.1): fixed binary heads,
 *  not msgpack, since the broker writes one per request and reads none
 */

static void
s_put_be (uint8_t *out, uint64_t value, int bytes)
{
    for (int i = 0; i < bytes; i++)
        out [i] = (uint8_t) (value >> (8 * (bytes - 1 - i)));
}

static uint64_t
s_get_be (const uint8_t *in, int bytes)
{
    uint64_t value = 0;
    for (int i = 0; i < bytes; i++)
        value = value << 8 | in [i];
    return value;
}

int
hgp_batch_put_request (hgp_buf_t *buf, const uint8_t *token, uint32_t budget,
                       int64_t clock, const void *body, uint32_t size)
{
    uint8_t head [HGP_BATCH_REQUEST_HEAD];
    memcpy (head, token, 8);
    s_put_be (head + 8, budget, 4);
    s_put_be (head + 12, (uint64_t) clock, 8);
    s_put_be (head + 20, size, 4);
    if (s_buf_write (buf, (const char *) head, sizeof head)
    ||  s_buf_write (buf, (const char *) body, size))
        return -1;
    return 0;
}

int
hgp_batch_put_reply (hgp_buf_t *buf, const uint8_t *token, const void *body,
                     uint32_t size)
{
    uint8_t head [HGP_BATCH_REPLY_HEAD];
    memcpy (head, token, 8);
    s_put_be (head + 8, size, 4);
    if (s_buf_write (buf, (const char *) head, sizeof head)
    ||  s_buf_write (buf, (const char *) body, size))
        return -1;
    return 0;
}

void
hgp_batch_begin (hgp_batch_cur_t *cur, const uint8_t *data, size_t size,
                 bool replies)
{
    *cur = (hgp_batch_cur_t) { data, size, 0, replies };
}

int
hgp_batch_next (hgp_batch_cur_t *cur, hgp_batch_entry_t *entry)
{
    size_t left = cur->size - cur->at;
    if (left == 0)
        return 0;
    size_t head = cur->replies ? HGP_BATCH_REPLY_HEAD : HGP_BATCH_REQUEST_HEAD;
    if (left < head)
        return -1;
    const uint8_t *p = cur->data + cur->at;
    memset (entry, 0, sizeof *entry);
    entry->token = p;
    if (cur->replies)
        entry->size = (uint32_t) s_get_be (p + 8, 4);
    else {
        entry->budget = (uint32_t) s_get_be (p + 8, 4);
        entry->clock = (int64_t) s_get_be (p + 12, 8);
        entry->size = (uint32_t) s_get_be (p + 20, 4);
    }
    if (entry->size > left - head)
        return -1;
    entry->body = p + head;
    cur->at += head + entry->size;
    return 1;
}

/*  --------------------------------------------------------------------
 *  Client batches: msgpack arrays of bodies (PROTOCOL.md 4.1)
 */

int
hgp_array_open (const uint8_t *data, size_t size, size_t *at)
{
    if (size == 0)
        return -1;
    uint8_t b = data [0];
    if (b >= 0x90 && b <= 0x9f) {
        *at = 1;
        return b & 0x0f;
    }
    size_t width = b == 0xdc ? 2 : b == 0xdd ? 4 : 0;
    if (width == 0 || size < 1 + width)
        return -1;
    uint64_t n = s_get_be (data + 1, (int) width);
    if (n > INT_MAX)
        return -1;
    *at = 1 + width;
    return (int) n;
}

int
hgp_array_next (const uint8_t *data, size_t size, size_t *at,
                const uint8_t **elem, size_t *elem_size)
{
    if (*at >= size)
        return -1;
    hgp_error_t ignored;
    s_cur_t cur = { data + *at, data + size, &ignored };
    if (s_skip (&cur, 0))
        return -1;
    *elem = data + *at;
    *elem_size = (size_t) (cur.p - *elem);
    *at += *elem_size;
    return 0;
}

int
hgp_array_start (hgp_buf_t *buf, size_t *start)
{
    static const char head [HGP_ARRAY_HEAD] = { (char) 0xdd, 0, 0, 0, 0 };
    *start = buf->size;
    return s_buf_write (buf, head, sizeof head);
}

void
hgp_array_finish (hgp_buf_t *buf, size_t start, uint32_t count)
{
    assert (start + HGP_ARRAY_HEAD <= buf->size);
    buf->data [start] = 0xdd;
    s_put_be (buf->data + start + 1, count, 4);
}


/*  --------------------------------------------------------------------
 *  Beacons: a fixed binary layout, not msgpack, because zbeacon filters
 *  on a byte prefix and a UDP payload is at most 255 bytes. Layout
 *  (PROTOCOL.md 9.1): tag "HGPB", version, state, 16-byte id, client
 *  port, actor port, 32-byte CURVE public key, cluster name length and
 *  the name; integers big-endian.
 */

static int
s_hex_value (char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int
hgp_beacon_encode (const hgp_beacon_t *beacon, uint8_t *out, size_t size)
{
    size_t cluster = strlen (beacon->cluster);
    if (size < HGP_BEACON_FIXED + cluster
    ||  (beacon->state != HGP_BEACON_ALIVE
      && beacon->state != HGP_BEACON_LEAVING)
    ||  beacon->client_port == 0 || beacon->actor_port == 0
    ||  strlen (beacon->broker_id) != 2 * HGP_BROKER_ID_SIZE
    ||  !s_cluster_valid (beacon->cluster, cluster))
        return -1;
    memcpy (out, HGP_BEACON_TAG, 4);
    out [4] = HGP_BEACON_VERSION;
    out [5] = (uint8_t) beacon->state;
    bool zero = true;
    for (int i = 0; i < HGP_BROKER_ID_SIZE; i++) {
        int hi = s_hex_value (beacon->broker_id [2 * i]);
        int lo = s_hex_value (beacon->broker_id [2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out [6 + i] = (uint8_t) (hi << 4 | lo);
        zero = zero && out [6 + i] == 0;
    }
    if (zero)
        return -1;
    out [22] = (uint8_t) (beacon->client_port >> 8);
    out [23] = (uint8_t) beacon->client_port;
    out [24] = (uint8_t) (beacon->actor_port >> 8);
    out [25] = (uint8_t) beacon->actor_port;
    memcpy (out + 26, beacon->public_key, 32);
    out [58] = (uint8_t) cluster;
    memcpy (out + HGP_BEACON_FIXED, beacon->cluster, cluster);
    return (int) (HGP_BEACON_FIXED + cluster);
}

int
hgp_beacon_decode (hgp_beacon_t *beacon, const uint8_t *data, size_t size,
                   hgp_error_t *err)
{
    static const char hex [] = "0123456789abcdef";
    memset (beacon, 0, sizeof *beacon);
    if (size < 5 || memcmp (data, HGP_BEACON_TAG, 4) != 0)
        return hgp_error_set (err, HGP_STATUS_BAD_REQUEST, "malformed",
                              "not an hgp beacon (want tag %s and a version)",
                              HGP_BEACON_TAG);
    if (data [4] != HGP_BEACON_VERSION)
        return hgp_error_set (err, HGP_STATUS_BAD_REQUEST, "invalid",
                              "beacon version %u, this build speaks %d",
                              data [4], HGP_BEACON_VERSION);
    if (size < HGP_BEACON_FIXED + 1 || size != (size_t) HGP_BEACON_FIXED + data [58])
        return hgp_error_set (err, HGP_STATUS_BAD_REQUEST, "malformed",
                              "beacon is %zu bytes, version %d has %d plus"
                              " its cluster name", size, HGP_BEACON_VERSION,
                              HGP_BEACON_FIXED);
    if (data [5] != HGP_BEACON_ALIVE && data [5] != HGP_BEACON_LEAVING)
        return hgp_error_set (err, HGP_STATUS_BAD_REQUEST, "invalid",
                              "beacon state %u, want 1 (alive) or 2 (leaving)",
                              data [5]);
    bool zero = true;
    for (int i = 0; i < HGP_BROKER_ID_SIZE; i++) {
        beacon->broker_id [2 * i] = hex [data [6 + i] >> 4];
        beacon->broker_id [2 * i + 1] = hex [data [6 + i] & 15];
        zero = zero && data [6 + i] == 0;
    }
    uint16_t client_port = (uint16_t) (data [22] << 8 | data [23]);
    uint16_t actor_port = (uint16_t) (data [24] << 8 | data [25]);
    const char *cluster = (const char *) data + HGP_BEACON_FIXED;
    if (zero || client_port == 0 || actor_port == 0
    ||  !s_cluster_valid (cluster, data [58])) {
        memset (beacon, 0, sizeof *beacon);
        return hgp_error_set (err, HGP_STATUS_BAD_REQUEST, "invalid",
                              "beacon has a zero broker id or port, or a bad"
                              " cluster name");
    }
    beacon->state = (hgp_beacon_state_t) data [5];
    beacon->client_port = client_port;
    beacon->actor_port = actor_port;
    memcpy (beacon->public_key, data + 26, 32);
    memcpy (beacon->cluster, cluster, data [58]);
    beacon->cluster [data [58]] = 0;
    return 0;
}
