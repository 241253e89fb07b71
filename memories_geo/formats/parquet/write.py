"""Writing a new version: rows sorted by (partition, time, station), one file per partition."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from memories_geo.crs import crs_to_string
from memories_geo.footprint import Footprint, bbox_to_wgs84
from memories_geo.formats.parquet.files import COMMON_METADATA, write_files, write_index
from memories_geo.formats.parquet.frame import describe, to_arrow
from memories_geo.formats.parquet.layout import (
    contiguous_partitions,
    partition_codes,
    ranked,
    row_order,
    rows_in_order,
    station_in_order,
    time_ints,
)
from memories_geo.integrity import FileDigest, Manifest, stat_fingerprint

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from memories_geo.backends.base import Location
    from memories_geo.formats.parquet.options import WriteSettings

__all__ = ["Rows", "arrow_rows", "footprint", "lay_out", "manifest_of", "summary", "write_new", "write_rows"]


@dataclass(frozen=True)
class Rows:
    """Rows ready to be written: a sorted Arrow table and where each partition starts and ends.

    Attributes
    ----------
    table : pyarrow.Table
        The fields stored in the files (index fields and the row field included, real
        partition columns left out), sorted by (partition, time, station).
    bounds : list of (int, int)
        Row range of each partition in ``table``.
    partitions : list of dict
        Partition values of each range.

    Examples
    --------
    >>> rows = lay_out(arrow_rows(frame, info), info)  # doctest: +SKIP
    >>> rows.bounds, rows.partitions  # doctest: +SKIP
    ([(0, 1460), (1460, 2920)], [{'year': 2023}, {'year': 2024}])
    """

    table: Any
    bounds: list[tuple[int, int]]
    partitions: list[dict[str, Any]]


def arrow_rows(frame: pd.DataFrame, info: Mapping[str, Any], schema: pa.Schema | None = None) -> pa.Table:
    """``frame`` as an Arrow table; with ``schema`` (a stored version's), cast to the stored types.

    Raises
    ------
    UnsupportedObjectError
        When the rows do not convert to the stored fields and types.

    Examples
    --------
    >>> arrow_rows(frame, info).column_names  # doctest: +SKIP
    ['time', 'station', 'value']
    """
    table = to_arrow(frame, info)
    if schema is None:
        return table
    from memories_geo.errors import UnsupportedObjectError

    wanted = schema.remove(schema.get_field_index(info["row_field"]))
    if table.schema.names != wanted.names:
        raise UnsupportedObjectError(
            f"cannot append: the stored fields are {wanted.names}, the new rows give {table.schema.names}"
        )
    try:
        return table.cast(wanted.remove_metadata()).replace_schema_metadata(schema.metadata)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise UnsupportedObjectError(
            f"cannot append: the new rows do not convert to the stored column types ({exc}); "
            "cast them to the stored dtypes first"
        ) from exc


def lay_out(table: pa.Table, info: Mapping[str, Any], positions: np.ndarray | None = None) -> Rows:
    """Sort ``table`` by (partition, time, station); its rows get ``positions`` (default 0, 1, ...).

    Examples
    --------
    >>> lay_out(arrow_rows(frame, info), info).partitions  # doctest: +SKIP
    [{'year': 2023}, {'year': 2024}]
    """
    import pyarrow as pa

    times = time_ints(table.column(info["time"]["field"]))
    station = info["station"]
    real = [c for c in info["partition_cols"] if c not in info["derived"]]
    in_order = None if real else rows_in_order(
        times, station_in_order(table.column(station)) if station is not None else None)
    runs = contiguous_partitions(table.column(info["time"]["field"]), times,
                                 list(info["partition_cols"])) if in_order else None
    if runs is not None:
        if positions is None:
            positions = np.arange(table.num_rows, dtype=np.int64)
        table = table.append_column(pa.field(info["row_field"], pa.int64()), pa.array(positions))
        return Rows(table, runs[0], runs[1])
    parts, partitions = partition_codes(table, info, times)
    if station is None:
        order = row_order(parts, times, None)
    else:
        column = table.column(station)
        order = row_order(parts, times, station_in_order(column), lambda: ranked(column)[0])
    table = table.drop_columns(real) if real else table
    if order is not None:
        table = table.take(pa.array(order))
        positions = order if positions is None else positions[order]
    elif positions is None:
        positions = np.arange(table.num_rows, dtype=np.int64)
    table = table.append_column(pa.field(info["row_field"], pa.int64()), pa.array(positions))
    edges = np.concatenate([[0], np.cumsum(np.bincount(parts, minlength=len(partitions)))])
    bounds = [(int(edges[i]), int(edges[i + 1])) for i in range(len(partitions))]
    return Rows(table, bounds, partitions)


def write_rows(location: Location, rows: Rows, info: Mapping[str, Any],
               settings: WriteSettings) -> list[dict[str, Any]]:
    """Write the files of ``rows`` at ``location``; return their index entries.

    Examples
    --------
    >>> [f["rows"] for f in write_rows(location, rows, info, settings)]  # doctest: +SKIP
    [1460, 1460]
    """
    if not rows.table.num_rows:
        return []
    return write_files(location, rows.table, info, bounds=rows.bounds, partitions=rows.partitions,
                       settings=settings)


def manifest_of(location: Location, files: Sequence[Mapping[str, Any]], index: FileDigest) -> Manifest:
    """The version's manifest from the digests taken while writing (nothing is read back).

    Examples
    --------
    >>> sorted(manifest_of(location, entries, digest).files)  # doctest: +SKIP
    ['_common_metadata', 'year=2024/part-3f2a9c1d0e4b.parquet']
    """
    entries = {f["path"]: FileDigest(int(f["size"]), str(f["digest"])) for f in files}
    entries[COMMON_METADATA] = index
    return Manifest(entries, stat=stat_fingerprint(location.fs, location.full_path))


def summary(info: Mapping[str, Any], files: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``info`` with the version's rows, time range and native bbox, from its file index.

    Examples
    --------
    >>> summary(info, entries)["time_range"]  # doctest: +SKIP
    ['2024-01-01T00:00:00.000000', '2024-12-31T18:00:00.000000']
    """
    spans = [f["time"] for f in files if f["time"] is not None]
    boxes = [f["bbox"] for f in files if f["bbox"] is not None]
    rows = sum(int(f["rows"]) for f in files)
    return {
        **info,
        "rows": rows,
        "time_range": [min(s[0] for s in spans), max(s[1] for s in spans)] if spans else None,
        "bbox": [min(b[0] for b in boxes), min(b[1] for b in boxes),
                 max(b[2] for b in boxes), max(b[3] for b in boxes)] if boxes else None,
    }


def footprint(info: Mapping[str, Any]) -> Footprint:
    """Footprint of a version: time range, columns, rows, and the geometry's bbox when there is one.

    Examples
    --------
    >>> footprint(info).shape  # doctest: +SKIP
    {'rows': 2920}
    """
    import pandas as pd

    native = tuple(info["bbox"]) if info.get("bbox") else None
    span = info.get("time_range")
    return Footprint(
        bbox=bbox_to_wgs84(native, info["crs"]) if native and info.get("crs") else None,
        native_bbox=native,
        crs=info.get("crs"),
        time_start=pd.Timestamp(span[0]) if span else None,
        time_end=pd.Timestamp(span[1]) if span else None,
        variables=tuple(c for c in info["columns"] if c != info["geometry"]),
        shape={"rows": int(info["rows"])},
    )


def write_new(frame: pd.DataFrame, location: Location,
              settings: WriteSettings) -> tuple[Footprint, dict[str, Any], Manifest]:
    """Write ``frame`` as a new version at ``location``.

    Returns
    -------
    footprint : Footprint
    object_info : dict
        See :func:`memories_geo.formats.parquet.frame.describe`, plus ``crs``,
        ``covering``, ``rows``, ``next_row``, ``time_range`` and ``bbox``.
    manifest : Manifest

    Examples
    --------
    >>> footprint, info, manifest = write_new(frame, location, settings)  # doctest: +SKIP
    >>> info["partition_cols"]  # doctest: +SKIP
    ['year']
    """
    import pyarrow as pa

    info = describe(frame, settings)
    info["crs"] = crs_to_string(frame.crs) if info["geometry"] is not None else None
    table = arrow_rows(frame, info)
    info["covering"] = _covering(table)
    schema = table.schema.append(pa.field(info["row_field"], pa.int64()))
    rows = lay_out(table, info)
    del table
    files = write_rows(location, rows, info, settings)
    info = summary({**info, "next_row": len(frame)}, files)
    digest = write_index(location, schema, info, files)
    return footprint(info), info, manifest_of(location, files, digest)


def _covering(table: pa.Table) -> str | None:
    import json

    from memories_geo.formats.geoparquet.metadata import covering_column

    metadata = table.schema.metadata or {}
    return covering_column(json.loads(metadata[b"geo"])) if b"geo" in metadata else None
