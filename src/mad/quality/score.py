"""The quality score: one number per partition and per run, always shown with its parts.

    part(check) = 100 x mean over the check's judged results of (pass 1, warn 0.5, fail 0)
    score       = mean of the parts that have judged results

Results with status `skip` (not judged yet) or `info` (counts shown beside the checks) take no
part. A partition's score takes its own results and the run's (partition `*`: a run-level
failure such as unaccounted lines concerns every partition the run wrote); the run's score
takes every result of the run. A score of 100 means every judged check passed; each failure
of one of the nine parts costs that part, so a single failed check among many passing ones
still shows in its part as well as in the score.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from mad.quality.model import PARTS, RUN, Result
from mad.state.quality import Score

POINTS = {"pass": 1.0, "warn": 0.5, "fail": 0.0}


def score(dataset: str, partition: str, results: Sequence[Result]) -> Score | None:
    """The score of `results` (all about `dataset`), None when none was judged."""
    marks: dict[str, list[float]] = defaultdict(list)
    for r in results:
        if r.status in POINTS and r.check in PARTS:
            marks[r.check].append(POINTS[r.status])
    if not marks:
        return None
    parts = {p: round(100.0 * sum(m) / len(m), 2) for p in PARTS if (m := marks.get(p))}
    return Score(dataset, partition, round(sum(parts.values()) / len(parts), 2), parts,
                 failed=sum(r.status == "fail" for r in results),
                 warned=sum(r.status == "warn" for r in results))


def scores(results: Sequence[Result]) -> list[Score]:
    """One score per (dataset, partition) of `results` and one per dataset for the run."""
    by_dataset: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_dataset[r.dataset].append(r)
    out: list[Score] = []
    for dataset, rs in sorted(by_dataset.items()):
        run_level = [r for r in rs if r.partition == RUN]
        for part in sorted({r.partition for r in rs} - {RUN}):
            s = score(dataset, part, [r for r in rs if r.partition == part] + run_level)
            if s is not None:
                out.append(s)
        whole = score(dataset, RUN, rs)
        if whole is not None:
            out.append(whole)
    return out
