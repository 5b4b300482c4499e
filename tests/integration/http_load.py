"""HTTP load on a gateway, for tests that run it inside a network namespace
(tests/integration/test_discovery.py): the test process cannot reach the
namespace's loopback, so this script runs there with `ip netns exec`.

  http_load.py load   --port P --duration S --threads N --keys K --out FILE
  http_load.py settle --port P --in FILE --out FILE

load: waits until GET /api/v1/health is ok, writes FILE.started, then N
threads each keep one keep-alive connection to 127.0.0.1:P and POST
increments of K keys, each with a fresh request id sent as Idempotency-Key,
for S seconds. FILE gets, per key, the acknowledged (id, value) pairs and
the indeterminate ids (504), plus every request's start, end and status so
the test can time the failover against its kill. Anything but 200, 503 and
504 (including a broken connection, status 0) is recorded as is.

settle: re-sends every indeterminate id of FILE (same key, same
Idempotency-Key) until it gets a 200; FILE gets {id: [status, replayed]}.

Standard library only (http.client), like tests/integration/gateway_harness.py.
"""
import argparse
import http.client
import json
import random
import threading
import time
import uuid


def post(conn, key, rid):
    body = json.dumps({"resource_id": key[0], "counter_type": key[1]})
    conn.request("POST", "/api/v1/counter/increment", body=body,
                 headers={"Content-Type": "application/json",
                          "Idempotency-Key": rid})
    resp = conn.getresponse()
    data = json.loads(resp.read() or b"{}")
    return resp.status, data


def wait_healthy(port, timeout=60):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/api/v1/health")
            resp = conn.getresponse()
            last = (resp.status, resp.read())
            conn.close()
            if resp.status == 200:
                return
        except OSError as e:
            last = repr(e)
        time.sleep(0.1)
    raise SystemExit("gateway never healthy: %r" % (last,))


def run_load(args):
    wait_healthy(args.port)
    keys = [("gwdisco_%d" % i, "hits") for i in range(args.keys)]
    stop_at = time.time() + args.duration
    lock = threading.Lock()
    acked = {"%s/%s" % k: [] for k in keys}
    ind = {"%s/%s" % k: [] for k in keys}
    requests = []                       # [start, end, status]
    codes = {}

    def worker(seed):
        rnd = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
        mine = []
        while time.time() < stop_at:
            key = rnd.choice(keys)
            rid = uuid.uuid4().hex
            t0 = time.time()
            try:
                status, data = post(conn, key, rid)
            except (OSError, http.client.HTTPException, ValueError) as e:
                status, data = 0, {"error": {"code": repr(e)}}
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
            t1 = time.time()
            mine.append([t0, t1, status])
            name = "%s/%s" % key
            with lock:
                if status == 200:
                    acked[name].append([rid, data["value"]])
                else:
                    code = "%d %s" % (status, data.get("error", {}).get("code"))
                    codes[code] = codes.get(code, 0) + 1
                    if status == 504:
                        ind[name].append(rid)
        conn.close()
        with lock:
            requests.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.threads)]
    with open(args.out + ".started", "w") as f:
        f.write("%f\n" % time.time())
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    requests.sort()
    with open(args.out, "w") as f:
        json.dump({"keys": keys, "acked": acked, "indeterminate": ind,
                   "errors": codes, "requests": requests}, f)
    print("load: %d requests, errors %r" % (len(requests), codes))


def run_settle(args):
    with open(args.input) as f:
        res = json.load(f)
    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
    outcome = {}
    for name, rids in res["indeterminate"].items():
        key = tuple(name.split("/"))
        for rid in rids:
            for _ in range(20):
                status, data = post(conn, key, rid)
                if status == 200:
                    break
                time.sleep(0.2)
            outcome[rid] = [status, bool(data.get("replayed"))]
    with open(args.out, "w") as f:
        json.dump(outcome, f)
    print("settle: %d ids" % len(outcome))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["load", "settle"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--keys", type=int, default=20)
    ap.add_argument("--in", dest="input")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.mode == "load":
        run_load(args)
    else:
        run_settle(args)


if __name__ == "__main__":
    main()
