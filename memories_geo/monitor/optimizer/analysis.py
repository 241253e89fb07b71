"""Access patterns from operation records: opens, reads, bytes, and the share of each key asked for."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from memories_geo.monitor.optimizer.model import AccessAnalysis, KeyAccess, QueryPattern

if TYPE_CHECKING:
    import pandas as pd

    from memories_geo.entry import Entry

__all__ = ["AxisShare", "analyze", "axis_share", "query_of"]

Query = tuple[Any, Any, Any, tuple[tuple[str, str], ...]]


def _floats(value: Any) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    try:
        a, b, c, d = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (a, b, c, d)


def query_of(detail: Mapping[str, Any] | None) -> Query:
    """The query an ``open`` record holds, as a hashable ``(bbox, time, columns, options)``."""
    detail = dict(detail or {})
    time = detail.get("time")
    columns = detail.get("columns")
    options = detail.get("options") or {}
    return (
        _floats(detail.get("bbox")) if not detail.get("bbox_crs") else None,
        tuple(None if t is None else str(t) for t in time) if time is not None else None,
        tuple(str(c) for c in columns) if columns is not None else None,
        tuple(sorted((str(k), str(v)) for k, v in options.items())),
    )


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class AxisShare:
    """Share of a stored object one query asks for, per axis (1.0: all of it).

    Attributes
    ----------
    x, y : float
        Share of the footprint's width and height inside the query's bbox.
    time : float
        Share of the stored time span inside the query's time range.
    single_time : bool
        The time range is shorter than the stored time step (one step is read).
    """

    __slots__ = ("single_time", "time", "x", "y")

    def __init__(self, x: float, y: float, time: float, single_time: bool) -> None:
        self.x, self.y, self.time, self.single_time = x, y, time, single_time

    @property
    def area(self) -> float:
        """Share of the footprint's area."""
        return self.x * self.y


def _overlap(lo: float, hi: float, qlo: float, qhi: float) -> float:
    span = hi - lo
    if span <= 0:
        return 1.0 if qlo <= lo <= qhi else 0.0
    return max(0.0, min(hi, qhi) - max(lo, qlo)) / span


def axis_share(query: Query, entry: Entry) -> AxisShare:
    """Per-axis share of ``entry``'s footprint and time span that ``query`` asks for."""
    bbox, time = query[0], query[1]
    fx = fy = 1.0
    if bbox is not None and entry.bbox is not None:
        minx, miny, maxx, maxy = entry.bbox
        fx = _overlap(minx, maxx, bbox[0], bbox[2])
        fy = _overlap(miny, maxy, bbox[1], bbox[3])
    ft, single = 1.0, False
    start, end = _moment(entry.time_start), _moment(entry.time_end)
    if time is not None and start is not None and end is not None:
        qs, qe = _moment(time[0]) or start, _moment(time[1]) or end
        total = (end - start).total_seconds()
        ft = _overlap(0.0, total, (qs - start).total_seconds(), (qe - start).total_seconds())
        steps = _time_steps(entry)
        if steps > 1 and total > 0:
            single = (qe - qs).total_seconds() < total / (steps - 1)
    return AxisShare(fx, fy, ft, single)


def _time_steps(entry: Entry) -> int:
    for name in ("time", "t", "date", "datetime"):
        if name in entry.shape:
            return int(entry.shape[name])
    return 0


def _missing(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _median(values: Iterable[float]) -> float | None:
    values = list(values)
    return statistics.median(values) if values else None


def analyze(
    frame: pd.DataFrame, entries: Sequence[Entry], *, period: timedelta, detail_level: str,
    now: datetime | None = None,
) -> AccessAnalysis:
    """Per-key access figures of ``entries`` from the records in ``frame`` (:data:`RECORD_COLUMNS`)."""
    now = now or datetime.now(UTC)
    since = now - period
    if len(frame):
        frame = frame[frame["at"] >= since]
    by_key: dict[str, Any] = {str(k): g for k, g in frame.groupby("key", sort=False)} if len(frame) else {}
    keys: dict[str, KeyAccess] = {}
    for entry in sorted(entries, key=lambda e: e.key):
        rows = by_key.get(entry.key)
        keys[entry.key] = _key_access(entry, rows)
    return AccessAnalysis(period=period, since=since, detail_level=detail_level, keys=keys,
                          records=len(frame))


def _key_access(entry: Entry, rows: Any) -> KeyAccess:
    empty = KeyAccess(entry.key, entry.tier, entry.format, entry.kind, entry.size_bytes, 0, 0, 0, 0,
                      None, None, None, (), None)
    if rows is None or not len(rows):
        return empty
    opens = rows[rows["operation"] == "open"]
    ok = opens[opens["outcome"] == "ok"]
    reads = rows[rows["operation"] == "read"]
    patterns: dict[Query, list[float]] = {}
    failed: dict[Query, int] = {}
    shares: list[AxisShare] = []
    columns: set[str] = set()
    for detail, seconds, outcome in zip(opens["detail"], opens["seconds"], opens["outcome"], strict=True):
        query = query_of(detail)
        patterns.setdefault(query, []).append(float(seconds))
        failed[query] = failed.get(query, 0) + (outcome != "ok")
        shares.append(axis_share(query, entry))
        columns.update(query[2] or ())
    queries = tuple(sorted(
        (QueryPattern(bbox=q[0], time=q[1], columns=q[2], options=dict(q[3]), count=len(s),
                      seconds=statistics.median(s), errors=failed[q]) for q, s in patterns.items()),
        key=lambda p: -p.count,
    ))
    last = opens["at"].max() if len(opens) else None
    return KeyAccess(
        key=entry.key, tier=entry.tier, format=entry.format, kind=entry.kind, size_bytes=entry.size_bytes,
        opens=len(ok), reads=len(reads), errors=int(len(opens) - len(ok)),
        bytes_read=int(opens["bytes"].sum() + reads["bytes"].sum()),
        median_open_seconds=_median(float(s) for s in ok["seconds"]),
        bbox_fraction=_median(s.area for s in shares), time_fraction=_median(s.time for s in shares),
        columns=tuple(sorted(columns)),
        last_opened=None if last is None or _missing(last) else last.to_pydatetime(),
        queries=queries,
    )
