#!/usr/bin/env bash
# SNI-CPU v2 (issue 36): bring the rows that benchmarks/sni_v2_lanes.sh finished into docs/results/sni/ and pair
# them, with no model involved (a few seconds a comparison). Run it whenever a lane step has finished; it is
# idempotent (a copied file is copied again only when its source is newer) and skips what has not landed yet.
#
#   benchmarks/sni_v2_collect.sh [WORKDIR]      # WORKDIR: the lanes' worktree (default: ../jobs-16aa7dc)
#
# Copies each finished step's result JSON and answer log (names below), then runs, where both sides exist,
# `hyperadapt bench compare` (paired bootstrap over the 62 tasks, each log against the first) and, once both 4x
# rows exist, `hyperadapt bench tagi --collect` with budget labels (OUT.budget.png: ROUGE-L against budget with
# 95% intervals). Every comparison command is printed before it runs; the docs quote them.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(cd "${1:-$repo/../jobs-16aa7dc}" && pwd)"
docs="$repo/docs/results/sni"
cd "$repo"
hx() { echo "+ hyperadapt $*"; OMP_NUM_THREADS=1 PYTHONPATH="$repo/src" .venv/bin/python -m hyperadapt "$@"; }
source "$repo/benchmarks/lanes_common.sh"  # step_state
done_step() { [[ "$(step_state "$work/logs/$1.log")" == "STEP DONE"* ]]; }
take() {  # take SRC DEST: copy SRC (in the worktree) to DEST (in docs/results/sni) when it is new or newer
  [ -f "$work/$1" ] || { echo "missing: $work/$1" >&2; return 1; }
  if [ ! -f "$docs/$2" ] || [ "$work/$1" -nt "$docs/$2" ]; then cp -p "$work/$1" "$docs/$2"; echo "copied $1 -> docs/results/sni/$2"; fi
}
take_eval() {  # take_eval OUT NAME: an eval step's OUT.json and OUT.predictions.jsonl as NAME.json, NAME.predictions.jsonl
  take "$1.json" "$2.json" && take "$1.predictions.jsonl" "$2.predictions.jsonl"
}
# take_bench OUT RUNS METHOD...: a bench step's results/sni/OUT.json, and each METHOD's answer log under RUNS as
# METHOD_SUFFIX.test.answers.jsonl, SUFFIX being OUT's last part (tagi_x4, tagi-no-fusion -> tagi_no_fusion_x4)
take_bench() {
  local out="$1" runs="$2" m
  shift 2
  take "results/sni/$out.json" "$out.json"
  for m in "$@"; do take "$runs/answers/$m.test.answers.jsonl" "${m//-/_}_${out##*_}.test.answers.jsonl"; done
}
have() { local f; for f in "$@"; do [ -f "$docs/$f" ] || return 1; done; }
sni=(--data sni:../shared/data/sni --split test --limit 20)
compare() {  # compare OUT LABEL=FILE...: the first file is the reference
  local out="$1"; shift
  local args=() spec
  for spec in "$@"; do args+=("${spec%%=*}=docs/results/sni/${spec#*=}"); done
  hx bench compare "${args[@]}" "${sni[@]}" --out "docs/results/sni/$out.json"
}

# Training seconds over every session: `bench tagi`'s train_s times its last process only (a stage that finished
# in an earlier session counts 0 there), while each stage's last checkpoint carries the wall-clock seconds of
# all its optimiser steps (state.json "seconds"); docs/results/sni/train_seconds.json lists them per run and stage.
OMP_NUM_THREADS=1 PYTHONPATH="$repo/src" .venv/bin/python - "$work/runs/sni" "$docs/train_seconds.json" <<'PY'
import json, sys
from pathlib import Path
from hyperadapt.training import latest_checkpoint
root, out = Path(sys.argv[1]), Path(sys.argv[2])
rows = {}
for ckpts in sorted(root.glob("*/**/checkpoints")):
    last = latest_checkpoint(ckpts.parent)
    if last is not None:
        state = json.loads((last / "state.json").read_text())
        seconds = state.get("seconds")
        rows[str(ckpts.parent.relative_to(root))] = {"step": state["step"], "seconds": None if seconds is None else round(float(seconds), 1)}
