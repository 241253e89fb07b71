"""Normalise search arguments: time ranges with partial dates, bboxes in any CRS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memories_geo.catalog import iso_utc
from memories_geo.footprint import BBox, bbox_to_wgs84

__all__ = ["normalize_bbox", "normalize_time"]


def _bound(value: Any, *, end: bool) -> str | None:
    """A time bound as ISO UTC; a partial date string covers its whole period."""
    import pandas as pd

    if value is None:
        return None
    if isinstance(value, str):
        try:
            period = pd.Period(value)
        except (ValueError, TypeError):
            period = None
        if period is not None and period.freqstr not in ("ns", "N", "us", "U", "ms", "L", "s", "S"):
            return iso_utc(period.end_time if end else period.start_time)
    return iso_utc(value)


def normalize_time(time: Any) -> tuple[str | None, str | None] | None:
    """``("2024-01", "2024-06")`` -> ``("2024-01-01T00:00:00", "2024-06-30T23:59:59.999999")``.

    Accepts a ``(start, end)`` pair (either may be ``None``), a ``slice``, or one
    value meaning its whole period (``"2024-03"`` is all of March 2024).

    Raises
    ------
    ValueError
        When the value is not a date, or ``start`` is after ``end``.
    """
    if time is None:
        return None
    if isinstance(time, slice):
        start, end = time.start, time.stop
    elif isinstance(time, Sequence) and not isinstance(time, str):
        if len(time) != 2:
            raise ValueError(f"time must be a (start, end) pair, got {time!r}")
        start, end = time
    else:
        start = end = time
    lo, hi = _bound(start, end=False), _bound(end, end=True)
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"time range starts after it ends: {time!r}")
    return lo, hi


def normalize_bbox(bbox: Sequence[float] | None, bbox_crs: Any = None) -> BBox | None:
    """Validate ``(minx, miny, maxx, maxy)`` and bring it to EPSG:4326.

    Raises
    ------
    ValueError
        For a bbox that is not four numbers with min <= max.
    """
    if bbox is None:
        return None
    try:
        values = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        raise ValueError(f"bbox must be four numbers (minx, miny, maxx, maxy), got {bbox!r}") from None
    if len(values) != 4 or values[0] > values[2] or values[1] > values[3]:
        raise ValueError(
            f"bbox must be (minx, miny, maxx, maxy) with min <= max, got {bbox!r}"
        )
    if bbox_crs is None:
        return values  # type: ignore[return-value]
    out = bbox_to_wgs84(values, bbox_crs)
    if out is None:
        raise ValueError(f"bbox {bbox!r} cannot be transformed from {bbox_crs!r} to EPSG:4326")
    return out
