"""(No tests here.) Shared settings for the SwitchCIT and continual-baseline tests: a tiny model, a two-task synthetic
stream with a dozen training instances per task, a few steps per task."""

from __future__ import annotations

from hyperadapt.methods.continual import LoraSpec, StreamEval
from hyperadapt.methods.switch import RouterConfig, SwitchConfig
from hyperadapt.training import TrainConfig


def tiny_config(model: str = "tiny", n_tasks: int = 2, **router) -> SwitchConfig:
    return SwitchConfig(
        model=model,
        stream="synthetic",
        n_tasks=n_tasks,
        limit_train=12,
        unseen="synthetic@unseen",
        unseen_limit=2,
        lora=LoraSpec(rank=2, alpha=4, target_modules=["q_proj", "v_proj"]),
        train=TrainConfig(steps=3, batch_size=2, lr=1e-2, max_length=64, save_every=2, log_every=0),
        router=RouterConfig(
            **{
                "encoder": "base",
                "hidden": 16,
                "epochs": 5,
                "retention": 3,
                "retention_min": 3,
                "calibration": 4,
                **router,
            }
        ),
        eval=StreamEval(limit=2, batch_size=4, max_new_tokens=3),
    )
