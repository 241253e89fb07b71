"""GeoJSON (RFC 7946): vector layers as one FeatureCollection, optionally gzipped.

What is written follows RFC 7946: coordinates in EPSG:4326 longitude/latitude
(other CRSs are reprojected; the original CRS is kept in the catalog's
``object_info`` so ``open(key, crs="original")`` can return it), no ``crs`` member,
polygon exteriors counter-clockwise and holes clockwise (right-hand rule).
Writing and reading go through pyogrio (GDAL's GeoJSON driver); geometries are
written in the shortest form that reads back as the same doubles unless
``precision=`` asks for fewer decimals.

GeoJSON has no types beyond string, number, boolean and null, so the pandas dtypes,
index and geometry column name are recorded in ``object_info`` and restored on
open wherever the stored values allow it (see ``docs/formats-vector.md``).
"""

from __future__ import annotations

import gzip
import io
import json
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from memories_geo.crs import crs_to_string
from memories_geo.errors import FormatError, OptionError, UnsupportedObjectError
from memories_geo.footprint import vector_footprint
from memories_geo.formats._vector import invalid_geometries
from memories_geo.formats.base import FileFormat, PreparedWrite, WriteOptions
from memories_geo.query import OpenRequest, check_options
from memories_geo.types import CompressionLevel, Kind

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd

    from memories_geo.backends.base import Location

__all__ = ["GZIP_LEVEL", "GeoJSONFormat", "invalid_geometries", "is_rfc7946"]

#: Compression level -> gzip level, with ``compress=True``.
GZIP_LEVEL: dict[CompressionLevel, int] = {
    CompressionLevel.FAST: 1,
    CompressionLevel.MEDIUM: 6,
    CompressionLevel.HIGH: 9,
    CompressionLevel.MAXIMUM: 9,
}

_WRITE_KEYWORDS = ("compress", "precision", "validate")
_GZIP_MAGIC = b"\x1f\x8b"
_INDEX_PREFIX = "__index_level_"


