"""TAGI: generate task adapters from instructions, distilled from per-task teachers (Liao et al., NeurIPS 2024).

Three steps, as in the CLI::

    method = train_tagi(cfg, "runs/tagi")                        # teachers, pretraining, finetuning
    method = load_tagi("runs/tagi")                              # a harness method
    export_adapter("runs/tagi", "Reverse the words.", "out/")    # a PEFT LoRA folder
"""

from hyperadapt.methods.tagi.config import (
    HypernetConfig,
    LossConfig,
    PretrainConfig,
    TagiConfig,
    TeacherConfig,
)
from hyperadapt.methods.tagi.hypernet import TagiHypernetwork
from hyperadapt.methods.tagi.hypter import METHOD as HYPTER
from hyperadapt.methods.tagi.hypter import HypterConfig, load_hypter, train_hypter
from hyperadapt.methods.tagi.method import HYPERNET_DIR, TagiMethod, export_adapter, load_tagi
from hyperadapt.methods.tagi.teachers import Teachers
from hyperadapt.methods.tagi.train import train_tagi
from hyperadapt.registry import register_method


def _student_setting(cfg: TagiConfig) -> str:
    return cfg.student_setting


register_method(
    "tagi",
    TagiConfig,
    train=train_tagi,
    load=load_tagi,
    folder=HYPERNET_DIR,
    serves_as="condition",
    prompt_setting=_student_setting,
    releasable=True,
)
register_method(
    HYPTER,
    HypterConfig,
    train=train_hypter,
    load=load_hypter,
    folder=HYPERNET_DIR,
    serves_as="condition",
    prompt_setting=_student_setting,
    releasable=True,
)

__all__ = [
    "HypernetConfig",
    "LossConfig",
    "PretrainConfig",
    "TagiConfig",
    "TagiHypernetwork",
    "TagiMethod",
    "TeacherConfig",
    "Teachers",
    "export_adapter",
    "load_tagi",
    "train_tagi",
]
