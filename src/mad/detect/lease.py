"""One process per window size: a lease on `detect:<window>` in the state database.

Two detection processes on the same state would race on the same anomaly files and
checkpoints. The runner holds the lease while it works, renews it per batch and gives it up
when it closes. A lease whose holder (`host:pid:id`) was a process of this host that no
longer runs is taken over at once, so a restart after SIGKILL needs no wait; one held from
another host is taken over once it expires.
"""

from __future__ import annotations

import os
import socket
import uuid

from mad.errors import TransientError
from mad.state import DetectStore


class DetectBusy(TransientError):
    """Another process holds the lease on this window size."""


class Lease:
    def __init__(self, db: DetectStore, name: str, ttl_s: float) -> None:
        self.db = db
        self.name = name
        self.ttl_s = ttl_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def hold(self) -> None:
        """Take or renew the lease; raises DetectBusy naming the holder when another has it."""
        holder = self.db.acquire(self.name, self.owner, self.ttl_s, stale=gone)
        if holder is not None:
            raise DetectBusy(f"{self.name} is being scored by {holder} (host:pid); run one "
                             "`mad detect run` (or `mad up`) per state database and window")

    def release(self) -> None:
        self.db.release(self.name, self.owner)


def gone(holder: str) -> bool:
    """True when `holder` (`host:pid:id`) is a process of this host that no longer runs."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, under another user
        return False
    return False
