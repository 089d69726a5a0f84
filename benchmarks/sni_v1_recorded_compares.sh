#!/usr/bin/env bash
# SNI-CPU v1: the paired-bootstrap intervals that docs/RESULTS.md, docs/results/megan-gating.md and
# docs/results/sni-tagi.md quote, reproduced from the per-task scores the committed result JSON recorded.
# No model is involved; the whole script takes seconds.
#
#   benchmarks/sni_v1_recorded_compares.sh
#
# Each call is `hyperadapt bench compare` (paired bootstrap over the 62 test tasks, 10,000 resamples, seed 0;
# every input against the first): an evaluation's R.json or a benchmark's R.json#KEY/KEY row gives its recorded
# per-task scores; a *.predictions.jsonl / *.answers.jsonl is scored again on the first --limit instances of
# each task, which needs the SNI data (../shared/data/sni) and is used here only for the 10-per-task rows.
# Rows recorded on 10 instances per task pair only with rows on 10. Every command is printed before it runs;
# each writes docs/results/sni/recorded/NAME.json and NAME.md.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
hx() { echo "+ hyperadapt $*"; OMP_NUM_THREADS=1 PYTHONPATH="$repo/src" .venv/bin/python -m hyperadapt "$@"; }
sni=docs/results/sni
out=docs/results/sni/recorded
mkdir -p "$out"

# Recorded rows, 20 instances per task (1,240 answers).
zs_none="$sni/zero_shot_none.json"                                # zero-shot, input alone
zs_def="$sni/zero_shot_def.json"                                  # zero-shot, definition + input
lora="$sni/multitask_lora_seed0.json#results/multitask-lora/test" # multi-task LoRA (the table's row)
megan_1e4="$sni/megan_lr1e-4.json#results/megan/test"             # MeGan, beta only, lr 1e-4
megan_1e3="$sni/megan_lr1e-3.json#results/megan/test"             # MeGan, beta only, lr 1e-3 (released)
megan_def="$sni/megan_lr1e-3.json#results/megan-def/test"         # MeGan + condition in the prompt, lr 1e-3
tagi_A="$sni/tagi_def.json#results/tagi/test"                     # TAGI variant A
tagi_D="$sni/tagi_def_D.json#results/tagi/test"                   # TAGI variant D (= tagi_D_rows.json's tagi row)
tagi_D_nf="$sni/tagi_D_rows.json#results/tagi-no-fusion/test"     # TAGI without fusion, variant D
tagi_sent="$sni/tagi_sent.json#results/tagi/test"                 # TAGI reading MiniLM
tagi_sent_nf="$sni/tagi_sent.json#results/tagi-no-fusion/test"    # TAGI without fusion reading MiniLM
hypter="$sni/hypter_sent.json#results/hypter/test"                # Hypter-style reading MiniLM
# Recorded rows, 10 instances per task (620 answers).
sent_nf10="$sni/tagi_sent_nofusion.json#results/tagi-no-fusion/test"
sent_nf10_shuffled="$sni/tagi_sent_nofusion.json#sensitivity/tagi-no-fusion/shuffled/test"
sent_nf10_random="$sni/tagi_sent_nofusion.json#sensitivity/tagi-no-fusion/random/test"
# D without fusion on its own definitions at 10 per task was not kept; its "shuffled" row gave the very same
# 620 answers (sni-tagi.md's sensitivity table), so that row stands in for it.
D_nf10_own="$sni/tagi_D_rows.json#sensitivity/tagi-no-fusion/shuffled/test"
D_nf10_random="$sni/tagi_D_rows.json#sensitivity/tagi-no-fusion/random/test"
# Answer files scored again on the first 10 instances per task.
limit10=(--data sni:../shared/data/sni --split test --limit 10)

