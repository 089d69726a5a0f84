#!/usr/bin/env bash
# SNI-CPU v2 (issue 36): the Def + 2 positive examples setting, second seeds and the 4x budget, as two lanes
# of resumable jobs, one torch thread each, at nice 19.
#
#   benchmarks/sni_v2_lanes.sh [COMMIT] [WORKDIR]
#
# Makes (or reuses) a git worktree of COMMIT (default: HEAD) at WORKDIR (default: ../jobs-<short commit>) so
# that work on this checkout does not change a running job's code, then starts both lanes there in the
# background and returns. Logs: WORKDIR/logs/lane{A,B}.log and one log per step; results under
# WORKDIR/results/sni/. Every step resumes (training checkpoints every 10 steps, logged answers), so after an
# interruption run the same command again: a finished step is skipped (its log ends in STEP DONE), and so is a
# step whose result benchmarks/sni_v2_collect.sh has committed under docs/results/sni/ (kept() below): on a new
# machine only the rows that have not landed run again, from the start (2026-12-07: the 4x runs were lost with the
# machine at tagi_x4 stage 2 step 636 of 800 and the 4x LoRA's answer 1,040 of 1,240, and restarted; 2026-12-08 lost
# again at stage-2 step 307 and LoRA step 866, and restarted).
#
# Estimates (docs/RESULTS.md, SNI-CPU v1: one thread beside another job, an answer at 64 new tokens and
# batch 16 takes 1.2-2.5 s, a LoRA step 12-20 s, a TAGI teacher step 22-28 s, a stage-2 step 23-35 s; with
# helpers or tests on the same cores 3-4x slower):
#   lane A: zero-shot def2pos (1,240 answers, ~0.5-1 h), released TAGI def and def2pos (2 x 1,240, ~1-2 h),
#           TAGI seed 1 (teachers 100 + stage 2 200 steps + 1,240 answers, ~3-4 h)
#   lane B: multi-task LoRA seed 0 (300 steps + 1,240 answers, ~2-2.5 h), its def2pos answers (~0.5-1 h),
#           multi-task LoRA seed 1 (~2-2.5 h)
# then SNI-CPU v2, 4x the budget (9,600 examples, all stages counted; 384 tokens kept: the estimate is about 30-35
# core-hours, under the issue's 40):
#   lane A: TAGI (teachers 400 + stage 2 800 steps, ~10 h) and TAGI without fusion (its own stage 2 on the same
#           teachers, ~6 h), 1,240 answers each plus the sensitivity rows (10 per task, ~1 h)
#   lane B: multi-task LoRA and Hypter-style at 1,200 steps each (~5 h + ~7 h), 1,240 answers each (~1 h)
set -euo pipefail
source "$(dirname "$0")/lanes_common.sh"
lanes_setup sni "SNI data" "$@"
export THREADS=1
sni=(--data sni:../shared/data/sni --split test --limit 20 --batch-size 16 --max-new-tokens 64 --max-prompt-tokens 384)
sens=(bench tagi --config configs/tagi_sni.yaml --eval-splits test --limit 20
      --efficiency-instances 0 --max-new-tokens 64 --max-prompt-tokens 384 --batch-size 16)
# checkpoints every 10 steps (a resumable setting: a run started with 50 resumes): a session that ends loses less
sens+=(--set train.save_every=10 teachers.train.save_every=10)
bench=("${sens[@]}" --no-sensitivity)
tagi=checkpoints/tagi-smollm2-135m-sni
x4=(--set teachers.train.steps=400 train.steps=800)  # 4x the v1 budget: 1,200 steps x 8 = 9,600 examples in all
# kept NAME FILE ARGS...: run step NAME unless benchmarks/sni_v2_collect.sh has committed its result as
# docs/results/sni/FILE: a new machine (its worktree, runs and logs gone) trains and answers only what has not landed
kept() { local name="$1" file="$2"; shift 2; kept_step "docs/results/sni/$file" "$name" "$@"; }

(
  kept zero_shot_def2pos zero_shot_def2pos.json eval --method zero-shot "${sni[@]}" --setting def2pos --out results/sni/zero-shot.def2pos.json
  kept tagi_released_def tagi_released_def.json eval --run "$tagi" "${sni[@]}" --setting def --out results/sni/tagi-released.def.json
  kept tagi_released_def2pos tagi_released_def2pos.json eval --run "$tagi" "${sni[@]}" --setting def2pos --out results/sni/tagi-released.def2pos.json
  # v1 kept no zero-shot Def answers: answered again for the paired interval against Def + 2 pos (~1,240 answers)
  kept zero_shot_def zero_shot_def.json eval --method zero-shot "${sni[@]}" --setting def --out results/sni/zero-shot.def.json
  kept tagi_seed1 tagi_seed1.json "${bench[@]}" --methods tagi --set teachers.train.seed=1 train.seed=1 \
    --runs runs/sni/seed1 --out results/sni/tagi_seed1.json
  kept tagi_x4 tagi_x4.json "${sens[@]}" --methods tagi tagi-no-fusion --ablation-limit 10 "${x4[@]}" \
    --runs runs/sni/x4 --out results/sni/tagi_x4.json
) >> "$work/logs/laneA.log" 2>&1 &
(
  kept lora_seed0 multitask_lora_seed0.json "${bench[@]}" --methods multitask-lora --runs runs/sni/seed0 --out results/sni/multitask_lora_seed0.json
  kept lora_seed0_def2pos multitask_lora_def2pos.json eval --run runs/sni/seed0/multitask-lora "${sni[@]}" --setting def2pos \
    --out results/sni/multitask-lora.def2pos.json
  kept lora_seed1 multitask_lora_seed1.json "${bench[@]}" --methods multitask-lora --set teachers.train.seed=1 train.seed=1 \
    --runs runs/sni/seed1 --out results/sni/multitask_lora_seed1.json
  kept baselines_x4 baselines_x4.json "${bench[@]}" --methods multitask-lora hypter "${x4[@]}" --runs runs/sni/x4 \
    --out results/sni/baselines_x4.json
) >> "$work/logs/laneB.log" 2>&1 &
disown -a
echo "lanes A and B started in $work (commit $commit); follow: tail -f $work/logs/lane{A,B}.log"
