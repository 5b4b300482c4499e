"""The analytics actor folds many events of few resources at once.

2000 increments of mixed deltas (+5, -3, +1) over three resources, one of
which sums to exactly 0, fired fast with many in flight, so that one fold
of the analytics actor holds many events of the same resource, window
bucket and minute. Afterwards the all-time ranking, the 1h and 24h windows,
the trending scores and the stats buckets must equal what the test computes
itself: the sums from the acknowledged replies, per bucket and decayed from
the timestamps of the events in the log (read with kcat). The Redis
commands the fold costs per event are read from `INFO commandstats` and
reported (measured(...)), and bounded: an event must not cost a dozen."""
import collections
import os
import random
import re
import time

import msgpack
import zmq

from hgp_harness import Client
from test_eventlog import log_by_id, top, wait_analytics, wait_ranking

TYPE = "fold"
EVENTS = 2000
SOCKETS = 8
WINDOW = 25                 # requests in flight per socket
BUCKET_MS = 1000            # stats buckets (analytics/bucket)
HALF_LIFE_MS = 3600000
# Commands only the fold script issues (the counters use none of them) and
# the fence check (HEXISTS: the counters' scripts also run one per batch)
FOLD_COMMANDS = ("zincrby", "zrem", "pexpireat", "pexpiretime", "hincrby",
                 "hlen", "hkeys", "hdel", "hsetnx", "hexists")


