"""Interop with PEFT: export one adapter as a standard PEFT LoRA folder, load one, merge and unmerge.

A PEFT LoRA folder holds ``adapter_config.json`` and ``adapter_model.safetensors`` with tensors named
``base_model.model.<module path>.lora_A.weight`` ([r, in]) and ``.lora_B.weight`` ([out, r]); the delta
is ``(lora_alpha / r) · B A`` (``/ √r`` with rsLoRA).

An int8 folder (``export_peft(..., dtype=torch.int8)``, what a continual run stores with
``lora.storage_dtype: int8``) keeps PEFT's ``adapter_config.json`` but its weights in
``adapter_model.int8.safetensors``: each ``lora_A`` row and each ``lora_B`` column (one per rank component)
as int8 with one float32 absmax scale (``<key>_scale``, [r, 1] for A, [1, r] for B), about a quarter of
float32's bytes. PEFT cannot load it (it finds no ``adapter_model.safetensors``, then tries the folder as a Hub
id, and its error does not say why); ``load_peft`` does, and :func:`dequantize_peft` (for a continual run's task:
``hyperadapt continual export``) writes the plain PEFT folder that ``PeftModel.from_pretrained`` and vLLM load.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import torch
from peft import LoraConfig
from safetensors.torch import save_file
from torch import Tensor, nn

from hyperadapt.core.bank import AdapterBank
from hyperadapt.core.inject import LINEAR_MODULES, target_linears
from hyperadapt.core.lora import ConditionedLinear, LoraConditioning
from hyperadapt.errors import InputNotFound, UserError
from hyperadapt.io import load_tensors, write_dir_atomic
from hyperadapt.models import model_name

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
INT8_WEIGHTS = "adapter_model.int8.safetensors"
SCALE_SUFFIX = "_scale"
PREFIX = "base_model.model."
MERGED_ATTR = "_hyperadapt_merged"
PEFT_DEFAULTS = {"r": 8, "lora_alpha": 8}  # peft.LoraConfig's defaults, used when a config omits them
MAX_LORA_ALPHA = 65504.0  # float16's largest number: a larger lora_alpha overflows the delta in half precision
PEFT_PROBE_WARNING = "`is_gradient_checkpointing` is deprecated"


@contextmanager
def peft_wrapping() -> Iterator[None]:
    """Wrap a model with PEFT (``get_peft_model``, ``PeftModel.from_pretrained``) inside this context.

    PEFT (0.21 and earlier) reads ``model.is_gradient_checkpointing`` whenever it wraps a model
    (``PeftModel.__init__``), and transformers 5 deprecated that property in favour of
    ``is_activation_checkpointing``, so every PEFT wrap printed a ``FutureWarning`` that no user can act on.
    This context silences that one warning and nothing else; drop it once PEFT reads the new name."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=re.escape(PEFT_PROBE_WARNING), category=FutureWarning)
        yield


def single_adapter(lora: LoraConditioning, example: int | None) -> LoraConditioning:
    """``lora`` itself when it is one adapter, else the adapter of ``example``."""
    if example is not None:
        return lora.example(example)
    if not lora.shared:
        raise ValueError("the conditioning holds one adapter per example: choose one with example=i")
    return lora


