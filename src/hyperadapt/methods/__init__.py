"""The methods and baselines, by the name the CLI and configs use.

``TRAINABLE[name] = (ConfigClass, train_fn)`` with ``train_fn(cfg, run_dir, resume) -> method``;
``LOADABLE[name] = load_fn(run_dir) -> method``; ``PROMPT_ONLY`` need no run directory.
"""

from __future__ import annotations

from hyperadapt.methods.baselines import (
    MultiTaskLoraConfig,
    load_multitask_lora,
    train_multitask_lora,
    zero_shot,
)

TRAINABLE = {"multitask-lora": (MultiTaskLoraConfig, train_multitask_lora)}
LOADABLE = {"multitask-lora": load_multitask_lora}
PROMPT_ONLY = {"zero-shot": zero_shot}
METHOD_NAMES = sorted({*TRAINABLE, *LOADABLE, *PROMPT_ONLY})


def check_method(name: str) -> None:
    if name not in METHOD_NAMES:
        raise ValueError(f"unknown method {name!r}: use one of {', '.join(METHOD_NAMES)}")