class GeoJSONFormat(FileFormat):
    """GeoDataFrames and GeoSeries as an RFC 7946 GeoJSON FeatureCollection.

    Write options (``save(..., format="geojson", **options)``):

    - ``compress=False``: gzip the file (level from the tier's compression).
    - ``precision=None``: decimal digits of coordinates; ``None`` writes each
      coordinate in the shortest form that reads back unchanged.
    - ``validate=False``: ``True`` refuses invalid geometries with
      :class:`~memories_geo.errors.UnsupportedObjectError` listing them (row label
      and shapely's reason) instead of writing them; ``"make_valid"`` repairs them
      (``GeoSeries.make_valid``) before writing.

    Examples
    --------
    >>> import memories_geo as mg
    >>> mem = mg.Memory("/tmp/mg-doc")  # doctest: +SKIP
    >>> mem.save(gdf, "parks", format="geojson", precision=7, validate=True)  # doctest: +SKIP
    >>> mem.open("parks", crs="original")  # doctest: +SKIP
    """

    name: ClassVar[str] = "geojson"
    kinds: ClassVar[frozenset[Kind]] = frozenset({Kind.VECTOR, Kind.TIMESERIES})
    extension: ClassVar[str] = ".geojson"
    open_options: ClassVar[Mapping[str, str]] = {
        "crs": "CRS to return: None (EPSG:4326, as stored), 'original' (the CRS it was saved in) or any CRS",
    }
    write_options: ClassVar[Mapping[str, str]] = {
        "compress": "gzip the file (.geojson.gz), at the tier's compression level",
        "precision": "decimal places of coordinates (default: exact, shortest form)",
        "validate": "True: refuse invalid geometries, naming the rows; 'make_valid': repair them",
    }

    def can_store(self, obj: Any) -> bool:
        """Whether ``obj`` is a GeoDataFrame or a GeoSeries."""
        import geopandas as gpd

        return isinstance(obj, gpd.GeoDataFrame | gpd.GeoSeries)

    def extension_for(self, options: WriteOptions) -> str:
        """File extension for a write with these options (``.geojson.gz`` when compressed)."""
        return ".geojson.gz" if options.extra.get("compress") else self.extension

    def _prepare(self, obj: Any, location: Location, options: WriteOptions) -> PreparedWrite:
        """Check the layer and its options, bring it to RFC 7946, and describe it.

        The document is encoded and written when the returned ``store`` runs: at once,
        or when the delayed save of ``compute=False`` is computed.

        Raises
        ------
        UnsupportedObjectError
            For a layer without CRS, further geometry columns, property columns whose
            values GeoJSON cannot keep (mixed JSON types, bytes, arbitrary objects),
            invalid geometries with ``validate=True``, or ``mode="a"``.
        OptionError
            For an unknown keyword or a ``precision`` outside 0-17.
        """
        from memories_geo.formats._vector import (
            as_frame,
            raise_for_invalid,
            refuse_json_changed_columns,
            refuse_other_geometries,
            with_crs,
        )

        check_options(options.extra, _WRITE_KEYWORDS, "save() in format 'geojson'")
        if options.mode == "a":
            raise UnsupportedObjectError(
                "format 'geojson' cannot append; save the combined layer with mode='w'"
            )
        compress = bool(options.extra.get("compress", False))
        precision = options.extra.get("precision")
        if precision is not None and (not isinstance(precision, int) or not 0 <= precision <= 17):
            raise OptionError(
                f"precision must be an integer from 0 to 17 (decimal digits), got {precision!r}"
            )
        frame, info = as_frame(obj, self.name)
        frame = with_crs(frame, options.crs, kind=info["type"])
        refuse_other_geometries(frame)
        validate = options.extra.get("validate", False)
        if validate == "make_valid":
            frame = frame.copy()
            frame[frame.geometry.name] = frame.geometry.make_valid()
        elif validate not in (False, None, True):
            raise OptionError(f"validate must be False, True or 'make_valid', got {validate!r}")
        elif validate:
            raise_for_invalid(frame.geometry)
        stored, layout = _to_rfc7946(frame)
        refuse_json_changed_columns(stored, layout)
        info = {**info, **layout, "compression": "gzip" if compress else None, "precision": precision}
        level = GZIP_LEVEL[options.compression]

        def store() -> None:
            data = _encode(stored, precision)
            if compress:
                data = gzip.compress(data, compresslevel=level, mtime=0)
            if location.is_local:
                import posixpath

                location.fs.makedirs(posixpath.dirname(location.full_path), exist_ok=True)
            location.fs.pipe_file(location.full_path, data)

        footprint = vector_footprint(stored.drop(columns=layout["index"].get("columns", [])))
        return PreparedWrite(footprint, info, store)

    def open(
        self, location: Location, object_info: Mapping[str, Any], request: OpenRequest | None = None
    ) -> Any:
        """Read the stored layer back as the type that was saved.

        Parameters
        ----------
        location : Location
            Where the file is.
        object_info : mapping
            What :meth:`write` recorded.
        request : OpenRequest, optional
            ``bbox`` (in ``request.bbox_crs``; rows whose geometry intersects it),
            ``time`` (rows of the first datetime column), ``columns``, and
            ``options["crs"]``: ``None`` (default) returns EPSG:4326 as stored,
            ``"original"`` reprojects to the CRS the layer was saved in, anything
            else pyproj understands reprojects to it. Default the whole layer.

        Returns
        -------
        geopandas.GeoDataFrame or geopandas.GeoSeries

        Raises
        ------
        OptionError
            ``columns=`` on a stored GeoSeries, or ``time=`` on a layer without a
            datetime column.
        """
        from memories_geo.formats._vector import check_series_request, series_name

        request = request if request is not None else OpenRequest()
        is_series = check_series_request(object_info, request)
        box = request.bbox_in("EPSG:4326")
        gdf = _read(location, object_info, box, request.columns, request.time)
        gdf = _to_crs(gdf, request.options.get("crs"), object_info)
        if is_series:
            return gdf.geometry.rename(series_name(object_info.get("name")))
        return gdf


def _to_rfc7946(frame: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, dict[str, Any]]:
    """Frame as stored (EPSG:4326, right-hand rule, index as columns) and how to undo it."""
    import pandas as pd
    import pyproj
    import shapely

    layout: dict[str, Any] = {
        "geometry": str(frame.geometry.name),
        "crs": crs_to_string(frame.crs),
        "columns": [str(c) for c in frame.columns if c != frame.geometry.name],
        "order": [str(c) for c in frame.columns],
    }
    if not all(isinstance(c, str) for c in frame.columns):
        raise UnsupportedObjectError(
            f"GeoJSON property names are strings; rename the columns {list(frame.columns)} first"
        )
    out = frame.rename_geometry("geometry") if frame.geometry.name != "geometry" else frame.copy(deep=False)
    index = frame.index
    if isinstance(index, pd.RangeIndex):
        layout["index"] = {"range": [index.start, index.step], "name": index.name}
    else:
        names = [f"{_INDEX_PREFIX}{i}__" for i in range(index.nlevels)]
        layout["index"] = {"columns": names, "names": list(index.names)}
        out = out.reset_index(drop=False, names=names)
    layout["dtypes"] = {str(c): _dtype_record(out[c]) for c in out.columns if c != "geometry"}
    if not out.crs.equals(pyproj.CRS.from_epsg(4326), ignore_axis_order=True):
        out = out.to_crs("EPSG:4326")
    geoms = np.asarray(out.geometry.values, dtype=object)
    oriented = shapely.orient_polygons(geoms, exterior_cw=False)
    out = out.set_geometry(pd.Series(oriented, index=out.index), crs="EPSG:4326")
    out.index = pd.RangeIndex(len(out))
    return out, layout


