"""GeoParquet 1.1: vector layers as Parquet with a ``bbox`` covering column.

Layers that fit in one row group (:data:`ROW_GROUP_SIZE` rows) are written by
:meth:`geopandas.GeoDataFrame.to_parquet` with ``schema_version="1.1.0"`` and
``write_covering_bbox=True``, byte for byte what :func:`write_settings` describes.

Larger layers get a spatial layout so that ``bbox=`` reads touch only the row groups
they need: rows grouped along a Hilbert curve of their bounding-box centres into row
groups of :data:`ROW_GROUP_SIZE` rows (in their original order inside each group),
point layers in native GeoArrow point encoding (their ``x``/``y`` column statistics
prune row groups, no covering column needed), other
layers in WKB with the covering column, and a hidden column
(:data:`ROW_ORDER_COLUMN`) holding each row's original position so that every read
returns rows in the order they were saved. ``partition_cols=`` writes a directory of
such files, one per partition value.

Reading prunes row groups on the covering column (or point statistics), pushes
``columns=`` and ``filters=`` down to pyarrow, then keeps the geometries that really
intersect the box.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import posixpath
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Literal

import geopandas as gpd
import numpy as np
import pyarrow.parquet as pq

from memories_geo.errors import FormatError, UnsupportedObjectError
from memories_geo.footprint import vector_footprint
from memories_geo.formats._vector import as_frame, check_bbox, check_query, series_name, with_crs
from memories_geo.formats.base import FileFormat, WriteOptions
from memories_geo.types import CompressionLevel, Kind

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from memories_geo.backends.base import Location
    from memories_geo.footprint import Footprint

__all__ = [
    "GEOPARQUET_VERSION",
    "PARQUET_COMPRESSION",
    "ROW_GROUP_SIZE",
    "ROW_ORDER_COLUMN",
    "GeoParquetFormat",
    "covering_column",
    "geo_metadata",
    "hilbert_key",
    "hilbert_order",
    "layout_metadata",
    "read_geoparquet",
    "write_geoparquet",
    "write_settings",
]

#: GeoParquet specification version written.
GEOPARQUET_VERSION = "1.1.0"

#: Compression level -> ``to_parquet`` / ``pyarrow.parquet.write_table`` keywords.
PARQUET_COMPRESSION: dict[CompressionLevel, dict[str, Any]] = {
    CompressionLevel.FAST: {"compression": "zstd", "compression_level": 1},
    CompressionLevel.MEDIUM: {"compression": "zstd", "compression_level": 3},
    CompressionLevel.HIGH: {"compression": "zstd", "compression_level": 9},
    CompressionLevel.MAXIMUM: {"compression": "zstd", "compression_level": 19},
}

#: Name of the covering column, as geopandas writes it.
COVERING_COLUMN = "bbox"

#: Rows per row group of spatially laid-out files; smaller layers are written unsorted.
ROW_GROUP_SIZE = 32_768

#: Name of the hidden column holding each row's original position (renamed on a clash).
ROW_ORDER_COLUMN = "_mg_row"

#: Parquet key-value metadata key describing the memories_geo layout of a file.
LAYOUT_KEY = b"memories_geo"

#: Hilbert curve level of the sort key (a 2**level square grid over the layer's extent).
HILBERT_LEVEL = 16

#: Rows per batch of Hilbert keys: the temporaries stay in cache (3-4x faster than one pass).
_KEY_CHUNK = 65_536

_QUERY_KEYWORDS = ("bbox", "columns", "filters")
_SORTS = ("auto", "hilbert", "none")
_ENCODINGS = ("auto", "WKB", "geoarrow")


def write_settings(
    compression: CompressionLevel | str = CompressionLevel.MEDIUM, **kwargs: Any
) -> dict[str, Any]:
    """Keywords for ``GeoDataFrame.to_parquet`` equivalent to what this format writes.

    Parameters
    ----------
    compression : CompressionLevel or str
        ``"fast"``, ``"medium"``, ``"high"`` or ``"maximum"``.
    **kwargs
        Overrides (e.g. ``row_group_size=``), applied last.

    Returns
    -------
    dict
        ``schema_version``, ``write_covering_bbox``, ``compression`` and
        ``compression_level`` plus the overrides.

    Examples
    --------
    >>> write_settings("high")["compression_level"]
    9
    """
    return {
        "schema_version": GEOPARQUET_VERSION,
        "write_covering_bbox": True,
        **PARQUET_COMPRESSION[CompressionLevel(compression)],
        **kwargs,
    }


def write_geoparquet(
    gdf: gpd.GeoDataFrame,
    path: str,
    *,
    filesystem: AbstractFileSystem | None = None,
    compression: CompressionLevel | str = CompressionLevel.MEDIUM,
    sort: Literal["auto", "hilbert", "none"] = "auto",
    keep_order: bool = True,
    geometry_encoding: Literal["auto", "WKB", "geoarrow"] = "auto",
    row_group_size: int | None = None,
    partition_cols: Sequence[str] | None = None,
    **kwargs: Any,
) -> None:
    """Write ``gdf`` as GeoParquet 1.1 (one file, or a directory with ``partition_cols``).

    When ``gdf`` has a column of its own called ``"bbox"``, the covering column
    gets another name (recorded in the ``geo`` metadata, where readers look it up)
    so the user's column is stored unchanged.

    Parameters
    ----------
    gdf : geopandas.GeoDataFrame
        What to write (its CRS, index and dtypes are kept).
    path : str
        Local path, or a path on ``filesystem``. With ``partition_cols`` it is a
        directory.
    filesystem : fsspec.AbstractFileSystem, optional
        Filesystem holding ``path``; default the local one.
    compression : CompressionLevel or str
        Mapped to zstd levels by :data:`PARQUET_COMPRESSION`.
    sort : {"auto", "hilbert", "none"}
        ``"auto"`` sorts rows along a Hilbert curve when the layer has more rows
        than one row group (sorting a single row group cannot prune anything);
        ``"hilbert"`` always sorts; ``"none"`` never does.
    keep_order : bool
        With a sort, store each row's original position in the hidden column
        :data:`ROW_ORDER_COLUMN` so that reads return the saved order (about
        1 byte per row: inside each row group rows keep their original order,
        so positions are increasing runs). ``False`` saves that space and sorts
        inside row groups too; reads then return rows in the stored (spatial)
        order with their index labels.
    geometry_encoding : {"auto", "WKB", "geoarrow"}
        ``"auto"``: GeoArrow for a sorted layer of points only (all 2D or all
        3D), WKB otherwise. WKB columns get the bbox covering column; GeoArrow
        point columns are pruned on their own ``x``/``y`` statistics.
    row_group_size : int, optional
        Rows per row group of a sorted layer; default :data:`ROW_GROUP_SIZE`.
    partition_cols : sequence of str, optional
        Write a directory with one file per combination of these columns' values,
        ``col=value/part-0.parquet`` (Hive-style names). The partition columns stay
        inside each file, so every file is a complete GeoParquet file.
    **kwargs
        Passed to ``GeoDataFrame.to_parquet`` (and on to
        ``pyarrow.parquet.write_table``), overriding the defaults.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely.geometry import Point
    >>> gdf = gpd.GeoDataFrame({"v": [1]}, geometry=[Point(0, 1)], crs="EPSG:4326")
    >>> write_geoparquet(gdf, "/tmp/points.parquet")  # doctest: +SKIP
    """
    if sort not in _SORTS:
        raise ValueError(f"sort must be one of {_SORTS}, got {sort!r}")
    if geometry_encoding not in _ENCODINGS:
        raise ValueError(f"geometry_encoding must be one of {_ENCODINGS}, got {geometry_encoding!r}")
    if row_group_size is not None and (not isinstance(row_group_size, int) or row_group_size < 1):
        raise ValueError(f"row_group_size must be a positive integer, got {row_group_size!r}")
    group_rows = row_group_size or ROW_GROUP_SIZE
    sorted_layout = sort == "hilbert" or (sort == "auto" and len(gdf) > group_rows)
    if partition_cols:
        _write_partitioned(
            gdf, path, filesystem, list(partition_cols), compression=compression,
            sorted_layout=sorted_layout, geometry_encoding=geometry_encoding,
            row_group_size=group_rows, kwargs=kwargs,
        )
        return
    if sorted_layout:
        table = _layer_table(gdf, sorted_layout=True, geometry_encoding=geometry_encoding)
        table = _arrange(
            table, gdf, np.arange(len(gdf)), sorted_layout=True, keep_order=keep_order,
            row_group_size=group_rows,
        )
        with _open_for_writing(path, filesystem) as target:
            _write_table(table, target, compression, group_rows, kwargs)
        return
    if row_group_size is not None:
        kwargs["row_group_size"] = row_group_size
    if geometry_encoding != "auto":
        kwargs["geometry_encoding"] = geometry_encoding
    settings = write_settings(compression, **kwargs)
    with _open_for_writing(path, filesystem) as target:
        if settings["write_covering_bbox"] and COVERING_COLUMN in gdf.columns:
            _write_with_renamed_covering(gdf, target, settings)
        else:
            gdf.to_parquet(target, **settings)


def hilbert_order(geometry: Any, *, level: int = HILBERT_LEVEL) -> np.ndarray:
    """Row order along a Hilbert curve through the centres of the geometries' bounds.

    The curve spans the extent of the centres on a ``2**level`` square grid. The
    sort is stable (rows in the same cell keep their relative order) and missing
    or empty geometries come last, in their original order.

    Parameters
    ----------
    geometry : geopandas.GeoSeries, GeometryArray or array of shapely geometries
        The geometries.
    level : int
        Grid resolution, 1 to 16.

    Returns
    -------
    numpy.ndarray
        ``int64`` positions: ``geometry[order]`` is sorted.

    Examples
    --------
    >>> import shapely
    >>> hilbert_order(shapely.points([0, 9, 1], [0, 9, 0])).tolist()
    [0, 2, 1]
    """
    import shapely

    if not 1 <= level <= 16:
        raise ValueError(f"level must be between 1 and 16, got {level}")
    geoms = np.asarray(getattr(geometry, "values", geometry), dtype=object)
    bounds = shapely.bounds(geoms)
    return _hilbert_order_of_bounds(
        bounds[:, 0], bounds[:, 1], bounds[:, 2], bounds[:, 3], level=level
    )


def _hilbert_order_of_bounds(
    xmin: np.ndarray, ymin: np.ndarray, xmax: np.ndarray, ymax: np.ndarray, *, level: int
) -> np.ndarray:
    """:func:`hilbert_order` from bounds already computed (``NaN`` for missing or empty)."""
    cx = (xmin + xmax) / 2
    cy = (ymin + ymax) / 2
    valid = np.isfinite(cx) & np.isfinite(cy)
    present = np.flatnonzero(valid)
    side = (1 << level) - 1
    gx, gy = _to_grid(cx[present], side), _to_grid(cy[present], side)
    keys = np.empty(len(present), dtype=np.uint32)
    for start in range(0, len(present), _KEY_CHUNK):
        part = slice(start, start + _KEY_CHUNK)
        keys[part] = hilbert_key(gx[part], gy[part], level=level)
    return np.concatenate([present[_stable_argsort_u32(keys)], np.flatnonzero(~valid)])


def _to_grid(values: np.ndarray, side: int) -> np.ndarray:
    if len(values) == 0:
        return np.zeros(0, dtype=np.uint32)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(len(values), dtype=np.uint32)
    scaled = (values - low) * (side / (high - low))
    return np.clip(scaled, 0, side).astype(np.uint32)


def hilbert_key(x: np.ndarray, y: np.ndarray, *, level: int = 16) -> np.ndarray:
    """Distance along the Hilbert curve of integer cells ``(x, y)`` of a ``2**level`` grid.

    Branch-free and vectorised (the bit-parallel method of rawrunprotected's
    "2D Hilbert curves in O(1)"): a fixed number of array operations whatever the level.

    Parameters
    ----------
    x, y : array of int
        Cell coordinates in ``[0, 2**level)``.
    level : int
        Grid resolution, 1 to 16.

    Returns
    -------
    numpy.ndarray
        ``uint32`` distances in ``[0, 4**level)``.

    Examples
    --------
    >>> hilbert_key(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 0]), level=1).tolist()
    [0, 1, 2, 3]
    """
    shift = 16 - level
    x = np.asarray(x, dtype=np.uint32) << shift
    y = np.asarray(y, dtype=np.uint32) << shift
    full = np.uint32(0xFFFF)
    a = x ^ y
    b = full ^ a
    c = full ^ (x | y)
    d = x & (y ^ full)
    a, b, c, d = (
        a | (b >> 1),
        (a >> 1) ^ a,
        ((c >> 1) ^ (b & (d >> 1))) ^ c,
        ((a & (c >> 1)) ^ (d >> 1)) ^ d,
    )
    for step in (2, 4, 8):
        a, b, c, d = (
            (a & (a >> step)) ^ (b & (b >> step)),
            (a & (b >> step)) ^ (b & ((a ^ b) >> step)),
            c ^ (a & (c >> step)) ^ (b & (d >> step)),
            d ^ (b & (c >> step)) ^ ((a ^ b) & (d >> step)),
        )
    a = c ^ (c >> 1)
    b = d ^ (d >> 1)
    i0 = x ^ y
    i1 = b | (full ^ (i0 | a))
    key = (_spread_bits(i1) << 1) | _spread_bits(i0)
    return key >> np.uint32(2 * shift)


def _spread_bits(v: np.ndarray) -> np.ndarray:
    """Put the 16 low bits of ``v`` on the even bit positions of a ``uint32``."""
    v = (v | (v << 8)) & np.uint32(0x00FF00FF)
    v = (v | (v << 4)) & np.uint32(0x0F0F0F0F)
    v = (v | (v << 2)) & np.uint32(0x33333333)
    return (v | (v << 1)) & np.uint32(0x55555555)


def _stable_argsort_u32(keys: np.ndarray) -> np.ndarray:
    """Stable argsort of ``uint32`` keys as two 16-bit radix passes."""
    low = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    high = (keys[low] >> 16).astype(np.uint16)
    return low[np.argsort(high, kind="stable")].astype(np.int64)


def _is_point_layer(geoms: Any) -> bool:
    """Whether every present geometry is a Point, all 2D or all 3D (GeoArrow point encoding)."""
    import shapely

    data = np.asarray(geoms, dtype=object)
    types = shapely.get_type_id(data)
    present = types >= 0
    if not present.any() or not (types[present] == 0).all():
        return False
    has_z = shapely.has_z(data)  # False for missing and empty points
    if not has_z.any():
        return True
    return bool(has_z[present & ~shapely.is_empty(data)].all())


def _layer_table(gdf: gpd.GeoDataFrame, *, sorted_layout: bool, geometry_encoding: str) -> Any:
    """Arrow table of the whole layer, in its own order, with ``geo`` and pandas metadata."""
    from geopandas.io.arrow import _geopandas_to_arrow

    encoding = geometry_encoding
    if encoding == "auto":
        encoding = "geoarrow" if sorted_layout and _is_point_layer(gdf.geometry.values) else "WKB"
    covering = encoding == "WKB"
    clash = covering and COVERING_COLUMN in gdf.columns
    table = _geopandas_to_arrow(
        gdf, index=None, geometry_encoding=encoding, schema_version=GEOPARQUET_VERSION,
        write_covering_bbox=covering and not clash,
    )
    if clash:
        metadata = dict(table.schema.metadata or {})
        name = _free_column_name(gdf, "bbox_covering")
        table = table.append_column(name, _covering_struct(gdf))
        geo = json.loads(metadata[b"geo"])
        geo["columns"][geo["primary_column"]]["covering"] = {
            "bbox": {axis: [name, axis] for axis in ("xmin", "ymin", "xmax", "ymax")}
        }
        metadata[b"geo"] = json.dumps(geo).encode()
        table = table.replace_schema_metadata(metadata)
    return table


def _arrange(
    table: Any,
    gdf: gpd.GeoDataFrame,
    rows: np.ndarray,
    *,
    sorted_layout: bool,
    keep_order: bool,
    row_group_size: int,
) -> Any:
    """Rows ``rows`` of ``table`` (laid out along the Hilbert curve if asked), with layout metadata.

    The Hilbert order decides which rows share a row group; with ``keep_order``, inside
    each row group the rows keep their original relative order. Pruning works on whole row groups, so
    nothing is lost for ``bbox=`` reads, while the row-order column becomes runs of
    increasing positions that delta-encode in a few bits per row (instead of a
    random permutation, about ``log2(rows)`` bits per row), and so do attribute
    columns that were sorted or sequential (running ids) in the original order.
    """
    import pyarrow as pa

    if sorted_layout:
        order = rows[_table_hilbert_order(table, gdf, rows)]
        if keep_order:
            order = _original_order_within_groups(order, row_group_size)
    else:
        order = rows
    if len(order) != table.num_rows or not np.array_equal(order, np.arange(table.num_rows)):
        table = table.take(pa.array(order))
    layout: dict[str, Any] = {"version": 1, "sort": "hilbert" if sorted_layout else "none"}
    if keep_order:
        column = _free_column_name(gdf, ROW_ORDER_COLUMN)
        row_type = pa.uint32() if len(gdf) < 2**32 else pa.uint64()
        table = table.append_column(column, pa.array(order, type=row_type))
        layout["row_order"] = column
    metadata = dict(table.schema.metadata or {})
    metadata[LAYOUT_KEY] = json.dumps(layout).encode()
    return table.replace_schema_metadata(metadata)


def _table_hilbert_order(table: Any, gdf: gpd.GeoDataFrame, rows: np.ndarray) -> np.ndarray:
    """:func:`hilbert_order` of rows ``rows``, from the bounds already in ``table`` when it has them.

    The covering column (WKB layers) or the GeoArrow point coordinates hold exactly
    the bounds shapely would compute, so the geometries are not walked a second time.
    """
    geo = json.loads(table.schema.metadata[b"geo"])
    covering = covering_column(geo)
    primary = geo["primary_column"]
    if covering is not None:
        fields = ("xmin", "ymin", "xmax", "ymax")
        column = table.column(covering)
    elif geo["columns"][primary].get("encoding") == "point":
        fields = ("x", "y", "x", "y")
        column = table.column(primary)
    else:
        return hilbert_order(gdf.geometry.values[rows])
    values = _struct_fields_as_float(column, fields)
    return _hilbert_order_of_bounds(*(v[rows] for v in values), level=HILBERT_LEVEL)


def _struct_fields_as_float(column: Any, fields: Sequence[str]) -> list[np.ndarray]:
    """Fields of a struct column as ``float64`` arrays, ``NaN`` where the struct or field is null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chunks = column.chunks or [pa.array([], type=column.type)]
    by_name: dict[str, np.ndarray] = {}
    for name in dict.fromkeys(fields):
        parts = [pc.struct_field(chunk, name) for chunk in chunks]
        by_name[name] = np.concatenate(
            [p.cast(pa.float64()).to_numpy(zero_copy_only=False) for p in parts]
        ).astype(np.float64, copy=False)
    return [by_name[name] for name in fields]


