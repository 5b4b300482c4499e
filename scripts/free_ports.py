#!/usr/bin/env python3
"""Print N distinct free TCP ports on 127.0.0.1, one per line.

Used by the test harness and the bench scripts. Ports are picked at random
below the kernel's ephemeral range, so a client socket's automatic local
port can never take one between the check and the server's bind, and the
N ports are distinct (asking the kernel for port 0 N times may repeat)."""
import random
import socket
import sys

_handed_out = set()


def _range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    if low > 12000:
        return 10000, low
    return 61000, 65000


def free_port():
    lo, hi = _range()
    rng = random.SystemRandom()
    for _ in range(10000):
        port = rng.randrange(lo, hi)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port found")


if __name__ == "__main__":
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
        print(free_port())
