"""Meta-learning baselines on a LoRA of the frozen model: MetaICL-style meta-training and first-order
MAML / Reptile, both through the conditioning core (one-adapter ``AdapterBank``) and the shared ``Trainer``.

- **MetaICL** (Min et al. 2022): train on prompts that show k = 2 demonstrations of the same task, drawn
  afresh for every example, so the model learns to learn in context; evaluated in the ``def2pos`` setting.
- **Reptile** (Nichol et al. 2018) / **first-order MAML** (Finn et al. 2017): the LoRA is a meta-learned
  initialisation. Each outer step adapts it to one task with a few SGD steps; FOMAML moves the init along the
  query-set gradient at the adapted weights, Reptile towards the adapted weights. At test time every task
  gets ``adapt_steps`` SGD steps on its two positive examples (its own adapter, routed per example).

Both configs extend the multi-task LoRA's (:class:`LoraTrainingConfig`). The LoRA being adapted ("fast
weights") is keyed by module name, ``{name: (A [1, r, in], B [1, out, r])}``, the factors a
``LoraConditioning`` takes; its starting point is the one-adapter bank's own parameters.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

import torch
from torch import Tensor
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.config import to_dict
from hyperadapt.core import AdapterBank, LoraConditioning, conditioned, inject
from hyperadapt.core.rows import RowCondition, ServesAs, bank_row
from hyperadapt.data import load_tasks
from hyperadapt.data.prompts import TruncationStats, encode_example, encode_tasks
from hyperadapt.data.schema import Example, Task
from hyperadapt.errors import InputNotFound, UserError
from hyperadapt.evaluation.harness import Query
from hyperadapt.io import write_dir_atomic
from hyperadapt.methods.baselines.lora_config import LoraTrainingConfig
from hyperadapt.models import load_base_model, shard_base
from hyperadapt.runs import Run, RunDir
from hyperadapt.training import Batch, TrainConfig, Trainer, answer_loss, pad_batch

BANK_DIR = "bank"
Encoded = tuple[list[int], list[int]]  # (input_ids, labels)
FastWeights = dict[str, tuple[Tensor, Tensor]]  # module name -> (A [1, r, in], B [1, out, r]), or [r, in], [out, r]
ModelAndTokenizer = tuple[PreTrainedModel, Tokenizer]


@dataclass
class MetaICLConfig(LoraTrainingConfig):
    """MetaICL-style meta-training (Min et al. 2022): a LoRA trained with 2 fresh demonstrations in context."""

    setting: str = field(default="def2pos", metadata={"help": "always def2pos: the prompts show 2 demonstrations"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.setting != "def2pos":
            raise UserError(
                f"MetaICL trains and answers with two demonstrations in the prompt: setting must be "
                f"def2pos, got {self.setting!r}"
            )


@dataclass
class ReptileConfig(LoraTrainingConfig):
    """First-order meta-learning of a LoRA initialisation: Reptile (Nichol et al. 2018) or FOMAML."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=200, lr=1e-3))
    algorithm: Literal["reptile", "fomaml"] = "reptile"
    inner_steps: int = 3
    inner_lr: float = 0.05
    support_size: int = 4
    query_size: int = 4
    adapt_steps: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.algorithm not in ("reptile", "fomaml"):
            raise UserError(f"algorithm must be 'reptile' or 'fomaml', got {self.algorithm!r}")
        for name in ("inner_steps", "support_size", "query_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.adapt_steps < 0 or self.inner_lr <= 0:
            raise UserError("adapt_steps must be >= 0 and inner_lr positive")


# -- the LoRA under test, as a harness method --------------------------------------------------------------


@dataclass
class MetaLoraMethod:
    """A frozen model with a meta-learned LoRA; with ``adapt_steps`` > 0 each task gets its own adapted copy,
    fine-tuned on the task's positive examples and routed per example."""

    name: str
    model: Any
    tokenizer: Any
    bank: AdapterBank
    setting: str
    adapt_steps: int = 0
    inner_lr: float = 0.05
    info: dict[str, Any] = field(default_factory=dict)
    _adapted: dict[str, FastWeights] = field(default_factory=dict, init=False, repr=False)

    serves_as: ClassVar[ServesAs] = "fixed"  # hyperadapt.core.rows.Servable

    def conditioning(self, queries: list[Query]) -> contextlib.AbstractContextManager[object]:
        if self.adapt_steps == 0:
            return conditioned(self.model, lora=self.bank.adapter(0))
        return self._per_task([q.task for q in queries])

    def serve_row(self, condition: str | None, text: str) -> RowCondition:
        """Serving (``hyperadapt.core.rows.Servable``, ``fixed``): its meta-learned LoRA for every request, without
        test-time adaptation (a request brings no examples to adapt on)."""
        return bank_row(self.bank, 0, route="adapter")

    @contextlib.contextmanager
    def _per_task(self, tasks: list[Task]) -> Iterator[Any]:
        weights = [self.adapted(t) for t in tasks]  # per example: its task's {name: (A [r, in], B [out, r])}
        factors = {
            name: (torch.stack([w[name][0] for w in weights]), torch.stack([w[name][1] for w in weights]))
            for name in self.bank.module_names
        }  # A [B, r, in], B [B, out, r]
        with conditioned(self.model, lora=LoraConditioning(factors, self.bank.scale)) as model:
            yield model

    def adapted(self, task: Task) -> FastWeights:
        """The LoRA adapted to ``task`` on its positive examples, ``{name: (A [r, in], B [out, r])}`` (cached
        by task name and instruction)."""
        key = f"{task.name}\n{task.instruction}"
        if key not in self._adapted:
            demos = [
                encode_example(
                    self.tokenizer,
                    ex.output,
                    256,
                    instruction=task.instruction,
                    input_text=ex.input,
                    setting=self.setting,
                )
                for ex in task.positive_examples
            ]
            if not demos:
                raise UserError(f"task {task.name!r} has no positive examples to adapt on: set adapt_steps=0")
            batch = _to(pad_batch(demos, self.tokenizer.pad_token_id), self.model.device)
            with torch.enable_grad():
                fast = adapt(self.model, self.bank, _init(self.bank), [batch] * self.adapt_steps, self.inner_lr)
            self._adapted[key] = {name: (a.detach()[0], b.detach()[0]) for name, (a, b) in fast.items()}
        return self._adapted[key]


def _init(bank: AdapterBank) -> FastWeights:
    """The one-adapter bank's own parameters by module name: A [1, r, in], B [1, out, r] (gradients reach them)."""
    return dict(zip(bank.module_names, zip(bank.lora_A, bank.lora_B, strict=True), strict=True))


def lora_loss(model: Any, bank: AdapterBank, weights: FastWeights, batch: dict[str, Tensor]) -> Tensor:
    """Causal-LM loss on the answer tokens with the LoRA ``weights`` ({name: (A, B)}, at the bank's scale)."""
    with conditioned(model, lora=LoraConditioning(weights, bank.scale)):
        return answer_loss(model, batch)


def adapt(model: Any, bank: AdapterBank, weights: FastWeights, batches: list[Batch], lr: float) -> FastWeights:
    """Plain SGD steps from ``weights``, first order: the result depends on ``weights`` with Jacobian I."""
    for batch in batches:
        flat = {(name, i): w for name, pair in weights.items() for i, w in enumerate(pair)}  # (name, 0): A ...
        grads = dict(
            zip(flat, torch.autograd.grad(lora_loss(model, bank, weights, batch), list(flat.values())), strict=True)
        )
        weights = {name: (a - lr * grads[name, 0], b - lr * grads[name, 1]) for name, (a, b) in weights.items()}
    return weights


# -- training ----------------------------------------------------------------------------------------------


def _to(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def _setup(
    cfg: MetaICLConfig | ReptileConfig, model_and_tokenizer: ModelAndTokenizer | None
) -> tuple[PreTrainedModel, Tokenizer, list[Task], AdapterBank]:
    model, tokenizer = model_and_tokenizer or load_base_model(cfg.model)
    inject(model, targets=cfg.target_modules, gating=False)
    shard_base(model)
    tasks = load_tasks(cfg.data, cfg.split)
    torch.manual_seed(cfg.train.seed)
    bank = AdapterBank.for_model(model, 1, rank=cfg.rank, targets=cfg.target_modules, alpha=cfg.alpha)
    return model, tokenizer, tasks, bank


def metaicl_examples(tokenizer: Any, tasks: list[Task], max_length: int, seed: int = 0) -> list[Encoded]:
    """Every train instance in a Def+2Pos prompt whose two demonstrations are other instances of its task."""
    rng = random.Random(seed)
    stats = TruncationStats()
    out = []
    for task in tasks:
        for i, inst in enumerate(task.instances):
            others = [j for j in rng.sample(range(len(task.instances)), min(3, len(task.instances))) if j != i][:2]
            demos = [Example(task.instances[j].input, task.instances[j].outputs[0]) for j in others]
            out.append(
                encode_example(
                    tokenizer,
                    inst.outputs[0],
                    max_length,
                    instruction=rng.choice(task.instructions),
                    input_text=inst.input,
                    setting="def2pos",
                    examples=demos,
                    stats=stats,
                )
            )
    stats.warn("MetaICL training examples")
    return out


def train_metaicl(
    cfg: MetaICLConfig,
    run_dir: str | Path,
    resume: bool = True,
    model_and_tokenizer: ModelAndTokenizer | None = None,
    stop_at: int | None = None,
) -> MetaLoraMethod:
    """MetaICL-style meta-training into ``run_dir`` (resumable); returns the method for the harness."""
    model, tokenizer, tasks, bank = _setup(cfg, model_and_tokenizer)
    examples = metaicl_examples(tokenizer, tasks, cfg.train.max_length, cfg.train.seed)

    def make_batch(indices: list[int]) -> dict[str, Tensor]:
        return _to(pad_batch([examples[i] for i in indices], tokenizer.pad_token_id), model.device)

    def loss_fn(batch: dict[str, Tensor], step: int) -> Tensor:
        return lora_loss(model, bank, _init(bank), batch)

    return _train(
        "metaicl", cfg, run_dir, bank, loss_fn, make_batch, len(examples), resume, stop_at, (model, tokenizer)
    )


def episode_batcher(
    cfg: ReptileConfig, tokenizer: Any, tasks: list[Task], device: torch.device
) -> tuple[Callable[[list[int]], Batch], int]:
    """``make_batch(indices)`` for one episode: the task of ``indices[0]``, with ``inner_steps`` support
    batches and one query batch of its instances, drawn deterministically from the indices."""
    encoded = encode_tasks(tokenizer, tasks, cfg.setting, cfg.train.max_length, cfg.train.seed)
    by_task: dict[int, list[Encoded]] = {}
    for e in encoded:
        by_task.setdefault(e.task_index, []).append((e.input_ids, e.labels))
    task_of = [e.task_index for e in encoded]

    def make_batch(indices: list[int]) -> dict[str, Tensor]:
        pool = by_task[task_of[indices[0]]]
        rng = random.Random(f"{cfg.train.seed}:{indices}")
        sizes = [cfg.support_size] * cfg.inner_steps + [cfg.query_size]
        drawn = [[pool[rng.randrange(len(pool))] for _ in range(n)] for n in sizes]
        batch = pad_batch(drawn[-1], tokenizer.pad_token_id)  # the query set; its mask counts tokens
        for s, part in enumerate(drawn[:-1]):
            batch.update({f"support{s}.{k}": v for k, v in pad_batch(part, tokenizer.pad_token_id).items()})
        return _to(batch, device)

    return make_batch, len(encoded)


def reptile_loss(model: Any, bank: AdapterBank, cfg: ReptileConfig, batch: dict[str, Tensor]) -> Tensor:
    """One episode's meta-loss: its gradient w.r.t. the LoRA init is the FOMAML or Reptile direction."""
    init = _init(bank)
    support = [
        {k.split(".", 1)[1]: v for k, v in batch.items() if k.startswith(f"support{s}.")}
        for s in range(cfg.inner_steps)
    ]
    fast = adapt(model, bank, init, support, cfg.inner_lr)
    if cfg.algorithm == "fomaml":
        return lora_loss(model, bank, fast, batch)
    # Reptile: gradient (θ − θ') / (α·K), the mean inner gradient; the value shown is the query loss.
    surrogate = cast(  # the bank has modules: never the 0 of an empty sum
        Tensor,
        sum(
            ((w - f.detach()).detach() * w).sum() for name in init for w, f in zip(init[name], fast[name], strict=True)
        ),
    )
    surrogate = surrogate / (cfg.inner_lr * cfg.inner_steps)
    with torch.no_grad():
        shown = lora_loss(model, bank, {n: (a.detach(), b.detach()) for n, (a, b) in fast.items()}, batch)
    return surrogate - surrogate.detach() + shown


def train_reptile(
    cfg: ReptileConfig,
    run_dir: str | Path,
    resume: bool = True,
    model_and_tokenizer: ModelAndTokenizer | None = None,
    stop_at: int | None = None,
) -> MetaLoraMethod:
    """Reptile / FOMAML on a LoRA into ``run_dir`` (resumable); returns the method for the harness."""
    model, tokenizer, tasks, bank = _setup(cfg, model_and_tokenizer)
    make_batch, n = episode_batcher(cfg, tokenizer, tasks, model.device)

    def loss_fn(batch: dict[str, Tensor], step: int) -> Tensor:
        return reptile_loss(model, bank, cfg, batch)

    return _train("reptile", cfg, run_dir, bank, loss_fn, make_batch, n, resume, stop_at, (model, tokenizer))


def _train(
    name: str,
    cfg: MetaICLConfig | ReptileConfig,
    run_dir: str | Path,
    bank: AdapterBank,
    loss_fn: Callable[[Batch, int], Tensor],
    make_batch: Callable[[list[int]], Batch],
    n: int,
    resume: bool,
    stop_at: int | None,
    model_and_tokenizer: ModelAndTokenizer,
) -> MetaLoraMethod:
    run_dir = Path(run_dir)
    if resume and RunDir(run_dir).finished(name, to_dict(cfg), run_dir / BANK_DIR):
        return load_meta(run_dir, model_and_tokenizer)
    with RunDir(run_dir).begin(name, to_dict(cfg), model_and_tokenizer[0]) as run:
        params = dict(bank.named_parameters())
        step = Trainer(
            params, loss_fn, make_batch, n, cfg.train, run_dir, desc=name, model=model_and_tokenizer[0]
        ).train(resume, stop_at)
        if step >= cfg.train.steps:  # a run stopped early is not saved as finished
            write_dir_atomic(run_dir / BANK_DIR, bank.save)
            run.finish(steps=step)
    return _method(name, cfg, bank, model_and_tokenizer, run_dir)


def _method(
    name: str,
    cfg: MetaICLConfig | ReptileConfig,
    bank: AdapterBank,
    model_and_tokenizer: ModelAndTokenizer,
    run_dir: Path,
) -> MetaLoraMethod:
    model, tokenizer = model_and_tokenizer
    adapt_steps = getattr(cfg, "adapt_steps", 0)  # MetaICL answers with its one LoRA
    inner_lr = getattr(cfg, "inner_lr", 0.0)
    return MetaLoraMethod(
        name, model, tokenizer, bank, cfg.setting, adapt_steps, inner_lr, info={"run": str(run_dir), **to_dict(cfg)}
    )


def load_meta(run: Run | str | Path, model_and_tokenizer: ModelAndTokenizer | None = None) -> MetaLoraMethod:
    """A trained MetaICL or Reptile/FOMAML run (a :class:`~hyperadapt.runs.Run` or its folder), on its own
    base model."""
    run = Run.of(run)
    if not isinstance(run.config, (MetaICLConfig, ReptileConfig)):
        raise UserError(f"{run.path} is a {run.method!r} run, not a MetaICL or Reptile run")
    cfg = run.config
    if not (run.path / BANK_DIR).exists():
        raise InputNotFound(f"{run.path} has no trained adapter yet: train it (or resume) first")
    model, tokenizer = run.model_and_tokenizer(model_and_tokenizer)
    inject(model, targets=cfg.target_modules, gating=False)
    bank = AdapterBank.load(run.path / BANK_DIR, device=model.device)
    return _method(run.method, cfg, bank, (model, tokenizer), run.path)
