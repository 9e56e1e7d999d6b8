"""Renders the catalog as a terminal table, Markdown (docs/catalog.md) or JSON."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict

import orjson

from mad.catalog import EVENT_TYPES, SERVICES, EventType

HEADER = """# Event catalog

Generated from `src/mad/catalog.py` by `mad catalog --format markdown > docs/catalog.md`;
a test fails when this file is stale. Series are keys of the event's `metrics` object;
fields live in its `context` object.

"""


def _levels(t: EventType) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in t.levels.items())


def _series(t: EventType) -> str:
    return ", ".join(f"{s.name} ({s.unit})" for s in t.series) or "-"


def _fields(t: EventType) -> str:
    return ", ".join(f"{f.name}: {f.type}" for f in t.fields) or "-"


def _selected(service: str | None) -> list[EventType]:
    return [t for t in EVENT_TYPES if service is None or service in t.services]


def markdown(service: str | None = None) -> str:
    types = _selected(service)
    kinds = Counter(t.kind for t in types)
    lines = [HEADER, f"{len(types)} event types over {len(SERVICES)} services "
             f"({', '.join(f'{kinds[k]} {k}' for k in ('log', 'metric', 'apm'))}).\n\n"]
    lines.append("| event type | services | kind | category | levels | series (unit) | fields |\n")
    lines.append("| --- | --- | --- | --- | --- | --- | --- |\n")
    for t in types:
        services = "all" if len(t.services) == len(SERVICES) else ", ".join(t.services)
        lines.append(f"| `{t.name}` | {services} | {t.kind} | {t.category} | {_levels(t)} | "
                     f"{_series(t)} | {_fields(t)} |\n")
    return "".join(lines)


def table(service: str | None = None) -> str:
    types = _selected(service)
    rows = [("EVENT TYPE", "SERVICES", "KIND", "CATEGORY", "SERIES")]
    for t in types:
        services = "all" if len(t.services) == len(SERVICES) else ",".join(t.services)
        rows.append((t.name, services, t.kind, t.category, ", ".join(t.series_names) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    out = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=False)) + "  " + r[4]
           for r in rows]
    return "\n".join(out) + f"\n\n{len(types)} event types\n"


def as_json(service: str | None = None) -> str:
    return orjson.dumps([asdict(t) for t in _selected(service)],
                        option=orjson.OPT_INDENT_2).decode() + "\n"


def render(fmt: str, service: str | None = None) -> str:
    return {"table": table, "markdown": markdown, "json": as_json}[fmt](service)
