"""Performance metrics for other tools: the Prometheus text format and OpenTelemetry.

:func:`to_prometheus` writes the text exposition format 0.0.4 (what a Prometheus
scrape, a node-exporter textfile collector or a Pushgateway reads);
:func:`to_opentelemetry` records the figures as OpenTelemetry gauges through the
metrics API (``pip install 'memories-geo[otel]'``, imported only when called).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from memories_geo.errors import OptionError
from memories_geo.monitor.metrics import QUANTILES, PerformanceMetrics, performance_metrics

if TYPE_CHECKING:
    import pandas as pd

    from memories_geo.monitor.usage import TierUsage

__all__ = [
    "OTEL_INSTRUMENTS", "PROMETHEUS_CONTENT_TYPE", "to_opentelemetry", "to_prometheus", "usage_to_prometheus",
]

#: ``Content-Type`` of :func:`to_prometheus`'s output when served over HTTP.
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_INSTALL = "pip install 'memories-geo[otel]'"

#: Gauges (name suffix, metric, statistics, unit, help) of the non-latency figures.
_GAUGES: tuple[tuple[str, str, str, float, str], ...] = (
    ("read_throughput_bytes_per_second", "read_throughput", "rate", 1.0,
     "Bytes read per second of successful reads that moved bytes (their bytes over their seconds)."),
    ("read_throughput_median_bytes_per_second", "read_throughput", "median", 1.0,
     "Median of the bytes per second of each successful read."),
    ("write_throughput_bytes_per_second", "write_throughput", "rate", 1.0,
     "Bytes written per second of successful saves (their bytes over their seconds)."),
    ("write_throughput_median_bytes_per_second", "write_throughput", "median", 1.0,
     "Median of the bytes per second of each successful save."),
    ("requests_per_second", "request_rate", "value", 1.0, "Backend requests per second over the window."),
    ("operations_per_second", "operation_rate", "value", 1.0, "Operations per second over the window."),
    ("error_ratio", "error_rate", "value", 0.01, "Fraction of operations that failed (0 to 1)."),
    ("read_bytes", "bytes_read", "value", 1.0, "Bytes read by successful reads in the window."),
    ("written_bytes", "bytes_written", "value", 1.0, "Bytes written by successful saves in the window."),
)
#: Usage gauges: (name suffix, TierUsage attribute, factor, help).
_USAGE: tuple[tuple[str, str, float, str], ...] = (
    ("tier_used_bytes", "used_bytes", 1.0, "Bytes stored on the tier (current and older versions)."),
    ("tier_current_bytes", "current_bytes", 1.0, "Bytes of the current versions on the tier."),
    ("tier_retained_bytes", "retained_bytes", 1.0, "Bytes of the older versions kept on the tier."),
    ("tier_available_bytes", "available_bytes", 1.0, "Room left on the tier (quota or disk), where known."),
    ("tier_max_bytes", "max_size", 1.0, "The tier's max_size quota, where configured."),
    ("tier_utilization_ratio", "utilization_percentage", 0.01, "Share of the tier's room used (0 to 1)."),
    ("tier_objects", "objects", 1.0, "Objects stored on the tier."),
    ("tier_keys", "keys", 1.0, "Keys whose current version is on the tier."),
    ("tier_versions", "versions", 1.0, "Versions stored on the tier."),
)
_SUMMARIES = (
    ("read_latency_seconds", "read_latency", "Seconds of successful open and read operations."),
    ("write_latency_seconds", "write_latency", "Seconds of successful saves."),
)

#: OpenTelemetry gauges: (instrument name suffix, metric, statistics recorded, unit, description).
OTEL_INSTRUMENTS: tuple[tuple[str, str, tuple[str, ...], str, str], ...] = (
    ("read_latency", "read_latency", ("p50", "p95", "p99", "mean"), "s",
     "Seconds of successful open and read operations"),
    ("write_latency", "write_latency", ("p50", "p95", "p99", "mean"), "s", "Seconds of successful saves"),
    ("read_throughput", "read_throughput", ("rate", "median"), "By/s", "Bytes per second of reads"),
    ("write_throughput", "write_throughput", ("rate", "median"), "By/s", "Bytes per second of saves"),
    ("request_rate", "request_rate", ("value",), "{request}/s", "Backend requests per second"),
    ("operation_rate", "operation_rate", ("value",), "{operation}/s", "Operations per second"),
    ("error_rate", "error_rate", ("value",), "%", "Percent of operations that failed"),
    ("bytes_read", "bytes_read", ("value",), "By", "Bytes read in the window"),
    ("bytes_written", "bytes_written", ("value",), "By", "Bytes written in the window"),
)


def _metrics(source: PerformanceMetrics | pd.DataFrame) -> PerformanceMetrics:
    if isinstance(source, PerformanceMetrics):
        return source
    return performance_metrics(source)


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(pairs: list[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in pairs) + "}"


def _scopes(pm: PerformanceMetrics) -> Iterator[tuple[list[tuple[str, str]], dict[tuple[str, str], float]]]:
    for _, tier, fmt, figures in pm.scopes():
        labels = [("tier", tier)] if tier is not None else [("format", fmt)] if fmt is not None else []
        yield labels, {(m, s): v for m, s, v, _ in figures.rows()}


def to_prometheus(source: PerformanceMetrics | pd.DataFrame, *, prefix: str = "memories_geo") -> str:
    r"""The figures in the Prometheus text exposition format (version 0.0.4).

    Latencies are summaries (``quantile`` label 0.5, 0.95, 0.99, then ``_sum`` and
    ``_count``) in seconds; the other figures are gauges whose names end with their
    unit: ``_bytes_per_second``, ``_per_second``, ``_ratio`` (the error rate as a
    fraction, 0 to 1), ``_bytes``. Series without labels are the overall figures;
    those of a tier carry ``tier="..."``, those of a format ``format="..."`` (so do not
    sum across them). A figure with nothing to measure is ``NaN``. Label values are
    escaped (backslash, double quote, newline).

    Parameters
    ----------
    source : PerformanceMetrics or pandas.DataFrame
        Computed figures, or operation records (then computed with the defaults of
        :func:`~memories_geo.monitor.metrics.performance_metrics`).
    prefix : str
        Start of every metric name.

    Returns
    -------
    str
        Lines ending with ``\n``; serve with :data:`PROMETHEUS_CONTENT_TYPE`.

    Raises
    ------
    OptionError
        A ``prefix`` that is not a Prometheus metric name.

    Examples
    --------
    >>> from memories_geo.monitor.records import records_frame
    >>> print(to_prometheus(records_frame([])).splitlines()[0])
    # HELP memories_geo_read_latency_seconds Seconds of successful open and read operations.
    """
    _check_prefix(prefix)
    pm = _metrics(source)
    scopes = list(_scopes(pm))
    lines: list[str] = []
    for suffix, metric, text in _SUMMARIES:
        if metric not in pm.metrics:
            continue
        name = f"{prefix}_{suffix}"
        lines += [f"# HELP {name} {_escape_help(text)}", f"# TYPE {name} summary"]
        for labels, values in scopes:
            for statistic, quantile in QUANTILES:
                lines.append(f"{name}{_labels([*labels, ('quantile', str(quantile))])} "
                             f"{_number(values[(metric, statistic)])}")
            count = values[(metric, "count")]
            total = values[(metric, "mean")] * count if count else 0.0
            lines.append(f"{name}_sum{_labels(labels)} {_number(total)}")
            lines.append(f"{name}_count{_labels(labels)} {_number(count)}")
    for suffix, metric, statistic, factor, text in _GAUGES:
        if metric not in pm.metrics:
            continue
        name = f"{prefix}_{suffix}"
        lines += [f"# HELP {name} {_escape_help(text)}", f"# TYPE {name} gauge"]
        for labels, values in scopes:
            lines.append(f"{name}{_labels(labels)} {_number(values[(metric, statistic)] * factor)}")
    return "\n".join(lines) + "\n" if lines else ""


def _check_prefix(prefix: str) -> None:
    if not _NAME.fullmatch(prefix):
        raise OptionError(
            f"prefix: {prefix!r} is not a Prometheus metric name (letters, digits, '_' and ':')"
        )


def usage_to_prometheus(usage: Sequence[TierUsage], *, prefix: str = "memories_geo") -> str:
    """Usage per tier as Prometheus gauges (text format 0.0.4), labelled ``tier="..."``.

    ``<prefix>_tier_used_bytes``, ``_tier_current_bytes``, ``_tier_retained_bytes``,
    ``_tier_available_bytes``, ``_tier_max_bytes``, ``_tier_utilization_ratio`` (0 to
    1), ``_tier_objects``, ``_tier_keys``, ``_tier_versions``; a figure a tier does not
    know (no quota, an object store's free space) is left out for that tier.

    Examples
    --------
    >>> from memories_geo.monitor.usage import TierUsage
    >>> text = usage_to_prometheus([TierUsage("hot", keys=2, current_bytes=10)])
    >>> [line for line in text.splitlines() if line.startswith("memories_geo_tier_keys")]
    ['memories_geo_tier_keys{tier="hot"} 2']
    """
    _check_prefix(prefix)
    lines: list[str] = []
    for suffix, attribute, factor, text in _USAGE:
        values = [(u.tier, getattr(u, attribute)) for u in usage]
        known = [(tier, value) for tier, value in values if value is not None]
        if not known:
            continue
        name = f"{prefix}_{suffix}"
        lines += [f"# HELP {name} {_escape_help(text)}", f"# TYPE {name} gauge"]
        lines += [f"{name}{_labels([('tier', t)])} {_number(float(value) * factor)}" for t, value in known]
    return "\n".join(lines) + "\n" if lines else ""


def to_opentelemetry(
    source: PerformanceMetrics | pd.DataFrame, meter_provider: Any = None, *, prefix: str = "memories_geo",
) -> int:
    """Record the figures as OpenTelemetry gauges; return how many values were recorded.

    One synchronous gauge per metric (:data:`OTEL_INSTRUMENTS`), named
    ``memories_geo.<metric>`` (``memories_geo.read_latency``, unit ``s``), with
    attributes ``statistic`` (``p50``, ``p95``, ``p99``, ``mean``, ``rate``,
    ``median``, ``value``) and ``tier`` or ``format`` for the figures of one tier or
    format (none for the overall ones). The error rate is in percent. NaN figures
    (nothing to measure) are not recorded. Each call sets the gauges' current values;
    the SDK's reader or exporter sends them on.

    Parameters
    ----------
    source : PerformanceMetrics or pandas.DataFrame
        Computed figures, or operation records.
    meter_provider : opentelemetry.metrics.MeterProvider, optional
        Default: the global one (``opentelemetry.metrics.get_meter_provider()``).
    prefix : str
        Start of every instrument name.

    Raises
    ------
    ImportError
        ``opentelemetry-api`` is not installed (the message says how to install it).

    Examples
    --------
    >>> from opentelemetry.sdk.metrics import MeterProvider  # doctest: +SKIP
    >>> from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # doctest: +SKIP
    >>> reader = InMemoryMetricReader()  # doctest: +SKIP
    >>> to_opentelemetry(pm, MeterProvider(metric_readers=[reader]))  # doctest: +SKIP
    42
    """
    try:
        from opentelemetry import metrics as otel
    except ImportError as exc:
        raise ImportError(
            f"to_opentelemetry() records through the OpenTelemetry metrics API, which is not installed: "
            f"{_INSTALL}"
        ) from exc
    pm = _metrics(source)
    provider = meter_provider if meter_provider is not None else otel.get_meter_provider()
    meter = provider.get_meter("memories_geo")
    recorded = 0
    scopes = list(_scopes(pm))
    for suffix, metric, statistics, unit, description in OTEL_INSTRUMENTS:
        if metric not in pm.metrics:
            continue
        gauge = meter.create_gauge(f"{prefix}.{suffix}", unit=unit, description=description)
        for labels, values in scopes:
            for statistic in statistics:
                value = values[(metric, statistic)]
                if math.isnan(value):
                    continue
                gauge.set(value, {**dict(labels), "statistic": statistic})
                recorded += 1
    return recorded
