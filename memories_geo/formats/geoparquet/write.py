"""Writing GeoParquet 1.1: the plain ``to_parquet`` file, or the spatial layout for large layers."""

from __future__ import annotations

import io
import json
import posixpath
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import geopandas as gpd
import numpy as np
import pyarrow.parquet as pq

from memories_geo.formats.geoparquet.checks import check_layout_options
from memories_geo.formats.geoparquet.hilbert import original_order_within_groups, table_hilbert_order
from memories_geo.formats.geoparquet.metadata import (
    COVERING_COLUMN,
    GEOPARQUET_VERSION,
    LAYOUT_KEY,
    covering_column,
)
from memories_geo.formats.geoparquet.points import point_table
from memories_geo.formats.geoparquet.upload import FileSink, FsspecSink, LocalSink
from memories_geo.integrity import Manifest
from memories_geo.types import CompressionLevel

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = [
    "OBJECT_STORE_ROW_GROUP_SIZE",
    "PARQUET_COMPRESSION",
    "ROW_GROUP_SIZE",
    "ROW_ORDER_COLUMN",
    "write_geoparquet",
    "write_settings",
]

#: Compression level -> ``to_parquet`` / ``pyarrow.parquet.write_table`` keywords.
PARQUET_COMPRESSION: dict[CompressionLevel, dict[str, Any]] = {
    CompressionLevel.FAST: {"compression": "zstd", "compression_level": 1},
    CompressionLevel.MEDIUM: {"compression": "zstd", "compression_level": 3},
    CompressionLevel.HIGH: {"compression": "zstd", "compression_level": 9},
    CompressionLevel.MAXIMUM: {"compression": "zstd", "compression_level": 19},
}

#: Rows per row group of spatially laid-out files; smaller layers are written unsorted.
ROW_GROUP_SIZE = 32_768
#: Rows per row group on object stores, where a bbox read fetches whole row groups over
#: the network: a 1% bbox of 1M points fetches 4.9% of the file (10.7% with 32k groups).
OBJECT_STORE_ROW_GROUP_SIZE = 8_192

#: Name of the hidden column holding each row's original position (renamed on a clash).
ROW_ORDER_COLUMN = "_mg_row"


def write_settings(
    compression: CompressionLevel | str = CompressionLevel.MEDIUM, /, **kwargs: Any
) -> dict[str, Any]:
    """Keywords for ``GeoDataFrame.to_parquet`` equivalent to what this format writes.

    Parameters
    ----------
    compression : CompressionLevel or str
        ``"fast"``, ``"medium"``, ``"high"`` or ``"maximum"``.
    **kwargs
        Overrides (e.g. ``row_group_size=``, or a codec as ``compression=`` and
        ``compression_level=``), applied last.

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
    codec: Mapping[str, Any] | None = None,
    sink: FileSink | None = None,
    **kwargs: Any,
) -> Manifest | None:
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
    codec : mapping, optional
        ``compression`` (a Parquet codec) and ``compression_level`` replacing those
        of the compression level.
    partition_cols : sequence of str, optional
        Write a directory with one file per combination of these columns' values,
        ``col=value/part-0.parquet`` (Hive-style names). The partition columns stay
        inside each file, so every file is a complete GeoParquet file.
    sink : FileSink, optional
        What opens the files (:mod:`~memories_geo.formats.geoparquet.upload`); default
        the local path, or ``filesystem`` (each file sent whole once written).
    **kwargs
        Passed to ``GeoDataFrame.to_parquet`` (and on to
        ``pyarrow.parquet.write_table``), overriding the defaults.

    Returns
    -------
    Manifest or None
        The files written (relative to ``path``, or the file's name) with the digests
        taken while writing them; ``None`` when they were written at local paths
        (hash them with :func:`~memories_geo.integrity.build_manifest`).

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely.geometry import Point
    >>> gdf = gpd.GeoDataFrame({"v": [1]}, geometry=[Point(0, 1)], crs="EPSG:4326")
    >>> write_geoparquet(gdf, "/tmp/points.parquet")  # doctest: +SKIP
    """
    check_layout_options(gdf, sort=sort, geometry_encoding=geometry_encoding,
                         row_group_size=row_group_size, partition_cols=partition_cols)
    kwargs.update(codec or {})
    if sink is None:
        sink = LocalSink() if filesystem is None else FsspecSink(filesystem)
    group_rows = row_group_size or ROW_GROUP_SIZE
    sorted_layout = sort == "hilbert" or (sort == "auto" and len(gdf) > group_rows)
    if partition_cols:
        _write_partitioned(
            gdf, path, sink, list(partition_cols), compression=compression,
            sorted_layout=sorted_layout, geometry_encoding=geometry_encoding,
            row_group_size=group_rows, kwargs=kwargs,
        )
    elif sorted_layout:
        table = _layer_table(gdf, sorted_layout=True, geometry_encoding=geometry_encoding)
        table = _arrange(
            table, gdf, np.arange(len(gdf)), sorted_layout=True, keep_order=keep_order,
            row_group_size=group_rows,
        )
        with sink.open(path) as target:
            _write_table(table, target, compression, group_rows, kwargs)
    else:
        if row_group_size is not None:
            kwargs["row_group_size"] = row_group_size
        if geometry_encoding != "auto":
            kwargs["geometry_encoding"] = geometry_encoding
        settings = write_settings(compression, **kwargs)
        with sink.open(path) as target:
            if settings["write_covering_bbox"] and COVERING_COLUMN in gdf.columns:
                _write_with_renamed_covering(gdf, target, settings)
            else:
                gdf.to_parquet(target, **settings)
    if not sink.digests:
        return None
    root = path.rstrip("/")
    return Manifest({
        (written[len(root) + 1:] if partition_cols else posixpath.basename(written)): digest
        for written, digest in sink.digests.items()
    })


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
    if sorted_layout and encoding in ("auto", "geoarrow"):
        points = point_table(gdf)
        if points is not None:
            return points
    if encoding == "auto":
        encoding = "geoarrow" if sorted_layout and _is_point_layer(gdf.geometry.values) else "WKB"
    covering = encoding == "WKB"
    clash = covering and COVERING_COLUMN in gdf.columns
    table = _geopandas_to_arrow(
        gdf, index=None, geometry_encoding=encoding, schema_version=GEOPARQUET_VERSION,
        write_covering_bbox=covering and not clash,
    )
    if clash:
        table = _with_covering(table, _free_column_name(gdf, "bbox_covering"), gdf)
    return table


