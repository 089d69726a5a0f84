#!/usr/bin/env bash
# Where each step of a lane worktree stands: done, failed, running (its last progress line) or stopped.
#
#   benchmarks/lanes_status.sh [WORKDIR...]     # default: every ../jobs-* worktree beside this checkout
#
# Reads WORKDIR/logs/<step>.log as run_step.sh writes them (lanes_common.sh): the last STEP line says done or
# failed; a step whose lock is held is running; the rest have started before and wait to be run again. Reads
# logs only: safe beside running lanes.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
source "$repo/benchmarks/lanes_common.sh"  # step_state
if [ $# -eq 0 ]; then set -- "$repo"/../jobs-*; fi
for work in "$@"; do
  [ -d "$work/logs" ] || continue
  echo "== $(cd "$work" && pwd) (commit $(git -C "$work" rev-parse --short HEAD 2>/dev/null || echo '?'))"
  for log in "$work"/logs/*.log; do
    name="$(basename "$log" .log)"
    [ -e "$work/logs/$name.lock" ] || continue  # lane logs (laneA.log, ...) have no lock: not a step
    last="$(step_state "$log")"
    if [[ "$last" == "STEP DONE"* ]]; then state="done ${last#STEP DONE }"
    elif ! flock -n "$work/logs/$name.lock" true 2>/dev/null; then
      # the last progress bar (tqdm redraws with \r) or line of the step's log
      state="running: $(tail -c 400 "$log" | tr '\r' '\n' | grep -av '^\s*$' | tail -n 1 | cut -c1-150)"
    elif [[ "$last" == "STEP FAILED"* ]]; then state="failed (${last#STEP FAILED }): see $log"
    else state="stopped (run its lane script again to resume)"
    fi
    printf '  %-24s %s\n' "$name" "$state"
  done
done
