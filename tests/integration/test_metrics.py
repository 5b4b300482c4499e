"""Every process serves Prometheus metrics, `hgp targets` finds them all
through the broker, and the shipped alert rules and dashboard queries work
against a real Prometheus scraping a real `make run` stack (issue 15).

The stack is scripts/run.sh with the release binaries, on free ports; the
Prometheus is Debian's, on a free loopback port, with configs/prometheus.yml
and configs/alerts.yml as shipped (only the scrape interval shortened)."""
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from hgp_harness import ROOT, free_port


def shipped_alerts():
    """How many alert rules configs/alerts.yml ships"""
    with open(os.path.join(ROOT, "configs", "alerts.yml")) as f:
        return sum(1 for line in f if line.strip().startswith("- alert:"))
from test_run import Run, stack_env

HGP = os.path.join(ROOT, "bin", "hgp")
ROLES = {"broker": 1, "counter": 2, "analytics": 1, "gateway": 1, "kafka": 1}


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def targets(env):
    out = subprocess.run([HGP, "targets"], env=dict(os.environ, **env),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def by_role(groups):
    roles = {}
    for g in groups:
        assert g["labels"]["job"] == "hgp"
        roles.setdefault(g["labels"]["role"], []).extend(g["targets"])
    return roles


def wait_targets(env, timeout=20):
    """The targets once every process announced itself (the gateway and
    the mock do it every 2 s, actors in READY)"""
    deadline = time.time() + timeout
    while True:
        roles = by_role(targets(env))
        if {r: len(t) for r, t in roles.items()} == ROLES or time.time() > deadline:
            return roles
        time.sleep(0.5)


@pytest.fixture
def stack(logdir):
    env = stack_env(logdir, "metrics")
    run = Run(logdir, "metrics-run", env)
    try:
        run.wait_for("run: healthy", timeout=90)
        yield env
    finally:
        assert run.stop() == 0, run.output()[-3000:]


def load(env, n=200):
    """Some of everything: HTTP increments (and a bad one), reads, a
    ranking, and increments on the bus"""
    base = "http://127.0.0.1:%s" % env["HGP_GATEWAY_PORT"]
    for i in range(n):
        body = json.dumps({"resource_id": "m%d" % (i % 10),
                           "counter_type": "view"}).encode()
        req = urllib.request.Request(base + "/api/v1/counter/increment", body,
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200
    try:
        urllib.request.urlopen(urllib.request.Request(
            base + "/api/v1/counter/increment", b"{", {}), timeout=5)
    except urllib.error.HTTPError as e:
        assert e.code == 400
    assert http_get(base + "/api/v1/counter/m1/view")[0] == 200
    assert http_get(base + "/api/v1/rank/view")[0] == 200
    out = subprocess.run([HGP, "bench", "-n", "2000", "-w", "16"],
                         env=dict(os.environ, **env), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def value(text, name):
    """The value of the one series called name (no labels) in text"""
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    assert m, "no %s in\n%s" % (name, text)
    return float(m.group(1))


def test_every_process_serves_metrics_that_promtool_accepts(stack):
    env = stack
    load(env)
    roles = wait_targets(env)
    assert {r: len(t) for r, t in roles.items()} == ROLES, roles
    time.sleep(1.2)         # the broker and analytics publish every 0.5-1 s
    texts = {}
    for role, hostports in roles.items():
        for hp in hostports:
            status, text = http_get("http://%s/metrics" % hp)
            assert status == 200
            check = subprocess.run(["promtool", "check", "metrics"],
                                   input=text, capture_output=True, text=True)
            assert check.returncode == 0, (role, check.stdout, check.stderr)
            assert check.stdout.strip() == "" and check.stderr.strip() == "", \
                (role, check.stdout, check.stderr)
            assert 'hgp_build_info{process="' in text
            assert value(text, "process_cpu_seconds_total") > 0
            assert value(text, "process_resident_memory_bytes") > 1e6
            texts.setdefault(role, []).append(text)
    # What they count is what happened: 200 HTTP + 2000 bus increments
    # (and the gateway's own call statistics), all of them through the
    # broker and the two counters
    broker = texts["broker"][0]
    assert value(broker, "hgp_broker_requests_total") >= 2200
    assert 'hgp_broker_actors{service="counter"} 2' in broker
    served = sum(value(t, 'hgp_counters_batch_requests_total')
                 for t in texts["counter"])
    assert served >= 2200
    ok = sum(float(re.search(r'^hgp_counters_replies_total\{status="200"\} (\S+)$',
                             t, re.M).group(1)) for t in texts["counter"])
    assert ok >= 2200
    # Analytics folds them in once it has joined its group (seconds)
    analytics_url = "http://%s/metrics" % roles["analytics"][0]
    # (hgp bench's 2000 are of type "bench", which analytics/skip leaves
    # out of the rankings: counted as unranked)
    def read_all():
        text = http_get(analytics_url)[1]
        return (value(text, "hgp_analytics_events_total"),
                value(text, "hgp_analytics_unranked_total"), text)
    deadline = time.time() + 30
    while read_all()[0] < 200 or read_all()[1] < 2000:
        assert time.time() < deadline, read_all()[2]
        time.sleep(0.5)
    events, unranked, analytics = read_all()
    assert events >= 200 and unranked == 2000, (events, unranked)
    assert value(analytics, "hgp_analytics_lag_events") < 2200
    gateway = texts["gateway"][0]
    assert re.search(r'^hgp_gateway_http_requests_total\{route="increment",'
                     r'status="200"\} 200$', gateway, re.M), gateway
    assert re.search(r'^hgp_gateway_http_requests_total\{route="increment",'
                     r'status="400"\} 1$', gateway, re.M)
    # hgp --json actors names every actor's URL and the broker's own
    out = subprocess.run([HGP, "--json", "actors"], env=dict(os.environ, **env),
                         capture_output=True, text=True, timeout=30)
    listing = json.loads(out.stdout)
    assert all(a["metrics"].startswith("http://127.0.0.1:")
               for a in listing["actors"])
    assert listing["brokers"][0]["metrics"].startswith("http://127.0.0.1:")
    assert {p["role"] for p in listing["brokers"][0]["processes"]} == \
        {"gateway", "kafka"}


def test_the_exporter_refuses_what_is_not_a_scrape(stack):
    env = stack
    roles = wait_targets(env)
    hp = roles["counter"][0]
    host, port = hp.split(":")
    import socket
    # Another path, another method, an oversize head: an answer each
    for request, status in ((b"GET /x HTTP/1.1\r\n\r\n", b" 404 "),
                            (b"POST /metrics HTTP/1.1\r\n\r\n", b" 405 "),
                            (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000
                             + b"\r\n\r\n", b" 431 ")):
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(request)
        reply = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
        s.close()
        assert status in reply.split(b"\r\n")[0], reply[:200]
    # 100 idle connections: at most 64 are kept, the oldest closed for a
    # new one, the rest within seconds; a scrape still answers
    idle = [socket.create_connection((host, int(port)), timeout=10)
            for _ in range(100)]
    assert http_get("http://%s/metrics" % hp)[0] == 200
    start = time.time()
    for s in idle:
        s.settimeout(10)
        assert s.recv(1) == b""         # closed by the exporter
        s.close()
    assert time.time() - start < 8


@pytest.fixture
def prometheus(stack, tmp_path):
    """A real Prometheus with the shipped config and rules, scraping the
    stack through `hgp targets`"""
    env = stack
    conf = tmp_path / "configs"
    conf.mkdir()
    (tmp_path / "var").mkdir()
    text = open(os.path.join(ROOT, "configs", "prometheus.yml")).read()
    assert "'../var/targets.json'" in text
    text = text.replace("scrape_interval: 5s", "scrape_interval: 1s")
    text = text.replace("evaluation_interval: 5s", "evaluation_interval: 1s")
    text = text.replace("refresh_interval: 10s", "refresh_interval: 1s")
    (conf / "prometheus.yml").write_text(text)
    shutil.copy(os.path.join(ROOT, "configs", "alerts.yml"), conf / "alerts.yml")
    wait_targets(env)
    (tmp_path / "var" / "targets.json").write_text(json.dumps(targets(env)))
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")
    p = subprocess.Popen(["prometheus", "--config.file=%s" % (conf / "prometheus.yml"),
                          "--storage.tsdb.path=%s" % (tmp_path / "data"),
                          "--web.listen-address=127.0.0.1:%d" % port],
                         stdout=log, stderr=subprocess.STDOUT)
    base = "http://127.0.0.1:%d" % port
    try:
        deadline = time.time() + 30
        while True:
            try:
                if http_get(base + "/-/ready", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline and p.poll() is None, \
                open(tmp_path / "prometheus.log").read()[-2000:]
            time.sleep(0.2)
        yield base
    finally:
        p.terminate()
        p.wait(20)
        log.close()


def query(base, expr):
    status, body = http_get(base + "/api/v1/query?" +
                            urllib.parse.urlencode({"query": expr}))
    reply = json.loads(body)
    assert reply["status"] == "success", (expr, reply)
    return reply["data"]["result"]


def test_alerts_and_dashboard_queries_return_series_from_a_real_prometheus(
        stack, prometheus):
    env, base = stack, prometheus
    for f in ("prometheus.yml", "alerts.yml"):
        path = os.path.join(ROOT, "configs", f)
        what = "config" if f == "prometheus.yml" else "rules"
        check = subprocess.run(["promtool", "check", what, path],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    # Every process up, scraped through the targets file
    deadline = time.time() + 30
    while True:
        up = query(base, 'up{job="hgp"}')
        roles = {}
        for s in up:
            if s["value"][1] == "1":
                roles[s["metric"]["role"]] = roles.get(s["metric"]["role"], 0) + 1
        if roles == ROLES or time.time() > deadline:
            break
        time.sleep(0.5)
    assert roles == ROLES, up
    load(env, n=100)
    time.sleep(4)           # rate() over [1m] wants two scrapes of each
    # Every rule evaluated, healthy; its query (the expression less its
    # bound) returns series; none fires on a healthy stack
    _, body = http_get(base + "/api/v1/rules")
    rules = [r for g in json.loads(body)["data"]["groups"] for r in g["rules"]]
    assert len(rules) == shipped_alerts() > 0
    deadline = time.time() + 15
    while any(r.get("health") != "ok" for r in rules) and time.time() < deadline:
        time.sleep(1)
        _, body = http_get(base + "/api/v1/rules")
        rules = [r for g in json.loads(body)["data"]["groups"] for r in g["rules"]]
    for r in rules:
        assert r["health"] == "ok", r
        assert r["state"] == "inactive", r
        m = re.match(r"^(.*\S)\s*(<|>|==|!=|<=|>=)\s*[0-9.e+-]+$", r["query"])
        assert m, r["query"]
        assert query(base, m.group(1)), "no series: %s" % m.group(1)
    # Every dashboard query returns series
    dash = json.load(open(os.path.join(ROOT, "configs", "grafana", "hgp.json")))
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    for e in exprs:
        assert query(base, e), "no series: %s" % e
    # The counters' request count, as Prometheus sees it, is what was sent
    sent = float(query(base, "sum(hgp_counters_batch_requests_total)")[0]["value"][1])
    assert sent >= 2100
