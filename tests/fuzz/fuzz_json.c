/*  fuzz_json.c - fuzz harness for the gateway's JSON body decoders
 *
 *  LLVMFuzzerTestOneInput feeds the same bytes to the increment decoder
 *  (with and without an Idempotency-Key) and the batch decoder, and checks
 *  more than "does not crash":
 *  - a refused body always says why (status 400 or 413, a code, a
 *    message) and leaves the request cleared;
 *  - an accepted body is a request the wire codec will encode (ids valid,
 *    delta non-zero, 1..1000 keys), and the reply encoders turn it into
 *    JSON that parses again.
 *
 *  Two ways to run it:
 *  - libFuzzer (clang), for as long as you like:
 *      clang -g -O1 -fsanitize=fuzzer,address,undefined -Ilib -Ischemas \
 *          -Igateway tests/fuzz/fuzz_json.c gateway/hgp_json.c \
 *          schemas/hgp_codec.c -o build/fuzz/fuzz_json -ljansson -lmsgpackc
 *      build/fuzz/fuzz_json -max_total_time=60 -max_len=4096
 *  - `make test` builds it with HGP_FUZZ_SMOKE_MAIN as
 *    build/san/bin/tests/test_fuzz_json: a small deterministic mutation
 *    fuzzer (gcc + ASan/UBSan, no clang needed) over valid seed bodies.
 *    Usage: test_fuzz_json [ITERATIONS [SEED]].
 *
 *  Either way the decoders run on a thread whose stack is HGP_JSON_STACK
 *  bytes, a tenth of a gateway loop's: on the 8 MiB main stack a body
 *  of 1000 '[' decoded fine here and crashed the gateway. The smoke run
 *  also decodes bodies nested 31 to 20,000 levels deep and checks that
 *  past HGP_JSON_DEPTH_MAX they are refused as "invalid".
 */
#include "hgp_json.h"
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_mutate.h"

static void
s_check_refusal (const hgp_request_t *req, const hgp_error_t *err)
{
    if (!((err->status == 400 || err->status == 413)
    &&    err->code [0] && err->message [0]))
        abort ();
    if (req->keys || req->nkeys || req->op != HGP_OP_NONE)
        abort ();
}

//  The encoders' output must be JSON

static void
s_check_json (char *text)
{
    if (!text)
        abort ();
    json_error_t jerr;
    json_t *json = json_loads (text, 0, &jerr);
    if (!json)
        abort ();
    json_decref (json);
    free (text);
}

static void
s_check_encodable (hgp_request_t *req)
{
    if (!req->id [0])
        strcpy (req->id, "fuzz-id");
    hgp_buf_t buf = { 0 };
    if (hgp_request_encode (req, &buf))
        abort ();
    hgp_request_t again;
    hgp_error_t err;
    if (hgp_request_decode (&again, buf.data, buf.size, &err))
        abort ();
    hgp_request_clear (&again);
    hgp_buf_clear (&buf);
}

static void
s_decode_all (const uint8_t *data, size_t size)
{
    const char *body = (const char *) data;
    hgp_request_t req;
    hgp_error_t err;
    for (int with_key = 0; with_key < 2; with_key++) {
        memset (&err, 0, sizeof err);
        if (hgp_json_decode_increment (body, size, with_key ? "k-1" : NULL,
                                       &req, &err) == 0) {
            if (req.op != HGP_OP_INCR || req.delta == 0
            ||  !hgp_id_valid (req.key.resource_id, strlen (req.key.resource_id))
            ||  !hgp_id_valid (req.key.counter_type, strlen (req.key.counter_type)))
                abort ();
            if (with_key && strcmp (req.id, "k-1"))
                abort ();
            s_check_encodable (&req);
            s_check_json (hgp_json_encode_value (&req.key, req.delta, true,
                                                 req.id));
            hgp_request_clear (&req);
        }
        else
            s_check_refusal (&req, &err);
    }
    memset (&err, 0, sizeof err);
    if (hgp_json_decode_batch (body, size, &req, &err) == 0) {
        if (req.op != HGP_OP_MGET || req.nkeys < 1 || req.nkeys > HGP_MGET_MAX
        ||  !req.keys)
            abort ();
        s_check_encodable (&req);
        hgp_reply_t rep;
        hgp_reply_init (&rep);
        rep.values = (int64_t *) calloc (req.nkeys, sizeof (int64_t));
        rep.nvalues = req.nkeys;
        s_check_json (hgp_json_encode_values (&req, &rep));
        free (rep.values);
        hgp_request_clear (&req);
    }
    else
        s_check_refusal (&req, &err);
}

typedef struct {
    const uint8_t *data;            /* the input                            */
    size_t size;                    /* its bytes                            */
} s_input_t;

static void *
s_decode_input (void *arg)
{
    s_input_t *input = (s_input_t *) arg;
    s_decode_all (input->data, input->size);
    return NULL;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    s_input_t input = { data, size };
    fuzz_on_stack (HGP_JSON_STACK, s_decode_input, &input);
    return 0;
}

#ifdef HGP_FUZZ_SMOKE_MAIN

