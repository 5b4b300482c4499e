/*  test_keyspace.c - counter keys are injective, ownership is stable and
 *  moves only what it must; config overrides come from the environment.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hgp_keyspace.h"
#include "hgp_config.h"

static hgp_key_t
s_key (const char *r, const char *t)
{
    hgp_key_t key;
    snprintf (key.resource_id, sizeof key.resource_id, "%s", r);
    snprintf (key.counter_type, sizeof key.counter_type, "%s", t);
    return key;
}

static void
test_colon_in_ids_cannot_make_two_keys_collide (void **state)
{
    char a [HGP_KEYSPACE_COUNTER_MAX], b [HGP_KEYSPACE_COUNTER_MAX];
    hgp_key_t ka = s_key ("a:b", "c"), kb = s_key ("a", "b:c");
    hgp_keyspace_counter (&ka, a, sizeof a);
    hgp_keyspace_counter (&kb, b, sizeof b);
    assert_string_not_equal (a, b);
    assert_string_equal (a, "hgp:c:3:a:b:c");
    assert_string_equal (b, "hgp:c:1:a:b:c");
}

static void
test_longest_ids_fit_the_key_buffers (void **state)
{
    char id [HGP_ID_MAX + 1];
    memset (id, 'z', HGP_ID_MAX);
    id [HGP_ID_MAX] = 0;
    hgp_key_t key = s_key (id, id);
    char buf [HGP_KEYSPACE_COUNTER_MAX];
    assert_int_equal (hgp_keyspace_counter (&key, buf, sizeof buf),
                      strlen ("hgp:c:128::") + 2 * HGP_ID_MAX);
    char rec [HGP_KEYSPACE_RECORD_MAX];
    assert_int_equal (hgp_keyspace_record (id, rec, sizeof rec),
                      6 + HGP_ID_MAX);
}

/*  Owner of key among actors[0..n) by highest weight */
static int
s_owner (const char **actors, int n, const hgp_key_t *key)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (hgp_keyspace_weight (actors [i], key)
        >   hgp_keyspace_weight (actors [best], key))
            best = i;
    return best;
}

static void
test_rendezvous_spreads_keys_and_moves_only_the_leavers (void **state)
{
    const char *actors [] = { "a1", "b2", "c3", "d4" };
    int count [4] = { 0 };
    int moved = 0, leaver_keys = 0;
    for (int i = 0; i < 20000; i++) {
        char r [32];
        snprintf (r, sizeof r, "post_%d", i);
        hgp_key_t key = s_key (r, "like");
        int owner4 = s_owner (actors, 4, &key);
        int owner3 = s_owner (actors, 3, &key);   /* d4 left */
        count [owner4]++;
        if (owner4 == 3)
            leaver_keys++;
        else
        if (owner3 != owner4)
            moved++;
    }
    /*  each of 4 actors gets 25% +- 2% */
    for (int i = 0; i < 4; i++)
        assert_in_range (count [i], 4600, 5400);
    /*  keys of the survivors never move */
    assert_int_equal (moved, 0);
    assert_int_equal (leaver_keys, count [3]);
}

static void
test_env_overrides_file_and_bad_numbers_are_reported (void **state)
{
    char name [64];
    assert_string_equal (hgp_config_env_name ("broker/client_endpoint",
                         name, sizeof name), "HGP_BROKER_CLIENT_ENDPOINT");
    const char *path = "/tmp/hgp_test_config.cfg";
    FILE *f = fopen (path, "w");
    assert_non_null (f);
    fprintf (f, "redis\n    url = \"redis://file:1\"\nheartbeat\n    interval = 250\n");
    fclose (f);
    hgp_config_t *config = hgp_config_load (path);
    assert_non_null (config);
    unsetenv ("HGP_REDIS_URL");
    assert_string_equal (hgp_config_str (config, "redis/url", "x"), "redis://file:1");
    setenv ("HGP_REDIS_URL", "redis://env:2", 1);
    assert_string_equal (hgp_config_str (config, "redis/url", "x"), "redis://env:2");
    unsetenv ("HGP_REDIS_URL");
    assert_int_equal (hgp_config_int (config, "heartbeat/interval", 500, 1, 60000), 250);
    assert_int_equal (hgp_config_int (config, "heartbeat/liveness", 4, 1, 100), 4);
    assert_null (hgp_config_error (config));
    setenv ("HGP_HEARTBEAT_INTERVAL", "fast", 1);
    assert_int_equal (hgp_config_int (config, "heartbeat/interval", 500, 1, 60000), 500);
    assert_non_null (strstr (hgp_config_error (config), "HGP_HEARTBEAT_INTERVAL"));
    unsetenv ("HGP_HEARTBEAT_INTERVAL");
    hgp_config_destroy (&config);
    assert_null (config);
    remove (path);
    assert_null (hgp_config_load ("/nonexistent/hgp.cfg"));
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_colon_in_ids_cannot_make_two_keys_collide),
        cmocka_unit_test (test_longest_ids_fit_the_key_buffers),
        cmocka_unit_test (test_rendezvous_spreads_keys_and_moves_only_the_leavers),
        cmocka_unit_test (test_env_overrides_file_and_bad_numbers_are_reported),
    };
    return cmocka_run_group_tests_name ("keyspace+config", tests, NULL, NULL);
}
