"""The HTTP gateway: real HTTP against real processes.

Every test starts redis + broker + counter actors (hgp_harness.Stack) and
bin/hgp-gateway (gateway_harness.Gateway) on free ports, talks HTTP/1.1 with
keep-alive connections, and checks results the way a user would, and where it
matters against Redis read by an independent client. The gateway, like every
hgp process, must exit 0 on SIGTERM (so ASan/UBSan/LSan found nothing)."""
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid

import pytest

from gateway_harness import Gateway, Http

INT64_MAX = 2**63 - 1
INCREMENT = "/api/v1/counter/increment"
BATCH = "/api/v1/counter/batch"
HEALTH = "/api/v1/health"


@pytest.fixture
def make_gateway(make_stack, logdir, request):
    """factory(stack=None, env=None, **stack_kw) -> (stack, gateway)"""
    gateways = []

    def factory(stack=None, env=None, **stack_kw):
        stack = stack or make_stack(**stack_kw)
        gw = Gateway(stack, logdir, env=env)
        gateways.append(gw)
        return stack, gw

    yield factory
    failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else False
    for gw in gateways:
        code = gw.stop()
        if failed or code != 0:
            print("---- gateway ----\n" + gw.output()[-6000:])
        assert code == 0, "hgp-gateway did not stop cleanly: %r" % code


@pytest.fixture
def gw(make_gateway):
    return make_gateway()


def assert_error(status, body, want_status, want_code):
    assert status == want_status, (status, body)
    assert body["error"]["code"] == want_code, body
    assert body["error"]["message"], body


# ---------------------------------------------------------------------------
# Endpoints


def test_increment_and_get_return_the_value_and_a_new_counter_is_zero(gw):
    stack, gateway = gw
    with gateway.http() as h:
        status, headers, body = h.get("post_1", "like")
        assert status == 200 and headers["content-type"] == "application/json"
        assert body == {"resource_id": "post_1", "counter_type": "like", "value": 0}

        status, _, body = h.increment("post_1", "like")          # delta defaults to 1
        assert status == 200, body
        assert body["value"] == 1 and body["replayed"] is False
        assert body["resource_id"] == "post_1" and body["counter_type"] == "like"
        assert body["request_id"]                                # generated for us

        status, _, body = h.increment("post_1", "like", delta=-5, user_id="u_7")
        assert status == 200 and body["value"] == -4, body
        assert h.value("post_1", "like") == -4

        # issue 15: the older API's name of delta, and a hint on a near miss
        status, _, body = h.request("POST", "/api/v1/counter/increment", json.dumps(
            {"resource_id": "post_1", "counter_type": "like", "increment": 2}).encode())
        assert status == 200 and body["value"] == -2, body
        status, _, body = h.request("POST", "/api/v1/counter/increment", json.dumps(
            {"resource_id": "post_1", "counter_type": "like", "detla": 2}).encode())
        assert_error(status, body, 400, "invalid")
        assert 'did you mean "delta"' in body["error"]["message"], body
    assert stack.redis.counter("post_1", "like") == -2


def test_batch_returns_values_in_request_order_with_items_alias(gw):
    _, gateway = gw
    with gateway.http() as h:
        h.increment("a", "x", delta=3)
        h.increment("b", "y", delta=7)
        queries = [{"resource_id": "b", "counter_type": "y"},
                   {"resource_id": "never", "counter_type": "seen"},
                   {"resource_id": "a", "counter_type": "x"},
                   {"resource_id": "b", "counter_type": "y"}]
        for name in ("queries", "items"):
            status, _, body = h.request("POST", BATCH, {name: queries})
            assert status == 200, body
            assert body["results"] == [
                {"resource_id": "b", "counter_type": "y", "value": 7},
                {"resource_id": "never", "counter_type": "seen", "value": 0},
                {"resource_id": "a", "counter_type": "x", "value": 3},
                {"resource_id": "b", "counter_type": "y", "value": 7}]


def test_batch_takes_1000_queries_and_refuses_1001(gw):
    _, gateway = gw
    with gateway.http() as h:
        h.increment("k999", "t", delta=2)
        queries = [{"resource_id": "k%d" % i, "counter_type": "t"} for i in range(1000)]
        status, _, body = h.request("POST", BATCH, {"queries": queries})
        assert status == 200 and len(body["results"]) == 1000
        assert body["results"][999]["value"] == 2
        status, _, body = h.request("POST", BATCH, {"queries": queries + queries[:1]})
        assert_error(status, body, 413, "too_large")


def test_health_checks_bus_actors_and_redis(gw):
    _, gateway = gw
    with gateway.http() as h:
        status, _, body = h.request("GET", HEALTH)
        assert status == 200, body
        assert body == {"status": "ok",
                        "checks": {"bus": "ok", "actors": "ok", "redis": "ok"}}


