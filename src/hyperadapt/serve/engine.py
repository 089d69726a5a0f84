"""The scheduler and decoding loop: requests with different conditions decode together in one batch.

One engine thread owns the model. It gathers waiting requests for ``gather_ms`` (up to ``max_batch``),
prefills them in one forward pass under their own conditionings, merges their KV cache into the running
batch (left padding, so every row keeps its own positions), and then decodes all running rows one token per
forward pass under one batched conditioning (:func:`batch_conditioning`). Finished or cancelled rows leave
the batch at once and waiting requests join it at the next step (continuous batching).

**No request can fail another.** Every request is checked (:func:`check_job`) before it joins the batch and
gets its own 4xx; a prefill that fails is retried one request at a time, so only the request at fault
fails; choosing and emitting a row's token is guarded per row. Only a forward pass of the running batch
that raises (a bug in the model, not a request) fails every running row. **Every request ends**: each
job receives exactly one ``done`` or ``error`` event, every :meth:`Engine.call` resolves (whatever the
exception type), and :meth:`Engine.stop` ends whatever is still waiting with a 503.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, Protocol, TypedDict, TypeVar

import torch
from torch import Tensor
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from hyperadapt.core import BetaFn, LoraConditioning, conditioned
from hyperadapt.models import end_of_turn_ids
from hyperadapt.serve.conditioning import RowCondition, batch_conditioning
from hyperadapt.serve.errors import RequestRefused, lone_surrogate
from hyperadapt.serve.metrics import Metrics
from hyperadapt.serve.runs import Target

log = logging.getLogger(__name__)
T = TypeVar("T")
TokenLogprobs = tuple[int, float, list[tuple[int, float]]]  # (token id, log-probability, [(id, log-prob), ...])
BatchConditioning = tuple[LoraConditioning | None, BetaFn | None]  # ``conditioned``'s lora and beta of a batch


class RowInfo(TypedDict):
    """What answers a request: ``route`` and ``cache_hit`` of its row, and for a target that reads a condition
    the condition's tokens and how many of them the method read (else None)."""

    route: str
    cache_hit: bool | None
    condition_tokens: int | None
    condition_kept: int | None


class TokenCounts(TypedDict):
    prompt_tokens: int
    completion_tokens: int


class StartEvent(RowInfo):
    type: Literal["start"]


class DeltaEvent(TypedDict):
    type: Literal["delta"]
    text: str


class DoneEvent(TokenCounts):
    type: Literal["done"]
    finish_reason: str  # "stop" or "length"
    logprobs: list[TokenLogprobs] | None


class ErrorEvent(TypedDict):
    type: Literal["error"]
    status: int  # the HTTP status to answer with
    message: str
    param: NotRequired[str | None]  # the request field at fault


Event = StartEvent | DeltaEvent | DoneEvent | ErrorEvent


# vLLM's rule (vllm/sampling_params.py): a temperature below _SAMPLING_EPS is greedy decoding, and one below
# _MAX_TEMP is raised to it (smaller ones make logits / temperature overflow to inf and NaN)
SAMPLING_EPS = 1e-5
MIN_TEMPERATURE = 1e-2
SEED_RANGE = 2**64  # torch.Generator.manual_seed takes 64-bit seeds
MAX_LOGPROBS = 20  # vLLM's default max_logprobs: most alternatives returned per token


class QueueFull(RuntimeError):
    """The engine's waiting queue is full (answer 503 and let the client retry)."""


class EngineStopped(RuntimeError):
    """The engine has stopped (the server is shutting down): nothing more is run."""


