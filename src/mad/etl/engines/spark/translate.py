"""DuckDB SQL -> Spark SQL for the steps of a plan: `to_spark_sql`, the one translation.

`sqlglot` translates each step's DuckDB SQL to Spark SQL, and `_rewrite` first fixes, in this
one place, the constructs that sqlglot translates to something Spark rejects or computes
differently (listed in its docstring; `tests/etl/test_transpile.py` holds the expected Spark
SQL of each). A construct that has no faithful Spark form is refused with
`SparkDialectError` naming it, never run with other meaning.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import sqlglot
from sqlglot import exp

from mad.errors import TerminalError

# DuckDB's `time_bucket` origin for fixed-size buckets: Monday 2000-01-03 00:00:00 UTC
TIME_BUCKET_ORIGIN_US = 946_857_600_000_000
_UNIT_US = {
    "MICROSECOND": 1, "MILLISECOND": 1_000, "SECOND": 1_000_000, "MINUTE": 60_000_000,
    "HOUR": 3_600_000_000, "DAY": 86_400_000_000, "WEEK": 604_800_000_000,
}
# DuckDB unsigned / wide / unit-suffixed types that Spark spells differently or lacks
_TYPE_MAP = {
    exp.DataType.Type.INT128: "DECIMAL(38, 0)",
    exp.DataType.Type.UINT128: "DECIMAL(38, 0)",
    exp.DataType.Type.UBIGINT: "DECIMAL(20, 0)",
    exp.DataType.Type.UINT: "BIGINT",
    exp.DataType.Type.USMALLINT: "INT",
    exp.DataType.Type.UTINYINT: "SMALLINT",
    exp.DataType.Type.TIMESTAMP_S: "TIMESTAMP_NTZ",
    exp.DataType.Type.TIMESTAMP_MS: "TIMESTAMP_NTZ",
    exp.DataType.Type.TIMESTAMP_NS: "TIMESTAMP_NTZ",
}
# strftime / strptime codes -> Spark datetime pattern letters
_DATETIME_CODES = {
    "Y": "yyyy", "y": "yy", "m": "MM", "-m": "M", "d": "dd", "-d": "d", "H": "HH", "-H": "H",
    "I": "hh", "-I": "h", "M": "mm", "-M": "m", "S": "ss", "-S": "s", "f": "SSSSSS",
    "g": "SSS", "n": "SSSSSSSSS", "z": "XXX", "Z": "z", "p": "a", "a": "EEE", "A": "EEEE",
    "b": "MMM", "B": "MMMM", "h": "MMM", "j": "DDD", "-j": "D", "e": "d",
}


class SparkDialectError(TerminalError):
    """A step uses DuckDB SQL that has no faithful Spark translation; the message says which."""




def to_spark_sql(sql: str) -> str:
    """The Spark SQL for one step's DuckDB SQL: parse, `_rewrite`, generate."""
    try:
        trees = sqlglot.parse(sql, read="duckdb")
    except sqlglot.errors.ParseError as err:
        raise SparkDialectError(f"cannot parse step SQL: {err}") from None
    if len(trees) != 1 or trees[0] is None:
        raise SparkDialectError("a step must be exactly one SELECT statement")
    return _rewrite(trees[0]).sql(dialect="spark")


