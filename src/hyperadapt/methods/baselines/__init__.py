"""Baselines the methods are judged against (each registered under its name, see ``hyperadapt.registry``)."""

from hyperadapt.methods.baselines.meta import (
    BANK_DIR,
    MetaICLConfig,
    ReptileConfig,
    load_meta,
    train_metaicl,
    train_reptile,
)
from hyperadapt.methods.baselines.multitask_lora import (
    ADAPTER_DIR,
    MultiTaskLoraConfig,
    load_multitask_lora,
    train_multitask_lora,
)
from hyperadapt.methods.baselines.multitask_lora import (
    METHOD as MULTITASK_LORA,
)
from hyperadapt.methods.baselines.zero_shot import METHOD as ZERO_SHOT
from hyperadapt.methods.baselines.zero_shot import zero_shot
from hyperadapt.registry import register_method

register_method(
    MULTITASK_LORA,
    MultiTaskLoraConfig,
    train=train_multitask_lora,
    load=load_multitask_lora,
    folder=ADAPTER_DIR,
    serves_as="fixed",
)
register_method("metaicl", MetaICLConfig, train=train_metaicl, load=load_meta, folder=BANK_DIR, serves_as="fixed")
register_method("reptile", ReptileConfig, train=train_reptile, load=load_meta, folder=BANK_DIR, serves_as="fixed")
register_method(ZERO_SHOT, None, kind="prompt", make=zero_shot)

__all__ = ["MultiTaskLoraConfig", "load_multitask_lora", "train_multitask_lora", "zero_shot"]
