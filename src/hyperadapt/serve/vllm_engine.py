"""``hyperadapt serve --engine vllm``: the same requests as the own engine, answered by a vLLM server.

:class:`VllmEngine` has the interface the endpoints use from :class:`~hyperadapt.serve.engine.Engine`
(``start``, ``stop``, ``submit(job)`` with events back, ``cancel``, ``call``, ``check_job``), so every check of
the HTTP layer applies to both engines unchanged. Each job becomes one request to vLLM:

- the base model: forwarded to vLLM's base model;
- a PEFT folder (``--lora-modules``, ``/v1/load_lora_adapter``): the factors the front loaded and checked are
  written once as a PEFT folder into the disk cache, keyed by their content, and loaded into vLLM on first use (a
  ``replace`` is a new adapter; a folder changed on disk after its load changes nothing);
- a ``condition`` run that exports adapters (TAGI, Hypter): the condition becomes a PEFT folder once (the
  method's ``export_adapter``, one hypernetwork pass, in the own engine's thread), kept in an
  :class:`~hyperadapt.vllm.AdapterDiskCache` keyed by run and normalised condition, and loaded into vLLM;
- an ``input`` run (SwitchCIT) or a ``fixed`` one: hyperadapt routes (or rejects) the input as today; the
  chosen adapter is written as a PEFT folder once (keyed by run and route) and served by vLLM; a rejected input
  goes to vLLM's base model;
- MeGan (β for the SwiGLU gates, which no stock vLLM model takes per request): answered by the own engine in
  the same server, as any row that carries β.

The prompt goes to vLLM as token ids (the endpoint's own rendering), with the own engine's end-of-turn tokens as
``stop_token_ids``, so both engines decode the same sequence. Responses keep ``route`` and ``cache_hit``. Every
failure of vLLM ends its request with one error event (503 unreachable or dead, 504 too slow, 422 an adapter it
refuses, vLLM's own 4xx otherwise); the other requests go on. A request pins the adapter it answers with in the
disk cache until it ends, so no other request's new condition evicts it mid-answer.

Example::

    server = build_server(["runs/tagi"])
    use_vllm(server, VllmServerConfig(model=resolve_model_path(server.base_id)))  # or url="http://gpu:8000"
    uvicorn.run(create_app(server))
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hyperadapt.core import LoraConditioning
from hyperadapt.core.peft_io import export_peft
from hyperadapt.core.rows import RowCondition
from hyperadapt.serve.engine import (
    Engine,
    EngineStopped,
    ErrorEvent,
    Job,
    QueueFull,
    TokenLogprobs,
    _finish,
    _send,
)
from hyperadapt.serve.errors import RequestRefused
from hyperadapt.serve.runs import AdapterTarget, BaseTarget, MethodTarget, Target, factors_digest
from hyperadapt.serve.server import Server
from hyperadapt.vllm import (
    AdapterDiskCache,
    ServedAdapters,
    VllmClient,
    VllmError,
    VllmProcess,
    VllmServerConfig,
    VllmUnavailable,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_ADAPTER_DIR = Path("~/.cache/hyperadapt/vllm-adapters")
TOKENIZER_PROBE = "hyperadapt checks the tokenizer: Grüße, 12345 — ünïcödé, 数字."  # one text, both sides
RUNTIME_ADAPTERS = "runtime-adapter"  # the "run" of the cache's keys for PEFT folders the front loaded
CANCEL_POLL_S = 0.1  # how soon a request whose client left is cancelled (its stream to vLLM closed)


def run_fingerprint(target: MethodTarget) -> str:
    """What identifies a run's adapters on disk: the run's digest (its folder and record: a retrained run
    writes a new record, so its conditions get new keys); the served name for a method given in code."""
    return target.run.digest if target.run is not None else f"name:{target.name}"


def vllm_logprobs(block: dict[str, Any], top: int) -> list[TokenLogprobs]:
    """The own engine's per-token entries ``(token_id, logprob, [(id, logprob), ...] of the ``top`` best)``
    from a vLLM completion chunk's ``logprobs`` asked with ``return_tokens_as_token_ids`` (tokens
    ``"token_id:N"``; each ``top_logprobs`` dict holds the chosen token and the best ``top``). Raises
    ``VllmError`` for a token that is not in that form."""

    def token_id(token: str) -> int:
        name, _, number = token.partition(":")
        if name != "token_id" or not number.lstrip("-").isdigit():
            raise VllmError(f"vLLM returned the logprob token {token!r}, not 'token_id:N'")
        return int(number)

    entries: list[TokenLogprobs] = []
    tops = block.get("top_logprobs") or [None] * len(block["tokens"])
    for token, logprob, alternatives in zip(block["tokens"], block["token_logprobs"], tops, strict=True):
        best = sorted(((token_id(t), float(v)) for t, v in (alternatives or {}).items()), key=lambda a: -a[1])
        entries.append((token_id(token), float(logprob), best[:top]))
    return entries


def write_row(model: Any, row: RowCondition, out: Path) -> None:
    """A row's LoRA factors (A [r, in], B [out, r] per module, scale folded into B) as a PEFT folder ``out`` for
    ``model``; ``ValueError`` for a row without them (the base model, or β)."""
    if row.lora is None:
        raise ValueError(f"the row {row.route!r} holds no LoRA factors: it is no adapter")
    factors = {p: (a[None], b[None]) for p, (a, b) in row.lora.items()}  # A [1, r, in], B [1, out, r]
    export_peft(model, LoraConditioning(factors, 1.0, batch_size=1), out)


class VllmEngine:
    """Answers jobs through vLLM (started here from ``config``, or reached at ``url``), with ``own`` (the
    server's own :class:`Engine`) for MeGan rows, ``call`` and ``check_job``. At most ``max_queue`` jobs are open
    at once; generated adapters live under ``adapter_dir`` (at most ``max_adapters``, LRU)."""

    def __init__(
        self,
        own: Engine,
        targets: dict[str, Target],
        config: VllmServerConfig | None = None,
        url: str | None = None,
        adapter_dir: str | Path = DEFAULT_ADAPTER_DIR,
        max_adapters: int = 512,
        max_queue: int = 1024,
        timeout: float = 300.0,
        longest: int | None = None,
    ) -> None:
        self.own, self.targets, self.metrics = own, targets, own.metrics
        self.longest = longest  # the longest request the front admits (prompt + new tokens), checked at start
        self.process = VllmProcess(config=config, url=url)
        self.cache = AdapterDiskCache(adapter_dir, max_adapters)
        self.max_queue, self.timeout = max_queue, timeout
        self.base_name: str | None = None  # the model vLLM serves as its base
        self.client: VllmClient | None = None
        self.served: ServedAdapters | None = None
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._open: dict[Job, concurrent.futures.Future[None]] = {}
        self._stopping = False
        self._fingerprints: dict[str, str] = {}
        self._answering: dict[Job, asyncio.Future[None]] = {}  # the answer of each open job (event loop only)
        self._sweeper: asyncio.Future[None] | None = None
        self.started = False

    # -- the Engine interface --------------------------------------------------------------------------

    def start(self) -> VllmEngine:
        """Start the own engine, then vLLM (or reach it), and wait until it is healthy and serves the front's
        model; raises :class:`VllmUnavailable` (or ``FileNotFoundError`` when ``make vllm`` was not run) naming
        why. A second call returns at once (``hyperadapt serve`` starts it before the app, whose start calls it)."""
        if self.started:
            return self
        self.own.start()
        self.process.start()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hyperadapt-vllm", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._connect(), self._loop).result()
        self.started = True
        return self

    async def _close(self) -> None:
        """End the sweeper and the client's connections (on the event loop, before it stops)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        if self.client is not None:
            await self.client.aclose()

    async def _sweep(self) -> None:
        """Every ``CANCEL_POLL_S``, cancel the answers of cancelled jobs: one task for all open requests (a poll per
        request cost 13.9 % of a core at 1,024 open requests, this 0.26 %: ``scripts/cancel_watch_cost.py``)."""
        while True:
            await asyncio.sleep(CANCEL_POLL_S)
            for job, task in list(self._answering.items()):
                if job.cancelled and not task.done():
                    task.cancel()

    async def _connect(self) -> None:
        # one connection for each open request (submit_all bounds them by max_queue, some more for adapter loads)
        self.client = VllmClient(self.process.url, timeout=self.timeout, max_connections=self.max_queue + 16)
        self.served = ServedAdapters(self.client, self.cache)
        self.base_name = (await self.client.models())[0]
        await self._check_model(self.client, self.base_name)
        self._sweeper = asyncio.ensure_future(self._sweep())

    async def _check_model(self, client: VllmClient, base: str) -> None:
        """Refuse (:class:`VllmUnavailable`) a vLLM whose tokenizer is not the front's: the front sends token ids,
        so another model would answer garbage without an error. Warn when its context is shorter than the longest
        request the front admits (vLLM refuses those with its 400)."""
        found = await client.tokenize(base, TOKENIZER_PROBE)
        if found is None:
            log.warning("vLLM at %s has no /tokenize: cannot check that it serves the front's model", client.base_url)
            return
        tokens, context = found
        ours = list(self.own.tokenizer(TOKENIZER_PROBE, add_special_tokens=False).input_ids)
        if tokens != ours:
            front = getattr(self.own.model, "name_or_path", "") or "the front's model"
            raise VllmUnavailable(
                f"vLLM at {client.base_url} serves {base!r}, whose tokenizer is not that of {front} (a probe text "
                f"is {len(tokens)} tokens there, {len(ours)} here): the front sends token ids, so vLLM must serve "
                "the same base model"
            )
        if self.longest is not None and context < self.longest:
            log.warning(
                "vLLM at %s has a context of %d tokens; the front admits requests of up to %d (prompt + max_tokens): "
                "vLLM refuses longer ones with a 400. Start it with --max-model-len %d, or lower the front's "
                "--max-prompt-tokens / --max-tokens",
                client.base_url,
                context,
                self.longest,
                self.longest,
            )

    def stop(self) -> None:
        """End every open request with a 503, stop vLLM if we started it, and the own engine (once: a second
        call does nothing)."""
        if self._stopping:
            return
        self._stopping = True
        for job, future in list(self._open.items()):
            future.cancel()
            _finish(job, {"type": "error", "status": 503, "message": "the server is shutting down: retry later"})
        if self._thread is not None:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self.process.stop()
        self.own.stop()

    def submit(self, job: Job) -> None:
        """Queue ``job`` (see :meth:`submit_all`)."""
        self.submit_all([job])

    def submit_all(self, jobs: Sequence[Job]) -> None:
        """Queue the jobs of one request, all or none: the own engine takes the ones it answers (β), vLLM the
        others. :class:`QueueFull` when vLLM's share does not fit in ``max_queue`` open jobs,
        :class:`EngineStopped` after stop."""
        if self._stopping or self._thread is None:
            raise EngineStopped("the server is shutting down: retry on another server")
        own = [job for job in jobs if self._own_answers(job.target)]
        forwarded = [job for job in jobs if not self._own_answers(job.target)]
        if len(self._open) + len(forwarded) > self.max_queue:
            raise QueueFull(f"{self.max_queue} requests are open: retry later")
        if own:
            self.own.submit_all(own)
        for job in forwarded:
            future = asyncio.run_coroutine_threadsafe(self._run(job), self._loop)
            self._open[job] = future
            future.add_done_callback(functools.partial(self._closed, job))

    def _closed(self, job: Job, _future: concurrent.futures.Future[None]) -> None:
        self._open.pop(job, None)

    def call(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``fn()`` in the own engine's thread (anything that touches the model)."""
        return self.own.call(fn)

    def cancel(self, job: Job) -> None:
        job.cancel()

    def check_job(self, job: Job) -> None:
        """The own engine's checks (vLLM answers what they accept, ``logprobs`` included)."""
        self.own.check_job(job)

    # -- one request -----------------------------------------------------------------------------------

    @staticmethod
    def _own_answers(target: Target) -> bool:
        """MeGan and any condition method without adapters: β, which stock vLLM cannot apply per request."""
        return isinstance(target, MethodTarget) and target.needs_condition and not target.exports_adapters

    async def _run(self, job: Job) -> None:
        """Answer ``job``; :meth:`_sweep` cancels the answer when the job is cancelled (its client left), which
        closes the stream to vLLM and frees its slot there."""
        task = asyncio.ensure_future(self._answer(job))
        self._answering[job] = task
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:  # stop() cancelled the request: its answer too
            task.cancel()
            raise
        finally:
            self._answering.pop(job, None)
        if task.cancelled():
            self.metrics.cancelled += 1
            return
        err = task.exception()
        if err is None:
            return
        event: ErrorEvent
        if isinstance(err, RequestRefused):
            event = {"type": "error", "status": err.status, "message": str(err), "param": err.param}
        elif isinstance(err, QueueFull | EngineStopped):
            event = {"type": "error", "status": 503, "message": str(err)}
        elif isinstance(err, VllmError):
            event = {"type": "error", "status": err.status, "message": str(err)}
        elif isinstance(err, ValueError | FileNotFoundError):
            event = {"type": "error", "status": 400, "message": str(err)}
        else:
            log.error("a request failed", exc_info=err)
            event = {"type": "error", "status": 500, "message": f"internal error: {type(err).__name__}: {err}"}
        _finish(job, event)

    def _connected(self) -> tuple[VllmClient, ServedAdapters]:
        """The client and the adapters of the vLLM reached by :meth:`start` (``RuntimeError`` before it)."""
        if self.client is None or self.served is None:
            raise RuntimeError("the vLLM engine is not connected: call start() first")
        return self.client, self.served

    async def _answer(self, job: Job) -> None:
        self.check_job(job)
        if self.process.owned:
            self.process.check()  # a vLLM we started and that died: its exit code and log, not a timeout
        model, route, hit, pinned = await self._model_of(job)
        if model is None:  # a row with β: the own engine answers it
            self.own.submit(job)
            return
        try:
            await self._complete(job, model, route, hit)
        finally:  # also when the client left (cancelled): the adapter may be evicted again
            if pinned is not None:
                self._connected()[1].release(pinned)

    async def _complete(self, job: Job, model: str, route: str, hit: bool | None) -> None:
        """Stream vLLM's completion of ``job`` with ``model`` (the base model's name or an adapter's)."""
        self.metrics.admitted(time.perf_counter() - job.enqueued, len(job.prompt_ids))
        tokens = kept = None
        if isinstance(job.target, MethodTarget) and job.target.needs_condition:
            read = job.target.read_condition(job.condition)
            tokens, kept = read.tokens, read.kept
        _send(
            job,
            {"type": "start", "route": route, "cache_hit": hit, "condition_tokens": tokens, "condition_kept": kept},
        )
        client, _ = self._connected()
        s = job.sampling
        body: dict[str, Any] = {
            "model": model,
            "prompt": job.prompt_ids,
            "max_tokens": s.max_tokens,
            "temperature": 0.0 if s.greedy else s.temperature,
            "top_p": s.top_p,
            "seed": _int64(s.seed),
            "stop": list(s.stop),
            "stop_token_ids": sorted(self.own.eos),
            "skip_special_tokens": True,
            "stream_options": {"include_usage": True},
        }
        if s.logprobs is not None:  # the raw distribution's, as the own engine gives them; tokens as their ids
            body |= {"logprobs": s.logprobs, "return_tokens_as_token_ids": True}
        finish: str | None = None
        usage: dict[str, Any] = {}
        logprobs: list[TokenLogprobs] | None = [] if s.logprobs is not None else None
        async for chunk in client.stream("completion", body):
            for choice in chunk.get("choices") or []:
                if choice.get("text"):
                    _send(job, {"type": "delta", "text": choice["text"]})
                if logprobs is not None and choice.get("logprobs"):
                    logprobs += vllm_logprobs(choice["logprobs"], s.logprobs or 0)
                finish = choice.get("finish_reason") or finish
            usage = chunk.get("usage") or usage
        _finish(
            job,
            {
                "type": "done",
                "finish_reason": finish or "stop",
                "prompt_tokens": usage.get("prompt_tokens", len(job.prompt_ids)),
                "completion_tokens": usage.get("completion_tokens", 0),
                "logprobs": logprobs,
            },
        )

    async def _model_of(self, job: Job) -> tuple[str | None, str, bool | None, str | None]:
        """(vLLM model name, route, cache_hit, pinned) of a job; the name is None for a row the own engine
        answers; ``pinned`` names a generated adapter pinned in the cache for this job (release it when done)."""
        target = job.target
        if isinstance(target, BaseTarget):
            return self.base_name, target.name, None, None
        _, served = self._connected()
        if isinstance(target, AdapterTarget):  # the factors the front loaded and checked, keyed by their content
            row = target.resolve(None, job.route_text)
            digest = target.digest or factors_digest(target.factors)
            entry = await served.condition(RUNTIME_ADAPTERS, digest, self._row_writer(row), pin=True)
            return entry.name, row.route, None, entry.name
        if not isinstance(target, MethodTarget):
            raise TypeError(f"the vLLM engine cannot answer a {type(target).__name__}")
        fingerprint = self._fingerprint(target)
        if target.needs_condition:
            read = target.read_condition(job.condition)
            entry = await served.condition(fingerprint, read.key, self._exporter(target, read.text), pin=True)
            return entry.name, f"{target.name}:{read.key[:10]}", entry.hit, entry.name
        row = await asyncio.wrap_future(self.own.call(lambda: target.resolve(None, job.route_text)))
        if row.beta is not None:
            return None, row.route, None, None
        if row.lora is None:  # rejected by the router, or a base route
            return self.base_name, row.route, None, None
        entry = await served.condition(fingerprint, row.route, self._row_writer(row), pin=True)
        return entry.name, row.route, entry.hit, entry.name

    def _fingerprint(self, target: MethodTarget) -> str:
        if target.name not in self._fingerprints:
            self._fingerprints[target.name] = run_fingerprint(target)
        return self._fingerprints[target.name]

    def _exporter(self, target: MethodTarget, condition: str) -> Callable[[str, Path], None]:
        """Writes the adapter of ``condition`` (normalised by the condition rule) through the method's own export,
        in the own engine's thread (the cache calls it from a worker thread, at most once per key)."""

        def write(_key: str, out: Path) -> None:
            self.own.call(lambda: target.export_adapter(condition, out)).result()

        return write

    def _row_writer(self, row: RowCondition) -> Callable[[str, Path], None]:
        def write(_route: str, out: Path) -> None:
            self.own.call(lambda: write_row(self.own.model, row, out)).result()

        return write


def _int64(seed: int | None) -> int | None:
    """A request's seed in [0, 2**64) as vLLM takes it, a signed 64-bit integer: the same 64 bits (two's
    complement), except that 2**64 - 1 would be -1, which vLLM reads as "no seed" (a new sample each time): it is
    sent as -2**63, the image of 2**63, so those two seeds give the same samples through vLLM."""
    if seed is None or seed < 2**63:
        return seed
    signed = seed - 2**64
    return -(2**63) if signed == -1 else signed


def use_vllm(
    server: Server,
    config: VllmServerConfig | None = None,
    url: str | None = None,
    adapter_dir: str | Path = DEFAULT_ADAPTER_DIR,
    max_adapters: int = 512,
) -> VllmEngine:
    """Make ``server`` (from :func:`~hyperadapt.serve.server.build_server`) answer through vLLM, started from
    ``config`` or reached at ``url`` when the app starts. Raises ``FileNotFoundError`` at once when vLLM is to be
    started and its environment is missing (``make vllm``), ``ValueError`` when it answers through vLLM already."""
    if not isinstance(server.engine, Engine):
        raise ValueError("the server answers through vLLM already: call use_vllm once per server")
    if config is not None:
        from hyperadapt.vllm import vllm_python

        vllm_python(config.python)
    engine = VllmEngine(
        server.engine,
        server.targets,
        config=config,
        url=url,
        adapter_dir=adapter_dir,
        max_adapters=max_adapters,
        max_queue=server.config.max_queue,
        longest=server.config.max_prompt_tokens + server.config.max_tokens,
    )
    server.engine = engine
    return engine


def vllm_config(server: Server, max_lora_rank: int = 16, max_loras: int = 8, **overrides: Any) -> VllmServerConfig:
    """How ``hyperadapt serve`` starts vLLM for ``server``: its base model folder, float32 as the own engine,
    the adapters' rank limit, and a context as long as the longest request the front admits (``max_prompt_tokens``
    + ``max_tokens``, at most the model's ``max_position_embeddings``), so that vLLM refuses no request the own
    engine would answer; ``overrides`` are other :class:`VllmServerConfig` fields."""
    from hyperadapt.models import resolve_model_path

    context = server.config.max_prompt_tokens + server.config.max_tokens
    positions = getattr(server.model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        context = min(context, positions)
    fields: dict[str, Any] = {
        "model": resolve_model_path(server.base_id),
        "max_lora_rank": max_lora_rank,
        "max_loras": max_loras,
        "max_cpu_loras": max(max_loras, 4 * max_loras),
        "max_model_len": context,
        "dtype": "float32",
        **overrides,
    }
    return VllmServerConfig(**fields)
