r"""TAGI against its baselines and ablations, instruction sensitivity and inference cost, in one JSON.

    hyperadapt bench tagi --config configs/tagi.yaml --eval-splits unseen --limit 20 \
        --out results/tagi_synthetic.json
    hyperadapt bench tagi --config configs/tagi_sni.yaml --eval-splits test --limit 10 \
        --out results/tagi_sni_def.json
    hyperadapt bench tagi --quick ...                        # a smoke-sized budget

Methods (same base model, data and step budget): zero-shot; multi-task LoRA with the instruction in the
prompt (on TAGI's targets and rank); a Hypter-style hypernetwork (CE only); TAGI; TAGI without pretraining,
without KL, without alignment, without fusion (the ablations reuse TAGI's teachers and its stage-1
hypernetwork, which those settings do not change). Instruction sensitivity: TAGI (and TAGI without fusion)
with each task's instruction replaced by another task's, or by a random string. Efficiency: wall time and
FLOPs (torch's FlopCounterMode, adapter generation included) to answer 100 instances of one task, TAGI
without fusion vs the instruction-in-prompt LoRA.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch.utils.flop_counter import FlopCounterMode
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.benchmarks import Parser, command, machine
from hyperadapt.benchmarks.common import add_set_option, check_outputs, save, score, table_rows
from hyperadapt.config import apply_overrides, from_dict, load_config, to_dict
from hyperadapt.data import load_tasks
from hyperadapt.data.prompts import prompt_ids
from hyperadapt.data.schema import Instance, Task
from hyperadapt.errors import UserError
from hyperadapt.evaluation.harness import EvalConfig, Method, PromptMethod, Query, answer, make_queries, prompt_budget
from hyperadapt.evaluation.metrics import bootstrap_mean, paired_bootstrap
from hyperadapt.io import check_out_file, is_finite_number, load_json
from hyperadapt.methods.baselines.multitask_lora import AdapterMethod, MultiTaskLoraConfig, train_multitask_lora
from hyperadapt.methods.baselines.zero_shot import zero_shot
from hyperadapt.methods.tagi import TagiConfig, TagiMethod, train_tagi
from hyperadapt.methods.tagi.hypter import hypter_config, train_hypter
from hyperadapt.methods.tagi.instructions import random_instructions
from hyperadapt.methods.tagi.instructions import shuffled_instructions as shuffled
from hyperadapt.methods.tagi.method import HYPERNET_DIR
from hyperadapt.methods.tagi.teachers import TEACHERS_FILE
from hyperadapt.models import load_base_model
from hyperadapt.training import TrainConfig, training_seconds

ABLATIONS = {
    "tagi-no-pretrain": ["pretrain.enabled=false"],
    "tagi-no-kl": ["losses.kl_weight=0"],
    "tagi-no-align": ["losses.align_weight=0"],
    "tagi-no-fusion": ["fusion=false"],
}
MAIN_ROWS = {"tagi-no-fusion"}  # a variant scored on --limit like TAGI, not on --ablation-limit
METHODS = ["zero-shot", "multitask-lora", "hypter", "tagi", *ABLATIONS]
# the rows whose adapter a hypernetwork generates from the instruction: each gets the shuffled- and
# random-instruction rows (Hypter-style since issue 36's 4x budget; the 1x table measured the first two)
HYPERNETWORKS = ("tagi", "tagi-no-fusion", "hypter")
QUICK = [
    "train.steps=4",
    "teachers.train.steps=4",
    "pretrain.train.steps=4",
    "train.save_every=0",
    "teachers.train.save_every=0",
    "pretrain.train.save_every=0",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = Parser(prog="hyperadapt bench tagi", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/tagi.yaml", help="TAGI config; the baselines use its budget")
    add_set_option(p, "Overrides of the TAGI config.")
    p.add_argument("--eval-splits", nargs="+", default=["unseen"])
    p.add_argument("--limit", type=int, default=20, help="instances per task to evaluate (0: all)")
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument(
        "--no-sensitivity",
        action="store_true",
        help=f"skip each hypernetwork's ({', '.join(HYPERNETWORKS)}) rows with shuffled and random instructions",
    )
    p.add_argument(
        "--collect",
        nargs="+",
        default=None,
        metavar="RESULT.json[=LABEL]",
        help="merge the results of earlier runs of this benchmark (rows, sensitivity, efficiency, train "
        "times, each row's command) into --out, its .md table and its .png bars; trains and evaluates "
        "nothing. RESULT.json=LABEL names that file's rows 'ROW (LABEL)', to keep two variants of "
        "one method apart (otherwise a later file's row replaces an earlier one's); labels that are budgets "
        "(RESULT.json=1x, RESULT.json=4x) pair each row with the multi-task LoRA of its own budget and draw "
        "each method's score against budget with 95%% intervals in OUT.budget.png",
    )
    p.add_argument(
        "--no-eval",
        action="store_true",
        help="train or load the methods but skip their evaluations (e.g. for the efficiency rows alone)",
    )
    p.add_argument("--efficiency-instances", type=int, default=100, help="0 skips the efficiency measurement")
    p.add_argument(
        "--efficiency-per-task",
        type=int,
        nargs="+",
        default=[20],
        metavar="K",
        help="also report the efficiency with each task's set-up (adapter generation) amortized over K "
        "answers per task (the SNI evaluation answers 20 per task)",
    )
    p.add_argument(
        "--ablation-limit",
        type=int,
        default=None,
        help="instances per task for the ablations (not TAGI without fusion, a main row) and the "
        "sensitivity rows (default: --limit)",
    )
    p.add_argument(
        "--budget",
        choices=["total", "stage2"],
        default="total",
        help="total: the multi-task LoRA and Hypter train on as many examples as TAGI's teachers, "
        "stage 1 and stage 2 together (SNI-CPU v1); stage2: on TAGI's stage-2 steps only",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument(
        "--max-prompt-tokens",
        type=int,
        default=None,
        help="evaluation prompt budget (the one truncation rule); default: the model's context",
    )
    p.add_argument("--runs", default="runs/bench_tagi", help="where the trained runs go (resumable)")
    p.add_argument("--out", default="results/tagi.json")
    p.add_argument("--quick", action="store_true", help="4 steps per stage, 2 instances per task: a smoke run")
    args = p.parse_args(argv)
    if any(k < 1 for k in args.efficiency_per_task):
        p.error(f"--efficiency-per-task: answers per task must be at least 1, got {args.efficiency_per_task}")
    return args


def fresh(cfg: TagiConfig) -> tuple[PreTrainedModel, Tokenizer]:
    """A fresh copy of the base model per method: methods wrap it (injection, PEFT)."""
    return load_base_model(cfg.model)


def tagi_examples(cfg: TagiConfig) -> dict[str, int]:
    """Training examples (steps × batch × accumulation) of each TAGI stage and their total.

    Reused teachers (``teachers.path``) count too: this TAGI distils from them, so the baselines' equal
    budget includes them. Their own ``teachers.json`` says how they were trained; where it is missing or
    silent, ``teachers.train`` stands in."""

    def n(t: TrainConfig) -> int:
        return t.steps * t.batch_size * t.grad_accum

    teachers = cfg.teachers.train
    record = Path(cfg.teachers.path) / TEACHERS_FILE if cfg.teachers.path else None
    if record is not None and record.is_file():
        saved = load_json(record, "teachers file").get("train")
        if isinstance(saved, dict):
            teachers = from_dict(type(cfg.teachers.train), saved)
    out = {
        "teachers": n(teachers),
        "stage1": n(cfg.pretrain.train) if cfg.pretrain.enabled else 0,
        "stage2": n(cfg.train),
    }
    return {**out, "total": sum(out.values())}


def baseline_train(cfg: TagiConfig, budget: str) -> TrainConfig:
    """The baselines' train config: TAGI's stage-2 settings, with as many steps as ``budget`` gives."""
    train = copy.deepcopy(cfg.train)
    if budget == "total":
        per_step = train.batch_size * train.grad_accum
        train.steps = -(-tagi_examples(cfg)["total"] // per_step)  # ceil: at least TAGI's examples
    return train


def train_method(
    name: str, cfg: TagiConfig, runs: Path, budget: str = "stage2"
) -> PromptMethod | AdapterMethod | TagiMethod:
    """Train (or resume) ``name`` with the budget of ``cfg``; returns the harness method."""
    if name == "zero-shot":
        return zero_shot(cfg.model, cfg.setting, model_and_tokenizer=fresh(cfg))
    if name == "multitask-lora":
        mcfg = MultiTaskLoraConfig(
            model=cfg.model,
            data=cfg.data,
            split=cfg.split,
            setting=cfg.setting,
            rank=cfg.rank,
            alpha=cfg.alpha,
            target_modules=list(cfg.target_modules),
            train=baseline_train(cfg, budget),
        )
        return train_multitask_lora(mcfg, runs / name, model_and_tokenizer=fresh(cfg))
    if name == "hypter":
        hcfg = replace(hypter_config(cfg), train=baseline_train(cfg, budget))
        return train_hypter(hcfg, runs / name, model_and_tokenizer=fresh(cfg))
    if name == "tagi":
        return train_tagi(cfg, runs / name, model_and_tokenizer=fresh(cfg))
    teachers = cfg.teachers.path or str(runs / "tagi" / "teachers")
    shared = [f"teachers.path={teachers}"]
    stage1 = runs / "tagi" / "pretrain" / HYPERNET_DIR
    if cfg.pretrain.enabled and not cfg.pretrain.path and (stage1 / "hypernet.safetensors").exists():
        shared.append(f"pretrain.path={stage1}")  # stage 1 does not depend on KL, alignment or fusion
    variant = from_dict(TagiConfig, apply_overrides(to_dict(cfg), [*ABLATIONS[name], *shared]))
    # a TAGI run (its run.json says tagi), scored under the ablation's name: its own answer log and result row
    return replace(train_tagi(variant, runs / name, model_and_tokenizer=fresh(cfg)), name=name)


def spread(tasks: list[Task], n: int) -> list[Task]:
    """``n`` instances taken round-robin over ``tasks`` (first instances first), as tasks of those instances."""
    picked: dict[str, list[Instance]] = {t.name: [] for t in tasks}
    depth = 0
    while sum(map(len, picked.values())) < n and depth < max(len(t.instances) for t in tasks):
        for t in tasks:
            if depth < len(t.instances) and sum(map(len, picked.values())) < n:
                picked[t.name].append(t.instances[depth])
        depth += 1
    return [t.with_instances(picked[t.name]) for t in tasks if picked[t.name]]


def _cost(
    method: Method,
    queries: list[Query],
    ecfg: EvalConfig,
    desc: str,
    reset: Callable[[], object] | None = None,
) -> dict[str, float]:
    """Wall time (s) and FLOPs (torch's FlopCounterMode) to answer ``queries``, as two passes, each after
    ``reset()`` when given (cold caches)."""
    if reset is not None:
        reset()
    start = time.perf_counter()
    answer(method, queries, ecfg, desc=desc)
    wall = time.perf_counter() - start
    if reset is not None:
        reset()
    with FlopCounterMode(display=False) as counter:
        answer(method, queries, ecfg, desc=f"{desc} (flops)")
    return {"wall_s": wall, "flops": float(counter.get_total_flops())}


def efficiency(
    methods: dict[str, Method], tasks: list[Task], n: int, ecfg: EvalConfig, per_task: tuple[int, ...] = (20,)
) -> dict[str, Any]:
    """Wall time and FLOPs to answer ``n`` instances spread over ``tasks`` (round-robin, so that the
    instructions' lengths are the split's mix), prompts within ``ecfg.max_prompt_tokens`` as evaluated.

    A method with caches (``clear_cache``: instruction encodings, generated adapters) is measured cold (every
    task's adapter generated: ``wall_s``, ``flops``) and warm (adapters cached: ``answer_*``, the answers
    alone); the difference is the set-up cost of the sample's tasks (``setup_*``). ``amortized[k]`` is the
    cost of the same ``n`` answers at ``k`` answers per task (set-up per task × n / k + the answers; the SNI
    evaluation answers 20 per task), beside the measured spread (about n / tasks answers per task). A method
    without caches costs the same in every regime. ``ratio`` compares the first method with the second in
    each regime.
    """
    if any(k < 1 for k in per_task):
        raise UserError(f"answers per task must be at least 1, got {list(per_task)}")
    chosen = spread(tasks, n)
    instances = sum(len(t.instances) for t in chosen)
    out: dict[str, Any] = {"tasks": len(chosen), "instances": instances, "per_task": list(per_task)}
    for name, method in methods.items():
        queries = make_queries(method, chosen, method.setting, None, prompt_budget(method.model, ecfg, chosen))
        reset = getattr(method, "clear_cache", None)
        cold = _cost(method, queries, ecfg, "efficiency", reset)  # every task's adapter generated in each pass
        row: dict[str, Any] = {
            **cold,
            "prompt_tokens": sum(len(prompt_ids(method.tokenizer, q.prompt)) for q in queries),
        }
        warm = cold
        if reset is not None:  # the answers again, every adapter already generated and cached
            warm = _cost(method, queries, ecfg, "efficiency (cached)")
        setup = {k: max(0.0, cold[k] - warm[k]) for k in ("wall_s", "flops")}
        row.update({f"answer_{k}": warm[k] for k in ("wall_s", "flops")}, **{f"setup_{k}": v for k, v in setup.items()})
        row["amortized"] = {
            str(k): {m: warm[m] + setup[m] / len(chosen) * instances / k for m in ("wall_s", "flops")} for k in per_task
        }
        out[name] = row
    names = list(methods)
    if len(names) == 2:
        a, b = (out[k] for k in names)
        out["ratio"] = {
            "flops": a["flops"] / b["flops"],
            "wall": a["wall_s"] / b["wall_s"],
            "of": names,
            "answers_only": {
                "flops": a["answer_flops"] / b["answer_flops"],
                "wall": a["answer_wall_s"] / b["answer_wall_s"],
            },
            "amortized": {
                k: {
                    "flops": a["amortized"][k]["flops"] / b["amortized"][k]["flops"],
                    "wall": a["amortized"][k]["wall_s"] / b["amortized"][k]["wall_s"],
                }
                for k in a["amortized"]
            },
        }
    return out


def _score(value: Any) -> bool:
    """Whether ``value`` is a score a result records: a finite number from 0 to 100 (points)."""
    return is_finite_number(value) and 0 <= value <= 100


def _check_row(path: str, name: str, row: Any) -> None:
    """Refuse a collected row that is not what this benchmark writes (``score``): split -> ``mean`` (``rougeL``,
    ``em``) and ``tasks`` (task -> ``rougeL``, ``em``, ``n``). Raises ``UserError`` naming the file and the row."""
    if not isinstance(row, dict):
        raise UserError(f"{path}: row {name!r} is not an object of splits (got {type(row).__name__})")
    for split, scored in row.items():
        where = f"{path}: row {name!r} on {split!r}"
        if not isinstance(scored, dict) or not isinstance(scored.get("mean"), dict):
            raise UserError(f"{where} has no 'mean' scores: not a result of hyperadapt bench tagi")
        if not isinstance(scored.get("tasks"), dict):
            raise UserError(f"{where} has no per-task scores ('tasks'): not a result of hyperadapt bench tagi")
        for what, scores in [("mean", scored["mean"]), *((f"task {t!r}", x) for t, x in scored["tasks"].items())]:
            if not isinstance(scores, dict) or not all(_score(scores.get(key)) for key in ("rougeL", "em")):
                raise UserError(f"{where}: its {what} has no rougeL and em scores (numbers from 0 to 100)")
            n = scores.get("n", 1 if what == "mean" else None)
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise UserError(f"{where}: its {what} has n {n!r}, not a positive instance count")


def collect(paths: list[str]) -> dict[str, Any]:
    """One result from several runs of this benchmark (e.g. the rows of a table run as separate jobs): rows,
    sensitivity variants and train times are merged (a later file's row replaces an earlier one's), each
    row keeps the command that produced it (``row_commands``), the last efficiency measurement is kept.
    ``PATH=LABEL`` names the rows of that file ``"ROW (LABEL)"`` (two variants of one method, e.g. two TAGI
    configurations, then stay two rows). Raises ``ValueError`` for a file that is not a result of this
    benchmark (no ``results``, or a row, sensitivity variant or train time that is not what it writes)."""
    merged: dict[str, Any] = {"collected_from": [], "results": {}, "train_s": {}, "row_commands": {}}
    for spec in paths:
        path, label = str(spec), ""
        if "=" in path and not Path(path).exists():
            path, _, label = path.rpartition("=")

        def named(row: str, label: str = label) -> str:
            return f"{row} ({label})" if label else row

        part = load_json(Path(path), "benchmark result")
        if not isinstance(part, dict) or not isinstance(part.get("results"), dict):
            raise UserError(f"{path}: not a result of hyperadapt bench tagi (no 'results')")
        for key in ("train_s", "train_steps_s", "sensitivity"):
            if not isinstance(part.get(key, {}), dict):
                raise UserError(f"{path}: its {key!r} is not an object (got {type(part[key]).__name__})")
        for name, row in part["results"].items():
            _check_row(path, name, row)
        for name, variants in part.get("sensitivity", {}).items():
            if not isinstance(variants, dict):
                raise UserError(f"{path}: sensitivity {name!r} is not an object of variants")
            for kind, row in variants.items():
                _check_row(path, f"{name} ({kind} instruction)", row)
        merged["collected_from"].append({"path": path, "label": label or None, "command": part.get("command")})
        for key in ("config", "eval", "ablation_eval", "budget", "hypernet_parameters"):
            merged.setdefault(key, part.get(key))
        for name, res in part["results"].items():
            merged["results"][named(name)] = res
            merged["row_commands"][named(name)] = part.get("command")
        merged["train_s"].update({named(k): v for k, v in part.get("train_s", {}).items()})
        if "train_steps_s" in part:  # results since it was recorded
            merged.setdefault("train_steps_s", {}).update({named(k): v for k, v in part["train_steps_s"].items()})
        for name, variants in part.get("sensitivity", {}).items():
            merged.setdefault("sensitivity", {}).setdefault(named(name), {}).update(variants)
        if "efficiency" in part:
            merged["efficiency"] = part["efficiency"]
    return merged


def comparisons(result: dict[str, Any], reference: str = "multitask-lora") -> dict[str, Any] | None:
    """Every row's paired difference from ``reference`` (ROUGE-L and EM, ``paired_bootstrap`` over tasks) on
    each split where both answered the same instances of the same tasks; ``None`` without the reference.
    A collected row ``"NAME (LABEL)"`` is compared with ``"REFERENCE (LABEL)"`` when the result has it (the
    reference at the same budget), named in the split's ``against``."""
    rows = result.get("results", {})
    if not any(n == reference or n.startswith(f"{reference} (") for n, r in rows.items() if r):
        return None
    out: dict[str, Any] = {
        "reference": reference,
        "method": "paired bootstrap over tasks, 10,000 resamples, 95%",
        "rows": {},
    }
    for name, res in rows.items():
        label = _label(name)
        against = f"{reference} ({label})" if label and rows.get(f"{reference} ({label})") else reference
        for split, scored in (res or {}).items():
            base = (rows.get(against) or {}).get(split)
            if name == against or base is None:
                continue
            paired = _paired(scored, base, against)
            if paired is not None:  # None: other instances (e.g. an ablation row on fewer per task)
                out["rows"].setdefault(name, {})[split] = paired
    return out


def _paired(scored: dict[str, Any], base: dict[str, Any], against: str) -> dict[str, Any] | None:
    """ROUGE-L and EM of split scores ``scored`` minus ``base`` (``paired_bootstrap`` over tasks), named
    ``against``; None when the two did not answer the same instances of the same tasks."""
    try:
        return {
            **{key: paired_bootstrap(scored["tasks"], base["tasks"], key) for key in ("rougeL", "em")},
            "against": against,
        }
    except ValueError:
        return None


def _label(row: str) -> str | None:
    """The label of a collected row ``"NAME (LABEL)"``, else None."""
    name, sep, rest = row.rpartition(" (")
    return rest[:-1] if sep and name and rest.endswith(")") else None


def _budget(row: str) -> tuple[str, float] | None:
    """``(method, multiple)`` of a row collected with a budget label (``"tagi (4x)"`` -> ``("tagi", 4.0)``);
    None for any other row (no label, or one such as ``"max"`` that is not a number and an ``x``)."""
    label = _label(row)
    if label is None or not label.endswith("x"):
        return None
    try:
        return row.rpartition(" (")[0], float(label[:-1])
    except ValueError:
        return None


def budget_curves(result: dict[str, Any], key: str = "rougeL") -> dict[str, list[dict[str, float]]]:
    """Each method's score against its training budget, from rows collected with budget labels
    (``--collect v1.json=1x x4.json=4x``: rows ``"tagi (1x)"``, ``"tagi (4x)"``): per method, one point per
    budget with ``x`` (the multiple), the instance ``mean`` of ``key`` on the row's first split and its 95%
    bootstrap interval over tasks (``low``, ``high``; :func:`~hyperadapt.evaluation.metrics.bootstrap_mean`).
    Rows without a budget label are left out; empty when none has one."""
    curves: dict[str, list[dict[str, float]]] = {}
    for row, res in result.get("results", {}).items():
        budget = _budget(row)
        if not res or budget is None:
            continue
        scored = next(iter(res.values()))
        interval = bootstrap_mean(scored["tasks"], key)
        point = {"x": budget[1], "mean": interval["mean"], "low": interval["low"], "high": interval["high"]}
        curves.setdefault(budget[0], []).append(point)
    return {name: sorted(points, key=lambda p: p["x"]) for name, points in curves.items()}


def budget_gains(result: dict[str, Any]) -> dict[str, Any] | None:
    """What more budget bought each method: every row collected with a budget label (``"tagi (4x)"``) paired
    with the same method's row at its smallest budget (``"tagi (1x)"``), ROUGE-L and EM, ``paired_bootstrap``
    over tasks (row minus the smaller budget's), on each split where both answered the same instances, named
    in the split's ``against``. ``None`` when no method has rows at two budgets."""
    budgets: dict[str, dict[float, str]] = {}
    for row, res in result.get("results", {}).items():
        budget = _budget(row)
        if res and budget is not None:
            budgets.setdefault(budget[0], {})[budget[1]] = row
    out: dict[str, Any] = {
        "reference": "the same method at its smallest budget",
        "method": "paired bootstrap over tasks, 10,000 resamples, 95%",
        "rows": {},
    }
    for rows in budgets.values():
        smallest = rows[min(rows)]
        for _, row in sorted(rows.items()):
            for split, scored in result["results"][row].items():
                base = result["results"][smallest].get(split)
                if row == smallest or base is None:
                    continue
                paired = _paired(scored, base, smallest)
                if paired is not None:
                    out["rows"].setdefault(row, {})[split] = paired
    return out if out["rows"] else None


def table_means(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{metric: {row: instance mean}}`` of the first split of every row (sensitivity variants as
    ``"name (variant)"`` rows), the numbers the table's ``.md`` gives."""
    means: dict[str, dict[str, float]] = {"ROUGE-L": {}, "EM": {}}
    for name, res in table_rows(result, "{name} ({kind})").items():
        if res:
            mean = next(iter(res.values()))["mean"]
            means["ROUGE-L"][name], means["EM"][name] = mean["rougeL"], mean["em"]
    return means


def plot_table(result: dict[str, Any], path: Path) -> Path | None:
    """Bars of every row's ROUGE-L and EM (``table_means``) in ``path``; ``None`` without matplotlib or rows."""
    means = table_means(result)
    if not means["ROUGE-L"]:
        return None
    try:
        from hyperadapt.report.plots import plot_grouped_bars
    except ImportError:
        return None
    return plot_grouped_bars(means, path, "score (instance mean)", title="hyperadapt bench tagi")


def plot_budget(curves: dict[str, list[dict[str, float]]], path: Path) -> Path | None:
    """:func:`budget_curves` as lines with their intervals in ``path``; ``None`` without matplotlib."""
    try:
        from hyperadapt.report.plots import plot_budget_curves
    except ImportError:
        return None
    xlabel, ylabel = "training budget (multiple of the 1x rows' examples)", "ROUGE-L (instance mean, 95% CI)"
    return plot_budget_curves(curves, path, xlabel, ylabel)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    check_outputs(args.out, runs=args.runs)
    if args.collect:
        written = [Path(args.out), *(Path(args.out).with_suffix(s) for s in (".md", ".png", ".budget.png"))]
        for path in written[2:]:
            check_out_file(path, "--out's plot")
        result: dict[str, Any] = {"command": command("tagi", argv), **collect(args.collect)}
        if {p.resolve() for p in written} & {Path(c["path"]).resolve() for c in result["collected_from"]}:
            raise UserError(
                f"--out {args.out} (or its .md table or .png plots) would overwrite a result it collects: "
                "choose another file"
            )
        result["comparisons"] = comparisons(result)
        curves = budget_curves(result)
        if curves:
            result["budget_curves"] = curves
        gains = budget_gains(result)
        if gains:
            result["budget_gains"] = gains
        save(result, args.out)
        plot_table(result, Path(args.out).with_suffix(".png"))
        if curves:
            plot_budget(curves, Path(args.out).with_suffix(".budget.png"))
        return result
    overrides = [*args.set, *(QUICK if args.quick else [])]
    cfg = load_config(TagiConfig, args.config, overrides)
    limit = 2 if args.quick else (args.limit or None)
    ecfg = EvalConfig(
        limit=limit,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        max_prompt_tokens=args.max_prompt_tokens,
    )
    small = replace(ecfg, limit=args.ablation_limit) if args.ablation_limit and not args.quick else ecfg
    runs, started = Path(args.runs), time.perf_counter()
    answers = runs / "answers"  # every evaluation logs its answers here and resumes from them
    splits = {s: load_tasks(cfg.data, s) for s in args.eval_splits}
    result = {
        "command": command("tagi", argv),
        "machine": machine(),
        "config": to_dict(cfg),
        "eval": to_dict(ecfg),
        "ablation_eval": to_dict(small),
        "results": {},
        "train_s": {},  # this process's wall time per method (0 s for a stage an earlier session finished)
        "train_steps_s": {},  # the optimiser steps' seconds over every session, from the checkpoints
        "budget": {
            "rule": args.budget,
            "tagi_examples": tagi_examples(cfg),
            "baseline_examples": baseline_train(cfg, args.budget).steps * cfg.train.batch_size * cfg.train.grad_accum,
        },
    }
    trained: dict[str, PromptMethod | AdapterMethod | TagiMethod] = {}
    order = [m for m in METHODS if m in args.methods]
    if any(m in ABLATIONS for m in order) and "tagi" not in order and not cfg.teachers.path:
        order.insert(order.index(next(m for m in order if m in ABLATIONS)), "tagi")  # the ablations' teachers
    for name in order:
        t0 = time.perf_counter()
        trained[name] = train_method(name, cfg, runs, args.budget)
        result["train_s"][name] = time.perf_counter() - t0
        result["train_steps_s"][name] = training_seconds(runs / name)
        if not args.no_eval:
            scored_on = small if name in ABLATIONS and name not in MAIN_ROWS else ecfg
            result["results"][name] = score(trained[name], splits, scored_on, cfg.model, cfg.data, answers)
        save(result, args.out)
    tagi = trained.get("tagi")
    if isinstance(tagi, TagiMethod):
        result["hypernet_parameters"] = tagi.hypernet.parameter_count()
    if not args.no_sensitivity and not args.no_eval:
        result["sensitivity"] = {}
        for name in HYPERNETWORKS:
            if name in trained:
                seed = cfg.train.seed
                variants = {
                    "shuffled": {s: shuffled(t, seed) for s, t in splits.items()},
                    "random": {s: random_instructions(t, seed) for s, t in splits.items()},
                }
                result["sensitivity"][name] = {
                    k: score(trained[name], v, small, cfg.model, cfg.data, answers / k) for k, v in variants.items()
                }
                save(result, args.out)
    pair: dict[str, Method] = {k: trained[k] for k in ("tagi-no-fusion", "multitask-lora") if k in trained}
    if args.efficiency_instances and len(pair) == 2:
        first = next(iter(splits.values()))
        result["efficiency"] = efficiency(
            pair, first, args.efficiency_instances, replace(ecfg, limit=None), tuple(args.efficiency_per_task)
        )
    result["total_s"] = time.perf_counter() - started
    result["comparisons"] = comparisons(result)
    save(result, args.out)
    return result


if __name__ == "__main__":
    main()
