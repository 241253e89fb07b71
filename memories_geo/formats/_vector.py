"""What the vector formats share: frames and back, CRS assignment, the open contract's checks."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import geopandas as gpd

from memories_geo.errors import OptionError, UnsupportedObjectError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from memories_geo.query import OpenRequest

__all__ = [
    "as_frame",
    "check_series_request",
    "no_time_column",
    "series_name",
    "time_mask",
    "with_crs",
]


def as_frame(obj: Any, format_name: str) -> tuple[gpd.GeoDataFrame, dict[str, Any]]:
    """Frame to write, and the ``object_info`` that rebuilds ``obj``'s type on open.

    Raises
    ------
    UnsupportedObjectError
        For objects other than GeoDataFrame/GeoSeries, a GeoDataFrame without an
        active geometry, or a GeoSeries name that JSON cannot record.
    """
    if isinstance(obj, gpd.GeoSeries):
        name = obj.name.item() if hasattr(obj.name, "item") else obj.name
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
        f"format {format_name!r} stores GeoDataFrame and GeoSeries objects, not {type(obj).__name__}"
    )


def _json_safe(value: Any) -> bool:
    try:
        return json.loads(json.dumps(value)) == value
    except (TypeError, ValueError):
        return False


def series_name(stored: Any) -> Any:
    """The GeoSeries name recorded by :func:`as_frame` (tuples come back as tuples)."""
    if isinstance(stored, dict) and "tuple" in stored:
        return tuple(stored["tuple"])
    return stored


def with_crs(gdf: gpd.GeoDataFrame, crs: Any, *, kind: str) -> gpd.GeoDataFrame:
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


def check_series_request(object_info: Mapping[str, Any], request: OpenRequest) -> bool:
    """Whether the stored object is a GeoSeries; ``columns=`` on one is an :class:`OptionError`."""
    is_series = object_info.get("type") == "GeoSeries"
    if is_series and request.columns is not None:
        raise OptionError(
            "columns= does not apply to a stored GeoSeries (it has one column, its geometry); "
            "open it without columns="
        )
    return is_series


def no_time_column(columns: Iterable[str]) -> OptionError:
    """The error for ``time=`` on a layer without a datetime column (to raise)."""
    return OptionError(
        "time= selects rows on the layer's first datetime column, and this layer has none "
        f"(columns: {list(columns)}); open it without time="
    )


def time_mask(values: pd.Series, time: tuple[pd.Timestamp | None, pd.Timestamp | None]) -> np.ndarray:
    """Rows of ``values`` (datetimes) inside the inclusive naive-UTC ``time`` bounds.

    Time-zone-aware values compare in UTC; missing values never match.
    """
    import pandas as pd

    column = values
    if not pd.api.types.is_datetime64_any_dtype(column.dtype):
        column = pd.to_datetime(column, errors="coerce", utc=True)
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        column = column.dt.tz_convert("UTC").dt.tz_localize(None)
    start, end = time
    mask = column.notna()
    if start is not None:
        mask &= column >= start
    if end is not None:
        mask &= column <= end
    return mask.to_numpy(dtype=bool)