if rows:  # a worktree whose runs are gone leaves the last list as it was
    out.write_text(json.dumps({"source": "state.json of each stage's latest checkpoint under runs/sni", "stages": rows}, indent=1) + "\n")
print(f"training seconds of {len(rows)} stages -> {out if rows else 'nothing written'}")
PY
# part 2: the second setting (Def + 2 positive examples); the released TAGI's and zero-shot Def + 2 pos rows (and
# the retrained LoRA of seed 0) were brought in by hand when they landed, before this script existed
if have tagi_released_def.predictions.jsonl tagi_released_def2pos.predictions.jsonl zero_shot_def2pos.predictions.jsonl; then
  compare def2pos_compare "TAGI Def=tagi_released_def.predictions.jsonl" "TAGI Def+2Pos=tagi_released_def2pos.predictions.jsonl" \
    "zero-shot Def+2Pos=zero_shot_def2pos.predictions.jsonl"
  compare def2pos_tagi_vs_zero_shot "zero-shot Def+2Pos=zero_shot_def2pos.predictions.jsonl" \
    "TAGI Def+2Pos=tagi_released_def2pos.predictions.jsonl"
fi
if have multitask_lora_seed0.test.answers.jsonl tagi_released_def.predictions.jsonl; then
  compare tagi_vs_lora_seed0 "multi-task LoRA Def (seed 0, retrained)=multitask_lora_seed0.test.answers.jsonl" \
    "released TAGI Def=tagi_released_def.predictions.jsonl"
fi
if done_step zero_shot_def; then
  take_eval results/sni/zero-shot.def zero_shot_def
  compare def2pos_zero_shot "zero-shot Def=zero_shot_def.predictions.jsonl" \
    "zero-shot Def+2Pos=zero_shot_def2pos.predictions.jsonl"
  compare def_tagi_vs_zero_shot "zero-shot Def=zero_shot_def.predictions.jsonl" \
    "TAGI Def=tagi_released_def.predictions.jsonl"
fi
if done_step lora_seed0_def2pos; then
  take_eval results/sni/multitask-lora.def2pos multitask_lora_def2pos
  compare def2pos_lora "multi-task LoRA Def=multitask_lora_seed0.test.answers.jsonl" \
    "multi-task LoRA Def+2Pos=multitask_lora_def2pos.predictions.jsonl"
  compare def2pos_tagi_vs_lora "multi-task LoRA Def+2Pos=multitask_lora_def2pos.predictions.jsonl" \
    "TAGI Def+2Pos=tagi_released_def2pos.predictions.jsonl"
fi

# the released TAGI's instruction sensitivity (benchmarks/sni_released_sensitivity.sh, its own worktree SENS_WORK,
# default ../jobs-2a0f404): the shuffled and random rows against its own answers on the same 10 per task
sens="${SENS_WORK:-$repo/../jobs-2a0f404}"
for v in shuffled random; do
  if [ -d "$sens" ] && [[ "$(step_state "$sens/logs/released_$v.log")" == "STEP DONE"* ]]; then
    for f in json predictions.jsonl; do
      src="$sens/results/sni/tagi_released_$v.$f"
      if [ ! -f "$docs/tagi_released_$v.$f" ] || [ "$src" -nt "$docs/tagi_released_$v.$f" ]; then
        cp -p "$src" "$docs/tagi_released_$v.$f"; echo "copied $src -> docs/results/sni/tagi_released_$v.$f"
      fi
    done
  fi
done
if have tagi_released_shuffled.predictions.jsonl tagi_released_random.predictions.jsonl; then
  hx bench compare "TAGI (released), own definition=docs/results/sni/tagi_released_def.predictions.jsonl" \
    "TAGI (released), shuffled=docs/results/sni/tagi_released_shuffled.predictions.jsonl" \
    "TAGI (released), random=docs/results/sni/tagi_released_random.predictions.jsonl" \
    --data sni:../shared/data/sni --split test --limit 10 --out docs/results/sni/tagi_released_sensitivity.json
