"""What a check produces: tidy result rows, one per measured metric.

A `Result` is one row of `quality_results` (`mad.state.quality`): which run measured which
partition of which dataset, the check and its column, the metric, its value, the threshold
it was held against and the verdict. `detail` carries what a person needs to act (examples of
a new field, the expected range of a volume, the partition and count missing).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Status = Literal["pass", "warn", "fail", "skip", "info"]
"""`skip`: not judged (too little history, an hour still filling); `info`: a count shown
beside the checks, never judged (quarantined lines per reason, compression, ...)."""
Severity = Literal["warn", "error"]

RUN = "*"  # the partition of a result that is about the whole run (or the whole dataset)

PARTS = ("completeness", "uniqueness", "validity", "freshness", "volume", "distribution",
         "schema", "reconciliation", "history")
"""The checks, each one part of the quality score (`mad.quality.score`); `compression` is
measured and shown but not scored (a ratio has no right value)."""


@dataclass(frozen=True)
class Result:
    dataset: str
    partition: str  # `date=YYYY-MM-DD/hour=HH`, an ingest hour, or RUN
    check: str  # one of PARTS, or `compression`
    column: str  # the column or field measured, `*` for the whole partition
    metric: str  # e.g. null_rate, duplicate_rate, rows, p95_s
    value: float
    threshold: float | None = None
    status: Status = "pass"
    severity: Severity = "warn"  # what a failure of this check means
    gate: bool = False  # a failure holds the partition (write-audit-publish)
    detail: str = ""

    def judged(self, status: Status, threshold: float | None = None,
               detail: str | None = None) -> Result:
        return replace(self, status=status,
                       threshold=self.threshold if threshold is None else threshold,
                       detail=self.detail if detail is None else detail)

    @property
    def failed(self) -> bool:
        return self.status == "fail"