def export_peft(
    model: nn.Module,
    lora: LoraConditioning,
    path: str | Path,
    *,
    example: int | None = None,
    base_model_name_or_path: str | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write one adapter (``lora``, or example ``example`` of it) as a PEFT LoRA folder for ``model``, its
    tensors in ``dtype`` (default: as they are; ``torch.bfloat16`` halves the folder of a float32 adapter;
    ``torch.int8`` quarters it, in ``adapter_model.int8.safetensors``, which ``load_peft`` reads and PEFT
    does not: see the module docstring and :func:`dequantize_peft`).

    ``lora_alpha = scale · r`` when that is a whole number, else the scale is folded into B (alpha = r).
    Modules with a rank other than the most common one go to ``rank_pattern``/``alpha_pattern``.
    """
    single = single_adapter(lora, example)
    if not single.factors:
        raise ValueError("the adapter has no modules to export")
    scale = float(single.scale)
    ranks = {name: a.shape[1] for name, (a, _) in single.factors.items()}
    r = max(set(ranks.values()), key=list(ranks.values()).count)
    fold = not all(_whole(scale * rank) for rank in ranks.values())

    def alpha_of(rank: int) -> int:
        return rank if fold else round(scale * rank)

    if not math.isfinite(scale):
        raise UserError(f"the adapter's scale is {scale}: it must be a finite number")
    tensors = {}
    stored = None if dtype == torch.int8 else dtype  # int8 quantises the factors as they are (quantize_int8)
    for name, (a, b) in single.factors.items():
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise UserError(f"the adapter's factors for {name} hold NaN or infinite values: it would not run")
        b = b[0] * scale if fold else b[0]
        tensors[f"{PREFIX}{name}.lora_A.weight"] = a[0].detach().to(stored or a.dtype).contiguous().cpu()  # [r, in]
        tensors[f"{PREFIX}{name}.lora_B.weight"] = b.detach().to(stored or b.dtype).contiguous().cpu()  # [out, r]
    odd = {name: rank for name, rank in ranks.items() if rank != r}
    config = LoraConfig(
        r=r,
        lora_alpha=alpha_of(r),
        target_modules=_target_modules(model, list(single.factors)),
        rank_pattern=odd,
        alpha_pattern={name: alpha_of(rank) for name, rank in odd.items()},
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
        base_model_name_or_path=base_model_name_or_path or model_name(model),
    )
    path = Path(path)
    config.save_pretrained(str(path))
    _stable_config(path / PEFT_CONFIG)
    save_weights(tensors, path, int8=dtype == torch.int8)
    return path


def save_weights(tensors: dict[str, Tensor], folder: Path, int8: bool = False) -> Path:
    """Write PEFT's ``lora_A`` / ``lora_B`` tensors into ``folder`` as PEFT's weights file, or quantised as the
    int8 one (``int8``), removing the other file so the folder holds one; returns the file written."""
    target, other = (INT8_WEIGHTS, PEFT_WEIGHTS) if int8 else (PEFT_WEIGHTS, INT8_WEIGHTS)
    (folder / other).unlink(missing_ok=True)
    # one metadata key: safetensors writes the metadata map in an order that changes from one process to the
    # next, and the same adapter must export byte-identically (a resumed run's files equal a straight run's)
    save_file(quantize_int8(tensors) if int8 else tensors, folder / target, metadata={"format": "pt"})
    return folder / target


def quantize_int8(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """PEFT's ``lora_A`` [r, in] / ``lora_B`` [out, r] tensors as int8 with one float32 scale per rank
    component (per row of A, per column of B): ``q = round(w / s)``, ``s = max|w| / 127`` over that row or
    column (1 where it is all zero), so each element is off by at most ``s / 2``, 0.4 % of its row's or
    column's largest magnitude. Symmetric absmax quantisation (as LLM.int8's vector-wise quantisation,
    Dettmers et al. 2022, without its outlier split)."""
    out = {}
    for key, w in tensors.items():
        w = w.float()
        reduce = 1 if key.endswith("lora_A.weight") else 0  # A: per row, B: per column, both the rank's axis
        scale = w.abs().amax(dim=reduce, keepdim=True) / 127.0  # [r, 1] or [1, r]
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        out[key] = torch.round(w / scale).clamp(-127, 127).to(torch.int8).contiguous()
        out[key + SCALE_SUFFIX] = scale.contiguous()
    return out


def dequantize_int8(tensors: dict[str, Tensor], path: Path) -> dict[str, Tensor]:
    """The float32 ``lora_A`` / ``lora_B`` tensors of an int8 file's (``path``) contents; ``ValueError`` naming
    the key when a weight lacks its scale, a scale lacks its weight, or their shapes do not broadcast."""
    out = {}
    for key, q in tensors.items():
        if key.endswith(SCALE_SUFFIX):
            if key.removesuffix(SCALE_SUFFIX) not in tensors:
                raise UserError(f"{path}: scale {key!r} has no weight: the int8 adapter is damaged")
            continue
        scale = tensors.get(key + SCALE_SUFFIX)
        per_row = key.endswith("lora_A.weight")  # A [r, in]: a scale per row; B [out, r]: per column
        want = ((q.shape[0], 1) if per_row else (1, q.shape[1])) if q.ndim == 2 else None
        if scale is None or q.dtype != torch.int8 or tuple(scale.shape) != want or scale.dtype != torch.float32:
            raise UserError(
                f"{path}: {key!r} is not an int8 weight with a matching float32 {key + SCALE_SUFFIX!r}: the int8 "
                "adapter is damaged; export it again"
            )
        if not (torch.isfinite(scale).all() and (scale > 0).all()):
            raise UserError(f"{path}: {key + SCALE_SUFFIX!r} holds a scale that is not a positive finite number")
        out[key] = q.float() * scale.float()
    return out


def peft_tensors(path: str | Path) -> dict[str, Tensor]:
    """The ``lora_A`` / ``lora_B`` tensors of a PEFT folder as stored, or dequantised (float32) from an int8
    folder's ``adapter_model.int8.safetensors``. ``FileNotFoundError`` when the folder has neither file."""
    path = Path(path)
    weights = weights_file(path)
    if weights is None:
        raise InputNotFound(
            f"{path} is not a PEFT adapter folder: need {PEFT_CONFIG} and {PEFT_WEIGHTS} (or {INT8_WEIGHTS})"
        )
    if weights.name == PEFT_WEIGHTS:
        return load_tensors(weights, "adapter weights")
    return dequantize_int8(load_tensors(weights, "int8 adapter weights"), weights)


