"""vLLM as a serving engine for hyperadapt: a vLLM server process (ours or reached by URL), an async client that
loads adapters and forwards OpenAI requests, and the on-disk cache that turns each condition into one adapter.

vLLM runs in its own environment (``make vllm``); nothing here imports vLLM. Nothing here knows a method either:
the caller gives the function that writes a condition's PEFT folder.
"""

from hyperadapt.vllm.adapters import ServedAdapters
from hyperadapt.vllm.cache import AdapterDiskCache, CachedAdapter, adapter_key, normalise_condition
from hyperadapt.vllm.client import VllmClient
from hyperadapt.vllm.errors import AdapterRefused, VllmError, VllmTimeout, VllmUnavailable
from hyperadapt.vllm.process import VllmProcess, VllmServerConfig, vllm_python

__all__ = [
    "AdapterDiskCache",
    "AdapterRefused",
    "CachedAdapter",
    "ServedAdapters",
    "VllmClient",
    "VllmError",
    "VllmProcess",
    "VllmServerConfig",
    "VllmTimeout",
    "VllmUnavailable",
    "adapter_key",
    "normalise_condition",
    "vllm_python",
]
