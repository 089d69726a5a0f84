"""The one mechanism for seconds that survive a resume (hyperadapt.clock)."""

import pytest

from hyperadapt.clock import Stopwatch


@pytest.fixture
def fake_time(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(Stopwatch, "now", staticmethod(lambda: now[0]))
    return now


def test_seconds_are_the_earlier_processes_plus_every_span_of_this_one(fake_time):
    watch = Stopwatch(before=7.5)
    with watch:
        fake_time[0] += 2.0
    fake_time[0] += 50.0  # between spans: not counted
    watch.start()
    fake_time[0] += 1.0
    assert watch.seconds == 10.5 and watch.this_process == 3.0  # the running span counts
    assert watch.stop() == 10.5
    watch.carry(4.0)
    assert watch.seconds == 14.5 and watch.before == 11.5


def test_a_span_that_raises_is_still_counted(fake_time):
    watch = Stopwatch()
    with pytest.raises(KeyError), watch:
        fake_time[0] += 3.0
        raise KeyError("x")
    assert watch.seconds == 3.0


def test_misuse_is_refused():
    with pytest.raises(RuntimeError, match="not running"):
        Stopwatch().stop()
    with pytest.raises(RuntimeError, match="already running"):
        Stopwatch().start().start()
    with pytest.raises(ValueError, match="at least 0"):
        Stopwatch(before=-1.0)