def weights_file(path: Path) -> Path | None:
    """The weights file of the adapter folder ``path``: PEFT's, else the int8 one; None when it has neither."""
    found = [path / name for name in (PEFT_WEIGHTS, INT8_WEIGHTS) if (path / name).exists()]
    return found[0] if found else None


def dequantize_peft(src: str | Path, dst: str | Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Write the int8 folder ``src`` (or any adapter folder ``load_peft`` reads) as a plain PEFT LoRA folder ``dst``
    (weights in ``dtype``), which ``peft.PeftModel.from_pretrained`` and vLLM load; ``src``'s other files
    (``task.json``) are copied.
    ``FileNotFoundError`` when ``src`` is not an adapter folder, ``ValueError`` when ``dst`` exists."""
    src, dst = Path(src), Path(dst)
    if not dtype.is_floating_point:
        raise UserError(f"a PEFT folder holds floating-point weights, not {dtype}: use torch.bfloat16 or torch.float32")
    pairs = _read_checked(src)[1]  # every check an adapter passes before it runs, reading the file once
    if dst.exists():
        raise UserError(f"{dst} exists: choose a new folder")
    tensors = {
        f"{PREFIX}{name}.lora_{part}.weight": w.to(dtype).contiguous()
        for name, (a, b) in pairs.items()
        for part, w in (("A", a), ("B", b))
    }

    def write(tmp: Path) -> None:
        for item in src.iterdir():
            if item.is_file() and item.name not in (PEFT_WEIGHTS, INT8_WEIGHTS):
                shutil.copy2(item, tmp / item.name)
        save_weights(tensors, tmp)

    return write_dir_atomic(dst, write)


def _stable_config(path: Path) -> None:
    """Rewrite PEFT's config with ``target_modules`` sorted (PEFT keeps them in a set, whose order changes
    from one process to the next), so the same adapter exports byte-identically."""
    config = json.loads(path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


def _whole(x: float) -> bool:
    return abs(x - round(x)) <= 1e-6 * max(1.0, abs(x)) and round(x) > 0


def _target_modules(model: nn.Module, names: list[str]) -> list[str]:
    """Module type names (``q_proj``) where the adapter covers every layer, else full module paths."""
    kinds = sorted({n.rsplit(".", 1)[-1] for n in names})
    bad = [k for k in kinds if k not in LINEAR_MODULES]
    if bad:
        raise ValueError(f"cannot export modules of type {bad}: supported are {LINEAR_MODULES}")
    every = set(target_linears(model, kinds))
    if every - set(names):
        return sorted(names)
    return kinds


def load_peft(path: str | Path) -> LoraConditioning:
    """Read a PEFT LoRA folder as a single-adapter ``LoraConditioning`` (per-module scales folded into B
    when they differ).

    An int8 folder (``adapter_model.int8.safetensors``) loads dequantised to float32.
    Raises ``FileNotFoundError`` for a folder without the two PEFT files and ``ValueError`` naming the key or
    tensor for anything that would not run: no tensors, a NaN/inf weight, a ``lora_alpha`` that is not a
    finite number in (0, 65504], ranks that disagree with the config, LoRA variants.
    """
    path = Path(path)
    config, pairs = _read_checked(path)
    scales = {name: _peft_scale(config, name, a.shape[0]) for name, (a, _) in pairs.items()}
    common = next(iter(scales.values()))
    if all(math.isclose(s, common) for s in scales.values()):
        factors = {name: (a[None], b[None]) for name, (a, b) in pairs.items()}
        return LoraConditioning(factors, common)
    factors = {name: (a[None], (b * scales[name])[None]) for name, (a, b) in pairs.items()}
    return LoraConditioning(factors, 1.0)


def _read_checked(path: Path) -> tuple[dict[str, Any], dict[str, tuple[Tensor, Tensor]]]:
    """The config and the (A, B) pair of each module of the adapter folder ``path``, with every check of
    :func:`load_peft` passed (its errors)."""
    if not (path / PEFT_CONFIG).exists() or weights_file(path) is None:
        raise InputNotFound(
            f"{path} is not a PEFT adapter folder: need {PEFT_CONFIG} and {PEFT_WEIGHTS} (or {INT8_WEIGHTS})"
        )
    try:
        config = json.loads((path / PEFT_CONFIG).read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path / PEFT_CONFIG} is not valid JSON (line {err.lineno}): {err.msg}") from err
    if not isinstance(config, dict):
        raise UserError(f"{path / PEFT_CONFIG} must hold a JSON object")
    _check_plain_lora(config, path)
    pairs = _pairs(peft_tensors(path), path)
    if not pairs:
        raise UserError(f"{weights_file(path)} holds no tensors: export the adapter again")
    _check_ranks(config, pairs, path)
    return config, pairs


def _check_plain_lora(config: dict[str, Any], path: Path) -> None:
    """Refuse what PEFT refuses or we cannot run: other adapter types, LoRA variants, mistyped numbers.
    A missing ``r``/``lora_alpha`` takes PEFT's default (8), as PEFT does."""
    for key in ("r", "lora_alpha"):
        value = config.get(key, PEFT_DEFAULTS[key])
        if not _positive(value, key):
            raise UserError(f"{path / PEFT_CONFIG}: {key} must be a positive number{_ALPHA_BOUND[key]}, got {value!r}")
    for key, value_key in (("rank_pattern", "r"), ("alpha_pattern", "lora_alpha")):
        patterns = config.get(key) or {}
        if not isinstance(patterns, dict):
            raise UserError(f"{path / PEFT_CONFIG}: {key} must map module names to positive numbers")
        for name, v in patterns.items():
            if not _positive(v, value_key):
                raise UserError(
                    f"{path / PEFT_CONFIG}: {key}[{name!r}] must be a positive number"
                    f"{_ALPHA_BOUND[value_key]}, got {v!r}"
                )
    if config.get("peft_type") != "LORA":
        raise UserError(f"{path}: only LORA adapters are supported, got peft_type={config.get('peft_type')!r}")
    unsupported = [k for k in ("use_dora", "fan_in_fan_out", "lora_bias") if config.get(k)]
    if config.get("bias", "none") != "none":
        unsupported.append("bias")
    if unsupported:
        raise UserError(f"{path}: unsupported LoRA options {unsupported}; only plain LoRA on linears loads")