def _rewrite(tree: exp.Expr) -> exp.Expr:
    """Fix what sqlglot's DuckDB -> Spark translation gets wrong (sqlglot 30.30), in place.

    - `json_valid(x)` (Spark has none) -> `try_parse_json(x) IS NOT NULL`
    - `quantile_cont` / `percentile_cont ... WITHIN GROUP` (sqlglot: percentile_approx or a
      2-argument form Spark rejects) -> exact `percentile(x, p)`; `quantile_disc` ->
      `percentile_disc(p) WITHIN GROUP (ORDER BY x)`; `median(x)` -> `percentile(x, 0.5)`
      (Spark's median refuses a window frame: DuckDB's rolling medians need this)
    - `epoch(ts)`, `extract(epoch ...)`, `date_part('epoch', ...)` (sqlglot: whole seconds)
      -> `unix_micros(ts) / 1e6`, fractional seconds as DuckDB; `date_part('second', ts)` ->
      `second(ts)` (Spark's extract gives a decimal with the fraction)
    - `to_timestamp(x)` (sqlglot: via a seconds-only string) -> `timestamp_seconds(x)`;
      `epoch_ms(n)` -> `timestamp_millis(n)` cast to TIMESTAMP_NTZ (DuckDB gives a TIMESTAMP,
      and a CASE mixing it with other TIMESTAMPs would otherwise turn them all LTZ)
    - `time_bucket(interval, ts[, origin])` (sqlglot: `date_bin`, absent in Spark) -> `ts`
      minus its offset into the bucket, on DuckDB's origin 2000-01-03; fixed-size intervals
    - `strptime` / `try_strptime` / `strftime`: the format is converted here (sqlglot leaves
      letters such as `T` unquoted); parsing gives TIMESTAMP_NTZ unless the format has `%z`
    - `regexp_replace` options (sqlglot drops them): `g` kept as Spark's replace-all, without
      `g` only an anchored pattern is accepted (Spark cannot replace just the first match),
      `i` -> `(?i)`; `\\1` back-references -> `$1`; `regexp_matches(s, p, 'i')` likewise
    - `dayofweek` (DuckDB Sunday=0) and `isodow` (Monday=1): Spark counts from Sunday=1
    - `list[i]` / `list_extract(list, i)` -> `try_element_at` (NULL out of range, as DuckDB;
      Spark's ANSI mode raises)
    - DuckDB-only types (HUGEINT, UBIGINT, TIMESTAMP_MS ...) -> their Spark equivalents
    - `json_transform(x, '<struct spec>')` (literal spec: an object of field -> VARCHAR /
      BIGINT / DOUBLE / BOOLEAN or a nested object) -> `from_json(x, '<DDL>')`; both give a
      string value unquoted and any other value as compact JSON text (numbers may be spelled
      differently: `1.0E20` in Spark, cast them before comparing)
    - `json_merge_patch(x, '<patch>')` with a literal patch that only deletes (every leaf is
      null) -> the object as `MAP<STRING, VARIANT>`, filtered level by level, as JSON text.
      Unlike DuckDB it adds no empty object for a patched key the document lacks, and nested
      objects come out with sorted keys: the same JSON value, not always the same text
    """
    for dtype in list(tree.find_all(exp.DataType)):
        spark_type = _TYPE_MAP.get(dtype.this)
        if spark_type is not None:
            dtype.replace(exp.DataType.build(spark_type, dialect="spark"))
    for node in reversed(list(tree.walk(bfs=False))):  # children before their parents
        fixed = _rewrite_node(node)
        if fixed is not node:
            if node is tree:
                tree = fixed
            else:
                node.replace(fixed)
    return tree


def _fn(name: str, *args: exp.Expr) -> exp.Anonymous:
    return exp.Anonymous(this=name, expressions=list(args))


def _rewrite_node(node: exp.Expr) -> exp.Expr:
    for kind, fix in _FIXES:
        if isinstance(node, kind):
            return fix(node)
    return node


def _anonymous(node: exp.Anonymous) -> exp.Expr:
    name = str(node.this).lower()
    args = node.expressions
    if name == "json_valid" and len(args) == 1:
        return exp.Paren(this=exp.Not(this=exp.Is(this=_fn("TRY_PARSE_JSON", args[0]),
                                                  expression=exp.Null())))
    if name == "date_part" and len(args) == 2 and isinstance(args[0], exp.Literal):
        part = args[0].name.lower()
        if part == "epoch":
            return _epoch_seconds(args[1])
        if part == "second":
            return _fn("SECOND", args[1])
    if name == "try_strptime" and len(args) == 2:
        return _strptime(args[0], args[1], safe=True)
    if name == "list_extract" and len(args) == 2:
        return _fn("TRY_ELEMENT_AT", args[0], args[1])
    if name == "json_transform" and len(args) == 2:
        ddl = _spark_ddl(_literal_json(args[1], "json_transform spec"), "json_transform")
        return _fn("FROM_JSON", args[0], exp.Literal.string(ddl))
    if name == "json_merge_patch" and len(args) == 2:
        patch = _literal_json(args[1], "json_merge_patch patch")
        if not isinstance(patch, dict):
            raise SparkDialectError("json_merge_patch: only an object patch is translated")
        doc = args[0].sql(dialect="spark")
        entries = f"FROM_JSON({doc}, 'MAP<STRING, VARIANT>')"
        text = f"TO_JSON({_delete_keys(entries, patch, 0)})"
        return sqlglot.parse_one(text, read="spark")
    return node


_SPARK_SCALARS = {"VARCHAR": "STRING", "BIGINT": "BIGINT", "DOUBLE": "DOUBLE",
                  "BOOLEAN": "BOOLEAN"}