def _original_order_within_groups(order: np.ndarray, group_rows: int) -> np.ndarray:
    """``order`` with each run of ``group_rows`` positions sorted (original order inside groups)."""
    full = len(order) - len(order) % group_rows
    head = np.sort(order[:full].reshape(-1, group_rows), axis=1).ravel()
    return np.concatenate([head, np.sort(order[full:])])


def _covering_struct(gdf: gpd.GeoDataFrame) -> Any:
    import pyarrow as pa

    bounds = gdf.bounds
    return pa.StructArray.from_arrays(
        [pa.array(bounds[c].to_numpy(), from_pandas=True) for c in bounds.columns],
        names=["xmin", "ymin", "xmax", "ymax"],
    )


def _leaf_paths(schema: Any) -> list[tuple[str, Any]]:
    """(dotted path, type) of every leaf column of an Arrow schema."""
    import pyarrow as pa

    leaves: list[tuple[str, Any]] = []
    pending = [(field.name, field.type) for field in schema]
    while pending:
        name, kind = pending.pop(0)
        if pa.types.is_struct(kind):
            children = [kind.field(i) for i in range(kind.num_fields)]
            pending[:0] = [(f"{name}.{child.name}", child.type) for child in children]
        else:
            leaves.append((name, kind))
    return leaves


