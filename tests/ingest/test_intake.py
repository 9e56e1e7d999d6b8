"""Body decoding and per-record validation of the ingest API, as pure functions."""

from __future__ import annotations

import base64
import gzip
import threading
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from mad.ingest.intake import (
    ERRORS_KEY,
    JSON,
    NDJSON,
    Accepted,
    BodyError,
    Limits,
    Rejected,
    body_format,
    decode_body,
    error_envelope,
    parse,
    stream_records,
    too_deep,
)

LIMITS = Limits(max_body_bytes=64 * 1024, max_record_bytes=4096, max_depth=16)


def event(i: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"ev-{i}",
        "timestamp": "2026-11-01T00:00:00Z",
        "service": "payments",
        "event_type": "payments.http_span",
        "kind": "apm",
        "context": {"geo": {"country": "DE"}},
        "metrics": {"duration_ms": 12.5},
        **extra,
    }


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        node = {"child": node}
    return node


def reasons(outcomes: list[Accepted | Rejected]) -> list[str]:
    return ["ok" if isinstance(o, Accepted) else o.reason for o in outcomes]


def body_error(fn: Any, *args: Any) -> BodyError:
    with pytest.raises(BodyError) as info:
        fn(*args)
    return info.value


def test_content_types() -> None:
    assert body_format("application/json") == JSON
    assert body_format("Application/JSON; charset=utf-8") == JSON
    assert body_format("application/x-ndjson") == NDJSON
    for bad in (None, "", "text/plain", "application/xml", "multipart/form-data"):
        err = body_error(body_format, bad)
        assert (err.status, err.code) == (415, "unsupported_media_type")


def test_single_event_keeps_its_bytes_and_takes_its_event_id_as_key() -> None:
    raw = orjson.dumps(event(1))
    [out] = parse(b"  " + raw + b"\n", JSON, LIMITS)
    assert out == Accepted(0, "ev-1", "ev-1", raw)  # the key spreads events over shards


def test_an_event_without_service_is_accepted_when_its_type_has_one() -> None:
    ev = event(2, event_type="payments.http_span")
    del ev["service"]
    [out] = parse(orjson.dumps(ev), JSON, LIMITS)
    assert isinstance(out, Accepted) and out.key == ev["event_id"]


def test_array_elements_are_checked_one_by_one() -> None:
    items = [event(0), {"event_id": "x"}, event(2, kind="log"), 7, event(4)]
    outcomes = parse(orjson.dumps(items), JSON, LIMITS)
    assert reasons(outcomes) == ["ok", "missing_field", "kind_mismatch", "not_an_object", "ok"]
    assert [o.seq for o in outcomes] == [0, 1, 2, 3, 4]
    assert outcomes[0] == Accepted(0, "ev-0", "ev-0", orjson.dumps(items[0]))
    assert isinstance(outcomes[3], Rejected) and outcomes[3].raw == b"7"


def test_ndjson_bad_line_is_rejected_and_the_rest_accepted() -> None:
    lines = [orjson.dumps(event(0)), b'{"event_id": "broken", ', b"", b"  ",
             orjson.dumps(event(1)) + b"\r"]
    outcomes = parse(b"\n".join(lines), NDJSON, LIMITS)
    assert reasons(outcomes) == ["ok", "invalid_json", "ok"]
    assert isinstance(outcomes[1], Rejected) and outcomes[1].raw == b'{"event_id": "broken",'
    assert outcomes[2] == Accepted(2, "ev-1", "ev-1", orjson.dumps(event(1)))


def test_whole_body_json_syntax_error_is_a_400_with_the_position() -> None:
    err = body_error(parse, b'[{"event_id": "a"},\n {"oops" 1}]', JSON, LIMITS)
    assert (err.status, err.code) == (400, "invalid_json")
    assert "line 2" in err.message and "column" in err.message


@pytest.mark.parametrize("body", [b"", b" \n ", b"[]"])
def test_empty_bodies(body: bytes) -> None:
    err = body_error(parse, body, JSON, LIMITS)
    assert (err.status, err.code) == (400, "empty_body")


def test_record_over_the_size_limit() -> None:
    big = orjson.dumps(event(0, message="x" * 5000))
    assert reasons(parse(big, NDJSON, LIMITS)) == ["record_too_large"]
    assert reasons(parse(big, JSON, LIMITS)) == ["record_too_large"]
    assert reasons(parse(b"[" + big + b"]", JSON, LIMITS)) == ["record_too_large"]


