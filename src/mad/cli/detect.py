"""`mad detect run|status|feedback|silence`: Stage 04 and what operators tell it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, cast

import typer

from mad.cli.common import ConfigOption, LakeOption, settings_from, sub_app
from mad.errors import MadError

detect_app = sub_app("Aggregates -> anomalies -> incidents -> alerts.")
silence_app = sub_app("Snooze an incident or a series, or set a service's maintenance window: "
                      "no alert is sent for what they cover.")
UserOption = typer.Option("operator", "--user", help="Who does it (stored with it).")
ReasonOption = typer.Option("", "--reason", help="Why (at most 500 characters).")
ForOption = typer.Option(None, "--for", help="How long: 30m, 2h, 1d.")
UntilOption = typer.Option(None, "--until", help="Until when (ISO-8601 with an offset).")


def register(app: typer.Typer) -> None:
    """Add the `detect` group to the main app."""
    detect_app.add_typer(silence_app, name="silence")
    app.add_typer(detect_app, name="detect")


@detect_app.command("run")
def detect_run(
    watch: bool = typer.Option(False, "--watch", help="Keep running: a pass every "
                               "detect.watch_interval_s (SIGTERM/Ctrl-C ends it)."),
    once: bool = typer.Option(False, "--once", help="One pass, then exit (the default)."),
    window: str | None = typer.Option(None, help="Aggregate window: 1m | 5m | 1h."),
    lake: str | None = LakeOption,
    config: Path | None = ConfigOption,
) -> None:
    """Score new aggregate windows; write md-anomalies, incidents; send alerts."""
    import threading

    from mad.detect.pipeline import BatchReport, DetectRunner
    from mad.hotstore.feed import open_feed, then_sync
    from mad.runtime.signals import stop_on_signals
    from mad.runtime.watch import watch as watch_loop
    from mad.words import plural

    if watch and once:
        raise MadError("--watch and --once exclude each other")
    settings = settings_from(config, **{"detect.window": window, "lake.url": lake})
    runner = DetectRunner(settings)
    stop = threading.Event()

    def show(batch: BatchReport) -> None:
        typer.echo(f"  {batch.first:%Y-%m-%d %H:%M} .. {batch.last:%H:%M} UTC: "
                   f"{plural(batch.points, 'series window')}, "
                   f"{plural(batch.anomalies, 'anomaly', 'anomalies')}, "
                   f"{plural(batch.changes, 'incident change')}")

    feed = open_feed(settings)

    def one_pass() -> None:
        typer.echo(then_sync(feed, "anomalies",
                             lambda: runner.run_once(stop, progress=show)).line())
        if feed is not None and feed.last is not None:
            typer.echo(feed.last.line())

    try:
        with stop_on_signals(stop):
            watch_loop(one_pass, settings.detect.watch_interval_s, stop, once=not watch,
                       keep_going=watch, name="detection pass")
    finally:
        runner.close()
        if feed is not None:
            feed.close()


@detect_app.command("status")
def detect_status(
    limit: int = typer.Option(10, help="How many series, incidents and anomalies."),
    fmt: str = typer.Option("table", "--format", help="table | json"),
    lake: str | None = LakeOption,
    config: Path | None = ConfigOption,
) -> None:
    """Per-series watermarks and lag, recent incidents and anomalies, pending alerts."""
    import sys

    import orjson

    from mad.detect.status import collect, render

    if fmt not in ("table", "json"):
        raise MadError(f"unknown format '{fmt}' (allowed: table | json)")
    data = collect(settings_from(config, **{"lake.url": lake}), limit)
    if fmt == "json":
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render(data, limit))


@detect_app.command("feedback")
def detect_feedback(
    incident_id: str | None = typer.Argument(None, help="The incident (or, with --export, "
                                             "the file to write; default stdout)."),
    verdict: str | None = typer.Argument(None, help="up (a real problem) | down (not one)."),
    note: str = typer.Option("", "--note", help="Why (at most 500 characters)."),
    export: bool = typer.Option(False, "--export", help="Write every incident's latest label "
                                "as JSON lines, for scoring."),
    user: str = UserOption,
    config: Path | None = ConfigOption,
) -> None:
    """Thumbs up or down on an incident (the latest label wins), or --export the labels."""
    import sys

    import orjson

    from mad.detect import operator
    from mad.words import plural

    settings = settings_from(config)
    if export:
        if verdict is not None:
            raise MadError("--export takes at most one FILE")
        text = b"".join(orjson.dumps(r) + b"\n" for r in operator.export_feedback(settings))
        if incident_id is None:
            sys.stdout.write(text.decode())
            return
        _write(Path(incident_id), text)
        lines = text.count(b"\n")
        typer.echo(f"{plural(lines, 'label')} written to {incident_id}", err=True)
        return
    if incident_id is None or verdict is None:
        raise MadError("give INCIDENT_ID and up|down (or --export [FILE])")
    operator.give_feedback(settings, incident_id, cast(operator.Verdict, verdict), note, user)
    typer.echo(f"incident {incident_id}: thumbs {verdict}")


def _write(path: Path, data: bytes) -> None:
    """Write a file whole (a temporary file renamed over it)."""
    import os

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as err:
        raise MadError(f"cannot write {path}: {err.strerror or err}") from None


def _until(for_: str | None, until: str | None) -> datetime:
    from datetime import UTC

    from mad.detect.operator import parse_duration, parse_time

    if (for_ is None) == (until is None):
        raise MadError("give one of --for DURATION (30m, 2h, 1d) or --until TIME")
    if for_ is not None:
        return datetime.now(UTC) + parse_duration(for_)
    return parse_time(str(until))


def _show(settings: Any, silence_id: int) -> None:
    from mad.detect.operator import silences

    for s in silences(settings, include_expired=True):
        if s["id"] == silence_id:
            typer.echo(_line(s))


def _line(s: dict[str, Any]) -> str:
    said = f" ({s['reason']})" if s["reason"] else ""
    return (f"silence {s['id']}: {s['kind']} {s['target']} from {s['start']:%Y-%m-%d %H:%M} "
            f"to {s['end']:%Y-%m-%d %H:%M} UTC by {s['user']}{said}")


@silence_app.command("incident")
def silence_incident(
    incident_id: str = typer.Argument(..., help="The incident to snooze."),
    for_: str | None = ForOption,
    until: str | None = UntilOption,
    reason: str = ReasonOption,
    user: str = UserOption,
    config: Path | None = ConfigOption,
) -> None:
    """Send no alert for an incident for a while."""
    from mad.detect.operator import snooze

    settings = settings_from(config)
    _show(settings, snooze(settings, "incident", incident_id, _until(for_, until), reason, user))


@silence_app.command("series")
def silence_series(
    target: str = typer.Argument(..., metavar="SERVICE/SERIES",
                                 help="e.g. payments/latency_ms."),
    for_: str | None = ForOption,
    until: str | None = UntilOption,
    reason: str = ReasonOption,
    user: str = UserOption,
    config: Path | None = ConfigOption,
) -> None:
    """Snooze a series: an incident all of whose series are snoozed sends no alert."""
    from mad.detect.operator import snooze

    settings = settings_from(config)
    _show(settings, snooze(settings, "series", target, _until(for_, until), reason, user))


@silence_app.command("maintenance")
def silence_maintenance(
    service: str = typer.Argument(..., help="The service under maintenance."),
    start: str = typer.Option(..., "--from", help="Start (ISO-8601 with an offset; may be "
                              "later)."),
    end: str = typer.Option(..., "--to", help="End (ISO-8601 with an offset)."),
    reason: str = ReasonOption,
    user: str = UserOption,
    config: Path | None = ConfigOption,
) -> None:
    """A maintenance window: no alert for incidents that involve the service."""
    from mad.detect.operator import add_maintenance, parse_time

    settings = settings_from(config)
    _show(settings, add_maintenance(settings, service, parse_time(start), parse_time(end),
                                    reason, user))


@silence_app.command("list")
def silence_list(
    all_: bool = typer.Option(False, "--all", help="Also those that are over."),
    fmt: str = typer.Option("table", "--format", help="table | json"),
    config: Path | None = ConfigOption,
) -> None:
    """Silences active or to come (with --all, those over too)."""
    import sys

    import orjson

    from mad.detect.operator import silences

    if fmt not in ("table", "json"):
        raise MadError(f"unknown format '{fmt}' (allowed: table | json)")
    rows = silences(settings_from(config), include_expired=all_)
    if fmt == "json":
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    if not rows:
        typer.echo("no silences" + ("" if all_ else " active or to come (--all: those over)"))
    for s in rows:
        typer.echo(_line(s))


@silence_app.command("remove")
def silence_remove(
    silence_id: int = typer.Argument(..., help="The id `mad detect silence list` shows."),
    config: Path | None = ConfigOption,
) -> None:
    """End a silence now: later alerts are sent."""
    from mad.detect.operator import remove_silence

    remove_silence(settings_from(config), silence_id)
    typer.echo(f"silence {silence_id} removed")
