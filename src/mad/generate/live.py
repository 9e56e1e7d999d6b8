"""Live mode: the simulator's control API, compatible with the old mock servers.

`POST /api/continuous/start` with `{"interval_seconds": 3, "logs_per_interval": 20,
"duration_seconds": 120}` starts a background run that, every interval, emits the events
of the real time just elapsed (faults included) to the configured sink. `POST
/api/continuous/stop` ends it, `GET /api/status` reports counts, rate and incidents,
`POST /api/incidents` injects an incident now, `GET /health` answers liveness. When a run
ends, its labels file is written atomically beside a file sink (or into `data_dir`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field, model_validator

from mad.config import GenerateSettings, Settings
from mad.errors import MadError
from mad.generate.backfill import make_labels, write_json_atomic
from mad.generate.engine import Simulator
from mad.generate.faults import Delivery
from mad.generate.scenarios import SCENARIOS, Incident
from mad.generate.sinks import EventSink, FileSink, open_sink
from mad.web import Guard, read_token

MAX_LIVE_RATE = 20_000.0
"""Events/s a live run may ask for: one core builds ~100k/s, and the run shares its process
with the API and the lake loop; more would starve them (use `mad generate` for volume)."""


class StartRequest(BaseModel):
    interval_seconds: float = Field(3.0, ge=0.1, le=3600)
    logs_per_interval: int = Field(20, ge=1, le=1_000_000)
    duration_seconds: float | None = Field(
        120.0, ge=0, le=30 * 86400, description="0 or null: run until stopped"
    )

    @model_validator(mode="after")
    def _bounded_rate(self) -> StartRequest:
        rate = self.logs_per_interval / self.interval_seconds
        if rate > MAX_LIVE_RATE:
            raise ValueError(f"logs_per_interval / interval_seconds is {rate:g} events/s; at "
                             f"most {MAX_LIVE_RATE:g} in live mode (mad generate writes more)")
        return self


class IncidentRequest(BaseModel):
    scenario: str
    duration_seconds: float = Field(300.0, gt=0, le=86400)
    service: str | None = None
    magnitude: float | None = Field(None, gt=0)


class LiveRun:
    """One background run: a simulator clocked by real time, feeding a sink."""

    def __init__(self, settings: Settings, req: StartRequest, sink: EventSink) -> None:
        self.req = req
        self.sink = sink
        self.gen: GenerateSettings = settings.generate.model_copy(
            update={"rate": req.logs_per_interval / req.interval_seconds}
        )
        self.labels_path = _labels_path(settings)
        faults = self.gen.faults if settings.simulate.faults else _no_faults(self.gen)
        self.sim = Simulator(self.gen.rate, self.gen.seed, self.gen.scrape_interval_s,
                             epoch_hosts=faults.epoch_hosts, skewed_hosts=faults.skewed_hosts,
                             id_salt=os.urandom(16))  # every start gets ids of its own
        self.delivery = Delivery(faults, self.gen.seed, end=None)
        self.started = time.time()
        self.clock = float(int(self.started))
        self.until = self.started + req.duration_seconds if req.duration_seconds else None
        self.sent = 0
        self.batches = 0
        self.sink_errors = 0
        self.last_error = ""
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="mad-simulator", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop_flag.wait(self.req.interval_seconds):
            self.tick(time.time())
            if self.until is not None and time.time() >= self.until:
                break
        self.tick(time.time(), final=True)
        self._finish()

    def tick(self, now: float, final: bool = False) -> None:
        """Emit everything whose event time has passed since the last tick."""
        with self.lock:
            upto = float(int(now))
            if upto > self.clock:
                self.delivery.add(self.sim.events(int(self.clock), int(upto)))
                self.clock = upto
            lines = self.delivery.release(float("inf") if final else now)
        if not lines:
            return
        try:
            self.sink.send(lines)
        except MadError as err:
            with self.lock:
                self.sink_errors += 1
                self.last_error = str(err)
            return
        with self.lock:
            self.sent += len(lines)
            self.batches += 1

    def inject(self, req: IncidentRequest) -> Incident:
        sc = SCENARIOS.get(req.scenario)
        if sc is None:
            raise MadError(f"unknown scenario '{req.scenario}' (known: {', '.join(SCENARIOS)})")
        origin = req.service or sc.targets[0]
        if origin not in sc.targets:
            raise MadError(f"{req.scenario} targets {', '.join(sc.targets)}, not '{origin}'")
        magnitude = req.magnitude or float(np.mean(sc.magnitude))
        services, affected = sc.build(origin, magnitude)
        with self.lock:
            start = max(self.clock, time.time())
            inc = Incident(f"live-{len(self.sim.incidents) + 1:03d}", req.scenario, start,
                           start + req.duration_seconds, origin, tuple(dict.fromkeys(services)),
                           affected, magnitude, sc.description)
            self.sim.incidents.append(inc)
        return inc

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(timeout=30)

    def _finish(self) -> None:
        self.sink.close()
        end = time.time()
        labels = make_labels(self.gen, self.sim, self.delivery, self.started, end)
        labels["live"] = {"request": self.req.model_dump(), "sent": self.sent}
        write_json_atomic(self.labels_path, labels)

    def status(self) -> dict[str, Any]:
        with self.lock:
            now = time.time()
            return {
                "running": self.thread.is_alive(),
                "started_at": self.started,
                "elapsed_seconds": round(now - self.started, 3),
                "config": self.req.model_dump(),
                "rate_events_per_s": self.gen.rate,
                "events_generated": sum(self.sim.counts.values()),
                "lines_sent": self.sent,
                "batches_sent": self.batches,
                "pending_lines": len(self.delivery.pending),
                "sink_errors": self.sink_errors,
                "last_error": self.last_error,
                "faults": self.delivery.summary(),
                "incidents": [i.to_label() for i in self.sim.incidents],
                "labels_file": str(self.labels_path),
            }


def _no_faults(gen: GenerateSettings) -> Any:
    return gen.faults.model_copy(update={
        "duplicates": 0.0, "late": 0.0, "out_of_order": 0.0, "malformed": 0.0,
        "unknown_fields": 0.0, "skewed_hosts": 0, "epoch_hosts": 0,
    })


def _labels_path(settings: Settings) -> Path:
    target = settings.simulate.sink
    if target.startswith(("http://", "https://")):
        return settings.data_dir / "simulator" / "labels.json"
    return Path(target).with_name("labels.json")


class SimulatorBusy(MadError):
    """A run is already going (start) or none is (inject)."""


class LiveController:
    """The live simulator as a program sees it: at most one run at a time, started,
    stopped and given incidents either by the control API or directly (`mad up`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.run: LiveRun | None = None
        self._lock = threading.Lock()

    def running(self) -> bool:
        return self.run is not None and self.run.thread.is_alive()

    def start(self, req: StartRequest) -> dict[str, Any]:
        """Start a run sending to `simulate.sink`; SimulatorBusy if one is going, MadError
        if the sink cannot be opened."""
        with self._lock:
            if self.running():
                raise SimulatorBusy("a run is already going; POST /api/continuous/stop first")
            ing = self.settings.ingest  # a sink that is our ingest API needs its token
            token = read_token(ing.auth_token, ing.auth_token_file, "ingest.auth_token")
            new = LiveRun(self.settings, req, open_sink(self.settings.simulate.sink, token))
            new.start()
            self.run = new
        return {"status": "started", **new.status()}

    def stop(self) -> dict[str, Any]:
        run = self.run
        if run is None:
            return {"status": "idle"}
        run.stop()
        return {"status": "stopped", **run.status()}

    def status(self) -> dict[str, Any]:
        run = self.run
        if run is None:
            return {"running": False, "sink": self.settings.simulate.sink}
        return {"sink": self.settings.simulate.sink, **run.status()}

    def inject(self, req: IncidentRequest) -> dict[str, Any]:
        run = self.run
        if run is None or not run.thread.is_alive():
            raise SimulatorBusy("no run is going; POST /api/continuous/start first")
        return run.inject(req).to_label()

    def close(self) -> None:
        """Stop a run that is still going (its labels file is written)."""
        if self.running():
            self.stop()


def create_app(settings: Settings, controller: LiveController | None = None) -> FastAPI:
    """The control API over `controller` (a new one for `settings` by default)."""
    sim = controller or LiveController(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        sim.close()

    app = FastAPI(title="mad simulator", version="1", docs_url=None, redoc_url=None,
                  lifespan=lifespan)
    cfg = settings.simulate
    app.add_middleware(Guard, token=read_token(cfg.auth_token, cfg.auth_token_file,
                                               "simulate.auth_token"),
                       allowed_hosts=cfg.allowed_hosts, bind_host=cfg.host,
                       name="simulator control API")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/continuous/start")
    def start(req: StartRequest) -> dict[str, Any]:
        try:
            return sim.start(req)
        except SimulatorBusy as err:
            raise HTTPException(409, str(err)) from None
        except MadError as err:
            raise HTTPException(400, str(err)) from None

    @app.post("/api/continuous/stop")
    def stop() -> dict[str, Any]:
        return sim.stop()

    @app.get("/api/status")
    def status() -> dict[str, Any]:
        return sim.status()

    @app.post("/api/incidents")
    def incident(req: IncidentRequest) -> dict[str, Any]:
        try:
            return sim.inject(req)
        except SimulatorBusy as err:
            raise HTTPException(409, str(err)) from None
        except MadError as err:
            raise HTTPException(400, str(err)) from None

    return app


def serve(settings: Settings) -> None:
    import uvicorn

    if not settings.simulate.sink.startswith(("http://", "https://")):
        FileSink(Path(settings.simulate.sink)).close()  # fail now on an unwritable path
    print(f"simulator control API on http://{settings.simulate.host}:{settings.simulate.port}"
          f" -> sink {settings.simulate.sink}", flush=True)
    uvicorn.run(create_app(settings), host=settings.simulate.host, port=settings.simulate.port,
                log_level="warning")