static const char *s_seeds [] = {
    "{\"resource_id\":\"post_42\",\"counter_type\":\"like\"}",
    "{\"resource_id\":\"a:b\",\"counter_type\":\"t.1\",\"delta\":-9223372036854775808,"
        "\"user_id\":\"u-1\",\"request_id\":\"r_1\"}",
    "{\"resource_id\":\"r\",\"counter_type\":\"t\",\"delta\":9223372036854775807}",
    "{\"queries\":[{\"resource_id\":\"a\",\"counter_type\":\"x\"},"
        "{\"resource_id\":\"b\",\"counter_type\":\"y\"}]}",
    "{\"items\":[{\"counter_type\":\"x\",\"resource_id\":\"a\"}]}",
};
#define SEEDS ((int) (sizeof s_seeds / sizeof s_seeds [0]))

//  Tokens spliced in to reach the parser's and checker's corners
static const char *s_tokens [] = {
    "{", "}", "[", "]", ",", ":", "\"", "\\u0000", "\\ud800", "1e999",
    "-0", "1.0", "null", "true", "99999999999999999999", "\"delta\":",
    "\"queries\":", "\xff", "\xc3\xa9", " ", "\"resource_id\":\"x\",",
    "[[[[[[[[[[[[[[[[", "{\"a\":{\"a\":{\"a\":{\"a\":", "\"[[[[\"", "\\\"",
};
#define TOKENS ((int) (sizeof s_tokens / sizeof s_tokens [0]))

#define WORK_MAX 8192

//  A body of depth levels: "[[[...]]]" or {"a":{"a":...1...}}

static char *
s_nested (int depth, bool objects, size_t *size_p)
{
    const char *open = objects ? "{\"a\":" : "[";
    size_t open_len = strlen (open);
    char *body = (char *) malloc ((size_t) depth * (open_len + 1) + 2);
    if (!body)
        abort ();
    size_t size = 0;
    for (int i = 0; i < depth; i++, size += open_len)
        memcpy (body + size, open, open_len);
    body [size++] = '1';
    for (int i = 0; i < depth; i++)
        body [size++] = objects ? '}' : ']';
    *size_p = size;
    return body;
}

//  Deep bodies: through the whole harness, and refused past the limit by
//  the right error; as deep as HGP_JSON_DEPTH_MAX is allowed to parse

static void
s_check_deep (void)
{
    static const int depths [] = { 31, 32, 33, 100, 1000, 20000 };
    //  Through every decoder first, deepest last: a decoder that recurses
    //  per level overflows this stack here (1000 '[' did, in jansson)
    for (size_t d = 0; d < sizeof depths / sizeof depths [0]; d++)
        for (int objects = 0; objects < 2; objects++) {
            size_t size;
            char *body = s_nested (depths [d], objects, &size);
            s_decode_all ((const uint8_t *) body, size);
            free (body);
        }
    for (size_t d = 0; d < sizeof depths / sizeof depths [0]; d++)
        for (int objects = 0; objects < 2; objects++) {
            size_t size;
            char *body = s_nested (depths [d], objects, &size);
            hgp_request_t req;
            hgp_error_t err;
            int rc = hgp_json_decode_increment (body, size, NULL, &req, &err);
            bool too_deep = strstr (err.message, "nested") != NULL;
            if (rc == 0 || err.status != 400
            ||  too_deep != (depths [d] > HGP_JSON_DEPTH_MAX)) {
                fprintf (stderr, "depth %d: %d %s %s\n", depths [d],
                         err.status, err.code, err.message);
                abort ();
            }
            free (body);
        }
}

typedef struct {
    long iterations;                /* mutants to decode                    */
    uint64_t state;                 /* random state                         */
} s_smoke_t;

static void *
s_smoke (void *arg)
{
    s_smoke_t *smoke = (s_smoke_t *) arg;
    long iterations = smoke->iterations;
    uint64_t state = smoke->state;
    s_check_deep ();
    uint8_t *work = (uint8_t *) malloc (WORK_MAX);
    for (long i = 0; i < iterations; i++) {
        const char *seed = s_seeds [fuzz_rand (&state) % SEEDS];
        size_t size = strlen (seed);
        memcpy (work, seed, size);
        int edits = 1 + (int) (fuzz_rand (&state) % 4);
        for (int e = 0; e < edits && size > 0; e++) {
            size_t at = fuzz_rand (&state) % size;
            unsigned kind = (unsigned) (fuzz_rand (&state) % 5);
            if (fuzz_mutate_step (work, &size, WORK_MAX, at, kind, &state))
                continue;
            switch (kind) {
                case 4: {                                           /* token */
                    const char *token = s_tokens [fuzz_rand (&state) % TOKENS];
                    fuzz_splice (work, &size, WORK_MAX, at, token, strlen (token));
                    break;
                }
            }
        }
        s_decode_all (work, size);
    }
    //  And the seeds themselves must be accepted by one decoder or the other
    for (int s = 0; s < SEEDS; s++)
        s_decode_all ((const uint8_t *) s_seeds [s], strlen (s_seeds [s]));
    free (work);
    return NULL;
}

int
main (int argc, char *argv [])
{
    s_smoke_t smoke = {
        argc > 1 ? atol (argv [1]) : 100000,
        argc > 2 ? strtoull (argv [2], NULL, 10) : 42
    };
    fuzz_on_stack (HGP_JSON_STACK, s_smoke, &smoke);
    printf ("test_fuzz_json: %ld mutated JSON bodies and 12 nested 31 to "
            "20000 levels decoded on a %d-byte stack, no crash, no leak\n",
            smoke.iterations, HGP_JSON_STACK);
    return 0;
}
#endif
