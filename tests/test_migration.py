"""Migrations between tiers: selection, byte moves to S3 (moto), conversions to and from PostGIS,
the journal (resume, status, dry runs), checkpoints that follow, and a stopped object store."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from geopandas import GeoDataFrame
from geopandas.testing import assert_geodataframe_equal
from shapely.geometry import Point

import memories_geo as mg
from memories_geo.errors import (
    FormatError,
    KeyNotFoundError,
    OptionError,
    ReadOnlyError,
    TierUnavailableError,
)
from memories_geo.examples import sample_raster, sample_vector
from memories_geo.lifecycle import (
    MigrationError,
    MigrationJob,
    MigrationPlan,
    execute_migration,
    migration_jobs,
    migration_status,
    parse_duration,
    parse_size,
    plan_migration,
    select_keys,
)
from memories_geo.records import record_path


def _points(seed: int, n: int = 40) -> GeoDataFrame:
    rng = np.random.default_rng(seed)
    return GeoDataFrame(
        {"v": rng.normal(size=n), "name": [f"n{i}" for i in range(n)], "k": np.arange(n, dtype="int64")},
        geometry=[Point(x, y) for x, y in rng.uniform(0, 5, (n, 2))], crs="EPSG:4326",
    )


def _data(key: str) -> Any:
    seed = sum(map(ord, key))
    return sample_raster(seed=seed % 7) if key.startswith("r/") else _points(seed)


def _assert_same(back: Any, expected: Any) -> None:
    if isinstance(expected, xr.Dataset):
        xr.testing.assert_identical(back.load(), expected)
    else:
        assert_geodataframe_equal(back, expected)


def _paths(backend: Any) -> list[str]:
    return sorted(dict.fromkeys(backend.version_paths()))


@pytest.fixture
def s3mem(tmp_path: Path, s3_service: Any) -> mg.Memory:
    """hot on the local disk, warm on the moto S3 server."""
    return mg.Memory(mg.StorageConfig.from_dict({
        "home": str(tmp_path / "home"),
        "tiers": {"warm": {"url": f"{s3_service.url}/{uuid.uuid4().hex[:8]}/warm",
                           "storage_options": s3_service.options}},
    }))


@pytest.fixture
def mem(tmp_path: Path) -> mg.Memory:
    return mg.Memory(tmp_path / "home")


KEYS = ("r/a", "r/b", "v/a", "v/b")


# -- byte moves to S3 -------------------------------------------------------------------------


def test_hot_to_s3_moves_every_selected_key_verified(s3mem: mg.Memory) -> None:
    saved = {k: s3mem.save(_data(k), k, tier="hot") for k in KEYS}
    s3mem.save(_points(0), "other/c", tier="hot")
    hot = s3mem.tiers.backend("hot")
    job = MigrationJob(source_tier="hot", destination_tier="warm", selection_criteria={"key": ["r/*", "v/*"]})
    status = execute_migration(s3mem, job, max_workers=3)
    assert status.state == "completed"
    assert sorted(status.keys_done) == sorted(KEYS)
    assert status.progress_percentage == 100.0
    assert status.bytes_migrated == status.total_bytes == sum(e.size_bytes for e in saved.values())
    assert status.keys_failed == {}
    assert status.keys_pending == []
    for key, entry in saved.items():
        moved = s3mem.info(key)
        assert (moved.tier, moved.version, moved.version_id, moved.checksum) == (
            "warm", entry.version, entry.version_id, entry.checksum)
        assert moved.uri.startswith("s3://")
        assert not hot.exists(entry.path)
        assert not hot.exists(record_path(entry.path))
        _assert_same(s3mem.open(key), _data(key))
    assert s3mem.info("other/c").tier == "hot"
    s3mem.verify()
    assert sorted(s3mem.audit(operation="migrate").key) == sorted(KEYS)
    assert s3mem.recover() == []
    assert _paths(hot) == [s3mem.info("other/c").path]
    assert sorted(_paths(s3mem.tiers.backend("warm"))) == sorted(s3mem.info(k).path for k in KEYS)
    again = execute_migration(s3mem, job.id)
    assert again.keys_done == status.keys_done
    assert len(s3mem.audit(operation="migrate")) == len(KEYS)
    assert migration_status(s3mem, job.id).state == "completed"


def test_a_dry_run_plans_and_changes_nothing(mem: mg.Memory) -> None:
    for key in KEYS:
        mem.save(_data(key), key, tier="hot")
    before = mem.catalog.current_entries()
    job = MigrationJob(source_tier="hot", destination_tier="cold", selection_criteria={"kinds": "raster"})
    plan = execute_migration(mem, job, dry_run=True)
    assert isinstance(plan, MigrationPlan)
    assert [k.key for k in plan.keys] == ["r/a", "r/b"]
    assert plan.total_bytes == sum(mem.info(k).size_bytes for k in ("r/a", "r/b"))
    assert plan.estimated_seconds == pytest.approx(plan.total_bytes / plan.throughput)
    assert plan.measured_on == 0
    assert "assumed" in plan.basis
    text = repr(plan)
    assert "dry run" in text
    assert "2 move" in text
    assert "r/a" in text
    assert "estimated" in text
    html = plan._repr_html_()
    assert "MigrationPlan" in html
    assert "r/b" in html
    assert list(plan.to_frame().key) == ["r/a", "r/b"]
    assert mem.catalog.current_entries() == before
    assert mem.catalog.migration_jobs() == []
    execute_migration(mem, job)
    later = plan_migration(mem, MigrationJob(source_tier="hot", destination_tier="cold"))
    assert later.measured_on == 1
    assert "measured" in later.basis
    assert [k.key for k in later.keys] == ["v/a", "v/b"]
    assert execute_migration(mem, job, dry_run=True).keys == ()


def test_keeping_the_source_copies_into_a_new_version(s3mem: mg.Memory) -> None:
    source = s3mem.save(_data("v/a"), "v/a", tier="hot")
    job = MigrationJob(source_tier="hot", destination_tier="warm", delete_after_migration=False)
    status = execute_migration(s3mem, job)
    assert [k.how for k in status.keys] == ["copy"]
    versions = s3mem.versions("v/a")
    assert [(e.version, e.tier) for e in versions] == [(1, "hot"), (2, "warm")]
    assert versions[0].version_id == source.version_id
    _assert_same(s3mem.open("v/a"), _data("v/a"))
    _assert_same(s3mem.open("v/a", version=1), _data("v/a"))
    assert s3mem.recover() == []


# -- selection --------------------------------------------------------------------------------


def _age(mem: mg.Memory, key: str, *, created: timedelta, accessed: timedelta | None) -> None:
    """Make ``key``'s current version look saved (and last opened) that long ago."""
    now = datetime.now(UTC)

    def stamp(ago: timedelta) -> str:
        return (now - ago).strftime("%Y-%m-%dT%H:%M:%S.%f")

    with sqlite3.connect(mem.catalog.path) as con:
        con.execute(
            "UPDATE versions SET created_at = ?, last_accessed_at = ? WHERE key = ?",
            (stamp(created), None if accessed is None else stamp(accessed), key),
        )


