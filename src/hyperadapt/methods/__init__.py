"""The methods and baselines, by the name the CLI and configs use.

``TRAINABLE[name] = (ConfigClass, train_fn)`` with ``train_fn(cfg, run_dir, resume) -> method``;
``LOADABLE[name] = load_fn(run_dir) -> method``; ``PROMPT_ONLY`` need no run directory. Continual
methods (SwitchCIT and its baselines) run whole task streams: see ``hyperadapt.methods.switch``.
"""

from __future__ import annotations

from hyperadapt.methods.baselines import (
    MultiTaskLoraConfig,
    load_multitask_lora,
    train_multitask_lora,
    zero_shot,
)
from hyperadapt.methods.baselines.hypter import HypterConfig, load_hypter, train_hypter
from hyperadapt.methods.baselines.meta import MetaICLConfig, ReptileConfig, load_meta, train_metaicl, train_reptile
from hyperadapt.methods.megan import MeganConfig, load_megan, train_megan
from hyperadapt.methods.tagi import TagiConfig, load_tagi, train_tagi

TRAINABLE = {
    "multitask-lora": (MultiTaskLoraConfig, train_multitask_lora),
    "tagi": (TagiConfig, train_tagi),
    "hypter": (HypterConfig, train_hypter),
    "megan": (MeganConfig, train_megan),
    "metaicl": (MetaICLConfig, train_metaicl),
    "reptile": (ReptileConfig, train_reptile),
}
LOADABLE = {
    "multitask-lora": load_multitask_lora,
    "tagi": load_tagi,
    "hypter": load_hypter,
    "megan": load_megan,
    "metaicl": load_meta,
    "reptile": load_meta,
}
PROMPT_ONLY = {"zero-shot": zero_shot}
METHOD_NAMES = sorted({*TRAINABLE, *LOADABLE, *PROMPT_ONLY})


def check_method(name: str) -> None:
    if name not in METHOD_NAMES:
        raise ValueError(f"unknown method {name!r}: use one of {', '.join(METHOD_NAMES)}")
