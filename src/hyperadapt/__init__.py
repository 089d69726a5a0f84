"""hyperadapt: condition a frozen LLM on a textual instruction, domain, persona or style.

TAGI, MeGan and SwitchCIT on one shared core; see the README. The names below load on first use, so
that importing the package (and ``hyperadapt --help``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"  # the one version string: pyproject.toml reads it (setuptools dynamic version)
_LAZY = {
    "Instance": "hyperadapt.data",
    "Task": "hyperadapt.data",
    "load_tasks": "hyperadapt.data",
    "DEFAULT_MODEL_ID": "hyperadapt.models",
    "load_base_model": "hyperadapt.models",
    "with_overrides": "hyperadapt.config",
    "with_steps": "hyperadapt.config",
}
__all__ = [
    "DEFAULT_MODEL_ID",
    "Instance",
    "Task",
    "__version__",
    "load_base_model",
    "load_tasks",
    "with_overrides",
    "with_steps",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hyperadapt' has no attribute {name!r}")
