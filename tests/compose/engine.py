"""The Docker engine and the base image for the compose tests.

Debian's docker.io and docker-compose (make deps does not install them; the
compose tests do, see scripts/deps.sh --compose). When no engine answers,
start dockerd here and stop it at the end (only what we started). Docker Hub
cannot be reached from our machines, so debian:bookworm-slim is made locally
when it is missing: debootstrap --variant=minbase from the Debian mirror apt
already uses (read from apt's sources), imported as that tag.

Usable as a script too: `engine.py up` (start dockerd if needed, make the
base image; prints the pid of a dockerd it started, else nothing) and
`engine.py down PID`."""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"
BASE = "debian:bookworm-slim"


def docker(*args, check=True, timeout=600, **kw):
    r = subprocess.run([DOCKER] + list(args), capture_output=True, text=True,
                       timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("docker %s: %s%s" % (" ".join(args), r.stdout, r.stderr))
    return r


def engine_up(logdir):
    """Start dockerd unless one answers; returns the Popen we started, or None"""
    if docker("info", check=False, timeout=30).returncode == 0:
        return None
    log = open(os.path.join(logdir, "dockerd.log"), "wb")
    p = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True)
    deadline = time.time() + 60
    while docker("info", check=False, timeout=30).returncode != 0:
        if p.poll() is not None or time.time() > deadline:
            raise RuntimeError("dockerd did not start; see %s" % log.name)
        time.sleep(0.5)
    return p


def engine_down(p):
    if p is None:
        return
    p.terminate()
    try:
        p.wait(60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def apt_mirror():
    """The Debian mirror apt is configured with (deb822 or one-line sources)"""
    files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*"))
    for path in files:
        try:
            text = open(path).read()
        except OSError:
            continue
        for m in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, re.M):
            uri = m.group(1).rstrip("/")
            if "security" not in uri and re.search(r"/debian$", uri):
                return uri
    return "http://deb.debian.org/debian"


def base_image(logdir):
    """debian:bookworm-slim, made with debootstrap when the engine lacks it"""
    if docker("image", "inspect", BASE, check=False).returncode == 0:
        return "present"
    root = tempfile.mkdtemp(prefix="bookworm-", dir="/var/tmp")
    try:
        with open(os.path.join(logdir, "debootstrap.log"), "wb") as log:
            subprocess.run(["debootstrap", "--variant=minbase", "bookworm", root,
                            apt_mirror()], stdout=log, stderr=subprocess.STDOUT,
                           check=True, timeout=1200)
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run([DOCKER, "import", "-", BASE], stdin=tar.stdout, check=True,
                       capture_output=True, timeout=600)
        tar.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return "made with debootstrap"


if __name__ == "__main__":
    if sys.argv[1:2] == ["up"]:
        d = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp()
        p = engine_up(d)
        how = base_image(d)
        print(p.pid if p else "", how)
    elif sys.argv[1:2] == ["down"]:
        os.kill(int(sys.argv[2]), 15)
