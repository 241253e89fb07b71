"""PostGIS: vector layers as PostgreSQL tables, with a stable view named after the key.

Each version is its own table (see :mod:`memories_geo.backends.postgres` for how it is
named and found). A write:

1. resolves the SRID of every geometry column (its EPSG code, or a row added to
   ``spatial_ref_sys`` for a CRS without one);
2. creates the table, typed ``geometry(<type>[Z], <srid>)`` when a column holds a
   single geometry type, registers it and (``engine="psycopg"``, the default) loads
   the rows, in one transaction: a binary ``COPY ... (FREEZE)`` stream built with
   numpy and Arrow (geometries as EWKB carrying their SRID) and hashed as it is sent.
   That stream is byte for byte what the server's own ``COPY ... TO STDOUT (FORMAT
   binary)`` of the table writes, so its xxh3-128 is the table's checksum; the first
   rows are read back and compared to make sure (else the table is read back whole).
   ``engine="adbc"`` loads with ADBC's Arrow-native ingest in its own transaction.
   A nanosecond timestamp column with sub-microsecond times is stored as microseconds
   plus a ``smallint`` companion column holding the rest, joined back on reading;
3. builds the GiST index of each geometry column and the primary key on the row id
   (a ``bigint`` numbering rows in order) in parallel, reading the table back to
   checksum it alongside when the stream's digest is not used, then runs ``ANALYZE``.

A new table of at least ``2 * PARTITION_MIN_ROWS`` rows is instead partitioned by row
id (the backend's ``load_partitions``, default 2): each partition is created and loaded
with ``COPY ... (FREEZE)`` in its own transaction and indexed, primary-keyed and
analysed on another connection while the next one loads; the parent's partitioned
indexes then attach the partitions' own. The streams are hashed as the one stream the
server writes for the whole table, so the checksum does not depend on the partitioning.

:meth:`PostGISFormat.publish` then points the view named after the key at the new
table, in one transaction. Reading selects from the version table with ``bbox=``,
``columns=`` and ``where=`` pushed down to the server, ordered by row id.
"""

from __future__ import annotations

import base64
import itertools
import json
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

import geopandas as gpd
import numpy as np

from memories_geo.errors import FormatError, UnsupportedObjectError
from memories_geo.footprint import Footprint, bbox_to_wgs84, vector_footprint
from memories_geo.formats._vector import as_frame, check_bbox, check_query, series_name, with_crs
from memories_geo.integrity import FileDigest, Manifest, compare_manifests
from memories_geo.types import Kind

if TYPE_CHECKING:
    import pandas as pd
    import psycopg
    import pyarrow as pa
    from psycopg import sql

    from memories_geo.backends.base import Backend, Location
    from memories_geo.backends.postgres import PostgresBackend
    from memories_geo.formats.base import WriteOptions, WriteResult

__all__ = ["CUSTOM_SRID_START", "ENGINES", "PostGISFormat", "view_name_for"]

#: First SRID used for CRSs without an EPSG code (PostGIS reserves 900000-998999 for users).
CUSTOM_SRID_START = 900_000
_CUSTOM_SRID_END = 998_999

#: Loading / reading paths: ``"adbc"`` (Arrow-native, C++) and ``"psycopg"`` (binary COPY).
#: Saving defaults to ``"psycopg"``, reading to ``"adbc"`` when it is installed.
ENGINES = ("adbc", "psycopg")

#: Name of the row-id column (a free variant is used when the layer has one of its own).
ROW_ID = "mg_row"

#: Fewest rows of a partition: smaller loads go into one plain table.
PARTITION_MIN_ROWS = 250_000

_QUERY_KEYWORDS = ("bbox", "columns", "where", "engine")
_CHUNK_ROWS = 1 << 17
_WKB_TYPES = {
    0: "Point", 1: "LineString", 3: "Polygon", 4: "MultiPoint", 5: "MultiLineString",
    6: "MultiPolygon", 7: "GeometryCollection",
}
_EWKB_SRID_FLAG = 0x20


def view_name_for(key: str) -> str:
    """Name of the stable view of ``key``: the key itself when PostgreSQL can hold it.

    Keys longer than 63 bytes of UTF-8 are cut to their first 50 bytes (on a character
    boundary) followed by ``~`` and 12 hex digits of a hash of the whole key.

    Examples
    --------
    >>> view_name_for("roads/paris")
    'roads/paris'
    """
    from memories_geo.backends.postgres import safe_identifier

    return safe_identifier(key)


def _default_engine() -> str:
    import importlib.util

    return "adbc" if importlib.util.find_spec("adbc_driver_postgresql") else "psycopg"


def _backend(location_or_backend: Any) -> PostgresBackend:
    from memories_geo.backends.postgres import PostgresBackend

    backend = getattr(location_or_backend, "backend", location_or_backend)
    if not isinstance(backend, PostgresBackend):
        raise FormatError(
            f"format 'postgis' stores tables in PostgreSQL; {backend!r} is not a PostgreSQL tier. "
            "Save on a tier whose url is postgresql://..., or choose a file format."
        )
    return backend


# -- objects -> frames ------------------------------------------------------------------






# -- Arrow <-> PostgreSQL types -----------------------------------------------------------


def _pg_type(field: pa.Field, column: str) -> tuple[str, Any]:
    """PostgreSQL type of an Arrow field, and the Arrow type the loader sends."""
    import pyarrow as pa

    t = field.type
    if pa.types.is_dictionary(t):
        return _pg_type(pa.field(field.name, t.value_type), column)
    simple: list[tuple[Any, str, Any]] = [
        (pa.types.is_boolean, "boolean", pa.bool_()),
        (lambda x: x in (pa.int8(), pa.int16(), pa.uint8()), "smallint", pa.int16()),
        (lambda x: x in (pa.int32(), pa.uint16()), "integer", pa.int32()),
        (lambda x: x in (pa.int64(), pa.uint32(), pa.uint64()), "bigint", pa.int64()),
        (lambda x: x in (pa.float16(), pa.float32()), "real", pa.float32()),
        (lambda x: x == pa.float64(), "double precision", pa.float64()),
        (lambda x: pa.types.is_string(x) or pa.types.is_large_string(x) or pa.types.is_null(x),
         "text", pa.string()),
        (lambda x: pa.types.is_binary(x) or pa.types.is_large_binary(x), "bytea", pa.binary()),
        (pa.types.is_date32, "date", pa.date32()),
    ]
    for test, pg, arrow in simple:
        if test(t):
            return pg, arrow
    if pa.types.is_timestamp(t):
        if t.tz is None:
            return "timestamp", pa.timestamp("us")
        return "timestamptz", pa.timestamp("us", tz="UTC")
    raise UnsupportedObjectError(
        f"column {column!r} has Arrow type {t}, which format 'postgis' does not store; "
        "convert it (e.g. to str or a number) first"
    )


def _to_load_type(column: pa.ChunkedArray, target: Any, name: str) -> pa.ChunkedArray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_null(column.type):
        return pa.chunked_array([pa.nulls(len(column), target)], type=target)
    if column.type == pa.uint64() and len(column) and (pc.max(column).as_py() or 0) > 2**63 - 1:
        raise UnsupportedObjectError(f"column {name!r} holds uint64 values above 2**63-1, beyond bigint")
    try:
        return column.cast(target, safe=True)
    except pa.ArrowInvalid as exc:
        raise UnsupportedObjectError(f"column {name!r} cannot be stored as {target}: {exc}") from None


def _has_sub_microseconds(column: pa.ChunkedArray) -> bool:
    """Whether a timestamp column holds times PostgreSQL's microsecond timestamps cannot."""
    import pyarrow as pa

    kind = column.type
    if pa.types.is_dictionary(kind) or not pa.types.is_timestamp(kind) or kind.unit != "ns":
        return False
    values = column.cast(pa.int64()).fill_null(0).to_numpy()
    return bool(len(values)) and bool(np.any(values % 1000))


