"""The layout of a stored table: a frame turned into loadable columns, and the ``info`` describing it.

``info`` (the version's ``object_info``, also kept in the backend's registry) holds the
Arrow schema the frame was saved with, and one entry per column: its name in the frame,
its PostgreSQL column name and type, and for geometries the CRS, SRID and type summary.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np

from memories_geo.backends.postgres import safe_identifier
from memories_geo.errors import UnsupportedObjectError
from memories_geo.formats._vector import plain_table
from memories_geo.formats.postgis.geometry import ewkb, merge_summaries, summarize
from memories_geo.formats.postgis.types import (
    TIME_TYPES,
    b64decode,
    b64encode,
    has_sub_microseconds,
    pg_type,
    serialize_array,
    split_nanoseconds,
    stored_columns,
    to_load_type,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import pyproj

__all__ = [
    "ROW_ID",
    "Prepared",
    "active_entry",
    "check_append",
    "entry_crs",
    "index_fields",
    "schema_of",
    "time_entry",
]

#: Name of the row-id column (a free variant is used when the layer has one of its own).
ROW_ID = "mg_row"

_CHUNK_ROWS = 1 << 17


class Prepared:
    """A frame turned into what gets loaded, plus the ``info`` that rebuilds it.

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
        PostgreSQL cannot hold.
    """

    def __init__(self, frame: gpd.GeoDataFrame, base: dict[str, Any]) -> None:
        import pyarrow as pa

        self.frame = frame
        plain = plain_table(frame, "postgis", store="PostGIS")
        table, fields, geometry_fields = plain.table, plain.fields, plain.geometry_fields
        names = {f.name for f in fields}
        row_id = ROW_ID
        while row_id in names:
            row_id = f"_{row_id}"
        reserved = frozenset({ROW_ID, row_id})
        used: set[str] = set()

        def free_identifier(base: str, also_taken: frozenset[str] = frozenset()) -> str:
            name = safe_identifier(base, reserved=reserved)
            while name in used or name in also_taken:
                name = safe_identifier(name + "_", reserved=reserved)
            used.add(name)
            return name

        columns, dictionaries = [], {}
        for i, field in enumerate(fields):
            column = free_identifier(field.name)
            entry: dict[str, Any] = {"name": field.name, "column": column}
            if i in geometry_fields:
                series, values = plain.geometry(field.name)
                entry.update(geometry=True, crs=series.crs.to_json(), summary=summarize(values))
            else:
                entry["type"] = pg_type(field, field.name)[0]
                if has_sub_microseconds(table.column(i)):
                    entry["ns_column"] = free_identifier(f"{column}.ns", also_taken=frozenset(names))
                if pa.types.is_dictionary(field.type):
                    chunks = table.column(i).chunks
                    dictionary = chunks[0].dictionary if chunks else pa.array([], field.type.value_type)
                    dictionaries[field.name] = serialize_array(dictionary)
            columns.append(entry)
        self.table = table
        self.info: dict[str, Any] = {
            **base,
            "schema": b64encode(plain.schema.serialize().to_pybytes()),
            "dictionaries": dictionaries,
            "columns": columns,
            "row_id": row_id,
            "rows": len(frame),
        }

    def load_table(self, srids: Mapping[str, int], first_row: int) -> pa.Table:
        """Arrow table in the stored column order and types, geometries as EWKB."""
        import pyarrow as pa

        names, batches = self.load_batches(srids, first_row)
        chunks = list(batches)
        if not chunks:
            return pa.Table.from_batches([], schema=self.load_schema(names))
        return pa.Table.from_batches(chunks)

    def load_schema(self, names: list[str]) -> pa.Schema:
        """Arrow schema of :meth:`load_batches` (row id, then the stored columns)."""
        import pyarrow as pa

        types: list[Any] = [pa.int64()]
        for i, entry in enumerate(self.info["columns"]):
            if entry.get("geometry"):
                types.append(pa.binary())
                continue
            types.append(pg_type(self.table.schema.field(i), entry["name"])[1])
            if entry.get("ns_column"):
                types.append(pa.int16())
        return pa.schema([pa.field(n, t) for n, t in zip(names, types, strict=True)])

    def load_batches(
        self, srids: Mapping[str, int], first_row: int, chunk_rows: int = _CHUNK_ROWS
    ) -> tuple[list[str], Iterator[pa.RecordBatch]]:
        """Column names and record batches of what gets loaded, built chunk by chunk.

        Attribute columns are cast (and so checked) before this returns; the EWKB of
        each chunk of geometries is made when its batch is asked for.
        """
        names, (batches,) = self.load_parts(srids, first_row, [0, len(self.frame)], chunk_rows)
        return names, batches

    def load_parts(
        self, srids: Mapping[str, int], first_row: int, bounds: Sequence[int], chunk_rows: int = _CHUNK_ROWS
    ) -> tuple[list[str], list[Iterator[pa.RecordBatch]]]:
        """Like :meth:`load_batches`, with one batch iterator per row range ``bounds[i]:bounds[i + 1]``.

        ``bounds`` are positions in the frame; row ids start at ``first_row``.
        """
        import pyarrow as pa

        names = stored_columns(self.info)
        columns: list[Any] = []
        for i, entry in enumerate(self.info["columns"]):
            if entry.get("geometry"):
                gname = next(c for c in self.frame.columns if str(c) == entry["name"])
                columns.append((np.asarray(self.frame[gname].values._data), srids[entry["name"]]))
                continue
            field = self.table.schema.field(i)
            target = pg_type(field, field.name)[1]
            if entry.get("ns_column"):
                columns.extend(split_nanoseconds(self.table.column(i).combine_chunks(), target))
            else:
                columns.append(to_load_type(self.table.column(i), target, field.name).combine_chunks())

        def batches(first: int, end: int) -> Iterator[pa.RecordBatch]:
            for start in range(first, end, chunk_rows):
                stop = min(end, start + chunk_rows)
                arrays = [pa.array(np.arange(first_row + start, first_row + stop, dtype=np.int64))]
                for column in columns:
                    if isinstance(column, tuple):
                        arrays.append(ewkb(column[0][start:stop], column[1]))
                    else:
                        arrays.append(column.slice(start, stop - start))
                yield pa.RecordBatch.from_arrays(arrays, names=names)

        return names, [batches(a, b) for a, b in itertools.pairwise(bounds)]


# -- reading info -----------------------------------------------------------------------


def schema_of(info: Mapping[str, Any]) -> pa.Schema:
    """The Arrow schema the layer was saved with (geometries as binary)."""
    import pyarrow as pa

    return pa.ipc.read_schema(pa.py_buffer(b64decode(info["schema"])))


def _pandas_meta(schema: pa.Schema) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(b"pandas")
    return json.loads(raw) if raw else {}


def index_fields(info: Mapping[str, Any]) -> set[str]:
    """Names of the stored columns that hold the frame's index."""
    meta = _pandas_meta(schema_of(info))
    return {i for i in meta.get("index_columns", []) if isinstance(i, str)}


