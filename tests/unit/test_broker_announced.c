/*  test_broker_announced.c - the broker's table of announced processes */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include "hgp_announced.h"

static void
test_one_entry_per_url_forgotten_when_silent (void **state)
{
    hgp_announced_t *t = hgp_announced_new ();
    assert_int_equal (hgp_announced_heard (t, "gateway", "http://a:1/metrics", 0), 0);
    assert_int_equal (hgp_announced_heard (t, "gateway", "http://a:1/metrics", 500), 0);
    assert_int_equal (hgp_announced_heard (t, "kafka", "http://b:2/metrics", 1000), 0);
    assert_int_equal (hgp_announced_size (t), 2);
    hgp_reply_t rep;
    hgp_reply_init (&rep);
    assert_int_equal (hgp_announced_list (t, 2000, &rep), 0);
    assert_int_equal (rep.nprocesses, 2);
    assert_string_equal (rep.processes [0].role, "gateway");
    assert_int_equal (rep.processes [0].idle_ms, 1500);
    hgp_reply_clear (&rep);
    //  The gateway silent for more than the TTL: gone; the mock stays
    hgp_announced_expire (t, 500 + HGP_ANNOUNCE_TTL_MS + 1);
    assert_int_equal (hgp_announced_size (t), 1);
    hgp_announced_destroy (&t);
    assert_null (t);
}

static void
test_a_full_table_refuses_new_urls_and_keeps_live_ones (void **state)
{
    hgp_announced_t *t = hgp_announced_new ();
    char url [64];
    for (int i = 0; i < HGP_PROCESSES_MAX; i++) {
        snprintf (url, sizeof url, "http://h:%d/metrics", i + 1);
        assert_int_equal (hgp_announced_heard (t, "gateway", url, 0), 0);
    }
    assert_int_equal (hgp_announced_heard (t, "x", "http://new:1/metrics", 10), -1);
    //  A known one is still heard
    assert_int_equal (hgp_announced_heard (t, "gateway", "http://h:1/metrics", 10), 0);
    //  Once the others went silent, there is room again
    assert_int_equal (hgp_announced_heard (t, "x", "http://new:1/metrics",
                                           HGP_ANNOUNCE_TTL_MS + 5), 0);
    assert_int_equal (hgp_announced_size (t), 2);
    hgp_announced_destroy (&t);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_one_entry_per_url_forgotten_when_silent),
        cmocka_unit_test (test_a_full_table_refuses_new_urls_and_keeps_live_ones),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