def _split_nanoseconds(column: pa.Array, target: Any) -> tuple[pa.Array, pa.Array]:
    """A nanosecond timestamp column as microseconds (floored, type ``target``) plus the rest (0-999).

    :func:`_join_nanoseconds` puts them back together exactly.
    """
    import pyarrow as pa

    valid = np.asarray(column.is_valid())
    nanoseconds = column.cast(pa.int64()).fill_null(0).to_numpy()
    micro = np.floor_divide(nanoseconds, 1000)
    rest = (nanoseconds - micro * 1000).astype(np.int16)
    micro_array = pa.array(micro, type=pa.int64(), mask=~valid).cast(target)
    return micro_array, pa.array(rest, type=pa.int16(), mask=~valid)


def _join_nanoseconds(raw: pa.Table, entries: list[dict[str, Any]]) -> pa.Table:
    """One column per entry: timestamps read with a nanosecond companion column are joined to it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not any(e.get("ns_column") for e in entries):
        return raw
    arrays, names, i = [], [], 0
    for entry in entries:
        column, name = raw.column(i), raw.column_names[i]
        i += 1
        if entry.get("ns_column"):
            rest = raw.column(i).cast(pa.int64()).fill_null(0)
            micro = column.cast(pa.timestamp("us", tz=column.type.tz)).cast(pa.int64())
            column = pc.add(pc.multiply(micro, 1000), rest).cast(pa.timestamp("ns", tz=column.type.tz))
            i += 1
        arrays.append(column)
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def _column_types(info: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Stored columns of ``info["columns"]`` (nanosecond companions after their timestamps) and types."""
    result = []
    for entry in info["columns"]:
        result.append((entry["column"], entry["type"]))
        if entry.get("ns_column"):
            result.append((entry["ns_column"], "smallint"))
    return result


def _stored_columns(info: Mapping[str, Any]) -> list[str]:
    """Every column of a version table, in order: the row id, then those of :func:`_column_types`."""
    names = [info["row_id"]]
    for entry in info["columns"]:
        names += [entry["column"], entry["ns_column"]] if entry.get("ns_column") else [entry["column"]]
    return names


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode())