@pytest.fixture
def aged(mem: mg.Memory) -> mg.Memory:
    """Keys of two kinds, sizes, tags and ages; one on another tier."""
    mem.save(sample_raster(seed=1), "sentinel2/a", tier="hot", tags=["s2", "l2a"])
    mem.save(sample_raster(seed=2).isel(lat=slice(0, 10)), "sentinel2/b", tier="hot", tags=["s2"])
    mem.save(_points(1, n=20), "roads/x", tier="hot", tags=["osm"])
    mem.save(_points(2, n=2000), "roads/y", tier="hot")
    mem.save(_points(3), "roads/z", tier="warm")
    _age(mem, "sentinel2/a", created=timedelta(days=100), accessed=timedelta(days=40))
    _age(mem, "sentinel2/b", created=timedelta(days=100), accessed=timedelta(days=2))
    _age(mem, "roads/x", created=timedelta(days=50), accessed=None)
    _age(mem, "roads/y", created=timedelta(days=5), accessed=None)
    return mem


def _selected(mem: mg.Memory, criteria: dict[str, Any]) -> list[str]:
    plan = plan_migration(mem, MigrationJob(source_tier="hot", destination_tier="cold",
                                            selection_criteria=criteria))
    return [k.key for k in plan.keys]


@pytest.mark.parametrize(("criteria", "expected"), [
    ({}, ["roads/x", "roads/y", "sentinel2/a", "sentinel2/b"]),
    ({"key": "sentinel2/*"}, ["sentinel2/a", "sentinel2/b"]),
    ({"key": ["roads/x", "sentinel2/?"]}, ["roads/x", "sentinel2/a", "sentinel2/b"]),
    ({"kinds": ["vector"]}, ["roads/x", "roads/y"]),
    ({"kinds": "raster"}, ["sentinel2/a", "sentinel2/b"]),
    ({"tags": ["s2", "l2a"]}, ["sentinel2/a"]),
    ({"tags": "osm"}, ["roads/x"]),
    ({"last_accessed_before": "30 days ago"}, ["roads/x", "sentinel2/a"]),
    ({"last_accessed_before": "1 week"}, ["roads/x", "sentinel2/a"]),
    ({"created_before": "60 days ago"}, ["sentinel2/a", "sentinel2/b"]),
    ({"created_before": timedelta(days=10)}, ["roads/x", "sentinel2/a", "sentinel2/b"]),
    ({"last_accessed_before": "2000-01-01"}, []),
    ({"kinds": "raster", "last_accessed_before": "30 days ago"}, ["sentinel2/a"]),
])
def test_each_selection_criterion(aged: mg.Memory, criteria: dict[str, Any], expected: list[str]) -> None:
    assert _selected(aged, criteria) == expected


