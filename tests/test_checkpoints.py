"""Checkpoints, persistence, recovery: save/list/diff/restore, backups, rebuilds, corruption."""

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from geopandas import GeoDataFrame
from geopandas.testing import assert_geodataframe_equal
from shapely.geometry import Point

import memories_geo as mg
from memories_geo.examples import sample_raster


def _gdf(n: int, seed: int = 0) -> GeoDataFrame:
    rng = np.random.default_rng(seed)
    return GeoDataFrame(
        {"value": rng.normal(size=n), "label": [f"p{i}" for i in range(n)]},
        geometry=[Point(x, y) for x, y in rng.uniform(0, 10, (n, 2))],
        crs="EPSG:4326",
    )


@pytest.fixture
def mem(tmp_path):
    return mg.Memory(tmp_path / "home")


@pytest.fixture
def ds():
    return sample_raster()


def _files(mem, key):
    entry = mem.info(key)
    root = mem.tiers.backend(entry.tier).full_path(entry.path)
    return [p for p in sorted(_walk(root))]


def _walk(root):
    if os.path.isfile(root):
        yield root
        return
    for dirpath, _, names in os.walk(root):
        for name in names:
            yield os.path.join(dirpath, name)


def test_save_list_diff_restore(mem, ds):
    a1, b1 = _gdf(10, 1), _gdf(5, 2)
    mem.save(a1, "a")
    mem.save(b1, "b")
    cp1 = mem.checkpoints.save("daily", message="first")
    assert (cp1.name, cp1.keys, cp1.kind, cp1.message) == ("daily", 2, "manual", "first")
    assert cp1.bytes == mem.info("a").size_bytes + mem.info("b").size_bytes
    a2 = _gdf(12, 3)
    mem.save(a2, "a", mode="w")
    mem.delete("b")
    mem.save(ds, "c")
    cp2 = mem.checkpoints.save("daily")
    assert [cp.id for cp in mem.checkpoints.list()] == [cp2.id, cp1.id]
    assert mem.checkpoints.get("daily").id == cp2.id
    assert mem.checkpoints.get("latest").id == cp2.id
    diff = mem.checkpoints.diff(cp1.id, cp2.id)
    assert set(diff.added) == {"c"}
    assert set(diff.removed) == {"b"}
    assert set(diff.changed) == {"a"}
    assert not mem.checkpoints.diff(cp2.id, "current")

    restored = mem.checkpoints.restore(cp1.id)
    assert restored.id == cp1.id
    assert sorted(mem.ls().key) == ["a", "b"]
    assert_geodataframe_equal(mem.open("a"), a1)
    assert_geodataframe_equal(mem.open("b"), b1)
    safety = [cp for cp in mem.checkpoints.list() if cp.kind == "safety"]
    assert len(safety) == 1
    assert safety[0].name == "before-restore-daily"

    mem.checkpoints.restore(safety[0].id)
    assert sorted(mem.ls().key) == ["a", "c"]
    assert_geodataframe_equal(mem.open("a"), a2)
    xr.testing.assert_identical(mem.open("c"), ds)


def test_pinned_versions_survive_delete_until_unpinned(mem):
    a = _gdf(10)
    entry = mem.save(a, "a")
    backend = mem.tiers.backend("hot")
    cp = mem.checkpoints.save("keep")
    mem.delete("a")
    assert backend.exists(entry.path), "a checkpoint pins the version"
    with pytest.raises(mg.KeyNotFoundError):
        mem.open("a")
    mem.checkpoints.restore(cp.id)
    assert_geodataframe_equal(mem.open("a"), a)
    mem.delete("a")
    for checkpoint in mem.checkpoints.list():
        mem.checkpoints.delete(checkpoint.id)
    assert not backend.exists(entry.path), "unpinned retired versions are garbage-collected"
    assert mem.catalog.retired_unpinned() == []


def test_deleting_an_old_pinned_version_keeps_it_restorable(mem):
    v1 = _gdf(4, 1)
    mem.save(v1, "a")
    cp = mem.checkpoints.save("v1")
    mem.save(_gdf(6, 2), "a", mode="w")
    mem.delete("a", version=1)
    assert [e.version for e in mem.versions("a")] == [2]
    mem.checkpoints.restore(cp.id)
    assert_geodataframe_equal(mem.open("a"), v1)


