/*  test_http_parser.c - the gateway's HTTP parser reads exactly one request
 *  where every careful parser would, and refuses what two parsers could
 *  read differently (gateway/hgp_http_parser.h, RFC 9112)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hgp_http_parser.h"

typedef struct {
    char buf [4096];
    hgp_http_head_t head;
    hgp_http_error_t err;
    size_t skipped;
} s_parse_t;

static int
s_parse (s_parse_t *p, const char *text)
{
    size_t size = strlen (text);
    assert_true (size < sizeof p->buf);
    memcpy (p->buf, text, size);
    memset (&p->err, 0, sizeof p->err);
    return hgp_http_parse_head (p->buf, size, 1024, &p->head, &p->skipped,
                                &p->err);
}

static void
s_refused (const char *text, int status, bool framing)
{
    s_parse_t p;
    if (s_parse (&p, text) != -1)
        fail_msg ("accepted: %s", text);
    if (p.err.status != status || p.err.framing != framing)
        fail_msg ("%s -> %d (%s), want %d", text, p.err.status,
                  p.err.message, status);
}

static void
test_a_plain_request_is_read_with_its_headers (void **state)
{
    s_parse_t p;
    const char *text = "\r\nPOST /api/v1/counter/increment HTTP/1.1\r\n"
                       "Host: gw\r\nContent-Length: 12\r\n"
                       "X-Pad:   spaced value  \r\n\r\n{\"a\":1}";
    assert_int_equal (s_parse (&p, text), 1);
    assert_int_equal (p.skipped, 2);
    assert_string_equal (p.head.method, "POST");
    assert_string_equal (p.head.target, "/api/v1/counter/increment");
    assert_int_equal (p.head.minor, 1);
    assert_int_equal (p.head.content_length, 12);
    assert_false (p.head.chunked);
    assert_true (p.head.keep_alive);
    assert_string_equal (hgp_http_head_get (&p.head, "x-pad"), "spaced value");
    assert_string_equal (hgp_http_head_get (&p.head, "HOST"), "gw");
    assert_null (hgp_http_head_get (&p.head, "Cookie"));
    //  the head ends at the blank line; the body is not part of it
    assert_int_equal (p.skipped + p.head.size, strlen (text) - 7);
}

static void
test_a_head_without_its_blank_line_needs_more (void **state)
{
    s_parse_t p;
    assert_int_equal (s_parse (&p, "GET / HTTP/1.1\r\nHost: x\r\n"), 0);
    assert_int_equal (s_parse (&p, "GET / HTTP/1.1\r\nHost: x\r\n\r"), 0);
    assert_int_equal (s_parse (&p, "\r\n"), 0);
}

static void
test_keep_alive_follows_version_and_connection (void **state)
{
    s_parse_t p;
    assert_int_equal (s_parse (&p, "GET / HTTP/1.0\r\n\r\n"), 1);
    assert_false (p.head.keep_alive);
    assert_int_equal (s_parse (&p, "GET / HTTP/1.0\r\nConnection: Keep-Alive"
                                   "\r\n\r\n"), 1);
    assert_true (p.head.keep_alive);
    assert_int_equal (s_parse (&p, "GET / HTTP/1.1\r\nConnection: foo, close"
                                   "\r\n\r\n"), 1);
    assert_false (p.head.keep_alive);
    assert_int_equal (s_parse (&p, "POST / HTTP/1.1\r\nExpect: 100-continue"
                                   "\r\nContent-Length: 3\r\n\r\n"), 1);
    assert_true (p.head.expect_continue);
}

static void
test_ambiguous_body_lengths_are_refused_as_framing (void **state)
{
    s_refused ("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6"
               "\r\n\r\n", 400, true);
    s_refused ("POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n", 400, true);
    s_refused ("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: "
               "chunked\r\n\r\n", 400, true);
    s_refused ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
               "Transfer-Encoding: chunked\r\n\r\n", 400, true);
    s_refused ("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 400, true);
    s_refused ("POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", 400, true);
    s_refused ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
               true);
    //  the same value twice, or as a list of one value, is one length
    s_parse_t p;
    assert_int_equal (s_parse (&p, "POST / HTTP/1.1\r\nContent-Length: 5\r\n"
                                   "Content-Length: 5\r\n\r\n"), 1);
    assert_int_equal (p.head.content_length, 5);
    assert_int_equal (s_parse (&p, "POST / HTTP/1.1\r\nContent-Length: 5 , 5"
                                   "\r\n\r\n"), 1);
    assert_int_equal (p.head.content_length, 5);
}

static void
test_lines_that_parsers_split_differently_are_refused (void **state)
{
    s_refused ("GET / HTTP/1.1\nHost: x\r\n\r\n", 400, false);
    s_refused ("GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 400, false);
    s_refused ("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, false);
    s_refused ("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, false);
    s_refused ("GET / HTTP/1.1\r\nNo colon\r\n\r\n", 400, false);
    s_refused ("GET  / HTTP/1.1\r\n\r\n", 400, false);
    s_refused ("GET / HTTP/1.1 \r\n\r\n", 400, false);
    s_refused ("GET /a b HTTP/1.1\r\n\r\n", 400, false);
    s_refused ("GET / FTP/1.1\r\n\r\n", 400, false);
    s_refused ("GET / HTTP/2.0\r\n\r\n", 505, false);
    s_refused ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
               501, false);
}

static void
test_a_head_past_the_limit_is_431 (void **state)
{
    static char text [3000];
    strcpy (text, "GET / HTTP/1.1\r\nX: ");
    memset (text + strlen (text), 'a', 1500);
    s_parse_t p;
    //  incomplete and already past 1024 bytes
    assert_int_equal (s_parse (&p, text), -1);
    assert_int_equal (p.err.status, 431);
    strcat (text, "\r\n\r\n");
    assert_int_equal (s_parse (&p, text), -1);
    assert_int_equal (p.err.status, 431);
    static char many [4000] = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < 65; i++)
        strcat (many, "A: b\r\n");
    strcat (many, "\r\n");
    size_t size = strlen (many);
    char buf [4000];
    memcpy (buf, many, size);
    hgp_http_head_t head;
    hgp_http_error_t err;
    size_t skipped;
    assert_int_equal (hgp_http_parse_head (buf, size, 4000, &head, &skipped,
                                           &err), -1);
    assert_int_equal (err.status, 431);
}

//  Decode text in pieces of `piece` bytes
static int
s_chunked (const char *text, size_t piece, char *out, size_t *out_len,
           size_t out_max, size_t *consumed, hgp_http_error_t *err)
{
    hgp_http_chunked_t chunked;
    hgp_http_chunked_init (&chunked);
    size_t size = strlen (text), at = 0;
    *out_len = 0;
    while (at < size && !chunked.done) {
        size_t n = size - at < piece ? size - at : piece;
        int64_t used = hgp_http_chunked_feed (&chunked, text + at, n, out,
                                              out_len, out_max, err);
        if (used < 0)
            return -1;
        at += (size_t) used;
    }
    *consumed = at;
    return chunked.done ? 1 : 0;
}

static void
test_chunked_bodies_decode_alike_in_any_pieces (void **state)
{
    const char *text = "5;name=value\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuv"
                       "wxyz\r\n0\r\nTrailer: x\r\n\r\nGET / HTTP/1.1";
    for (size_t piece = 1; piece <= strlen (text); piece++) {
        char out [64];
        size_t len, consumed;
        hgp_http_error_t err;
        assert_int_equal (s_chunked (text, piece, out, &len, sizeof out,
                                     &consumed, &err), 1);
        assert_int_equal (len, 31);
        assert_memory_equal (out, "helloabcdefghijklmnopqrstuvwxyz", 31);
        //  what follows the body is left for the next request
        assert_string_equal (text + consumed, "GET / HTTP/1.1");
    }
}

static void
test_bad_or_oversized_chunks_are_refused (void **state)
{
    char out [16];
    size_t len, consumed;
    hgp_http_error_t err;
    assert_int_equal (s_chunked ("5\r\nhelloXX0\r\n\r\n", 4, out, &len,
                                 sizeof out, &consumed, &err), -1);
    assert_int_equal (err.status, 400);
    assert_int_equal (s_chunked ("g\r\n", 4, out, &len, sizeof out,
                                 &consumed, &err), -1);
    assert_int_equal (s_chunked ("5\nhello\r\n0\r\n\r\n", 4, out, &len,
                                 sizeof out, &consumed, &err), -1);
    assert_int_equal (s_chunked ("ffffffffffffffffff\r\n", 4, out, &len,
                                 sizeof out, &consumed, &err), -1);
    assert_int_equal (err.status, 400);
    assert_int_equal (s_chunked ("20\r\n0123456789abcdef0123456789abcdef\r\n"
                                 "0\r\n\r\n", 7, out, &len, sizeof out,
                                 &consumed, &err), -1);
    assert_int_equal (err.status, 413);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_a_plain_request_is_read_with_its_headers),
        cmocka_unit_test (test_a_head_without_its_blank_line_needs_more),
        cmocka_unit_test (test_keep_alive_follows_version_and_connection),
        cmocka_unit_test (test_ambiguous_body_lengths_are_refused_as_framing),
        cmocka_unit_test (test_lines_that_parsers_split_differently_are_refused),
        cmocka_unit_test (test_a_head_past_the_limit_is_431),
        cmocka_unit_test (test_chunked_bodies_decode_alike_in_any_pieces),
        cmocka_unit_test (test_bad_or_oversized_chunks_are_refused),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
