"""A client that finds brokers by their beacons, in Python: an independent
implementation of schemas/PROTOCOL.md section 9 (beacon layout, evasive and
expired timers, failover with the same request id), used as the load
generator of test_discovery.py. It runs inside a test's network namespace:

    ip netns exec NS python3 disco_client.py load --broadcast 10.77.0.255 \
        --duration 12 --keys 20 --window 32 --out load.json
    ip netns exec NS python3 disco_client.py settle --in load.json --out s.json

`load` sends increments of 1 for `duration` seconds, `window` in flight,
spread round-robin over every live broker, and writes for every key the
acknowledged (id, value) pairs, the indeterminate ids, definite errors, the
broker events it saw (with wall-clock times, so the test can line them up
with its kills) and when requests re-sent after a broker left first
succeeded. `settle` retries every indeterminate id once more, with the same
id, so the test can check the final values exactly.

Liveness follows beacons only (plus ZMQ_IMMEDIATE for new requests): a
broker whose beacon is silent for 8 intervals is gone and every request
still waiting on it is re-sent elsewhere. That is the slow, shared path; the
C client also reacts to a dropped TCP connection at once.

The bus is CURVE-authenticated (PROTOCOL.md 9.1): the client uses the keys
directory named by $HGP_BUS_KEYS (its clients/local certificate), follows
only beacons of cluster $HGP_BUS_CLUSTER (default "hgp") whose broker key is
broker.cert's, and connects with that key as the CURVE server key.
$HGP_BUS_CURVE=0 turns that off (beacons with a zero key only).
"""
import argparse
import json
import os
import random
import socket
import struct
import sys
import time
import uuid

import msgpack
import zmq
import zmq.auth
from zmq.utils import z85

TAG = b"HGPB"
VERSION = 2
FIXED = 59                       # bytes before the cluster name (9.1)
ALIVE, LEAVING = 1, 2
EVASIVE, EXPIRED = 4, 8          # silent intervals (PROTOCOL.md 9.2)


def parse_beacon(data):
    """(state, broker_id hex, client_port, actor_port, key Z85 bytes or b"",
    cluster) or None if not valid."""
    if len(data) < FIXED + 1 or data[:4] != TAG or data[4] != VERSION \
            or len(data) != FIXED + data[58]:
        return None
    state = data[5]
    broker_id = data[6:22]
    client_port, actor_port = struct.unpack(">HH", data[22:26])
    key = data[26:58]
    cluster = data[FIXED:].decode("ascii", "replace")
    if state not in (ALIVE, LEAVING) or broker_id == bytes(16) \
            or client_port == 0 or actor_port == 0:
        return None
    return (state, broker_id.hex(), client_port, actor_port,
            b"" if key == bytes(32) else z85.encode(key), cluster)


def bus_keys():
    """(trusted broker key or b"", (public, secret) of our certificate or
    None, cluster) from the environment"""
    cluster = os.environ.get("HGP_BUS_CLUSTER", "hgp")
    if os.environ.get("HGP_BUS_CURVE", "1") == "0":
        return b"", None, cluster
    keys = os.environ.get("HGP_BUS_KEYS", "var/keys")
    broker, _ = zmq.auth.load_certificate(os.path.join(keys, "broker.cert"))
    mine = zmq.auth.load_certificate(os.path.join(keys, "clients", "local.cert_secret"))
    return broker, mine, cluster


class Broker:
    def __init__(self, ctx, broker_id, endpoint, key, mine):
        self.id = broker_id
        self.endpoint = endpoint
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.IMMEDIATE, 1)
        if mine:
            self.sock.curve_serverkey = key
            self.sock.curve_publickey, self.sock.curve_secretkey = mine
        self.sock.connect(endpoint)
        self.heard = time.monotonic()
        self.evasive = False
        self.sent = 0
        self.answered = 0


