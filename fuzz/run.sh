#!/bin/sh
# Run the atheris fuzz targets of glexec-py (see fuzz/README.md).
#   fuzz/run.sh [SECONDS] [TARGET...]     default: 60 s each, all targets, one after another
#   fuzz/run.sh long [TARGET...]          the nightly run: GLEXEC_FUZZ_LONG_SECS (default 3600)
#                                         each, GLEXEC_FUZZ_JOBS (default: CPUs - 1) at a time
# Env: GLEXEC_FUZZ_VENV (default /var/lib/glexec-py-tests/fuzzenv), GLEXEC_FUZZ_BASE
#      (default /var/lib/glexec-py-tests), GLEXEC_FUZZ_JOBS=N to run N targets at a time,
#      FUZZ_ARGS extra libFuzzer flags.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
BASE=${GLEXEC_FUZZ_BASE:-/var/lib/glexec-py-tests}
VENV=${GLEXEC_FUZZ_VENV:-$BASE/fuzzenv}
SECS=${1:-60}
[ $# -gt 0 ] && shift
TARGETS=${*:-"dn chain voms vomscheck jwt handoff config gridmap audit bans leases envplan backmap namespaces uidmap shimblob importer job_unpack plan"}
JOBS=${GLEXEC_FUZZ_JOBS:-1}
if [ "$SECS" = long ]; then
    SECS=${GLEXEC_FUZZ_LONG_SECS:-3600}
    n=$(nproc 2>/dev/null || echo 2)
    JOBS=${GLEXEC_FUZZ_JOBS:-$(( n > 1 ? n - 1 : 1 ))}
fi

if ! "$VENV/bin/python" -c 'import atheris' 2>/dev/null; then
    /usr/bin/python3.11 -m venv --system-site-packages "$VENV" || {
        apt-get install -y python3.11-venv && /usr/bin/python3.11 -m venv --system-site-packages "$VENV"; }
    "$VENV/bin/pip" install -q atheris
fi

CORPUS=$BASE/fuzz-corpus
FINDINGS=$BASE/fuzz-findings
LOGS=$BASE/fuzz-logs
mkdir -p "$CORPUS" "$FINDINGS" "$LOGS"

run_one() {
    t=$1
    mkdir -p "$CORPUS/$t" "$FINDINGS/$t"
    echo "== fuzz_$t: ${SECS}s, corpus $CORPUS/$t, log $LOGS/$t.log"
    rc=0
    (cd "$HERE" && "$VENV/bin/python" "fuzz_$t.py" -max_total_time="$SECS" -max_len=16384 \
        -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$FINDINGS/$t/" ${FUZZ_ARGS:-} "$CORPUS/$t") >"$LOGS/$t.log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOGS/$t.log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$LOGS/$t.log")
    if [ "$rc" -ne 0 ]; then
        echo "!! fuzz_$t: FINDING (exit $rc), reproducer in $FINDINGS/$t/:"
        grep -E 'OracleViolation|Uncaught Python exception|deadly signal|Test unit written' "$LOGS/$t.log" | head -5
    else
        echo "   fuzz_$t: ok, $execs executions, $rate exec/s"
    fi
    return "$rc"
}

status=0
if [ "$JOBS" -le 1 ]; then
    for t in $TARGETS; do run_one "$t" || status=1; done
else
    # JOBS lanes, each running its share of the targets one after another
    pids="" lane=0
    while [ "$lane" -lt "$JOBS" ]; do
        mine="" i=0
        for t in $TARGETS; do
            [ $((i % JOBS)) -eq "$lane" ] && mine="$mine $t"
            i=$((i + 1))
        done
        (s=0; for t in $mine; do run_one "$t" || s=1; done; exit $s) & pids="$pids $!"
        lane=$((lane + 1))
    done
    for p in $pids; do wait "$p" || status=1; done
fi
exit $status
