"""Reading a version table: the SELECT with columns, bbox, time and where= pushed down, and the frame.

Names are quoted identifiers taken from the stored layout, values are always bound
parameters: nothing a caller passes is pasted into SQL text. ``bbox=`` reads the R*Tree
spatial index (``idx_<table>_<column>``) first, then tests ``ST_Intersects``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np

from memories_geo.backends.sqlite import quote
from memories_geo.errors import OptionError
from memories_geo.formats._vector import series_name
from memories_geo.formats.postgis.layout import active_entry, entry_crs, schema_of
from memories_geo.formats.postgis.query import selected_entries
from memories_geo.formats.postgis.types import object_columns_back, restore
from memories_geo.formats.spatialite.layout import from_stored, time_entry, to_stored

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from memories_geo.backends.sqlite import SQLiteBackend
    from memories_geo.query import OpenRequest

__all__ = ["read", "select_statement", "time_text"]


def time_text(bound: Any) -> str:
    """A time bound as the text timestamps are stored as (naive UTC, fraction without trailing zeros).

    Examples
    --------
    >>> time_text("2024-01-01T12:00:00.500+01:00")
    '2024-01-01T11:00:00.5'
    """
    import pandas as pd

    stamp = pd.Timestamp(bound)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    text = str(np.datetime_as_string(np.datetime64(stamp.value, "ns"), unit="ns"))
    return text.rstrip("0").rstrip(".")


def select_statement(
    table: str, info: Mapping[str, Any], entries: list[dict[str, Any]], request: OpenRequest
) -> tuple[str, list[Any]]:
    """``SELECT`` of ``entries`` from ``table`` with the request's filters, by row id, and its parameters.

    Raises
    ------
    OptionError
        For ``time=`` on a layer without datetime column.
    TypeError, ValueError
        For a ``where=`` that is not a mapping, or names an unknown or geometry column.
    """
    selected = []
    for entry in entries:
        if entry.get("geometry"):
            geometry = f"AsBinary({quote(entry['column'])})"
            if entry.get("exact_column"):
                geometry = f"COALESCE({quote(entry['exact_column'])}, {geometry})"
            selected.append(geometry)
        else:
            selected.append(quote(entry["column"]))
    conditions: list[str] = []
    params: list[Any] = []
    box = request.bbox_in(entry_crs(active_entry(info))) if request.bbox is not None else None
    if box is not None:
        active = active_entry(info)
        minx, miny, maxx, maxy = (float(v) for v in box)
        index = quote(f"idx_{table}_{active['column']}")
        conditions.append(
            f"{quote(info['row_id'])} IN (SELECT pkid FROM {index} WHERE xmin <= ? AND xmax >= ? "  # noqa: S608
            f"AND ymin <= ? AND ymax >= ?) "
            f"AND ST_Intersects({quote(active['column'])}, BuildMbr(?, ?, ?, ?, ?)) = 1"
        )
        params += [maxx, minx, maxy, miny, minx, miny, maxx, maxy, int(active["srid"])]
    if request.time is not None:
        timed = time_entry(info)
        if timed is None:
            raise OptionError(
                "time= filters rows on the layer's first datetime column, and this layer has none; "
                "open it without time= (or filter with where=)"
            )
        for op, bound in zip((">=", "<="), request.time, strict=True):
            if bound is not None:
                conditions.append(f"{quote(timed['column'])} {op} ?")
                params.append(time_text(bound))
    where = request.options.get("where")
    if where is not None:
        condition, values = _where(info, where)
        conditions.append(condition)
        params += values
    statement = f"SELECT {', '.join(selected)} FROM {quote(table)}"  # noqa: S608
    if conditions:
        statement += " WHERE " + " AND ".join(f"({c})" for c in conditions)
    return statement + f" ORDER BY {quote(info['row_id'])}", params


def _stored_value(field: pa.Field, kind: str, value: Any) -> Any:
    import pyarrow as pa

    target = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
    if isinstance(value, np.generic):
        value = value.item()
    return to_stored(pa.array([value], type=target), kind, field.name)[0]


def _where(info: Mapping[str, Any], where: Any) -> tuple[str, list[Any]]:
    if not isinstance(where, Mapping):
        raise TypeError(
            "where= takes a mapping {column: value} (equality, None for IS NULL, a list for membership); "
            f"raw SQL strings are refused, got {type(where).__name__}"
        )
    schema = schema_of(info)
    columns = {e["name"]: e for e in info["columns"]}
    parts: list[str] = []
    params: list[Any] = []
    for name, value in where.items():
        entry = columns.get(str(name))
        if entry is None:
            raise ValueError(f"where=: unknown column {name!r}; stored columns: {list(columns)}")
        if entry.get("geometry"):
            raise ValueError(f"where=: {name!r} is a geometry column; use bbox= for spatial filters")
        column, field = quote(entry["column"]), schema.field(entry["name"])
        if value is None:
            parts.append(f"{column} IS NULL")
        elif isinstance(value, list | tuple | set | frozenset):
            values = [_stored_value(field, entry["kind"], v) for v in value]
            parts.append(f"{column} IN ({', '.join('?' * len(values))})" if values else "0")
            params += values
        else:
            parts.append(f"{column} = ?")
            params.append(_stored_value(field, entry["kind"], value))
    return " AND ".join(parts) or "1", params


def read(
    backend: SQLiteBackend, table: str, info: Mapping[str, Any], request: OpenRequest
) -> gpd.GeoDataFrame | gpd.GeoSeries:
    """Rows of ``table`` matching ``request``, as the type that was saved, in stored order.

    Raises
    ------
    OptionError
        For ``columns=`` on a stored GeoSeries, or ``time=`` on a layer without a
        datetime column.
    """
    is_series = info.get("type") == "GeoSeries"
    if is_series and request.columns is not None:
        raise OptionError("columns= does not apply to a stored GeoSeries (it has one column, its geometry)")
    entries = selected_entries(info, request.columns)
    statement, params = select_statement(table, info, entries, request)
    with backend.connection(write=False) as con:
        rows = con.execute(statement, params).fetchall()
    gdf = _to_geodataframe(rows, info, entries)
    if is_series:
        return gdf.geometry.rename(series_name(info.get("name")))
    return gdf


def _to_geodataframe(
    rows: list[tuple[Any, ...]], info: Mapping[str, Any], entries: list[dict[str, Any]]
) -> Any:
    """The frame of ``rows`` (one value per entry), with the types, index and geometries saved."""
    import pyarrow as pa
    from geopandas.array import from_wkb

    schema = schema_of(info)
    fields = [schema.field(e["name"]) for e in entries]
    values = list(zip(*rows, strict=True)) if rows else [() for _ in entries]
    arrays = []
    for entry, field, column in zip(entries, fields, values, strict=True):
        if entry.get("geometry"):
            arrays.append(pa.array(list(column), type=pa.binary()))
        else:
            stored = pa.chunked_array([from_stored(list(column), entry, field)])
            arrays.append(restore(stored, field, info))
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
