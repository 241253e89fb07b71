"""The fallback without TimescaleDB: native declarative range partitioning by time.

A version table is ``PARTITION BY RANGE (time)`` with one partition per
``chunk_time_interval`` covering the data: fixed widths are aligned on 2000-01-01T00:00,
month widths on calendar months (counted from January 2000). Times of a time
zone-aware column are cut in UTC.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import TYPE_CHECKING, Any

from memories_geo.errors import OptionError

if TYPE_CHECKING:
    import pandas as pd
    import psycopg

    from memories_geo.backends.postgres import PostgresBackend
    from memories_geo.formats.timescaledb.options import Interval

__all__ = ["MAX_PARTITIONS", "ORIGIN", "create_partitions", "partition_bounds", "partition_name"]

#: Most partitions of one version table (a smaller ``chunk_time_interval`` is refused).
MAX_PARTITIONS = 2000
#: Where fixed-width partitions and buckets are aligned.
ORIGIN = dt.datetime(2000, 1, 1)


def _add_months(when: dt.datetime, months: int) -> dt.datetime:
    index = when.year * 12 + when.month - 1 + months
    return dt.datetime(index // 12, index % 12 + 1, 1)


def partition_bounds(start: pd.Timestamp, end: pd.Timestamp, width: Interval) -> list[dt.datetime]:
    """Boundaries ``b0 <= start``, ..., ``bn > end`` of the partitions covering ``[start, end]``.

    ``start`` and ``end`` are naive (UTC for a time zone-aware column).

    Raises
    ------
    OptionError
        When the range needs more than :data:`MAX_PARTITIONS` partitions.

    Examples
    --------
    >>> import pandas as pd
    >>> from memories_geo.formats.timescaledb.options import Interval
    >>> [b.isoformat() for b in partition_bounds(pd.Timestamp("2024-01-15"), pd.Timestamp("2024-02-03"),
    ...                                          Interval(months=1))]
    ['2024-01-01T00:00:00', '2024-02-01T00:00:00', '2024-03-01T00:00:00']
    """
    first = start.to_pydatetime().replace(tzinfo=None)
    last = end.to_pydatetime().replace(tzinfo=None)
    if width.months:
        elapsed = (first.year - ORIGIN.year) * 12 + first.month - 1
        low = _add_months(ORIGIN, elapsed // width.months * width.months)
        count = ((last.year - low.year) * 12 + last.month - low.month) // width.months + 1
        step_months = width.months
        bounds = [_add_months(low, i * step_months) for i in range(min(count, MAX_PARTITIONS + 1) + 1)]
    else:
        step = dt.timedelta(microseconds=width.micros)
        low = ORIGIN + (first - ORIGIN) // step * step
        count = (last - low) // step + 1
        bounds = [low + i * step for i in range(min(count, MAX_PARTITIONS + 1) + 1)]
    if count > MAX_PARTITIONS:
        raise OptionError(
            f"chunk_time_interval={width.text!r} would split {first} .. {last} into {count} partitions "
            f"(at most {MAX_PARTITIONS}); choose a wider chunk_time_interval"
        )
    return bounds


def partition_name(table: str, i: int) -> str:
    """Name of partition ``i`` of ``table`` (within PostgreSQL's 63 bytes).

    Examples
    --------
    >>> partition_name("obs__v_0123456789ab", 2)
    'obs__v_0123456789ab_p2'
    """
    return f"{table}_p{i}"


def create_partitions(
    con: psycopg.Connection[Any],
    backend: PostgresBackend,
    table: str,
    bounds: list[dt.datetime],
    *,
    aware: bool,
) -> list[str]:
    """Create the partitions ``[bounds[i], bounds[i + 1])`` of ``table``; return their names.

    ``aware``: the partition key is ``timestamptz`` (bounds are UTC).

    Examples
    --------
    >>> with backend.connection() as con:  # doctest: +SKIP
    ...     create_partitions(con, backend, table, bounds, aware=True)
    ['obs__v_0123456789ab_p0', 'obs__v_0123456789ab_p1']
    """
    from psycopg import sql

    names = []
    for i, (low, high) in enumerate(itertools.pairwise(bounds)):
        if aware:
            low, high = low.replace(tzinfo=dt.UTC), high.replace(tzinfo=dt.UTC)
        name = partition_name(table, i)
        con.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
            backend.identifier(name), backend.identifier(table), sql.Literal(low), sql.Literal(high)
        ))
        names.append(name)
    return names
