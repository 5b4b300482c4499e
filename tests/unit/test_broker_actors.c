/*  test_broker_actors.c - the broker's actor table and routing
 *  (bus/hgp_actors), without sockets
 *
 *  Who owns a key (rendezvous, the same answer as hgp_keyspace gives every
 *  other broker), who serves reads (least loaded, ties rotating), that dead
 *  actors get nothing, and who may register under which certificate.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "hgp_actors.h"
#include "hgp_keyspace.h"

#define KEY_A   "0123456789012345678901234567890123456789"
#define KEY_B   "abcdefghijabcdefghijabcdefghijabcdefghij"

static hgp_actor_t *
s_add (hgp_actors_t *table, const char *identity, const char *service,
       const char *actor_id, const char *key)
{
    hgp_ready_t ready = { .capacity = 8, .batch = true };
    snprintf (ready.service, sizeof ready.service, "%s", service);
    snprintf (ready.actor_id, sizeof ready.actor_id, "%s", actor_id);
    snprintf (ready.cluster, sizeof ready.cluster, "hgp");
    hgp_actor_t *a = hgp_actors_add (table, (const uint8_t *) identity,
                                     strlen (identity), &ready, key, 5000);
    assert_non_null (a);
    return a;
}

static hgp_key_t
s_key (int i)
{
    hgp_key_t key;
    memset (&key, 0, sizeof key);
    snprintf (key.resource_id, sizeof key.resource_id, "post_%d", i);
    snprintf (key.counter_type, sizeof key.counter_type, "like");
    return key;
}

//  The owner by PROTOCOL.md 5.4, computed here from the weights alone
static const char *
s_want_owner (const char **ids, int n, const hgp_key_t *key)
{
    const char *best = NULL;
    uint64_t best_w = 0;
    for (int i = 0; i < n; i++) {
        uint64_t w = hgp_keyspace_weight (ids [i], key);
        if (!best || w > best_w || (w == best_w && strcmp (ids [i], best) < 0)) {
            best = ids [i];
            best_w = w;
        }
    }
    return best;
}

static void
test_services_and_ops_map_to_kinds (void **state)
{
    assert_int_equal (hgp_actors_kind_of_service ("counter"), HGP_KIND_COUNTER);
    assert_int_equal (hgp_actors_kind_of_service ("analytics"),
                      HGP_KIND_ANALYTICS);
    assert_int_equal (hgp_actors_kind_of_service ("echo"), HGP_KIND_OTHER);
    assert_int_equal (hgp_actors_kind_of_op (HGP_OP_INCR), HGP_KIND_COUNTER);
    assert_int_equal (hgp_actors_kind_of_op (HGP_OP_MGET), HGP_KIND_COUNTER);
    assert_int_equal (hgp_actors_kind_of_op (HGP_OP_TOP), HGP_KIND_ANALYTICS);
    assert_string_equal (hgp_actors_service_of_op (HGP_OP_STATS), "analytics");
    assert_string_equal (hgp_actors_service_of_op (HGP_OP_GET), "counter");
}

static void
test_an_incr_goes_to_the_rendezvous_owner_among_live_counters (void **state)
{
    hgp_actors_t *table = hgp_actors_new ();
    assert_null (hgp_actors_owner (table, &(hgp_key_t) { "p", "like" }));
    const char *ids [] = { "counter-a", "counter-b", "counter-c" };
    hgp_actor_t *a [3];
    for (int i = 0; i < 3; i++)
        a [i] = s_add (table, ids [i], "counter", ids [i], "");
    s_add (table, "an-1", "analytics", "analytics-1", "");
    assert_int_equal (hgp_actors_size (table), 4);

    int owned [3] = { 0 };
    for (int k = 0; k < 300; k++) {
        hgp_key_t key = s_key (k);
        hgp_actor_t *owner = hgp_actors_owner (table, &key);
        assert_non_null (owner);
        assert_string_equal (owner->actor_id, s_want_owner (ids, 3, &key));
        for (int i = 0; i < 3; i++)
            owned [i] += owner == a [i];
    }
    for (int i = 0; i < 3; i++)
        assert_true (owned [i] > 50);           //  spread, not one owner

    //  A dead owner gets nothing; only its keys move, to the next weight
    hgp_actors_kill (table, a [1], "silent too long");
    for (int k = 0; k < 300; k++) {
        hgp_key_t key = s_key (k);
        hgp_actor_t *owner = hgp_actors_owner (table, &key);
        assert_ptr_not_equal (owner, a [1]);
        const char *was = s_want_owner (ids, 3, &key);
        const char *live [] = { "counter-a", "counter-c" };
        assert_string_equal (owner->actor_id, s_want_owner (live, 2, &key));
        if (!streq (was, "counter-b"))
            assert_string_equal (owner->actor_id, was);
    }
    hgp_actors_destroy (&table);
    assert_null (table);
}

static void
test_reads_go_to_the_least_loaded_and_ties_rotate (void **state)
{
    hgp_actors_t *table = hgp_actors_new ();
    hgp_actor_t *a = s_add (table, "i-a", "counter", "a", "");
    hgp_actor_t *b = s_add (table, "i-b", "counter", "b", "");
    hgp_actor_t *t = s_add (table, "i-t", "analytics", "t", "");
    s_add (table, "i-x", "echo", "x", "");
    assert_ptr_equal (hgp_actors_reader (table, HGP_KIND_ANALYTICS), t);

    //  Both idle: each gets some of the reads
    int to_a = 0, to_b = 0;
    for (int i = 0; i < 40; i++) {
        hgp_actor_t *r = hgp_actors_reader (table, HGP_KIND_COUNTER);
        to_a += r == a;
        to_b += r == b;
    }
    assert_int_equal (to_a + to_b, 40);
    assert_true (to_a > 0 && to_b > 0);

    //  Load is in flight plus waiting
    a->inflight.size = 2;
    b->queue.size = 1;
    for (int i = 0; i < 10; i++)
        assert_ptr_equal (hgp_actors_reader (table, HGP_KIND_COUNTER), b);
    b->queue.size = 3;
    assert_ptr_equal (hgp_actors_reader (table, HGP_KIND_COUNTER), a);
    hgp_actors_kill (table, a, "disconnected");
    assert_ptr_equal (hgp_actors_reader (table, HGP_KIND_COUNTER), b);
    a->inflight.size = 0;
    b->queue.size = 0;
    hgp_actors_destroy (&table);
}

static void
test_dead_actors_stay_listed_until_removed (void **state)
{
    hgp_actors_t *table = hgp_actors_new ();
    hgp_actor_t *a = s_add (table, "i-a", "counter", "a", "");
    hgp_actor_t *b = s_add (table, "i-b", "counter", "b", "");
    assert_int_equal (hgp_actors_dead (table), 0);
    assert_null (hgp_actors_first_dead (table));
    hgp_actors_kill (table, b, "disconnected");
    hgp_actors_kill (table, b, "silent too long");      //  the first sticks
    assert_string_equal (b->dead, "disconnected");
    assert_int_equal (hgp_actors_dead (table), 1);
    assert_ptr_equal (hgp_actors_first_dead (table), b);
    assert_ptr_equal (hgp_actors_lookup (table, (const uint8_t *) "i-b", 3), b);

    hgp_actors_remove (table, b);
    hgp_actor_destroy (&b);
    assert_null (b);
    assert_int_equal (hgp_actors_dead (table), 0);
    assert_int_equal (hgp_actors_size (table), 1);
    assert_ptr_equal (hgp_actors_at (table, 0), a);
    assert_null (hgp_actors_lookup (table, (const uint8_t *) "i-b", 3));
    assert_null (hgp_actors_lookup (table, (const uint8_t *) "i-a", 2));
    assert_ptr_equal (hgp_actors_lookup (table, (const uint8_t *) "i-a", 3), a);
    assert_ptr_equal (hgp_actors_named (table, "a"), a);
    assert_null (hgp_actors_named (table, "b"));

    //  The table grows past its first allocation and keeps join order
    for (int i = 0; i < 40; i++) {
        char id [16];
        snprintf (id, sizeof id, "c%02d", i);
        s_add (table, id, "counter", id, "");
    }
    assert_int_equal (hgp_actors_size (table), 41);
    assert_string_equal (hgp_actors_at (table, 40)->actor_id, "c39");
    hgp_actors_destroy (&table);
}

static void
test_an_actor_id_is_bound_to_its_certificate_and_cluster (void **state)
{
    hgp_actors_t *table = hgp_actors_new ();
    hgp_actor_t *a = s_add (table, "i-a", "counter", "counter-1", KEY_A);
    hgp_ready_t ready = { .capacity = 8 };
    strcpy (ready.service, "counter");
    strcpy (ready.actor_id, "counter-1");
    strcpy (ready.cluster, "hgp");

    //  The same connection again, or the same id and certificate from a
    //  new connection (a reconnect): allowed
    assert_null (hgp_actors_check (table, a, &ready, KEY_A, "hgp"));
    assert_null (hgp_actors_check (table, NULL, &ready, KEY_A, "hgp"));

    //  Another certificate cannot take the id over
    char *why = hgp_actors_check (table, NULL, &ready, KEY_B, "hgp");
    assert_non_null (why);
    assert_string_equal (why, "actor id counter-1 is registered under"
                              " another certificate");
    zstr_free (&why);
    //  A registered connection cannot change certificate, under any id
    strcpy (ready.actor_id, "counter-2");
    why = hgp_actors_check (table, a, &ready, KEY_B, "hgp");
    assert_string_equal (why, "actor counter-1 changed certificate");
    zstr_free (&why);
    //  A new id under a new certificate is fine
    assert_null (hgp_actors_check (table, NULL, &ready, KEY_B, "hgp"));
    //  Another cluster is refused first, whoever it is
    strcpy (ready.cluster, "other");
    why = hgp_actors_check (table, a, &ready, KEY_A, "hgp");
    assert_string_equal (why, "actor counter-2 (counter) is of cluster"
                              " 'other', this broker serves 'hgp'"
                              " (bus/cluster)");
    zstr_free (&why);
    assert_string_equal (a->key, KEY_A);
    assert_int_equal (a->kind, HGP_KIND_COUNTER);
    assert_int_equal (a->capacity, 8);
    assert_true (a->batch);
    assert_int_equal (a->last_heard, 5000);
    hgp_actors_destroy (&table);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_services_and_ops_map_to_kinds),
        cmocka_unit_test (test_an_incr_goes_to_the_rendezvous_owner_among_live_counters),
        cmocka_unit_test (test_reads_go_to_the_least_loaded_and_ties_rotate),
        cmocka_unit_test (test_dead_actors_stay_listed_until_removed),
        cmocka_unit_test (test_an_actor_id_is_bound_to_its_certificate_and_cluster),
    };
    return cmocka_run_group_tests_name ("broker actors", tests, NULL, NULL);
}
