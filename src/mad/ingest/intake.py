"""Decoding and per-record validation of ingest API bodies; pure functions, no I/O.

A body is one JSON event, a JSON array of events (`application/json`), or one event per line
(`application/x-ndjson`), optionally gzip-compressed. Problems with the body as a whole raise
`BodyError` with the HTTP status to answer; problems with one record become a `Rejected`
outcome with a reason code, and the other records still go through.

Every outcome keeps the record's bytes as received (the NDJSON line, the whole single-event
body, or `orjson.dumps` of an array element): accepted ones are appended to the stream as
they are, rejected ones inside an `error_envelope` under `ERRORS_KEY`, so nothing is dropped.
"""

from __future__ import annotations

import base64
import io
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from mad.events import check
from mad.ingest.duplicates import REASON as DUPLICATE_KEY
from mad.ingest.duplicates import message as duplicate_message
from mad.ingest.duplicates import repeated_field, repeated_in_array

ERRORS_KEY = "__errors__"
"""Stream key of rejected records; the raw writer sends them to `md-raw-errors/`."""

SOURCE = "ingest-api"
JSON = "json"
NDJSON = "ndjson"
MEDIA_TYPES = {
    "application/json": JSON,
    "application/x-ndjson": NDJSON,
    "application/ndjson": NDJSON,
}
GZIP_ENCODINGS = ("gzip", "x-gzip")
PLAIN_ENCODINGS = ("", "identity")
RAW_DATA_LIMIT = 16 * 2**20
"""Raw bytes kept in one error envelope; longer records are cut and the cut is recorded."""
PACK_RAW_BYTES = 192 * 1024
"""Raw bytes of the rejected records one packed envelope holds (under 256 KiB once in
base64, well within a Kinesis record)."""

LISTED_REJECTIONS = 100
"""Rejections of one request answered (and kept in the stream) one by one."""

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_CHUNK = 256 * 1024
_FEED = 64 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits of one request (the `ingest` settings of the same names)."""

    max_body_bytes: int = 5 * 2**20
    max_record_bytes: int = 256 * 1024
    max_depth: int = 16
    max_records: int = 10_000
    max_listed_rejections: int = LISTED_REJECTIONS


class BodyError(Exception):
    """The request as a whole cannot be read; `status` is the HTTP answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Accepted(NamedTuple):
    """A valid event: append `payload` under `key` (its event id: on Kinesis the partition
    key, so events spread evenly over the shards whatever the service mix, and a re-sent
    event goes to the shard of its first copy). `seq` is the record's index in the request.
    Tuples, as a request carries hundreds of them."""

    seq: int
    event_id: str
    key: str
    payload: bytes


class Rejected(NamedTuple):
    """A record that failed (`seq`: its index in the request): `reason` is a short code,
    `raw` the bytes as received."""

    seq: int
    reason: str
    message: str
    raw: bytes


Outcome = Accepted | Rejected


def body_format(content_type: str | None) -> str:
    """`JSON` or `NDJSON` from a Content-Type header; 415 for anything else."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    fmt = MEDIA_TYPES.get(media)
    if fmt is None:
        allowed = ", ".join(MEDIA_TYPES)
        shown = media or "none"
        raise BodyError(415, "unsupported_media_type",
                        f"content type {shown!r} is not supported; use one of {allowed}")
    return fmt


def decode_body(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """The body with its content coding removed: gzip is inflated up to `max_bytes`."""
    coding = (content_encoding or "").strip().lower()
    if coding in PLAIN_ENCODINGS:
        return body
    if coding in GZIP_ENCODINGS:
        return gunzip(body, max_bytes)
    raise BodyError(415, "unsupported_encoding",
                    f"content encoding {coding!r} is not supported; use gzip or none")


def gunzip(data: bytes, max_bytes: int) -> bytes:
    """Inflate one or more gzip members, never holding more than `max_bytes` of output
    (413 beyond it, so a small bomb cannot fill memory); 400 on a broken stream.

    Linear in the body: input is fed in slices of a `memoryview`, so the bytes after a
    member (`unused_data`) are at most one slice, never the rest of the body. Copying the
    rest per member made a body of many tiny members quadratic (minutes for 5 MiB).
    """
    view = memoryview(data)
    out: list[bytes] = []
    size = 0
    pos = 0
    while pos < len(view):
        if view[pos] == 0 and not data[pos:].strip(b"\x00"):
            break  # trailing zero padding after the last member
        inflater = zlib.decompressobj(_GZIP_WBITS)
        try:
            while not inflater.eof:
                feed: bytes | memoryview = inflater.unconsumed_tail
                if not feed and pos < len(view):
                    feed = view[pos:pos + _FEED]
                    pos += len(feed)
                chunk = inflater.decompress(feed, _CHUNK)
                if not chunk and not feed:
                    raise BodyError(400, "bad_gzip", "gzip stream is truncated")
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(f"decompressed body is over {max_bytes} bytes")
                out.append(chunk)
        except zlib.error as err:
            raise BodyError(400, "bad_gzip", f"body is not a valid gzip stream: {err}") from None
        pos -= len(inflater.unused_data)
    return b"".join(out)


def parse(body: bytes, fmt: str, limits: Limits) -> list[Outcome]:
    """Split a decoded body into records and check each; outcomes are in request order."""
    if not body.strip():
        raise BodyError(400, "empty_body", "the body holds no events")
    if fmt == NDJSON:
        return parse_ndjson(body, limits)
    return parse_json(body, limits)


def parse_json(body: bytes, limits: Limits) -> list[Outcome]:
    """One JSON event or an array of them; a syntax error anywhere is a 400."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise _syntax_error(body, err) from None
    if isinstance(doc, list):
        if not doc:
            raise BodyError(400, "empty_body", "the array holds no events")
        if len(doc) > limits.max_records:
            raise _too_many(limits)
        return _check_array(body, doc, limits)
    raw = body.strip()
    if len(raw) > limits.max_record_bytes:
        return [_oversize(0, raw, limits)]
    return [check_record(0, raw, doc, limits)]


