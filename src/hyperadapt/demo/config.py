"""The demo's budget: one dataclass, a quick preset, and the method configs it derives (no new recipes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hyperadapt.config import apply_overrides, from_dict, to_dict
from hyperadapt.errors import UserError
from hyperadapt.methods.baselines.multitask_lora import MultiTaskLoraConfig
from hyperadapt.methods.megan import MeganConfig
from hyperadapt.methods.switch import SwitchConfig
from hyperadapt.methods.tagi import TagiConfig
from hyperadapt.methods.tagi.hypter import HypterConfig, hypter_config
from hyperadapt.training import TrainConfig

DATA = "synthetic"
TARGET_MODULES = ["q_proj", "v_proj"]  # TAGI's: every LoRA of the demo adapts them, so the methods compare alike


@dataclass
class DemoConfig:
    """What ``hyperadapt demo`` trains and evaluates, sized for 2 CPU cores (see ``QUICK`` for --quick)."""

    model: str = field(default="default", metadata={"help": "base model: default, a HF id, a folder or a .gguf"})
    seed: int = field(default=0, metadata={"help": "seed of every training run and of the shuffled instructions"})
    out: str = field(default="results/demo", metadata={"help": "run folder: report, figures, cached stages"})
    quick: bool = field(default=False, metadata={"help": "the --quick preset (a smoke run)"})
    teacher_steps: int = field(default=40, metadata={"help": "TAGI's teacher bank (34 teachers), batch 8"})
    train_steps: int = field(default=50, metadata={"help": "TAGI stage 2, Hypter and the multi-task LoRA"})
    batch_size: int = 8
    lr: float = 1e-3
    stream_tasks: int = field(default=3, metadata={"help": "tasks of the synthetic continual stream"})
    stream_steps: int = field(default=16, metadata={"help": "steps per stream task (SwitchCIT and sequential)"})
    megan_steps: int = 40
    limit: int = field(default=5, metadata={"help": "test instances per unseen task"})
    seen_limit: int = field(default=2, metadata={"help": "test instances per seen task (34 tasks)"})
    stream_limit: int = field(default=10, metadata={"help": "test instances per stream task"})
    max_new_tokens: int = 16
    eval_batch_size: int = 16
    save_every: int = field(default=10, metadata={"help": "checkpoint interval (an interrupted run resumes)"})
    checkpoint: str = field(
        default="checkpoints/tagi-smollm2-135m-sni",
        metadata={"help": "a released TAGI run (the shipped SNI one), used if present"},
    )

    def __post_init__(self) -> None:
        for name in (
            "teacher_steps",
            "train_steps",
            "stream_tasks",
            "stream_steps",
            "megan_steps",
            "limit",
            "seen_limit",
            "stream_limit",
            "max_new_tokens",
            "batch_size",
        ):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")

    def train(self, steps: int) -> TrainConfig:
        return TrainConfig(
            steps=steps, batch_size=self.batch_size, lr=self.lr, seed=self.seed, save_every=self.save_every
        )

    def tagi(self) -> TagiConfig:
        """TAGI without stage-1 pretraining (it changed nothing at 40 steps in docs/RESULTS.md)."""
        return TagiConfig(
            model=self.model,
            data=DATA,
            target_modules=list(TARGET_MODULES),
            teachers=from_dict(
                type(TagiConfig().teachers),
                {**to_dict(TagiConfig().teachers), "train": to_dict(self.train(self.teacher_steps))},
            ),
            pretrain=from_dict(type(TagiConfig().pretrain), {"enabled": False}),
            train=self.train(self.train_steps),
        )

    def hypter(self) -> HypterConfig:
        """The Hypter-style hypernetwork on TAGI's budget (CE only, no fusion)."""
        return hypter_config(self.tagi())

    def multitask_lora(self) -> MultiTaskLoraConfig:
        return MultiTaskLoraConfig(
            model=self.model,
            data=DATA,
            setting="def",
            rank=8,
            alpha=16,
            target_modules=list(TARGET_MODULES),
            train=self.train(self.train_steps),
        )

    def stream(self) -> SwitchConfig:
        data = apply_overrides(
            to_dict(SwitchConfig()),
            [
                f"model={self.model}",
                f"n_tasks={self.stream_tasks}",
                f"seed={self.seed}",
                f"lora.target_modules={TARGET_MODULES}",
                f"eval.limit={self.stream_limit}",
                f"eval.max_new_tokens={self.max_new_tokens}",
                f"eval.batch_size={self.eval_batch_size}",
                # the reject rule measured on the synthetic stream (configs/switch_synthetic.yaml); the library's
                # default (Mahalanobis over kept features) was chosen on the SNI stream
                "router.confidence=knn",
                "router.knn_k=1",
                "router.reject_bank=0",
                "router.calibrate_per=global",
                "router.calibration=20",
            ],
        )
        data["train"] = to_dict(self.train(self.stream_steps))
        return from_dict(SwitchConfig, data)

    def megan(self) -> MeganConfig:
        """MeGan with the condition only through β, per-channel β (it scored like per-token β at 1.02× the
        base forward instead of 1.30× in docs/RESULTS.md), lr 1e-3 (better than 1e-4 at short budgets)."""
        return MeganConfig(
            model=self.model, data=DATA, condition_max_tokens=32, per_token=False, train=self.train(self.megan_steps)
        )


QUICK = {
    "out": "results/demo-quick",
    "teacher_steps": 6,
    "train_steps": 10,
    "stream_steps": 5,
    "megan_steps": 10,
    "limit": 2,
    "seen_limit": 1,
    "stream_limit": 3,
    "save_every": 5,
}


def demo_config(overrides: list[str], quick: bool = False, out: str | None = None) -> DemoConfig:
    """The defaults, then the quick preset, then ``key=value`` overrides, then ``out``."""
    data: dict[str, Any] = {**QUICK, "quick": True} if quick else {}
    data = apply_overrides(data, overrides)
    if out is not None:
        data["out"] = out
    return from_dict(DemoConfig, data)