def _dtype_record(series: Any) -> Any:
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        categories = dtype.categories.tolist()
        if json.loads(json.dumps(categories, default=str)) == categories:
            return {"category": categories, "ordered": bool(dtype.ordered)}
        return "category"
    return str(dtype)


def _encode(stored: gpd.GeoDataFrame, precision: int | None) -> bytes:
    import pyogrio

    options = {"RFC7946": "NO", "WRITE_NAME": "NO"}
    if precision is None:
        options["SIGNIFICANT_FIGURES"] = "17"
    else:
        options["COORDINATE_PRECISION"] = str(precision)
    buffer = io.BytesIO()
    plain = stored.set_crs(None, allow_override=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'crs' was not provided", category=UserWarning)
        warnings.filterwarnings("ignore", message="NaN of Infinity value found", category=RuntimeWarning)
        pyogrio.write_dataframe(plain, buffer, driver="GeoJSON", layer_options=options)
    if precision is not None:
        return buffer.getvalue()
    return _exact_coordinates(buffer.getvalue(), stored)


def _exact_coordinates(encoded: bytes, stored: gpd.GeoDataFrame) -> bytes:
    """``encoded`` with every geometry written as Python writes floats (the shortest exact form).

    GDAL's writer rounds away digits it takes for noise (``-16.639150000000004`` becomes
    ``-16.63915``) even with ``SIGNIFICANT_FIGURES=17``, so coordinates would not read
    back unchanged.
    """
    from shapely.geometry import mapping

    document = json.loads(encoded)
    features = document.get("features", [])
    geometries = stored.geometry
    if len(features) != len(geometries):
        raise FormatError(f"GeoJSON writer wrote {len(features)} features for {len(geometries)} rows")
    for feature, geometry in zip(features, geometries, strict=True):
        if geometry is not None and not geometry.is_empty:
            feature["geometry"] = mapping(geometry)
    return json.dumps(document, separators=(",", ":")).encode()


def _read(
    location: Location,
    info: Mapping[str, Any],
    box: tuple[float, float, float, float] | None,
    columns: Any,
    time: tuple[pd.Timestamp | None, pd.Timestamp | None] | None,
) -> gpd.GeoDataFrame:
    import pandas as pd
    import pyogrio
    import shapely

    from memories_geo.formats._vector import no_time_column, time_mask

    data = location.fs.cat_file(location.full_path)
    if data[:2] == _GZIP_MAGIC:
        data = gzip.decompress(data)
    index_info = info.get("index", {})
    index_columns = list(index_info.get("columns", []))
    wanted = None
    if columns is not None:
        wanted = [str(c) for c in columns if c != info.get("geometry", "geometry")]
        missing = [c for c in wanted if c not in info.get("columns", wanted)]
        if missing:
            raise ValueError(f"columns {missing} are not in the stored layer; it has {info.get('columns')}")
    when = None
    if time is not None:
        when = _time_column(info)
        if when is None:
            raise no_time_column(info.get("columns", []))
    extra = [when] if when is not None and wanted is not None and when not in wanted else []
    try:
        gdf = pyogrio.read_dataframe(
            io.BytesIO(data),
            columns=None if wanted is None else wanted + extra + index_columns,
            bbox=box,
        )
    except Exception as exc:
        raise FormatError(f"cannot read GeoJSON at {location.url}: {exc}") from exc
    gdf = gdf.set_crs("EPSG:4326", allow_override=True)
    if box is not None and len(gdf):
        keep = shapely.intersects(np.asarray(gdf.geometry.values, dtype=object), shapely.box(*box))
        gdf = gdf[keep]
    dtypes = info.get("dtypes", {})
    expected = (info.get("columns", []) if wanted is None else wanted + extra) + index_columns
    for name in expected:
        if name not in gdf.columns:
            gdf[name] = pd.Series([None] * len(gdf), index=gdf.index, dtype=object)
    for name in gdf.columns:
        if name != "geometry" and name in dtypes:
            gdf[name] = _restore_dtype(gdf[name], dtypes[name])
    if when is not None and time is not None:
        gdf = gdf[time_mask(gdf[when], time)].drop(columns=extra)
    return _rebuild(gdf, info, columns, filtered=box is not None or time is not None)


def _time_column(info: Mapping[str, Any]) -> str | None:
    """First column recorded with a datetime dtype (the footprint's time column)."""
    import pandas as pd

    dtypes = info.get("dtypes", {})
    for name in info.get("columns", []):
        record = dtypes.get(name)
        if not isinstance(record, str) or record == "category":
            continue
        try:
            dtype = pd.api.types.pandas_dtype(record)
        except TypeError:
            continue
        if pd.api.types.is_datetime64_any_dtype(dtype):
            return str(name)
    return None


def _rebuild(
    gdf: gpd.GeoDataFrame, info: Mapping[str, Any], columns: Any, *, filtered: bool
) -> gpd.GeoDataFrame:
    """The saved index, geometry name and column order put back on what was read."""
    import pandas as pd

    index_info = info.get("index", {})
    index_columns = list(index_info.get("columns", []))
    if index_columns:
        gdf = gdf.set_index(index_columns)
        gdf.index.names = index_info["names"]
    elif "range" in index_info and not filtered:
        start, step = index_info["range"]
        gdf.index = pd.RangeIndex(start, start + step * len(gdf), step, name=index_info.get("name"))
    else:
        gdf = gdf.reset_index(drop=True)
    geometry_name = info.get("geometry", "geometry")
    if geometry_name != "geometry":
        gdf = gdf.rename_geometry(geometry_name)
    if columns is None:
        order = info.get("order", list(gdf.columns))
    else:
        order = [str(c) for c in columns]
        if geometry_name not in order:
            order.append(geometry_name)
    return gdf[order]


def _restore_dtype(series: Any, record: Any) -> Any:
    """``series`` cast back to its recorded dtype when the stored values allow it."""
    import pandas as pd

    try:
        if isinstance(record, dict):
            return pd.Series(
                pd.Categorical(series, categories=record["category"], ordered=record["ordered"]),
                index=series.index,
                name=series.name,
            )
        if record == "category":
            return series.astype("category")
        if str(series.dtype) == record:
            return series
        target = pd.api.types.pandas_dtype(record)
        if isinstance(target, pd.DatetimeTZDtype) and isinstance(series.dtype, pd.DatetimeTZDtype):
            return series.dt.tz_convert(target.tz).astype(target)
        cast = series.astype(target)
        if _same_values(series, cast):
            return cast
    except (TypeError, ValueError, OverflowError):
        pass
    return series


def _same_values(before: Any, after: Any) -> bool:
    """Whether a cast kept every value (so it is safe to hand back)."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(before.dtype) and pd.api.types.is_numeric_dtype(after.dtype):
        a = before.astype("float64").to_numpy(na_value=np.nan)
        b = after.astype("float64").to_numpy(na_value=np.nan)
        return bool(np.array_equal(a, b, equal_nan=True))
    return True


def _to_crs(gdf: gpd.GeoDataFrame, crs: Any, info: Mapping[str, Any]) -> gpd.GeoDataFrame:
    if crs is None:
        return gdf
    if isinstance(crs, str) and crs == "original":
        crs = info.get("crs")
        if crs is None:
            return gdf
    return gdf.to_crs(crs)


def is_rfc7946(document: Mapping[str, Any]) -> list[str]:
    """Problems that make a decoded GeoJSON document depart from RFC 7946 (empty when none).

    Checks: a FeatureCollection without a ``crs`` member, longitude/latitude
    ranges, and counter-clockwise polygon exteriors with clockwise holes.
    """
    import shapely

    problems: list[str] = []
    if document.get("type") != "FeatureCollection":
        problems.append(f"type is {document.get('type')!r}, not 'FeatureCollection'")
    if "crs" in document:
        problems.append("has a 'crs' member (RFC 7946 section 4 removed it)")
    for i, feature in enumerate(document.get("features", [])):
        geometry = feature.get("geometry")
        if geometry is None:
            continue
        shape = shapely.from_geojson(json.dumps(geometry))
        coords = shapely.get_coordinates(shape)
        if len(coords) and (
            (np.abs(coords[:, 0]) > 180).any() or (np.abs(coords[:, 1]) > 90).any()
        ):
            problems.append(f"feature {i}: coordinates outside longitude/latitude ranges")
        for polygon in _polygons(shape):
            if not polygon.exterior.is_ccw:
                problems.append(f"feature {i}: polygon exterior is clockwise")
            if any(ring.is_ccw for ring in polygon.interiors):
                problems.append(f"feature {i}: polygon hole is counter-clockwise")
    return problems


def _polygons(shape: Any) -> list[Any]:
    if shape.is_empty:
        return []
    if shape.geom_type == "Polygon":
        return [shape]
    if hasattr(shape, "geoms"):
        return [p for part in shape.geoms for p in _polygons(part)]
    return []

