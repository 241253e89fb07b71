"""Human-readable values: sizes, dates, time ranges, rounded bounding boxes, short digests."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime

__all__ = [
    "bbox_decimals",
    "format_bbox",
    "human_size",
    "human_time",
    "human_time_range",
    "parse_time",
    "round_bbox",
    "short_checksum",
    "short_version_id",
    "size_unit",
]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_VERSION_ID = re.compile(r"^(\d{8})T(\d{6})\d*Z-([0-9a-f]+)$")


def size_unit(n: float) -> tuple[str, int]:
    """The binary unit that shows ``n`` bytes as a number below 1024, and its factor.

    Examples
    --------
    >>> size_unit(3 * 1024**2)
    ('MiB', 1048576)
    >>> size_unit(0)
    ('B', 1)
    """
    power = 0
    while power < len(_UNITS) - 1 and abs(n) >= 1024 ** (power + 1):
        power += 1
    return _UNITS[power], 1024**power


def human_size(n: int | None) -> str:
    """``n`` bytes as ``"708 B"``, ``"342.9 KiB"``, ``"1.2 GiB"``; ``"?"`` when unknown.

    Examples
    --------
    >>> human_size(351132)
    '342.9 KiB'
    >>> human_size(708)
    '708 B'
    """
    if n is None:
        return "?"
    unit, factor = size_unit(n)
    return f"{n} B" if factor == 1 else f"{n / factor:.1f} {unit}"


def parse_time(value: str | datetime) -> datetime | None:
    """An ISO 8601 string or datetime as an aware UTC datetime (naive means UTC); ``None`` if unparsable."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def human_time(value: str | datetime | None, *, date_only: bool = False) -> str:
    """An ISO 8601 time (UTC when naive) as ``"2024-03-01 12:30:05 UTC"``, to the second.

    Parameters
    ----------
    value : str or datetime or None
        The time; ``None`` gives ``"—"`` and an unparsable string comes back as is.
    date_only : bool
        Only the date.

    Examples
    --------
    >>> human_time("2026-11-30T07:43:33.664087")
    '2026-11-30 07:43:33 UTC'
    >>> human_time("2024-01-01T00:00:00", date_only=True)
    '2024-01-01'
    """
    if value is None or value == "":
        return "—"
    moment = parse_time(value)
    if moment is None:
        return str(value)
    return f"{moment:%Y-%m-%d}" if date_only else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def human_time_range(start: str | None, end: str | None, *, sep: str = " → ") -> str:
    """A time range, shown as dates alone when both ends fall on midnight.

    Examples
    --------
    >>> human_time_range("2024-01-01T00:00:00", "2024-12-01T00:00:00", sep=" .. ")
    '2024-01-01 .. 2024-12-01'
    >>> human_time_range(None, None)
    '—'
    """
    if start is None and end is None:
        return "—"
    moments = [parse_time(v) if v is not None else None for v in (start, end)]
    date_only = all(m is not None and m.time() == datetime.min.time() for m in moments)
    if start == end:
        return human_time(start, date_only=date_only)
    return human_time(start, date_only=date_only) + sep + human_time(end, date_only=date_only)


def bbox_decimals(bbox: Sequence[float]) -> int:
    """Decimals that show ``bbox`` (degrees) to a few metres: 4, more for tiny boxes.

    Examples
    --------
    >>> bbox_decimals((-10.0, 35.0, 20.0, 60.0))
    4
    >>> bbox_decimals((5.12341, 52.1, 5.12362, 52.1002))
    6
    """
    extents = [abs(bbox[2] - bbox[0]), abs(bbox[3] - bbox[1])]
    smallest = min((e for e in extents if e > 0), default=0.0)
    if smallest == 0.0:
        return 6
    return int(min(8, max(4, 2 - math.floor(math.log10(smallest)))))


def round_bbox(bbox: Sequence[float], decimals: int | None = None) -> tuple[float, float, float, float]:
    """``bbox`` rounded to ``decimals`` (default :func:`bbox_decimals`).

    Examples
    --------
    >>> round_bbox((-180.0, -90.0, 180.00000000000006, 83.64513000000001))
    (-180.0, -90.0, 180.0, 83.6451)
    """
    digits = bbox_decimals(bbox) if decimals is None else decimals
    minx, miny, maxx, maxy = (round(float(v), digits) + 0.0 for v in bbox)
    return minx, miny, maxx, maxy


def format_bbox(bbox: Sequence[float] | None) -> str:
    """A rounded bbox as text without trailing zeros: ``"(-10, 35, 20, 60.5)"``.

    Examples
    --------
    >>> format_bbox((-180.0, -90.0, 180.00000000000006, 83.64513000000001))
    '(-180, -90, 180, 83.6451)'
    >>> format_bbox(None)
    'none'
    """
    if bbox is None:
        return "none"
    digits = bbox_decimals(bbox)
    text = [f"{v:.{digits}f}".rstrip("0").rstrip(".") for v in round_bbox(bbox, digits)]
    return "(" + ", ".join("0" if t == "-0" else t for t in text) + ")"


def short_checksum(checksum: str, length: int = 12) -> str:
    """The first ``length`` characters of a digest, with an ellipsis when cut.

    Examples
    --------
    >>> short_checksum("36dfda70d8a250b9f803b33e3891e7e2")
    '36dfda70d8a2…'
    """
    return checksum if len(checksum) <= length else checksum[:length] + "…"


def short_version_id(version_id: str) -> str:
    """A version id (``20261130T074333663954Z-54305fe8``) as ``"2026-11-30 07:43:33 · 54305fe8"``.

    Ids of another shape come back unchanged.

    Examples
    --------
    >>> short_version_id("20261130T074333663954Z-54305fe8")
    '2026-11-30 07:43:33 · 54305fe8'
    """
    match = _VERSION_ID.match(version_id)
    if match is None:
        return version_id
    day, clock, token = match.groups()
    return f"{day[:4]}-{day[4:6]}-{day[6:]} {clock[:2]}:{clock[2:4]}:{clock[4:]} · {token}"
