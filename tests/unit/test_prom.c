/*  test_prom.c - hgp_prom: series, families, the text a scrape gets */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>
#include <stdlib.h>
#include "hgp_prom.h"

static void
test_families_are_printed_together_with_their_values (void **state)
{
    hgp_prom_t *p = hgp_prom_new ("broker");
    int a = hgp_prom_declare (p, HGP_PROM_COUNTER, "hgp_x_total",
                              "code=\"busy\"", "X by code.", 1);
    int g = hgp_prom_declare (p, HGP_PROM_GAUGE, "hgp_depth", "", "Depth.", 1);
    int b = hgp_prom_declare (p, HGP_PROM_COUNTER, "hgp_x_total",
                              "code=\"timeout\"", "X by code.", 1);
    int s = hgp_prom_declare (p, HGP_PROM_COUNTER, "hgp_wait_seconds_total",
                              "", "Wait.", 1000000);
    assert_true (a >= 0 && g >= 0 && b >= 0 && s >= 0);
    hgp_prom_add (p, a, 3);
    hgp_prom_add (p, b, 1);
    hgp_prom_add (p, b, 1);
    hgp_prom_set (p, g, -7);
    hgp_prom_add (p, s, 1500000);
    hgp_prom_add (p, -1, 5);            //  a failed declare: ignored
    char *text = hgp_prom_render (p);
    assert_non_null (text);
    const char *family = "# HELP hgp_x_total X by code.\n"
                         "# TYPE hgp_x_total counter\n"
                         "hgp_x_total{code=\"busy\"} 3\n"
                         "hgp_x_total{code=\"timeout\"} 2\n"
                         "# HELP hgp_depth Depth.\n"
                         "# TYPE hgp_depth gauge\n"
                         "hgp_depth -7\n"
                         "# HELP hgp_wait_seconds_total Wait.\n"
                         "# TYPE hgp_wait_seconds_total counter\n"
                         "hgp_wait_seconds_total 1.5\n";
    assert_memory_equal (text, family, strlen (family));
    assert_non_null (strstr (text, "# TYPE process_cpu_seconds_total counter\n"));
    assert_non_null (strstr (text, "\nprocess_resident_memory_bytes "));
    assert_non_null (strstr (text, "\nprocess_open_fds "));
    assert_non_null (strstr (text,
        "hgp_build_info{process=\"broker\",version=\""));
    free (text);
    hgp_prom_destroy (&p);
    assert_null (p);
}

static void
test_bad_names_and_labels_are_refused (void **state)
{
    hgp_prom_t *p = hgp_prom_new ("t");
    assert_int_equal (hgp_prom_declare (p, HGP_PROM_GAUGE, "9x", "", "", 1), -1);
    assert_int_equal (hgp_prom_declare (p, HGP_PROM_GAUGE, "a-b", "", "", 1), -1);
    assert_int_equal (hgp_prom_declare (p, HGP_PROM_GAUGE, "ok", "a=b", "", 1), -1);
    assert_int_equal (hgp_prom_declare (p, HGP_PROM_GAUGE, "ok", "a=\"b\\\"", "",
                                        1), -1);
    assert_int_equal (hgp_prom_declare (p, HGP_PROM_GAUGE, "ok", "a=\"b\"c", "",
                                        1), -1);
    assert_int_equal (hgp_prom_declare (p, HGP_PROM_GAUGE, "ok", "", "", 0), -1);
    assert_int_equal (hgp_prom_declare (p, HGP_PROM_GAUGE, "ok",
                                        "a=\"1\",b=\"2\"", "h\nx", 1), 0);
    char *text = hgp_prom_render (p);
    assert_non_null (strstr (text, "# HELP ok h x\n"));
    assert_non_null (strstr (text, "ok{a=\"1\",b=\"2\"} 0\n"));
    free (text);
    //  Full: the next one is refused, the others stay
    int last = 0;
    for (int i = 1; i < HGP_PROM_SERIES_MAX; i++)
        last = hgp_prom_declare (p, HGP_PROM_GAUGE, "many", "", "", 1);
    assert_int_equal (last, HGP_PROM_SERIES_MAX - 1);
    assert_int_equal (hgp_prom_declare (p, HGP_PROM_GAUGE, "more", "", "", 1),
                      -1);
    hgp_prom_destroy (&p);
}

static void
test_statuses_count_each_reply_once (void **state)
{
    hgp_prom_t *p = hgp_prom_new ("t");
    int h [HGP_PROM_STATUSES];
    hgp_prom_declare_statuses (p, "hgp_replies_total", "Replies.", h);
    hgp_prom_count_status (p, h, 200);
    hgp_prom_count_status (p, h, 200);
    hgp_prom_count_status (p, h, 503);
    hgp_prom_count_status (p, h, 418);
    assert_int_equal (hgp_prom_get (p, h [0]), 2);
    char *text = hgp_prom_render (p);
    assert_non_null (strstr (text, "hgp_replies_total{status=\"200\"} 2\n"));
    assert_non_null (strstr (text, "hgp_replies_total{status=\"503\"} 1\n"));
    assert_non_null (strstr (text, "hgp_replies_total{status=\"other\"} 1\n"));
    assert_non_null (strstr (text, "hgp_replies_total{status=\"400\"} 0\n"));
    free (text);
    hgp_prom_destroy (&p);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_families_are_printed_together_with_their_values),
        cmocka_unit_test (test_bad_names_and_labels_are_refused),
        cmocka_unit_test (test_statuses_count_each_reply_once),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
