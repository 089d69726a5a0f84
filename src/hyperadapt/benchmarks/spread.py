r"""Does a hypernetwork's output depend on its condition? TAGI's generated ΔW and MeGan's β across tasks.

For a TAGI or Hypter run (or a released checkpoint) and a split, the hypernetwork generates the adapter of
every task's instruction, and :meth:`TagiHypernetwork.spread` splits the adapters' ΔW into the shared
(instruction-independent) part, the generated part, and the generated part's deviation across
instructions (``instruction``: what tells one task from another); beside it, the mean cosine similarity
between the instruction vectors the hypernetwork reads (near 1: the encoder barely tells the instructions
apart). For a MeGan run, the first instance of each of the first ``--prompts`` tasks is run under every
task's condition, and :meth:`MeganMethod.spread` compares the β of every gate: how far β moved from 1, and
how much of that differs between conditions. No answers are generated: minutes per run on one CPU core.

    hyperadapt bench spread runs/sni/tagi_D/tagi "no fusion=runs/sni/tagi_D/tagi-no-fusion" \
        --data sni:../shared/data/sni --splits train test --tasks 60 --out results/sni/spread.json
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hyperadapt.benchmarks import Parser, command
from hyperadapt.errors import UserError
from hyperadapt.io import check_out_file, save_json

if TYPE_CHECKING:
    from torch import Tensor


def mean_cosine(vectors: Tensor) -> float:
    """Mean cosine similarity over the distinct pairs of the rows of ``vectors`` ``[N, D]`` (N ≥ 2)."""
    import torch
    from torch.nn import functional as F

    unit = F.normalize(vectors.float(), dim=-1)
    sims = unit @ unit.T  # [N, N]
    n = sims.shape[0]
    return float(sims[~torch.eye(n, dtype=torch.bool)].mean())


def measure(
    run: Path, data: str, splits: list[str], tasks: int | None, prompts: int = 8, max_prompt_tokens: int = 384
) -> dict[str, Any]:
    """``{"method": ..., split: spread + n_tasks (+ mean_cosine for TAGI)}`` of the hypernetwork in ``run``.
    Raises ``ValueError`` for a run of another method or a split with fewer than 2 tasks."""
    from hyperadapt.data import load_tasks
    from hyperadapt.data.prompts import build_prompt
    from hyperadapt.methods.tagi.instructions import instruction_text
    from hyperadapt.runs import Run

    opened = Run.open(run)
    kind = opened.method
    if opened.entry.serves_as != "condition":
        raise UserError(f"{run} holds a {kind!r} run: the spread reads TAGI, Hypter and MeGan hypernetworks")
    method = opened.load()
    out: dict[str, Any] = {"method": kind}
    for split in splits:
        chosen = load_tasks(data, split)[:tasks]
        if len(chosen) < 2:
            raise UserError(f"{data} [{split}] has {len(chosen)} task(s): the spread needs at least 2")
        if kind == "megan":
            texts = [
                build_prompt(method.tokenizer, t, t.instances[0], method.setting, max_tokens=max_prompt_tokens)
                for t in chosen[:prompts]
            ]
            out[split] = {**method.spread([t.instruction for t in chosen], texts), "n_tasks": len(chosen)}
            continue
        vectors = method.vectors([instruction_text(t, method.cfg.setting) for t in chosen])  # [N, D]
        out[split] = {
            **method.hypernet.spread(vectors),
            "mean_cosine": mean_cosine(vectors),
            "n_tasks": len(chosen),
            "encoder": method.cfg.encoder,
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = Parser(
        prog="hyperadapt bench spread", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("runs", nargs="+", help="TAGI, Hypter or MeGan runs or released checkpoints: PATH or LABEL=PATH")
    ap.add_argument("--data", default="sni:../shared/data/sni", help="task data whose instructions are read")
    ap.add_argument("--splits", nargs="+", default=["train", "test"])
    ap.add_argument("--tasks", type=int, default=None, help="the first N tasks of each split (default: all)")
    ap.add_argument("--prompts", type=int, default=8, help="MeGan: prompts run under every condition")
    ap.add_argument("--max-prompt-tokens", type=int, default=384, help="MeGan: longer prompts are cut (one rule)")
    ap.add_argument("--out", type=Path, required=True, help="results JSON")
    args = ap.parse_args(argv)
    if args.tasks is not None and args.tasks < 2:
        ap.error(f"--tasks must be at least 2, got {args.tasks}")
    if args.prompts < 1 or args.max_prompt_tokens < 1:
        ap.error(f"--prompts and --max-prompt-tokens must be at least 1, got {args.prompts}, {args.max_prompt_tokens}")
    check_out_file(args.out, "--out")
    named = [
        (label, Path(path)) if sep else (spec, Path(spec))
        for spec in args.runs
        for label, sep, path in [spec.partition("=")]
    ]
    result: dict[str, Any] = {"data": args.data, "splits": args.splits, "runs": {}, "command": command("spread", argv)}
    for label, run in named:
        result["runs"][label] = {
            "path": str(run),
            **measure(run, args.data, args.splits, args.tasks, args.prompts, args.max_prompt_tokens),
        }
        for split in args.splits:
            s = result["runs"][label][split]
            if result["runs"][label]["method"] == "megan":
                print(
                    f"{label} [{split}, {s['n']} conditions × {s['prompts']} prompts]: β − 1 {s['deviation']:.4f} "
                    f"(RMS), condition-dependent {s['condition']:.4f} ({100 * s['condition_share']:.2f} %)",
                    flush=True,
                )
                continue
            print(
                f"{label} [{split}, {s['n_tasks']} tasks]: |ΔW| shared {s['shared']:.4f}, generated "
                f"{s['generated']:.4f}, instruction-dependent {s['instruction']:.4f} "
                f"({100 * s['instruction_share']:.2f} % of the adapter); instruction vectors' mean cosine "
                f"{s['mean_cosine']:.3f} ({s['encoder']} encoder)",
                flush=True,
            )
        save_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
