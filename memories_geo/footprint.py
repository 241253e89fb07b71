"""Footprints: where and when a stored object lies (bbox in EPSG:4326, native CRS, time).

Rasters lie where their x/y coordinates say (in their CRS); arrays without spatial dims
(a CF station time series, any other Dataset) where their latitude/longitude
coordinates say, read as EPSG:4326, or nowhere (an empty bbox) when they have none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from memories_geo.crs import crs_to_string, xarray_crs
from memories_geo.errors import UnsupportedObjectError
from memories_geo.kinds import latlon_coords, spatial_dims

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd
    import xarray as xr

__all__ = [
    "BBox",
    "Footprint",
    "array_footprint",
    "bbox_to_wgs84",
    "latlon_bounds",
    "raster_footprint",
    "vector_footprint",
    "wrap_longitudes",
    "xarray_footprint",
]

BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class Footprint:
    """Extent of a stored object, as recorded in the catalog.

    Attributes
    ----------
    bbox : tuple or None
        ``(minx, miny, maxx, maxy)`` in EPSG:4326.
    native_bbox : tuple or None
        The same extent in the object's own CRS.
    crs : str or None
        ``"AUTH:CODE"`` when the CRS has one, else WKT2.
    time_start, time_end : pandas.Timestamp or None
        Time range covered (inclusive).
    variables : tuple of str
        Data variables (raster) or attribute columns (vector).
    shape : dict
        Dimension sizes (raster) or ``{"rows": n}`` (vector).
    """

    bbox: BBox | None = None
    native_bbox: BBox | None = None
    crs: str | None = None
    time_start: pd.Timestamp | None = None
    time_end: pd.Timestamp | None = None
    variables: tuple[str, ...] = ()
    shape: Mapping[str, int] = field(default_factory=dict)


def bbox_to_wgs84(bounds: Sequence[float], crs: Any) -> BBox | None:
    """Transform native bounds to EPSG:4326, densifying edges; ``None`` if undefined.

    Bounds partly outside the CRS's valid area (a geostationary disk's corners)
    are handled by transforming a grid of points and keeping the finite ones.
    """
    import pyproj

    if crs is None or not all(math.isfinite(v) for v in bounds):
        return None
    crs = pyproj.CRS.from_user_input(crs)
    minx, miny, maxx, maxy = (float(v) for v in bounds)
    if crs.equals(pyproj.CRS.from_epsg(4326)) or (crs.is_geographic and crs.to_epsg() == 4326):
        return _clip_wgs84((minx, miny, maxx, maxy))
    transformer = pyproj.Transformer.from_crs(crs, 4326, always_xy=True)
    try:
        out = transformer.transform_bounds(minx, miny, maxx, maxy, densify_pts=21)
        if all(math.isfinite(v) for v in out):
            return _clip_wgs84(out)
    except pyproj.exceptions.ProjError:
        pass
    xs, ys = np.meshgrid(np.linspace(minx, maxx, 101), np.linspace(miny, maxy, 101))
    lon, lat = transformer.transform(xs.ravel(), ys.ravel())
    ok = np.isfinite(lon) & np.isfinite(lat)
    if not ok.any():
        return None
    return _clip_wgs84((lon[ok].min(), lat[ok].min(), lon[ok].max(), lat[ok].max()))


def _clip_wgs84(b: Sequence[float]) -> BBox:
    return (
        max(float(b[0]), -180.0),
        max(float(b[1]), -90.0),
        min(float(b[2]), 180.0),
        min(float(b[3]), 90.0),
    )


def _axis_bounds(values: np.ndarray) -> tuple[float, float]:
    """Edges of pixel-centre coordinates (half a step beyond the extreme centres)."""
    values = np.asarray(values, dtype="float64")
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    half = abs(float(values[1] - values[0])) / 2 if values.size > 1 else 0.0
    return lo - half, hi + half


def time_range(obj: xr.Dataset | xr.DataArray) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """First and last time of the datetime dimension coordinates of ``obj``."""
    import pandas as pd

    starts, ends = [], []
    for name in obj.dims:
        if name in obj.indexes:
            index = obj.indexes[name]
            if isinstance(index, pd.DatetimeIndex) and index.notna().any():
                starts.append(index.min())
                ends.append(index.max())
    return (min(starts), max(ends)) if starts else (None, None)


def _variables(obj: xr.Dataset | xr.DataArray) -> tuple[str, ...]:
    if hasattr(obj, "data_vars"):
        return tuple(str(v) for v in obj.data_vars)
    return () if obj.name is None else (str(obj.name),)


def xarray_footprint(obj: xr.Dataset | xr.DataArray, crs: Any = None) -> Footprint:
    """Footprint of a Dataset or DataArray, raster or not.

    :func:`raster_footprint` when it has spatial dims, else :func:`array_footprint`.

    Raises
    ------
    UnsupportedObjectError
        For a raster without a CRS (see :func:`raster_footprint`).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> xarray_footprint(xr.Dataset({"v": ("n", np.arange(3))})).bbox is None
    True
    """
    if spatial_dims(obj) is not None:
        return raster_footprint(obj, crs=crs)
    return array_footprint(obj)


def latlon_bounds(lon: Any, lat: Any) -> BBox | None:
    """``(minlon, minlat, maxlon, maxlat)`` of finite coordinate values, longitudes in [-180, 180].

    ``None`` when no value is finite.

    Examples
    --------
    >>> latlon_bounds([350.0, 10.0], [40.0, 50.0])
    (-10.0, 40.0, 10.0, 50.0)
    """
    lons = wrap_longitudes(np.asarray(lon, dtype="float64").ravel())
    lats = np.asarray(lat, dtype="float64").ravel()
    lons, lats = lons[np.isfinite(lons)], lats[np.isfinite(lats)]
    if not lons.size or not lats.size:
        return None
    return _clip_wgs84((lons.min(), lats.min(), lons.max(), lats.max()))


def wrap_longitudes(values: np.ndarray) -> np.ndarray:
    """Longitudes above 180 (a 0-360 convention) moved to [-180, 180]."""
    values = np.asarray(values, dtype="float64")
    with np.errstate(invalid="ignore"):
        return np.where(values > 180, (values + 180) % 360 - 180, values)


def array_footprint(obj: xr.Dataset | xr.DataArray) -> Footprint:
    """Footprint of an xarray object without spatial dims.

    The bbox (EPSG:4326, also the native bbox) is that of its latitude/longitude
    coordinates (:func:`memories_geo.kinds.latlon_coords`: the stations of a CF time
    series), else empty; no CRS is required or invented. The time range is that of its
    datetime dimensions; variables and dimension sizes are recorded.

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset(coords={"lat": ("station", [45.0, 46.0]), "lon": ("station", [5.0, 7.0])})
    >>> array_footprint(ds).bbox
    (5.0, 45.0, 7.0, 46.0)
    """
    names = latlon_coords(obj)
    bbox = latlon_bounds(obj[names[0]].values, obj[names[1]].values) if names else None
    start, end = time_range(obj)
    return Footprint(
        bbox=bbox,
        native_bbox=bbox,
        crs="EPSG:4326" if bbox is not None else None,
        time_start=start,
        time_end=end,
        variables=_variables(obj),
        shape={str(k): int(v) for k, v in obj.sizes.items()},
    )


def raster_footprint(obj: xr.Dataset | xr.DataArray, crs: Any = None) -> Footprint:
    """Footprint of a raster from its spatial coordinates, CRS and time coordinate.

    Raises
    ------
    UnsupportedObjectError
        If the object has no spatial dims, or x/y dims and no CRS.
    """
    dims = spatial_dims(obj)
    if dims is None:
        raise UnsupportedObjectError(f"no spatial dims among {tuple(obj.dims)}")
    x_dim, y_dim = dims
    crs = crs if crs is not None else xarray_crs(obj)
    if crs is None:
        raise UnsupportedObjectError(
            f"this raster has spatial dims {dims} but no CRS. Set one with "
            "ds.rio.write_crs('EPSG:32631') or pass crs=... to save()."
        )
    native = None
    if x_dim in obj.coords and y_dim in obj.coords and obj.sizes[x_dim] and obj.sizes[y_dim]:
        x0, x1 = _axis_bounds(obj[x_dim].values)
        y0, y1 = _axis_bounds(obj[y_dim].values)
        native = (x0, y0, x1, y1)
    start, end = time_range(obj)
    return Footprint(
        bbox=bbox_to_wgs84(native, crs) if native else None,
        native_bbox=native,
        crs=crs_to_string(crs),
        time_start=start,
        time_end=end,
        variables=_variables(obj),
        shape={str(k): int(v) for k, v in obj.sizes.items()},
    )


def vector_footprint(gdf: gpd.GeoDataFrame) -> Footprint:
    """Footprint of a GeoDataFrame: total bounds, CRS, first datetime column's range."""
    import pandas as pd
    import shapely

    geometries = np.asarray(gdf.geometry.array)
    bounds = shapely.total_bounds(geometries) if len(geometries) else np.full(4, np.nan)
    native = tuple(float(v) for v in bounds) if np.isfinite(bounds).all() else None
    start = end = None
    for name in gdf.columns:
        col = gdf[name]
        if name != gdf.geometry.name and pd.api.types.is_datetime64_any_dtype(col):
            if col.notna().any():
                start, end = pd.Timestamp(col.min()), pd.Timestamp(col.max())
            break
    return Footprint(
        bbox=bbox_to_wgs84(native, gdf.crs) if native else None,
        native_bbox=native,  # type: ignore[arg-type]
        crs=crs_to_string(gdf.crs),
        time_start=start,
        time_end=end,
        variables=tuple(str(c) for c in gdf.columns if c != gdf.geometry.name),
        shape={"rows": len(gdf)},
    )
