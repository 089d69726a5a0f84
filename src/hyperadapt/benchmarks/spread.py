r"""Do a TAGI hypernetwork's adapters depend on the instruction? Norms of the generated ΔW across tasks.

For each run (a trained TAGI or Hypter run, or a released checkpoint) and split, the hypernetwork generates
the adapter of every task's instruction, and :meth:`TagiHypernetwork.spread` splits the adapters' ΔW into
the shared (instruction-independent) part, the generated part, and the generated part's deviation across
instructions (``instruction``: what tells one task from another). Beside it, the mean cosine similarity
between the instruction vectors the hypernetwork reads (near 1: the encoder barely tells the instructions
apart). No answers are generated: a minute per run on one CPU core.

    hyperadapt bench spread runs/sni/tagi_D/tagi "no fusion=runs/sni/tagi_D/tagi-no-fusion" \
        --data sni:../shared/data/sni --splits train test --tasks 60 --out results/sni/spread.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hyperadapt.benchmarks import command
from hyperadapt.io import check_out_file, save_json


def mean_cosine(vectors) -> float:
    """Mean cosine similarity over the distinct pairs of the rows of ``vectors`` ``[N, D]`` (N ≥ 2)."""
    import torch
    from torch.nn import functional as F

    unit = F.normalize(vectors.float(), dim=-1)
    sims = unit @ unit.T  # [N, N]
    n = sims.shape[0]
    return float(sims[~torch.eye(n, dtype=torch.bool)].mean())


def measure(run: Path, data: str, splits: list[str], tasks: int | None) -> dict:
    """``{split: spread + mean_cosine + n_tasks}`` of the hypernetwork in ``run``."""
    from hyperadapt.data import load_tasks
    from hyperadapt.methods.tagi.instructions import instruction_text
    from hyperadapt.methods.tagi.method import load_tagi

    method = load_tagi(run)
    out = {}
    for split in splits:
        chosen = load_tasks(data, split)[:tasks]
        if len(chosen) < 2:
            raise ValueError(f"{data} [{split}] has {len(chosen)} task(s): the spread needs at least 2")
        vectors = method.vectors([instruction_text(t, method.cfg.setting) for t in chosen])  # [N, D]
        out[split] = {**method.hypernet.spread(vectors), "mean_cosine": mean_cosine(vectors),
                      "n_tasks": len(chosen), "encoder": method.cfg.encoder}
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="hyperadapt bench spread", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="TAGI runs or released checkpoints: PATH or LABEL=PATH")
    ap.add_argument("--data", default="sni:../shared/data/sni", help="task data whose instructions are read")
    ap.add_argument("--splits", nargs="+", default=["train", "test"])
    ap.add_argument("--tasks", type=int, default=None, help="the first N tasks of each split (default: all)")
    ap.add_argument("--out", type=Path, required=True, help="results JSON")
    args = ap.parse_args(argv)
    if args.tasks is not None and args.tasks < 2:
        ap.error(f"--tasks must be at least 2, got {args.tasks}")
    check_out_file(args.out, "--out")
    named = [(label, Path(path)) if sep else (spec, Path(spec))
             for spec in args.runs for label, sep, path in [spec.partition("=")]]
    result: dict = {"data": args.data, "splits": args.splits, "runs": {}, "command": command("spread", argv)}
    for label, run in named:
        result["runs"][label] = {"path": str(run), **measure(run, args.data, args.splits, args.tasks)}
        for split in args.splits:
            s = result["runs"][label][split]
            print(f"{label} [{split}, {s['n_tasks']} tasks]: |ΔW| shared {s['shared']:.4f}, generated "
                  f"{s['generated']:.4f}, instruction-dependent {s['instruction']:.4f} "
                  f"({100 * s['instruction_share']:.2f} % of the adapter); instruction vectors' mean cosine "
                  f"{s['mean_cosine']:.3f} ({s['encoder']} encoder)", flush=True)
        save_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
