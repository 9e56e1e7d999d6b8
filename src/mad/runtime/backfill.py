"""The first-start backfill of `mad up`: a labelled stretch of the last hours, incidents
included, posted through the running ingest API before the live simulator starts, so the
dashboard has history and the detectors a warm-up on first open.

It is made once. Its marker in the state database (`runtime_backfill`) is written before the
first event is posted and fixes the range, rate and seed, hence every event id (the
generator's id salt comes from them). Each chunk of 60 s of event time is recorded once the
ingest API acknowledged all of it; a backfill cut short (Ctrl-C, a crash) regenerates the
same lines at the next start and posts from the first chunk not recorded. A chunk posted in
part is posted again whole: the ETL drops the copies by event_id. The labels go to
`{data_dir}/backfill/labels.json` (detection is scored against them; no detector reads them).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from mad.config import GenerateSettings, Settings
from mad.errors import MadError, ServiceFailed
from mad.generate.backfill import CHUNK_S, build, make_labels, write_json_atomic
from mad.generate.sinks import BATCH_BYTES, BATCH_LINES, HttpSink
from mad.generate.timefmt import iso_utc
from mad.runtime.health import Board
from mad.runtime.keeper import Restarts
from mad.runtime.poster import batches
from mad.state.components import BackfillMark, Backfills

log = logging.getLogger(__name__)

MARK = "first-start"
NAME = "backfill"


def labels_path(settings: Settings) -> Path:
    return settings.data_dir / "backfill" / "labels.json"


def plan_range(hours: float, now: float) -> tuple[datetime, datetime]:
    """[start, end) of a backfill of `hours` ending at the minute `now` is in."""
    end = int(now // 60 * 60)
    start = end - round(hours * 3600)
    return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)


def generate_settings(settings: Settings, mark: BackfillMark) -> GenerateSettings:
    """The generator settings of the backfill `mark` records."""
    seconds = round((mark.end - mark.start).total_seconds())
    return settings.generate.model_copy(update={
        "start": mark.start, "duration": f"{seconds}s", "rate": mark.rate, "seed": mark.seed,
        "gzip": False})


class FirstBackfill:
    """Generates the backfill chunk by chunk and posts it to the ingest API at `url`."""

    def __init__(self, settings: Settings, hours: float, url: str, token: str | None,
                 open_marks: Callable[[], Backfills],
                 on_progress: Callable[[str], None] = lambda _: None) -> None:
        self.settings, self.hours, self.url, self.token = settings, hours, url, token
        self.open_marks = open_marks
        self.on_progress = on_progress
        ing = settings.ingest
        self.max_records = min(ing.max_records, BATCH_LINES)  # the sink splits at its own
        self.max_bytes = min(ing.max_body_bytes, BATCH_BYTES)

    def run(self, stop: threading.Event) -> tuple[bool, str]:
        """Post what is left of the backfill; (done, one line). Not done: `stop` was set."""
        marks = self.open_marks()
        mark = marks.get(MARK)
        if mark is not None and mark.done:
            return True, f"made before: {_describe(mark)}"
        if mark is None:
            first, last = plan_range(self.hours, time.time())
            rate = self.settings.supervisor.backfill_rate or self.settings.generate.rate
            mark = marks.begin(MARK, first, last, rate, self.settings.generate.seed)
        elif mark.chunks_done:
            log.info("backfill: resuming %s after chunk %d", _range(mark), mark.chunks_done)
        gs = generate_settings(self.settings, mark)
        sim, delivery, start, end = build(gs)
        starts = list(range(int(start), int(end), CHUNK_S))
        total = len(starts) + 1  # the last chunk: what the delivery still holds
        sink = HttpSink(self.url, token=self.token)
        lines_done = mark.lines
        shown = -1
        try:
            for i in range(total):
                if i < len(starts):
                    t1 = min(starts[i] + CHUNK_S, int(end))
                    delivery.add(sim.events(starts[i], t1))
                    lines = delivery.release(t1)
                else:
                    lines = delivery.release()
                if i < mark.chunks_done:
                    continue
                for batch in batches(lines, self.max_records, self.max_bytes):
                    if stop.is_set():
                        return False, (f"cut short after {i} of {total} chunks; resumes at "
                                       "the next start")
                    sink.send(batch)
                lines_done += len(lines)
                marks.progress(MARK, i + 1, lines_done)
                percent = (i + 1) * 100 // total
                if percent // 10 != shown // 10:
                    shown = percent
                    self.on_progress(f"posting {_range(mark)}: {percent}% "
                                     f"({lines_done} lines)")
        finally:
            sink.close()
        labels = make_labels(gs, sim, delivery, start, end)
        labels["backfill"] = {"posted_to": self.url, "lines_posted": lines_done}
        write_json_atomic(labels_path(self.settings), labels)
        marks.finish(MARK, lines_done, int(labels["valid_events"]),
                          len(labels["incidents"]))
        done = marks.get(MARK)
        return True, f"done: {_describe(done) if done else _range(mark)}"


def _range(mark: BackfillMark) -> str:
    hours = (mark.end - mark.start).total_seconds() / 3600
    return (f"{hours:g} h from {iso_utc(mark.start.timestamp())} to "
            f"{iso_utc(mark.end.timestamp())} at {mark.rate:g} events/s")


def _describe(mark: BackfillMark) -> str:
    return (f"{_range(mark)}, {mark.lines} lines, {mark.valid_events} valid events, "
            f"{mark.incidents} incidents")


class BackfillThread:
    """The backfill as a supervised component in a thread: a failure is retried with the
    restart budget of any part (resuming where it was); past the budget it is `failed` and
    the service goes on without it."""

    def __init__(self, job: FirstBackfill, board: Board, settings: Settings,
                 stop: threading.Event) -> None:
        self.job, self.board, self.stop = job, board, stop
        self.budget = Restarts(NAME, settings.supervisor)
        self.thread = threading.Thread(target=self._run, name="mad-backfill", daemon=True)
        job.on_progress = self._progress

    def start(self) -> None:
        self.board.set(NAME, "running", pid=os.getpid(), detail="generating")
        self.thread.start()

    def finished(self) -> bool:
        return not self.thread.is_alive()

    def join(self, timeout_s: float) -> None:
        self.thread.join(timeout_s)

    def _progress(self, text: str) -> None:
        log.info("backfill: %s", text)
        self.board.set(NAME, "running", detail=text)

    def _run(self) -> None:
        while True:
            try:
                done, line = self.job.run(self.stop)
            except Exception as err:  # a bug must not take the supervisor down either
                why = _one_line(err)
                try:
                    delay = self.budget.next_delay(f"failed ({why})")
                except ServiceFailed as gave_up:
                    log.error("backfill: %s; the service goes on without it", gave_up)
                    self.board.set(NAME, "failed", last_exit=why, detail=str(gave_up))
                    return
                log.warning("backfill failed: %s; retrying in %.1f s (restart %d)", why, delay,
                            self.budget.total)
                self.board.set(NAME, "restarting", restarts=self.budget.total, last_exit=why,
                               detail=f"retrying in {delay:.1f} s")
                if self.stop.wait(delay):
                    self.board.set(NAME, "stopped", detail="cut short; resumes at the next "
                                   "start")
                    return
                self.board.set(NAME, "running")
                continue
            log.info("backfill: %s", line)
            self.board.set(NAME, "stopped", last_exit="finished" if done else "cut short",
                           detail=line, required=not done)
            return


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    message = text[0] if text else ""
    return message if isinstance(err, MadError) else f"{type(err).__name__}: {message}"
