"""Builds the ingest stage's parts from the settings: the stream and its monitor, the lake
store, the writer and where it publishes its health.

The one place that maps the `ingest.stream`, `lake`, `aws` and `state` settings onto the
backends, so the API, the writer and `mad ingest status` open the same things the same way,
and the one place that asks what a stream can do: whether it reports lag and status
(`stream_monitor`) and whether its appends were already checked (`build_writer`).
"""

from __future__ import annotations

from mad.config import Settings
from mad.ingest.ledger import RetryingLedger
from mad.ingest.shard_leases import AllShards, ShardChoice, ShardLeases
from mad.ingest.streams import NullMonitor, Stream, StreamContext, StreamMonitor
from mad.ingest.writer import RawWriter
from mad.ingest.writer_health import HealthFile, health_path
from mad.state import RawFileLedger, open_state
from mad.state.leases import LeaseStore
from mad.stores import lake_store


def open_configured_stream(settings: Settings, role: str = "owner") -> Stream:
    """The stream `settings.ingest.stream` names.

    The ingest API is the stream's `owner` (appender); consumers in other processes, such as
    the raw writer, open it as a `reader`. A backend without roles opens the same either way.
    """
    context = StreamContext(data_dir=settings.data_dir, state_url=settings.state_url,
                            consumers=(settings.writer.consumer,), role=role,
                            aws=settings.aws)
    stream: Stream = settings.ingest.stream.create(context=context)
    return stream


def stream_monitor(settings: Settings, stream: Stream) -> StreamMonitor:
    """The stream's lag, status and disk use: the stream itself when it reports them, else
    a `NullMonitor` (no lag, no disk use; shards and the writer's checkpoints in status)."""
    if isinstance(stream, StreamMonitor):
        return stream
    return NullMonitor(stream, settings.ingest.stream.backend, (settings.writer.consumer,))


def ledger(settings: Settings, create: bool = True) -> RawFileLedger:
    """The raw files ledger; `create=False` for a status command (nothing is created)."""
    return RawFileLedger(open_state(settings.state_url, create=create),
                         settings.writer.consumer)


def writer_health(settings: Settings) -> HealthFile:
    """The file where the raw writer of `writer.consumer` publishes its health."""
    return HealthFile(health_path(settings.data_dir, settings.writer.consumer))


def writer_shards(settings: Settings, stream: Stream) -> ShardChoice:
    """Which shards the writer reads: on a stream that writers anywhere may share, those it
    leases in the state database (`writer.lease_s`); else every shard."""
    if not stream.shared:
        return AllShards(stream)
    return ShardLeases(lambda: LeaseStore(open_state(settings.state_url)),
                       settings.writer.consumer, settings.writer.lease_s)


def build_writer(settings: Settings, stream: Stream) -> RawWriter:
    """A raw writer from `stream` into the configured lake, recording files in the ledger
    (opened on first use and retried while the state database fails) and publishing its
    health. Events are checked again unless the stream says its one appender already
    checked them (`writer.revalidate` overrides). On a shared stream it reads the shards it
    leases (`writer_shards`)."""
    revalidate = settings.writer.revalidate
    if revalidate is None:
        revalidate = not stream.appends_checked
    return RawWriter(stream, lake_store(settings, create=True), settings.writer,
                     ledger=RetryingLedger(lambda: ledger(settings)),
                     checked_upstream=not revalidate, health=writer_health(settings),
                     shards=writer_shards(settings, stream))