class Client:
    def __init__(self, broadcast, port, interval_ms, log):
        self.ctx = zmq.Context.instance()
        self.interval = interval_ms / 1000.0
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.udp.bind((broadcast, port))
        self.udp.setblocking(False)
        self.broker_key, self.mine, self.cluster = bus_keys()
        self.brokers = {}            # id -> Broker
        self.gone = {}               # id -> when it left (ignore late beacons)
        self.pending = {}            # request id -> dict
        self.events = []             # (wall time, kind, broker id, detail)
        self.log = log
        self.rr = 0
        self.sent_by = {}            # broker id -> sends, departed ones too

    # ---- brokers -----------------------------------------------------
    def event(self, kind, broker_id, detail=""):
        self.events.append((time.time(), kind, broker_id, detail))
        self.log("%.3f %s %s %s" % (time.time(), kind, broker_id[:8], detail))

    def beacons(self):
        while True:
            try:
                data, (address, _) = self.udp.recvfrom(512)
            except BlockingIOError:
                return
            beacon = parse_beacon(data)
            if not beacon:
                continue
            state, broker_id, cport, _, key, cluster = beacon
            if cluster != self.cluster or key != self.broker_key:
                continue             # another cluster, or a broker we do not trust
            broker = self.brokers.get(broker_id)
            if state == LEAVING:
                if broker:
                    self.leave(broker, "left")
                continue
            if broker is None:
                if broker_id in self.gone:
                    continue
                endpoint = "tcp://%s:%d" % (address, cport)
                for other in list(self.brokers.values()):
                    if other.endpoint == endpoint:
                        self.leave(other, "replaced")
                self.brokers[broker_id] = Broker(self.ctx, broker_id, endpoint,
                                                 key, self.mine)
                self.event("JOIN", broker_id, endpoint)
                continue
            broker.heard = time.monotonic()
            if broker.evasive:
                broker.evasive = False
                self.event("ALIVE", broker_id)

    def timers(self):
        now = time.monotonic()
        for broker in list(self.brokers.values()):
            silent = now - broker.heard
            if silent >= EXPIRED * self.interval:
                self.leave(broker, "expired")
            elif silent >= EVASIVE * self.interval and not broker.evasive:
                broker.evasive = True
                self.event("EVASIVE", broker.id)

    def leave(self, broker, why):
        del self.brokers[broker.id]
        self.gone[broker.id] = time.time()
        broker.sock.close()
        stranded = [p for p in self.pending.values() if p["broker"] is broker]
        self.event("LEAVE", broker.id, "%s, %d requests stranded" % (why, len(stranded)))
        for p in stranded:
            p["broker"] = None
            p["failover_from"] = broker.id
            self.place(p)

    # ---- requests ----------------------------------------------------
    def place(self, p, exclude=None):
        """Send p to the next broker that takes it; False if none did."""
        left_ms = int((p["deadline"] - time.monotonic()) * 1000)
        if left_ms < 1:
            return False
        body = dict(p["body"], timeout_ms=min(left_ms, 60000))
        frames = [b"", b"HGPC01", msgpack.packb(body)]
        brokers = list(self.brokers.values())
        ordered = [b for b in brokers if not b.evasive] + [b for b in brokers if b.evasive]
        if ordered:
            k = self.rr % len(ordered)
            ordered = ordered[k:] + ordered[:k]
            self.rr += 1
        for broker in ordered:
            if broker is exclude:
                continue
            try:
                broker.sock.send_multipart(frames, flags=zmq.NOBLOCK)
            except zmq.Again:
                continue             # no live connection (IMMEDIATE)
            broker.sent += 1
            self.sent_by[broker.id] = self.sent_by.get(broker.id, 0) + 1
            p["broker"] = broker
            p["sends"] += 1
            return True
        return False

    def send_incr(self, key, timeout_ms, rid=None):
        rid = rid or uuid.uuid4().hex
        p = {"id": rid, "key": key, "broker": None, "sends": 0, "retries": 0,
             "deadline": time.monotonic() + timeout_ms / 1000.0,
             "body": {"op": "incr", "id": rid, "resource_id": key[0],
                      "counter_type": key[1], "delta": 1},
             "failover_from": None}
        self.pending[rid] = p
        self.place(p)
        return p

    def poll(self, timeout_ms):
        """Wait for replies and beacons; returns finished (p, reply) pairs."""
        poller = zmq.Poller()
        poller.register(self.udp.fileno(), zmq.POLLIN)
        by_sock = {}
        for broker in self.brokers.values():
            poller.register(broker.sock, zmq.POLLIN)
            by_sock[broker.sock] = broker
        ready = dict(poller.poll(timeout_ms))
        done = []
        for sock, broker in by_sock.items():
            if sock not in ready:
                continue
            while True:
                try:
                    frames = sock.recv_multipart(flags=zmq.NOBLOCK)
                except zmq.Again:
                    break
                rep = msgpack.unpackb(frames[2], raw=False)
                broker.answered += 1
                p = self.pending.get(rep["id"])
                if p is None:
                    continue         # a duplicate after a re-send
                status = rep["status"]
                if status != 200 and p["broker"] is not broker:
                    continue         # an error from a broker we moved away from
                code = rep.get("error", {}).get("code")
                if (code == "no_actor" or status == 504) and p["retries"] < 2 \
                        and p["deadline"] - time.monotonic() > 0.05:
                    p["retries"] += 1
                    if self.place(p, exclude=broker):
                        continue
                del self.pending[rep["id"]]
                done.append((p, rep))
        self.beacons()
        self.timers()
        now = time.monotonic()
        for rid, p in list(self.pending.items()):
            if p["broker"] is None and now < p["deadline"]:
                self.place(p)
            elif now > p["deadline"] + 1.0:
                del self.pending[rid]
                done.append((p, {"id": rid, "status": 504,
                                 "error": {"code": "client_timeout"}}))
        return done


