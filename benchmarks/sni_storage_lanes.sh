#!/usr/bin/env bash
# Storage per continual task (issue 36, part 4): SwitchCIT (+ the oracle) on order 1 of the SNI stream with
# each task's adapter stored in bf16 and the LoRA on fewer modules, as resumable background jobs.
#
#   benchmarks/sni_storage_lanes.sh [COMMIT] [WORKDIR]
#   THREADS=2 LANES=all benchmarks/sni_storage_lanes.sh   # (default) every step in one lane, on both cores
#   THREADS=1 LANES=2 benchmarks/sni_storage_lanes.sh     # two lanes of one thread each
#
# Makes (or reuses) a git worktree of COMMIT (default: HEAD) at WORKDIR (default: ../jobs-<short commit>) so
# that work on this checkout does not change a running job's code, then starts the steps there in the
# background (nohup, nice 19) and returns. Logs: WORKDIR/logs/storage_lane*.log and one log per step.
# Results: WORKDIR/results/continual/sni-order1-storage/<row>/ (bench continual's summary.json per row) and
# WORKDIR/results/continual/sni-order1-storage/storage.{json,md}: AP, AP of the oracle, MiB per task and the
# switch's size per row, beside SNI-CPU v1's fp32 row (docs/results/continual/sni_v1_order1_summary.json), by
# `hyperadapt bench continual --storage-table` of this checkout (rerun it by hand from WORKDIR: see table() below).
#
# Rows (configs/switch_sni.yaml, lora.storage_dtype=bfloat16, rank 8; MiB per task = 30 layers x rank 8 x
# (in + out) x 2 bytes for SmolLM2-135M, plus the folder's config and task.json):
#   qv    q_proj v_proj                         about 0.9 MiB per task
#   attn  q_proj k_proj v_proj o_proj           about 1.8 MiB
#   mlp   gate_proj up_proj down_proj           about 2.9 MiB (above the 2.5 MiB target at rank 8)
#   all7r4 all seven at rank 4, alpha 8 (the same alpha / r = 2)  about 2.3 MiB
#   all7  all seven (bf16 alone) about 4.7 MiB
#   all7int8 all seven, stored int8        about 2.4 MiB
# all7r4 was added after q/v lost 6.8 AP at rank 8 (2026-12-07): it asks whether fewer modules or a lower rank
# costs less AP at the same size. A lane started before it existed runs the old list; it picks up the new one when
# this script is run again with the same COMMIT (352801c) once that lane has ended (a session's end ends it): run
# beside the old lane, the new list would start all7r4 beside the old lane's current row. all7 moved before mlp
# (2026-12-07 05:35): it measures what bf16 alone costs and AP under the new reject rule with all seven modules
# (part 1 estimated it), both needed to settle the defaults; mlp (above the target at rank 8) answers the ablation.
# all7int8 (2026-12-07 17:20, aa7f2e7) stores all seven at rank 8 in int8 (lora.storage_dtype=int8: one absmax scale per rank
# component, about 2.4 MiB per task): bf16 held AP at 4.71 MiB and every smaller row lost more than 0.5 AP, while
# int8's relative error on the all7 adapters is 0.67 % (scripts/adapter_quant_error.py; bf16's unit roundoff 0.39 %).
# It runs from a commit that writes int8 files byte-stably (026b805 or later; not 352801c), after mlp (collect mlp
# first, or this lane trains it again): `THREADS=1 benchmarks/sni_storage_lanes.sh <commit>`. The screening
# (scripts/requantized_run.py: the all7 row's bf16 adapters stored again in int8 and answered again, rounded twice)
# gave AP 39.34 at 2.45 MiB per task on 2026-12-07 and made int8 the default; this row confirms it.
# Estimate: SwitchCIT + oracle with all seven modules took 1 h 58 min with THREADS=2 alone (6,242 s of
# training, 10.4 s per step of batch 8 at 384 tokens, the frozen model's forward and backward dominating);
# fewer LoRA modules shorten a step by perhaps 10-25 %, so about 1.5-1.9 h per row on both cores alone,
# 7.5-9.5 h for the five rows, and 2-3x longer beside other jobs or with one thread per lane.
#
# Every step resumes (training checkpoints every 20 steps, cached and logged answers): after an interruption
# run the same command again; a step whose log ends in STEP DONE is skipped, and so is a row whose summary
# benchmarks/sni_storage_collect.sh has committed (docs/results/continual/storage/ROW_bf16_summary.json): a new
# machine, whose worktree and logs are gone, trains only the rows not yet collected.
set -euo pipefail
source "$(dirname "$0")/lanes_common.sh"
lanes_setup cl-superni "continual stream" "$@"
export THREADS="${THREADS:-2}"
results=results/continual/sni-order1-storage  # in $work
rows=(qv attn all7r4 all7 mlp all7int8)
row() {  # row ROW MODULES [KEY=VALUE...]: SwitchCIT + oracle on order 1, the LoRA on MODULES (comma-separated),
  local name="$1" modules="$2" label dtype; shift 2  # stored bf16, or int8 for a row named ...int8
  label="$(storage_label "$name")"; dtype=bfloat16; [[ "$label" != *-int8 ]] || dtype=int8
  if [ "$dtype" = int8 ] && ! grep -q '"int8"' "$work/src/hyperadapt/methods/continual/config.py"; then
    echo "$(date -u +%FT%TZ) storage_$name: skipped: commit $commit cannot store int8 (run this script with 8c71b49 or later)"
    return 0
  fi
  kept_step "docs/results/continual/storage/${label/-/_}_summary.json" "storage_$name" bench continual --config configs/switch_sni.yaml --threads "$THREADS" --methods switchcit oracle \
    --set "lora.target_modules=[$modules]" "lora.storage_dtype=$dtype" "$@" --out "$results/$name"
}
all7=q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj
# The rows finished so far beside SNI-CPU v1's fp32 row: $results/storage.{json,md}; never stops a lane. The rows use
# the default reject rule of their commit (v1 used knn1/global): the oracle's AP isolates the adapters' change.
table() {
  local r rc runs=()
  for r in "${rows[@]}"; do runs+=("$(storage_label "$r")=$results/$r"); done
  # the table reads JSON only: it runs this checkout's code, so a worktree pinned before the command existed works
  env -C "$work" OMP_NUM_THREADS=1 PYTHONPATH="$repo/src" .venv/bin/python -m hyperadapt bench continual \
    --storage-table "${runs[@]}" --reference "all7-fp32 (SNI-CPU v1)=docs/results/continual/sni_v1_order1_summary.json" \
    --out "$results" || { rc=$?; echo "$(date -u +%FT%TZ) storage table: exit $rc"; }
}

