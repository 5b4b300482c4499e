/*  test_broker_entries.c - the broker's entry pool, deadline wheel and
 *  entry life cycle (bus/hgp_entries), without sockets
 *
 *  The life cycle table is checked move by move against the one the
 *  broker's invariants need (hgp_entries.h); the wheel with made-up clocks,
 *  so deadlines of a minute and stalls longer than the wheel run at once.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "hgp_entries.h"
#include "hgp_codec.h"

#define T0      1000000         /* a monotonic clock, ms */

static hgp_entry_t *
s_take (hgp_entries_t *pool, const char *id, int64_t deadline)
{
    const uint8_t ident [5] = { 0, 1, 2, 3, 4 };
    const uint8_t body [3] = { 0x81, 0xa1, 0x78 };
    return hgp_entries_take (pool, ident, sizeof ident, id, body, sizeof body,
                             HGP_OP_INCR, deadline, false);
}

static void
test_the_life_cycle_allows_only_its_moves (void **state)
{
    //  Row: from; column: to (free, loose, queued, inflight, orphan)
    static const bool want [HGP_ENTRY_STATES][HGP_ENTRY_STATES] = {
        /* free     */ { 0, 1, 0, 0, 0 },
        /* loose    */ { 1, 0, 1, 0, 0 },
        /* queued   */ { 1, 1, 0, 1, 0 },
        /* inflight */ { 1, 1, 0, 0, 1 },
        /* orphan   */ { 1, 0, 0, 0, 0 },
    };
    for (int from = 0; from < HGP_ENTRY_STATES; from++)
        for (int to = 0; to < HGP_ENTRY_STATES; to++) {
            bool can = hgp_entry_state_can_move ((hgp_entry_state_t) from,
                                                 (hgp_entry_state_t) to);
            if (can != want [from][to])
                fail_msg ("%s -> %s: %s, want %s",
                          hgp_entry_state_name ((hgp_entry_state_t) from),
                          hgp_entry_state_name ((hgp_entry_state_t) to),
                          can ? "allowed" : "refused",
                          want [from][to] ? "allowed" : "refused");
        }
}

static void
test_an_entry_holds_its_request_and_goes_back_to_the_pool (void **state)
{
    hgp_entries_t *pool = hgp_entries_new (T0);
    assert_non_null (pool);
    hgp_entry_t *e = s_take (pool, "req-1", T0 + 2000);
    assert_non_null (e);
    assert_int_equal (e->state, HGP_ENTRY_LOOSE);
    assert_int_equal (e->ident_size, 5);
    assert_int_equal (e->body_size, 3);
    assert_int_equal (hgp_entry_ident (e) [4], 4);
    assert_int_equal (hgp_entry_body (e) [0], 0x81);
    char id [HGP_ID_MAX + 1];
    hgp_entry_id (e, id);
    assert_string_equal (id, "req-1");
    assert_int_equal (hgp_entries_size (pool), 1);
    assert_int_equal (hgp_entries_held (pool), 5 + 5 + 3);
    assert_false (e->dispatched);

    hgp_entries_move (pool, e, HGP_ENTRY_FREE);
    assert_int_equal (hgp_entries_size (pool), 0);
    assert_int_equal (hgp_entries_held (pool), 0);
    //  The freed slot is the next one taken: low slots first, reused
    hgp_entry_t *again = s_take (pool, "req-2", T0 + 2000);
    assert_ptr_equal (again, e);
    hgp_entry_id (again, id);
    assert_string_equal (id, "req-2");
    hgp_entries_move (pool, again, HGP_ENTRY_FREE);
    hgp_entries_destroy (&pool);
    assert_null (pool);
}

