"""GeoParquet 1.1: vector layers as one Parquet file with a ``bbox`` covering column.

Writing goes through :meth:`geopandas.GeoDataFrame.to_parquet` with
``schema_version="1.1.0"`` and ``write_covering_bbox=True``, so the files are what
geopandas, GDAL, DuckDB and QGIS expect. Reading goes through
:func:`geopandas.read_parquet`, with ``bbox=`` pruning on the covering column
(then refined to the geometries that really intersect), ``columns=`` and
``filters=`` pushed down to pyarrow.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import posixpath
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

import geopandas as gpd
import pyarrow.parquet as pq

from memories_geo.errors import FormatError, UnsupportedObjectError
from memories_geo.footprint import vector_footprint
from memories_geo.formats.base import FileFormat, WriteOptions
from memories_geo.types import CompressionLevel, Kind

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from memories_geo.backends.base import Location
    from memories_geo.footprint import Footprint

__all__ = [
    "GEOPARQUET_VERSION",
    "PARQUET_COMPRESSION",
    "GeoParquetFormat",
    "covering_column",
    "geo_metadata",
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

_QUERY_KEYWORDS = ("bbox", "columns", "filters")


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
    **kwargs: Any,
) -> None:
    """Write ``gdf`` as one GeoParquet 1.1 file with a bbox covering column.

    When ``gdf`` has a column of its own called ``"bbox"``, the covering column
    gets another name (recorded in the ``geo`` metadata, where readers look it up)
    so the user's column is stored unchanged.

    Parameters
    ----------
    gdf : geopandas.GeoDataFrame
        What to write (its CRS, index and dtypes are kept).
    path : str
        Local path, or a path on ``filesystem``.
    filesystem : fsspec.AbstractFileSystem, optional
        Filesystem holding ``path``; default the local one.
    compression : CompressionLevel or str
        Mapped to zstd levels by :data:`PARQUET_COMPRESSION`.
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
    settings = write_settings(compression, **kwargs)
    with _open_for_writing(path, filesystem) as target:
        if settings["write_covering_bbox"] and COVERING_COLUMN in gdf.columns:
            _write_with_renamed_covering(gdf, target, settings)
        else:
            gdf.to_parquet(target, **settings)


def _open_for_writing(path: str, filesystem: AbstractFileSystem | None) -> Any:
    """Return a context yielding what ``to_parquet`` writes to: a path or an open file."""
    if filesystem is None:
        return contextlib.nullcontext(path)
    return filesystem.open(path, "wb")


def _write_with_renamed_covering(
    gdf: gpd.GeoDataFrame, target: str | BinaryIO, settings: Mapping[str, Any]
) -> None:
    """Write with a covering column named so it cannot replace the user's ``bbox`` column."""
    import pyarrow as pa

    covering = _free_column_name(gdf, "bbox_covering")
    plain = {**settings, "write_covering_bbox": False, "compression": "none"}
    plain.pop("compression_level", None)
    buffer = io.BytesIO()
    gdf.to_parquet(buffer, **plain)
    buffer.seek(0)
    table = pq.read_table(buffer)
    bounds = gdf.bounds
    struct = pa.StructArray.from_arrays(
        [pa.array(bounds[c].to_numpy(), from_pandas=True) for c in bounds.columns],
        names=["xmin", "ymin", "xmax", "ymax"],
    )
    table = table.append_column(covering, struct)
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


def read_geoparquet(
    path: str,
    *,
    filesystem: AbstractFileSystem | None = None,
    columns: Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    filters: Any = None,
    **kwargs: Any,
) -> gpd.GeoDataFrame:
    """Read a GeoParquet file (any version geopandas reads), with pushdown.

    Parameters
    ----------
    path : str
        Local path, or a path on ``filesystem``.
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
        Passed to :func:`geopandas.read_parquet`.

    Returns
    -------
    geopandas.GeoDataFrame
        Without the covering column. A filtered read of a layer whose index is a
        ``RangeIndex`` numbers its rows from 0, as ``geopandas.read_parquet`` does.

    Examples
    --------
    >>> read_geoparquet("/tmp/points.parquet", bbox=(-1, -1, 1, 1))  # doctest: +SKIP
    """
    geo = geo_metadata(path, filesystem=filesystem)
    covering = covering_column(geo)
    primary = geo["primary_column"]
    box = _check_bbox(bbox) if bbox is not None else None
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


