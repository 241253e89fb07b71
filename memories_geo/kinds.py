"""Decide what kind of data an object is (raster, vector, time series, array).

- **raster**: an xarray object with spatial dims (x/y, lon/lat, longitude/latitude, or
  dimension coordinates marked with CF ``axis``/``standard_name``);
- **timeseries**: a pandas DataFrame with a datetime column or index; a GeoDataFrame with a
  datetime index or a datetime column named like a time axis (:data:`TIME_NAMES`); an
  xarray object with a time dimension plus a station dimension (CF discrete sampling
  geometry: ``featureType = "timeSeries"``, a ``cf_role = "timeseries_id"`` coordinate, or a
  dimension named like a station, :data:`STATION_NAMES`);
- **vector**: any other GeoDataFrame or GeoSeries;
- **array**: any other xarray Dataset, DataArray or DataTree. Its extent, if any, comes
  from latitude/longitude coordinates (:func:`latlon_coords`).
"""

from __future__ import annotations

from typing import Any

from memories_geo.errors import UnsupportedObjectError
from memories_geo.types import Kind

__all__ = [
    "STATION_NAMES",
    "TIME_NAMES",
    "detect_kind",
    "latlon_coords",
    "object_type",
    "spatial_dims",
    "station_dim",
    "time_column",
    "time_dim",
]

#: Column or dimension names read as the time axis of a table or array.
TIME_NAMES: tuple[str, ...] = ("time", "timestamp", "datetime", "date", "valid_time", "obs_time")
#: Dimension names read as the station (feature) axis of a CF time series.
STATION_NAMES: tuple[str, ...] = ("station", "stations", "station_id", "id", "site", "sensor", "feature")

#: (x, y) dimension-name pairs recognised as spatial, in order of preference.
SPATIAL_DIM_PAIRS: tuple[tuple[str, str], ...] = (
    ("x", "y"),
    ("lon", "lat"),
    ("longitude", "latitude"),
)
#: Coordinate names read as longitudes / latitudes of an array without spatial dims.
LON_NAMES: tuple[str, ...] = ("lon", "longitude")
LAT_NAMES: tuple[str, ...] = ("lat", "latitude")
_LON_UNITS = {"degrees_east", "degree_east", "degrees_e", "degree_e"}
_LAT_UNITS = {"degrees_north", "degree_north", "degrees_n", "degree_n"}
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


def latlon_coords(obj: Any) -> tuple[str, str] | None:
    """Return the ``(lon, lat)`` coordinate names of an xarray object, or ``None``.

    Numeric coordinates named in :data:`LON_NAMES` / :data:`LAT_NAMES` (any case), or
    marked with CF ``standard_name`` (``longitude``/``latitude``) or ``units``
    (``degrees_east``/``degrees_north``). They locate the stations of a CF time series
    (1-D on the station dim) or the cells of a curvilinear grid; their values are read
    as EPSG:4326.

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset(coords={"lat": ("station", [45.0]), "lon": ("station", [5.0])})
    >>> latlon_coords(ds)
    ('lon', 'lat')
    """
    found: dict[str, str] = {}
    numeric = [str(n) for n, c in obj.coords.items() if c.dtype.kind in "iuf" and c.ndim > 0]
    for axis, names, units in (("lon", LON_NAMES, _LON_UNITS), ("lat", LAT_NAMES, _LAT_UNITS)):
        by_name = [n for n in numeric if n.lower() in names]
        by_attrs = [
            n for n in numeric
            if obj.coords[n].attrs.get("standard_name") == names[-1]
            or str(obj.coords[n].attrs.get("units", "")).lower() in units
        ]
        candidates = by_name + by_attrs
        if candidates:
            found[axis] = candidates[0]
    if len(found) == 2:
        return found["lon"], found["lat"]
    return None


def object_type(obj: Any) -> str:
    """Short type name recorded in the catalog so ``open`` returns the same type."""
    return type(obj).__name__


