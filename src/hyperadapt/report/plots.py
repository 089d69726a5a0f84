"""Plots from results and method internals, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or an error that says how to install it."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("plots need matplotlib: pip install 'hyperadapt[plots]'") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_beta_distribution(
    betas_by_condition: Mapping[str, Sequence[np.ndarray]], path: str | Path, title: str = "MeGan β per layer"
) -> Path:
    """A PNG of the distribution of β per layer (box plots, one panel per condition); returns ``path``.

    ``betas_by_condition`` maps a condition text to one 1-D array of β values per layer (as returned by
    ``hyperadapt.methods.megan.collect_betas``). β ≡ 1 is the base model, drawn as a dashed line.
    """
    if not betas_by_condition:
        raise ValueError("no conditions to plot: give at least one condition with its β values per layer")
    plt = _pyplot()
    n = len(betas_by_condition)
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.2 * n + 0.6), sharex=True, sharey=True, squeeze=False)
    for ax, (condition, layers) in zip(axes[:, 0], betas_by_condition.items(), strict=True):
        data = [np.asarray(v, dtype=float).ravel() for v in layers]
        ax.boxplot(data, whis=(1, 99), showfliers=False)
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
        label = condition if len(condition) <= 80 else condition[:77] + "..."
        ax.set_title(label, fontsize=9, loc="left")
        ax.set_ylabel("β")
    axes[-1, 0].set_xlabel("layer")
    axes[-1, 0].set_xticks(range(1, len(data) + 1), [str(i) for i in range(len(data))], fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _save_png(fig: Any, path: str | Path) -> Path:
    """Save ``fig`` as a PNG atomically (a temporary name, then renamed; a failed save leaves no temporary file)."""
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def plot_matrix(
    matrix: Sequence[Sequence[float | None]],
    tasks: Sequence[str],
    path: str | Path,
    title: str = "",
    rows: Sequence[str] | None = None,
    value_label: str = "score",
) -> Path:
    """Heatmap of a[j][i] (score on task i after training through row j's task); blank where not measured.

    ``value_label`` names the colour bar's quantity and unit (e.g. "ROUGE-L (%)")."""
    plt = _pyplot()
    values = [[float("nan") if v is None else v for v in row] for row in matrix]
    rows = list(rows) if rows is not None else list(tasks[: len(values)])
    size = max(4.0, 0.5 * len(tasks) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, max(3.0, 0.5 * len(rows) + 2)))
    image = ax.imshow(values, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(tasks)), [f"{i + 1}" for i in range(len(tasks))])
    ax.set_yticks(range(len(rows)), [f"{r[:28]}" for r in rows])
    ax.set_xlabel("evaluated task")
    ax.set_ylabel("after training on")
    for j, row in enumerate(matrix):
        for i, v in enumerate(row):
            if v is not None and len(tasks) <= 20:
                ax.text(i, j, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white" if v < 60 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, label=value_label)
    ax.set_title(title or "accuracy matrix")
    path = _save_png(fig, path)
    plt.close(fig)
    return path


def plot_ap_curve(curves: Mapping[str, Sequence[float]], path: str | Path, ylabel: str = "AP") -> Path:
    """AP after each task, one line per method (a single point for a one-stage upper bound)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    longest = max((len(c) for c in curves.values()), default=1)
    for name, curve in curves.items():
        xs = list(range(longest - len(curve) + 1, longest + 1))
        ax.plot(xs, list(curve), marker="o", label=name)
    ax.set_xticks(range(1, longest + 1))
    ax.set_xlabel("tasks trained")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    path = _save_png(fig, path)
    plt.close(fig)
    return path


def _finish(
    plt: Any, fig: Any, ax: Any, path: str | Path, xlabel: str, ylabel: str, title: str, grid: str = "both"
) -> Path:
    """Label the axes, grid (``grid``: both, x or y), the legend right of the plot, the title (when given); save
    ``path`` and close."""
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(axis=grid, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if title:
        ax.set_title(title)
    saved = _save_png(fig, path)
    plt.close(fig)
    return saved


def plot_budget_curves(
    curves: Mapping[str, Sequence[Mapping[str, float]]],
    path: str | Path,
    xlabel: str,
    ylabel: str,
    title: str = "",
) -> Path:
    """One line per series through its points, each a mapping with ``x`` (a budget, drawn on a log-2 axis),
    ``mean`` and its interval ``low``/``high`` (error bars); a series of one point is a marker. Raises
    ``ValueError`` for no series or a point whose interval does not hold its mean."""
    if not curves or not any(curves.values()):
        raise ValueError("nothing to plot: give at least one series with a point")
    for name, points in curves.items():
        if any(not (p["low"] <= p["mean"] <= p["high"]) for p in points):
            raise ValueError(f"series {name!r}: every point needs low <= mean <= high")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs_all = sorted({float(p["x"]) for points in curves.values() for p in points})
    for k, (name, points) in enumerate(curves.items()):
        ordered = sorted(points, key=lambda p: p["x"])
        shift = 2 ** ((k - (len(curves) - 1) / 2) * 0.03)  # keeps overlapping error bars apart
        xs = [float(p["x"]) * shift for p in ordered]
        ys = [p["mean"] for p in ordered]
        err = [[p["mean"] - p["low"] for p in ordered], [p["high"] - p["mean"] for p in ordered]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs_all, [f"{x:g}" for x in xs_all])
    return _finish(plt, fig, ax, path, xlabel, ylabel, title)


def plot_tradeoff(
    points: Mapping[str, Mapping[str, float]],
    path: str | Path,
    xlabel: str,
    ylabel: str,
    target: tuple[float, float] | None = None,
    title: str = "",
) -> Path:
    """One marker per row (named in the legend) at ``x`` (a cost, e.g. MiB per task) and ``mean`` with its
    interval ``low`` / ``high`` (error bars; a row without them, e.g. the reference, is a marker alone);
    ``target`` ``(x_max, y_min)`` shades where a row meets both (x at most x_max, y at least y_min). Raises
    ``ValueError`` for no row or an interval that does not hold its mean."""
    if not points:
        raise ValueError("nothing to plot: give at least one row")
    for name, p in points.items():
        if "low" in p and not (p["low"] <= p["mean"] <= p["high"]):
            raise ValueError(f"row {name!r}: needs low <= mean <= high")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, p in points.items():
        err = [[p["mean"] - p["low"]], [p["high"] - p["mean"]]] if "low" in p else None
        ax.errorbar([p["x"]], [p["mean"]], yerr=err, marker="o", capsize=3, label=name)
    if target is not None:
        x_max, y_min = target
        ax.axvline(x_max, color="grey", linestyle="--", linewidth=1)
        ax.axhline(y_min, color="grey", linestyle="--", linewidth=1)
        top = max(max(p.get("high", p["mean"]) for p in points.values()), y_min) + 1
        ax.fill_between([0, x_max], y_min, top, color="green", alpha=0.08, label="target")
    ax.set_xlim(left=0)
    return _finish(plt, fig, ax, path, xlabel, ylabel, title)


def plot_grouped_bars(
    values: Mapping[str, Mapping[str, float]],
    path: str | Path,
    ylabel: str,
    title: str = "",
    ymax: float = 100.0,
) -> Path:
    """Bars of ``values[series][group]`` (e.g. method -> split -> ROUGE-L), one colour per series, each bar
    labelled with its value; a group missing from a series is left out."""
    if not values:
        raise ValueError("nothing to plot: give at least one series")
    plt = _pyplot()
    groups = list(dict.fromkeys(g for series in values.values() for g in series))
    n = len(values)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) * max(1, n) / 2 + 3), 4))
    for k, (name, series) in enumerate(values.items()):
        xs = [i + (k - (n - 1) / 2) * width for i, g in enumerate(groups) if g in series]
        ys = [series[g] for g in groups if g in series]
        bars = ax.bar(xs, ys, width, label=name)
        ax.bar_label(bars, labels=[f"{y:.1f}" for y in ys], fontsize=7, padding=1)
    import textwrap

    ax.set_xticks(range(len(groups)), [textwrap.fill(g, 18) for g in groups], fontsize=8)
    ax.set_ylim(0, ymax)
    return _finish(plt, fig, ax, path, "", ylabel, title, grid="y")


def plot_box_stats(
    stats_by_panel: Mapping[str, Sequence[Mapping[str, float]]],
    path: str | Path,
    ylabel: str,
    xlabel: str,
    title: str = "",
    reference: float | None = None,
) -> Path:
    """Box plots drawn from precomputed statistics, one panel per key (e.g. β per layer per condition).

    Each statistic is a dict with ``p1``, ``q1``, ``med``, ``q3``, ``p99`` (whiskers at the 1st and 99th
    percentiles), so the figure can be redrawn from a results file without the raw values.
    """
    if not stats_by_panel:
        raise ValueError("nothing to plot: give at least one panel of statistics")
    plt = _pyplot()
    n = len(stats_by_panel)
    fig, axes = plt.subplots(n, 1, figsize=(10, 1.9 * n + 0.8), sharex=True, sharey=True, squeeze=False)
    for ax, (name, stats) in zip(axes[:, 0], stats_by_panel.items(), strict=True):
        boxes = [
            {"med": s["med"], "q1": s["q1"], "q3": s["q3"], "whislo": s["p1"], "whishi": s["p99"], "label": str(i)}
            for i, s in enumerate(stats)
        ]
        ax.bxp(boxes, showfliers=False)
        if reference is not None:
            ax.axhline(reference, color="grey", linestyle="--", linewidth=0.8)
        ax.set_title(name if len(name) <= 90 else name[:87] + "...", fontsize=9, loc="left")
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="x", labelsize=7)
    axes[-1, 0].set_xlabel(xlabel)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = _save_png(fig, path)
    plt.close(fig)
    return path
