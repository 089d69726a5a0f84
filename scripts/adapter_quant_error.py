"""How far lower-precision storage would move each stored LoRA's update ΔW = B·A (no model, no answers).

    python scripts/adapter_quant_error.py RUN/adapters

For every ``NNN-task/adapter_model.safetensors`` under the folder, the relative Frobenius error
‖B̃·Ã − B·A‖ / ‖B·A‖ summed over the adapter's modules, where Ã, B̃ are A and B rounded to: float8 e4m3 (no
scale); int8 with one absmax scale per row of A and of B (B [out, r]: `out` scales); int8 with one scale per row
of A and per column of B (2 r scales per module: under 1 % more bytes than the int8 values). A screening number
for issue 36 part 4 (storage per task): what it costs in AP needs the answers again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file


def int8_rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` [rows, cols] rounded to int8 with one symmetric absmax scale per row, back in float32."""
    scale = t.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127
    return (t / scale).round().clamp(-127, 127) * scale


def int8_cols(t: torch.Tensor) -> torch.Tensor:
    """``t`` [rows, cols] rounded to int8 with one absmax scale per column."""
    return int8_rows(t.T).T


def fp8(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float8_e4m3fn).float()


def main(folder: Path) -> None:
    files = sorted(folder.glob("*/adapter_model.safetensors"))
    if not files:
        raise SystemExit(f"error: no */adapter_model.safetensors under {folder}")
    rounders = {"float8_e4m3 (no scale)": fp8, "int8, absmax per row": int8_rows}
    rank_scales = {"int8, per row of A and column of B": (int8_rows, int8_cols)}
    names = [*rounders, *rank_scales]
    errors: dict[str, list[float]] = {name: [] for name in names}
    for file in files:
        state = load_file(str(file))
        sq = dict.fromkeys(names, 0.0)
        total = 0.0
        for key_a in sorted(k for k in state if "lora_A" in k):
            a, b = state[key_a].float(), state[key_a.replace("lora_A", "lora_B")].float()
            delta = b @ a
            total += delta.pow(2).sum().item()
            for name, rnd in rounders.items():
                sq[name] += (rnd(b) @ rnd(a) - delta).pow(2).sum().item()
            for name, (rnd_a, rnd_b) in rank_scales.items():
                sq[name] += (rnd_b(b) @ rnd_a(a) - delta).pow(2).sum().item()
        for name in names:
            errors[name].append((sq[name] / total) ** 0.5)
        print(f"{file.parent.name}: " + ", ".join(f"{n} {errors[n][-1]:.4f}" for n in names))
    for name, values in errors.items():
        print(
            f"{name}: relative error of ΔW over {len(values)} adapters, mean {sum(values) / len(values):.4f}, "
            f"max {max(values):.4f}"
        )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python scripts/adapter_quant_error.py RUN/adapters")
    main(Path(sys.argv[1]))
