"""The ETL and detection as supervised children (`mad.runtime.children`): each runs a pass
every interval until told to stop, and after each pass copies what it changed into the hot
store (`mad.hotstore.feed`). A pass cut short by a kill is finished or undone by the
next one (both stages are restartable at any point)."""

from __future__ import annotations

import logging
import threading

from mad.config import Settings
from mad.runtime.watch import watch

log = logging.getLogger(__name__)


def etl_body(settings: Settings, stop: threading.Event) -> int:
    """`EtlRunner.run_once` every `etl.watch_interval_s` (the first after one interval, so
    ingest has written something); a failed pass is recorded and retried next time."""
    from mad.etl.runner import EtlRunner
    from mad.hotstore.feed import open_feed, then_sync

    runner = EtlRunner(settings)
    feed = open_feed(settings)
    try:
        watch(lambda: log.info("etl: %s", then_sync(
            feed, "aggregates", runner.run_once, lambda s: s.days_aggregated).line()),
              settings.etl.watch_interval_s, stop, first_wait=True, keep_going=True,
              name="etl pass")
    finally:
        runner.close()
        if feed is not None:
            feed.close()
    return 0


def detect_body(settings: Settings, stop: threading.Event) -> int:
    """`DetectRunner.run_once` every `detect.watch_interval_s` over the aggregates the ETL
    published; its state is saved per batch, so a restart resumes where it was."""
    from mad.detect.pipeline import DetectRunner
    from mad.hotstore.feed import open_feed, then_sync

    runner = DetectRunner(settings)
    feed = open_feed(settings)
    try:
        watch(lambda: log.info("%s", then_sync(
            feed, "anomalies", lambda: runner.run_once(stop)).line()),
              settings.detect.watch_interval_s, stop, first_wait=True, keep_going=True,
              name="detection pass")
    finally:
        runner.close()
        if feed is not None:
            feed.close()
    return 0
