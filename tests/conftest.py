"""Shared fixtures: tiny models built in code and a tiny JSONL task set. No network, no real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hyperadapt.testing import save_tiny_model, tiny_model


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
            rows.append({"task": "copy", "instruction": "Repeat the input.", "input": f"{split} {i}",
                         "output": f"{split} {i}", "split": split, "categories": ["string"]})
            rows.append({"task": "yesno", "instruction": "Answer yes or no.", "input": f"is {i} even",
                         "output": ["yes" if i % 2 == 0 else "no"], "split": split, "options": ["yes", "no"]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def jsonl_data(tmp_path) -> Path:
    return write_jsonl(tmp_path / "tasks.jsonl")