def test_retry_with_same_request_id_counts_once_body_and_header(gw):
    stack, gateway = gw
    with gateway.http() as h:
        rid = uuid.uuid4().hex
        values = []
        for i in range(5):
            status, _, body = h.increment("video_9", "view", delta=2, request_id=rid)
            assert status == 200, body
            assert body["replayed"] is (i > 0) and body["request_id"] == rid
            values.append(body["value"])
        assert values == [2] * 5

        key = uuid.uuid4().hex
        for i in range(5):
            status, _, body = h.increment("video_9", "view", delta=3,
                                          headers={"Idempotency-Key": key})
            assert status == 200, body
            assert body["value"] == 5 and body["replayed"] is (i > 0)
        # header and body may both carry the id, if they agree
        status, _, body = h.increment("video_9", "view", delta=3, request_id=key,
                                      headers={"Idempotency-Key": key})
        assert status == 200 and body["replayed"] is True
        assert h.value("video_9", "view") == 5

        # the same id for a different increment is refused and changes nothing
        status, _, body = h.increment("video_9", "view", delta=4, request_id=rid)
        assert_error(status, body, 409, "id_conflict")
        status, _, body = h.increment("video_9", "view", delta=3, request_id="other",
                                      headers={"Idempotency-Key": key})
        assert_error(status, body, 400, "invalid")
        assert h.value("video_9", "view") == 5
    assert stack.redis.counter("video_9", "view") == 5


# ---------------------------------------------------------------------------
# Errors


def test_malformed_json_is_400_and_changes_nothing(gw):
    stack, gateway = gw
    with gateway.http() as h:
        h.increment("k", "t", delta=10)
        bad = [b"", b"{", b"not json", b'{"resource_id": "k", "counter_type": "t"} x',
               b'{"resource_id": "k", "counter_type": "t", "delta": 1, "delta": 5}',
               b'{"resource_id": "k", "counter_type": "\xff"}']
        for raw in bad:
            status, _, body = h.request("POST", INCREMENT, raw)
            assert_error(status, body, 400, "malformed")
        for raw in [b"[]", b"42", b'{"resource_id": "k"}', b'{"counter_type": "t"}',
                    b'{"resource_id": "k", "counter_type": "t", "detla": 5}']:
            status, _, body = h.request("POST", INCREMENT, raw)
            assert_error(status, body, 400, "invalid")
        for raw in [b"{", b'{"queries": 1}', b'{"queries": []}', b"{}"]:
            status, _, body = h.request("POST", BATCH, raw)
            assert status == 400, (raw, body)
        assert h.value("k", "t") == 10
    assert stack.redis.counter("k", "t") == 10


def test_bad_ids_are_400_in_body_and_path(gw):
    stack, gateway = gw
    with gateway.http() as h:
        for rid in ["", "x" * 129, "a/b", "a b", "caf\u00e9", "a%2Fb", 5, None]:
            status, _, body = h.increment(rid, "like")
            assert_error(status, body, 400, "invalid")
            status, _, body = h.increment("ok", rid)
            assert_error(status, body, 400, "invalid")
        for path in ["/api/v1/counter/a%2Fb/like", "/api/v1/counter/a%20b/like",
                     "/api/v1/counter//like", "/api/v1/counter/x/",
                     "/api/v1/counter/%s/like" % ("x" * 129)]:
            status, _, body = h.request("GET", path)
            assert_error(status, body, 400, "invalid")
        status, _, body = h.increment("ok", "t", user_id="no spaces")
        assert_error(status, body, 400, "invalid")
        status, _, body = h.increment("ok", "t", headers={"Idempotency-Key": "no spaces"})
        assert_error(status, body, 400, "invalid")
        # 128 bytes is the limit, and fine
        status, _, body = h.increment("x" * 128, "like")
        assert status == 200, body
        assert h.value("ok", "t") == 0 and h.value("ok", "like") == 0


def test_delta_out_of_range_or_overflowing_is_400_and_value_unchanged(gw):
    stack, gateway = gw
    with gateway.http() as h:
        status, _, body = h.increment("big", "n", delta=INT64_MAX - 1)
        assert status == 200 and body["value"] == INT64_MAX - 1
        # the sum would leave int64: the bus refuses, nothing changes
        status, _, body = h.increment("big", "n", delta=5)
        assert_error(status, body, 400, "overflow")
        # a delta that is not an int64, not an integer, or 0
        for delta in ["9223372036854775808", "-9223372036854775809", "1e3", "1.5", "0",
                      '"1"', "null", "true"]:
            raw = '{"resource_id": "big", "counter_type": "n", "delta": %s}' % delta
            status, _, body = h.request("POST", INCREMENT, raw)
            assert_error(status, body, 400, "invalid")
        assert h.value("big", "n") == INT64_MAX - 1
        status, _, body = h.increment("big", "n", delta=1)       # exactly INT64_MAX
        assert status == 200 and body["value"] == INT64_MAX
        status, _, body = h.increment("neg", "n", delta=-2**63)  # INT64_MIN is a delta
        assert status == 200 and body["value"] == -2**63
    assert stack.redis.counter("big", "n") == INT64_MAX


def test_unknown_route_is_404(gw):
    _, gateway = gw
    with gateway.http() as h:
        for path in ["/", "/api/v1/counter", "/api/v1/counter/a/b/c", "/api/v2/health",
                     "/api/v1/health/", "/metrics/x"]:
            status, _, body = h.request("GET", path)
            assert_error(status, body, 404, "not_found")


