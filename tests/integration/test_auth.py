"""The authenticated bus (issue 9, finding 3): CURVE on by default, separate
trusted sets for actors and clients, actor ids bound to the certificate that
registered them, cluster names that keep two stacks apart, and a loud
warning when bus/curve = 0.

Each rogue is a plain pyzmq DEALER, written from PROTOCOL.md §5, that sends
READY for service "counter" the way a real actor does and then listens for a
REQUEST. What a user would check: the real clients keep getting real
answers (every increment 200, values exact in Redis), the real counters stay
registered, the rogue receives no request.
"""
import os
import shutil
import time

import msgpack
import zmq

from hgp_harness import (BIN, Client, client_keys, curve_socket, load_cert,
                         make_keys)
from gateway_harness import Gateway, Http

READY, REQUEST, DISCONNECT = 1, 2, 5
# The READY the binaries under test speak (builds from before CURVE have no
# cluster key and refuse it: checking these tests fail there needs this)
CLUSTER_IN_READY = os.path.exists(os.path.join(BIN, "hgp-keys"))


class Rogue:
    """A DEALER on the broker's actor endpoint that claims to be a counter"""

    def __init__(self, endpoint, keys=None):
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        curve_socket(self.sock, keys)
        self.sock.connect(endpoint)

    def ready(self, actor_id, cluster="hgp"):
        body = {"service": "counter", "actor_id": actor_id, "capacity": 1000}
        if CLUSTER_IN_READY:
            body["cluster"] = cluster
        self._send([b"HGPA01", bytes([READY]), msgpack.packb(body)])

    def _send(self, frames):
        # A DEALER whose handshake was refused has no peer: never block
        try:
            self.sock.send_multipart(frames, flags=zmq.NOBLOCK)
        except zmq.Again:
            pass

    def heard(self, seconds):
        """Commands received within seconds (heartbeats answered, so a rogue
        that did register would stay registered)"""
        got = []
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.sock.poll(50):
                frames = self.sock.recv_multipart()
                got.append(frames[1][0] if len(frames) > 1 and frames[1] else None)
            self._send([b"HGPA01", bytes([4])])     # HEARTBEAT
        return got

    def close(self):
        self.sock.close()


def _load(stack, n, prefix):
    """n increments of 1 over 10 keys through a real client: every one 200,
    each key's value in Redis equal to what it was sent"""
    keys = ["%s_%d" % (prefix, i) for i in range(10)]
    with stack.client() as c:
        for i in range(n):
            rep = c.incr(keys[i % 10], "like", 1)
            assert rep["status"] == 200, rep
    for k in keys:
        assert stack.redis.counter(k, "like") == n // 10, k
    return n


def _assert_untouched(stack, real_ids, rogue):
    """The real counters are the registered ones, the rogue got no REQUEST,
    and increments keep getting real answers while it tries"""
    for _ in range(3):
        rogue_heard = rogue.heard(0.3)
        assert REQUEST not in rogue_heard, rogue_heard
        _load(stack, 50, "k%d" % _)
        assert REQUEST not in rogue.heard(0.3)
        assert sorted(a["actor_id"] for a in stack.actors()) == real_ids


def test_rogue_dealer_without_certificate_cannot_register_nor_evict(stack, measured):
    real_ids = sorted(a["actor_id"] for a in stack.actors())
    rogue = Rogue(stack.actor_endpoint)
    rogue.ready("rogue.1")
    rogue.ready(real_ids[0])            # a stolen id, read with op actors
    _assert_untouched(stack, real_ids, rogue)
    rogue.close()
    # Nor can a client without a certificate ask anything
    with Client(stack.client_endpoint, keys=None) as c:
        try:
            c.sock.send_multipart([b"", b"HGPC01", msgpack.packb({"op": "ping", "id": "x"})],
                                  flags=zmq.NOBLOCK)
        except zmq.Again:
            pass
        try:
            rep = c.recv(timeout=1.0)
        except TimeoutError:
            rep = None
        assert rep is None, rep
    # A peer without CURVE fails the handshake itself: no READY ever arrives
    assert "rogue.1" not in stack.broker.output()
    measured("rogue without certificate: 0 requests received, %d actors kept" % len(real_ids))


