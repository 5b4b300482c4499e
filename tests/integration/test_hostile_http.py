"""Hostile and heavy HTTP input at the gateway (issue 9): nothing a client
sends may crash it, forge an answer, apply something hidden, or lock other
clients out.

Real processes as everywhere (hgp_harness.Stack + bin/hgp-gateway), and HTTP
spoken over raw sockets where the attack is in the framing, so that no client
library tidies it up. Load for the admission test comes from `hey` (Debian
package hey), whose per-request CSV gives each request's status and latency.
Every gateway must still exit 0 on SIGTERM at the end (ASan/UBSan/LSan quiet).
"""
import csv
import io
import json
import os
import resource
import shutil
import socket
import subprocess
import threading
import time

import pytest

from gateway_harness import Gateway, Http
from test_gateway import assert_error, make_gateway  # noqa: F401 (fixture)

INCREMENT = "/api/v1/counter/increment"
BATCH = "/api/v1/counter/batch"
HEALTH = "/api/v1/health"


# ---------------------------------------------------------------------------
# Raw HTTP


def connect(port, timeout=10.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_response(sock):
    """One response off sock: (status, headers with lower-case names, body
    bytes), or None if the peer closed before a status line."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def closed_by_peer(sock, timeout=5.0):
    """True if the peer closes sock (EOF or reset) without sending more."""
    sock.settimeout(timeout)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def post_raw(resource_id, counter_type="c"):
    body = json.dumps({"resource_id": resource_id, "counter_type": counter_type})
    return ("POST %s HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n%s" % (INCREMENT, len(body), body)).encode()


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(len(values) * p / 100.0))]


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        want = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------------------
# 1. Nesting


def nested(depth, objects):
    if objects:
        return '{"a":' * depth + "1" + "}" * depth
    return "[" * depth + "]" * depth


def test_deeply_nested_json_is_invalid_and_the_gateway_keeps_serving(make_gateway):
    # 20,000 levels of {"a": are 120 KB: raise the increment body limit so
    # that the nesting check, not the size check, is what answers
    stack, gateway = make_gateway(env={"HGP_GATEWAY_BODY_LIMIT": "262144"})
    with gateway.http() as h:
        for depth in (100, 1000, 20000):
            for objects in (False, True):
                for path in (INCREMENT, BATCH):
                    status, _, body = h.request("POST", path, nested(depth, objects),
                                                {"Content-Type": "application/json"})
                    assert_error(status, body, 400, "invalid")
                    assert "nested" in body["error"]["message"], body
        # still alive and serving, on the same connection and a new one
        status, _, body = h.increment("after_deep", "c")
        assert status == 200 and body["value"] == 1, body
    with gateway.http() as h:
        status, _, body = h.request("GET", HEALTH)
        assert status == 200, body
    assert gateway.proc.alive()


# ---------------------------------------------------------------------------
# 4. Framing (RFC 9112 6.3): a hidden increment after the body never runs


def smuggle_cases():
    hidden = post_raw("smuggled", "c")
    cases = {
        # the first Content-Length covers only "{}"; the second covers all
        "two_content_lengths": (
            b"POST " + INCREMENT.encode() + b" HTTP/1.1\r\nHost: gw\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2\r\n"
            b"Content-Length: %d\r\n\r\n{}" % (2 + len(hidden)) + hidden),
        "content_length_list": (
            b"POST " + INCREMENT.encode() + b" HTTP/1.1\r\nHost: gw\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2, %d\r\n\r\n{}"
            % (2 + len(hidden)) + hidden),
        # chunked says the body is empty, Content-Length that it is all of it
        "content_length_and_chunked": (
            b"POST " + INCREMENT.encode() + b" HTTP/1.1\r\nHost: gw\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % (5 + len(hidden))
            + hidden),
    }
    return cases


@pytest.mark.parametrize("case", sorted(smuggle_cases()))
def test_ambiguous_framing_is_400_closes_and_the_hidden_increment_never_runs(
        make_gateway, case):
    stack, gateway = make_gateway()
    with connect(gateway.port) as s:
        s.sendall(smuggle_cases()[case])
        response = read_response(s)
        assert response is not None, "no answer at all"
        status, headers, body = response
        assert status == 400, (status, body)
        assert json.loads(body)["error"]["code"] == "malformed", body
        assert headers.get("connection") == "close", headers
        assert closed_by_peer(s), "connection left open after a 400 framing error"
    time.sleep(0.5)             # a hidden request would have run by now
    with gateway.http() as h:
        assert h.value("smuggled", "c") == 0
        status, _, text = h.request("GET", "/metrics")
        assert 'hgp_gateway_http_refused_total{reason="framing"} 1' in text, text
    assert stack.redis.counter("smuggled", "c") == 0


# ---------------------------------------------------------------------------
# 5. Query parameters on POST routes, OPTIONS *, absolute-form


def test_query_parameters_on_post_routes_are_invalid_and_apply_nothing(make_gateway):
    stack, gateway = make_gateway()
    with gateway.http() as h:
        status, _, body = h.request("POST", INCREMENT + "?delta=1000",
                                    {"resource_id": "q", "counter_type": "c"})
        assert_error(status, body, 400, "invalid")
        status, _, body = h.request("POST", INCREMENT + "?",
                                    {"resource_id": "q", "counter_type": "c"})
        assert_error(status, body, 400, "invalid")
        status, _, body = h.request("POST", BATCH + "?limit=1", {
            "queries": [{"resource_id": "q", "counter_type": "c"}]})
        assert_error(status, body, 400, "invalid")
        # the connection is still usable: the body was consumed
        assert h.value("q", "c") == 0
    assert stack.redis.counter("q", "c") == 0


def test_options_asterisk_and_absolute_form_targets_get_an_answer(make_gateway):
    # several loops, and several connections on each in turn: an answer on
    # one connection must not silence the next
    _, gateway = make_gateway(env={"HGP_GATEWAY_THREADS": "4"})
    for _ in range(6):
        with connect(gateway.port) as s:
            s.sendall(b"OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            response = read_response(s)
            assert response is not None, "OPTIONS * got no answer"
            status, headers, _ = response
            assert status == 200, response
            assert set(headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "POST"}
        with connect(gateway.port) as s:
            s.sendall(b"DELETE * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            response = read_response(s)
            assert response is not None and response[0] == 400, response
    # absolute-form for this server (RFC 9112 3.2.2: MUST be accepted)
    with connect(gateway.port) as s:
        s.sendall(b"GET http://127.0.0.1:%d%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                  % (gateway.port, HEALTH.encode(), gateway.port))
        response = read_response(s)
        assert response is not None, "absolute-form got no answer"
        status, _, body = response
        assert status == 200 and json.loads(body)["status"] == "ok", response
        # and the connection stays usable (keep-alive)
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % HEALTH.encode())
        response = read_response(s)
        assert response is not None and response[0] == 200, response
    # absolute-form naming another server: a clear refusal, not silence
    with connect(gateway.port) as s:
        s.sendall(b"GET http://127.0.0.1:%d%s HTTP/1.1\r\nHost: x\r\n\r\n"
                  % (gateway.port + 1, HEALTH.encode()))
        response = read_response(s)
        assert response is not None and response[0] == 421, response


# ---------------------------------------------------------------------------
# 2. Slow clients


def test_a_body_that_never_ends_costs_a_worker_at_most_the_body_timeout(
        make_gateway, measured):
    body_timeout = 1.5
    _, gateway = make_gateway(env={"HGP_GATEWAY_BODY_TIMEOUT": str(int(body_timeout * 1000))})
    results = {}
    for kind in ("chunked", "content_length"):
        with connect(gateway.port, timeout=20) as s:
            if kind == "chunked":
                s.sendall(b"POST %s HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n" % INCREMENT.encode())
                piece = b"1\r\n \r\n"           # one byte of whitespace per chunk
            else:
                s.sendall(b"POST %s HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 60000\r\n\r\n" % INCREMENT.encode())
                piece = b" "
            started = time.monotonic()
            s.setblocking(False)
            data = b""
            while time.monotonic() - started < 20 and b"\r\n\r\n" not in data:
                try:
                    s.send(piece)
                except OSError:
                    pass
                time.sleep(0.2)
                try:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                except BlockingIOError:
                    pass
            elapsed = time.monotonic() - started
            results[kind] = elapsed
            assert data.startswith(b"HTTP/1.1 408"), (kind, elapsed, data[:200])
            assert b"Connection: close" in data, data
    measured("body timeout %.1f s: a never-ending chunked body answered 408 after "
             "%.2f s, a trickled Content-Length body after %.2f s"
             % (body_timeout, results["chunked"], results["content_length"]))
    for kind, elapsed in results.items():
        assert elapsed < body_timeout + 0.6, (kind, elapsed)
    with gateway.http() as h:
        status, _, text = h.request("GET", "/metrics")
        assert 'hgp_gateway_http_refused_total{reason="body_timeout"} 2' in text, text
        assert h.increment("after_slow_body", "c")[0] == 200


class Slowloris:
    """n connections that each send one header byte a second and never end
    their headers; a connection the server closes is opened again at once,
    as an attacker would (so the lock-out would be renewed for ever)."""

    def __init__(self, port, n):
        self.port = port
        self.n = n
        self.socks = []
        self.reopened = 0
        self.stop = threading.Event()
        for _ in range(n):
            self.socks.append(self._open())
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _open(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(("127.0.0.1", self.port))
        s.setblocking(False)
        s.send(b"G")
        return s

    def _run(self):
        header = b"ET /api/v1/health HTTP/1.1\r\nHost: gw\r\nX-Slow: " + b"a" * 100000
        sent = 0
        while not self.stop.wait(1.0):
            byte = header[sent:sent + 1]
            sent += 1
            for i, s in enumerate(self.socks):
                try:
                    if s.recv(65536) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    pass
                except OSError:
                    s.close()
                    try:
                        self.socks[i] = self._open()
                        self.reopened += 1
                    except OSError:
                        pass
                    continue
                try:
                    s.send(byte)
                except OSError:
                    pass

    def close(self):
        self.stop.set()
        self.thread.join()
        for s in self.socks:
            s.close()


def test_1100_slowloris_connections_do_not_lock_out_a_legitimate_client(
        make_gateway, measured):
    header_timeout = 3.0        # the default gateway/header_timeout
    raise_nofile(4096)
    _, gateway = make_gateway()
    with gateway.http() as h:
        assert h.request("GET", HEALTH)[0] == 200
    attack = Slowloris(gateway.port, 1100)
    try:
        time.sleep(1.0)         # 1100 slow clients now hold a connection each
        started = time.monotonic()
        conn = Http(gateway.port, timeout=4 * header_timeout)
        try:
            status, _, body = conn.increment("legit", "c")
        finally:
            conn.close()
        served = time.monotonic() - started
    finally:
        attack.close()
    measured("1100 slowloris connections, header timeout %.0f s: a legitimate "
             "client was served in %.2f s (%d attacker reconnects meanwhile)"
             % (header_timeout, served, attack.reopened))
    assert status == 200 and body["value"] == 1, body
    assert served < 2 * header_timeout, served
    with gateway.http() as h:
        _, _, text = h.request("GET", "/metrics")
        assert 'hgp_gateway_http_refused_total{reason="header_timeout"}' in text


# ---------------------------------------------------------------------------
# 3. Admission


def hey(port, requests, concurrency, body_file):
    """hey's per-request rows: [(status, seconds)]"""
    out = subprocess.run(
        ["hey", "-n", str(requests), "-c", str(concurrency), "-m", "POST",
         "-T", "application/json", "-D", body_file, "-t", "20", "-o", "csv",
         "http://127.0.0.1:%d%s" % (port, INCREMENT)],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    return [(int(r["status-code"]), float(r["response-time"])) for r in rows]


def test_past_max_in_flight_the_gateway_answers_busy_at_once_and_admitted_keep_latency(
        make_gateway, measured, tmp_path):
    """A gateway admitting 16 bus calls at once (max_in_flight=16, so the
    test needs no thousands of sockets) under a burst of 320 connections,
    20x what it admits. "Fast" is measured by the client, from writing the
    request to the last byte of the answer; a busy answer closes its
    connection, so the client's next try includes a new connect."""
    if not shutil.which("hey"):
        pytest.skip("hey not installed (Debian package hey)")
    clients, max_in_flight = 320, 16
    stack, gateway = make_gateway(env={"HGP_GATEWAY_MAX_IN_FLIGHT": str(max_in_flight)})
    body_file = str(tmp_path / "body.json")
    with open(body_file, "w") as f:
        json.dump({"resource_id": "burst", "counter_type": "c"}, f)
    hey(gateway.port, 200, 4, body_file)                       # warm up
    # the bus at the depth admission allows, without overload: what an
    # admitted request should still see during the burst
    unloaded = hey(gateway.port, 2000, max_in_flight, body_file)
    burst = hey(gateway.port, 20000, clients, body_file)
    assert all(s == 200 for s, _ in unloaded), set(s for s, _ in unloaded)
    ok = [t for s, t in burst if s == 200]
    busy = [t for s, t in burst if s == 503]
    other = [(s, t) for s, t in burst if s not in (200, 503)]
    base_p99 = percentile([t for _, t in unloaded], 99)
    ok_p99 = percentile(ok, 99)
    busy_p50, busy_p99 = percentile(busy, 50), percentile(busy, 99)
    measured("admission max_in_flight=%d: unloaded (c=%d) p99 %.1f ms; "
             "burst c=%d: %d admitted p99 %.1f ms, %d busy p50 %.1f ms p99 %.1f ms, "
             "%d other"
             % (max_in_flight, max_in_flight, base_p99 * 1e3,
                clients, len(ok), ok_p99 * 1e3, len(busy), busy_p50 * 1e3,
                busy_p99 * 1e3, len(other)))
    assert not other, other[:10]
    assert len(busy) > 0.1 * len(burst), "the burst got (almost) no busy answers"
    # Not asserted yet: admitted p99 <= 2x unloaded p99. On this 2-core
    # machine hey itself is the limit during the burst (a whole core, its
    # 320 goroutines waiting for it; the gateway uses a third of the other):
    # its client-side p99 is mostly its own scheduling (see the measured
    # line); the figures are reported, the bound is open work.
    # an answer of busy is definite: exactly the 200s were applied
    applied = len(ok) + len(unloaded) + 200
    assert stack.redis.counter("burst", "c") == applied
    with gateway.http() as h:
        _, _, text = h.request("GET", "/metrics")
        assert 'hgp_gateway_http_refused_total{reason="busy"} %d' % len(busy) in text


def test_past_max_connections_a_new_client_is_busy_at_once_not_queued(
        make_gateway, measured):
    """Finding 5: with civetweb's worker per keep-alive connection, a new
    client waited for a keep-alive to time out (5-7 s) once every worker was
    held, however idle the bus. Now at most max_connections connections are
    open (14 here) and the first request of another is answered 503 busy at
    once, with Retry-After, and closed; the held connections keep being
    served, and once they close, new clients are served again."""
    limit = 14
    stack, gateway = make_gateway(env={"HGP_GATEWAY_MAX_CONNECTIONS": str(limit)})
    held = [Http(gateway.port, timeout=10) for _ in range(limit)]
    try:
        for h in held:
            status, _, _ = h.increment("held", "c")
            assert status == 200
        times = []
        for _ in range(20):
            with Http(gateway.port, timeout=10) as fresh:
                t0 = time.time()
                status, headers, body = fresh.increment("fresh", "c")
                times.append(time.time() - t0)
                assert status == 503 and body["error"]["code"] == "busy", (status, body)
                assert "max_connections" in body["error"]["message"], body
                assert headers.get("retry-after") == "1", headers
                assert headers.get("connection", "").lower() == "close", headers
        #   Any first request counts, not only bus calls: a client cannot
        #   keep a worker by starting with a 404; monitoring is answered,
        #   and closed, so it keeps none either
        with Http(gateway.port, timeout=10) as fresh:
            status, headers, body = fresh.request("GET", "/nope")
            assert status == 503 and body["error"]["code"] == "busy", (status, body)
        with Http(gateway.port, timeout=10) as fresh:
            status, headers, _ = fresh.request("GET", "/metrics")
            assert status == 200, status
            assert headers.get("connection", "").lower() == "close", headers
        for h in held:                      # still served, on the same sockets
            status, _, _ = h.increment("held", "c")
            assert status == 200
    finally:
        for h in held:
            h.close()
    time.sleep(0.5)
    with Http(gateway.port, timeout=10) as fresh:
        status, _, _ = fresh.increment("fresh", "c")
        assert status == 200
    measured("max_connections %d held: 20 new clients answered "
             "busy in p50 %.1f ms, max %.1f ms"
             % (limit, percentile(times, 50) * 1e3, max(times) * 1e3))
    assert max(times) < 1.0, times
    assert stack.redis.counter("held", "c") == 2 * limit
    assert stack.redis.counter("fresh", "c") == 1


# ---------------------------------------------------------------------------
# 4. Memory


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS for %d" % pid)


def test_the_gateway_returns_near_its_idle_memory_after_an_overload(
        stack, logdir, measured, tmp_path):
    """Finding 7: after an HTTP overload the gateway stayed at 130-145 MB
    (57 idle), and at 106 against 63 MiB with civetweb's 1024 threads. The
    release build (RSS under ASan is the sanitizer allocator's), 2000
    keep-alive connections of wrk for 4 s, then a second of quiet."""
    if not shutil.which("wrk"):
        pytest.skip("wrk not installed (Debian package wrk)")
    raise_nofile(8192)
    gw = Gateway(stack, logdir, bin_dir=os.environ.get("HGP_REL_BIN"))
    try:
        pid = gw.proc.p.pid
        with gw.http() as h:
            assert h.increment("mem", "c")[0] == 200
        idle = rss_mib(pid)
        script = tmp_path / "post.lua"
        script.write_text('wrk.method = "POST"\n'
                          'wrk.body = \'{"resource_id":"mem","counter_type":"c"}\'\n'
                          'wrk.headers["Content-Type"] = "application/json"\n')
        load = subprocess.Popen(["wrk", "-t2", "-c2000", "-d4s", "-s", str(script),
                                 "http://127.0.0.1:%d%s" % (gw.port, INCREMENT)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak = idle
        while load.poll() is None:
            peak = max(peak, rss_mib(pid))
            time.sleep(0.2)
        out = load.stdout.read()
        time.sleep(2.0)             # the loop gives memory back after 1 s quiet
        after = rss_mib(pid)
        with gw.http() as h:        # and it still serves
            status, _, body = h.get("mem", "c")
            assert status == 200 and body["value"] > 1, body
        requests = [l for l in out.splitlines() if "requests in" in l]
        measured("gateway RSS (release): idle %.1f MiB, peak %.1f MiB under 2000 "
                 "connections (%s), %.1f MiB a second after"
                 % (idle, peak, requests[0].strip() if requests else "?", after))
        assert after <= idle + 16, (idle, peak, after)
    finally:
        assert gw.stop() == 0, gw.output()
