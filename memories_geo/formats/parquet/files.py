"""The files of a version: Parquet files hashed while written, and the version's file index.

A version is a directory of Hive-style partitions (``year=2024/variable=t2m/part-<token>.parquet``)
plus ``_common_metadata``: the Arrow schema of the full table (the Dask/Spark convention)
whose key-value metadata :data:`INDEX_KEY` holds the ``object_info`` and lists every data
file with its rows, time range, partition values, bounding box, size and digest. Reads
prune files from that index without opening them; appends carry the listed files and
their digests into the next version without reading them.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import xxhash

from memories_geo.errors import FormatError
from memories_geo.formats.parquet.layout import iso_time, partition_dir
from memories_geo.integrity import FileDigest, hash_bytes

if TYPE_CHECKING:
    import pyarrow as pa
    from fsspec import AbstractFileSystem

    from memories_geo.backends.base import Location
    from memories_geo.formats.parquet.options import WriteSettings

__all__ = [
    "COMMON_METADATA",
    "INDEX_KEY",
    "StoredIndex",
    "column_encodings",
    "read_index",
    "write_files",
    "write_index",
]

#: File holding the version's schema and file index.
COMMON_METADATA = "_common_metadata"
#: Key of the file index in the schema metadata of :data:`COMMON_METADATA`.
INDEX_KEY = b"memories_geo"
#: Files written at once.
_WRITERS = 4
#: Rows sampled to choose each column's encoding.
_SAMPLE = 65_536


@dataclass(frozen=True)
class StoredIndex:
    """What ``_common_metadata`` says about a version.

    Attributes
    ----------
    schema : pyarrow.Schema
        The full table (partition columns and the row field included), with its pandas
        and ``geo`` metadata.
    info : dict
        The version's ``object_info``.
    files : list of dict
        One entry per data file: ``path`` (relative to the version), ``rows``,
        ``first_row``, ``time`` (``[start, end]`` as naive UTC ISO, or ``None``),
        ``partition`` (column -> value), ``bbox`` (or ``None``), ``size`` and ``digest``.

    Examples
    --------
    >>> stored = read_index(location.fs, location.full_path)  # doctest: +SKIP
    >>> [f["path"] for f in stored.files]  # doctest: +SKIP
    ['year=2024/part-3f2a9c1d0e4b.parquet']
    """

    schema: Any
    info: dict[str, Any]
    files: list[dict[str, Any]]


class _DigestingFile:
    """A writable binary file that hashes what goes through it (one pass, no re-read)."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self._hash = xxhash.xxh3_128()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._hash.update(view)
        self.size += view.nbytes
        self._target.write(view)
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._target.flush()

    def close(self) -> None:
        if not self.closed:
            self._target.close()
            self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    @property
    def digest(self) -> FileDigest:
        return FileDigest(self.size, self._hash.hexdigest())


def _open_for_writing(location: Location, relative: str) -> Any:
    path = posixpath.join(location.full_path, relative)
    if location.is_local:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return open(path, "wb")
    return location.fs.open(path, "wb")


def _leaves(schema: pa.Schema) -> list[tuple[str, Any]]:
    """(dotted path, type) of every leaf column."""
    import pyarrow as pa

    leaves: list[tuple[str, Any]] = []

    def visit(prefix: str, kind: Any) -> None:
        if pa.types.is_struct(kind):
            for i in range(kind.num_fields):
                visit(f"{prefix}.{kind.field(i).name}", kind.field(i).type)
        else:
            leaves.append((prefix, kind))

    for field in schema:
        visit(field.name, field.type)
    return leaves


def _leaf_values(table: pa.Table, path: str) -> Any:
    import pyarrow.compute as pc

    top, *rest = path.split(".")
    values = table.column(top)
    for name in rest:
        values = pc.struct_field(values, name)
    return values


