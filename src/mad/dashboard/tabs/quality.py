"""Quality: where each dataset's quality score stands with its parts, the failed and warned
checks of the period, the history of one metric, and the write-audit-publish gate: the
partitions it holds, each with a form to accept it (reason required), and its decisions
(`mad.query.quality`)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import streamlit as st

from mad.config import Settings
from mad.dashboard import charts
from mad.dashboard.ui import TimeRange, frame, number, one_line, read, when
from mad.words import plural

NOT_CHECKED = ("No run has been checked yet: run `mad etl run` (or `mad up`); the quality "
               "checks of every ETL run show here.")
CHECK_COLUMNS = ("status", "severity", "dataset", "partition", "check", "column", "metric",
                 "value", "threshold", "detail", "run_id", "measured_at")
DECISION_COLUMNS = ("at", "dataset", "partition", "decision", "by", "reason", "run_id")
PREFERRED = ("volume", "completeness", "uniqueness")  # the history shown first
OUTCOME = "q_outcome"  # the session key of the last accept's outcome


def parts_table(latest: Sequence[Mapping[str, Any]], order: Sequence[str]) -> pd.DataFrame:
    """One row per dataset: its score, then each part's score in `order` ("–" where the
    part was not judged)."""
    names = {p for s in latest for p in s["parts"]}
    parts = [p for p in order if p in names] + sorted(names - set(order))
    rows = [{"dataset": s["dataset"], "score": number(s["score"]),
             **{p: number(s["parts"][p]) if p in s["parts"] else "–" for p in parts}}
            for s in latest]
    return frame(rows)


def render(settings: Settings, period: TimeRange) -> None:
    q = read("mad.query.quality", importlib.import_module, "mad.query.quality")
    if q is None:
        return
    outcome = st.session_state.pop(OUTCOME, None)
    if outcome is not None:
        kind, text = outcome
        (st.success if kind == "ok" else st.error)(text)
    latest = read("the quality scores", q.latest_scores, settings)
    gate_rows = read("the quality gate", q.gate, settings)
    if latest is None or gate_rows is None:
        return
    if not latest and not gate_rows:
        st.info(NOT_CHECKED)
        return
    scores(q, latest)
    held(settings, q, [g for g in gate_rows if g.get("status") == "held"], gate_rows)
    checks(settings, q, period)
    history(settings, q)
    decisions(settings, q)


def scores(q: Any, latest: list[dict[str, Any]]) -> None:
    """Each dataset's score as a metric, its parts in a table, the formula beneath."""
    st.subheader("Score per dataset")
    shown = [s for s in latest if s.get("score") is not None]
    for i in range(0, len(shown), 4):
        for col, s in zip(st.columns(4), shown[i:i + 4], strict=False):
            col.metric(str(s["dataset"]), number(s["score"]),
                       help=f"{plural(int(s['failed']), 'failed result')}, "
                            f"{plural(int(s['warned']), 'warning')}; measured "
                            f"{when(s.get('measured_at'))}")
    st.dataframe(parts_table(shown, q.PARTS), hide_index=True, width="stretch")
    st.caption(f"Score 0–100: {q.FORMULA}. Each part is as the newest run that judged it "
               "left it (an ETL run's checks, then the reconciliation of the whole lake).")


def held(settings: Settings, q: Any, rows: list[dict[str, Any]],
         gate_rows: list[dict[str, Any]]) -> None:
    """The gate's counts, and each held partition with its accept form."""
    st.subheader("Quality gate")
    counts = {s: sum(1 for g in gate_rows if g.get("status") == s)
              for s in ("held", "accepted", "open")}
    cols = st.columns(3)
    cols[0].metric("Held partitions", number(counts["held"]))
    cols[1].metric("Accepted", number(counts["accepted"]))
    cols[2].metric("Open (passed)", number(counts["open"]))
    if not rows:
        st.caption("Nothing is held: every partition's gating checks passed or were "
                   "accepted.")
        return
    st.warning(f"{plural(len(rows), 'partition')} held by the quality gate: kept in the "
               "lake, left out of detection and of the other tabs until accepted here (or "
               "with `mad quality accept`) or until a later run passes.")
    for n, row in enumerate(rows):
        name = f"{row['dataset']}/{row['partition']}"
        with st.form(f"q_accept_{n}", border=True):
            st.markdown(f"**{name}** — held by run `{row.get('run_id', '?')}` at "
                        f"{when(row.get('updated_at'))}")
            st.caption(f"Failed: {row.get('reason') or '–'}")
            st.text_input("Reason to accept (required)", key=f"q_reason_{n}", max_chars=500)
            st.text_input("Accepted by", key=f"q_by_{n}", max_chars=128,
                          placeholder="your name (default: the dashboard's login)")
            st.form_submit_button("Accept", on_click=accept, args=(
                settings, q, str(row["dataset"]), str(row["partition"]), n))


