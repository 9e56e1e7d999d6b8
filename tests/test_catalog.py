"""The catalog is complete, consistent, and the doc generated from it is current."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from mad.catalog import BY_NAME, EVENT_TYPES, KINDS, SERVICES, default_service, service_view
from mad.catalog_render import markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "catalog.md"


def test_59_types_over_6_services_and_3_kinds() -> None:
    assert len(EVENT_TYPES) == len(BY_NAME) == 59
    assert len(SERVICES) == 6
    kinds = Counter(t.kind for t in EVENT_TYPES)
    assert set(kinds) == set(KINDS) and min(kinds.values()) >= 8


def test_every_type_is_well_formed() -> None:
    for t in EVENT_TYPES:
        assert t.services and set(t.services) <= set(SERVICES), t.name
        assert abs(sum(t.levels.values()) - 1.0) < 1e-9, t.name
        assert all(s.unit for s in t.series), t.name
        if t.kind == "metric":
            assert t.series, t.name
        if t.outcome == "error":
            assert t.error_codes and "ERROR" in t.levels, t.name


def test_every_service_can_fail_and_has_all_kinds() -> None:
    for svc in SERVICES:
        view = service_view(svc)
        assert {t.kind for t in view.types} == set(KINDS), svc
        assert any(t.outcome == "error" for t in view.types), svc
        assert "latency_ms" in view.series or "duration_ms" in view.series


def test_default_service_for_single_service_types() -> None:
    assert default_service("payments.card.authorized") == "payments"
    assert default_service("host.cpu") is None
    assert default_service("no.such.type") is None


def test_doc_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == markdown(), (
        "docs/catalog.md is stale: run `mad catalog --format markdown > docs/catalog.md`"
    )
