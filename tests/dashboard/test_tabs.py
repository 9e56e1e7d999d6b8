"""Each dashboard tab in AppTest on the pipeline's small lake: the numbers on the page are
those the `mad.query` functions return; actions are stored through `mad.detect.operator`;
an empty data folder shows the empty state, never a traceback."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mad.config import load_settings
from mad.dashboard.tabs import overview as overview_tab
from mad.dashboard.tabs.services import latest
from mad.dashboard.ui import EMPTY, number, time_range
from tests.dashboard.conftest import RANGE, metric, page
from tests.query.conftest import BuiltLake

TABS = ("overview", "services", "data", "quality", "jobs", "anomalies")
# Streamlit's own conversion of tz-aware columns, not ours
pytestmark = pytest.mark.filterwarnings("ignore:Series.values returning an ndarray")


def texts(at: AppTest) -> list[str]:
    """Every markdown, caption, subheader, info, success and warning text on the page."""
    found: list[str] = []
    for kind in ("markdown", "caption", "subheader", "info", "success", "warning", "error"):
        found += [str(e.value) for e in getattr(at, kind)]
    return found


def test_overview_shows_the_query_numbers(dashboard_lake: BuiltLake) -> None:
    from mad.query.overview import overview

    at = page(dashboard_lake.settings, "overview")
    data = overview(dashboard_lake.settings)
    raw = overview_tab.raw_totals(data["raw"])
    etl, det = data["etl"], data["detect"]
    assert raw["records"] > 0 and etl["rows_out"] > 0
    assert metric(at, "Raw records") == number(raw["records"])
    assert metric(at, "Accepted") == number(data["ingest"]["accepted"])
    assert metric(at, "Rejected") == number(data["ingest"]["rejected"])
    assert metric(at, "ETL rows out") == number(etl["rows_out"])
    assert metric(at, "ETL backlog (files)") == number(etl["pending_raw_files"])
    assert metric(at, "Duplicates") == number(etl["duplicates"])
    assert metric(at, "Late events") == number(etl["late"])
    assert metric(at, "Quarantined") == number(sum(etl["quarantined"].values()))
    assert metric(at, "Open incidents") == number(det["open_incidents"])
    assert metric(at, "Raw→Parquet") == f"{etl['compression_ratio']:.1f}x"
    quarantine, rejected = [df.value for df in at.dataframe if "reason" in df.value.columns]
    assert dict(zip(quarantine["reason"], quarantine["count"], strict=True)) \
        == etl["quarantined"]
    assert dict(zip(rejected["reason"], rejected["count"], strict=True)) \
        == data["ingest"]["rejected_by_reason"]
    stages = next(df.value for df in at.dataframe if "stage" in df.value.columns)
    assert list(stages["out"]) == [data["ingest"]["accepted"], etl["rows_out"]]
    assert list(stages["removed"]) == [data["ingest"]["rejected"],
                                       etl["rows_in"] - etl["rows_out"]]
    assert EMPTY not in texts(at)


def test_services_shows_each_service_at_each_window(dashboard_lake: BuiltLake) -> None:
    from mad.dashboard.ui import SOURCES
    from mad.query.services import anomalies, service_metrics, services

    settings = dashboard_lake.settings
    at = page(settings, "services")
    period = time_range(RANGE)
    names = services(settings)
    assert at.selectbox(key="svc_service").options == names
    for window in ("1m", "5m", "1h"):
        at.segmented_control(key="svc_window").set_value(window).run()
        assert not at.exception
        read = service_metrics(settings, window, period.start, period.end)
        rows = latest(read)
        assert read.source and any(t.startswith(f"Read {SOURCES[read.source]}")
                                   for t in texts(at))
        shown = at.dataframe[0].value
        assert list(shown["service"]) == [r["service"] for r in rows]
        for column in ("request_rate", "error_rate", "p99_ms"):
            assert list(shown[column]) == [r[column] for r in rows], (window, column)
        found = anomalies(settings, period.start, period.end, service=names[0], window=window)
        assert f"{names[0]}: {len(found)} anomalous window(s) in the {RANGE}" \
            in [s.value for s in at.subheader]
    assert len(at.get("vega_lite_chart")) == 3


def test_data_browser_pages_through_a_file(dashboard_lake: BuiltLake) -> None:
    from mad.query.datasets import datasets, files, partitions, preview

    settings = dashboard_lake.settings
    at = page(settings, "data")
    listed = datasets(settings)
    assert len(at.dataframe[0].value) == len(listed)
    name = next(str(d["name"]) for d in listed if "transformed" in str(d["name"]))
    at.selectbox(key="db_dataset").set_value(name).run()
    parts = partitions(settings, name)
    assert at.selectbox(key="db_partition").options == [p["partition"] for p in parts]
    part = max(parts, key=lambda p: p["rows"] or 0)["partition"]
    at.selectbox(key="db_partition").set_value(part).run()
    key = str(at.selectbox(key="db_file").value)
    assert key in [f["key"] for f in files(settings, name, part)]
    first = preview(settings, key, offset=0, limit=50)
    assert first.total is not None and first.total > 50
    assert f"Rows 1–50 of {number(first.total)}" in texts(at)
    assert len(at.dataframe[-1].value) == 50
    at.button(key="db_next").click().run()
    assert f"Rows 51–{min(100, first.total)} of {number(first.total)}" in texts(at)
    at.button(key="db_prev").click().run()
    assert f"Rows 1–50 of {number(first.total)}" in texts(at)


def test_jobs_shows_every_run(dashboard_lake: BuiltLake) -> None:
    from mad.query.jobs import jobs

    settings = dashboard_lake.settings
    at = page(settings, "jobs")
    period = time_range(RANGE)
    runs = jobs(settings, period.start, period.end)
    assert runs
    assert metric(at, "Runs") == number(len(runs))
    assert metric(at, "Failed") == number(sum(r["status"] == "failed" for r in runs))
    table = at.dataframe[-1].value
    assert list(table["id"]) == [r["id"] for r in runs]
    assert {r["kind"] for r in runs} >= {"etl", "detect"}
    at.segmented_control(key="job_kind").set_value("detection").run()
    detect_runs = jobs(settings, period.start, period.end, kind="detect")
    assert metric(at, "Runs") == number(len(detect_runs))


def test_anomalies_shows_each_incident(dashboard_lake: BuiltLake) -> None:
    from mad.query.incidents import incident_detail, incidents

    settings = dashboard_lake.settings
    at = page(settings, "anomalies")
    period = time_range(RANGE)
    found = incidents(settings, period.start, period.end)
    assert found, "the lake was built with incidents"
    table = at.dataframe[0].value
    assert list(table["id"]) == [i["id"] for i in found]
    first = incident_detail(settings, found[0]["id"])
    assert metric(at, "Origin") == first["incident"]["origin"]
    assert metric(at, "Alerts sent") == number(found[0]["alerts_sent"])
    with_points = [s for s in first["series"] if s["points"]]
    assert len(at.get("vega_lite_chart")) == 1 + min(4, len(with_points))
    assert set(at.multiselect(key="inc_series").options) == {s["key"] for s in with_points}


def test_thumbs_down_and_snooze_are_stored_and_shown(own_lake: BuiltLake) -> None:
    from mad.detect.operator import feedback, silences

    settings = own_lake.settings
    at = page(settings, "anomalies")
    ident = at.dataframe[0].value["id"][0]
    at.button(key="fb_down").click().run()
    assert not at.exception
    assert feedback(settings, [ident])[ident]["verdict"] == "down"
    assert any(s.value.startswith("Label: false alarm (down)") for s in at.success)
    at.selectbox(key="sn_for").set_value("4 hours")
    at.text_input(key="sn_reason").input("known deploy")
    next(b for b in at.button if b.label == "Snooze").click().run()
    assert not at.exception
    stored = [s for s in silences(settings) if s["kind"] == "incident"]
    assert [s["target"] for s in stored] == [ident]
    shown = [i.value for i in at.info if str(i.value).startswith("Silenced until")]
    assert shown and f"incident {ident}" in shown[0] and "known deploy" in shown[0]


def test_a_bad_action_is_one_line_not_a_traceback(own_lake: BuiltLake) -> None:
    from mad.detect.operator import silences

    at = page(own_lake.settings, "anomalies")
    at.number_input(key="mw_hours").set_value(24.0 * 14)
    at.datetime_input(key="mw_start").set_value(datetime(2020, 1, 1, 12, 0))
    next(b for b in at.button if b.label == "Add maintenance window").click().run()
    assert not at.exception
    refused = [e.value for e in at.error if "not stored" in e.value]
    assert len(refused) == 1 and "has passed already" in refused[0]
    assert silences(own_lake.settings, include_expired=True) == []


def test_an_empty_data_folder_shows_the_empty_state(tmp_path: Path) -> None:
    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path / "nothing")})
    (tmp_path / "nothing").mkdir()
    for tab in TABS:
        at = page(settings, tab)
        shown = texts(at)
        assert any("No data yet" in t for t in shown), (tab, shown)
    assert list((tmp_path / "nothing").iterdir()) == [], "the dashboard created files"
