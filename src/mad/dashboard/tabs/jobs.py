"""Jobs: ETL and detection runs with status, duration, rows in and out, duplicates, late and
retries, and their success and failure rates over time (`mad.query.jobs`)."""

from __future__ import annotations

import importlib
from typing import Any

import streamlit as st

from mad.config import Settings
from mad.dashboard import charts
from mad.dashboard.ui import EMPTY, TimeRange, bucket_for, frame, number, read

COLUMNS = ("id", "kind", "plan", "status", "started", "ended", "duration_s", "rows_in",
           "rows_out", "duplicates", "late", "retries", "error")
KINDS = {"all": None, "ETL": "etl", "detection": "detect"}


def counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Runs, and how many ended ok and failed."""
    failed = sum(1 for r in rows if r.get("status") == "failed")
    ok = sum(1 for r in rows if r.get("status") == "succeeded")
    return {"runs": len(rows), "ok": ok, "failed": failed}


def render(settings: Settings, period: TimeRange) -> None:
    q = read("mad.query.jobs", importlib.import_module, "mad.query.jobs")
    if q is None:
        return
    label = st.segmented_control("Kind", list(KINDS), default="all", key="job_kind") or "all"
    rows = read("the runs", q.jobs, settings, period.start, period.end, kind=KINDS[label])
    if rows is None:
        return
    if not rows:
        st.info(f"No runs in the {period.label}. " + EMPTY)
        return
    total = counts(rows)
    cols = st.columns(4)
    cols[0].metric("Runs", number(total["runs"]))
    cols[1].metric("Succeeded", number(total["ok"]))
    cols[2].metric("Failed", number(total["failed"]))
    cols[3].metric("Rows out", number(sum(int(r.get("rows_out") or 0) for r in rows)))
    bucket = "1h" if bucket_for(period) in ("1m", "5m") else "1d"
    rates = read("the run rates", q.job_rates, settings, period.start, period.end, bucket)
    if rates:
        df = frame(rates)
        x = charts.time_column(df)
        outcome = [c for c in ("ok", "failed") if c in df.columns]
        if x is not None and outcome and int(df[outcome].to_numpy().sum()):
            by = "kind" if "kind" in df.columns else None
            st.altair_chart(charts.bars(df, x, outcome, f"Runs per {bucket}, by outcome", by=by),
                            width="stretch")
    st.dataframe(frame(table(rows), COLUMNS), hide_index=True, width="stretch")


def table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs as table rows: retries are the attempts after the first."""
    out = []
    for row in rows:
        attempts = row.get("attempts")
        retries = row.get("retries", None if attempts is None else max(0, int(attempts) - 1))
        out.append({**row, "retries": retries})
    return out