def _literal_json(node: exp.Expr, what: str) -> Any:
    if not isinstance(node, exp.Literal) or not node.is_string:
        raise SparkDialectError(f"{what} must be a literal for Spark")
    try:
        return json.loads(node.name)
    except ValueError:
        raise SparkDialectError(f"{what} is not JSON: {node.name!r}") from None


def _spark_ddl(spec: Any, what: str, nested: bool = False) -> str:
    """A `json_transform` STRUCT spec as a Spark DDL (`a STRING, b STRUCT<c: BIGINT>`)."""
    if not isinstance(spec, dict) or not spec:
        raise SparkDialectError(f"{what}: only a STRUCT spec (a JSON object) is translated")
    fields = []
    for key, typ in spec.items():
        if isinstance(typ, dict):
            spark_type = f"STRUCT<{_spark_ddl(typ, what, nested=True)}>"
        elif isinstance(typ, str) and typ.upper() in _SPARK_SCALARS:
            spark_type = _SPARK_SCALARS[typ.upper()]
        else:
            raise SparkDialectError(f"{what}: type {typ!r} of {key!r} is not translated")
        name = "`" + str(key).replace("`", "``") + "`"
        fields.append(f"{name}{': ' if nested else ' '}{spark_type}")
    return ", ".join(fields)


def _delete_keys(obj: str, patch: dict[str, Any], depth: int) -> str:
    """Spark SQL for the MAP<STRING, VARIANT> `obj` without the keys a deletion-only merge
    patch removes, nested objects of the patch applied to their values the same way."""
    k, v = f"k{depth}", f"v{depth}"
    gone = [key for key, val in patch.items() if val is None]
    cases = []
    for key, val in patch.items():
        if val is None:
            continue
        if not isinstance(val, dict):
            raise SparkDialectError("json_merge_patch: only a patch that deletes keys (null "
                                    "leaves) is translated for Spark")
        inner = _delete_keys(f"TRY_VARIANT_GET({v}, '$', 'MAP<STRING, VARIANT>')", val,
                             depth + 1)
        cases.append(f"WHEN {_sql_text(key)} THEN TO_VARIANT_OBJECT({inner})")
    out = obj
    if cases:
        out = f"TRANSFORM_VALUES({out}, ({k}, {v}) -> CASE {k} {' '.join(cases)} ELSE {v} END)"
    if gone:
        keys = ", ".join(_sql_text(key) for key in gone)
        out = f"MAP_FILTER({out}, ({k}, {v}) -> NOT {k} IN ({keys}))"
    return out


