"""The constraints a LoRA folder must meet for vLLM to load it (``--enable-lora``), checked before we hand one out.

1. ``peft_type`` is ``LORA``, with ``bias: none``, no DoRA, no ``modules_to_save``, no ``fan_in_fan_out``.
2. One rank for the whole adapter: ``rank_pattern`` and ``alpha_pattern`` are empty (vLLM reads ``r`` and
   ``lora_alpha`` only), and every ``lora_A`` is ``[r, in]``, every ``lora_B`` is ``[out, r]``.
3. ``1 <= r <= max_lora_rank``, and ``max_lora_rank`` is one of vLLM's allowed values (``VLLM_RANKS``); the
   server must be started with ``--max-lora-rank`` at least ``r`` (vLLM's default is 16).
4. ``target_modules`` are the linear projections ``q_proj k_proj v_proj o_proj gate_proj up_proj down_proj``
   (type names, or module paths ending in one of them); no embeddings or ``lm_head``.
5. Weights are ``adapter_model.safetensors`` with keys ``base_model.model.<module path>.lora_{A,B}.weight``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from safetensors import safe_open

from hyperadapt.core import LINEAR_MODULES
from hyperadapt.core.peft_io import INT8_WEIGHTS

VLLM_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
KEY = re.compile(r"base_model\.model\.(.+)\.lora_([AB])\.weight")


def vllm_problems(folder: str | Path, max_lora_rank: int = 16) -> list[str]:
    """Every way the PEFT folder breaks the constraints above (an empty list when vLLM can load it)."""
    if max_lora_rank not in VLLM_RANKS:
        raise ValueError(f"max_lora_rank={max_lora_rank} is not a vLLM rank: use one of {VLLM_RANKS}")
    folder = Path(folder)
    config_file, weights = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    if not weights.exists() and (folder / INT8_WEIGHTS).exists():
        return [
            f"{folder} stores int8 weights ({INT8_WEIGHTS}), which vLLM does not read: write a PEFT folder "
            "with hyperadapt.core.dequantize_peft"
        ]
    if not config_file.exists() or not weights.exists():
        return [f"{folder} needs adapter_config.json and adapter_model.safetensors"]
    cfg = json.loads(config_file.read_text())
    problems = []
    if cfg.get("peft_type") != "LORA":
        problems.append(f"peft_type is {cfg.get('peft_type')!r}, not 'LORA'")
    if cfg.get("bias", "none") != "none":
        problems.append(f"bias is {cfg.get('bias')!r}: vLLM needs 'none'")
    problems += [
        f"{k} is set: vLLM does not support it" for k in ("use_dora", "modules_to_save", "fan_in_fan_out") if cfg.get(k)
    ]
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        problems.append("rank_pattern/alpha_pattern are set: vLLM needs one rank per adapter")
    r = cfg.get("r")
    if not isinstance(r, int) or not 1 <= r <= max_lora_rank:
        problems.append(
            f"r={r!r} is outside 1..{max_lora_rank} (vLLM's --max-lora-rank; hyperadapt serve --export-lora-rank)"
        )
    targets = cfg.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else targets
    bad = [t for t in targets if t.rsplit(".", 1)[-1] not in LINEAR_MODULES]
    if bad or not targets:
        problems.append(f"target_modules {bad or targets} are not among the supported {LINEAR_MODULES}")
    with safe_open(str(weights), framework="pt") as fh:
        for key in fh.keys():  # noqa: SIM118 (safe_open is not a mapping)
            match = KEY.fullmatch(key)
            if match is None:
                problems.append(f"weight {key!r} is not a lora_A/lora_B weight")
                continue
            shape = fh.get_slice(key).get_shape()
            rank = shape[0] if match.group(2) == "A" else shape[1]
            if rank != r:
                problems.append(f"{key} has rank {rank}, the config says r={r}")
    return problems


def check_vllm_adapter(folder: str | Path, max_lora_rank: int = 16) -> None:
    """Raise ``ValueError`` naming every broken constraint when vLLM could not load ``folder``."""
    problems = vllm_problems(folder, max_lora_rank)
    if problems:
        raise ValueError(f"{folder} would not load in vLLM: " + "; ".join(problems))
