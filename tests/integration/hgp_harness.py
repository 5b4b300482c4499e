"""Test harness: start real hgp processes and talk to them over real sockets.

Everything here is a real process on loopback: redis-server from Debian, the
Kafka mock cluster (bin/hgp-kafka-mock, librdkafka's in-memory brokers that
speak the real Kafka protocol), the hgp broker, counter and analytics actors
built by `make`. Ports are chosen free at run time. The client speaks
schemas/PROTOCOL.md directly with pyzmq + msgpack, and the event log is read
with kcat and decoded here with msgpack, so both are independent
implementations of the spec, not our C code.
"""
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid

import msgpack
import zmq

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("HGP_BIN", os.path.join(ROOT, "build", "san", "bin"))


sys.path.insert(0, os.path.join(ROOT, "scripts"))
from free_ports import free_port  # noqa: E402  (distinct, outside the ephemeral range)


def new_id():
    return uuid.uuid4().hex


# The bus runs with CURVE (bus/curve = 1, the default): every stack makes its
# own keys with bin/hgp-keys in the test's temp dir, and every Python client
# of an endpoint uses them. CURVE maps a client endpoint to the keys a
# client of it presents: (broker public key, client public, client secret),
# Z85 bytes as pyzmq wants them. A stack registers its endpoint; a test that
# wants a client without keys (or with others) passes keys= to Client.
CURVE = {}


def make_keys(parent, extra_actors=(), extra_clients=()):
    """bin/hgp-keys init in a fresh directory under parent (plus the named
    extra actor and client certificates); returns the directory."""
    keys = tempfile.mkdtemp(prefix="keys-", dir=parent)
    if not os.path.exists(os.path.join(BIN, "hgp-keys")):
        return None     # binaries from before CURVE (checking a test fails there)
    def run(*args):
        r = subprocess.run([os.path.join(BIN, "hgp-keys"), "-d", keys] + list(args),
                           capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert r.returncode == 0, r
    run("init")
    for name in extra_actors:
        run("add-actor", name)
    for name in extra_clients:
        run("add-client", name)
    return keys


def load_cert(path):
    """(public, secret) of a CZMQ certificate file, Z85 bytes; secret is
    None for a public-only file"""
    import zmq.auth
    return zmq.auth.load_certificate(path)


def client_keys(keys_dir, client="clients/local"):
    """The CURVE triple for Client(keys=...) from a keys directory"""
    server, _ = load_cert(os.path.join(keys_dir, "broker.cert"))
    public, secret = load_cert(os.path.join(keys_dir, client + ".cert_secret"))
    return (server, public, secret)


def curve_socket(sock, keys):
    """Make sock a CURVE client with keys (server, public, secret); call
    before connect. keys None: a plain socket."""
    if keys:
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = keys


class Proc:
    """A child process with its output in a log file."""

    def __init__(self, name, argv, env=None, logdir=None):
        self.name = name
        self.log_path = os.path.join(logdir, name + ".log")
        self.log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                  env=full_env, cwd=ROOT)

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            self.p.send_signal(sig)

    def stop(self, timeout=15):
        """SIGTERM and wait; returns the exit code (0 = clean, sanitizers quiet)."""
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                return "hung"
        self.log.close()
        return self.p.returncode

    def kill9(self):
        if self.alive():
            self.p.kill()
            self.p.wait()
        self.log.close()

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