def test_wrong_method_is_405_with_allow_header(gw):
    _, gateway = gw
    with gateway.http() as h:
        cases = [("GET", INCREMENT, "POST"), ("PUT", BATCH, "POST"),
                 ("POST", "/api/v1/counter/a/b", "GET, HEAD"),
                 ("DELETE", "/api/v1/counter/a/b", "GET, HEAD"),
                 ("POST", HEALTH, "GET, HEAD"), ("POST", "/metrics", "GET, HEAD")]
        for method, path, allow in cases:
            status, headers, body = h.request(method, path, b"{}" if method != "GET" else None)
            assert_error(status, body, 405, "method_not_allowed")
            assert headers["allow"] == allow, (method, path, headers)
        assert h.value("a", "b") == 0


def test_body_over_limit_is_413_before_reading_it_and_chunked_is_bounded(gw):
    stack, gateway = gw
    # Content-Length over 64 KiB: answered without sending a byte of body
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        s.sendall(b"POST " + INCREMENT.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), reply
    assert b"Connection: close" in head
    assert json.loads(body)["error"]["code"] == "too_large"

    with gateway.http() as h:
        pad = " " * (64 * 1024)
        big = '{"resource_id": "k", "counter_type": "t", "delta": 1}' + pad
        status, _, body = h.request("POST", INCREMENT, big)
        assert_error(status, body, 413, "too_large")
        # a chunked body is cut off at the limit, not read to the end
        chunks = iter([big[i:i + 4096].encode() for i in range(0, len(big), 4096)])
        h.conn.request("POST", INCREMENT, body=chunks, encode_chunked=True,
                       headers={"Content-Type": "application/json"})
        resp = h.conn.getresponse()
        assert resp.status == 413 and json.loads(resp.read())["error"]["code"] == "too_large"
        h.close()
        # the batch limit is 256 KiB: a 100 KiB batch is fine
        queries = [{"resource_id": "r%d" % i, "counter_type": "t"} for i in range(1000)]
        raw = json.dumps({"queries": queries}) + " " * (100 * 1024)
        status, _, body = h.request("POST", BATCH, raw)
        assert status == 200, body
        # a small chunked body is read and applied
        h.conn.request("POST", INCREMENT, encode_chunked=True,
                       body=iter([b'{"resource_id": "k", ', b'"counter_type": "t"}']))
        resp = h.conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["value"] == 1
        assert h.value("k", "t") == 1


def test_no_live_actor_is_503_never_200_and_health_names_actors(make_gateway):
    stack, gateway = make_gateway(actors=0)
    with gateway.http() as h:
        status, _, body = h.increment("k", "t")
        assert_error(status, body, 503, "no_actor")
        status, _, body = h.get("k", "t")
        assert_error(status, body, 503, "no_actor")
        status, _, body = h.request("POST", BATCH, {"queries": [{"resource_id": "k",
                                                                 "counter_type": "t"}]})
        assert_error(status, body, 503, "no_actor")
        status, _, body = h.request("GET", HEALTH)
        assert status == 503, body
        assert body["status"] == "fail"
        assert body["checks"] == {"bus": "ok", "actors": "fail", "redis": "unknown"}
        assert body["errors"]["actors"]["code"] == "no_actor"
        # live is the process alone; ready (and /health) are the checks above
        status, _, body = h.request("GET", "/healthz")
        assert status == 200 and body == {"status": "ok"}, body
        for path in ("/readyz", "/health"):
            status, _, body = h.request("GET", path)
            assert status == 503 and body["checks"]["actors"] == "fail", (path, body)
        status, headers, _ = h.request("POST", "/healthz", b"{}")
        assert status == 405 and headers["allow"] == "GET, HEAD"


def test_readyz_and_health_are_ok_when_a_counter_and_redis_answer(gw):
    _, gateway = gw
    with gateway.http() as h:
        for path in ("/readyz", "/health", HEALTH):
            status, _, body = h.request("GET", path)
            assert status == 200 and body["status"] == "ok", (path, body)
            assert body["checks"] == {"bus": "ok", "actors": "ok", "redis": "ok"}
        _, _, text = h.request("GET", "/metrics")
        line = [l for l in text.splitlines()
                if l.startswith('hgp_gateway_http_requests_total{route="health",status="200"}')]
        assert line and int(line[0].split()[-1]) >= 3, text   # the harness asks too


def test_redis_down_is_503_or_marked_stale_never_a_plain_200_and_health_names_redis(gw):
    stack, gateway = gw
    with gateway.http() as h:
        h.increment("k", "t", delta=3)
        stack.redis.stop()
        for _ in range(3):
            # a counter this gateway saw lately: its last value, marked stale
            # (gateway/stale_reads); one it never saw: an honest error
            status, _, body = h.get("k", "t")
            assert status == 200 and body["stale"] is True and body["value"] == 3, body
            status, _, body = h.get("never_seen", "t")
            assert status in (503, 504) and "error" in body, (status, body)
            status, _, body = h.increment("k", "t")
            assert status in (503, 504) and "error" in body, (status, body)
        status, _, body = h.request("GET", HEALTH)
        assert status == 503, body
        assert body["checks"]["bus"] == "ok" and body["checks"]["actors"] == "ok"
        assert body["checks"]["redis"] == "fail", body
        assert "redis" in body["errors"]