def _with_covering(table: Any, name: str, gdf: gpd.GeoDataFrame) -> Any:
    """``table`` with a covering column ``name`` of ``gdf``'s bounds, declared in its ``geo`` metadata."""
    table = table.append_column(name, _covering_struct(gdf))
    metadata = dict(table.schema.metadata or {})
    geo = json.loads(metadata[b"geo"])
    geo["columns"][geo["primary_column"]]["covering"] = {
        "bbox": {axis: [name, axis] for axis in ("xmin", "ymin", "xmax", "ymax")}
    }
    metadata[b"geo"] = json.dumps(geo).encode()
    return table.replace_schema_metadata(metadata)


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
        order = rows[table_hilbert_order(table, gdf.geometry.values, rows)]
        if keep_order:
            order = original_order_within_groups(order, row_group_size)
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
    sink: FileSink,
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

    keys = pd.MultiIndex.from_frame(gdf[partition_cols].astype(object))
    codes, uniques = pd.factorize(keys)
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
        table = _arrange(
            layer, gdf, rows, sorted_layout=sorted_layout and len(rows) > 1, keep_order=True,
            row_group_size=row_group_size,
        )
        table = _with_partition_bbox(table, gdf.geometry.values[rows])
        with sink.open(posixpath.join(folder, "part-0.parquet")) as target:
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


def _write_with_renamed_covering(
    gdf: gpd.GeoDataFrame, target: str | BinaryIO, settings: Mapping[str, Any]
) -> None:
    """Write with a covering column named so it cannot replace the user's ``bbox`` column."""
    plain = {**settings, "write_covering_bbox": False, "compression": "none"}
    plain.pop("compression_level", None)
    buffer = io.BytesIO()
    gdf.to_parquet(buffer, **plain)
    buffer.seek(0)
    table = _with_covering(pq.read_table(buffer), _free_column_name(gdf, "bbox_covering"), gdf)
    geopandas_only = ("schema_version", "write_covering_bbox", "index", "geometry_encoding")
    write_kwargs = {k: v for k, v in settings.items() if k not in geopandas_only}
    pq.write_table(table, target, **write_kwargs)


def _free_column_name(gdf: gpd.GeoDataFrame, base: str) -> str:
    names = {str(c) for c in gdf.columns} | {str(n) for n in gdf.index.names if n is not None}
    name = base
    while name in names:
        name = f"_{name}"
    return name
