"""Discovery for real: brokers beacon over a veth pair between two private
network namespaces, actors and clients find them, and the cluster scales and
fails over while load runs.

Everything runs inside namespaces this test creates (as root, with `ip
netns`): namespace A has 10.77.0.1/24, namespace B 10.77.0.2/24, joined by a
veth pair; Redis listens inside A. Beacons go out on the veth interfaces
only, never on the host's interfaces, and all load and failure traffic stays
on those private addresses. Without root or iproute2 the netns tests skip
with one line. The loopback fallback tests at the end need no namespace.

The load generator is tests/integration/disco_client.py, a Python client
that follows the same beacons (an implementation of PROTOCOL.md section 9
independent of lib/hgp_client.c); the CLI's bench is the C client.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from hgp_harness import BIN, ROOT, Proc, make_keys

NET = "10.77.0"
REDIS_PORT = 6390                       # inside namespace A: private
CLIENT = os.path.join(os.path.dirname(__file__), "disco_client.py")
HTTP_LOAD = os.path.join(os.path.dirname(__file__), "http_load.py")
FORWARD = os.path.join(os.path.dirname(__file__), "tcp_forward.py")
GATEWAY_PORT = 18080                    # inside the namespace: private


def _ip(*args):
    return subprocess.run(["ip"] + list(args), capture_output=True, text=True,
                          timeout=10)


class Netns:
    """Two namespaces joined by a veth pair; A = .1, B = .2"""

    def __init__(self):
        tag = "%d" % (os.getpid() % 100000)
        self.ns = {"A": "hgpt%sa" % tag, "B": "hgpt%sb" % tag}
        self.veth = {"A": "hgpv%sa" % tag, "B": "hgpv%sb" % tag}
        self.addr = {"A": NET + ".1", "B": NET + ".2"}
        self.created = []
        steps = [
            ("netns", "add", self.ns["A"]),
            ("netns", "add", self.ns["B"]),
            ("link", "add", self.veth["A"], "type", "veth", "peer", "name", self.veth["B"]),
        ]
        for side in "AB":
            steps += [
                ("link", "set", self.veth[side], "netns", self.ns[side]),
                ("-n", self.ns[side], "addr", "add", self.addr[side] + "/24",
                 "dev", self.veth[side]),
                ("-n", self.ns[side], "link", "set", self.veth[side], "up"),
                ("-n", self.ns[side], "link", "set", "lo", "up"),
            ]
        for step in steps:
            r = _ip(*step)
            if r.returncode != 0:
                self.destroy()
                raise OSError("ip %s: %s" % (" ".join(step), r.stderr.strip()))
            if step[:2] == ("netns", "add"):
                self.created.append(step[2])
            if step[:2] == ("link", "add"):
                self.created.append("veth")

    def argv(self, side, argv):
        return ["ip", "netns", "exec", self.ns[side]] + list(argv)

    def destroy(self):
        for name in self.created:
            if name == "veth":
                continue
            # every process in our namespaces is ours
            pids = _ip("netns", "pids", name).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _ip("netns", "del", name)     # takes the veth pair with it
        if "veth" in self.created:
            _ip("link", "del", self.veth["A"])   # only if never moved
        self.created = []


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("discovery tests need root to create a network namespace")
    try:
        net = Netns()
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip("cannot create a network namespace here: %s" % e)
    yield net
    net.destroy()


class Cluster:
    """Redis and the Kafka mock in A, and brokers, counters and clients in A
    or B, all finding each other by beacons on the veth pair."""

    def __init__(self, net, logdir):
        self.net = net
        self.logdir = logdir
        self.procs = {}
        self.killed = set()
        self.env = {"HGP_CONFIG": os.path.join(ROOT, "configs", "hgp.cfg"),
                    "HGP_DISCOVERY_PORT": "5670",
                    "HGP_DISCOVERY_INTERVAL": "250",
                    # CURVE as deployed: one key set for the whole cluster
                    "HGP_BUS_KEYS": make_keys(logdir)}
        self.start("redis", "A", ["redis-server", "--port", str(REDIS_PORT),
                                  "--bind", "127.0.0.1", net.addr["A"],
                                  "--save", "", "--appendonly", "no", "--protected-mode", "no",
                                  "--dir", logdir])
        deadline = time.time() + 10
        while self.redis("PING") != "PONG":
            assert time.time() < deadline, self.logs()
            time.sleep(0.05)
        self.start_kafka()

    def start_kafka(self):
        """The event log: hgp-kafka-mock in A, on 127.0.0.1 (the only
        address it listens on), reached from B through two forwarders on
        the same port (tcp_forward.py), so counters on both sides log to
        one log, as they would to one real Kafka cluster"""
        addr_file = os.path.join(self.logdir, "kafka.addr")
        self.start("kafka", "A", [os.path.join(BIN, "hgp-kafka-mock"),
                                  "--address-file", addr_file],
                   {"HGP_KAFKA_PARTITIONS": "8"})
        deadline = time.time() + 10
        while not os.path.exists(addr_file):
            assert time.time() < deadline, self.logs()
            time.sleep(0.02)
        with open(addr_file) as f:
            brokers = f.read().strip()
        host, port = brokers.rsplit(":", 1)
        assert host == "127.0.0.1" and "," not in brokers, brokers
        py = sys.executable if os.path.exists(sys.executable) else "/usr/bin/python3"
        self.start("kafka-fwd-a", "A", [py, FORWARD, self.net.addr["A"], port,
                                        "127.0.0.1"])
        self.start("kafka-fwd-b", "B", [py, FORWARD, "127.0.0.1", port,
                                        self.net.addr["A"]])
        for name in ("kafka-fwd-a", "kafka-fwd-b"):
            self.log_value(name, r"(forwarding)")
        self.env["HGP_KAFKA_BROKERS"] = brokers

    def side_env(self, side, extra=None):
        env = dict(self.env, HGP_DISCOVERY_INTERFACE=self.net.veth[side])
        env.update(extra or {})
        return env

    def start(self, name, side, argv, env=None):
        proc = Proc(name, self.net.argv(side, argv), env=self.side_env(side, env),
                    logdir=self.logdir)
        self.procs[name] = proc
        return proc

    def broker(self, name, side):
        any_port = "tcp://%s:*" % self.net.addr[side]
        return self.start(name, side, [os.path.join(BIN, "hgp-broker")],
                          {"HGP_BROKER_CLIENT_ENDPOINT": any_port,
                           "HGP_BROKER_ACTOR_ENDPOINT": any_port})

    def counter(self, name, side):
        host = "127.0.0.1" if side == "A" else self.net.addr["A"]
        return self.start(name, side, [os.path.join(BIN, "hgp-counter")],
                          {"HGP_REDIS_URL": "redis://%s:%d" % (host, REDIS_PORT)})

    def analytics(self, name, side):
        host = "127.0.0.1" if side == "A" else self.net.addr["A"]
        return self.start(name, side, [os.path.join(BIN, "hgp-analytics")],
                          {"HGP_REDIS_URL": "redis://%s:%d" % (host, REDIS_PORT)})

    def kill9(self, name):
        self.procs[name].kill9()
        self.killed.add(name)

    def log_value(self, name, pattern, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(pattern, self.procs[name].output())
            if m:
                return m.group(1)
            time.sleep(0.05)
        raise AssertionError("%s never logged %r\n%s" % (name, pattern, self.logs()))

    def broker_id(self, name):
        return self.log_value(name, r"hgp-broker: ([0-9a-f]{32}): clients at")

    def actor_id(self, name):
        return self.log_value(name, r"counter: actor ([0-9a-f]{32}),")

    def hgp(self, side, *args, timeout=60):
        env = dict(os.environ, **self.side_env(side))
        return subprocess.run(self.net.argv(side, [os.path.join(BIN, "hgp")] + list(args)),
                              env=env, capture_output=True, text=True, timeout=timeout)

    def actors(self, side="B"):
        """{broker_id: {actor_id: served}} as every broker heard from B sees it"""
        r = self.hgp(side, "--json", "actors")
        try:
            out = json.loads(r.stdout)
        except ValueError:
            return {}
        return {b["broker_id"]: {a["actor_id"]: a["served"] for a in b["actors"]}
                for b in out.get("brokers", []) if b["status"] == 200}

    def wait_view(self, check, timeout, what):
        deadline = time.time() + timeout
        view = None
        while time.time() < deadline:
            view = self.actors()
            if check(view):
                return view
            time.sleep(0.1)
        raise AssertionError("%s: cluster view %r\n%s" % (what, view, self.logs()))

    def redis(self, *args):
        r = subprocess.run(self.net.argv("A", ["redis-cli", "-p", str(REDIS_PORT), "--raw"]
                                          + [str(a) for a in args]),
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip()

    def counters_in_redis(self, names):
        keys = ["hgp:c:%d:%s:%s" % (len(r), r, t) for r, t in names]
        values = self.redis("MGET", *keys).split("\n")
        return [int(v) if v else 0 for v in values]

    def python_client(self, name, side, *args, script=CLIENT):
        return self.start(name, side, [sys.executable if os.path.exists(sys.executable)
                                       else "/usr/bin/python3", script] + list(args))

    def gateway(self, name, side):
        return self.start(name, side, [os.path.join(BIN, "hgp-gateway")],
                          {"HGP_GATEWAY_PORT": str(GATEWAY_PORT)})

    def logs(self):
        return "\n".join("---- %s ----\n%s" % (n, p.output()[-3000:])
                         for n, p in self.procs.items())

    def stop(self):
        """SIGTERM everything not killed on purpose; {name: exit code}"""
        codes = {}
        order = [n for n in self.procs if n.startswith("gateway")] + \
                [n for n in self.procs if n.startswith("c")] + \
                [n for n in self.procs if n.startswith("analytics")] + \
                [n for n in self.procs if n.startswith("broker")]
        for name in order:
            if name not in self.killed:
                codes[name] = self.procs[name].stop()
        for name in ("kafka-fwd-a", "kafka-fwd-b"):
            self.procs[name].stop()
        codes["kafka"] = self.procs["kafka"].stop()
        self.procs["redis"].stop()
        return codes


@pytest.fixture
def cluster(netns, logdir, request):
    c = Cluster(netns, logdir)
    yield c
    codes = c.stop()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(c.logs())
    bad = {k: v for k, v in codes.items() if v != 0}
    assert not bad, "processes did not stop cleanly: %r\n%s" % (bad, c.logs())


def test_actors_and_clients_find_brokers_scale_out_and_fail_over(cluster, logdir, measured):
    c = cluster
    c.broker("broker1", "A")
    c.broker("broker2", "B")
    for name, side in [("c1", "A"), ("c2", "A"), ("c3", "B")]:
        c.counter(name, side)
    b1, b2 = c.broker_id("broker1"), c.broker_id("broker2")
    a = {n: c.actor_id(n) for n in ("c1", "c2", "c3")}
    # Every actor serves both brokers, across the veth pair
    c.wait_view(lambda v: set(v) == {b1, b2} and
                all(set(v[b]) == set(a.values()) for b in v),
                15, "3 actors on 2 brokers")

    out = os.path.join(logdir, "load.json")
    load = c.python_client("client", "B", "load", "--broadcast", NET + ".255",
                           "--duration", "12", "--keys", "20", "--window", "32",
                           "--timeout-ms", "3000", "--short-timeout-ms", "1500",
                           "--short-share", "0.5", "--out", out)
    time.sleep(2.0)

    # Scale out: a 4th counter process with the same config joins both
    # brokers within about a beacon interval and takes its share of keys.
    # Timed from the brokers' logs (line-buffered), watched every 10 ms.
    t_start = time.time()
    c.counter("c4", "B")
    a["c4"] = c.actor_id("c4")
    t_up = time.time()
    pending = {"broker1", "broker2"}
    joined = {}
    while pending and time.time() < t_start + 10:
        for name in list(pending):
            if "actor %s (counter) joined" % a["c4"] in c.procs[name].output():
                joined[name] = time.time()
                pending.discard(name)
        time.sleep(0.01)
    assert not pending, c.logs()
    view = c.wait_view(lambda v: sum(v[b].get(a["c4"], 0) for b in v) > 0,
                       10, "c4 receives traffic")
    served_c4 = sum(view[b].get(a["c4"], 0) for b in view)
    measured("scale-out: 4th counter process up after %.2f s (sanitized build), "
             "then joined broker1 after %.2f s and broker2 after %.2f s (beacon "
             "interval 0.25 s); %d requests served by it at the next look"
             % (t_up - t_start, joined["broker1"] - t_up, joined["broker2"] - t_up,
                served_c4))
    assert max(joined.values()) - t_up < 1.0

    time.sleep(1.0)
    c.kill9("c1")                       # an actor dies: its keys move
    time.sleep(1.5)
    t_kill = time.time()
    c.kill9("broker1")                  # a broker dies: clients fail over
    time.sleep(1.5)
    assert c.procs["c2"].stop() == 0    # an actor stops cleanly
    c.killed.add("c2")

    rc = load.p.wait(timeout=60)
    print(load.output()[-2500:])
    assert rc == 0, c.logs()
    with open(out) as f:
        res = json.load(f)
    acked, ind, errors = res["acked"], res["indeterminate"], res["errors"]
    n_acked = sum(len(v) for v in acked.values())
    n_ind = sum(len(v) for v in ind.values())
    measured("load (Python beacon client): %d sent in %.1f s (%d via broker1, "
             "%d via broker2), %d acked, %d indeterminate, definite errors %r"
             % (res["sent"], res["seconds"], res["sent_by_broker"].get(b1, 0),
                res["sent_by_broker"].get(b2, 0), n_acked, n_ind, errors))

    # Failover time: kill -9 of broker1 -> first success of a request that
    # had been waiting on it, re-sent to broker2 with the same id
    moved = [t for t, broker in res["failover_successes"] if broker == b1]
    assert moved, "no request was waiting on broker1 when it died: %r" % res["events"]
    failover = min(moved) - t_kill
    leave = [t for t, kind, broker, _ in res["events"] if kind == "LEAVE" and broker == b1]
    measured("failover (Python client, beacons only): broker1 kill -9 -> expired "
             "after %.2f s -> first re-sent request succeeded via broker2 after "
             "%.2f s" % (leave[0] - t_kill, failover))
    assert failover < 3.0

    # The client spread its requests over both brokers while both lived
    spread = res["sent_by_broker"]
    assert spread.get(b1, 0) > 0.1 * res["sent"] and spread.get(b2, 0) > 0.1 * res["sent"], spread

    # Clients saw at most brief errors. Requests with a 1.5 s budget that
    # were on broker1 when it died could not outlive the 1.8 s beacon
    # failover: those are the indeterminate ones, and there must be some,
    # or the check below would not be tested
    assert n_ind > 0, res["events"]
    assert set(errors) <= {"no_actor", "busy", "unavailable"}, errors
    assert sum(errors.values()) + n_ind < 0.02 * res["sent"], (errors, n_ind)
    assert n_acked > 0.95 * res["sent"]

    # Jepsen-style: final = acknowledged + a subset of the indeterminate,
    # and no value handed out twice (nothing applied twice)
    names = [tuple(k) for k in res["keys"]]
    finals = c.counters_in_redis(names)
    for (r, t), final in zip(names, finals):
        key = "%s/%s" % (r, t)
        assert len(acked[key]) <= final <= len(acked[key]) + len(ind[key]), key
        values = [v for _, v in acked[key]]
        assert len(set(values)) == len(values), "a value was handed out twice"

    # Settle: retry every indeterminate id; those applied before answer
    # replayed, the others apply now. Then the totals are exact.
    settled = os.path.join(logdir, "settle.json")
    s = c.python_client("settle", "B", "settle", "--broadcast", NET + ".255",
                        "--in", out, "--out", settled)
    assert s.p.wait(timeout=60) == 0, s.output()
    with open(settled) as f:
        outcome = json.load(f)
    assert all(status == 200 for status, _ in outcome.values()), outcome
    after = c.counters_in_redis(names)
    applied_before = 0
    for (r, t), before, final in zip(names, finals, after):
        key = "%s/%s" % (r, t)
        assert final == len(acked[key]) + len(ind[key]), key
        replayed = sum(1 for rid in ind[key] if outcome[rid][1])
        assert before - len(acked[key]) == replayed, key
        applied_before += replayed
    measured("jepsen: %d indeterminate increments; %d of them had been applied "
             "(their retry replayed), %d had not (their retry applied them); "
             "final = acked + applied indeterminate on all %d keys"
             % (n_ind, applied_before, n_ind - applied_before, len(names)))

    # The cluster as the CLI sees it: one broker, the two live actors
    view = c.wait_view(lambda v: set(v) == {b2} and set(v[b2]) == {a["c3"], a["c4"]},
                       10, "broker2 with c3 and c4")
    text = c.hgp("B", "actors")
    print(text.stdout)
    assert text.returncode == 0 and "service counter: 2 actors on 1 brokers" in text.stdout


def test_cli_bench_spreads_over_brokers_and_survives_a_broker_kill(cluster, measured):
    c = cluster
    c.broker("broker1", "A")
    c.broker("broker2", "B")
    c.counter("c1", "A")
    c.counter("c2", "B")
    b1, b2 = c.broker_id("broker1"), c.broker_id("broker2")
    c.wait_view(lambda v: set(v) == {b1, b2} and all(len(v[b]) == 2 for b in v),
                15, "2 actors on 2 brokers")
    bench = c.start("bench", "B", [os.path.join(BIN, "hgp"), "bench", "-n", "60000",
                                   "-w", "64", "-k", "50"])
    t0 = time.time()
    time.sleep(2.5)                     # start-up, settle, then load
    c.kill9("broker1")
    t_kill = time.time() - t0
    rc = bench.p.wait(timeout=60)
    out = bench.output()
    print("\nbroker1 killed %.1f s after the bench started\n%s" % (t_kill, out))
    assert rc == 0, out + c.logs()
    assert "verify: ok" in out and " 0 errors, 0 indeterminate" in out, out
    # The C client notices the dropped connection (socket monitor, failed
    # send) within milliseconds, so no request waits for the beacon to
    # expire (2 s, so 1.75 s at least after the kill): the slowest request
    # of the run bounds the failover time
    m = re.search(r"max (\d+)", out)
    assert m and int(m.group(1)) < 1_500_000, out
    assert "re-sent to another broker" in out, out
    resent = re.search(r"failover: (\d+) requests", out).group(1)
    rps = re.search(r"requests/s: (\d+)", out).group(1)
    measured("failover (C client, hgp bench): broker1 kill -9 %.1f s into the run; "
             "%s requests re-sent with the same id; slowest request %.3f s; %s "
             "requests/s overall; verify ok" % (t_kill, resent,
                                                int(m.group(1)) / 1e6, rps))


def test_a_cleanly_stopped_broker_is_dropped_at_once(cluster):
    c = cluster
    c.broker("broker1", "A")
    c.broker("broker2", "B")
    c.counter("c1", "A")
    b1, b2 = c.broker_id("broker1"), c.broker_id("broker2")
    c.wait_view(lambda v: set(v) == {b1, b2}, 15, "2 brokers")
    t0 = time.time()
    assert c.procs["broker2"].stop() == 0
    c.killed.add("broker2")
    # The leaving beacon, not the 2 s expiry, removes it everywhere
    c.log_value("c1", r"broker %s at \S+: (left);" % b2, timeout=2)
    assert time.time() - t0 < 1.5
    c.wait_view(lambda v: set(v) == {b1}, 3, "broker2 gone")


def test_analytics_actor_serves_every_broker_it_hears(cluster):
    # The analytics actor links to brokers with the counter's code
    # (lib/hgp_worker.c): one link per beaconing broker, top answered on both
    c = cluster
    c.broker("broker1", "A")
    c.broker("broker2", "B")
    c.counter("c1", "A")
    c.analytics("analytics1", "B")
    b1, b2 = c.broker_id("broker1"), c.broker_id("broker2")
    an = c.log_value("analytics1", r"analytics: actor ([0-9a-f]{32}),")
    c.wait_view(lambda v: set(v) == {b1, b2} and all(an in v[b] for b in v),
                15, "the analytics actor on 2 brokers")
    for _ in range(3):
        r = c.hgp("B", "incr", "song", "play")
        assert r.returncode == 0, r.stderr + c.logs()
    # top asked of each broker alone (--broker), from the side it is on
    for name, side in (("broker1", "A"), ("broker2", "B")):
        endpoint = c.log_value(name, r"clients at (tcp://[0-9.]+:\d+),")
        deadline = time.time() + 30
        r = None
        while time.time() < deadline:
            r = c.hgp(side, "--broker", endpoint, "top", "play")
            if r.returncode == 0 and r.stdout.startswith("1 song 3"):
                break
            time.sleep(0.2)
        assert r.returncode == 0 and r.stdout.startswith("1 song 3"), \
            "top through %s: %r %r\n%s" % (name, r.stdout, r.stderr, c.logs())
    view = c.actors()
    assert all(view[b][an] > 0 for b in (b1, b2)), view


def test_loopback_interface_falls_back_to_static_endpoints(make_stack):
    # zbeacon cannot broadcast on lo: every process says so and uses the
    # static endpoints, and nothing is beaconed anywhere
    stack = make_stack(env={"HGP_DISCOVERY_INTERFACE": "lo"})
    for proc in [stack.broker] + stack.counters:
        assert "discovery: off (discovery/interface lo is loopback" in proc.output()
    env = dict(os.environ, HGP_BROKER_CLIENT_ENDPOINT=stack.client_endpoint,
               HGP_DISCOVERY_INTERFACE="lo")
    r = subprocess.run([os.path.join(BIN, "hgp"), "incr", "lo_post", "like"],
                       env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "1", r
    r = subprocess.run([os.path.join(BIN, "hgp"), "actors"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "static" in r.stdout and \
        "service counter: 2 actors on 1 brokers" in r.stdout, r


def test_default_config_beacons_nothing(stack):
    for proc in [stack.broker] + stack.counters:
        assert "discovery: off (no discovery/interface configured); using the " \
               "static endpoints" in proc.output()


def _threads(proc):
    return len(os.listdir("/proc/%d/task" % proc.p.pid))


def test_gateway_spreads_over_brokers_and_fails_over(cluster, logdir, measured):
    c = cluster
    c.broker("broker1", "A")
    c.broker("broker2", "B")
    for name, side in [("c1", "A"), ("c2", "A"), ("c3", "B")]:
        c.counter(name, side)
    b1, b2 = c.broker_id("broker1"), c.broker_id("broker2")
    c.wait_view(lambda v: set(v) == {b1, b2} and all(len(v[b]) == 3 for b in v),
                15, "3 actors on 2 brokers")
    before = c.actors()
    gw = c.gateway("gateway", "B")
    c.log_value("gateway", r"discovery: (beacons) on ")
    c.log_value("gateway", r"gateway: listening on \S+, bus at (beacons:\S+);")

    out = os.path.join(logdir, "http.json")
    load = c.python_client("http", "B", "load", "--port", str(GATEWAY_PORT),
                           "--duration", "10", "--threads", "16", "--keys", "20",
                           "--out", out, script=HTTP_LOAD)
    deadline = time.time() + 60
    while not os.path.exists(out + ".started"):
        assert load.alive() and time.time() < deadline, load.output() + c.logs()
        time.sleep(0.05)
    # One discovery actor for the whole gateway and one event loop: the
    # main thread, the loop, ZeroMQ's I/O and reaper threads, the discovery
    # actor and its zbeacon, whatever the number of connections
    n_threads = _threads(gw)
    assert n_threads < 12, n_threads
    time.sleep(3.0)
    # Both brokers carry the gateway's load while both live
    mid = c.actors()
    grown = {b: sum(mid[b].values()) - sum(before.get(b, {}).values()) for b in (b1, b2)}
    assert all(n > 200 for n in grown.values()), grown
    t_kill = time.time()
    c.kill9("broker1")
    rc = load.p.wait(timeout=60)
    print(load.output()[-2000:])
    assert rc == 0, load.output() + c.logs()
    with open(out) as f:
        res = json.load(f)
    acked, ind, errors = res["acked"], res["indeterminate"], res["errors"]
    reqs = res["requests"]
    n_acked = sum(len(v) for v in acked.values())
    n_ind = sum(len(v) for v in ind.values())

    # HTTP clients saw at most brief errors, and only 503/504
    assert all(status in (200, 503, 504) for _, _, status in reqs), errors
    assert sum(errors.values()) < 0.02 * len(reqs), errors
    after = [r for r in reqs if r[0] > t_kill + 0.5]
    assert after and all(status == 200 for _, _, status in after), errors
    # Failover time: kill -> first success after it; and the slowest
    # request that was in flight at the kill (the worst any client waited)
    first_ok = min(t1 for _, t1, status in reqs if t1 > t_kill and status == 200)
    in_flight = [t1 - t_kill for t0, t1, status in reqs if t0 <= t_kill < t1]
    worst = max([t1 - t0 for t0, t1, status in reqs if t1 > t_kill and status == 200]
                or [0])
    # A request sent in the very instant broker1 died can be lost with it
    # and wait its whole deadline: an honest 504 (indeterminate), settled by
    # the retry below and counted in the 2 % error budget above; seen once
    # in three CI runs of this test. A success is never that slow.
    waited = [t1 - t0 for t0, t1, status in reqs if t1 > t_kill and status == 504]
    measured("gateway failover (one event loop, one discovery actor): broker1 kill -9 "
             "-> first HTTP 200 after %.3f s; requests in flight at the kill "
             "answered within %.3f s; slowest success after the kill %.3f s; "
             "%d requests in %d s (%d via broker1, %d via broker2 before the "
             "kill), %d acked, %d indeterminate (504 after %s s), errors %r; "
             "gateway threads %d"
             % (first_ok - t_kill, max(in_flight or [0]), worst, len(reqs), 10,
                grown[b1], grown[b2], n_acked, n_ind,
                ", ".join("%.2f" % w for w in waited) or "-", errors, n_threads))
    assert first_ok - t_kill < 1.0
    assert worst < 3.0

    # Jepsen-style: final = acknowledged + a subset of the indeterminate,
    # and no value handed out twice
    names = [tuple(k) for k in res["keys"]]
    finals = c.counters_in_redis(names)
    for (r, t), final in zip(names, finals):
        key = "%s/%s" % (r, t)
        assert len(acked[key]) <= final <= len(acked[key]) + len(ind[key]), key
        values = [v for _, v in acked[key]]
        assert len(set(values)) == len(values), "a value was handed out twice"

    # Settle: every 504 again with its request id (Idempotency-Key); then
    # the totals are exact
    settled = os.path.join(logdir, "http_settle.json")
    s = c.python_client("http-settle", "B", "settle", "--port", str(GATEWAY_PORT),
                        "--in", out, "--out", settled, script=HTTP_LOAD)
    assert s.p.wait(timeout=120) == 0, s.output()
    with open(settled) as f:
        outcome = json.load(f)
    assert all(status == 200 for status, _ in outcome.values()), outcome
    exact = c.counters_in_redis(names)
    for (r, t), before_settle, final in zip(names, finals, exact):
        key = "%s/%s" % (r, t)
        assert final == len(acked[key]) + len(ind[key]), key
        replayed = sum(1 for rid in ind[key] if outcome[rid][1])
        assert before_settle - len(acked[key]) == replayed, key


def test_gateway_with_the_default_config_uses_static_endpoints(stack, logdir):
    from gateway_harness import Gateway
    gw = Gateway(stack, logdir)
    try:
        out = gw.output()
        assert "discovery: off (no discovery/interface configured); using the " \
               "static endpoints" in out, out
        assert "bus at %s;" % stack.client_endpoint in out, out
        # No discovery thread is left: the main thread, one event loop and
        # ZeroMQ's threads
        n = _threads(gw.proc)
        assert n < 8, n
        with gw.http() as h:
            status, _, body = h.increment("static_gw", "hits")
            assert status == 200 and body["value"] == 1, body
    finally:
        assert gw.stop() == 0, gw.output()


from test_run import Run  # noqa: E402

REL_BIN = os.environ.get("HGP_REL_BIN", os.path.join(ROOT, "bin"))


class RunInNetns(Run):
    """scripts/run.sh (make run) inside namespace side, its output in a log"""

    def __init__(self, net, side, logdir, env):
        super().__init__(logdir, "run", env, wrap=lambda argv: net.argv(side, argv))

    def wait_for(self, pattern, timeout=60, poll=0.05):
        """The first match of the regex pattern in the output"""
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(pattern, self.output())
            if m:
                return m
            if self.p.poll() is not None:
                break
            time.sleep(poll)
        raise AssertionError("run.sh never printed %r:\n%s" % (pattern, self.output()[-6000:]))


def test_make_run_with_an_interface_is_healthy_and_scales_by_beacons(netns, logdir, measured):
    """Issue 12: `HGP_DISCOVERY_INTERFACE=<veth> make run` with the usual
    loopback endpoints: the broker binds their ports on the veth's address,
    which it beacons; actors and the gateway find it by beacons alone and
    the stack becomes healthy. An extra counter started by hand with no
    endpoint joins within 1 s and leaves within 3 s of kill -9, while HTTP
    load runs; the counts are exact."""
    from free_ports import free_port
    py = sys.executable if os.path.exists(sys.executable) else "/usr/bin/python3"
    run_dir = os.path.join(logdir, "run")
    os.makedirs(run_dir)
    gw_port = free_port()
    redis_port = free_port()
    env = {"HGP_CONFIG": os.path.join(ROOT, "configs", "hgp.cfg"),
           "HGP_RUN_DIR": run_dir,
           "HGP_BUS_KEYS": os.path.join(run_dir, "keys"),
           "HGP_REDIS_PORT": str(redis_port),
           "HGP_BROKER_CLIENT_ENDPOINT": "tcp://127.0.0.1:%d" % free_port(),
           "HGP_BROKER_ACTOR_ENDPOINT": "tcp://127.0.0.1:%d" % free_port(),
           "HGP_GATEWAY_PORT": str(gw_port),
           "HGP_GATEWAY_THREADS": "64",
           "HGP_DISCOVERY_INTERFACE": netns.veth["A"]}
    run = RunInNetns(netns, "A", logdir, env)
    extra = None
    try:
        t0 = time.time()
        run.wait_for(r"run: healthy", timeout=90)
        measured("make run with discovery/interface %s: healthy after %.1f s"
                 % (netns.veth["A"], time.time() - t0))
        out = run.output()
        addr = netns.addr["A"]
        # It binds what it beacons, and beacons what it binds
        assert re.search(r"\[broker\].*clients at tcp://%s:\d+, actors at tcp://%s:\d+"
                         % (re.escape(addr), re.escape(addr)), out), out
        assert "beacons clients tcp://%s:" % addr in out, out
        assert "silent for" not in out, out

        load_out = os.path.join(logdir, "load.json")
        load = Proc("http-load", netns.argv("A", [py, HTTP_LOAD, "load", "--port",
                                                  str(gw_port), "--duration", "9",
                                                  "--threads", "8", "--keys", "20",
                                                  "--out", load_out]),
                    logdir=logdir)
        deadline = time.time() + 30
        while not os.path.exists(load_out + ".started"):
            assert load.alive() and time.time() < deadline, load.output()
            time.sleep(0.05)
        time.sleep(1.5)

        # An extra counter, by hand: no endpoint, only where Redis, Kafka,
        # the keys and the interface are
        with open(os.path.join(run_dir, "kafka.addr")) as f:
            kafka = f.read().strip()
        by_hand = {k: v for k, v in os.environ.items() if not k.startswith("HGP_")}
        by_hand.update({"HGP_CONFIG": env["HGP_CONFIG"],
                        "HGP_BUS_KEYS": env["HGP_BUS_KEYS"],
                        "HGP_DISCOVERY_INTERFACE": netns.veth["A"],
                        "HGP_REDIS_URL": "redis://127.0.0.1:%d" % redis_port,
                        "HGP_KAFKA_BROKERS": kafka})
        t_start = time.time()
        extra = subprocess.Popen(netns.argv("A", [os.path.join(BIN, "hgp-counter")]),
                                 env=by_hand, cwd=ROOT,
                                 stdout=open(os.path.join(logdir, "extra.log"), "wb"),
                                 stderr=subprocess.STDOUT)

        def extra_log():
            with open(os.path.join(logdir, "extra.log"), "rb") as f:
                return f.read().decode(errors="replace")
        actor = None
        deadline = time.time() + 30
        while actor is None and time.time() < deadline:
            m = re.search(r"counter: actor ([0-9a-f]{32}),", extra_log())
            actor = m and m.group(1)
            time.sleep(0.01)
        assert actor, extra_log()
        t_up = time.time()
        run.wait_for(r"actor %s \(counter\) joined" % actor, timeout=10, poll=0.01)
        t_joined = time.time()
        # It takes its share of the keys
        deadline = time.time() + 10
        served = 0
        while time.time() < deadline and not served:
            r = subprocess.run(netns.argv("A", [os.path.join(REL_BIN, "hgp"), "--json",
                                                "actors"]),
                               env=dict(by_hand), capture_output=True, text=True,
                               timeout=30)
            for b in json.loads(r.stdout or "{}").get("brokers", []):
                for a in b.get("actors", []):
                    if a["actor_id"] == actor:
                        served = a["served"]
            time.sleep(0.1)
        assert served > 0, (r.stdout, r.stderr, extra_log())
        measured("extra counter by hand (no endpoint): up after %.2f s, joined the "
                 "broker by beacon %.2f s later (%.2f s from exec); served %d "
                 "requests at the first look" % (t_up - t_start, t_joined - t_up,
                                                 t_joined - t_start, served))
        assert t_joined - t_up < 1.0

        extra.kill()
        t_kill = time.time()
        extra.wait()
        extra = None
        m = run.wait_for(r"actor %s \(counter\) left: ([^;]+);" % actor, timeout=10,
                         poll=0.01)
        t_left = time.time()
        measured("kill -9 of the extra counter: the broker dropped it after %.2f s "
                 "(%s)" % (t_left - t_kill, m.group(1)))
        assert t_left - t_kill < 3.0

        assert load.p.wait(timeout=60) == 0, load.output()
        with open(load_out) as f:
            res = json.load(f)
        acked, ind, errors = res["acked"], res["indeterminate"], res["errors"]
        n_acked = sum(len(v) for v in acked.values())
        n_ind = sum(len(v) for v in ind.values())
        # Only brief, honest errors around the kill
        assert set(k.split()[0] for k in errors) <= {"503", "504"}, errors
        assert sum(errors.values()) < 0.05 * len(res["requests"]), errors
        settled = os.path.join(logdir, "settle.json")
        s = Proc("http-settle", netns.argv("A", [py, HTTP_LOAD, "settle", "--port",
                                                 str(gw_port), "--in", load_out,
                                                 "--out", settled]), logdir=logdir)
        assert s.p.wait(timeout=120) == 0, s.output()
        with open(settled) as f:
            outcome = json.load(f)
        assert all(status == 200 for status, _ in outcome.values()), outcome
        names = [tuple(k) for k in res["keys"]]
        keys = ["hgp:c:%d:%s:%s" % (len(r), r, t) for r, t in names]
        got = subprocess.run(netns.argv("A", ["redis-cli", "-p", str(redis_port), "--raw",
                                              "MGET"] + keys),
                             capture_output=True, text=True, timeout=10).stdout.split("\n")
        for (r, t), value in zip(names, got):
            key = "%s/%s" % (r, t)
            assert int(value or 0) == len(acked[key]) + len(ind[key]), key
        measured("load through the gateway meanwhile: %d requests, %d acked, %d "
                 "indeterminate (settled by retry), errors %r; every key exact"
                 % (len(res["requests"]), n_acked, n_ind, errors))
    finally:
        if extra is not None:
            extra.kill()
            extra.wait()
        code = run.stop()
        print(run.output()[-4000:])
    assert code == 0, run.output()[-6000:]


def test_a_broker_refuses_to_beacon_what_it_cannot_listen_on(netns, logdir):
    # A beacon carries ports only: an ipc:// endpoint cannot be reached by
    # those who hear it, so the broker says so and stops, instead of
    # beaconing peers into silence
    keys = make_keys(logdir)
    broker = Proc("broker", netns.argv("A", [os.path.join(BIN, "hgp-broker")]),
                  env={"HGP_DISCOVERY_INTERFACE": netns.veth["A"],
                       "HGP_BUS_KEYS": keys,
                       "HGP_BROKER_CLIENT_ENDPOINT": "ipc://%s/c.ipc" % logdir,
                       "HGP_BROKER_ACTOR_ENDPOINT": "tcp://127.0.0.1:*"},
                  logdir=logdir)
    try:
        code = broker.p.wait(timeout=30)
    finally:
        broker.stop()
    out = broker.output()
    assert code == 1, out
    assert "broker/client_endpoint is 'ipc://" in out and "TCP ports only" in out, out
    assert "beacons clients" not in out, out
