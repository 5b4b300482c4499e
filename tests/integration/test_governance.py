"""Gateway governance (issue 13): API keys and token-bucket rate limits.

Real processes (hgp_harness.Stack + bin/hgp-gateway); HTTP from Python."""
import os
import signal
import threading
import time

import pytest

from gateway_harness import Http
from test_gateway import make_gateway  # noqa: F401 (fixture)

INCREMENT = "/api/v1/counter/increment"
KEY_A = "a" * 20 + "-key-one"
KEY_B = "b" * 20 + "-key-two"
KEY_C = "c" * 20 + "-key-three"


def write_keys(path, lines):
    with open(path, "w") as f:
        f.write("# name key [rate burst]\n" + "\n".join(lines) + "\n")


def test_api_keys_401_without_or_with_a_wrong_key_and_sighup_adds_one(make_gateway, tmp_path):
    keys = str(tmp_path / "keys")
    write_keys(keys, ["alice %s" % KEY_A, "bob %s   # a comment" % KEY_B])
    stack, gateway = make_gateway(env={"HGP_GATEWAY_API_KEYS": keys})
    with Http(gateway.port) as h:
        status, headers, body = h.increment("k", "t")
        assert status == 401 and body["error"]["code"] == "unauthorized", body
        assert headers["www-authenticate"] == "Bearer"
        status, _, body = h.increment("k", "t", headers={"Authorization": "Bearer " + KEY_A + "x"})
        assert status == 401 and body["error"]["message"] == "unknown API key", body
        status, _, body = h.increment("k", "t", headers={"Authorization": "Bearer " + KEY_A})
        assert status == 200 and body["value"] == 1, body
        status, _, body = h.increment("k", "t", headers={"X-API-Key": KEY_B})
        assert status == 200 and body["value"] == 2, body
        status, _, body = h.request("GET", "/api/v1/counter/k/t")
        assert status == 401, body
        # health, liveness and metrics stay open
        assert h.request("GET", "/api/v1/health")[0] == 200
        assert h.request("GET", "/healthz")[0] == 200
        assert h.request("GET", "/metrics")[0] == 200
        status, _, _ = h.increment("k", "t", headers={"X-API-Key": KEY_C})
        assert status == 401
        write_keys(keys, ["alice %s" % KEY_A, "carol %s" % KEY_C])
        gateway.proc.p.send_signal(signal.SIGHUP)
        deadline = time.time() + 5
        while time.time() < deadline:
            status, _, _ = h.increment("k", "t", headers={"X-API-Key": KEY_C})
            if status == 200:
                break
            time.sleep(0.1)
        assert status == 200, status
        assert h.increment("k", "t", headers={"X-API-Key": KEY_B})[0] == 401  # bob left
    assert stack.redis.counter("k", "t") == 3
    assert KEY_A not in gateway.output() and KEY_C not in gateway.output()  # never logged
    assert "gateway: 2 API keys from" in gateway.output()


def test_a_bad_keys_file_is_a_clear_error_at_start(make_gateway, tmp_path, logdir):
    from gateway_harness import Gateway
    keys = str(tmp_path / "keys")
    write_keys(keys, ["alice short"])
    stack, gateway = make_gateway()
    bad = Gateway(stack, logdir, env={"HGP_GATEWAY_API_KEYS": keys}, name="bad", wait=False)
    assert bad.proc.p.wait(20) == 1
    assert "line 2: the key must be 16 to 128 visible characters" in bad.output(), bad.output()


def burst(port, n, headers=None):
    """n increments sent at once over n connections: [(status, headers)]"""
    conns = [Http(port, timeout=10) for _ in range(n)]
    results = [None] * n
    gate = threading.Barrier(n)

    def one(i):
        gate.wait()
        status, hdrs, _ = conns[i].increment("limited", "c", headers=headers)
        results[i] = (status, hdrs)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in conns:
        c.close()
    return results


def test_per_ip_rate_limit_answers_429_with_headers_and_applies_nothing_limited(make_gateway):
    stack, gateway = make_gateway(env={"HGP_RATELIMIT_PER_IP_RATE": "50",
                                       "HGP_RATELIMIT_PER_IP_BURST": "50"})
    started = time.monotonic()
    results = burst(gateway.port, 200)
    elapsed = time.monotonic() - started
    ok = [h for s, h in results if s == 200]
    limited = [h for s, h in results if s == 429]
    assert len(ok) + len(limited) == 200, set(s for s, _ in results)
    # the burst, plus what 50/s refilled while the 200 were sent
    assert 50 <= len(ok) <= 50 + 50 * elapsed + 2, (len(ok), elapsed)
    for h in limited:
        assert int(h["retry-after"]) >= 1
        assert h["ratelimit-limit"] == "50" and h["ratelimit-remaining"] == "0", h
        assert int(h["ratelimit-reset"]) >= 1
    for h in ok:
        assert h["ratelimit-limit"] == "50" and "ratelimit-remaining" in h, h
    assert stack.redis.counter("limited", "c") == len(ok)
    time.sleep(max(int(h["retry-after"]) for h in limited))
    with Http(gateway.port) as h:
        assert h.increment("limited", "c")[0] == 200
    # health is not limited
    with Http(gateway.port) as h:
        assert all(h.request("GET", "/api/v1/health")[0] == 200 for _ in range(3))


