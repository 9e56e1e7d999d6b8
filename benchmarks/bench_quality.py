"""The cost of the quality checks beside the ETL they audit, in one run.

The same generated raw lake as `bench_etl.py` (one simulated day by default, with its faults)
goes through one `EtlRunner.run_once()` on the DuckDB engine twice, each in a fresh child
process on its own hard-linked copy of the lake:

* etl: `quality.enabled: false`, the ETL alone;
* etl+quality: the default, every check measured on each run's stage before it publishes,
  judged against history, recorded with the gate, and the lake reconciled with the ledgers
  at the end of the pass.

It prints both wall times, the checks' own time as the auditor measured it inside the second
pass (`Audit.seconds`, summed over the pass's audits), and both as a share of the ETL alone;
the aim is under 10%. Data preparation is not timed and is kept in `--work`.

    .venv/bin/python benchmarks/bench_quality.py [--events 2000000] [--repeat 1]
        [--work /tmp/mad-bench-etl]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the data and the child-process measuring are shared with the ETL benchmark
import bench_etl


def child(run: Path, quality: bool) -> dict[str, Any]:
    from mad.config import load_settings
    from mad.etl.runner import EtlRunner

    settings = load_settings(overrides={
        "data_dir": str(run), "lake": {"url": str(run / "lake")},
        "quality": {"enabled": quality}})
    runner = EtlRunner(settings)
    try:
        summary = runner.run_once()
    finally:
        runner.close()
    audits = runner.audits
    return {"lines_in": summary.rows_in, "runs": summary.runs,
            "checks_s": sum(a.seconds for a in audits),
            "results": sum(len(a.results) for a in audits),
            "failed": sum(len(a.failed) for a in audits)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=2_000_000, help="lines per simulated day")
    ap.add_argument("--repeat", type=int, default=1, help="passes of each contender")
    ap.add_argument("--work", type=Path, default=Path("/tmp/mad-bench-etl"))
    ap.add_argument("--child", nargs=2, metavar=("RUN", "QUALITY"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[0]), args.child[1] == "on")))
        return

    print(f"quality checks beside the ETL, DuckDB engine, 1 day of ~{args.events:,} lines")
    raw, lines, size = bench_etl.prepare(args.work / "x1", args.events, 1)
    print(f"  raw lake: {lines:,} lines, {size / 2**20:,.0f} MiB")
    walls: dict[str, list[float]] = {"off": [], "on": []}
    checks: list[float] = []
    detail: dict[str, Any] = {}
    for n in range(args.repeat):
        for mode in ("off", "on"):
            run = args.work / f"quality-{mode}-{n}"
            shutil.rmtree(run, ignore_errors=True)  # a fresh state database and lake
            bench_etl.linked_copy(raw, run / "lake")
            wall, _peak, out = bench_etl.measure(
                [sys.executable, __file__, "--child", str(run), mode])
            walls[mode].append(wall)
            if mode == "on":
                checks.append(float(out["checks_s"]))
                detail = out
            print(f"  {'etl+quality' if mode == 'on' else 'etl':12} {wall:8.1f} s"
                  + (f"   checks {out['checks_s']:.1f} s over {out['runs']} runs, "
                     f"{out['results']:,} results, {out['failed']} failed"
                     if mode == "on" else ""), flush=True)
    etl, both, own = (statistics.median(walls["off"]), statistics.median(walls["on"]),
                      statistics.median(checks))
    print()
    print(f"{'':22}{'seconds':>10}{'of the ETL':>12}")
    print(f"{'ETL alone':22}{etl:10.1f}{'100.0%':>12}")
    print(f"{'checks (own time)':22}{own:10.1f}{own / etl:12.1%}")
    print(f"{'ETL with checks':22}{both:10.1f}{both / etl:12.1%}")
    print(f"ratio checks / ETL: {own / etl:.3f} (aim under 0.10); "
          f"{detail.get('results', 0):,} result rows")


if __name__ == "__main__":
    main()
