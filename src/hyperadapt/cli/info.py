"""``hyperadapt info``: versions, device and what is installed."""

from __future__ import annotations

import importlib.metadata
import platform

from hyperadapt.cli._errors import console


def info() -> None:
    """Versions, device, and whether the default model and the sentence encoder are installed.

    Example: hyperadapt info
    """
    import torch

    from hyperadapt.encoders import sentence_encoder_dir
    from hyperadapt.models import (
        DEFAULT_GGUF_NAME,
        DEFAULT_MODEL_PACKAGE,
        INSTALL_DEFAULT_MODEL,
        default_model_dir,
        default_model_installed,
        pick_device,
    )

    for pkg in ("hyperadapt", "torch", "transformers", "peft", "safetensors"):
        try:
            console.print(f"{pkg:14s} {importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            console.print(f"{pkg:14s} not installed", style="red")
    console.print(f"{'python':14s} {platform.python_version()}")
    dev = pick_device()
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else platform.processor() or "cpu"
    console.print(f"{'device':14s} {dev} ({name}), {torch.get_num_threads()} threads")
    cached = (default_model_dir() / "config.json").exists()
    if default_model_installed():
        state = (
            f"SmolLM2-135M-Instruct, {DEFAULT_GGUF_NAME} of {DEFAULT_MODEL_PACKAGE} dequantised to fp32; "
            f"cache {'at ' + str(default_model_dir()) if cached else 'not built yet (first load)'}"
        )
    else:
        state = f"missing: {INSTALL_DEFAULT_MODEL}"
    console.print(f"{'default model':14s} {state}")
    try:
        encoder = f"installed at {sentence_encoder_dir()} (TAGI's encoder: sentence, SwitchCIT's switch)"
    except FileNotFoundError as err:
        encoder = f"missing: {err}"
    console.print(f"{'sentence enc.':14s} {encoder}")
