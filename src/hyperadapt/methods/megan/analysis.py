"""What β does and what it costs: β values per layer for a few conditions, and latency over the base model."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hyperadapt.core import conditioned
from hyperadapt.data.prompts import render, user_message
from hyperadapt.evaluation.generate import encode_left_padded
from hyperadapt.methods.megan.train import MeganMethod


def collect_betas(
    method: MeganMethod, conditions: Sequence[str], inputs: Sequence[str], max_values: int = 20_000, seed: int = 0
) -> dict[str, list[np.ndarray]]:
    """β values on the real tokens of ``inputs`` under each condition: ``{condition: [per-layer 1-D array]}``.

    Each layer keeps at most ``max_values`` values (a fixed random subsample), enough for a distribution plot.
    """
    rng = np.random.default_rng(seed)
    return {c: [_subsample(v, max_values, rng) for v in _layer_betas(method, c, inputs)] for c in conditions}


@torch.inference_mode()
def _layer_betas(method: MeganMethod, condition: str, inputs: Sequence[str]) -> list[np.ndarray]:
    """All β values of each layer for ``inputs`` under one condition (padding positions left out)."""
    prompts = [render(method.tokenizer, user_message(condition, x, method.setting)) for x in inputs]
    batch = encode_left_padded(method.tokenizer, prompts, method.model.device)
    real = batch["attention_mask"].bool()  # [B, T]
    fn = method.beta_fn([condition] * len(inputs))
    per_layer: dict[int, Tensor] = {}

    def tapped(layer: int, x: Tensor) -> Tensor:
        beta = fn(layer, x)  # [B, T, I] per token, [B, 1, I] per channel
        values = beta[real] if beta.shape[1] == real.shape[1] else beta  # per token: real tokens only
        per_layer[layer] = values.reshape(-1).float().cpu()
        return beta

    with conditioned(method.model, beta=tapped):
        method.model(**batch)
    return [per_layer[k].numpy() for k in sorted(per_layer)]


def beta_summary(
    betas: dict[str, list[np.ndarray]], beta_scale: float, margin: float = 0.02
) -> dict[str, dict[str, float]]:
    """Per condition: mean |β − 1| and the share of β within ``margin``·s of a bound (tanh saturated).

    ``betas`` is :func:`collect_betas`'s output. A saturated β has (almost) no gradient left: many of them
    mean the hypernetwork learned on/off gates rather than graded ones.
    """
    out = {}
    for condition, layers in betas.items():
        values = np.concatenate(layers) if layers else np.zeros(0)
        dev = np.abs(values - 1.0)
        out[condition] = {
            "mean_abs_dev": float(dev.mean()) if dev.size else 0.0,
            "saturated": float((dev >= (1 - margin) * beta_scale).mean()) if dev.size else 0.0,
        }
    return out


def _subsample(values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return values if values.size <= n else rng.choice(values, n, replace=False)


@torch.inference_mode()
def forward_latency(
    method: MeganMethod, prompts: Sequence[str], conditions: Sequence[str] | None, repeats: int = 5
) -> float:
    """Median seconds of one forward pass over ``prompts`` (base model when ``conditions`` is None).

    The time includes computing β from the conditions (per-channel β comes from the cache after the first
    call, which is the point of per-channel mode).
    """
    batch = encode_left_padded(method.tokenizer, list(prompts), method.model.device)  # prompts already rendered
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        if conditions is None:
            method.model(**batch)
        else:
            with method.condition(conditions):
                method.model(**batch)
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def cost_report(
    method: MeganMethod, prompts: Sequence[str], conditions: Sequence[str], repeats: int = 5
) -> dict[str, Any]:
    """Extra parameters and forward latency of MeGan over its frozen base model."""
    base_params = sum(p.numel() for p in method.model.parameters())
    base = forward_latency(method, prompts, None, repeats)
    steered = forward_latency(method, prompts, conditions, repeats)
    return {
        "per_token": method.hypernet.spec.per_token,
        "base_parameters": base_params,
        "hypernetwork_parameters": method.hypernet.num_parameters(),
        "extra_parameters_ratio": method.hypernet.num_parameters() / base_params,
        "base_forward_s": base,
        "megan_forward_s": steered,
        "latency_ratio": steered / base,
        "batch": len(prompts),
    }


BETA_PLOT_TASKS = ("upper_case", "reverse_list", "antonym", "sentiment_movie")


def beta_plot_and_cost(method: MeganMethod, out_dir: str | Path, n_inputs: int = 2) -> dict[str, Any]:
    """Write ``megan_beta.png`` (β per layer for four seen synthetic tasks and one held-out persona) and
    ``megan_cost.json`` (parameters and forward latency of this method and of a per-channel twin, batch 8,
    and under ``"beta"`` the :func:`beta_summary` of the plotted conditions)."""
    from hyperadapt.data import load_tasks
    from hyperadapt.io import save_json
    from hyperadapt.methods.megan.hypernet import BetaHypernetwork
    from hyperadapt.report.plots import plot_beta_distribution

    out_dir = Path(out_dir)
    seen = {t.name: t for t in load_tasks("synthetic", "seen")}
    picked = [seen[n] for n in BETA_PLOT_TASKS] + load_tasks("synthetic", "unseen_type")[:1]
    inputs = [i.input for t in picked for i in t.instances[:n_inputs]]
    betas = collect_betas(method, [t.instruction for t in picked], inputs)
    plot_beta_distribution(betas, out_dir / "megan_beta.png")
    batch = list(seen.values())[:8]
    prompts = [
        render(method.tokenizer, user_message(t.instruction, t.instances[0].input, method.setting)) for t in batch
    ]
    conditions = [t.instruction for t in batch]
    spec = dataclasses.replace(method.hypernet.spec, per_token=not method.hypernet.spec.per_token)
    twin = MeganMethod(method.model, method.tokenizer, BetaHypernetwork(spec).to(method.model.device), method.setting)
    report: dict[str, Any] = {
        ("per_token" if m.hypernet.spec.per_token else "per_channel"): cost_report(m, prompts, conditions)
        for m in (method, twin)
    }
    report["beta"] = beta_summary(betas, method.hypernet.spec.beta_scale)
    save_json(report, out_dir / "megan_cost.json")
    return report
