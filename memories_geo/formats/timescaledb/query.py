"""Reading a version: rows with ``time=``, ``bbox=``, ``columns=``, ``where=`` pushed down, or buckets.

``time=`` is a range on the time column in the ``WHERE`` clause (with literal bounds, so
the planner prunes partitions and chunks); ``bbox=``, ``where=`` and the nanosecond
handling are the ``postgis`` format's. ``resample=`` groups rows into time buckets
(:mod:`~memories_geo.formats.timescaledb.buckets`), per station when there is a station
column, and reads a continuous aggregate of that width instead when one holds the answer.
Everything is composed with :mod:`psycopg.sql`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from memories_geo.errors import OptionError
from memories_geo.formats.postgis.layout import active_entry, entry_crs, index_fields, schema_of
from memories_geo.formats.postgis.query import bbox_condition, fetch, time_condition, where_condition
from memories_geo.formats.postgis.types import column_types, object_columns_back, restore
from memories_geo.formats.timescaledb.buckets import aggregate, bucket, can_aggregate
from memories_geo.formats.timescaledb.hypertable import CAGG_AGGREGATES
from memories_geo.formats.timescaledb.layout import entry_named

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from psycopg import sql

    from memories_geo.backends.postgres import PostgresBackend
    from memories_geo.formats.timescaledb.options import Interval
    from memories_geo.query import OpenRequest

__all__ = ["read", "resample", "resample_statement", "select_statement", "selected_entries"]


def selected_entries(info: Mapping[str, Any], columns: Sequence[str] | None) -> list[dict[str, Any]]:
    """Entries to read: the index, the time column, the requested columns (default all), the geometry.

    Raises
    ------
    ValueError
        For a column the table does not have.

    Examples
    --------
    >>> [e["name"] for e in selected_entries(info, ["temp"])]  # doctest: +SKIP
    ['time', 'temp']
    """
    entries = info["columns"]
    if columns is None:
        return list(entries)
    index = index_fields(info)
    by_name = {e["name"]: e for e in entries if e["name"] not in index}
    unknown = [c for c in columns if str(c) not in by_name]
    if unknown:
        raise ValueError(f"unknown column(s) {unknown}; stored columns: {list(by_name)}")
    chosen = [by_name[str(c)] for c in dict.fromkeys(columns)]
    time = entry_named(info, info["time"])
    if time["name"] not in index and time not in chosen:
        chosen.insert(0, time)
    if info.get("type") == "GeoDataFrame" and active_entry(info) not in chosen:
        chosen.append(active_entry(info))
    return [e for e in entries if e["name"] in index] + chosen


def _conditions(info: Mapping[str, Any], request: OpenRequest) -> list[sql.Composable]:
    conditions: list[sql.Composable] = []
    if request.bbox is not None:
        if info.get("type") != "GeoDataFrame":
            raise OptionError("bbox= selects rows by their geometry, and this time series has none; open it "
                              "without bbox= (or filter stations with where=)")
        box = bbox_condition(info, request)
        if box is not None:
            conditions.append(box)
    if request.time is not None:
        conditions.append(time_condition(info, request.time, entry_named(info, info["time"])))
    where = request.options.get("where")
    if where is not None:
        conditions.append(where_condition(info, where))
    return conditions


def _where(query: sql.Composable, conditions: list[sql.Composable]) -> sql.Composable:
    from psycopg import sql

    if not conditions:
        return query
    return sql.SQL("{} WHERE {}").format(query, sql.SQL(" AND ").join(conditions))


def select_statement(
    backend: PostgresBackend, table: str, info: Mapping[str, Any], entries: list[dict[str, Any]],
    request: OpenRequest,
) -> sql.Composed:
    """``SELECT`` of ``entries`` from ``table`` with the request's filters, in stored (row-id) order.

    :func:`read` sends it without the ``ORDER BY``, reading the row id instead and
    ordering on the client when needed.

    Examples
    --------
    >>> statement = select_statement(backend, table, info, info["columns"], request)  # doctest: +SKIP
    >>> con.execute(sql.SQL("EXPLAIN {}").format(statement))  # doctest: +SKIP
    """
    from psycopg import sql

    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(sql.Identifier(name) for name, _ in column_types(entries)),
        backend.identifier(table),
    )
    return sql.SQL("{} ORDER BY {}").format(_where(query, _conditions(info, request)),
                                             sql.Identifier(info["row_id"]))


def read(
    backend: PostgresBackend, table: str, info: Mapping[str, Any], request: OpenRequest, engine: str
) -> pd.DataFrame:
    """Rows of ``table`` matching ``request`` as the frame type saved (DataFrame or GeoDataFrame).

    Examples
    --------
    >>> read(backend, table, info, open_request(time="2024-03"), "psycopg")  # doctest: +SKIP
    """
    from psycopg import sql

    entries = selected_entries(info, request.columns)
    row = {"name": info["row_id"], "column": info["row_id"], "type": "bigint"}
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(sql.Identifier(name) for name, _ in column_types([row, *entries])),
        backend.identifier(table),
    )
    statement = sql.SQL("{}").format(_where(query, _conditions(info, request)))
    raw = fetch(backend, statement, [row, *entries], engine)
    return _frame(_in_stored_order(raw), info, entries)


def _in_stored_order(raw: pa.Table) -> pa.Table:
    """``raw`` without its first column (the row id), its rows put in row-id order.

    Rows usually arrive in that order already (segments and partitions are scanned in
    load order), which costs one pass to check; otherwise they are sorted here, cheaper
    than the server's sort of a large result.
    """
    ids = raw.column(0).to_numpy()
    if len(ids) > 1 and not bool((ids[1:] > ids[:-1]).all()):
        raw = raw.take(np.argsort(ids, kind="stable"))
    return raw.drop_columns([raw.column_names[0]])


def _frame(raw: pa.Table, info: Mapping[str, Any], entries: list[dict[str, Any]]) -> pd.DataFrame:
    """The frame of ``raw`` (one column per entry) with the types, index and geometries saved."""
    import geopandas as gpd
    import pandas as pd
    import pyarrow as pa
    from geopandas.array import from_wkb

    schema = schema_of(info)
    fields = [schema.field(e["name"]) for e in entries]
    arrays = [restore(raw.column(i), f, info) for i, f in enumerate(fields)]
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=schema.metadata))
    geometries = [e for e in entries if e.get("geometry")]
    labels = list(table.slice(0, 0).to_pandas().columns)
    order = [str(c) for c in labels]
    plain = table.drop_columns([e["name"] for e in geometries])
    frame: pd.DataFrame = object_columns_back(plain.to_pandas(), plain)
    for entry in sorted(geometries, key=lambda e: order.index(e["name"])):
        position = order.index(entry["name"])
        wkb = np.asarray(table.column(entry["name"]).combine_chunks(), dtype=object)
        frame.insert(position, labels[position], from_wkb(wkb, crs=entry_crs(entry)))
    if info.get("attrs"):
        from memories_geo._jsonvalue import decode_mapping

        frame.attrs = dict(decode_mapping(info["attrs"]).items())
    if info.get("freq") and isinstance(frame.index, pd.DatetimeIndex):
        with contextlib.suppress(ValueError):  # rows no longer regular (a filtered read) keep none
            frame.index = pd.DatetimeIndex(frame.index, freq=info["freq"])
    if info.get("type") != "GeoDataFrame":
        return frame
    active = active_entry(info)["name"]
    return gpd.GeoDataFrame(frame, geometry=next(c for c in frame.columns if str(c) == active))


# -- resampling ---------------------------------------------------------------------------


def _values(info: Mapping[str, Any], columns: Sequence[str] | None, agg: str) -> list[dict[str, Any]]:
    """Columns ``agg`` is taken of: those asked for, else every column it applies to."""
    skip = {info["time"], *info["segmentby"], *index_fields(info)}
    candidates = {e["name"]: e for e in info["columns"] if e["name"] not in skip and not e.get("geometry")}
    if columns is not None:
        unknown = [c for c in columns if str(c) not in candidates]
        if unknown:
            raise ValueError(f"unknown column(s) {unknown} to resample; columns: {list(candidates)}")
        return [candidates[str(c)] for c in dict.fromkeys(columns)]
    values = [e for e in candidates.values() if can_aggregate(e, agg)]
    if not values:
        raise OptionError(
            f"agg={agg!r} applies to none of the columns {list(candidates)}; choose another agg"
        )
    return values


def _from_aggregate(info: Mapping[str, Any], width: Interval, agg: str, values: list[dict[str, Any]],
                    request: OpenRequest) -> dict[str, Any] | None:
    """The continuous aggregate that holds the answer (whole buckets, no filter), if any."""
    if agg not in CAGG_AGGREGATES or request.time is not None or request.bbox is not None:
        return None
    if request.options.get("where") is not None:
        return None
    for cagg in info.get("continuous_aggregates") or []:
        held = all(e["column"] in cagg["columns"] for e in values)
        if held and cagg["width"] == [width.months, width.micros]:
            return dict(cagg)
    return None


def resample_statement(
    backend: PostgresBackend, table: str, info: Mapping[str, Any], request: OpenRequest,
    width: Interval, agg: str,
) -> tuple[sql.Composed, list[dict[str, Any]]]:
    """``SELECT`` of one row per (station, bucket) of ``width`` with ``agg`` of each value column.

    Returns the statement and the entries of its result columns (bucket, stations,
    values; ``type`` is the result's PostgreSQL type).

    Examples
    --------
    >>> statement, _ = resample_statement(backend, table, info, open_request(),  # doctest: +SKIP
    ...                                   parse_interval("1D", "resample"), "mean")
    """
    from psycopg import sql

    partitioning = info["partitioning"]
    time = entry_named(info, info["time"])
    groups = [entry_named(info, g) for g in info["segmentby"]]
    values = _values(info, request.columns, agg)
    out = [{**time, "ns_column": None}, *(dict(g) for g in groups)]
    group_sql = [sql.Identifier(g["column"]) for g in groups]
    order = sql.SQL(", ").join([*group_sql, sql.Identifier(time["column"])])
    cagg = _from_aggregate(info, width, agg, values, request)
    selected: list[sql.Composable] = []
    if cagg is not None:
        selected = [sql.Identifier(time["column"]), *group_sql]
        for entry in values:
            _, kind = aggregate(entry, agg, time["column"], info["row_id"], partitioning)
            source = sql.Identifier(cagg["columns"][entry["column"]][agg])
            selected.append(sql.SQL("{} AS {}").format(source, sql.Identifier(entry["column"])))
            out.append({**entry, "type": kind, "ns_column": None})
        statement = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
            sql.SQL(", ").join(selected), backend.identifier(cagg["name"]), order
        )
        return statement, out
    selected = [sql.SQL("{} AS {}").format(
        bucket(time["column"], info.get("time_zone"), width, partitioning), sql.Identifier(time["column"])
    ), *group_sql]
    for entry in values:
        expression, kind = aggregate(entry, agg, time["column"], info["row_id"], partitioning)
        selected.append(sql.SQL("{} AS {}").format(expression, sql.Identifier(entry["column"])))
        out.append({**entry, "type": kind, "ns_column": None})
    query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(selected), backend.identifier(table))
    grouping = sql.SQL(", ").join(sql.SQL(str(n)) for n in range(1, len(groups) + 2))
    statement = sql.SQL("{} GROUP BY {} ORDER BY {}").format(
        _where(query, _conditions(info, request)), grouping, order
    )
    return statement, out


def resample(
    backend: PostgresBackend, table: str, info: Mapping[str, Any], request: OpenRequest,
    width: Interval, agg: str, engine: str,
) -> pd.DataFrame:
    """One row per (station, bucket): a DataFrame with the bucket as the time column (or index).

    Buckets keep the time column's dtype; ``min``, ``max``, ``first``, ``last`` (and
    ``sum`` of floats) keep the value columns' dtypes, ``mean`` is float64, ``count``
    and ``sum`` of integers int64. Rows are ordered by station, then bucket; only
    buckets holding rows are returned.

    Examples
    --------
    >>> resample(backend, table, info, open_request(), Interval(months=1), "max", "psycopg")  # doctest: +SKIP
    """
    import pyarrow as pa

    statement, out = resample_statement(backend, table, info, request, width, agg)
    raw = fetch(backend, statement, out, engine)
    schema = schema_of(info)
    meta = json.loads((schema.metadata or {}).get(b"pandas", b"{}"))
    labels = {c.get("field_name"): c.get("name") for c in meta.get("columns", [])}
    keep = 1 + len(info["segmentby"])
    typed = agg in ("min", "max", "first", "last")
    restored = [e["name"] for i, e in enumerate(out) if i < keep or typed]
    fields = [schema.field(name) for name in restored]
    arrays = [restore(raw.column(i), f, info) for i, f in enumerate(fields)]
    subset = {
        **meta,
        "columns": [c for c in meta.get("columns", []) if c.get("field_name") in restored],
        "index_columns": [info["time"]] if info["time"] in index_fields(info) else [],
    }
    metadata = {b"pandas": json.dumps(subset).encode()}
    table_pa = pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata))
    frame: pd.DataFrame = table_pa.to_pandas()
    for i, entry in enumerate(out[keep:], start=keep):
        if typed:
            continue
        column = raw.column(i)
        original = schema.field(entry["name"]).type
        if agg == "sum" and pa.types.is_floating(original):
            column = column.cast(original)
        frame[labels.get(entry["name"], entry["name"])] = column.to_numpy()
    present = {o["name"] for o in out}
    order = [labels.get(e["name"], e["name"]) for e in info["columns"] if e["name"] in present]
    return frame[[c for c in order if c in frame.columns]]
