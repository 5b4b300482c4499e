"""The event log, analytics and replay, against real processes.

Every stack here runs redis-server, bin/hgp-kafka-mock (librdkafka's mock
cluster: the real Kafka protocol, in memory), the broker and counter actors,
and analytics actors where a test needs them. The log is read back with kcat,
an independent Kafka client, and decoded with Python's msgpack by the rules of
schemas/PROTOCOL.md section 10 (hgp_harness.decode_event)."""
import collections
import os
import signal
import threading
import time

import pytest

from hgp_harness import Client, counted, counter_key, new_id, run_load

MAX_SETTLE = 30.0           # seconds to wait for retries / analytics


def settle(stack, pending, timeout=MAX_SETTLE, delta=1):
    """Retry every indeterminate increment with its id until it is settled
    (PROTOCOL.md 4.6). pending: {key: [(rid, _)]}. Returns {rid: reply}."""
    out = {}
    deadline = time.time() + timeout
    with stack.client() as c:
        for key, items in pending.items():
            for rid, _ in items:
                while True:
                    rep = c.incr(key[0], key[1], delta, rid=rid,
                                 timeout_ms=3000)
                    if rep["status"] == 200 or time.time() > deadline:
                        break
                    assert rep["status"] in (503, 504), rep
                    time.sleep(0.2)
                assert rep["status"] == 200, (rid, rep)
                out[rid] = rep
    return out


def top(stack, counter_type, window="all", limit=1000):
    with stack.client() as c:
        rep = c.call({"op": "top", "counter_type": counter_type,
                      "window": window, "limit": limit})
    assert rep["status"] == 200, rep
    assert rep["window"] == window
    return [tuple(e) for e in rep["ranking"]]


def wait_ranking(stack, counter_type, want, window="all", timeout=MAX_SETTLE):
    """Poll top until its {resource: count} equals want"""
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        try:
            got = dict(top(stack, counter_type, window))
        except (AssertionError, TimeoutError):
            got = None
        if got == want:
            return got
        time.sleep(0.25)
    raise AssertionError("ranking %s/%s did not settle:\nwant %r\ngot  %r\n%s"
                         % (counter_type, window, want, got, stack.logs()))


def wait_analytics(stack):
    """Until the analytics actors have joined the group and fold events in
    (the mock's group coordinator waits 3 s for members to gather)"""
    with stack.client() as c:
        assert c.incr("warm-up", "_ready", 1)["status"] == 200
    wait_ranking(stack, "_ready", {"warm-up": 1})


def log_by_id(records):
    """{request id: [records]} of every increment in the log that counts
    (PROTOCOL.md 10: void ones of fenced actors left out), checking each
    record against the spec on the way"""
    by_id = collections.defaultdict(list)
    for rec in records:
        assert rec["headers"] == "hgp=HGPE01", rec
    for rec in counted(records)[0]:
        assert rec["headers"] == "hgp=HGPE01", rec
        ev = rec["event"]
        assert rec["key"] == counter_key(ev["resource_id"], ev["counter_type"])
        by_id[ev["id"]].append(rec)
    return by_id


def test_every_acknowledged_increment_is_exactly_one_event_in_the_log(stack):
    keys = [("post_%d" % i, "like") for i in range(20)]
    acked, indeterminate, errors = run_load(stack.client_endpoint, keys,
                                            total=6000, clients=20)
    assert errors == {} and not any(indeterminate.values())
    with stack.client() as c:
        rep = c.incr("post_u", "like", 7, rid="with-user", user_id="user_9")
        assert rep["status"] == 200
    records = stack.kafka.read()
    by_id = log_by_id(records)
    sent = {rid: key for key, items in acked.items() for rid, _ in items}
    sent["with-user"] = ("post_u", "like")
    # exactly one event per acknowledged increment, and nothing else
    assert set(by_id) == set(sent)
    assert all(len(v) == 1 for v in by_id.values())
    for rid, (rec,) in by_id.items():
        ev = rec["event"]
        assert (ev["resource_id"], ev["counter_type"]) == sent[rid]
    assert by_id["with-user"][0]["event"]["user_id"] == "user_9"
    assert by_id["with-user"][0]["event"]["delta"] == 7
    # no actor died: no fences, nothing void
    live, void, fences = counted(records)
    assert void == [] and fences == [] and len(live) == len(records)
    # a key's events are on one partition, in order: each value is the
    # previous one plus the delta, and the last one is what Redis holds
    per_key = collections.defaultdict(list)
    for rec in records:
        ev = rec["event"]
        per_key[(ev["resource_id"], ev["counter_type"])].append(rec)
    for key, recs in per_key.items():
        assert len({r["partition"] for r in recs}) == 1, key
        recs.sort(key=lambda r: r["offset"])
        value = 0
        for r in recs:
            value += r["event"]["delta"]
            assert r["event"]["value"] == value, (key, r)
        assert stack.redis.counter(*key) == value
    # acknowledged values are the ones the events carry
    values = {rid: v for items in acked.values() for rid, v in items}
    for rid, v in values.items():
        assert by_id[rid][0]["event"]["value"] == v


