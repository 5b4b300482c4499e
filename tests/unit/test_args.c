/*  test_args.c - a command's arguments: texts by pointer, numbers held,
 *  counts patched in place, room that grows only between commands.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "hgp_args.h"

static void
s_expect (hgp_args_t *args, int i, const char *text)
{
    assert_int_equal (hgp_args_lens (args) [i], strlen (text));
    assert_memory_equal (hgp_args_argv (args) [i], text, strlen (text));
}

static void
test_an_evalsha_gets_its_sha_and_key_count_after_its_keys (void **state)
{
    hgp_args_t *args = hgp_args_new ();
    hgp_args_evalsha (args, 4);
    hgp_args_add_str (args, "k1");
    hgp_args_add_str (args, "k2");
    hgp_args_add_int (args, -9223372036854775807LL - 1);
    hgp_args_add (args, "a\0b", 3);         //  binary: the length counts
    hgp_args_set (args, 1, "0123456789012345678901234567890123456789", 40);
    hgp_args_set_int (args, 2, 2);
    assert_int_equal (hgp_args_count (args), 7);
    s_expect (args, 0, "EVALSHA");
    s_expect (args, 1, "0123456789012345678901234567890123456789");
    s_expect (args, 2, "2");
    s_expect (args, 3, "k1");
    s_expect (args, 5, "-9223372036854775808");
    assert_int_equal (hgp_args_lens (args) [6], 3);
    assert_memory_equal (hgp_args_argv (args) [6], "a\0b", 3);
    hgp_args_destroy (&args);
    assert_null (args);
}

static void
test_numbers_keep_their_text_while_more_are_added (void **state)
{
    hgp_args_t *args = hgp_args_new ();
    hgp_args_start (args, 1000);
    const char *first = hgp_args_add_int (args, 42);
    for (int i = 0; i < 999; i++)
        hgp_args_add_int (args, i);
    assert_string_equal (first, "42");
    s_expect (args, 0, "42");
    s_expect (args, 999, "998");
    //  A bigger command next: the room grows, the old texts are gone
    hgp_args_start (args, 5000);
    assert_int_equal (hgp_args_count (args), 0);
    for (int i = 0; i < 5000; i++)
        hgp_args_add_int (args, i);
    s_expect (args, 4999, "4999");
    //  A smaller one reuses the room
    hgp_args_start (args, 3);
    hgp_args_add_str (args, "GET");
    assert_int_equal (hgp_args_count (args), 1);
    hgp_args_destroy (&args);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_an_evalsha_gets_its_sha_and_key_count_after_its_keys),
        cmocka_unit_test (test_numbers_keep_their_text_while_more_are_added),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
