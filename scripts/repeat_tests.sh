#!/usr/bin/env bash
# Run the tests of a marker expression N times in a row and count the runs that failed: the
# check that the multi-process and Ray tests do not flake (README, Development).
#   scripts/repeat_tests.sh 20 "multiprocess"
#   scripts/repeat_tests.sh 20 "ray and not slow"
# Each run's pytest output is kept as repeat-<i>.log in $LOGS (default: a new temp folder); the
# last line says how many of the N runs failed. Exit status: 0 only if none failed.
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:?usage: scripts/repeat_tests.sh N MARKER_EXPRESSION}
marker=${2:?usage: scripts/repeat_tests.sh N MARKER_EXPRESSION}
logs=${LOGS:-$(mktemp -d -t repeat-tests-XXXX)}
python=${PYTHON:-.venv/bin/python}
failed=0
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  if "$python" -m pytest -q -p no:cacheprovider -m "$marker" > "$logs/repeat-$i.log" 2>&1; then
    status=passed
  else
    status=FAILED
    failed=$((failed + 1))
  fi
  summary=$(tail -n 1 "$logs/repeat-$i.log")
  echo "run $i/$runs: $status in $(( $(date +%s) - start )) s ($summary)"
done
echo "$failed of $runs runs failed (-m \"$marker\"; logs in $logs)"
[ "$failed" -eq 0 ]