def _write_table(
    table: Any, target: Any, compression: CompressionLevel | str, row_group_size: int,
    overrides: Mapping[str, Any],
) -> None:
    """Write a laid-out table row group by row group, with encodings suited to each column.

    Coordinates (GeoArrow point fields, covering columns) use BYTE_STREAM_SPLIT,
    which zstd compresses well once rows are sorted, instead of dictionaries that
    nearly unique values never fill; the row-order column and integer columns whose
    first row group is mostly distinct values (ids, counters, timestamps as integers)
    are delta-encoded, where a dictionary would overflow and fall back to plain
    values; other columns keep pyarrow's defaults.
    """
    import pyarrow as pa

    layout = json.loads(table.schema.metadata[LAYOUT_KEY])
    geo = json.loads(table.schema.metadata[b"geo"])
    spatial = set(geo["columns"]) | {covering_column(geo)}
    order = layout.get("row_order")
    dictionary, split = [], []
    delta = [order] if order else []
    sample = table.slice(0, row_group_size)
    for path, kind in _leaf_paths(table.schema):
        top = path.split(".", 1)[0]
        if top in spatial:
            if pa.types.is_floating(kind) and not pa.types.is_float16(kind):
                split.append(path)
        elif top == order:
            continue
        elif path == top and _mostly_distinct_integers(sample.column(top)):
            delta.append(path)
        else:
            dictionary.append(path)
    options: dict[str, Any] = {
        **PARQUET_COMPRESSION[CompressionLevel(compression)],
        "use_dictionary": dictionary,
        "use_byte_stream_split": split,
        **({"column_encoding": dict.fromkeys(delta, "DELTA_BINARY_PACKED")} if delta else {}),
        **overrides,
    }
    with pq.ParquetWriter(target, table.schema, **options) as writer:
        for start in range(0, max(table.num_rows, 1), row_group_size):
            writer.write_table(table.slice(start, row_group_size), row_group_size=row_group_size)