def test_logged_but_unapplied_increment_is_applied_once_and_not_logged_again(
        make_stack):
    # A counter that dies right after Kafka acknowledged its events and
    # before Redis applied them (fault injection: counter/crash_after_log)
    stack = make_stack(actors=0)
    victim = stack.add_counter(env={"HGP_COUNTER_CRASH_AFTER_LOG": "1"})
    stack.wait_actors(1)
    with stack.client() as c:
        rep = c.incr("doomed", "view", 5, rid="retry-me", timeout_ms=3000)
        assert rep["status"] == 504, rep           # the actor died holding it
    victim.p.wait(10)
    assert victim.p.returncode == 70, victim.output()
    assert stack.redis.counter("doomed", "view") == 0   # logged, not applied
    stack.add_counter()
    stack.wait_actors(1)
    # The retry is answered 504 until the dead actor's events are recovered
    # from the log, then 200: the first attempt, applied, not logged twice
    reps = settle(stack, {("doomed", "view"): [("retry-me", None)]}, delta=5)
    assert reps["retry-me"]["value"] == 5
    assert stack.redis.counter("doomed", "view") == 5
    by_id = log_by_id(stack.kafka.read())
    assert len(by_id["retry-me"]) == 1
    with stack.client() as c:
        again = c.incr("doomed", "view", 5, rid="retry-me")
        assert again["status"] == 200 and again["replayed"] is True
    assert len(log_by_id(stack.kafka.read())["retry-me"]) == 1


def test_kill_9_of_a_counter_actor_mid_load_loses_and_duplicates_nothing(
        make_stack):
    stack = make_stack(actors=2, analytics=1)
    keys = [("hot_%d" % i, "view") for i in range(12)]
    victim = stack.counters[0]
    acked, indeterminate, errors = run_load(
        stack.client_endpoint, keys, total=20000, clients=40, timeout_ms=3000,
        during=victim.kill9)
    assert not victim.alive()
    assert set(errors) <= {"no_actor", "busy", "unavailable",
                           "log_unavailable"}, errors
    n_acked = sum(len(v) for v in acked.values())
    assert n_acked > 12000, (n_acked, errors)
    # settle every indeterminate one by retrying it with its id
    settled = settle(stack, indeterminate)
    # the survivor recovers the dead actor once its lease ran out (2 s),
    # and fences it in every partition first
    partitions = set(range(stack.kafka.partitions))
    deadline = time.time() + MAX_SETTLE
    while True:
        records = stack.kafka.read()
        fenced = collections.defaultdict(set)
        for rec in counted(records)[2]:
            fenced[rec["event"]["fence"]].add(rec["partition"])
        if fenced and all(p == partitions for p in fenced.values()):
            break
        assert time.time() < deadline, (fenced, stack.logs())
        time.sleep(0.5)
    by_id = log_by_id(records)
    dupes = {rid: len(v) for rid, v in by_id.items() if len(v) > 1}
    assert not dupes, dupes
    applied = {rid for items in acked.values() for rid, _ in items} | set(settled)
    # every acknowledged increment is in the log, and only those
    assert set(by_id) == applied
    for key in keys:
        in_log = sum(1 for recs in by_id.values()
                     if (recs[0]["event"]["resource_id"],
                         recs[0]["event"]["counter_type"]) == key)
        expected = len(acked[key]) + len(indeterminate[key])
        assert in_log == expected, key
        assert stack.redis.counter(*key) == expected, key
    # the ranking, built from the log by analytics, agrees with Redis
    wait_ranking(stack, "view", {k[0]: stack.redis.counter(*k) for k in keys})