def test_nesting_deeper_than_the_limit() -> None:
    assert too_deep(nested(17), 16) and not too_deep(nested(16), 16)
    assert not too_deep("{{{{", 1) and not too_deep([], 1) and too_deep([[]], 1)
    deep = orjson.dumps(event(0, extra=nested(60)))
    [out] = parse(deep, NDJSON, LIMITS)
    assert isinstance(out, Rejected) and out.reason == "too_deep"
    # many brackets inside strings are not nesting
    [ok] = parse(orjson.dumps(event(0, message="{[" * 40)), NDJSON, LIMITS)
    assert isinstance(ok, Accepted)
    # past the parser's own depth limit: still a per-record rejection
    [out] = parse(b"[" * 2000 + b"]" * 2000, NDJSON, Limits(max_record_bytes=8192))
    assert isinstance(out, Rejected) and out.reason == "too_deep"


def test_non_utf8_bytes() -> None:
    line = orjson.dumps(event(0))[:-1] + b', "note": "caf\xe9"}'
    [out] = parse(line, NDJSON, LIMITS)
    assert isinstance(out, Rejected) and out.reason == "invalid_utf8"
    assert "byte" in out.message and out.raw == line
    err = body_error(parse, line, JSON, LIMITS)
    assert (err.status, err.code) == (400, "invalid_utf8")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"timestamp": "31/02/2026 25:61:00"}, "bad_timestamp"),
        ({"event_type": "nope.unknown"}, "unknown_event_type"),
        ({"event_id": 12345}, "wrong_type"),
        ({"metrics": "n/a"}, "wrong_type"),
        ({"service": "cards"}, "unknown_service"),
    ],
)
def test_contract_reasons_pass_through(change: dict[str, Any], reason: str) -> None:
    assert reasons(parse(orjson.dumps(event(0, **change)), NDJSON, LIMITS)) == [reason]


def test_gzip_bodies() -> None:
    raw = b"\n".join(orjson.dumps(event(i)) for i in range(20))
    assert decode_body(gzip.compress(raw), "gzip", LIMITS.max_body_bytes) == raw
    two_members = gzip.compress(raw[:100]) + gzip.compress(raw[100:])
    assert decode_body(two_members, "x-gzip", LIMITS.max_body_bytes) == raw
    assert decode_body(raw, None, LIMITS.max_body_bytes) == raw
    assert decode_body(raw, "identity", LIMITS.max_body_bytes) == raw


