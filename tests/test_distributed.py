"""Saves and checks on real dask clusters: worker processes write, the client commits.

The clusters run worker *processes* (``LocalCluster(processes=True)``) whose home and
working directory differ from the client's, as on a second machine: the tier is S3 (a
moto server every process reaches), the catalog a SQLite file only the client opens.
An audit hook installed on the workers records every SQLite database they open.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import memories_geo as mg

distributed = pytest.importorskip("distributed")
dask_geopandas = pytest.importorskip("dask_geopandas")

import dask  # noqa: E402
import dask.array as dsa  # noqa: E402

# The tasks defined here are shipped to the worker processes by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

from cluster_support import sqlite_opened, start_cluster  # noqa: E402  # isort: skip


@pytest.fixture(scope="module")
def cluster_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("second-machine")


@pytest.fixture(scope="module")
def client(cluster_root: Path) -> Any:
    cluster, client = start_cluster(cluster_root)
    yield client
    client.close()
    cluster.close()


@pytest.fixture
def mem(tmp_path: Path, s3_service: Any) -> mg.Memory:
    prefix = uuid.uuid4().hex[:8]
    config = mg.StorageConfig.from_dict({
        "home": str(tmp_path / "client-home"),
        "default_tier": "warm",
        "tiers": {"warm": {"url": f"{s3_service.url}/{prefix}/warm", "storage_options": s3_service.options}},
    })
    return mg.Memory(config)


def _s3(s3_service: Any) -> Any:
    import s3fs

    return s3fs.S3FileSystem(**s3_service.options, skip_instance_cache=True)


def _stored(mem: mg.Memory, s3_service: Any, key: str) -> list[str]:
    root = mem.tiers.backend("warm").full_path(key)
    fs = _s3(s3_service)
    return sorted(fs.find(root)) if fs.exists(root) else []


def _cube(nt: int = 4, ny: int = 32, nx: int = 48) -> xr.Dataset:
    rng = np.random.default_rng(3)
    data = rng.normal(280, 5, (nt, ny, nx)).astype("float32")
    ds = xr.Dataset(
        {"t2m": (("time", "y", "x"), data)},
        coords={"time": pd.date_range("2024-01-01", periods=nt), "y": 50.0 - np.arange(ny) * 0.25,
                "x": np.arange(nx) * 0.25},
        attrs={"title": "a cube"},
    ).rio.write_crs("EPSG:4326")
    return ds.chunk({"time": 1, "y": 16, "x": 24})


def _ran(stream: Any, prefix: str) -> list[str]:
    """Workers (addresses) that ran each task whose key starts with ``prefix``."""
    return [t["worker"] for t in stream.data if str(t["key"]).strip("('").startswith(prefix)]


# -- the workers are another machine ------------------------------------------------------------


def test_workers_have_their_own_home(client: Any, cluster_root: Path) -> None:
    homes = set(client.run(lambda: os.environ["HOME"]).values())
    assert homes == {str(cluster_root / "worker-home")}
    assert os.environ.get("HOME") not in homes
    assert all(str(cluster_root) in d for d in client.run(
        lambda dask_worker: str(dask_worker.local_directory)).values())


# -- saves: the workers write and report digests, the client commits ------------------------------


def test_zarr_dataset_saved_by_worker_processes(client: Any, mem: mg.Memory, cluster_root: Path) -> None:
    import rioxarray  # noqa: F401

    ds = _cube()
    with distributed.get_task_stream(client) as stream:
        entry = mem.save(ds, "era5/t2m", format="zarr")
    assert (entry.key, entry.version, entry.format) == ("era5/t2m", 1, "zarr")
    assert len(_ran(stream, "digest-files")) == 2, "one share per worker thread, hashed on the workers"
    xr.testing.assert_identical(mem.open("era5/t2m").compute(), ds.compute())
    mem.verify("era5/t2m")
    assert entry.size_bytes == sum(d.size for d in mem.version_store.catalog.manifest(entry).files.values())
    catalog = str(mem.config.catalog)
    assert [p for p in sqlite_opened(cluster_root) if catalog in p or "catalog" in p] == []
    assert not (cluster_root / "worker-home" / ".memories").exists()


def test_compute_false_commits_on_the_client(client: Any, mem: mg.Memory) -> None:
    import rioxarray  # noqa: F401

    ds = _cube(nt=2)
    pending = mem.save(ds, "lazy", format="zarr", compute=False)
    assert "PendingSave('lazy'" in repr(pending)
    with pytest.raises(mg.KeyNotFoundError):
        mem.open("lazy")
    entry = pending.compute()
    assert entry.version == 1
    xr.testing.assert_identical(mem.open("lazy").compute(), ds.compute())
    assert pending.compute() is entry, "computed once: the same entry, nothing rewritten"
    persisted = mem.save(ds + 1, "lazy", format="zarr", mode="w", compute=False).persist()
    second = persisted.compute()
    assert second.version == 2
    (third,) = dask.compute(mem.save(ds, "lazy", format="zarr", mode="w", compute=False), scheduler="threads")
    assert third.version == 3
    assert mem.version_store.catalog.staged_versions() == []


def test_a_commit_as_a_worker_task_is_refused(client: Any, mem: mg.Memory) -> None:
    import rioxarray  # noqa: F401

    ds = _cube(nt=1)
    pending = mem.save(ds, "refused", format="zarr", compute=False)
    with pytest.raises(mg.MemoriesError, match=r"pending.compute\(\)"):
        client.compute(pending).result()
    with pytest.raises(mg.MemoriesError, match=r"nothing was committed"):
        dask.compute(pending)
    with pytest.raises(mg.KeyNotFoundError):
        mem.open("refused")
    assert pending.compute().version == 1
    xr.testing.assert_identical(mem.open("refused").compute(), ds.compute())


def test_a_dropped_pending_save_is_recovered(client: Any, mem: mg.Memory, s3_service: Any) -> None:
    import rioxarray  # noqa: F401

    pending = mem.save(_cube(nt=1), "dropped", format="zarr", compute=False)
    assert _stored(mem, s3_service, "dropped"), "the metadata is written at once"
    assert mem.recover() == [], "a pending save still held is left alone"
    del pending
    gc.collect()
    removed = mem.recover()
    assert len(removed) == 1
    assert "dropped" in removed[0]
    assert mem.version_store.catalog.staged_versions() == []
    assert _stored(mem, s3_service, "dropped") == []


def test_cog_from_a_dask_array_is_streamed_on_a_worker(client: Any, mem: mg.Memory, s3_service: Any) -> None:
    import rioxarray  # noqa: F401

    rng = np.random.default_rng(5)
    da = xr.DataArray(
        rng.integers(0, 3000, (300, 400)).astype("int16"), dims=("y", "x"), name="elevation",
        coords={"y": 45.0 - np.arange(300) * 0.001, "x": 6.0 + np.arange(400) * 0.001},
    ).rio.write_crs("EPSG:4326").chunk({"y": 128, "x": 128})
    with distributed.get_task_stream(client) as stream:
        entry = mem.save(da, "dem", format="cog")
    assert len(_ran(stream, "_stream_and_publish")) == 1
    xr.testing.assert_identical(mem.open("dem").compute(), da.compute())
    mem.verify("dem")
    assert [p for p in _stored(mem, s3_service, "dem") if p.endswith(".tif")] == [
        mem.tiers.backend("warm").full_path(entry.path)]


def test_dask_geopandas_frame_is_written_per_partition(client: Any, mem: mg.Memory) -> None:
    import geopandas as gpd
    from geopandas.testing import assert_geodataframe_equal

    rng = np.random.default_rng(7)
    n = 300
    gdf = gpd.GeoDataFrame(
        {"v": rng.normal(size=n), "when": pd.date_range("2024-01-01", periods=n, freq="h")},
        geometry=gpd.points_from_xy(rng.uniform(0, 10, n), rng.uniform(40, 50, n)), crs="EPSG:4326",
    )
    frame = dask_geopandas.from_geopandas(gdf, npartitions=4)
    with distributed.get_task_stream(client) as stream:
        entry = mem.save(frame, "fields")
    assert entry.format == "geoparquet"
    assert len(_ran(stream, "_write_part")) == 4, "one task per partition"
    expected = frame.compute()
    assert_geodataframe_equal(mem.open("fields"), expected)
    assert sorted(mem.version_store.catalog.manifest(entry).files) == [
        f"part.0000{i}.parquet" for i in range(4)]
    assert entry.bbox == pytest.approx(tuple(gdf.total_bounds))
    assert (pd.Timestamp(entry.time_start), pd.Timestamp(entry.time_end)) == (gdf.when.min(), gdf.when.max())
    box = (2.0, 42.0, 4.0, 44.0)
    # a filtered read numbers a RangeIndex layer's rows from 0, as geopandas.read_parquet does
    assert_geodataframe_equal(mem.open("fields", bbox=box),
                              expected.cx[2.0:4.0, 42.0:44.0].reset_index(drop=True))
    mem.verify("fields")


def test_a_local_tier_shared_by_the_workers(client: Any, tmp_path: Path) -> None:
    import rioxarray  # noqa: F401

    mem = mg.Memory(tmp_path / "local")
    ds = _cube(nt=2)
    entry = mem.save(ds, "cube", format="zarr", tier="hot")
    xr.testing.assert_identical(mem.open("cube").compute(), ds.compute())
    with distributed.get_task_stream(client) as stream:
        mem.verify("cube")
    assert _ran(stream, "verify-manifest-stat") == [], "a local directory is verified on the client"
    assert entry.size_bytes > 0


# -- fan-out --------------------------------------------------------------------------------------------


def test_verify_rehashes_on_the_workers_and_finds_a_damaged_chunk(
    client: Any, mem: mg.Memory, s3_service: Any
) -> None:
    import rioxarray  # noqa: F401

    mem.save(_cube(nt=2), "cube", format="zarr")
    mem.save(_cube(nt=1), "other", format="zarr")
    with distributed.get_task_stream(client) as stream:
        mem.verify()
    assert len(_ran(stream, "verify-manifest-stat")) == 2, "one task per version"
    chunk = next(p for p in _stored(mem, s3_service, "cube") if "/t2m/c/1/" in p)
    fs = _s3(s3_service)
    fs.pipe(chunk, fs.cat(chunk)[:-1] + b"\x00")
    with distributed.get_task_stream(client) as stream, pytest.raises(mg.ChecksumMismatchError) as raised:
        mem.verify()
    assert len(_ran(stream, "verify-manifest-stat")) == 2
    assert [p.split(": ", 1)[0] for p in raised.value.problems] == ["cube v1"]
    assert "t2m/c/1/" in raised.value.problems[0]
    assert "checksum changed" in raised.value.problems[0]


def test_checkpoint_backup_copies_on_the_workers(client: Any, mem: mg.Memory, s3_service: Any) -> None:
    import rioxarray  # noqa: F401

    mem.save(_cube(nt=2), "cube", format="zarr")
    mem.save(_cube(nt=1).compute(), "small", format="zarr")
    backup = mem.tiers.backend("warm").full_path("").rstrip("/").rsplit("/", 1)[0] + "/backup"
    persistence = mg.MemoryPersistence(mem, backup_storage=f"s3://{backup}",
                                       backup_storage_options=s3_service.options)
    with distributed.get_task_stream(client) as stream:
        info = persistence.checkpoints.save("nightly")
    assert info.backed_up
    assert len(_ran(stream, "copy-checked")) == 2, "one task per version"
    fs = _s3(s3_service)
    for key in ("cube", "small"):
        entry = mem.version_store.catalog.current(key)
        copied = fs.find(f"{backup}/warm/{entry.path}")
        assert len(copied) == len(mem.version_store.catalog.manifest(entry).files)
    mem.version_store.catalog.current("cube")


# -- a worker killed mid-save ------------------------------------------------------------------------


def _kill_when_a_chunk_is_stored(block: np.ndarray, options: dict[str, Any], root: str, flag: str,
                                 block_info: Any = None) -> np.ndarray:
    """The last chunk's task: wait until a chunk of the new version is on S3, then kill its own worker."""
    if block_info[0]["chunk-location"] != (3, 1, 1):
        return block
    import s3fs

    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        fs.invalidate_cache()
        written = [p for p in fs.find(root) if "/t2m/c/" in p and "@v/" in p] if fs.exists(root) else []
        if len({p.split("/@v/")[1].split("/")[0] for p in written}) == 2:
            Path(flag).write_text("\n".join(written))
            break
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGKILL)
    return block


