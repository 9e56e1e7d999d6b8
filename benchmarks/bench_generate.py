"""Backfill generation speed against its floor, in one run.

Ours: `Simulator` + `Delivery` (events built, faults injected, serialised, ordered) for a
stretch of simulated time, on one core. Floor: `orjson.dumps` alone over the same number of
pre-built events. Prints events/s of both and the ratio.

    .venv/bin/python benchmarks/bench_generate.py [--minutes 20] [--rate 500]
"""

from __future__ import annotations

import argparse
import time

import orjson

from mad.config import GenerateSettings
from mad.generate.backfill import CHUNK_S, build


def settings(minutes: int, rate: float) -> GenerateSettings:
    return GenerateSettings(rate=rate, duration=f"{minutes}m", start="2026-11-02T09:00:00Z")


def ours(minutes: int, rate: float) -> tuple[int, float]:
    sim, delivery, start, end = build(settings(minutes, rate))
    t = time.process_time()
    for t0 in range(int(start), int(end), CHUNK_S):
        delivery.add(sim.events(t0, t0 + CHUNK_S))
        delivery.release(t0 + CHUNK_S)
    delivery.release()
    return delivery.lines, time.process_time() - t


def prebuilt(minutes: int, rate: float, limit: int = 200_000) -> list[dict[str, object]]:
    """The same kind of events, built beforehand (untimed) for the floor."""
    sim, _, start, end = build(settings(minutes, rate))
    sample: list[dict[str, object]] = []
    for t0 in range(int(start), int(end), CHUNK_S):
        sample += [e for _, _, e in sim.events(t0, t0 + CHUNK_S)]
        if len(sample) >= limit:
            break
    return sample


def floor(events: list[dict[str, object]], n: int) -> float:
    dumps, opt = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    t = time.process_time()
    done = 0
    while done < n:
        for e in events[: n - done]:
            dumps(e, option=opt)
        done += min(len(events), n - done)
    return time.process_time() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=20)
    parser.add_argument("--rate", type=float, default=500.0)
    args = parser.parse_args()
    lines, secs = ours(args.minutes, args.rate)
    base = floor(prebuilt(args.minutes, args.rate), lines)
    print(f"events                : {lines:,}")
    print(f"mad generate (1 core) : {lines / secs:>12,.0f} events/s  ({secs:.2f} s CPU)")
    print(f"orjson.dumps floor    : {lines / base:>12,.0f} events/s  ({base:.2f} s CPU)")
    print(f"ratio floor/ours      : {secs / base:.1f}x   (ours is {base / secs:.1%} of the floor)")


if __name__ == "__main__":
    main()
