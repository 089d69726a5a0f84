"""Train MeGan's β hypernetwork on a frozen model, save and load it.

The base model stays frozen; only the hypernetwork trains, on examples paired with their condition texts
(the training split mixes condition types: task, style, domain), with the causal-LM loss on the answer
tokens plus an optional L1 penalty on β − 1. Training goes through the shared, resumable ``Trainer``.

Example::

    method = train_megan(MeganConfig(model="default"), "runs/megan")
    answer_texts(method, ["red fox", "a, b, c"], ["Write the words in capitals.", "Reverse the list."])
    # hyperadapt.methods.inputs.answer_texts: one condition per input, switched per example in one batch
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.config import to_dict
from hyperadapt.core import conditioned, inject
from hyperadapt.core.rows import BetaSource, RowCondition, ServesAs
from hyperadapt.data import load_tasks
from hyperadapt.data.prompts import (
    TruncationStats,
    encode_instance,
    literal_ids,
    prompt_ids,
)
from hyperadapt.data.schema import Task
from hyperadapt.errors import InputNotFound, UserError
from hyperadapt.evaluation.harness import Query
from hyperadapt.methods.megan.config import MeganConfig
from hyperadapt.methods.megan.hypernet import (
    BetaHypernetwork,
    ConditionBatch,
    HypernetSpec,
    LayerBeta,
    channel_beta_fn,
    embed_condition_ids,
    embed_conditions,
    input_embeddings,
    load_hypernetwork,
    save_hypernetwork,
    tokenize_conditions,
)
from hyperadapt.models import load_base_model, shard_base
from hyperadapt.runs import Run, RunDir
from hyperadapt.training import Trainer, answer_loss, pad_batch

log = logging.getLogger(__name__)

METHOD = "megan"
HYPERNET_DIR = "hypernetwork"


@dataclass
class MeganMethod:
    """A frozen model steered by MeGan's β hypernetwork; the harness's method protocol.

    ``conditioning(queries)`` gives every query the β of its own condition (``task.instruction``), so one
    batch may mix conditions. Per-channel β is computed once per condition text and cached.
    """

    model: Any
    tokenizer: Any
    hypernet: BetaHypernetwork
    setting: str = "none"
    info: dict[str, Any] = field(default_factory=dict)
    name: str = METHOD
    _channel_cache: dict[str, Tensor] = field(default_factory=dict, init=False, repr=False)
    serves_as: ClassVar[ServesAs] = "condition"  # hyperadapt.core.rows.ConditionServable
    exports_adapters: ClassVar[bool] = False  # it makes β for the SwiGLU gates, not a LoRA adapter

    def __post_init__(self) -> None:
        inject(self.model, targets=(), gating=True)

    def condition_batch(self, conditions: Sequence[str]) -> ConditionBatch:
        return embed_conditions(self.model, self.tokenizer, conditions, self.hypernet.spec.condition_max_tokens)

    def beta_fn(self, conditions: Sequence[str]) -> LayerBeta:
        """The β of each example's condition, as a ``beta_fn`` for ``conditioned(model, beta=...)``."""
        if self.hypernet.spec.per_token:
            return self.hypernet.beta_fn(self.condition_batch(conditions))
        missing = list(dict.fromkeys(c for c in conditions if c not in self._channel_cache))
        if missing:
            with torch.no_grad():
                betas = self.hypernet.channel_betas(self.condition_batch(missing))  # [M, L, I]
            self._channel_cache.update(zip(missing, betas, strict=True))
        return channel_beta_fn(torch.stack([self._channel_cache[c] for c in conditions]))  # [B, L, I]

    @torch.no_grad()
    def spread(self, conditions: Sequence[str], prompts: Sequence[str]) -> dict[str, float]:
        """How much β depends on the condition: every prompt is run once under each of the N conditions
        (N ≥ 2), and every β (per layer, token and channel) is compared across them.

        ``deviation``: root mean square of β − 1 (how far the gates moved from the base model, whose β ≡ 1);
        ``condition``: root mean square of β's deviation from its mean over the N conditions (the only part
        that tells one condition from another); ``condition_share``: ``condition / deviation``. Both are
        means over every layer, token and channel of every prompt (β is unitless). A hypernetwork that learned
        one gating for everything has ``condition`` ≈ 0. Raises ``ValueError`` for fewer than 2 conditions or
        no prompt.
        """
        if len(conditions) < 2 or not prompts:
            raise ValueError(
                f"spread needs at least 2 conditions and a prompt, got {len(conditions)} and {len(prompts)}"
            )
        sums = {"dev": 0.0, "cond": 0.0, "count": 0}

        def on_beta(layer: int, beta: Tensor) -> None:  # [N, T or 1, I]
            beta = beta.float()
            sums["dev"] += float((beta - 1).pow(2).sum()) / len(conditions)
            sums["cond"] += float((beta - beta.mean(0)).pow(2).sum()) / len(conditions)
            sums["count"] += beta[0].numel()

        cond = self.condition_batch(conditions)
        channel = None if self.hypernet.spec.per_token else self.hypernet.channel_betas(cond)  # once: [N, L, I]
        for prompt in prompts:
            ids = {
                "input_ids": torch.tensor(
                    [prompt_ids(self.tokenizer, prompt)] * len(conditions), device=self.model.device
                )
            }
            betas = self.hypernet.beta_fn(cond, on_beta) if channel is None else channel_beta_fn(channel, on_beta)
            with conditioned(self.model, beta=betas):
                self.model(**ids)
        dev, var = (sums["dev"] / sums["count"]) ** 0.5, (sums["cond"] / sums["count"]) ** 0.5
        return {
            "n": len(conditions),
            "prompts": len(prompts),
            "deviation": dev,
            "condition": var,
            "condition_share": var / dev if dev else 0.0,
        }

    def clear_cache(self) -> None:
        """Forget cached per-channel β (call it after changing the hypernetwork's weights)."""
        self._channel_cache.clear()

    @contextlib.contextmanager
    def condition(self, conditions: Sequence[str]) -> Iterator[Any]:
        """Condition every call of ``self.model`` inside the block on one condition text per example."""
        with conditioned(self.model, beta=self.beta_fn(conditions)) as model:
            yield model

    def conditioning(self, queries: list[Query]) -> contextlib.AbstractContextManager[Any]:
        return self.condition([q.task.instruction for q in queries])

    # -- serving (hyperadapt.core.rows.ConditionServable)

    def clean_condition(self, condition: str) -> str:
        return condition.strip()

    def condition_reader(self) -> tuple[Any, int]:
        """The base model's tokenizer (MeGan reads its embeddings) and ``condition_max_tokens``."""
        return self.tokenizer, self.hypernet.spec.condition_max_tokens

    @torch.no_grad()
    def serve_row(self, condition: str | None, text: str) -> RowCondition:
        """The β source of ``condition``: its embeddings [C, H] (per token) or its β [L, I] (per channel)."""
        cond = self.condition_batch([self.clean_condition(condition or "")])  # embeddings [1, C, H]
        if self.hypernet.spec.per_token:
            return RowCondition(beta=BetaSource(self.hypernet, condition=cond.embeddings[0]))
        return RowCondition(beta=BetaSource(self.hypernet, channel=self.hypernet.channel_betas(cond)[0]))

    def export_adapter(self, instruction: str, out_dir: str | Path) -> Path:
        raise UserError("a MeGan run makes β for the SwiGLU gates, not a LoRA adapter: use a TAGI or Hypter run")


