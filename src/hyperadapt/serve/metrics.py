"""Server metrics in the Prometheus text format (no client library: a few counters and histograms)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)
RATE_WINDOW_S = 10.0


class Histogram:
    """Cumulative buckets, sum and count, as Prometheus expects them."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, edge in enumerate(self.buckets):
            if value <= edge:
                self.counts[i] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out = [f'{name}_bucket{{le="{edge}"}} {n}' for edge, n in zip(self.buckets, self.counts, strict=True)]
        total = f'{name}_bucket{{le="+Inf"}} {self.count}'
        return [*out, total, f"{name}_sum {self.sum}", f"{name}_count {self.count}"]


class Metrics:
    """Everything ``/metrics`` reports; the engine and the HTTP layer update it from their threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.queue_seconds = Histogram(SECONDS_BUCKETS)
        self.forward_seconds = 0.0
        self.prompt_tokens = self.generated_tokens = self.cancelled = 0
        self.active = self.waiting = 0
        self._recent: deque[tuple[float, int]] = deque(maxlen=10_000)

    def request(self, endpoint: str, status: int) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1

    def forward(self, batch: int, seconds: float, new_tokens: int) -> None:
        with self._lock:
            self.batch_size.observe(batch)
            self.forward_seconds += seconds
            self.generated_tokens += new_tokens
            self._recent.append((time.monotonic(), new_tokens))

    def admitted(self, queue_seconds: float, prompt_tokens: int) -> None:
        with self._lock:
            self.queue_seconds.observe(queue_seconds)
            self.prompt_tokens += prompt_tokens

    def tokens_per_second(self) -> float:
        now = time.monotonic()
        return sum(n for t, n in self._recent if now - t <= RATE_WINDOW_S) / RATE_WINDOW_S

    def render(self, cache_stats: dict[str, float]) -> str:
        """The Prometheus text exposition of every metric (``cache_stats``: ``ByteLRU.stats()``)."""
        p = "hyperadapt"
        with self._lock:
            lines = [f"# TYPE {p}_requests_total counter"]
            lines += [
                f'{p}_requests_total{{endpoint="{e}",status="{s}"}} {n}' for (e, s), n in sorted(self.requests.items())
            ]
            lines += [
                f"# TYPE {p}_batch_size histogram",
                *self.batch_size.lines(f"{p}_batch_size"),
                f"# TYPE {p}_queue_seconds histogram",
                *self.queue_seconds.lines(f"{p}_queue_seconds"),
            ]
            counters = {
                "forward_seconds_total": self.forward_seconds,
                "prompt_tokens_total": self.prompt_tokens,
                "generated_tokens_total": self.generated_tokens,
                "cancelled_total": self.cancelled,
            }
            gauges = {
                "active_sequences": self.active,
                "waiting_requests": self.waiting,
                "generation_tokens_per_second": self.tokens_per_second(),
            }
        counters |= {f"condition_cache_{k}_total": cache_stats[k] for k in ("hits", "misses", "evictions")}
        gauges |= {f"condition_cache_{k}": cache_stats[k] for k in ("entries", "bytes", "max_bytes", "hit_rate")}
        for kind, values in (("counter", counters), ("gauge", gauges)):
            for name, value in values.items():
                lines += [f"# TYPE {p}_{name} {kind}", f"{p}_{name} {value}"]
        return "\n".join(lines) + "\n"
