"""Every step of every plan translates to Spark SQL (the Spark engine runs the translation)."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot.errors import ErrorLevel

from mad.etl.plan import Plan
from mad.etl.transforms.aggregates import WINDOWS, aggregates_plan
from mad.etl.transforms.events import events_plan, partitions_plan

PLANS = [events_plan(), events_plan("log"), partitions_plan(),
         *(aggregates_plan(w) for w in WINDOWS)]


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.name)
def test_every_step_transpiles(plan: Plan) -> None:
    for step in plan.steps:
        out = sqlglot.transpile(step.sql, read="duckdb", write="spark",
                                unsupported_level=ErrorLevel.RAISE)
        assert len(out) == 1 and out[0].upper().startswith("SELECT"), step.name