def _mostly_distinct_integers(column: Any) -> bool:
    """Whether ``column`` holds integers, more than half of them distinct."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_integer(column.type) or len(column) < 2:
        return False
    return pc.count_distinct(column).as_py() * 2 > len(column)


def _write_partitioned(
    gdf: gpd.GeoDataFrame,
    path: str,
    filesystem: AbstractFileSystem | None,
    partition_cols: list[str],
    *,
    compression: CompressionLevel | str,
    sorted_layout: bool,
    geometry_encoding: str,
    row_group_size: int,
    kwargs: Mapping[str, Any],
) -> None:
    """One laid-out file per partition, ``col=value/part-0.parquet``, all keeping row order."""
    from urllib.parse import quote

    import pandas as pd

    missing = [c for c in partition_cols if c not in gdf.columns]
    if missing or gdf.geometry.name in partition_cols:
        raise ValueError(
            f"partition_cols must name attribute columns of the layer; {missing or [gdf.geometry.name]} "
            f"cannot be used (columns: {[c for c in gdf.columns if c != gdf.geometry.name]})"
        )
    keys = pd.MultiIndex.from_frame(gdf[partition_cols].astype(object))
    codes, uniques = pd.factorize(keys)
    if filesystem is None:
        from fsspec.implementations.local import LocalFileSystem

        filesystem = LocalFileSystem()
    layer = _layer_table(gdf, sorted_layout=sorted_layout, geometry_encoding=geometry_encoding)
    groups = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[groups], np.arange(len(uniques) + 1))
    for code, values in enumerate(uniques):
        rows = groups[bounds[code]:bounds[code + 1]]
        parts = [
            f"{quote(str(col), safe='')}="
            + ("__HIVE_DEFAULT_PARTITION__" if pd.isna(value) else quote(str(value), safe=""))
            for col, value in zip(partition_cols, values, strict=True)
        ]
        folder = posixpath.join(path, *parts)
        filesystem.makedirs(folder, exist_ok=True)
        table = _arrange(
            layer, gdf, rows, sorted_layout=sorted_layout and len(rows) > 1, keep_order=True,
            row_group_size=row_group_size,
        )
        table = _with_partition_bbox(table, gdf.geometry.values[rows])
        with filesystem.open(posixpath.join(folder, "part-0.parquet"), "wb") as target:
            _write_table(table, target, compression, row_group_size, kwargs)


def _with_partition_bbox(table: Any, geoms: Any) -> Any:
    """``table`` with the ``geo`` metadata bbox of just these geometries."""
    import shapely

    metadata = dict(table.schema.metadata)
    geo = json.loads(metadata[b"geo"])
    column = geo["columns"][geo["primary_column"]]
    bounds = shapely.bounds(np.asarray(geoms, dtype=object))
    finite = np.isfinite(bounds).all(axis=1)
    if finite.any():
        b = bounds[finite]
        column["bbox"] = [*map(float, b[:, :2].min(axis=0)), *map(float, b[:, 2:].max(axis=0))]
    else:
        column.pop("bbox", None)
    metadata[b"geo"] = json.dumps(geo).encode()
    return table.replace_schema_metadata(metadata)


def _open_for_writing(path: str, filesystem: AbstractFileSystem | None) -> Any:
    """Return a context yielding what ``to_parquet`` writes to: a path or an open file."""
    if filesystem is None:
        return contextlib.nullcontext(path)
    return filesystem.open(path, "wb")


def _write_with_renamed_covering(
    gdf: gpd.GeoDataFrame, target: str | BinaryIO, settings: Mapping[str, Any]
) -> None:
    """Write with a covering column named so it cannot replace the user's ``bbox`` column."""
    covering = _free_column_name(gdf, "bbox_covering")
    plain = {**settings, "write_covering_bbox": False, "compression": "none"}
    plain.pop("compression_level", None)
    buffer = io.BytesIO()
    gdf.to_parquet(buffer, **plain)
    buffer.seek(0)
    table = pq.read_table(buffer)
    table = table.append_column(covering, _covering_struct(gdf))
    metadata = dict(table.schema.metadata or {})
    geo = json.loads(metadata[b"geo"])
    geo["columns"][geo["primary_column"]]["covering"] = {
        "bbox": {axis: [covering, axis] for axis in ("xmin", "ymin", "xmax", "ymax")}
    }
    metadata[b"geo"] = json.dumps(geo).encode()
    table = table.replace_schema_metadata(metadata)
    geopandas_only = ("schema_version", "write_covering_bbox", "index", "geometry_encoding")
    write_kwargs = {k: v for k, v in settings.items() if k not in geopandas_only}
    pq.write_table(table, target, **write_kwargs)