def time_column(frame: Any) -> str | None:
    """The time axis of a table: a datetime column (a :data:`TIME_NAMES` one first), else ``None``.

    A DatetimeIndex is reported as ``frame.index.name`` (or ``"index"`` when unnamed).

    Examples
    --------
    >>> import pandas as pd
    >>> time_column(pd.DataFrame({"t": pd.to_datetime(["2024-01-01"]), "v": [1.0]}))
    't'
    """
    import pandas as pd

    columns = [c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c].dtype)]
    for name in TIME_NAMES:
        if name in columns:
            return str(name)
    if isinstance(frame.index, pd.DatetimeIndex):
        return str(frame.index.name) if frame.index.name is not None else "index"
    return str(columns[0]) if columns else None


def time_dim(obj: Any) -> str | None:
    """The datetime dimension of an xarray object (``time`` first), or ``None``."""
    import numpy as np

    dims = [str(d) for d in obj.dims]
    candidates = sorted(dims, key=lambda d: (d != "time", dims.index(d)))
    for dim in candidates:
        if dim in obj.coords and np.issubdtype(obj.coords[dim].dtype, np.datetime64):
            return dim
    return "time" if "time" in dims else None


def station_dim(obj: Any) -> str | None:
    """The station (feature) dimension of an xarray time series, or ``None``.

    Found from a coordinate with ``cf_role = "timeseries_id"``, from a dataset with
    ``featureType = "timeSeries"`` (its one non-time dimension), or from a dimension named
    in :data:`STATION_NAMES`.
    """
    time = time_dim(obj)
    if time is None:
        return None
    others = [str(d) for d in obj.dims if d != time]
    for coord in obj.coords.values():
        if coord.attrs.get("cf_role") == "timeseries_id" and len(coord.dims) == 1:
            dim = str(coord.dims[0])
            if dim in others:
                return dim
    if str(obj.attrs.get("featureType", "")).lower() == "timeseries" and len(others) == 1:
        return others[0]
    for dim in others:
        if dim.lower() in STATION_NAMES:
            return dim
    return None


def _frame_kind(obj: Any, geo: bool) -> Kind | None:
    import pandas as pd

    if isinstance(obj.index, pd.DatetimeIndex):
        return Kind.TIMESERIES
    column = time_column(obj)
    if column is None:
        return None
    if geo and column not in TIME_NAMES:
        return None
    return Kind.TIMESERIES


def detect_kind(obj: Any) -> Kind:
    """Return the :class:`Kind` of ``obj`` or raise :class:`UnsupportedObjectError`.

    Raises
    ------
    UnsupportedObjectError
        For objects no format can hold, with the reason and the fix.

    Examples
    --------
    >>> import pandas as pd
    >>> detect_kind(pd.DataFrame({"time": pd.to_datetime(["2024-01-01"]), "v": [1.0]}))
    <Kind.TIMESERIES: 'timeseries'>
    """
    import xarray as xr

    if isinstance(obj, xr.Dataset | xr.DataArray):
        if spatial_dims(obj) is not None:
            return Kind.RASTER
        if station_dim(obj) is not None:
            return Kind.TIMESERIES
        return Kind.ARRAY
    if isinstance(obj, xr.DataTree):
        for node in obj.subtree:
            if node.has_data and spatial_dims(node.to_dataset(inherit=False)) is not None:
                return Kind.RASTER
        return Kind.ARRAY
    import geopandas as gpd

    if isinstance(obj, gpd.GeoDataFrame):
        return _frame_kind(obj, geo=True) or Kind.VECTOR
    if isinstance(obj, gpd.GeoSeries):
        return Kind.VECTOR
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        kind = _frame_kind(obj, geo=False)
        if kind is not None:
            return kind
        raise UnsupportedObjectError(
            "this DataFrame has neither a geometry column nor a datetime column or index; "
            "memories_geo stores tables as vector layers (make it a GeoDataFrame, e.g. "
            "geopandas.GeoDataFrame(df, geometry=geopandas.points_from_xy(df.lon, df.lat), "
            "crs='EPSG:4326')) or as time series (parse its time column with pandas.to_datetime)."
        )
    if type(obj).__module__.startswith("dask_geopandas") and hasattr(obj, "_meta"):
        return detect_kind(obj._meta)
    raise UnsupportedObjectError(
        f"cannot store a {type(obj).__module__}.{type(obj).__name__}; memories_geo stores "
        "xarray Dataset/DataArray/DataTree, geopandas GeoDataFrame/GeoSeries and pandas "
        "DataFrame objects."
    )
