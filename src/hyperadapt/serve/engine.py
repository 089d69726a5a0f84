"""The scheduler and decoding loop: requests with different conditions decode together in one batch.

One engine thread owns the model. It gathers waiting requests for ``gather_ms`` (up to ``max_batch``),
prefills them in one forward pass under their own conditionings, merges their KV cache into the running
batch (left padding, so every row keeps its own positions), and then decodes all running rows one token per
forward pass under one batched conditioning (:func:`batch_conditioning`). Finished or cancelled rows leave
the batch at once and waiting requests join it at the next step (continuous batching).
"""

from __future__ import annotations

import concurrent.futures
import inspect
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from hyperadapt.core import conditioned
from hyperadapt.models import end_of_turn_ids
from hyperadapt.serve.conditioning import RowCondition, batch_conditioning
from hyperadapt.serve.metrics import Metrics
from hyperadapt.serve.runs import Target

log = logging.getLogger(__name__)
Event = dict[str, Any]


class QueueFull(RuntimeError):
    """The engine's waiting queue is full (answer 503 and let the client retry)."""


@dataclass(frozen=True)
class Sampling:
    """Decoding options of one request: greedy when ``temperature`` is 0."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(eq=False)
class Job:
    """One request: its prompt tokens, what answers it, and ``sink(event)`` (called from the engine thread).

    Events: ``{"type": "start", "route", "cache_hit"}``, ``{"type": "delta", "text"}``, ``{"type": "done",
    "finish_reason", "prompt_tokens", "completion_tokens"}`` or ``{"type": "error", "status", "message"}``.
    """

    prompt_ids: list[int]
    target: Target
    condition: str | None
    route_text: str
    sampling: Sampling
    sink: Callable[[Event], None]
    enqueued: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    events: Any = field(default=None, repr=False)  # the HTTP layer's queue of this job's events

    def cancel(self) -> None:
        """Free this request's slot (the client went away); the engine drops it before its next step."""
        self.cancelled = True


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


