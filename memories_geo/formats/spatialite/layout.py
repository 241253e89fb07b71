"""The layout of a stored SpatiaLite table: a frame turned into SQLite columns and rows, and the ``info``.

``info`` (the version's ``object_info``, also kept in the backend's registry) holds the
Arrow schema the frame was saved with and one entry per column: its name in the
frame, its SQLite column name, declared type and storage kind, and for geometries the
full CRS (PROJJSON), SRID, SpatiaLite type and dimension, and the companion column of
exact WKB for the geometries SpatiaLite cannot hold as they are (empty geometries and
geometry collections).

Storage per Arrow type: booleans and integers as ``INTEGER``, floats as ``REAL``, text
as ``TEXT``, bytes as ``BLOB``, dates as ISO ``DATE`` text, timestamps as ISO
``DATETIME`` text in UTC with trailing zeros of the fraction removed (so text order is
time order, and nanoseconds are kept), categoricals as their values (the categories are
kept in ``info``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np

from memories_geo.backends.postgres.names import short_hash
from memories_geo.errors import UnsupportedObjectError
from memories_geo.formats._vector import plain_table
from memories_geo.formats.postgis.geometry import summarize
from memories_geo.formats.postgis.layout import schema_of
from memories_geo.formats.postgis.types import b64encode, serialize_array

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ROW_ID", "Prepared", "from_stored", "geometry_type", "storage_of", "time_entry", "to_stored"]

#: Name of the row-id column (``INTEGER PRIMARY KEY``: the table's rowid).
ROW_ID = "mg_row"

_GEOMETRY_TYPES = {
    "Point": "POINT", "LineString": "LINESTRING", "Polygon": "POLYGON", "MultiPoint": "MULTIPOINT",
    "MultiLineString": "MULTILINESTRING", "MultiPolygon": "MULTIPOLYGON",
    "GeometryCollection": "GEOMETRYCOLLECTION",
}


def storage_of(field: pa.Field) -> tuple[str, str]:
    """Declared SQLite type and storage kind of an Arrow field.

    Raises
    ------
    UnsupportedObjectError
        For a type this format does not store (durations, lists, decimals...).
    """
    import pyarrow as pa

    t = field.type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_boolean(t):
        return "BOOLEAN", "bool"
    if pa.types.is_integer(t):
        return "INTEGER", "int"
    if pa.types.is_floating(t):
        return "REAL", "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return "TEXT", "text"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "BLOB", "blob"
    if pa.types.is_date32(t):
        return "DATE", "date"
    if pa.types.is_timestamp(t):
        return "DATETIME", "timestamp"
    raise UnsupportedObjectError(
        f"column {field.name!r} has Arrow type {field.type}, which format 'spatialite' does not store; "
        "convert it (e.g. to str or a number) first"
    )


def to_stored(array: pa.Array, kind: str, name: str) -> list[Any]:
    """Values of ``array`` as SQLite stores them (a list, ``None`` for nulls)."""
    import pyarrow as pa

    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    if pa.types.is_null(array.type):
        return [None] * len(array)
    if kind == "bool":
        return array.cast(pa.int8()).to_pylist()
    if kind == "int":
        if array.type == pa.uint64() and len(array) and (pa.compute.max(array).as_py() or 0) > 2**63 - 1:
            raise UnsupportedObjectError(f"column {name!r} holds uint64 values above 2**63-1, beyond SQLite")
        return array.cast(pa.int64()).to_pylist()
    if kind == "float":
        return array.cast(pa.float64()).to_pylist()
    if kind == "date":
        return array.cast(pa.string()).to_pylist()
    if kind == "timestamp":
        return timestamps_to_text(array)
    return array.to_pylist()


def timestamps_to_text(array: pa.Array) -> list[Any]:
    """ISO text (UTC for zone-aware times) of a timestamp array, fraction without trailing zeros."""
    import pyarrow as pa

    unit = array.type.unit
    valid = np.asarray(array.is_valid())
    values = array.cast(pa.int64()).fill_null(0).to_numpy().astype(f"datetime64[{unit}]")
    text = np.datetime_as_string(values, unit=unit)
    if unit != "s":
        text = np.char.rstrip(np.char.rstrip(text, "0"), ".")
    out: list[Any] = text.tolist()
    for i in np.flatnonzero(~valid):
        out[i] = None
    return out


def from_stored(values: list[Any], entry: Mapping[str, Any], field: pa.Field) -> pa.Array:
    """An Arrow array of the stored type of ``entry`` from the values SQLite returned."""
    import pyarrow as pa

    kind = entry["kind"]
    target = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
    if pa.types.is_null(target):
        return pa.nulls(len(values))
    if kind == "bool":
        return pa.array(values, type=pa.int64()).cast(pa.bool_())
    if kind == "int":
        return pa.array(values, type=pa.int64())
    if kind == "float":
        return pa.array(values, type=pa.float64())
    if kind == "date":
        return pa.array(values, type=pa.string()).cast(pa.date32())
    if kind == "timestamp":
        mask = np.array([v is None for v in values], dtype=bool)
        parsed = np.array(["NaT" if v is None else v for v in values], dtype=f"datetime64[{target.unit}]")
        stamps = pa.array(parsed.astype(np.int64), type=pa.int64(), mask=mask)
        return stamps.cast(pa.timestamp(target.unit, tz=target.tz))
    if kind == "blob":
        return pa.array(values, type=pa.binary())
    return pa.array(values, type=pa.string())


def geometry_type(summary: Mapping[str, Any]) -> tuple[str, str]:
    """SpatiaLite geometry type and dimension of a column with this type summary.

    Examples
    --------
    >>> geometry_type({"types": ["Point"], "z": "all"})
    ('POINT', 'XYZ')
    >>> geometry_type({"types": ["Point", "Polygon"], "z": "none"})
    ('GEOMETRY', 'XY')
    """
    types = summary["types"]
    kind = _GEOMETRY_TYPES[types[0]] if len(types) == 1 else "GEOMETRY"
    return kind, "XYZ" if summary["z"] == "all" else "XY"


def _geometry_column(name: str, used: set[str]) -> str:
    """A lower-case name without quotes (as SpatiaLite's metadata requires) for a geometry column."""
    base = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "geom"
    column = base if base == name else f"{base}_{short_hash(name, 6)}"
    while column.lower() in used:
        column += "_"
    return column


class Prepared:
    """A frame turned into what gets inserted, plus the ``info`` that rebuilds it.

    Parameters
    ----------
    frame : geopandas.GeoDataFrame
        The layer (every geometry column with a CRS).
    base : dict
        What :func:`memories_geo.formats._vector.as_frame` recorded (type, names).

    Raises
    ------
    UnsupportedObjectError
        For duplicate column names, a geometry column without CRS, or a column type
        this format does not store.
    """

    def __init__(self, frame: gpd.GeoDataFrame, base: dict[str, Any]) -> None:
        import pyarrow as pa
        import shapely

        self.frame = frame
        plain = plain_table(frame, "spatialite", store="SQLite", keep_attrs=True)
        table, fields, geometry_fields = plain.table, plain.fields, plain.geometry_fields
        used = {ROW_ID}
        columns, dictionaries, self.values = [], {}, []
        for i, field in enumerate(fields):
            if i in geometry_fields:
                continue
            column = field.name if "\x00" not in field.name else field.name.replace("\x00", "_")
            while column.lower() in used:
                column += "_"
            used.add(column.lower())
            declared, kind = storage_of(field)
            columns.append({"name": field.name, "column": column, "type": declared, "kind": kind})
            self.values.append(to_stored(table.column(i).combine_chunks(), kind, field.name))
            if pa.types.is_dictionary(field.type):
                chunks = table.column(i).chunks
                dictionary = chunks[0].dictionary if chunks else pa.array([], field.type.value_type)
                dictionaries[field.name] = serialize_array(dictionary)
        self.geometries: list[tuple[dict[str, Any], list[Any], list[Any] | None]] = []
        for i in sorted(geometry_fields):
            name = fields[i].name
            series, values = plain.geometry(name)
            column = _geometry_column(name, used)
            used.add(column.lower())
            summary = summarize(values)
            kind, dims = geometry_type(summary)
            entry: dict[str, Any] = {
                "name": name, "column": column, "geometry": True, "crs": series.crs.to_json(),
                "summary": summary, "type": kind, "dims": dims,
            }
            present = ~shapely.is_missing(values)
            special = present & (shapely.is_empty(values) | (shapely.get_type_id(values) == 7))
            wkb = shapely.to_wkb(values, flavor="iso", output_dimension=3)
            shown = wkb
            if summary["z"] == "mixed":  # an XY column: 3D geometries are shown flat, kept exact aside
                special |= present & shapely.has_z(values)
                shown = shapely.to_wkb(shapely.force_2d(values), flavor="iso")
            plain_wkb: list[Any] = list(np.where(present & ~shapely.is_empty(values), shown, None))
            exact: list[Any] | None = None
            if special.any():
                exact_column = f"{column}_exact"
                while exact_column.lower() in used:
                    exact_column += "_"
                used.add(exact_column.lower())
                entry["exact_column"] = exact_column
                exact = list(np.where(special, wkb, None))
            columns.append(entry)
            self.geometries.append((entry, plain_wkb, exact))
        order = {f.name: k for k, f in enumerate(fields)}
        columns.sort(key=lambda e: order[e["name"]])
        self.info: dict[str, Any] = {
            **base,
            "schema": b64encode(plain.schema.serialize().to_pybytes()),
            "dictionaries": dictionaries,
            "columns": columns,
            "row_id": ROW_ID,
            "rows": len(frame),
        }


def time_entry(info: Mapping[str, Any]) -> dict[str, Any] | None:
    """Entry of the first datetime column that is not part of the index (``None`` if none)."""
    import json

    meta = json.loads((schema_of(info).metadata or {}).get(b"pandas", b"{}"))
    index = {i for i in meta.get("index_columns", []) if isinstance(i, str)}
    for entry in info["columns"]:
        if not entry.get("geometry") and entry["name"] not in index and entry["kind"] == "timestamp":
            return dict(entry)
    return None
