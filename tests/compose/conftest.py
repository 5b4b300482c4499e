"""Fixtures of the compose tests (make test-compose): the Docker engine, the
image, and one compose project per test module.

Everything goes through Debian's docker-compose (1.29) with
docker-compose.yml plus docker-compose.test.yml (images built here only).
The project name is unique per run, the gateway is published on a free
127.0.0.1 port, and every project is taken down with `down -v` even when
a test fails. The image is built once per session (docker's layer cache
keeps later builds cheap)."""
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import engine  # noqa: E402
from free_ports import free_port  # noqa: E402

FILES = ["-f", os.path.join(ROOT, "docker-compose.yml"),
         "-f", os.path.join(ROOT, "docker-compose.test.yml")]
MEASUREMENTS = []


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("engine"))
    started = engine.engine_up(logdir)
    t0 = time.time()
    how = engine.base_image(logdir)
    MEASUREMENTS.append("base image %s: %s (%.0f s)" % (engine.BASE, how, time.time() - t0))
    yield logdir
    engine.engine_down(started)


@pytest.fixture(scope="session")
def image(docker_engine):
    t0 = time.time()
    r = subprocess.run(["docker-compose"] + FILES + ["-p", "hgpbuild", "build", "keys"],
                       cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-5000:]
    MEASUREMENTS.append("image hgp:local built in %.0f s" % (time.time() - t0))
    return "hgp:local"


class Project:
    """One compose project: up, scale, kill, logs, exec, down -v"""

    def __init__(self, name):
        self.name = name
        self.port = free_port()
        self.env = dict(os.environ, HGP_GATEWAY_PUBLISH=str(self.port),
                        HGP_PROMETHEUS_PUBLISH=str(free_port()),
                        HGP_GRAFANA_PUBLISH=str(free_port()))

    def compose(self, *args, timeout=600, check=True):
        r = subprocess.run(["docker-compose"] + FILES + ["-p", self.name] + list(args),
                           cwd=ROOT, env=self.env, capture_output=True, text=True,
                           timeout=timeout)
        if check:
            assert r.returncode == 0, "docker-compose %s:\n%s%s" % (
                " ".join(args), r.stdout[-4000:], r.stderr[-4000:])
        return r

    def up(self, **scale):
        args = ["up", "-d", "--no-build"]
        for service, n in scale.items():
            args += ["--scale", "%s=%d" % (service, n)]
        return self.compose(*args)

    def containers(self, service):
        """ids of the running containers of service, oldest first"""
        out = engine.docker("ps", "-q", "--filter", "label=com.docker.compose.project=%s"
                            % self.name, "--filter", "label=com.docker.compose.service=%s"
                            % service).stdout.split()
        return list(reversed(out))

    def logs(self, service=None, tail=None):
        args = ["logs", "--no-color"]
        if tail:
            args += ["--tail", str(tail)]
        if service:
            args.append(service)
        return self.compose(*args, check=False).stdout

    def container_log(self, cid):
        r = engine.docker("logs", cid, check=False)
        return r.stdout + r.stderr

    def redis(self, *args):
        r = self.compose("exec", "-T", "redis", "redis-cli", "--raw", *args)
        return r.stdout

    def http(self, method, path, body=None, headers=None, timeout=10):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path),
                                     method=method, data=body, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def wait_ready(self, timeout=180):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                status, body = self.http("GET", "/readyz", timeout=5)
                last = (status, body)
                if status == 200:
                    return time.time()
            except OSError as e:
                last = repr(e)
            time.sleep(0.2)
        raise AssertionError("never ready: %r\n%s" % (last, self.logs(tail=80)))

    def leftovers(self):
        label = "label=com.docker.compose.project=%s" % self.name
        return {
            "containers": engine.docker("ps", "-aq", "--filter", label).stdout.split(),
            "networks": engine.docker("network", "ls", "-q", "--filter", label).stdout.split(),
            "volumes": engine.docker("volume", "ls", "-q", "--filter", label).stdout.split(),
        }

    def down(self):
        return self.compose("--profile", "monitoring", "down", "-v",
                            "--remove-orphans", "-t", "20", check=False)


@pytest.fixture(scope="module")
def project(image, request):
    name = "hgpt%d%s" % (os.getpid() % 100000, request.module.__name__[-6:].lower())
    p = Project("".join(c for c in name if c.isalnum()))
    yield p
    p.down()


@pytest.fixture
def measured(request):
    def report(line):
        print(line)
        MEASUREMENTS.append("%s: %s" % (request.node.name, line))
    return report


def pytest_terminal_summary(terminalreporter):
    if MEASUREMENTS:
        terminalreporter.section("measurements")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)
