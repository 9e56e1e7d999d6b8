"""Before a run reads its raw files: which can be read, which wait, which are given up on.

A raw file that cannot be read whole (`Engine.unreadable`: a `.gz` cut short or corrupt; or
a file an earlier run's engine failed on, `mad.etl.failures.Blame.raw`) is never read in
part and never marked done while it may still be whole some day (a copy still arriving, a
read that failed for a passing reason): each pass that finds it so counts an attempt
(`mad.state.UnreadableFiles`) and leaves it pending. Once `etl.unreadable_attempts` passes
found it so, the next run quarantines it WHOLE (one `unreadable_file` row, the file recorded
as read; the run's `unreadable` count, which `mad etl status` sums). The record goes once
the file is read whole or quarantined whole, so a backfill gives it a fresh chance.

A file found whole is not checked again by this process (a retried run reads the same
bytes): each file is inflated once, before the first run that reads it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from mad.etl.discover import RawFile
from mad.etl.engines import Engine
from mad.etl.publish import PartitionStore
from mad.state import UnreadableFiles

log = logging.getLogger(__name__)


@dataclass
class Screened:
    read: list[RawFile] = field(default_factory=list)
    whole: list[RawFile] = field(default_factory=list)  # quarantined whole by this run
    waiting: list[RawFile] = field(default_factory=list)  # left pending for a later pass
    recovered: list[str] = field(default_factory=list)  # keys found unreadable before, whole now

    @property
    def claimed(self) -> list[RawFile]:
        """The files the run records as read."""
        return self.read + self.whole

    @property
    def settled(self) -> list[str]:
        """The keys whose unreadable record goes once the run succeeded."""
        return self.recovered + [f.key for f in self.whole]


class Screen:
    def __init__(self, engine: Engine, lake: PartitionStore, files: UnreadableFiles,
                 attempts: int) -> None:
        self.engine = engine
        self.lake = lake
        self.files = files
        self.attempts = attempts
        self.whole_seen: set[str] = set()  # keys found readable by this process

    def screen(self, batch: list[RawFile]) -> Screened:
        known = self.files.known(f.key for f in batch)
        todo = {self.lake.location(f.key): f for f in batch if f.key not in self.whole_seen}
        problems = self.engine.unreadable(list(todo))
        by_key = {todo[loc].key: why for loc, why in problems.items() if loc in todo}
        out = Screened()
        for f in batch:
            why = by_key.get(f.key)
            if why is not None:
                self.count(f, why, out)
                continue
            self.whole_seen.add(f.key)
            if f.key in known and known[f.key][0] >= self.attempts:
                out.whole.append(f)  # an engine failed on it every time it was tried
            else:
                out.read.append(f)
                if f.key in known:
                    out.recovered.append(f.key)
        return out

    def count(self, f: RawFile, why: str, out: Screened) -> None:
        """Count one more pass that found `f` unreadable; it waits, or is given up on."""
        self.whole_seen.discard(f.key)
        n = self.files.attempt(f.key, why)
        if n >= self.attempts:
            log.warning("raw file %s cannot be read whole (%s), %d times: quarantined whole",
                        f.key, why, n)
            out.whole.append(f)
        else:
            log.warning("raw file %s cannot be read whole (%s): left for the next pass "
                        "(%d of %d attempts)", f.key, why, n, self.attempts)
            out.waiting.append(f)

    def blamed(self, screened: Screened, key: str, why: str) -> None:
        """A run's engine failed on raw file `key`: take it out of the files to read."""
        f = next(f for f in screened.read if f.key == key)
        screened.read.remove(f)
        if key in screened.recovered:
            screened.recovered.remove(key)
        self.count(f, why, screened)
