"""The one watch loop behind every `--watch`: passes, intervals, stopping, failing passes."""

from __future__ import annotations

import logging
import threading

import pytest

from mad.runtime.watch import watch


def test_once_runs_a_single_pass() -> None:
    calls: list[int] = []
    assert watch(lambda: calls.append(1), 60.0, threading.Event(), once=True) == 1
    assert calls == [1]


def test_passes_repeat_until_stopped_from_another_thread() -> None:
    stop = threading.Event()
    calls: list[int] = []

    def one() -> None:
        calls.append(1)
        if len(calls) == 3:
            threading.Timer(0.01, stop.set).start()

    assert watch(one, 0.01, stop) >= 3
    assert stop.is_set()


def test_a_set_stop_runs_nothing_when_the_first_pass_waits() -> None:
    stop = threading.Event()
    stop.set()
    calls: list[int] = []
    assert watch(lambda: calls.append(1), 0.01, stop, first_wait=True) == 0
    assert calls == []


def test_a_failing_pass_propagates_unless_told_to_keep_going(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def boom() -> None:
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        watch(boom, 0.01, threading.Event())
    stop = threading.Event()
    seen: list[int] = []

    def flaky() -> None:
        seen.append(1)
        if len(seen) == 2:
            stop.set()
        raise OSError("disk gone")

    with caplog.at_level(logging.ERROR):
        assert watch(flaky, 0.01, stop, keep_going=True, name="etl pass") == 2
    assert "etl pass failed: disk gone" in caplog.text