def test_deadline_passed_is_504_and_retry_with_same_id_applies_once(make_gateway):
    stack, gateway = make_gateway(env={"HGP_GATEWAY_TIMEOUT": "800"})
    with gateway.http() as h:
        # warm up: every worker's DEALER is connected before the clock matters
        deadline = time.time() + 10
        while h.increment("slow", "t", request_id="warm-up")[0] != 200:
            assert time.time() < deadline
        for c in stack.counters:
            c.signal(signal.SIGSTOP)
        try:
            t0 = time.time()
            status, _, body = h.increment("slow", "t", request_id="r-504")
            elapsed = time.time() - t0
        finally:
            for c in stack.counters:
                c.signal(signal.SIGCONT)
        assert_error(status, body, 504, "timeout")
        assert body["request_id"] == "r-504"      # what to retry with
        assert 0.7 < elapsed < 3.0, elapsed
        # indeterminate: retrying with the same id settles it, applied once
        deadline = time.time() + 10
        while True:
            status, _, body = h.increment("slow", "t", request_id="r-504")
            if status == 200 or time.time() > deadline:
                break
            time.sleep(0.2)
        assert status == 200 and body["value"] == 2, body
        status, _, body = h.increment("slow", "t", request_id="r-504")
        assert status == 200 and body["replayed"] is True and body["value"] == 2
        assert h.value("slow", "t") == 2


def test_concurrent_requests_with_one_id_are_each_answered_and_applied_once(make_gateway):
    """The workers share one bus connection, where replies are matched by
    request id: calls with the same id in flight at once (a client retrying
    while its first attempt waits) must each get an answer, the same id
    with another delta its 409, and the counter move once."""
    stack, gateway = make_gateway()
    with gateway.http() as h:
        assert h.increment("twin", "t", request_id="warm")[0] == 200
    results = {}

    def one(name, delta):
        with gateway.http() as h:
            results[name] = h.increment("twin", "t", delta=delta, request_id="same-id")

    for c in stack.counters:
        c.signal(signal.SIGSTOP)
    try:
        threads = [threading.Thread(target=one, args=("a%d" % i, 5)) for i in range(4)]
        threads.append(threading.Thread(target=one, args=("other", 7)))
        for t in threads:
            t.start()
            time.sleep(0.05)
        time.sleep(0.3)             # all five are waiting on the bus
    finally:
        for c in stack.counters:
            c.signal(signal.SIGCONT)
    for t in threads:
        t.join(10)
    assert len(results) == 5, results
    same = [results["a%d" % i] for i in range(4)]
    for status, _, body in same:
        assert status == 200 and body["value"] == 6, same
    assert sum(1 for _, _, body in same if body.get("replayed")) >= 3, same
    status, _, body = results["other"]
    assert_error(status, body, 409, "id_conflict")
    with gateway.http() as h:
        assert h.value("twin", "t") == 6
    assert stack.redis.counter("twin", "t") == 6


# ---------------------------------------------------------------------------
# Load, concurrency, failure


def test_200_concurrent_keep_alive_clients_x_100_increments_is_exact(gw):
    stack, gateway = gw
    clients, per_client = 200, 100
    results = [None] * clients
    start = threading.Barrier(clients)

    def client(i):
        values, errors = [], []
        with Http(gateway.port, timeout=60) as h:
            start.wait()
            for _ in range(per_client):
                status, _, body = h.increment("hot", "like")
                if status == 200:
                    values.append(body["value"])
                else:
                    errors.append((status, body))
        results[i] = (values, errors)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    values = [v for r in results for v in r[0]]
    errors = [e for r in results for e in r[1]]
    assert not errors, errors[:5]
    assert len(values) == clients * per_client
    # every acknowledged increment saw a distinct value: 1..20000 exactly
    assert sorted(values) == list(range(1, clients * per_client + 1))
    with gateway.http() as h:
        assert h.value("hot", "like") == 20000
    assert stack.redis.counter("hot", "like") == 20000


