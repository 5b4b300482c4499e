"""Hostile and heavy input at the store side (issue 9): the counter's full
batch, forged events in the log, expired work, error names, byte-bounded
queues, and the codec answering what PROTOCOL.md says.

Real processes on loopback (harness Stack), a Python client of the
protocol, Redis read with a raw socket, the log read and written with kcat.
"""
import os
import re
import signal
import subprocess
import time

import msgpack

from hgp_harness import Client, counter_key, new_id


def _raw(stack, body_bytes, timeout=10.0):
    """Send a hand-packed body; return the decoded reply"""
    with stack.client() as c:
        c.send_raw([b"", b"HGPC01", body_bytes])
        return c.recv(timeout)


def _map(pairs):
    """A msgpack map with its keys in exactly this order"""
    out = bytearray([0x80 | len(pairs)])
    for k, v in pairs:
        out += msgpack.packb(k) + msgpack.packb(v)
    return bytes(out)


def test_mget_keys_of_the_wrong_type_are_invalid_wherever_keys_stands(stack):
    for order in ("last", "first"):
        pairs = [("op", "mget"), ("id", "m-" + order)]
        keys = ("keys", [[1, 2]])
        pairs = pairs + [keys] if order == "last" else [keys] + pairs
        rep = _raw(stack, _map(pairs))
        assert rep["status"] == 400, (order, rep)
        assert rep["error"]["code"] == "invalid", (order, rep)
        assert rep["error"]["message"] == "keys[].resource_id must be a string", rep


def test_timeout_ms_out_of_range_names_the_range_accepted(stack):
    for bad in (0, 60001):
        rep = _raw(stack, _map([("op", "ping"), ("id", "p%d" % bad),
                                ("timeout_ms", bad)]))
        assert rep["status"] == 400, rep
        assert rep["error"]["message"] == "timeout_ms must be from 1 to 60000", rep


def _total(stack, keys):
    return sum(stack.redis.counter(r, t) for r, t in keys)


def test_full_batch_of_batch_max_increments_is_applied_once(make_stack):
    """One counter, paused while more than counter/batch_max (512)
    increments queue up at it, then resumed: its first batch is full. Every
    increment is acked once, Redis and the log hold each once, and the
    counter exits 0 under ASan (the prepare EVALSHA of a full batch needs
    8 + 3n arguments)."""
    stack = make_stack(actors=1)
    keys = [("fb%d" % i, "like") for i in range(20)]
    # Far more than one batch: the stopped counter's I/O thread is stopped
    # too, so on SIGCONT its first batch may take only what that thread has
    # read by then; with this many waiting, a later batch is surely full
    n = 1600
    counter = stack.counters[0]
    with stack.client() as c:
        assert c.incr("warm", "up")["status"] == 200
        counter.signal(signal.SIGSTOP)
        try:
            ids = {}
            for i in range(n):
                r, t = keys[i % len(keys)]
                rid = c.send({"op": "incr", "resource_id": r, "counter_type": t,
                              "delta": 1, "timeout_ms": 20000})
                ids[rid] = (r, t)
            time.sleep(0.8)             # all of them in the counter's socket
        finally:
            counter.signal(signal.SIGCONT)
        replies = {}
        while len(replies) < n:
            rep = c.recv(30)
            assert rep["id"] not in replies, rep
            replies[rep["id"]] = rep
    assert set(replies) == set(ids)
    bad = [r for r in replies.values() if r["status"] != 200]
    assert not bad, bad[:3]
    assert _total(stack, keys) == n
    records = stack.kafka.read()
    logged = [r["event"]["id"] for r in records
              if "fence" not in r["event"] and r["event"]["id"] in ids]
    assert sorted(logged) == sorted(ids)
    assert "first full batch (512 requests)" in counter.output(), counter.output()[-3000:]


def test_after_a_redis_restart_errors_name_redis_not_kafka(make_stack, logdir,
                                                            measured):
    """Kafka is fine throughout; Redis restarts empty (no persistence, so
    the counter's lease is gone) while clients keep sending. Until the
    counter holds a new log identity, increments are refused, and the
    refusal must name what is missing (Redis, registering), never the
    event log."""
    from hgp_harness import Redis
    redis = Redis(logdir)
    stack = make_stack(actors=1, redis=redis)
    with stack.client() as c:
        assert c.incr("rr", "t", 1)["status"] == 200
        redis.proc.stop()
        t_down = time.time()
        while time.time() - t_down < 2.0:
            rep = c.incr("rr", "t", 1, timeout_ms=3000)
            assert rep["status"] == 503 and rep["error"]["code"] == "unavailable", rep
            time.sleep(0.05)
        redis.start(logdir)
        t0 = time.time()
        refused = []
        while True:
            rep = c.incr("rr", "t", 1, timeout_ms=3000)
            if rep["status"] == 200:
                break
            refused.append(rep)
            assert time.time() - t0 < 15, refused[-3:]
            time.sleep(0.02)
        recovered = time.time() - t0
    measured("redis restart: %d refused increments over %.2f s before the"
             " first 200; codes %r" % (len(refused), recovered,
                                       sorted({r["error"]["code"] for r in refused})))
    for rep in refused:
        assert rep["status"] in (503, 504), rep
        assert rep["error"]["code"] != "log_unavailable", rep
        assert "kafka" not in rep["error"]["message"], rep
    assert redis.counter("rr", "t") == 1        # Redis came back empty


