"""The core bus: client -> broker -> counter actor -> Redis, exactly once.

Each test names the behaviour it proves and checks it the way a user would:
through the protocol, and against Redis read by an independent client."""
import os
import signal
import subprocess
import time

import msgpack
import pytest

from hgp_harness import BIN, Client, new_id, run_load

INT64_MAX = 2**63 - 1


def test_incr_get_mget_round_trip(stack):
    with stack.client() as c:
        assert c.get("post_1", "like") == 0          # never incremented is 0
        rep = c.incr("post_1", "like", 5)
        assert rep["status"] == 200 and rep["value"] == 5 and "replayed" not in rep
        assert c.incr("post_1", "like", -2)["value"] == 3
        assert c.get("post_1", "like") == 3
        rep = c.call({"op": "mget", "keys": [["post_1", "like"], ["post_2", "like"],
                                             ["post_1", "view"]]})
        assert rep["status"] == 200 and rep["values"] == [3, 0, 0]
        assert c.call({"op": "ping"})["status"] == 200
    assert stack.redis.counter("post_1", "like") == 3


def test_keys_with_colons_do_not_collide(stack):
    with stack.client() as c:
        c.incr("a:b", "c", 1)
        c.incr("a", "b:c", 10)
        assert c.get("a:b", "c") == 1
        assert c.get("a", "b:c") == 10


def test_retry_with_same_request_id_counts_once(stack):
    rid = new_id()
    with stack.client() as c:
        first = c.incr("video_9", "view", 1, rid=rid)
        assert first["status"] == 200 and first["value"] == 1
        for _ in range(4):
            again = c.incr("video_9", "view", 1, rid=rid)
            assert again["status"] == 200
            assert again["value"] == 1 and again["replayed"] is True
        assert c.get("video_9", "view") == 1
        # the same id for a different increment is refused and changes nothing
        clash = c.incr("video_9", "view", 7, rid=rid)
        assert clash["status"] == 409 and clash["error"]["code"] == "id_conflict"
        clash = c.incr("video_10", "view", 1, rid=rid)
        assert clash["status"] == 409
        assert c.get("video_9", "view") == 1 and c.get("video_10", "view") == 0


def test_bad_input_gets_clear_errors_and_changes_nothing(stack):
    with stack.client() as c:
        c.incr("k", "t", 10)
        cases = [
            ({"op": "incr", "resource_id": "k", "counter_type": "t", "delta": 0}, 400, "invalid"),
            ({"op": "incr", "resource_id": "k/x", "counter_type": "t", "delta": 1}, 400, "invalid"),
            ({"op": "incr", "resource_id": "k", "counter_type": "t", "delta": "1"}, 400, "invalid"),
            ({"op": "incr", "resource_id": "k", "counter_type": "t"}, 400, "invalid"),
            ({"op": "incr", "resource_id": "x" * 129, "counter_type": "t", "delta": 1}, 400, "invalid"),
            ({"op": "explode"}, 404, "unknown_op"),
            ({"op": "mget", "keys": [["k", "t"]] * 1001}, 413, "too_large"),
            ({"op": "get", "resource_id": "k", "counter_type": "t", "timeout_ms": 0}, 400, "invalid"),
        ]
        for body, status, code in cases:
            rep = c.call(body)
            assert (rep["status"], rep["error"]["code"]) == (status, code), (body, rep)
            assert rep["error"]["message"]
        # not msgpack at all, and a body with trailing garbage
        for raw in [b"\xc1\xff\x00", msgpack.packb({"op": "ping", "id": "x"}) + b"\x00"]:
            c.send_raw([b"", b"HGPC01", raw])
            rep = c.recv()
            assert rep["status"] == 400 and rep["error"]["code"] == "malformed"
        # wrong protocol signature
        c.send_raw([b"", b"HTTP/1.1", msgpack.packb({"op": "ping", "id": "y"})])
        rep = c.recv()
        assert rep["status"] == 400
        # overflowing delta: refused, value unchanged
        rep = c.incr("k", "t", INT64_MAX)
        assert rep["status"] == 400 and rep["error"]["code"] == "overflow", rep
        rep = c.incr("k", "t", -INT64_MAX - 1)
        assert rep["status"] == 200 and rep["value"] == 10 - INT64_MAX - 1
        rep = c.incr("k", "t", -11)
        assert rep["status"] == 400 and rep["error"]["code"] == "overflow"
        assert c.get("k", "t") == 10 - INT64_MAX - 1
    assert stack.redis.counter("k", "t") == 10 - INT64_MAX - 1


