#!/usr/bin/env bash
# `make test`: the whole suite, in four lanes at once.
#
# Most of the suite waits: for worker processes to start and answer, for brokers killed and restarted,
# for outages of a minute or more. Run one after the other, the tests took 27 minutes here; side by side
# the suite takes about as long as the longest lane. The lanes:
# - integration: the tests against the shared broker (marked `integration`), each starting workers and
#   waiting for their records; about 600 s of 851 alone (2026-12-07), with the load average at 0.7 on two cores;
# - unit: the unit tests, the doctests and the minutes of tests marked `heavy` (in-process evaluations
#   of real captures and of the shipped files, the River equivalence runs, mypy, the checkpoint-trust
#   restores, the demo from an installed wheel): the lane that uses the processor;
# - chaos (marked `slow`, not `outage`): the chaos runs on private brokers, the kill -9 and the
#   graceful-stop restarts;
# - outage (marked `outage`): broker outages on private brokers, mostly waiting them out.
# With the integration and unit tests in one lane, that lane alone took 989-1,141 s, near the 20
# minutes CI is kept under; four lanes take about 800 s in all (one run on 2026-12-07: 740, 797, 821 and
# 720 s, 824 s in all).
# All lanes use the shared local broker, started here first when nothing answers (and stopped again at
# the end only if this script started it), so no lane's session fixture starts or stops it under
# another. The other lanes' output follows the integration lane's at the end.
# Arguments go to every pytest run. Exit status: the first failing lane's (pytest's own codes).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$(bash scripts/bootstrap.sh)" || exit 2
narrowed=0
if [ "$#" -gt 0 ]; then narrowed=1; fi
started=0
if ! scripts/livelearn kafka status >/dev/null 2>&1; then
  if scripts/livelearn kafka up; then
    started=1
  else
    echo "test: could not start the local broker; integration tests will say why" >&2
  fi
fi
pytest=(env PYTHONPATH="$root" "$venv/bin/python" -m pytest -p no:cacheprovider)
# The lanes' marker expressions: together every test, each once. The first runs in the foreground.
names=(integration unit chaos outage)
marks=("integration and not slow and not heavy" "(not slow and not integration) or heavy" "slow and not outage"
       "slow and outage")
logs=()
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  if [ "$started" -eq 1 ]; then scripts/livelearn kafka down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
for i in 1 2 3; do
  logs[$i]="$(mktemp "${TMPDIR:-/tmp}/livelearn-${names[$i]}-lane.XXXXXX")"
  "${pytest[@]}" -m "${marks[$i]}" "$@" >"${logs[$i]}" 2>&1 &
  pids[$i]=$!
done
echo "test: the unit, chaos and outage lanes run beside this one; their logs: ${logs[*]}"
"${pytest[@]}" -m "${marks[0]}" "$@"
codes=($?)
for i in 1 2 3; do
  wait "${pids[$i]}"
  codes[$i]=$?
  echo
  echo "==================== lane: ${names[$i]} ===================="
  cat "${logs[$i]}"
  rm -f "${logs[$i]}"
done
echo "test: lanes finished: integration ${codes[0]}, unit ${codes[1]}, chaos ${codes[2]}, outage ${codes[3]} (pytest exit codes)"
empty=0
for i in 0 1 2 3; do
  if [ "${codes[$i]}" -eq 5 ]; then
    echo "test: no tests were collected in the ${names[$i]} lane" >&2
    empty=$((empty + 1))
  fi
done
# Narrowed by arguments (a -k or a path), a lane may rightly select nothing: that lane passes, unless
# every lane selected nothing. Without arguments an empty lane is a broken marker and fails.
for code in "${codes[@]}"; do
  if [ "$code" -eq 5 ] && [ "$narrowed" -eq 1 ] && [ "$empty" -lt 4 ]; then continue; fi
  if [ "$code" -ne 0 ]; then exit "$code"; fi
done
exit 0
