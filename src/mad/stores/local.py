"""The local-folder object store (`file://` URLs and plain paths).

A put writes a hidden temp file (`.tmp-*`) in the key's folder, fsyncs it, renames it over
the final name and fsyncs the folder, so readers see the whole object or nothing, and a
crash leaves at most a hidden temp file, which `list` never returns.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from mad.errors import TerminalError, TransientError
from mad.stores import STORES, ObjectNotFound

if TYPE_CHECKING:
    from mad.config import AwsSettings

TEMP_PREFIX = ".tmp-"


class LocalStore:
    """Objects as files under `root`; keys map to relative paths."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()
        self.url = f"file://{self.root}"
        self._dirs: set[Path] = set()

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            self._make_dirs(path.parent)
            tmp = path.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                tmp.unlink(missing_ok=True)
                raise
            os.close(fd)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        except OSError as err:
            raise TransientError(f"cannot write {key} under {self.root}: {err}") from err

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object {key} under {self.root}") from None

    def list(self, prefix: str = "") -> list[str]:
        folder = self.root / prefix[: prefix.rfind("/") + 1]
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = os.path.relpath(dirpath, self.root)
            base = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            keys.extend(base + f for f in filenames if not f.startswith("."))
        return sorted(k for k in keys if k.startswith(prefix))

    def sizes(self, prefix: str = "") -> dict[str, int]:
        return {key: self._path(key).stat().st_size for key in self.list(prefix)}

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def root_exists(self) -> bool:
        return self.root.is_dir()

    def sweep_partial(self, prefix: str, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        swept = 0
        for dirpath, _, filenames in os.walk(self.root / prefix):
            for name in filenames:
                path = Path(dirpath, name)
                try:
                    if name.startswith(TEMP_PREFIX) and path.stat().st_mtime < cutoff:
                        path.unlink()
                        swept += 1
                except FileNotFoundError:
                    continue
        return swept

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            raise TerminalError(f"bad object key {key!r}: empty, '.'-led or '..' parts")
        return self.root.joinpath(*parts)

    def _make_dirs(self, folder: Path) -> None:
        """Create `folder` and its missing parents, fsyncing each parent that got an entry."""
        if folder in self._dirs:
            return
        missing = []
        probe = folder
        while not probe.is_dir():
            missing.append(probe)
            probe = probe.parent
        for path in reversed(missing):
            path.mkdir(exist_ok=True)
            _fsync_dir(path.parent)
        self._dirs.add(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@STORES.register("file")
def open_local(*, location: str, aws: AwsSettings | None = None,
               create: bool = False) -> LocalStore:
    """A `LocalStore` for a folder path (the part of the URL after `file://`); `create`
    makes the folder now (otherwise it is made on the first put); no options."""
    store = LocalStore(location or ".")
    if create:
        try:
            store.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TerminalError(f"cannot create the lake folder {store.root}: "
                                f"{err.strerror or err}") from None
    return store
