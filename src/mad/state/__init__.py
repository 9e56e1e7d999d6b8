"""The state database: job runs, partitions, which days' aggregates are current, unreadable
raw files, quality history, stream checkpoints, source clocks and detection state (series,
incidents, alerts, watermarks, late windows).

SQLite file by default (`sqlite:///data/state.db`), the same schema on PostgreSQL by URL
(`postgresql+psycopg://user@host:5432/db`). `open_state(url)` returns a SQLAlchemy engine with
every table created.
"""

from mad.state.checkpoints import Checkpoint, CheckpointStore
from mad.state.components import Components as Components
from mad.state.db import DEFAULT_URL, metadata, open_state, safe_url
from mad.state.detect_runs import DetectPass, DetectRuns
from mad.state.detect_scored import LateWindow, SavedWatermark, ScoredStore
from mad.state.detect_state import DetectStore, Handoff, SentAlerts, SeriesState
from mad.state.etl_runs import EtlLedger, Written
from mad.state.etl_unreadable import UnreadableFiles
from mad.state.event_clocks import EventClocks, SourceClock
from mad.state.ingest_acks import IngestAcks as IngestAcks
from mad.state.operator import OperatorStore as OperatorStore
from mad.state.quality import NotHeld as NotHeld
from mad.state.quality import QualityStore as QualityStore
from mad.state.raw_files import NullLedger, RawFileLedger

__all__ = [
    "DEFAULT_URL",
    "Checkpoint",
    "CheckpointStore",
    "DetectPass",
    "DetectRuns",
    "DetectStore",
    "EtlLedger",
    "EventClocks",
    "Handoff",
    "LateWindow",
    "NullLedger",
    "RawFileLedger",
    "SavedWatermark",
    "ScoredStore",
    "SentAlerts",
    "SeriesState",
    "SourceClock",
    "UnreadableFiles",
    "Written",
    "metadata",
    "open_state",
    "safe_url",
]
