"""Altair charts of the dashboard: lines over time with anomaly markers, bands, timelines."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

TIME_KEYS = ("window_start", "bucket_start", "bucket", "ts", "time", "start", "started")
HEIGHT = 220
UTC_SCALE = alt.Scale(type="utc")  # times on the axes in UTC, as everywhere in mad
OUTCOME_COLOURS = {"ok": "#2ca02c", "failed": "#d62728", "events_in": "#4c78a8",
                   "rejected": "#e45756", "rows_out": "#72b7b2"}
LEGEND_COLUMNS = 4
LIGHTER = {"#2ca02c": "#98df8a", "#d62728": "#ff9896"}


def time_tip(field: str) -> alt.Tooltip:
    """A tooltip line of a time, in UTC."""
    return alt.Tooltip(field, format="%Y-%m-%d %H:%M UTC", formatType="utc")


def time_axis(times: pd.Series) -> alt.Axis:
    """A time axis in 24-hour UTC: hours and minutes within two days, else days."""
    span = times.max() - times.min() if len(times) else pd.Timedelta(0)
    return alt.Axis(format="%H:%M" if span <= pd.Timedelta(days=2) else "%b %d %H:%M",
                    labelOverlap=True)


def time_column(df: pd.DataFrame) -> str | None:
    """The column that holds the time of each row, if any."""
    return next((c for c in TIME_KEYS if c in df.columns), None)


def lines(df: pd.DataFrame, x: str, columns: Sequence[str], title: str,
          color: str | None = None, markers: pd.DataFrame | None = None,
          y_title: str = "") -> alt.LayerChart | alt.Chart:
    """One line per column (or per `color` value for a single column) over `x`; red rules
    where `markers` (a frame with an `x` column) has a row."""
    df = df.copy()
    df[x] = pd.to_datetime(df[x], utc=True)
    if color is not None and len(columns) == 1:
        long = df[[x, color, columns[0]]].rename(columns={columns[0]: "value",
                                                          color: "series"})
    else:
        long = df.melt(id_vars=[x], value_vars=list(columns), var_name="series",
                       value_name="value")
    chart: alt.LayerChart | alt.Chart = alt.Chart(long, title=title).mark_line().encode(
        x=alt.X(f"{x}:T", title=None, scale=UTC_SCALE, axis=time_axis(long[x])),
        y=alt.Y("value:Q", title=y_title, scale=alt.Scale(zero=False)),
        color=alt.Color("series:N", title=None,
                        legend=alt.Legend(orient="bottom", columns=LEGEND_COLUMNS)),
        tooltip=[time_tip(f"{x}:T"), "series:N",
                 alt.Tooltip("value:Q", format=",.3f")],
    ).properties(height=HEIGHT)
    if markers is not None and not markers.empty:
        marks = markers.copy()
        marks[x] = pd.to_datetime(marks[x], utc=True)
        rules = alt.Chart(marks).mark_rule(color="#d62728", strokeDash=[4, 3],
                                           opacity=0.6).encode(x=alt.X(f"{x}:T",
                                                                       scale=UTC_SCALE))
        chart = chart + rules
    return chart


def band(df: pd.DataFrame, title: str) -> alt.LayerChart:
    """An observed line over its expected band (`lower`..`upper`), anomalous windows as red
    points."""
    df = df.copy()
    df["window_start"] = pd.to_datetime(df["window_start"], utc=True)
    base = alt.Chart(df, title=title).encode(
        x=alt.X("window_start:T", title=None, scale=UTC_SCALE,
                axis=time_axis(df["window_start"])))
    area = base.mark_area(opacity=0.25, color="#9ecae1").encode(
        y=alt.Y("lower:Q", title=None, scale=alt.Scale(zero=False)), y2="upper:Q")
    line = base.mark_line(color="#1f77b4").encode(
        y="observed:Q",
        tooltip=[time_tip("window_start:T"),
                 alt.Tooltip("observed:Q", format=",.3f"),
                 alt.Tooltip("expected:Q", format=",.3f"),
                 alt.Tooltip("lower:Q", format=",.3f"),
                 alt.Tooltip("upper:Q", format=",.3f")])
    points = base.transform_filter(alt.datum.anomaly).mark_point(
        color="#d62728", filled=True, size=60).encode(y="observed:Q")
    return (area + line + points).properties(height=HEIGHT)


def timeline(df: pd.DataFrame) -> alt.Chart:
    """Incidents as bars from start to last seen, one row per origin service."""
    df = df.copy()
    df["started"] = pd.to_datetime(df["started"], utc=True)
    df["last_seen"] = pd.to_datetime(df["last_seen"], utc=True)
    # a one-window incident still shows as a bar a few minutes long
    short = df["last_seen"] - df["started"] < pd.Timedelta(minutes=3)
    df.loc[short, "last_seen"] = df.loc[short, "started"] + pd.Timedelta(minutes=3)
    return alt.Chart(df, title="Incidents").mark_bar(cornerRadius=3).encode(
        x=alt.X("started:T", title=None, scale=UTC_SCALE,
                axis=time_axis(pd.concat([df["started"], df["last_seen"]]))),
        x2="last_seen:T",
        y=alt.Y("origin:N", title="origin"),
        color=alt.Color("severity:N", scale=alt.Scale(domain=["warning", "critical"],
                                                      range=["#ff9f1c", "#d62728"])),
        tooltip=["id:N", "origin:N", "severity:N", "status:N",
                 time_tip("started:T"),
                 time_tip("last_seen:T")],
    ).properties(height=max(120, 36 * df["origin"].nunique()))


def bars(df: pd.DataFrame, x: str, columns: Sequence[str], title: str,
         by: str | None = None, stacked: bool = True, unit: str = "runs") -> alt.Chart:
    """Bars of `columns` over time buckets (`x` the bucket start; each bar as wide as its
    bucket), split by the `by` column's values when given; outcomes named `ok` are green and
    `failed` red."""
    df = df.copy()
    df[x] = pd.to_datetime(df[x], utc=True)
    starts = df[x].drop_duplicates().sort_values()
    step = starts.diff().min() if len(starts) > 1 else pd.Timedelta(minutes=1)
    df["bucket_end"] = df[x] + step
    ids = [x, "bucket_end"] if by is None else [x, "bucket_end", by]
    long = df.melt(id_vars=ids, value_vars=list(columns), var_name="outcome",
                   value_name=unit)
    if by is not None:
        long["outcome"] = long[by].astype(str) + " " + long["outcome"]
    long = long.sort_values([x, "outcome"])
    if stacked:
        long["top"] = long.groupby(x)[unit].cumsum()
        long["base"] = long["top"] - long[unit]
    else:
        long["top"], long["base"] = long[unit], 0
    names = sorted(long["outcome"].unique())
    palette = [OUTCOME_COLOURS.get(n.rsplit(" ", 1)[-1], "#4c78a8") for n in names]
    if by is not None:  # a lighter shade for the second kind
        kinds = sorted(long[by].astype(str).unique())
        palette = [c if n.split(" ")[0] == kinds[0] else LIGHTER.get(c, c)
                   for n, c in zip(names, palette, strict=True)]
    return alt.Chart(long, title=title).mark_rect(opacity=1 if stacked else 0.7).encode(
        x=alt.X(f"{x}:T", title=None, scale=UTC_SCALE, axis=time_axis(long[x])),
        x2="bucket_end:T",
        y=alt.Y("top:Q", title=unit), y2="base:Q",
        color=alt.Color("outcome:N", title=None, legend=alt.Legend(orient="bottom"),
                        scale=alt.Scale(domain=names, range=palette)),
        tooltip=[time_tip(f"{x}:T"), "outcome:N", f"{unit}:Q"],
    ).properties(height=HEIGHT)