def _free_column_name(gdf: gpd.GeoDataFrame, base: str) -> str:
    names = {str(c) for c in gdf.columns} | {str(n) for n in gdf.index.names if n is not None}
    name = base
    while name in names:
        name = f"_{name}"
    return name


def geo_metadata(path: str, *, filesystem: AbstractFileSystem | None = None) -> dict[str, Any]:
    """Read the decoded ``geo`` metadata of a GeoParquet file.

    Raises
    ------
    FormatError
        If the file has no ``geo`` metadata (a plain Parquet file).
    """
    metadata = pq.read_metadata(path, filesystem=filesystem).metadata or {}
    if b"geo" not in metadata:
        raise FormatError(f"{path} is a Parquet file without GeoParquet 'geo' metadata")
    return json.loads(metadata[b"geo"])


def covering_column(geo: Mapping[str, Any]) -> str | None:
    """Name of the bbox covering column declared in ``geo`` metadata, if any."""
    column = geo.get("columns", {}).get(geo.get("primary_column"), {})
    bbox = column.get("covering", {}).get("bbox")
    return bbox["xmin"][0] if bbox else None


def layout_metadata(path: str, *, filesystem: AbstractFileSystem | None = None) -> dict[str, Any]:
    """The memories_geo layout recorded in a file (empty for a plain GeoParquet file).

    Returns
    -------
    dict
        ``{"version": 1, "sort": "hilbert" | "none", "row_order": column}``;
        ``row_order`` is absent when the original order was not kept.
    """
    metadata = pq.read_metadata(path, filesystem=filesystem).metadata or {}
    return json.loads(metadata[LAYOUT_KEY]) if LAYOUT_KEY in metadata else {}


