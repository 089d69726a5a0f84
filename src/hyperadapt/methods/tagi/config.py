"""TAGI's configuration: one dataclass per part, read from one YAML file (``configs/tagi.yaml``).

TAGI: Task Adapters Generation from Instructions (Liao et al., NeurIPS 2024).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hyperadapt.core.inject import check_targets
from hyperadapt.data.prompts import check_setting
from hyperadapt.errors import UserError
from hyperadapt.training import TrainConfig

ENCODERS = ("base", "sentence")
TEACHER_GROUPS = ("task", "category")


@dataclass
class HypernetConfig:
    """Shape of the hypernetwork (Text-to-LoRA style: one shared trunk, small per-module-type heads)."""

    hidden: int = field(default=256, metadata={"help": "width of the shared trunk"})
    blocks: int = field(default=2, metadata={"help": "residual MLP blocks in the trunk"})
    dropout: float = field(default=0.0, metadata={"help": "dropout in the trunk"})

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.blocks < 0:
            raise UserError(f"hypernet.hidden must be >= 1 and hypernet.blocks >= 0, got {self.hidden}, {self.blocks}")
        if not 0 <= self.dropout < 1:
            raise UserError(f"hypernet.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class TeacherConfig:
    """The teachers ("training with instance"): one LoRA per task or per category, instruction in the prompt."""

    group: Literal["task", "category"] = field(default="task", metadata={"help": "one teacher per task or category"})
    rank: int = 8
    alpha: float = 16.0
    path: str | None = field(
        default=None, metadata={"help": "reuse teachers trained by another run (its teachers/ folder)"}
    )
    shared: bool = field(
        default=False,
        metadata={
            "help": "the teachers add one LoRA they all train (ΔW_teacher = shared + own); with "
            "shared_adapter, the student's shared adapter starts from it"
        },
    )
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=300, lr=1e-3))

    def __post_init__(self) -> None:
        if self.group not in TEACHER_GROUPS:
            raise UserError(f"teachers.group must be one of {TEACHER_GROUPS}, got {self.group!r}")
        if self.rank < 1 or self.alpha <= 0:
            raise UserError(f"teachers.rank must be >= 1 and teachers.alpha > 0, got {self.rank}, {self.alpha}")


@dataclass
class PretrainConfig:
    """Stage 1: the hypernetwork reads segment a of a passage, the model reads b and predicts c."""

    enabled: bool = True
    a_tokens: int = field(default=48, metadata={"help": "tokens of segment a (read by the hypernetwork)"})
    b_tokens: int = field(default=24, metadata={"help": "tokens of segment b (read by the model)"})
    c_tokens: int = field(default=24, metadata={"help": "tokens of segment c (predicted)"})
    text_file: str | None = field(
        default=None, metadata={"help": "plain text, one passage per blank-line block; default: the tasks' instances"}
    )
    path: str | None = field(
        default=None,
        metadata={"help": "reuse the stage-1 hypernetwork of another run (its pretrain/hypernet folder)"},
    )
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=100, lr=1e-3))

    def __post_init__(self) -> None:
        if min(self.a_tokens, self.b_tokens, self.c_tokens) < 1:
            raise UserError("pretrain.a_tokens, b_tokens and c_tokens must each be at least 1")


@dataclass
class LossConfig:
    """CE + λ1·T²·KL(teacher ‖ student) + λ2·‖ΔW_s − ΔW_t‖²; a weight of 0 switches a term off."""

    kl_weight: float = field(default=5.0, metadata={"help": "λ1 (0: no KL)"})
    temperature: float = field(default=3.0, metadata={"help": "T of the KL"})
    align_weight: float | str = field(
        default="sigmoid", metadata={"help": "λ2: a number (0: no alignment) or 'sigmoid' = sigmoid(L_param)"}
    )

    def __post_init__(self) -> None:
        if self.kl_weight < 0:
            raise UserError(f"losses.kl_weight must be >= 0, got {self.kl_weight}")
        if self.temperature <= 0:
            raise UserError(f"losses.temperature must be > 0, got {self.temperature}")
        if isinstance(self.align_weight, str):
            if self.align_weight != "sigmoid":
                raise UserError(f"losses.align_weight must be a number >= 0 or 'sigmoid', got {self.align_weight!r}")
        elif self.align_weight < 0:
            raise UserError(f"losses.align_weight must be >= 0 or 'sigmoid', got {self.align_weight}")

    @property
    def uses_kl(self) -> bool:
        return self.kl_weight > 0

    @property
    def uses_align(self) -> bool:
        return self.align_weight == "sigmoid" or float(self.align_weight) > 0

    @property
    def needs_teachers(self) -> bool:
        return self.uses_kl or self.uses_align


@dataclass
class TagiConfig:
    """TAGI: a hypernetwork turns an instruction into a LoRA adapter, distilled from per-task teachers."""

    model: str = "default"
    data: str = "synthetic"
    split: str = "train"
    setting: Literal["def", "def2pos"] = field(
        default="def", metadata={"help": "what the hypernetwork reads: the definition, or it + 2 positive examples"}
    )
    encoder: Literal["base", "sentence"] = field(
        default="base", metadata={"help": "instruction encoder: the frozen base model or all-MiniLM-L6-v2"}
    )
    encoder_layers: list[int] = field(
        default_factory=lambda: [-2, -1], metadata={"help": "hidden states the base encoder mean-pools"}
    )
    max_instruction_tokens: int = field(
        default=256, metadata={"help": "longer instructions are truncated with a warning"}
    )
    rank: int = 8
    alpha: float = 16.0
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "v_proj"], metadata={"help": "module types the LoRA adapts (PEFT's name)"}
    )
    fusion: bool = field(default=True, metadata={"help": "the student also sees the instruction in its prompt"})
    shared_adapter: bool = field(
        default=False,
        metadata={"help": "generate a residual on top of a learned instruction-independent LoRA (rank 2r in all)"},
    )
    hypernet: HypernetConfig = field(default_factory=HypernetConfig)
    teachers: TeacherConfig = field(default_factory=TeacherConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=300, lr=1e-3))

    def __post_init__(self) -> None:
        check_setting(self.setting)
        setting: str = self.setting  # from a YAML file: any prompt setting until checked here
        if setting == "none":
            raise UserError("setting must be 'def' or 'def2pos': the hypernetwork needs an instruction to read")
        if self.encoder not in ENCODERS:
            raise UserError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if not self.encoder_layers:
            raise UserError("encoder_layers must name at least one hidden state, e.g. [-1]")
        if self.rank < 1 or self.alpha <= 0:
            raise UserError(f"rank must be >= 1 and alpha > 0, got {self.rank}, {self.alpha}")
        if self.max_instruction_tokens < 1:
            raise UserError(f"max_instruction_tokens must be >= 1, got {self.max_instruction_tokens}")
        self.target_modules = list(check_targets(self.target_modules, "target_modules", required=True))
        if self.shared_adapter and self.teachers.shared and self.teachers.rank != self.rank:
            raise UserError(
                f"teachers.shared with shared_adapter starts the student's shared adapter from the "
                f"teachers' one: teachers.rank ({self.teachers.rank}) must equal rank ({self.rank})"
            )

    @property
    def needs_teachers(self) -> bool:
        """Whether stage 2 uses teachers: for KL or alignment, or to start the shared adapter from theirs."""
        return self.losses.needs_teachers or (self.shared_adapter and self.teachers.shared)

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @property
    def student_setting(self) -> str:
        """The prompt setting the student answers from: with fusion the instruction is in it too."""
        return self.setting if self.fusion else "none"
