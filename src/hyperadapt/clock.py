"""Seconds that survive a resume: the one way a piece of work reports the time it took in all.

Training, evaluation and the continual runner are resumable: a process that is ended leaves a checkpoint, an
answer log or a state file, and the next one continues. Each of those records carries the seconds spent so far
(its own format keeps them), and the process that continues reads them into a :class:`Stopwatch` as
``before``; what it reports is ``before`` plus what it timed itself, so a result says what the work cost, not
what its last process cost.
"""

from __future__ import annotations

import time
from types import TracebackType


class Stopwatch:
    """Wall-clock seconds of one piece of work over every process that ran it.

    ``before``: the seconds earlier processes recorded for this work (0.0 when it starts fresh). This process
    adds the spans it times: ``with stopwatch: ...`` times one span (spans add up; a span is counted even
    when it raises), or :meth:`start` ... :meth:`stop`. :attr:`seconds` is ``before`` plus every span,
    including one still running. Raises ``RuntimeError`` for a span started twice or stopped unstarted.
    ``now``: the clock read (``time.perf_counter``; a test gives a subclass its own).
    """

    now = staticmethod(time.perf_counter)

    def __init__(self, before: float = 0.0) -> None:
        if before < 0:
            raise ValueError(f"before must be at least 0 seconds, got {before}")
        self.before = float(before)
        self._timed = 0.0
        self._started: float | None = None

    def start(self) -> Stopwatch:
        if self._started is not None:
            raise RuntimeError("this stopwatch is already running")
        self._started = self.now()
        return self

    def stop(self) -> float:
        """End the running span; returns :attr:`seconds`."""
        if self._started is None:
            raise RuntimeError("this stopwatch is not running")
        self._timed += self.now() - self._started
        self._started = None
        return self.seconds

    def carry(self, seconds: float) -> None:
        """Add ``seconds`` that another record says earlier processes spent (e.g. a resumed part's own)."""
        self.before += float(seconds)

    @property
    def this_process(self) -> float:
        """The seconds this process timed (spans so far, the running one included)."""
        running = self.now() - self._started if self._started is not None else 0.0
        return self._timed + running

    @property
    def seconds(self) -> float:
        """``before`` plus :attr:`this_process`: the work's seconds in all."""
        return self.before + self.this_process

    def __enter__(self) -> Stopwatch:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