def test_size_criteria(aged: mg.Memory) -> None:
    sizes = {e.key: e.size_bytes for e in aged.catalog.current_entries() if e.tier == "hot"}
    smallest, largest = min(sizes, key=sizes.__getitem__), max(sizes, key=sizes.__getitem__)
    assert _selected(aged, {"min_size": sizes[largest]}) == [largest]
    assert _selected(aged, {"max_size": sizes[smallest]}) == [smallest]
    middle = sorted(sizes.values())[1]
    assert _selected(aged, {"min_size": f"{middle / 1000:.3f} kB"}) == sorted(
        k for k, s in sizes.items() if s >= middle)
    assert _selected(aged, {"min_size": "1 TiB"}) == []


@pytest.mark.parametrize(("criteria", "message"), [
    ({"last_acessed_before": "30 days ago"}, "unknown selection criteria.*accepted: key"),
    ({"min_size": "100 XB"}, "min_size.*'100MB'"),
    ({"min_size": -1}, "negative"),
    ({"last_accessed_before": "thirty days ago"}, "30 days ago"),
    ({"created_before": "3 fortnights ago"}, "units: "),
    ({"kinds": ["rasters"]}, "accepted kinds: \\['raster', 'vector', 'timeseries', 'array'\\]"),
    ({"tags": [1, 2]}, "string or a list of strings"),
])
def test_bad_criteria_are_refused_naming_the_accepted_ones(criteria: dict[str, Any], message: str) -> None:
    with pytest.raises(OptionError, match=message):
        MigrationJob(source_tier="hot", destination_tier="warm", selection_criteria=criteria)


