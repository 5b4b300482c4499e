"""Fixtures: a fresh redis + broker + 2 counter actors per test, torn down even
on failure; each hgp process must exit 0 on SIGTERM (so ASan/UBSan/LSan found
nothing), and the logs of a failed test are printed. Tests that measure
something (failover time, join time) call `measured(...)`; the lines are
printed at the end of the run, where `make test` shows them."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from hgp_harness import Stack  # noqa: E402

MEASUREMENTS = []


@pytest.fixture
def logdir(tmp_path):
    return str(tmp_path)


@pytest.fixture
def make_stack(logdir, request):
    stacks = []

    def factory(**kw):
        s = Stack(logdir, **kw)
        stacks.append(s)
        return s

    yield factory
    for s in stacks:
        codes = s.stop()
        failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else False
        if failed:
            print(s.logs())
        bad = {k: v for k, v in codes.items() if v != 0}
        assert not bad, "processes did not stop cleanly: %r\n%s" % (bad, s.logs())


@pytest.fixture
def stack(make_stack):
    return make_stack()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def measured(request):
    """measured(line): report a number at the end of the run"""
    def report(line):
        print(line)
        MEASUREMENTS.append("%s: %s" % (request.node.name, line))
    return report


def pytest_terminal_summary(terminalreporter):
    if MEASUREMENTS:
        terminalreporter.section("measurements")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)
