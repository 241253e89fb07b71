"""The footprint of a stored time series: time range, columns, rows, and the bbox of its geometry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from memories_geo.crs import crs_to_string
from memories_geo.footprint import BBox, Footprint, bbox_to_wgs84
from memories_geo.formats.postgis.layout import active_entry, entry_crs, index_fields

if TYPE_CHECKING:
    from memories_geo.formats.timescaledb.layout import Series

__all__ = ["native_bbox", "series_footprint"]


def native_bbox(series: Series, previous: Mapping[str, Any] | None) -> BBox | None:
    """Bounds of the active geometry of the rows (and of the appended version), in its CRS.

    ``None`` for a table without geometry, or without a non-empty geometry.

    Examples
    --------
    >>> native_bbox(series, None)  # doctest: +SKIP
    (2.0, 48.0, 4.0, 49.0)
    """
    import shapely

    if series.base.get("type") != "GeoDataFrame":
        return None
    values = np.asarray(series.frame.geometry.array)
    bounds = shapely.total_bounds(values) if len(values) else np.full(4, np.nan)
    boxes = [tuple(float(v) for v in bounds)] if np.isfinite(bounds).all() else []
    if previous is not None and previous.get("native_bbox"):
        boxes.append(tuple(previous["native_bbox"]))
    if not boxes:
        return None
    lows, highs = np.min([b[:2] for b in boxes], axis=0), np.max([b[2:] for b in boxes], axis=0)
    return float(lows[0]), float(lows[1]), float(highs[0]), float(highs[1])


def series_footprint(info: Mapping[str, Any]) -> Footprint:
    """Footprint recorded for a version with ``info``.

    The time range is that of the time axis (time zone-aware when it is); variables
    are the columns besides the index and the active geometry.

    Examples
    --------
    >>> series_footprint(info).shape  # doctest: +SKIP
    {'rows': 1000}
    """
    import pandas as pd

    native = info.get("native_bbox")
    crs = None
    skip = set(index_fields(info))
    if info.get("type") == "GeoDataFrame":
        active = active_entry(info)
        crs = entry_crs(active)
        skip.add(active["name"])
    start = end = None
    if info.get("time_range"):
        start, end = (pd.Timestamp(t) for t in info["time_range"])
    return Footprint(
        bbox=bbox_to_wgs84(native, crs) if native and crs is not None else None,
        native_bbox=(native[0], native[1], native[2], native[3]) if native else None,
        crs=crs_to_string(crs) if crs is not None else None,
        time_start=start,
        time_end=end,
        variables=tuple(e["name"] for e in info["columns"] if e["name"] not in skip),
        shape={"rows": int(info["rows"])},
    )
