"""The supervisor's lake loop: an ETL pass every `etl.watch_interval_s`, then a detection pass
over the aggregates it wrote, in a thread, until stopped."""

from __future__ import annotations

import logging
import threading

from mad.config import Settings
from mad.runtime.watch import watch

log = logging.getLogger(__name__)


class TransformDetectLoop:
    """`EtlRunner.run_once` then (with `detect`) `DetectRunner.run_once`, every interval.

    A failed ETL pass is recorded in the state database and retried at the next interval;
    detection then waits for it. A failed detection pass resumes from its last saved batch.
    """

    def __init__(self, settings: Settings, detect: bool = True) -> None:
        self.settings = settings
        self.detect = detect
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="mad-lake-loop", daemon=True)

    def _loop(self) -> None:
        from mad.detect.pipeline import DetectRunner
        from mad.etl.runner import EtlRunner

        runner = EtlRunner(self.settings)
        detector = DetectRunner(self.settings) if self.detect else None

        def one_pass() -> None:
            print(f"etl: {runner.run_once().line()}", flush=True)
            if detector is not None:
                try:
                    print(detector.run_once(self.stop_event).line(), flush=True)
                except Exception as err:  # its state is saved per batch; the next pass resumes
                    log.error("detection pass failed: %s", err)

        try:
            watch(one_pass, self.settings.etl.watch_interval_s, self.stop_event,
                  first_wait=True, keep_going=True, name="etl pass")
        finally:
            runner.close()
            if detector is not None:
                detector.close()

    def start(self) -> None:
        self.thread.start()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Stop after the pass in progress; False when it is still running after
        `timeout_s` (the thread is a daemon: the process may exit without it)."""
        self.stop_event.set()
        self.thread.join(timeout=timeout_s)
        return not self.thread.is_alive()