def test_bad_jobs_are_refused(mem: mg.Memory) -> None:
    with pytest.raises(OptionError, match="metadata_update must be True"):
        MigrationJob(source_tier="hot", destination_tier="warm", metadata_update=False)
    with pytest.raises(OptionError, match=r"pass format= \(or reencode=True\) to rewrite"):
        MigrationJob(source_tier="hot", destination_tier="hot")
    with pytest.raises(OptionError, match="validation must be True or False"):
        MigrationJob(source_tier="hot", destination_tier="warm", validation="yes")  # type: ignore[arg-type]
    with pytest.raises(TierUnavailableError, match="configured tiers"):
        execute_migration(mem, MigrationJob(source_tier="hot", destination_tier="tepid"))
    with pytest.raises(FormatError):
        execute_migration(mem, MigrationJob(source_tier="hot", destination_tier="warm", format="shapefile"))
    with pytest.raises(OptionError, match="max_workers"):
        execute_migration(mem, MigrationJob(source_tier="hot", destination_tier="warm"), max_workers=0)
    with pytest.raises(KeyNotFoundError, match="no migration job 'nope'"):
        migration_status(mem, "nope")
    job = MigrationJob(source_tier="hot", destination_tier="warm", id="nightly")
    execute_migration(mem, job)
    with pytest.raises(OptionError, match="first run as hot -> warm"):
        execute_migration(mem, MigrationJob(source_tier="hot", destination_tier="cold", id="nightly"))
    with pytest.raises(ReadOnlyError):
        execute_migration(mg.Memory(mem.config, read_only=True), MigrationJob(source_tier="hot",
                                                                              destination_tier="cold"))


def test_units() -> None:
    assert parse_size("100MB") == 100_000_000
    assert parse_size("1.5 GiB") == 1.5 * 1024**3
    assert parse_size("10kib") == 10240
    assert parse_size(" 7 ") == 7
    assert parse_duration("30 days ago") == timedelta(days=30)
    assert parse_duration("2 weeks") == timedelta(days=14)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("1 year") == timedelta(days=365)
    assert parse_duration("30 days idle") == timedelta(days=30)
    with pytest.raises(OptionError, match="units: B, kB"):
        parse_size("5 bits")


# -- checkpoints ------------------------------------------------------------------------------


def test_a_pinned_version_follows_its_move_and_restores(s3mem: mg.Memory) -> None:
    first = s3mem.save(_data("v/a"), "v/a", tier="hot")
    s3mem.checkpoints.save("before")
    execute_migration(s3mem, MigrationJob(source_tier="hot", destination_tier="warm"))
    s3mem.save(_points(99), "v/a", tier="hot", mode="w")
    s3mem.checkpoints.restore("before")
    restored = s3mem.info("v/a")
    assert (restored.version_id, restored.tier) == (first.version_id, "warm")
    _assert_same(s3mem.open("v/a"), _data("v/a"))
    s3mem.checkpoints.verify("before")
    assert s3mem.recover() == []


# -- conversions ------------------------------------------------------------------------------


@pytest.fixture
def pgmem(tmp_path: Path, postgres_dsn: str) -> Any:
    """hot on the local disk, warm on PostgreSQL (a schema of its own, dropped afterwards)."""
    import psycopg
    from psycopg import sql

    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield mg.Memory(mg.StorageConfig.from_dict({
        "home": str(tmp_path / "home"),
        "tiers": {"warm": {"url": postgres_dsn, "storage_options": {"schema": schema}}},
    }))
    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _views(mem: mg.Memory) -> list[str]:
    backend = mem.tiers.backend("warm")
    with backend.connection() as con:
        rows = con.execute("SELECT table_name FROM information_schema.views WHERE table_schema = %s",
                           (backend.schema,)).fetchall()
    return sorted(r[0] for r in rows)