def test_bad_gzip_is_a_400() -> None:
    good = gzip.compress(b'{"a": 1}' * 100)
    for bad in (b"not gzip at all", good[: len(good) // 2], good[:10] + b"\xff" * 20 + good[30:]):
        err = body_error(decode_body, bad, "gzip", LIMITS.max_body_bytes)
        assert (err.status, err.code) == (400, "bad_gzip")


def test_gzip_bomb_is_a_413_without_inflating_it_all() -> None:
    bomb = gzip.compress(b"\0" * (50 * 2**20))
    assert len(bomb) < LIMITS.max_body_bytes
    err = body_error(decode_body, bomb, "gzip", LIMITS.max_body_bytes)
    assert (err.status, err.code) == (413, "body_too_large")


def test_unknown_content_encoding_is_a_415() -> None:
    err = body_error(decode_body, b"x", "br", LIMITS.max_body_bytes)
    assert (err.status, err.code) == (415, "unsupported_encoding")


def test_error_envelope_holds_the_reason_and_the_raw_bytes() -> None:
    when = datetime(2026, 11, 1, 12, 30, 1, 250000, tzinfo=UTC)
    env = error_envelope("invalid_json", "not valid JSON", b"\xff{oops", when)
    assert env == {
        "error_code": "invalid_json",
        "error_message": "not valid JSON",
        "attempts": 1,
        "received_at": "2026-11-01T12:30:01.250Z",
        "source": "ingest-api",
        "raw_data": base64.b64encode(b"\xff{oops").decode(),
    }


def test_stream_records_put_rejections_under_the_errors_key() -> None:
    body = orjson.dumps(event(0)) + b"\nnot json\n"
    pairs = stream_records(parse(body, NDJSON, LIMITS), datetime.now(UTC))
    assert pairs[0] == ("ev-0", orjson.dumps(event(0)))
    key, payload = pairs[1]
    env = orjson.loads(payload)
    assert key == ERRORS_KEY and env["error_code"] == "invalid_json"
    assert base64.b64decode(env["raw_data"]) == b"not json"


def test_many_tiny_gzip_members_decode_in_linear_time() -> None:
    """5 MiB of 2-byte gzip members (about 240,000 of them). A decoder that copies the rest of
    the body per member moves ~600 GB for this (about a minute here); a linear one moves the
    body once. The bound is on how long the test waits, not a speed figure."""
    member = gzip.compress(b"x\n", mtime=0)
    count = 5 * 2**20 // len(member)
    body = member * count
    result: list[bytes] = []
    worker = threading.Thread(
        target=lambda: result.append(decode_body(body, "gzip", 2 * count + 1)), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert result, "decoding did not finish within 20 s"
    assert result[0] == b"x\n" * count
    err = body_error(decode_body, body, "gzip", 2 * count - 1)  # the inflated-size limit holds
    assert (err.status, err.code) == (413, "body_too_large")


def test_gzip_members_with_zero_padding_and_garbage() -> None:
    raw = b"\n".join(orjson.dumps(event(i)) for i in range(5))
    assert decode_body(gzip.compress(raw) + b"\0" * 100, "gzip", 2**20) == raw
    err = body_error(decode_body, gzip.compress(raw) + b"\0\0garbage", "gzip", 2**20)
    assert (err.status, err.code) == (400, "bad_gzip")
    assert decode_body(b"", "gzip", 2**20) == b""


def test_more_records_than_the_cap_is_a_413_naming_it() -> None:
    limits = Limits(max_records=10)
    for body, fmt in ((b"x\n" * 11, NDJSON), (orjson.dumps([event(i) for i in range(11)]), JSON)):
        err = body_error(parse, body, fmt, limits)
        assert (err.status, err.code) == (413, "too_many_records")
        assert "ingest.max_records" in err.message and "10" in err.message
    assert len(parse(b"x\n" * 10 + b"\n" * 50, NDJSON, limits)) == 10  # blank lines: no records


def test_rejections_past_the_listed_count_are_packed_by_reason_in_the_stream() -> None:
    limits = Limits(max_listed_rejections=3)
    lines = [b"x%d" % i for i in range(50)] + [orjson.dumps(event(0))]
    lines += [orjson.dumps({"event_id": f"m{i}"}) for i in range(20)]
    outcomes = parse(b"\n".join(lines), NDJSON, limits)
    pairs = stream_records(outcomes, datetime.now(UTC), limits.max_listed_rejections)
    assert ("ev-0", orjson.dumps(event(0))) in pairs
    envelopes = [orjson.loads(p) for k, p in pairs if k == ERRORS_KEY]
    single = [e for e in envelopes if "records" not in e]
    packed = [e for e in envelopes if "records" in e]
    assert len(single) == 3 and {e["error_code"] for e in packed} == {"invalid_json",
                                                                      "missing_field"}
    kept = [base64.b64decode(e["raw_data"]) for e in single]
    for e in packed:
        raws = base64.b64decode(e["raw_data"]).split(b"\n")
        assert len(raws) == e["records"]
        kept += raws
    assert sorted(kept) == sorted(line for line in lines if b"payments" not in line)
    assert sum(e.get("records", 1) for e in envelopes) == 70  # every rejection, none dropped
    stream_bytes = sum(len(p) for k, p in pairs if k == ERRORS_KEY)
    assert stream_bytes < 3 * len(b"\n".join(lines))  # not an envelope per tiny line


def test_an_identity_field_given_twice_is_rejected_as_duplicate_key() -> None:
    base = orjson.dumps(event(0))[:-1]
    twice = base + b',"event_id":"dupB","service":"payments"}'
    escaped = base + b',"event\\u005fid":"dupB"}'  # the same key once unescaped
    kind_twice = b'{"kind":"apm",' + orjson.dumps(event(1))[1:]
    nested = orjson.dumps(event(2, context={"service": "x", "event_id": "y", "kind": "z"}))
    in_values = orjson.dumps(event(3, message='"event_id" and "event_id" again'))
    other_twice = base + b',"metrics":{"duration_ms":2.0}}'
    lines = [twice, escaped, kind_twice, nested, in_values, other_twice]
    outcomes = parse(b"\n".join(lines), NDJSON, LIMITS)
    assert reasons(outcomes) == ["duplicate_key"] * 3 + ["ok"] * 3
    first = outcomes[0]
    assert isinstance(first, Rejected) and first.raw == twice and "event_id" in first.message
    assert isinstance(outcomes[2], Rejected) and "kind" in outcomes[2].message

    [single] = parse(twice, JSON, LIMITS)
    assert isinstance(single, Rejected) and single.reason == "duplicate_key"
    array = b"[" + orjson.dumps(event(4)) + b", " + twice + b",\n" + nested + b"]"
    outcomes = parse(array, JSON, LIMITS)
    assert reasons(outcomes) == ["ok", "duplicate_key", "ok"]
    assert isinstance(outcomes[1], Rejected) and outcomes[1].raw == twice  # kept as sent
    escaped_array = b"[" + escaped + b"]"
    assert reasons(parse(escaped_array, JSON, LIMITS)) == ["duplicate_key"]
    many = b"[" + b",".join(orjson.dumps(event(i)) for i in range(50)) + b"]"
    assert reasons(parse(many, JSON, LIMITS)) == ["ok"] * 50
