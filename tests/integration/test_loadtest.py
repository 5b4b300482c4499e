"""`make loadtest` (scripts/loadtest.sh) writes its report and plot, with an
exact count for every level and system (issue 15). Run here with two small
levels into the test's directory; `make loadtest` runs the seed's five."""
import os
import subprocess

from hgp_harness import ROOT


def test_loadtest_writes_a_report_and_a_plot_with_exact_counts(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HGP_")}
    env.update(LOADTEST_DIR=str(tmp_path), LOADTEST_LEVELS="300:10 600:30")
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "loadtest.sh")],
                         cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = (tmp_path / "report.md").read_text()
    rows = [l.split("|")[1:-1] for l in report.splitlines()
            if l.startswith("| ") and l.split("|")[1].strip().isdigit()]
    assert len(rows) == 2 * 3, report
    assert {r[1].strip() for r in rows} == {"hgp", "hello", "webdis"}
    for r in rows:
        assert r[-1].strip().startswith("ok (") and r[-2].strip() == "0", r
        rate, little, mean = float(r[4]), float(r[9]), float(r[8])
        assert rate > 0 and little > 0 and mean > 0, r
    # The plot's data: per level, rate and p99 of each of the three
    data = [l.split() for l in (tmp_path / "report.dat").read_text().splitlines()]
    assert len(data) == 2 and all(len(d) == 3 + 2 * 3 for d in data), data
    png = (tmp_path / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000
