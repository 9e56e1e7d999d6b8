"""Builds the ingest stage's parts from the settings: the stream, the lake store, the writer.

The one place that maps `ingest.stream`, `lake`, `aws` and `state` settings onto backend
options, so the API, the writer and `mad ingest status` open the same things the same way.
"""

from __future__ import annotations

from pathlib import Path

from mad import lake
from mad.config import Settings
from mad.ingest.streams import Stream, open_stream
from mad.ingest.writer import RawWriter
from mad.state import RawFileLedger, open_state


def stream_path(settings: Settings) -> Path:
    return Path(settings.ingest.stream.path or settings.data_dir / "stream")


def open_configured_stream(settings: Settings, role: str = "owner") -> Stream:
    """The stream `settings.ingest.stream` names (embedded: under data_dir/stream).

    The ingest API is the embedded stream's one `owner` (appender); consumers in other
    processes, such as the raw writer, open it as a `reader`. Kinesis has no roles.
    """
    cfg, aws = settings.ingest.stream, settings.aws
    consumers = [settings.writer.consumer]
    if cfg.backend == "kinesis":
        return open_stream(
            "kinesis", stream_name=cfg.kinesis_stream, shards=cfg.kinesis_shards,
            endpoint_url=aws.endpoint_url, region=aws.region, access_key_id=aws.access_key_id,
            secret_access_key=aws.secret_access_key, state_url=settings.state_url,
            consumers=consumers,
        )
    return open_stream(
        "embedded", path=stream_path(settings), shards=cfg.shards, fsync=cfg.fsync,
        segment_bytes=cfg.segment_bytes, retention_seconds=cfg.retention_seconds,
        consumers=consumers, role=role,
    )


def ledger(settings: Settings) -> RawFileLedger:
    return RawFileLedger(open_state(settings.state_url), settings.writer.consumer)


def build_writer(settings: Settings, stream: Stream) -> RawWriter:
    """A raw writer from `stream` into the configured lake, recording files in the ledger."""
    store = lake.open_store(settings.lake_url, settings.aws, create=True)
    revalidate = settings.writer.revalidate
    if revalidate is None:
        revalidate = settings.ingest.stream.backend != "embedded"
    return RawWriter(stream, store, settings.writer, ledger=ledger(settings),
                     checked_upstream=not revalidate)
