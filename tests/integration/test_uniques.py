"""Unique users of a counter: a HyperLogLog per counter, folded from the log.

Every increment that carries a user_id adds it to its counter's HyperLogLog
(hgp:a:u:..., PROTOCOL.md section 7) when the analytics actor folds the
event in; `uniques` (bus), GET .../uniques (HTTP) and `hgp uniques` answer
PFCOUNT. The counts come from real increments through the whole stack:
`hgp bench --users` sends them, the analytics actor reads them from the
log."""
import json
import time

from test_eventlog import wait_analytics

MAX_SETTLE = 60.0


def uniques(stack, r, t):
    with stack.client() as c:
        rep = c.call({"op": "uniques", "resource_id": r, "counter_type": t})
    assert rep["status"] == 200, rep
    assert rep["approximate"] is True
    return rep


def wait_folded(stack, r, t, since_ms, timeout=MAX_SETTLE):
    """Until the analytics actors have folded in everything acknowledged
    before since_ms (as_of_ms, PROTOCOL.md 4.3); the uniques reply then"""
    deadline = time.time() + timeout
    while time.time() < deadline:
        rep = uniques(stack, r, t)
        if rep["as_of_ms"] >= since_ms:
            return rep
        time.sleep(0.2)
    raise AssertionError("analytics did not fold in up to %d\n%s"
                         % (since_ms, stack.logs()))


def bench(stack, *args, timeout=300):
    r = stack.cli("--json", "bench", *args, timeout=timeout)
    assert r.returncode == 0, r
    out = json.loads(r.stdout)
    assert out["verify"]["ok"] is True and out["ok"] == out["requests"], out
    return out


def test_a_million_increments_of_100000_users_count_within_2_percent(
        make_stack, measured):
    stack = make_stack(actors=2, analytics=1)
    wait_analytics(stack)
    # Ten rounds of 100,000 increments of one counter, each from users
    # uq-u0 .. uq-u99999 in turn: 1,000,000 increments, 100,000 users.
    # One counter's events are on one partition, and the Kafka mock keeps
    # about 30,000 of them there: each round waits until analytics has
    # folded the last one in, so none is dropped unread.
    for _ in range(10):
        bench(stack, "-n", "100000", "-w", "128", "-k", "1", "--type", "view",
              "--users", "100000", "--prefix", "uq-")
        rep = wait_folded(stack, "uq-0", "view", int(time.time() * 1000))
    assert stack.redis.counter("uq-0", "view") == 1000000
    n = rep["uniques"]
    measured("100000 distinct users over 1000000 increments: uniques %d"
             " (%.2f %% off)" % (n, abs(n - 100000) / 1000.0))
    assert abs(n - 100000) <= 2000, rep
    assert "dropped offsets" not in stack.logs()
    # The same users again change nothing; HTTP and the CLI say the same
    r = stack.cli("uniques", "uq-0", "view")
    assert r.returncode == 0 and r.stdout == "%d\n" % n, r
    r = stack.cli("--json", "uniques", "uq-0", "view")
    assert r.returncode == 0, r
    got = json.loads(r.stdout)
    assert got["uniques"] == n and got["approximate"] is True, got
    assert got["resource_id"] == "uq-0" and got["counter_type"] == "view"


def test_only_increments_with_a_user_count_and_types_can_opt_out(make_stack):
    env = {"HGP_ANALYTICS_NO_UNIQUES": "api,quiet"}
    stack = make_stack(actors=1, analytics=1, env=env)
    wait_analytics(stack)
    with stack.client() as c:
        for i in range(30):
            assert c.incr("p", "view", 1, user_id="u%d" % (i % 7))["status"] == 200
            assert c.incr("p", "view", 2)["status"] == 200       # no user
            assert c.incr("p", "quiet", 1, user_id="u%d" % i)["status"] == 200
            assert c.incr("p", "api.x", 1, user_id="u%d" % i)["status"] == 200
    rep = wait_folded(stack, "p", "view", int(time.time() * 1000))
    assert rep["uniques"] == 7, rep      # small counts are exact in practice
    assert uniques(stack, "p", "quiet")["uniques"] == 0
    assert uniques(stack, "p", "api.x")["uniques"] == 0
    assert uniques(stack, "nobody", "view")["uniques"] == 0
    assert stack.redis.keys("hgp:a:u:*") == ["hgp:a:u:1:p:view"]
    # Redis lost: the counters come back by replay, the users as analytics
    # reads the log again from its start
    assert stack.redis.command("FLUSHALL").startswith(b"+OK")
    r = stack.cli("replay")
    assert r.returncode == 0, r
    deadline = time.time() + MAX_SETTLE
    while uniques(stack, "p", "view")["uniques"] != 7:
        assert time.time() < deadline, stack.logs()
        time.sleep(0.2)
    assert stack.redis.counter("p", "view") == 90
    assert uniques(stack, "p", "quiet")["uniques"] == 0


def test_uniques_wants_its_key_and_an_analytics_actor(stack):
    with stack.client() as c:
        rep = c.call({"op": "uniques", "counter_type": "view"})
        assert rep["status"] == 400 and "resource_id" in rep["error"]["message"]
        rep = c.call({"op": "uniques", "resource_id": "p", "counter_type": "view"})
        assert rep["status"] == 503 and rep["error"]["code"] == "no_actor"
        assert "analytics" in rep["error"]["message"]