class Redis:
    def __init__(self, logdir, port=None, aof=False):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="hgp-redis-", dir=logdir)
        self.aof = aof
        self.proc = None
        self.start(logdir)

    def start(self, logdir):
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--dir", self.dir, "--daemonize", "no"]
        argv += (["--appendonly", "yes", "--appendfsync", "always"] if self.aof
                 else ["--appendonly", "no"])
        self.proc = Proc("redis-%d" % self.port, argv, logdir=logdir)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if self.command("PING") == b"+PONG\r\n":
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start:\n" + self.proc.output())

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def command(self, *args):
        """One raw RESP command; returns the raw reply bytes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            f = s.makefile("rb")
            line = f.readline()
            if line.startswith(b"$") and not line.startswith(b"$-1"):
                line += f.read(int(line[1:]) + 2)
            return line

    def counter(self, resource_id, counter_type):
        """The raw value in Redis, read by an independent client."""
        reply = self.command("GET", counter_key(resource_id, counter_type))
        if reply.startswith(b"$-1"):
            return 0
        return int(reply.split(b"\r\n")[1])

    def counters(self):
        """{counter key: value} of every counter in Redis"""
        out = {}
        for key in self.keys("hgp:c:*"):
            reply = self.command("GET", key)
            out[key] = int(reply.split(b"\r\n")[1])
        return out

    def keys(self, pattern):
        """KEYS pattern, decoded (tests only: KEYS walks the whole db)"""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"*2\r\n$4\r\nKEYS\r\n$%d\r\n%s\r\n"
                      % (len(pattern), pattern.encode()))
            f = s.makefile("rb")
            n = int(f.readline()[1:])
            out = []
            for _ in range(n):
                size = int(f.readline()[1:])
                out.append(f.read(size + 2)[:-2].decode())
            return out

    def stop(self):
        return self.proc.stop()


class Kafka:
    """bin/hgp-kafka-mock: an in-memory Kafka cluster on a free port."""

    def __init__(self, logdir, partitions=8):
        self.addr_file = os.path.join(logdir, "kafka-%s.addr" % new_id()[:8])
        self.partitions = partitions
        env = {"HGP_KAFKA_PARTITIONS": str(partitions),
               "HGP_CONFIG": os.path.join(ROOT, "configs", "hgp.cfg")}
        self.proc = Proc("kafka", [os.path.join(BIN, "hgp-kafka-mock"),
                                   "--address-file", self.addr_file],
                         env=env, logdir=logdir)
        deadline = time.time() + 10
        while not os.path.exists(self.addr_file):
            if time.time() > deadline or not self.proc.alive():
                raise RuntimeError("hgp-kafka-mock did not start:\n" + self.proc.output())
            time.sleep(0.02)
        with open(self.addr_file) as f:
            self.brokers = f.read().strip()

    def stop(self):
        return self.proc.stop()

    def read(self, topic="counter_events"):
        """Every record of the topic, read with kcat (an independent Kafka
        client): a list of dicts with partition, offset, key, headers, value
        (raw bytes) and event (decoded by decode_event, or the error)."""
        out = subprocess.run(
            ["kcat", "-C", "-b", self.brokers, "-t", topic, "-e", "-q",
             "-f", "%p\n%o\n%k\n%h\n%R%s"],
            capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr
        data, i, records = out.stdout, 0, []
        while i < len(data):
            fields = []
            for _ in range(4):
                j = data.index(b"\n", i)
                fields.append(data[i:j].decode())
                i = j + 1
            n = struct.unpack(">i", data[i:i + 4])[0]
            i += 4
            value = data[i:i + n]
            i += n
            rec = {"partition": int(fields[0]), "offset": int(fields[1]),
                   "key": fields[2], "headers": fields[3], "value": value}
            rec["event"] = decode_event(value)
            records.append(rec)
        return records


EVENT_KEYS = {"id": str, "resource_id": str, "counter_type": str, "delta": int,
              "user_id": str, "value": int, "ts": int, "actor": str,
              "trace": str}
EVENT_OPTIONAL = {"user_id", "trace"}


FENCE_KEYS = {"fence": str, "ts": int, "actor": str}


def decode_event(value):
    """Decode one record by schemas/PROTOCOL.md section 10, strictly: an
    increment is a map of exactly EVENT_KEYS (user_id, trace optional), a fence a
    map of exactly FENCE_KEYS; ids valid, ints in range. Raises ValueError
    when the record does not follow the spec."""
    ev = msgpack.unpackb(value, raw=False)
    if not isinstance(ev, dict):
        raise ValueError("event is not a map")
    keys = set(ev)
    if "fence" in keys:
        if keys != set(FENCE_KEYS):
            raise ValueError("fence keys %r" % sorted(keys))
        if not all(isinstance(ev[k], t) and not isinstance(ev[k], bool)
                   for k, t in FENCE_KEYS.items()):
            raise ValueError("fence field types")
        if not valid_id(ev["fence"]) or not valid_id(ev["actor"]) \
                or not 0 <= ev["ts"] < 2**63:
            raise ValueError("fence fields out of range")
        return ev
    required = set(EVENT_KEYS) - EVENT_OPTIONAL
    if not required <= keys or not keys <= set(EVENT_KEYS):
        raise ValueError("event keys %r" % sorted(keys))
    for k, t in EVENT_KEYS.items():
        if k in ev and (not isinstance(ev[k], t) or isinstance(ev[k], bool)):
            raise ValueError("%s is not %s" % (k, t.__name__))
    for k in ("id", "resource_id", "counter_type", "actor", "user_id", "trace"):
        if k in ev and not valid_id(ev[k]):
            raise ValueError("%s is not an id" % k)
    if ev["delta"] == 0 or not -2**63 <= ev["delta"] < 2**63:
        raise ValueError("delta out of range")
    if not -2**63 <= ev["value"] < 2**63 or not 0 <= ev["ts"] < 2**63:
        raise ValueError("value or ts out of range")
    return ev


def counted(records):
    """Apply the reading rule of PROTOCOL.md section 10 to records (as
    KafkaMock.read gives them): in each partition, in offset order, an
    increment whose actor was named by an earlier fence there is void.
    Returns (increments that count, void increments, fences), each a list
    of records."""
    live, void, fences = [], [], []
    fenced = {}
    for rec in sorted(records, key=lambda r: (r["partition"], r["offset"])):
        ev = rec["event"]
        if "fence" in ev:
            fenced.setdefault(rec["partition"], set()).add(ev["fence"])
            fences.append(rec)
        elif ev["actor"] in fenced.get(rec["partition"], ()):
            void.append(rec)
        else:
            live.append(rec)
    return live, void, fences


def valid_id(s):
    return (1 <= len(s.encode()) <= 128
            and all(c.isascii() and (c.isalnum() or c in "_-.:") for c in s))


def counter_key(resource_id, counter_type):
    return "hgp:c:%d:%s:%s" % (len(resource_id), resource_id, counter_type)


class Stack:
    """redis-server + hgp-kafka-mock + hgp-broker + N hgp-counter + M
    hgp-analytics, on free ports."""

    def __init__(self, logdir, actors=2, env=None, redis=None, kafka=None,
                 analytics=0):
        self.logdir = logdir
        self.redis = redis or Redis(logdir)
        self.kafka = kafka or Kafka(logdir)
        cport, aport = free_port(), free_port()
        self.client_endpoint = "tcp://127.0.0.1:%d" % cport
        self.actor_endpoint = "tcp://127.0.0.1:%d" % aport
        self.keys = make_keys(logdir)
        made = self.keys
        self.env = {
            "HGP_BROKER_CLIENT_ENDPOINT": self.client_endpoint,
            "HGP_BROKER_ACTOR_ENDPOINT": self.actor_endpoint,
            "HGP_REDIS_URL": self.redis.url,
            "HGP_KAFKA_BROKERS": self.kafka.brokers,
            "HGP_CONFIG": os.path.join(ROOT, "configs", "hgp.cfg"),
            "HGP_BUS_KEYS": self.keys or logdir,
        }
        self.env.update(env or {})
        self.curve = made is not None and self.env.get("HGP_BUS_CURVE", "1") != "0"
        self.keys = self.env["HGP_BUS_KEYS"]
        CURVE[self.client_endpoint] = client_keys(self.keys) if self.curve else None
        # Tests that run bin/hgp with os.environ and this stack's endpoint
        # need its keys too: the newest stack's are the process default
        os.environ["HGP_BUS_KEYS"] = self.keys
        self.broker = Proc("broker", [os.path.join(BIN, "hgp-broker")],
                           env=self.env, logdir=logdir)
        self.counters = []
        self.analytics = []
        for _ in range(actors):
            self.add_counter()
        for _ in range(analytics):
            self.add_analytics()
        self.wait_actors(actors + analytics)

    def add_counter(self, env=None):
        n = len(self.counters)
        full = dict(self.env)
        full.update(env or {})
        proc = Proc("counter-%d" % n, [os.path.join(BIN, "hgp-counter")],
                    env=full, logdir=self.logdir)
        self.counters.append(proc)
        return proc

    def add_analytics(self, env=None):
        n = len(self.analytics)
        full = dict(self.env)
        full.update(env or {})
        proc = Proc("analytics-%d" % n, [os.path.join(BIN, "hgp-analytics")],
                    env=full, logdir=self.logdir)
        self.analytics.append(proc)
        return proc

    def cli(self, *args, timeout=60):
        """Run bin/hgp with this stack's settings"""
        env = dict(os.environ)
        env.update(self.env)
        return subprocess.run([os.path.join(BIN, "hgp")] + list(args), env=env,
                              capture_output=True, text=True, timeout=timeout)

    def client(self):
        return Client(self.client_endpoint)

    def actors(self):
        with self.client() as c:
            rep = c.call({"op": "actors"})
        assert rep["status"] == 200, rep
        return rep["actors"]

    def wait_actors(self, n, timeout=15):
        deadline = time.time() + timeout
        seen = None
        while time.time() < deadline:
            try:
                seen = self.actors()
                if len(seen) == n:
                    return seen
            except TimeoutError:
                pass
            time.sleep(0.1)
        raise AssertionError("expected %d actors, broker sees %r\n%s" % (n, seen, self.logs()))

    def logs(self):
        out = []
        for p in [self.broker] + self.counters + self.analytics + [self.kafka.proc]:
            out.append("---- %s ----\n%s" % (p.name, p.output()[-4000:]))
        return "\n".join(out)

    def stop(self):
        """Stop everything; return {name: exit code} of hgp processes."""
        codes = {}
        for p in self.counters + self.analytics:
            if p.alive():
                codes[p.name] = p.stop()
        codes["broker"] = self.broker.stop()
        if self.kafka.proc.alive():
            codes["kafka"] = self.kafka.stop()
        self.redis.stop()
        return codes


