"""Shared fixtures: tiny models built in code and a tiny JSONL task set. No network, no real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hyperadapt.testing import save_tiny_model, tiny_model


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One thread for the whole session: tiny models run faster on it than on two contended ones, and
    every fixture (module-scoped ones included) computes with the same kernels, so results compare bitwise."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny Llama model saved as a local folder, loadable with ``load_base_model``."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def tiny():
    return tiny_model("llama")


def write_jsonl(path: Path) -> Path:
    rows = []
    for split in ("train", "test"):
        for i in range(6):
            rows.append(
                {
                    "task": "copy",
                    "instruction": "Repeat the input.",
                    "input": f"{split} {i}",
                    "output": f"{split} {i}",
                    "split": split,
                    "categories": ["string"],
                }
            )
            rows.append(
                {
                    "task": "yesno",
                    "instruction": "Answer yes or no.",
                    "input": f"is {i} even",
                    "output": ["yes" if i % 2 == 0 else "no"],
                    "split": split,
                    "options": ["yes", "no"],
                }
            )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def jsonl_data(tmp_path) -> Path:
    return write_jsonl(tmp_path / "tasks.jsonl")