static void
test_a_token_names_one_dispatch (void **state)
{
    hgp_entries_t *pool = hgp_entries_new (T0);
    hgp_entry_list_t queue = { 0 }, inflight = { 0 };
    hgp_entry_t *e = s_take (pool, "r", T0 + 2000);
    hgp_entries_move (pool, e, HGP_ENTRY_QUEUED);
    hgp_entry_list_push (&queue, e);
    assert_null (hgp_entries_lookup (pool, 0));

    //  A token minted for a send that failed matches nothing: still queued
    uint64_t unsent = hgp_entries_mint (pool, e);
    assert_null (hgp_entries_lookup (pool, unsent));

    hgp_entry_list_remove (e);
    uint64_t first = hgp_entries_mint (pool, e);
    assert_int_not_equal (first, unsent);
    hgp_entries_move (pool, e, HGP_ENTRY_INFLIGHT);
    hgp_entry_list_push (&inflight, e);
    assert_true (e->dispatched);
    assert_ptr_equal (hgp_entries_lookup (pool, first), e);
    assert_ptr_equal (e->list, &inflight);
    //  Bogus tokens: a slot the pool never had, a wrong sequence
    assert_null (hgp_entries_lookup (pool, first + (1u << 23)));
    assert_null (hgp_entries_lookup (pool, first ^ ((uint64_t) 1 << 40)));

    //  Its actor died: routed again, dispatched again. The old token is
    //  stale (a late REPLY from the dead actor must not match).
    hgp_entry_list_remove (e);
    hgp_entries_move (pool, e, HGP_ENTRY_LOOSE);
    assert_int_equal (e->token, 0);
    assert_null (hgp_entries_lookup (pool, first));
    hgp_entries_move (pool, e, HGP_ENTRY_QUEUED);
    uint64_t second = hgp_entries_mint (pool, e);
    hgp_entries_move (pool, e, HGP_ENTRY_INFLIGHT);
    hgp_entry_list_push (&inflight, e);
    assert_null (hgp_entries_lookup (pool, first));
    assert_ptr_equal (hgp_entries_lookup (pool, second), e);

    //  An orphan (its client had a 504) still matches: its REPLY frees it
    hgp_entries_move (pool, e, HGP_ENTRY_ORPHAN);
    assert_ptr_equal (hgp_entries_lookup (pool, second), e);
    assert_ptr_equal (e->list, &inflight);
    hgp_entry_list_remove (e);
    hgp_entries_move (pool, e, HGP_ENTRY_FREE);
    assert_null (hgp_entries_lookup (pool, second));
    hgp_entries_destroy (&pool);
}

static void
test_lists_keep_order_count_and_bytes (void **state)
{
    hgp_entries_t *pool = hgp_entries_new (T0);
    hgp_entry_list_t list = { 0 };
    hgp_entry_t *a = s_take (pool, "a", T0 + 100);
    hgp_entry_t *b = s_take (pool, "b", T0 + 100);
    hgp_entry_t *c = s_take (pool, "c", T0 + 100);
    hgp_entry_list_push (&list, a);
    hgp_entry_list_push (&list, b);
    hgp_entry_list_push_front (&list, c);
    assert_int_equal (list.size, 3);
    assert_int_equal (list.bytes, 9);
    hgp_entry_list_remove (a);                  //  the tail
    assert_ptr_equal (list.tail, b);
    assert_ptr_equal (hgp_entry_list_pop (&list), c);
    assert_ptr_equal (hgp_entry_list_pop (&list), b);
    assert_null (hgp_entry_list_pop (&list));
    assert_int_equal (list.size, 0);
    assert_int_equal (list.bytes, 0);
    assert_null (list.head);
    assert_null (b->list);
    hgp_entries_move (pool, a, HGP_ENTRY_FREE);
    hgp_entries_move (pool, b, HGP_ENTRY_FREE);
    hgp_entries_move (pool, c, HGP_ENTRY_FREE);
    hgp_entries_destroy (&pool);
}

/*  The broker's expiry action in small: a queued entry is let go, one in
    flight becomes an orphan */
typedef struct {
    hgp_entries_t *pool;
    int expired;
    char ids [64];
} s_expiry_t;

static void
s_expire (hgp_entry_t *e, void *arg)
{
    s_expiry_t *x = (s_expiry_t *) arg;
    char id [HGP_ID_MAX + 1];
    hgp_entry_id (e, id);
    strcat (x->ids, id);
    x->expired++;
    if (e->state == HGP_ENTRY_INFLIGHT)
        hgp_entries_move (x->pool, e, HGP_ENTRY_ORPHAN);
    else {
        if (e->list)
            hgp_entry_list_remove (e);
        hgp_entries_move (x->pool, e, HGP_ENTRY_FREE);
    }
}