def entry_crs(entry: Mapping[str, Any]) -> pyproj.CRS:
    """CRS of a geometry column entry."""
    import pyproj

    return pyproj.CRS.from_json(entry["crs"])


def active_entry(info: Mapping[str, Any]) -> dict[str, Any]:
    """Entry of the active geometry column."""
    name = "geometry" if info.get("type") == "GeoSeries" else str(info.get("geometry"))
    return next(e for e in info["columns"] if e.get("geometry") and e["name"] == name)


def time_entry(info: Mapping[str, Any]) -> dict[str, Any] | None:
    """Entry of the first datetime column (not the index), as ``vector_footprint`` picks it.

    ``None`` when the layer has no datetime column.
    """
    meta = _pandas_meta(schema_of(info))
    numpy_types = {c.get("field_name"): str(c.get("numpy_type", "")) for c in meta.get("columns", [])}
    index = {i for i in meta.get("index_columns", []) if isinstance(i, str)}
    for entry in info["columns"]:
        if entry.get("geometry") or entry["name"] in index or entry["type"] not in TIME_TYPES:
            continue
        if numpy_types.get(entry["name"], "datetime64").startswith("datetime64"):
            return dict(entry)
    return None


# -- appending ------------------------------------------------------------------------------


def check_append(previous: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Info of previous + new rows, after checking the new rows fit the stored layer.

    Raises
    ------
    UnsupportedObjectError
        When the new rows' columns, index, types, categories, geometry column or
        CRS differ from the stored layer's (the message says how to make them fit).
    """
    old_schema, new_schema = schema_of(previous), schema_of(new)
    old_names = [f.name for f in old_schema]
    new_names = [f.name for f in new_schema]
    old_meta = _pandas_meta(old_schema)
    if previous.get("geometry") != new.get("geometry"):
        raise UnsupportedObjectError(
            f"cannot append: the stored layer's geometry column is {previous.get('geometry')!r}, the new "
            f"rows' is {new.get('geometry')!r}; rename it with "
            f"gdf.rename_geometry({previous.get('geometry')!r})"
        )
    if old_names != new_names or index_fields(previous) != index_fields(new):
        missing = [c for c in old_names if c not in new_names]
        extra = [c for c in new_names if c not in old_names]
        raise UnsupportedObjectError(
            f"cannot append: columns differ from the stored layer (missing: {missing}, unexpected: {extra}); "
            f"appended rows need exactly the columns {old_names} and the same kind of index"
        )
    geometries = {e["name"] for e in previous["columns"] if e.get("geometry")}
    changed = [
        f"{a.name!r}: {a.type} + {b.type}" for a, b in zip(old_schema, new_schema, strict=True)
        if a.type != b.type and a.name not in geometries
    ]
    if changed or previous.get("dictionaries") != new.get("dictionaries"):
        raise UnsupportedObjectError(
            f"cannot append: column types would change ({', '.join(changed) or 'categories differ'}); "
            "cast the new rows to the stored types first (gdf.astype(...))"
        )
    columns = []
    for old, fresh in zip(previous["columns"], new["columns"], strict=True):
        entry = dict(old)
        if old.get("geometry"):
            a, b = entry_crs(old), entry_crs(fresh)
            if not a.equals(b, ignore_axis_order=True):
                raise UnsupportedObjectError(
                    f"cannot append rows in CRS {b.to_string()!r} to a layer stored in {a.to_string()!r}; "
                    "reproject them first with gdf.to_crs(...)"
                )
            entry["summary"] = merge_summaries(old["summary"], fresh["summary"], new["rows"])
        elif fresh.get("ns_column") and not old.get("ns_column"):
            entry["ns_column"] = fresh["ns_column"]  # the older rows' rest is NULL, read as 0
        columns.append(entry)
    rows = previous["rows"] + new["rows"]
    schema = old_schema
    ranges = [i for i in old_meta.get("index_columns", []) if isinstance(i, dict)]
    if ranges and new["rows"]:
        (rng,) = ranges
        meta = {**old_meta, "index_columns": [{**rng, "stop": rng["start"] + rng["step"] * rows}]}
        metadata = {**(old_schema.metadata or {}), b"pandas": json.dumps(meta).encode()}
        schema = old_schema.with_metadata(metadata)
    encoded = b64encode(schema.serialize().to_pybytes())
    return {**previous, "columns": columns, "rows": rows, "schema": encoded}
