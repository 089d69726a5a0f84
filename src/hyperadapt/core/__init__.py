"""The conditioning core: per-example LoRA, an adapter bank, per-example Swish_β gating, and PEFT interop.

Every method conditions a frozen model per example through this package::

    inject(model)                                   # wrap q/k/v/o/gate/up/down and the MLPs, once
    with conditioned(model, lora=bank.conditioning(task_ids), beta=beta_fn):
        logits = model(**batch).logits               # or model.generate(**batch)
"""

from hyperadapt.core.bank import BASE, AdapterBank
from hyperadapt.core.gating import BetaFn, BetaSpec, GatedMLP, swish_beta
from hyperadapt.core.inject import (
    ATTENTION_MODULES,
    LINEAR_MODULES,
    conditioned,
    inject,
    is_injected,
    remove,
    target_linears,
)
from hyperadapt.core.lora import ConditionedLinear, LoraConditioning
from hyperadapt.core.peft_io import (
    bank_from_peft,
    dequantize_peft,
    export_peft,
    load_peft,
    merge,
    merged_count,
    peft_wrapping,
    unmerge,
)

__all__ = [
    "ATTENTION_MODULES",
    "BASE",
    "LINEAR_MODULES",
    "AdapterBank",
    "BetaFn",
    "BetaSpec",
    "ConditionedLinear",
    "GatedMLP",
    "LoraConditioning",
    "bank_from_peft",
    "conditioned",
    "dequantize_peft",
    "export_peft",
    "inject",
    "is_injected",
    "load_peft",
    "merge",
    "merged_count",
    "peft_wrapping",
    "remove",
    "swish_beta",
    "target_linears",
    "unmerge",
]
