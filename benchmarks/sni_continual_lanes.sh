#!/usr/bin/env bash
# The SwitchCIT rows of SNI-CPU v1 (issue 13) as two lanes of resumable jobs, one torch thread each.
#
#   benchmarks/sni_continual_lanes.sh [COMMIT] [WORKDIR]
#   THREADS=2 LANES=2 benchmarks/sni_continual_lanes.sh    # one lane (SwitchCIT first) on both cores
#   THREADS=2 LANES=all benchmarks/sni_continual_lanes.sh  # every step in one lane, on both cores
#
# Makes (or reuses) a git worktree of COMMIT (default: HEAD) at WORKDIR (default: ../jobs-<short commit>)
# so that work on this checkout does not change a running job's code, then starts both lanes there in the
# background (nohup, nice 19) and returns. Logs: WORKDIR/logs/lane{1,2}.log and one log per step.
# Results: WORKDIR/results/continual/sni-order{1,2}/ (results.json, results.md, plots, summary.json).
#
# Every step resumes (training checkpoints every 20 steps, cached and logged answers), so after an
# interruption (a session that ends, a reboot) run the same command again: finished steps cost a model
# load and a re-score. Measured on 2 AMD EPYC cores: SwitchCIT + oracle order 1 took 1 h 58 min with
# THREADS=2 alone (about 13 s per training step of batch 8 at 384 tokens, LoRA on all seven modules);
# with one thread per job beside another job a step takes 20-50 s, so each single-LoRA baseline (it
# answers every task after every task) takes about 8-10 h, the multi-task bound about 6 h.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
commit="$(git -C "$repo" rev-parse --short "${1:-HEAD}")"
work="${2:-$repo/../jobs-$commit}"
data="$repo/../shared/data"
[ -d "$data/cl-superni" ] || { echo "error: no continual stream at $data/cl-superni (see ../shared/data/README.md)" >&2; exit 2; }
[ -x "$repo/.venv/bin/python" ] || { echo "error: no .venv in $repo: run 'make install' first" >&2; exit 2; }
if [ ! -d "$work" ]; then
  git -C "$repo" worktree add --detach "$work" "$commit" >/dev/null
fi
work="$(cd "$work" && pwd)"
[ "$(git -C "$work" rev-parse --short HEAD)" = "$commit" ] || { echo "error: $work is not at $commit" >&2; exit 2; }
ln -sfn "$repo/.venv" "$work/.venv"
[ -d "$work/../shared/data/cl-superni" ] || { echo "error: the configs read ../shared/data from the worktree: put WORKDIR beside $repo" >&2; exit 2; }
mkdir -p "$work/logs"

cat > "$work/logs/run_step.sh" <<'EOF'
#!/usr/bin/env bash
# run_step.sh NAME ARGS...: one `hyperadapt bench continual` step with the worktree's own code; skips a
# step whose log says it finished (the bench command itself also resumes).
set -uo pipefail
cd "$(dirname "$0")/.."
name="$1"; shift
exec 9>"logs/$name.lock"; flock 9  # the same step started twice (the script run again) waits for the first
if grep -q '^STEP DONE' "logs/$name.log" 2>/dev/null; then echo "$(date -u +%FT%TZ) $name: done before"; exit 0; fi
echo "$(date -u +%FT%TZ) $name: start"
t="${THREADS:-1}"
OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t PYTHONPATH="$PWD/src" nice -n 19 .venv/bin/python -m hyperadapt bench continual \
  --config configs/switch_sni.yaml --threads "$t" "$@" >> "logs/$name.log" 2>&1
rc=$?
if [ $rc -eq 0 ]; then echo "STEP DONE $(date -u +%FT%TZ)" >> "logs/$name.log"; fi
echo "$(date -u +%FT%TZ) $name: exit $rc"
exit $rc
EOF
chmod +x "$work/logs/run_step.sh"
step="$work/logs/run_step.sh"
o2=(--set "stream=cl:../shared/data/cl-superni#2")

lanes="${LANES:-1 2}"
export THREADS="${THREADS:-1}"
if [ "$lanes" = all ]; then  # one job at a time, in the order the rows matter: SwitchCIT, sequential, the bound
  (
    "$step" order1_switchcit --methods switchcit oracle --out results/continual/sni-order1
    "$step" order2_switchcit --methods switchcit oracle "${o2[@]}" --out results/continual/sni-order2
    "$step" order1_sequential --methods sequential --out results/continual/sni-order1
    "$step" order1_multitask --methods multitask --out results/continual/sni-order1
    "$step" order1_replay --methods replay --out results/continual/sni-order1
    "$step" order1_olora --methods olora --out results/continual/sni-order1
    "$step" order1_summary --out results/continual/sni-order1
  ) >> "$work/logs/lane_all.log" 2>&1 &
  disown -a
  echo "one lane started ($THREADS torch threads) in $work (commit $commit); follow: tail -f $work/logs/lane_all.log"
  exit 0
fi
[[ " $lanes " == *" 2 "* ]] && (
  "$step" order1_switchcit --methods switchcit oracle --out results/continual/sni-order1
  "$step" order2_switchcit --methods switchcit oracle "${o2[@]}" --out results/continual/sni-order2
  "$step" order1_multitask --methods multitask --out results/continual/sni-order1
) >> "$work/logs/lane2.log" 2>&1 &
[[ " $lanes " == *" 1 "* ]] && (
  "$step" order1_sequential --methods sequential --out results/continual/sni-order1
  "$step" order1_replay --methods replay --out results/continual/sni-order1
  "$step" order1_olora --methods olora --out results/continual/sni-order1
  wait_for="$work/logs/order1_multitask.log"
  until grep -q '^STEP DONE' "$wait_for" 2>/dev/null; do sleep 300; done
  "$step" order1_summary --out results/continual/sni-order1
) >> "$work/logs/lane1.log" 2>&1 &
disown -a
echo "lanes $lanes started ($THREADS torch threads each) in $work (commit $commit); follow: tail -f $work/logs/lane{1,2}.log $work/logs/order1_*.log"
