"""``stats``: latency, throughput, request and error rates of the collection's recent operations."""

from __future__ import annotations

import math
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from memories_geo.cli.output import console, print_json, table
from memories_geo.cli.state import state
from memories_geo.errors import ConfigError

if TYPE_CHECKING:
    from memories_geo.monitor.metrics import PerformanceMetrics
    from memories_geo.monitor.records import OperationLog

__all__ = ["By", "Output", "operation_log", "register", "stats", "stats_json"]


class By(StrEnum):
    """Breakdown of ``stats``."""

    TIER = "tier"
    FORMAT = "format"


class Output(StrEnum):
    """Output format of ``stats``."""

    TABLE = "table"
    JSON = "json"
    PROMETHEUS = "prometheus"


#: Table columns: (header, metric, statistic).
COLUMNS = (
    ("reads", "read_latency", "count"), ("read p50", "read_latency", "p50"),
    ("read p95", "read_latency", "p95"), ("read p99", "read_latency", "p99"),
    ("saves", "write_latency", "count"), ("save p95", "write_latency", "p95"),
    ("write throughput", "write_throughput", "rate"), ("read throughput", "read_throughput", "rate"),
    ("requests", "request_rate", "value"), ("errors", "error_rate", "value"),
)


def operation_log(mem: Any) -> OperationLog:
    """The collection's operation log: ``mem.monitor.log``, else one reading its catalog.

    Examples
    --------
    >>> operation_log(mem).frame(since=timedelta(hours=1))  # doctest: +SKIP
    """
    monitor = getattr(mem, "monitor", None)
    if monitor is not None:
        return monitor.log
    from memories_geo.monitor.records import OperationLog
    from memories_geo.operations import OperationMeter

    meter = getattr(mem.version_store, "meter", None)
    return OperationLog(mem.catalog, meter if meter is not None else OperationMeter())


def stats_json(pm: PerformanceMetrics) -> dict[str, Any]:
    """The figures as plain JSON values: window, then ``{metric: {statistic: value}}`` per scope.

    NaN (nothing to measure) becomes ``null``.

    Examples
    --------
    >>> from memories_geo.monitor.metrics import performance_metrics
    >>> from memories_geo.monitor.records import records_frame
    >>> stats_json(performance_metrics(records_frame([]), metrics=["error_rate"]))["all"]
    {'error_rate': {'value': None, 'unit': '%'}}
    """
    out: dict[str, Any] = {
        "window": None if pm.window is None else {
            "start": pm.window[0].isoformat(), "end": pm.window[1].isoformat(), "seconds": pm.seconds,
        },
        "operations": pm.operations,
    }
    for scope, tier, fmt, figures in pm.scopes():
        found: dict[str, dict[str, Any]] = {}
        for metric, statistic, value, unit in figures.rows():
            slot = found.setdefault(metric, {})
            slot[statistic] = None if math.isnan(value) else int(value) if statistic == "count" else value
            if statistic != "count":
                slot["unit"] = unit
        if scope == "all":
            out["all"] = found
        else:
            out.setdefault(scope, {})[tier if scope == "tier" else fmt] = found
    return out


def stats(
    ctx: typer.Context,
    period: Annotated[
        str,
        typer.Option("--period", "-p", help="How far back to look, e.g. `'7 days'`, `'30 min'` or `12h`."),
    ] = "24 hours",
    by: Annotated[
        By, typer.Option("--by", help="Figures per tier or per format as well, e.g. `--by format`.")
    ] = By.TIER,
    output: Annotated[
        Output,
        typer.Option("--format", "-f", help="table, json or prometheus (text format 0.0.4), e.g. `json`."),
    ] = Output.TABLE,
) -> None:
    """Show read latency percentiles, throughput, request rate and error rate over a recent period.

    Computed from the operation records kept in the catalog; latency and throughput count
    successful operations, the error rate all of them.
    """
    from memories_geo.monitor.metrics import format_figure, parse_period, performance_metrics

    try:
        length = parse_period(period, name="--period")
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--period'") from exc
    mem = state(ctx).memory()
    end = datetime.now(UTC)
    frame = operation_log(mem).frame(since=end - length)
    pm = performance_metrics(frame, by=(by.value,), window=(end - length, end))
    if output is Output.JSON:
        print_json(stats_json(pm))
        return
    if output is Output.PROMETHEUS:
        from memories_geo.monitor.export import to_prometheus

        sys.stdout.write(to_prometheus(pm))
        return
    title = f"{pm.operations} operations in the last {period} (to {end:%Y-%m-%d %H:%M:%S} UTC)"
    headers = [by.value, *(h for h, _, _ in COLUMNS)]
    out = table(title, headers, right=headers[1:])
    scopes = [("all", pm.overall), *(pm.by_tier if by is By.TIER else pm.by_format).items()]
    for name, figures in scopes:
        values = {(m, s): (v, u) for m, s, v, u in figures.rows()}
        out.add_row(name, *(format_figure(*values[(m, s)]) for _, m, s in COLUMNS))
    console().print(out)


def register(app: typer.Typer) -> None:
    """Add ``stats`` to ``app``.

    Examples
    --------
    >>> register(typer.Typer())
    """
    app.command(epilog="Example: memories-geo stats --period '7 days' --by format --format json")(stats)
