"""Baselines the methods are judged against."""

from hyperadapt.methods.baselines.multitask_lora import (
    MultiTaskLoraConfig,
    load_multitask_lora,
    train_multitask_lora,
)
from hyperadapt.methods.baselines.zero_shot import zero_shot

__all__ = ["MultiTaskLoraConfig", "load_multitask_lora", "train_multitask_lora", "zero_shot"]