@pytest.mark.slow
def test_a_worker_killed_mid_save_leaves_the_previous_version(
    tmp_path: Path, mem: mg.Memory, s3_service: Any
) -> None:
    import rioxarray  # noqa: F401

    first = _cube().compute()
    mem.save(first, "cube", format="zarr")
    root = mem.tiers.backend("warm").full_path("cube")
    ds = _cube()
    flag = tmp_path / "killed-after"
    ds["t2m"] = ds.t2m.copy(data=dsa.map_blocks(
        _kill_when_a_chunk_is_stored, ds.t2m.data, dict(s3_service.options), root, str(flag),
        dtype="float32"))
    cluster, client = start_cluster(tmp_path, **{"distributed.scheduler.allowed-failures": 0})
    try:
        with pytest.raises(mg.MemoriesError) as raised:
            mem.save(ds, "cube", format="zarr", mode="w")
        assert "KilledWorker" in str(raised.value)
        client.wait_for_workers(2, timeout=60)
    finally:
        client.close()
        cluster.close()
    assert flag.exists(), "the worker was killed after chunks of the new version reached S3"
    assert mem.version_store.catalog.current("cube").version == 1
    xr.testing.assert_identical(mem.open("cube").compute(), first)
    mem.recover()
    assert mem.version_store.catalog.staged_versions() == []
    current = mem.version_store.catalog.current("cube")
    stored = _stored(mem, s3_service, "cube")
    version_root = mem.tiers.backend("warm").full_path(current.path)
    assert stored
    assert [p for p in stored if not p.startswith(version_root)] == []
    mem.verify("cube")
