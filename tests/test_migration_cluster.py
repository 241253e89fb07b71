"""Migrations on a real dask cluster whose workers are "another machine" (issue 14).

The cluster runs worker *processes* (``LocalCluster(processes=True, n_workers=2)``) with
their own home and working directory; the two tiers are prefixes of a moto S3 server
every process reaches; the catalog is a SQLite file in the client's home, which the
workers are never told about. An audit hook on the workers records every SQLite
database they open: a migration must open none (the workers only copy and hash bytes).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from geopandas import GeoDataFrame
from geopandas.testing import assert_geodataframe_equal
from shapely.geometry import Point

import memories_geo as mg
from memories_geo.examples import sample_raster
from memories_geo.lifecycle import MigrationError, MigrationJob, execute_migration, migration_status

distributed = pytest.importorskip("distributed")


# The worker-side helpers defined here are shipped to the worker processes by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

from cluster_support import sqlite_opened, start_cluster  # noqa: E402  # isort: skip


@pytest.fixture(scope="module")
def cluster_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("migration-workers")


@pytest.fixture(scope="module")
def client(cluster_root: Path) -> Any:
    cluster, client = start_cluster(cluster_root)
    yield client
    client.close()
    cluster.close()


def _config(tmp_path: Path, s3_service: Any) -> mg.StorageConfig:
    prefix = uuid.uuid4().hex[:8]
    tier = {"storage_options": s3_service.options}
    return mg.StorageConfig.from_dict({
        "home": str(tmp_path / "client-home"),
        "default_tier": "hot",
        "tiers": {"hot": {**tier, "url": f"{s3_service.url}/{prefix}/hot"},
                  "cold": {**tier, "url": f"{s3_service.url}/{prefix}/cold"}},
    })


@pytest.fixture
def mem(tmp_path: Path, s3_service: Any) -> mg.Memory:
    return mg.Memory(_config(tmp_path, s3_service))


def _cube(nt: int = 4, ny: int = 32, nx: int = 48) -> xr.Dataset:
    rng = np.random.default_rng(3)
    return xr.Dataset(
        {"t2m": (("time", "y", "x"), rng.normal(280, 5, (nt, ny, nx)).astype("float32"))},
        coords={"time": pd.date_range("2024-01-01", periods=nt), "y": 50.0 - np.arange(ny) * 0.25,
                "x": np.arange(nx) * 0.25},
        attrs={"title": "a cube"},
    ).rio.write_crs("EPSG:4326")


def _points(n: int = 50) -> GeoDataFrame:
    rng = np.random.default_rng(5)
    return GeoDataFrame({"v": rng.normal(size=n), "name": [f"n{i}" for i in range(n)]},
                        geometry=[Point(x, y) for x, y in rng.uniform(0, 5, (n, 2))], crs="EPSG:4326")


def _files(mem: mg.Memory, tier: str, key: str) -> list[str]:
    backend = mem.tiers.backend(tier)
    fs, root = backend.fs, backend.full_path(key)
    fs.invalidate_cache()
    return sorted(fs.find(root)) if fs.exists(root) else []


def _ran(stream: Any, prefix: str) -> list[str]:
    return [t["worker"] for t in stream.data if str(t["key"]).strip("('").startswith(prefix)]


def _save_three(mem: mg.Memory) -> dict[str, Any]:
    import rioxarray  # noqa: F401

    mem.save(_cube().chunk({"time": 1, "y": 16, "x": 24}), "cube", format="zarr")
    mem.save(_points(), "fields", format="geoparquet")
    mem.save(sample_raster(seed=2), "dem", format="cog")
    assert {e.key: e.format for e in mem.catalog.current_entries()} == {
        "cube": "zarr", "fields": "geoparquet", "dem": "cog"}
    return {"cube": mem.open("cube").load(), "fields": mem.open("fields"), "dem": mem.open("dem").load()}


def _assert_unchanged(mem: mg.Memory, before: dict[str, Any]) -> None:
    for key, expected in before.items():
        if isinstance(expected, xr.Dataset):
            xr.testing.assert_identical(mem.open(key).load(), expected)
        else:
            assert_geodataframe_equal(mem.open(key), expected)


def test_without_a_client_the_same_migration_runs_in_threads(mem: mg.Memory) -> None:
    from memories_geo.versions.fanout import active_client

    assert active_client() is None, "runs before the module's cluster starts"
    before = _save_three(mem)
    status = execute_migration(mem, MigrationJob(source_tier="hot", destination_tier="cold"))
    assert sorted(status.keys_done) == ["cube", "dem", "fields"]
    assert {e.tier for e in mem.catalog.current_entries()} == {"cold"}
    _assert_unchanged(mem, before)
    with pytest.raises(mg.errors.OptionError, match=r"active dask\.distributed client"):
        execute_migration(mem, MigrationJob(source_tier="cold", destination_tier="hot"), distributed=True)


def test_workers_copy_the_bytes_and_the_client_keeps_the_catalog(
    client: Any, mem: mg.Memory, cluster_root: Path
) -> None:
    before = _save_three(mem)
    xr.testing.assert_identical(before["cube"], _cube())
    assert_geodataframe_equal(before["fields"], _points())
    xr.testing.assert_identical(before["dem"], sample_raster(seed=2))
    versions = {e.key: e.version_id for e in mem.catalog.current_entries()}
    opened_before = len(sqlite_opened(cluster_root))
    job = MigrationJob(source_tier="hot", destination_tier="cold")
    with distributed.get_task_stream(client) as stream:
        status = execute_migration(mem, job)
    assert status.state == "completed"
    assert sorted(status.keys_done) == ["cube", "dem", "fields"]
    assert len(_ran(stream, "copy-checked")) == 3, "one copy task per version, on the workers"
    assert set(_ran(stream, "copy-checked")) <= set(client.scheduler_info()["workers"])
    assert sqlite_opened(cluster_root)[opened_before:] == [], "no worker opened a catalog"
    for entry in mem.catalog.current_entries():
        assert entry.tier == "cold"
        assert entry.version_id == versions[entry.key], "a move keeps the version"
        assert entry.uri.startswith(mem.tiers.backend("cold").url_for(""))
        assert _files(mem, "hot", entry.key) == [], "the source is deleted"
        assert _files(mem, "cold", entry.key)
    _assert_unchanged(mem, before)
    items = mem.catalog.migration_items(job.id)
    assert {i.key: i.state for i in items} == {"cube": "done", "fields": "done", "dem": "done"}
    assert all(i.bytes_done == i.size_bytes > 0 for i in items)
    assert mem.catalog.migration_job(job.id).state == "completed"
    assert mem.catalog.pending_moves() == []
    audit = mem.audit(operation="migrate")
    assert len(audit[audit.detail.str.contains("copied by a worker")]) == 3
    mem.verify()
    assert mem.recover() == []


def test_a_bad_copy_reported_by_a_worker_keeps_the_source(client: Any, mem: mg.Memory) -> None:
    """A version damaged at its source fails the worker's re-hash: nothing moves, the job can be re-run."""
    before = _save_three(mem)
    entry = mem.catalog.current("fields")
    backend = mem.tiers.backend("hot")
    path = backend.full_path(entry.path)
    original = backend.fs.cat(path)
    backend.fs.pipe(path, original[:-8] + b"\x00" * 8)
    job = MigrationJob(source_tier="hot", destination_tier="cold")
    with pytest.raises(MigrationError) as raised:
        execute_migration(mem, job)
    assert list(raised.value.status.keys_failed) == ["fields"]
    assert "ChecksumMismatchError" in raised.value.status.keys_failed["fields"]
    assert mem.catalog.current("fields").tier == "hot"
    assert _files(mem, "cold", "fields") == [], "the bad copy is removed"
    assert mem.catalog.pending_moves() == []
    tiers = {e.key: e.tier for e in mem.catalog.current_entries()}
    assert tiers == {"cube": "cold", "dem": "cold", "fields": "hot"}
    backend.fs.pipe(path, original)
    status = execute_migration(mem, job.id)
    assert status.state == "completed"
    assert {i.state for i in mem.catalog.migration_items(job.id)} == {"done"}
    _assert_unchanged(mem, before)
    assert _files(mem, "hot", "fields") == []


