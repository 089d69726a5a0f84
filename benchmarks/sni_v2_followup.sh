#!/usr/bin/env bash
# SNI-CPU v2 (issue 36), after the 4x rows: what the lanes' commit could not yet ask of the 4x hypernetworks.
#
#   benchmarks/sni_v2_followup.sh [COMMIT] [WORKDIR]     # LANES_WORK: the lanes' worktree (default ../jobs-16aa7dc)
#
# Makes (or reuses) a worktree of COMMIT (default: HEAD) like the lane scripts and starts one background lane that
# waits for each lane step it needs, then works on copies: each finished 4x run folder is copied into this
# worktree's runs/sni/x4 as hard links (`cp -al`: no space; a run's files are replaced by atomic writes, never
# written in place, so the lanes' folders stay as they are), and its answers go to this worktree's own log:
#   hypter_x4_sensitivity  after baselines_x4: Hypter-style at 4x (trained, loaded as it is) answers the test tasks
#                          with shuffled and random instructions, 2 x 620 answers (10 per task), as TAGI's rows do
#                          (bench tagi asks every hypernetwork since 28a38b4), and its Def row again, 1,240 answers:
#                          the lanes' answer logs (16aa7dc) record no identity of the answering weights, so the
#                          harness answers again rather than trust them (the same answers, a check of the lanes')
#   spread_x4              after tagi_x4 too: `bench spread` of the three 4x hypernetworks (no answers)
# Estimate (written before it started, 2026-12-07): 2,480 answers at 2.4-4.7 s beside two other jobs, about 2-3 h,
# and the spread about 15-25 min (4-7 min per run and split alone at 1x). One job: it starts when lane B's last
# step has finished, so the machine keeps at most three. Resumable like the lanes: run the same command again.
# Results: WORKDIR/results/sni/hypter_x4_sensitivity.json, spread_x4.json; benchmarks/sni_v2_collect.sh brings
# them into docs/results/sni/.
set -euo pipefail
source "$(dirname "$0")/lanes_common.sh"
lanes_setup sni "SNI data" "$@"
export THREADS=1
lanes_work="$(cd "${LANES_WORK:-$repo/../jobs-16aa7dc}" && pwd)"
[ -d "$lanes_work/runs/sni" ] || { echo "error: no lanes' runs at $lanes_work/runs/sni" >&2; exit 2; }
[ "$work" != "$lanes_work" ] || { echo "error: give the follow-up its own commit or WORKDIR, not the lanes' worktree" >&2; exit 2; }
[ ! -L "$work/runs/sni/x4" ] || rm "$work/runs/sni/x4"  # an earlier version of this script linked the whole folder
mkdir -p "$work/runs/sni/x4"
lane_done() { wait_done "$1" "$lanes_work/logs"; }  # the lanes' step STEP has finished (1: it failed)
take_run() {  # take_run NAME: the lanes' finished run folder runs/sni/x4/NAME, as hard links, once
  [ -d "$work/runs/sni/x4/$1" ] || cp -al "$lanes_work/runs/sni/x4/$1" "$work/runs/sni/x4/$1"
}
# the 4x configuration of baselines_x4 and tagi_x4, so that their finished runs load (a changed setting is refused)
x4=(bench tagi --config configs/tagi_sni.yaml --eval-splits test --limit 20 --efficiency-instances 0
    --max-new-tokens 64 --max-prompt-tokens 384 --batch-size 16 --set train.save_every=10 teachers.train.save_every=10
    --set teachers.train.steps=400 train.steps=800)
(
  lane_done baselines_x4
  take_run hypter
  "$step" hypter_x4_sensitivity "${x4[@]}" --methods hypter --ablation-limit 10 --runs runs/sni/x4 \
    --out results/sni/hypter_x4_sensitivity.json
  lane_done tagi_x4
  take_run tagi
  take_run tagi-no-fusion
  "$step" spread_x4 bench spread "TAGI 4x=runs/sni/x4/tagi" "TAGI without fusion 4x=runs/sni/x4/tagi-no-fusion" \
    "Hypter-style 4x=runs/sni/x4/hypter" --data sni:../shared/data/sni --splits train test \
    --out results/sni/spread_x4.json
) >> "$work/logs/followup.log" 2>&1 &
disown -a
echo "follow-up lane started in $work (commit $commit), waiting on $lanes_work; follow: tail -f $work/logs/followup.log"
