"""Memory bounded by bytes: the broker holds at most broker/queue_bytes of
request bodies (waiting and in flight together) and answers 503 busy beyond
it, and sends an actor at most broker/actor_bytes at once, so a burst of
large requests cannot grow either without bound (issue 9, finding 7: 2000
mgets of 125 KB took the broker from 44 to 273 MB, counters 16 -> 76 MB)."""
import os
import time

import msgpack
import zmq

import hgp_harness
from hgp_harness import Client, new_id

MIB = 1024 * 1024
ACTOR_MIB = 4


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS for %d" % pid)


def mget_body(i):
    """An mget of 1000 keys with 120-byte resource ids: about 125 KB"""
    keys = [["r%03d-%s" % (k, "x" * 115), "view"] for k in range(1000)]
    return {"op": "mget", "id": new_id(), "keys": keys, "timeout_ms": 30000}


def burst(endpoint, n, clients, on_tick):
    """n mgets sent as fast as `clients` DEALERs take them, replies read as
    they come; on_tick() is called between polls. Returns {status: count}."""
    ctx = zmq.Context.instance()
    socks = [Client(endpoint, ctx) for _ in range(clients)]
    body = msgpack.packb(mget_body(0))
    statuses, sent, got = {}, 0, 0
    poller = zmq.Poller()
    for c in socks:
        poller.register(c.sock, zmq.POLLIN)
    while got < n:
        for c in socks:
            while sent < n and sent - got < 2 * n:
                c.sock.send_multipart([b"", b"HGPC01", body], zmq.NOBLOCK)
                sent += 1
                if sent % 50 == 0:
                    break
        for sock, _ in poller.poll(100):
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                rep = msgpack.unpackb(frames[2], raw=False)
                k = (rep["status"], rep.get("error", {}).get("message", ""))
                statuses[k] = statuses.get(k, 0) + 1
                got += 1
        on_tick()
    for c in socks:
        c.close()
    return statuses, len(body)


def test_broker_memory_is_bounded_by_bytes_under_mget_bursts(make_stack, measured,
                                                            monkeypatch):
    """2000 mgets of 125 KB (256 MB) from 8 clients at once, against a broker
    with broker/queue_bytes = 16 MiB: the ones past the limit are 503 busy
    at once, the rest are answered, no actor is lost, RSS stays under a
    bound well below the burst, and goes back to idle after it.

    RSS is measured on the release build (make test builds it too): under
    ASan the allocator's quarantine and size classes, not ours, decide RSS."""
    limit = 16
    rel = os.environ.get("HGP_REL_BIN")
    if rel and os.path.exists(os.path.join(rel, "hgp-broker")):
        monkeypatch.setattr(hgp_harness, "BIN", rel)
    stack = make_stack(actors=1, env={"HGP_BROKER_QUEUE_BYTES": str(limit * MIB),
                                      "HGP_BROKER_ACTOR_BYTES": str(ACTOR_MIB * MIB)})
    pid = stack.broker.p.pid
    cpid = stack.counters[0].p.pid
    with stack.client() as c:
        assert c.call({"op": "ping"})["status"] == 200
    idle, cidle = rss_mib(pid), rss_mib(cpid)
    peak, cpeak = [idle], [cidle]

    def sample():
        peak.append(rss_mib(pid))
        cpeak.append(rss_mib(cpid))
    statuses, size = burst(stack.client_endpoint, 2000, 8, sample)
    total_mb = 2000 * size / 1e6
    time.sleep(1)
    after = rss_mib(pid)
    measured("broker RSS idle %.0f MiB, peak %.0f MiB, after %.0f MiB during "
             "%.0f MB of mgets (%d x %d B), queue_bytes %d MiB; counter RSS "
             "idle %.0f MiB, peak %.0f MiB (actor_bytes %d MiB); answers %r"
             % (idle, max(peak), after, total_mb, 2000, size, limit, cidle,
                max(cpeak), ACTOR_MIB, statuses))
    assert total_mb > 238
    codes = {k[0] for k in statuses}
    assert codes <= {200, 503}, statuses
    busy = sum(n for (code, why), n in statuses.items() if code == 503)
    assert busy == sum(n for (code, why), n in statuses.items()
                       if code == 503 and "broker/queue_bytes" in why), statuses
    assert statuses.get((200, ""), 0) >= 2 * limit * MIB // size, statuses
    assert "silent" not in stack.broker.output(), stack.broker.output()
    #   The broker holds at most `limit` of bodies; libzmq holds a copy of
    #   those in flight to the actor, up to 256 messages per client
    #   connection not yet read, and the replies on their way out. Today's
    #   main held the whole burst: peak 348-395 MiB, 292-311 MiB after.
    assert max(peak) < 192, (idle, max(peak))
    assert after < idle + 16, (idle, after)
    #   The counter gets at most ACTOR_MIB of bodies at once (one batch of
    #   replies on top); main sent it the whole burst: peak 182 MiB
    assert max(cpeak) < cidle + 32, (cidle, max(cpeak))

