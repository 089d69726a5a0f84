"""Configuration of a SwitchCIT run: the continual config (stream, per-task budget, evaluation, baselines)
plus the switch network (Wu et al. 2024).

One config serves SwitchCIT and every continual baseline, so all of them run on the same stream with the
same per-task LoRA and training budget; the baselines ignore ``router``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hyperadapt.data import parse_spec
from hyperadapt.errors import UserError
from hyperadapt.methods.continual.config import ContinualConfig, check_choice

ENCODERS = ("sentence", "base", "base_mean")
CONFIDENCES = ("softmax", "energy", "knn", "mahalanobis")
CALIBRATIONS = ("global", "task")
FALLBACKS = ("base", "nearest")
CALIBRATION_SOURCES = ("auto", "train", "dev")
FEATURE_DTYPES = ("float32", "float16")


@dataclass
class RouterConfig:
    """The switch network: an MLP over frozen features of the whole prompt, with a reject option."""

    encoder: Literal["sentence", "base", "base_mean"] = field(
        default="sentence",
        metadata={
            "help": "'sentence' (all-MiniLM-L6-v2), 'base' (the base model's last-token "
            "hidden state) or 'base_mean' (its mean-pooled last layer)"
        },
    )
    hidden: int = field(default=200, metadata={"help": "hidden units of the MLP"})
    epochs: int = field(default=20, metadata={"help": "epochs over the retention buffer after each task"})
    lr: float = 1e-3
    batch_size: int = 16
    retention: float = field(
        default=0.0001, metadata={"help": "inputs kept per task: a fraction of its data (< 1) or a count (>= 1)"}
    )
    retention_min: int = field(default=10, metadata={"help": "never keep fewer inputs than this per task"})
    calibration: int = field(default=100, metadata={"help": "held-out inputs per task to calibrate the threshold"})
    calibrate_on: Literal["auto", "train", "dev"] = field(
        default="auto",
        metadata={
            "help": "where the calibration inputs come from: 'dev' (the stream's dev split), "
            "'train' (held out of the training inputs) or 'auto' (dev when the "
            "stream has one, else train)"
        },
    )
    reject_quantile: float = field(
        default=0.02, metadata={"help": "share of held-out seen inputs below the threshold (0 disables rejects)"}
    )
    confidence: Literal["softmax", "energy", "knn", "mahalanobis"] = field(
        default="mahalanobis",
        metadata={
            "help": "the reject score: 'softmax' (max probability), 'energy' (logsumexp of the logits), 'knn' "
            "(cosine to the knn_k-th nearest kept input of the chosen task) or 'mahalanobis' (minus "
            "the distance to the nearest task mean, shared covariance)"
        },
    )
    knn_k: int = field(default=1, metadata={"help": "'knn': which nearest kept input of the chosen task counts"})
    reject_bank: int = field(
        default=200,
        metadata={
            "help": "features (not texts) of this many training inputs per task are kept for the "
            "reject score (kNN keys, task means, covariance); 0: the retained inputs"
        },
    )
    calibrate_per: Literal["global", "task"] = field(
        default="global",
        metadata={
            "help": "one threshold for every input ('global') or one per task, applied "
            "to the inputs routed to it ('task')"
        },
    )
    fallback: Literal["base", "nearest"] = field(
        default="base", metadata={"help": "what a rejected input runs with: the base model or the best adapter"}
    )
    feature_dtype: Literal["float32", "float16"] = field(
        default="float16",
        metadata={
            "help": "dtype in which the switch keeps features (the reject score's, the retained and the "
            "calibration inputs'; float16: half the bytes); the switch computes on what it keeps"
        },
    )

    def __post_init__(self) -> None:
        check_choice("router.encoder", self.encoder, ENCODERS)
        check_choice("router.confidence", self.confidence, CONFIDENCES)
        check_choice("router.fallback", self.fallback, FALLBACKS)
        check_choice("router.calibrate_on", self.calibrate_on, CALIBRATION_SOURCES)
        check_choice("router.calibrate_per", self.calibrate_per, CALIBRATIONS)
        check_choice("router.feature_dtype", self.feature_dtype, FEATURE_DTYPES)
        if self.reject_bank < 0:
            raise ValueError(f"router.reject_bank must be >= 0 (0: the retained inputs), got {self.reject_bank}")
        for name in ("hidden", "epochs", "batch_size", "retention_min", "calibration", "knn_k"):
            if getattr(self, name) < 1:
                raise UserError(f"router.{name} must be at least 1, got {getattr(self, name)}")
        if self.retention <= 0 or (self.retention >= 1 and self.retention != int(self.retention)):
            raise UserError(
                f"router.retention must be a fraction in (0, 1) or a whole count >= 1, got {self.retention}"
            )
        if not 0 <= self.reject_quantile < 0.5:
            raise UserError(f"router.reject_quantile must be in [0, 0.5), got {self.reject_quantile}")
        if self.lr <= 0:
            raise UserError(f"router.lr must be positive, got {self.lr}")

    def retained(self, n_inputs: int) -> int:
        """How many inputs of a task with ``n_inputs`` the buffer keeps."""
        want = int(self.retention) if self.retention >= 1 else round(self.retention * n_inputs)
        return min(n_inputs, max(self.retention_min, want))


@dataclass
class SwitchConfig(ContinualConfig):
    """A SwitchCIT run (Wu et al. 2024): a continual run (:class:`ContinualConfig`) and its switch."""

    router: RouterConfig = field(default_factory=RouterConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if parse_spec(self.stream)[0] == "synthetic" and self.router.calibrate_on == "dev":
            raise UserError(
                "router.calibrate_on: dev needs a stream with a dev split (cl:PATH#ORDER); the "
                "synthetic stream has none: use 'train' or 'auto'"
            )
