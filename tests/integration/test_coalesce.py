"""Increments of one key in one batch: what the counter's coalesced apply
(lib/ledger_apply.lua, own path) must keep exact.

One counter actor, and every burst sent from one DEALER before any reply
is read, so the actor drains many requests per batch and applies those of
one key with one INCRBY by their sum. Each reply must still carry its own
running value, the log each event once with that value, and Redis the sum.
Redis's INFO commandstats shows that the coalesced path ran (fewer INCRBY
than increments) and, near 2^53, that it fell back to one INCRBY per event."""
import collections
import time

from hgp_harness import counter_key, new_id
from test_eventlog import log_by_id

INT64_MAX = 2 ** 63 - 1
EXACT = 2 ** 53             # Lua numbers are exact below this


def command_calls(stack):
    """{command: calls} from Redis INFO commandstats"""
    reply = stack.redis.command("INFO", "commandstats").decode()
    out = {}
    for line in reply.splitlines():
        if line.startswith("cmdstat_"):
            name, stats = line[len("cmdstat_"):].split(":", 1)
            out[name] = int(stats.split(",")[0].split("=")[1])
    return out


def burst(stack, requests):
    """Send every (resource, type, delta, id) at once, then read the
    replies: [(request, reply)] in the order sent (an id sent twice gets
    its two replies in turn)"""
    replies = collections.defaultdict(list)
    with stack.client() as c:
        for r, t, delta, rid in requests:
            c.send({"op": "incr", "resource_id": r, "counter_type": t,
                    "delta": delta, "id": rid})
        for _ in requests:
            rep = c.recv(timeout=20)
            replies[rep["id"]].append(rep)
    return [(req, replies[req[3]].pop(0)) for req in requests]


def set_counter(stack, r, t, value):
    assert stack.redis.command("SET", counter_key(r, t), value) == b"+OK\r\n"


def check_chain(stack, answered, base):
    """Per key, in the order sent, each applied reply is the value before
    plus its delta (one actor reads one DEALER's requests in order); the
    values of a key are distinct; Redis holds the last; the log holds each
    applied increment once, with its reply's value and delta."""
    value = dict(base)
    seen = collections.defaultdict(set)
    applied = {}
    for (r, t, delta, rid), rep in answered:
        if rep["status"] != 200:
            continue
        assert not rep.get("replayed"), rep
        value[(r, t)] += delta
        assert rep["value"] == value[(r, t)], (r, t, delta, rep)
        assert rep["value"] not in seen[(r, t)]
        seen[(r, t)].add(rep["value"])
        applied[rid] = (r, t, delta, rep["value"])
    for (r, t), v in value.items():
        assert stack.redis.counter(r, t) == v, (r, t)
    by_id = log_by_id(stack.kafka.read())
    for rid, (r, t, delta, v) in applied.items():
        assert len(by_id[rid]) == 1, (rid, by_id[rid])
        ev = by_id[rid][0]["event"]
        assert (ev["resource_id"], ev["counter_type"], ev["delta"],
                ev["value"]) == (r, t, delta, v), ev
    return by_id


def test_one_batch_of_mixed_deltas_gives_every_increment_its_running_value(
        make_stack):
    stack = make_stack(actors=1)
    keys = [("post_%d" % i, "like") for i in range(3)]
    set_counter(stack, "post_0", "like", 1000000)
    base = {k: 0 for k in keys}
    base[("post_0", "like")] = 1000000
    deltas = [5, -3, 1000, -1]
    requests = [keys[i % 3] + (deltas[i % 4], new_id()) for i in range(200)]
    before = command_calls(stack).get("incrby", 0)
    answered = burst(stack, requests)
    assert [rep["status"] for _, rep in answered] == [200] * 200, answered
    check_chain(stack, answered, base)
    for k in keys:
        want = base[k] + sum(d for r, t, d, _ in requests if (r, t) == k)
        assert stack.redis.counter(*k) == want
    # One INCRBY per key and batch, not per increment
    incrby = command_calls(stack)["incrby"] - before
    assert incrby < 100, incrby


def test_same_id_twice_in_one_batch_counts_once(make_stack):
    stack = make_stack(actors=1)
    twice, clash = new_id(), new_id()
    requests = [("doc", "view", 1, new_id()) for _ in range(50)]
    requests[10] = ("doc", "view", 7, twice)
    requests[11] = ("doc", "view", 7, twice)
    requests[20] = ("doc", "view", 3, clash)
    requests[21] = ("doc", "view", 4, clash)
    before = command_calls(stack).get("get", 0)
    answered = burst(stack, requests)
    # The records were written and read by SET NX GET and MGET, not by a
    # GET per increment and step
    assert command_calls(stack).get("get", 0) - before < len(requests)
    first, second = answered[10][1], answered[11][1]
    assert first["status"] == second["status"] == 200, (first, second)
    assert first["value"] == second["value"]
    assert second.get("replayed") or first.get("replayed"), (first, second)
    replayed = 11 if second.get("replayed") else 10
    a, b = answered[20][1], answered[21][1]
    assert sorted([a["status"], b["status"]]) == [200, 409], (a, b)
    conflict = a if a["status"] == 409 else b
    assert conflict["error"]["code"] == "id_conflict", conflict
    won = 3 if a["status"] == 200 else 4
    lost = 20 if a["status"] == 409 else 21
    others = [(req, rep) for i, (req, rep) in enumerate(answered)
              if i not in (replayed, lost)]
    by_id = check_chain(stack, others, {("doc", "view"): 0})
    assert stack.redis.counter("doc", "view") == 46 + 7 + won
    assert len(by_id[twice]) == 1 and len(by_id[clash]) == 1
    assert by_id[clash][0]["event"]["delta"] == won


