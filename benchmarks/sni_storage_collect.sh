#!/usr/bin/env bash
# Storage per continual task (issue 36, part 4): bring the rows that benchmarks/sni_storage_lanes.sh finished into
# docs/results/continual/storage/ and rebuild the table there, with no model involved (seconds). Run it whenever a
# storage row has finished; idempotent (a file is copied again only when its source is newer); a row that has
# not finished is skipped.
#
#   benchmarks/sni_storage_collect.sh [WORKDIR]     # WORKDIR: the storage lane's worktree (default: ../jobs-352801c)
#
# Rows run in two worktrees (all7int8 needs a commit with int8 storage): collect from each; a row another worktree
# finished is taken from docs/ when its summary was collected before.
# For each finished row ROW (its step's log ends in STEP DONE): WORKDIR/results/continual/sni-order1-storage/ROW/
# summary.json -> LABEL_summary.json and ap_curves.png -> LABEL_ap_curves.png (LABEL: ROW_bf16, all7_int8 for
# all7int8; storage_label in lanes_common.sh); then `hyperadapt bench
# continual --storage-table` over the copied summaries beside SNI-CPU v1's fp32 row -> storage.{json,md} (the
# command is printed; the docs quote it).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$repo/../jobs-352801c}"
work="$(cd "$work" 2>/dev/null && pwd || echo "$work")"  # may be gone: collected rows still make the table
src=results/continual/sni-order1-storage
docs=docs/results/continual/storage
cd "$repo"
mkdir -p "$docs"
source "$repo/benchmarks/lanes_common.sh"  # step_state
eval "$(grep -m 1 '^rows=(' "$repo/benchmarks/sni_storage_lanes.sh")"  # the lane's rows, in its order: one list
[ ${#rows[@]} -gt 0 ] || { echo "error: no rows=(...) line in benchmarks/sni_storage_lanes.sh" >&2; exit 2; }
take() {  # take SRC DEST: copy WORKDIR/SRC to DEST when it is new or newer
  if [ ! -f "$2" ] || [ "$work/$1" -nt "$2" ]; then cp -p "$work/$1" "$2"; echo "copied $1 -> $2"; fi
}
table=()
for r in "${rows[@]}"; do
  label="$(storage_label "$r")"; stem="$docs/${label/-/_}"  # qv-bf16 -> qv_bf16, all7int8 -> all7_int8
  if [[ "$(step_state "$work/logs/storage_$r.log")" == "STEP DONE"* ]]; then
    take "$src/$r/summary.json" "${stem}_summary.json"
    [ ! -f "$work/$src/$r/ap_curves.png" ] || take "$src/$r/ap_curves.png" "${stem}_ap_curves.png"
  elif [ -f "${stem}_summary.json" ]; then
    echo "collected before: storage_$r"  # another worktree's, or its worktree is gone: the committed summary stands
  else
    echo "not finished: storage_$r"; continue
  fi
  table+=("$label=${stem}_summary.json")
done
# Screenings that trained nothing (scripts/requantized_run.py: a finished row's adapters stored again in int8 and
# answered again), copied here by hand from their worktree; a table row when its summary is committed.
screens=("all7-int8 (bf16 requantised, only the switch trained)=$docs/all7_int8_from_bf16_summary.json")
for s in "${screens[@]}"; do [ ! -f "${s#*=}" ] || table+=("$s"); done
[ ${#table[@]} -gt 0 ] || { echo "no storage row has finished yet"; exit 0; }
args=(bench continual --storage-table "${table[@]}"
      --reference "all7-fp32 (SNI-CPU v1)=docs/results/continual/sni_v1_order1_summary.json" --out "$docs")
echo "+ hyperadapt ${args[*]}"
OMP_NUM_THREADS=1 PYTHONPATH="$repo/src" .venv/bin/python -m hyperadapt "${args[@]}"