class Client:
    """A DEALER client of the broker speaking PROTOCOL.md, many requests in flight."""

    def __init__(self, endpoint, ctx=None, keys="stack"):
        self.ctx = ctx or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        curve_socket(self.sock, CURVE.get(endpoint) if keys == "stack" else keys)
        self.sock.connect(endpoint)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def send(self, body):
        body = dict(body)
        body.setdefault("id", new_id())
        self.sock.send_multipart([b"", b"HGPC01", msgpack.packb(body)])
        return body["id"]

    def send_raw(self, frames):
        self.sock.send_multipart(frames)

    def recv(self, timeout=10.0):
        if not self.sock.poll(int(timeout * 1000)):
            raise TimeoutError("no reply within %.1fs" % timeout)
        frames = self.sock.recv_multipart()
        assert frames[0] == b"" and frames[1] == b"HGPC01", frames
        assert len(frames) == 3, frames
        return msgpack.unpackb(frames[2], raw=False)

    def call(self, body, timeout=10.0):
        rid = self.send(body)
        while True:
            rep = self.recv(timeout)
            if rep["id"] == rid:
                return rep

    def incr(self, r, t, delta=1, rid=None, **kw):
        body = {"op": "incr", "resource_id": r, "counter_type": t, "delta": delta}
        if rid:
            body["id"] = rid
        body.update(kw)
        return self.call(body)

    def get(self, r, t):
        rep = self.call({"op": "get", "resource_id": r, "counter_type": t})
        assert rep["status"] == 200, rep
        return rep["value"]