def test_values_near_2_53_and_int64_max_stay_exact(make_stack):
    stack = make_stack(actors=1)
    set_counter(stack, "near", "up", EXACT - 3)
    set_counter(stack, "near", "down", -EXACT + 2)
    set_counter(stack, "top", "max", INT64_MAX - 10)
    requests = []
    for i in range(6):
        requests.append(("near", "up", [1, 1, 1, 1, 3, -1][i], new_id()))
        requests.append(("near", "down", -1, new_id()))
    requests += [("top", "max", 3, new_id()) for _ in range(4)]
    requests.append(("top", "max", -5, new_id()))
    requests += [("big", "delta", 2 ** 60, new_id()),
                 ("big", "delta", -(2 ** 60) + 1, new_id())]
    before = command_calls(stack)
    answered = burst(stack, requests)
    status = [rep["status"] for _, rep in answered]
    # The fourth +3 would pass INT64_MAX: refused before logging, as before
    assert status[12:17] == [200, 200, 200, 400, 200], answered[12:17]
    overflow = answered[15][1]
    assert overflow["error"]["code"] == "overflow", overflow
    assert status[:12] + status[17:] == [200] * 14, answered
    by_id = check_chain(stack, answered, {("near", "up"): EXACT - 3,
                                          ("near", "down"): -EXACT + 2,
                                          ("top", "max"): INT64_MAX - 10,
                                          ("big", "delta"): 0})
    assert stack.redis.counter("near", "up") == EXACT + 3
    assert stack.redis.counter("near", "down") == -EXACT + 2 - 6
    assert stack.redis.counter("top", "max") == INT64_MAX - 6
    assert stack.redis.counter("big", "delta") == 1
    assert by_id[answered[15][0][3]] == []      # nothing logged
    # Past 2^53 the coalesced INCRBY is undone and each event applied alone
    after = command_calls(stack)
    assert after.get("decrby", 0) - before.get("decrby", 0) >= 1, after


def test_a_batch_whose_promises_hold_costs_one_record_write_per_increment(
        make_stack):
    stack = make_stack(actors=1)
    keys = [("pr_%d" % i, "like") for i in range(3)]
    requests = [keys[i % 3] + (1 + i % 4, new_id()) for i in range(300)]
    before = command_calls(stack)
    answered = burst(stack, requests)
    assert [rep["status"] for _, rep in answered] == [200] * 300, answered
    check_chain(stack, answered, {k: 0 for k in keys})
    after = command_calls(stack)
    # One SET per increment (its promise), and two per batch for the
    # batch's key (pending, then kept): no second write per increment
    sets = after.get("set", 0) - before.get("set", 0)
    batches = int(stack.redis.command("GET", "hgp:batches").split(b"\r\n")[1])
    assert sets <= 300 + 2 * batches, (sets, batches)
    assert batches < 300, batches
    # The records are promises, kept: every retry replays its own value
    rid = requests[7][3]
    record = stack.redis.command("GET", "hgp:r:" + rid).decode()
    assert "?" in record and record.split("?")[1].split("\r\n")[0].isdigit(), record
    with stack.client() as c:
        for (r, t, delta, rid), rep in answered[::25]:
            again = c.incr(r, t, delta, rid=rid)
            assert again["status"] == 200 and again["replayed"] is True, again
            assert again["value"] == rep["value"], (rep, again)
    for k in keys:
        assert stack.redis.counter(*k) == sum(
            d for r, t, d, _ in requests if (r, t) == k)


def test_a_second_writer_between_prepare_and_apply_gets_no_wrong_value(
        make_stack):
    # The counter pauses once, after its prepare read the counter (0) and
    # wrote the promise (5), before logging; meanwhile another writer adds
    # 1000. The apply sees the counter moved and settles the increment
    # with a final record of its true value instead of keeping the promise.
    stack = make_stack(actors=1, env={"HGP_COUNTER_STALL_BEFORE_LOG": "600"})
    rid = new_id()
    with stack.client() as c:
        c.send({"op": "incr", "resource_id": "moved", "counter_type": "hit",
                "delta": 5, "id": rid})
        time.sleep(0.3)
        stack.redis.command("INCRBY", counter_key("moved", "hit"), "1000")
        rep = c.recv(timeout=10)
        assert rep["id"] == rid and rep["status"] == 200, rep
        assert rep["value"] == 1005, rep
        assert stack.redis.counter("moved", "hit") == 1005
        record = stack.redis.command("GET", "hgp:r:" + rid).decode()
        assert " 5 1005 " in record, record
        again = c.incr("moved", "hit", 5, rid=rid)
        assert again["replayed"] is True and again["value"] == 1005, again
    assert "stall_before_log is set" in stack.counters[0].output()
    assert len(log_by_id(stack.kafka.read())[rid]) == 1
    assert stack.redis.counter("moved", "hit") == 1005
