""":class:`PerformanceMetrics`: the figures of a window, overall, per tier and per format."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd

from memories_geo.display import Html, repr_html, row, section, table
from memories_geo.monitor.metrics.figures import UNITS, Figures, Latency, Throughput, format_figure

__all__ = ["FRAME_COLUMNS", "PerformanceMetrics"]

#: Columns of :meth:`PerformanceMetrics.to_frame`.
FRAME_COLUMNS = ("scope", "tier", "format", "metric", "statistic", "value", "unit")

#: Columns of the HTML tables: (header, metric, statistic).
_SHOWN = (
    ("read p50", "read_latency", "p50"), ("read p95", "read_latency", "p95"),
    ("read p99", "read_latency", "p99"), ("write p95", "write_latency", "p95"),
    ("read throughput", "read_throughput", "rate"), ("write throughput", "write_throughput", "rate"),
    ("requests", "request_rate", "value"), ("operations", "operation_rate", "value"),
    ("errors", "error_rate", "value"), ("read", "bytes_read", "value"),
    ("written", "bytes_written", "value"),
)


@dataclass(frozen=True)
class PerformanceMetrics:
    """Performance figures of a collection's operations over a time window.

    Made by :func:`~memories_geo.monitor.metrics.performance_metrics`. The overall
    figures are attributes (``pm.read_latency.p95``, ``pm.error_rate``,
    ``float(pm.write_throughput)``); :attr:`by_tier` and :attr:`by_format` hold the
    same :class:`Figures` per tier and per format.

    Attributes
    ----------
    overall : Figures
        Figures of every operation in the window.
    by_tier, by_format : mapping of str to Figures
        Figures of the operations on each tier (of each format); empty when not asked for.
    window : (datetime, datetime) or None
        The window the rates are over (the one given, else from the first record's
        start to the last record's end; ``None`` without records).
    metrics : tuple of str
        The metrics computed (the others are ``None``).
    operations : int
        Operation records in the window.

    Examples
    --------
    >>> pm = performance_metrics(mem.monitor.log.frame(since=timedelta(days=1)))  # doctest: +SKIP
    >>> pm.read_latency.p95, pm.by_tier["hot"].error_rate  # doctest: +SKIP
    (0.0123, 0.0)
    """

    overall: Figures
    by_tier: Mapping[str, Figures] = field(default_factory=dict)
    by_format: Mapping[str, Figures] = field(default_factory=dict)
    window: tuple[datetime, datetime] | None = None
    metrics: tuple[str, ...] = ()
    operations: int = 0

    @property
    def read_latency(self) -> Latency | None:
        """Seconds of successful ``open`` and ``read`` operations (p50, p95, p99, mean, count)."""
        return self.overall.read_latency

    @property
    def write_latency(self) -> Latency | None:
        """Seconds of successful saves."""
        return self.overall.write_latency

    @property
    def read_throughput(self) -> Throughput | None:
        """Bytes per second of successful reads that moved bytes."""
        return self.overall.read_throughput

    @property
    def write_throughput(self) -> Throughput | None:
        """Bytes per second of successful saves."""
        return self.overall.write_throughput

    @property
    def request_rate(self) -> float | None:
        """Backend requests per second over the window."""
        return self.overall.request_rate

    @property
    def operation_rate(self) -> float | None:
        """Operations per second over the window."""
        return self.overall.operation_rate

    @property
    def error_rate(self) -> float | None:
        """Percent of operations that failed."""
        return self.overall.error_rate

    @property
    def bytes_read(self) -> int | None:
        """Bytes read by successful reads."""
        return self.overall.bytes_read

    @property
    def bytes_written(self) -> int | None:
        """Bytes written by successful saves."""
        return self.overall.bytes_written

    @property
    def seconds(self) -> float | None:
        """Length of :attr:`window` in seconds."""
        return None if self.window is None else (self.window[1] - self.window[0]).total_seconds()

    def scopes(self) -> list[tuple[str, str | None, str | None, Figures]]:
        """``(scope, tier, format, figures)``: overall (``"all"``), then per tier, then per format."""
        out: list[tuple[str, str | None, str | None, Figures]] = [("all", None, None, self.overall)]
        out += [("tier", name, None, figures) for name, figures in self.by_tier.items()]
        out += [("format", None, name, figures) for name, figures in self.by_format.items()]
        return out

    def to_frame(self) -> pd.DataFrame:
        """The figures as a tidy DataFrame, one row per figure.

        Columns :data:`FRAME_COLUMNS`: ``scope`` (``"all"``, ``"tier"``, ``"format"``),
        ``tier`` and ``format`` (``None`` where the scope is not theirs), ``metric``,
        ``statistic`` (``p50``, ``p95``, ``p99``, ``mean``, ``count``, ``rate``,
        ``median`` or ``value``), ``value`` (float, NaN when there was nothing to
        measure) and ``unit`` (``s``, ``B/s``, ``1/s``, ``%``, ``B`` or ``1``).

        Examples
        --------
        >>> pm.to_frame().query("scope == 'tier' and metric == 'error_rate'")  # doctest: +SKIP
        """
        rows = [
            (scope, tier, fmt, metric, statistic, value, unit)
            for scope, tier, fmt, figures in self.scopes()
            for metric, statistic, value, unit in figures.rows()
        ]
        frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
        frame["value"] = frame["value"].astype("float64")
        return frame

    def figures(self) -> dict[str, float | None]:
        """Every figure under a flat name, as alert conditions name them.

        Overall figures are ``read_latency_p95``, ``write_latency_p50``,
        ``write_throughput`` (its rate), ``write_throughput_median``,
        ``request_rate``, ``operation_rate``, ``error_rate``, ``bytes_read``...;
        those of a tier or a format are prefixed with its name and a dot:
        ``hot.read_latency_p95``, ``zarr.error_rate`` (a format named like a tier is
        left out: the tier's figures win). Units: seconds, bytes per second, per
        second, percent, bytes; ``None`` when there was nothing to measure (no
        operation, no window).

        Examples
        --------
        >>> pm.figures()["hot.read_latency_p95"]  # doctest: +SKIP
        0.0123
        """
        out: dict[str, float | None] = dict(self.overall.flat())
        for name, figures in self.by_tier.items():
            out.update({f"{name}.{k}": v for k, v in figures.flat().items()})
        for name, figures in self.by_format.items():
            if name not in self.by_tier:
                out.update({f"{name}.{k}": v for k, v in figures.flat().items()})
        return out

    def _window_text(self) -> str:
        if self.window is None:
            return "no window"
        start, end = self.window
        return f"{start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC ({_span(end - start)})"

    def __repr__(self) -> str:
        lines = [f"<PerformanceMetrics: {self.operations} operations, {self._window_text()}>"]
        for metric in self.metrics:
            value = getattr(self.overall, metric)
            if isinstance(value, Latency | Throughput):
                text = str(value)
            else:
                text = format_figure(value, UNITS[metric])
            lines.append(f"  {metric:<17}{text}")
        for label, names in (("by tier", self.by_tier), ("by format", self.by_format)):
            if names:
                lines.append(f"  {label}: {', '.join(names)}")
        return "\n".join(lines)

    def _repr_html_(self) -> Html:
        shown = [(h, m, s) for h, m, s in _SHOWN if m in self.metrics]
        header = ["scope", *(h for h, _, _ in shown)]

        def cells(name: str, figures: Figures) -> list[object]:
            found = {(m, s): (v, u) for m, s, v, u in figures.rows()}
            return [name, *(format_figure(*found[(m, s)]) for _, m, s in shown)]

        numeric = set(range(1, len(header)))
        sections = [row("window", self._window_text())]
        sections.append(section("Overall", table(header, [cells("all", self.overall)], numeric=numeric)))
        for label, scopes in (("By tier", self.by_tier), ("By format", self.by_format)):
            if scopes:
                rows = [cells(name, figures) for name, figures in scopes.items()]
                sections.append(section(label, table(header, rows, numeric=numeric), count=len(rows),
                                        preview=", ".join(scopes)))
        return repr_html(obj_type="memories_geo.PerformanceMetrics", text=repr(self), sections=sections,
                         badges=[f"{self.operations} operations"])


def _span(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"