def column_encodings(table: pa.Table, row_field: str) -> dict[str, Any]:
    """``use_dictionary`` and ``column_encoding`` keywords suited to each column of ``table``.

    Columns with few distinct values in a sample of the first rows (at most a quarter)
    are dictionary-encoded (stations, variables, repeated times and geometries);
    integers and timestamps with many distinct values (and the row field) are
    delta-encoded; other columns are written plain. A dictionary that mostly distinct
    values would fill is tried and dropped again for every row group, which costs more
    than the whole write of those columns.

    Examples
    --------
    >>> import pyarrow as pa
    >>> table = pa.table({"station": ["a", "b"] * 50, "n": list(range(100)), "_mg_row": list(range(100))})
    >>> column_encodings(table, "_mg_row")["use_dictionary"]
    ['station']
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    sample = table.slice(0, _SAMPLE)
    dictionary, delta = [], {row_field: "DELTA_BINARY_PACKED"}
    for path, kind in _leaves(table.schema):
        if path == row_field or pa.types.is_boolean(kind) or pa.types.is_null(kind):
            continue
        if pa.types.is_dictionary(kind):
            dictionary.append(path)
            continue
        values = _leaf_values(sample, path)
        distinct = pc.count_distinct(values, mode="all").as_py()
        if distinct * 4 <= max(len(values), 1):
            dictionary.append(path)
        elif pa.types.is_integer(kind) or pa.types.is_timestamp(kind):
            delta[path] = "DELTA_BINARY_PACKED"
    return {"use_dictionary": dictionary, "column_encoding": delta}


def _bbox(table: pa.Table, covering: str | None) -> list[float] | None:
    import pyarrow.compute as pc

    if covering is None or covering not in table.column_names or table.num_rows == 0:
        return None
    column = table.column(covering)
    out = []
    for name, pick in (("xmin", "min"), ("ymin", "min"), ("xmax", "max"), ("ymax", "max")):
        value = pc.min_max(pc.struct_field(column, name))[pick].as_py()
        if value is None or not np.isfinite(value):
            return None
        out.append(float(value))
    return out


def _file_metadata(part: pa.Table, covering: str | None) -> dict[bytes, bytes]:
    """Schema metadata of one file: the table's, with the ``geo`` bbox of this file's rows."""
    metadata = dict(part.schema.metadata or {})
    if b"geo" in metadata:
        geo = json.loads(metadata[b"geo"])
        box = _bbox(part, covering)
        column = geo["columns"][geo["primary_column"]]
        if box is not None:
            column["bbox"] = box
        else:
            column.pop("bbox", None)
        metadata[b"geo"] = json.dumps(geo).encode()
    return metadata


def _sorting(leaves: list[str], info: Mapping[str, Any]) -> list[Any]:
    import pyarrow.parquet as pq

    time, station = info["time"]["field"], info["station"]
    keys = [(time, True)]
    if station and station not in info["partition_cols"]:
        keys.append((station, False))
    return [pq.SortingColumn(leaves.index(k), nulls_first=first) for k, first in keys if k in leaves]


def write_files(
    location: Location,
    table: pa.Table,
    info: Mapping[str, Any],
    *,
    bounds: Sequence[tuple[int, int]],
    partitions: Sequence[Mapping[str, Any]],
    settings: WriteSettings,
) -> list[dict[str, Any]]:
    """Write one file per partition (rows ``bounds[i]`` of the sorted ``table``); return index entries.

    The real partition columns are left out of the files if ``table`` has them (their
    values are in the directory names and the index).

    Examples
    --------
    >>> entries = write_files(location, rows.table, info, bounds=rows.bounds,
    ...                       partitions=rows.partitions, settings=settings)  # doctest: +SKIP
    >>> entries[0]["path"]  # doctest: +SKIP
    'year=2024/part-3f2a9c1d0e4b.parquet'
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    real = [c for c in info["partition_cols"] if c not in info["derived"] and c in table.column_names]
    stored = table.drop_columns(real) if real else table
    row_field, covering = info["row_field"], info.get("covering")
    unit = table.schema.field(info["time"]["field"]).type.unit
    options: dict[str, Any] = {
        **settings.parquet_kwargs(),
        **column_encodings(stored, row_field),
        "sorting_columns": _sorting([p for p, _ in _leaves(stored.schema)], info),
    }
    token = uuid.uuid4().hex[:12]

    def write_one(i: int) -> dict[str, Any]:
        start, stop = bounds[i]
        part = stored.slice(start, stop - start)
        directory = partition_dir(partitions[i])
        name = f"part-{token}.parquet"
        relative = posixpath.join(directory, name) if directory else name
        target = _DigestingFile(_open_for_writing(location, relative))
        try:
            schema = part.schema.with_metadata(_file_metadata(part, covering))
            with pq.ParquetWriter(target, schema, **options) as writer:
                writer.write_table(part, row_group_size=settings.row_group_size)
        finally:
            target.close()
        span = pc.min_max(part.column(info["time"]["field"]))
        return {
            "path": relative,
            "rows": part.num_rows,
            "first_row": int(pc.min(part.column(row_field)).as_py()),
            "time": None if span["min"].value is None
            else [iso_time(span["min"].value, unit), iso_time(span["max"].value, unit)],
            "partition": dict(partitions[i]),
            "bbox": _bbox(part, covering),
            "size": target.digest.size,
            "digest": target.digest.digest,
        }

    work = [i for i, (start, stop) in enumerate(bounds) if stop > start]
    if len(work) <= 1:
        return [write_one(i) for i in work]
    with ThreadPoolExecutor(max_workers=min(_WRITERS, len(work))) as pool:
        return list(pool.map(write_one, work))


def write_index(location: Location, schema: pa.Schema, info: Mapping[str, Any],
                files: Sequence[Mapping[str, Any]]) -> FileDigest:
    """Write ``_common_metadata`` (schema, ``object_info`` and file index); return its digest.

    Examples
    --------
    >>> write_index(location, schema, info, entries).size  # doctest: +SKIP
    2214
    """
    import pyarrow.parquet as pq

    metadata = dict(schema.metadata or {})
    metadata[INDEX_KEY] = json.dumps({"info": info, "files": list(files)}, separators=(",", ":")).encode()
    buffer = io.BytesIO()
    pq.write_metadata(schema.with_metadata(metadata), buffer)
    data = buffer.getvalue()
    path = posixpath.join(location.full_path, COMMON_METADATA)
    if location.is_local:
        os.makedirs(location.full_path, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    else:
        location.fs.pipe_file(path, data)
    return FileDigest(len(data), hash_bytes(data))


def read_index(fs: AbstractFileSystem, root: str) -> StoredIndex:
    """Read what :func:`write_index` stored for the version at ``root`` on ``fs``.

    Raises
    ------
    FormatError
        When the version has no readable ``_common_metadata`` with a file index.

    Examples
    --------
    >>> read_index(location.fs, location.full_path).info["type"]  # doctest: +SKIP
    'DataFrame'
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = posixpath.join(root, COMMON_METADATA)
    try:
        data = fs.cat_file(path)
        schema = pq.read_schema(pa.BufferReader(data))
    except (OSError, pa.ArrowException) as exc:
        raise FormatError(f"{root}: cannot read the time-series index {COMMON_METADATA} ({exc})") from exc
    metadata = dict(schema.metadata or {})
    if INDEX_KEY not in metadata:
        raise FormatError(f"{path} has no memories_geo file index")
    stored = json.loads(metadata.pop(INDEX_KEY))
    return StoredIndex(schema=schema.with_metadata(metadata), info=stored["info"], files=stored["files"])
