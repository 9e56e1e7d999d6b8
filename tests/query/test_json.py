"""Every query result is plain data that JSON can hold as it is (the dashboard and the CLI
print it with orjson, no options)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from mad.query import datasets, detection, etl, incidents, jobs, overview, services
from tests.query.conftest import BuiltLake

DAY = datetime(2026, 11, 1, tzinfo=UTC)


def test_every_result_is_json(pipeline_lake: BuiltLake) -> None:
    s = pipeline_lake.settings
    inc = incidents.incidents(s)
    key = datasets.files(s, "md-anomalies", datasets.partitions(s, "md-anomalies")[0][
        "partition"])[0]["key"]
    results: list[Any] = [
        overview.overview(s), overview.rates(s, DAY, DAY + timedelta(hours=3)),
        services.services(s), services.service_metrics(s, "1m", DAY, DAY + timedelta(hours=3)),
        services.anomalies(s, DAY, DAY + timedelta(hours=3)),
        datasets.datasets(s), datasets.partitions(s, "md-aggregates"),
        dataclasses.asdict(datasets.preview(s, key)),
        jobs.jobs(s), jobs.job_rates(s, datetime.now(UTC) - timedelta(hours=1),
                                     datetime.now(UTC)),
        inc, incidents.incident_detail(s, inc[0]["id"]),
        detection.detect_status(s), etl.etl_status(s),
    ]
    for result in results:
        assert orjson.loads(orjson.dumps(result)) is not None