def test_checkpoint_manifest_is_written_next_to_the_data(mem):
    mem.save(_gdf(3), "a")
    cp = mem.checkpoints.save("m")
    doc = mem.checkpoints.manifest(cp.id)
    assert doc["format"] == "memories_geo.checkpoint/1"
    assert doc["keys"] == {"a": mem.info("a").version_id}
    assert doc["versions"][0]["checksum"] == mem.info("a").checksum
    assert json.loads(doc["versions"][0]["manifest"])["files"]
    slim = mem.checkpoints.save("slim", include_metadata=False)
    slim_doc = mem.checkpoints.manifest(slim.id)
    assert "manifest" not in slim_doc["versions"][0]
    assert slim_doc["checksum"] == doc["checksum"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_corruption_is_named_and_restore_refuses(mem, ds, damage):
    mem.save(ds, "era5")
    mem.save(_gdf(20), "pts")
    cp = mem.checkpoints.save("good")
    mem.save(_gdf(5, 9), "pts", mode="w")
    target = max(_files(mem, "era5"), key=os.path.getsize)
    if damage == "flip":
        data = bytearray(Path(target).read_bytes())
        data[len(data) // 3] ^= 0x5A
        Path(target).write_bytes(bytes(data))
    elif damage == "truncate":
        with open(target, "r+b") as f:
            f.truncate(os.path.getsize(target) // 2)
    else:
        os.remove(target)
    relative = os.path.relpath(target, mem.tiers.backend("hot").full_path(mem.info("era5").path))
    with pytest.raises(mg.ChecksumMismatchError) as info:
        mem.checkpoints.verify(cp.id)
    assert any(relative in p and "era5" in p for p in info.value.problems)
    before = mem.catalog.current_entries()
    with pytest.raises(mg.ChecksumMismatchError, match="nothing was restored"):
        mem.checkpoints.restore(cp.id, validate=True)
    assert mem.catalog.current_entries() == before
    assert not [cp for cp in mem.checkpoints.list() if cp.kind == "safety"]


def test_quick_validation_skips_unchanged_versions_but_catches_rewrites(mem, ds):
    mem.save(ds, "era5")
    cp = mem.checkpoints.save("q")
    mem.checkpoints.verify(cp.id, validate=True)
    target = max(_files(mem, "era5"), key=os.path.getsize)
    data = bytearray(Path(target).read_bytes())
    data[10] ^= 1
    time.sleep(0.01)
    Path(target).write_bytes(bytes(data))
    with pytest.raises(mg.ChecksumMismatchError):
        mem.checkpoints.verify(cp.id, validate=True)


def test_recover_latest_falls_back_to_the_newest_checkpoint_that_verifies(mem):
    v1, v2 = _gdf(8, 1), _gdf(9, 2)
    mem.save(v1, "a")
    good = mem.checkpoints.save("n1")
    mem.save(v2, "a", mode="w")
    bad = mem.checkpoints.save("n2")
    path = mem.tiers.backend("hot").full_path(mem.info("a").path)
    with open(path, "r+b") as f:
        f.truncate(100)
    recovery = mg.RecoveryManager(storage=mem, max_attempts=3, timeout=30)
    assert [cp.id for cp in recovery.list_checkpoints()] == [bad.id, good.id]
    info = recovery.recover_latest()
    assert info.id == good.id
    assert_geodataframe_equal(mem.open("a"), v1)


def test_recover_latest_reports_when_nothing_verifies(mem):
    mem.save(_gdf(8), "a")
    mem.checkpoints.save("only")
    os.remove(mem.tiers.backend("hot").full_path(mem.info("a").path))
    with pytest.raises(mg.ChecksumMismatchError, match="no checkpoint") as info:
        mg.RecoveryManager(storage=mem).recover_latest()
    assert any("missing" in p for p in info.value.problems)
    with pytest.raises(mg.CheckpointNotFoundError):
        mg.RecoveryManager(storage=mg.Memory(mem.catalog.path.parent / "empty")).recover_latest()


def test_backup_restores_when_the_primary_is_gone(tmp_path, ds):
    home, backup = tmp_path / "home", tmp_path / "backup"
    mem = mg.Memory(home)
    a = _gdf(30)
    mem.save(a, "a", tier="warm")
    mem.save(ds, "era5", tier="cold")
    persistence = mg.MemoryPersistence(primary_storage=mem, backup_storage=backup)
    cp = persistence.checkpoints.save("nightly")
    assert cp.backed_up
    again = persistence.checkpoints.save("nightly-2")
    assert again.backed_up
    shutil.rmtree(home)
    recovery = mg.RecoveryManager(storage=home, backup_storage=backup)
    assert [c.id for c in recovery.list_checkpoints()] == [again.id, cp.id]
    report = recovery.rebuild_catalog()
    assert report["keys"] == 2
    assert report["unverifiable"] == []
    restored = mg.Memory(home)
    assert_geodataframe_equal(restored.open("a"), a)
    xr.testing.assert_identical(restored.open("era5"), ds)
    restored.verify()
    assert {c.id for c in restored.checkpoints.list()} >= {cp.id, again.id}


def test_restore_repairs_a_corrupt_version_from_the_backup(tmp_path):
    mem = mg.Memory(tmp_path / "home")
    a = _gdf(30)
    mem.save(a, "a")
    persistence = mg.MemoryPersistence(mem, backup_storage=tmp_path / "backup")
    cp = persistence.checkpoints.save("nightly")
    path = mem.tiers.backend("hot").full_path(mem.info("a").path)
    with open(path, "r+b") as f:
        f.truncate(50)
    with pytest.raises(mg.ChecksumMismatchError):
        mem.verify("a")
    persistence.checkpoints.restore(cp.id, validate=True)
    mem.verify("a")
    assert_geodataframe_equal(mem.open("a"), a)


def test_rebuild_a_corrupt_catalog_from_version_records(tmp_path, ds):
    home = tmp_path / "home"
    mem = mg.Memory(home)
    a1 = _gdf(10, 1)
    mem.save(a1, "a")
    mem.checkpoints.save("early")
    a2 = _gdf(11, 2)
    mem.save(a2, "a", mode="w")
    mem.save(ds, "era5", tier="warm")  # after the last checkpoint
    catalog = mem.catalog.path
    for suffix in ("-wal", "-shm"):
        if os.path.exists(str(catalog) + suffix):
            os.remove(str(catalog) + suffix)
    catalog.write_bytes(b"this is not a database" * 100)
    with pytest.raises(mg.CatalogCorruptError, match="rebuild_catalog"):
        mg.Memory(home)
    report = mg.RecoveryManager(storage=home).rebuild_catalog()
    assert report["moved_aside"]
    assert os.path.exists(report["moved_aside"])
    assert report["keys"] == 2
    rebuilt = mg.Memory(home)
    assert_geodataframe_equal(rebuilt.open("a"), a2)
    assert_geodataframe_equal(rebuilt.open("a", version=1), a1)
    xr.testing.assert_identical(rebuilt.open("era5"), ds)
    assert [cp.name for cp in rebuilt.checkpoints.list()] == ["early"]
    rebuilt.checkpoints.restore("early")
    assert_geodataframe_equal(rebuilt.open("a"), a1)


def test_healthy_catalog_is_left_alone(mem):
    mem.save(_gdf(3), "a")
    report = mg.RecoveryManager(storage=mem).rebuild_catalog()
    assert report["moved_aside"] is None
    assert list(mem.ls().key) == ["a"]


def test_auto_persistence_rotates_and_survives_failures(mem):
    auto = mg.AutoPersistence(interval="50ms", storage=mem, backup_count=2)
    first = auto.run_once()
    assert first.kind == "auto"
    assert auto.run_once().id == first.id, "nothing changed: no new checkpoint"
    for i in range(4):
        mem.save(_gdf(3, i), f"k{i}")
        auto.run_once()
    autos = [cp for cp in mem.checkpoints.list() if cp.kind == "auto"]
    assert len(autos) == 2
    assert autos[0].keys == 4

    store = mem.checkpoints.store
    blocker = store.full_path("@checkpoints")
    shutil.rmtree(blocker)
    Path(blocker).write_text("not a directory")
    mem.save(_gdf(3, 99), "k-fail")
    with auto:
        deadline = time.monotonic() + 10
        while auto.failures < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert auto.is_running
        assert auto.failures >= 2
        os.remove(blocker)
        runs = auto.runs
        while (auto.runs < runs + 2) and time.monotonic() < deadline:
            time.sleep(0.02)
    assert not auto.is_running
    assert auto.last_checkpoint.keys == 5
    metrics = mg.PersistenceMonitor(mem).get_metrics()
    assert metrics.failures >= 2
    attempts = len(mem.catalog.audit_rows(operation="checkpoint.save"))
    assert metrics.success_rate == pytest.approx(100.0 * (attempts - metrics.failures) / attempts)
    assert 0 < metrics.success_rate < 100
    assert metrics.keys == 5
    assert metrics.last_backup_time is None
    assert metrics.usage_gb == metrics.usage_bytes / 1024**3 > 0
    assert metrics["keys"] == metrics.keys


def test_interval_parsing():
    from memories_geo.checkpoints import parse_interval

    assert parse_interval("1h") == 3600
    assert parse_interval("30s") == 30
    assert parse_interval("5m") == 300
    assert parse_interval(2.5) == 2.5
    for bad in ("soon", "-1s", 0):
        with pytest.raises(ValueError, match="interval"):
            parse_interval(bad)


def test_unknown_checkpoint(mem):
    with pytest.raises(mg.CheckpointNotFoundError, match="no checkpoints yet"):
        mem.checkpoints.restore("nope")
    mem.checkpoints.save("x")
    with pytest.raises(mg.CheckpointNotFoundError, match=r"names: \['x'\]"):
        mem.checkpoints.get("nope")


def test_checkpoint_list_reprs(mem):
    mem.save(_gdf(3), "a")
    mem.checkpoints.save("r")
    listing = mem.checkpoints.list()
    assert "<table>" in listing._repr_html_()
    assert list(listing.to_frame().name) == ["r"]


def test_cli_checkpoint_commands(tmp_path, capsys):
    from memories_geo.cli import main

    home = str(tmp_path / "home")
    mem = mg.Memory(home)
    mem.save(_gdf(3), "a")
    assert main(["--config", home, "checkpoint", "save", "c1", "--backup", str(tmp_path / "b")]) == 0
    assert "backed up" in capsys.readouterr().out
    mem.save(_gdf(4, 1), "a", mode="w")
    assert main(["--config", home, "checkpoint", "list"]) == 0
    assert "c1" in capsys.readouterr().out
    assert main(["--config", home, "checkpoint", "diff", "c1"]) == 0
    assert re.search(r"^a\s+changed\s+v1 \(.*\)\s+v2 \(", capsys.readouterr().out, re.M)
    assert main(["--config", home, "checkpoint", "verify", "c1", "--full"]) == 0
    assert main(["--config", home, "checkpoint", "restore", "c1", "--yes"]) == 0
    assert mem.info("a").version == 1
    assert main(["--config", home, "recover", "--rebuild-catalog", "--yes"]) == 0
    assert "catalog rebuilt" in capsys.readouterr().out
    assert main(["--config", home, "checkpoint", "restore", "nope", "--yes"]) == 1


@pytest.mark.postgres
def test_postgis_tables_are_checkpointed_backed_up_and_repaired(tmp_path, postgres_dsn):
    import uuid

    import psycopg
    from psycopg import sql

    schema = f"cp_{uuid.uuid4().hex[:10]}"
    config = mg.StorageConfig.from_dict({
        "home": str(tmp_path / "home"),
        "tiers": {"warm": {"url": postgres_dsn, "storage_options": {"schema": schema}}},
    })
    mem = mg.Memory(config)
    layer = _gdf(200, 7)
    entry = mem.save(layer, "fields", tier="warm")
    assert entry.format == "postgis"
    persistence = mg.MemoryPersistence(mem, backup_storage=tmp_path / "backup")
    cp = persistence.checkpoints.save("nightly")
    assert cp.backed_up
    assert any(p.name.endswith(".table.parquet") for p in (tmp_path / "backup").rglob("*"))
    backend = mem.tiers.backend("warm")
    table = backend.table_for(entry.path)
    with backend.connection() as con:
        con.execute(sql.SQL("DELETE FROM {} WHERE ctid IN (SELECT ctid FROM {} LIMIT 5)").format(
            backend.identifier(table), backend.identifier(table)))
    with pytest.raises(mg.ChecksumMismatchError):
        mem.verify("fields")
    persistence.checkpoints.restore(cp.id, validate=True)
    mem.verify("fields")
    assert_geodataframe_equal(mem.open("fields"), layer)
    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_time_series_tables_are_backed_up_as_parquet_and_restored(tmp_path, postgres_dsn):
    import uuid
    import warnings

    import pandas as pd
    import psycopg
    from pandas.testing import assert_frame_equal
    from psycopg import sql

    schema = f"cp_{uuid.uuid4().hex[:10]}"
    mem = mg.Memory(mg.StorageConfig.from_dict({
        "home": str(tmp_path / "home"),
        "tiers": {"warm": {"url": postgres_dsn, "storage_options": {"schema": schema}}},
    }))
    times = pd.date_range("2024-01-01", periods=96, freq="h", tz="UTC")
    obs = pd.DataFrame({"time": times.repeat(3), "station": ["a", "b", "c"] * len(times),
                        "value": np.arange(len(times) * 3, dtype="float64")})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        entry = mem.save(obs, "stations", tier="warm")
        mem.save(obs.iloc[:5].assign(time=obs.time.iloc[:5] + pd.Timedelta(days=30)), "stations", mode="a")
    assert (entry.format, entry.kind) == ("timescaledb", "timeseries")
    persistence = mg.MemoryPersistence(mem, backup_storage=tmp_path / "backup")
    cp = persistence.checkpoints.save("nightly")
    assert cp.backed_up
    assert any(p.name.endswith(".table.json") for p in (tmp_path / "backup").rglob("*"))
    expected = mem.open("stations")
    current = mem.info("stations")
    backend = mem.tiers.backend("warm")
    segment = current.object_info["tables"][0]
    with backend.connection() as con:
        con.execute(sql.SQL("UPDATE {} SET value = -1 WHERE ctid IN (SELECT ctid FROM {} LIMIT 2)").format(
            backend.identifier(segment), backend.identifier(segment)))
    with pytest.raises(mg.ChecksumMismatchError):
        mem.verify("stations")
    persistence.checkpoints.restore(cp.id, validate=True)
    mem.verify("stations")
    assert_frame_equal(mem.open("stations"), expected)
    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
