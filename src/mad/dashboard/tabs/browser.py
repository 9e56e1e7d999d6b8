"""Data Browser: a dataset, then a partition with its size and row count, then a file, then
a paged preview of its rows, JSONL or Parquet (`mad.query.datasets`)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import orjson
import streamlit as st

from mad.config import Settings
from mad.dashboard.ui import EMPTY, TimeRange, frame, held_note, number, read

PAGE_ROWS = 50


def name_of(row: Mapping[str, Any], *keys: str) -> str:
    """The first of `keys` a listing row has, as text."""
    return str(next((row[k] for k in keys if row.get(k) not in (None, "")), ""))


def render(settings: Settings, period: TimeRange) -> None:
    q = read("mad.query.datasets", importlib.import_module, "mad.query.datasets")
    if q is None:
        return
    sets = read("the datasets", q.datasets, settings)
    if sets is None:
        return
    st.dataframe(frame(sets), hide_index=True, width="stretch")
    names = [name_of(d, "name", "dataset") for d in sets if d.get("files")]
    if not names:
        st.info(EMPTY)
        return
    dataset = st.selectbox("Dataset", names, key="db_dataset")
    parts = read("the partitions", q.partitions, settings, dataset) or []
    held_note(getattr(parts, "held", None))
    if not parts:
        st.caption(f"{dataset} has no partitions yet.")
        return
    labels = [name_of(p, "partition", "path", "name") for p in parts]
    partition = st.selectbox("Partition", labels, key="db_partition")
    chosen = parts[labels.index(partition)]
    st.caption(f"{number(chosen.get('files'))} files, {number(chosen.get('rows'))} rows, "
               f"{number(chosen.get('bytes'))} bytes")
    found = read("the files", q.files, settings, dataset, partition) or []
    if not found:
        st.caption("No files in this partition.")
        return
    keys = [name_of(f, "key", "path", "name") for f in found]
    key = st.selectbox("File", keys, key="db_file",
                       format_func=lambda k: k.rsplit("/", 1)[-1])
    preview(settings, q, key)


def preview(settings: Settings, q: Any, key: str) -> None:
    """A page of the file's rows, with previous and next."""
    if st.session_state.get("db_shown") != key:
        st.session_state["db_shown"] = key
        st.session_state["db_offset"] = 0
    offset = int(st.session_state.get("db_offset", 0))
    page = read(f"file {key}", q.preview, settings, key, offset=offset, limit=PAGE_ROWS)
    if page is None:
        return
    shown = len(page.rows)
    if page.total is None:  # not counted: there is more while a page comes back full
        last = offset + PAGE_ROWS if shown == PAGE_ROWS else offset
        of = ""
    else:
        last = max(0, (page.total - 1) // PAGE_ROWS * PAGE_ROWS)
        of = f" of {number(page.total)}"
    prev_col, info, next_col = st.columns([1, 4, 1])
    prev_col.button("Previous", icon=":material/chevron_left:", disabled=offset <= 0,
                    key="db_prev", on_click=move,
                    args=(max(0, offset - PAGE_ROWS),))
    next_col.button("Next", icon=":material/chevron_right:", disabled=offset >= last,
                    key="db_next", on_click=move,
                    args=(min(last, offset + PAGE_ROWS),))
    info.markdown(f"Rows {number(offset + 1 if shown else 0)}–{number(offset + shown)}{of}")
    for note in getattr(page, "notes", None) or []:
        st.caption(str(note))
    st.dataframe(frame(table_rows(page.columns, page.rows), page.columns),
                 hide_index=True, width="stretch")


def move(offset: int) -> None:
    """Show the page at `offset` on the next run (a button's callback)."""
    st.session_state["db_offset"] = offset


def table_rows(columns: list[str], rows: list[Any]) -> list[dict[str, Any]]:
    """Preview rows as flat cells: nested objects (JSONL) become their JSON text."""
    out = []
    for row in rows:
        cells = row if isinstance(row, Mapping) else dict(zip(columns, row, strict=False))
        out.append({k: cell(v) for k, v in cells.items()})
    return out


def cell(value: Any) -> Any:
    """One value as a table shows it."""
    if isinstance(value, Mapping | list | tuple):
        return orjson.dumps(value, default=str).decode()
    return value
