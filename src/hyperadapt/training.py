"""The one training loop every method uses.

AdamW with linear warmup and cosine decay, gradient accumulation and clipping, a progress bar with
loss and tokens/s, periodic evaluation, and atomic checkpoints (written under a temporary name, then
renamed) from which ``resume`` continues bit-for-bit: the batch order is a pure function of
(seed, step), and the optimiser, RNG and step are restored.

A step's ``grad_accum`` micro-batches are weighted by their share of the step's answer tokens (per-example
terms by their share of examples), so accumulation gives the gradient of the larger batch. Under
``accelerate launch`` (several processes, see ``hyperadapt.distributed``) each global micro-batch is split
across the processes with the same weighting and the gradients are averaged, so a step equals the
one-process step on the same global batch; checkpoints hold only global state, so a run resumes under any
number of processes. A non-finite loss stops the run (:class:`NonFiniteLossError`) before the weights
change. ``precision="auto"`` runs the loss under bf16 autocast on GPUs, ``"bf16"`` everywhere.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from hyperadapt import distributed
from hyperadapt.clock import Stopwatch
from hyperadapt.core.checkpointing import set_activation_checkpointing
from hyperadapt.errors import UserError
from hyperadapt.io import atomic_write_text, load_json, load_tensors

Batch = dict[str, torch.Tensor]


class CausalLM(Protocol):
    """A causal LM split into its decoder and LM head: a transformers model, or one wrapped by ``conditioned``
    or by PEFT (whose model forwards both methods to the one it wraps)."""

    def get_decoder(self) -> torch.nn.Module: ...

    def get_output_embeddings(self) -> torch.nn.Module: ...


@dataclass
class TrainConfig:
    """Optimisation settings shared by every method."""

    steps: int = 300
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    max_length: int = 128
    save_every: int = 100
    keep_checkpoints: int = 2
    eval_every: int = 0
    log_every: int = 10
    precision: str = "auto"  # auto (bf16 autocast on CUDA), bf16, or no
    gradient_checkpointing: bool = False  # recompute each decoder layer in the backward pass (less memory)

    def __post_init__(self) -> None:
        from hyperadapt.config import check_type

        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            check_type(getattr(self, f.name), hints[f.name], f"train.{f.name}")
        for name in ("steps", "batch_size", "grad_accum", "max_length"):
            if getattr(self, name) < 1:
                raise UserError(f"train.{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.warmup_ratio < 1:
            raise UserError(f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.lr <= 0:
            raise UserError(f"train.lr must be positive, got {self.lr}")
        if self.precision not in ("auto", "bf16", "no"):
            raise UserError(f"train.precision must be auto, bf16 or no, got {self.precision!r}")


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate for optimiser step ``step`` (0-based): linear warmup, then cosine to min_lr."""
    warmup = int(cfg.warmup_ratio * cfg.steps)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, cfg.steps - warmup)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class StepSampler:
    """Which examples form micro-batch k: a fresh permutation per epoch, seeded by (seed, epoch)."""

    def __init__(self, n: int, batch_size: int, seed: int):
        if n < 1:
            raise UserError("no training examples")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self._epoch, self._perm = -1, np.arange(0)

    def indices(self, micro_step: int) -> list[int]:
        out = []
        for pos in range(micro_step * self.batch_size, (micro_step + 1) * self.batch_size):
            epoch, offset = divmod(pos, self.n)
            if epoch != self._epoch:
                self._epoch = epoch
                self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            out.append(int(self._perm[offset]))
        return out


IGNORE = -100  # the label of a token that is not part of the answer (padding, prompt): no loss there


def pad_batch(examples: Sequence[tuple[list[int], list[int]]], pad_id: int) -> Batch:
    """Right-pad (input_ids, labels) pairs into tensors; padding is masked out of the loss."""
    width = max(len(ids) for ids, _ in examples)
    ids = [x + [pad_id] * (width - len(x)) for x, _ in examples]
    labels = [y + [IGNORE] * (width - len(y)) for _, y in examples]
    mask = [[1] * len(x) + [0] * (width - len(x)) for x, _ in examples]
    return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask)}