# -- data ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConditionedExample:
    """A tokenised training example with the condition text it is trained under."""

    input_ids: list[int]
    labels: list[int]
    condition: str


def encode_conditioned(
    tokenizer: Any, tasks: list[Task], setting: str, max_length: int, seed: int = 0
) -> list[ConditionedExample]:
    """Every instance of every task, under one of its task's instructions (drawn with ``seed``) as condition.

    With ``setting="def"`` the same instruction is also in the prompt; with ``"none"`` the prompt is the
    input alone.
    """
    rng = random.Random(seed)
    stats = TruncationStats()
    out = []
    for task in tasks:
        for inst in task.instances:
            condition = rng.choice(task.instructions)
            ids, labels = encode_instance(tokenizer, task, inst, setting, max_length, condition, stats)
            out.append(ConditionedExample(ids, labels, condition))
    stats.warn("training examples")
    return out


def condition_batcher(
    examples: list[ConditionedExample], tokenizer: Any, max_tokens: int, device: torch.device
) -> Callable[[list[int]], dict[str, Tensor]]:
    """``make_batch(indices)`` for the Trainer: the padded LM batch plus condition ids and mask."""
    texts = sorted({e.condition for e in examples})
    long = sum(len(literal_ids(tokenizer, t)) > max_tokens for t in texts)
    if long:
        log.warning(
            "%d of %d conditions are longer than condition_max_tokens=%d and are cut", long, len(texts), max_tokens
        )
    ids, mask = tokenize_conditions(tokenizer, texts, max_tokens)  # [N, C] each
    row = {t: i for i, t in enumerate(texts)}

    def make_batch(indices: list[int]) -> dict[str, Tensor]:
        batch = pad_batch([(examples[i].input_ids, examples[i].labels) for i in indices], tokenizer.pad_token_id)
        rows = torch.tensor([row[examples[i].condition] for i in indices])
        width = int(mask[rows].sum(1).max())
        batch["condition_ids"] = ids[rows, :width]  # [B, C]
        batch["condition_mask"] = mask[rows, :width]  # [B, C]
        return {k: v.to(device) for k, v in batch.items()}

    return make_batch


