"""The PostgreSQL catalog against a real server: the SQLite catalog's tests, parity, concurrency.

The generic tests of ``tests/test_catalog.py`` are imported and run here against a
:class:`PostgresCatalog` (the module's ``catalog`` fixture overrides theirs); the
side tables (audit, migrations, moves, restores, operations) run on both catalogs
from one parametrized fixture; a Memory round trip and 8 processes x 25 saves use a
PostgreSQL catalog with a shared local tier.
"""

from __future__ import annotations

import inspect
import multiprocessing
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import xarray as xr
from geopandas.testing import assert_geodataframe_equal
from shapely.geometry import Point

import memories_geo as mg
from memories_geo.catalog import PostgresCatalog, SQLiteCatalog, open_catalog
from memories_geo.catalog.model import CheckpointRow, utc_now
from memories_geo.catalog.postgres import schema as pg_schema
from memories_geo.catalog.postgres.queries import glob_regex
from memories_geo.catalog.sqlite_migrations import MigrationItemRow
from memories_geo.config import StorageConfig
from memories_geo.operations import OperationRecord

import test_catalog as sqlite_tests  # isort: skip
from test_catalog import (  # isort: skip  # noqa: F401  (collected here against PostgreSQL)
    keys,
    save,
    stocked,
    test_a_failed_commit_changes_nothing,
    test_discard_forgets_only_staged_rows,
    test_exclusive_commit_refuses_an_existing_key_and_leaves_the_staged_row,
    test_export_then_import_rebuilds_an_identical_catalog,
    test_pinned_versions_are_retired_not_deleted,
    test_remove_version_refuses_the_current_one,
    test_search_by_key_glob_is_case_sensitive,
    test_search_by_tags_needs_them_all,
    test_search_by_tier_kind_and_every_version,
    test_search_by_time_is_inclusive_and_skips_entries_without_time,
    test_search_filters_combine,
    test_stage_then_commit_makes_the_version_current,
    test_unknown_key_suggests_close_ones,
    test_versions_are_numbered_and_the_newest_is_current,
)


