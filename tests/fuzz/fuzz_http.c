/*  fuzz_http.c - fuzz harness for the gateway's HTTP head and chunked parsers
 *
 *  LLVMFuzzerTestOneInput gives the bytes to hgp_http_parse_head and to the
 *  chunked decoder, and checks more than "does not crash":
 *  - a refused head says why (400, 431, 501 or 505, a code, a message);
 *    an accepted one has a method, a target, at most 64 headers, a size
 *    within the input, and no CR or LF left in any name or value;
 *  - a head is found the same way in any prefix: a prefix without the
 *    blank line is "need more" (or 431 past the limit), never a request;
 *  - the chunked decoder gives the same bytes and the same end whether the
 *    input comes in one piece or split at random points, never writes past
 *    its output limit, and never consumes more than it was given.
 *
 *  Like fuzz_json, two ways to run it: libFuzzer (clang, see Makefile
 *  `make fuzz`), or `make test`'s gcc smoke build (HGP_FUZZ_SMOKE_MAIN,
 *  build/san/bin/tests/test_fuzz_http [ITERATIONS [SEED]]), mutating valid
 *  requests. Both run the parsers on a thread with a HGP_JSON_STACK stack,
 *  smaller than the gateway's loop threads'.
 */
#include "hgp_http_parser.h"
#include "hgp_json.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_mutate.h"

#define S_LIMIT     4096            /* the head limit the harness uses     */
#define S_OUT_MAX   2048            /* the chunked decoder's output limit  */

static void
s_check_head (const uint8_t *data, size_t size)
{
    char *buf = (char *) malloc (size + 1);
    if (!buf)
        abort ();
    memcpy (buf, data, size);
    hgp_http_head_t head;
    hgp_http_error_t err;
    size_t skipped = 0;
    int rc = hgp_http_parse_head (buf, size, S_LIMIT, &head, &skipped, &err);
    if (rc < 0) {
        if ((err.status != 400 && err.status != 431 && err.status != 501
        &&   err.status != 505) || !err.code || !err.message [0])
            abort ();
    }
    else
    if (rc == 1) {
        if (!head.method || !head.method [0] || !head.target
        ||  !head.target [0] || head.nheaders > HGP_HTTP_HEADERS_MAX
        ||  skipped + head.size > size || head.size > S_LIMIT
        ||  (head.minor != 0 && head.minor != 1)
        ||  (head.chunked && head.content_length >= 0))
            abort ();
        for (int i = 0; i < head.nheaders; i++)
            if (strpbrk (head.headers [i].name, "\r\n: \t")
            ||  strpbrk (head.headers [i].value, "\r\n"))
                abort ();
        //  Every shorter prefix that ends before the blank line is
        //  incomplete: nothing is read as a request before it is whole
        size_t end = skipped + head.size;
        for (size_t cut = skipped; cut + 1 < end; cut += 1 + cut / 8) {
            memcpy (buf, data, cut);
            hgp_http_head_t part;
            size_t part_skipped;
            if (hgp_http_parse_head (buf, cut, S_LIMIT, &part,
                                     &part_skipped, &err) == 1)
                abort ();
        }
    }
    else
    if (size - skipped >= S_LIMIT)
        abort ();                   //  "need more" past the limit
    free (buf);
}

//  Decode in pieces of the sizes a random state picks; state 0: one piece
static int
s_decode (const uint8_t *data, size_t size, uint64_t state, char *out,
          size_t *out_len, size_t *consumed)
{
    hgp_http_chunked_t chunked;
    hgp_http_chunked_init (&chunked);
    hgp_http_error_t err;
    *out_len = 0;
    *consumed = 0;
    size_t at = 0;
    while (at < size && !chunked.done) {
        size_t piece = state ? 1 + fuzz_rand (&state) % 7 : size;
        if (piece > size - at)
            piece = size - at;
        int64_t used = hgp_http_chunked_feed (&chunked,
            (const char *) data + at, piece, out, out_len, S_OUT_MAX, &err);
        if (used < 0) {
            if ((err.status != 400 && err.status != 413) || !err.message [0])
                abort ();
            return -err.status;
        }
        if ((size_t) used > piece || (!chunked.done && (size_t) used != piece)
        ||  *out_len > S_OUT_MAX)
            abort ();
        at += (size_t) used;
    }
    *consumed = at;
    return chunked.done ? 1 : 0;
}

