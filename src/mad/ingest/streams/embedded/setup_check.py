"""`mad doctor`'s check of the embedded stream: its folder can be written."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mad.setup_checks import backend_check, writable_folder

if TYPE_CHECKING:
    from mad.config import Settings


@backend_check("stream", "embedded")
def check(settings: Settings) -> tuple[bool, str]:
    options: Any = settings.ingest.stream.options()
    folder = Path(options.path or settings.data_dir / "stream")
    ok = writable_folder(folder)
    return ok, f"{folder}: {options.shards} shard(s), {'writable' if ok else 'NOT writable'}"
