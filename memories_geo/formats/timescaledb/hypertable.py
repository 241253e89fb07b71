"""TimescaleDB objects of a version table: the hypertable, its compression, continuous aggregates.

Continuous aggregates are kept per version (they depend on its table): with
TimescaleDB, ``CREATE MATERIALIZED VIEW ... WITH (timescaledb.continuous)`` refreshed
once; natively, a plain materialized view of the same query. Each holds, per bucket and
station, ``mean``, ``min``, ``max``, ``sum`` and ``count`` of every numeric column.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from memories_geo.backends.postgres import safe_identifier
from memories_geo.formats.postgis.layout import index_fields
from memories_geo.formats.timescaledb.buckets import NUMERIC, aggregate, bucket

if TYPE_CHECKING:
    import psycopg

    from memories_geo.backends.postgres import PostgresBackend
    from memories_geo.formats.timescaledb.options import Interval

__all__ = [
    "CAGG_AGGREGATES",
    "autocommit",
    "compress",
    "create_continuous_aggregates",
    "create_hypertable",
    "drop_continuous_aggregates",
    "plan_continuous_aggregates",
]

#: Aggregates a continuous aggregate keeps for each numeric column.
CAGG_AGGREGATES = ("mean", "min", "max", "sum", "count")


@contextlib.contextmanager
def autocommit(backend: PostgresBackend) -> Iterator[psycopg.Connection[Any]]:
    """A pooled connection in autocommit mode (for statements that refuse a transaction block).

    Examples
    --------
    >>> with autocommit(backend) as con:  # doctest: +SKIP
    ...     con.execute("CALL refresh_continuous_aggregate('obs_ca0', NULL, NULL)")
    """
    with backend.connection() as con:
        con.autocommit = True
        try:
            yield con
        finally:
            con.autocommit = False


def create_hypertable(
    con: psycopg.Connection[Any], backend: PostgresBackend, table: str, time: str, interval: Interval
) -> None:
    """Make ``table`` a hypertable on ``time`` with chunks of ``interval`` (no default indexes).

    TimescaleDB counts a month as 30 days in a chunk interval.

    Examples
    --------
    >>> create_hypertable(con, backend, "obs__v_0123456789ab", "time", Interval(months=1))  # doctest: +SKIP
    """
    con.execute(
        "SELECT create_hypertable(%s::regclass, %s::name, chunk_time_interval => %s::interval, "
        "create_default_indexes => false)",
        (backend.identifier(table).as_string(con), time, interval.text),
    )


def compress(
    con: psycopg.Connection[Any],
    backend: PostgresBackend,
    table: str,
    segmentby: Sequence[str],
    orderby: Sequence[tuple[str, bool]],
) -> int:
    """Enable compression (``segmentby``, ``orderby`` stored column names) and compress every chunk.

    Returns the number of chunks compressed.

    Examples
    --------
    >>> compress(con, backend, "obs__v_0123456789ab", ["station"], [("time", True)])  # doctest: +SKIP
    4
    """
    from psycopg import sql

    segments = ",".join(sql.Identifier(c).as_string(con) for c in segmentby)
    order = ",".join(
        f"{sql.Identifier(c).as_string(con)} {'DESC' if descending else 'ASC'}" for c, descending in orderby
    )
    settings = [sql.SQL("timescaledb.compress"), sql.SQL("timescaledb.compress_orderby = {}").format(
        sql.Literal(order))]
    if segments:
        settings.append(sql.SQL("timescaledb.compress_segmentby = {}").format(sql.Literal(segments)))
    target = backend.identifier(table)
    con.execute(sql.SQL("ALTER TABLE {} SET ({})").format(target, sql.SQL(", ").join(settings)))
    row = con.execute(
        "SELECT count(compress_chunk(c, if_not_compressed => true)) FROM show_chunks(%s::regclass) AS c",
        (target.as_string(con),),
    ).fetchone()
    return int(row[0]) if row else 0


def plan_continuous_aggregates(
    table: str, info: Mapping[str, Any], widths: Sequence[Interval]
) -> list[dict[str, Any]]:
    """Describe the continuous aggregates of a new version (one per bucket width), for its ``info``.

    Each description holds the width (``[months, microseconds]``), the view's name, and
    ``columns``: stored column -> aggregate -> column of the view.

    Examples
    --------
    >>> plans = plan_continuous_aggregates("obs", info, [Interval(months=1)])  # doctest: +SKIP
    >>> plans[0]["columns"]["temp"]["mean"]  # doctest: +SKIP
    'temp__mean'
    """
    skip = {info["time"], *info["segmentby"], *index_fields(info)}
    values = [
        e for e in info["columns"]
        if e.get("type") in NUMERIC and not e.get("ns_column") and e["name"] not in skip
    ]
    return [
        {
            "width": [width.months, width.micros],
            "name": f"{table}_ca{i}",
            "columns": {
                e["column"]: {agg: safe_identifier(f"{e['column']}__{agg}") for agg in CAGG_AGGREGATES}
                for e in values
            },
        }
        for i, width in enumerate(widths)
    ]


def create_continuous_aggregates(
    backend: PostgresBackend, table: str, info: Mapping[str, Any], partitioning: str
) -> None:
    """Create and fill the continuous aggregates planned in ``info``.

    With TimescaleDB: ``WITH (timescaledb.continuous)``, created empty then refreshed
    over the whole table; natively: a materialized view of the same query.

    Examples
    --------
    >>> create_continuous_aggregates(backend, "obs__v_0123456789ab", info, "native")  # doctest: +SKIP
    """
    from psycopg import sql

    from memories_geo.formats.timescaledb.options import Interval

    entries = {e["column"]: e for e in info["columns"]}
    time_entry = next(e for e in info["columns"] if e["name"] == info["time"])
    groups = [sql.Identifier(e["column"]) for e in info["columns"] if e["name"] in info["segmentby"]]
    for cagg in info.get("continuous_aggregates", []):
        width = Interval(*cagg["width"])
        selected = [
            sql.SQL("{} AS {}").format(
                bucket(time_entry["column"], info.get("time_zone"), width, partitioning),
                sql.Identifier(time_entry["column"]),
            ),
            *groups,
        ]
        for column, outputs in cagg["columns"].items():
            for agg, out in outputs.items():
                expression, _ = aggregate(
                    entries[column], agg, time_entry["column"], info["row_id"], partitioning
                )
                selected.append(sql.SQL("{} AS {}").format(expression, sql.Identifier(out)))
        grouping = sql.SQL(", ").join(sql.SQL(str(n)) for n in range(1, len(groups) + 2))
        body = sql.SQL("SELECT {} FROM {} GROUP BY {}").format(
            sql.SQL(", ").join(selected), backend.identifier(table), grouping
        )
        view = backend.identifier(cagg["name"])
        if partitioning == "timescaledb":
            with backend.connection() as con:
                con.execute(sql.SQL(
                    "CREATE MATERIALIZED VIEW {} WITH (timescaledb.continuous, "
                    "timescaledb.materialized_only = true) AS {} WITH NO DATA"
                ).format(view, body))
            with autocommit(backend) as con:
                con.execute(
                    "CALL refresh_continuous_aggregate(%s::regclass, NULL, NULL)", (view.as_string(con),)
                )
        else:
            with backend.connection() as con:
                con.execute(sql.SQL("CREATE MATERIALIZED VIEW {} AS {}").format(view, body))


def drop_continuous_aggregates(backend: PostgresBackend, info: Mapping[str, Any]) -> None:
    """Drop the continuous aggregates of a version (before its table can be dropped).

    Examples
    --------
    >>> drop_continuous_aggregates(backend, backend.lookup(path).info)  # doctest: +SKIP
    """
    from psycopg import sql

    for cagg in info.get("continuous_aggregates", []):
        with backend.connection() as con:
            view = backend.identifier(cagg["name"])
            con.execute(sql.SQL("DROP MATERIALIZED VIEW IF EXISTS {}").format(view))
