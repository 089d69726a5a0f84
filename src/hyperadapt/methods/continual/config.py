"""Configuration of a continual-learning run: the stream, the per-task budget, the switch, the baselines.

One config serves SwitchCIT and every continual baseline, so all of them run on the same stream with the
same per-task LoRA and training budget (SwitchCIT, Wu et al. 2024).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hyperadapt.core.inject import LINEAR_MODULES
from hyperadapt.data import parse_spec
from hyperadapt.data.prompts import check_setting
from hyperadapt.training import TrainConfig

ENCODERS = ("sentence", "base")
CONFIDENCES = ("softmax", "knn")
FALLBACKS = ("base", "nearest")
CALIBRATION_SOURCES = ("auto", "train", "dev")


@dataclass
class LoraSpec:
    """The LoRA trained for each task (the same for every method)."""

    rank: int = field(default=8, metadata={"help": "LoRA rank r"})
    alpha: float = field(default=16.0, metadata={"help": "LoRA alpha; the delta is (alpha / r) · B A"})
    targets: list[str] = field(default_factory=lambda: list(LINEAR_MODULES), metadata={"help": "module types"})

    def __post_init__(self) -> None:
        if self.rank < 1 or self.alpha <= 0:
            raise ValueError(f"lora.rank must be >= 1 and lora.alpha > 0, got {self.rank} and {self.alpha}")
        bad = [t for t in self.targets if t not in LINEAR_MODULES]
        if bad or not self.targets:
            raise ValueError(f"lora.targets {bad or '[]'} not supported: choose from {list(LINEAR_MODULES)}")


@dataclass
class RouterConfig:
    """The switch network: an MLP over frozen features of the whole prompt, with a reject option."""

    encoder: Literal["sentence", "base"] = field(
        default="sentence", metadata={"help": "'sentence' (all-MiniLM-L6-v2) or 'base' (last-token hidden state)"}
    )
    hidden: int = field(default=200, metadata={"help": "hidden units of the MLP"})
    epochs: int = field(default=20, metadata={"help": "epochs over the retention buffer after each task"})
    lr: float = 1e-3
    batch_size: int = 16
    retention: float = field(
        default=0.0001, metadata={"help": "inputs kept per task: a fraction of its data (< 1) or a count (>= 1)"}
    )
    retention_min: int = field(default=10, metadata={"help": "never keep fewer inputs than this per task"})
    calibration: int = field(default=20, metadata={"help": "held-out inputs per task to calibrate the threshold"})
    calibrate_on: Literal["auto", "train", "dev"] = field(
        default="auto", metadata={"help": "where the calibration inputs come from: 'dev' (the stream's dev split), "
                                          "'train' (held out of the training inputs) or 'auto' (dev when the "
                                          "stream has one, else train)"}
    )
    reject_quantile: float = field(
        default=0.02, metadata={"help": "share of held-out seen inputs below the threshold (0 disables rejects)"}
    )
    confidence: Literal["softmax", "knn"] = field(
        default="knn", metadata={"help": "'softmax' (max probability) or 'knn' (cosine to retained inputs)"}
    )
    fallback: Literal["base", "nearest"] = field(
        default="base", metadata={"help": "what a rejected input runs with: the base model or the best adapter"}
    )

    def __post_init__(self) -> None:
        _choice("router.encoder", self.encoder, ENCODERS)
        _choice("router.confidence", self.confidence, CONFIDENCES)
        _choice("router.fallback", self.fallback, FALLBACKS)
        _choice("router.calibrate_on", self.calibrate_on, CALIBRATION_SOURCES)
        for name in ("hidden", "epochs", "batch_size", "retention_min", "calibration"):
            if getattr(self, name) < 1:
                raise ValueError(f"router.{name} must be at least 1, got {getattr(self, name)}")
        if self.retention <= 0 or (self.retention >= 1 and self.retention != int(self.retention)):
            raise ValueError(
                f"router.retention must be a fraction in (0, 1) or a whole count >= 1, got {self.retention}"
            )
        if not 0 <= self.reject_quantile < 0.5:
            raise ValueError(f"router.reject_quantile must be in [0, 0.5), got {self.reject_quantile}")
        if self.lr <= 0:
            raise ValueError(f"router.lr must be positive, got {self.lr}")

    def retained(self, n_inputs: int) -> int:
        """How many inputs of a task with ``n_inputs`` the buffer keeps."""
        want = int(self.retention) if self.retention >= 1 else round(self.retention * n_inputs)
        return min(n_inputs, max(self.retention_min, want))


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
        _choice("eval.metric", self.metric, ("rougeL", "em"))
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"eval.limit must be at least 1 (or null for all), got {self.limit}")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("eval.batch_size and eval.max_new_tokens must be at least 1")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ValueError(f"eval.max_prompt_tokens must be at least 1 (or null), got {self.max_prompt_tokens}")


@dataclass
class BaselineConfig:
    """Settings only the continual baselines use."""

    replay_fraction: float = field(default=0.01, metadata={"help": "share of each earlier task replayed"})
    olora_lambda: float = field(default=0.5, metadata={"help": "weight of O-LoRA's orthogonality loss"})

    def __post_init__(self) -> None:
        if not 0 < self.replay_fraction <= 1:
            raise ValueError(f"baselines.replay_fraction must be in (0, 1], got {self.replay_fraction}")
        if self.olora_lambda < 0:
            raise ValueError(f"baselines.olora_lambda must be >= 0, got {self.olora_lambda}")


@dataclass
class SwitchConfig:
    """A continual instruction-tuning run: tasks arrive one by one (SwitchCIT, Wu et al. 2024).

    ``stream``: ``synthetic`` / ``synthetic:SEED`` (the first ``n_tasks`` of the synthetic stream) or
    ``cl:PATH#ORDER`` (e.g. ``cl:../shared/data/cl-superni#1``). ``unseen``: inputs of tasks the switch
    never sees, to measure the reject rate, as ``SPEC@SPLIT`` (``auto``: the synthetic suite's unseen
    tasks for a synthetic stream, none otherwise; empty: none).
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
    router: RouterConfig = field(default_factory=RouterConfig)
    eval: StreamEval = field(default_factory=StreamEval)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)

    def __post_init__(self) -> None:
        if self.unseen is None:  # `unseen=` on the command line parses as null: no unseen tasks
            self.unseen = ""
        kind, arg = parse_spec(self.stream)
        if kind not in ("synthetic", "cl"):
            raise ValueError(f"stream {self.stream!r} is not a stream: use synthetic, synthetic:SEED or cl:PATH#ORDER")
        check_setting(self.setting)
        if self.n_tasks < 1:
            raise ValueError(f"n_tasks must be at least 1, got {self.n_tasks}")
        if self.limit_train is not None and self.limit_train < 2:
            raise ValueError(f"limit_train must be at least 2 (or null for all), got {self.limit_train}")
        if kind == "synthetic" and self.router.calibrate_on == "dev":
            raise ValueError("router.calibrate_on: dev needs a stream with a dev split (cl:PATH#ORDER); the "
                             "synthetic stream has none: use 'train' or 'auto'")
        if self.unseen not in ("", "auto") and "@" not in self.unseen:
            raise ValueError(f"unseen must look like SPEC@SPLIT (e.g. synthetic@unseen), 'auto' or '', got "
                             f"{self.unseen!r}")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
