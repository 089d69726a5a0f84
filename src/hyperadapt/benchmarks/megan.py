"""MeGan against its baselines on seen conditions, unseen tasks, unseen paraphrases and an unseen condition
type, plus what β costs and looks like, in one JSON.

    hyperadapt bench megan --steps 120 --out results/megan/synthetic.json --plots docs/results/megan
    hyperadapt bench megan --quick                                   # a smoke-sized budget

Methods, all on the same base model and data with the same budget (``--steps`` optimizer steps of batch 8;
Reptile gets as many outer steps as give it the same number of training examples, ``steps·8 /
(inner_steps·support_size)``), each from its config file in ``configs/`` (``--set`` overrides the two
MeGan configs):

- ``zero-shot``: the base model with the condition in the prompt;
- ``multitask-lora``: LoRA on all linear layers, condition in the prompt (``configs/multitask_lora.yaml``);
- ``metaicl``: MetaICL-style meta-training, evaluated with the task's two demonstrations in context;
- ``reptile``: a Reptile-meta-learned LoRA initialisation, adapted per test task on its two demonstrations;
- ``megan``: the condition reaches the model only through β (``configs/megan.yaml``, setting none);
- ``megan-def``: MeGan with the condition also in the prompt, as in the paper (``configs/megan_def.yaml``);
- ``tagi`` (with ``--tagi-run RUN``): a trained TAGI run, the other hypernetwork.

Splits of the synthetic suite: ``seen`` (trained conditions, new inputs), ``unseen_paraphrase`` (held-out
wording of a seen task), ``unseen`` (new tasks), ``unseen_type`` (the persona condition type, never trained).
``--plots DIR`` writes MeGan's β distribution per layer (``megan_beta.png``) and its cost over the base model,
per token vs per channel (``megan_cost.json``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hyperadapt.benchmarks import Parser, command, machine
from hyperadapt.benchmarks.common import add_set_option, check_outputs, save, score
from hyperadapt.config import load_config, to_dict
from hyperadapt.data import load_tasks
from hyperadapt.errors import UserError
from hyperadapt.evaluation.harness import EvalConfig, Method
from hyperadapt.methods.baselines.meta import MetaICLConfig, ReptileConfig, train_metaicl, train_reptile
from hyperadapt.methods.baselines.multitask_lora import MultiTaskLoraConfig, train_multitask_lora
from hyperadapt.methods.baselines.zero_shot import zero_shot
from hyperadapt.methods.megan import MeganConfig, MeganMethod, train_megan
from hyperadapt.methods.megan.analysis import beta_plot_and_cost
from hyperadapt.models import load_base_model
from hyperadapt.training import training_seconds

MethodConfig = MultiTaskLoraConfig | MetaICLConfig | ReptileConfig | MeganConfig
# name: (config class, config file, train(cfg, out_dir, model_and_tokenizer=...) -> method)
CONFIGS: dict[str, tuple[type[MethodConfig], str, Callable[..., Method]]] = {
    "multitask-lora": (MultiTaskLoraConfig, "configs/multitask_lora.yaml", train_multitask_lora),
    "metaicl": (MetaICLConfig, "configs/megan_metaicl.yaml", train_metaicl),
    "reptile": (ReptileConfig, "configs/megan_reptile.yaml", train_reptile),
    "megan": (MeganConfig, "configs/megan.yaml", train_megan),
    "megan-def": (MeganConfig, "configs/megan_def.yaml", train_megan),
}
METHODS = ["zero-shot", *CONFIGS]
SPLITS = ["seen", "unseen_paraphrase", "unseen", "unseen_type"]
WIDE = ("seen", "unseen_paraphrase")  # 34 tasks each: evaluated on --seen-limit instances per task


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = Parser(prog="hyperadapt bench megan", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300, help="training steps (batch 8) of every trained method")
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    add_set_option(p, "Overrides of both MeGan configs.")
    p.add_argument(
        "--data",
        default="synthetic",
        help="training and evaluation data (synthetic, sni:PATH); the configs are the synthetic ones "
        "with `data` replaced: for SNI also pass --splits test and, for MeGan, --set "
        "condition_max_tokens=64 train.max_length=384 (as configs/megan_sni.yaml)",
    )
    p.add_argument("--splits", nargs="+", default=SPLITS)
    p.add_argument("--limit", type=int, default=20, help="instances per task to evaluate (0: all)")
    p.add_argument("--seen-limit", type=int, default=5, help="instances per task on seen / unseen_paraphrase")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="train.max_length of every trained method (SNI-CPU v1: 384); default: each config's",
    )
    p.add_argument(
        "--max-prompt-tokens",
        type=int,
        default=None,
        help="evaluation prompt budget (the one truncation rule); default: the model's context",
    )
    p.add_argument("--tagi-run", default=None, help="also evaluate this trained TAGI run")
    p.add_argument("--plots", default=None, help="write MeGan's β plot and cost report into this folder")
    p.add_argument("--runs", default="runs/bench_megan", help="where the trained runs go (resumable)")
    p.add_argument("--out", default="results/megan.json")
    p.add_argument("--quick", action="store_true", help="4 steps, 2 instances per task: a smoke run")
    return p.parse_args(argv)


def method_config(name: str, args: argparse.Namespace) -> MethodConfig:
    """The config of ``name``: its file, the shared data and budget, and (for MeGan) ``--set``."""
    cls, path, _ = CONFIGS[name]
    steps = 4 if args.quick else args.steps
    if name == "reptile":
        base = load_config(ReptileConfig, path, [f"data={args.data}"])
        per_step = base.inner_steps * base.support_size
        steps = max(1, round(steps * 8 / per_step))
    overrides = [f"data={args.data}", f"train.steps={steps}"]
    if args.max_length:
        overrides.append(f"train.max_length={args.max_length}")
    if args.quick:
        overrides.append("train.save_every=0")
    if name.startswith("megan"):
        overrides += args.set
    return load_config(cls, path, overrides)


def train_method(
    name: str, args: argparse.Namespace, runs: Path, cfg: MethodConfig | None = None
) -> tuple[Method, dict[str, Any] | None]:
    """The method ``name``, trained into ``runs`` with ``cfg`` (default: ``method_config(name, args)``), and its
    config as a dict (None for zero-shot and a loaded TAGI run)."""
    if name == "zero-shot":
        return zero_shot("default", "def", model_and_tokenizer=load_base_model("default")), None
    if name == "tagi":
        from hyperadapt.methods.tagi import load_tagi

        return load_tagi(args.tagi_run), None
    _, _, train = CONFIGS[name]
    if cfg is None:
        cfg = method_config(name, args)
    return train(cfg, runs / name, model_and_tokenizer=load_base_model(cfg.model)), to_dict(cfg)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    check_outputs(args.out, runs=args.runs, plots=args.plots)
    names = [m for m in METHODS if m in args.methods] + (["tagi"] if args.tagi_run else [])
    if args.set and not any(m.startswith("megan") for m in names):
        raise UserError(f"--set {' '.join(args.set)}: --set overrides the MeGan configs, and --methods has no megan")
    # every config is built (its file read, its overrides checked) before any work
    configs = {name: method_config(name, args) for name in names if name in CONFIGS}
    limit = 2 if args.quick else (args.limit or None)
    seen_limit = 2 if args.quick else (args.seen_limit or None)
    ecfg = {
        s: EvalConfig(
            limit=seen_limit if s in WIDE else limit,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            max_prompt_tokens=args.max_prompt_tokens,
        )
        for s in args.splits
    }
    splits = {s: load_tasks(args.data, s) for s in args.splits}
    runs, started = Path(args.runs), time.perf_counter()
    result: dict[str, Any] = {
        "command": command("megan", argv),
        "machine": machine(),
        "eval": {s: to_dict(c) for s, c in ecfg.items()},
        "configs": {},
        "results": {},
        "train_s": {},  # this process's wall time per method (0 s for a run an earlier session finished)
        "train_steps_s": {},  # the optimiser steps' seconds over every session, from the checkpoints
        "info": {},
    }
    plotted = next((m for m in names if m.startswith("megan")), None) if args.plots else None
    for name in names:
        t0 = time.perf_counter()
        method, cfg = train_method(name, args, runs, configs.get(name))
        method.name = name  # megan and megan-def are both MeganMethods
        result["train_s"][name] = time.perf_counter() - t0
        # the tagi row is a run loaded from --tagi-run, trained elsewhere: no steps of this benchmark's
        result["train_steps_s"][name] = None if name == "tagi" else training_seconds(runs / name)
        result["configs"][name] = cfg
        if isinstance(method, MeganMethod):  # megan, megan-def
            result["info"][name] = {"hypernetwork_parameters": method.hypernet.num_parameters()}
            if name == plotted:
                result["info"][name]["cost"] = beta_plot_and_cost(method, args.plots)
        result["results"][name] = score(method, splits, ecfg, "default", args.data, runs / "answers")
        save(result, args.out)
        del method
    result["total_s"] = time.perf_counter() - started
    save(result, args.out)
    return result


if __name__ == "__main__":
    main()