def parse_ndjson(body: bytes, limits: Limits) -> list[Outcome]:
    """One event per line; blank lines are skipped and do not count as records. A line
    that is not JSON is a rejected record, the other lines still count. More than
    `max_records` records is a 413, found without splitting the whole body first."""
    outcomes: list[Outcome] = []
    loads = orjson.loads
    max_record = limits.max_record_bytes
    cap = limits.max_records
    for line in io.BytesIO(body):
        raw = line.strip()
        if not raw:
            continue
        index = len(outcomes)
        if index == cap:
            raise _too_many(limits)
        if len(raw) > max_record:
            outcomes.append(_oversize(index, raw, limits))
            continue
        try:
            record = loads(raw)
        except orjson.JSONDecodeError as err:
            outcomes.append(_bad_line(index, raw, err))
            continue
        outcomes.append(check_record(index, raw, record, limits))
    return outcomes


def _check_array(body: bytes, items: list[Any], limits: Limits) -> list[Outcome]:
    """The elements of a JSON array body; an element that repeats an identity field keeps
    its bytes as sent (re-encoding it would drop the repeat)."""
    try:
        repeats = repeated_in_array(body, items)
    except RecursionError:
        raise BodyError(400, "too_deep", "body nests too deep to parse") from None
    outcomes: list[Outcome] = []
    for i, item in enumerate(items):
        repeat = repeats.get(i)
        if repeat is None:
            outcomes.append(_check(i, orjson.dumps(item), item, limits, None))
        else:
            outcomes.append(_check(i, repeat[1], item, limits, repeat[0]))
    return outcomes


def check_record(index: int, raw: bytes, record: Any, limits: Limits) -> Outcome:
    """Size, nesting depth, repeated identity fields (`duplicates.py`) and the Event
    contract (`mad.events.check`) of one record, given as sent."""
    return _check(index, raw, record, limits, _UNKNOWN)


_UNKNOWN = ""
"""`_check`'s `repeated` when the record's bytes are still to be looked at."""


def _check(index: int, raw: bytes, record: Any, limits: Limits, repeated: str | None) -> Outcome:
    if len(raw) > limits.max_record_bytes:
        return _oversize(index, raw, limits)
    # Brackets in the bytes bound the depth from above: walk only when they could exceed it.
    if raw.count(b"{") + raw.count(b"[") > limits.max_depth and too_deep(record, limits.max_depth):
        return Rejected(index, "too_deep",
                        f"record nests deeper than {limits.max_depth} levels", raw)
    if repeated == _UNKNOWN:
        repeated = repeated_field(raw)
    if repeated:
        return Rejected(index, DUPLICATE_KEY, duplicate_message(repeated), raw)
    problem = check(record)
    if problem is not None:
        return Rejected(index, problem.reason, problem.message, raw)
    return Accepted(index, record["event_id"], record["event_id"], raw)