def _serialize_array(array: pa.Array) -> str:
    import pyarrow as pa

    batch = pa.RecordBatch.from_arrays([array], ["values"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return _b64(sink.getvalue().to_pybytes())


def _deserialize_array(text: str) -> pa.Array:
    import pyarrow as pa

    return pa.ipc.open_stream(pa.py_buffer(_unb64(text))).read_all().column(0).combine_chunks()


# -- geometries ------------------------------------------------------------------------


def _geometry_summary(values: np.ndarray) -> dict[str, Any]:
    """Geometry type names and dimensionality of a column (``None`` values ignored)."""
    import shapely

    ids = shapely.get_type_id(values)  # -1 for None
    counts = np.bincount(ids + 1, minlength=len(_WKB_TYPES) + 2)
    present = ids >= 0
    nonempty = present & ~shapely.is_empty(values)
    n_present, n_nonempty = int(present.sum()), int(nonempty.sum())
    n_z = int((shapely.has_z(values) & nonempty).sum())
    return {
        "types": sorted(_WKB_TYPES[i - 1] for i in np.flatnonzero(counts) if i > 0),
        "z": "all" if n_nonempty and n_z == n_nonempty == n_present else ("none" if not n_z else "mixed"),
    }


def _typmod(summary: Mapping[str, Any], srid: int) -> str:
    types = summary["types"]
    base = types[0] if len(types) == 1 else "Geometry"
    if summary["z"] == "mixed":
        return "geometry"
    return f"geometry({base}{'Z' if summary['z'] == 'all' else ''}, {int(srid)})"


def _merge_summaries(a: Mapping[str, Any], b: Mapping[str, Any], b_rows: int) -> dict[str, Any]:
    if not b_rows:
        return dict(a)
    z = a["z"] if a["z"] == b["z"] else "mixed"
    if not a["types"]:
        z = b["z"]
    return {"types": sorted(set(a["types"]) | set(b["types"])), "z": z}


def _ewkb_chunk(values: np.ndarray, srid: int) -> pa.Array:
    import pyarrow as pa
    import shapely

    n = len(values)
    if n and (shapely.get_type_id(values) == 0).all() and not shapely.is_empty(values).any():
        has_z = shapely.has_z(values)
        if has_z.all() or not has_z.any():
            return _ewkb_points(values, srid, bool(has_z.all()))
    wkb = pa.array(shapely.to_wkb(values, byte_order=1, flavor="extended"), type=pa.binary())
    valid = np.asarray(wkb.is_valid())
    offsets = np.frombuffer(wkb.buffers()[1], dtype=np.int32)[wkb.offset: wkb.offset + n + 1].astype(np.int64)
    data = np.frombuffer(wkb.buffers()[2], dtype=np.uint8) if n else np.empty(0, np.uint8)
    lengths = np.diff(offsets)
    new_lengths = lengths + 4 * valid
    new_offsets = np.concatenate([[0], np.cumsum(new_lengths)])
    out = np.empty(int(new_offsets[-1]), dtype=np.uint8)
    total = int(offsets[-1] - offsets[0])
    if total:
        starts = np.repeat(offsets[:-1], lengths)
        position = np.arange(offsets[0], offsets[-1]) - starts
        destination = position + np.repeat(new_offsets[:-1], lengths) + 4 * (position >= 5)
        out[destination] = data[offsets[0]: offsets[-1]]
        heads = new_offsets[:-1][valid]
        out[heads[:, None] + 5 + np.arange(4)] = np.frombuffer(np.uint32(srid).tobytes(), np.uint8)
        out[heads + 4] |= _EWKB_SRID_FLAG
    validity = pa.py_buffer(np.packbits(valid, bitorder="little").tobytes()) if not valid.all() else None
    return pa.Array.from_buffers(
        pa.binary(), n, [validity, pa.py_buffer(new_offsets.astype(np.int32).tobytes()), pa.py_buffer(out)]
    )


def _ewkb_points(values: np.ndarray, srid: int, has_z: bool) -> pa.Array:
    import pyarrow as pa
    import shapely

    coords = shapely.get_coordinates(values, include_z=has_z)
    axes = ["x", "y", "z"] if has_z else ["x", "y"]
    dtype = np.dtype([("order", "u1"), ("type", "<u4"), ("srid", "<u4")] + [(a, "<f8") for a in axes])
    records = np.empty(len(values), dtype=dtype)
    records["order"] = 1
    records["type"] = 0x20000001 | (0x80000000 if has_z else 0)
    records["srid"] = srid
    for i, axis in enumerate(axes):
        records[axis] = coords[:, i]
    width = dtype.itemsize
    offsets = np.arange(0, width * (len(values) + 1), width, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.binary(), len(values), [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(records.tobytes())]
    )


def _srid_for(con: psycopg.Connection[Any], crs: Any) -> int:
    """SRID for ``crs``: its EPSG code when PostGIS knows it, else a custom ``spatial_ref_sys`` row."""
    code = crs.to_epsg(min_confidence=100)
    if code is not None:
        row = con.execute(
            "SELECT srid FROM spatial_ref_sys WHERE srid = %s AND upper(auth_name) = 'EPSG' "
            "AND auth_srid = %s", (code, code)
        ).fetchone()
        if row:
            return int(row[0])
    wkt = crs.to_wkt("WKT1_GDAL") or ""
    if not wkt or len(wkt) > 2048:
        wkt = crs.to_wkt()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proj4 = crs.to_proj4() or ""
    if len(wkt) > 2048 or len(proj4) > 2048:
        raise UnsupportedObjectError(
            f"the CRS {crs.name!r} has no EPSG code and its WKT is longer than spatial_ref_sys "
            "holds (2048 characters); reproject to a CRS with an EPSG code first"
        )
    con.execute("SELECT pg_advisory_xact_lock(%s)", (CUSTOM_SRID_START,))
    row = con.execute(
        "SELECT srid FROM spatial_ref_sys WHERE srid BETWEEN %s AND %s AND srtext = %s ORDER BY srid LIMIT 1",
        (CUSTOM_SRID_START, _CUSTOM_SRID_END, wkt),
    ).fetchone()
    if row:
        return int(row[0])
    (srid,) = con.execute(
        "SELECT COALESCE(MAX(srid) + 1, %s) FROM spatial_ref_sys WHERE srid BETWEEN %s AND %s",
        (CUSTOM_SRID_START, CUSTOM_SRID_START, _CUSTOM_SRID_END),
    ).fetchone() or (CUSTOM_SRID_START,)
    if srid > _CUSTOM_SRID_END:
        raise FormatError("no free SRID left in spatial_ref_sys between 900000 and 998999")
    con.execute(
        "INSERT INTO spatial_ref_sys (srid, auth_name, auth_srid, srtext, proj4text) "
        "VALUES (%s, NULL, NULL, %s, %s)",
        (srid, wkt, proj4),
    )
    return int(srid)


# -- the layout of a stored table --------------------------------------------------------


class _Prepared:
    """A frame turned into what gets loaded, plus the ``info`` that rebuilds it."""

    def __init__(self, frame: gpd.GeoDataFrame, base: dict[str, Any]) -> None:
        import pandas as pd
        import pyarrow as pa

        from memories_geo.backends.postgres import safe_identifier

        self.frame = frame
        geometry_names = [c for c in frame.columns if isinstance(frame[c].dtype, gpd.array.GeometryDtype)]
        if len(set(map(str, frame.columns))) != len(frame.columns):
            raise UnsupportedObjectError("column names must be unique (as strings) to be stored in PostGIS")
        plain = pd.DataFrame(
            {c: (pd.Series([None] * len(frame), index=frame.index, dtype=object)
                 if c in geometry_names else frame[c]) for c in frame.columns},
            index=frame.index,
        )
        plain.columns = frame.columns
        try:
            table = pa.Table.from_pandas(plain, preserve_index=None)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise UnsupportedObjectError(f"format 'postgis' cannot convert this layer: {exc}") from exc
        geometry_fields = {table.schema.get_field_index(str(c)) for c in geometry_names}
        fields = list(table.schema)
        for i in geometry_fields:
            fields[i] = pa.field(fields[i].name, pa.binary())
        schema = pa.schema(fields, metadata=table.schema.metadata)
        taken = frozenset({ROW_ID})
        row_id = ROW_ID
        names = {f.name for f in fields}
        while row_id in names:
            row_id = f"_{row_id}"
        columns, used = [], set()
        reserved = taken | {row_id}

        def free_identifier(base: str, also_taken: frozenset[str] = frozenset()) -> str:
            name = safe_identifier(base, reserved=reserved)
            while name in used or name in also_taken:
                name = safe_identifier(name + "_", reserved=reserved)
            used.add(name)
            return name

        dictionaries = {}
        for i, field in enumerate(fields):
            column = free_identifier(field.name)
            entry: dict[str, Any] = {"name": field.name, "column": column}
            if i in geometry_fields:
                gname = next(c for c in geometry_names if str(c) == field.name)
                values = np.asarray(frame[gname].values._data)
                entry.update(geometry=True, crs=frame[gname].crs.to_json(), summary=_geometry_summary(values))
                if frame[gname].crs is None:
                    raise UnsupportedObjectError(f"geometry column {field.name!r} has no CRS; set one first")
            else:
                entry["type"] = _pg_type(field, field.name)[0]
                if _has_sub_microseconds(table.column(i)):
                    entry["ns_column"] = free_identifier(f"{column}.ns", also_taken=frozenset(names))
                if pa.types.is_dictionary(field.type):
                    chunk = table.column(i).chunks
                    dictionary = chunk[0].dictionary if chunk else pa.array([], field.type.value_type)
                    dictionaries[field.name] = _serialize_array(dictionary)
            columns.append(entry)
        self.table = table
        self.info = {
            **base,
            "schema": _b64(schema.serialize().to_pybytes()),
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
            return pa.Table.from_batches([], schema=self.load_schema(srids, names))
        return pa.Table.from_batches(chunks)

    def load_schema(self, srids: Mapping[str, int], names: list[str]) -> pa.Schema:
        """Arrow schema of :meth:`load_batches` (row id, then the stored columns)."""
        import pyarrow as pa

        types = [pa.int64()] + [
            pa.binary() if e.get("geometry") else _pg_type(self.table.schema.field(i), e["name"])[1]
            for i, e in enumerate(self.info["columns"])
        ]
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

        names = _stored_columns(self.info)
        columns: list[Any] = []
        for i, entry in enumerate(self.info["columns"]):
            if entry.get("geometry"):
                gname = next(c for c in self.frame.columns if str(c) == entry["name"])
                columns.append((np.asarray(self.frame[gname].values._data), srids[entry["name"]]))
                continue
            field = self.table.schema.field(i)
            target = _pg_type(field, field.name)[1]
            if entry.get("ns_column"):
                columns.extend(_split_nanoseconds(self.table.column(i).combine_chunks(), target))
            else:
                columns.append(_to_load_type(self.table.column(i), target, field.name).combine_chunks())

        def batches(first: int, end: int) -> Iterator[pa.RecordBatch]:
            for start in range(first, end, chunk_rows):
                stop = min(end, start + chunk_rows)
                arrays = [pa.array(np.arange(first_row + start, first_row + stop, dtype=np.int64))]
                for column in columns:
                    if isinstance(column, tuple):
                        arrays.append(_ewkb_chunk(column[0][start:stop], column[1]))
                    else:
                        arrays.append(column.slice(start, stop - start))
                yield pa.RecordBatch.from_arrays(arrays, names=names)

        return names, [batches(a, b) for a, b in itertools.pairwise(bounds)]


def _schema(info: Mapping[str, Any]) -> pa.Schema:
    import pyarrow as pa

    return pa.ipc.read_schema(pa.py_buffer(_unb64(info["schema"])))


def _check_append(previous: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Info of previous + new rows, after checking the new rows fit the stored layer."""
    import pyproj

    old_schema, new_schema = _schema(previous), _schema(new)
    old_names = [f.name for f in old_schema]
    new_names = [f.name for f in new_schema]
    old_meta, new_meta = _pandas_meta(old_schema), _pandas_meta(new_schema)
    old_index = [i for i in old_meta.get("index_columns", []) if isinstance(i, str)]
    new_index = [i for i in new_meta.get("index_columns", []) if isinstance(i, str)]
    if previous.get("geometry") != new.get("geometry"):
        raise UnsupportedObjectError(
            f"cannot append: the stored layer's geometry column is {previous.get('geometry')!r}, the new "
            f"rows' is {new.get('geometry')!r}; rename it with "
            f"gdf.rename_geometry({previous.get('geometry')!r})"
        )
    if old_names != new_names or old_index != new_index:
        missing = [c for c in old_names if c not in new_names]
        extra = [c for c in new_names if c not in old_names]
        raise UnsupportedObjectError(
            f"cannot append: columns differ from the stored layer (missing: {missing}, unexpected: {extra}); "
            f"appended rows need exactly the columns {old_names} and the same kind of index"
        )
    changed = [
        f"{a.name!r}: {a.type} + {b.type}" for a, b in zip(old_schema, new_schema, strict=True)
        if a.type != b.type and not (_is_geometry(previous, a.name))
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
            a, b = pyproj.CRS.from_json(old["crs"]), pyproj.CRS.from_json(fresh["crs"])
            if not a.equals(b, ignore_axis_order=True):
                raise UnsupportedObjectError(
                    f"cannot append rows in CRS {b.to_string()!r} to a layer stored in {a.to_string()!r}; "
                    "reproject them first with gdf.to_crs(...)"
                )
            entry["summary"] = _merge_summaries(old["summary"], fresh["summary"], new["rows"])
        elif fresh.get("ns_column") and not old.get("ns_column"):
            entry["ns_column"] = fresh["ns_column"]  # the older rows' rest is NULL, read as 0
        columns.append(entry)
    rows = previous["rows"] + new["rows"]
    schema = old_schema
    ranges = [i for i in old_meta.get("index_columns", []) if isinstance(i, dict)]
    if ranges and new["rows"]:
        meta = dict(old_meta)
        (rng,) = ranges
        rng = {**rng, "stop": rng["start"] + rng["step"] * rows}
        meta["index_columns"] = [rng]
        metadata = {**(old_schema.metadata or {}), b"pandas": json.dumps(meta).encode()}
        schema = old_schema.with_metadata(metadata)
    return {**previous, "columns": columns, "rows": rows, "schema": _b64(schema.serialize().to_pybytes())}


def _pandas_meta(schema: pa.Schema) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(b"pandas")
    return json.loads(raw) if raw else {}


def _is_geometry(info: Mapping[str, Any], name: str) -> bool:
    return any(e["name"] == name and e.get("geometry") for e in info["columns"])


# -- the format ------------------------------------------------------------------------


class PostGISFormat:
    """GeoDataFrames and GeoSeries as PostGIS tables, one table per version.

    Write options (keywords of ``save``): ``engine="psycopg"`` (default: a binary
    ``COPY`` stream built with numpy/Arrow, sent through psycopg) or ``"adbc"``
    (ADBC's Arrow-native ingest). Read options (keywords of ``open``):
    ``bbox=``, ``columns=``, ``where=`` and ``engine=``; see :meth:`open`.

    Examples
    --------
    >>> import memories_geo as mg
    >>> cfg = mg.StorageConfig.from_dict({"tiers": {"warm": {"url": "postgresql://me@db/gis"}}})
    >>> mem = mg.Memory(cfg)  # doctest: +SKIP
    >>> mem.save(gdf, "roads/paris", tier="warm")  # doctest: +SKIP
    >>> mem.open("roads/paris", bbox=(2.2, 48.8, 2.4, 48.9), where={"kind": "primary"})  # doctest: +SKIP
    """

    name: ClassVar[str] = "postgis"
    kinds: ClassVar[frozenset[Kind]] = frozenset({Kind.VECTOR})
    extension: ClassVar[str] = ""

    def can_store(self, obj: Any) -> bool:
        """Whether ``obj`` is a GeoDataFrame or a GeoSeries."""
        return isinstance(obj, gpd.GeoDataFrame | gpd.GeoSeries)

    # -- writing -------------------------------------------------------------------

    def write(self, obj: Any, location: Location, options: WriteOptions) -> WriteResult:
        """Load ``obj`` into a new version table at ``location``.

        Parameters
        ----------
        obj : geopandas.GeoDataFrame or geopandas.GeoSeries
            What to store (not modified).
        location : Location
            A PostgreSQL tier and the logical path of the new version.
        options : WriteOptions
            ``mode="a"`` copies the rows of ``options.previous`` server-side first;
            ``options.extra`` may hold ``engine=``.

        Returns
        -------
        WriteResult
            Manifest (one pseudo-file: the table), footprint and ``object_info``.
        """
        from psycopg import sql

        from memories_geo.backends.postgres import REGISTRY_TABLE, table_name_for
        from memories_geo.formats.base import WriteResult

        backend = _backend(location)
        extra = dict(options.extra)
        engine = extra.pop("engine", None) or "psycopg"
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if extra:
            raise TypeError(f"unknown keyword(s) {sorted(extra)} for format 'postgis'; valid: ['engine']")
        frame, base = as_frame(obj, self.name)
        frame = with_crs(frame, options.crs, kind=base["type"])
        prepared = _Prepared(frame, base)
        info = prepared.info
        previous_table = None
        first_row = 1
        if options.mode == "a" and options.previous is not None:
            previous_info = backend.info_for(options.previous.path)
            previous_table = backend.table_for(options.previous.path)
            if previous_info is None or previous_table is None:
                raise FormatError(f"cannot append: the stored table of {options.previous.url} is missing")
            info = _check_append(previous_info, info)
            first_row = previous_info["rows"] + 1
        table = table_name_for(location.path)
        target = backend.identifier(table)
        row_id = sql.Identifier(info["row_id"])
        # A new table loaded by our own COPY stream: created, registered and loaded in one
        # transaction (so COPY FREEZE applies), with the checksum computed from what was sent.
        # A large one is split into partitions by row id, each loaded in its own transaction
        # and indexed while the next one loads.
        streamed = engine == "psycopg" and previous_table is None
        bounds = _partition_bounds(len(frame), backend.load_partitions) if streamed else [0, len(frame)]
        partitioned = len(bounds) > 2
        sent: FileDigest | None = None
        with backend.connection() as con:
            srids = {
                e["name"]: _srid_for(con, _crs(e)) for e in info["columns"] if e.get("geometry")
            }
            for e in info["columns"]:
                if e.get("geometry"):
                    e["srid"] = srids[e["name"]]
                    e["type"] = _typmod(e["summary"], e["srid"])
            if partitioned:
                info["partitions"] = [_partition_name(table, i) for i in range(len(bounds) - 1)]
            definitions = [sql.SQL("{} bigint NOT NULL").format(row_id)] + [
                sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))
                for name, kind in _column_types(info)
            ]
            layout = sql.SQL(" PARTITION BY RANGE ({})").format(row_id) if partitioned else sql.SQL("")
            con.execute(sql.SQL("CREATE TABLE {} ({}){}").format(
                target, sql.SQL(", ").join(definitions), layout
            ))
            con.execute(
                sql.SQL("INSERT INTO {} (path, table_name, key, info) VALUES (%s, %s, %s, %s)").format(
                    backend.identifier(REGISTRY_TABLE)
                ),
                (location.path, table, location.path.split("/@v/", 1)[0], json.dumps(info)),
            )
            if streamed and not partitioned:
                digest = _StreamDigest()
                names, (batches,) = prepared.load_parts(srids, first_row, bounds)
                _copy_in(con, backend, table, names, batches, len(frame), digest, freeze=True)
                if _stream_matches_server(con, backend, table, info["row_id"], bytes(digest.head)):
                    sent = digest.finish()
        if partitioned:
            manifest, footprint = self._load_partitions(backend, table, info, prepared, srids, bounds)
            return WriteResult(manifest=manifest, footprint=footprint, object_info=info)
        if previous_table is not None:
            with backend.connection() as con:
                copied = sql.SQL(", ").join(sql.Identifier(c) for c in _stored_columns(previous_info))
                con.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ORDER BY {}").format(
                    target, copied, copied, backend.identifier(previous_table), row_id
                ))
        if len(frame) and not streamed:
            _LOADERS[engine](backend, table, prepared, srids, first_row)
        if previous_table is None:
            # The footprint is computed here while the server builds the indexes.
            with ThreadPoolExecutor(max_workers=1) as pool:
                extent = pool.submit(vector_footprint, frame)
                manifest = self._finish(backend, table, info, sent)
                footprint = extent.result()
        else:
            manifest = self._finish(backend, table, info, sent)
            footprint = self._footprint(backend, table, info, frame)
        return WriteResult(manifest=manifest, footprint=footprint, object_info=info)

    def _finish(
        self, backend: PostgresBackend, table: str, info: Mapping[str, Any], sent: FileDigest | None
    ) -> Manifest:
        """Index (GiST per geometry, primary key on the row id), checksum, then ANALYZE.

        ``sent`` is the digest of the ``COPY`` stream that loaded the table when it is
        known to equal the server's; otherwise the table is read back alongside the index
        builds to checksum it.
        """
        from psycopg import sql

        target = backend.identifier(table)
        row_id = sql.Identifier(info["row_id"])
        pkey = sql.Identifier(f"{table}_pkey")

        def run(statement: sql.Composable) -> None:
            with backend.connection() as con:
                con.execute("SET LOCAL maintenance_work_mem = '256MB'")
                con.execute(statement)

        statements = _gist_indexes(backend, table, info)
        statements.append(sql.SQL("CREATE UNIQUE INDEX {} ON {} ({})").format(pkey, target, row_id))
        workers = max(1, min(len(statements) + (sent is None), backend.pool.max_size))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            digest = pool.submit(_table_digest, backend, table, info) if sent is None else None
            for future in [pool.submit(run, s) for s in statements]:
                future.result()
            name, file_digest = digest.result() if digest is not None else (table, sent)
        with backend.connection() as con:
            con.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY USING INDEX {}").format(
                target, pkey, pkey
            ))
            con.execute(sql.SQL("ANALYZE {}").format(target))
        return Manifest({name: file_digest})

    def _load_partitions(
        self,
        backend: PostgresBackend,
        table: str,
        info: Mapping[str, Any],
        prepared: _Prepared,
        srids: Mapping[str, int],
        bounds: Sequence[int],
    ) -> tuple[Manifest, Footprint]:
        """Load a new partitioned table: each partition is indexed while the next one loads.

        Partition ``i`` holds the rows at positions ``bounds[i]:bounds[i + 1]``; it is
        created and loaded with ``COPY ... (FREEZE)`` in one transaction. The streams
        are hashed as one, in row order, so the checksum is the whole table's.
        """
        from psycopg import sql

        digest = _StreamDigest()
        echoed = False
        names, parts = prepared.load_parts(srids, 1, bounds)
        with ThreadPoolExecutor(max_workers=len(parts) + 1) as pool:
            extent = pool.submit(vector_footprint, prepared.frame)
            indexed = []
            for i, (batches, partition) in enumerate(zip(parts, info["partitions"], strict=True)):
                low, high = 1 + bounds[i], 1 + bounds[i + 1]
                statement = sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})")
                target = backend.identifier(partition)
                with backend.connection() as con:
                    con.execute(statement.format(
                        target, backend.identifier(table), sql.Literal(low), sql.Literal(high)
                    ))
                    _copy_in(con, backend, partition, names, batches, high - low, digest, freeze=True)
                    if i == 0:
                        head = bytes(digest.head)
                        echoed = _stream_matches_server(con, backend, partition, info["row_id"], head)
                indexed.append(pool.submit(_index_partition, backend, partition, info))
            for job in indexed:
                job.result()
            footprint = extent.result()
        manifest = self._finish_partitioned(backend, table, info, digest.finish() if echoed else None)
        return manifest, footprint

    def _finish_partitioned(
        self, backend: PostgresBackend, table: str, info: Mapping[str, Any], sent: FileDigest | None
    ) -> Manifest:
        """Partitioned indexes over the partitions' own (already built), checksum.

        ``CREATE INDEX`` and ``ADD PRIMARY KEY`` on the parent attach the matching index
        of every partition instead of building new ones.
        """
        with backend.connection() as con:
            _create_indexes(con, backend, table, info, primary_key=f"{table}_pkey")
        name, digest = (table, sent) if sent is not None else _table_digest(backend, table, info)
        return Manifest({name: digest})

    def _footprint(
        self, backend: PostgresBackend, table: str, info: Mapping[str, Any], frame: gpd.GeoDataFrame
    ) -> Footprint:
        """Footprint of an appended table, computed by the server."""
        import pyproj
        from psycopg import sql

        active = next(e for e in info["columns"] if e.get("geometry") and e["name"] == _active_name(info))
        fresh = vector_footprint(frame)
        time_column = next(
            (e for e in info["columns"] if e["type"] in ("timestamp", "timestamptz")
             and str(e["name"]) in fresh.variables), None
        )
        geom = sql.Identifier(active["column"])
        parts = [sql.SQL("ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)")]
        if time_column is not None:
            column = sql.Identifier(time_column["column"])
            parts.append(sql.SQL("(SELECT min({c}) FROM {t}), (SELECT max({c}) FROM {t})").format(
                c=column, t=backend.identifier(table)))
        query = sql.SQL("SELECT {} FROM (SELECT ST_Extent({}) AS e FROM {}) AS x").format(
            sql.SQL(", ").join(parts), geom, backend.identifier(table)
        )
        with backend.connection() as con:
            row = con.execute(query).fetchone() or ()
        native = tuple(float(v) for v in row[:4]) if row and row[0] is not None else None
        crs = pyproj.CRS.from_json(active["crs"])
        start, end = (row[4], row[5]) if time_column is not None else (None, None)
        import pandas as pd

        return Footprint(
            bbox=bbox_to_wgs84(native, crs) if native else None,
            native_bbox=native,  # type: ignore[arg-type]
            crs=fresh.crs,
            time_start=pd.Timestamp(start) if start is not None else None,
            time_end=pd.Timestamp(end) if end is not None else None,
            variables=fresh.variables,
            shape={"rows": int(info["rows"])},
        )

    # -- publishing ------------------------------------------------------------------

    def publish(self, location: Location, key: str) -> None:
        """Point the view named after ``key`` at the table of ``location``, atomically.

        ``CREATE OR REPLACE VIEW`` is tried first (it keeps objects that depend on the
        view); when the columns changed, the view is dropped and created again in the
        same transaction, so readers always see one complete version.
        """
        import psycopg
        from psycopg import sql

        from memories_geo.backends.postgres import VIEWS_TABLE

        backend = _backend(location)
        table = backend.table_for(location.path)
        if table is None:
            raise FormatError(f"cannot publish {key!r}: no table is registered at {location.url}")
        view = view_name_for(key)
        views = backend.identifier(VIEWS_TABLE)
        with backend.connection() as con:
            con.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"memories_geo view {view}",))
            owner = con.execute(
                sql.SQL("SELECT key FROM {} WHERE view_name = %s").format(views), (view,)
            ).fetchone()
            existing = con.execute(
                "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s", (backend.schema, view)
            ).fetchone()
            if existing and (owner is None or owner[0] != key or existing[0] != "v"):
                raise FormatError(
                    f"cannot publish {key!r}: {backend.schema}.{view} already exists and is not this key's "
                    "view; rename or drop it, or save under another key"
                )
            body = sql.SQL("SELECT * FROM {}").format(backend.identifier(table))
            target = backend.identifier(view)
            replaced = False
            if existing:
                try:
                    with con.transaction():
                        con.execute(sql.SQL("CREATE OR REPLACE VIEW {} AS {}").format(target, body))
                    replaced = True
                except psycopg.errors.InvalidTableDefinition:
                    replaced = False
                except psycopg.errors.FeatureNotSupported:
                    replaced = False
                if not replaced:
                    con.execute(sql.SQL("DROP VIEW {}").format(target))
            if not replaced:
                con.execute(sql.SQL("CREATE VIEW {} AS {}").format(target, body))
            con.execute(
                sql.SQL(
                    "INSERT INTO {} (key, view_name, path) VALUES (%s, %s, %s) ON CONFLICT (key) "
                    "DO UPDATE SET view_name = excluded.view_name, path = excluded.path, updated_at = now()"
                ).format(views),
                (key, view, location.path),
            )

    def unpublish(self, backend: Backend, key: str) -> None:
        """Drop the view of ``key`` (nothing happens when there is none)."""
        from psycopg import sql

        from memories_geo.backends.postgres import VIEWS_TABLE

        pg = _backend(backend)
        with pg.connection() as con:
            row = con.execute(
                sql.SQL("DELETE FROM {} WHERE key = %s RETURNING view_name").format(
                    pg.identifier(VIEWS_TABLE)
                ),
                (key,),
            ).fetchone()
            if row:
                con.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(pg.identifier(row[0])))

    # -- reading ---------------------------------------------------------------------

    def open(self, location: Location, object_info: Mapping[str, Any], **query: Any) -> Any:
        """Read a stored version back as the type that was saved.

        Parameters
        ----------
        location : Location
            The PostgreSQL tier and the version's logical path.
        object_info : mapping
            What :meth:`write` recorded.
        **query
            ``bbox=(minx, miny, maxx, maxy)`` in the layer's CRS: rows whose active
            geometry intersects the box (``&&`` on the GiST index, then
            ``ST_Intersects``). ``columns=[...]``: columns to read (the active geometry
            is added when no geometry column is listed). ``where=``: a mapping
            ``{column: value}`` (equality; ``None`` tests ``IS NULL``; a list, tuple or
            set tests membership), or a :class:`psycopg.sql.Composable` built with
            ``sql.Identifier`` / ``sql.Literal``. ``engine="adbc"`` or ``"psycopg"``.

        Returns
        -------
        geopandas.GeoDataFrame or geopandas.GeoSeries
            Rows in their stored order. A filtered read of a layer whose index is a
            ``RangeIndex`` numbers its rows from 0, as GeoParquet reads do.
        """
        check_query(query, _QUERY_KEYWORDS, self.name)
        backend = _backend(location)
        is_series = object_info.get("type") == "GeoSeries"
        if is_series and query.get("columns") is not None:
            raise ValueError("columns= does not apply to a stored GeoSeries (it has one column)")
        table = backend.table_for(location.path)
        if table is None:
            raise FormatError(f"the table of {location.url} is missing")
        engine = query.get("engine") or _default_engine()
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        entries = _selected(object_info, query.get("columns"))
        statement = _select(backend, table, object_info, entries, query.get("bbox"), query.get("where"))
        raw = _join_nanoseconds(_READERS[engine](backend, statement, entries), entries)
        gdf = _to_geodataframe(raw, object_info, entries)
        if is_series:
            return gdf.geometry.rename(series_name(object_info.get("name")))
        return gdf

    # -- deleting, checksums ------------------------------------------------------------

    def delete(self, location: Location) -> None:
        """Drop the version table and its registry row; a missing table is fine."""
        _backend(location).remove(location.path)

    def manifest(self, location: Location) -> Manifest:
        """One pseudo-file per table: the table name, with its rows' size and digest."""
        backend = _backend(location)
        table = backend.table_for(location.path)
        info = backend.info_for(location.path)
        if table is None or info is None:
            return Manifest({})
        name, digest = _table_digest(backend, table, info)
        return Manifest({name: digest})

    def verify(self, location: Location, manifest: Manifest) -> list[str]:
        """Recompute the table's digest and compare it with ``manifest``."""
        actual = self.manifest(location)
        if not actual.files:
            return [f"{location.url}: missing (the whole version table is gone)"]
        return compare_manifests(manifest, actual)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} format={self.name!r}>"


def _partition_bounds(rows: int, most: int) -> list[int]:
    """Row positions splitting a load into partitions of at least :data:`PARTITION_MIN_ROWS` rows.

    Examples
    --------
    >>> _partition_bounds(1_000_000, 2)
    [0, 500000, 1000000]
    >>> _partition_bounds(300_000, 2)
    [0, 300000]
    """
    count = max(1, min(most, rows // PARTITION_MIN_ROWS))
    return [rows * i // count for i in range(count + 1)]


def _partition_name(table: str, i: int) -> str:
    """Name of partition ``i`` of ``table`` (at most 59 bytes: its index names stay under 63)."""
    return f"{table}_p{i}"


def _index_partition(backend: PostgresBackend, partition: str, info: Mapping[str, Any]) -> None:
    """GiST index per geometry column, primary key on the row id, then ``ANALYZE``, of one partition."""
    from psycopg import sql

    with backend.connection() as con:
        con.execute("SET LOCAL maintenance_work_mem = '256MB'")
        _create_indexes(con, backend, partition, info, primary_key=f"{partition}_pk")
        con.execute(sql.SQL("ANALYZE {}").format(backend.identifier(partition)))


def _gist_indexes(backend: PostgresBackend, table: str, info: Mapping[str, Any]) -> list[sql.Composed]:
    """``CREATE INDEX`` statements of the GiST index of each geometry column of ``table``."""
    from psycopg import sql

    return [
        sql.SQL("CREATE INDEX {} ON {} USING gist ({})").format(
            sql.Identifier(f"{table}_g{i}"), backend.identifier(table), sql.Identifier(e["column"])
        )
        for i, e in enumerate(info["columns"]) if e.get("geometry")
    ]


def _create_indexes(
    con: psycopg.Connection[Any], backend: PostgresBackend, table: str, info: Mapping[str, Any],
    *, primary_key: str,
) -> None:
    """The GiST indexes, then the primary key on the row id, one after the other on ``con``."""
    from psycopg import sql

    for statement in _gist_indexes(backend, table, info):
        con.execute(statement)
    con.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
        backend.identifier(table), sql.Identifier(primary_key), sql.Identifier(info["row_id"])
    ))


def _crs(entry: Mapping[str, Any]) -> Any:
    import pyproj

    return pyproj.CRS.from_json(entry["crs"])


def _active_name(info: Mapping[str, Any]) -> str:
    return "geometry" if info.get("type") == "GeoSeries" else str(info.get("geometry"))




def _table_digest(backend: PostgresBackend, table: str, info: Mapping[str, Any]) -> tuple[str, FileDigest]:
    """xxh3-128 of the binary ``COPY`` of every row ordered by row id (text in UTF-8), and its length."""
    import xxhash
    from psycopg import sql

    h = xxhash.xxh3_128()
    size = 0
    statement = sql.SQL("COPY (SELECT * FROM {} ORDER BY {}) TO STDOUT (FORMAT binary)").format(
        backend.identifier(table), sql.Identifier(info["row_id"])
    )
    with backend.connection() as con:
        con.execute("SET LOCAL client_encoding TO 'UTF8'")  # text as sent, whatever PGCLIENTENCODING says
        with con.cursor().copy(statement) as copy:
            for block in copy:
                h.update(block)
                size += len(block)
    return table, FileDigest(size, h.hexdigest())


# -- loaders -----------------------------------------------------------------------------


#: Start and end of a PostgreSQL binary ``COPY`` stream (signature, flags, no extension).
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
COPY_TRAILER = b"\xff\xff"
_PG_EPOCH_DAYS = 10_957  # 2000-01-01, PostgreSQL's epoch, in days since 1970-01-01
_PG_EPOCH_US = _PG_EPOCH_DAYS * 86_400 * 1_000_000
#: Valid ranges (since 1970-01-01) of PostgreSQL dates (days) and timestamps (microseconds).
_DATE_RANGE = (-2_451_545 + _PG_EPOCH_DAYS, 2_145_031_949 + _PG_EPOCH_DAYS)
_TIMESTAMP_RANGE = (-211_813_488_000_000_000 + _PG_EPOCH_US, 2**63 - 1)
#: Big-endian layouts of the fixed-width types, by Arrow type of the loaded column.
_FIXED_WIDTH = {
    "bool": ">u1", "int16": ">i2", "int32": ">i4", "int64": ">i8", "float": ">f4", "double": ">f8",
    "date32[day]": ">i4", "timestamp[us]": ">i8", "timestamp[us, tz=UTC]": ">i8",
}
#: Most bytes of one chunk of rows (Arrow binary arrays have 32-bit offsets).
_MAX_CHUNK_BYTES = 1 << 30
#: Stream bytes kept to compare with the server's own ``COPY TO`` of the first rows.
_SPOT_CHECK_BYTES = 1 << 20


def _regular_binary(records: np.ndarray) -> pa.Array:
    """Arrow binary array whose elements are the fixed-size records of ``records``."""
    import pyarrow as pa

    n, width = len(records), records.dtype.itemsize
    offsets = np.arange(0, width * (n + 1), width, dtype=np.int32)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(records)])


def _fixed_values(array: pa.Array, name: str) -> np.ndarray:
    """Values of a fixed-width column as PostgreSQL counts them (nulls as 0)."""
    import pyarrow as pa

    kind = str(array.type)
    if kind == "bool":
        return np.asarray(array.fill_null(False).to_numpy(zero_copy_only=False), dtype=np.uint8)
    if kind == "date32[day]" or kind.startswith("timestamp"):
        days = kind == "date32[day]"
        values = array.cast(pa.int32() if days else pa.int64()).fill_null(0).to_numpy().astype(np.int64)
        low, high = _DATE_RANGE if days else _TIMESTAMP_RANGE
        if len(values) and (values.min() < low or values.max() > high):
            raise UnsupportedObjectError(
                f"column {name!r} holds {'dates' if days else 'times'} outside PostgreSQL's range "
                "(4713 BC to 294276 AD for timestamps, 5874897 AD for dates)"
            )
        return values - (_PG_EPOCH_DAYS if days else _PG_EPOCH_US)
    return array.fill_null(0).to_numpy(zero_copy_only=False)


def _copy_rows(batch: pa.RecordBatch) -> pa.Array:
    """The rows of ``batch`` as PostgreSQL's binary ``COPY`` writes them, one binary element per row.

    A row is its field count (int16) and, per field, its length (int32, -1 for NULL) and
    its bytes: big-endian fixed-width values (dates and timestamps counted from
    2000-01-01), text as UTF-8, bytea and geometries (EWKB) as they are. Runs of
    fixed-width fields are laid out as one numpy structured record per row;
    variable-width fields are Arrow binary arrays; Arrow joins the pieces row by row.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n = batch.num_rows
    pieces: list[pa.Array] = []
    run: list[tuple[np.dtype, Any]] = [(np.dtype(">i2"), batch.num_columns)]

    def flush() -> None:
        if run:
            records = np.empty(n, dtype=[(f"f{i}", d) for i, (d, _) in enumerate(run)])
            for i, (_, value) in enumerate(run):
                records[f"f{i}"] = value
            pieces.append(_regular_binary(records))
            run.clear()

    for name, array in zip(batch.schema.names, batch.columns, strict=True):
        layout = _FIXED_WIDTH.get(str(array.type))
        if layout is not None:
            dtype = np.dtype(layout)
            values = _fixed_values(array, name)
            if not array.null_count:
                run += [(np.dtype(">i4"), dtype.itemsize), (dtype, values)]
                continue
            valid = np.asarray(array.is_valid())
            run.append((np.dtype(">i4"), np.where(valid, dtype.itemsize, -1)))
            flush()
            offsets = np.zeros(n + 1, dtype=np.int32)
            np.cumsum(valid * dtype.itemsize, out=offsets[1:])
            data = values[valid].astype(dtype)
            buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
            pieces.append(pa.Array.from_buffers(pa.binary(), n, buffers))
            continue
        if pa.types.is_string(array.type):
            array = array.cast(pa.binary())
        elif not pa.types.is_binary(array.type):
            raise FormatError(f"column {name!r}: no binary COPY layout for Arrow type {array.type}")
        run.append((np.dtype(">i4"), pc.binary_length(array).fill_null(-1).to_numpy(zero_copy_only=False)))
        flush()
        pieces.append(array.fill_null(b"") if array.null_count else array)
    flush()
    if len(pieces) == 1:
        return pieces[0]
    return pc.binary_join_element_wise(*pieces, b"")


def _copy_chunks(batch: pa.RecordBatch) -> list[pa.Array]:
    """:func:`_copy_rows` of ``batch``, in halves (recursively) while its rows outgrow 32-bit offsets."""
    size = sum(c.nbytes for c in batch.columns) + (2 + 4 * batch.num_columns) * batch.num_rows
    if batch.num_rows > 1 and size >= _MAX_CHUNK_BYTES:
        half = batch.num_rows // 2
        return _copy_chunks(batch.slice(0, half)) + _copy_chunks(batch.slice(half))
    return [_copy_rows(batch)]


def _body(rows: pa.Array) -> memoryview:
    """The bytes of a binary array made by :func:`_copy_rows`, all rows back to back."""
    if not len(rows):
        return memoryview(b"")
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32, count=len(rows) + 1, offset=rows.offset * 4)
    return memoryview(rows.buffers()[2])[int(offsets[0]): int(offsets[-1])]


class _StreamDigest:
    """Size, xxh3-128 and first bytes of a table's binary ``COPY`` form, fed in row order.

    One table may be loaded by several ``COPY`` commands (one per partition); each sends
    its own header and trailer, but the digest covers the single stream the server
    writes for the whole table: one header, every row in order, one trailer.
    """

    def __init__(self) -> None:
        import xxhash

        self._hash = xxhash.xxh3_128()
        self.size = 0
        self.head = bytearray()
        self.update(COPY_HEADER)

    def update(self, block: bytes | memoryview) -> None:
        self._hash.update(block)
        self.size += len(block)
        if len(self.head) < _SPOT_CHECK_BYTES:
            self.head.extend(block[: _SPOT_CHECK_BYTES - len(self.head)])

    def finish(self) -> FileDigest:
        """The digest of the whole stream (call once, after the last rows)."""
        self.update(COPY_TRAILER)
        return FileDigest(self.size, self._hash.hexdigest())


def _send_copy(copy: psycopg.Copy, batches: Iterator[pa.RecordBatch], digest: _StreamDigest) -> None:
    """Write one binary ``COPY`` stream of ``batches``, adding its rows to ``digest``.

    The stream of the next chunk is built in a worker thread while the current one is sent.
    """

    def build() -> list[pa.Array] | None:
        batch = next(batches, None)
        return None if batch is None else _copy_chunks(batch)

    copy.write(COPY_HEADER)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(build)
        while (chunks := pending.result()) is not None:
            pending = pool.submit(build)
            for rows in chunks:
                body = _body(rows)
                digest.update(body)
                copy.write(body)
    copy.write(COPY_TRAILER)


def _copy_in(
    con: psycopg.Connection[Any],
    backend: PostgresBackend,
    table: str,
    names: list[str],
    batches: Iterator[pa.RecordBatch],
    rows: int,
    digest: _StreamDigest,
    *,
    freeze: bool,
) -> None:
    """Load ``batches`` with one binary ``COPY`` on ``con`` (inside its transaction)."""
    from psycopg import sql

    options = sql.SQL("FORMAT binary, FREEZE" if freeze else "FORMAT binary")
    statement = sql.SQL("COPY {} ({}) FROM STDIN ({})").format(
        backend.identifier(table), sql.SQL(", ").join(sql.Identifier(n) for n in names), options
    )
    con.execute("SET LOCAL client_encoding TO 'UTF8'")
    cur = con.cursor()
    with cur.copy(statement) as copy:
        _send_copy(copy, iter(batches), digest)
    if cur.rowcount != rows:
        raise FormatError(f"COPY into {table} loaded {cur.rowcount} rows instead of {rows}")


def _stream_matches_server(
    con: psycopg.Connection[Any], backend: PostgresBackend, table: str, row_id: str, head: bytes
) -> bool:
    """Whether the server writes back exactly the bytes that were sent, on a first sample.

    The digest of a version is defined over the server's own binary ``COPY TO`` output
    (what :meth:`PostGISFormat.verify` recomputes). The stream sent is that output when
    each value's binary form round-trips unchanged, which holds for every type stored
    here (tests/test_postgis.py checks the whole round-trip matrix) provided the server
    converts no text (UTF8 or SQL_ASCII database) and writes little-endian EWKB. This
    checks those conditions, and compares the rows of the table's first two heap pages
    (a TID range scan, PostgreSQL 14+) with the start of the stream.
    """
    from psycopg import sql

    if con.info.parameter_status("server_encoding") not in ("UTF8", "SQL_ASCII"):
        return False
    if con.info.server_version < 140000:
        return False
    (probe,) = con.execute("SELECT geometry_send('SRID=4326;POINT(1 2)'::geometry)").fetchone() or (b"",)
    if bytes(probe)[:1] != b"\x01":
        return False
    statement = sql.SQL(
        "COPY (SELECT * FROM {} WHERE ctid < '(2,0)'::tid ORDER BY {}) TO STDOUT (FORMAT binary)"
    ).format(backend.identifier(table), sql.Identifier(row_id))
    sample = bytearray()
    with con.cursor().copy(statement) as copy:
        for block in copy:
            sample.extend(block)
    if not sample.startswith(COPY_HEADER) or not sample.endswith(COPY_TRAILER):
        return False
    body = bytes(sample[len(COPY_HEADER): -len(COPY_TRAILER)])
    sent = head[len(COPY_HEADER):]
    if not body:
        return not sent
    k = min(len(body), len(sent))
    return body[:k] == sent[:k]


def _load_adbc(backend: PostgresBackend, table: str, prepared: _Prepared, srids: Mapping[str, int],
               first_row: int) -> None:
    import adbc_driver_postgresql.dbapi as adbc

    data = prepared.load_table(srids, first_row)
    with adbc.connect(backend.conninfo) as con:
        with con.cursor() as cur:
            cur.adbc_ingest(table, data, mode="append", db_schema_name=backend.schema)
        con.commit()


def _load_psycopg(backend: PostgresBackend, table: str, prepared: _Prepared, srids: Mapping[str, int],
                  first_row: int) -> None:
    names, batches = prepared.load_batches(srids, first_row)
    with backend.connection() as con:
        _copy_in(con, backend, table, names, batches, len(prepared.frame), _StreamDigest(), freeze=False)


_LOADERS = {"adbc": _load_adbc, "psycopg": _load_psycopg}


# -- reading ----------------------------------------------------------------------------


def _selected(info: Mapping[str, Any], columns: Sequence[str] | None) -> list[dict[str, Any]]:
    """Column entries to read: index columns, then the requested ones (default all)."""
    entries = info["columns"]
    index_names = {i for i in _pandas_meta(_schema(info)).get("index_columns", []) if isinstance(i, str)}
    index = [e for e in entries if e["name"] in index_names]
    by_name = {e["name"]: e for e in entries if e["name"] not in index_names}
    if columns is None:
        return [e for e in entries]
    if isinstance(columns, str):
        raise TypeError("columns= must be a list of column names, not a string")
    unknown = [c for c in columns if str(c) not in by_name]
    if unknown:
        raise ValueError(f"unknown column(s) {unknown}; stored columns: {list(by_name)}")
    chosen = [by_name[str(c)] for c in columns]
    if not any(e.get("geometry") for e in chosen):
        chosen.append(by_name[_active_name(info)])
    return index + chosen


def _select(
    backend: PostgresBackend,
    table: str,
    info: Mapping[str, Any],
    entries: list[dict[str, Any]],
    bbox: Sequence[float] | None,
    where: Any,
) -> sql.Composed:
    from psycopg import sql

    conditions: list[sql.Composable] = []
    if bbox is not None:
        box = check_bbox(bbox)
        active = next(e for e in info["columns"] if e["name"] == _active_name(info))
        geom = sql.Identifier(active["column"])
        envelope = sql.SQL("ST_MakeEnvelope({}, {}, {}, {}, {})").format(
            *(sql.Literal(v) for v in box), sql.Literal(int(active["srid"]))
        )
        conditions.append(sql.SQL("{g} && {e} AND ST_Intersects({g}, {e})").format(g=geom, e=envelope))
    if where is not None:
        conditions.append(_where(info, where))
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(sql.Identifier(name) for name, _ in _column_types({"columns": entries})),
        backend.identifier(table),
    )
    if conditions:
        query = sql.SQL("{} WHERE {}").format(query, sql.SQL(" AND ").join(conditions))
    return sql.SQL("{} ORDER BY {}").format(query, sql.Identifier(info["row_id"]))


def _where(info: Mapping[str, Any], where: Any) -> sql.Composable:
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
    parts = []
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



def _read_adbc(backend: PostgresBackend, statement: sql.Composed, entries: list[dict[str, Any]]) -> pa.Table:
    import adbc_driver_postgresql.dbapi as adbc

    with backend.connection() as con:
        text = statement.as_string(con)
    with adbc.connect(backend.conninfo) as con, con.cursor() as cur:
        cur.execute(text)
        return cur.fetch_arrow_table()


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
    for (_, kind), values in zip(_column_types({"columns": entries}), columns, strict=True):
        arrow = pa.binary() if kind.startswith("geometry") else _arrow_type(kind)
        arrays.append(pa.array(list(values), type=arrow))
    return pa.Table.from_arrays(arrays, names=names)


def _arrow_type(pg_type: str) -> Any:
    import pyarrow as pa

    return {
        "smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64(), "real": pa.float32(),
        "double precision": pa.float64(), "boolean": pa.bool_(), "text": pa.string(),
        "bytea": pa.binary(), "date": pa.date32(), "timestamp": pa.timestamp("us"),
        "timestamptz": pa.timestamp("us", tz="UTC"),
    }[pg_type]

_READERS = {"adbc": _read_adbc, "psycopg": _read_psycopg}


def _restore(column: pa.ChunkedArray, field: pa.Field, info: Mapping[str, Any]) -> pa.ChunkedArray:
    """A column as read from PostgreSQL, cast back to the Arrow type it was saved with."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column.type, pa.ExtensionType):
        column = pa.chunked_array([c.storage for c in column.chunks], type=column.type.storage_type)
    target = field.type
    if pa.types.is_null(target):
        return pa.chunked_array([pa.nulls(len(column))], type=pa.null())
    if pa.types.is_dictionary(target):
        dictionary = _deserialize_array(info["dictionaries"][field.name])
        values = column.combine_chunks().cast(dictionary.type)
        indices = pc.index_in(values, value_set=dictionary).cast(target.index_type)
        array = pa.DictionaryArray.from_arrays(indices, dictionary, ordered=target.ordered)
        return pa.chunked_array([array], type=target)
    if column.type == target:
        return column
    return column.cast(target)


def _to_geodataframe(
    raw: pa.Table, info: Mapping[str, Any], entries: list[dict[str, Any]]
) -> gpd.GeoDataFrame:
    import pyarrow as pa
    from geopandas.array import from_wkb

    schema = _schema(info)
    fields = [schema.field(e["name"]) for e in entries]
    arrays = [_restore(raw.column(i), f, info) for i, f in enumerate(fields)]
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=schema.metadata))
    geometries = [e for e in entries if e.get("geometry")]
    names = [e["name"] for e in geometries]
    order = list(table.slice(0, 0).to_pandas().columns)
    frame: pd.DataFrame = table.drop_columns(names).to_pandas()
    for entry in sorted(geometries, key=lambda e: [str(c) for c in order].index(e["name"])):
        column = next(c for c in order if str(c) == entry["name"])
        wkb = np.asarray(table.column(entry["name"]).combine_chunks(), dtype=object)
        values = from_wkb(wkb, crs=_crs(entry))
        frame.insert([str(c) for c in order].index(entry["name"]), column, values)
    active = _active_name(info)
    if info.get("type") == "GeoSeries":
        active_column: Any = "geometry"
    else:
        active_column = next((c for c in frame.columns if str(c) == active), None)
        if active_column is None:
            active_column = next(c for c in frame.columns if str(c) in names)
    return gpd.GeoDataFrame(frame, geometry=active_column)