def test_rogue_with_a_client_certificate_cannot_register_as_an_actor(stack):
    real_ids = sorted(a["actor_id"] for a in stack.actors())
    # A trusted client's certificate, and the broker's real key
    rogue = Rogue(stack.actor_endpoint, client_keys(stack.keys) if stack.curve else None)
    rogue.ready("rogue.2")
    rogue.ready(real_ids[1])
    _assert_untouched(stack, real_ids, rogue)
    rogue.close()
    assert "certificate not trusted" in stack.broker.output()


def test_stolen_actor_id_under_another_actor_certificate_evicts_nothing(make_stack, logdir):
    stack = make_stack()
    # A second trusted actor certificate (another actor host's)
    keys = None
    if stack.curve:
        r = os.system("%s -d %s add-actor otherhost >/dev/null" % (os.path.join(BIN, "hgp-keys"), stack.keys))
        assert r == 0
        server, _ = load_cert(os.path.join(stack.keys, "broker.cert"))
        public, secret = load_cert(os.path.join(stack.keys, "actors", "otherhost.cert_secret"))
        keys = (server, public, secret)
    gateway = Gateway(stack, logdir)
    real_ids = sorted(a["actor_id"] for a in stack.actors())
    rogue = Rogue(stack.actor_endpoint, keys)
    for stolen in real_ids:
        rogue.ready(stolen)
    heard = rogue.heard(1.0)
    assert DISCONNECT in heard and REQUEST not in heard, heard
    _assert_untouched(stack, real_ids, rogue)
    # The gateway keeps answering real values
    with Http(gateway.port) as h:
        for i in range(20):
            status, _, body = h.increment("gw_post", "like", 1)
            assert status == 200 and body["value"] == i + 1, (status, body)
    rogue.close()
    log = stack.broker.output()
    assert "is registered under another certificate" in log, log
    assert "reconnected under a new identity" not in log, log
    assert gateway.proc.stop() == 0


def test_two_clusters_do_not_cross(make_stack, logdir):
    alpha = make_stack(env={"HGP_BUS_CLUSTER": "alpha"}, actors=1)
    alpha_ids = [a["actor_id"] for a in alpha.actors()]
    # A counter of cluster "beta" with alpha's very keys (two `make run`
    # stacks sharing var/keys) pointed at alpha's broker by mistake
    beta = alpha.add_counter(env={"HGP_BUS_CLUSTER": "beta"})
    # And an actor host whose certificate was never added to alpha's
    # broker (it has alpha's broker.cert, its own actor key)
    other_keys = make_keys(logdir) or logdir
    if alpha.curve:
        os.remove(os.path.join(other_keys, "broker.cert_secret"))
        shutil.copy(os.path.join(alpha.keys, "broker.cert"), other_keys)
    stranger = alpha.add_counter(env={"HGP_BUS_KEYS": other_keys})
    deadline = time.time() + 3
    while time.time() < deadline and "cluster 'beta'" not in alpha.broker.output():
        time.sleep(0.1)
    time.sleep(1.0)
    assert [a["actor_id"] for a in alpha.actors()] == alpha_ids
    _load(alpha, 40, "alpha")
    assert [a["actor_id"] for a in alpha.actors()] == alpha_ids
    log = alpha.broker.output()
    assert "actor" in log and "is of cluster 'beta', this broker serves 'alpha'" in log, log
    assert "certificate not trusted" in log, log
    assert beta.alive() and stranger.alive()


def test_curve_off_is_a_warning_in_every_process(make_stack, logdir):
    stack = make_stack(env={"HGP_BUS_CURVE": "0"}, actors=1, analytics=1)
    gateway = Gateway(stack, logdir)
    with Http(gateway.port) as h:
        status, _, body = h.increment("plain", "like", 2)
        assert status == 200 and body["value"] == 2, body
    r = stack.cli("get", "plain", "like")
    assert r.returncode == 0 and "2" in r.stdout, r
    assert gateway.proc.stop() == 0
    for proc in [stack.broker] + stack.counters + stack.analytics + [gateway.proc]:
        assert "bus/curve = 0: the bus is NOT authenticated" in proc.output(), \
            (proc.name, proc.output())