def test_hundred_thousand_increments_from_fifty_clients_are_exact(stack):
    keys = [("item_%d" % i, "like") for i in range(10)]
    acked, indeterminate, errors = run_load(stack.client_endpoint, keys,
                                            total=100_000, clients=50)
    assert errors == {} and all(not v for v in indeterminate.values())
    assert sum(len(v) for v in acked.values()) == 100_000
    for key in keys:
        assert stack.redis.counter(*key) == len(acked[key])
        # every acknowledged value is distinct: nothing applied twice
        values = [v for _, v in acked[key]]
        assert sorted(values) == list(range(1, len(values) + 1))


def test_kill_9_of_a_counter_actor_loses_nothing_and_applies_nothing_twice(stack):
    keys = [("hot_%d" % i, "view") for i in range(10)]
    victim = stack.counters[0]
    acked, indeterminate, errors = run_load(
        stack.client_endpoint, keys, total=30_000, clients=50, timeout_ms=4000,
        during=victim.kill9)
    assert not victim.alive()
    # only 504s (indeterminate) or definite errors are allowed besides success
    assert set(errors) <= {"no_actor", "busy", "unavailable"}, errors
    n_acked = sum(len(v) for v in acked.values())
    assert n_acked > 20_000, (n_acked, errors)
    # Jepsen-style: final = acknowledged + a subset of the indeterminate ones
    for key in keys:
        final = stack.redis.counter(*key)
        assert len(acked[key]) <= final <= len(acked[key]) + len(indeterminate[key]), key
        values = [v for _, v in acked[key]]
        assert len(set(values)) == len(values), "a value was handed out twice"
    # Retrying every indeterminate request with its id settles it exactly
    # once. A retry may itself be indeterminate for a while (504: the dead
    # actor's logged events are being recovered from the event log).
    deadline = time.time() + 30
    with stack.client() as c:
        for key in keys:
            for rid, _ in indeterminate[key]:
                while True:
                    rep = c.incr(key[0], key[1], 1, rid=rid)
                    if rep["status"] != 504 or time.time() > deadline:
                        break
                    time.sleep(0.2)
                assert rep["status"] == 200, rep
            final = stack.redis.counter(*key)
            assert final == len(acked[key]) + len(indeterminate[key])


def test_silent_actor_is_removed_within_3_seconds_and_rejoins(stack):
    frozen = stack.counters[1]
    frozen.signal(signal.SIGSTOP)
    t0 = time.time()
    stack.wait_actors(1, timeout=3.0)
    assert time.time() - t0 <= 3.0
    with stack.client() as c:
        for i in range(200):          # every key is served by the survivor
            assert c.incr("k%d" % i, "t", 1)["status"] == 200
    frozen.signal(signal.SIGCONT)
    stack.wait_actors(2, timeout=5.0)
    with stack.client() as c:
        assert sum(c.get("k%d" % i, "t") for i in range(200)) == 200


def test_redis_outage_is_an_error_then_service_resumes(make_stack, logdir):
    from hgp_harness import Redis
    redis = Redis(logdir, aof=True)
    stack = make_stack(redis=redis)
    with stack.client() as c:
        assert c.incr("r", "t", 41)["value"] == 41
        redis.proc.stop()
        for _ in range(5):
            rep = c.incr("r", "t", 1)
            assert rep["status"] == 503 and rep["error"]["code"] == "unavailable", rep
            rep = c.call({"op": "get", "resource_id": "r", "counter_type": "t"})
            assert rep["status"] == 503 and "value" not in rep
        redis.start(logdir)
        deadline = time.time() + 10
        while True:
            rep = c.incr("r", "t", 1)
            if rep["status"] == 200 or time.time() > deadline:
                break
            time.sleep(0.2)
        assert rep["status"] == 200 and rep["value"] == 42, rep
        assert c.get("r", "t") == 42


def test_no_actor_is_a_503(make_stack):
    stack = make_stack(actors=0)
    with stack.client() as c:
        rep = c.incr("r", "t", 1)
        assert rep["status"] == 503 and rep["error"]["code"] == "no_actor"


