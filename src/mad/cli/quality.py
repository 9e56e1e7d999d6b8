"""`mad quality report|accept`: what the quality checks found, and letting a held partition
through the write-audit-publish gate (`mad.query.quality`)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from mad.cli.common import ConfigOption, settings_from, sub_app
from mad.errors import MadError

quality_app = sub_app("Data quality: the checks of every ETL run, the score, the gate.")
SHOWN_PASSED = 20  # passed and skipped results listed without --all, per report
DETAIL_CHARS = 70


def register(app: typer.Typer) -> None:
    """Add the `quality` group to the main app."""
    app.add_typer(quality_app, name="quality")


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`2h`, `30m`, `1d` (that long ago) or an ISO-8601 time (UTC when it has no offset)."""
    from mad.config import parse_duration

    raw = text.strip()
    if raw[:1].isdigit() and not raw[:4].isdigit():  # a duration, not a year
        try:
            return (now or datetime.now(UTC)) - timedelta(seconds=parse_duration(raw))
        except ValueError:
            raise MadError(f"--since {text!r}: expected a duration such as 2h, 30m or 1d, or "
                           "an ISO-8601 time such as 2026-11-01T06:00:00+00:00") from None
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        raise MadError(f"--since {text!r}: expected a duration such as 2h, 30m or 1d, or an "
                       "ISO-8601 time such as 2026-11-01T06:00:00+00:00") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


@quality_app.command("report")
def quality_report(
    since: str = typer.Option("24h", "--since", help="Results measured since: a duration "
                              "(2h, 30m, 1d) or an ISO-8601 time."),
    partition: str | None = typer.Option(None, "--partition",
                                         help="Only this partition (date=YYYY-MM-DD/hour=HH)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    show_all: bool = typer.Option(False, "--all", help="List every passed and skipped "
                                  f"result too (default: the first {SHOWN_PASSED})."),
    config: Path | None = ConfigOption,
) -> None:
    """Failed checks first, then warnings; the score and its parts per run; held
    partitions."""
    import orjson

    from mad.query.quality import report

    settings = settings_from(config)
    data = report(settings, since=parse_since(since), partition=partition)
    if as_json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_UTC_Z
                                      | orjson.OPT_NON_STR_KEYS).decode() + "\n")
    else:
        sys.stdout.write(render(data, show_all))


@quality_app.command("accept")
def quality_accept(
    partition: str = typer.Argument(..., help="The held partition, e.g. "
                                    "date=2026-11-01/hour=07."),
    reason: str = typer.Option(..., "--reason", help="Why it may be let through (stored "
                               "with it; required)."),
    dataset: str | None = typer.Option(None, "--dataset", help="Only this dataset's "
                                       "partition (default: every dataset holding it)."),
    by: str | None = typer.Option(None, "--by", help="Who accepts (default: your login)."),
    config: Path | None = ConfigOption,
) -> None:
    """Let a held partition through the quality gate: detection and the dashboard read it
    again. Recorded with who and why."""
    from mad.query.quality import accept
    from mad.words import plural

    done = accept(settings_from(config), partition, reason, by=by, dataset=dataset)
    for row in done:
        typer.echo(f"accepted {row['dataset']}/{row['partition']} by {row['accepted_by']}: "
                   f"{row['accepted_reason']} (held for: {row['reason'] or '-'})")
    typer.echo(f"{plural(len(done), 'partition')} accepted")


# -- the text of the report -----------------------------------------------------------------


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(value, datetime) else "-"


def _num(value: Any) -> str:
    return "-" if value is None else f"{float(value):g}"


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows]


def _parts(parts: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:g}" for name, value in parts.items()) or "-"


def render(data: dict[str, Any], show_all: bool = False) -> str:
    """The text of `mad quality report` from `mad.query.quality.report` data."""
    from mad.words import plural

    counts = data["counts"]
    since = f"since {_when(data['since'])}" if data["since"] is not None else "all time"
    where = f", partition {data['partition']}" if data["partition"] else ""
    lines = [f"quality {since}{where}: " + ", ".join(
        f"{n} {status}" for status, n in counts.items() if n) if any(counts.values())
        else f"quality {since}{where}: no results (run `mad etl run`)"]
    held = data["held"]
    lines += ["", f"held by the gate: {plural(len(held), 'partition')}"
              + (" (`mad quality accept PARTITION --reason ...` lets one through)" if held
                 else "")]
    lines += [f"  {r['dataset']}/{r['partition']}: {r['reason']}" for r in held]
    judged = [r for r in data["results"] if r["status"] in ("fail", "warn")]
    rest = [r for r in data["results"] if r["status"] not in ("fail", "warn")]
    shown = rest if show_all else rest[:SHOWN_PASSED]
    if judged or shown:
        lines += ["", "results (failed first, then warned; newest run first):"]
        rows: list[tuple[str, ...]] = [("STATUS", "SEVERITY", "DATASET", "PARTITION", "CHECK",
                                        "COLUMN", "METRIC", "VALUE", "THRESHOLD", "RUN",
                                        "DETAIL")]
        for r in judged + shown:
            rows.append((str(r["status"]).upper() if r["status"] in ("fail", "warn")
                         else str(r["status"]), str(r["severity"]) + (" gate" if r["gate"]
                                                                     else ""),
                         str(r["dataset"]), str(r["partition"]), str(r["check"]),
                         str(r["column"]), str(r["metric"]), _num(r["value"]),
                         _num(r["threshold"]), str(r["run_id"]),
                         str(r["detail"] or "")[:DETAIL_CHARS]))
        lines += ["  " + line for line in _table(rows)]
        if len(shown) < len(rest):
            lines.append(f"  ... and {len(rest) - len(shown)} more passed, skipped or info "
                         "results (--all lists them)")
    if data["runs"]:
        lines += ["", "scores per run (newest first; `*` = the whole run):"]
        for run in data["runs"]:
            lines.append(f"  {run['run_id']}  {_when(run['measured_at'])}")
            rows = [("DATASET", "PARTITION", "SCORE", "FAILED", "WARNED", "PARTS")]
            listed = [s for s in run["scores"]
                      if show_all or s["partition"] == "*" or s["score"] < 100]
            rows += [(str(s["dataset"]), str(s["partition"]), f"{s['score']:g}",
                      str(s["failed"]), str(s["warned"]), _parts(s["parts"]))
                     for s in listed]
            lines += ["    " + line for line in _table(rows)]
            if len(listed) < len(run["scores"]):
                lines.append(f"    ... and {len(run['scores']) - len(listed)} partitions "
                             "scoring 100 (--all lists them)")
    lines += ["", f"score: {data['formula']}"]
    return "\n".join(lines) + "\n"