@dataclass(frozen=True)
class Sampling:
    """Decoding options of one request. As vLLM: greedy when ``temperature`` < :data:`SAMPLING_EPS` (then
    ``top_p`` is ignored), and a temperature below :data:`MIN_TEMPERATURE` samples at that temperature."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # None: none; k: each answer token's log-probability and its k best alternatives

    @property
    def greedy(self) -> bool:
        return self.temperature < SAMPLING_EPS

    def problem(self) -> tuple[str, str] | None:
        """(field, what is wrong) for options no request may run with, else None."""
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            return "max_tokens", f"max_tokens must be a whole number >= 1, got {self.max_tokens!r}"
        if not _number(self.temperature) or not 0 <= self.temperature < math.inf:
            return "temperature", f"temperature must be a finite number >= 0, got {self.temperature!r}"
        if not _number(self.top_p) or not 0 < self.top_p <= 1:
            return "top_p", f"top_p must be a number in (0, 1], got {self.top_p!r}"
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < SEED_RANGE
        ):
            return "seed", f"seed must be a whole number in [0, 2**64), got {self.seed!r}"
        if self.logprobs is not None and (
            isinstance(self.logprobs, bool)
            or not isinstance(self.logprobs, int)
            or not 0 <= self.logprobs <= MAX_LOGPROBS
        ):
            return "logprobs", f"logprobs must be a whole number in [0, {MAX_LOGPROBS}], got {self.logprobs!r}"
        for stop in self.stop:
            if not isinstance(stop, str) or not stop:
                return "stop", f"stop strings must be non-empty text, got {stop!r}"
            if (bad := lone_surrogate(stop)) is not None:
                return "stop", f"stop string {stop[:20]!r} holds a lone surrogate at character {bad}"
        return None


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and not math.isnan(x)


@dataclass(eq=False)
class Job:
    """One request: its prompt tokens, what answers it, and ``sink(event)`` (called from the engine thread).

    Events (:data:`Event`): :class:`StartEvent` ``{"type": "start", "route", "cache_hit", "condition_tokens",
    "condition_kept"}`` (the last two None unless the target reads a condition), :class:`DeltaEvent` ``{"type":
    "delta", "text"}``, then exactly one :class:`DoneEvent` ``{"type": "done", "finish_reason", "prompt_tokens",
    "completion_tokens", "logprobs"}`` or :class:`ErrorEvent` ``{"type": "error", "status", "message", "param"}``
    (none after :meth:`cancel`: whoever cancels has stopped listening).
    ``logprobs`` (with ``sampling.logprobs``, else None): per answer token ``(token_id, logprob, [(id,
    logprob), ...])``, log-probabilities of the model's raw distribution (before temperature and top_p, as vLLM).
    """

    prompt_ids: list[int]
    target: Target
    condition: str | None
    route_text: str
    sampling: Sampling
    sink: Callable[[Event], None]
    enqueued: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    finished: bool = False  # its done or error event was sent
    events: asyncio.Queue[Event] | None = field(default=None, repr=False)  # the HTTP layer's queue of its events

    def cancel(self) -> None:
        """Free this request's slot (the client went away); the engine drops it before its next step
        (a waiting request never starts). Safe from any thread; a no-op once the request finished."""
        self.cancelled = True


async def cancel_on_disconnect(jobs: Sequence[Job], receive: Callable[[], Awaitable[Mapping[str, Any]]]) -> bool:
    """Watch a client while its ``jobs`` run, without polling: await the request's ASGI ``receive`` (Starlette's
    ``request.receive``), whose next message once the body has been read is ``http.disconnect``, and then cancel
    every job, whether or not tokens are flowing. Returns True when it cancelled, False when every job had
    finished first (a server also says ``http.disconnect`` once the response is sent). Run it as a task beside
    the code that reads the events, and cancel that task when the answer is sent::

        watcher = asyncio.create_task(cancel_on_disconnect(jobs, request.receive))

    Polling Starlette's ``request.is_disconnected()`` every 0.1 s instead, as this server did before 2026-12-08,
    took a third of a core at 1,024 open requests, on the event loop whose thread holds the GIL the engine's
    thread needs (``scripts/cancel_watch_cost.py --part front``); waiting takes no CPU until the client leaves.
    """
    while (await receive()).get("type") != "http.disconnect":
        pass  # a body part (the body has been read before a job is made): keep waiting
    if all(job.finished or job.cancelled for job in jobs):
        return False
    for job in jobs:
        job.cancel()
    return True


class FairQueue:
    """The waiting requests, taken round-robin between submissions: a client's list of 64 prompts is one
    submission, so a request sent after it waits for one of its prompts, not all of them. Thread-safe;
    ``maxsize`` bounds the prompts waiting in all."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._groups: deque[deque[Job]] = deque()
        self._size = 0
        self._ready = threading.Condition()

    def qsize(self) -> int:
        return self._size

    def put(self, jobs: Sequence[Job]) -> None:
        """Queue ``jobs`` as one submission, all or none: :class:`QueueFull` when they do not fit."""
        with self._ready:
            if self._size + len(jobs) > self.maxsize:
                raise QueueFull(f"{self._size} requests are waiting (at most {self.maxsize}): retry later")
            self._groups.append(deque(jobs))
            self._size += len(jobs)
            self._ready.notify()

    def get(self, timeout: float = 0.0) -> Job | None:
        """The next job round-robin, waiting up to ``timeout`` seconds; None when there is none."""
        with self._ready:
            if not self._size and (timeout <= 0 or not self._ready.wait_for(lambda: self._size, timeout)):
                return None
            group = self._groups.popleft()
            job = group.popleft()
            if group:
                self._groups.append(group)
            self._size -= 1
            return job