def _check_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    values = tuple(float(v) for v in bbox)
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"bbox must be 4 finite numbers (minx, miny, maxx, maxy), got {bbox!r}")
    minx, miny, maxx, maxy = values
    if minx > maxx or miny > maxy:
        raise ValueError(
            "bbox must be (minx, miny, maxx, maxy) with minx <= maxx and miny <= maxy, "
            f"got {bbox!r}"
        )
    return minx, miny, maxx, maxy


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
        gdf, info = _as_frame(obj)
        gdf = _with_crs(gdf, options.crs, kind=info["type"])
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
        unknown = sorted(set(query) - set(_QUERY_KEYWORDS))
        if unknown:
            raise TypeError(
                f"unknown query keyword(s) {unknown} for format 'geoparquet'; "
                f"valid: {list(_QUERY_KEYWORDS)}"
            )
        is_series = object_info.get("type") == "GeoSeries"
        if is_series and query.get("columns") is not None:
            raise ValueError("columns= does not apply to a stored GeoSeries (it has one column)")
        gdf = self._read(location, **query)
        if is_series:
            return gdf.geometry.rename(_series_name(object_info.get("name")))
        return gdf


def _target(location: Location) -> tuple[str, AbstractFileSystem | None]:
    if location.is_local:
        return location.full_path, None
    return location.full_path, location.fs


def _as_frame(obj: Any) -> tuple[gpd.GeoDataFrame, dict[str, Any]]:
    """Frame to write, and the ``object_info`` that rebuilds ``obj``'s type on open."""
    if isinstance(obj, gpd.GeoSeries):
        name = obj.name
        if hasattr(name, "item"):
            name = name.item()
        if isinstance(name, tuple):
            name = {"tuple": list(name)}
        if not _json_safe(name):
            raise UnsupportedObjectError(
                f"cannot record the GeoSeries name {obj.name!r}; rename it to a string "
                "first (gs.rename('geometry'))"
            )
        return obj.to_frame(name="geometry"), {"type": "GeoSeries", "name": name}
    if isinstance(obj, gpd.GeoDataFrame):
        try:
            geometry_name = obj.geometry.name
        except AttributeError as exc:
            raise UnsupportedObjectError(
                "this GeoDataFrame has no active geometry column; set one with "
                "gdf.set_geometry('column_name')"
            ) from exc
        return obj, {"type": "GeoDataFrame", "geometry": str(geometry_name)}
    raise UnsupportedObjectError(
        f"format 'geoparquet' stores GeoDataFrame and GeoSeries objects, not {type(obj).__name__}"
    )


def _json_safe(value: Any) -> bool:
    try:
        return json.loads(json.dumps(value)) == value
    except (TypeError, ValueError):
        return False


def _series_name(stored: Any) -> Any:
    if isinstance(stored, dict) and "tuple" in stored:
        return tuple(stored["tuple"])
    return stored


def _with_crs(gdf: gpd.GeoDataFrame, crs: Any, *, kind: str) -> gpd.GeoDataFrame:
    """``gdf`` with ``crs`` assigned when it has none; never modifies ``gdf`` itself."""
    import pyproj

    var = "gs" if kind == "GeoSeries" else "gdf"
    if crs is None:
        if gdf.crs is None:
            raise UnsupportedObjectError(
                f"this {kind} has no CRS. Pass crs= to save() (e.g. crs='EPSG:4326'), "
                f"or set it with {var}.set_crs(...) first (gdf.set_crs('EPSG:4326') "
                "for longitude/latitude)."
            )
        return gdf
    wanted = pyproj.CRS.from_user_input(crs)
    if gdf.crs is None:
        out = gdf.copy(deep=False)
        out[gdf.geometry.name] = gdf.geometry.set_crs(wanted)
        return out
    if not gdf.crs.equals(wanted, ignore_axis_order=True):
        raise UnsupportedObjectError(
            f"crs={crs!r} conflicts with the {kind}'s own CRS {gdf.crs.to_string()!r}; "
            f"crs= only assigns a CRS to data that has none. To store it in {crs!r}, "
            f"reproject first with {var}.to_crs({crs!r})."
        )
    return gdf


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