class Engine:
    """Continuous batching over one conditioned model. Start with :meth:`start`; submit :class:`Job` s."""

    def __init__(self, model: Any, tokenizer: Any, max_batch: int = 32, gather_ms: float = 5.0,
                 max_queue: int = 1024, metrics: Metrics | None = None) -> None:
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
        self._queue: queue.Queue[Job] = queue.Queue(max_queue)
        self._calls: queue.Queue[tuple[Callable[[], Any], concurrent.futures.Future]] = queue.Queue()
        self.rows: list[_Row] = []
        self._cache: DynamicCache | None = None
        self._mask: Tensor | None = None  # [B, T] 1 on real tokens
        self._batch_cond: tuple | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- public --------------------------------------------------------------------------------------

    def start(self) -> Engine:
        self._thread = threading.Thread(target=self._loop, name="hyperadapt-engine", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def submit(self, job: Job) -> None:
        """Queue ``job``; raises :class:`QueueFull` when ``max_queue`` requests are already waiting."""
        try:
            self._queue.put_nowait(job)
        except queue.Full as err:
            raise QueueFull(f"{self._queue.maxsize} requests are waiting: retry later") from err
        self.metrics.waiting = self._queue.qsize()

    def call(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
        """Run ``fn()`` in the engine thread between two decoding steps (anything that touches the model)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._calls.put((fn, future))
        return future

    # -- the loop ------------------------------------------------------------------------------------

    def _loop(self) -> None:
        torch.set_grad_enabled(False)
        while not self._stopping:
            self._run_calls()
            jobs = self._take(block=not self.rows)
            try:
                if jobs:
                    self._prefill(jobs)
                self._drop_finished()
                if self.rows:
                    self._decode()
                    self._drop_finished()
            except Exception as err:  # a bug, not a user error: fail the batch, keep serving
                log.exception("decoding failed")
                for row in self.rows:
                    _send(row.job, {"type": "error", "status": 500, "message": f"internal error: {err}"})
                self.rows, self._cache, self._mask, self._batch_cond = [], None, None, None
            self.metrics.active = len(self.rows)

    def _run_calls(self) -> None:
        while True:
            try:
                fn, future = self._calls.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as err:  # handed to the caller
                    future.set_exception(err)

    def _take(self, block: bool) -> list[Job]:
        room = self.max_batch - len(self.rows)
        jobs: list[Job] = []
        if room <= 0:
            return jobs
        if block:
            try:
                jobs.append(self._queue.get(timeout=0.05))
            except queue.Empty:
                return jobs
            deadline = time.perf_counter() + self.gather_s
            while len(jobs) < room and (left := deadline - time.perf_counter()) > 0:
                try:
                    jobs.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
        while len(jobs) < room:
            try:
                jobs.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self.metrics.waiting = self._queue.qsize()
        return [j for j in jobs if not j.cancelled]

    # -- prefill and decode ----------------------------------------------------------------------------

    def _resolve(self, jobs: list[Job]) -> list[_Row]:
        rows = []
        now = time.perf_counter()
        for job in jobs:
            try:
                cond = job.target.resolve(job.condition, job.route_text)
            except (ValueError, FileNotFoundError) as err:
                _send(job, {"type": "error", "status": 400, "message": str(err)})
                continue
            self.metrics.admitted(now - job.enqueued, len(job.prompt_ids))
            _send(job, {"type": "start", "route": cond.route, "cache_hit": cond.cache_hit})
            gen = None
            if job.sampling.seed is not None:
                gen = torch.Generator(device=self.device).manual_seed(job.sampling.seed)
            rows.append(_Row(job, cond, position=len(job.prompt_ids), generator=gen))
        return rows

    def _prefill(self, jobs: list[Job]) -> None:
        rows = self._resolve(jobs)
        if not rows:
            return
        width = max(len(r.job.prompt_ids) for r in rows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.tensor([[pad] * (width - len(r.job.prompt_ids)) + r.job.prompt_ids for r in rows],
                           device=self.device)  # [n, W]
        mask = torch.tensor([[0] * (width - len(r.job.prompt_ids)) + [1] * len(r.job.prompt_ids) for r in rows],
                            device=self.device)  # [n, W]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # [n, W]
        cache = DynamicCache(config=self.model.config)
        logits = self._forward([r.cond for r in rows], ids, mask, positions, cache)  # [n, V]
        self._merge(rows, cache, mask)
        self._accept(rows, logits)

    def _decode(self) -> None:
        ids = torch.tensor([[r.next_token] for r in self.rows], device=self.device)  # [B, 1]
        positions = torch.tensor([[r.position] for r in self.rows], device=self.device)  # [B, 1]
        self._mask = torch.cat([self._mask, self._mask.new_ones(len(self.rows), 1)], dim=1)  # [B, T + 1]
        if self._batch_cond is None:
            self._batch_cond = batch_conditioning([r.cond for r in self.rows])
        logits = self._forward(self._batch_cond, ids, self._mask, positions, self._cache)  # [B, V]
        for row in self.rows:
            row.position += 1
        self._accept(list(self.rows), logits)

    def _forward(self, conds, ids: Tensor, mask: Tensor, positions: Tensor, cache: DynamicCache) -> Tensor:
        lora, beta = batch_conditioning(conds) if isinstance(conds, list) else conds
        start = time.perf_counter()
        with conditioned(self.model, lora=lora, beta=beta):
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                             **{self._cache_arg: cache})
        logits = out.logits[:, -1].float()  # [B, V]
        self.metrics.forward(ids.shape[0], time.perf_counter() - start, ids.shape[0])
        return logits

    # -- the KV cache of the running batch -------------------------------------------------------------

    def _merge(self, rows: list[_Row], cache: DynamicCache, mask: Tensor) -> None:
        """Append the freshly prefilled ``rows`` (their ``cache`` and ``mask``) to the running batch."""
        self.rows += rows
        self._batch_cond = None
        if self._cache is None:
            self._cache, self._mask = cache, mask
            return
        width = max(self._mask.shape[1], mask.shape[1])
        for old, new in zip(self._cache.layers, cache.layers, strict=True):
            old.keys = torch.cat([_pad_left(old.keys, width, 2), _pad_left(new.keys, width, 2)])  # [B, H, T, D]
            old.values = torch.cat([_pad_left(old.values, width, 2), _pad_left(new.values, width, 2)])
        self._mask = torch.cat([_pad_left(self._mask, width, 1), _pad_left(mask, width, 1)])  # [B, T]

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
        index = torch.tensor(keep, device=self.device)
        mask = self._mask[index]  # [B', T]
        lead = int((mask.sum(0) > 0).nonzero()[0])  # columns that are padding in every remaining row
        self._mask = mask[:, lead:]
        for layer in self._cache.layers:
            layer.keys = layer.keys[index, :, lead:]
            layer.values = layer.values[index, :, lead:]

    # -- tokens ----------------------------------------------------------------------------------------

    def _accept(self, rows: list[_Row], logits: Tensor) -> None:
        for row, row_logits in zip(rows, logits, strict=True):
            token = self._sample(row, row_logits)
            row.next_token = token
            self._emit(row, token)

    def _sample(self, row: _Row, logits: Tensor) -> int:
        s = row.job.sampling
        if s.temperature == 0:
            return int(logits.argmax())
        probs = torch.softmax(logits / s.temperature, dim=-1)  # [V]
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
            _send(row.job, {"type": "delta", "text": text[row.sent:upto]})
            row.sent = upto
        if finish is not None:
            row.done = True
            _send(row.job, {"type": "done", "finish_reason": finish, "prompt_tokens": len(row.job.prompt_ids),
                            "completion_tokens": len(row.generated)})


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
    except RuntimeError:  # the client's event loop is gone
        job.cancel()