def test_postgis_to_geoparquet_and_back_round_trip_exactly(pgmem: mg.Memory) -> None:
    gdf = _points(7, n=500)
    first = pgmem.save(gdf, "parcels", tier="warm")
    assert first.format == "postgis"
    assert _views(pgmem)
    pgmem.checkpoints.save("on-postgis")
    down = execute_migration(pgmem, MigrationJob(source_tier="warm", destination_tier="hot"))
    assert [k.how for k in down.keys] == ["convert postgis -> geoparquet"]
    entry = pgmem.info("parcels")
    assert (entry.tier, entry.format, entry.version) == ("hot", "geoparquet", 2)
    assert_geodataframe_equal(pgmem.open("parcels"), gdf)
    assert [e.version for e in pgmem.versions("parcels")] == [2]
    assert _views(pgmem) == []
    assert pgmem.recover() == []
    up = execute_migration(pgmem, MigrationJob(source_tier="hot", destination_tier="warm"))
    assert [k.how for k in up.keys] == ["convert geoparquet -> postgis"]
    assert pgmem.info("parcels").format == "postgis"
    assert_geodataframe_equal(pgmem.open("parcels"), gdf)
    assert len(_views(pgmem)) == 1
    pgmem.verify()
    pgmem.checkpoints.restore("on-postgis")
    assert pgmem.info("parcels").version_id == first.version_id
    assert_geodataframe_equal(pgmem.open("parcels"), gdf)
    assert pgmem.recover() == []


def test_a_conversion_that_does_not_read_back_equal_is_undone(mem: mg.Memory) -> None:
    """GeoJSON (RFC 7946) stores EPSG:4326, so a layer in another CRS does not read back identical."""
    gdf = sample_vector().to_crs("EPSG:3857")
    source = mem.save(gdf, "countries", tier="hot")
    job = MigrationJob(source_tier="hot", destination_tier="warm", format="geojson")
    with pytest.raises(MigrationError, match="does not read back equal") as raised:
        execute_migration(mem, job)
    status = raised.value.status
    assert status.state == "failed"
    assert list(status.keys_failed) == ["countries"]
    assert mem.info("countries").version_id == source.version_id
    assert [e.version for e in mem.versions("countries")] == [1]
    assert_geodataframe_equal(mem.open("countries"), gdf)
    assert mem.recover() == []
    assert migration_status(mem, job.id).state == "failed"
    lenient = MigrationJob(source_tier="hot", destination_tier="warm", format="geojson", validation=False)
    assert execute_migration(mem, lenient).keys_done == ["countries"]
    assert mem.info("countries").format == "geojson"


# -- the journal -------------------------------------------------------------------------------


def test_status_reprs_and_listing(mem: mg.Memory) -> None:
    for key in KEYS:
        mem.save(_data(key), key, tier="hot")
    job = MigrationJob(source_tier="hot", destination_tier="cold", id="weekly-cold")
    execute_migration(mem, job)
    status = migration_status(mem, "weekly-cold")
    assert status.job == job
    text = repr(status)
    assert "'weekly-cold': completed, 100%" in text
    assert "4 done" in text
    html = status._repr_html_()
    assert "MigrationStatus" in html
    assert "weekly-cold" in html
    assert "v/b" in html
    assert list(status.to_frame().state) == ["done"] * 4
    assert [s.id for s in migration_jobs(mem)] == ["weekly-cold"]


def _pretend_running(mem: mg.Memory, job_id: str, writer: str) -> None:
    with sqlite3.connect(mem.catalog.path) as con:
        con.execute("UPDATE migration_jobs SET state = 'running', writer = ? WHERE id = ?", (writer, job_id))
        con.execute("UPDATE migration_items SET state = 'copying' WHERE job_id = ?", (job_id,))


def test_a_job_run_elsewhere_is_refused_and_an_interrupted_one_resumes(mem: mg.Memory) -> None:
    import socket

    for key in ("v/a", "v/b"):
        mem.save(_data(key), key, tier="hot")
    entry = mem.info("v/a")
    job = MigrationJob(source_tier="hot", destination_tier="cold", id="j2")
    execute_migration(mem, job)
    _pretend_running(mem, "j2", f"{socket.gethostname()}:1")
    assert migration_status(mem, "j2").state == "running"
    with pytest.raises(MigrationError, match="being run by process"):
        execute_migration(mem, "j2")
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    _pretend_running(mem, "j2", f"{socket.gethostname()}:{finished.stdout.strip()}")
    interrupted = migration_status(mem, "j2")
    assert interrupted.state == "interrupted"
    assert sorted(interrupted.keys_pending) == ["v/a", "v/b"]
    resumed = execute_migration(mem, "j2")
    assert resumed.state == "completed"
    assert sorted(resumed.keys_done) == ["v/a", "v/b"]
    assert mem.info("v/a").version_id == entry.version_id
    assert mem.info("v/a").tier == "cold"
    assert mem.recover() == []


