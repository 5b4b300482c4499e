"""Start bin/hgp-gateway against a hgp_harness.Stack and talk HTTP to it.

The Stack (redis + broker + counters) comes from hgp_harness, unchanged; this
adds one more real process, the gateway, on a free port, configured the way an
operator would: configs/hgp.cfg plus HGP_GATEWAY_* environment overrides. HTTP
is spoken with the standard library's http.client (keep-alive connections),
so the tests depend on nothing beyond Debian's python3.
"""
import http.client
import json
import os
import socket
import time

from hgp_harness import BIN, Proc, free_port


class Http:
    """One keep-alive HTTP/1.1 connection to the gateway."""

    def __init__(self, port, timeout=30.0):
        self.port = port
        self.timeout = timeout
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.conn.close()

    def request(self, method, path, body=None, headers=None, raw=False):
        """Returns (status, headers dict with lower-case names, body): the
        body parsed as JSON when the response says so, else text."""
        hdrs = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        self.conn.request(method, path, body=body, headers=hdrs)
        resp = self.conn.getresponse()
        data = resp.read()
        rhdrs = {k.lower(): v for k, v in resp.getheaders()}
        if resp.getheader("Connection", "").lower() == "close":
            self.conn.close()       # http.client reconnects on the next request
        if not raw and rhdrs.get("content-type", "").startswith("application/json"):
            data = json.loads(data)
        elif not raw:
            data = data.decode()
        return resp.status, rhdrs, data

    def increment(self, resource_id, counter_type, delta=None, request_id=None,
                  headers=None, **extra):
        body = {"resource_id": resource_id, "counter_type": counter_type}
        if delta is not None:
            body["delta"] = delta
        if request_id is not None:
            body["request_id"] = request_id
        body.update(extra)
        return self.request("POST", "/api/v1/counter/increment", body, headers)

    def get(self, resource_id, counter_type):
        return self.request("GET", "/api/v1/counter/%s/%s" % (resource_id, counter_type))

    def value(self, resource_id, counter_type):
        status, _, body = self.get(resource_id, counter_type)
        assert status == 200, (status, body)
        return body["value"]


class Gateway:
    """bin/hgp-gateway on a free port, connected to stack's broker."""

    def __init__(self, stack, logdir, env=None, name="gateway", wait=True,
                 bin_dir=None):
        self.port = free_port()
        self.env = dict(stack.env)
        self.env["HGP_GATEWAY_PORT"] = str(self.port)
        # The gateway's own call counters add increments and events of
        # their own; tests that count every increment turn them on only
        # when they check them (test_governance)
        self.env["HGP_GATEWAY_CALL_STATS"] = "0"
        self.env.update(env or {})
        self.proc = Proc(name, [os.path.join(bin_dir or BIN, "hgp-gateway"), "-c",
                                self.env["HGP_CONFIG"]],
                         env=self.env, logdir=logdir)
        if wait:
            self.wait_listening()
            self.wait_bus()

    def wait_listening(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.proc.alive():
                raise RuntimeError("hgp-gateway exited with %s:\n%s"
                                   % (self.proc.p.returncode, self.proc.output()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("hgp-gateway did not listen on %d:\n%s"
                           % (self.port, self.proc.output()))

    def wait_bus(self, timeout=20):
        """Until GET /api/v1/health says the bus answers. Each of the 1024
        worker threads connects its own DEALER when the gateway starts; under
        the sanitizers that takes a moment, and a request meanwhile is a 504
        (not sent: broker not reachable yet)."""
        deadline = time.time() + timeout
        body = None
        with self.http(timeout=10) as h:
            while time.time() < deadline:
                _, _, body = h.request("GET", "/api/v1/health")
                if body.get("checks", {}).get("bus") == "ok":
                    return
                time.sleep(0.1)
        raise RuntimeError("gateway never reached the bus: %r\n%s" % (body, self.output()))

    def http(self, timeout=30.0):
        return Http(self.port, timeout)

    def stop(self):
        return self.proc.stop()

    def output(self):
        return self.proc.output()