def test_kill_9_of_the_analytics_actor_mid_load_counts_every_event_once(
        make_stack):
    env = {"HGP_ANALYTICS_SESSION_TIMEOUT": "3000",
           "HGP_ANALYTICS_BATCH_MAX": "50"}
    stack = make_stack(actors=2, analytics=2, env=env)
    keys = [("item_%d" % i, "like") for i in range(15)]
    victim = stack.analytics[0]
    acked, indeterminate, errors = run_load(
        stack.client_endpoint, keys, total=12000, clients=20, timeout_ms=3000,
        during=victim.kill9)
    assert not victim.alive()
    assert errors == {} and not any(indeterminate.values()), (errors, indeterminate)
    want = {k[0]: stack.redis.counter(*k) for k in keys}
    assert sum(want.values()) == 12000
    # the survivor takes the dead member's partitions over
    wait_ranking(stack, "like", want)
    # a fresh member joins and partitions move again: still every event once
    stack.add_analytics()
    time.sleep(4)
    wait_ranking(stack, "like", want)
    with stack.client() as c:
        for key in keys[:3]:
            rep = c.call({"op": "stats", "resource_id": key[0],
                          "counter_type": key[1]})
            assert rep["status"] == 200 and rep["total"] == want[key[0]]
            assert sum(n for _, n in rep["buckets"]) == want[key[0]]


def test_a_zombie_counter_is_fenced_and_its_late_events_count_nowhere(
        make_stack):
    # A counter pauses right after its lease check, before logging
    # (fault injection: counter/stall_before_log, once, 5 s: a paused
    # process). Meanwhile the broker gives its requests to the other
    # counter, which waits for its lease to run out, fences it in the log
    # and recovers it; the retries are then logged by the survivor. When
    # the zombie wakes up it hands its batch to Kafka anyway: those events
    # land after the fence, so every reader ignores them (PROTOCOL.md 10),
    # and the zombie itself applies nothing (its lease is gone).
    # The analytics actor is killed once it has passed the fence and before
    # the late events come: its successor starts after the fence and must
    # know it from Redis (hgp:a:fences), not from reading it.
    stack = make_stack(actors=1, analytics=1,
                       env={"HGP_ANALYTICS_SESSION_TIMEOUT": "3000"})
    wait_analytics(stack)
    zombie = stack.add_counter(env={"HGP_COUNTER_STALL_BEFORE_LOG": "5000"})
    stack.wait_actors(3)
    first = stack.analytics[0]

    def kill_analytics_past_the_fence():
        deadline = time.time() + 20
        while time.time() < deadline and first.alive():
            if stack.redis.command("HLEN", "hgp:a:fences") != b":0\r\n":
                first.kill9()
            time.sleep(0.05)

    killer = threading.Thread(target=kill_analytics_past_the_fence)
    killer.start()
    keys = [("z_%d" % i, "view") for i in range(16)]
    acked, indeterminate, errors = run_load(
        stack.client_endpoint, keys, total=400, clients=16, timeout_ms=3000)
    killer.join()
    assert not first.alive(), "analytics never saw a fence:\n" + stack.logs()
    # a stalled counter's refusals name its lost identity (unavailable)
    assert set(errors) <= {"no_actor", "busy", "unavailable",
                           "log_unavailable"}, errors
    assert "stall_before_log is set" in zombie.output()
    # the zombie wakes up, logs its batch, finds its lease gone and takes
    # a new log identity
    deadline = time.time() + 20
    while "giving up log identity" not in zombie.output():
        assert time.time() < deadline, stack.logs()
        time.sleep(0.2)
    settled = settle(stack, indeterminate)
    records = stack.kafka.read()
    live, void, fences = counted(records)
    # the scenario happened: the zombie's late events are in the log,
    # after a fence that names it
    assert void, "the zombie logged nothing after its fence:\n" + stack.logs()
    zombie_ids = {rec["event"]["actor"] for rec in void}
    assert zombie_ids <= {rec["event"]["fence"] for rec in fences}
    # every acknowledged increment counts exactly once, void ones aside
    by_id = log_by_id(records)
    dupes = {rid: len(v) for rid, v in by_id.items() if len(v) > 1}
    assert not dupes, dupes
    applied = {rid for items in acked.values() for rid, _ in items} | set(settled)
    assert {rid for rid, (rec,) in by_id.items()
            if rec["event"]["counter_type"] == "view"} == applied
    want = {}
    for key in keys:
        n = len(acked[key]) + len(indeterminate[key])
        assert stack.redis.counter(*key) == n, key
        if n:
            want[key[0]] = n
    # a void event was a real request: a retry of its id counts once
    assert {rec["event"]["id"] for rec in void} <= set(by_id)
    # analytics skips the void events too (the new member, by the fences
    # its predecessor stored), and replay does
    second = stack.add_analytics()
    wait_ranking(stack, "view", want)
    assert "void events (of fenced actors" in second.output(), second.output()
    before = stack.redis.counters()
    assert stack.redis.command("FLUSHALL").startswith(b"+OK")
    r = stack.cli("--json", "replay")
    assert r.returncode == 0, r
    assert '"void":%d' % len(void) in r.stdout, r
    assert stack.redis.counters() == before


