"""The one watch loop: run a pass, wait an interval, again, until stopped.

`mad etl run --watch`, `mad detect run --watch` and the supervisor's ETL -> detection loop
all run through `watch`, so they stop the same way: between passes at once, and a pass that
raises is reported and retried at the next interval instead of ending the service.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def watch(pass_fn: Callable[[], object], interval_s: float, stop: threading.Event, *,
          once: bool = False, first_wait: bool = False,
          keep_going: bool = False, name: str = "pass") -> int:
    """Call `pass_fn` every `interval_s` seconds until `stop` is set; returns the passes run.

    `once` runs a single pass; `first_wait` waits one interval before the first pass (the
    supervisor gives ingest a head start). With `keep_going`, an exception from a pass is
    logged on one line and the loop goes on (the state database holds the failure);
    otherwise it propagates, as a one-shot command wants.
    """
    passes = 0
    if first_wait and stop.wait(interval_s):
        return passes
    while not stop.is_set():
        try:
            pass_fn()
        except Exception as err:
            if not keep_going:
                raise
            log.error("%s failed: %s", name, err)
        passes += 1
        if once or stop.wait(interval_s):
            break
    return passes