def read_geoparquet(
    path: str,
    *,
    filesystem: AbstractFileSystem | None = None,
    columns: Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    filters: Any = None,
    **kwargs: Any,
) -> gpd.GeoDataFrame:
    """Read a GeoParquet file or partitioned directory (any version geopandas reads).

    Parameters
    ----------
    path : str
        Local path, or a path on ``filesystem``: one file, or a directory of files
        written with ``partition_cols``.
    filesystem : fsspec.AbstractFileSystem, optional
        Filesystem holding ``path``.
    columns : sequence of str, optional
        Columns to read. The primary geometry column is added when no geometry
        column is listed, so the result is always a GeoDataFrame.
    bbox : (minx, miny, maxx, maxy), optional
        Keep the rows whose geometry intersects this box, in the layer's CRS.
        Row groups and rows are pruned on the covering column (or native point
        coordinates) before the geometries are tested exactly.
    filters : optional
        Row filters for pyarrow (list of tuples or a ``pyarrow.compute`` expression).
    **kwargs
        Passed to :func:`geopandas.read_parquet` (for files written with a
        memories_geo layout, only ``to_pandas_kwargs``).

    Returns
    -------
    geopandas.GeoDataFrame
        Without the covering and row-order columns, rows in the order they were
        written. A filtered read of a layer whose index is a ``RangeIndex``
        numbers its rows from 0, as ``geopandas.read_parquet`` does.

    Examples
    --------
    >>> read_geoparquet("/tmp/points.parquet", bbox=(-1, -1, 1, 1))  # doctest: +SKIP
    """
    box = check_bbox(bbox) if bbox is not None else None
    fs = filesystem
    if fs is None:
        from fsspec.implementations.local import LocalFileSystem

        fs = LocalFileSystem()
    if fs.isdir(path):
        files = sorted(p for p in fs.find(path) if p.endswith(".parquet"))
        if not files:
            raise FormatError(f"{path} is a directory without Parquet files")
        return _read_laid_out(files, filesystem, columns, box, filters, kwargs)
    metadata = pq.read_metadata(path, filesystem=filesystem).metadata or {}
    if b"geo" not in metadata:
        raise FormatError(f"{path} is a Parquet file without GeoParquet 'geo' metadata")
    if LAYOUT_KEY in metadata:
        return _read_laid_out([path], filesystem, columns, box, filters, kwargs)
    geo = json.loads(metadata[b"geo"])
    covering = covering_column(geo)
    primary = geo["primary_column"]
    if columns is not None:
        columns = list(columns)
        if not any(c in geo["columns"] for c in columns):
            columns.append(primary)
    can_push = covering is not None or geo["columns"][primary].get("encoding") == "point"
    if filesystem is not None:
        kwargs["filesystem"] = filesystem
    gdf = gpd.read_parquet(
        path,
        columns=columns,
        bbox=box if can_push else None,
        filters=filters,
        **kwargs,
    )
    if covering is not None and covering in gdf.columns and not (columns and covering in columns):
        gdf = gdf.drop(columns=covering)
    if box is not None:
        gdf = _refine_to_bbox(gdf, box)
    return gdf


