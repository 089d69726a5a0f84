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
# switch's size per row, beside SNI-CPU v1's fp32 row (docs/results/continual/sni_v1_order1_*_results.json).
#
# Rows (configs/switch_sni.yaml, lora.storage_dtype=bfloat16, rank 8; MiB per task = 30 layers x rank 8 x
# (in + out) x 2 bytes for SmolLM2-135M, plus the folder's config and task.json):
#   qv    q_proj v_proj                         about 0.9 MiB per task
#   attn  q_proj k_proj v_proj o_proj           about 1.8 MiB
#   mlp   gate_proj up_proj down_proj           about 2.9 MiB (above the 2.5 MiB target at rank 8)
#   all7  all seven (bf16 alone, lowest priority) about 4.7 MiB
# Estimate: SwitchCIT + oracle with all seven modules took 1 h 58 min with THREADS=2 alone (6,242 s of
# training, 10.4 s per step of batch 8 at 384 tokens, the frozen model's forward and backward dominating);
# fewer LoRA modules shorten a step by perhaps 10-25 %, so about 1.5-1.9 h per row on both cores alone,
# 6-7.5 h for the four rows, and 2-3x longer beside other jobs or with one thread per lane.
#
# Every step resumes (training checkpoints every 20 steps, cached and logged answers): after an interruption
# run the same command again; a step whose log ends in STEP DONE is skipped.
set -euo pipefail
source "$(dirname "$0")/lanes_common.sh"
lanes_setup cl-superni "continual stream" "$@"
export THREADS="${THREADS:-2}"
row() {  # row ROW MODULES: SwitchCIT + oracle on order 1 with the LoRA on MODULES (comma-separated), stored in bf16
  "$step" "storage_$1" bench continual --config configs/switch_sni.yaml --threads "$THREADS" --methods switchcit oracle \
    --set "lora.target_modules=[$2]" lora.storage_dtype=bfloat16 --out "results/continual/sni-order1-storage/$1"
}
cat > "$work/logs/storage_table.py" <<'EOF'
"""AP and MiB per task of every finished storage row, beside SNI-CPU v1's fp32 row: storage.{json,md}."""
import json
from pathlib import Path

out = Path("results/continual/sni-order1-storage")
v1 = json.loads(Path("docs/results/continual/sni_v1_order1_switchcit_results.json").read_text())
v1_oracle = json.loads(Path("docs/results/continual/sni_v1_order1_oracle_results.json").read_text())
rows = {"all7-fp32 (SNI-CPU v1)": {"AP": v1["metrics"]["AP"], "oracle_AP": v1_oracle["metrics"]["AP"],
                                   "mib_per_task": sum(v1["storage"]["per_task_bytes"].values())
                                   / len(v1["storage"]["per_task_bytes"]) / 2**20,
                                   "router_mib": v1["storage"]["router_bytes"] / 2**20,
                                   "reject_auroc": v1["switch"]["reject_auroc"], "train_seconds": v1["seconds"]["train"]}}
for summary in sorted(out.glob("*/summary.json")):
    m = json.loads(summary.read_text())["methods"]
    s, o = m["switchcit"], m.get("oracle", {})
    rows[f"{summary.parent.name}-bf16"] = {"AP": s["AP"], "oracle_AP": o.get("AP"),
                                           "mib_per_task": s["storage_bytes_per_task"] / 2**20,
                                           "router_mib": s["router_bytes"] / 2**20,
                                           "reject_auroc": s["reject_auroc"], "train_seconds": s["train_seconds"]}
# The oracle's AP (true task ids) separates the adapters' change from the reject rule's (the rows use the
# default rule of their commit; v1 used knn1/global).
base, base_oracle = rows["all7-fp32 (SNI-CPU v1)"]["AP"], rows["all7-fp32 (SNI-CPU v1)"]["oracle_AP"]
lines = ["| row | AP | ΔAP vs v1 | oracle AP | Δ oracle AP vs v1 | MiB per task | switch MiB | reject AUROC | train s |",
         "|---" * 9 + "|"]
for name, r in rows.items():
    oracle = "– | –" if r["oracle_AP"] is None else f"{r['oracle_AP']:.1f} | {r['oracle_AP'] - base_oracle:+.1f}"
    lines.append(f"| {name} | {r['AP']:.1f} | {r['AP'] - base:+.1f} | {oracle} | {r['mib_per_task']:.2f} | "
                 f"{r['router_mib']:.2f} | {r['reject_auroc']:.3f} | {r['train_seconds']:.0f} |")
(out / "storage.json").write_text(json.dumps(rows, indent=2) + "\n")
(out / "storage.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
table=(env -C "$work" .venv/bin/python logs/storage_table.py)

lanes="${LANES:-all}"
if [ "$lanes" = all ]; then  # one job at a time, the rows under the 2.5 MiB target first
  (
    row qv q_proj,v_proj
    row attn q_proj,k_proj,v_proj,o_proj
    row mlp gate_proj,up_proj,down_proj
    "${table[@]}"
    row all7 q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj
    "${table[@]}"
  ) >> "$work/logs/storage_lane_all.log" 2>&1 &
  disown -a
  echo "one lane started ($THREADS torch threads) in $work (commit $commit); follow: tail -f $work/logs/storage_lane_all.log"
  exit 0
fi
(
  row qv q_proj,v_proj
  row mlp gate_proj,up_proj,down_proj
) >> "$work/logs/storage_lane1.log" 2>&1 &
(
  row attn q_proj,k_proj,v_proj,o_proj
  row all7 q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj
  wait_done storage_mlp
  "${table[@]}"
) >> "$work/logs/storage_lane2.log" 2>&1 &
disown -a
echo "two lanes started ($THREADS torch threads each) in $work (commit $commit); follow: tail -f $work/logs/storage_lane{1,2}.log"