_ALPHA_BOUND = {"r": "", "lora_alpha": f" up to {MAX_LORA_ALPHA:g} (float16's largest)"}


def _positive(value: object, key: str) -> bool:
    """A positive number (no bool, no NaN/inf); a ``lora_alpha`` also at most :data:`MAX_LORA_ALPHA`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        return False
    return key != "lora_alpha" or value <= MAX_LORA_ALPHA


def _pairs(state: dict[str, Tensor], path: Path) -> dict[str, tuple[Tensor, Tensor]]:
    pairs: dict[str, dict[str, Tensor]] = {}
    for key, value in state.items():
        m = re.fullmatch(rf"{re.escape(PREFIX)}(.+)\.lora_([AB])\.weight", key)
        if m is None:
            raise UserError(f"{path}: unexpected tensor {key!r}; only lora_A/lora_B weights are supported")
        if not value.is_floating_point():
            raise UserError(f"{path}: tensor {key!r} is {value.dtype}; LoRA weights are floating point")
        if not torch.isfinite(value).all():
            bad = int((~torch.isfinite(value)).sum())
            raise UserError(f"{path}: tensor {key!r} holds {bad} NaN or infinite values: the adapter is broken")
        pairs.setdefault(m.group(1), {})[m.group(2)] = value
    incomplete = [name for name, p in pairs.items() if len(p) != 2]
    if incomplete:
        raise UserError(f"{path}: modules without both lora_A and lora_B: {incomplete[:3]}")
    return {name: (p["A"], p["B"]) for name, p in pairs.items()}


def _check_ranks(config: dict[str, Any], pairs: dict[str, tuple[Tensor, Tensor]], path: Path) -> None:
    """The rank the config gives each module (``rank_pattern``, else ``r``) must be its tensors' rank, and
    A [r, in] / B [out, r] must agree: PEFT refuses such a folder with a size mismatch, and so do we."""
    for name, (a, b) in pairs.items():
        want = _pattern_value(config.get("rank_pattern") or {}, name, config.get("r", PEFT_DEFAULTS["r"]))
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise UserError(
                f"{path}: {name} has lora_A {list(a.shape)} and lora_B {list(b.shape)}, which do "
                "not make a LoRA pair ([r, in] and [out, r])"
            )
        if a.shape[0] != want:
            raise UserError(
                f"{path}: {name} has rank {a.shape[0]} in {cast(Path, weights_file(path)).name} but {want} in "
                f"{PEFT_CONFIG} "
                "(r / rank_pattern): the config does not match the tensors"
            )


def _peft_scale(config: dict[str, Any], name: str, rank: int) -> float:
    default = config.get("lora_alpha", PEFT_DEFAULTS["lora_alpha"])
    alpha = _pattern_value(config.get("alpha_pattern") or {}, name, default)
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _pattern_value(patterns: dict[str, Any], name: str, default: float) -> float:
    """PEFT's pattern rule: a key matches a module path it ends (after a dot) or fully matches as a regex."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", name):
            return float(value)
    return default