def answer_targets(labels: torch.Tensor) -> torch.Tensor:
    """The answer tokens of a batch, in order: labels [B, T] -> [n_answer] (shifted: t+1 is predicted at t)."""
    shifted = labels[:, 1:]  # [B, T-1]
    return shifted[shifted != IGNORE]  # [n_answer]


def answer_logits(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """The logits that predict the answer tokens, in order: [n_answer, V].

    Runs the decoder, then the LM head only where a label follows, so no [B, T, V] tensor is formed.
    """
    lm = cast(CausalLM, model)  # nn.Module types the attributes it forwards (``__getattr__``) as tensor or module
    hidden = lm.get_decoder()(
        input_ids=input_ids, attention_mask=attention_mask, use_cache=False
    ).last_hidden_state  # [B, T, H]
    mask = labels[:, 1:] != IGNORE  # [B, T-1]
    return cast(torch.Tensor, lm.get_output_embeddings()(hidden[:, :-1][mask]))  # [n_answer, V]


def answer_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens of ``batch`` (``input_ids``, ``attention_mask``, ``labels``,
    each [B, T]): the value of ``model(**batch).loss`` for a causal LM, computed with the LM head only where a
    label follows (``answer_logits``). With a short answer after a long prompt this skips most of the head's
    [B, T, V] product: a LoRA step of the default model on 8 × 384 tokens with 32 answer tokens each takes
    0.75× the time and 0.65× the peak memory (``hyperadapt bench core --seq 384 --train-batch 8``, RESULTS).
    Works on a plain transformers model, wrapped by ``conditioned`` or by PEFT."""
    logits = answer_logits(model, batch["input_ids"], batch["attention_mask"], batch["labels"])  # [n, V]
    return torch.nn.functional.cross_entropy(logits.float(), answer_targets(batch["labels"]))


class NonFiniteLossError(UserError):
    """The loss or its gradient became inf or NaN: the run stops before the weights are updated."""


@dataclass
class Loss:
    """A micro-batch's loss in two parts that are averaged over different things: ``per_token`` over its
    answer tokens (cross-entropy, distillation KL) and ``per_example`` over its examples (e.g. TAGI's
    alignment of each example's generated adapter). The loop weights each part by the micro-batch's share
    of the step's tokens or examples, so accumulation and several processes give the large batch's loss."""

    per_token: torch.Tensor
    per_example: torch.Tensor | float = 0.0

    @classmethod
    def of(cls, value: torch.Tensor | Loss) -> Loss:
        """A plain tensor is a mean over answer tokens."""
        return value if isinstance(value, Loss) else cls(value)


class Trainer:
    """Train the named parameters ``params`` to minimise ``loss_fn(batch, step)`` (a tensor, the mean over
    the batch's answer tokens, or a :class:`Loss`).

    ``make_batch(indices)`` builds a batch from example indices; ``n_examples`` is how many there are.
    Only ``params`` reach the optimiser and only they are checkpointed. ``model`` is the base model the loss
    runs through: with ``train.gradient_checkpointing`` its decoder layers are recomputed in the backward
    pass while this trainer trains.
    """

    def __init__(
        self,
        params: dict[str, torch.nn.Parameter],
        loss_fn: Callable[[Batch, int], torch.Tensor | Loss],
        make_batch: Callable[[list[int]], Batch],
        n_examples: int,
        cfg: TrainConfig,
        run_dir: str | Path,
        eval_fn: Callable[[int], dict[str, Any]] | None = None,
        desc: str = "train",
        model: torch.nn.Module | None = None,
    ):
        if not params:
            raise ValueError("nothing to train: no trainable parameters")
        if cfg.gradient_checkpointing and model is None:
            raise UserError(f"{desc}: train.gradient_checkpointing is not supported by this training entry point")
        self.model = model
        self.params, self.loss_fn, self.make_batch = params, loss_fn, make_batch
        self.cfg, self.run_dir, self.eval_fn, self.desc = cfg, Path(run_dir), eval_fn, desc
        self.sampler = StepSampler(n_examples, cfg.batch_size, cfg.seed)
        decay = [p for p in params.values() if p.ndim >= 2]
        no_decay = [p for p in params.values() if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)
        self.step = 0
        # wall-clock seconds of optimiser steps 1..step, over every process that ran them: a checkpoint carries
        # its share (``before`` of the stopwatch of a resumed run; 0.0 when fresh)
        self.clock = Stopwatch()

    @property
    def ckpt_root(self) -> Path:
        return self.run_dir / "checkpoints"

    def train(self, resume: bool = True, stop_at: int | None = None) -> int:
        """Run to ``cfg.steps`` (or stop after ``stop_at`` steps, for tests); return the last step."""
        last = latest_checkpoint(self.run_dir) if resume else None
        if last is not None:
            self.load(last)
        else:
            torch.manual_seed(self.cfg.seed)
        end = min(self.cfg.steps, stop_at or self.cfg.steps)
        bar = tqdm(
            total=self.cfg.steps,
            initial=self.step,
            desc=self.desc,
            unit="step",
            dynamic_ncols=True,
            disable=not distributed.is_main(),
        )
        tokens, t0 = 0, time.perf_counter()
        if self.model is not None:
            set_activation_checkpointing(self.model, self.cfg.gradient_checkpointing)
        try:
            while self.step < end:
                with self.clock:
                    loss, n_tok = self._optimiser_step()
                    self.step += 1
                tokens += n_tok
                bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens / (time.perf_counter() - t0):.0f}", refresh=False)
                bar.update(1)
                self._after_step(loss)
        finally:
            bar.close()
            if self.model is not None:
                set_activation_checkpointing(self.model, False)
        if self.step == self.cfg.steps or stop_at is not None:
            self.save()
        return self.step

    def _optimiser_step(self) -> tuple[float, int]:
        """One optimiser step over ``grad_accum`` micro-batches on every process: each micro-batch's loss is
        weighted by its share of the step's answer tokens (and examples, for per-example terms), so the
        gradient is the one of the whole global batch whatever the split. Returns (loss, tokens seen)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.cfg, self.step)
        micro = [
            self.make_batch(distributed.shard(self.sampler.indices(self.step * self.cfg.grad_accum + k)))
            for k in range(self.cfg.grad_accum)
        ]
        counts = [_counts(batch) for batch in micro]  # (answer tokens, examples) of each local micro-batch
        tokens = distributed.all_sum(sum(c[0] for c in counts))
        examples = distributed.all_sum(sum(c[1] for c in counts))
        total, n_tok = 0.0, 0
        for batch, (n_answer, n_examples) in zip(micro, counts, strict=True):
            # gradients are averaged over processes below: the weights carry their number to make it a sum
            token_weight = distributed.world_size() * n_answer / max(tokens, 1.0)
            example_weight = distributed.world_size() * n_examples / max(examples, 1.0)
            with self._autocast():
                loss = Loss.of(self.loss_fn(batch, self.step))
                weighted = loss.per_token * token_weight + loss.per_example * example_weight
            weighted.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
            total += float(weighted.detach())
            n_tok += int(batch["attention_mask"].sum())
        distributed.average_gradients(self.params.values())
        total = distributed.all_sum(total) / distributed.world_size()
        n_tok = int(distributed.all_sum(n_tok))
        norm = torch.nn.utils.clip_grad_norm_(list(self.params.values()), self.cfg.max_grad_norm or math.inf)
        if not (math.isfinite(total) and math.isfinite(float(norm))):
            raise NonFiniteLossError(self._non_finite_message(total, float(norm)))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total, n_tok

    def _non_finite_message(self, loss: float, norm: float) -> str:
        last = latest_checkpoint(self.run_dir)
        kept = f"the last checkpoint, {last}, is kept" if last else "no checkpoint was written"
        return (
            f"{self.desc}: the loss is {loss} (gradient norm {norm}) at step {self.step + 1} with "
            f"train.lr={self.cfg.lr}; training stopped before updating the weights and the run is not "
            f"finished ({kept}). Lower train.lr (or raise train.warmup_ratio) and train into a new folder"
        )

    def _autocast(self) -> torch.autocast:
        on_gpu = next(iter(self.params.values())).is_cuda
        bf16 = self.cfg.precision == "bf16" or (self.cfg.precision == "auto" and on_gpu)
        return torch.autocast("cuda" if on_gpu else "cpu", dtype=torch.bfloat16, enabled=bf16)

    def _after_step(self, loss: float) -> None:
        cfg = self.cfg
        record: dict[str, Any] = {}
        if cfg.log_every and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
            record = {"step": self.step, "loss": loss, "lr": lr_at(cfg, self.step - 1)}
        if cfg.eval_every and self.eval_fn and self.step % cfg.eval_every == 0:
            record = {"step": self.step, "loss": loss, "eval": self.eval_fn(self.step)}
        if record and distributed.is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with (self.run_dir / "train_log.jsonl").open("a") as fh:
                fh.write(json.dumps(record) + "\n")
        if cfg.save_every and self.step % cfg.save_every == 0 and self.step < cfg.steps:
            self.save()

    # -- checkpoints -----------------------------------------------------------------------------

    def save(self) -> Path:
        """Write a checkpoint atomically: a temporary folder renamed into place, then ``latest`` (the main
        process writes; the others wait for it)."""
        final = self.ckpt_root / f"step-{self.step:07d}"
        distributed.main_writes(lambda: self._write_checkpoint(final))
        return final

    def _write_checkpoint(self, final: Path) -> None:
        tmp = self.ckpt_root / f".tmp-step-{self.step:07d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file({k: p.detach().cpu().contiguous() for k, p in self.params.items()}, tmp / "params.safetensors")
        opt_tensors, opt_meta = _flatten_optimizer(self.optimizer.state_dict())
        save_file(opt_tensors, tmp / "optimizer.safetensors")
        save_file({"torch_rng": torch.get_rng_state()}, tmp / "rng.safetensors")
        meta = {
            "step": self.step,
            "seconds": self.clock.seconds,
            "optimizer": opt_meta,
            "config": asdict(self.cfg),
            "processes": distributed.world_size(),
            "strategy": distributed.strategy(),
        }
        (tmp / "state.json").write_text(json.dumps(meta, indent=1))
        # a checkpoint of the same step (saved again after a resume) is moved aside, not deleted, until the
        # new one is in place: a crash at any point leaves a complete checkpoint for ``latest`` to find
        old = self.ckpt_root / f".old-step-{self.step:07d}"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        atomic_write_text(self.ckpt_root / "latest", final.name)
        shutil.rmtree(old, ignore_errors=True)
        for old in sorted(self.ckpt_root.glob("step-*"))[: -self.cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)

    def load(self, path: Path) -> None:
        """Restore parameters, optimiser, RNG, step and the training seconds so far from checkpoint folder
        ``path`` (strictly; a checkpoint written before the seconds were recorded carries 0.0).

        Raises ``UserError`` naming the file for a damaged checkpoint: a ``state.json`` without a whole-number
        ``step``, the ``optimizer`` object it was saved with or numeric ``seconds``, an optimizer state that
        does not fit the optimizer, or parameters of another model."""
        state = load_json(path / "state.json", "checkpoint state")
        step, opt_meta, seconds = state.get("step"), state.get("optimizer"), state.get("seconds", 0.0)
        if (
            isinstance(step, bool)
            or not isinstance(step, int)
            or step < 0
            or not isinstance(opt_meta, dict)
            or not isinstance(opt_meta.get("param_groups"), list)
            or not isinstance(opt_meta.get("scalars"), dict)
            or isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
        ):
            raise UserError(
                f"checkpoint state {path / 'state.json'} is damaged (it needs a whole-number 'step', numeric "
                f"'seconds' and the 'optimizer' it was saved with): delete {path} to resume from the checkpoint "
                "before it"
            )
        saved = load_tensors(path / "params.safetensors", "checkpoint parameters")
        if set(saved) != set(self.params):
            missing, extra = set(self.params) - set(saved), set(saved) - set(self.params)
            raise UserError(f"checkpoint {path} does not match the model: missing {missing}, unexpected {extra}")
        with torch.no_grad():
            for name, p in self.params.items():
                if saved[name].shape != p.shape:
                    raise UserError(
                        f"checkpoint {path}: {name} has shape {tuple(saved[name].shape)}, "
                        f"the model has {tuple(p.shape)}"
                    )
                p.copy_(saved[name])
        optimizer = load_tensors(path / "optimizer.safetensors", "checkpoint optimizer state")
        try:
            self.optimizer.load_state_dict(_unflatten_optimizer(optimizer, opt_meta))
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(
                f"checkpoint {path}: its optimizer state does not fit this optimizer ({err}): the checkpoint is "
                "damaged; delete it to resume from the checkpoint before it"
            ) from err
        torch.set_rng_state(load_tensors(path / "rng.safetensors", "checkpoint RNG state")["torch_rng"])
        self.step = step
        self.clock = Stopwatch(before=float(seconds))


def _counts(batch: Batch) -> tuple[float, float]:
    """(answer tokens, examples) of a micro-batch: what its per-token and per-example losses average over
    (a batch without ``labels`` counts each example as one token)."""
    labels = batch.get("labels")
    examples = float(len(batch["input_ids"]))
    return (float((labels[..., 1:] != IGNORE).sum()) if labels is not None else examples), examples


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint ``latest`` points to; if a crash left it pointing at nothing (or it names anything but a
    ``step-*`` folder beside it: never a path out of the run), the newest complete one (a ``step-*`` folder with
    its ``state.json``); None when there is none."""
    root = Path(run_dir) / "checkpoints"
    pointer = root / "latest"
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8", errors="replace").strip()
        path = root / name
        if name.startswith("step-") and name == path.name and (path / "state.json").exists():
            return path
    complete = sorted(p for p in root.glob("step-*") if (p / "state.json").exists())
    if complete:
        return complete[-1]
    aside = sorted(p for p in root.glob(".old-step-*") if (p / "state.json").exists())
    return aside[-1] if aside else None


def training_seconds(run_dir: str | Path) -> float | None:
    """Wall-clock seconds of every optimiser step under ``run_dir``, over every process that ran them.

    Sums the ``seconds`` of the latest checkpoint (:func:`latest_checkpoint`) of each ``checkpoints`` folder at or
    below ``run_dir`` (a method with stages, such as TAGI's teachers and stage 2, has one per stage). A benchmark
    that times its own process sees 0 s for a stage an earlier session finished; this sees what its optimiser
    steps cost up to the last checkpoint (not steps redone after an interruption, checkpoint writes or answers).
    Only stages trained under ``run_dir`` count: an ablation that reuses TAGI's teachers counts its own stage 2.
    Returns None when there is no checkpoint (nothing trained yet, or a run saved none) or when one predates
    the recorded seconds (5e85ee2), which would undercount.
    """
    found = [latest_checkpoint(folder.parent) for folder in sorted(Path(run_dir).rglob("checkpoints"))]
    states = [load_json(path / "state.json", "checkpoint state") for path in found if path is not None]
    if not states or any("seconds" not in state for state in states):
        return None
    return sum(float(state["seconds"]) for state in states)


def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for idx, pstate in sd["state"].items():
        for key, val in pstate.items():
            if torch.is_tensor(val):
                tensors[f"{idx}.{key}"] = val.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for flat, val in [*tensors.items(), *meta["scalars"].items()]:
        idx, key = flat.split(".", 1)
        state.setdefault(int(idx), {})[key] = val
    return {"state": state, "param_groups": meta["param_groups"]}