def test_full_queue_answers_busy_and_applies_nothing_extra(make_stack):
    stack = make_stack(actors=1, env={"HGP_BROKER_QUEUE_LIMIT": "5",
                                      "HGP_COUNTER_CAPACITY": "1"})
    actor = stack.counters[0]
    actor.signal(signal.SIGSTOP)
    with stack.client() as c:
        ids = [c.send({"op": "incr", "resource_id": "q", "counter_type": "t",
                       "delta": 1, "timeout_ms": 20000}) for _ in range(20)]
        busy = []
        for _ in range(14):           # 1 in flight + 5 queued, 14 refused
            rep = c.recv(5)
            assert rep["status"] == 503 and rep["error"]["code"] == "busy", rep
            busy.append(rep["id"])
        actor.signal(signal.SIGCONT)
        ok = [c.recv(10) for _ in range(6)]
        assert all(r["status"] == 200 for r in ok), ok
        assert set(busy) | {r["id"] for r in ok} == set(ids)
        assert c.get("q", "t") == 6


def test_cli_incr_get_and_json(stack):
    env = dict(os.environ, HGP_BROKER_CLIENT_ENDPOINT=stack.client_endpoint)
    hgp = os.path.join(BIN, "hgp")

    def run(*args):
        return subprocess.run([hgp] + list(args), env=env, capture_output=True,
                              text=True, timeout=30)

    r = run("incr", "cli_post", "like", "3")
    assert r.returncode == 0 and "3" in r.stdout, r
    r = run("--json", "get", "cli_post", "like")
    assert r.returncode == 0 and '"value":3' in r.stdout.replace(" ", ""), r
    r = run("incr", "cli_post", "like", "1", "--id", "fixed-id-1")
    r = run("incr", "cli_post", "like", "1", "--id", "fixed-id-1")
    assert r.returncode == 0 and "replayed" in r.stdout, r
    assert stack.redis.counter("cli_post", "like") == 4
    r = run("incr", "bad/id", "like")
    assert r.returncode == 2 and r.stderr, r
    r = run("actors")
    assert r.returncode == 0 and r.stdout.count("counter") >= 2, r
    r = run("mget", "cli_post:like", "nothing:like")
    assert r.returncode == 0 and "4" in r.stdout, r
    r = run("--broker", "tcp://127.0.0.1:1", "--timeout", "300", "get", "x", "y")
    assert r.returncode == 3, r
    # Global options after the command too; HOST:PORT means TCP
    r = run("get", "cli_post", "like", "--json")
    assert r.returncode == 0 and '"value":4' in r.stdout.replace(" ", ""), r
    hostport = stack.client_endpoint[len("tcp://"):]
    r = run("get", "cli_post", "like", "--broker", hostport)
    assert r.returncode == 0 and r.stdout.strip() == "4", r
    r = run("--broker", "localhost", "get", "x", "y")
    assert r.returncode == 2 and "tcp://HOST:PORT" in r.stderr, r
    # Nothing listening: said at once, not after the deadline
    started = time.time()
    r = run("--broker", "127.0.0.1:1", "get", "x", "y")
    assert r.returncode == 3 and "Connection refused" in r.stderr, r
    assert "nothing was sent" in r.stderr, r
    assert time.time() - started < 2.0
    # Every binary says its version
    for name in ("hgp", "hgp-broker", "hgp-gateway", "hgp-counter",
                 "hgp-analytics", "hgp-kafka-mock", "hgp-keys"):
        r = subprocess.run([os.path.join(BIN, name), "--version"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0 and r.stdout.startswith(name + " "), (name, r)
        assert "HGP/1" in r.stdout, r


def test_values_past_2_to_the_53_stay_exact(stack):
    base = 2**53 - 2
    with stack.client() as c:
        assert c.incr("big", "n", base)["value"] == base
        for expected in (2**53 - 1, 2**53, 2**53 + 1, 2**53 + 2):
            assert c.incr("big", "n", 1)["value"] == expected
        assert c.get("big", "n") == 2**53 + 2
        assert c.incr("neg", "n", -(2**53) - 1)["value"] == -(2**53) - 1
    assert stack.redis.counter("big", "n") == 2**53 + 2
