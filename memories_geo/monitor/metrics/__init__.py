"""Performance metrics from operation records: latency, throughput, rates and errors.

:func:`performance_metrics` turns a window of operation records (``OperationLog.frame``)
into a :class:`PerformanceMetrics`: overall figures, and the same per tier and per
format, as attributes, a tidy DataFrame or flat names for alert conditions. Exports to
Prometheus and OpenTelemetry are in :mod:`memories_geo.monitor.export`.
"""

from memories_geo.monitor.metrics.compute import BY, PERIOD_UNITS, parse_period, performance_metrics
from memories_geo.monitor.metrics.figures import (
    FIGURE_NAMES,
    METRICS,
    QUANTILES,
    READ_OPERATIONS,
    UNITS,
    WRITE_OPERATIONS,
    Figures,
    Latency,
    Throughput,
    figure_names,
    format_figure,
)
from memories_geo.monitor.metrics.result import FRAME_COLUMNS, PerformanceMetrics
from memories_geo.monitor.metrics.timeline import (
    FREQUENCIES,
    MAX_BINS,
    auto_freq,
    latency_series,
    throughput_series,
)

__all__ = [
    "BY",
    "FIGURE_NAMES",
    "FRAME_COLUMNS",
    "FREQUENCIES",
    "MAX_BINS",
    "METRICS",
    "PERIOD_UNITS",
    "QUANTILES",
    "READ_OPERATIONS",
    "UNITS",
    "WRITE_OPERATIONS",
    "Figures",
    "Latency",
    "PerformanceMetrics",
    "Throughput",
    "auto_freq",
    "figure_names",
    "format_figure",
    "latency_series",
    "parse_period",
    "performance_metrics",
    "throughput_series",
]