def accept(settings: Settings, q: Any, dataset: str, partition: str, n: int) -> None:
    """Accept a held partition with the form's reason (a button's callback: it runs before
    the page is drawn again, so the gate is read after the change)."""
    reason = str(st.session_state.get(f"q_reason_{n}") or "")
    by = str(st.session_state.get(f"q_by_{n}") or "") or None
    try:
        done = q.accept(settings, partition, reason, by=by, dataset=dataset)
    except Exception as err:  # a refusal (no reason, no longer held) is one line
        st.session_state[OUTCOME] = ("error", f"{dataset}/{partition} not accepted: "
                                              f"{one_line(err)}")
        return
    st.session_state[OUTCOME] = ("ok", "; ".join(
        f"Accepted {r['dataset']}/{r['partition']} by {r['accepted_by']}: "
        f"{r['accepted_reason']}" for r in done))


def checks(settings: Settings, q: Any, period: TimeRange) -> None:
    """The failed and warned results measured in the period, failed first."""
    st.subheader(f"Failed and warned checks in the {period.label}")
    data = read("the quality report", q.report, settings, since=period.start)
    if data is None:
        return
    bad = [r for r in data["results"] if r.get("status") in ("fail", "warn")]
    counts = data.get("counts") or {}
    st.caption(", ".join(f"{number(n)} {status}" for status, n in counts.items() if n)
               or "No results in this period.")
    if bad:
        st.dataframe(frame(bad, CHECK_COLUMNS), hide_index=True, width="stretch")
    else:
        st.success(f"No check failed or warned in the {period.label}.")


def metric_label(column: str, metric: str) -> str:
    """How a metric is named in the picker: `service · null_rate`, or `rows` for one about
    the whole partition (column `*`)."""
    return metric if column == "*" else f"{column} · {metric}"


def history(settings: Settings, q: Any) -> None:
    """One metric over time: pick a dataset, a check and a metric."""
    st.subheader("History of a metric")
    found = read("the quality metrics", q.metrics, settings) or []
    if not found:
        st.caption("No metric measured yet.")
        return
    sets = sorted({str(m["dataset"]) for m in found})
    cols = st.columns(3)
    rich = next((d for k in PREFERRED for d in sets
                 if any(m["dataset"] == d and m["check"] == k for m in found)), sets[0])
    dataset = cols[0].selectbox("Dataset", sets, index=sets.index(rich), key="q_dataset")
    of_set = [m for m in found if m["dataset"] == dataset]
    kinds = sorted({str(m["check"]) for m in of_set})
    first = next((k for k in PREFERRED if k in kinds), kinds[0])
    check = cols[1].selectbox("Check", kinds, index=kinds.index(first), key="q_check")
    names = {metric_label(str(m["column"]), str(m["metric"])): (str(m["column"]),
                                                                str(m["metric"]))
             for m in of_set if m["check"] == check}
    chosen = cols[2].selectbox("Metric", list(names), key="q_metric")
    if chosen is None:
        return
    column, metric = names[chosen]
    rows = read("the metric's history", q.history, settings, dataset, check, column, metric)
    if not rows:
        st.caption("No values of this metric yet.")
        return
    df = frame(rows).rename(columns={"value": "measured"})
    x = "hour" if df["hour"].notna().all() else "measured_at"
    values = ["measured"] + (["threshold"] if df["threshold"].notna().any() else [])
    failed = df[df["status"] == "fail"][[x]]
    df = df[[x, *values]]
    what = "by the partition's event hour" if x == "hour" else "by the time it was measured"
    st.altair_chart(charts.lines(df, x, values, f"{dataset}: {check} {chosen} ({what})",
                                 markers=failed), width="stretch")
    st.caption(f"{plural(len(df), 'value')}; red rules mark failed values.")


def decisions(settings: Settings, q: Any) -> None:
    """The gate's audit trail: held, released, accepted, with who and why."""
    st.subheader("Gate decisions")
    rows = read("the gate decisions", q.decisions, settings, 100)
    if rows:
        st.dataframe(frame(rows, DECISION_COLUMNS), hide_index=True, width="stretch")
    elif rows is not None:
        st.caption("No partition has been held yet.")
