"""A trained TAGI hypernetwork as a harness method, loading it, and exporting generated adapters.

``load_tagi(run_dir)`` -> a method whose ``conditioning(queries)`` gives each example the adapter generated
from its task's instruction (cached per instruction); ``export_adapter(run_dir, instruction, out_dir)``
writes that adapter as a standard PEFT LoRA folder (TAGI, Liao et al. NeurIPS 2024).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.config import to_dict
from hyperadapt.core import LoraConditioning, conditioned, export_peft, inject, target_linears
from hyperadapt.core.peft_io import PEFT_CONFIG
from hyperadapt.core.rows import RowCondition, ServesAs, fold
from hyperadapt.encoders import make_encoder
from hyperadapt.errors import InputNotFound, UserError
from hyperadapt.evaluation.harness import Query
from hyperadapt.io import check_out_dir, load_json, load_state_strict, load_tensors, write_dir_atomic
from hyperadapt.methods.tagi.config import TagiConfig
from hyperadapt.methods.tagi.hypernet import TagiHypernetwork
from hyperadapt.methods.tagi.instructions import InstructionVectors, instruction_text
from hyperadapt.runs import Run

HYPERNET_DIR = "hypernet"
CACHE_LIMIT = 256

Factors = dict[str, tuple[Tensor, Tensor]]


def build_hypernet(cfg: TagiConfig, model: torch.nn.Module, input_dim: int) -> TagiHypernetwork:
    """A fresh hypernetwork over ``cfg.target_modules`` of every layer of ``model``, on the model's device."""
    linears = target_linears(model, cfg.target_modules)
    shapes = {
        name: (lin.in_features, lin.out_features) for name, lin in ((n, cast(nn.Linear, m)) for n, m in linears.items())
    }  # or our wrapper of one
    h = cfg.hypernet
    net = TagiHypernetwork(shapes, input_dim, cfg.rank, cfg.alpha, h.hidden, h.blocks, h.dropout, cfg.shared_adapter)
    return net.to(next(model.parameters()).device)


def build_vectors(cfg: TagiConfig, model: PreTrainedModel, tokenizer: Tokenizer) -> InstructionVectors:
    """The instruction encoder of ``cfg`` with TAGI's empty/over-long policy."""
    limit = cfg.max_instruction_tokens + 8  # room for special tokens
    encoder = make_encoder(cfg.encoder, model, tokenizer, layers=cfg.encoder_layers, max_length=limit)
    return InstructionVectors(encoder, cfg.max_instruction_tokens)


def save_hypernet(net: TagiHypernetwork, path: str | Path) -> Path:
    """``hypernet.json`` (architecture) + ``hypernet.safetensors`` in the folder ``path``, atomically."""

    def write(tmp: Path) -> None:
        (tmp / "hypernet.json").write_text(json.dumps(net.config(), indent=1))
        save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, tmp / "hypernet.safetensors")

    return write_dir_atomic(path, write)


def load_hypernet_weights(net: TagiHypernetwork, path: str | Path) -> TagiHypernetwork:
    """Load weights saved by ``save_hypernet`` strictly; an architecture mismatch is an error."""
    path = Path(path)
    if not (path / "hypernet.safetensors").exists():
        raise InputNotFound(f"no trained hypernetwork in {path}: train it (or resume) first")
    saved = load_json(path / "hypernet.json", "hypernetwork config")
    if saved != json.loads(json.dumps(net.config())):
        raise UserError(f"the hypernetwork in {path} was built for another model or config: {saved} vs {net.config()}")
    weights = path / "hypernet.safetensors"
    return load_state_strict(net, load_tensors(weights, "hypernetwork weights"), weights, "hypernetwork weights")


