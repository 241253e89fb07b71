"""Reading GeoParquet: bbox, time, columns and filters pushed down to pyarrow, row order restored."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import geopandas as gpd
import numpy as np
import pyarrow.parquet as pq

from memories_geo.errors import FormatError
from memories_geo.formats._vector import no_time_column
from memories_geo.formats.arrow_time import time_filter
from memories_geo.formats.geoparquet.metadata import (
    LAYOUT_KEY,
    covering_column,
    layer_crs,
    with_parsed_crs,
)
from memories_geo.query import check_bbox

if TYPE_CHECKING:
    import pandas as pd
    from fsspec import AbstractFileSystem

__all__ = ["read_geoparquet", "time_column"]

Box = tuple[float, float, float, float]


def read_geoparquet(
    path: str,
    *,
    filesystem: AbstractFileSystem | None = None,
    columns: Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    bbox_crs: Any = None,
    time: tuple[Any, Any] | None = None,
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
        Keep the rows whose geometry intersects this box. Row groups and rows are
        pruned on the covering column (or native point coordinates) before the
        geometries are tested exactly.
    bbox_crs : optional
        CRS of ``bbox`` (anything pyproj understands); default the layer's own CRS.
    time : (start, end), optional
        Keep the rows whose first datetime column (:func:`time_column`) lies in this
        inclusive range; naive bounds are UTC, either may be ``None``. Pushed down to
        pyarrow with ``filters``.
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

    Raises
    ------
    OptionError
        ``time=`` on a layer without a datetime column.
    ValueError
        A malformed ``bbox``, or ``columns`` naming columns the layer does not have.

    Examples
    --------
    >>> read_geoparquet("/tmp/points.parquet", bbox=(-1, -1, 1, 1))  # doctest: +SKIP
    """
    box = check_bbox(bbox) if bbox is not None else None
    fs = filesystem
    if fs is None:
        from fsspec.implementations.local import LocalFileSystem

        fs = LocalFileSystem()
    directory = fs.isdir(path)
    files = sorted(p for p in fs.find(path) if p.endswith(".parquet")) if directory else [path]
    if not files:
        raise FormatError(f"{path} is a directory without Parquet files")
    schema = pq.read_schema(files[0], filesystem=filesystem)
    metadata = schema.metadata or {}
    if b"geo" not in metadata:
        raise FormatError(f"{files[0]} is a Parquet file without GeoParquet 'geo' metadata")
    geo = json.loads(metadata[b"geo"])
    _check_columns(schema, columns)
    if box is not None and bbox_crs is not None:
        box = _bbox_in_layer(box, bbox_crs, geo)
    rows = _row_filter(schema, time, filters)
    if directory or LAYOUT_KEY in metadata:
        return _read_laid_out(files, filesystem, schema, columns, box, rows, kwargs)
    covering = covering_column(geo)
    primary = geo["primary_column"]
    if columns is not None:
        columns = list(columns)
        if not any(c in geo["columns"] for c in columns):
            columns.append(primary)
    can_push = covering is not None or geo["columns"][primary].get("encoding") == "point"
    if filesystem is not None:
        pruned = box is not None or rows is not None
        kwargs["filesystem"] = _range_reading(filesystem) if pruned else filesystem
    gdf = gpd.read_parquet(
        path,
        columns=columns,
        bbox=box if can_push else None,
        filters=rows,
        **kwargs,
    )
    if covering is not None and covering in gdf.columns and not (columns and covering in columns):
        gdf = gdf.drop(columns=covering)
    if box is not None:
        gdf = _refine_to_bbox(gdf, box)
    return _restore_seconds(gdf, metadata)


def time_column(schema: Any) -> str | None:
    """The layer's first datetime attribute column (index and geometry columns excluded).

    The same column :func:`memories_geo.footprint.vector_footprint` takes the time
    range from when the layer is saved.

    Parameters
    ----------
    schema : pyarrow.Schema
        Schema of the file, with its ``geo`` and ``pandas`` metadata.
    """
    import pyarrow as pa

    for name in _attribute_columns(schema):
        if pa.types.is_timestamp(schema.field(name).type):
            return name
    return None


def _attribute_columns(schema: Any) -> list[str]:
    """Columns of the saved frame other than geometries (no index, covering or row-order column)."""
    metadata = schema.metadata or {}
    geo = json.loads(metadata.get(b"geo", b"{}"))
    layout = json.loads(metadata.get(LAYOUT_KEY, b"{}"))
    index = json.loads(metadata.get(b"pandas", b"{}")).get("index_columns", [])
    hidden = {*geo.get("columns", {}), covering_column(geo), layout.get("row_order")}
    hidden |= {c for c in index if isinstance(c, str)}
    return [n for n in schema.names if n not in hidden]


def _check_columns(schema: Any, columns: Sequence[str] | None) -> None:
    if columns is None:
        return
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise ValueError(
            f"columns {missing} are not in the stored layer; it has {_attribute_columns(schema)}"
        )


def _bbox_in_layer(box: Box, bbox_crs: Any, geo: Mapping[str, Any]) -> Box:
    """``box`` (in ``bbox_crs``) in the CRS of the layer's primary geometry column."""
    from memories_geo.query import OpenRequest

    return cast(Box, OpenRequest(bbox=box, bbox_crs=bbox_crs).bbox_in(layer_crs(geo)))


