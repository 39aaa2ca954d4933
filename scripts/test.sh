#!/usr/bin/env bash
# `make test`: the whole suite, in two lanes at once.
#
# The slow lane (tests marked `slow`: chaos and broker outages, each on a private broker of its own) is
# mostly waiting: for brokers killed and restarted, for worker processes starting, for a 60 s outage.
# Run one after the other, the two lanes took 27 minutes here; side by side the suite takes about as
# long as the longer lane. Both lanes use the shared local broker, started here first when nothing
# answers (and stopped again at the end only if this script started it), so neither lane's session
# fixture starts or stops it under the other. The slow lane's output follows the other's at the end.
# Arguments go to both pytest runs. Exit status: the first failing lane's (pytest's own codes).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$(bash scripts/bootstrap.sh)" || exit 2
started=0
if ! scripts/livelearn kafka status >/dev/null 2>&1; then
  if scripts/livelearn kafka up; then
    started=1
  else
    echo "test: could not start the local broker; integration tests will say why" >&2
  fi
fi
slow_log="$(mktemp "${TMPDIR:-/tmp}/livelearn-slow-lane.XXXXXX")"
pytest=(env PYTHONPATH="$root" "$venv/bin/python" -m pytest -p no:cacheprovider)
"${pytest[@]}" -m slow "$@" >"$slow_log" 2>&1 &
slow_pid=$!
cleanup() {
  kill "$slow_pid" 2>/dev/null || true
  if [ "$started" -eq 1 ]; then scripts/livelearn kafka down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
echo "test: slow lane (chaos, broker outages) running beside this one; its log: $slow_log"
"${pytest[@]}" -m "not slow" "$@"
fast=$?
wait "$slow_pid"
slow=$?
echo
echo "==================== slow lane (chaos, broker outages) ===================="
cat "$slow_log"
rm -f "$slow_log"
echo "test: lanes finished: main $fast, slow $slow (pytest exit codes)"
for lane in "main $fast" "slow $slow"; do
  set -- $lane
  if [ "$2" -eq 5 ]; then echo "test: no tests were collected in the $1 lane" >&2; fi
done
if [ "$fast" -ne 0 ]; then exit "$fast"; fi
exit "$slow"
