"""The config every LoRA-training baseline shares: which model, data and prompt setting, and the LoRA.

:class:`~hyperadapt.methods.baselines.multitask_lora.MultiTaskLoraConfig` and the meta-learning configs
(:mod:`hyperadapt.methods.baselines.meta`) extend it with what only they use, as Hypter's config is a preset
of TAGI's. ``target_modules`` is PEFT's name for the module types the LoRA adapts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hyperadapt.core.inject import LINEAR_MODULES, check_targets
from hyperadapt.data.prompts import check_setting
from hyperadapt.errors import UserError
from hyperadapt.training import TrainConfig


@dataclass
class LoraTrainingConfig:
    """A LoRA of the frozen ``model`` trained on the ``split`` tasks of ``data``, prompts in ``setting``."""

    model: str = "default"
    data: str = "synthetic"
    split: str = "train"
    setting: str = field(default="def", metadata={"help": "prompt setting of training and evaluation"})
    rank: int = 8
    alpha: float = 16.0
    target_modules: list[str] = field(
        default_factory=lambda: list(LINEAR_MODULES), metadata={"help": "module types the LoRA adapts"}
    )
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=300, lr=1e-3))

    def __post_init__(self) -> None:
        check_setting(self.setting)
        if self.rank < 1:
            raise UserError(f"rank must be at least 1, got {self.rank}")
        check_targets(self.target_modules, "target_modules", required=True)