@pytest.mark.parametrize("fault", ["kill9", "hang"])
def test_counter_actor_killed_mid_load_gives_no_wrong_values(make_gateway, fault):
    """Half-way through the load one of the two actors fails.

    kill9: kill -9. The broker sees the connection drop and re-dispatches
    what the dead actor held to the survivor (same ids, so nothing is
    applied twice): everything should be acknowledged.

    hang: SIGSTOP for 3 s with a 1.5 s deadline, then SIGCONT. The broker
    only learns of it from silence (2 s), so what the actor held, and what
    was routed to it meanwhile, comes back 504: "maybe applied" (the actor
    may still apply it when it wakes). The final value must be the
    acknowledged increments plus some of those, never more, never less."""
    timeout = "1500" if fault == "hang" else "5000"
    stack, gateway = make_gateway(env={"HGP_GATEWAY_TIMEOUT": timeout})
    keys = [("post_%d" % i, "like") for i in range(8)]
    clients, per_client = 40, 120
    total = clients * per_client
    done = [0]
    lock = threading.Lock()
    fired = threading.Event()
    victim = stack.counters[0]
    outcomes = []        # (key, status, body)

    def fail_actor():
        if fault == "kill9":
            victim.kill9()
        else:
            victim.signal(signal.SIGSTOP)
            threading.Timer(3.0, victim.signal, args=(signal.SIGCONT,)).start()

    def client(i):
        mine = []
        with Http(gateway.port, timeout=60) as h:
            for n in range(per_client):
                key = keys[(i + n) % len(keys)]
                try:
                    status, _, body = h.increment(key[0], key[1],
                                                  request_id=uuid.uuid4().hex)
                except (OSError, ValueError) as e:       # must not happen
                    status, body = "exception", repr(e)
                mine.append((key, status, body))
                with lock:
                    done[0] += 1
                    if done[0] >= total // 2 and not fired.is_set():
                        fired.set()
                        fail_actor()
        with lock:
            outcomes.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fired.is_set() and len(outcomes) == total
    if fault == "hang":
        time.sleep(4.0)     # SIGCONT sent; let the woken actor finish what it held

    acked = {k: [] for k in keys}
    indeterminate = {k: 0 for k in keys}
    definite = {}
    for key, status, body in outcomes:
        # every response is a success or a JSON error, never anything else
        assert isinstance(body, dict), (status, body)
        if status == 200:
            acked[key].append(body["value"])
        else:
            assert status in (503, 504), (status, body)
            # log_unavailable: a hang between producing and Kafka's ack can
            # outlast the events' delivery timeout while still queued in
            # the stopped process: surely not logged, so nothing applied
            assert body["error"]["code"] in ("timeout", "no_actor", "busy", "unavailable",
                                             "log_unavailable")
            if status == 504:
                indeterminate[key] += 1
            else:
                definite[body["error"]["code"]] = definite.get(body["error"]["code"], 0) + 1
    with gateway.http() as h:
        for key in keys:
            final = h.value(*key)
            values = acked[key]
            # no two acknowledged increments saw the same value
            assert len(values) == len(set(values)), key
            # final = acknowledged + some subset of the indeterminate ones
            assert len(values) <= final <= len(values) + indeterminate[key], \
                (key, final, len(values), indeterminate[key])
            assert not values or max(values) <= final
            assert stack.redis.counter(*key) == final
    print("%s: acked %d, indeterminate %d, definite errors %r" % (
        fault, sum(len(v) for v in acked.values()), sum(indeterminate.values()), definite))
    assert sum(len(v) for v in acked.values()) > total // 2, (definite, indeterminate)
    if fault == "hang":
        assert sum(indeterminate.values()) > 0, "the hang produced no 504: not exercised"


def test_1000_concurrent_keep_alive_connections_are_all_served(make_gateway):
    """civetweb binds a worker to a keep-alive connection for its life, so
    with its defaults (50 threads) connection 71 would wait for ever; with
    gateway/threads = 1024 every one of 1000 open connections is served at
    once, and stays open for the next request. (keep_alive and
    header_timeout are raised so that a slow sanitized round of 1000
    requests, sent one after the other, cannot idle a connection out: a new
    connection must send its first request within header_timeout.)"""
    _, gateway = make_gateway(env={"HGP_GATEWAY_KEEP_ALIVE": "60000",
                                   "HGP_GATEWAY_HEADER_TIMEOUT": "60000"})
    conns = [Http(gateway.port, timeout=4) for _ in range(1000)]
    try:
        for c in conns:
            c.conn.connect()
        socks = [c.conn.sock for c in conns]
        for rnd in range(2):
            t0 = time.time()
            for i, c in enumerate(conns):
                status, _, body = c.request("GET", "/api/v1/counter/k%d/t" % (i % 10))
                assert status == 200 and body["value"] == 0, (i, status, body)
            assert time.time() - t0 < 60
        # the same 1000 sockets served both rounds: none was closed or queued
        assert [c.conn.sock for c in conns] == socks
    finally:
        for c in conns:
            c.close()


# ---------------------------------------------------------------------------
# Operations


def test_metrics_count_requests_and_pass_promtool(gw):
    _, gateway = gw
    with gateway.http() as h:
        h.increment("m", "t")
        h.increment("m", "t", delta=0)
        h.get("m", "t")
        h.request("GET", "/nope")
        h.request("GET", HEALTH)
        status, headers, text = h.request("GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'hgp_gateway_http_requests_total{route="increment",status="200"} 1' in text
    assert 'hgp_gateway_http_requests_total{route="increment",status="400"} 1' in text
    assert 'hgp_gateway_http_requests_total{route="get",status="200"} 1' in text
    assert 'hgp_gateway_http_requests_total{route="unmatched",status="404"} 1' in text
    assert 'hgp_gateway_http_request_duration_seconds_bucket{route="increment",le="+Inf"} 2' \
        in text
    assert 'hgp_gateway_http_request_duration_seconds_count{route="increment"} 2' in text
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool not installed (Debian package prometheus): the other "
                    "metrics assertions passed, the format was not linted")
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def test_port_taken_is_a_clear_error_and_exit_1(gw, logdir):
    stack, gateway = gw
    second = Gateway(stack, logdir, env={"HGP_GATEWAY_PORT": str(gateway.port)},
                     name="gateway-2", wait=False)
    try:
        second.proc.p.wait(20)
    finally:
        second.proc.kill9()
    assert second.proc.p.returncode == 1
    out = second.output()
    assert "cannot listen on 127.0.0.1:%d" % gateway.port in out, out
    assert "Address already in use" in out, out
    with gateway.http() as h:                 # the first one is unharmed
        assert h.request("GET", HEALTH)[0] == 200