static void
s_check_chunked (const uint8_t *data, size_t size)
{
    static char whole [S_OUT_MAX], split [S_OUT_MAX];
    size_t whole_len, split_len, whole_used, split_used;
    int a = s_decode (data, size, 0, whole, &whole_len, &whole_used);
    int b = s_decode (data, size, size * 2654435761u + 1, split, &split_len,
                      &split_used);
    if (a != b || (a >= 0 && (whole_len != split_len
                           || memcmp (whole, split, whole_len)
                           || (a == 1 && whole_used != split_used))))
        abort ();
}

static void
s_check_all (const uint8_t *data, size_t size)
{
    s_check_head (data, size);
    s_check_chunked (data, size);
}

typedef struct {
    const uint8_t *data;
    size_t size;
} s_input_t;

static void *
s_run_input (void *arg)
{
    s_input_t *input = (s_input_t *) arg;
    s_check_all (input->data, input->size);
    return NULL;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    s_input_t input = { data, size };
    fuzz_on_stack (HGP_JSON_STACK, s_run_input, &input);
    return 0;
}

#ifdef HGP_FUZZ_SMOKE_MAIN

static const char *s_seeds [] = {
    "GET /api/v1/counter/a/b HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST /api/v1/counter/increment HTTP/1.1\r\nHost: x\r\nContent-Length: 5,"
        " 5\r\nConnection: keep-alive\r\n\r\n{\"a\":",
    "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue"
        "\r\n\r\n",
    "\r\n\r\nOPTIONS * HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
    "GET http://127.0.0.1:8080/api/v1/health?x=1 HTTP/1.1\r\n\r\n",
    "5\r\nhello\r\n0;ext=1\r\nTrailer: t\r\n\r\n",
    "1a;x\r\nabcdefghijklmnopqrstuvwxyz\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1",
};
#define SEEDS ((int) (sizeof s_seeds / sizeof s_seeds [0]))

static const char *s_tokens [] = {
    "\r\n", "\n", "\r", "\r\n\r\n", " ", "\t", ":", "\0", "Content-Length: 3\r\n",
    "Transfer-Encoding: chunked\r\n", "Transfer-Encoding: gzip\r\n",
    "Content-Length: 1, 2\r\n", " obs-fold\r\n", "HTTP/2.0", "HTTP/1.1",
    "ffffffffffffffff", "0\r\n\r\n", ";", "\xff",
};
#define TOKENS ((int) (sizeof s_tokens / sizeof s_tokens [0]))

#define WORK_MAX 8192

typedef struct {
    long iterations;
    uint64_t state;
} s_smoke_t;

static void *
s_smoke (void *arg)
{
    s_smoke_t *smoke = (s_smoke_t *) arg;
    uint64_t state = smoke->state;
    uint8_t *work = (uint8_t *) malloc (WORK_MAX);
    for (long i = 0; i < smoke->iterations; i++) {
        const char *seed = s_seeds [fuzz_rand (&state) % SEEDS];
        size_t size = strlen (seed);
        memcpy (work, seed, size);
        int edits = 1 + (int) (fuzz_rand (&state) % 4);
        for (int e = 0; e < edits && size > 0; e++) {
            size_t at = fuzz_rand (&state) % size;
            unsigned kind = (unsigned) (fuzz_rand (&state) % 5);
            if (fuzz_mutate_step (work, &size, WORK_MAX, at, kind, &state))
                continue;
            const char *token = s_tokens [fuzz_rand (&state) % TOKENS];
            fuzz_splice (work, &size, WORK_MAX, at, token,
                         token [0] ? strlen (token) : 1);    //  "\0": one NUL
        }
        s_check_all (work, size);
    }
    for (int s = 0; s < SEEDS; s++)
        s_check_all ((const uint8_t *) s_seeds [s], strlen (s_seeds [s]));
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
    printf ("test_fuzz_http: %ld mutated heads and chunked bodies parsed on a "
            "%d-byte stack, whole and split alike, no crash, no leak\n",
            smoke.iterations, HGP_JSON_STACK);
    return 0;
}
#endif