@dataclass(eq=False)
class _Row:
    job: Job
    cond: RowCondition
    position: int  # position of ``next_token``
    next_token: int = 0
    generated: list[int] = field(default_factory=list)
    sent: int = 0  # characters of the answer already sent
    generator: torch.Generator | None = None
    done: bool = False
    logprobs: list[TokenLogprobs] | None = None


class ServingEngine(Protocol):
    """What the server and its endpoints use of an engine: :class:`Engine`, or ``VllmEngine``
    (``serve/vllm_engine.py``) which answers through a vLLM server."""

    metrics: Metrics

    def start(self) -> ServingEngine: ...

    def stop(self) -> None: ...

    def submit(self, job: Job) -> None: ...

    def submit_all(self, jobs: Sequence[Job]) -> None: ...

    def call(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]: ...

    def cancel(self, job: Job) -> None: ...

    def check_job(self, job: Job) -> None: ...


class Engine:
    """Continuous batching over one conditioned model. Start with :meth:`start`; submit :class:`Job` s."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_batch: int = 32,
        gather_ms: float = 5.0,
        max_queue: int = 1024,
        metrics: Metrics | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        layers = DynamicCache(config=model.config).layers
        if not all(type(layer) is DynamicLayer for layer in layers):
            raise ValueError("serve supports full-attention models only (no sliding-window layers)")
        self.model, self.tokenizer = model, tokenizer
        # transformers renamed ``past_key_values`` to ``cache`` within 5.x
        self._cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.max_batch, self.gather_s = max_batch, gather_ms / 1000
        self.metrics = metrics or Metrics()
        self.device = model.get_input_embeddings().weight.device
        self.eos = set(end_of_turn_ids(tokenizer))
        self._queue = FairQueue(max_queue)
        self._calls: queue.Queue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = queue.Queue()
        self.rows: list[_Row] = []
        self._cache: DynamicCache | None = None
        self._mask: Tensor | None = None  # [B, T] 1 on real tokens
        self._batch_cond: BatchConditioning | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- public --------------------------------------------------------------------------------------

    def start(self) -> Engine:
        self._thread = threading.Thread(target=self._loop, name="hyperadapt-engine", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the engine thread, then end everything still waiting: each queued or running request gets a
        503 error event and each pending :meth:`call` an :class:`EngineStopped` error."""
        self._stopping = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._end_all(503, "the server is shutting down: retry on another server")

    def submit(self, job: Job) -> None:
        """Queue ``job`` (see :meth:`submit_all`)."""
        self.submit_all([job])

    def submit_all(self, jobs: Sequence[Job]) -> None:
        """Queue the jobs of one request, all or none; they are admitted round-robin with other requests'
        (:class:`FairQueue`). Raises :class:`QueueFull` when they do not fit in ``max_queue`` and
        :class:`EngineStopped` after :meth:`stop`."""
        if self._stopping:
            raise EngineStopped("the server is shutting down: retry on another server")
        self._queue.put(jobs)
        self.metrics.waiting = self._queue.qsize()

    def call(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``fn()`` in the engine thread between two decoding steps (anything that touches the model).

        The future always resolves: with ``fn``'s result, its exception (a ``StopIteration``, which asyncio
        cannot carry, becomes a ``RuntimeError``), or :class:`EngineStopped` once the engine has stopped.
        """
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        if self._stopping:
            future.set_exception(EngineStopped("the server is shutting down"))
            return future
        self._calls.put((fn, future))
        if self._stopping:  # stop() may have drained the calls between the check and the put
            self._end_calls()
        return future

    def cancel(self, job: Job) -> None:
        """Cancel ``job`` (its client went away): it never starts, or leaves the batch before the next step."""
        job.cancel()

    # -- the loop ------------------------------------------------------------------------------------

    def _loop(self) -> None:
        torch.set_grad_enabled(False)
        while not self._stopping:
            try:
                self._step()
            except Exception as err:  # a bug, not a user error: fail the running batch, keep serving
                log.exception("decoding failed")
                for row in self.rows:
                    _finish(row.job, {"type": "error", "status": 500, "message": f"internal error: {err}"})
                self.rows, self._cache, self._mask, self._batch_cond = [], None, None, None
            self.metrics.active = len(self.rows)

    def _step(self) -> None:
        self._run_calls()
        jobs = self._take(block=not self.rows)
        if jobs:
            self._prefill(jobs)
        self._drop_finished()
        if self.rows:
            self._decode()
            self._drop_finished()

    def _run_calls(self) -> None:
        while True:
            try:
                fn, future = self._calls.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except StopIteration as err:  # asyncio.wrap_future cannot carry it: the caller would hang
                    future.set_exception(RuntimeError(f"internal error: StopIteration {err}".rstrip()))
                except BaseException as err:  # handed to the caller
                    future.set_exception(err)

    def _end_calls(self) -> None:
        while True:
            try:
                _, future = self._calls.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(EngineStopped("the server is shutting down"))

    def _end_all(self, status: int, message: str) -> None:
        self._end_calls()
        for row in self.rows:
            _finish(row.job, {"type": "error", "status": status, "message": message})
        self.rows, self._cache, self._mask, self._batch_cond = [], None, None, None
        while (job := self._queue.get()) is not None:
            _finish(job, {"type": "error", "status": status, "message": message})
        self.metrics.active = self.metrics.waiting = 0

    def _take(self, block: bool) -> list[Job]:
        room = self.max_batch - len(self.rows)
        jobs: list[Job] = []
        if room <= 0:
            return jobs
        if block:
            if (job := self._queue.get(timeout=0.05)) is None:
                return jobs
            jobs.append(job)
            deadline = time.perf_counter() + self.gather_s
            while len(jobs) < room and (left := deadline - time.perf_counter()) > 0:
                if (job := self._queue.get(timeout=left)) is None:
                    break
                jobs.append(job)
        while len(jobs) < room and (job := self._queue.get()) is not None:
            jobs.append(job)
        self.metrics.waiting = self._queue.qsize()
        self.metrics.cancelled += sum(j.cancelled for j in jobs)
        return [j for j in jobs if not j.cancelled]

    # -- prefill and decode ----------------------------------------------------------------------------

    def check_job(self, job: Job) -> None:
        """Raise :class:`RequestRefused` for a request that cannot run: sampling options out of range (NaN,
        a seed of 2**64 or more), prompt tokens the model does not have, or text no tokenizer can read
        (lone surrogates) in the condition or the routed text."""
        problem = job.sampling.problem()
        if problem is not None:
            raise RequestRefused(problem[1], problem[0])
        vocab = self.model.get_input_embeddings().num_embeddings
        if not job.prompt_ids or not all(isinstance(t, int) and 0 <= t < vocab for t in job.prompt_ids):
            raise RequestRefused(f"the prompt must be 1 or more token ids in [0, {vocab})", "prompt")
        for param, text in (("condition", job.condition), ("prompt", job.route_text)):
            if text is not None and (bad := lone_surrogate(text)) is not None:
                raise RequestRefused(
                    f"the {param} holds a lone UTF-16 surrogate at character {bad} "
                    f"({text[bad]!r}): send text, with surrogates only in pairs",
                    param,
                )

    def _resolve(self, jobs: list[Job]) -> list[_Row]:
        rows = []
        now = time.perf_counter()
        for job in jobs:
            try:
                self.check_job(job)
                cond = job.target.resolve(job.condition, job.route_text)
            except RequestRefused as err:
                _finish(job, {"type": "error", "status": err.status, "message": str(err), "param": err.param})
                continue
            except (ValueError, FileNotFoundError) as err:
                _finish(job, {"type": "error", "status": 400, "message": str(err)})
                continue
            except Exception as err:  # a fault of this request's target: it fails alone
                log.exception("resolving a request failed")
                _finish(job, {"type": "error", "status": 500, "message": f"internal error: {err}"})
                continue
            self.metrics.admitted(now - job.enqueued, len(job.prompt_ids))
            _send(
                job,
                {
                    "type": "start",
                    "route": cond.route,
                    "cache_hit": cond.cache_hit,
                    "condition_tokens": cond.condition_tokens,
                    "condition_kept": cond.condition_kept,
                },
            )
            gen = None
            if job.sampling.seed is not None and not job.sampling.greedy:
                gen = torch.Generator(device=self.device).manual_seed(job.sampling.seed)
            logprobs: list[TokenLogprobs] | None = [] if job.sampling.logprobs is not None else None
            rows.append(_Row(job, cond, position=len(job.prompt_ids), generator=gen, logprobs=logprobs))
        return rows

    def _prefill(self, jobs: list[Job]) -> None:
        rows = self._resolve(jobs)
        try:
            self._prefill_rows(rows)
            return
        except Exception as err:
            if len(rows) == 1:
                self._fail(rows[0], err)
                return
        for row in rows:  # find the request at fault: each alone (the running batch is not touched yet)
            try:
                self._prefill_rows([row])
            except Exception as err:
                self._fail(row, err)

    def _fail(self, row: _Row, err: Exception) -> None:
        """End one request with a 500 (a fault of this request only); it leaves the batch at the next drop."""
        log.exception("a request failed: %s", err)
        row.done = True
        _finish(row.job, {"type": "error", "status": 500, "message": f"internal error: {type(err).__name__}: {err}"})

    def _prefill_rows(self, rows: list[_Row]) -> None:
        if not rows:
            return
        width = max(len(r.job.prompt_ids) for r in rows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.tensor(
            [[pad] * (width - len(r.job.prompt_ids)) + r.job.prompt_ids for r in rows], device=self.device
        )  # [n, W]
        mask = torch.tensor(
            [[0] * (width - len(r.job.prompt_ids)) + [1] * len(r.job.prompt_ids) for r in rows], device=self.device
        )  # [n, W]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # [n, W]
        cache = DynamicCache(config=self.model.config)
        logits = self._forward([r.cond for r in rows], ids, mask, positions, cache)  # [n, V]
        self._merge(rows, cache, mask)
        self._accept(rows, logits)

    def _decode(self) -> None:
        cache, mask = self._running()
        ids = torch.tensor([[r.next_token] for r in self.rows], device=self.device)  # [B, 1]
        positions = torch.tensor([[r.position] for r in self.rows], device=self.device)  # [B, 1]
        self._mask = torch.cat([mask, mask.new_ones(len(self.rows), 1)], dim=1)  # [B, T + 1]
        if self._batch_cond is None:
            self._batch_cond = batch_conditioning([r.cond for r in self.rows])
        logits = self._forward(self._batch_cond, ids, self._mask, positions, cache)  # [B, V]
        for row in self.rows:
            row.position += 1
        self._accept(list(self.rows), logits)

    def _forward(
        self,
        conds: list[RowCondition] | BatchConditioning,
        ids: Tensor,
        mask: Tensor,
        positions: Tensor,
        cache: DynamicCache,
    ) -> Tensor:
        """The last position's logits [B, V] of ``ids`` [B, T] (``mask``, ``positions`` [B, T']) under the rows'
        conditionings (``conds``: one row per example, or the batch's conditioning laid out already)."""
        lora, beta = batch_conditioning(conds) if isinstance(conds, list) else conds
        start = time.perf_counter()
        with conditioned(self.model, lora=lora, beta=beta):
            out = self.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **{self._cache_arg: cache}
            )
        logits: Tensor = out.logits[:, -1].float()  # [B, V]
        self.metrics.forward(ids.shape[0], time.perf_counter() - start, ids.shape[0])
        return logits

    # -- the KV cache of the running batch -------------------------------------------------------------

    def _running(self) -> tuple[DynamicCache, Tensor]:
        """The running batch's KV cache and mask [B, T]; a ``RuntimeError`` (a bug) when there is none."""
        if self._cache is None or self._mask is None:
            raise RuntimeError("the running batch has no KV cache")
        return self._cache, self._mask

    def _merge(self, rows: list[_Row], cache: DynamicCache, mask: Tensor) -> None:
        """Append the freshly prefilled ``rows`` (their ``cache`` and ``mask``) to the running batch."""
        self._batch_cond = None
        if self._cache is None:
            self._cache, self._mask = cache, mask
        else:
            old_cache, old_mask = self._running()
            width = max(old_mask.shape[1], mask.shape[1])
            old_layers = _filled_layers(old_cache)
            merged = [
                (
                    torch.cat([_pad_left(old_keys, width, 2), _pad_left(new_keys, width, 2)]),  # [B, H, T, D]
                    torch.cat([_pad_left(old_values, width, 2), _pad_left(new_values, width, 2)]),
                )
                for (_, old_keys, old_values), (_, new_keys, new_values) in zip(
                    old_layers, _filled_layers(cache), strict=True
                )
            ]
            for (layer, _, _), (keys, values) in zip(old_layers, merged, strict=True):
                layer.keys, layer.values = keys, values
            self._mask = torch.cat([_pad_left(old_mask, width, 1), _pad_left(mask, width, 1)])  # [B, T]
        self.rows += rows

    def _drop_finished(self) -> None:
        keep = [i for i, r in enumerate(self.rows) if not (r.job.cancelled or r.done)]
        cancelled = sum(r.job.cancelled and not r.done for r in self.rows)
        self.metrics.cancelled += cancelled
        if len(keep) == len(self.rows):
            return
        self._batch_cond = None
        self.rows = [self.rows[i] for i in keep]
        if not self.rows:
            self._cache = self._mask = None
            return
        cache, old_mask = self._running()
        index = torch.tensor(keep, device=self.device)
        mask = old_mask[index]  # [B', T]
        lead = int((mask.sum(0) > 0).nonzero()[0])  # columns that are padding in every remaining row
        self._mask = mask[:, lead:]
        for layer, keys, values in _filled_layers(cache):
            layer.keys = keys[index, :, lead:]
            layer.values = values[index, :, lead:]

    # -- tokens ----------------------------------------------------------------------------------------

    def _accept(self, rows: list[_Row], logits: Tensor) -> None:
        for row, row_logits in zip(rows, logits, strict=True):
            try:
                token = self._sample(row, row_logits)
                if row.logprobs is not None:
                    row.logprobs.append(_logprobs(row_logits, token, row.job.sampling.logprobs or 0))
                row.next_token = token
                self._emit(row, token)
            except Exception as err:  # this row's fault: the others take their tokens as if it were not there
                self._fail(row, err)

    def _sample(self, row: _Row, logits: Tensor) -> int:
        s = row.job.sampling
        if not torch.isfinite(logits).any():
            raise ValueError("the model's logits for this request are all NaN or infinite")
        if s.greedy:
            return int(logits.argmax())
        probs = torch.softmax(logits / max(s.temperature, MIN_TEMPERATURE), dim=-1)  # [V]
        if s.top_p < 1:
            sorted_p, order = probs.sort(descending=True)
            keep = sorted_p.cumsum(0) - sorted_p < s.top_p  # the smallest set whose mass reaches top_p
            probs = torch.zeros_like(probs).scatter_(0, order[keep], sorted_p[keep])
        return int(torch.multinomial(probs, 1, generator=row.generator))

    def _emit(self, row: _Row, token: int) -> None:
        s = row.job.sampling
        finish = None
        if token in self.eos:
            finish = "stop"
        else:
            row.generated.append(token)
        text = self.tokenizer.decode(row.generated, skip_special_tokens=True)
        for stop in s.stop:
            at = text.find(stop)
            if at >= 0:
                text, finish = text[:at], "stop"
        if finish is None and len(row.generated) >= s.max_tokens:
            finish = "length"
        upto = len(text)
        if finish is None:
            upto -= max((len(x) for x in s.stop), default=1) - 1  # a stop string may still be forming
            if text.endswith("\ufffd"):  # an incomplete UTF-8 character
                upto = min(upto, len(text) - 1)
        if upto > row.sent:
            _send(row.job, {"type": "delta", "text": text[row.sent : upto]})
            row.sent = upto
        if finish is not None:
            row.done = True
            _finish(
                row.job,
                {
                    "type": "done",
                    "finish_reason": finish,
                    "prompt_tokens": len(row.job.prompt_ids),
                    "completion_tokens": len(row.generated),
                    "logprobs": None if row.logprobs is None else row.logprobs[: len(row.generated)],
                },
            )


