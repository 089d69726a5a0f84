r"""SwitchCIT's reject option: every reject rule on one stream, without adapters.

    hyperadapt bench reject --config configs/switch_sni.yaml --out results/reject/order1
    hyperadapt bench reject --config configs/switch_sni.yaml --encoders base_mean --banks 0 --calibrations 20 \
        --set unseen_limit=5 --out results/reject/order1-base

The switch is built as a SwitchCIT run builds it after the last task (``retain_task`` for every task of the
stream in order, ``train_router`` with the last task's seed), once per rule: encoder (``router.encoder``),
reject score (``router.confidence``, with ``knn_k``), kept features (``router.reject_bank``), calibration
inputs per task (``router.calibration``, from the stream's dev split with ``calibrate_on: dev``), one
threshold or one per task (``router.calibrate_per``), the quantile (``router.reject_quantile``) and the dtype
the switch keeps its features in (``router.feature_dtype``). Each rule
is judged as a run judges its switch (``reject_stats``): AUROC of the score for held-out seen inputs (the
first ``eval.limit`` test inputs per task) against the inputs of the unseen tasks, and the rejection rates
of both at the threshold calibrated on the calibration inputs only. ``switch_bytes`` is what a run would keep
of that switch (``save_switch``: the network, its kept features, the retention buffer's texts and features),
written to a temporary folder and measured; ``routing_digest`` a hash of the adapter every seen and unseen input
runs with (its task's, or the base model), so that two rules with the same digest route every input alike.

``--ap-from`` (an oracle run's ``results.json`` on the same stream) adds an AP estimate per rule: each task's
oracle score where its seen inputs are accepted and its zero-shot score where they are rejected (a rejected
input runs on the base model), weighted by the rule's rejection share on that task; it ignores misrouting.

Features are cached per encoder in ``OUT/features/<encoder>.safetensors`` (keyed by a hash of each text), so a
rerun or an interrupted run encodes only what is missing. ``OUT/reject.json`` holds every rule's numbers,
``OUT/reject.md`` the table.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Literal

import torch

from hyperadapt.benchmarks import Parser, command, machine
from hyperadapt.benchmarks.common import add_set_option
from hyperadapt.config import load_config
from hyperadapt.encoders import CachedEncoder
from hyperadapt.io import atomic_write_text, check_out_dir, load_json, save_json
from hyperadapt.methods.continual.store import folder_bytes
from hyperadapt.methods.continual.stream import StreamTask, load_stream, load_unseen
from hyperadapt.methods.switch import RetentionBuffer, SwitchConfig
from hyperadapt.methods.switch.config import CALIBRATIONS, CONFIDENCES, ENCODERS, FEATURE_DTYPES, RouterConfig
from hyperadapt.methods.switch.learner import reject_rule, reject_stats, reject_texts, retain_task
from hyperadapt.methods.switch.router import make_router_encoder, save_switch, train_router
from hyperadapt.report.tables import markdown_table

Encoder = Literal["sentence", "base", "base_mean"]  # ENCODERS, as RouterConfig.encoder takes them
TARGET = {"auroc": 0.95, "unseen_rejected": 0.80, "seen_rejected": 0.05}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = Parser(
        prog="hyperadapt bench reject", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default="configs/switch_sni.yaml", help="stream config (configs/switch_*.yaml)")
    add_set_option(p, "The stream, the switch and the unseen tasks.")
    p.add_argument("--encoders", nargs="+", default=["sentence"], choices=ENCODERS)
    p.add_argument("--confidences", nargs="+", default=list(CONFIDENCES), choices=CONFIDENCES)
    p.add_argument("--knn-k", nargs="+", type=int, default=[1, 5], help="k of the knn score")
    p.add_argument("--banks", nargs="+", type=int, default=[0, 200], help="router.reject_bank values")
    p.add_argument("--calibrations", nargs="+", type=int, default=[20, 100], help="router.calibration values")
    p.add_argument("--calibrate-per", nargs="+", default=list(CALIBRATIONS), choices=CALIBRATIONS)
    p.add_argument(
        "--quantiles", nargs="+", type=float, default=None, help="router.reject_quantile values (default: the config's)"
    )
    p.add_argument(
        "--feature-dtypes", nargs="+", default=None, choices=FEATURE_DTYPES, help="router.feature_dtype values"
    )
    p.add_argument("--ap-from", default=None, help="an oracle run's results.json on the same stream: AP estimates")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", default="results/reject", help="folder for reject.json, reject.md and the features")
    return p.parse_args(argv)


def rules(cfg: SwitchConfig, args: argparse.Namespace, encoder: Encoder) -> list[RouterConfig]:
    """Every router config of the grid for ``encoder`` (knn once per k; the other scores once)."""
    out: list[RouterConfig] = []
    grid = itertools.product(
        args.banks,
        args.calibrations,
        args.confidences,
        args.calibrate_per,
        args.quantiles or [cfg.router.reject_quantile],
        args.feature_dtypes or [cfg.router.feature_dtype],
    )
    for bank, calibration, confidence, per, quantile, dtype in grid:
        for k in args.knn_k if confidence == "knn" else [1]:
            out.append(
                replace(
                    cfg.router,
                    encoder=encoder,
                    reject_bank=bank,
                    calibration=calibration,
                    confidence=confidence,
                    knn_k=k,
                    calibrate_per=per,
                    reject_quantile=quantile,
                    feature_dtype=dtype,
                )
            )
    return out


def judge(
    cfg: SwitchConfig,
    tasks: list[StreamTask],
    seen: torch.Tensor,
    seen_task: torch.Tensor,
    unseen: torch.Tensor,
    encode: Callable[[list[str]], torch.Tensor],
    ap_from: dict[str, Any] | None,
) -> dict[str, Any]:
    """Build the final switch of the stream under ``cfg.router`` and judge its reject option."""
    buffer = RetentionBuffer()
    bank_texts: list[str] = []
    bank_labels: list[int] = []
    for k, task in enumerate(tasks):
        label, _, texts = retain_task(buffer, cfg, task, k)
        bank_texts += texts
        bank_labels += [label] * len(texts)
    bank = (encode(bank_texts), torch.tensor(bank_labels)) if cfg.router.reject_bank else None
    features, calib = encode(buffer.texts), encode(buffer.calib_texts)
    router, stats = train_router(buffer, features, calib, cfg.router, cfg.seed + len(tasks) - 1, bank)
    with tempfile.TemporaryDirectory() as tmp:
        save_switch(tmp, router, buffer, features, calib)
        switch_bytes = folder_bytes(Path(tmp))
    on_seen, on_unseen = router.route(seen), router.route(unseen)  # routed once, read below
    out: dict[str, Any] = {
        "rule": reject_rule(cfg.router),
        "router": asdict(cfg.router),
        **reject_stats(router, seen, unseen),
        "calibration_reject_rate": stats["calibration_reject_rate"],
        "switch_accuracy": sum(c == int(t) for c, t in zip(on_seen.choice, seen_task, strict=True)) / len(seen_task),
        "kept_features": len(router.keys),
        "switch_bytes": switch_bytes,
    }
    decisions = json.dumps([on_seen.adapter, on_unseen.adapter]).encode()  # the adapter each input runs with
    out["routing_digest"] = hashlib.sha256(decisions).hexdigest()[:16]
    rejected = torch.tensor(on_seen.rejected, dtype=torch.float)  # [N]
    share = [float(rejected[seen_task == i].mean()) for i in range(len(tasks))]
    out["seen_rejected_per_task"] = dict(zip([t.name for t in tasks], share, strict=True))
    if ap_from is not None:
        oracle, zero = ap_from["matrix"][-1], ap_from["zero_shot"]
        out["ap_estimate"] = sum((1 - r) * o + r * z for r, o, z in zip(share, oracle, zero, strict=True)) / len(share)
    out["meets_target"] = (
        out["reject_auroc"] is not None
        and out["reject_auroc"] >= TARGET["auroc"]
        and out["unseen_reject_rate"] >= TARGET["unseen_rejected"]
        and out["reject_rate_seen"] <= TARGET["seen_rejected"]
    )
    return out


def table(result: dict[str, Any]) -> str:
    has_ap = any("ap_estimate" in r for r in result["rules"])
    lines = [
        f"Stream `{result['stream']}`: {result['n_seen']} held-out seen inputs ({result['n_tasks']} tasks) "
        f"against {result['n_unseen']} inputs of {result['n_unseen_tasks']} unseen tasks; thresholds from "
        f"the `{result['calibrate_on']}` split. Target: AUROC >= {TARGET['auroc']}, >= "
        f"{100 * TARGET['unseen_rejected']:.0f} % of unseen rejected at <= {100 * TARGET['seen_rejected']:.0f} "
        "% of seen rejected.",
        "",
    ]
    header = ["rule (encoder/score/calibration/kept/calib. inputs/quantile[/fp16])", "AUROC", "seen rejected"]
    header += ["unseen rejected", "switch acc."] + (["AP estimate"] if has_ap else []) + ["switch MiB", "target"]
    rows = [
        [
            r["rule"],
            f"{r['reject_auroc']:.3f}",
            f"{100 * r['reject_rate_seen']:.1f} %",
            f"{100 * r['unseen_reject_rate']:.1f} %",
            f"{100 * r['switch_accuracy']:.1f} %",
            *([f"{r['ap_estimate']:.1f}"] if has_ap else []),
            f"{r['switch_bytes'] / 2**20:.2f}" if "switch_bytes" in r else "",
            "yes" if r["meets_target"] else "no",
        ]
        for r in result["rules"]
    ]
    lines.append(markdown_table(header, rows))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(SwitchConfig, args.config, args.set)
    out = check_out_dir(args.out, "--out")
    start = time.time()
    tasks = load_stream(cfg)
    unseen_tasks = load_unseen(cfg, {t.name for t in tasks})
    if not unseen_tasks:
        raise ValueError(f"the config names no unseen tasks (unseen: {cfg.unseen!r}): set unseen=SPEC@SPLIT")
    seen_texts, unseen_texts = reject_texts(cfg, tasks, unseen_tasks)
    seen_task = torch.tensor([k for k, t in enumerate(tasks) for _ in t.test.head(cfg.eval.limit).instances])
    ap_from = load_json(args.ap_from, "oracle results") if args.ap_from else None
    model_and_tokenizer = None
    result: dict[str, Any] = {
        "command": command("reject", argv),
        "config": args.config,
        "overrides": args.set,
        "stream": cfg.stream,
        "seed": cfg.seed,
        "unseen": cfg.unseen,
        "calibrate_on": cfg.router.calibrate_on,
        "n_tasks": len(tasks),
        "n_seen": len(seen_texts),
        "n_unseen": len(unseen_texts),
        "n_unseen_tasks": len(unseen_tasks),
        "target": TARGET,
        "ap_from": args.ap_from,
        "machine": machine(),
        "rules": [],
    }
    for name in args.encoders:
        if name != "sentence" and model_and_tokenizer is None:
            from hyperadapt.models import load_base_model

            model_and_tokenizer = load_base_model(cfg.model)
        model, tokenizer = model_and_tokenizer or (None, None)
        encoder = make_router_encoder(name, model, tokenizer)
        cache = out / "features" / f"{name}.safetensors"

        known: set[str] = set()  # texts this encoder has read from the cache or encoded

        def encode(
            texts: list[str], encoder: CachedEncoder = encoder, cache: Path = cache, known: set[str] = known
        ) -> torch.Tensor:
            todo = [t for t in texts if t not in known]
            if todo and cache.exists():
                encoder.load_cache(cache, todo)
            before = encoder.cache_size()
            vectors = encoder.encode(texts)  # [N, dim]
            if encoder.cache_size() > before:
                encoder.save_cache(cache)
            known.update(texts)
            return vectors

        seen, unseen = encode(seen_texts), encode(unseen_texts)
        for router in rules(cfg, args, name):
            row = judge(replace(cfg, router=router), tasks, seen, seen_task, unseen, encode, ap_from)
            result["rules"].append(row)
            print(
                f"{row['rule']}: AUROC {row['reject_auroc']:.3f}, seen {100 * row['reject_rate_seen']:.1f} %, "
                f"unseen {100 * row['unseen_reject_rate']:.1f} %",
                flush=True,
            )
    result["seconds"] = time.time() - start
    save_json(result, out / "reject.json")
    atomic_write_text(out / "reject.md", table(result))
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