def _sql_text(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _epoch_seconds(ts: exp.Expr) -> exp.Expr:
    return exp.Paren(this=exp.Div(this=_fn("UNIX_MICROS", ts),
                                  expression=exp.Literal.number("1e6")))


def _extract(node: exp.Extract) -> exp.Expr:
    part = node.this.name.upper()
    if part == "EPOCH":
        return _epoch_seconds(node.expression)
    if part == "SECOND":
        return _fn("SECOND", node.expression)
    return node


def _unix_to_time(node: exp.UnixToTime) -> exp.Expr:
    scale = node.args.get("scale")
    if scale is None or (isinstance(scale, exp.Literal) and scale.name in ("0", "")):
        return _fn("TIMESTAMP_SECONDS", node.this)
    if isinstance(scale, exp.Literal) and scale.name == "3":  # epoch_ms: DuckDB TIMESTAMP
        return exp.Cast(this=_fn("TIMESTAMP_MILLIS", node.this),
                        to=exp.DataType.build("TIMESTAMP_NTZ", dialect="spark"))
    return node


def _percentile_of(node: exp.Expr) -> exp.Expr:
    """PercentileCont / PercentileDisc(this=column, expression=fraction), the DuckDB form."""
    value, fraction = node.this, node.expression
    if isinstance(node, exp.PercentileCont):
        return _fn("PERCENTILE", value, fraction)
    return exp.WithinGroup(
        this=_fn("PERCENTILE_DISC", fraction),
        expression=exp.Order(expressions=[exp.Ordered(this=value, nulls_first=False)]),
    )


def _percentile(node: exp.Expr) -> exp.Expr:
    if node.expression is None:  # the WITHIN GROUP form: handled by _within_group
        return node
    return _percentile_of(node)


def _within_group(node: exp.WithinGroup) -> exp.Expr:
    inner, order = node.this, node.expression
    if isinstance(inner, exp.PercentileCont | exp.PercentileDisc) and isinstance(order,
                                                                                 exp.Order):
        keys = order.expressions
        if len(keys) != 1:
            raise SparkDialectError("percentile ... WITHIN GROUP needs one ORDER BY key")
        key = keys[0].this
        fraction = inner.this if inner.expression is None else inner.expression
        if keys[0].args.get("desc"):
            fraction = exp.Sub(this=exp.Literal.number(1), expression=fraction)
        return _percentile_of(type(inner)(this=key, expression=fraction))
    return node


def _date_bin(node: exp.DateBin) -> exp.Expr:
    interval, ts = node.this, node.expression
    if node.args.get("unit") is not None:
        raise SparkDialectError("time_bucket with an origin is not translated for Spark")
    if not isinstance(interval, exp.Interval):
        raise SparkDialectError("time_bucket needs a literal INTERVAL for Spark")
    width = _interval_micros(interval)
    offset = _fn(
        "PMOD",
        exp.Sub(this=_fn("UNIX_MICROS", ts.copy()),
                expression=exp.Literal.number(TIME_BUCKET_ORIGIN_US)),
        exp.Literal.number(width),
    )
    return _fn("TIMESTAMPADD", exp.var("MICROSECOND"), exp.Neg(this=exp.Paren(this=offset)), ts)


def _interval_micros(interval: exp.Interval) -> int:
    text = interval.this.name if interval.this is not None else ""
    unit = interval.args.get("unit")
    unit_name = unit.name.upper() if unit is not None else ""
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if match is None:
        raise SparkDialectError(f"time_bucket interval {interval.sql('duckdb')} not understood")
    count, inline_unit = int(match.group(1)), match.group(2).upper()
    unit_name = (unit_name or inline_unit).rstrip("S")
    if unit_name not in _UNIT_US:
        raise SparkDialectError(
            f"time_bucket by {interval.sql('duckdb')}: only fixed-size intervals "
            "(microseconds to weeks) translate to Spark"
        )
    if count <= 0:
        raise SparkDialectError("time_bucket interval must be positive")
    return count * _UNIT_US[unit_name]


def _spark_format(fmt: str) -> tuple[str, bool]:
    """A strftime/strptime format as a Spark datetime pattern, and whether it has `%z`."""
    out: list[str] = []
    literal: list[str] = []
    has_zone = False

    def flush() -> None:
        if literal:
            text = "".join(literal).replace("'", "''")
            out.append(text if re.fullmatch(r"[^A-Za-z']*", "".join(literal)) else f"'{text}'")
            literal.clear()

    i = 0
    while i < len(fmt):
        char = fmt[i]
        if char != "%":
            if char == "'":
                flush()
                out.append("''")
            else:
                literal.append(char)
            i += 1
            continue
        code = fmt[i + 1: i + 3] if fmt[i + 1: i + 2] == "-" else fmt[i + 1: i + 2]
        if code == "%":
            literal.append("%")
        elif code in _DATETIME_CODES:
            flush()
            out.append(_DATETIME_CODES[code])
            has_zone = has_zone or code == "z"
        else:
            raise SparkDialectError(f"datetime format code %{code} in {fmt!r} not translated")
        i += 1 + len(code)
    flush()
    return "".join(out), has_zone


def _literal_format(node: exp.Expr) -> str:
    if not isinstance(node, exp.Literal) or not node.is_string:
        raise SparkDialectError("strftime / strptime need a literal format for Spark")
    return node.name


def _strptime(value: exp.Expr, fmt: exp.Expr, safe: bool) -> exp.Expr:
    pattern, has_zone = _spark_format(_literal_format(fmt))
    parsed = _fn("TRY_TO_TIMESTAMP" if safe else "TO_TIMESTAMP", value,
                 exp.Literal.string(pattern))
    if has_zone:
        return parsed
    return exp.Cast(this=parsed, to=exp.DataType.build("TIMESTAMP_NTZ", dialect="spark"))


def _str_to_time(node: exp.StrToTime) -> exp.Expr:
    fmt = node.args.get("format")
    if fmt is None:
        return node
    return _strptime(node.this, fmt, safe=bool(node.args.get("safe")))


def _time_to_str(node: exp.TimeToStr) -> exp.Expr:
    fmt = node.args.get("format")
    if fmt is None:
        return node
    pattern, _ = _spark_format(_literal_format(fmt))
    return _fn("DATE_FORMAT", node.this, exp.Literal.string(pattern))


def _regex_flags(flags: exp.Expr | None, what: str) -> tuple[bool, str]:
    """(global, prefix) for DuckDB regex options: `g` global, `i` / `c` case."""
    if flags is None:
        return False, ""
    if not isinstance(flags, exp.Literal):
        raise SparkDialectError(f"{what}: regex options must be a literal")
    text = flags.name
    unknown = set(text) - set("gic")
    if unknown:
        raise SparkDialectError(f"{what}: regex option(s) {''.join(sorted(unknown))!r} "
                                "not translated for Spark")
    case_insensitive = "i" in text and text.rfind("i") > text.rfind("c")
    return "g" in text, "(?i)" if case_insensitive else ""


def _prefixed(pattern: exp.Expr, prefix: str) -> exp.Expr:
    if not prefix:
        return pattern
    if isinstance(pattern, exp.Literal) and pattern.is_string:
        return exp.Literal.string(prefix + pattern.name)
    return exp.Concat(expressions=[exp.Literal.string(prefix), pattern])


def _regexp_replace(node: exp.RegexpReplace) -> exp.Expr:
    is_global, prefix = _regex_flags(node.args.get("modifiers"), "regexp_replace")
    pattern = node.expression
    if not is_global:
        anchored = (isinstance(pattern, exp.Literal) and pattern.name.startswith("^")
                    and "|" not in pattern.name)
        if not anchored:
            raise SparkDialectError(
                "regexp_replace without the 'g' option replaces only the first match in "
                "DuckDB and has no Spark equivalent: add 'g', or anchor the pattern with ^"
            )
    replacement = node.args.get("replacement")
    if isinstance(replacement, exp.Literal) and replacement.is_string:
        text = replacement.name.replace("$", "\\$")
        replacement = exp.Literal.string(re.sub(r"\\(\d)", r"$\1", text))
    return _fn("REGEXP_REPLACE", node.this, _prefixed(pattern, prefix),
               replacement if replacement is not None else exp.Literal.string(""))


def _regexp_like(node: exp.RegexpLike) -> exp.Expr:
    _, prefix = _regex_flags(node.args.get("flag"), "regexp_matches")
    return exp.RegexpLike(this=node.this, expression=_prefixed(node.expression, prefix))


def _day_of_week(node: exp.DayOfWeek) -> exp.Expr:
    return exp.Paren(this=exp.Sub(this=_fn("DAYOFWEEK", node.this),
                                  expression=exp.Literal.number(1)))


def _iso_day_of_week(node: exp.DayOfWeekIso) -> exp.Expr:
    return exp.Paren(this=exp.Add(this=_fn("WEEKDAY", node.this),
                                  expression=exp.Literal.number(1)))


def _bracket(node: exp.Bracket) -> exp.Expr:
    keys = node.expressions
    if len(keys) == 1 and not (isinstance(keys[0], exp.Literal) and keys[0].is_string):
        if isinstance(keys[0], exp.Slice):
            return node
        # sqlglot's parser moved integer literals to 0-based (also -1 -> -2) and left other
        # indexes as written; element_at counts from 1 (from -1 at the end), as DuckDB does
        index = keys[0]
        number = index.this if isinstance(index, exp.Neg) else index
        if isinstance(number, exp.Literal) and number.is_int:
            shifted = int(number.name) * (-1 if isinstance(index, exp.Neg) else 1) + 1
            index = exp.Literal.number(shifted)
        return _fn("TRY_ELEMENT_AT", node.this, index)
    return node


_FIXES: tuple[tuple[type[exp.Expr], Callable[[Any], exp.Expr]], ...] = (
    (exp.Anonymous, _anonymous),
    (exp.Extract, _extract),
    (exp.UnixToTime, _unix_to_time),
    (exp.TimeToUnix, lambda n: _epoch_seconds(n.this)),
    (exp.Median, lambda n: _fn("PERCENTILE", n.this, exp.Literal.number(0.5))),
    (exp.WithinGroup, _within_group),
    (exp.PercentileCont, _percentile),
    (exp.PercentileDisc, _percentile),
    (exp.DateBin, _date_bin),
    (exp.StrToTime, _str_to_time),
    (exp.TimeToStr, _time_to_str),
    (exp.RegexpReplace, _regexp_replace),
    (exp.RegexpLike, _regexp_like),
    (exp.DayOfWeekIso, _iso_day_of_week),
    (exp.DayOfWeek, _day_of_week),
    (exp.Bracket, _bracket),
)