def _read_laid_out(
    files: list[str],
    filesystem: AbstractFileSystem | None,
    columns: Sequence[str] | None,
    box: tuple[float, float, float, float] | None,
    filters: Any,
    kwargs: dict[str, Any],
) -> gpd.GeoDataFrame:
    """Read files written by :func:`write_geoparquet` with a layout, restoring row order."""
    import pyarrow.dataset as ds
    from geopandas.io.arrow import _arrow_to_geopandas

    to_pandas_kwargs = kwargs.pop("to_pandas_kwargs", None)
    if kwargs:
        raise TypeError(
            f"unexpected keyword(s) {sorted(kwargs)} for a GeoParquet layer written by "
            "memories_geo; valid: columns, bbox, filters, to_pandas_kwargs"
        )
    schema = pq.read_schema(files[0], filesystem=filesystem)
    metadata = schema.metadata or {}
    geo = json.loads(metadata[b"geo"])
    layout = json.loads(metadata.get(LAYOUT_KEY, b"{}"))
    order = layout.get("row_order")
    covering = covering_column(geo)
    hidden = {covering, order}
    if columns is None:
        read = [n for n in schema.names if n not in hidden]
    else:
        read = list(columns)
        if not any(c in geo["columns"] for c in read):
            read.append(geo["primary_column"])
        pandas_index = json.loads(metadata.get(b"pandas", b"{}")).get("index_columns", [])
        read += [c for c in pandas_index if isinstance(c, str) and c not in read]
    if order is not None:
        read.append(order)
    expression = _bbox_expression(geo, box) if box is not None else None
    if filters is not None:
        extra = filters if isinstance(filters, ds.Expression) else pq.filters_to_expression(filters)
        expression = extra if expression is None else expression & extra
    source = files[0] if len(files) == 1 else files
    dataset = ds.dataset(source, format="parquet", filesystem=filesystem)
    table = dataset.to_table(columns=read, filter=expression)
    if order is not None:
        restoring = _restoring_order(table.column(order).to_numpy())
        table = table.drop_columns([order])
        if not np.array_equal(restoring, np.arange(len(restoring))):
            table = table.take(restoring)
    table = table.replace_schema_metadata(metadata)
    gdf = _arrow_to_geopandas(table, _with_parsed_crs(geo), to_pandas_kwargs, metadata.get(b"PANDAS_ATTRS"))
    if box is not None:
        gdf = _refine_to_bbox(gdf, box)
    return gdf


def _with_parsed_crs(geo: Mapping[str, Any]) -> dict[str, Any]:
    """``geo`` metadata whose PROJJSON CRSs are already :class:`pyproj.CRS` objects (parsed once per process).

    Parsing PROJJSON takes tens of milliseconds, as long as a whole small ``bbox=`` read.
    """
    columns = {}
    for name, column in geo.get("columns", {}).items():
        crs = column.get("crs")
        if isinstance(crs, dict):
            column = {**column, "crs": _crs_from_projjson(json.dumps(crs, sort_keys=True))}
        columns[name] = column
    return {**geo, "columns": columns}


@functools.lru_cache(maxsize=64)
def _crs_from_projjson(text: str) -> Any:
    import pyproj
    from geopandas.io.arrow import _remove_id_from_member_of_ensembles

    projjson = json.loads(text)
    _remove_id_from_member_of_ensembles(projjson)
    return pyproj.CRS.from_user_input(projjson)


def _restoring_order(positions: np.ndarray) -> np.ndarray:
    """Indices that put rows with original ``positions`` back in their original order."""
    n = len(positions)
    if n and int(positions.max()) == n - 1:
        inverse = np.empty(n, dtype=np.int64)
        inverse[positions] = np.arange(n)
        return inverse
    return np.argsort(positions, kind="stable")


def _bbox_expression(geo: Mapping[str, Any], box: tuple[float, float, float, float]) -> Any:
    """Row filter that keeps rows whose bounds may intersect ``box`` (prunes row groups)."""
    import pyarrow.dataset as ds

    minx, miny, maxx, maxy = box
    covering = covering_column(geo)
    if covering is not None:
        return ~(
            (ds.field(covering, "xmin") > maxx)
            | (ds.field(covering, "ymin") > maxy)
            | (ds.field(covering, "xmax") < minx)
            | (ds.field(covering, "ymax") < miny)
        )
    primary = geo["primary_column"]
    if geo["columns"][primary].get("encoding") == "point":
        x, y = ds.field(primary, "x"), ds.field(primary, "y")
        return (x >= minx) & (x <= maxx) & (y >= miny) & (y <= maxy)
    return None


def _refine_to_bbox(
    gdf: gpd.GeoDataFrame, box: tuple[float, float, float, float]
) -> gpd.GeoDataFrame:
    """Rows whose geometry intersects ``box`` (missing and empty geometries never do)."""
    import pandas as pd
    import shapely

    mask = gdf.geometry.intersects(shapely.box(*box)).to_numpy()
    if mask.all():
        return gdf
    renumber = isinstance(gdf.index, pd.RangeIndex)
    gdf = gdf[mask]
    return gdf.reset_index(drop=True) if renumber else gdf



