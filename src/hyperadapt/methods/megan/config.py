"""Configuration of MeGan: the β hypernetwork's shape and how it is trained."""

from __future__ import annotations

from dataclasses import dataclass, field

from hyperadapt.errors import UserError
from hyperadapt.training import TrainConfig


@dataclass
class MeganConfig:
    """MeGan (meta-gated SwiGLU, ICML 2026): a hypernetwork maps a condition text to Swish_β gates.

    Example (YAML)::

        model: default
        bottleneck: 512
        per_token: true
        train: {steps: 600, lr: 1.0e-4}
    """

    model: str = field(default="default", metadata={"help": "base model: 'default', an HF id or a folder"})
    data: str = field(default="synthetic", metadata={"help": "training data spec (synthetic, sni:PATH, ...)"})
    split: str = field(default="train", metadata={"help": "split of `data` to train on"})
    condition_max_tokens: int = field(default=16, metadata={"help": "condition tokens the hypernetwork reads"})
    bottleneck: int = field(default=512, metadata={"help": "width R of the cross-attention bottleneck"})
    beta_scale: float = field(default=0.5, metadata={"help": "s in β = 1 + s·tanh(h): β ∈ (1 − s, 1 + s)"})
    per_token: bool = field(
        default=True,
        metadata={"help": "True: queries are each token's FFN input; False: one β per channel and condition"},
    )
    shared: bool = field(default=True, metadata={"help": "one hypernetwork for all layers (else one per layer)"})
    l1_weight: float = field(default=0.0, metadata={"help": "weight of the L1 penalty on β − 1"})
    condition_in_prompt: bool = field(
        default=False, metadata={"help": "also put the condition in the prompt (setting 'def', else 'none')"}
    )
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=300, lr=1e-4, warmup_ratio=0.1))

    def __post_init__(self) -> None:
        if self.condition_max_tokens < 1:
            raise UserError(f"condition_max_tokens must be at least 1, got {self.condition_max_tokens}")
        if self.bottleneck < 1:
            raise UserError(f"bottleneck must be at least 1, got {self.bottleneck}")
        if not 0 < self.beta_scale < 1:
            raise UserError(
                f"beta_scale must be in (0, 1) so that β = 1 + s·tanh(h) stays positive, got {self.beta_scale}"
            )
        if self.l1_weight < 0:
            raise UserError(f"l1_weight must be non-negative, got {self.l1_weight}")
        if not isinstance(self.train, TrainConfig):
            raise UserError(f"train must be a TrainConfig (a mapping in YAML), got {type(self.train).__name__}")

    @property
    def setting(self) -> str:
        """The prompt setting: the condition in the prompt ('def') or the input alone ('none')."""
        return "def" if self.condition_in_prompt else "none"