def _drop(dsn: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def pg_schema_name(postgres_dsn: str) -> Iterator[str]:
    """A schema of its own for one test, dropped afterwards."""
    name = f"mg_test_{uuid.uuid4().hex[:10]}"
    yield name
    _drop(postgres_dsn, name)


@pytest.fixture
def catalog(postgres_dsn: str, pg_schema_name: str) -> Iterator[PostgresCatalog]:
    found = PostgresCatalog(postgres_dsn, schema=pg_schema_name)
    yield found
    found._db.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Each catalog implementation in turn (for the side tables)."""
    if request.param == "sqlite":
        yield SQLiteCatalog(tmp_path / "catalog.sqlite")
    else:
        yield request.getfixturevalue("catalog")


# -- the same API -----------------------------------------------------------------------


def _public(cls: type) -> dict[str, Any]:
    return {name: getattr(cls, name) for name in dir(cls) if not name.startswith("_")}


def _parameters(member: Any) -> list[tuple[str, Any, Any]]:
    if not callable(member):
        return []
    return [(p.name, p.kind, p.default) for p in inspect.signature(member).parameters.values()]


def test_both_catalogs_have_the_same_public_methods_and_signatures():
    ours, reference = _public(PostgresCatalog), _public(SQLiteCatalog)
    assert set(ours) == set(reference)
    assert len(reference) > 50
    for name, member in reference.items():
        assert _parameters(ours[name]) == _parameters(member), name


def test_the_catalog_satisfies_the_alert_history_protocol(catalog):
    from memories_geo.monitor.alerts import AlertHistory

    assert isinstance(catalog, AlertHistory)


# -- the tests of tests/test_catalog.py that need a SQLite file, made generic --------------

_BBOX_CASES = next(
    mark.args[1] for mark in sqlite_tests.test_search_by_bbox_matches_intersecting_footprints.pytestmark
    if mark.args[0] == ("bbox", "expected")
)


@pytest.mark.parametrize(("bbox", "expected"), _BBOX_CASES)
def test_search_by_bbox_uses_the_gist_index(stocked, bbox, expected, postgres_dsn):  # noqa: F811
    assert keys(stocked.search(bbox=bbox)) == expected
    import psycopg

    with psycopg.connect(postgres_dsn) as con:
        con.execute("SET enable_seqscan = off")
        plan = "\n".join(row[0] for row in con.execute(
            f'EXPLAIN SELECT id FROM "{stocked.schema}".versions v WHERE v.status = \'committed\' '
            "AND v.bbox && box(point(0, 40), point(1, 41))"
        ))
    assert "versions_bbox" in plan


def test_schema_creation_is_idempotent_and_safe_from_many_processes(postgres_dsn, pg_schema_name):
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["memories_geo", "psycopg", "psycopg_pool", __name__])
    with ctx.Pool(4) as pool:
        reprs = pool.starmap(_open_catalog, [(postgres_dsn, pg_schema_name)] * 8)
    assert len(set(reprs)) == 1
    reopened = PostgresCatalog(postgres_dsn, schema=pg_schema_name)
    assert reopened.current_entries() == []
    reopened._db.close()


def _open_catalog(dsn: str, schema: str) -> str:
    return repr(PostgresCatalog(dsn, schema=schema))


def test_older_schemas_are_migrated_and_newer_ones_refused(catalog, postgres_dsn, monkeypatch):
    entry = save(catalog, "k")
    newest = pg_schema.SCHEMA_VERSION
    monkeypatch.setattr(pg_schema, "SCHEMA_VERSION", newest + 1)
    monkeypatch.setattr(pg_schema, "MIGRATIONS", {newest: ["ALTER TABLE {versions} ADD COLUMN extra TEXT"]})
    migrated = PostgresCatalog(postgres_dsn, schema=catalog.schema)
    assert migrated.current("k") == entry
    import psycopg

    with psycopg.connect(postgres_dsn) as con:
        columns = {r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = 'versions'", (catalog.schema,))}
        (version,) = con.execute(
            f'SELECT value FROM "{catalog.schema}".meta WHERE name = \'schema_version\'').fetchone()
    assert "extra" in columns
    assert version == str(newest + 1)
    monkeypatch.setattr(pg_schema, "SCHEMA_VERSION", newest)
    with pytest.raises(mg.ConfigError, match=rf"schema version {newest + 1}.*upgrade memories_geo"):
        PostgresCatalog(postgres_dsn, schema=catalog.schema)
    migrated._db.close()


def test_check_passes_on_a_healthy_catalog_and_names_a_damaged_one(catalog, postgres_dsn):
    save(catalog, "k")
    catalog.check()
    import psycopg

    with psycopg.connect(postgres_dsn) as con:
        con.execute(f'DROP TABLE "{catalog.schema}".moves')
    with pytest.raises(mg.CatalogCorruptError, match=catalog.schema):
        catalog.check()


def test_key_globs_become_anchored_case_sensitive_regexes():
    assert glob_regex("era5/*") == "^era5/.*$"
    assert glob_regex("a.b?c[!x-z]d[^q]*") == "^a\\.b.c[^x-z]d[^q].*$"
    assert glob_regex("(x)+$") == "^\\(x\\)\\+\\$$"


# -- locations, URLs and passwords ---------------------------------------------------------


def test_open_catalog_chooses_by_url(tmp_path, postgres_dsn, pg_schema_name):
    assert isinstance(open_catalog(tmp_path / "c.sqlite"), SQLiteCatalog)
    assert isinstance(open_catalog(str(tmp_path / "d.sqlite")), SQLiteCatalog)
    assert isinstance(open_catalog((tmp_path / "e.sqlite").as_uri()), SQLiteCatalog)
    url = f"{postgres_dsn}?schema={pg_schema_name}"
    found = open_catalog(url.replace("postgresql://", "postgres://", 1))
    assert isinstance(found, PostgresCatalog)
    assert found.schema == pg_schema_name


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("mysql://me:secret@db/geo", "unsupported scheme 'mysql'"),
        ("s3://me:secret@bucket/catalog.sqlite", "unsupported scheme 's3'"),
        ("postgresql+psycopg://me:secret@db/geo", "write a PostgreSQL catalog as 'postgresql://"),
    ],
)
def test_unknown_schemes_are_refused_and_never_become_files(tmp_path, monkeypatch, location, message):
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    with pytest.raises(mg.ConfigError, match=message) as info:
        open_catalog(location)
    config = StorageConfig.from_dict({"home": str(home), "catalog": location})
    with pytest.raises(mg.ConfigError, match=message):
        mg.Memory(config)
    assert "secret" not in str(info.value)
    assert "postgresql://" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_server_is_named_without_its_password(tmp_path, caplog):
    from memories_geo.testing.services import free_port

    url = f"postgresql://me:s3cret-pw@127.0.0.1:{free_port()}/geo?connect_timeout=2"
    with pytest.raises(mg.TierUnavailableError, match="unreachable") as info:
        PostgresCatalog(url)
    config = StorageConfig.from_dict({"home": str(tmp_path / "home"), "catalog": url})
    with pytest.raises(mg.TierUnavailableError) as again:
        mg.Memory(config)
    for text in (str(info.value), str(again.value), caplog.text, repr(info.value)):
        assert "s3cret-pw" not in text
    assert "me:***@127.0.0.1" in str(info.value)


def test_a_pickled_catalog_reconnects_where_it_lands(catalog):
    import pickle

    entry = save(catalog, "k")
    copy = pickle.loads(pickle.dumps(catalog))
    assert copy.current("k") == entry
    assert repr(copy) == repr(catalog)


def test_repr_and_path_never_show_the_password(postgres_dsn, pg_schema_name):
    from urllib.parse import urlsplit

    parts = urlsplit(postgres_dsn)
    with_password = parts._replace(netloc=f"{parts.username}:not-checked@{parts.netloc.split('@')[-1]}")
    found = PostgresCatalog(with_password.geturl(), schema=pg_schema_name)
    for text in (repr(found), str(found.path)):
        assert "not-checked" not in text
        assert pg_schema_name in text


# -- side tables, on both catalogs -----------------------------------------------------------


def _record(operation: str, key: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"seq": None, "at": utc_now(), "user": "me", "host": "h", "pid": 1, "operation": operation,
            "key": key, "version": None, "version_id": None, "outcome": "ok", "detail": "",
            "pointers": None, "replace_all": False, **extra}


def test_audit_records_are_numbered_in_commit_order(any_catalog):
    staged = sqlite_tests.stage(any_catalog, "era5/t2m")
    audit = _record("save")
    entry = any_catalog.commit(staged, sqlite_tests.row_of(staged), audit=audit)
    assert (audit["seq"], audit["version"], audit["pointers"]) == (1, 1, {"era5/t2m": entry.version_id})
    assert any_catalog.append_audit(_record("verify", "fields", outcome="error")) == 2
    removal = _record("delete")
    any_catalog.remove_key("era5/t2m", audit=removal)
    assert removal["seq"] == 3
    rows = any_catalog.audit_rows()
    assert [r["seq"] for r in rows] == [1, 2, 3]
    assert rows[2]["pointers"] == {"era5/t2m": None}
    assert [r["seq"] for r in any_catalog.audit_rows(key="era5/*")] == [1, 3]
    assert [r["seq"] for r in any_catalog.audit_rows(outcome="error", user="me")] == [2]
    assert any_catalog.audit_rows(since=rows[1]["at"], until=rows[2]["at"])[0]["seq"] == 2
    assert any_catalog.import_audit([{**rows[0], "seq": 10}, rows[1], _record("x")]) == 1
    assert any_catalog.append_audit(_record("later")) == 11


def test_migration_journal(any_catalog):
    items = [MigrationItemRow("job", 0, "a", "va", 10, "move", "zarr", "zarr"),
             MigrationItemRow("job", 1, "b", "vb", 20, "convert", "cog", "zarr")]
    assert any_catalog.create_migration("job", "{}", items)
    assert not any_catalog.create_migration("job", "{}", items)
    first = any_catalog.claim_migration("job", lambda writer, started: False)
    assert first is not None
    assert first.state == "running"
    assert any_catalog.claim_migration("job", lambda writer, started: False) is not None
    any_catalog.update_migration_item("job", "b", state="done", bytes_done=20, target_version_id="vc",
                                      target_format="zarr")
    any_catalog.finish_migration("job", "completed", 1.5)
    job = any_catalog.migration_job("job")
    assert (job.state, job.seconds) == ("completed", 1.5)
    assert [(i.key, i.state, i.target_version_id) for i in any_catalog.migration_items("job")] == [
        ("a", "pending", None), ("b", "done", "vc")]
    assert [j.id for j in any_catalog.migration_jobs()] == ["job"]
    with pytest.raises(ValueError, match="state must be one of"):
        any_catalog.finish_migration("job", "nope", 0)
    assert any_catalog.delete_migration("job")
    assert any_catalog.migration_job("job") is None


def test_moves_restores_and_fingerprints(any_catalog):
    entry = save(any_catalog, "k")
    move = any_catalog.begin_move(entry.version_id, "cold", "k/@v/moved.zarr", "file:///cold/k")
    assert any_catalog.pending_moves() == [move]
    assert ("cold", "k/@v/moved.zarr") in any_catalog.stored_paths()
    moved = any_catalog.finish_move(move, _record("move"), storage_class="GLACIER")
    assert (moved.tier, moved.path, moved.storage_class, moved.version) == (
        "cold", "k/@v/moved.zarr", "GLACIER", 1)
    assert any_catalog.pending_moves() == []
    assert any_catalog.committed_entry(entry.version_id) == moved
    gone = any_catalog.begin_move("nope", "cold", "x", "file:///x")
    with pytest.raises(mg.KeyNotFoundError):
        any_catalog.finish_move(gone)
    any_catalog.forget_move("nope")
    assert any_catalog.pending_moves() == []
    first = any_catalog.record_restore(entry.version_id, "requested", requested=True, days=3,
                                       restore_tier="Bulk")
    later = any_catalog.record_restore(entry.version_id, "restored", until="2030-01-01T00:00:00")
    assert (later.requested_at, later.days, later.restore_tier) == (first.requested_at, 3, "Bulk")
    assert any_catalog.restore_record(entry.version_id) == later
    assert any_catalog.restore_record("nope") is None
    any_catalog.set_stat_fingerprint(entry.version_id, "fp")
    assert any_catalog.stat_fingerprint(entry.version_id) == "fp"
    assert any_catalog.stat_fingerprints([entry.version_id, "nope"]) == {entry.version_id: "fp"}
    any_catalog.touch(moved)
    assert any_catalog.current("k").access_count == 1


def test_operations_alerts_and_totals(any_catalog):
    now = datetime.now(UTC)
    records = [OperationRecord("save", now - timedelta(hours=2), 0.5, key="a", bytes=10, detail={"x": 1}),
               OperationRecord("open", now, 0.1, outcome="error", error="boom", key="a")]
    any_catalog.add_operations(records)
    any_catalog.add_operations([])
    assert any_catalog.operations() == records
    assert any_catalog.operations(since=now - timedelta(hours=1)) == records[1:]
    assert any_catalog.operations(operations=["save"]) == records[:1]
    assert any_catalog.prune_operations(now - timedelta(hours=1)) == 1
    any_catalog.add_alert_event("full", now, {"value": 0.9})
    any_catalog.add_alert_event("slow", now, {"value": 2})
    assert any_catalog.alert_events(name="full") == [{"value": 0.9}]
    assert len(any_catalog.alert_events(since=now - timedelta(seconds=1))) == 2
    save(any_catalog, "a", size=5)
    save(any_catalog, "b", tier="warm", size=7)
    sqlite_tests.stage(any_catalog, "staged")
    assert any_catalog.tier_totals() == {"hot": {"versions": 1, "bytes": 5, "objects": 1},
                                         "warm": {"versions": 1, "bytes": 7, "objects": 1}}
    assert any_catalog.tier_bytes("warm") == 7


def test_checkpoints_and_revert(any_catalog):
    first = save(any_catalog, "k")
    second = save(any_catalog, "k")
    any_catalog.create_checkpoint(CheckpointRow("cp", "one", utc_now(), "manual", 1, 10, "c"),
                                  {"k": second.version_id})
    assert any_catalog.checkpoint_pins("cp") == {"k": second.version_id}
    any_catalog.mark_backed_up("cp")
    assert [(c.id, c.backed_up) for c in any_catalog.checkpoints()] == [("cp", True)]
    assert not any_catalog.revert_commit(second)
    assert any_catalog.current("k") == first
    assert any_catalog.all_versions(include_retired=True)[-1].version_id == second.version_id
    assert [e.version_id for e in any_catalog.delete_checkpoint("cp")] == [second.version_id]
    assert any_catalog.retired_unpinned() == []
    assert any_catalog.entries_by_version_id([first.version_id, "nope"]) == {first.version_id: first}
    assert any_catalog.is_current(first)
    third = save(any_catalog, "k")
    any_catalog.forget([first])
    assert any_catalog.versions("k") == [third]


# -- a whole collection on a PostgreSQL catalog --------------------------------------------


def _points(n: int, seed: int) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    return gpd.GeoDataFrame({"v": rng.random(n)}, geometry=gpd.points_from_xy(rng.uniform(0, 1, n),
                            rng.uniform(40, 41, n)), crs="EPSG:4326")


def test_a_memory_round_trip_on_a_postgresql_catalog(tmp_path, postgres_dsn, pg_schema_name):
    url = f"{postgres_dsn}?schema={pg_schema_name}"
    config = StorageConfig.from_dict({"home": str(tmp_path / "home"), "catalog": url})
    mem = mg.Memory(config)
    assert isinstance(mem.catalog, PostgresCatalog)
    a1, a2 = _points(10, 1), _points(12, 2)
    cube = xr.Dataset({"t2m": (("lat", "lon"), np.arange(12.0).reshape(3, 4))},
                      coords={"lat": [50.0, 51.0, 52.0], "lon": [10.0, 11.0, 12.0, 13.0]})
    mem.save(a1, "fields")
    mem.save(cube, "era5")
    assert_geodataframe_equal(mem.open("fields"), a1)
    xr.testing.assert_identical(mem.open("era5"), cube)
    assert sorted(mem.search(bbox=(0.2, 40.2, 0.8, 40.8)).key) == ["fields"]
    assert sorted(mem.search(bbox=(9, 49, 14, 53)).key) == ["era5"]
    checkpoint = mem.checkpoints.save("before")
    mem.save(a2, "fields", mode="w")
    mem.delete("era5")
    assert [e.version for e in mem.versions("fields")] == [1, 2]
    other = mg.Memory(StorageConfig.from_dict({"home": str(tmp_path / "home"), "catalog": url}))
    assert_geodataframe_equal(other.open("fields"), a2)
    mem.checkpoints.restore(checkpoint.id)
    assert_geodataframe_equal(other.open("fields"), a1)
    xr.testing.assert_identical(other.open("era5"), cube)
    staged = mem.catalog.stage(key="ghost", version_id="ghost-1", tier="hot", format="geoparquet",
                               kind="vector", path="ghost/@v/ghost-1.parquet", uri="file:///ghost")
    import psycopg

    with psycopg.connect(postgres_dsn) as con:
        con.execute(f'UPDATE "{pg_schema_name}".versions SET writer = %s WHERE id = %s',
                    ("nohost.invalid:1", staged.pk))
        con.execute(f'UPDATE "{pg_schema_name}".versions SET created_at = %s WHERE id = %s',
                    ("2000-01-01T00:00:00.000000", staged.pk))
    mem.recover()
    assert mem.catalog.staged_versions() == []
    seqs = [r["seq"] for r in mem.catalog.audit_rows()]
    assert seqs == sorted(set(seqs))
    mem.verify(all_versions=True)


# -- concurrency: 8 processes x 25 saves ----------------------------------------------------

WRITERS, SAVES = 8, 25


def _writer(config: dict[str, Any], worker: int, saves: int) -> list[tuple[str, int, str]]:
    memory = mg.Memory(StorageConfig.from_dict(config))
    done = []
    for j in range(saves):
        key = "shared" if j % 2 == 0 else f"own/{worker}"
        frame = gpd.GeoDataFrame({"worker": [worker], "j": [j]}, geometry=[Point(worker, j)], crs="EPSG:4326")
        entry = memory.save(frame, key, mode="w")
        done.append((entry.key, entry.version, entry.version_id))
    return done


def test_eight_processes_saving_at_once_lose_no_commit(tmp_path, postgres_dsn, pg_schema_name):
    config = {"home": str(tmp_path / "home"), "catalog": f"{postgres_dsn}?schema={pg_schema_name}"}
    mem = mg.Memory(StorageConfig.from_dict(config))
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["memories_geo", "geopandas", "psycopg", "psycopg_pool", __name__])
    with ctx.Pool(WRITERS) as pool:
        results = pool.starmap(_writer, [(config, w, SAVES) for w in range(WRITERS)])
    done = [item for result in results for item in result]
    assert len(done) == WRITERS * SAVES == 200
    stored = {e.version_id: e for e in mem.catalog.all_versions()}
    assert len(stored) == 200
    assert {vid for _, _, vid in done} == set(stored)
    assert all((stored[vid].key, stored[vid].version) == (key, version) for key, version, vid in done)
    per_key = Counter(key for key, _, _ in done)
    for key, n in per_key.items():
        assert [e.version for e in mem.versions(key)] == list(range(1, n + 1)), key
    assert per_key["shared"] == WRITERS * 13
    saves = mem.catalog.audit_rows(operation="save")
    assert len(saves) == 200
    assert [r["seq"] for r in saves] == sorted(r["seq"] for r in saves)
    last = {key: max(v for k, v, _ in done if k == key) for key in per_key}
    assert {e.key: e.version for e in mem.catalog.current_entries()} == last
    assert mem.catalog.staged_versions() == []
    frame = mem.open("shared")
    assert len(frame) == 1


def test_a_damaged_postgresql_catalog_is_rebuilt_from_version_records(tmp_path, postgres_dsn, pg_schema_name):
    import psycopg

    url = f"{postgres_dsn}?schema={pg_schema_name}"
    config = StorageConfig.from_dict({"home": str(tmp_path / "home"), "catalog": url})
    mem = mg.Memory(config)
    a1, a2 = _points(5, 1), _points(6, 2)
    mem.save(a1, "a")
    mem.save(a2, "a", mode="w")
    assert mg.RecoveryManager(storage=mem).rebuild_catalog()["moved_aside"] is None
    with psycopg.connect(postgres_dsn) as con:
        con.execute(f'DROP TABLE "{pg_schema_name}".keys')
    with pytest.raises(mg.CatalogCorruptError):
        mem.catalog.check()
    with pytest.raises(mg.CatalogCorruptError, match="rebuild_catalog"):
        mg.Memory(config)
    report = mg.RecoveryManager(storage=config).rebuild_catalog()
    assert report["keys"] == 1
    aside = report["moved_aside"].split("#", 1)[1]
    assert aside.startswith(f"{pg_schema_name}_corrupt_")
    _drop(postgres_dsn, aside)
    rebuilt = mg.Memory(config)
    assert [e.version for e in rebuilt.versions("a")] == [1, 2]
    assert_geodataframe_equal(rebuilt.open("a"), a2)
    assert_geodataframe_equal(rebuilt.open("a", version=1), a1)
