#!/usr/bin/env bash
# The released TAGI's instruction sensitivity on SNI (issue 36; SNI-CPU v1's sensitivity rows were measured on
# variant D, and the release, TAGI reading MiniLM, had none): the 62 test tasks' first 10 instances answered with
# another test task's definition (shuffled) and with random words (random), as `hyperadapt bench tagi` makes its
# sensitivity rows (seed 0, the run's train.seed), by `hyperadapt eval --instructions` on the released checkpoint.
# Its own-definition answers on the same instances are those of docs/results/sni/tagi_released_def.predictions.jsonl
# (re-scored with --limit 10 by `hyperadapt bench compare`).
#
#   benchmarks/sni_released_sensitivity.sh [COMMIT] [WORKDIR]
#
# One background job (nohup, nice 19, THREADS torch threads, default 1) in a worktree of COMMIT (default HEAD);
# logs in WORKDIR/logs/; each evaluation resumes from its answer log when the script is run again.
# Results: WORKDIR/results/sni/tagi_released_{shuffled,random}.json (+ .predictions.jsonl).
# Estimate (2026-12-07, before it started): 2 x 620 answers; the 1,240 answers of a TAGI row took 21.4 min beside
# one other job, so about 25-45 min beside the three lane jobs.
set -euo pipefail
source "$(dirname "$0")/lanes_common.sh"
lanes_setup sni "SNI data" "$@"
export THREADS="${THREADS:-1}"
common=(eval --run checkpoints/tagi-smollm2-135m-sni --data sni:../shared/data/sni --split test --limit 10
        --batch-size 16 --max-new-tokens 64 --max-prompt-tokens 384 --instructions-seed 0)
(
  "$step" released_shuffled "${common[@]}" --instructions shuffled --out results/sni/tagi_released_shuffled.json
  "$step" released_random "${common[@]}" --instructions random --out results/sni/tagi_released_random.json
) >> "$work/logs/released_sensitivity.log" 2>&1 &
disown -a
echo "started in $work (commit $commit); follow: tail -f $work/logs/released_sensitivity.log"
