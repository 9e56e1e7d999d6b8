"""The hot store as the supervisor shows it: reachable or not, on the board (component
`hot store`, not required: reads use the lake while it is down) and in `/health` and
`/metrics` (`mad_hot_store_up`)."""

from __future__ import annotations

from typing import Any

from mad.config import Settings
from mad.hotstore import hot_url, open_hot
from mad.hotstore.backends import HotStore, HotStoreDown
from mad.runtime.health import Board


class HotStoreProbe:
    """`read()` pings the configured hot store once and puts the answer on the board."""

    def __init__(self, settings: Settings, board: Board) -> None:
        self.settings, self.board = settings, board
        self.hot: HotStore | None = open_hot(settings) if settings.store.enabled else None

    def read(self) -> dict[str, Any]:
        if self.hot is None:
            self.board.set("hot store", "stopped", required=False,
                           detail="off (store.enabled is false): reads use the lake")
            return {"backend": None, "up": False, "error": None}
        url = hot_url(self.hot)
        try:
            self.hot.ping()
        except HotStoreDown as err:
            self.board.set("hot store", "failed", required=False, url=url,
                           detail=f"{err}; reads use the lake, refilled when it is back")
            return {"backend": self.hot.name, "up": False, "error": str(err)}
        self.board.set("hot store", "running", required=False, url=url,
                       detail=f"{self.hot.name}, last {self.settings.store.horizon_h:g} h")
        return {"backend": self.hot.name, "up": True, "error": None}

    def close(self) -> None:
        if self.hot is not None:
            self.hot.close()
