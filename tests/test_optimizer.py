"""The performance optimizer on a real collection: records from real opens, advice, applied versions."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

import memories_geo as mg
from memories_geo.errors import ConfigError, FormatError, OptionError
from memories_geo.monitor.optimizer import KINDS, OptimizationResult, PerformanceOptimizer, Recommendation
from memories_geo.monitor.optimizer.layout import cog_overviews, parquet_layout, zarr_arrays
from memories_geo.monitor.records import OperationLog


@pytest.fixture
def mem(tmp_path: Path) -> mg.Memory:
    return mg.Memory(tmp_path / "store")


@pytest.fixture
def log(mem: mg.Memory) -> OperationLog:
    return mem.operation_log


def _cube(steps: int = 365, side: int = 200) -> xr.Dataset:
    times = pd.date_range("2020-01-01", periods=steps, freq="D")
    data = np.random.default_rng(0).random((steps, side, side), dtype="float32")
    return xr.Dataset(
        {"t2m": (("time", "y", "x"), data)},
        coords={"time": times, "y": np.linspace(60, 40, side), "x": np.linspace(0, 20, side)},
    ).rio.write_crs("EPSG:4326")


def _small_window_reads(mem: mg.Memory, key: str, n: int = 8) -> None:
    rng = np.random.default_rng(1)
    days = pd.date_range("2020-01-01", periods=365, freq="D")
    for _ in range(n):
        x0, y0 = rng.uniform(0, 18), rng.uniform(40, 58)
        day = days[rng.integers(0, 365)].strftime("%Y-%m-%d")
        mem.open(key, bbox=[x0, y0, x0 + 1, y0 + 1], time=[day, day]).load()


@pytest.fixture
def cube_key(mem: mg.Memory, log: OperationLog) -> str:
    mem.save(_cube(), "era5/t2m", tier="hot", encoding={"t2m": {"chunks": (365, 200, 200)}})
    _small_window_reads(mem, "era5/t2m")
    return "era5/t2m"


def _chunks(mem: mg.Memory, key: str, version: int | None = None) -> list[int]:
    entry = mem.info(key, version=version)
    meta = json.loads((Path(mem.version_store.location(entry).full_path) / "t2m" / "zarr.json").read_text())
    return meta["chunk_grid"]["configuration"]["chunk_shape"]


def test_records_and_analysis(mem: mg.Memory, log: OperationLog, cube_key: str) -> None:
    optimizer = PerformanceOptimizer(mem)
    analysis = optimizer.analyze_access_patterns("1 hour", detail_level="high")
    access = analysis.keys[cube_key]
    assert access.opens == 8
    assert access.errors == 0
    assert access.bbox_fraction is not None
    assert access.bbox_fraction < 0.01
    assert access.time_fraction is not None
    assert access.time_fraction < 0.01
    assert len(access.queries) == 8
    assert access.queries[0].time is not None
    frame = analysis.to_frame()
    assert list(frame["key"]) == [cube_key]
    assert "queries" in frame.columns
    low = optimizer.analyze_access_patterns("1 hour", detail_level="low").to_frame()
    assert "queries" not in low.columns
    assert "bbox_fraction" not in low.columns
    assert "<table>" in analysis._repr_html_()
    assert cube_key in repr(analysis)
    # a DataFrame of records works the same
    from_frame = PerformanceOptimizer(mem, records=log.frame()).analyze_access_patterns("1 hour")
    assert from_frame.keys[cube_key].opens == 8


def test_bad_options(mem: mg.Memory, log: OperationLog) -> None:
    optimizer = PerformanceOptimizer(mem)
    with pytest.raises(OptionError, match="'low', 'medium', 'high'"):
        optimizer.analyze_access_patterns("7 days", detail_level="extreme")
    with pytest.raises(OptionError, match="time_period"):
        optimizer.analyze_access_patterns("seven days")
    with pytest.raises(OptionError, match="OperationLog"):
        PerformanceOptimizer(mem, records=[1, 2])


def test_records_from_a_separate_log(tmp_path: Path) -> None:
    mem = mg.Memory(tmp_path / "other")
    mem.operation_log.close()
    with pytest.raises(ConfigError, match="records="):
        PerformanceOptimizer(_NoLog(mem))
    log = OperationLog(mem.catalog, mem.version_store.meter, persist=False)
    mem.save(_cube(30, 40), "cube", tier="hot")
    for _ in range(3):
        mem.open("cube", bbox=[0, 40, 1, 41]).load()
    analysis = PerformanceOptimizer(mem, records=log).analyze_access_patterns("1 hour")
    assert analysis.keys["cube"].opens == 3
    log.close()


class _NoLog:
    """A collection seen without its operation log (one that keeps none)."""

    def __init__(self, mem: mg.Memory) -> None:
        self.catalog, self.version_store, self.tiers = mem.catalog, mem.version_store, mem.tiers


def test_rechunk_recommended_applied_and_faster(mem: mg.Memory, log: OperationLog, cube_key: str) -> None:
    optimizer = PerformanceOptimizer(mem)
    optimizer.analyze_access_patterns("1 hour", detail_level="high")
    recs = optimizer.get_recommendations()
    assert [r.id for r in recs] == [f"chunk-size-adjustment:{cube_key}"]
    rec = recs[0]
    assert rec.kind == "chunk-size-adjustment"
    assert rec.complexity == "medium"
    assert rec.parameters["new_chunk_size"] == (1, 200, 200)
    assert rec.evidence["stored_chunks"] == (365, 200, 200)
    assert rec.expected_improvement.basis == "estimated"
    assert rec.expected_improvement.factor > 100
    assert "chunk-size-adjustment" in rec._repr_html_()
    assert rec.id in repr(rec)

    result = optimizer.apply_optimization("chunk-size-adjustment")
    assert isinstance(result, OptimizationResult)
    assert (result.previous_version, result.new_version) == (1, 2)
    assert _chunks(mem, cube_key) == [1, 200, 200]
    assert _chunks(mem, cube_key, version=1) == [365, 200, 200]
    xr.testing.assert_identical(mem.open(cube_key, version=1).load(), mem.open(cube_key).load())
    assert result.pairs == 6
    assert result.speedup_range is not None
    assert result.speedup is not None
    assert result.speedup > 1.5, result
    assert result.before_seconds > result.after_seconds
    print(f"re-chunk speedup {result.speedup:.1f}x (range {result.speedup_range})")
    assert "x (range" in repr(result)
    assert "<style>" in result._repr_html_()
    # the previous version still opens with its old layout
    assert mem.open(cube_key, version=1)["t2m"].encoding["chunks"] == (365, 200, 200)
    assert mem.open(cube_key)["t2m"].encoding["chunks"] == (1, 200, 200)


def test_rechunk_with_parameters(mem: mg.Memory, log: OperationLog, cube_key: str) -> None:
    optimizer = PerformanceOptimizer(mem)
    optimizer.analyze_access_patterns("1 hour")
    with pytest.raises(OptionError, match="new_chunk_size"):
        optimizer.apply_optimization("chunk-size-adjustment", parameters={"new_chunk_size": (1, 50)})
    with pytest.raises(OptionError, match=r"accepted: \['new_chunk_size', 'variables'\]"):
        optimizer.apply_optimization("chunk-size-adjustment", parameters={"chunks": (1, 50, 50)})
    result = optimizer.apply_optimization(
        "chunk-size-adjustment", parameters={"new_chunk_size": (1, 50, 50)}, key=cube_key, measure=False,
    )
    assert result.speedup is None
    assert _chunks(mem, cube_key) == [1, 50, 50]
    assert [v.version for v in mem.versions(cube_key)] == [1, 2]


def test_unknown_id_lists_current_ids(mem: mg.Memory, log: OperationLog, cube_key: str) -> None:
    optimizer = PerformanceOptimizer(mem)
    with pytest.raises(OptionError, match=r"chunk-size-adjustment:era5/t2m") as info:
        optimizer.apply_optimization("tier-up:nothing")
    assert "current recommendations" in str(info.value)
    with pytest.raises(OptionError, match="kinds"):
        optimizer.apply_optimization("defragment")


def test_tier_down_for_idle_key(mem: mg.Memory, log: OperationLog) -> None:
    mem.save(_cube(30, 40), "idle/cube", tier="hot")
    mem.save(_cube(30, 40), "busy/cube", tier="hot")
    time.sleep(1.2)
    mem.open("busy/cube").load()
    optimizer = PerformanceOptimizer(mem)
    optimizer.analyze_access_patterns("1 second")
    recs = {r.id: r for r in optimizer.get_recommendations()}
    assert "tier-down:idle/cube" in recs
    assert not any(k.endswith("busy/cube") for k in recs)
    rec = recs["tier-down:idle/cube"]
    assert rec.parameters == {"tier": "warm"}
    assert rec.expected_improvement.bytes == mem.info("idle/cube").size_bytes
    with pytest.raises(OptionError, match="configured tier"):
        optimizer.apply_optimization(rec.id, parameters={"tier": "moon"})
    result = optimizer.apply_optimization(rec.id)
    assert (result.previous_tier, result.new_tier) == ("hot", "warm")
    assert mem.info("idle/cube").tier == "warm"
    assert result.speedup is None
    assert "no recorded query" in result.note
    # a key saved inside the period is not idle yet
    optimizer.analyze_access_patterns("1 hour")
    assert "tier-down:busy/cube" not in [r.id for r in optimizer.get_recommendations()]


def test_tier_up_for_key_opened_often_on_cold(mem: mg.Memory, log: OperationLog) -> None:
    mem.save(_cube(30, 40), "cold/cube", tier="cold")
    for _ in range(6):
        mem.open("cold/cube", bbox=[0, 40, 10, 50]).load()
    optimizer = PerformanceOptimizer(mem)
    optimizer.analyze_access_patterns("1 hour")
    rec = next(r for r in optimizer.get_recommendations() if r.kind == "tier-up")
    assert rec.id == "tier-up:cold/cube"
    assert rec.parameters == {"tier": "warm"}
    assert rec.evidence["opens"] == 6
    result = optimizer.apply_optimization("tier-up", key="cold/cube", rounds=1)
    assert result.new_tier == "warm"
    assert mem.info("cold/cube").tier == "warm"
    assert result.new_version == result.previous_version
    assert result.pairs == 2


def _image(side: int = 600) -> xr.DataArray:
    data = np.random.default_rng(2).random((side, side), dtype="float32")
    return xr.DataArray(
        data, dims=("y", "x"), name="ndvi",
        coords={"y": np.linspace(50, 40, side), "x": np.linspace(0, 10, side)},
    ).rio.write_crs("EPSG:4326")


def test_cog_overviews(mem: mg.Memory, log: OperationLog) -> None:
    entry = mem.save(_image(), "ndvi", tier="hot", format="cog", blocksize=1024)
    assert cog_overviews(entry) == []
    with pytest.raises(FormatError, match="overview_level=1 does not exist"):
        mem.open("ndvi", overview_level=1)
    for _ in range(2):
        mem.open("ndvi").load()
    optimizer = PerformanceOptimizer(mem)
    access = optimizer.analyze_access_patterns("1 hour").keys["ndvi"]
    assert (access.opens, access.errors) == (2, 1)
    rec = next(r for r in optimizer.get_recommendations() if r.kind == "cog-overviews")
    assert rec.parameters == {"blocksize": 128, "read_overview_level": 0}
    assert (rec.evidence["whole_extent_opens"], rec.evidence["overview_level_opens"]) == (2, 1)
    result = optimizer.apply_optimization(rec.id)
    new = mem.info("ndvi")
    assert new.version == 2
    assert cog_overviews(new) == [2, 4, 8]
    with rasterio.open(mem.version_store.location(new).full_path) as src:
        assert src.overviews(1) == [2, 4, 8]
    with rasterio.open(mem.version_store.location(mem.info("ndvi", version=1)).full_path) as src:
        assert src.overviews(1) == []
    xr.testing.assert_identical(mem.open("ndvi", version=1).load(), mem.open("ndvi").load())
    assert result.speedup is not None
    assert "overview level 0" in result.note


def _points(n: int = 60_000) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(3)
    return gpd.GeoDataFrame(
        {"id": np.arange(n), "v": rng.random(n)},
        geometry=gpd.points_from_xy(rng.uniform(0, 10, n), rng.uniform(40, 50, n)), crs="EPSG:4326",
    )


def test_geoparquet_hilbert_sort(mem: mg.Memory, log: OperationLog) -> None:
    mem.save(_points(), "pts", tier="hot", format="geoparquet", sort="none")
    rng = np.random.default_rng(4)
    for _ in range(4):
        x0, y0 = rng.uniform(0, 9), rng.uniform(40, 49)
        mem.open("pts", bbox=[x0, y0, x0 + 0.5, y0 + 0.5])
    optimizer = PerformanceOptimizer(mem)
    optimizer.analyze_access_patterns("1 hour")
    rec = next(r for r in optimizer.get_recommendations() if r.kind == "hilbert-sort")
    assert rec.parameters == {"sort": "hilbert", "row_group_size": 3750}
    assert rec.evidence["sort"] == "none"
    result = optimizer.apply_optimization(rec.id)
    layout = parquet_layout(mem.version_store, mem.info("pts"))
    assert layout is not None
    assert layout.sort == "hilbert"
    assert layout.row_groups == 16
    old = mem.open("pts", version=1).sort_values("id").reset_index(drop=True)
    new = mem.open("pts").sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(old, new)
    assert result.speedup is not None
    assert result.speedup > 1.0, result
    print(f"hilbert-sort speedup {result.speedup:.2f}x")


def test_nothing_recommended_without_evidence(mem: mg.Memory, log: OperationLog) -> None:
    mem.save(_cube(30, 40), "fresh/cube", tier="hot", encoding={"t2m": {"chunks": (30, 40, 40)}})
    mem.open("fresh/cube", bbox=[0, 40, 1, 41]).load()
    optimizer = PerformanceOptimizer(mem)
    assert optimizer.get_recommendations() == []
    assert set(KINDS) >= {"tier-up", "tier-down", "chunk-size-adjustment", "cog-overviews"}
    assert zarr_arrays(mem.version_store, mem.info("fresh/cube"))["t2m"].chunks == (30, 40, 40)
    assert isinstance(Recommendation, type)


def test_parquet_time_partition(mem: mg.Memory, log: OperationLog) -> None:
    n = 200_000
    frame = pd.DataFrame({"time": pd.date_range("2000-01-01", periods=n, freq="h"), "station": "a",
                          "v": np.random.default_rng(5).random(n)})
    entry = mem.save(frame, "obs/hourly", tier="hot", format="parquet")
    assert entry.object_info["partition_cols"] == ["year"]
    for day in ("2003-02-03", "2010-07-08", "2019-11-12"):
        mem.open("obs/hourly", time=(day, day), columns=["v"])
    optimizer = PerformanceOptimizer(mem)
    optimizer.analyze_access_patterns("1 hour", detail_level="medium")
    rec = next(r for r in optimizer.get_recommendations() if r.kind == "time-partition")
    assert rec.parameters == {"partition_cols": ["year", "month"]}
    result = optimizer.apply_optimization(rec.id)
    assert mem.info("obs/hourly").object_info["partition_cols"] == ["year", "month"]
    pd.testing.assert_frame_equal(mem.open("obs/hourly", version=1), mem.open("obs/hourly"))
    assert result.speedup is not None
    assert result.pairs == 6


@pytest.fixture
def tsdb(request: pytest.FixtureRequest, tmp_path: Path) -> mg.Memory:
    """A collection whose warm tier is the TimescaleDB test service (PGlite), in its own schema."""
    from psycopg import sql

    dsn = request.getfixturevalue("timescaledb_dsn")
    name = f"t_{uuid.uuid4().hex[:12]}"
    config = mg.StorageConfig.from_dict({
        "home": str(tmp_path / "home"),
        "tiers": {"warm": {"url": dsn, "storage_options": {
            "schema": name, "min_size": 1, "max_size": 1, "prepare_threshold": None}}},
    })
    memory = mg.Memory(config)
    yield memory
    with memory.tiers.backend("warm").connection() as con:
        con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    memory.tiers.backend("warm").close()


@pytest.mark.postgres
def test_table_compression(tsdb: mg.Memory) -> None:
    frame = pd.DataFrame({"time": pd.date_range("2024-01-01", periods=400, freq="6h", tz="UTC"),
                          "station": "a", "v": np.arange(400.0)})
    entry = tsdb.save(frame, "obs/table", tier="warm", chunk_time_interval="7 days",
                      compression_enabled=False)
    assert entry.format == "timescaledb"
    assert entry.object_info["settings"]["compression_enabled"] is False
    optimizer = PerformanceOptimizer(tsdb)
    optimizer.analyze_access_patterns("1 hour")
    rec = next(r for r in optimizer.get_recommendations() if r.kind == "table-compression")
    assert rec.parameters == {"compression_enabled": True}
    result = optimizer.apply_optimization(rec.id)
    assert (result.previous_version, result.new_version) == (1, 2)
    assert tsdb.info("obs/table").object_info["settings"]["compression_enabled"] is True
    pd.testing.assert_frame_equal(tsdb.open("obs/table", version=1), tsdb.open("obs/table"))
