"""Figures over time: latency quantiles and throughput per time bin (what the plots draw)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from memories_geo.errors import OptionError
from memories_geo.monitor.metrics.figures import READ_OPERATIONS, WRITE_OPERATIONS

__all__ = ["FREQUENCIES", "MAX_BINS", "auto_freq", "latency_series", "throughput_series"]

#: Bin widths :func:`latency_series` and :func:`throughput_series` choose from (the smallest
#: giving at most :data:`MAX_BINS` bins) when no ``freq`` is given.
FREQUENCIES = ("1s", "10s", "1min", "5min", "15min", "1h", "3h", "6h", "1D", "7D")
#: Most bins an automatic ``freq`` gives.
MAX_BINS = 60

def auto_freq(frame: pd.DataFrame) -> str:
    """A bin width for ``frame``'s records: the first of :data:`FREQUENCIES` giving < :data:`MAX_BINS` bins.

    Examples
    --------
    >>> from datetime import UTC, datetime, timedelta
    >>> from memories_geo.monitor.records import records_frame
    >>> from memories_geo.operations import OperationRecord
    >>> at = datetime(2026, 1, 1, tzinfo=UTC)
    >>> later = at + timedelta(hours=2)
    >>> auto_freq(records_frame([OperationRecord("save", at, 1.0), OperationRecord("save", later, 1.0)]))
    '5min'
    """
    if frame.empty:
        return FREQUENCIES[0]
    span = frame["at"].max() - frame["at"].min()
    return next((f for f in FREQUENCIES if span / pd.Timedelta(f) < MAX_BINS), FREQUENCIES[-1])


def _groups(frame: pd.DataFrame, by: str | None) -> list[tuple[str, pd.DataFrame]]:
    if by is None:
        return [("all", frame)] if len(frame) else []
    if by not in ("tier", "format"):
        raise OptionError(f"by: {by!r} is not one of ['tier', 'format', None]")
    return [(str(name), part) for name, part in frame.groupby(by, dropna=True, sort=True)]


def latency_series(
    frame: pd.DataFrame, *, by: str | None = "tier", freq: str | None = None,
    operations: Sequence[str] = READ_OPERATIONS,
) -> dict[str, pd.DataFrame]:
    """Latency over time: per group, the p50 and p95 seconds of each time bin (NaN when empty).

    What :func:`~memories_geo.monitor.plot.plot_latency` draws. Failed operations are
    left out.

    Parameters
    ----------
    frame : pandas.DataFrame
        Operation records.
    by : {"tier", "format", None}
        Groups (``None``: one group, ``"all"``).
    freq : str, optional
        Bin width (a pandas frequency); default :func:`auto_freq`.
    operations : sequence of str
        Operations counted (default ``open`` and ``read``).

    Examples
    --------
    >>> from memories_geo.monitor.records import records_frame
    >>> latency_series(records_frame([]))
    {}
    """
    ok = frame[(frame["outcome"] != "error") & frame["operation"].isin(operations)]
    width = freq or auto_freq(ok)
    out = {}
    for name, part in _groups(ok, by):
        binned = part.set_index("at")["seconds"].resample(width)
        out[name] = pd.DataFrame({"p50": binned.quantile(0.5), "p95": binned.quantile(0.95)})
    return out


def throughput_series(
    frame: pd.DataFrame, *, by: str | None = "tier", freq: str | None = None,
) -> dict[str, pd.DataFrame]:
    """Throughput over time: per group, ``write`` and ``read`` bytes per second of each time bin.

    What :func:`~memories_geo.monitor.plot.plot_throughput` draws. A bin's throughput
    is the bytes of its successful saves (reads that moved bytes) over their seconds;
    NaN when it has none. ``by`` and ``freq`` are as in :func:`latency_series`.

    Examples
    --------
    >>> from memories_geo.monitor.records import records_frame
    >>> throughput_series(records_frame([]))
    {}
    """
    ok = frame[(frame["outcome"] != "error") & (frame["seconds"] > 0)]
    reads = ok["operation"].isin(READ_OPERATIONS) & (ok["bytes"] > 0)
    ok = ok[ok["operation"].isin(WRITE_OPERATIONS) | reads]
    width = freq or auto_freq(ok)
    out = {}
    for name, part in _groups(ok, by):
        columns = {}
        for label, operations in (("write", WRITE_OPERATIONS), ("read", READ_OPERATIONS)):
            counted = part["operation"].isin(operations)
            moved = pd.DataFrame({
                "bytes": part["bytes"].where(counted, 0).astype("float64").to_numpy(),
                "seconds": part["seconds"].where(counted, 0.0).to_numpy(),
            }, index=pd.DatetimeIndex(part["at"]))
            sums = moved.resample(width).sum()
            columns[label] = (sums["bytes"] / sums["seconds"]).where(sums["seconds"] > 0)
        out[name] = pd.DataFrame(columns)
    return out