def _logprobs(logits: Tensor, token: int, top: int) -> TokenLogprobs:
    """``token``'s log-probability under ``logits`` [V] and the ``top`` most likely tokens with theirs."""
    logp = torch.log_softmax(logits, dim=-1)  # [V]
    values, ids = logp.topk(top) if top else (logp[:0], logp[:0].long())
    return token, float(logp[token]), [(int(i), float(v)) for i, v in zip(ids.tolist(), values.tolist(), strict=True)]


def _filled_layers(cache: DynamicCache) -> list[tuple[DynamicLayer, Tensor, Tensor]]:
    """Each layer of a prefilled ``cache`` with its keys and values [B, H, T, D]; the engine serves full-attention
    models only (``DynamicLayer``, checked in :class:`Engine`), so any other layer is a bug (``RuntimeError``)."""
    layers = []
    for layer in cache.layers:
        if not isinstance(layer, DynamicLayer) or layer.keys is None or layer.values is None:
            raise RuntimeError(f"the KV cache holds an empty or {type(layer).__name__} layer")
        layers.append((layer, layer.keys, layer.values))
    return layers


def _pad_left(x: Tensor, width: int, dim: int) -> Tensor:
    missing = width - x.shape[dim]
    if missing == 0:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([x.new_zeros(shape), x], dim=dim)


def _send(job: Job, event: Event) -> None:
    try:
        job.sink(event)
    except Exception:  # the client's event loop is gone, or its sink is broken: nobody is listening
        job.cancel()


def _finish(job: Job, event: Event) -> None:
    """Send ``job``'s one last event (done or error), unless it was sent already or the job was cancelled."""
    if job.finished or job.cancelled:
        return
    job.finished = True
    _send(job, event)
