#!/usr/bin/env bash
# The GPU check (issue 37): one script to run when a CUDA machine is lent, within 10 minutes, writing JSON
# that docs/RESULTS.md quotes. Nothing in the project depends on it.
#
#   benchmarks/gpu_check.sh [OUT]        # OUT defaults to results/gpu_check
#
# Stages, each under its own time limit (seconds), each a JSON file in OUT; OUT/gpu_check.json lists every
# stage's exit code and wall time (a stage that fails or runs out of time is recorded, and the rest go on):
#   env     (10)   GPU name and memory, torch/CUDA versions, whether the default model is installed
#   core    (150)  hyperadapt bench core --device cuda on the default model (latency, training steps, memory)
#   scale   (150)  hyperadapt bench scale --device cuda: bf16 steps of LoRA / TAGI stage 2 / MeGan at 135M,
#                  360M and 1B (random weights, built in code), 1B also at full depth, tokens/s of generation
#   train_* (60 each) real training steps through the loop in bf16 on the default model: multi-task LoRA and
#                  MeGan, 20 steps each on the embedded synthetic suite; losses and seconds per step
#                  (train_bf16.json)
#   serve   (120)  hyperadapt bench serve --model default (TAGI-style adapters, mixed vs single conditions)
# Python: PYTHON (default .venv/bin/python, else python3); the package must import from this checkout.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$repo/results/gpu_check}"
py="${PYTHON:-$repo/.venv/bin/python}"
[ -x "$py" ] || py="$(command -v python3)"
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$out"
cd "$repo"
"$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
  echo "error: no CUDA device visible to $py: this check needs a GPU" >&2; exit 2; }
: > "$out/stages.jsonl"

stage() {  # stage NAME LIMIT_S COMMAND...: run, record exit code and wall seconds
  local name="$1" limit="$2"; shift 2
  local start rc ms
  start=$(date +%s%N)
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  printf '{"stage": "%s", "rc": %d, "wall_ms": %d, "limit_s": %d, "log": "%s.log"}\n' \
    "$name" "$rc" "$ms" "$limit" "$name" >> "$out/stages.jsonl"
  echo "$name: rc=$rc ($((ms / 1000)) s)"
}

stage env 10 "$py" - "$out/env.json" <<'EOF'
import json, sys, torch
from hyperadapt.models import default_model_installed
p = torch.cuda.get_device_properties(0)
json.dump({"gpu": p.name, "memory_gib": p.total_memory / 2**30, "torch": torch.__version__,
           "cuda": torch.version.cuda, "bf16": torch.cuda.is_bf16_supported(),
           "default_model_installed": default_model_installed()}, open(sys.argv[1], "w"), indent=1)
EOF

stage core 150 "$py" -m hyperadapt bench core --device cuda --batch-sizes 1 8 32 --seq 128 --train-batch 8 \
  --out "$out/bench_core_cuda.json"

stage scale 150 "$py" -m hyperadapt bench scale --device cuda --sizes 135m 360m 1b --depths 1 2 \
  --full-depth 1b --repeats 3 --gen-tokens 32 --out "$out/bench_scale_cuda.json"

for method in multitask-lora megan; do  # 20 bf16 steps of each through the training loop
  stage "train_$method" 60 "$py" -m hyperadapt train "$method" --out "$out/runs/$method" --set model=default \
    --set data=synthetic --set train.steps=20 --set train.batch_size=8 --set train.precision=bf16 \
    --set train.log_every=1 --set train.save_every=0
done
"$py" - "$out" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
result = {}
for method in ("multitask-lora", "megan"):
    log = out / "runs" / method / "train_log.jsonl"
    state = sorted((out / "runs" / method / "checkpoints").glob("step-*/state.json"))
    if log.exists() and state:
        seconds = json.loads(state[-1].read_text())["seconds"]
        losses = [json.loads(line)["loss"] for line in log.read_text().splitlines()]
        result[method] = {"steps": len(losses), "losses": losses, "seconds_per_step": seconds / len(losses)}
(out / "train_bf16.json").write_text(json.dumps(result, indent=1))
EOF

stage serve 120 "$py" -m hyperadapt bench serve --model default --requests 64 --max-tokens 16 \
  --out "$out/bench_serve_default_cuda.json"

"$py" - "$out" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
stages = [json.loads(line) for line in (out / "stages.jsonl").read_text().splitlines()]
files = sorted(p.name for p in out.glob("*.json") if p.name != "gpu_check.json")
(out / "gpu_check.json").write_text(json.dumps({"stages": stages, "files": files}, indent=1))
print(json.dumps(stages))
EOF
