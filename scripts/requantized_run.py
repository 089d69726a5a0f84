"""Start a SwitchCIT run whose task adapters are a finished run's, stored again in a narrower dtype.

    python scripts/requantized_run.py SRC_RUN DST_OUT --dtype int8
    hyperadapt bench continual --config configs/switch_sni.yaml --methods switchcit oracle \\
        --set lora.storage_dtype=int8 ... (SRC_RUN's other overrides) --out DST_OUT

SRC_RUN is a finished ``switchcit`` run (``OUT/switchcit`` of ``hyperadapt bench continual``); DST_OUT/switchcit
becomes a run of the same config but ``lora.storage_dtype = DTYPE``, with each of SRC_RUN's adapters stored in
DTYPE (int8: ``hyperadapt.core.peft_io.quantize_int8``), no stage done and the base model's zero-shot scores
kept. ``bench continual`` then trains nothing (every adapter is there: ``train_and_store`` reuses it), retrains the
switch after each task as SwitchCIT does (seeded: the same switch) and answers every stage with the stored
adapters; the oracle is seeded from it as usual.

What it measures is a screening, not the run a ``lora.storage_dtype=int8`` config trains: the adapters were
rounded to SRC_RUN's dtype first (bf16: relative error up to 2^-8 per element), so they are rounded twice and
the AP is, if anything, lower than that of a run that stored int8 from the trained float32 factors.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from hyperadapt.core.peft_io import PEFT_CONFIG, PEFT_WEIGHTS, save_weights
from hyperadapt.io import load_tensors, save_json
from hyperadapt.methods.continual.store import AdapterStore

NARROWER = {"float32": ("bfloat16", "int8"), "bfloat16": ("int8",)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="a finished switchcit run folder")
    parser.add_argument("out", type=Path, help="the bench continual --out folder to prepare (must not exist)")
    parser.add_argument("--dtype", choices=["bfloat16", "int8"], default="int8")
    args = parser.parse_args()
    record = json.loads((args.src / "run.json").read_text())
    state = json.loads((args.src / "state.json").read_text())
    have = record["config"]["lora"]["storage_dtype"]
    if record["method"] != "switchcit" or state["completed"] != len(record["tasks"]):
        raise SystemExit(f"error: {args.src} is not a finished switchcit run")
    if args.dtype not in NARROWER.get(have, ()):
        raise SystemExit(f"error: {args.src} stores {have}: {args.dtype} is not narrower")
    dst = args.out / "switchcit"
    if args.out.exists():
        raise SystemExit(f"error: {args.out} exists: choose a new folder")
    record["config"]["lora"]["storage_dtype"] = args.dtype
    record["status"] = "running"
    for folder in sorted((args.src / "adapters").glob("[0-9][0-9][0-9]-*")):
        target = dst / "adapters" / folder.name
        target.mkdir(parents=True)
        for name in (PEFT_CONFIG, "task.json"):
            shutil.copy2(folder / name, target / name)
        tensors = load_tensors(folder / PEFT_WEIGHTS, "adapter weights")
        if args.dtype == "bfloat16":
            tensors = {k: v.to(torch.bfloat16) for k, v in tensors.items()}
        save_weights(tensors, target, int8=args.dtype == "int8")
    AdapterStore(dst / "adapters", args.dtype).write_manifest()
    save_json(record, dst / "run.json")
    save_json({"completed": 0, "zero_shot": state["zero_shot"], "rows": []}, dst / "state.json")
    print(
        f"{dst}: {len(record['tasks'])} adapters stored {args.dtype} (from {have}); "
        f"now run bench continual on {args.out}"
    )


if __name__ == "__main__":
    main()
