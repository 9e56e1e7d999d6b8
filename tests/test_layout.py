"""The house rules, checked on the source: stages import no other stage, the state database
imports no stage, only the lake contract spells dataset names, and only backend folders,
registries and settings validation name a backend."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mad"
STAGES = ("generate", "ingest", "etl", "detect")
SHARED = {"config", "registry", "errors", "catalog", "events", "lake", "state", "stores", "web"}
# the folders where backends live: only these (and the registry, the settings) name them
BACKEND_FOLDERS = ("stores", "ingest/streams", "etl/engines", "etl/publish")
BACKEND_NAMES = ("kinesis", "embedded", "spark", "duckdb")


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


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_only_shared_modules(stage: str) -> None:
    for path in modules(stage):
        others = imported(path) - SHARED - {stage}
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