def run_load(endpoint, keys, total, clients, timeout_ms=3000, during=None):
    """`clients` DEALER sockets, one request in flight each, `total` incr of
    delta 1 spread over `keys`. Returns (acked, indeterminate, definite_errors)
    where acked/indeterminate map key -> list of (id, value). `during` is
    called once, half-way through (to kill something)."""
    ctx = zmq.Context.instance()
    poller = zmq.Poller()
    socks = []
    for _ in range(clients):
        c = Client(endpoint, ctx)
        socks.append(c)
        poller.register(c.sock, zmq.POLLIN)
    pending = {}            # sock -> (id, key, sent_at)
    acked = {k: [] for k in keys}
    indeterminate = {k: [] for k in keys}
    errors = {}
    sent = 0
    done = 0
    fired = False
    rng = random.Random(7)

    def send(c):
        nonlocal sent
        key = keys[rng.randrange(len(keys))]
        rid = c.send({"op": "incr", "resource_id": key[0], "counter_type": key[1],
                      "delta": 1, "timeout_ms": timeout_ms})
        pending[c.sock] = (rid, key, time.time())
        sent += 1

    by_sock = {c.sock: c for c in socks}
    for c in socks:
        if sent < total:
            send(c)
    while pending:
        if during and not fired and done >= total // 2:
            fired = True
            during()
        events = dict(poller.poll(1000))
        now = time.time()
        for sock in list(pending):
            rid, key, t0 = pending[sock]
            if sock in events:
                frames = sock.recv_multipart()
                rep = msgpack.unpackb(frames[2], raw=False)
                if rep["id"] != rid:
                    continue        # a late reply to an abandoned request
            elif now - t0 > timeout_ms / 1000.0 + 2.0:
                rep = {"id": rid, "status": 504, "error": {"code": "client_timeout"}}
            else:
                continue
            del pending[sock]
            done += 1
            if rep["status"] == 200:
                acked[key].append((rid, rep["value"]))
            elif rep["status"] == 504:
                indeterminate[key].append((rid, None))
            else:
                code = rep["error"]["code"]
                errors[code] = errors.get(code, 0) + 1
            if sent < total:
                send(by_sock[sock])
    for c in socks:
        c.close()
    return acked, indeterminate, errors
