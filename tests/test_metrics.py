"""Performance metrics from operation records: figures against numpy, the Prometheus text
format parsed by its grammar, OpenTelemetry through the real SDK, plots, and ``stats``."""

from __future__ import annotations

import json
import math
import re
import sys
import xml.dom.minidom
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import memories_geo as mg
from memories_geo.errors import ConfigError, OptionError
from memories_geo.monitor.export import to_opentelemetry, to_prometheus, usage_to_prometheus
from memories_geo.monitor.metrics import (
    FIGURE_NAMES,
    METRICS,
    figure_names,
    latency_series,
    parse_period,
    performance_metrics,
    throughput_series,
)
from memories_geo.monitor.plot import MemoryPlots, plot_latency, plot_throughput
from memories_geo.monitor.records import OperationLog, records_frame
from memories_geo.monitor.usage import TierUsage
from memories_geo.operations import OperationMeter, OperationRecord

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TIERS = ("hot", "warm", "cold")
FORMATS = ("zarr", "parquet", "cog")


def random_records(seed: int = 7, n: int = 600, start: datetime = T0) -> list[OperationRecord]:
    """Seeded records over one hour: opens, reads and saves on three tiers and formats, ~6% errors."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        operation = str(rng.choice(["open", "read", "save", "delete"], p=[0.35, 0.25, 0.3, 0.1]))
        out.append(OperationRecord(
            operation, start + timedelta(seconds=float(rng.uniform(0, 3600))),
            float(rng.lognormal(-3, 1)) if i % 50 else 0.0,
            "error" if rng.random() < 0.06 else "ok",
            key=f"k{i % 17}", tier=str(rng.choice(TIERS)), format=str(rng.choice(FORMATS)),
            bytes=int(rng.integers(0, 5_000_000)) if rng.random() > 0.2 else 0,
            requests=int(rng.integers(0, 12)),
        ))
    return out


@pytest.fixture(scope="module")
def records() -> list[OperationRecord]:
    return random_records()


@pytest.fixture(scope="module")
def frame(records: list[OperationRecord]) -> pd.DataFrame:
    return records_frame(records)


def expected(records: list[OperationRecord], seconds: float) -> dict[str, float]:
    """The figures computed independently with numpy from the records."""
    ok = [r for r in records if r.outcome == "ok"]
    reads = [r.seconds for r in ok if r.operation in ("open", "read")]
    saves = [r for r in ok if r.operation == "save"]
    timed = [r for r in saves if r.seconds > 0]
    moved = [r for r in ok if r.operation in ("open", "read") and r.bytes > 0 and r.seconds > 0]
    out = {
        "error_rate": 100 * sum(r.outcome == "error" for r in records) / len(records),
        "request_rate": sum(r.requests for r in records) / seconds,
        "operation_rate": len(records) / seconds,
        "bytes_written": sum(r.bytes for r in saves),
        "bytes_read": sum(r.bytes for r in ok if r.operation in ("open", "read")),
        "write_throughput": sum(r.bytes for r in timed) / sum(r.seconds for r in timed),
        "write_throughput_median": float(np.median([r.bytes / r.seconds for r in timed])),
        "read_throughput": sum(r.bytes for r in moved) / sum(r.seconds for r in moved),
        "read_latency_mean": float(np.mean(reads)),
        "read_latency_count": len(reads),
        "write_latency_count": len(saves),
    }
    for q in (50, 95, 99):
        out[f"read_latency_p{q}"] = float(np.percentile(reads, q))
        out[f"write_latency_p{q}"] = float(np.percentile([r.seconds for r in saves], q))
    return out


# -- figures ---------------------------------------------------------------------------------


def test_figures_match_numpy_overall_and_per_tier_and_format(records, frame):
    window = (T0, T0 + timedelta(hours=1))
    pm = performance_metrics(frame, window=window)
    want = expected(records, 3600.0)
    got = pm.figures()
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-12), name
    assert pm.read_latency.p95 == pytest.approx(want["read_latency_p95"])
    assert float(pm.write_throughput) == pytest.approx(want["write_throughput"])
    assert pm.error_rate == pytest.approx(want["error_rate"])
    assert sorted(pm.by_tier) == sorted(TIERS)
    assert sorted(pm.by_format) == sorted(FORMATS)
    for tier in TIERS:
        part = expected([r for r in records if r.tier == tier], 3600.0)
        assert pm.by_tier[tier].read_latency.p99 == pytest.approx(part["read_latency_p99"])
        assert pm.by_tier[tier].error_rate == pytest.approx(part["error_rate"])
        assert got[f"{tier}.request_rate"] == pytest.approx(part["request_rate"])
        assert got[f"{tier}.write_throughput"] == pytest.approx(part["write_throughput"])
    for fmt in FORMATS:
        part = expected([r for r in records if r.format == fmt], 3600.0)
        assert pm.by_format[fmt].read_latency.p50 == pytest.approx(part["read_latency_p50"])
        assert got[f"{fmt}.read_latency_p95"] == pytest.approx(part["read_latency_p95"])
        assert got[f"{fmt}.bytes_written"] == part["bytes_written"]
    assert set(got) == set(figure_names(TIERS, FORMATS))
    assert pm.operations == len(records)


def test_to_frame_is_tidy_and_agrees_with_the_attributes(frame):
    pm = performance_metrics(frame, by="tier")
    table = pm.to_frame()
    assert list(table.columns) == ["scope", "tier", "format", "metric", "statistic", "value", "unit"]
    assert set(table["scope"]) == {"all", "tier"}
    assert pm.by_format == {}
    row = table[(table["tier"] == "warm") & (table["metric"] == "read_latency")
                & (table["statistic"] == "p95")]
    assert row["value"].item() == pytest.approx(pm.by_tier["warm"].read_latency.p95)
    assert row["unit"].item() == "s"
    valued = table[table["statistic"] != "count"]
    units = dict(zip(valued["metric"], valued["unit"], strict=True))
    assert units["write_throughput"] == "B/s"
    assert units["error_rate"] == "%"
    assert units["request_rate"] == "1/s"
    assert len(table[table["scope"] == "all"]) == len(FIGURE_NAMES)


def test_request_rate_counts_only_the_window(records):
    inside = random_records(seed=3, n=50, start=T0)
    before = random_records(seed=4, n=30, start=T0 - timedelta(hours=3))
    frame = records_frame(before + inside)
    window = (T0, T0 + timedelta(hours=2))
    pm = performance_metrics(frame, window=window, metrics=["request_rate", "operation_rate"])
    assert pm.operations == 50
    assert pm.request_rate == pytest.approx(sum(r.requests for r in inside) / 7200)
    assert pm.operation_rate == pytest.approx(50 / 7200)
    assert pm.read_latency is None
    assert "read_latency_p95" not in pm.figures()
    start = T0.replace(tzinfo=None)
    naive = performance_metrics(frame, window=(start, start + timedelta(hours=2)))
    assert naive.operations == 50, "naive datetimes are UTC"
    inferred = performance_metrics(records_frame(inside), metrics="operation_rate", by=())
    first = min(r.at for r in inside)
    last = max(r.at + timedelta(seconds=r.seconds) for r in inside)
    assert inferred.window[0] == first
    assert abs(inferred.window[1] - last) <= timedelta(microseconds=1)
    assert inferred.operation_rate == pytest.approx(50 / (last - first).total_seconds())


def test_an_empty_window_gives_empty_figures_not_errors(frame):
    for pm in (performance_metrics(frame, window=(T0 - timedelta(days=9), T0 - timedelta(days=8))),
               performance_metrics(records_frame([]))):
        assert pm.operations == 0
        assert pm.by_tier == {}
        assert math.isnan(pm.read_latency.p95)
        assert pm.read_latency.count == 0
        assert math.isnan(pm.error_rate)
        assert math.isnan(float(pm.write_throughput))
        assert pm.bytes_written == 0
        figures = pm.figures()
        assert figures["read_latency_p95"] is None
        assert figures["error_rate"] is None
        assert "no operations" in repr(pm)
        xml.dom.minidom.parseString(pm._repr_html_())
        assert "NaN" in to_prometheus(pm)
    windowed = performance_metrics(frame, window=(T0 - timedelta(days=9), T0 - timedelta(days=8)))
    assert windowed.request_rate == 0.0, "no request in a known window is a rate of zero"
    assert performance_metrics(records_frame([])).window is None


def test_bad_names_and_values_are_refused_with_the_accepted_ones(frame):
    with pytest.raises(OptionError, match=r"read_latency.*write_throughput.*request_rate") as info:
        performance_metrics(frame, metrics=["read_latency", "latency_p95"])
    assert "latency_p95" in str(info.value)
    with pytest.raises(OptionError, match=r"tier.*format"):
        performance_metrics(frame, by=["key"])
    with pytest.raises(OptionError, match="before it starts"):
        performance_metrics(frame, window=(T0, T0 - timedelta(hours=1)))
    with pytest.raises(OptionError, match="missing columns"):
        performance_metrics(pd.DataFrame({"at": []}))
    assert parse_period("24 hours") == timedelta(days=1)
    assert parse_period("7 days") == timedelta(days=7)
    assert parse_period(" 30 min ") == timedelta(minutes=30)
    assert parse_period("1.5h") == timedelta(minutes=90)
    assert parse_period(timedelta(seconds=5)) == timedelta(seconds=5)
    for bad in ("yesterday", "24", "3 fortnights", "-1 days", "0 hours", "", None):
        with pytest.raises(ConfigError, match="'24 hours', '7 days'" if bad != "0 hours" and bad != "-1 days"
                           else "positive|not a period"):
            parse_period(bad)  # type: ignore[arg-type]


def test_reprs_show_the_figures(frame):
    pm = performance_metrics(frame, window=(T0, T0 + timedelta(hours=1)))
    text = repr(pm)
    assert text.startswith(f"<PerformanceMetrics: {len(frame)} operations, 2026-03-01 12:00:00 to")
    assert "read_latency" in text
    assert "by tier: cold, hot, warm" in text
    page = pm._repr_html_()
    xml.dom.minidom.parseString(page)
    assert "By tier" in page
    assert "By format" in page
    assert "read p95" in page
    assert f"{pm.error_rate:.3g} %" in page


# -- Prometheus ------------------------------------------------------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
VALUE = r"(NaN|[+-]Inf|[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
SAMPLE = re.compile(rf"({NAME})(?:\{{((?:{LABEL})(?:,(?:{LABEL}))*,?)?\}})? {VALUE}(?: -?\d+)?")
HELP = re.compile(rf"# HELP ({NAME}) ((?:[^\\\n]|\\[\\n])*)")
TYPE = re.compile(rf"# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)")


def parse_exposition(text: str) -> dict[str, dict]:
    """Families of a text exposition (format 0.0.4), checked line by line against its grammar."""
    assert text.endswith("\n")
    families: dict[str, dict] = {}
    current = None
    for number, line in enumerate(text.splitlines(), 1):
        if m := HELP.fullmatch(line):
            assert m[1] not in families, f"line {number}: second HELP for {m[1]}"
            families[m[1]] = {"type": None, "samples": []}
            current = m[1]
        elif m := TYPE.fullmatch(line):
            assert m[1] == current
            assert families[m[1]]["type"] is None
            assert not families[m[1]]["samples"]
            families[m[1]]["type"] = m[2]
        elif m := SAMPLE.fullmatch(line):
            name = m[1]
            assert current is not None, f"line {number}: sample before HELP"
            assert families[current]["type"], f"line {number}: sample before TYPE"
            allowed = {current} | ({f"{current}_sum", f"{current}_count"}
                                   if families[current]["type"] == "summary" else set())
            assert name in allowed, f"line {number}: {name} outside family {current}"
            labels = {k: re.sub(r"\\(.)", lambda e: "\n" if e[1] == "n" else e[1], v)
                      for k, v in re.findall(LABEL, m[2] or "")}
            families[current]["samples"].append((name, labels, float(m[len(m.groups())])))
        else:
            raise AssertionError(f"line {number} is not in the exposition grammar: {line!r}")
    return families


def sample(families: dict, name: str, **labels: str) -> float:
    family = name.removesuffix("_sum").removesuffix("_count")
    found = [v for n, lab, v in families[family if family in families else name]["samples"]
             if n == name and lab == labels]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_prometheus_text_parses_and_matches_the_figures(records):
    odd = 'ho"t\\n\new'
    renamed = [OperationRecord(r.operation, r.at, r.seconds, r.outcome,
                               tier=odd if r.tier == "hot" else r.tier, format=r.format, bytes=r.bytes,
                               requests=r.requests) for r in records]
    frame = records_frame(renamed)
    pm = performance_metrics(frame, window=(T0, T0 + timedelta(hours=1)))
    families = parse_exposition(to_prometheus(pm))
    assert families["memories_geo_read_latency_seconds"]["type"] == "summary"
    assert families["memories_geo_error_ratio"]["type"] == "gauge"
    table = pm.to_frame()

    def value(scope: str, name: str | None, metric: str, statistic: str) -> float:
        where = (table["scope"] == scope) & (table["metric"] == metric) & (table["statistic"] == statistic)
        if scope != "all":
            where &= table[scope] == name
        return table[where]["value"].item()

    cases = [({}, "all", None), ({"tier": odd}, "tier", odd), ({"tier": "warm"}, "tier", "warm"),
             ({"format": "cog"}, "format", "cog")]
    for labels, scope, name in cases:
        for statistic, quantile in (("p50", "0.5"), ("p95", "0.95"), ("p99", "0.99")):
            assert sample(families, "memories_geo_read_latency_seconds", **labels, quantile=quantile) == \
                pytest.approx(value(scope, name, "read_latency", statistic))
        count = value(scope, name, "write_latency", "count")
        assert sample(families, "memories_geo_write_latency_seconds_count", **labels) == count
        assert sample(families, "memories_geo_write_latency_seconds_sum", **labels) == pytest.approx(
            value(scope, name, "write_latency", "mean") * count)
        assert sample(families, "memories_geo_error_ratio", **labels) == pytest.approx(
            value(scope, name, "error_rate", "value") / 100)
        assert sample(families, "memories_geo_write_throughput_bytes_per_second", **labels) == pytest.approx(
            value(scope, name, "write_throughput", "rate"))
        assert sample(families, "memories_geo_requests_per_second", **labels) == pytest.approx(
            value(scope, name, "request_rate", "value"))
        assert sample(families, "memories_geo_written_bytes", **labels) == value(
            scope, name, "bytes_written", "value")
    assert to_prometheus(frame, prefix="mg").startswith("# HELP mg_read_latency_seconds ")
    with pytest.raises(OptionError, match="not a Prometheus metric name"):
        to_prometheus(pm, prefix="memories-geo")


def test_usage_gauges_parse_and_skip_what_a_tier_does_not_know():
    usage = [TierUsage("hot", keys=2, versions=3, current_bytes=100, retained_bytes=50, max_size=1000),
             TierUsage("s3", keys=1, versions=1, current_bytes=7)]
    families = parse_exposition(usage_to_prometheus(usage))
    assert sample(families, "memories_geo_tier_used_bytes", tier="hot") == 150
    assert sample(families, "memories_geo_tier_utilization_ratio", tier="hot") == pytest.approx(0.15)
    assert [lab for _, lab, _ in families["memories_geo_tier_max_bytes"]["samples"]] == [{"tier": "hot"}]
    assert sample(families, "memories_geo_tier_keys", tier="s3") == 1


# -- OpenTelemetry ---------------------------------------------------------------------------


def test_opentelemetry_gauges_reach_the_sdk_reader(frame):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    pm = performance_metrics(frame, window=(T0, T0 + timedelta(hours=1)), by="tier")
    recorded = to_opentelemetry(pm, provider)
    points: dict[tuple[str, tuple], float] = {}
    units = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "memories_geo"
            for metric in scope.metrics:
                units[metric.name] = metric.unit
                for point in metric.data.data_points:
                    points[(metric.name, tuple(sorted(point.attributes.items())))] = point.value
    assert len(points) == recorded
    assert points[("memories_geo.read_latency", (("statistic", "p95"),))] == pytest.approx(
        pm.read_latency.p95)
    assert points[("memories_geo.error_rate", (("statistic", "value"), ("tier", "warm")))] == pytest.approx(
        pm.by_tier["warm"].error_rate)
    cold = ("memories_geo.write_throughput", (("statistic", "rate"), ("tier", "cold")))
    assert points[cold] == pytest.approx(pm.by_tier["cold"].write_throughput.rate)
    assert points[("memories_geo.request_rate", (("statistic", "value"),))] == pytest.approx(pm.request_rate)
    assert units["memories_geo.read_latency"] == "s"
    assert units["memories_geo.bytes_written"] == "By"
    provider.shutdown()


def test_opentelemetry_skips_nan_and_names_the_extra_when_missing(monkeypatch):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    assert to_opentelemetry(records_frame([]), provider) == 2, "only bytes_read and bytes_written (0) exist"
    provider.shutdown()
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"pip install 'memories-geo\[otel\]'"):
        to_opentelemetry(records_frame([]))


# -- plots -----------------------------------------------------------------------------------


@pytest.fixture
def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def hourly_records() -> list[OperationRecord]:
    """Reads on hot and warm in hours 0, 1 and 3 (hour 2 empty), saves in hours 0 and 3."""
    out = []
    for hour in (0, 1, 3):
        for i, seconds in enumerate((0.01, 0.02, 0.04, 0.08, 0.5)):
            at = T0 + timedelta(hours=hour, minutes=5 * i)
            out.append(OperationRecord("open", at, seconds * (hour + 1) / 10, tier="hot", format="zarr",
                                       bytes=1000 * i))
            out.append(OperationRecord("read", at, seconds / 2, tier="warm", format="cog", bytes=2000))
        if hour != 1:
            out.append(OperationRecord("save", T0 + timedelta(hours=hour), 2.0, tier="hot", format="zarr",
                                       bytes=4 * 2**20 * (hour + 1)))
    out.append(OperationRecord("open", T0, 99.0, "error", tier="hot", format="zarr"))
    return out


def test_latency_plot_draws_the_binned_quantiles(plt):
    records = hourly_records()
    ax = plot_latency(records_frame(records), freq="1h")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"hot p50", "hot p95", "warm p50", "warm p95"}
    assert ax.get_ylabel() == "latency (ms)"
    hot = [[r.seconds for r in records if r.tier == "hot" and r.operation == "open" and r.outcome == "ok"
            and r.at.hour == 12 + h] for h in range(4)]
    want = [np.percentile(v, 95) * 1000 if v else np.nan for v in hot]
    np.testing.assert_allclose(lines["hot p95"].get_ydata(), want)
    medians = [np.median(v) * 1000 if v else np.nan for v in hot]
    np.testing.assert_allclose(lines["hot p50"].get_ydata(), medians)
    x = pd.to_datetime(lines["hot p95"].get_xdata())
    assert list(x) == [pd.Timestamp(2026, 3, 1, 12 + h) for h in range(4)]
    assert lines["hot p95"].get_linestyle() == "--"
    assert lines["hot p50"].get_color() == lines["hot p95"].get_color()
    by_format = plot_latency(records_frame(records), by="format", freq="2h")
    labels = {line.get_label() for line in by_format.get_lines()}
    assert labels == {"cog p50", "cog p95", "zarr p50", "zarr p95"}
    empty = plot_latency(records_frame([]))
    assert empty.get_lines() == []
    assert "no operations" in empty.texts[0].get_text()
    with pytest.raises(OptionError, match="tier"):
        plot_latency(records_frame(records), by="key")


def test_throughput_plot_draws_bytes_per_second(plt):
    records = hourly_records()
    ax = plot_throughput(records_frame(records), by=None, freq="1h")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"all write", "all read"}
    assert ax.get_ylabel() == "throughput (MiB/s)"
    np.testing.assert_allclose(lines["all write"].get_ydata(), [2.0, np.nan, np.nan, 8.0])
    series = throughput_series(records_frame(records), by=None, freq="1h")["all"]
    np.testing.assert_allclose(lines["all read"].get_ydata() * 2**20, series["read"].to_numpy())
    hour0 = [r for r in records if r.operation in ("open", "read") and r.outcome == "ok" and r.bytes > 0
             and r.at.hour == 12]
    rate = sum(r.bytes for r in hour0) / sum(r.seconds for r in hour0)
    assert series["read"].iloc[0] == pytest.approx(rate)


def test_memory_plots_read_the_log_or_the_catalog(tmp_path, plt):
    mem = mg.Memory(tmp_path / "home")
    log = OperationLog(mem.catalog, OperationMeter())
    now = datetime.now(UTC)
    shifted = [OperationRecord(r.operation, now - (T0 + timedelta(hours=4) - r.at), r.seconds, r.outcome,
                               tier=r.tier, format=r.format, bytes=r.bytes) for r in hourly_records()]
    for record in shifted:
        log.add(record)
    plots = MemoryPlots(mem.catalog, mem.tiers.names, log)
    ax = plots.latency(since="6 hours", freq="1h")
    series = latency_series(records_frame(shifted), freq="1h")
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["warm p95"].get_ydata(), series["warm"]["p95"].to_numpy() * 1000)
    log.flush()
    old_style = MemoryPlots(mem.catalog, mem.tiers.names)
    assert {line.get_label() for line in old_style.throughput(since=timedelta(hours=6)).get_lines()} == {
        "hot write", "hot read", "warm read"}
    assert old_style.latency(since="1 second").get_lines() == []
    assert "latency()" in repr(old_style)


# -- memories-geo stats ----------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> tuple[Path, list[OperationRecord]]:
    """A collection with records of the last hour (and older ones) flushed to its catalog."""
    path = tmp_path / "home"
    mem = mg.Memory(path)
    log = OperationLog(mem.catalog, OperationMeter())
    now = datetime.now(UTC)
    recent = random_records(seed=11, n=120, start=now - timedelta(hours=1, minutes=1))
    old = random_records(seed=12, n=40, start=now - timedelta(days=3))
    for record in recent + old:
        log.add(record)
    assert log.flush() == 160
    log.close()
    return path, recent


def invoke(*args: str):
    from typer.testing import CliRunner

    from memories_geo.cli import app

    return CliRunner().invoke(app, list(args))


def test_stats_json_matches_the_records(home):
    path, recent = home
    done = invoke("--config", str(path), "stats", "--period", "2 hours", "--format", "json")
    assert done.exit_code == 0, done.output
    out = json.loads(done.stdout)
    assert out["window"]["seconds"] == 7200.0
    assert out["operations"] == len(recent)
    want = expected(recent, 7200.0)
    assert out["all"]["request_rate"]["value"] == pytest.approx(want["request_rate"])
    assert out["all"]["error_rate"]["value"] == pytest.approx(want["error_rate"])
    assert out["all"]["read_latency"]["p95"] == pytest.approx(want["read_latency_p95"])
    hot = expected([r for r in recent if r.tier == "hot"], 7200.0)
    assert out["tier"]["hot"]["read_latency"]["p99"] == pytest.approx(hot["read_latency_p99"])
    assert out["tier"]["hot"]["read_latency"]["count"] == hot["read_latency_count"]
    assert out["all"]["read_latency"]["unit"] == "s"
    assert "format" not in out
    by_format = json.loads(invoke("--config", str(path), "stats", "--by", "format", "-f", "json").stdout)
    assert sorted(by_format["format"]) == sorted(FORMATS)


def test_stats_table_prometheus_and_bad_values(home):
    path, recent = home
    table = invoke("--config", str(path), "stats", "--period", "7 days")
    assert table.exit_code == 0, table.output
    assert re.search(r"^\s*hot\s+\d+\s", table.stdout, re.M)
    assert "read p95" in table.stdout
    assert f"{len(recent) + 40} operations in the last 7 days" in table.stdout
    text = invoke("--config", str(path), "stats", "--format", "prometheus").stdout
    families = parse_exposition(text)
    assert sample(families, "memories_geo_read_latency_seconds_count", tier="warm") > 0
    bad = invoke("--config", str(path), "stats", "--period", "3 fortnights")
    assert bad.exit_code == 2
    assert "'24 hours', '7 days'" in bad.output
    assert invoke("--config", str(path), "stats", "--by", "key").exit_code == 2
    empty = invoke("--config", str(path), "stats", "--period", "1 s", "-f", "json")
    assert json.loads(empty.stdout)["all"]["read_latency"]["p95"] is None


def test_metric_names_cover_the_original_api():
    assert {"read_latency", "write_throughput", "request_rate", "error_rate"} <= set(METRICS)
