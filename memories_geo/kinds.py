"""Decide what kind of data an object is (raster, vector, time series)."""

from __future__ import annotations

from typing import Any

from memories_geo.errors import UnsupportedObjectError
from memories_geo.types import Kind

__all__ = ["detect_kind", "object_type", "spatial_dims"]

#: (x, y) dimension-name pairs recognised as spatial, in order of preference.
SPATIAL_DIM_PAIRS: tuple[tuple[str, str], ...] = (
    ("x", "y"),
    ("lon", "lat"),
    ("longitude", "latitude"),
)
_X_STANDARD_NAMES = {"projection_x_coordinate", "longitude", "grid_longitude"}
_Y_STANDARD_NAMES = {"projection_y_coordinate", "latitude", "grid_latitude"}


def spatial_dims(obj: Any) -> tuple[str, str] | None:
    """Return the ``(x_dim, y_dim)`` of an xarray object, or ``None``.

    Names follow rioxarray (x/y, lon/lat, longitude/latitude); CF ``axis`` or
    ``standard_name`` attributes on dimension coordinates are honoured too.
    """
    dims = set(obj.dims)
    for x, y in SPATIAL_DIM_PAIRS:
        if x in dims and y in dims:
            return x, y
    x_dim = y_dim = None
    for dim in obj.dims:
        if dim not in obj.coords:
            continue
        attrs = obj.coords[dim].attrs
        if attrs.get("axis") == "X" or attrs.get("standard_name") in _X_STANDARD_NAMES:
            x_dim = x_dim or dim
        elif attrs.get("axis") == "Y" or attrs.get("standard_name") in _Y_STANDARD_NAMES:
            y_dim = y_dim or dim
    if x_dim and y_dim:
        return str(x_dim), str(y_dim)
    return None


def object_type(obj: Any) -> str:
    """Short type name recorded in the catalog so ``open`` returns the same type."""
    return type(obj).__name__


def detect_kind(obj: Any) -> Kind:
    """Return the :class:`Kind` of ``obj`` or raise :class:`UnsupportedObjectError`.

    Raises
    ------
    UnsupportedObjectError
        For objects no format can hold, with the reason and the fix.
    """
    import xarray as xr

    if isinstance(obj, xr.Dataset | xr.DataArray):
        if spatial_dims(obj) is not None:
            return Kind.RASTER
        raise UnsupportedObjectError(
            f"this {type(obj).__name__} has no spatial dimensions (dims: {tuple(obj.dims)}); "
            "a raster needs x/y, lon/lat or longitude/latitude dims. Rename them "
            "(ds.rename(...)) or mark them with ds.rio.set_spatial_dims(x_dim=..., y_dim=...)."
        )
    if isinstance(obj, xr.DataTree):
        for node in obj.subtree:
            if node.has_data and spatial_dims(node.to_dataset(inherit=False)) is not None:
                return Kind.RASTER
        raise UnsupportedObjectError(
            "no node of this DataTree has spatial dimensions (x/y, lon/lat or longitude/latitude)."
        )
    import geopandas as gpd

    if isinstance(obj, gpd.GeoDataFrame | gpd.GeoSeries):
        return Kind.VECTOR
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        raise UnsupportedObjectError(
            "this DataFrame has no geometry column; make it a GeoDataFrame first, e.g. "
            "geopandas.GeoDataFrame(df, geometry=geopandas.points_from_xy(df.lon, df.lat), "
            "crs='EPSG:4326')."
        )
    raise UnsupportedObjectError(
        f"cannot store a {type(obj).__module__}.{type(obj).__name__}; memories_geo stores "
        "xarray Dataset/DataArray/DataTree and geopandas GeoDataFrame/GeoSeries objects."
    )
