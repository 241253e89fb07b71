"""Performance metrics of a window of operation records: :func:`performance_metrics`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pandas as pd

from memories_geo.errors import ConfigError, OptionError
from memories_geo.monitor.metrics.figures import METRICS, Figures, scope_figures
from memories_geo.monitor.metrics.result import PerformanceMetrics

__all__ = ["BY", "PERIOD_UNITS", "parse_period", "performance_metrics"]

#: Breakdowns :func:`performance_metrics` can make, by the record column they group on.
BY = ("tier", "format")
#: Units of a period text and their length in seconds.
PERIOD_UNITS: dict[str, int] = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("w", "week", "weeks"), 7 * 86400),
}
_PERIOD = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]+)\s*")
_NEEDED = ("at", "operation", "tier", "format", "seconds", "bytes", "requests", "outcome")


def parse_period(value: str | timedelta | float, *, name: str = "period") -> timedelta:
    """A period of time from ``"24 hours"``, ``"7 days"``, ``"30 min"``, ``"12h"``, a timedelta or seconds.

    Units (case-insensitive): seconds (``s``, ``sec``, ``second(s)``), minutes (``m``,
    ``min``, ``minute(s)``), hours (``h``, ``hr``, ``hour(s)``), days (``d``,
    ``day(s)``) and weeks (``w``, ``week(s)``); a number alone counts seconds.

    Raises
    ------
    ConfigError
        For anything else, or a period that is not positive; the message lists the
        accepted forms.

    Examples
    --------
    >>> parse_period("24 hours"), parse_period("7 days"), parse_period("90s")
    (datetime.timedelta(days=1), datetime.timedelta(days=7), datetime.timedelta(seconds=90))
    """
    if isinstance(value, timedelta):
        period = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        period = timedelta(seconds=value)
    elif isinstance(value, str) and (found := _PERIOD.fullmatch(value)) and found[2].lower() in PERIOD_UNITS:
        period = timedelta(seconds=float(found[1]) * PERIOD_UNITS[found[2].lower()])
    else:
        raise ConfigError(
            f"{name}: {value!r} is not a period; write a number and a unit, e.g. '24 hours', '7 days', "
            "'30 minutes', '90 seconds', '2 weeks' or '12h' (units: seconds, minutes, hours, days, "
            "weeks), or pass a datetime.timedelta"
        )
    if period <= timedelta(0):
        raise ConfigError(f"{name}: the period must be positive, got {value!r}")
    return period


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _names(value: str | Sequence[str] | None, accepted: Sequence[str], what: str) -> tuple[str, ...]:
    if value is None:
        return tuple(accepted)
    names = (value,) if isinstance(value, str) else tuple(value)
    unknown = [n for n in names if n not in accepted]
    if unknown:
        raise OptionError(f"{what}: unknown name(s) {unknown}; accepted: {list(accepted)}")
    return tuple(dict.fromkeys(names))


def performance_metrics(
    frame: pd.DataFrame,
    *,
    metrics: str | Sequence[str] | None = None,
    by: str | Sequence[str] = BY,
    window: tuple[datetime, datetime] | None = None,
) -> PerformanceMetrics:
    """Latency, throughput, rates and errors of the operations in ``frame``, overall and per tier/format.

    Parameters
    ----------
    frame : pandas.DataFrame
        Operation records, as :func:`~memories_geo.monitor.records.records_frame` and
        ``OperationLog.frame`` make them.
    metrics : str or list of str, optional
        Which of :data:`~memories_geo.monitor.metrics.METRICS` to compute (default all):
        ``read_latency``, ``write_latency``, ``read_throughput``, ``write_throughput``,
        ``request_rate``, ``operation_rate``, ``error_rate``, ``bytes_read``,
        ``bytes_written``.
    by : str or sequence of str
        Breakdowns: ``"tier"``, ``"format"``, both (default) or neither (``()``).
    window : (datetime, datetime), optional
        Only records that started in ``[start, end]``; rates are per second of this
        window. Default: every record, rates over the span from the first record's start
        to the last one's end (naive datetimes are UTC).

    Returns
    -------
    PerformanceMetrics
        Figures are NaN (counts and bytes 0) when there is nothing to measure.

    Raises
    ------
    OptionError
        An unknown metric or breakdown (the message lists the accepted ones), a window
        that ends before it starts, or a frame without the record columns.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> from memories_geo.monitor.records import records_frame
    >>> from memories_geo.operations import OperationRecord
    >>> at = datetime(2026, 1, 1, tzinfo=UTC)
    >>> frame = records_frame([
    ...     OperationRecord("open", at, 0.2, tier="hot", format="zarr", requests=3),
    ...     OperationRecord("open", at, 0.4, "error", tier="hot", format="zarr", requests=1),
    ...     OperationRecord("save", at, 2.0, tier="warm", format="parquet", bytes=4000, requests=2),
    ... ])
    >>> pm = performance_metrics(frame, window=(at, at + timedelta(seconds=10)))
    >>> pm.read_latency.p50, round(pm.error_rate, 2), pm.request_rate, pm.write_throughput.rate
    (0.2, 33.33, 0.6, 2000.0)
    >>> pm.figures()["hot.error_rate"], pm.by_format["parquet"].bytes_written
    (50.0, 4000)
    """
    chosen = _names(metrics, METRICS, "metrics")
    groups = _names(by, BY, "by")
    missing = [c for c in _NEEDED if c not in frame.columns]
    if missing:
        raise OptionError(
            f"frame: not operation records, missing columns {missing} (records_frame makes them)"
        )
    records = frame
    if window is not None:
        start, end = _utc(window[0]), _utc(window[1])
        if end < start:
            raise OptionError(f"window: ends ({end.isoformat()}) before it starts ({start.isoformat()})")
        at = records["at"]
        records = records[(at >= pd.Timestamp(start)) & (at <= pd.Timestamp(end))]
        span: tuple[datetime, datetime] | None = (start, end)
    elif len(records):
        first = records["at"].min()
        last = (records["at"] + pd.to_timedelta(records["seconds"], unit="s")).max().ceil("us")
        span = (first.to_pydatetime(), last.to_pydatetime())
    else:
        span = None
    seconds = None if span is None else (span[1] - span[0]).total_seconds()
    split: dict[str, dict[str, Figures]] = {"tier": {}, "format": {}}
    for column in groups:
        for name, part in records.groupby(column, dropna=True, sort=True):
            split[column][str(name)] = scope_figures(part, chosen, seconds)
    return PerformanceMetrics(
        scope_figures(records, chosen, seconds), split["tier"], split["format"], span, chosen, len(records),
    )
