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
source "$(dirname "$0")/lanes_common.sh"
lanes_setup cl-superni "continual stream" "$@"
export THREADS="${THREADS:-1}"
continual() {  # continual NAME ARGS...: one `bench continual` step on the SNI stream
  local name="$1"; shift
  "$step" "$name" bench continual --config configs/switch_sni.yaml --threads "$THREADS" "$@"
}
o2=(--set "stream=cl:../shared/data/cl-superni#2")

lanes="${LANES:-1 2}"
if [ "$lanes" = all ]; then  # one job at a time, in the order the rows matter: SwitchCIT, sequential, the bound
  (
    continual order1_switchcit --methods switchcit oracle --out results/continual/sni-order1
    continual order2_switchcit --methods switchcit oracle "${o2[@]}" --out results/continual/sni-order2
    continual order1_sequential --methods sequential --out results/continual/sni-order1
    continual order1_multitask --methods multitask --out results/continual/sni-order1
    continual order1_replay --methods replay --out results/continual/sni-order1
    continual order1_olora --methods olora --out results/continual/sni-order1
    continual order1_summary --out results/continual/sni-order1
  ) >> "$work/logs/lane_all.log" 2>&1 &
  disown -a
  echo "one lane started ($THREADS torch threads) in $work (commit $commit); follow: tail -f $work/logs/lane_all.log"
  exit 0
fi
[[ " $lanes " == *" 2 "* ]] && (
  continual order1_switchcit --methods switchcit oracle --out results/continual/sni-order1
  continual order2_switchcit --methods switchcit oracle "${o2[@]}" --out results/continual/sni-order2
  continual order1_multitask --methods multitask --out results/continual/sni-order1
) >> "$work/logs/lane2.log" 2>&1 &
[[ " $lanes " == *" 1 "* ]] && (
  continual order1_sequential --methods sequential --out results/continual/sni-order1
  continual order1_replay --methods replay --out results/continual/sni-order1
  continual order1_olora --methods olora --out results/continual/sni-order1
  wait_done order1_multitask
  continual order1_summary --out results/continual/sni-order1
) >> "$work/logs/lane1.log" 2>&1 &
disown -a
echo "lanes $lanes started ($THREADS torch threads each) in $work (commit $commit); follow: tail -f $work/logs/lane{1,2}.log $work/logs/order1_*.log"