def bank_from_peft(model: nn.Module, paths: list[str | Path], rank: int | None = None) -> AdapterBank:
    """An ``AdapterBank`` holding the PEFT LoRA folders ``paths`` as adapters 0..N-1 (e.g. SwitchCIT's
    task adapters); its rank is the largest of theirs unless given, lower ranks are zero-padded."""
    if not paths:
        raise UserError("give at least one PEFT adapter folder")
    adapters = [load_peft(p) for p in paths]
    names = sorted({n for a in adapters for n in a.factors})
    linears = target_linears(model, sorted({n.rsplit(".", 1)[-1] for n in names}))
    missing = [n for n in names if n not in linears]
    if missing:
        raise UserError(f"the adapters name modules the model lacks: {missing[:3]}")
    shapes = {
        n: (lin.in_features, lin.out_features) for n, lin in ((n, cast(nn.Linear, linears[n])) for n in names)
    }  # or our wrapper of one
    rank = rank or max(a.shape[1] for ad in adapters for a, _ in ad.factors.values())
    bank = AdapterBank(shapes, len(adapters), rank, device=next(model.parameters()).device)
    for i, adapter in enumerate(adapters):
        bank.set_adapter(i, adapter)
    return bank


@torch.no_grad()
def merge(model: nn.Module, lora: LoraConditioning, *, example: int | None = None) -> None:
    """Add one adapter's ΔW = s·BA into the base weights (single-condition deployment); ``unmerge`` undoes it."""
    single = single_adapter(lora, example)
    linears = _base_linears(model, single)
    for name, linear in linears.items():
        linear.weight += single.delta(name).to(linear.weight)
    model.__dict__.setdefault(MERGED_ATTR, []).append(single)


@torch.no_grad()
def unmerge(model: nn.Module) -> int:
    """Subtract every merged adapter again (last merged first); returns how many were unmerged."""
    merged = model.__dict__.pop(MERGED_ATTR, [])
    for single in reversed(merged):
        for name, linear in _base_linears(model, single).items():
            linear.weight -= single.delta(name).to(linear.weight)
    return len(merged)


def merged_count(model: nn.Module) -> int:
    return len(model.__dict__.get(MERGED_ATTR, []))


def _base_linears(model: nn.Module, lora: LoraConditioning) -> dict[str, nn.Linear]:
    kinds = sorted({n.rsplit(".", 1)[-1] for n in lora.factors})
    bad = [k for k in kinds if k not in LINEAR_MODULES]
    if bad:
        raise ValueError(f"cannot merge into modules of type {bad}: supported are {LINEAR_MODULES}")
    linears = target_linears(model, kinds)
    missing = [n for n in lora.factors if n not in linears]
    if missing:
        raise ValueError(f"the adapter names modules the model lacks: {missing[:3]}")
    picked = {n: linears[n] for n in lora.factors}
    return {n: (m.base_layer if isinstance(m, ConditionedLinear) else cast(nn.Linear, m)) for n, m in picked.items()}
