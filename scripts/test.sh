#!/usr/bin/env bash
#   Run every test against the binaries in $1 (the sanitized build):
#   cmocka unit tests, the fuzz smoke run, then the integration tests,
#   which start real redis-server, broker and actor processes.
set -uo pipefail
BIN=${1:-build/san/bin}
export HGP_BIN=$(cd "$BIN" && pwd)
#   Release binaries, for the tests that measure memory (RSS under ASan is
#   the sanitizer allocator's, not ours)
export HGP_REL_BIN=${HGP_REL_BIN:-$PWD/bin}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=66}
#   glibc's dlerror() keeps a per-thread buffer that LeakSanitizer reports
#   when a thread that called it exits (librdkafka probes plugins with dlopen)
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1:exitcode=67}
failed=0
for t in "$BIN"/tests/test_*; do
    echo "== $t"
    "$t" || failed=1
done
echo "== fuzz smoke"
"$BIN/tests/fuzz_smoke" 300000 || failed=1
echo "== integration (pytest)"
#   Debian's python3 has python3-zmq/msgpack/pytest; a pyenv python may not
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
"$PY" -m pytest -v -p no:cacheprovider tests/integration ${PYTEST_ARGS:-} || failed=1
if [ $failed -ne 0 ]; then
    echo "make test: FAILED"
    exit 1
fi
echo "make test: all passed"