def test_keys_changed_meanwhile_are_skipped(mem: mg.Memory) -> None:
    for key in ("v/a", "v/b"):
        mem.save(_data(key), key, tier="hot")
    job = MigrationJob(source_tier="hot", destination_tier="cold", format="geojson", validation=False)
    planned = select_keys(mem.version_store, job)
    rows = [p.item_row(job.id, i) for i, p in enumerate(planned)]
    mem.catalog.create_migration(job.id, job.to_json(), rows)
    mem.delete("v/a")
    mem.save(_points(5), "v/b", tier="hot", mode="w")
    status = execute_migration(mem, job)
    assert status.state == "completed"
    assert status.keys_skipped == {"v/a": "deleted before it was migrated",
                                   "v/b": "a newer version than v1 was saved meanwhile"}
    assert status.progress_percentage == 100.0
    assert mem.info("v/b").format == "geoparquet"


# -- a stopped object store ---------------------------------------------------------------------


def test_a_migration_survives_a_stopped_object_store(tmp_path: Path) -> None:
    """Moto's state lives in this process, so a server restarted on the same port serves it again."""
    from moto.server import ThreadedMotoServer

    from memories_geo.testing.plugin import start_or_skip
    from memories_geo.testing.services import start_moto

    service = start_or_skip(lambda: start_moto(bucket=f"stop-{uuid.uuid4().hex[:8]}"))
    port = int(service.options["client_kwargs"]["endpoint_url"].rsplit(":", 1)[1])
    mem = mg.Memory(mg.StorageConfig.from_dict({
        "home": str(tmp_path / "home"),
        "tiers": {"warm": {"url": f"{service.url}/warm", "storage_options": service.options}},
    }))
    for key in KEYS:
        mem.save(_data(key), key, tier="hot")
    stopped = threading.Event()

    def stop_at_second_key(name: str, info: Any) -> None:
        if name == "migration.key" and info["state"] == "copying" and info["key"] == KEYS[1]:
            service.stop()
            stopped.set()

    unsubscribe = mg.events.subscribe(stop_at_second_key)
    job = MigrationJob(source_tier="hot", destination_tier="warm")
    try:
        with pytest.raises(MigrationError) as raised:
            execute_migration(mem, job, max_workers=1)
    finally:
        unsubscribe()
    assert stopped.is_set()
    status = raised.value.status
    assert status.keys_done == [KEYS[0]]
    assert sorted(status.keys_failed) == list(KEYS[1:])
    for key in KEYS[1:]:
        assert mem.info(key).tier == "hot"
        _assert_same(mem.open(key), _data(key))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        resumed = execute_migration(mem, job.id)
        assert resumed.state == "completed"
        assert sorted(resumed.keys_done) == sorted(KEYS)
        for key in KEYS:
            assert mem.info(key).tier == "warm"
            _assert_same(mem.open(key), _data(key))
        mem.verify()
        assert mem.recover() == []
    finally:
        server.stop()


# -- dask ---------------------------------------------------------------------------------------


def test_keys_fan_out_over_a_distributed_cluster(mem: mg.Memory) -> None:
    from distributed import Client, LocalCluster

    for key in KEYS:
        mem.save(_data(key), key, tier="hot")
    job = MigrationJob(source_tier="hot", destination_tier="cold")
    with pytest.raises(OptionError, match=r"active dask\.distributed client"):
        execute_migration(mem, job, distributed=True)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster):
        status = execute_migration(mem, job, distributed=True)
    assert status.state == "completed"
    assert sorted(status.keys_done) == sorted(KEYS)
    for key in KEYS:
        assert mem.info(key).tier == "cold"
        _assert_same(mem.open(key), _data(key))
    assert mem.recover() == []
