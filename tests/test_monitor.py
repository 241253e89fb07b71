"""The monitor: operation records of every operation, usage per tier against what the
backends report, and tier quotas refusing saves before (and after) writing."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import memories_geo as mg
from memories_geo.errors import QuotaExceededError
from memories_geo.examples import sample_vector


def _cube(seed: int = 0, t: int = 8, n: int = 64) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    return xr.Dataset(
        {"t2m": (("time", "y", "x"), rng.normal(size=(t, n, n)).astype("float32"))},
        coords={"time": np.arange(t), "y": np.linspace(50, 40, n), "x": np.linspace(0, 10, n)},
    )


def _memory(tmp_path: Path, **tiers: dict[str, Any]) -> mg.Memory:
    return mg.Memory(mg.StorageConfig.from_dict({
        "catalog": str(tmp_path / "catalog.sqlite"),
        "default_tier": "hot",
        "tiers": {"hot": {"url": str(tmp_path / "hot")}, "cold": {"url": str(tmp_path / "cold")}, **tiers},
    }))


def _stored_files(root: Path) -> dict[str, int]:
    """Data files of every version under a local tier root (records excluded), with sizes."""
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and "@v" in p.parts and not p.name.endswith(".record.json")
    }


# -- operation records --------------------------------------------------------------------


def test_every_operation_leaves_a_record(tmp_path):
    mem = _memory(tmp_path)
    ds = _cube()
    entry = mem.save(ds, "era5/t2m", crs="EPSG:4326", encoding={"t2m": {"chunks": (4, 32, 32)}})
    written = _stored_files(tmp_path / "hot")
    lazy = mem.open("era5/t2m", bbox=(0, 40, 4, 44))
    lazy.load()
    mem.execute_migration(mg.MigrationJob(source_tier="hot", destination_tier="cold"))
    mem.checkpoints.save("first")
    mem.delete("era5/t2m")
    mem.checkpoints.restore("first")
    frame = mem.monitor.records()
    operations = list(frame["operation"])
    expected = ("save", "open", "read", "move", "migration", "checkpoint.save", "delete",
                "checkpoint.restore")
    for name in expected:
        assert name in operations, operations
    save = frame[frame["operation"] == "save"].iloc[0]
    assert (save["key"], save["version"], save["tier"], save["format"]) == ("era5/t2m", 1, "hot", "zarr")
    assert save["bytes"] == entry.size_bytes
    assert save["requests"] == len(written) + 1  # every file, and the version record
    assert save["seconds"] > 0
    assert save["outcome"] == "ok"
    opened = frame[frame["operation"] == "open"].iloc[0]
    assert opened["detail"]["bbox"] == pytest.approx([0, 40, 4, 44])
    assert opened["detail"]["time"] is None
    read = frame[frame["operation"] == "read"]
    chunks = read["detail"].map(lambda d: d.get("chunks", 0)).sum() + opened["detail"].get("chunks", 0)
    # 2 x 2 chunks of 4 x 32 x 32 float32 cover the window: two time chunks, one x/y chunk each
    # (plus the coordinate chunks read when opening)
    assert read["bytes"].sum() > 0
    assert chunks >= 2
    assert read["bytes"].sum() + opened["bytes"] < entry.size_bytes
    move = frame[frame["operation"] == "move"].iloc[0]
    assert (move["tier"], move["detail"]["from_tier"], move["bytes"]) == ("cold", "hot", entry.size_bytes)
    migration = frame[frame["operation"] == "migration"].iloc[0]
    assert (migration["tier"], migration["bytes"]) == ("cold", entry.size_bytes)
    assert migration["detail"]["keys"] == 1
    assert (frame["at"].diff().dropna() >= np.timedelta64(0)).all()


def test_records_are_kept_in_the_catalog_and_shared(tmp_path):
    mem = _memory(tmp_path)
    mem.save(sample_vector(), "fields")
    mem.open("fields")
    mem.operation_log.flush()
    other = _memory(tmp_path)
    seen = other.monitor.records()
    assert list(seen["operation"]) == ["save", "open"]
    assert list(seen["format"]) == ["geoparquet", "geoparquet"]
    assert str(seen["at"].dtype) == "datetime64[ns, UTC]"


def test_a_failed_save_is_recorded_as_an_error(tmp_path):
    mem = _memory(tmp_path)
    bad = sample_vector()
    bad["mixed"] = pd.Series(["x"] * len(bad), index=bad.index, dtype=object)
    bad.loc[bad.index[0], "mixed"] = 3
    with pytest.raises(mg.errors.MemoriesError):
        mem.save(bad, "bad")
    record = mem.monitor.records().iloc[-1]
    assert (record["operation"], record["key"], record["outcome"]) == ("save", "bad", "error")
    assert record["error"] in {"UnsupportedObjectError", "FormatError"}


def test_a_read_only_collection_records_in_memory(tmp_path):
    writer = _memory(tmp_path)
    writer.save(sample_vector(), "fields")
    writer.operation_log.flush()
    reader = mg.Memory(mg.StorageConfig.from_dict({
        "catalog": str(tmp_path / "catalog.sqlite"), "default_tier": "hot",
        "tiers": {"hot": {"url": str(tmp_path / "hot")}, "cold": {"url": str(tmp_path / "cold")}},
    }), read_only=True)
    reader.open("fields")
    assert list(reader.monitor.records()["operation"]) == ["open"]
    assert list(_memory(tmp_path).monitor.records()["operation"]) == ["save"]


def test_old_records_are_pruned(tmp_path):
    from datetime import timedelta

    from memories_geo.monitor.records import OperationLog

    mem = _memory(tmp_path)
    mem.save(sample_vector(), "fields")
    mem.operation_log.flush()
    log = OperationLog(mem.catalog, mem.version_store.meter, keep=timedelta(0))
    mem.open("fields")
    log.flush()
    assert mem.catalog.operations() == []


# -- usage per tier --------------------------------------------------------------------------


def test_usage_matches_the_files_on_disk(tmp_path):
    mem = _memory(tmp_path, warm={"url": str(tmp_path / "warm"), "max_size": "200MB"})
    mem.save(_cube(1), "a", crs="EPSG:4326")
    mem.save(_cube(2), "a", mode="w", crs="EPSG:4326")
    mem.save(sample_vector(), "fields", tier="warm")
    usage = mem.monitor.get_storage_usage()
    hot, warm, cold = (_stored_files(tmp_path / t) for t in ("hot", "warm", "cold"))
    assert usage["hot"].used_bytes == sum(hot.values())
    assert usage["hot"].objects == len(hot)
    assert (usage["hot"].keys, usage["hot"].versions) == (1, 2)
    assert usage["hot"].retained_bytes > 0
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    assert usage["hot"].available_bytes == pytest.approx(free, rel=0.01)
    assert usage["hot"].utilization_percentage == pytest.approx(
        100 * usage["hot"].used_bytes / (usage["hot"].used_bytes + usage["hot"].available_bytes))
    assert usage["warm"].used_bytes == sum(warm.values())
    assert usage["warm"].available_bytes == 200_000_000 - sum(warm.values())
    assert usage["warm"].utilization_percentage == pytest.approx(100 * sum(warm.values()) / 200_000_000)
    assert usage["cold"].used_bytes == 0 == len(cold)
    figures = usage["warm"].figures()
    assert figures["warm.used_bytes"] == sum(warm.values())


def test_usage_on_s3_matches_the_objects_listed(tmp_path, s3_service):
    import boto3

    options = s3_service.options
    url = f"{s3_service.url}/{uuid.uuid4().hex[:8]}"
    mem = _memory(tmp_path, warm={"url": url, "storage_options": options, "max_size": "1GB"})
    mem.save(_cube(3), "cube", tier="warm", crs="EPSG:4326")
    mem.save(sample_vector(), "fields", tier="warm")
    client = boto3.client(
        "s3", endpoint_url=options["client_kwargs"]["endpoint_url"], region_name="us-east-1",
        aws_access_key_id=options["key"], aws_secret_access_key=options["secret"],
    )
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    listed = [
        item for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
        for item in page.get("Contents", [])
        if "/@v/" in item["Key"] and not item["Key"].endswith(".record.json")
    ]
    usage = mem.monitor.get_storage_usage()["warm"]
    assert usage.used_bytes == sum(item["Size"] for item in listed)
    assert usage.objects == len(listed)
    assert usage.available_bytes == 1_000_000_000 - usage.used_bytes


def test_usage_without_a_bound_has_no_utilisation(tmp_path, s3_service):
    url = f"{s3_service.url}/{uuid.uuid4().hex[:8]}"
    mem = _memory(tmp_path, warm={"url": url, "storage_options": s3_service.options})
    usage = mem.monitor.get_storage_usage()["warm"]
    assert usage.available_bytes is None
    assert usage.utilization_percentage is None


# -- quotas ------------------------------------------------------------------------------------


def test_a_save_past_the_quota_fails_before_writing(tmp_path):
    mem = _memory(tmp_path, warm={"url": str(tmp_path / "warm"), "max_size": "100 kB"})
    cube = _cube(4)  # 128 KiB in memory
    refusal = r"tier 'warm' holds 0 B of its max_size 97.7 KiB \(0 of 100,000 bytes\)"
    with pytest.raises(QuotaExceededError, match=refusal) as caught:
        mem.save(cube, "cube", tier="warm", crs="EPSG:4326")
    assert isinstance(caught.value, OSError)
    assert not (tmp_path / "warm").exists() or _stored_files(tmp_path / "warm") == {}
    assert mem.catalog.current_entries() == []
    with mem.catalog.transaction() as con:
        assert con.execute("SELECT COUNT(*) FROM versions").fetchone() == (0,)
    assert mem.monitor.get_storage_usage()["warm"].used_bytes == 0


def test_a_save_whose_stored_size_overflows_is_not_kept(tmp_path):
    cube = _cube(5)
    bits = np.random.default_rng(5).integers(0, 2**32, cube["t2m"].shape, dtype="uint32")
    cube["t2m"] = cube["t2m"].copy(data=bits)
    probe = _memory(tmp_path / "probe", warm={"url": str(tmp_path / "probe" / "warm")})
    stored = probe.save(cube, "cube", tier="warm", crs="EPSG:4326").size_bytes
    assert stored > cube.nbytes  # random bits do not compress: metadata and coordinates on top
    mem = _memory(tmp_path / "m", warm={"url": str(tmp_path / "m" / "warm"), "max_size": cube.nbytes + 10})
    mem.save(sample_vector(), "keep", tier="hot")
    with pytest.raises(QuotaExceededError, match="nothing was written or kept"):
        mem.save(cube, "cube", tier="warm", crs="EPSG:4326")
    assert _stored_files(tmp_path / "m" / "warm") == {}
    assert [e.key for e in mem.catalog.current_entries()] == ["keep"]
    record = mem.monitor.records().iloc[-1]
    assert (record["operation"], record["outcome"]) == ("save", "error")
    assert record["error"] == "QuotaExceededError"


def test_a_quota_counts_older_versions_and_frees_on_delete(tmp_path):
    mem = _memory(tmp_path, warm={"url": str(tmp_path / "warm"), "max_size": "300 kB"})
    mem.save(_cube(6), "cube", tier="warm", crs="EPSG:4326")
    mem.save(_cube(7), "cube", tier="warm", mode="w", crs="EPSG:4326")
    with pytest.raises(QuotaExceededError):
        mem.save(_cube(8), "cube", tier="warm", mode="w", crs="EPSG:4326")
    mem.delete("cube", version=1)
    entry = mem.save(_cube(8), "cube", tier="warm", mode="w", crs="EPSG:4326")
    assert entry.version == 3


@pytest.mark.parametrize("bad", ["lots", "-5GB", 0, "12 parsecs"])
def test_a_bad_quota_is_a_config_error(tmp_path, bad):
    with pytest.raises(mg.errors.ConfigError, match="max_size"):
        _memory(tmp_path, warm={"url": str(tmp_path / "warm"), "max_size": bad})


def test_the_collection_repr_shows_the_usage_figures(tmp_path):
    mem = _memory(tmp_path, warm={"url": str(tmp_path / "warm"), "max_size": "1MB"})
    mem.save(sample_vector(), "fields", tier="warm")
    warm = mem.monitor.get_storage_usage()["warm"]
    page = mem._repr_html_()
    assert f"<td class='mg-num'>{warm.objects}</td>" in page
    assert f"{warm.utilization_percentage:.1f} %" in page
    assert repr(mem.monitor) == f"StorageMonitor(tiers={mem.tiers.names}, alerts=0)"


# -- alerts through the monitor -----------------------------------------------------------------


def test_an_alert_on_utilisation_fires_once_per_cooldown_after_operations(tmp_path):
    mem = _memory(tmp_path, warm={"url": str(tmp_path / "warm"), "max_size": "1MB"})
    monitor = mem.monitor
    monitor.alert_every = 0
    fired = []
    monitor.set_alert("warm-half-full", "warm.utilization_percentage > 10 and warm.keys >= 1",
                      notification_channel=fired.append, cooldown="6 hours")
    mem.save(sample_vector(), "small", tier="hot")
    monitor.wait()
    assert fired == []
    mem.save(_cube(9), "cube", tier="warm", crs="EPSG:4326")  # ~130 kB of 1 MB
    monitor.wait()
    mem.save(_cube(10), "cube2", tier="warm", crs="EPSG:4326")
    monitor.wait()
    assert [e.name for e in fired] == ["warm-half-full"]
    used = mem.monitor.get_storage_usage()["warm"]
    assert fired[0].values["warm.utilization_percentage"] > 10
    assert fired[0].values["warm.utilization_percentage"] <= used.utilization_percentage
    history = mg.Memory(mem.config).monitor.alert_history()
    assert [e.name for e in history] == ["warm-half-full"]
    assert monitor.check_alerts() == []  # in its cooldown


def test_the_runner_thread_evaluates_alerts(tmp_path):
    import threading

    mem = _memory(tmp_path)
    mem.save(sample_vector(), "fields")
    done = threading.Event()
    mem.monitor.set_alert("any-key", "hot.keys > 0", notification_channel=lambda event: done.set())
    runner = mem.monitor.start(interval=0.05)
    try:
        assert done.wait(10)
    finally:
        runner.stop()
    assert runner.runs >= 1


@pytest.mark.parametrize("condition", [
    "hot.utilisation_percentage > 85",            # misspelt figure
    "__import__('os').system('touch x') > 0",
    "hot.used_bytes > 1; DROP TABLE operations",
])
def test_a_bad_condition_is_refused_when_set(tmp_path, monkeypatch, condition):
    monkeypatch.chdir(tmp_path)
    mem = _memory(tmp_path)
    with pytest.raises(mg.AlertConditionError):
        mem.monitor.set_alert("bad", condition)
    assert mem.monitor.alerts.alerts == []
    assert not (tmp_path / "x").exists()


def test_figures_name_usage_and_metrics(tmp_path):
    mem = _memory(tmp_path)
    mem.save(sample_vector(), "fields")
    mem.open("fields")
    figures = mem.monitor.figures()
    assert figures["hot.keys"] == 1
    assert figures["read_latency_p95"] > 0
    assert figures["hot.read_latency_p95"] == figures["read_latency_p95"]
    assert figures["geoparquet.read_latency_count"] == 1
    assert set(figures) <= set(mem.monitor.figure_names())
    used = mem.monitor.get_storage_usage()["hot"].used_bytes
    text = mem.monitor.to_prometheus()
    assert f'memories_geo_tier_used_bytes{{tier="hot"}} {used}\n' in text
    assert 'memories_geo_read_latency_seconds{quantile="0.95"}' in text


def test_a_time_series_read_counts_the_files_it_opens(tmp_path):
    rng = np.random.default_rng(3)
    times = pd.date_range("2024-01-01", "2024-12-31 23:00", freq="h", tz="UTC")
    frame = pd.DataFrame({"time": times, "station": "a", "value": rng.normal(size=len(times))})
    mem = _memory(tmp_path)
    entry = mem.save(frame, "stations", partition_cols=["year", "month"])
    files = _stored_files(tmp_path / "hot")
    data = {name: size for name, size in files.items()
            if name.endswith(".parquet") and "_metadata" not in name}
    assert len(data) == 12
    mem.open("stations", time=("2024-03-01", "2024-04-30"))
    record = mem.monitor.records().iloc[-1]
    assert (record["operation"], record["format"]) == ("open", "parquet")
    march_april = [size for name, size in data.items() if "month=3" in name or "month=4" in name]
    assert record["detail"]["chunks"] == 2
    assert record["bytes"] == sum(march_april) < entry.size_bytes
