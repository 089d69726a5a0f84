"""Hypter-style baseline (Ye & Ren, 2021): TAGI's hypernetwork trained with cross-entropy only.

A preset of :class:`~hyperadapt.methods.tagi.TagiConfig`, not a copy: no hypernetwork pretraining, no
teachers (no KL, no parameter alignment), and no instruction fusion (the model sees only the input; the
instruction reaches it only through the generated adapter).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.errors import UserError
from hyperadapt.methods.tagi.config import LossConfig, PretrainConfig, TagiConfig
from hyperadapt.methods.tagi.method import TagiMethod, load_tagi
from hyperadapt.methods.tagi.train import train_tagi
from hyperadapt.runs import Run

METHOD = "hypter"


@dataclass
class HypterConfig(TagiConfig):
    """TAGI's hypernetwork with CE only: no pretraining, no distillation, no fusion."""

    fusion: bool = False
    pretrain: PretrainConfig = field(default_factory=lambda: PretrainConfig(enabled=False))
    losses: LossConfig = field(default_factory=lambda: LossConfig(kl_weight=0.0, align_weight=0.0))

    def __post_init__(self) -> None:
        super().__post_init__()
        turned_on = [
            k
            for k, on in (
                ("fusion", self.fusion),
                ("pretrain.enabled", self.pretrain.enabled),
                ("losses.kl_weight", self.losses.kl_weight != 0),
                ("losses.align_weight", self.losses.align_weight not in (0, 0.0)),
                ("teachers.shared", self.teachers.shared),
            )
            if on
        ]
        if turned_on:
            raise UserError(
                f"{', '.join(turned_on)}: Hypter-style has no fusion, stage 1, KL, alignment or "
                "teachers; train tagi for those (its ablations turn each off)"
            )


def hypter_config(cfg: TagiConfig) -> HypterConfig:
    """The Hypter-style variant of a TAGI config: same model, data, hypernetwork and budget."""
    base = {k: v for k, v in vars(cfg).items() if k not in ("fusion", "pretrain", "losses")}
    return HypterConfig(**{**base, "teachers": replace(cfg.teachers, shared=False)})  # Hypter trains no teachers


def train_hypter(
    cfg: TagiConfig,
    run_dir: str | Path,
    resume: bool = True,
    model_and_tokenizer: tuple[PreTrainedModel, Tokenizer] | None = None,
    stop_at: int | None = None,
) -> TagiMethod:
    """Train the baseline into ``run_dir``; a plain ``TagiConfig`` is turned into its Hypter preset first."""
    if not isinstance(cfg, HypterConfig):
        cfg = hypter_config(cfg)
    return train_tagi(cfg, run_dir, resume, model_and_tokenizer, stop_at, name=METHOD)


def load_hypter(
    run: Run | str | Path, model_and_tokenizer: tuple[PreTrainedModel, Tokenizer] | None = None
) -> TagiMethod:
    """The trained baseline from ``run_dir``."""
    method = load_tagi(run, model_and_tokenizer)
    if method.name != METHOD:
        raise UserError(f"{method.info['run']} is a {method.name!r} run, not a {METHOD} run")
    return method