def plan():
    """[(resource, delta)]: fa and fb random deltas, fz a pattern summing
    to 0 (so its all-time score lands on 0 and it must leave the set)"""
    rng = random.Random(10)
    out = []
    zero = [5, -3, -3, 1]
    for i in range(EVENTS):
        if i % 3 == 2:
            out.append(("fz", zero[(i // 3) % 4]))
        else:
            out.append(("fa" if i % 3 == 0 else "fb", rng.choice((5, -3, 1))))
    # fz took 666 events: end on a whole pattern (664) plus two that cancel
    n_fz = sum(1 for r, _ in out if r == "fz")
    assert n_fz % 4 == 2
    fz = [i for i, (r, _) in enumerate(out) if r == "fz"]
    out[fz[-2]], out[fz[-1]] = ("fz", 5), ("fz", -5)
    assert sum(d for r, d in out if r == "fz") == 0
    rng.shuffle(out)
    return out


def fire(endpoint, incrs, counter_type=TYPE, sockets=SOCKETS, window=WINDOW,
         timeout_ms=5000):
    """Send every increment over `sockets` DEALERs with `window` in flight
    on each; an indeterminate one (504) is sent again with its id until it is
    settled. Returns {id: (resource, delta, value)} of the acknowledged."""
    ctx = zmq.Context.instance()
    socks = [Client(endpoint, ctx) for _ in range(sockets)]
    poller = zmq.Poller()
    for c in socks:
        poller.register(c.sock, zmq.POLLIN)
    by_sock = {c.sock: c for c in socks}
    todo = collections.deque(("%s-%d" % (counter_type, i), r, d)
                             for i, (r, d) in enumerate(incrs))
    inflight = {c.sock: {} for c in socks}     # sock -> {id: (r, d, sent)}
    acked, errors = {}, collections.Counter()
    deadline = time.time() + 120

    def send(c):
        rid, r, d = todo.popleft()
        c.send({"op": "incr", "id": rid, "resource_id": r,
                "counter_type": counter_type, "delta": d, "timeout_ms": timeout_ms})
        inflight[c.sock][rid] = (r, d, time.time())

    while todo or any(inflight.values()):
        assert time.time() < deadline, (len(todo), errors)
        for c in socks:
            while todo and len(inflight[c.sock]) < window:
                send(c)
        for sock, _ in poller.poll(1000):
            while sock.poll(0):
                frames = sock.recv_multipart()
                rep = msgpack.unpackb(frames[2], raw=False)
                item = inflight[sock].pop(rep["id"], None)
                if item is None:
                    continue            # a late reply to a retried request
                r, d, _ = item
                if rep["status"] == 200:
                    acked[rep["id"]] = (r, d, rep["value"])
                elif rep["status"] in (503, 504):
                    errors[rep["error"]["code"]] += 1
                    todo.append((rep["id"], r, d))     # same id: counts once
                else:
                    raise AssertionError(rep)
        now = time.time()
        for sock, items in inflight.items():
            for rid, (r, d, sent) in list(items.items()):
                if now - sent > timeout_ms / 1000.0 + 2:
                    del items[rid]
                    todo.append((rid, r, d))
    for c in socks:
        c.close()
    return acked, errors


def commandstats(redis):
    """{command: calls} from INFO commandstats"""
    text = redis.command("INFO", "commandstats").decode()
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"cmdstat_([a-z|]+):calls=(\d+)", text)}


def folds(output):
    """(events, folds) from the analytics actor's last words, if it says"""
    m = re.search(r"stopped after (\d+) events in (\d+) folds", output)
    return (int(m.group(1)), int(m.group(2))) if m else None


def test_many_events_of_few_resources_fold_into_exact_sums(make_stack,
                                                           measured):
    env = {"HGP_ANALYTICS_BUCKET": str(BUCKET_MS),
           "HGP_ANALYTICS_SPAN": "600000",
           "HGP_ANALYTICS_WINDOW_1H": "600000",     # 10 s window buckets
           "HGP_ANALYTICS_HALF_LIFE": str(HALF_LIFE_MS)}
    stack = make_stack(actors=2, analytics=1, env=env)
    wait_analytics(stack)
    assert stack.redis.command("CONFIG", "RESETSTAT").startswith(b"+OK")
    t0 = time.time()
    acked, errors = fire(stack.client_endpoint, plan())
    elapsed = time.time() - t0
    assert len(acked) == EVENTS, (len(acked), errors)

    sums = collections.Counter()
    for r, d, _ in acked.values():
        sums[r] += d
    assert sums["fz"] == 0 and sums["fa"] > 0 and sums["fb"] > 0, sums
    # the counters agree (the last value acknowledged is the sum)
    for r in sums:
        assert stack.redis.counter(r, TYPE) == sums[r], r
    want = {r: n for r, n in sums.items() if n > 0}
    wait_ranking(stack, TYPE, want)
    ranked = sorted(want.items(), key=lambda kv: (-kv[1], kv[0]))
    assert top(stack, TYPE) == ranked
    # the resource that sums to 0 is not in the all-time set at all
    assert stack.redis.command("ZSCORE", "hgp:a:all:" + TYPE, "fz") \
        == b"$-1\r\n"
    assert top(stack, TYPE, window="1h") == ranked
    assert top(stack, TYPE, window="24h") == ranked

    # the log holds exactly the acknowledged increments; per stats bucket
    # and decayed to now, their deltas are what analytics reports
    by_id = log_by_id(stack.kafka.read())
    mine = {rid: recs for rid, recs in by_id.items()
            if recs[0]["event"]["counter_type"] == TYPE}
    assert set(mine) == set(acked)
    assert all(len(recs) == 1 for recs in mine.values())
    buckets = collections.defaultdict(collections.Counter)
    landmark = collections.Counter()          # sum of d * 2^(ts / half)
    for rid, (rec,) in mine.items():
        ev = rec["event"]
        assert (ev["resource_id"], ev["delta"]) == acked[rid][:2]
        buckets[ev["resource_id"]][ev["ts"] // BUCKET_MS * BUCKET_MS] \
            += ev["delta"]
        landmark[ev["resource_id"]] += ev["delta"] * 2 ** (
            (ev["ts"] - t0 * 1000) / HALF_LIFE_MS)
    with stack.client() as c:
        for r in ("fa", "fb", "fz"):
            before = time.time() * 1000
            rep = c.call({"op": "stats", "resource_id": r,
                          "counter_type": TYPE})
            after = time.time() * 1000
            assert rep["status"] == 200, rep
            assert rep["total"] == sums[r], (r, rep["total"], sums[r])
            assert rep["bucket_ms"] == BUCKET_MS
            got = {start: n for start, n in rep["buckets"]}
            assert got == {t: n for t, n in buckets[r].items() if n}, r
            # trending: the same decayed sum; only rounding may differ
            lo, hi = sorted(landmark[r] * 2 ** ((t0 * 1000 - t) / HALF_LIFE_MS)
                            for t in (before - 5, after + 5))
            scale = sum(abs(d) for rr, d, _ in acked.values() if rr == r)
            assert lo - 1e-9 * scale <= rep["trending"] <= hi + 1e-9 * scale, \
                (r, rep["trending"], lo, hi)

    # what the fold cost Redis
    burst = commandstats(stack.redis)

    # the same increments again, of another type, with few in flight: a
    # steady trickle the actor folds as it comes, in small folds
    t1 = time.time()
    acked, errors = fire(stack.client_endpoint, plan(), counter_type="paced",
                         sockets=2, window=4)
    trickle_s = time.time() - t1
    assert len(acked) == EVENTS, (len(acked), errors)
    wait_ranking(stack, "paced", want)
    assert top(stack, "paced") == ranked
    trickle = commandstats(stack.redis)
    trickle = {k: n - burst.get(k, 0) for k, n in trickle.items()}

    analytics = stack.analytics[0]
    assert analytics.stop() == 0, analytics.output()
    seen = folds(analytics.output())
    cost = {}
    for name, stats, secs in (("burst", burst, elapsed),
                              ("trickle", trickle, trickle_s)):
        per_event = {k: stats.get(k, 0) / EVENTS for k in FOLD_COMMANDS}
        cost[name] = sum(per_event.values())
        measured("analytics fold, %s (%d increments in %.1f s): %.2f Redis"
                 " commands per event (%s); all of Redis %.2f per increment"
                 % (name, EVENTS, secs, cost[name],
                    ", ".join("%s %.2f" % kv for kv in per_event.items()
                              if kv[1]),
                    sum(stats.values()) / EVENTS))
    # each fold also costs its EVALSHA and the offsets' (and fences')
    # HMGET and HSET, not counted above (the counters use them too)
    measured("analytics: %s" % ("%d events in %d folds (%.1f per fold)"
                                % (seen + (seen[0] / max(seen[1], 1),))
                                if seen else "folds not told"))
    # about 11 commands an event when each event is its own ZINCRBYs,
    # PEXPIREATs, HINCRBY, PEXPIRETIME, HLEN and HEXISTS; a burst folds
    # hundreds of events of three resources per call
    assert cost["burst"] < 2 and cost["trickle"] < 9.5, cost


def test_bench_counters_stay_out_of_the_rankings(make_stack):
    """Issue 15: the keys of `hgp bench` (counter type "bench") filled the
    rankings for ever. analytics/skip (default "bench": a prefix) leaves
    such events out of rankings, windows and stats (counted in the
    analytics metrics as unranked); the counters themselves count as ever,
    and with analytics/skip empty they rank like any type."""
    stack = make_stack(actors=1, analytics=1)
    wait_analytics(stack)
    out = stack.cli("bench", "-n", "300", "-w", "16", "-k", "3", timeout=120)
    assert out.returncode == 0, out.stderr
    with stack.client() as c:
        for t in ("bench", "bench.lt1", "benchmark", "like"):
            assert c.incr("after-bench", t, 2)["status"] == 200
        assert c.incr("no-prefix-match", "xbench", 1)["status"] == 200
        # the counters are there
        assert c.get("after-bench", "bench") == 2
    wait_ranking(stack, "like", {"after-bench": 2})
    wait_ranking(stack, "xbench", {"no-prefix-match": 1})
    for t in ("bench", "bench.lt1", "benchmark"):
        assert top(stack, t) == [], t
        with stack.client() as c:
            rep = c.call({"op": "stats", "resource_id": "after-bench",
                          "counter_type": t})
        assert rep["status"] == 200 and rep["total"] == 0, rep

    other = make_stack(actors=1, analytics=1, env={"HGP_ANALYTICS_SKIP": ""})
    wait_analytics(other)
    with other.client() as c:
        assert c.incr("ranked", "bench", 3)["status"] == 200
    wait_ranking(other, "bench", {"ranked": 3})


def _metric(proc, name):
    """One sample of a process's /metrics (its address is in its log)"""
    from test_metrics import http_get, value
    url = re.search(r"metrics at (http://\S+/metrics)", proc.output()).group(1)
    return int(value(http_get(url)[1], name))


def test_events_the_log_dropped_before_they_were_folded_are_counted_lost(
        make_stack, logdir):
    """Kafka keeps a topic for its retention only (librdkafka's mock: 5 MB a
    partition). An analytics actor that was down while the log dropped
    events it had not folded cannot count them; librdkafka goes on from the
    log's start. It used to do so silently: rankings short of the counters
    with nothing to say why. Now the actor logs an error naming the
    offsets and hgp_analytics_lost_total counts exactly the records it
    never saw, and what comes after is folded as usual."""
    import subprocess
    from hgp_harness import Kafka
    stack = make_stack(actors=1, analytics=1,
                       kafka=Kafka(logdir, partitions=1))
    wait_analytics(stack)
    with stack.client() as c:
        assert c.incr("early", "lost", 3)["status"] == 200
    wait_ranking(stack, "lost", {"early": 3})
    assert stack.analytics[0].stop() == 0
    with stack.client() as c:
        for _ in range(5):
            assert c.incr("dropped", "lost", 1)["status"] == 200
    dropped = [r["offset"] for r in stack.kafka.read()
               if isinstance(r["event"], dict)
               and r["event"].get("resource_id") == "dropped"]
    assert len(dropped) == 5, dropped
    # 6 MB more in the partition: the mock drops its oldest batches
    filler = os.path.join(logdir, "filler.txt")
    with open(filler, "w") as f:
        for _ in range(60):
            f.write("x" * 100000 + "\n")
    with open(filler, "rb") as f:       # a record per line
        out = subprocess.run(["kcat", "-P", "-b", stack.kafka.brokers, "-t",
                              "counter_events", "-p", "0"], stdin=f,
                             capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    first = subprocess.run(["kcat", "-C", "-b", stack.kafka.brokers, "-t",
                            "counter_events", "-p", "0", "-o", "beginning",
                            "-c", "1", "-e", "-q", "-f", "%o\n"],
                           capture_output=True, timeout=60)
    assert first.returncode == 0, first.stderr
    low = int(first.stdout.split()[0])     # the log's start now
    assert low > dropped[-1], (low, dropped)     # they are gone
    analytics = stack.add_analytics()
    with stack.client() as c:
        assert c.incr("after", "lost", 2)["status"] == 200
    wait_ranking(stack, "lost", {"early": 3, "after": 2})
    assert "the log dropped offsets %d..%d before they were read" % (
        dropped[0], low - 1) in analytics.output(), analytics.output()
    deadline = time.time() + 10         # analytics publishes once a second
    while _metric(analytics, "hgp_analytics_lost_total") != low - dropped[0]:
        assert time.time() < deadline, (
            _metric(analytics, "hgp_analytics_lost_total"), low - dropped[0])
        time.sleep(0.2)