def test_flush_redis_then_replay_restores_every_counter(make_stack):
    stack = make_stack(actors=2, analytics=1)
    keys = [("page_%d" % i, t) for i in range(30) for t in ("view", "like")]
    acked, indeterminate, errors = run_load(stack.client_endpoint, keys,
                                            total=6000, clients=20)
    assert errors == {} and not any(indeterminate.values())
    with stack.client() as c:
        assert c.incr("neg", "view", -4)["value"] == -4
    before = stack.redis.counters()
    assert len(before) == len(keys) + 1
    rankings = {t: {r: stack.redis.counter(r, t) for r, tt in keys if tt == t}
                for t in ("view", "like")}
    for t, want in rankings.items():
        wait_ranking(stack, t, want)
    # refused while counters exist: would double count expired records
    r = stack.cli("replay")
    assert r.returncode == 1 and "already holds counters" in r.stderr, r
    assert stack.redis.command("FLUSHALL").startswith(b"+OK")
    assert stack.redis.counters() == {}
    r = stack.cli("replay")
    assert r.returncode == 0, r
    assert "6001 events read, 6001 applied" in r.stdout, r
    assert stack.redis.counters() == before
    # --reset wipes and rebuilds; the counters come out the same
    r = stack.cli("--json", "replay", "--reset")
    assert r.returncode == 0 and '"applied":6001' in r.stdout, r
    assert stack.redis.counters() == before
    # the analytics actor notices that Redis lost its state and rebuilds
    # the rankings from the start of the log
    for t, want in rankings.items():
        wait_ranking(stack, t, want)
    # and the service goes on where it was
    with stack.client() as c:
        assert c.incr("neg", "view", 1)["value"] == -3


def test_kafka_unreachable_increments_fail_503_and_apply_nothing(make_stack):
    stack = make_stack(actors=1)
    with stack.client() as c:
        assert c.incr("k", "t", 10)["value"] == 10
        assert stack.kafka.stop() == 0
        for _ in range(5):
            rep = c.incr("k", "t", 1, timeout_ms=4000)
            assert rep["status"] == 503, rep
            assert rep["error"]["code"] == "log_unavailable", rep
            assert "kafka" in rep["error"]["message"]
        # reads do not need the log
        assert c.get("k", "t") == 10
    assert stack.redis.counter("k", "t") == 10
    assert stack.redis.keys("hgp:r:*") != []    # only the first one's record
    assert len(stack.redis.keys("hgp:r:*")) == 1


def test_all_time_ranking_is_exact_and_ties_break_by_resource_id(make_stack):
    stack = make_stack(actors=1, analytics=1)
    incrs = [("r1", 5), ("r2", 3), ("r3", 3), ("r0", 3), ("r4", 1),
             ("r5", 2), ("r5", -2), ("r6", -1), ("r1", 2)]
    with stack.client() as c:
        for res, delta in incrs:
            assert c.incr(res, "like", delta)["status"] == 200
            assert c.incr(res, "view", 1)["status"] == 200
    # net zero and negative sums are not ranked; equal sums by id ascending
    want = {"r1": 7, "r0": 3, "r2": 3, "r3": 3, "r4": 1}
    wait_ranking(stack, "like", want)
    assert top(stack, "like") == [("r1", 7), ("r0", 3), ("r2", 3), ("r3", 3),
                                  ("r4", 1)]
    assert top(stack, "like", limit=2) == [("r1", 7), ("r0", 3)]
    assert top(stack, "like", window="1h") == top(stack, "like")
    assert dict(top(stack, "view")) == {r: n for r, n in
                                        collections.Counter(
                                            r for r, _ in incrs).items()}
    assert top(stack, "nothing") == []
    r = stack.cli("top", "like", "--limit", "3")
    assert r.returncode == 0 and r.stdout.split("\n")[:3] == [
        "1 r1 7", "2 r0 3", "3 r2 3"], r


