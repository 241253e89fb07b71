"""Time buckets and aggregates in SQL: ``time_bucket`` with TimescaleDB, ``date_bin`` without.

Both paths cut the same buckets: fixed widths aligned on 2000-01-01T00:00, month widths
on calendar months from January 2000, in the local time of a time zone-aware column
(``time_bucket(width, t, tz, origin)``, or ``date_bin`` on ``t AT TIME ZONE tz``), so
``'1D'`` buckets start at local midnight as pandas' ``resample('1D')`` does. The
expressions serve ``open(resample=...)`` and the continuous aggregates alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from memories_geo.errors import OptionError
from memories_geo.formats.timescaledb.partitions import ORIGIN

if TYPE_CHECKING:
    from psycopg import sql

    from memories_geo.formats.timescaledb.options import Interval

__all__ = ["NUMERIC", "aggregate", "bucket", "can_aggregate", "zone"]

#: PostgreSQL types ``mean`` and ``sum`` apply to (and continuous aggregates keep).
NUMERIC = ("smallint", "integer", "bigint", "real", "double precision")
_ORDERED = (*NUMERIC, "text", "date", "timestamp", "timestamptz", "boolean")
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")


def zone(tz: str) -> str:
    """A time zone as PostgreSQL reads it: ISO offsets (``+01:00``) in POSIX form (``UTC-01:00``).

    Examples
    --------
    >>> zone("+05:30"), zone("Europe/Paris")
    ('UTC-05:30', 'Europe/Paris')
    """
    match = _OFFSET.match(tz)
    if match is None:
        return tz
    sign = "-" if match.group(1) == "+" else "+"
    return f"UTC{sign}{match.group(2)}:{match.group(3)}"


def bucket(column: str, tz: str | None, width: Interval, partitioning: str) -> sql.Composable:
    """The bucket of each row's time in ``column`` (``timestamp``, or ``timestamptz`` when ``tz``).

    Examples
    --------
    >>> from memories_geo.formats.timescaledb.options import Interval
    >>> bucket("time", None, Interval(micros=86_400_000_000), "native")  # doctest: +SKIP
    Composed([SQL('date_bin('), ...])
    """
    from psycopg import sql

    t = sql.Identifier(column)
    width_sql = sql.SQL("{}::interval").format(sql.Literal(width.text))
    origin = sql.Literal(ORIGIN)
    if partitioning == "timescaledb":
        if tz is None:
            return sql.SQL("time_bucket({}, {}, {})").format(width_sql, t, origin)
        name = sql.Literal(zone(tz))
        return sql.SQL("time_bucket({}, {}, {}, ({} AT TIME ZONE {}))").format(
            width_sql, t, name, origin, name
        )
    local: sql.Composable = t
    if tz is not None:
        local = sql.SQL("({} AT TIME ZONE {})").format(t, sql.Literal(zone(tz)))
    if width.months:
        months = sql.SQL(
            "((extract(year FROM {l})::int - {y}) * 12 + extract(month FROM {l})::int - 1)"
        ).format(l=local, y=sql.Literal(ORIGIN.year))
        expr: sql.Composable = sql.SQL(
            "({} + make_interval(months => (floor({} / {}::numeric) * {})::int))"
        ).format(origin, months, sql.Literal(width.months), sql.Literal(width.months))
    else:
        expr = sql.SQL("date_bin({}, {}, {})").format(width_sql, local, origin)
    if tz is None:
        return expr
    return sql.SQL("({} AT TIME ZONE {})").format(expr, sql.Literal(zone(tz)))


def can_aggregate(entry: Mapping[str, Any], agg: str) -> bool:
    """Whether ``agg`` applies to the stored column ``entry``.

    Examples
    --------
    >>> can_aggregate({"type": "text"}, "mean"), can_aggregate({"type": "text"}, "max")
    (False, True)
    """
    if entry.get("geometry"):
        return False
    if entry.get("ns_column"):
        return agg == "count"
    kind = entry["type"]
    if agg in ("mean", "sum"):
        return kind in NUMERIC or kind == "boolean"
    if agg in ("min", "max"):
        return kind in _ORDERED
    return True


def aggregate(
    entry: Mapping[str, Any], agg: str, time: str, row_id: str, partitioning: str
) -> tuple[sql.Composable, str]:
    """SQL of ``agg`` over the column of ``entry`` and the PostgreSQL type it returns.

    ``mean`` is ``avg`` as ``double precision``; ``sum`` is 0 for a bucket without
    values (as pandas' ``sum``), ``bigint`` for integers and booleans; ``count`` counts
    values; ``first``/``last`` take the earliest/latest value that is not NULL (ties in
    stored order), with TimescaleDB's ``first``/``last`` when it is there.

    Raises
    ------
    OptionError
        When ``agg`` does not apply to the column's type.

    Examples
    --------
    >>> expression, kind = aggregate({"name": "t", "column": "t", "type": "real"}, "mean", "time", "mg_row",
    ...                              "native")
    >>> kind
    'double precision'
    """
    from psycopg import sql

    if not can_aggregate(entry, agg):
        raise OptionError(
            f"agg={agg!r} does not apply to column {entry['name']!r} ({entry['type']}); choose other "
            "columns with columns=, or another agg"
        )
    c = sql.Identifier(entry["column"])
    kind = entry["type"]
    number: sql.Composable = sql.SQL("{}::int").format(c) if kind == "boolean" else c
    if agg == "mean":
        return sql.SQL("avg({})::double precision").format(number), "double precision"
    if agg == "sum":
        total = "double precision" if kind in ("real", "double precision") else "bigint"
        return sql.SQL("COALESCE(sum({}), 0)::{}").format(number, sql.SQL(total)), total
    if agg == "count":
        return sql.SQL("count({})").format(c), "bigint"
    if agg in ("min", "max"):
        if kind == "boolean":
            return sql.SQL("bool_and({})" if agg == "min" else "bool_or({})").format(c), kind
        return sql.SQL(f"{agg}({{}})").format(c), kind
    t, row = sql.Identifier(time), sql.Identifier(row_id)
    if partitioning == "timescaledb":
        return sql.SQL(f"{agg}({{}}, {{}}) FILTER (WHERE {{}} IS NOT NULL)").format(c, t, c), kind
    order = sql.SQL("ASC" if agg == "first" else "DESC")
    return sql.SQL("(array_agg({c} ORDER BY {t} {o}, {r} {o}) FILTER (WHERE {c} IS NOT NULL))[1]").format(
        c=c, t=t, r=row, o=order
    ), kind