# -- a worker killed mid-copy -------------------------------------------------------------------


def _kill_when_copying(options: dict[str, Any], root: str, flag: str) -> None:
    """On a worker: once a file of the copy appears under ``root`` (S3), SIGKILL this process."""
    def watch() -> None:
        import s3fs

        fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            fs.invalidate_cache()
            found = [p for p in fs.find(root) if "/@v/" in p] if fs.exists(root) else []
            if found:
                with open(flag, "a") as f:
                    f.write(f"{os.getpid()}: {len(found)} file(s) copied\n")
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.01)

    threading.Thread(target=watch, daemon=True).start()


@pytest.mark.slow
def test_a_worker_killed_mid_copy_leaves_the_source_current_and_the_job_resumable(
    tmp_path: Path, s3_service: Any
) -> None:
    import rioxarray  # noqa: F401

    mem = mg.Memory(_config(tmp_path, s3_service))
    big = _cube(nt=12, ny=64, nx=96).chunk({"time": 1, "y": 8, "x": 12})
    mem.save(big, "cube", format="zarr")
    before = mem.open("cube").load()
    entry = mem.catalog.current("cube")
    files = len(mem.catalog.manifest(entry).files)
    assert files > 500, "enough chunks that the copy is still running when the worker dies"
    flag = tmp_path / "killed"
    cluster, client = start_cluster(tmp_path / "cluster", **{"distributed.scheduler.allowed-failures": 0})
    try:
        client.run(_kill_when_copying, dict(s3_service.options), mem.tiers.backend("cold").full_path("cube"),
                   str(flag))
        job = MigrationJob(source_tier="hot", destination_tier="cold")
        with pytest.raises(MigrationError) as raised:
            execute_migration(mem, job)
        assert flag.exists(), "a worker was killed once the copy had started"
        copied = int(flag.read_text().split(": ")[1].split()[0])
        assert 0 < copied < files, "killed in the middle of the copy"
        assert "KilledWorker" in raised.value.status.keys_failed["cube"]
        assert migration_status(mem, job.id).state == "failed"
        assert mem.catalog.current("cube").tier == "hot"
        assert mem.catalog.current("cube").version_id == entry.version_id
        xr.testing.assert_identical(mem.open("cube").load(), before)
        assert mem.catalog.pending_moves() == []
        assert _files(mem, "cold", "cube") == [], "the partial copy is removed"
        client.wait_for_workers(2, timeout=60)
        status = execute_migration(mem, job.id)
    finally:
        client.close()
        cluster.close()
    assert status.state == "completed"
    assert mem.catalog.current("cube").tier == "cold"
    assert _files(mem, "hot", "cube") == []
    xr.testing.assert_identical(mem.open("cube").load(), before)
    assert [i.state for i in mem.catalog.migration_items(job.id)] == ["done"]
    mem.verify("cube")
    assert mem.recover() == []