def test_windowed_ranking_drops_events_older_than_the_window(make_stack):
    env = {"HGP_ANALYTICS_WINDOW_1H": "3000", "HGP_ANALYTICS_WINDOW_24H": "60000"}
    stack = make_stack(actors=1, analytics=1, env=env)
    wait_analytics(stack)
    with stack.client() as c:
        for _ in range(10):
            c.incr("old_hit", "play", 1)
        c.incr("steady", "play", 4)
    wait_ranking(stack, "play", {"old_hit": 10, "steady": 4}, window="1h")
    time.sleep(3.2)                     # the 3 s window has passed them
    with stack.client() as c:
        for _ in range(2):
            c.incr("new_hit", "play", 1)
        c.incr("steady", "play", 1)
    wait_ranking(stack, "play", {"new_hit": 2, "steady": 1}, window="1h")
    assert top(stack, "play", window="24h") == [("old_hit", 10), ("steady", 5),
                                                 ("new_hit", 2)]
    assert top(stack, "play") == top(stack, "play", window="24h")


def test_trending_scores_decay_so_recent_activity_ranks_first(make_stack):
    env = {"HGP_ANALYTICS_HALF_LIFE": "2000"}
    stack = make_stack(actors=1, analytics=1, env=env)
    with stack.client() as c:
        c.incr("yesterday", "like", 8)
    wait_ranking(stack, "like", {"yesterday": 8})
    time.sleep(4.0)
    with stack.client() as c:
        c.incr("today", "like", 4)
    wait_ranking(stack, "like", {"yesterday": 8, "today": 4})
    ranking = top(stack, "like", window="trending")
    assert [r for r, _ in ranking] == ["today", "yesterday"], ranking
    scores = dict(ranking)
    # 8 halved twice or more is under 2; 4 has barely decayed
    assert scores["yesterday"] < 2.05 and 2.5 < scores["today"] <= 4.0, scores
    assert isinstance(scores["today"], float)
    # all-time is unmoved by time
    assert top(stack, "like") == [("yesterday", 8), ("today", 4)]


def test_stats_gives_counts_per_bucket_that_add_up_to_the_total(make_stack):
    env = {"HGP_ANALYTICS_BUCKET": "1000", "HGP_ANALYTICS_SPAN": "60000"}
    stack = make_stack(actors=1, analytics=1, env=env)
    with stack.client() as c:
        for delta in (1, 2, 3):
            c.incr("song", "play", delta)
        time.sleep(1.1)
        for delta in (4, 5):
            c.incr("song", "play", delta)
    wait_ranking(stack, "play", {"song": 15})
    with stack.client() as c:
        rep = c.call({"op": "stats", "resource_id": "song", "counter_type": "play"})
        assert rep["status"] == 200, rep
        assert rep["total"] == 15 and rep["bucket_ms"] == 1000
        counts = [n for _, n in rep["buckets"]]
        assert sum(counts) == 15 and len(counts) >= 2, rep
        starts = [t for t, _ in rep["buckets"]]
        assert starts == sorted(starts) and all(t % 1000 == 0 for t in starts)
        assert rep["trending"] > 0
        none = c.call({"op": "stats", "resource_id": "silent", "counter_type": "play"})
        assert none["status"] == 200 and none["total"] == 0 and none["buckets"] == []
    r = stack.cli("stats", "song", "play")
    assert r.returncode == 0 and r.stdout.startswith("total 15\n"), r


def test_analytics_ops_without_an_analytics_actor_are_503(stack):
    with stack.client() as c:
        rep = c.call({"op": "top", "counter_type": "like"})
        assert rep["status"] == 503 and rep["error"]["code"] == "no_actor"
        assert "analytics" in rep["error"]["message"]
        rep = c.call({"op": "top", "counter_type": "like", "window": "week"})
        assert rep["status"] == 400 and rep["error"]["code"] == "invalid"
        rep = c.call({"op": "top", "counter_type": "like", "limit": 1001})
        assert rep["status"] == 400
