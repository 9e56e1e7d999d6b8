"""Records that name an identity field twice at their top level (`duplicate_key`).

JSON leaves duplicate keys to the parser: orjson (the API) keeps the last value, other
readers keep the first, so `{"event_id": "a", ..., "event_id": "b"}` would be two events to
two readers, routed by two services. The rule, the same at the API and in the ETL: a record
whose top-level object holds one of `IDENTITY_FIELDS` more than once, after JSON unescaping
(`"event\\u005fid"` is `event_id`), is rejected with reason `duplicate_key`. Other keys, and
keys of nested objects, may repeat (the last value counts).

orjson has no hook for duplicates, so the hot path only counts bytes: a record can repeat an
identity field only if its bytes hold one of the quoted names twice, or an escape of an
ASCII character (how a name could be spelled differently). Only such records, rare in
practice, are parsed again with the standard library, which reports every key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

IDENTITY_FIELDS = ("event_id", "timestamp", "service", "event_type", "kind")
REASON = "duplicate_key"

_QUOTED = tuple((name, f'"{name}"'.encode()) for name in IDENTITY_FIELDS)
_IDENTITY = frozenset(IDENTITY_FIELDS)
_ASCII_ESCAPE = re.compile(rb"\\u00[0-7][0-9a-fA-F]")
_WS = re.compile(r"[ \t\n\r]*")


class _Object(dict[str, Any]):
    """A parsed object that remembers which identity field, if any, it was given twice."""

    repeated: str | None = None


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in _IDENTITY and key in seen:
                obj.repeated = key
                break
            seen.add(key)
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_object)


def message(field: str) -> str:
    """The rejection message for a record that gives `field` twice."""
    return (f"identity field {field!r} appears more than once at the top level of the "
            "record; readers would disagree on which value counts")


def repeated_field(raw: bytes) -> str | None:
    """The identity field `raw` (one JSON value, already valid to orjson) gives twice at its
    top level, or None. Cheap unless the bytes could hold a repeat."""
    if not (_ASCII_ESCAPE.search(raw) or any(raw.count(q) > 1 for _, q in _QUOTED)):
        return None
    try:
        value = _DECODER.decode(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None  # not parsed the same way: other checks decide (depth, syntax)
    return value.repeated if isinstance(value, _Object) else None


def repeated_in_array(body: bytes, items: Sequence[Any]) -> dict[int, tuple[str, bytes]]:
    """For a JSON array body already parsed into `items`: the elements that give an
    identity field twice, by index, with that field and the element's bytes as sent.

    Raises RecursionError for nesting deeper than the standard parser goes (far deeper than
    any accepted record)."""
    if not _ASCII_ESCAPE.search(body):
        present = [sum(1 for item in items if type(item) is dict and name in item)
                   for name, _ in _QUOTED]
        if all(body.count(q) <= n for (_, q), n in zip(_QUOTED, present, strict=True)):
            return {}
    text = body.decode("utf-8")
    found: dict[int, tuple[str, bytes]] = {}
    pos = _skip(text, 0) + 1  # past "["
    for index in range(len(items)):
        pos = _skip(text, pos)
        value, end = _DECODER.raw_decode(text, pos)
        if isinstance(value, _Object) and value.repeated is not None:
            found[index] = (value.repeated, text[pos:end].encode("utf-8"))
        pos = _skip(text, end) + 1  # past "," (or the closing "]")
    return found


def _skip(text: str, pos: int) -> int:
    """The position after the JSON whitespace at `pos`."""
    match = _WS.match(text, pos)
    return match.end() if match else pos
