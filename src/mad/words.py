"""Counted nouns for every text the project prints: "1 incident", "2 incidents"."""

from __future__ import annotations

IRREGULAR = {"anomaly": "anomalies", "is": "are", "waits": "wait", "entry": "entries"}


def plural(n: int, word: str, many: str | None = None) -> str:
    """`n` and `word` in the right number: `plural(1, "file")` is "1 file", `plural(3,
    "anomaly")` is "3 anomalies"; `many` overrides the plural form."""
    if n == 1:
        return f"{n} {word}"
    return f"{n} {many or IRREGULAR.get(word) or word + 's'}"