def _kcat_produce(stack, value, key=None, partition=None):
    """One record straight into the log with kcat, as anyone with write
    access to the topic could"""
    path = os.path.join(stack.logdir, "forged-%s.bin" % new_id()[:8])
    with open(path, "wb") as f:
        f.write(value)
    argv = ["kcat", "-P", "-b", stack.kafka.brokers, "-t", "counter_events",
            "-H", "hgp=HGPE01"]
    if key is not None:
        argv += ["-k", key]
    if partition is not None:
        argv += ["-p", str(partition)]
    out = subprocess.run(argv + [path], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr


def _wait_for(predicate, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


def test_forged_events_of_an_unregistered_identity_count_nowhere(make_stack):
    """An increment of 1,000,000 and a fence of the real counter, produced
    with kcat under actor id nobody.1 (valid by PROTOCOL.md 10, but that
    identity never registered): no ranking and no replay counts the
    increment, the fence voids nothing, and both are reported."""
    from test_eventlog import top, wait_analytics, wait_ranking
    stack = make_stack(actors=1, analytics=1)
    wait_analytics(stack)
    with stack.client() as c:
        assert c.incr("post1", "like", 3)["status"] == 200
    real = re.search(r"partitions\) as (\S+)", stack.counters[0].output()).group(1)
    forged = msgpack.packb({"id": "forged-1", "resource_id": "post9",
                            "counter_type": "like", "delta": 1000000,
                            "value": 1000000, "ts": int(time.time() * 1000),
                            "actor": "nobody.1"})
    _kcat_produce(stack, forged, key=counter_key("post9", "like"))
    fence = msgpack.packb({"fence": real, "ts": int(time.time() * 1000),
                           "actor": "nobody.1"})
    for p in range(stack.kafka.partitions):
        _kcat_produce(stack, fence, partition=p)
    forged_records = 1 + stack.kafka.partitions
    # the real counter goes on after the forged fence: its events count
    with stack.client() as c:
        assert c.incr("post1", "like", 2)["status"] == 200
        assert c.incr("post2", "like", 1)["status"] == 200
    analytics = stack.analytics[0]
    _wait_for(lambda: "ignoring records of log identity nobody.1"
              in analytics.output(), "analytics to meet nobody.1")
    want = {"post1": 5, "post2": 1}
    wait_ranking(stack, "like", want)
    assert "post9" not in dict(top(stack, "like"))
    assert analytics.output().count("log identity nobody.1") == 1
    # replay rebuilds the same counters, and counts the forgeries
    before = stack.redis.counters()
    r = stack.cli("--json", "replay", "--reset")
    assert r.returncode == 0, r
    assert '"unregistered":%d' % forged_records in r.stdout, r
    assert '"void":0' in r.stdout, r
    assert stack.redis.counters() == before
    assert stack.redis.counter("post9", "like") == 0
    assert r.stderr.count("log identity nobody.1") == 1, r.stderr


def test_every_kafka_client_takes_the_security_settings(logdir):
    """kafka/security_protocol and friends reach librdkafka in the counter,
    the analytics actor and `hgp replay`: a value librdkafka refuses stops
    each of them at start, naming the setting"""
    from hgp_harness import BIN, ROOT
    env = dict(os.environ)
    env.update({"HGP_CONFIG": os.path.join(ROOT, "configs", "hgp.cfg"),
                "HGP_KAFKA_SECURITY_PROTOCOL": "carrier_pigeon"})
    for argv in (["hgp-counter"], ["hgp-analytics"], ["hgp", "replay"]):
        out = subprocess.run([os.path.join(BIN, argv[0])] + argv[1:], env=env,
                             capture_output=True, text=True, timeout=30)
        assert out.returncode != 0, (argv, out)
        text = out.stdout + out.stderr
        assert "kafka/security_protocol" in text, (argv, text)
        assert "HGP_KAFKA_SECURITY_PROTOCOL" in text, (argv, text)


def _expect_all_504(c, ids):
    """Read one reply per id; every one must be the broker's 504"""
    replies = {}
    while len(replies) < len(ids):
        rep = c.recv(10)
        replies[rep["id"]] = rep
    assert all(r["status"] == 504 for r in replies.values()), replies


def _none_applied_then_each_retry_once(stack, c, resource, ids):
    """The expired increments of ids (to counter resource/t, which held 1)
    were neither applied nor logged; a retry of each applies it once, a
    second retry says replayed"""
    assert stack.redis.counter(resource, "t") == 1
    logged = {r["event"]["id"] for r in stack.kafka.read()
              if "fence" not in r["event"]}
    assert not logged & set(ids), "expired work was logged"
    for rid in ids:
        rep = c.incr(resource, "t", 1, rid=rid)
        assert rep["status"] == 200 and not rep.get("replayed"), rep
    for rid in ids:
        assert c.incr(resource, "t", 1, rid=rid)["replayed"] is True
    assert stack.redis.counter(resource, "t") == 1 + len(ids)


def test_increments_whose_budget_ran_out_while_prepared_are_not_applied(
        make_stack):
    """Redis stalls writes (CLIENT PAUSE) for longer than the requests'
    budget while the counter prepares them: the broker answers 504 at the
    deadline, and the counter must not log or apply them afterwards
    (PROTOCOL.md 9.5). A retry with the same id then applies each once."""
    stack = make_stack(actors=1)
    counter = stack.counters[0]
    with stack.client() as c:
        assert c.incr("dl", "t", 1)["status"] == 200
        # all 20 reach the counter's socket first, so it reads them as one
        # batch (time spent in the socket is invisible to it: 9.5)
        counter.signal(signal.SIGSTOP)
        try:
            ids = [c.send({"op": "incr", "resource_id": "dl",
                           "counter_type": "t", "delta": 1, "timeout_ms": 300})
                   for _ in range(20)]
            time.sleep(0.05)
            assert stack.redis.command("CLIENT", "PAUSE", "800",
                                       "WRITE") == b"+OK\r\n"
        finally:
            counter.signal(signal.SIGCONT)
        _expect_all_504(c, ids)
        time.sleep(1.5)                 # the pause is over, the batch done
        _none_applied_then_each_retry_once(stack, c, "dl", ids)


def _used_memory(redis):
    with __import__("socket").create_connection(("127.0.0.1", redis.port), timeout=5) as s:
        s.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nmemory\r\n")
        f = s.makefile("rb")
        n = int(f.readline()[1:])
        text = f.read(n).decode()
    return int(re.search(r"^used_memory:(\d+)", text, re.M).group(1))


def test_redis_memory_per_remembered_increment(make_stack, measured):
    """What README's per-record figure says: Redis used_memory per
    increment with a distinct id (its record is kept counter/dedup_ttl)"""
    from hgp_harness import run_load
    stack = make_stack(actors=1)
    keys = [("mem%d" % i, "view") for i in range(10)]
    run_load(stack.client_endpoint, keys, total=200, clients=10)
    before = _used_memory(stack.redis)
    n = 20000
    acked, indeterminate, errors = run_load(stack.client_endpoint, keys,
                                            total=n, clients=20)
    assert not errors and not any(indeterminate.values()), errors
    per = (_used_memory(stack.redis) - before) / n
    measured("redis used_memory per remembered increment: %.1f B" % per)
    assert 100 < per < 260, per


def test_a_counter_paused_past_the_deadline_applies_nothing_it_read_late(
        make_stack, measured):
    """Issue 9, finding 9: a counter paused with SIGSTOP past a 400 ms
    deadline applied all 20 requests on resume. The requests waited in its
    socket; the broker's clock on heartbeats and requests (PROTOCOL.md 5.3)
    lets it see that their budget ran out while they waited. A retry with
    the same id then applies each once."""
    stack = make_stack(actors=1)
    counter = stack.counters[0]
    with stack.client() as c:
        assert c.incr("paused", "t", 1)["status"] == 200
        time.sleep(1.2)                 # heartbeats with the broker's clock
        counter.signal(signal.SIGSTOP)
        try:
            t0 = time.time()
            ids = [c.send({"op": "incr", "resource_id": "paused",
                           "counter_type": "t", "delta": 1, "timeout_ms": 400})
                   for _ in range(20)]
            _expect_all_504(c, ids)
            answered = time.time() - t0
            #   Paused 1.2 s: past the deadline, within the heartbeat expiry
            #   (2 s), so the link and the queued requests survive
            time.sleep(max(0.0, 1.2 - (time.time() - t0)))
        finally:
            counter.signal(signal.SIGCONT)
        time.sleep(2.0)                 # it read and dropped them by now
        _none_applied_then_each_retry_once(stack, c, "paused", ids)
    measured("20 increments of 400 ms to a counter paused 1.2 s: 504 within "
             "%.2f s, none applied on resume, each applied once on retry"
             % answered)
