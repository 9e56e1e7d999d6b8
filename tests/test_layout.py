"""The house rules, checked on the source: stages import no other stage, the state database
imports no stage, the read functions (`mad.query`) import only shared modules and the stages'
read edges (never the runtime), and stages reach them only from their status modules; only
the lake contract spells dataset names, and only backend folders, registries and settings
validation name a backend."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mad"
STAGES = ("generate", "ingest", "etl", "detect")
# Stage 02 is two packages: the ETL and its quality checks, which measure the ETL's stage
# with its engine and its plans, and which the ETL calls before it publishes
STAGE_PACKAGES = {"etl": {"etl", "quality"}, "quality": {"etl", "quality"}}
# what quality may take from detection: the streaming detectors (pure logic), which score
# the history of every quality metric
QUALITY_READS = {"mad.detect.detectors"}
SHARED = {"config", "registry", "errors", "catalog", "events", "lake", "state", "stores", "web",
          "words", "setup_checks"}
# the folders where backends live: only these (and the registry, the settings) name them
BACKEND_FOLDERS = ("stores", "ingest/streams", "etl/engines", "etl/publish", "hotstore/backends")
BACKEND_NAMES = ("kinesis", "embedded", "spark", "duckdb", "redis")
# what `mad.query` may take from the stages: their read edges and records, nothing that
# runs them
QUERY_READS = {"mad.ingest.wiring", "mad.ingest.writer", "mad.etl.discover", "mad.etl.runner",
               "mad.detect.lake_io", "mad.detect.model", "mad.detect.operator",
               "mad.detect.shards", "mad.ingest.shard_leases",
               "mad.quality.model"}


def modules(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """The `mad.<top>` packages a module imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "mad" and len(parts) > 1:
                found.add(parts[1])
    return found


def imported_modules(path: Path) -> set[str]:
    """The full `mad.x.y` names a module imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mad."))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mad."):
            found.add(node.module or "")
    return found


@pytest.mark.parametrize("stage", [*STAGES, "quality"])
def test_a_stage_imports_only_shared_modules(stage: str) -> None:
    for path in modules(stage):
        allowed = SHARED | STAGE_PACKAGES.get(stage, {stage}) | (
            {"query"} if path.name == "status.py" else set())
        others = imported(path) - allowed
        detect = {m for m in imported_modules(path) if m.startswith("mad.detect")}
        if stage == "quality" and detect <= QUALITY_READS:
            others -= {"detect"}
        assert not others, f"{path.relative_to(SRC)} imports mad.{sorted(others)}"


def test_the_read_functions_import_shared_modules_and_read_edges_only() -> None:
    assert modules("query"), "mad.query is missing"
    for path in modules("query"):
        for name in imported_modules(path):
            top = name.split(".")[1]
            assert top in SHARED | {"query", "hotstore"} or name in QUERY_READS or any(
                name.startswith(f"{edge}.") for edge in QUERY_READS), (
                f"{path.relative_to(SRC)} imports {name}")


def test_only_status_modules_and_consumers_use_the_read_functions() -> None:
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.parts[0] in ("query", "dashboard", "runtime", "cli", "bench"):
            continue
        if "query" in imported(path):
            assert rel.name == "status.py" and rel.parts[0] in STAGES, rel


def test_the_hot_store_imports_only_shared_modules() -> None:
    """Stage 03's hot store sits between the stages that feed it and the read functions
    that ask it: it knows the lake contract and the object stores, no stage."""
    for path in modules("hotstore"):
        others = imported(path) - SHARED - {"hotstore"}
        assert not others, f"{path.relative_to(SRC)} imports mad.{sorted(others)}"


def test_the_state_package_imports_no_stage() -> None:
    for path in modules("state"):
        assert not imported(path) & set(STAGES), path


def test_only_the_lake_contract_spells_dataset_names() -> None:
    for path in SRC.rglob("*.py"):
        if path.is_relative_to(SRC / "lake"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            assert '"md-' not in line and "'md-" not in line, f"{path}:{n}: {line.strip()}"


def test_backend_names_stay_in_backend_folders() -> None:
    names = "|".join(BACKEND_NAMES)
    literal = re.compile(rf"""["']({names})["']|["']s3://""")
    allowed = [SRC / f for f in BACKEND_FOLDERS] + [SRC / "config.py", SRC / "registry.py"]
    for path in SRC.rglob("*.py"):
        if any(path == a or path.is_relative_to(a) for a in allowed):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            assert not literal.search(line), f"{path}:{n}: {line.strip()}"
