"""GeoParquet 1.1: vector layers as Parquet with a ``bbox`` covering column.

Layers that fit in one row group (:data:`ROW_GROUP_SIZE` rows) are written by
:meth:`geopandas.GeoDataFrame.to_parquet` with ``schema_version="1.1.0"`` and
``write_covering_bbox=True``, byte for byte what :func:`write_settings` describes.

Larger layers get a spatial layout so that ``bbox=`` reads touch only the row groups
they need: rows grouped along a Hilbert curve of their bounding-box centres into row
groups of :data:`ROW_GROUP_SIZE` rows (in their original order inside each group),
point layers in native GeoArrow point encoding (their ``x``/``y`` column statistics
prune row groups, no covering column needed), other layers in WKB with the covering
column, and a hidden column (:data:`ROW_ORDER_COLUMN`) holding each row's original
position so that every read returns rows in the order they were saved.
``partition_cols=`` writes a directory of such files, one per partition value.

Reading prunes row groups on the covering column (or point statistics) and on the
first datetime column's statistics (``time=``), pushes ``columns=`` and ``filters=``
down to pyarrow, then keeps the geometries that really intersect the box.

Modules: :mod:`.write` (both layouts), :mod:`.checks` (what is refused before
writing), :mod:`.read` (pushdown, row order),
:mod:`.metadata` (``geo`` and layout metadata, CRS), :mod:`.hilbert` (sort keys),
:mod:`.upload` (files hashed as written, uploads complete or absent).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import geopandas as gpd

from memories_geo.backends.base import Capability
from memories_geo.errors import UnsupportedObjectError
from memories_geo.footprint import vector_footprint
from memories_geo.formats._vector import as_frame, check_series_request, series_name, with_crs
from memories_geo.formats.base import FileFormat, PreparedWrite, WriteOptions, WriteResult
from memories_geo.formats.geoparquet.checks import check_arrow_columns, check_codec, check_layout_options
from memories_geo.formats.geoparquet.hilbert import HILBERT_LEVEL, hilbert_key, hilbert_order
from memories_geo.formats.geoparquet.metadata import (
    COVERING_COLUMN,
    GEOPARQUET_VERSION,
    LAYOUT_KEY,
    covering_column,
    geo_metadata,
    layout_metadata,
)
from memories_geo.formats.geoparquet.partitions import is_dask_frame, write_partitions
from memories_geo.formats.geoparquet.read import read_geoparquet, time_column
from memories_geo.formats.geoparquet.upload import location_sink
from memories_geo.formats.geoparquet.write import (
    OBJECT_STORE_ROW_GROUP_SIZE,
    PARQUET_COMPRESSION,
    ROW_GROUP_SIZE,
    ROW_ORDER_COLUMN,
    write_geoparquet,
    write_settings,
)
from memories_geo.integrity import Manifest, stat_fingerprint
from memories_geo.query import OpenRequest
from memories_geo.types import Kind

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from memories_geo.backends.base import Location

__all__ = [
    "COVERING_COLUMN",
    "GEOPARQUET_VERSION",
    "HILBERT_LEVEL",
    "LAYOUT_KEY",
    "PARQUET_COMPRESSION",
    "ROW_GROUP_SIZE",
    "ROW_ORDER_COLUMN",
    "GeoParquetFormat",
    "check_arrow_columns",
    "check_layout_options",
    "covering_column",
    "geo_metadata",
    "hilbert_key",
    "hilbert_order",
    "layout_metadata",
    "read_geoparquet",
    "time_column",
    "write_geoparquet",
    "write_settings",
]


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
    kinds: ClassVar[frozenset[Kind]] = frozenset({Kind.VECTOR, Kind.TIMESERIES})
    extension: ClassVar[str] = ".parquet"
    open_options: ClassVar[Mapping[str, str]] = {
        "filters": "pyarrow row filters (list of tuples or an expression), pushed down with bbox and time",
    }
    default_for: ClassVar[frozenset[tuple[Kind, Capability]]] = frozenset({(Kind.VECTOR, Capability.FILES)})
    write_options: ClassVar[Mapping[str, str]] = {
        "sort": "'auto' (Hilbert order for large layers), 'hilbert' or 'none'",
        "keep_order": "keep the original row order inside each row group (default True)",
        "geometry_encoding": "'auto', 'WKB' or 'geoarrow'",
        "row_group_size": "rows per row group",
        "partition_cols": "columns to partition the layer by (a directory of files)",
        "data_page_size": "Parquet data page size in bytes (alias: page_size)",
        "page_size": "alias of data_page_size",
        "use_dictionary": "dictionary-encode columns (pyarrow's use_dictionary)",
        "write_statistics": "write column statistics (pyarrow's write_statistics)",
        "compression": "Parquet codec instead of the tier level's: snappy, zstd, gzip, brotli, lz4, none",
        "compression_level": "level of the codec (zstd, gzip, brotli)",
    }

    def can_store(self, obj: Any) -> bool:
        """Whether ``obj`` is a GeoDataFrame or a GeoSeries (geopandas or dask-geopandas)."""
        return isinstance(obj, gpd.GeoDataFrame | gpd.GeoSeries) or is_dask_frame(obj)

    def write(self, obj: Any, location: Location, options: WriteOptions) -> WriteResult:
        """Write a layer: one file, or for a dask-geopandas frame one file per partition.

        The footprint is computed in a second thread while the file is written. On an
        object store the manifest comes from the digests taken while the files were
        uploaded (:mod:`.upload`), nothing is read back; on a local tier the files are
        hashed once written. With ``compute=False`` the write is pending and its
        manifest is built once it has run. A dask-geopandas frame is always written as
        a pending write
        (:func:`~memories_geo.formats.geoparquet.partitions.write_partitions`): each
        partition by the worker that computes it, reporting its digest.
        """
        if is_dask_frame(obj):
            codec, extra = _codec_and_layout(options)
            return write_partitions(obj, location, options, codec=codec, extra=extra)
        if not options.compute:
            return super().write(obj, location, options)
        layer = self._layer(obj, location, options)
        with ThreadPoolExecutor(max_workers=1) as pool:
            footprint = pool.submit(vector_footprint, layer.gdf)
            written = _store(layer, location, options)
            if written is None:
                manifest = self.manifest(location)
            else:
                manifest = Manifest(written.files, stat=stat_fingerprint(location.fs, location.full_path))
            return WriteResult(manifest=manifest, footprint=footprint.result(), object_info=layer.info)

    def _prepare(self, obj: Any, location: Location, options: WriteOptions) -> PreparedWrite:
        """Check the layer and describe it; the file is written when the returned ``store`` runs.

        Used for ``compute=False``: the file is then written when the delayed save is
        computed.
        """
        layer = self._layer(obj, location, options)

        def store() -> None:
            _store(layer, location, options)

        return PreparedWrite(vector_footprint(layer.gdf), layer.info, store)

    def _layer(self, obj: Any, location: Location, options: WriteOptions) -> _Layer:
        """Check the layer (CRS, columns Arrow can hold, append compatibility) and what to write.

        Raises
        ------
        UnsupportedObjectError
            For a layer without CRS, a column or index level Arrow cannot hold (naming
            it, with its dtype and the types of its values), or rows that do not fit
            the stored layer in an append.
        OptionError
            For layout keywords with invalid values (:func:`check_layout_options`).
        """
        gdf, info = as_frame(obj, self.name)
        gdf = with_crs(gdf, options.crs, kind=info["type"])
        check_arrow_columns(gdf)
        codec, extra = _codec_and_layout(options)
        check_layout_options(gdf, **extra)
        if options.mode == "a" and options.previous is not None:
            path, filesystem = _target(options.previous)
            gdf = _append(read_geoparquet(path, filesystem=filesystem), gdf)
        if not location.is_local:
            extra.setdefault("row_group_size", OBJECT_STORE_ROW_GROUP_SIZE)
        return _Layer(gdf, info, codec, extra)

    def open(
        self, location: Location, object_info: Mapping[str, Any], request: OpenRequest | None = None
    ) -> Any:
        """Read the stored layer back as the type that was saved.

        Parameters
        ----------
        location : Location
            Where the file is.
        object_info : mapping
            What :meth:`write` recorded (``type`` and, for a GeoSeries, ``name``).
        request : OpenRequest, optional
            ``bbox`` (in ``request.bbox_crs``, brought to the layer's CRS and pushed
            down), ``time`` (rows of the first datetime column, pushed down),
            ``columns`` and ``options["filters"]`` (pyarrow row filters); default
            the whole layer.

        Returns
        -------
        geopandas.GeoDataFrame or geopandas.GeoSeries

        Raises
        ------
        OptionError
            ``columns=`` on a stored GeoSeries, or ``time=`` on a layer without a
            datetime column.
        """
        request = request if request is not None else OpenRequest()
        is_series = check_series_request(object_info, request)
        path, filesystem = _target(location)
        gdf = read_geoparquet(
            path,
            filesystem=filesystem,
            columns=request.columns,
            bbox=request.bbox,
            bbox_crs=request.bbox_crs,
            time=request.time,
            filters=request.options.get("filters"),
        )
        if is_series:
            return gdf.geometry.rename(series_name(object_info.get("name")))
        return gdf


@dataclass(frozen=True)
class _Layer:
    """A checked layer and how to write it."""

    gdf: gpd.GeoDataFrame
    info: dict[str, Any]
    codec: Mapping[str, Any] | None
    extra: dict[str, Any]


def _store(layer: _Layer, location: Location, options: WriteOptions) -> Manifest | None:
    """Write ``layer`` at ``location``; the digests taken while writing, if it was hashed then."""
    sink = location_sink(location)
    return write_geoparquet(
        layer.gdf, location.full_path, compression=options.compression, codec=layer.codec, sink=sink,
        **layer.extra,
    )


def _codec_and_layout(options: WriteOptions) -> tuple[Any, dict[str, Any]]:
    """The checked codec keywords, and the layout keywords left (``page_size`` renamed)."""
    extra = dict(options.extra)
    if "page_size" in extra:
        extra.setdefault("data_page_size", extra.pop("page_size"))
    codec = check_codec(extra)
    extra.pop("compression", None)
    extra.pop("compression_level", None)
    return codec, extra


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
