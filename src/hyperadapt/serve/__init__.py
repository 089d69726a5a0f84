"""``hyperadapt serve``: an OpenAI-compatible server that answers many conditions on one frozen base model.

Requests name a target in their ``model`` field (the base model, a PEFT adapter, a SwitchCIT run, or a
TAGI/MeGan run with ``condition`` in the body); a scheduler answers requests with different conditions in
one batched forward pass through the conditioning core. See docs/SERVING.md.
"""

from hyperadapt.serve.app import create_app
from hyperadapt.serve.cache import ByteLRU
from hyperadapt.serve.engine import Engine, Job, Sampling
from hyperadapt.serve.server import RunningServer, ServeConfig, Server, build_server
from hyperadapt.serve.vllm_compat import VLLM_RANKS, check_vllm_adapter, vllm_problems

__all__ = [
    "VLLM_RANKS",
    "ByteLRU",
    "Engine",
    "Job",
    "RunningServer",
    "Sampling",
    "ServeConfig",
    "Server",
    "build_server",
    "check_vllm_adapter",
    "create_app",
    "vllm_problems",
]