def _row_filter(schema: Any, time: tuple[Any, Any] | None, filters: Any) -> Any:
    """``filters`` and the ``time`` range as one pyarrow expression (``None`` for neither)."""
    import pyarrow.dataset as ds

    expression = None
    if filters is not None:
        expression = filters if isinstance(filters, ds.Expression) else pq.filters_to_expression(filters)
    if time is not None:
        name = time_column(schema)
        if name is None:
            raise no_time_column(_attribute_columns(schema))
        span = time_filter(schema.field(name), (_utc(time[0]), _utc(time[1])))
        expression = span if expression is None else expression & span
    return expression


def _utc(value: Any) -> pd.Timestamp | None:
    """A bound as a naive UTC timestamp (naive input is UTC already)."""
    import pandas as pd

    if value is None:
        return None
    ts = pd.Timestamp(value)
    if pd.isna(ts):
        return None
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _read_laid_out(
    files: list[str],
    filesystem: AbstractFileSystem | None,
    schema: Any,
    columns: Sequence[str] | None,
    box: Box | None,
    rows: Any,
    kwargs: dict[str, Any],
) -> gpd.GeoDataFrame:
    """Read files written by ``write_geoparquet`` with a layout, restoring row order."""
    import pyarrow.dataset as ds
    from geopandas.io.arrow import _arrow_to_geopandas

    to_pandas_kwargs = kwargs.pop("to_pandas_kwargs", None)
    if kwargs:
        raise TypeError(
            f"unexpected keyword(s) {sorted(kwargs)} for a GeoParquet layer written by "
            "memories_geo; valid: columns, bbox, bbox_crs, time, filters, to_pandas_kwargs"
        )
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
    if rows is not None:
        expression = rows if expression is None else expression & rows
    source = files[0] if len(files) == 1 else files
    if filesystem is not None and expression is not None:
        filesystem = _range_reading(filesystem)
    dataset = ds.dataset(source, format="parquet", filesystem=filesystem)
    table = dataset.to_table(columns=read, filter=expression)
    if order is not None:
        restoring = _restoring_order(table.column(order).to_numpy())
        table = table.drop_columns([order])
        if not np.array_equal(restoring, np.arange(len(restoring))):
            table = table.take(restoring)
    table = table.replace_schema_metadata(metadata)
    gdf = _arrow_to_geopandas(table, with_parsed_crs(geo), to_pandas_kwargs, metadata.get(b"PANDAS_ATTRS"))
    if box is not None:
        gdf = _refine_to_bbox(gdf, box)
    return _restore_seconds(gdf, metadata)


def _range_reading(filesystem: AbstractFileSystem) -> Any:
    """``filesystem`` for pyarrow, reading exactly the byte ranges pyarrow asks for.

    fsspec files of object stores read ahead (s3fs: up to 50 MB past each read), so a
    pruned read would fetch the rest of the file after its first row group; pyarrow
    coalesces the footer and column-chunk ranges itself. Local files are left as they are.
    """
    protocol = filesystem.protocol if isinstance(filesystem.protocol, str) else filesystem.protocol[0]
    if protocol in ("file", "local"):
        return filesystem
    from pyarrow import PythonFile
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    class RangeReading(FSSpecHandler):
        def open_input_file(self, path: str) -> Any:
            return PythonFile(self.fs.open(path, mode="rb", cache_type="none"), mode="r")

    return PyFileSystem(RangeReading(filesystem))


def _restore_seconds(gdf: gpd.GeoDataFrame, metadata: Mapping[bytes, bytes]) -> gpd.GeoDataFrame:
    """Datetime columns and index levels saved at second resolution back at it.

    Parquet has no second unit: pyarrow stores ``datetime64[s]`` as milliseconds and
    reads it back so; the pandas metadata remembers the resolution.
    """
    import pandas as pd

    described = json.loads(metadata.get(b"pandas", b"{}")).get("columns", [])
    seconds = {
        c["name"] for c in described if c.get("numpy_type") == "datetime64[s]" and c.get("name") is not None
    }
    if not seconds:
        return gdf
    for name in seconds.intersection(gdf.columns):
        if pd.api.types.is_datetime64_any_dtype(gdf[name].dtype):
            gdf[name] = gdf[name].dt.as_unit("s")
    if isinstance(gdf.index, pd.MultiIndex):
        levels = [
            level.as_unit("s") if level.name in seconds and isinstance(level, pd.DatetimeIndex) else level
            for level in gdf.index.levels
        ]
        gdf.index = gdf.index.set_levels(levels)  # type: ignore[arg-type]
    elif gdf.index.name in seconds and isinstance(gdf.index, pd.DatetimeIndex):
        gdf.index = gdf.index.as_unit("s")
    return gdf


def _restoring_order(positions: np.ndarray) -> np.ndarray:
    """Indices that put rows with original ``positions`` back in their original order."""
    n = len(positions)
    if n and int(positions.max()) == n - 1:
        inverse = np.empty(n, dtype=np.int64)
        inverse[positions] = np.arange(n)
        return inverse
    return np.argsort(positions, kind="stable")


def _bbox_expression(geo: Mapping[str, Any], box: Box) -> Any:
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


def _refine_to_bbox(gdf: gpd.GeoDataFrame, box: Box) -> gpd.GeoDataFrame:
    """Rows whose geometry intersects ``box`` (missing and empty geometries never do)."""
    import pandas as pd
    import shapely

    mask = gdf.geometry.intersects(shapely.box(*box)).to_numpy()
    if mask.all():
        return gdf
    renumber = isinstance(gdf.index, pd.RangeIndex)
    gdf = gdf[mask]
    return gdf.reset_index(drop=True) if renumber else gdf