class GeoParquetFormat(FileFormat):
    """GeoDataFrames and GeoSeries as one GeoParquet 1.1 file.

    The file carries the ``bbox`` covering column, zstd compression at the tier's
    level (:data:`PARQUET_COMPRESSION`), the CRS as PROJJSON and the pandas index
    and dtypes. ``mode="a"`` writes a new file holding the previous rows followed
    by the new ones.

    Examples
    --------
    >>> import memories_geo as mg
    >>> mem = mg.Memory("/tmp/mg-doc")  # doctest: +SKIP
    >>> mem.save(gdf, "roads/paris", format="geoparquet")  # doctest: +SKIP
    >>> mem.open("roads/paris", bbox=(2.2, 48.8, 2.4, 48.9), columns=["name"])  # doctest: +SKIP
    """

    name: ClassVar[str] = "geoparquet"
    kinds: ClassVar[frozenset[Kind]] = frozenset({Kind.VECTOR})
    extension: ClassVar[str] = ".parquet"

    def can_store(self, obj: Any) -> bool:
        """Whether ``obj`` is a GeoDataFrame or a GeoSeries."""
        return isinstance(obj, gpd.GeoDataFrame | gpd.GeoSeries)

    def _write(
        self, obj: Any, location: Location, options: WriteOptions
    ) -> tuple[Footprint, Mapping[str, Any]]:
        gdf, info = as_frame(obj, self.name)
        gdf = with_crs(gdf, options.crs, kind=info["type"])
        if options.mode == "a" and options.previous is not None:
            previous = self._read(options.previous)
            gdf = _append(previous, gdf)
        path, filesystem = _target(location)
        if location.is_local:
            location.fs.makedirs(posixpath.dirname(location.full_path), exist_ok=True)
        write_geoparquet(
            gdf, path, filesystem=filesystem, compression=options.compression, **options.extra
        )
        return vector_footprint(gdf), info

    def _read(self, location: Location, **query: Any) -> gpd.GeoDataFrame:
        path, filesystem = _target(location)
        return read_geoparquet(path, filesystem=filesystem, **query)

    def open(self, location: Location, object_info: Mapping[str, Any], **query: Any) -> Any:
        """Read the stored layer back as the type that was saved.

        Parameters
        ----------
        location : Location
            Where the file is.
        object_info : mapping
            What :meth:`write` recorded (``type`` and, for a GeoSeries, ``name``).
        **query
            ``bbox=(minx, miny, maxx, maxy)`` in the layer's CRS (rows whose
            geometry intersects it), ``columns=[...]`` and ``filters=`` (pyarrow
            row filters), as in :func:`read_geoparquet`.

        Returns
        -------
        geopandas.GeoDataFrame or geopandas.GeoSeries
        """
        check_query(query, _QUERY_KEYWORDS, self.name)
        is_series = object_info.get("type") == "GeoSeries"
        if is_series and query.get("columns") is not None:
            raise ValueError("columns= does not apply to a stored GeoSeries (it has one column)")
        gdf = self._read(location, **query)
        if is_series:
            return gdf.geometry.rename(series_name(object_info.get("name")))
        return gdf


def _target(location: Location) -> tuple[str, AbstractFileSystem | None]:
    if location.is_local:
        return location.full_path, None
    return location.full_path, location.fs










def _append(previous: gpd.GeoDataFrame, new: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Rows of ``previous`` followed by those of ``new``, after checking they fit together."""
    import pandas as pd

    if previous.geometry.name != new.geometry.name:
        raise UnsupportedObjectError(
            f"cannot append: the stored layer's geometry column is {previous.geometry.name!r}, "
            f"the new rows' is {new.geometry.name!r}; rename it with "
            f"gdf.rename_geometry({previous.geometry.name!r})"
        )
    missing = [c for c in previous.columns if c not in new.columns]
    extra = [c for c in new.columns if c not in previous.columns]
    if missing or extra:
        raise UnsupportedObjectError(
            f"cannot append: columns differ from the stored layer (missing: {missing}, "
            f"unexpected: {extra}); appended rows need exactly the columns {list(previous.columns)}"
        )
    if not _same_crs(previous.crs, new.crs):
        raise UnsupportedObjectError(
            f"cannot append rows in CRS {new.crs.to_string()!r} to a layer stored in "
            f"{previous.crs.to_string() if previous.crs else None!r}; reproject them first "
            f"with gdf.to_crs(...)"
        )
    if list(previous.index.names) != list(new.index.names):
        raise UnsupportedObjectError(
            f"cannot append: index names {list(new.index.names)} differ from the stored "
            f"layer's {list(previous.index.names)}"
        )
    new = new[list(previous.columns)]
    if len(new) == 0:
        return previous
    if len(previous) == 0:
        return new
    ranges = isinstance(previous.index, pd.RangeIndex) and isinstance(new.index, pd.RangeIndex)
    combined = pd.concat([previous, new], ignore_index=ranges)
    if ranges:
        start, step = previous.index.start, previous.index.step
        combined.index = pd.RangeIndex(
            start, start + step * len(combined), step, name=previous.index.name
        )
    changed = [
        f"{c!r}: {previous[c].dtype} + {new[c].dtype}"
        for c in previous.columns
        if combined[c].dtype != previous[c].dtype
    ]
    if changed:
        raise UnsupportedObjectError(
            f"cannot append: column types would change ({', '.join(changed)}); cast the new "
            f"rows to the stored types first (gdf.astype(...))"
        )
    return combined


def _same_crs(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(a.equals(b, ignore_axis_order=True))