def run_load(args, log):
    c = Client(args.broadcast, args.port, args.interval, log)
    keys = [("disco_%d" % i, "hit") for i in range(args.keys)]
    rng = random.Random(args.seed)
    acked = {"%s/%s" % k: [] for k in keys}
    indeterminate = {"%s/%s" % k: [] for k in keys}
    errors = {}
    failover_successes = []      # (wall time, broker that had left)
    # Hear the brokers first, as the C client does
    settle = time.monotonic() + 2 * c.interval + 0.1
    while time.monotonic() < settle:
        c.poll(20)
    start = time.monotonic()
    stop = start + args.duration
    sent = 0
    while True:
        sending = time.monotonic() < stop
        while sending and len(c.pending) < args.window:
            # Some requests get a budget shorter than the beacon failover,
            # so a broker's death leaves some indeterminate (504) for the
            # Jepsen check to account for; the rest survive it
            short = rng.random() < args.short_share
            c.send_incr(keys[rng.randrange(len(keys))],
                        args.short_timeout_ms if short else args.timeout_ms)
            sent += 1
        if not sending and not c.pending:
            break
        for p, rep in c.poll(10):
            name = "%s/%s" % p["key"]
            if rep["status"] == 200:
                acked[name].append((p["id"], rep["value"]))
                if p["failover_from"]:
                    failover_successes.append((time.time(), p["failover_from"]))
            elif rep["status"] == 504:
                indeterminate[name].append(p["id"])
            else:
                code = rep["error"]["code"]
                errors[code] = errors.get(code, 0) + 1
    result = {
        "sent": sent, "seconds": time.monotonic() - start, "keys": keys,
        "acked": acked, "indeterminate": indeterminate, "errors": errors,
        "events": c.events, "failover_successes": failover_successes,
        "brokers": {b.id: {"endpoint": b.endpoint, "sent": b.sent,
                           "answered": b.answered} for b in c.brokers.values()},
        "sent_by_broker": c.sent_by,
    }
    with open(args.out, "w") as f:
        json.dump(result, f)
    log("load: %d sent, %d acked, %d indeterminate, errors %r" % (
        sent, sum(len(v) for v in acked.values()),
        sum(len(v) for v in indeterminate.values()), errors))


def run_settle(args, log):
    """Retry every indeterminate id (same id, same key) until it answers."""
    with open(args.input) as f:
        load = json.load(f)
    c = Client(args.broadcast, args.port, args.interval, log)
    settle = time.monotonic() + 2 * c.interval + 0.1
    while time.monotonic() < settle:
        c.poll(20)
    outcome = {}                 # id -> [status, replayed]
    for name, ids in load["indeterminate"].items():
        resource, ctype = name.split("/")
        for rid in ids:
            for _ in range(3):
                c.send_incr((resource, ctype), args.timeout_ms, rid=rid)
                rep = None
                while rep is None:
                    for p, r in c.poll(50):
                        if p["id"] == rid:
                            rep = r
                if rep["status"] == 200:
                    break
            outcome[rid] = [rep["status"], bool(rep.get("replayed"))]
    with open(args.out, "w") as f:
        json.dump(outcome, f)
    log("settle: %d ids, %d were applied before (replayed)" % (
        len(outcome), sum(1 for s, r in outcome.values() if r)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["load", "settle"])
    ap.add_argument("--broadcast", required=True, help="e.g. 10.77.0.255")
    ap.add_argument("--port", type=int, default=5670)
    ap.add_argument("--interval", type=int, default=250)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--keys", type=int, default=20)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--timeout-ms", type=int, default=3000)
    ap.add_argument("--short-timeout-ms", type=int, default=1500)
    ap.add_argument("--short-share", type=float, default=0.0,
                    help="share of requests sent with --short-timeout-ms")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--in", dest="input")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    def log(line):
        print(line, flush=True)

    if args.mode == "load":
        run_load(args, log)
    else:
        run_settle(args, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