static void
test_the_wheel_expires_each_deadline_once_within_a_tick (void **state)
{
    hgp_entries_t *pool = hgp_entries_new (T0);
    s_expiry_t x = { pool, 0, "" };
    hgp_entry_list_t queue = { 0 }, inflight = { 0 };
    hgp_entry_t *a = s_take (pool, "a", T0 + 100);
    hgp_entry_t *b = s_take (pool, "b", T0 + 100);
    hgp_entry_t *c = s_take (pool, "c", T0 + 60000);    //  HGP_TIMEOUT_MAX
    hgp_entries_move (pool, a, HGP_ENTRY_QUEUED);
    hgp_entry_list_push (&queue, a);
    hgp_entries_move (pool, b, HGP_ENTRY_QUEUED);
    hgp_entries_mint (pool, b);
    hgp_entries_move (pool, b, HGP_ENTRY_INFLIGHT);
    hgp_entry_list_push (&inflight, b);

    hgp_entries_expire (pool, T0 + 99, s_expire, &x);
    assert_int_equal (x.expired, 0);
    //  Due, but its tick is not wholly past yet: at most 16 ms late
    hgp_entries_expire (pool, T0 + 100, s_expire, &x);
    hgp_entries_expire (pool, T0 + 100 + 32, s_expire, &x);
    assert_int_equal (x.expired, 2);
    assert_string_equal (x.ids, "ba");          //  a bucket is a stack
    assert_int_equal (queue.size, 0);
    assert_int_equal (b->state, HGP_ENTRY_ORPHAN);
    assert_int_equal (inflight.size, 1);        //  still counts on its actor
    //  Never twice, even once the clock has gone round the wheel
    hgp_entries_expire (pool, T0 + 59000, s_expire, &x);
    assert_int_equal (x.expired, 2);
    hgp_entries_expire (pool, T0 + 60000 + 32, s_expire, &x);
    assert_int_equal (x.expired, 3);
    assert_int_equal (hgp_entries_size (pool), 1);     //  the orphan
    hgp_entry_list_remove (b);
    hgp_entries_move (pool, b, HGP_ENTRY_FREE);
    (void) c;
    hgp_entries_destroy (&pool);
}

static void
test_the_wheel_survives_a_stall_and_past_deadlines (void **state)
{
    hgp_entries_t *pool = hgp_entries_new (T0);
    s_expiry_t x = { pool, 0, "" };
    //  Already due when taken: expired on the next run, not lost
    s_take (pool, "p", T0 - 500);
    hgp_entries_expire (pool, T0 + 16, s_expire, &x);
    assert_int_equal (x.expired, 1);

    //  A deadline 30 s out, then a stall of 100 s (more than a wheel turn):
    //  the run after the stall expires it, and a fresh one is not expired
    //  early by the buckets it skipped
    s_take (pool, "s", T0 + 30000);
    hgp_entries_expire (pool, T0 + 100000, s_expire, &x);
    assert_int_equal (x.expired, 2);
    assert_string_equal (x.ids, "ps");
    s_take (pool, "n", T0 + 100000 + 5000);
    hgp_entries_expire (pool, T0 + 100000 + 4000, s_expire, &x);
    assert_int_equal (x.expired, 2);
    hgp_entries_expire (pool, T0 + 100000 + 5032, s_expire, &x);
    assert_int_equal (x.expired, 3);
    assert_int_equal (hgp_entries_size (pool), 0);
    hgp_entries_destroy (&pool);
}

static void
test_the_pool_grows_past_a_chunk_and_keeps_pointers (void **state)
{
    hgp_entries_t *pool = hgp_entries_new (T0);
    enum { N = 3000 };          //  three chunks of 1024
    static hgp_entry_t *e [N];
    for (int i = 0; i < N; i++) {
        char id [16];
        snprintf (id, sizeof id, "r%d", i);
        e [i] = s_take (pool, id, T0 + 1000 + i);
        assert_non_null (e [i]);
        assert_int_equal (e [i]->slot, i);
    }
    assert_int_equal (hgp_entries_size (pool), N);
    for (int i = 0; i < N; i++) {
        char id [16], want [16];
        snprintf (want, sizeof want, "r%d", i);
        hgp_entry_id (e [i], id);
        assert_string_equal (id, want);
    }
    //  A large body is held, then its buffer let go on release
    static uint8_t big [HGP_BODY_MAX];
    hgp_entry_t *large = hgp_entries_take (pool, (const uint8_t *) "x", 1,
                                           "big", big, sizeof big,
                                           HGP_OP_MGET, T0 + 1000, false);
    assert_non_null (large);
    assert_true (hgp_entries_held (pool) > sizeof big);
    hgp_entries_move (pool, large, HGP_ENTRY_FREE);
    assert_null (large->data);
    for (int i = 0; i < N; i++)
        hgp_entries_move (pool, e [i], HGP_ENTRY_FREE);
    assert_int_equal (hgp_entries_held (pool), 0);
    hgp_entries_destroy (&pool);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_the_life_cycle_allows_only_its_moves),
        cmocka_unit_test (test_an_entry_holds_its_request_and_goes_back_to_the_pool),
        cmocka_unit_test (test_a_token_names_one_dispatch),
        cmocka_unit_test (test_lists_keep_order_count_and_bytes),
        cmocka_unit_test (test_the_wheel_expires_each_deadline_once_within_a_tick),
        cmocka_unit_test (test_the_wheel_survives_a_stall_and_past_deadlines),
        cmocka_unit_test (test_the_pool_grows_past_a_chunk_and_keeps_pointers),
    };
    return cmocka_run_group_tests_name ("broker entries", tests, NULL, NULL);
}