@dataclass
class TagiMethod:
    """The model conditioned per example by the adapter generated from its task's instruction."""

    name: str
    model: Any
    tokenizer: Any
    setting: str
    hypernet: TagiHypernetwork
    vectors: InstructionVectors
    cfg: TagiConfig
    info: dict[str, Any] = field(default_factory=dict)
    _cache: dict[str, Factors] = field(default_factory=dict, repr=False)
    serves_as: ClassVar[ServesAs] = "condition"  # hyperadapt.core.rows.ConditionServable
    exports_adapters: ClassVar[bool] = True

    @torch.no_grad()
    def _factors(self, instruction: str) -> Factors:
        """One instruction's adapter ``[1, r, in]``/``[1, out, r]`` per module, cached by its cleaned text."""
        text = self.vectors.clean(instruction)
        if text not in self._cache:
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.pop(next(iter(self._cache)))
            self._cache[text] = self.hypernet.factors(self.vectors([text]))
        return self._cache[text]

    def clear_cache(self) -> None:
        """Forget generated adapters and instruction encodings (e.g. to measure their cost)."""
        self._cache.clear()
        self.vectors.encoder.clear_cache()

    def adapter(self, instruction: str) -> LoraConditioning:
        """The adapter generated from ``instruction`` alone (to export, merge or run on any batch)."""
        return LoraConditioning(self._factors(instruction), self.hypernet.scale)

    def batch_conditioning(self, instructions: list[str]) -> LoraConditioning:
        """One adapter per example, from its instruction; shared when they are all the same."""
        distinct = list(dict.fromkeys(instructions))
        per = [self._factors(t) for t in distinct]
        if len(distinct) == 1:
            return LoraConditioning(per[0], self.hypernet.scale, batch_size=len(instructions))
        index = torch.tensor([distinct.index(t) for t in instructions])  # [B]
        factors = {
            name: (torch.cat([p[name][0] for p in per])[index], torch.cat([p[name][1] for p in per])[index])
            for name in self.hypernet.module_names
        }  # [B, r, in], [B, out, r]
        return LoraConditioning(factors, self.hypernet.scale)

    @contextlib.contextmanager
    def conditioning(self, queries: list[Query]) -> Iterator[None]:
        """Condition the model on each query's task instruction for the calls inside the block."""
        instructions = [instruction_text(q.task, self.cfg.setting) for q in queries]
        with conditioned(self.model, lora=self.batch_conditioning(instructions)):
            yield

    # -- serving (hyperadapt.core.rows.ConditionServable)

    def clean_condition(self, condition: str) -> str:
        return self.vectors.clean(condition)

    def condition_reader(self) -> tuple[Any, int]:
        """The instruction encoder's tokenizer and ``max_instruction_tokens``."""
        return self.vectors.encoder.tokenizer, self.vectors.max_tokens

    @torch.no_grad()
    def serve_row(self, condition: str | None, text: str) -> RowCondition:
        """The adapter generated from ``condition`` (uncached: the server keeps one cache of rows)."""
        factors = self.hypernet.factors(self.vectors([self.clean_condition(condition or "")]))  # [1, r, in] ...
        self.vectors.encoder.clear_cache()
        return RowCondition(fold(factors, self.hypernet.scale))

    def export_adapter(self, instruction: str, out_dir: str | Path) -> Path:
        """Write the adapter generated from ``instruction`` as a PEFT LoRA folder that
        ``PeftModel.from_pretrained`` loads (plus ``instruction.txt``, the text it was generated from),
        whole or not at all (a previous adapter there is replaced)."""
        lora = self.adapter(instruction)
        text = self.clean_condition(instruction)

        def write(tmp: Path) -> None:
            export_peft(self.model, lora, tmp)
            (tmp / "instruction.txt").write_text(text, encoding="utf-8")

        return write_dir_atomic(out_dir, write)


def make_method(
    name: str,
    cfg: TagiConfig,
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    hypernet: TagiHypernetwork,
    vectors: InstructionVectors,
    run_dir: str | Path,
) -> TagiMethod:
    hypernet.eval()
    info = {"run": str(run_dir), "hypernet_parameters": hypernet.parameter_count(), **to_dict(cfg)}
    return TagiMethod(name, model, tokenizer, cfg.student_setting, hypernet, vectors, cfg, info)


def load_tagi(
    run: Run | str | Path, model_and_tokenizer: tuple[PreTrainedModel, Tokenizer] | None = None
) -> TagiMethod:
    """The trained TAGI (or Hypter-style) hypernetwork of ``run`` (a :class:`~hyperadapt.runs.Run` or its
    folder), ready for the harness, on the run's own base model (``model_and_tokenizer`` must be that one)."""
    run = Run.of(run)
    if not isinstance(run.config, TagiConfig):
        raise UserError(f"{run.path} is a {run.method!r} run, not a TAGI or Hypter-style run")
    cfg = run.config
    model, tokenizer = run.model_and_tokenizer(model_and_tokenizer)
    inject(model, cfg.target_modules, gating=False)
    vectors = build_vectors(cfg, model, tokenizer)
    hypernet = load_hypernet_weights(build_hypernet(cfg, model, vectors.dim), run.path / HYPERNET_DIR)
    return make_method(run.method, cfg, model, tokenizer, hypernet, vectors, run.path)


def check_adapter_out(out_dir: str | Path) -> Path:
    """Refuse, before any work, an adapter folder that is a file or a non-empty folder other than a previous
    adapter (one holding ``adapter_config.json``): its files would be mixed with the adapter's (a run's too)."""
    return check_out_dir(
        out_dir,
        "--out",
        replaces=lambda path: (path / PEFT_CONFIG).is_file(),
        kind=f"adapter folder (one holding {PEFT_CONFIG})",
    )


def export_adapter(
    run_or_method: Run | str | Path | TagiMethod,
    instruction: str,
    out_dir: str | Path,
    model_and_tokenizer: tuple[PreTrainedModel, Tokenizer] | None = None,
) -> Path:
    """Generate the adapter for ``instruction`` with a TAGI run (or method) and write it to ``out_dir``
    (:meth:`TagiMethod.export_adapter`); an ``out_dir`` that holds anything but a previous adapter is refused."""
    method = run_or_method
    check_adapter_out(out_dir)
    if not isinstance(method, TagiMethod):
        method = load_tagi(method, model_and_tokenizer)
    return method.export_adapter(instruction, out_dir)
