#!/usr/bin/env python3
"""cpu_run.py OUT CMD [ARGS...]: run CMD (its output untouched), then write
the CPU seconds (user + system) it and its children used to OUT. The bench
scripts use it for the load generator's share of the cost table; the other
processes are read from /proc/PID/stat while they run."""
import resource
import subprocess
import sys

out, cmd = sys.argv[1], sys.argv[2:]
rc = subprocess.call(cmd)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(out, "w") as f:
    f.write("%.6f\n" % (usage.ru_utime + usage.ru_stime))
sys.exit(rc)