# megan-gating.md (MeGan on SNI) and sni-tagi.md (TAGI without fusion): against the base model, input alone.
hx bench compare "zero-shot (input alone)=$zs_none" "MeGan lr 1e-4=$megan_1e4" \
  "TAGI without fusion (D)=$tagi_D_nf" --out "$out/megan_lr1e-4_tagi_D_nofusion_vs_zero_shot_none.json"
# sni-tagi.md: against zero-shot with the definition in the prompt, 20 per task.
hx bench compare "zero-shot (definition)=$zs_def" "TAGI without fusion (D)=$tagi_D_nf" \
  "TAGI without fusion (MiniLM)=$tagi_sent_nf" "Hypter-style (MiniLM)=$hypter" \
  --out "$out/tagi_nofusion_hypter_vs_zero_shot_def.json"
# megan-gating.md, RESULTS.md: MeGan against the multi-task LoRA.
hx bench compare "multi-task LoRA=$lora" "MeGan lr 1e-4=$megan_1e4" "MeGan + def (lr 1e-3)=$megan_def" \
  --out "$out/megan_vs_lora.json"
# megan-gating.md, RESULTS.md: TAGI (D) against MeGan + def, and MeGan + def against MeGan beta only ("beta only
# is behind it by": beta only is the side subtracted).
hx bench compare "MeGan + def (lr 1e-3)=$megan_def" "TAGI (D)=$tagi_D" --out "$out/tagi_D_vs_megan_def.json"
hx bench compare "MeGan beta only (lr 1e-3)=$megan_1e3" "MeGan + def (lr 1e-3)=$megan_def" \
  --out "$out/megan_def_vs_megan_lr1e-3.json"
# megan-gating.md: MeGan beta only at lr 1e-3 against lr 1e-4.
hx bench compare "MeGan lr 1e-4=$megan_1e4" "MeGan lr 1e-3=$megan_1e3" --out "$out/megan_lr1e-3_vs_lr1e-4.json"
# sni-tagi.md: TAGI variant D against variant A.
hx bench compare "TAGI (A)=$tagi_A" "TAGI (D)=$tagi_D" --out "$out/tagi_D_vs_A.json"
# sni-tagi.md: TAGI reading MiniLM against D.
hx bench compare "TAGI (D)=$tagi_D" "TAGI (MiniLM)=$tagi_sent" --out "$out/tagi_sent_vs_tagi_D.json"
# sni-tagi.md: TAGI without fusion, TAGI and the LoRA against Hypter-style.
hx bench compare "Hypter-style (MiniLM)=$hypter" "TAGI without fusion (MiniLM)=$tagi_sent_nf" \
  "TAGI (MiniLM)=$tagi_sent" "multi-task LoRA=$lora" --out "$out/tagi_lora_vs_hypter.json"
# sni-tagi.md's sensitivity table (10 per task): MiniLM without fusion, another task's / random definitions.
hx bench compare "TAGI without fusion (MiniLM), own definition=$sent_nf10" "shuffled=$sent_nf10_shuffled" \
  "random=$sent_nf10_random" --out "$out/tagi_sent_nofusion_sensitivity.json"
# sni-tagi.md (10 per task): D without fusion against its random definitions, MiniLM without fusion against D.
hx bench compare "TAGI without fusion (D), own definition (its shuffled row's identical answers)=$D_nf10_own" \
  "random=$D_nf10_random" "TAGI without fusion (MiniLM)=$sent_nf10" --out "$out/tagi_nofusion_D_sensitivity_sent.json"
# sni-tagi.md (10 per task): zero-shot and the LoRA scored again from their answers, the rows above against zero-shot.
hx bench compare "zero-shot (definition)=$sni/zero_shot_def.predictions.jsonl" \
  "TAGI without fusion (MiniLM)=$sent_nf10" "TAGI without fusion (D)=$D_nf10_own" \
  "multi-task LoRA=$sni/multitask_lora_seed0.test.answers.jsonl" "${limit10[@]}" \
  --out "$out/limit10_vs_zero_shot_def.json"