def test_sigterm_with_open_keep_alive_connections_exits_0_promptly(make_gateway):
    stack, gateway = make_gateway()
    conns = [Http(gateway.port) for _ in range(20)]
    for c in conns:
        assert c.request("GET", HEALTH)[0] == 200
    t0 = time.time()
    code = gateway.stop()
    assert code == 0, gateway.output()[-3000:]
    assert time.time() - t0 < 10
    assert "gateway: stopped" in gateway.output()
    for c in conns:
        c.close()


# ---------------------------------------------------------------------------
# Analytics reads: rankings and per-minute series (bus ops top and stats)

RANK = "/api/v1/rank/"


def ranking(body, counter_type, window="all"):
    """The ranking of a rank answer, checking the rest of its shape"""
    assert set(body) - {"as_of_ms"} == {"counter_type", "window", "ranking"}, body
    assert body["counter_type"] == counter_type and body["window"] == window, body
    return body["ranking"]


def wait_rank(h, path, want, timeout=30.0):
    """Poll a rank path until its ranking equals want (analytics lags the log)"""
    deadline = time.time() + timeout
    body = None
    while time.time() < deadline:
        status, _, body = h.request("GET", path)
        if status == 200 and body.get("ranking") == want:
            return body
        time.sleep(0.25)
    raise AssertionError("%s did not settle:\nwant %r\ngot  %r" % (path, want, body))


def test_rank_is_ordered_by_value_ties_by_resource_id_and_limited(make_gateway):
    _, gateway = make_gateway(actors=1, analytics=1)
    incrs = [("r1", 5), ("r2", 3), ("r3", 3), ("r0", 3), ("r4", 1),
             ("r5", 2), ("r5", -2), ("r6", -1), ("r1", 2)]
    with gateway.http() as h:
        for res, delta in incrs:
            status, _, body = h.increment(res, "like", delta=delta)
            assert status == 200, body
        want = [{"resource_id": r, "value": v} for r, v in
                [("r1", 7), ("r0", 3), ("r2", 3), ("r3", 3), ("r4", 1)]]
        wait_rank(h, RANK + "like", want)
        status, headers, body = h.request("GET", RANK + "like?window=all&limit=2")
        assert status == 200 and ranking(body, "like") == want[:2], body
        assert headers["content-type"].startswith("application/json")
        for window in ("1h", "24h"):
            status, _, body = h.request("GET", RANK + "like?limit=1000&window=" + window)
            assert status == 200 and ranking(body, "like", window) == want, (window, body)
        status, _, body = h.request("GET", RANK + "like?window=trending&limit=4")
        body = ranking(body, "like", "trending")
        # trending weighs later events a little more, so only the leader and
        # the set of the next three are certain
        assert status == 200 and len(body) == 4 and body[0]["resource_id"] == "r1", body
        assert {e["resource_id"] for e in body[1:]} == {"r0", "r2", "r3"}, body
        assert all(set(e) == {"resource_id", "score"} and isinstance(e["score"], float)
                   and e["score"] > 0 for e in body), body
        status, _, body = h.request("GET", RANK + "nothing")
        assert status == 200 and ranking(body, "nothing") == [], body


def test_rank_and_stats_say_how_far_the_log_is_folded_in(make_gateway):
    """Issue 15: rank right after an increment is [] for ~70 ms and stats
    total 0 for ~1 s without a word why. Every rank and stats answer says
    as_of_ms: every event logged before it is folded in (PROTOCOL.md 4.3);
    an answer whose as_of_ms is past an increment's time counts it."""
    _, gateway = make_gateway(actors=1, analytics=1)
    with gateway.http() as h:
        wait_rank(h, RANK + "asof", [], timeout=5)      # analytics is up
        before = int(time.time() * 1000)
        assert h.increment("x", "asof", delta=4)[0] == 200
        after = int(time.time() * 1000)
        deadline = time.time() + 30
        while True:
            status, _, rank = h.request("GET", RANK + "asof")
            assert status == 200, rank
            # 0 while nothing of the log was folded in yet
            as_of = rank["as_of_ms"]
            assert isinstance(as_of, int), rank
            assert as_of <= int(time.time() * 1000) + 1000, rank
            if as_of >= after:
                # as of a time past the increment, it is in
                assert rank["ranking"] == [{"resource_id": "x", "value": 4}], rank
                break
            if rank["ranking"] == []:
                assert as_of < after, rank   # it says it is behind
            assert time.time() < deadline, rank
            time.sleep(0.05)
        status, _, stats = h.request("GET", "/api/v1/counter/x/asof/stats?window=1h")
        assert status == 200 and stats["as_of_ms"] >= before and stats["total"] == 4, stats


