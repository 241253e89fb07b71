"""Normalise what callers ask for: time ranges with partial dates, bboxes in any CRS, open requests.

One set of rules serves ``search`` and ``open``: a ``time=`` value means the same period
everywhere, and ``bbox=`` is EPSG:4326 unless ``bbox_crs=`` says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memories_geo.errors import OptionError
from memories_geo.footprint import BBox, bbox_to_wgs84

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COMMON_OPEN_OPTIONS",
    "OpenRequest",
    "check_bbox",
    "check_options",
    "iso_utc",
    "normalize_bbox",
    "normalize_time",
    "open_request",
]

#: Keywords every format's ``open`` honours (see :class:`OpenRequest`).
COMMON_OPEN_OPTIONS: tuple[str, ...] = ("bbox", "bbox_crs", "time", "columns")

_WGS84 = "EPSG:4326"


def iso_utc(value: Any) -> str | None:
    """ISO 8601 (UTC, microseconds) for a timestamp-like value; ``None`` stays ``None``."""
    if value is None:
        return None
    import pandas as pd

    ts = pd.Timestamp(value)
    if pd.isna(ts):
        return None
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%f")


def _bound(value: Any, *, end: bool) -> str | None:
    """A time bound as ISO UTC; a partial date string covers its whole period."""
    import pandas as pd

    if value is None:
        return None
    if isinstance(value, str):
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError):
            stamp = None
        if stamp is not None and stamp.tzinfo is not None:
            return iso_utc(stamp)
        try:
            period = pd.Period(value)
        except (ValueError, TypeError):
            period = None
        if period is not None and period.freqstr not in ("ns", "N", "us", "U", "ms", "L", "s", "S"):
            return iso_utc(period.end_time if end else period.start_time)
    try:
        return iso_utc(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"time bound {value!r} is not a date; give an ISO date or partial date such as "
            "'2024-03-01', '2024-03' or '2024', a datetime, or None for an open end"
        ) from exc


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


def check_bbox(bbox: Sequence[float]) -> BBox:
    """``(minx, miny, maxx, maxy)`` as floats, or ``ValueError`` saying what is wrong.

    Examples
    --------
    >>> check_bbox([0, 1, 2, 3])
    (0.0, 1.0, 2.0, 3.0)
    """
    try:
        values = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        raise ValueError(f"bbox must be four numbers (minx, miny, maxx, maxy), got {bbox!r}") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"bbox must be four finite numbers (minx, miny, maxx, maxy), got {bbox!r}")
    if values[0] > values[2] or values[1] > values[3]:
        raise ValueError(f"bbox must be (minx, miny, maxx, maxy) with min <= max, got {bbox!r}")
    return values


def normalize_bbox(bbox: Sequence[float] | None, bbox_crs: Any = None) -> BBox | None:
    """Validate ``(minx, miny, maxx, maxy)`` and bring it to EPSG:4326.

    Raises
    ------
    ValueError
        For a bbox that is not four finite numbers with min <= max.
    """
    if bbox is None:
        return None
    values = check_bbox(bbox)
    if bbox_crs is None:
        return values
    out = bbox_to_wgs84(values, bbox_crs)
    if out is None:
        raise ValueError(f"bbox {bbox!r} cannot be transformed from {bbox_crs!r} to EPSG:4326")
    return out


@dataclass(frozen=True)
class OpenRequest:
    """What a caller asked ``open`` for, validated once and handed to the format.

    Attributes
    ----------
    bbox : tuple or None
        ``(minx, miny, maxx, maxy)`` in :attr:`bbox_crs`; formats call :meth:`bbox_in`
        to get it in the stored data's CRS.
    bbox_crs : str
        CRS of :attr:`bbox` as the caller gave it (default ``"EPSG:4326"``).
    time : tuple or None
        Inclusive ``(start, end)`` as naive UTC ``pandas.Timestamp`` (either may be
        ``None`` for an open end), from the same forms ``search`` takes.
    columns : tuple of str or None
        Columns (tables) or data variables (datasets) to read.
    options : mapping
        Format-specific keywords, already checked against the format's
        ``open_options``.
    """

    bbox: BBox | None = None
    bbox_crs: str = _WGS84
    time: tuple[pd.Timestamp | None, pd.Timestamp | None] | None = None
    columns: tuple[str, ...] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def bbox_in(self, crs: Any) -> BBox | None:
        """:attr:`bbox` in ``crs`` (edges densified), or ``None`` when no bbox was asked for.

        Raises
        ------
        ValueError
            When the bbox cannot be transformed into ``crs``.
        """
        if self.bbox is None:
            return None
        import pyproj

        source = pyproj.CRS.from_user_input(self.bbox_crs)
        target = pyproj.CRS.from_user_input(crs) if crs is not None else pyproj.CRS.from_epsg(4326)
        if source.equals(target, ignore_axis_order=True):
            return self.bbox
        import numpy as np

        transformer = pyproj.Transformer.from_crs(source, target, always_xy=True)
        # The densified edges alone miss the extent when the box reaches beyond the
        # target projection's valid area (a world box into UTM): a grid of points
        # inside the box, keeping the finite ones, covers it.
        minx, miny, maxx, maxy = self.bbox
        gx, gy = np.meshgrid(np.linspace(minx, maxx, 51), np.linspace(miny, maxy, 51))
        with np.errstate(all="ignore"):
            x, y = transformer.transform(gx.ravel(), gy.ravel(), errcheck=False)
        edges = transformer.transform_bounds(*self.bbox, densify_pts=21, errcheck=False)
        xs = np.append(np.asarray(x, dtype="float64"), [edges[0], edges[2]])
        ys = np.append(np.asarray(y, dtype="float64"), [edges[1], edges[3]])
        ok = np.isfinite(xs) & np.isfinite(ys)
        if not ok.any():
            raise ValueError(f"bbox {self.bbox} in {self.bbox_crs} cannot be transformed to {target.name}")
        return (float(xs[ok].min()), float(ys[ok].min()), float(xs[ok].max()), float(ys[ok].max()))

    def describe(self) -> dict[str, Any]:
        """The request as plain JSON values, for operation records.

        ``bbox`` is in EPSG:4326 when it can be transformed (else as given, with
        ``bbox_crs``); ``time`` holds ISO strings (``None`` for an open end);
        ``options`` the format keywords' reprs.

        Examples
        --------
        >>> OpenRequest(bbox=(0.0, 1.0, 2.0, 3.0), columns=("a",)).describe()
        {'bbox': [0.0, 1.0, 2.0, 3.0], 'time': None, 'columns': ['a'], 'options': {}}
        """
        bbox: Any = None
        out: dict[str, Any] = {}
        if self.bbox is not None:
            try:
                wgs84 = str(self.bbox_crs).upper() == _WGS84
                bbox = [float(v) for v in (self.bbox if wgs84 else self.bbox_in(_WGS84) or self.bbox)]
            except ValueError:
                bbox, out["bbox_crs"] = [float(v) for v in self.bbox], self.bbox_crs
        time = None if self.time is None else [None if t is None else t.isoformat() for t in self.time]
        out.update(bbox=bbox, time=time, columns=None if self.columns is None else list(self.columns),
                   options={k: repr(v) for k, v in self.options.items()})
        return {k: out[k] for k in ("bbox", "time", "columns", "options", "bbox_crs") if k in out}

    def time_slice(self) -> slice:
        """:attr:`time` as a ``slice`` for label selection (``slice(None)`` when unset)."""
        if self.time is None:
            return slice(None)
        return slice(*self.time)


def check_options(given: Iterable[str], accepted: Iterable[str], what: str) -> None:
    """Raise :class:`OptionError` naming the keywords in ``given`` that ``what`` does not take."""
    accepted = list(accepted)
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise OptionError(
            f"{what} does not take {', '.join(map(repr, unknown))}; accepted keywords: {accepted}"
        )


def open_request(
    *,
    bbox: Sequence[float] | None = None,
    bbox_crs: Any = None,
    time: Any = None,
    columns: Sequence[str] | str | None = None,
    options: Mapping[str, Any] | None = None,
) -> OpenRequest:
    """Validate ``open`` arguments into an :class:`OpenRequest`.

    Raises
    ------
    ValueError
        For a malformed bbox or time, or ``bbox_crs`` without ``bbox``.
    """
    import pandas as pd

    if bbox_crs is not None and bbox is None:
        raise ValueError("bbox_crs= needs bbox=")
    box = check_bbox(bbox) if bbox is not None else None
    crs_text = _WGS84
    if bbox_crs is not None:
        import pyproj

        crs = pyproj.CRS.from_user_input(bbox_crs)
        authority = crs.to_authority()
        crs_text = ":".join(authority) if authority else crs.to_wkt()
    span = normalize_time(time)
    times = None
    if span is not None:
        times = tuple(pd.Timestamp(v) if v is not None else None for v in span)
    if isinstance(columns, str):
        columns = [columns]
    return OpenRequest(
        bbox=box,
        bbox_crs=crs_text,
        time=times,  # type: ignore[arg-type]
        columns=tuple(columns) if columns is not None else None,
        options=dict(options or {}),
    )
