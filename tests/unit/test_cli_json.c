/*  test_cli_json.c - what bin/hgp's --json output does that jansson alone
 *  would not (cli/hgp_cli_json.h): bytes from the network that are not
 *  UTF-8 become U+FFFD instead of a missing string, valid UTF-8 passes
 *  unchanged, and counts and reals JSON cannot hold stay printable.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "hgp_cli_json.h"

#define FFFD "\xef\xbf\xbd"

//  Expect hgp_cli_json_text (in) to be the string want
static void
s_text_is (const char *in, const char *want)
{
    json_t *string = hgp_cli_json_text (in);
    assert_non_null (string);
    assert_string_equal (json_string_value (string), want);
    json_decref (string);
}

static void
test_valid_utf8_is_kept (void **state)
{
    s_text_is ("", "");
    s_text_is ("plain ascii \"quoted\" \\ \n", "plain ascii \"quoted\" \\ \n");
    s_text_is ("caf\xc3\xa9", "caf\xc3\xa9");                   //  U+00E9
    s_text_is ("\xe2\x82\xac", "\xe2\x82\xac");                 //  U+20AC
    s_text_is ("\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80");         //  U+1F600
    s_text_is ("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf");         //  U+10FFFF
}

static void
test_invalid_bytes_become_fffd (void **state)
{
    s_text_is ("\xff", FFFD);
    s_text_is ("a\x80" "b", "a" FFFD "b");                      //  lone tail
    s_text_is ("cut \xe2\x82", "cut " FFFD FFFD);               //  truncated
    s_text_is ("\xc0\xaf", FFFD FFFD);                          //  overlong
    s_text_is ("\xe0\x80\xaf", FFFD FFFD FFFD);                 //  overlong
    s_text_is ("\xed\xa0\x80", FFFD FFFD FFFD);                 //  surrogate
    s_text_is ("\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD);        //  > U+10FFFF
    s_text_is ("\xf5", FFFD);
}

//  What json_dumps makes of value inside an array, compact
static char *
s_dump (json_t *value, int digits)
{
    json_t *array = json_pack ("[o]", value);
    assert_non_null (array);
    char *text = json_dumps (array, JSON_COMPACT | JSON_REAL_PRECISION (digits));
    json_decref (array);
    return text;
}

static void
test_numbers_stay_printable (void **state)
{
    char *text = s_dump (hgp_cli_json_uint (UINT64_MAX), HGP_CLI_JSON_EXACT);
    assert_string_equal (text, "[9223372036854775807]");
    free (text);
    text = s_dump (hgp_cli_json_uint (42), HGP_CLI_JSON_EXACT);
    assert_string_equal (text, "[42]");
    free (text);
    text = s_dump (hgp_cli_json_real (NAN), HGP_CLI_JSON_EXACT);
    assert_string_equal (text, "[null]");
    free (text);
    text = s_dump (hgp_cli_json_real (INFINITY), HGP_CLI_JSON_EXACT);
    assert_string_equal (text, "[null]");
    free (text);
    //  Exact: a trending score reads back as the same double
    text = s_dump (hgp_cli_json_real (0.1 + 0.2), HGP_CLI_JSON_EXACT);
    json_t *back = json_loads (text, 0, NULL);
    assert_true (json_real_value (json_array_get (back, 0)) == 0.1 + 0.2);
    json_decref (back);
    free (text);
    //  Rounded: bench seconds to the millisecond print as typed
    text = s_dump (hgp_cli_json_real (round (1.2344 * 1000) / 1000),
                   HGP_CLI_JSON_ROUNDED);
    assert_string_equal (text, "[1.234]");
    free (text);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_valid_utf8_is_kept),
        cmocka_unit_test (test_invalid_bytes_become_fffd),
        cmocka_unit_test (test_numbers_stay_printable),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
