"""What ``hyperadapt serve`` runs: one base model, the runs and adapters it answers with, one engine.

Example::

    server = build_server(["runs/tagi", "runs/cl/switchcit"], ServeConfig(api_key="secret"))
    uvicorn.run(create_app(server), host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hyperadapt.core.rows import Servable
from hyperadapt.errors import UserError
from hyperadapt.runs import Run
from hyperadapt.serve.adapters import AdapterStore
from hyperadapt.serve.cache import ByteLRU
from hyperadapt.serve.engine import Engine, ServingEngine
from hyperadapt.serve.metrics import Metrics
from hyperadapt.serve.runs import AdapterTarget, BaseTarget, MethodTarget, Target
from hyperadapt.serve.vllm_compat import VLLM_RANKS

BASE_NAME = "base"


@dataclass
class ServeConfig:
    """Limits and scheduling of the server (every field is a ``hyperadapt serve`` option).

    ``max_prompts``: prompts in one request's list. ``max_loras``, ``max_lora_rank`` and ``lora_cache_mb``
    bound the adapters loaded at run time (vLLM's names; :class:`AdapterStore`); ``export_lora_rank`` is the
    largest rank ``/v1/adapters`` may export (a vLLM rank, checked against the generated folder).
    """

    max_batch: int = 32
    gather_ms: float = 5.0
    max_queue: int = 1024
    cache_mb: float = 512.0
    max_body_bytes: int = 1_000_000
    max_prompt_tokens: int = 2048
    max_prompts: int = 64
    max_condition_chars: int = 4000
    max_tokens: int = 512
    default_max_tokens: int = 16
    export_lora_rank: int = 16
    max_loras: int = 32
    max_lora_rank: int = 64
    lora_cache_mb: float = 512.0
    allow_runtime_lora: bool = True
    api_key: str | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_batch",
            "max_queue",
            "max_body_bytes",
            "max_prompt_tokens",
            "max_prompts",
            "max_condition_chars",
            "max_tokens",
            "default_max_tokens",
            "max_loras",
            "max_lora_rank",
        ):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.export_lora_rank not in VLLM_RANKS:
            raise UserError(f"export_lora_rank must be one of vLLM's {VLLM_RANKS}, got {self.export_lora_rank}")
        if self.gather_ms < 0 or self.cache_mb < 0 or self.lora_cache_mb <= 0:
            raise UserError("gather_ms and cache_mb must be >= 0, lora_cache_mb > 0")
        if self.api_key is not None and not self.api_key.strip():
            raise UserError(
                "the API key is empty: every request would be refused. Give a key (--api-key or "
                "HYPERADAPT_API_KEY), or leave it unset to serve without one"
            )


@dataclass
class Server:
    """The model, its targets by name (``model`` field of a request), the condition cache and the engine (the
    own :class:`Engine`, or a ``VllmEngine`` after ``serve/vllm_engine.py::use_vllm``)."""

    model: Any
    tokenizer: Any
    base_id: str
    targets: dict[str, Target]
    config: ServeConfig
    cache: ByteLRU
    engine: ServingEngine
    metrics: Metrics
    adapters: AdapterStore
    started: float = field(default_factory=time.time)


def parse_named(spec: str) -> tuple[str, Path]:
    """``NAME=PATH`` or ``PATH`` (named after its folder); ``ValueError`` for an empty name or path."""
    name, sep, path = spec.partition("=")
    name, path = (name, path) if sep else (Path(spec).name, spec)
    if not path:
        raise UserError(f"{spec!r} names no folder: write PATH or NAME=PATH")
    if not name.strip():
        raise UserError(f"{spec!r} gives an empty name: write NAME=PATH with a NAME that requests can use")
    return name, Path(path)


def build_server(
    runs: Sequence[str],
    config: ServeConfig | None = None,
    adapters: Sequence[str] = (),
    model: str | None = None,
    model_and_tokenizer: tuple[Any, Any] | None = None,
    methods: Mapping[str, Servable] | None = None,
) -> Server:
    """Load every run (``PATH`` or ``NAME=PATH``: any run that ``eval --run`` loads) and adapter folder onto one
    base model.

    The base model is ``model``, else the runs' (they must agree); a run trained on another base model than the
    one loaded is refused. ``methods`` maps names to methods already loaded (objects with the
    ``hyperadapt.core.rows.Servable`` interface), for tests and notebooks. Raises ``ValueError`` on a name used
    twice, a run that cannot be served (unfinished, the oracle) or runs of different base models,
    ``FileNotFoundError`` on a missing folder.
    """
    config = config or ServeConfig()
    named = [parse_named(r) for r in runs]
    names = [n for n, _ in named] + [parse_named(a)[0] for a in adapters] + list(methods or {})
    twice = sorted({n for n in names if names.count(n) > 1 or n == BASE_NAME})
    if twice:
        raise UserError(
            f"two things are named {twice[0]!r} (the base model is {BASE_NAME!r}): name them with NAME=PATH"
        )
    opened = [(name, Run.open(path)) for name, path in named]  # each run's record, read once
    for _, run in opened:
        run.check_loadable()  # before the base model loads
    bases = {run.base_model.name_or_path for _, run in opened}
    if model is None and len(bases) > 1:
        raise UserError(f"the runs were trained on different base models {sorted(bases)}: serve them separately")
    base_id = model or (bases.pop() if bases else "default")
    if model_and_tokenizer is None and model is None and opened:
        first = opened[0][1]  # the runs' own base model (a relative path is explained when not found from here)
        model_and_tokenizer = first.base_model.load(first.path)
    elif model_and_tokenizer is None:
        from hyperadapt.models import load_base_model

        model_and_tokenizer = load_base_model(base_id)
    model_obj, tokenizer = model_and_tokenizer
    cache = ByteLRU(int(config.cache_mb * 2**20))
    targets: dict[str, Target] = {BASE_NAME: BaseTarget(BASE_NAME)}
    for name, run in opened:  # each load checks the run's base model against the one loaded
        _add(targets, name, MethodTarget(name, run.load(model_and_tokenizer), cache, run.prompt_style, run))
    for name, method in (methods or {}).items():
        _add(targets, name, MethodTarget(name, method, cache))
    for spec in adapters:
        name, path = parse_named(spec)
        _add(targets, name, AdapterTarget.load(name, path, model_obj))
    model_obj.eval()
    metrics = Metrics()
    engine = Engine(model_obj, tokenizer, config.max_batch, config.gather_ms, config.max_queue, metrics)
    store = AdapterStore(targets, config.max_loras, config.max_lora_rank, int(config.lora_cache_mb * 2**20))
    return Server(model_obj, tokenizer, base_id, targets, config, cache, engine, metrics, store)


def _add(targets: dict[str, Target], name: str, target: Target) -> None:
    if name in targets:
        raise UserError(f"two things are named {name!r}: name them with NAME=PATH")
    targets[name] = target


class RunningServer:
    """A uvicorn server in a background thread (tests, benchmarks); ``url`` is its base URL. :meth:`stop`
    gives open requests ``grace_s`` seconds to finish, then closes them (the engine ends them with a 503)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, grace_s: float = 5.0) -> None:
        import uvicorn

        self.grace_s = grace_s
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=grace_s,  # type: ignore[arg-type]  # annotated int; used as asyncio.timeout's float
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        sock = self.server.servers[0].sockets[0]
        self.url = f"http://{host}:{sock.getsockname()[1]}"

    def stop(self) -> None:
        """Stop serving; ``RuntimeError`` when the server thread has not ended ``grace_s`` + 15 s later."""
        self.server.should_exit = True
        self.thread.join(timeout=self.grace_s + 15)
        if self.thread.is_alive():
            raise RuntimeError(f"the server did not stop within {self.grace_s + 15:.0f} s")
