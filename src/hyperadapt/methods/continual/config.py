"""Configuration of a continual-learning run: the stream, the per-task budget, evaluation, the baselines.

Every continual learner runs on a :class:`ContinualConfig`, so all of them run on the same stream with
the same per-task LoRA and training budget. SwitchCIT's config (``methods/switch/config.py``) extends
it with the switch's settings; a comparison of SwitchCIT and its baselines runs them all on that one
config (the baselines ignore ``router``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hyperadapt.core.inject import LINEAR_MODULES, check_targets
from hyperadapt.data import parse_spec
from hyperadapt.data.prompts import check_setting
from hyperadapt.errors import UserError
from hyperadapt.training import TrainConfig

STORAGE_DTYPES = ("float32", "bfloat16", "int8")


@dataclass
class LoraSpec:
    """The LoRA trained for each task (the same for every method)."""

    rank: int = field(default=8, metadata={"help": "LoRA rank r"})
    alpha: float = field(default=16.0, metadata={"help": "LoRA alpha; the delta is (alpha / r) · B A"})
    target_modules: list[str] = field(
        default_factory=lambda: list(LINEAR_MODULES), metadata={"help": "module types the LoRA adapts (PEFT's name)"}
    )
    storage_dtype: Literal["float32", "bfloat16", "int8"] = field(
        default="int8",
        metadata={
            "help": "dtype of each task's stored adapter: int8 (the default since 2026-12-07: a quarter of "
            "float32's bytes, one absmax scale per rank component, at float32's AP on the SNI stream; a folder "
            "PEFT and vLLM load after hyperadapt.core.dequantize_peft), bfloat16 (half; a plain PEFT folder) or "
            "float32; every answer is computed with the stored adapter"
        },
    )

    def __post_init__(self) -> None:
        if self.rank < 1 or self.alpha <= 0:
            raise UserError(f"lora.rank must be >= 1 and lora.alpha > 0, got {self.rank} and {self.alpha}")
        check_targets(self.target_modules, "lora.target_modules", required=True)
        check_choice("lora.storage_dtype", self.storage_dtype, STORAGE_DTYPES)


@dataclass
class StreamEval:
    """How each row of the accuracy matrix is measured.

    ``max_prompt_tokens``: the prompt budget of every evaluation prompt, cut by the one rule of
    :func:`hyperadapt.data.prompts.fit_prompt` (as training cuts at ``train.max_length``); None: the
    model's context length minus ``max_new_tokens``.
    """

    limit: int | None = field(default=50, metadata={"help": "first N test instances per task"})
    batch_size: int = 16
    max_new_tokens: int = 32
    max_prompt_tokens: int | None = field(
        default=None, metadata={"help": "prompt budget in tokens (null: the model's context minus max_new_tokens)"}
    )
    metric: Literal["rougeL", "em"] = field(default="rougeL", metadata={"help": "the score in the matrix"})

    def __post_init__(self) -> None:
        check_choice("eval.metric", self.metric, ("rougeL", "em"))
        if self.limit is not None and self.limit < 1:
            raise UserError(f"eval.limit must be at least 1 (or null for all), got {self.limit}")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise UserError("eval.batch_size and eval.max_new_tokens must be at least 1")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise UserError(f"eval.max_prompt_tokens must be at least 1 (or null), got {self.max_prompt_tokens}")


@dataclass
class BaselineConfig:
    """Settings only the continual baselines use."""

    replay_fraction: float = field(default=0.01, metadata={"help": "share of each earlier task replayed"})
    olora_lambda: float = field(default=0.5, metadata={"help": "weight of O-LoRA's orthogonality loss"})

    def __post_init__(self) -> None:
        if not 0 < self.replay_fraction <= 1:
            raise UserError(f"baselines.replay_fraction must be in (0, 1], got {self.replay_fraction}")
        if self.olora_lambda < 0:
            raise UserError(f"baselines.olora_lambda must be >= 0, got {self.olora_lambda}")


@dataclass
class ContinualConfig:
    """A continual instruction-tuning run: tasks arrive one by one.

    ``stream``: ``synthetic`` / ``synthetic:SEED`` (the first ``n_tasks`` of the synthetic stream) or
    ``cl:PATH#ORDER`` (e.g. ``cl:../shared/data/cl-superni#1``). ``unseen``: inputs of tasks the stream
    never has (SwitchCIT measures its reject rate on them), as ``SPEC@SPLIT`` (``auto``: the synthetic
    suite's unseen tasks for a synthetic stream, none otherwise; empty: none).
    """

    model: str = "default"
    stream: str = "synthetic"
    n_tasks: int = field(default=5, metadata={"help": "tasks of the synthetic stream (ignored for cl:)"})
    setting: str = field(default="def", metadata={"help": "prompt setting of training and evaluation"})
    limit_train: int | None = field(default=None, metadata={"help": "first N training instances per task"})
    unseen: str = "auto"
    unseen_limit: int = 20
    seed: int = 0
    lora: LoraSpec = field(default_factory=LoraSpec)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=150, batch_size=8, lr=1e-3, save_every=50))
    eval: StreamEval = field(default_factory=StreamEval)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)

    def __post_init__(self) -> None:
        kind, arg = parse_spec(self.stream)
        if kind not in ("synthetic", "cl"):
            raise UserError(f"stream {self.stream!r} is not a stream: use synthetic, synthetic:SEED or cl:PATH#ORDER")
        check_setting(self.setting)
        if self.n_tasks < 1:
            raise UserError(f"n_tasks must be at least 1, got {self.n_tasks}")
        if self.limit_train is not None and self.limit_train < 2:
            raise UserError(f"limit_train must be at least 2 (or null for all), got {self.limit_train}")
        if self.unseen not in ("", "auto") and "@" not in self.unseen:
            raise UserError(
                f"unseen must look like SPEC@SPLIT (e.g. synthetic@unseen), 'auto' or '', got {self.unseen!r}"
            )


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    """A ``ValueError`` naming config key ``name`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise UserError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