fi

# part 3: second seeds at 1x
if done_step tagi_seed1; then
  take_bench tagi_seed1 runs/sni/seed1 tagi
  compare tagi_seed1_vs_seed0 "TAGI seed 0 (released)=tagi_released_def.predictions.jsonl" \
    "TAGI seed 1=tagi_seed1.test.answers.jsonl"
fi
if done_step lora_seed1; then
  take_bench multitask_lora_seed1 runs/sni/seed1 multitask-lora
  compare lora_seed1_vs_seed0 "multi-task LoRA seed 0=multitask_lora_seed0.test.answers.jsonl" \
    "multi-task LoRA seed 1=multitask_lora_seed1.test.answers.jsonl"
fi
if have tagi_seed1.test.answers.jsonl multitask_lora_seed1.test.answers.jsonl; then
  compare tagi_vs_lora_seed1 "multi-task LoRA seed 1=multitask_lora_seed1.test.answers.jsonl" \
    "TAGI seed 1=tagi_seed1.test.answers.jsonl"
fi

# part 3: 4x the budget
if done_step tagi_x4; then
  take_bench tagi_x4 runs/sni/x4 tagi tagi-no-fusion
  # the issue's second target: TAGI without fusion at least 8 points above zero-shot (reading the definition)
  compare x4_vs_zero_shot "zero-shot Def=zero_shot_def.predictions.jsonl" \
    "TAGI without fusion 4x=tagi_no_fusion_x4.test.answers.jsonl" "TAGI 4x=tagi_x4.test.answers.jsonl"
fi
if done_step baselines_x4; then
  take_bench baselines_x4 runs/sni/x4 multitask-lora hypter
fi
# after the 4x rows: benchmarks/sni_v2_followup.sh's steps, in its own worktree (FOLLOWUP_WORK, default: the
# ../jobs-* worktree with logs/followup.log)
followup="${FOLLOWUP_WORK:-}"
if [ -z "$followup" ]; then  # the worktree whose follow-up log was written last
  log="$(ls -t "$repo"/../jobs-*/logs/followup.log 2>/dev/null | head -1 || true)"
  [ -z "$log" ] || followup="$(dirname "$(dirname "$log")")"
fi
if [ -n "$followup" ]; then
  for name in hypter_x4_sensitivity spread_x4; do
    if [[ "$(step_state "$followup/logs/$name.log")" == "STEP DONE"* ]]; then
      src="$followup/results/sni/$name.json"
      if [ ! -f "$src" ]; then echo "missing: $src" >&2
      elif [ ! -f "$docs/$name.json" ] || [ "$src" -nt "$docs/$name.json" ]; then
        cp -p "$src" "$docs/$name.json"; echo "copied $src -> docs/results/sni/$name.json"
      fi
    fi
  done
fi
# Hypter-style's shuffled- and random-instruction rows at 4x, once they exist: given before baselines_x4.json, whose
# rows, training time and command then replace the follow-up's (a later file's win); its sensitivity rows and
# train_steps_s stay
x4_extra=()
if have hypter_x4_sensitivity.json; then x4_extra=(docs/results/sni/hypter_x4_sensitivity.json=4x); fi
if have tagi_x4.json baselines_x4.json; then
  compare x4_compare "multi-task LoRA 4x=multitask_lora_x4.test.answers.jsonl" "TAGI 4x=tagi_x4.test.answers.jsonl" \
    "TAGI without fusion 4x=tagi_no_fusion_x4.test.answers.jsonl" "Hypter-style 4x=hypter_x4.test.answers.jsonl"
  hx bench tagi --collect docs/results/sni/multitask_lora_def.json=1x docs/results/sni/tagi_sent.json=1x \
    docs/results/sni/hypter_sent.json=1x docs/results/sni/tagi_x4.json=4x "${x4_extra[@]}" \
    docs/results/sni/baselines_x4.json=4x --out docs/results/sni/budget.json
fi