lanes="${LANES:-all}"
if [ "$lanes" = all ]; then  # one job at a time, the rows under the 2.5 MiB target first
  (
    row qv q_proj,v_proj
    row attn q_proj,k_proj,v_proj,o_proj
    table
    row all7r4 "$all7" lora.rank=4 lora.alpha=8
    table
    row all7 "$all7"
    table
    row mlp gate_proj,up_proj,down_proj
    table
    row all7int8 "$all7"
    table
  ) >> "$work/logs/storage_lane_all.log" 2>&1 &
  disown -a
  echo "one lane started ($THREADS torch threads) in $work (commit $commit); follow: tail -f $work/logs/storage_lane_all.log"
  exit 0
fi
(
  row qv q_proj,v_proj
  row all7r4 "$all7" lora.rank=4 lora.alpha=8
  row mlp gate_proj,up_proj,down_proj
) >> "$work/logs/storage_lane1.log" 2>&1 &
(
  row attn q_proj,k_proj,v_proj,o_proj
  row all7 "$all7"
  row all7int8 "$all7"
  wait_done storage_mlp
  table
) >> "$work/logs/storage_lane2.log" 2>&1 &
disown -a
echo "two lanes started ($THREADS torch threads each) in $work (commit $commit); follow: tail -f $work/logs/storage_lane{1,2}.log"
