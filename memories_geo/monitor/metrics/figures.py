"""The figures of one scope (everything, a tier, a format): latency, throughput, rates, bytes.

Each figure is computed from operation records (the columns of
:func:`~memories_geo.monitor.records.records_frame`). Latency and throughput count the
operations that succeeded; rates and the error rate count every operation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from memories_geo.display import size_unit

__all__ = [
    "FIGURE_NAMES",
    "METRICS",
    "QUANTILES",
    "READ_OPERATIONS",
    "UNITS",
    "WRITE_OPERATIONS",
    "Figures",
    "Latency",
    "Throughput",
    "figure_names",
    "flat_name",
    "format_figure",
    "scope_figures",
]

#: Metric names accepted by :func:`~memories_geo.monitor.metrics.performance_metrics`.
METRICS: tuple[str, ...] = (
    "read_latency", "write_latency", "read_throughput", "write_throughput",
    "request_rate", "operation_rate", "error_rate", "bytes_read", "bytes_written",
)
#: Operations that read (their latency, throughput and bytes are the read figures).
READ_OPERATIONS: tuple[str, ...] = ("open", "read")
#: Operations that write.
WRITE_OPERATIONS: tuple[str, ...] = ("save",)
#: Latency statistics that are quantiles, and their quantile.
QUANTILES: tuple[tuple[str, float], ...] = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
#: Unit of each metric's value (counts have the unit ``"1"``).
UNITS: dict[str, str] = {
    "read_latency": "s", "write_latency": "s", "read_throughput": "B/s", "write_throughput": "B/s",
    "request_rate": "1/s", "operation_rate": "1/s", "error_rate": "%", "bytes_read": "B",
    "bytes_written": "B",
}

_NAN = math.nan


@dataclass(frozen=True)
class Latency:
    """Durations of operations, in seconds: quantiles, mean and count (NaN when none).

    Quantiles are numpy's default (linear interpolation between the closest ranks).

    Examples
    --------
    >>> Latency.of([0.1, 0.2, 0.3, 0.4]).p50
    0.25
    >>> Latency.of([]).count
    0
    """

    p50: float = _NAN
    p95: float = _NAN
    p99: float = _NAN
    mean: float = _NAN
    count: int = 0

    @classmethod
    def of(cls, seconds: Any) -> Latency:
        """The latency of these durations (a sequence or array of seconds)."""
        values = np.asarray(seconds, dtype="float64")
        if values.size == 0:
            return cls()
        p50, p95, p99 = (float(v) for v in np.quantile(values, [q for _, q in QUANTILES]))
        return cls(p50, p95, p99, float(values.mean()), int(values.size))

    def statistics(self) -> dict[str, float]:
        """``{"p50": ..., "p95": ..., "p99": ..., "mean": ..., "count": ...}``."""
        return {"p50": self.p50, "p95": self.p95, "p99": self.p99, "mean": self.mean,
                "count": float(self.count)}

    def __str__(self) -> str:
        if not self.count:
            return "no operations"
        return (f"p50 {format_figure(self.p50, 's')}, p95 {format_figure(self.p95, 's')}, "
                f"p99 {format_figure(self.p99, 's')}, mean {format_figure(self.mean, 's')} ({self.count})")


@dataclass(frozen=True)
class Throughput:
    """Bytes per second of operations that took time.

    Attributes
    ----------
    rate : float
        Their bytes over their seconds, all together (``float(throughput)`` is this).
    median : float
        The median of each operation's own bytes per second.
    count : int
        Operations counted.

    Examples
    --------
    >>> t = Throughput.of([100, 300], [1.0, 1.0])
    >>> t.rate, t.median, float(t)
    (200.0, 200.0, 200.0)
    """

    rate: float = _NAN
    median: float = _NAN
    count: int = 0

    @classmethod
    def of(cls, nbytes: Any, seconds: Any) -> Throughput:
        """The throughput of operations that moved ``nbytes`` in ``seconds`` (zero-second ones left out)."""
        size = np.asarray(nbytes, dtype="float64")
        took = np.asarray(seconds, dtype="float64")
        timed = took > 0
        size, took = size[timed], took[timed]
        if size.size == 0:
            return cls()
        return cls(float(size.sum() / took.sum()), float(np.median(size / took)), int(size.size))

    def statistics(self) -> dict[str, float]:
        """``{"rate": ..., "median": ..., "count": ...}``."""
        return {"rate": self.rate, "median": self.median, "count": float(self.count)}

    def __float__(self) -> float:
        return self.rate

    def __str__(self) -> str:
        if not self.count:
            return "no operations"
        return (f"{format_figure(self.rate, 'B/s')} (median {format_figure(self.median, 'B/s')}, "
                f"{self.count})")


@dataclass(frozen=True)
class Figures:
    """The figures of one scope; a metric that was not asked for is ``None``.

    Attributes
    ----------
    read_latency, write_latency : Latency or None
        Seconds of the successful ``open``/``read`` (``save``) operations.
    read_throughput, write_throughput : Throughput or None
        Bytes per second of the successful reads that moved bytes (saves).
    request_rate, operation_rate : float or None
        Backend requests (operations) per second over the window; NaN without a window.
    error_rate : float or None
        Percent of the operations whose outcome is ``"error"``; NaN when there were none.
    bytes_read, bytes_written : int or None
        Bytes moved by the successful reads (saves).
    """

    read_latency: Latency | None = None
    write_latency: Latency | None = None
    read_throughput: Throughput | None = None
    write_throughput: Throughput | None = None
    request_rate: float | None = None
    operation_rate: float | None = None
    error_rate: float | None = None
    bytes_read: int | None = None
    bytes_written: int | None = None

    def rows(self) -> list[tuple[str, str, float, str]]:
        """``(metric, statistic, value, unit)`` of every figure computed.

        A latency gives ``p50``, ``p95``, ``p99``, ``mean`` (seconds) and ``count``; a
        throughput ``rate``, ``median`` (bytes per second) and ``count``; every other
        metric one ``value``.
        """
        out: list[tuple[str, str, float, str]] = []
        for metric in METRICS:
            value = getattr(self, metric)
            if value is None:
                continue
            if isinstance(value, Latency | Throughput):
                for statistic, number in value.statistics().items():
                    out.append((metric, statistic, number, "1" if statistic == "count" else UNITS[metric]))
            else:
                out.append((metric, "value", float(value), UNITS[metric]))
        return out

    def flat(self) -> dict[str, float | None]:
        """The figures under flat names (:data:`FIGURE_NAMES`); ``None`` for nothing measured.

        A statistic is appended to its metric's name (``read_latency_p95``), except a
        throughput's ``rate`` and a single value, which take the metric's name itself
        (``write_throughput``, ``error_rate``).
        """
        return {
            flat_name(metric, statistic): None if math.isnan(value) else value
            for metric, statistic, value, _ in self.rows()
        }


def flat_name(metric: str, statistic: str) -> str:
    """The flat figure name of a metric's statistic.

    Examples
    --------
    >>> flat_name("read_latency", "p95"), flat_name("write_throughput", "rate")
    ('read_latency_p95', 'write_throughput')
    >>> flat_name("error_rate", "value")
    'error_rate'
    """
    return metric if statistic in ("value", "rate") else f"{metric}_{statistic}"


#: Flat names of the figures of one scope (:meth:`Figures.flat`), every metric computed.
FIGURE_NAMES: tuple[str, ...] = tuple(
    flat_name(metric, statistic)
    for metric in METRICS
    for statistic in (
        [*(name for name, _ in QUANTILES), "mean", "count"] if UNITS[metric] == "s"
        else ["rate", "median", "count"] if UNITS[metric] == "B/s" else ["value"]
    )
)


def figure_names(tiers: Sequence[str] = (), formats: Sequence[str] = ()) -> list[str]:
    """Every name :meth:`PerformanceMetrics.figures` can hold for these tiers and formats.

    The overall names (:data:`FIGURE_NAMES`), then ``<tier>.<name>`` for each tier and
    ``<format>.<name>`` for each format not named like a tier.

    Examples
    --------
    >>> names = figure_names(["hot"], ["zarr"])
    >>> "read_latency_p95" in names, "hot.error_rate" in names, "zarr.write_throughput" in names
    (True, True, True)
    """
    scopes = [*tiers, *(f for f in formats if f not in tiers)]
    return [*FIGURE_NAMES, *(f"{scope}.{name}" for scope in scopes for name in FIGURE_NAMES)]


def scope_figures(records: pd.DataFrame, metrics: tuple[str, ...], seconds: float | None) -> Figures:
    """The figures named in ``metrics`` of ``records``, rates over ``seconds`` (NaN when ``None``).

    Examples
    --------
    >>> from memories_geo.monitor.records import records_frame
    >>> scope_figures(records_frame([]), ("error_rate", "bytes_read"), 60.0)
    Figures(read_latency=None, write_latency=None, read_throughput=None, write_throughput=None, \
request_rate=None, operation_rate=None, error_rate=nan, bytes_read=0, bytes_written=None)
    """
    wanted = set(metrics)
    ok = records[records["outcome"] != "error"]
    reads = ok[ok["operation"].isin(READ_OPERATIONS)]
    writes = ok[ok["operation"].isin(WRITE_OPERATIONS)]
    moved = reads[reads["bytes"] > 0]
    found: dict[str, Any] = {}
    if "read_latency" in wanted:
        found["read_latency"] = Latency.of(reads["seconds"].to_numpy())
    if "write_latency" in wanted:
        found["write_latency"] = Latency.of(writes["seconds"].to_numpy())
    if "read_throughput" in wanted:
        found["read_throughput"] = Throughput.of(moved["bytes"].to_numpy(), moved["seconds"].to_numpy())
    if "write_throughput" in wanted:
        found["write_throughput"] = Throughput.of(writes["bytes"].to_numpy(), writes["seconds"].to_numpy())
    span = seconds if seconds is not None and seconds > 0 else None
    if "request_rate" in wanted:
        found["request_rate"] = _NAN if span is None else float(records["requests"].sum()) / span
    if "operation_rate" in wanted:
        found["operation_rate"] = _NAN if span is None else len(records) / span
    if "error_rate" in wanted:
        errors = int((records["outcome"] == "error").sum())
        found["error_rate"] = 100.0 * errors / len(records) if len(records) else _NAN
    if "bytes_read" in wanted:
        found["bytes_read"] = int(reads["bytes"].sum())
    if "bytes_written" in wanted:
        found["bytes_written"] = int(writes["bytes"].sum())
    return Figures(**found)


def format_figure(value: float | None, unit: str) -> str:
    """A figure as people read it: ``"12.5 ms"``, ``"3.2 MiB/s"``, ``"0.5 %"``; ``"-"`` when missing.

    Examples
    --------
    >>> format_figure(0.0125, "s"), format_figure(3 * 2**20, "B/s"), format_figure(float("nan"), "%")
    ('12.5 ms', '3 MiB/s', '-')
    """
    if value is None or math.isnan(value):
        return "-"
    if unit == "s":
        return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.3g} s"
    if unit in ("B", "B/s"):
        name, factor = size_unit(value)
        text = f"{int(value)} B" if factor == 1 and unit == "B" else f"{value / factor:.3g} {name}"
        return text + ("/s" if unit == "B/s" else "")
    if unit == "%":
        return f"{value:.3g} %"
    if unit == "1/s":
        return f"{value:.3g}/s"
    return f"{int(value):,}" if float(value).is_integer() else f"{value:.3g}"