def test_stats_is_a_per_minute_series_of_the_window_adding_up(make_gateway):
    _, gateway = make_gateway(actors=1, analytics=1)
    with gateway.http() as h:
        for delta in (1, 2, 3, -1):
            assert h.increment("song", "play", delta=delta)[0] == 200
        wait_rank(h, RANK + "play", [{"resource_id": "song", "value": 5}])
        for window, n in (("1h", 60), ("24h", 1440)):
            status, _, body = h.request(
                "GET", "/api/v1/counter/song/play/stats?window=" + window)
            assert status == 200, body
            assert body["resource_id"] == "song" and body["counter_type"] == "play"
            assert body["window"] == window and body["bucket_ms"] == 60000
            assert body["total"] == 5 and body["sum"] == 5 and body["trending"] > 0
            series = body["series"]
            assert len(series) == n, len(series)
            starts = [e["start_ms"] for e in series]
            assert all(t % 60000 == 0 for t in starts)
            assert all(b - a == 60000 for a, b in zip(starts, starts[1:]))
            assert abs(starts[-1] - time.time() * 1000) < 120000
            assert sum(e["count"] for e in series) == 5
        status, _, default = h.request("GET", "/api/v1/counter/song/play/stats")
        assert status == 200 and default["window"] == "24h"
        status, _, body = h.request("GET", "/api/v1/counter/silent/play/stats?window=1h")
        assert status == 200 and body["total"] == 0 and body["sum"] == 0
        assert len(body["series"]) == 60 and not any(e["count"] for e in body["series"])


def test_uniques_counts_the_distinct_users_of_a_counter(make_gateway):
    _, gateway = make_gateway(actors=1, analytics=1)
    path = "/api/v1/counter/clip/view/uniques"
    with gateway.http() as h:
        for i in range(15):
            status, _, body = h.increment("clip", "view", user_id="v%d" % (i % 5))
            assert status == 200, body
        assert h.increment("clip", "view")[0] == 200       # no user: not one
        after = int(time.time() * 1000)
        deadline = time.time() + 30
        while True:
            status, headers, body = h.request("GET", path)
            assert status == 200, body
            if body["as_of_ms"] >= after:
                break
            assert time.time() < deadline, body
            time.sleep(0.1)
        assert headers["content-type"].startswith("application/json")
        assert body == {"resource_id": "clip", "counter_type": "view",
                        "uniques": 5, "approximate": True,
                        "as_of_ms": body["as_of_ms"]}, body
        assert h.value("clip", "view") == 16
        status, _, body = h.request("GET", "/api/v1/counter/none/view/uniques")
        assert status == 200 and body["uniques"] == 0, body
        for bad in (path + "?window=1h", "/api/v1/counter/bad%20id/view/uniques"):
            status, _, body = h.request("GET", bad)
            assert_error(status, body, 400, "invalid")
        status, headers, body = h.request("POST", path, {})
        assert status == 405 and "GET" in headers["allow"], (status, body)


def test_rank_and_stats_bad_window_limit_or_id_are_400(gw):
    _, gateway = gw
    bad = [RANK, RANK + "like?window=week", RANK + "like?limit=0", RANK + "like?limit=1001",
           RANK + "like?limit=abc", RANK + "like?limit=-5", RANK + "like?limit=",
           RANK + "like?limit=10&limit=20", RANK + "like?colour=red",
           RANK + "like?window", RANK + "like?window=1h%26limit", RANK + "bad%20type",
           "/api/v1/counter/a/b/stats?window=all",
           "/api/v1/counter/a/b/stats?window=trending",
           "/api/v1/counter/a/b/stats?window=7d", "/api/v1/counter/a/b/stats?limit=3",
           "/api/v1/counter/a%2Fb/b/stats",
           # issue 15: a trailing separator, and a parameter on a plain get
           RANK + "like?limit=1&", "/api/v1/counter/x/like?x=1"]
    with gateway.http() as h:
        for path in bad:
            status, _, body = h.request("GET", path)
            assert_error(status, body, 400, "invalid")
        for method, path in (("POST", RANK + "like"), ("DELETE", "/api/v1/counter/a/b/stats")):
            status, headers, body = h.request(method, path, b"{}")
            assert_error(status, body, 405, "method_not_allowed")
            assert headers["allow"] == "GET, HEAD"
        for path in (RANK + "like/x", "/api/v1/counter/a/b/stats/x"):
            status, _, body = h.request("GET", path)
            assert_error(status, body, 404, "not_found")


def test_rank_and_stats_without_an_analytics_actor_are_503(gw):
    _, gateway = gw
    with gateway.http() as h:
        for path in (RANK + "like?window=24h&limit=5",
                     "/api/v1/counter/a/b/stats?window=1h"):
            status, _, body = h.request("GET", path)
            assert_error(status, body, 503, "no_actor")
            assert "analytics" in body["error"]["message"]
        status, _, text = h.request("GET", "/metrics")
    assert 'hgp_gateway_http_requests_total{route="rank",status="503"} 1' in text
    assert 'hgp_gateway_http_requests_total{route="stats",status="503"} 1' in text


