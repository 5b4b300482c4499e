/*  test_broker_loop.c - the broker's loop (bus/hgp_broker) with a client
 *  and a hand-made actor on loopback, in one process
 *
 *  What was `hgp-broker --selftest`: each test starts a broker actor on
 *  ephemeral ports (plain sockets, queue limit 1, heartbeat 100 ms x 10)
 *  and speaks PROTOCOL.md sections 4-5 to it with CZMQ frames built here,
 *  not with lib/hgp_client or lib/hgp_worker. The full stack (real actors,
 *  Redis, CURVE) is tests/integration.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "hgp_broker.h"
#include "hgp_codec.h"

typedef struct {
    zactor_t *broker;
    char *client_ep;
    char *actor_ep;
    zsock_t *client;
} s_bus_t;

static int
s_setup (void **state)
{
    setenv ("HGP_BROKER_CLIENT_ENDPOINT", "tcp://127.0.0.1:*", 1);
    setenv ("HGP_BROKER_ACTOR_ENDPOINT", "tcp://127.0.0.1:*", 1);
    setenv ("HGP_BROKER_QUEUE_LIMIT", "1", 1);
    setenv ("HGP_HEARTBEAT_INTERVAL", "100", 1);
    setenv ("HGP_HEARTBEAT_LIVENESS", "10", 1);
    setenv ("HGP_BUS_CURVE", "0", 1);       //  plain sockets below
    hgp_config_t *config = hgp_config_load (NULL);
    assert_non_null (config);
    s_bus_t *bus = (s_bus_t *) zmalloc (sizeof (s_bus_t));
    bus->broker = zactor_new (hgp_broker_actor, config);
    assert_non_null (bus->broker);
    hgp_config_destroy (&config);
    zstr_send (bus->broker, "STATUS");
    char *status = zstr_recv (bus->broker);
    assert_string_equal (status, "OK");
    zstr_free (&status);
    zstr_send (bus->broker, "ENDPOINTS");
    zstr_recvx (bus->broker, &bus->client_ep, &bus->actor_ep, NULL);
    bus->client = zsock_new_dealer (bus->client_ep);
    assert_non_null (bus->client);
    zsock_set_rcvtimeo (bus->client, 3000);
    *state = bus;
    return 0;
}

static int
s_teardown (void **state)
{
    s_bus_t *bus = (s_bus_t *) *state;
    zsock_destroy (&bus->client);
    zstr_free (&bus->client_ep);
    zstr_free (&bus->actor_ep);
    zactor_destroy (&bus->broker);
    free (bus);
    return 0;
}

static void
s_send_request (zsock_t *client, hgp_op_t op, const char *id,
                const char *resource)
{
    hgp_request_t req;
    hgp_request_init (&req);
    req.op = op;
    strcpy (req.id, id);
    strcpy (req.key.resource_id, resource);
    strcpy (req.key.counter_type, "like");
    req.delta = 1;
    req.timeout_ms = 2000;
    hgp_buf_t buf = { NULL, 0, 0 };
    assert_int_equal (hgp_request_encode (&req, &buf), 0);
    zframe_t *body = zframe_new (buf.data, buf.size);
    zsock_send (client, "zsf", HGP_PROTO_CLIENT, body);
    zframe_destroy (&body);
    hgp_buf_clear (&buf);
}

//  Receive a reply [empty][HGPC01][body]; returns its status, fills rep
static int
s_recv_reply (zsock_t *client, hgp_reply_t *rep)
{
    zmsg_t *msg = zmsg_recv (client);
    assert_non_null (msg);
    assert_int_equal (zmsg_size (msg), 3);
    zframe_t *empty = zmsg_pop (msg);
    assert_int_equal (zframe_size (empty), 0);
    zframe_destroy (&empty);
    char *proto = zmsg_popstr (msg);
    assert_string_equal (proto, HGP_PROTO_CLIENT);
    free (proto);
    zframe_t *body = zmsg_pop (msg);
    hgp_error_t err;
    hgp_reply_init (rep);
    assert_int_equal (hgp_reply_decode (rep, zframe_data (body),
                                        zframe_size (body), &err), 0);
    zframe_destroy (&body);
    zmsg_destroy (&msg);
    return rep->error.status;
}

//  Expect a reply of status, id and (when code is not NULL) error code
static void
s_expect (zsock_t *client, int status, const char *id, const char *code)
{
    hgp_reply_t rep;
    assert_int_equal (s_recv_reply (client, &rep), status);
    assert_string_equal (rep.id, id);
    if (code)
        assert_string_equal (rep.error.code, code);
    hgp_reply_clear (&rep);
}

static size_t
s_actor_count (zsock_t *client)
{
    s_send_request (client, HGP_OP_ACTORS, "list", "x");
    hgp_reply_t rep;
    assert_int_equal (s_recv_reply (client, &rep), 200);
    size_t n = rep.nactors;
    hgp_reply_clear (&rep);
    return n;
}

//  A DEALER that says READY as a "counter" actor, once the broker lists it
static zsock_t *
s_actor_new (s_bus_t *bus, const char *actor_id, uint32_t capacity)
{
    zsock_t *actor = zsock_new_dealer (bus->actor_ep);
    assert_non_null (actor);
    zsock_set_rcvtimeo (actor, 3000);
    hgp_ready_t ready;
    memset (&ready, 0, sizeof ready);
    strcpy (ready.service, "counter");
    strcpy (ready.actor_id, actor_id);
    strcpy (ready.cluster, "hgp");
    ready.capacity = capacity;
    hgp_buf_t buf = { NULL, 0, 0 };
    assert_int_equal (hgp_ready_encode (&ready, &buf), 0);
    uint8_t cmd = HGP_CMD_READY;
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, HGP_PROTO_ACTOR);
    zmsg_addmem (msg, &cmd, 1);
    zmsg_addmem (msg, buf.data, buf.size);
    zmsg_send (&msg, actor);
    hgp_buf_clear (&buf);
    while (s_actor_count (bus->client) != 1)
        zclock_sleep (10);
    return actor;
}

//  The next REQUEST (heartbeats skipped): [HGPA01][0x02][token][budget][body]
static zmsg_t *
s_recv_request (zsock_t *actor)
{
    while (true) {
        zmsg_t *msg = zmsg_recv (actor);
        assert_non_null (msg);
        zmsg_first (msg);                       //  HGPA01
        zframe_t *cmd = zmsg_next (msg);
        assert_non_null (cmd);
        assert_int_equal (zframe_size (cmd), 1);
        if (zframe_data (cmd) [0] == HGP_CMD_REQUEST) {
            assert_int_equal (zmsg_size (msg), 5);
            return msg;
        }
        assert_int_equal (zframe_data (cmd) [0], HGP_CMD_HEARTBEAT);
        zmsg_destroy (&msg);
    }
}

//  REPLY to a REQUEST with value
static void
s_reply (zsock_t *actor, zmsg_t *request, int64_t value)
{
    zmsg_first (request);                       //  HGPA01
    zmsg_next (request);                        //  REQUEST
    zframe_t *token = zmsg_next (request);
    zmsg_next (request);                        //  budget
    zframe_t *body = zmsg_next (request);
    hgp_request_t req;
    hgp_error_t err;
    assert_int_equal (hgp_request_decode (&req, zframe_data (body),
                                          zframe_size (body), &err), 0);
    hgp_reply_t rep;
    hgp_reply_init (&rep);
    strcpy (rep.id, req.id);
    rep.has_value = true;
    rep.value = value;
    hgp_buf_t buf = { NULL, 0, 0 };
    hgp_reply_encode (&rep, &buf);
    uint8_t cmd = HGP_CMD_REPLY;
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, HGP_PROTO_ACTOR);
    zmsg_addmem (msg, &cmd, 1);
    zmsg_addmem (msg, zframe_data (token), zframe_size (token));
    zmsg_addmem (msg, buf.data, buf.size);
    zmsg_send (&msg, actor);
    hgp_buf_clear (&buf);
    hgp_request_clear (&req);
}

static void
test_ping_is_local_and_no_actor_or_bad_frames_are_errors (void **state)
{
    s_bus_t *bus = (s_bus_t *) *state;
    s_send_request (bus->client, HGP_OP_PING, "p1", "x");
    s_expect (bus->client, 200, "p1", NULL);
    s_send_request (bus->client, HGP_OP_INCR, "i0", "post_1");
    s_expect (bus->client, 503, "i0", "no_actor");
    s_send_request (bus->client, HGP_OP_TOP, "t0", "x");
    s_expect (bus->client, 503, "t0", "no_actor");
    //  A message of the wrong shape: 400 malformed, no id to echo
    zsock_send (bus->client, "zss", "HTTP/1.1", "GET");
    s_expect (bus->client, 400, "", "malformed");
    assert_int_equal (s_actor_count (bus->client), 0);
}

static void
test_capacity_then_queue_then_busy_and_replies_pass_unchanged (void **state)
{
    s_bus_t *bus = (s_bus_t *) *state;
    zsock_t *actor = s_actor_new (bus, "fake-1", 1);
    //  Capacity 1, queue limit 1: one in flight, one waiting, one busy
    s_send_request (bus->client, HGP_OP_INCR, "i1", "post_1");
    s_send_request (bus->client, HGP_OP_INCR, "i2", "post_1");
    s_send_request (bus->client, HGP_OP_INCR, "i3", "post_1");
    s_expect (bus->client, 503, "i3", "busy");

    zmsg_t *request = s_recv_request (actor);
    s_reply (actor, request, 41);
    zmsg_destroy (&request);
    hgp_reply_t rep;
    assert_int_equal (s_recv_reply (bus->client, &rep), 200);
    assert_string_equal (rep.id, "i1");
    assert_int_equal (rep.value, 41);
    hgp_reply_clear (&rep);
    //  The reply freed the slot: the waiting one goes out
    request = s_recv_request (actor);
    s_reply (actor, request, 42);
    zmsg_destroy (&request);
    assert_int_equal (s_recv_reply (bus->client, &rep), 200);
    assert_string_equal (rep.id, "i2");
    assert_int_equal (rep.value, 42);
    hgp_reply_clear (&rep);
    zsock_destroy (&actor);
}

static void
test_an_actor_leaving_with_a_request_is_504_and_strangers_are_told_to_go
    (void **state)
{
    s_bus_t *bus = (s_bus_t *) *state;
    zsock_t *actor = s_actor_new (bus, "fake-1", 1);
    s_send_request (bus->client, HGP_OP_INCR, "i2", "post_1");
    zmsg_t *request = s_recv_request (actor);
    zmsg_destroy (&request);
    //  It leaves holding i2; nobody can take it over, and it had been
    //  sent, so the answer is 504 (indeterminate), not 503
    uint8_t cmd = HGP_CMD_DISCONNECT;
    zsock_send (actor, "sb", HGP_PROTO_ACTOR, &cmd, (size_t) 1);
    s_expect (bus->client, 504, "i2", "timeout");
    assert_int_equal (s_actor_count (bus->client), 0);

    //  A message from a peer the broker does not know gets DISCONNECT
    cmd = HGP_CMD_HEARTBEAT;
    zsock_send (actor, "sb", HGP_PROTO_ACTOR, &cmd, (size_t) 1);
    zmsg_t *msg = zmsg_recv (actor);
    assert_non_null (msg);
    assert_int_equal (zmsg_size (msg), 2);
    assert_int_equal (zframe_data (zmsg_last (msg)) [0], HGP_CMD_DISCONNECT);
    zmsg_destroy (&msg);
    zsock_destroy (&actor);
}

static void
test_a_silent_actor_times_out_its_request_and_is_dropped (void **state)
{
    s_bus_t *bus = (s_bus_t *) *state;
    zsock_t *actor = s_actor_new (bus, "fake-2", 4);
    s_send_request (bus->client, HGP_OP_GET, "g1", "post_1");
    zmsg_t *request = s_recv_request (actor);
    //  It never answers: 504 by the 2 s budget, or when it is dropped for
    //  1 s of silence holding the request; either way indeterminate
    s_expect (bus->client, 504, "g1", "timeout");
    //  Silent for 10 heartbeats of 100 ms: dropped
    int64_t deadline = zclock_mono () + 5000;
    while (s_actor_count (bus->client) != 0) {
        assert_true (zclock_mono () < deadline);
        zclock_sleep (20);
    }
    //  Its late reply reaches nobody, and the broker still answers
    s_reply (actor, request, 1);
    zmsg_destroy (&request);
    s_send_request (bus->client, HGP_OP_PING, "p2", "x");
    s_expect (bus->client, 200, "p2", NULL);
    zsock_destroy (&actor);
}

int
main (void)
{
    zsys_init ();
    zsys_set_logstream (stdout);
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (
            test_ping_is_local_and_no_actor_or_bad_frames_are_errors,
            s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_capacity_then_queue_then_busy_and_replies_pass_unchanged,
            s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_an_actor_leaving_with_a_request_is_504_and_strangers_are_told_to_go,
            s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (
            test_a_silent_actor_times_out_its_request_and_is_dropped,
            s_setup, s_teardown),
    };
    return cmocka_run_group_tests_name ("broker loop", tests, NULL, NULL);
}
