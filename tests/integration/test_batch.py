"""Client batches (PROTOCOL.md 4.1): several requests in one message.

A client may send an array of request bodies as frame 2; each is handled
as if it came alone, and the answers come back as arrays of reply bodies
(or one body alone), matched by id. Checked with a raw DEALER speaking the
spec, and through the C client (hgp bench batches its window)."""
import re

import msgpack

from hgp_harness import new_id


def recv_replies(c, want, timeout=10.0):
    """Replies by id until `want` ids are answered; also the message shapes"""
    got, shapes = {}, []
    while len(got) < want:
        if not c.sock.poll(int(timeout * 1000)):
            raise TimeoutError("%d of %d replies" % (len(got), want))
        frames = c.sock.recv_multipart()
        assert frames[:2] == [b"", b"HGPC01"] and len(frames) == 3, frames
        body = msgpack.unpackb(frames[2], raw=False)
        if isinstance(body, list):
            shapes.append(len(body))
            replies = body
        else:
            shapes.append(0)
            replies = [body]
        for rep in replies:
            assert rep["id"] not in got, rep
            got[rep["id"]] = rep
    return got, shapes


def send_batch(c, bodies):
    c.send_raw([b"", b"HGPC01", msgpack.packb(bodies)])


def test_a_batch_is_answered_request_by_request(stack):
    with stack.client() as c:
        ids = [new_id() for _ in range(40)]
        bodies = [{"op": "incr", "id": i, "resource_id": "batch_%d" % (n % 4),
                   "counter_type": "like", "delta": n + 1}
                  for n, i in enumerate(ids)]
        # what cannot run is answered by itself and stops nothing else
        bad = new_id()
        bodies.insert(7, {"op": "incr", "id": bad, "resource_id": "x",
                          "counter_type": "like", "delta": 0})
        ping = new_id()
        bodies.append({"op": "ping", "id": ping})
        send_batch(c, bodies)
        got, shapes = recv_replies(c, len(bodies))
        assert got[bad]["status"] == 400 and got[bad]["error"]["code"] == "invalid"
        assert got[ping]["status"] == 200
        assert all(got[i]["status"] == 200 for i in ids), got
        # replies came in arrays: fewer messages than requests
        assert len(shapes) < len(bodies), shapes
        expect = {k: sum(n + 1 for n in range(40) if n % 4 == k) for k in range(4)}
        for k, total in expect.items():
            assert stack.redis.counter("batch_%d" % k, "like") == total
        # a replay inside a batch says so, and adds nothing
        send_batch(c, [bodies[0], bodies[1]])
        again, _ = recv_replies(c, 2)
        assert again[ids[0]]["replayed"] is True and again[ids[0]]["value"] == got[ids[0]]["value"]
        for k, total in expect.items():
            assert stack.redis.counter("batch_%d" % k, "like") == total


def test_a_lone_map_is_still_answered_with_a_map(stack):
    with stack.client() as c:
        rid = c.send({"op": "incr", "resource_id": "solo", "counter_type": "like", "delta": 1})
        got, shapes = recv_replies(c, 1)
        assert shapes == [0] and got[rid]["value"] == 1


def test_broken_batches_get_clear_errors_and_apply_only_what_was_whole(stack):
    with stack.client() as c:
        rid = new_id()
        good = msgpack.packb({"op": "incr", "id": rid, "resource_id": "broken",
                              "counter_type": "like", "delta": 3})
        # the header promises 3 bodies, the frame holds 1 and a half
        raw = b"\x93" + good + good[:5]
        c.send_raw([b"", b"HGPC01", raw])
        got, _ = recv_replies(c, 2)
        assert got[rid]["status"] == 200
        assert got[""]["status"] == 400 and got[""]["error"]["code"] == "malformed"
        assert "element 2 of 3" in got[""]["error"]["message"]
        assert stack.redis.counter("broken", "like") == 3
        # empty and oversized batches
        for n in (0, 1025):
            body = msgpack.packb([{"op": "ping", "id": new_id()}] * n)
            c.send_raw([b"", b"HGPC01", body])
            got, _ = recv_replies(c, 1)
            assert got[""]["status"] == 400 and "1 to 1024" in got[""]["error"]["message"]
        # a body nested past the decoder's depth in a batch
        deep = b"\x91" + b"\x91" * 20 + b"\x01"
        c.send_raw([b"", b"HGPC01", deep])
        got, _ = recv_replies(c, 1)
        assert got[""]["status"] == 400
        assert c.call({"op": "ping"})["status"] == 200
    assert stack.redis.counter("broken", "like") == 3


def test_hgp_bench_sends_its_window_in_batches_and_stays_exact(stack):
    out = stack.cli("bench", "-n", "20000", "-w", "64", "-k", "50", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "verify: ok (increase 20000, acked 20000" in out.stdout, out.stdout
    assert re.search(r"replies: 20000 ok, 0 errors", out.stdout), out.stdout
