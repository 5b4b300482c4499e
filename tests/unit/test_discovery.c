/*  test_discovery.c - the broker table of hgp_discovery: who joins, who is
 *  evasive, who leaves and why, and that a config without a usable
 *  interface never beacons.
 *
 *  No network: beacons are fed in with the actor's BEACON command, exactly
 *  as zbeacon would hand them over. The interval is 20 ms so the timers
 *  (evasive at 4 intervals, expired at 8) run in a fraction of a second.
 *  Real beacons over a veth pair are tests/integration/test_discovery.py.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "hgp_discovery.h"
#include "hgp_codec.h"

#define ID_A "0123456789abcdef0123456789abcdef"
#define ID_B "fedcba9876543210fedcba9876543210"

static hgp_config_t *
s_config (const char *interface)
{
    setenv ("HGP_DISCOVERY_INTERFACE", interface, 1);
    setenv ("HGP_DISCOVERY_INTERVAL", "20", 1);
    setenv ("HGP_BUS_CURVE", "0", 1);       //  beacons below carry no key
    setenv ("HGP_BROKER_CLIENT_ENDPOINT", "tcp://127.0.0.1:7001", 1);
    setenv ("HGP_BROKER_ACTOR_ENDPOINT", "tcp://127.0.0.1:7002", 1);
    hgp_config_t *config = hgp_config_load (NULL);
    assert_non_null (config);
    return config;
}

static zactor_t *
s_listener (const char *interface, const char *want_mode)
{
    hgp_config_t *config = s_config (interface);
    zactor_t *discovery = zactor_new (hgp_discovery_actor, config);
    hgp_config_destroy (&config);
    assert_non_null (discovery);
    zstr_send (discovery, "MODE");
    char *mode = zstr_recv (discovery);
    assert_string_equal (mode, want_mode);
    zstr_free (&mode);
    zstr_sendx (discovery, "LISTEN", "quiet", NULL);
    zsock_set_rcvtimeo (discovery, 2000);
    return discovery;
}

static void
s_inject (zactor_t *discovery, const char *address, hgp_beacon_state_t state,
          const char *id, uint16_t client_port, uint16_t actor_port)
{
    hgp_beacon_t beacon = { state, "", client_port, actor_port, { 0 },
                            "hgp" };
    snprintf (beacon.broker_id, sizeof beacon.broker_id, "%s", id);
    uint8_t wire [HGP_BEACON_MAX];
    int size = hgp_beacon_encode (&beacon, wire, sizeof wire);
    assert_int_equal (size, HGP_BEACON_FIXED + 3);
    zsock_send (discovery, "ssb", "BEACON", address, wire, (size_t) size);
}

static void
s_expect (zactor_t *discovery, const char *kind, const char *id,
          const char *detail)
{
    hgp_discovery_event_t event;
    assert_int_equal (hgp_discovery_event_recv (discovery, &event), 0);
    assert_string_equal (event.kind, kind);
    assert_string_equal (event.broker_id, id);
    if (streq (kind, "JOIN"))
        assert_string_equal (event.client_endpoint, detail);
    if (streq (kind, "LEAVE"))
        assert_string_equal (event.reason, detail);
}

static void
s_expect_nothing (zactor_t *discovery, int ms)
{
    zsock_set_rcvtimeo (discovery, ms);
    zmsg_t *msg = zmsg_recv (discovery);
    if (msg) {
        char *kind = zmsg_popstr (msg);
        fail_msg ("unexpected event %s", kind);
    }
    zsock_set_rcvtimeo (discovery, 2000);
}

static void
test_no_interface_means_static_endpoints_and_no_beacon (void **state)
{
    zactor_t *discovery = s_listener ("", "static");
    hgp_discovery_event_t event;
    assert_int_equal (hgp_discovery_event_recv (discovery, &event), 0);
    assert_string_equal (event.kind, "JOIN");
    assert_string_equal (event.broker_id, HGP_DISCOVERY_STATIC_ID);
    assert_string_equal (event.client_endpoint, "tcp://127.0.0.1:7001");
    assert_string_equal (event.actor_endpoint, "tcp://127.0.0.1:7002");
    //  The static broker never expires
    s_expect_nothing (discovery, 250);
    zactor_destroy (&discovery);
}

static void
test_loopback_or_missing_interface_falls_back_to_static (void **state)
{
    const char *interfaces [] = { "lo", "hgp-no-such0", NULL };
    for (int i = 0; interfaces [i]; i++) {
        zactor_t *discovery = s_listener (interfaces [i], "static");
        s_expect (discovery, "JOIN", HGP_DISCOVERY_STATIC_ID,
                  "tcp://127.0.0.1:7001");
        zactor_destroy (&discovery);
    }
}

static void
test_a_silent_broker_is_evasive_then_expires (void **state)
{
    zactor_t *discovery = s_listener ("", "static");
    s_expect (discovery, "JOIN", HGP_DISCOVERY_STATIC_ID,
              "tcp://127.0.0.1:7001");
    s_inject (discovery, "10.77.0.1", HGP_BEACON_ALIVE, ID_A, 5555, 5556);
    int64_t heard = zclock_mono ();
    s_expect (discovery, "JOIN", ID_A, "tcp://10.77.0.1:5555");
    //  Beacons within the interval keep it quiet
    for (int i = 0; i < 5; i++) {
        zclock_sleep (20);
        s_inject (discovery, "10.77.0.1", HGP_BEACON_ALIVE, ID_A, 5555, 5556);
        heard = zclock_mono ();
    }
    s_expect (discovery, "EVASIVE", ID_A, NULL);
    assert_true (zclock_mono () - heard >= 4 * 20);
    //  One beacon brings it back, silence takes it away for good
    s_inject (discovery, "10.77.0.1", HGP_BEACON_ALIVE, ID_A, 5555, 5556);
    heard = zclock_mono ();
    s_expect (discovery, "ALIVE", ID_A, NULL);
    s_expect (discovery, "EVASIVE", ID_A, NULL);
    s_expect (discovery, "LEAVE", ID_A, "expired");
    //  Never before 8 intervals; the upper bound only says "it does
    //  expire", with room for a loaded machine under the sanitizers
    int64_t silent = zclock_mono () - heard;
    assert_true (silent >= 8 * 20 && silent < 8 * 20 + 1500);
    //  An id that left does not come back (a late or reordered beacon)
    s_inject (discovery, "10.77.0.1", HGP_BEACON_ALIVE, ID_A, 5555, 5556);
    s_expect_nothing (discovery, 60);
    zactor_destroy (&discovery);
}

static void
test_leaving_replaced_and_moved_brokers (void **state)
{
    zactor_t *discovery = s_listener ("", "static");
    s_expect (discovery, "JOIN", HGP_DISCOVERY_STATIC_ID,
              "tcp://127.0.0.1:7001");
    //  A clean stop is a LEAVE at once, not after the expiry
    s_inject (discovery, "10.77.0.2", HGP_BEACON_ALIVE, ID_A, 6000, 6001);
    s_expect (discovery, "JOIN", ID_A, "tcp://10.77.0.2:6000");
    s_inject (discovery, "10.77.0.2", HGP_BEACON_LEAVING, ID_A, 6000, 6001);
    s_expect (discovery, "LEAVE", ID_A, "left");
    //  Repeated leaving beacons say nothing more
    s_inject (discovery, "10.77.0.2", HGP_BEACON_LEAVING, ID_A, 6000, 6001);

    //  A new broker on the same port: the old one is gone
    s_inject (discovery, "10.77.0.3", HGP_BEACON_ALIVE, ID_A "", 6100, 6101);
    s_expect_nothing (discovery, 10);               //  ID_A left already
    s_inject (discovery, "10.77.0.3", HGP_BEACON_ALIVE, ID_B, 6100, 6101);
    s_expect (discovery, "JOIN", ID_B, "tcp://10.77.0.3:6100");
    s_inject (discovery, "10.77.0.3", HGP_BEACON_ALIVE,
              "00000000000000000000000000000001", 6100, 6200);
    s_expect (discovery, "LEAVE", ID_B, "replaced");
    s_expect (discovery, "JOIN", "00000000000000000000000000000001",
              "tcp://10.77.0.3:6100");

    //  The same broker at another address: LEAVE moved, then JOIN
    s_inject (discovery, "10.77.0.4", HGP_BEACON_ALIVE,
              "00000000000000000000000000000001", 6100, 6200);
    s_expect (discovery, "LEAVE", "00000000000000000000000000000001",
              "moved");
    s_expect (discovery, "JOIN", "00000000000000000000000000000001",
              "tcp://10.77.0.4:6100");

    //  BROKERS lists the static broker and the live one
    zstr_send (discovery, "BROKERS");
    zmsg_t *reply = zmsg_recv (discovery);
    assert_non_null (reply);
    char *head = zmsg_popstr (reply);
    char *count = zmsg_popstr (reply);
    assert_string_equal (head, "BROKERS");
    assert_string_equal (count, "2");
    assert_int_equal (zmsg_size (reply), 10);
    zstr_free (&head);
    zstr_free (&count);
    zmsg_destroy (&reply);
    zactor_destroy (&discovery);
}

static void
test_junk_on_the_port_is_ignored (void **state)
{
    zactor_t *discovery = s_listener ("", "static");
    s_expect (discovery, "JOIN", HGP_DISCOVERY_STATIC_ID,
              "tcp://127.0.0.1:7001");
    const char *junk [] = { "HGPB", "HGPB\x02xxxxxxxxxxxxxxxxxxxxx", "ZRE\x01",
                            NULL };
    for (int i = 0; junk [i]; i++)
        zsock_send (discovery, "ssb", "BEACON", "10.77.0.9", junk [i],
                    strlen (junk [i]));
    s_expect_nothing (discovery, 60);
    zactor_destroy (&discovery);
}

static void
test_bad_discovery_settings_are_reported (void **state)
{
    hgp_config_t *config = s_config ("");
    setenv ("HGP_DISCOVERY_PORT", "70000", 1);
    char *error = hgp_discovery_config_check (config);
    assert_non_null (error);
    assert_non_null (strstr (error, "discovery/port"));
    free (error);
    unsetenv ("HGP_DISCOVERY_PORT");
    hgp_config_destroy (&config);
}

//  A subscriber as hgp_client_new_shared makes one (hgp_discovery.h)
static zsock_t *
s_subscriber (const char *endpoint, const char *topic)
{
    zsock_t *sub = zsock_new (ZMQ_SUB);
    assert_non_null (sub);
    zsock_set_rcvtimeo (sub, 2000);
    const char *kinds [] = { "JOIN", "EVASIVE", "ALIVE", "LEAVE", NULL };
    for (int i = 0; kinds [i]; i++)
        zsock_set_subscribe (sub, kinds [i]);
    assert_int_equal (zsock_connect (sub, "%s", endpoint), 0);
    zsock_set_subscribe (sub, topic);
    return sub;
}

//  The next event on sub, without the snapshot topic if it has one
static void
s_sub_expect (zsock_t *sub, const char *topic, const char *kind,
              const char *id)
{
    zmsg_t *msg = zmsg_recv (sub);
    assert_non_null (msg);
    if (topic) {
        char *head = zmsg_popstr (msg);
        assert_string_equal (head, topic);
        zstr_free (&head);
    }
    hgp_discovery_event_t event;
    assert_int_equal (hgp_discovery_event_parse (msg, &event), 0);
    assert_string_equal (event.kind, kind);
    assert_string_equal (event.broker_id, id);
    zmsg_destroy (&msg);
}

static void
test_events_reach_every_subscriber_after_its_snapshot (void **state)
{
    hgp_config_t *config = s_config ("");
    zactor_t *discovery = zactor_new (hgp_discovery_actor, config);
    hgp_config_destroy (&config);
    zsock_send (discovery, "ss", "EVENTS", "inproc://test-discovery-events");
    assert_int_equal (zsock_wait (discovery), 0);

    //  The first subscriber gets the table as it is: the static broker
    zsock_t *one = s_subscriber ("inproc://test-discovery-events",
                                 "@0000000000000001");
    s_sub_expect (one, "@0000000000000001", "JOIN", HGP_DISCOVERY_STATIC_ID);
    s_inject (discovery, "10.77.0.1", HGP_BEACON_ALIVE, ID_A, 5555, 5556);
    s_sub_expect (one, NULL, "JOIN", ID_A);

    //  A later one gets both in its snapshot, and nobody else gets that
    zsock_t *two = s_subscriber ("inproc://test-discovery-events",
                                 "@0000000000000002");
    s_sub_expect (two, "@0000000000000002", "JOIN", HGP_DISCOVERY_STATIC_ID);
    s_sub_expect (two, "@0000000000000002", "JOIN", ID_A);
    s_sub_expect (two, "@0000000000000002", "ALIVE", ID_A);

    //  Then events go to both, in order
    s_inject (discovery, "10.77.0.1", HGP_BEACON_LEAVING, ID_A, 5555, 5556);
    s_sub_expect (one, NULL, "LEAVE", ID_A);
    s_sub_expect (two, NULL, "LEAVE", ID_A);
    zsock_set_rcvtimeo (one, 100);
    zmsg_t *extra = zmsg_recv (one);
    assert_null (extra);

    zsock_destroy (&one);
    zsock_destroy (&two);
    zactor_destroy (&discovery);
}

//  A beacon of another cluster, or with a CURVE key when we run without
//  CURVE, is not a broker for us (PROTOCOL.md 9.1); ours still is
static void
test_foreign_and_untrusted_beacons_are_ignored (void **state)
{
    zactor_t *discovery = s_listener ("", "static");
    s_expect (discovery, "JOIN", HGP_DISCOVERY_STATIC_ID,
              "tcp://127.0.0.1:7001");
    hgp_beacon_t beacon = { HGP_BEACON_ALIVE, ID_A, 5555, 5556, { 0 },
                            "other" };
    uint8_t wire [HGP_BEACON_MAX];
    int size = hgp_beacon_encode (&beacon, wire, sizeof wire);
    zsock_send (discovery, "ssb", "BEACON", "10.77.0.1", wire, (size_t) size);
    strcpy (beacon.cluster, "hgp");
    beacon.public_key [0] = 1;          //  a key: a CURVE broker
    size = hgp_beacon_encode (&beacon, wire, sizeof wire);
    zsock_send (discovery, "ssb", "BEACON", "10.77.0.1", wire, (size_t) size);
    s_expect_nothing (discovery, 60);
    s_inject (discovery, "10.77.0.1", HGP_BEACON_ALIVE, ID_A, 5555, 5556);
    s_expect (discovery, "JOIN", ID_A, "tcp://10.77.0.1:5555");
    zactor_destroy (&discovery);
}

//  A broker that beacons binds its ports where peers connect, and never
//  beacons an address it does not listen on
static void
test_a_beaconing_broker_binds_what_it_beacons (void **state)
{
    char *error = NULL;
    char *bind = hgp_discovery_bind_endpoint ("tcp://127.0.0.1:5555",
                                              "10.77.0.1", "s", &error);
    assert_string_equal (bind, "tcp://10.77.0.1:5555");
    free (bind);
    bind = hgp_discovery_bind_endpoint ("tcp://127.0.0.1:*", "10.77.0.1",
                                        "s", &error);
    assert_string_equal (bind, "tcp://10.77.0.1:*");
    free (bind);
    bind = hgp_discovery_bind_endpoint ("tcp://*:5556", "10.77.0.1", "s",
                                        &error);
    assert_string_equal (bind, "tcp://*:5556");
    free (bind);
    bind = hgp_discovery_bind_endpoint ("tcp://127.0.0.1:5556", "*", "s",
                                        &error);
    assert_string_equal (bind, "tcp://*:5556");
    free (bind);
    assert_null (error);
    bind = hgp_discovery_bind_endpoint ("ipc:///tmp/x", "10.77.0.1",
                                        "broker/actor_endpoint", &error);
    assert_null (bind);
    assert_non_null (strstr (error, "TCP ports only"));
    zstr_free (&error);

    assert_int_equal (hgp_discovery_bound_check ("tcp://10.77.0.1:5555",
                                                 "10.77.0.1", "s", &error), 0);
    assert_int_equal (hgp_discovery_bound_check ("tcp://0.0.0.0:5555",
                                                 "10.77.0.1", "s", &error), 0);
    assert_int_equal (hgp_discovery_bound_check ("tcp://0.0.0.0:5555", "*",
                                                 "s", &error), 0);
    assert_null (error);
    assert_int_equal (hgp_discovery_bound_check ("tcp://127.0.0.1:5555",
                                                 "10.77.0.1",
                                                 "broker/client_endpoint",
                                                 &error), -1);
    assert_non_null (strstr (error, "connect to 10.77.0.1:5555, where nothing"
                                    " listens"));
    zstr_free (&error);
    assert_int_equal (hgp_discovery_bound_check ("tcp://10.77.0.1:5555", "*",
                                                 "s", &error), -1);
    zstr_free (&error);
}

int
main (void)
{
    zsys_init ();
    zsys_set_logstream (stdout);
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_no_interface_means_static_endpoints_and_no_beacon),
        cmocka_unit_test (test_loopback_or_missing_interface_falls_back_to_static),
        cmocka_unit_test (test_a_silent_broker_is_evasive_then_expires),
        cmocka_unit_test (test_leaving_replaced_and_moved_brokers),
        cmocka_unit_test (test_junk_on_the_port_is_ignored),
        cmocka_unit_test (test_foreign_and_untrusted_beacons_are_ignored),
        cmocka_unit_test (test_bad_discovery_settings_are_reported),
        cmocka_unit_test (test_events_reach_every_subscriber_after_its_snapshot),
        cmocka_unit_test (test_a_beaconing_broker_binds_what_it_beacons),
    };
    return cmocka_run_group_tests_name ("discovery", tests, NULL, NULL);
}
