"""Readiness (issue 12): a counter actor says READY to a broker only once it
can serve, that is Redis is connected (its scripts loaded, so Redis is not
loading its data) and its identity in the event log is registered. Before,
a counter sent READY at once: right after `make run` reported healthy, a
load got 503s from a counter still reconnecting to Redis.

Here two counters start while what they need is not reachable yet: one's
Redis and the other's Kafka are behind forwarders (tests/integration/
tcp_forward.py on 127.0.0.2, same port) that start later. While they wait,
a stack whose health is good (one ready counter) must answer every request
200; once the forwarders run, both join and take their share, and every
counter in Redis is exact."""
import os
import sys
import time

from hgp_harness import Proc, run_load

FORWARD = os.path.join(os.path.dirname(__file__), "tcp_forward.py")
PY = sys.executable if os.path.exists(sys.executable) else "/usr/bin/python3"
ALIAS = "127.0.0.2"


def _forward(logdir, name, port):
    proc = Proc(name, [PY, FORWARD, ALIAS, str(port), "127.0.0.1"], logdir=logdir)
    deadline = time.time() + 10
    while "forwarding" not in proc.output():
        assert proc.alive() and time.time() < deadline, proc.output()
        time.sleep(0.02)
    return proc


def _load(stack, keys, total):
    acked, ind, errors = run_load(stack.client_endpoint, keys, total, clients=16)
    return acked, ind, errors


def test_a_counter_sends_ready_only_once_redis_and_the_log_are_there(make_stack, logdir,
                                                                      measured):
    stack = make_stack(actors=1)
    redis_port = stack.redis.port
    kafka_port = int(stack.kafka.brokers.rsplit(":", 1)[1])
    waiting_redis = stack.add_counter({"HGP_REDIS_URL": "redis://%s:%d"
                                       % (ALIAS, redis_port)})
    waiting_kafka = stack.add_counter({"HGP_KAFKA_BROKERS": "%s:%d" % (ALIAS, kafka_port)})
    forwarders = []
    try:
        deadline = time.time() + 30
        while not ("cannot connect to redis" in waiting_redis.output()
                   and "counter: actor" in waiting_kafka.output()):
            assert time.time() < deadline, stack.logs()
            time.sleep(0.05)
        time.sleep(2.0)             # READY would have been sent long ago

        keys = [("ready_%d" % i, "like") for i in range(200)]
        acked, ind, errors = _load(stack, keys, 3000)
        n_acked = sum(len(v) for v in acked.values())
        n_ind = sum(len(v) for v in ind.values())
        measured("while one counter's Redis and another's Kafka were unreachable: "
                 "%d of 3000 increments acked, %d indeterminate, errors %r; broker "
                 "sees %d actors" % (n_acked, n_ind, errors, len(stack.actors())))
        assert not errors and not n_ind, errors
        assert len(stack.actors()) == 1, stack.actors()
        for proc in (waiting_redis, waiting_kafka):
            assert "counter: ready" not in proc.output(), proc.output()

        # What they wait for comes: both announce themselves and serve
        t0 = time.time()
        forwarders.append(_forward(logdir, "fwd-redis", redis_port))
        forwarders.append(_forward(logdir, "fwd-kafka", kafka_port))
        stack.wait_actors(3, timeout=20)
        measured("both joined %.2f s after their Redis and Kafka became reachable"
                 % (time.time() - t0))
        for proc in (waiting_redis, waiting_kafka):
            assert "counter: ready" in proc.output(), proc.output()
        acked2, ind2, errors2 = _load(stack, keys, 3000)
        assert not errors2 and not any(ind2.values()), errors2
        served = {a["actor_id"]: a["served"] for a in stack.actors()}
        assert len(served) == 3 and all(n > 0 for n in served.values()), served

        with stack.client() as c:
            for key in keys:
                want = len(acked[key]) + len(acked2[key])
                assert c.get(*key) == want, key
        for key in keys:
            assert stack.redis.counter(*key) == len(acked[key]) + len(acked2[key]), key

        # Stop them while their forwarders still run
        for proc in (waiting_redis, waiting_kafka):
            assert proc.stop() == 0, proc.output()
    finally:
        for proc in (waiting_redis, waiting_kafka):
            if proc.alive():
                proc.stop()
        for f in forwarders:
            f.stop()