# -- training --------------------------------------------------------------------------------------------


def build_hypernetwork(cfg: MeganConfig, model: Any) -> BetaHypernetwork:
    spec = HypernetSpec.for_model(
        model,
        bottleneck=cfg.bottleneck,
        beta_scale=cfg.beta_scale,
        per_token=cfg.per_token,
        shared=cfg.shared,
        condition_max_tokens=cfg.condition_max_tokens,
    )
    return BetaHypernetwork(spec).to(input_embeddings(model).weight.device)


def megan_loss(model: Any, hyper: BetaHypernetwork, batch: dict[str, Tensor], l1_weight: float) -> Tensor:
    """Causal-LM loss on the answer tokens under each example's β, plus ``l1_weight``·mean|β − 1|."""
    cond = embed_condition_ids(model, batch["condition_ids"], batch["condition_mask"])
    penalties: list[Tensor] = []
    on_beta = (lambda layer, beta: penalties.append((beta - 1).abs().mean())) if l1_weight > 0 else None
    with conditioned(model, beta=hyper.beta_fn(cond, on_beta)):
        loss = answer_loss(model, batch)
    if penalties:
        loss = loss + l1_weight * torch.stack(penalties).mean()
    return loss


def train_megan(
    cfg: MeganConfig,
    run_dir: str | Path,
    resume: bool = True,
    model_and_tokenizer: tuple[PreTrainedModel, Tokenizer] | None = None,
    stop_at: int | None = None,
) -> MeganMethod:
    """Train the β hypernetwork into ``run_dir`` (resumable) and return MeGan ready for evaluation."""
    run_dir = Path(run_dir)
    model, tokenizer = model_and_tokenizer or load_base_model(cfg.model)
    if resume and RunDir(run_dir).finished(METHOD, to_dict(cfg), run_dir / HYPERNET_DIR):
        return load_megan(run_dir, (model, tokenizer))
    inject(model, targets=(), gating=True)
    shard_base(model)
    tasks = load_tasks(cfg.data, cfg.split)
    examples = encode_conditioned(tokenizer, tasks, cfg.setting, cfg.train.max_length, cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    hyper = build_hypernetwork(cfg, model)
    make_batch = condition_batcher(examples, tokenizer, cfg.condition_max_tokens, model.device)

    def loss_fn(batch: dict[str, Tensor], step: int) -> Tensor:
        return megan_loss(model, hyper, batch, cfg.l1_weight)

    with RunDir(run_dir).begin(METHOD, to_dict(cfg), model) as run:
        hyper.train()
        params = dict(hyper.named_parameters())
        step = Trainer(params, loss_fn, make_batch, len(examples), cfg.train, run_dir, desc=METHOD, model=model).train(
            resume, stop_at
        )
        hyper.eval()
        if step >= cfg.train.steps:  # a run stopped early is not saved as finished
            save_hypernetwork(hyper, model, run_dir / HYPERNET_DIR)
            run.finish(steps=step)
    return _method(model, tokenizer, hyper, cfg, run_dir)


def _method(model: Any, tokenizer: Any, hyper: BetaHypernetwork, cfg: MeganConfig, run_dir: Path) -> MeganMethod:
    info = {"run": str(run_dir), "hypernetwork_parameters": hyper.num_parameters(), **to_dict(cfg)}
    return MeganMethod(model, tokenizer, hyper, cfg.setting, info)


def load_megan(
    run: Run | str | Path, model_and_tokenizer: tuple[PreTrainedModel, Tokenizer] | None = None
) -> MeganMethod:
    """MeGan from ``run`` (a :class:`~hyperadapt.runs.Run` or its folder): its hypernetwork attached to its
    base model (an error for any other model)."""
    run = Run.of(run)
    if run.method != METHOD:
        raise UserError(f"{run.path} is a {run.method!r} run, not a {METHOD} run")
    cfg = run.config
    if not (run.path / HYPERNET_DIR).exists():
        raise InputNotFound(f"{run.path} has no trained hypernetwork yet: train it (or resume) first")
    model, tokenizer = run.model_and_tokenizer(model_and_tokenizer)
    # a run with a weight fingerprint has just checked the weights: any path to them is the same model
    hyper = load_hypernetwork(run.path / HYPERNET_DIR, model, by_name=not run.base_model.comparable)
    return _method(model, tokenizer, hyper, cfg, run.path)
