# Sourced by benchmarks/*_lanes.sh: what every lane script does before it lists its steps.
#
#   source "$(dirname "$0")/lanes_common.sh"
#   lanes_setup DATASET WHAT [COMMIT] [WORKDIR]
#
# Makes (or reuses) a git worktree of COMMIT (default: HEAD) at WORKDIR (default: ../jobs-<short commit>) so that
# work on this checkout does not change a running job's code, links this checkout's .venv into it, checks that
# ../shared/data/DATASET (WHAT, for the error) is seen from both, and writes WORKDIR/logs/run_step.sh. Sets
# `repo`, `commit`, `work` and `step` (the path of run_step.sh) for the lane script.
#
# run_step.sh NAME ARGS... runs `hyperadapt ARGS` in the worktree with its own code, at nice 19 and THREADS
# (default 1) torch threads, appending to logs/NAME.log; a step whose log has a line starting STEP DONE is
# skipped, so running a lane script again resumes where it stopped (the commands themselves also resume). A step
# that fails appends STEP FAILED to its log (and its lane stops there: the scripts run under set -e).

lanes_setup() {
  local dataset="$1" what="$2" data
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  commit="$(git -C "$repo" rev-parse --short "${3:-HEAD}")"
  work="${4:-$repo/../jobs-$commit}"
  data="$repo/../shared/data"
  [ -d "$data/$dataset" ] || { echo "error: no $what at $data/$dataset (see ../shared/data/README.md)" >&2; exit 2; }
  [ -x "$repo/.venv/bin/python" ] || { echo "error: no .venv in $repo: run 'make install' first" >&2; exit 2; }
  if [ ! -d "$work" ]; then
    git -C "$repo" worktree add --detach "$work" "$commit" >/dev/null
  fi
  work="$(cd "$work" && pwd)"
  [ "$(git -C "$work" rev-parse --short HEAD)" = "$commit" ] || { echo "error: $work is not at $commit" >&2; exit 2; }
  ln -sfn "$repo/.venv" "$work/.venv"
  [ -d "$work/../shared/data/$dataset" ] || { echo "error: the configs read ../shared/data from the worktree: put WORKDIR beside $repo" >&2; exit 2; }
  mkdir -p "$work/logs"
  step="$work/logs/run_step.sh"
  # written beside and moved into place: a run_step.sh that is running keeps reading its own copy
  cat > "$step.new" <<'EOF'
#!/usr/bin/env bash
# run_step.sh NAME ARGS...: one `hyperadapt ARGS` step with the worktree's own code, THREADS (default 1) torch
# threads; skips a step whose log says it finished (the command itself also resumes).
set -uo pipefail
cd "$(dirname "$0")/.."
name="$1"; shift
exec 9>"logs/$name.lock"; flock 9  # the same step started twice (the script run again) waits for the first
if grep -q '^STEP DONE' "logs/$name.log" 2>/dev/null; then echo "$(date -u +%FT%TZ) $name: done before"; exit 0; fi
echo "$(date -u +%FT%TZ) $name: start"
t="${THREADS:-1}"
OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t PYTHONPATH="$PWD/src" nice -n 19 .venv/bin/python -m hyperadapt "$@" \
  >> "logs/$name.log" 2>&1
rc=$?
if [ $rc -eq 0 ]; then echo "STEP DONE $(date -u +%FT%TZ)" >> "logs/$name.log"
else echo "STEP FAILED exit $rc $(date -u +%FT%TZ)" >> "logs/$name.log"; fi
echo "$(date -u +%FT%TZ) $name: exit $rc"
exit $rc
EOF
  chmod +x "$step.new"
  mv -f "$step.new" "$step"
}

# step_state LOG: the last STEP line of a step's log as run_step.sh writes it ("STEP DONE <time>" or "STEP FAILED
# exit <rc> <time>"), empty when there is none yet (never started, running for the first time, or stopped). Never
# fails: a lane under set -e may call it.
step_state() {
  grep -a '^STEP ' "$1" 2>/dev/null | tail -n 1 || true
}

# wait_done NAME [LOGS]: block until step NAME's log (in LOGS, default this worktree's logs) says it finished (a step
# of another lane or script). Returns 1, saying so, when its last STEP line is STEP FAILED and nothing is running it
# again (its lock is free): a waiting lane stops instead of waiting forever; run its script again after the fix.
wait_done() {
  local log="${2:-$work/logs}/$1.log" last
  while :; do
    last="$(step_state "$log")"
    case "$last" in
      "STEP DONE"*) return 0 ;;
      "STEP FAILED"*)
        if flock -n "${log%.log}.lock" true 2>/dev/null; then
          echo "$(date -u +%FT%TZ) error: step $1 failed ($log: $last); not waiting for it" >&2
          return 1
        fi ;;
    esac
    sleep 300
  done
}

# kept_step FILE NAME ARGS...: run step NAME (run_step.sh NAME ARGS) unless FILE (relative to this checkout) is
# committed: a benchmarks/*_collect.sh script brought the step's result there, so a new machine (worktree, runs and
# logs gone) trains and answers only what has not landed.
kept_step() {
  local file="$1" name="$2"; shift 2
  if [ -f "$repo/$file" ]; then
    echo "$(date -u +%FT%TZ) $name: collected before ($file), skipped"; return 0
  fi
  "$step" "$name" "$@"
}

# storage_label ROW: a storage row's label in the tables and the stem of its collected files (benchmarks/
# sni_storage_{lanes,collect}.sh): ROW-bf16, or all7-int8 for ROW all7int8 (a row named ...int8 stores int8).
# Its summary is collected as docs/results/continual/storage/<label with _ for ->_summary.json.
storage_label() {
  case "$1" in *int8) echo "${1%int8}-int8" ;; *) echo "$1-bf16" ;; esac
}