def too_deep(value: Any, limit: int) -> bool:
    """Whether objects/arrays nest more than `limit` levels (a scalar is depth 0)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, dict | list):
            continue
        if depth > limit:
            return True
        children: Iterable[Any] = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def error_envelope(
    error_code: str,
    error_message: str,
    raw: bytes,
    received_at: datetime | None = None,
    attempts: int = 1,
    source: str = SOURCE,
) -> dict[str, Any]:
    """The record kept for a rejected input, in the style of Firehose error output.

    Keys: `error_code` (the reason, e.g. `missing_field`), `error_message`, `attempts`,
    `received_at` (ISO-8601 UTC with milliseconds), `source` (who rejected it) and
    `raw_data` (base64 of the bytes as received). Inputs over `RAW_DATA_LIMIT` bytes keep
    only their first bytes, with `raw_data_truncated_from` set to the full size.
    """
    when = (received_at or datetime.now(UTC)).astimezone(UTC)
    envelope: dict[str, Any] = {
        "error_code": error_code,
        "error_message": error_message,
        "attempts": attempts,
        "received_at": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "source": source,
        "raw_data": base64.b64encode(raw[:RAW_DATA_LIMIT]).decode("ascii"),
    }
    if len(raw) > RAW_DATA_LIMIT:
        envelope["raw_data_truncated_from"] = len(raw)
    return envelope


def stream_records(outcomes: list[Outcome], received_at: datetime,
                   listed: int = LISTED_REJECTIONS) -> list[tuple[str, bytes]]:
    """`(key, payload)` pairs to append: events under their event id, rejections as
    error envelopes under `ERRORS_KEY`.

    The first `listed` rejections get an envelope each; the rest are packed by reason, up
    to `PACK_RAW_BYTES` of records per envelope (`records` says how many, `raw_data` holds
    them joined by newlines), so a body of tiny bad lines costs the stream about its own
    size instead of a 200-byte envelope per line. Nothing is dropped either way.
    """
    out: list[tuple[str, bytes]] = []
    packs: dict[str, _Pack] = {}
    rejected = 0
    for item in outcomes:
        if isinstance(item, Accepted):
            out.append((item.key, item.payload))
            continue
        rejected += 1
        if rejected <= listed or len(item.raw) >= PACK_RAW_BYTES or b"\n" in item.raw:
            env = error_envelope(item.reason, item.message, item.raw, received_at)
            out.append((ERRORS_KEY, orjson.dumps(env)))
            continue
        pack = packs.get(item.reason)
        if pack is not None and pack.size + len(item.raw) + 1 > PACK_RAW_BYTES:
            out.append((ERRORS_KEY, pack.envelope(received_at)))
            pack = None
        if pack is None:
            pack = packs[item.reason] = _Pack(item.reason, item.message)
        pack.add(item.raw)
    out += [(ERRORS_KEY, pack.envelope(received_at)) for pack in packs.values()]
    return out


class _Pack:
    """Rejected records of one reason that will share an error envelope."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason, self.message = reason, message
        self.raws: list[bytes] = []
        self.size = 0

    def add(self, raw: bytes) -> None:
        self.raws.append(raw)
        self.size += len(raw) + 1

    def envelope(self, received_at: datetime) -> bytes:
        env = error_envelope(self.reason, self.message, b"\n".join(self.raws), received_at)
        env["records"] = len(self.raws)
        return orjson.dumps(env)


def _oversize(index: int, raw: bytes, limits: Limits) -> Rejected:
    return Rejected(index, "record_too_large",
                    f"record is {len(raw)} bytes; at most {limits.max_record_bytes}", raw)


def _bad_line(index: int, raw: bytes, err: orjson.JSONDecodeError) -> Rejected:
    bad_utf8 = _utf8_error(raw)
    if bad_utf8 is not None:
        return Rejected(index, "invalid_utf8", bad_utf8, raw)
    if str(err).startswith("depth limit"):
        return Rejected(index, "too_deep", "record nests too deep to parse", raw)
    return Rejected(index, "invalid_json", f"not valid JSON: {err}", raw)


def _syntax_error(body: bytes, err: orjson.JSONDecodeError) -> BodyError:
    bad_utf8 = _utf8_error(body)
    if bad_utf8 is not None:
        return BodyError(400, "invalid_utf8", bad_utf8)
    if str(err).startswith("depth limit"):
        return BodyError(400, "too_deep", f"body nests too deep to parse: {err}")
    return BodyError(400, "invalid_json", f"body is not valid JSON: {err}")


def _utf8_error(raw: bytes) -> str | None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return f"bytes are not valid UTF-8 at byte {err.start}"
    return None


def _too_many(limits: Limits) -> BodyError:
    return BodyError(413, "too_many_records",
                     f"body holds more than {limits.max_records} records; at most "
                     f"ingest.max_records={limits.max_records} per request")


def _too_large(message: str) -> BodyError:
    return BodyError(413, "body_too_large", message)
