"""Reading a version table: the SELECT with columns, bbox, time and where= pushed down, and the frame.

Every filter is composed with :mod:`psycopg.sql`: names as ``sql.Identifier``, values
as ``sql.Literal`` (adapted and quoted by psycopg), so nothing a caller passes is ever
pasted into SQL text.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np

from memories_geo.errors import OptionError
from memories_geo.formats._vector import series_name
from memories_geo.formats.postgis.layout import active_entry, entry_crs, index_fields, schema_of, time_entry
from memories_geo.formats.postgis.types import (
    arrow_type,
    column_types,
    join_nanoseconds,
    object_columns_back,
    restore,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from psycopg import sql

    from memories_geo.backends.postgres import PostgresBackend
    from memories_geo.query import OpenRequest

__all__ = [
    "bbox_condition",
    "fetch",
    "read",
    "select_statement",
    "selected_entries",
    "time_condition",
    "where_condition",
]


def read(
    backend: PostgresBackend, table: str, info: Mapping[str, Any], request: OpenRequest, engine: str
) -> gpd.GeoDataFrame | gpd.GeoSeries:
    """Rows of ``table`` matching ``request``, as the type that was saved, in stored order.

    Raises
    ------
    OptionError
        For ``columns=`` on a stored GeoSeries, or ``time=`` on a layer without a
        datetime column.
    ValueError
        For an unknown column in ``columns=`` or ``where=``.
    """
    is_series = info.get("type") == "GeoSeries"
    if is_series and request.columns is not None:
        raise OptionError("columns= does not apply to a stored GeoSeries (it has one column, its geometry)")
    entries = selected_entries(info, request.columns)
    statement = select_statement(backend, table, info, entries, request)
    raw = fetch(backend, statement, entries, engine)
    gdf = _to_geodataframe(raw, info, entries)
    if is_series:
        return gdf.geometry.rename(series_name(info.get("name")))
    return gdf


def selected_entries(info: Mapping[str, Any], columns: Sequence[str] | None) -> list[dict[str, Any]]:
    """Column entries to read: index columns, then the requested ones (default all), active geometry kept."""
    entries = info["columns"]
    if columns is None:
        return list(entries)
    index = index_fields(info)
    by_name = {e["name"]: e for e in entries if e["name"] not in index}
    unknown = [c for c in columns if str(c) not in by_name]
    if unknown:
        raise ValueError(f"unknown column(s) {unknown}; stored columns: {list(by_name)}")
    chosen = list({str(c): by_name[str(c)] for c in columns}.values())
    active = active_entry(info)
    if active not in chosen:
        chosen.append(active)
    return [e for e in entries if e["name"] in index] + chosen


def select_statement(
    backend: PostgresBackend,
    table: str,
    info: Mapping[str, Any],
    entries: list[dict[str, Any]],
    request: OpenRequest,
) -> sql.Composed:
    """``SELECT`` of ``entries`` from ``table`` with the request's filters, ordered by row id.

    ``bbox=`` becomes ``geom && envelope AND ST_Intersects(geom, envelope)`` on the active
    geometry (the envelope in its CRS, from :meth:`OpenRequest.bbox_in`), ``time=`` a
    range on the first datetime column, ``where=`` :func:`where_condition`.
    """
    from psycopg import sql

    conditions: list[sql.Composable] = []
    box = bbox_condition(info, request)
    if box is not None:
        conditions.append(box)
    if request.time is not None:
        conditions.append(time_condition(info, request.time))
    where = request.options.get("where")
    if where is not None:
        conditions.append(where_condition(info, where))
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join([sql.Identifier(name) for name, _ in column_types(entries)]),
        backend.identifier(table),
    )
    if conditions:
        query = sql.SQL("{} WHERE {}").format(query, sql.SQL(" AND ").join(conditions))
    return sql.SQL("{} ORDER BY {}").format(query, sql.Identifier(info["row_id"]))


def bbox_condition(info: Mapping[str, Any], request: OpenRequest) -> sql.Composable | None:
    """``geom && envelope AND ST_Intersects(geom, envelope)`` on the active geometry; ``None`` without bbox.

    The envelope is the request's bbox in the geometry's CRS (:meth:`OpenRequest.bbox_in`).
    """
    from psycopg import sql

    active = active_entry(info)
    box = request.bbox_in(entry_crs(active))
    if box is None:
        return None
    geom = sql.Identifier(active["column"])
    envelope = sql.SQL("ST_MakeEnvelope({}, {}, {}, {}, {})").format(
        *(sql.Literal(float(v)) for v in box), sql.Literal(int(active["srid"]))
    )
    return sql.SQL("{g} && {e} AND ST_Intersects({g}, {e})").format(g=geom, e=envelope)


def time_condition(
    info: Mapping[str, Any], time: tuple[Any, Any], entry: Mapping[str, Any] | None = None
) -> sql.Composable:
    """Rows whose time column lies in ``time`` (inclusive naive-UTC bounds, ``None`` open).

    The column is ``entry`` (a column entry of ``info``), by default the first datetime
    column. Time zone-aware columns compare in UTC; a column with a nanosecond companion
    compares ``(microseconds, rest)`` pairs, so the bounds are exact to the nanosecond.

    Raises
    ------
    OptionError
        When the layer has no datetime column.
    """
    from psycopg import sql

    entry = time_entry(info) if entry is None else entry
    if entry is None:
        raise OptionError(
            "time= filters rows on the layer's first datetime column, and this layer has none; "
            "open it without time= (or filter with where=)"
        )
    parts = [
        _compare(entry, op, bound)
        for op, bound in zip((">=", "<="), time, strict=True) if bound is not None
    ]
    return sql.SQL(" AND ").join(parts) if parts else sql.SQL("true")


def _compare(entry: Mapping[str, Any], op: str, bound: Any) -> sql.Composable:
    import pandas as pd
    from psycopg import sql

    stamp = pd.Timestamp(bound)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    rest = stamp.nanosecond
    micro: dt.datetime = stamp.floor("us").to_pydatetime()
    if entry["type"] == "timestamptz":
        micro = micro.replace(tzinfo=dt.UTC)
    column = sql.Identifier(entry["column"])
    if entry.get("ns_column"):
        return sql.SQL("({}, COALESCE({}, 0)) {} ({}, {})").format(
            column, sql.Identifier(entry["ns_column"]), sql.SQL(op), sql.Literal(micro), sql.Literal(rest)
        )
    if rest and op == ">=":
        op = ">"  # stored values are whole microseconds
    return sql.SQL("{} {} {}").format(column, sql.SQL(op), sql.Literal(micro))


def where_condition(info: Mapping[str, Any], where: Any) -> sql.Composable:
    """The ``where=`` filter: a mapping ``{column: value}`` or a :class:`psycopg.sql.Composable`.

    In a mapping, a value tests equality, ``None`` tests ``IS NULL`` and a list, tuple
    or set tests membership; conditions are joined with ``AND``.

    Raises
    ------
    TypeError
        For anything else (raw SQL strings are refused).
    ValueError
        For an unknown or geometry column.
    """
    from psycopg import sql

    if isinstance(where, sql.Composable):
        return sql.SQL("({})").format(where)
    if not isinstance(where, Mapping):
        raise TypeError(
            "where= takes a mapping {column: value} (equality, None for IS NULL, a list for "
            "membership) or a psycopg.sql.Composable built with sql.Identifier/sql.Literal; "
            f"raw SQL strings are refused, got {type(where).__name__}"
        )
    columns = {e["name"]: e for e in info["columns"]}
    parts: list[sql.Composable] = []
    for name, value in where.items():
        entry = columns.get(str(name))
        if entry is None:
            raise ValueError(f"where=: unknown column {name!r}; stored columns: {list(columns)}")
        if entry.get("geometry"):
            raise ValueError(f"where=: {name!r} is a geometry column; use bbox= for spatial filters")
        column = sql.Identifier(entry["column"])
        if value is None:
            parts.append(sql.SQL("{} IS NULL").format(column))
        elif isinstance(value, list | tuple | set | frozenset):
            values = [_literal_value(v) for v in value]
            if not values:
                parts.append(sql.SQL("false"))
            else:
                parts.append(sql.SQL("{} IN ({})").format(
                    column, sql.SQL(", ").join(sql.Literal(v) for v in values)))
        else:
            parts.append(sql.SQL("{} = {}").format(column, sql.Literal(_literal_value(value))))
    return sql.SQL(" AND ").join(parts) if parts else sql.SQL("true")


def _literal_value(value: Any) -> Any:
    import pandas as pd

    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.generic):
        return value.item()
    return value


# -- readers ----------------------------------------------------------------------------


#: Idle ADBC connections (autocommit: they hold no transaction) kept per process and conninfo.
_IDLE: dict[tuple[int, str], list[Any]] = {}
_IDLE_LOCK = threading.Lock()
#: Most idle ADBC connections kept per conninfo.
IDLE_ADBC = 2


def _close_idle() -> None:
    with _IDLE_LOCK:  # a forked child leaves its parent's connections alone
        mine = [key for key in _IDLE if key[0] == os.getpid()]
        idle = [con for key in mine for con in _IDLE.pop(key)]
    for con in idle:
        with contextlib.suppress(Exception):
            con.close()


def _adbc_fetch(con: Any, text: str) -> pa.Table:
    with con.cursor() as cur:
        cur.execute(text)
        return cur.fetch_arrow_table()


def _read_adbc(backend: PostgresBackend, statement: sql.Composed, entries: list[dict[str, Any]]) -> pa.Table:
    """Rows through ADBC on an idle connection of an earlier read when there is one (connecting costs ~40 ms).

    A kept connection that fails (e.g. the server restarted) is closed and the read is
    sent once more on a new one. Connections are kept per process (a forked child
    opens its own).
    """
    import adbc_driver_postgresql.dbapi as adbc

    with backend.connection() as con:
        text = statement.as_string(con)
    key = (os.getpid(), backend.conninfo)
    with _IDLE_LOCK:
        kept = _IDLE.get(key)
        adbc_con = kept.pop() if kept else None
    if adbc_con is not None:
        try:
            table = _adbc_fetch(adbc_con, text)
        except Exception:
            with contextlib.suppress(Exception):
                adbc_con.close()
            adbc_con = None
    if adbc_con is None:
        adbc_con = adbc.connect(backend.conninfo, autocommit=True)
        try:
            table = _adbc_fetch(adbc_con, text)
        except BaseException:
            adbc_con.close()
            raise
    with _IDLE_LOCK:
        if not _IDLE:
            atexit.register(_close_idle)
        kept = _IDLE.setdefault(key, [])
        if len(kept) < IDLE_ADBC:
            kept.append(adbc_con)
            adbc_con = None
    if adbc_con is not None:
        adbc_con.close()
    return table


def _read_psycopg(
    backend: PostgresBackend, statement: sql.Composed, entries: list[dict[str, Any]]
) -> pa.Table:
    import pyarrow as pa

    with backend.connection() as con, con.cursor(binary=True) as cur:
        cur.execute(statement)
        rows = cur.fetchall()
        names = [d.name for d in cur.description or []]
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = []
    for (_, kind), values in zip(column_types(entries), columns, strict=True):
        arrow = pa.binary() if kind.startswith("geometry") else arrow_type(kind)
        arrays.append(pa.array(list(values), type=arrow))
    return pa.Table.from_arrays(arrays, names=names)


_READERS = {"adbc": _read_adbc, "psycopg": _read_psycopg}


def fetch(
    backend: PostgresBackend, statement: sql.Composed, entries: list[dict[str, Any]], engine: str
) -> pa.Table:
    """Rows of ``statement`` (one stored column per entry, in order) as Arrow, read with ``engine``.

    Timestamps read with a nanosecond companion come back joined to it, one column per entry.
    """
    return join_nanoseconds(_READERS[engine](backend, statement, entries), entries)


def _to_geodataframe(
    raw: pa.Table, info: Mapping[str, Any], entries: list[dict[str, Any]]
) -> gpd.GeoDataFrame:
    """The frame of ``raw`` (one column per entry), with the types, index and geometries saved."""
    import pyarrow as pa
    from geopandas.array import from_wkb

    schema = schema_of(info)
    fields = [schema.field(e["name"]) for e in entries]
    arrays = [restore(raw.column(i), f, info) for i, f in enumerate(fields)]
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=schema.metadata))
    geometries = [e for e in entries if e.get("geometry")]
    names = [e["name"] for e in geometries]
    labels = list(table.slice(0, 0).to_pandas().columns)
    order = [str(c) for c in labels]
    plain = table.drop_columns(names)
    frame: pd.DataFrame = object_columns_back(plain.to_pandas(), plain)
    for entry in sorted(geometries, key=lambda e: order.index(e["name"])):
        position = order.index(entry["name"])
        wkb = np.asarray(table.column(entry["name"]).combine_chunks(), dtype=object)
        frame.insert(position, labels[position], from_wkb(wkb, crs=entry_crs(entry)))
    if info.get("type") == "GeoSeries":
        return gpd.GeoDataFrame(frame, geometry="geometry")
    active = active_entry(info)["name"]
    return gpd.GeoDataFrame(frame, geometry=next(c for c in frame.columns if str(c) == active))
