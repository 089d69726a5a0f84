"""hyperadapt.vllm stands alone: it imports no method, no server and no vLLM (which lives in its own environment)."""

from __future__ import annotations

from tests.test_layers import SRC, imported_modules


def test_the_vllm_backend_imports_only_io_and_itself():
    files = sorted((SRC / "vllm").glob("*.py"))
    assert files, "src/hyperadapt/vllm/ is missing"
    ours = {
        f.name: sorted(
            m
            for m in imported_modules(f)
            if m.startswith("hyperadapt") and m != "hyperadapt.io" and not m.startswith("hyperadapt.vllm")
        )
        for f in files
    }
    assert not {k: v for k, v in ours.items() if v}
    assert not [f.name for f in files if any(m == "vllm" or m.startswith("vllm.") for m in imported_modules(f))]