def test_a_traceparent_is_carried_logged_stored_and_answered(make_gateway):
    """W3C trace context (issue 15): a sampled traceparent sent with an
    increment comes back in the response (same trace, the gateway as the
    parent), is in the gateway's, the broker's and the counter's log lines
    for that request and in its event in the log; an absent or malformed
    one starts a new trace, not sampled, logged nowhere and not stored."""
    stack, gw = make_gateway()
    trace_id = uuid.uuid4().hex
    sent = "00-%s-00f067aa0ba902b7-01" % trace_id
    with gw.http() as h:
        status, headers, body = h.increment("traced", "like",
                                            headers={"traceparent": sent})
        assert status == 200, body
        back = headers["traceparent"]
        version, tid, parent, flags = back.split("-")
        assert (version, tid, flags) == ("00", trace_id, "01")
        assert parent != "00f067aa0ba902b7" and len(parent) == 16
        request_id = body["request_id"]
        for bad in (None, "00-%s-00f067aa0ba902b7" % trace_id,
                    "00-%s-0000000000000000-01" % trace_id,
                    "ff-%s-00f067aa0ba902b7-01" % trace_id):
            status, headers, _ = h.increment(
                "untraced", "like", headers={"traceparent": bad} if bad else None)
            assert status == 200
            v, tid2, _, f = headers["traceparent"].split("-")
            assert v == "00" and tid2 != trace_id and f == "00"
    deadline = time.time() + 10
    logs = {}
    while time.time() < deadline:
        logs = {"gateway": gw.output(), "broker": stack.broker.output(),
                "counter": "".join(c.output() for c in stack.counters)}
        if all(back in text for text in logs.values()):
            break
        time.sleep(0.2)
    for name, text in logs.items():
        lines = [l for l in text.splitlines() if back in l]
        assert lines, "no line with the trace in the %s's log" % name
        if name != "gateway":
            assert any(request_id in l for l in lines), (name, lines)
    assert "trace 00-" not in "".join(
        l for t in logs.values() for l in t.splitlines() if "untraced" in l)
    events = [r["event"] for r in stack.kafka.read()
              if isinstance(r["event"], dict)
              and r["event"].get("resource_id") in ("traced", "untraced")]
    traced = [e for e in events if e["resource_id"] == "traced"]
    assert len(traced) == 1 and traced[0]["trace"] == back
    assert len(events) == 5
    assert all("trace" not in e for e in events if e["resource_id"] == "untraced")


def same_but_decay(a, b):
    """Equal, but for trending scores, which decay between two asks, and
    as_of_ms, which moves on"""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(
            abs(a[k] - b[k]) < 0.01 if k in ("score", "trending")
            else abs(a[k] - b[k]) < 60000 if k == "as_of_ms"
            else same_but_decay(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_but_decay(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b)


def test_the_cli_prints_what_the_http_api_answers(make_gateway):
    """Issue 15: HTTP and CLI disagreed on every analytics shape (rank a
    bare array of value/score vs {"ranking": [{"count"}]}, stats series vs
    buckets, limits 1..100 vs 1..1000, no window in the CLI, mget values
    vs batch results). Now `hgp --json` prints the HTTP answer plus
    "status", from one owner (lib/hgp_views)."""
    stack, gw = make_gateway(actors=1, analytics=1)
    with gw.http() as h:
        for res, delta in (("a", 3), ("b", 5), ("c", 1)):
            assert h.increment(res, "shape", delta=delta)[0] == 200
        wait_rank(h, RANK + "shape", [{"resource_id": "b", "value": 5},
                                      {"resource_id": "a", "value": 3},
                                      {"resource_id": "c", "value": 1}])
        # as_of_ms is 0 until every partition has been read once: wait for
        # it, or one answer may come from before that and one from after
        deadline = time.time() + 30
        while h.request("GET", RANK + "shape")[2]["as_of_ms"] == 0:
            assert time.time() < deadline, "as_of_ms stayed 0"
            time.sleep(0.1)
        for window in ("all", "1h", "24h", "trending"):
            _, _, http = h.request("GET", RANK + "shape?limit=1000&window=" + window)
            out = stack.cli("--json", "top", "shape", "--window", window,
                            "--limit", "1000")
            assert out.returncode == 0, out.stderr
            cli = json.loads(out.stdout)
            assert cli.pop("status") == 200
            assert same_but_decay(cli, http), (window, cli, http)
        for window in ("1h", "24h"):
            for _ in range(3):      # the same minute for both, or again
                _, _, http = h.request("GET", "/api/v1/counter/b/shape/stats?window="
                                       + window)
                out = stack.cli("--json", "stats", "b", "shape", "--window", window)
                cli = json.loads(out.stdout)
                assert cli.pop("status") == 200
                if cli["series"][-1]["start_ms"] == http["series"][-1]["start_ms"]:
                    break
            assert same_but_decay(cli, http), (window, cli, http)
        _, _, http = h.request("POST", "/api/v1/counter/batch",
                               {"queries": [{"resource_id": "a", "counter_type": "shape"},
                                            {"resource_id": "z", "counter_type": "shape"}]})
        out = stack.cli("--json", "mget", "a:shape", "z:shape")
        cli = json.loads(out.stdout)
        assert cli.pop("status") == 200
        assert cli == http, (cli, http)
        # the same limits: 1000 is fine, 1001 is refused by both
        assert h.request("GET", RANK + "shape?limit=1001")[0] == 400
        assert stack.cli("top", "shape", "--limit", "1001").returncode == 2
