"""Wrap the target modules of an unmodified transformers model, and condition one call at a time.

``inject`` swaps each target ``nn.Linear`` for a :class:`ConditionedLinear` and each decoder layer's MLP
for a :class:`GatedMLP` (the originals kept as ``base_layer``); ``remove`` puts the originals back.
``conditioned(model, lora=..., beta=...)`` sets the per-example conditioning for the calls inside it, so
``model(...)`` and ``model.generate(...)`` work unchanged; its ``finally`` always clears the state.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from torch import Tensor, nn

from hyperadapt.core.gating import BetaFn, BetaSpec, GatedMLP, beta_for_layers
from hyperadapt.core.lora import ConditionedLinear, LoraConditioning, PreparedLora, prepare
from hyperadapt.errors import UserError
from hyperadapt.models import SWIGLU_MODULES, check_supported, decoder_layers

ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
LINEAR_MODULES = ATTENTION_MODULES + SWIGLU_MODULES


def check_targets(targets: Sequence[str], key: str = "target modules", required: bool = False) -> tuple[str, ...]:
    """Validate module type names (``q_proj``, ``v_proj``, ...): only the Llama-family linears are allowed.

    The one check of every config's LoRA targets; ``key`` names the setting in the error, and ``required``
    refuses an empty list. Raises ``UserError`` (a ``ValueError``) naming the unsupported names.
    """
    if isinstance(targets, str):
        targets = (targets,)
    bad = [t for t in targets if t not in LINEAR_MODULES]
    if bad or (required and not targets):
        raise UserError(f"unsupported {key} {bad or '[]'}: choose from {list(LINEAR_MODULES)}, e.g. [q_proj, v_proj]")
    return tuple(targets)


def canonical_name(path: str) -> str:
    """The module path in the unmodified model (wrappers add ``.base_layer``)."""
    return path.replace(".base_layer", "")


def target_linears(model: nn.Module, targets: Sequence[str] = LINEAR_MODULES) -> dict[str, nn.Module]:
    """The target linears of every decoder layer, keyed by canonical path; wrapped ones as their wrapper."""
    return {name: module for name, _, module in _find_linears(model, targets)}


def _find_linears(model: nn.Module, targets: Sequence[str]) -> list[tuple[str, str, nn.Module]]:
    """(canonical path, path in the current tree, module) of each target linear."""
    targets = check_targets(targets)
    found: list[tuple[str, str, nn.Module]] = []
    for i, layer in enumerate(decoder_layers(model)):
        for sub, module in layer.named_modules():
            if sub.rsplit(".", 1)[-1] in targets:
                path = f"model.layers.{i}.{sub}"
                found.append((canonical_name(path), path, module))
    return found


def inject(model: nn.Module, targets: Sequence[str] = LINEAR_MODULES, gating: bool = True) -> nn.Module:
    """Wrap ``targets`` of every decoder layer for per-example LoRA, and the MLPs for Swish_β gating.

    Idempotent and additive: modules already wrapped stay as they are. Returns ``model``.
    """
    check_supported(model.config)
    for name, path, module in _find_linears(model, targets):
        if isinstance(module, ConditionedLinear):
            continue
        if type(module) is not nn.Linear:
            raise ValueError(
                f"{name} is a {type(module).__name__}: only torch.nn.Linear is supported "
                "(remove PEFT or quantization wrappers first)"
            )
        model.set_submodule(path, ConditionedLinear(module, name))
    if gating:
        for i, layer in enumerate(decoder_layers(model)):
            mlp = layer.get_submodule("mlp")
            if not isinstance(mlp, GatedMLP):
                layer.mlp = GatedMLP(mlp, i, f"model.layers.{i}.mlp")
    return model


def remove(model: nn.Module) -> nn.Module:
    """Undo ``inject``: put the original module objects back. Returns ``model``."""
    for layer in decoder_layers(model):
        if isinstance(layer.mlp, GatedMLP):
            layer.mlp = layer.mlp.base_layer
        wrapped = [(p, m) for p, m in layer.named_modules() if isinstance(m, ConditionedLinear)]
        for path, module in wrapped:
            layer.set_submodule(path, module.base_layer)
    return model


def injected_targets(model: nn.Module) -> tuple[tuple[str, ...], bool]:
    """What ``inject`` wrapped in ``model``: the module type names of the wrapped linears, and whether the
    MLPs are gated (so that ``inject(model, *injected_targets(model))`` wraps it again after ``remove``)."""
    kinds = sorted({m.name.rsplit(".", 1)[-1] for m in conditioned_linears(model).values()})
    return tuple(kinds), bool(gated_mlps(model))


def conditioned_linears(model: nn.Module) -> dict[str, ConditionedLinear]:
    return {m.name: m for m in model.modules() if isinstance(m, ConditionedLinear)}


def gated_mlps(model: nn.Module) -> list[GatedMLP]:
    return [m for m in model.modules() if isinstance(m, GatedMLP)]


def is_injected(model: nn.Module) -> bool:
    return any(isinstance(m, ConditionedLinear | GatedMLP) for m in model.modules())


@contextmanager
def conditioned(
    model: nn.Module, lora: LoraConditioning | None = None, beta: BetaSpec | None = None
) -> Iterator[nn.Module]:
    """Condition every call of ``model`` inside the block per example; the previous state comes back after.

    ``lora``: per-module factors for the batch (see :class:`LoraConditioning`); modules it does not name
    run without a delta. ``beta``: a tensor ``[B, T|1, I|1]`` for every layer, a list or dict of them per
    layer, or ``beta_fn(layer_idx, mlp_input) -> β``. Example::

        with conditioned(model, lora=bank.conditioning(task_ids)):
            out = model.generate(**batch, max_new_tokens=32)
    """
    linears = conditioned_linears(model)
    mlps = gated_mlps(model)
    lora_states = _lora_states(linears, lora) if lora is not None else None
    betas = _beta_states(mlps, beta) if beta is not None else None
    saved_lora = {name: m.lora for name, m in linears.items()}
    saved_beta = [m.beta for m in mlps]
    try:
        if lora_states is not None:
            for name, module in linears.items():
                module.lora = lora_states.get(name)
        if betas is not None:
            for mlp, b in zip(mlps, betas, strict=True):
                mlp.beta = b
        yield model
    finally:
        for name, module in linears.items():
            module.lora = saved_lora[name]
        for mlp, b in zip(mlps, saved_beta, strict=True):
            mlp.beta = b


def _lora_states(linears: dict[str, ConditionedLinear], lora: LoraConditioning) -> dict[str, PreparedLora]:
    if not isinstance(lora, LoraConditioning):
        raise ValueError(f"lora must be a LoraConditioning, got {type(lora).__name__}")
    missing = [name for name in lora.factors if name not in linears]
    if missing:
        kinds = sorted({name.rsplit(".", 1)[-1] for name in missing})
        raise ValueError(
            f"the conditioning names modules that are not wrapped: {missing[:3]}"
            f"{' ...' if len(missing) > 3 else ''}. Call inject(model, targets={kinds}) first "
            f"(allowed targets: {LINEAR_MODULES})"
        )
    return {name: prepare(lora, name, linears[name].base_layer) for name in lora.factors}


def _beta_states(mlps: list[GatedMLP], beta: BetaSpec) -> list[Tensor | BetaFn | None]:
    if not mlps:
        raise ValueError("β needs gated MLPs: call inject(model, gating=True) first")
    return beta_for_layers(beta, len(mlps))