def test_per_key_limits_are_independent(make_gateway, tmp_path):
    keys = str(tmp_path / "keys")
    write_keys(keys, ["alice %s 1 5" % KEY_A, "bob %s" % KEY_B])
    stack, gateway = make_gateway(env={"HGP_GATEWAY_API_KEYS": keys,
                                       "HGP_RATELIMIT_PER_KEY_RATE": "1",
                                       "HGP_RATELIMIT_PER_KEY_BURST": "3"})
    with Http(gateway.port) as h:
        a = [h.increment("pk", "a", headers={"X-API-Key": KEY_A})[0] for _ in range(8)]
        b = [h.increment("pk", "b", headers={"X-API-Key": KEY_B})[0] for _ in range(8)]
    assert a.count(200) == 5 and a.count(429) == 3, a        # its own line: burst 5
    assert b.count(200) == 3 and b.count(429) == 5, b        # the per-key default: 3
    assert stack.redis.counter("pk", "a") == 5
    assert stack.redis.counter("pk", "b") == 3


def hammer(port, clients, per_client, resource):
    """clients threads, each per_client sequential increments on its own
    keep-alive connection: [(status, code, seconds)]"""
    out = []
    lock = threading.Lock()

    def one():
        with Http(port, timeout=30) as h:
            for _ in range(per_client):
                t0 = time.monotonic()
                status, _, body = h.increment(resource, "c")
                code = body.get("error", {}).get("code") if isinstance(body, dict) else None
                with lock:
                    out.append((status, code, time.monotonic() - t0, time.monotonic()))
    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


@pytest.mark.parametrize("paused", ["redis", "kafka"])
def test_with_a_dependency_paused_the_breaker_fails_fast_and_closes_on_resume(
        make_gateway, measured, paused):
    """Issue 13: with Redis stopped every increment waited about a second
    (the counter's Redis timeout) or the 5 s deadline. Once 5 outage answers
    in a row came, the route's breaker answers 503 at once for breaker_ms,
    nothing is sent; a probe then finds the dependency back and closes it.
    The same with the Kafka mock stopped (log_unavailable, or 504)."""
    stack, gateway = make_gateway(env={"HGP_GATEWAY_BREAKER_MS": "500"})
    victim = stack.redis.proc if paused == "redis" else stack.kafka.proc
    with Http(gateway.port) as h:
        assert h.increment("brk", "c")[0] == 200
    before = stack.redis.counter("brk", "c")
    victim.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        results = hammer(gateway.port, 50, 20, "brk")
        total = time.monotonic() - started
        fails = [r for r in results if r[0] != 200]
        slow = [r for r in results if r[2] > 0.2]
        measured("breaker, " + paused + " stopped: 1000 increments from 50 clients answered in "
                 "%.2f s; %d took over 0.2 s (before the breaker opened), %d 503 in "
                 "all, codes %r"
                 % (total, len(slow), len([r for r in results if r[0] == 503]),
                    sorted(set(r[1] for r in fails))))
        # once open: the answers that came after the last slow one, and
        # how long those took in all (the client threads' own time included)
        opened = max(r[3] for r in slow) if slow else started
        after_open = [r for r in results if r[3] > opened]
        span = max(r[3] for r in results) - opened
        measured("breaker, %s stopped: after it opened, %d answers within %.2f s, "
                 "%.3f s of answer time in all (p99 of one %.1f ms)"
                 % (paused, len(after_open), span, sum(r[2] for r in after_open),
                    1000 * sorted(r[2] for r in after_open)[int(len(after_open) * 0.99) - 1]
                    if after_open else 0))
        assert span < 1.0, span
        assert all(r[0] in (503, 504) for r in results), set(r[0] for r in results)
        # once open, each client fails fast: a few slow answers per client at most
        assert len(slow) <= 50 * 3, len(slow)
        assert total < 15, total
    finally:
        victim.signal(signal.SIGCONT)
    resumed = time.monotonic()
    with Http(gateway.port) as h:
        while True:
            status, _, body = h.increment("brk", "c")
            if status == 200:
                break
            assert time.monotonic() - resumed < 5, body
            time.sleep(0.05)
    measured("breaker: first 200 %.2f s after %s resumed (breaker_ms 500)"
             % (time.monotonic() - resumed, paused))
    assert time.monotonic() - resumed < 3
    # nothing answered 503 was applied; 504s are indeterminate (none here, or
    # applied once at most): the counter moved by the one 200 plus applied 504s
    after = stack.redis.counter("brk", "c")
    n504 = len([r for r in results if r[0] == 504])
    assert before + 1 <= after <= before + 1 + n504, (before, after, n504)


