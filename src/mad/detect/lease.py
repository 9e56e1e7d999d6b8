"""Detection's leases (`mad.state.leases`): a window size's incident step, and its shards.

Two detection processes on the same state would race on the same anomaly files and
checkpoints. A runner holds the leases of what it scores while it works, renews them per
batch and gives them up when it closes.
"""

from __future__ import annotations

from mad.state.leases import Lease, LeaseBusy


class DetectBusy(LeaseBusy):
    """Another process holds a lease of this window size."""


class DetectLease(Lease):
    def hold(self) -> None:
        """Take or renew the lease; raises DetectBusy naming the holder when another has it."""
        holder = self.try_hold()
        if holder is not None:
            raise DetectBusy(f"{self.name} is being scored by {holder} (host:pid); run one "
                             "`mad detect run` (or `mad up`) per state database and window, "
                             "or set detect.shards to share a window size between workers")