def test_with_redis_stopped_a_recent_read_is_served_stale_and_increments_fail(make_gateway):
    stack, gateway = make_gateway()
    with Http(gateway.port) as h:
        for _ in range(3):
            assert h.increment("st", "c")[0] == 200
        status, _, body = h.get("st", "c")
        assert status == 200 and body["value"] == 3 and "stale" not in body, body
        read_at = time.time() * 1000
        stack.redis.proc.signal(signal.SIGSTOP)
        try:
            status, _, body = h.get("st", "c")
            assert status == 200 and body["stale"] is True and body["value"] == 3, body
            assert read_at - 1000 <= body["as_of_ms"] <= read_at + 1000, body
            status, _, body = h.get("never_read", "c")
            assert status in (503, 504) and "error" in body, body
            status, _, body = h.increment("st", "c")    # never degraded
            assert status in (503, 504) and "error" in body, body
        finally:
            stack.redis.proc.signal(signal.SIGCONT)


def test_stale_reads_off_is_an_honest_error(make_gateway):
    stack, gateway = make_gateway(env={"HGP_GATEWAY_STALE_READS": "0"})
    with Http(gateway.port) as h:
        assert h.increment("st0", "c")[0] == 200
        assert h.get("st0", "c")[0] == 200
        stack.redis.proc.signal(signal.SIGSTOP)
        try:
            status, _, body = h.get("st0", "c")
            assert status in (503, 504) and "error" in body, body
        finally:
            stack.redis.proc.signal(signal.SIGCONT)


def test_the_gateway_counts_its_own_calls_as_counters_exactly(make_gateway, tmp_path):
    """API-call statistics: (api.<route>, calls|errors) and (key.<name>,
    calls) are ordinary counters, flushed once a second through the bus,
    ranked by the analytics actor, exact across a kill -9 of a counter."""
    keys = str(tmp_path / "keys")
    write_keys(keys, ["alice %s" % KEY_A])
    stack, gateway = make_gateway(
        actors=2, analytics=1,
        env={"HGP_GATEWAY_CALL_STATS": "1", "HGP_GATEWAY_API_KEYS": keys})
    auth = {"X-API-Key": KEY_A}
    with Http(gateway.port) as h:
        for i in range(300):
            status, _, body = h.increment("cs_%d" % (i % 10), "like", headers=auth)
            assert status == 200, body
        for i in range(100):
            assert h.request("GET", "/api/v1/counter/cs_%d/like" % (i % 10),
                             headers=auth)[0] == 200
        for _ in range(7):       # 400s: counted as calls and as errors
            assert h.increment("bad/id", "like", headers=auth)[0] == 400
    # Read back over the bus, so reading adds no HTTP calls
    want = {("api.increment", "calls"): 307, ("api.increment", "errors"): 7,
            ("api.get", "calls"): 100, ("key.alice", "calls"): 407,
            ("key.alice", "errors"): 7}

    def read_all():
        out = {}
        with stack.client() as c:
            for k in want:
                rep = c.call({"op": "get", "resource_id": k[0],
                              "counter_type": k[1]})
                out[k] = rep["value"] if rep["status"] == 200 else None
        return out

    deadline = time.time() + 2.0
    got = read_all()
    while got != want and time.time() < deadline:
        time.sleep(0.1)
        got = read_all()
    assert got == want, got
    # kill -9 of a counter during more load and flushes: still exact
    failed = 0
    with Http(gateway.port) as h:
        for i in range(200):
            if i == 60:
                stack.counters[0].kill9()
            status, _, body = h.increment("cs_%d" % (i % 10), "like", headers=auth)
            assert status in (200, 503, 504), body
            failed += status != 200
    # the 503/504 answers of the kill are errors too
    for k in (("api.increment", "calls"), ("key.alice", "calls")):
        want[k] += 200
    for k in (("api.increment", "errors"), ("key.alice", "errors")):
        want[k] += failed
    deadline = time.time() + 20
    got = read_all()
    while got != want and time.time() < deadline:
        time.sleep(0.2)
        got = read_all()
    assert got == want, (got, failed)
    # ranked by the analytics actor like any counter type
    deadline = time.time() + 10
    while time.time() < deadline:
        with Http(gateway.port) as h:
            status, _, body = h.request("GET", "/api/v1/rank/calls", headers=auth)
        names = [e["resource_id"] for e in body["ranking"]] if status == 200 else []
        if "api.increment" in names and "api.get" in names:
            break
        time.sleep(0.2)
    assert names.index("key.alice") < names.index("api.get"), body
    assert names.index("api.increment") < names.index("api.get"), body
