"""The catalog itself, against real SQLite files: commit protocol, search, corruption, locations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

import memories_geo as mg
from memories_geo.catalog import (
    Catalog,
    CheckpointRow,
    SearchFilter,
    StagedVersion,
    sqlite_path,
    utc_now,
    version_row,
)
from memories_geo.catalog import schema as catalog_schema
from memories_geo.config import StorageConfig
from memories_geo.footprint import Footprint
from memories_geo.integrity import FileDigest, Manifest

DIGEST = "0" * 32


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "catalog.sqlite")


def stage(catalog: Catalog, key: str, *, tier: str = "hot", kind: str = "raster") -> StagedVersion:
    vid = f"{key.replace('/', '-')}-{utc_now()}"
    return catalog.stage(key=key, version_id=vid, tier=tier, format="zarr", kind=kind,
                         path=f"{key}/@v/{vid}.zarr", uri=f"file:///data/{key}")


def row_of(staged: StagedVersion, *, bbox=None, time=None, tags=(), attrs=None, size=10):
    footprint = Footprint(
        bbox=bbox, native_bbox=bbox, crs="EPSG:4326" if bbox else None,
        time_start=None if time is None else pd.Timestamp(time[0]),
        time_end=None if time is None else pd.Timestamp(time[1]),
        variables=("t2m",), shape={"time": 2, "y": 3, "x": 4},
    )
    manifest = Manifest({"zarr.json": FileDigest(size, DIGEST)})
    return version_row(staged, uri=f"file:///data/{staged.key}", footprint=footprint,
                       manifest=manifest, object_info={"type": "Dataset"}, attrs=attrs, tags=tags)


def save(catalog: Catalog, key: str, *, tier: str = "hot", kind: str = "raster", **row):
    staged = stage(catalog, key, tier=tier, kind=kind)
    return catalog.commit(staged, row_of(staged, **row))


# -- the commit protocol -------------------------------------------------------------------


def test_stage_then_commit_makes_the_version_current(catalog):
    staged = stage(catalog, "era5/t2m")
    assert catalog.staged_versions() == [staged]
    with pytest.raises(mg.KeyNotFoundError):
        catalog.current("era5/t2m")
    row = row_of(staged, bbox=(-10.0, 35.0, 5.5, 45.25), time=("2024-01-01", "2024-01-31T12:00"),
                 tags=["qa", "era5"], attrs={"source": "ERA5", "n": 3})
    entry = catalog.commit(staged, row)
    assert catalog.staged_versions() == []
    assert catalog.current("era5/t2m") == entry
    assert (entry.key, entry.version, entry.tier, entry.format, entry.kind) == (
        "era5/t2m", 1, "hot", "zarr", "raster")
    assert entry.bbox == entry.native_bbox == (-10.0, 35.0, 5.5, 45.25)
    assert (entry.time_start, entry.time_end) == ("2024-01-01T00:00:00.000000", "2024-01-31T12:00:00.000000")
    assert entry.tags == ("qa", "era5")
    assert entry.attrs == {"source": "ERA5", "n": 3}
    assert entry.variables == ("t2m",)
    assert entry.shape == {"time": 2, "y": 3, "x": 4}
    assert entry.object_info == {"type": "Dataset"}
    assert entry.version_id == staged.version_id
    assert entry.path == staged.path
    assert catalog.manifest(entry) == Manifest({"zarr.json": FileDigest(10, DIGEST)})


def test_versions_are_numbered_and_the_newest_is_current(catalog):
    first = save(catalog, "a", size=1)
    second = save(catalog, "a", size=2)
    assert [e.version for e in catalog.versions("a")] == [1, 2]
    assert catalog.current("a") == second
    assert catalog.get("a", 1) == first
    with pytest.raises(mg.KeyNotFoundError, match=r"versions: \[1, 2\]"):
        catalog.get("a", 3)


def test_discard_forgets_only_staged_rows(catalog):
    staged = stage(catalog, "a")
    catalog.discard(staged)
    assert catalog.staged_versions() == []
    assert catalog.stored_paths() == set()
    committed = stage(catalog, "b")
    entry = catalog.commit(committed, row_of(committed))
    catalog.discard(committed)
    assert catalog.current("b") == entry
    assert catalog.manifest(entry).size_bytes == 10


def test_exclusive_commit_refuses_an_existing_key_and_leaves_the_staged_row(catalog):
    first, second = stage(catalog, "k"), stage(catalog, "k")
    winner = catalog.commit(first, row_of(first), exclusive=True)
    with pytest.raises(mg.KeyExistsError, match="mode='w'"):
        catalog.commit(second, row_of(second), exclusive=True)
    assert catalog.current("k") == winner
    assert [e.version for e in catalog.versions("k")] == [1]
    assert catalog.staged_versions() == [second]
    catalog.discard(second)
    assert catalog.staged_versions() == []
    third = stage(catalog, "k")
    assert catalog.commit(third, row_of(third)).version == 2


def test_a_failed_commit_changes_nothing(catalog):
    staged = stage(catalog, "k")
    row = row_of(staged)
    del row["manifest"]
    with pytest.raises(KeyError):
        catalog.commit(staged, row)
    assert catalog.staged_versions() == [staged]
    assert catalog.current_entries() == []


def test_remove_version_refuses_the_current_one(catalog):
    save(catalog, "k")
    save(catalog, "k")
    with pytest.raises(ValueError, match="current version"):
        catalog.remove_version("k", 2)
    entry, purge = catalog.remove_version("k", 1)
    assert (entry.version, purge) == (1, True)
    assert [e.version for e in catalog.versions("k")] == [2]


def test_pinned_versions_are_retired_not_deleted(catalog):
    entry = save(catalog, "k", bbox=(0.0, 0.0, 1.0, 1.0))
    catalog.create_checkpoint(CheckpointRow("cp1", "one", utc_now(), "manual", 1, 10, "c"),
                              {"k": entry.version_id})
    removed, purge = catalog.remove_key("k")
    assert (removed, purge) == ([entry], [])
    assert catalog.search(bbox=(0, 0, 1, 1)) == []
    catalog.restore_pointers({"k": entry.version_id})
    assert catalog.current("k") == entry
    assert catalog.search(bbox=(0, 0, 1, 1)) == [entry]


def test_export_then_import_rebuilds_an_identical_catalog(catalog, tmp_path):
    entries = [
        save(catalog, "a", bbox=(1.0, 2.0, 3.0, 4.0), time=("2024-01", "2024-02"), tags=["x"]),
        save(catalog, "a", attrs={"note": "second"}),
        save(catalog, "b/c", kind="vector", tier="warm"),
    ]
    rows = catalog.export_rows([e.version_id for e in entries])
    rebuilt = Catalog(tmp_path / "rebuilt.sqlite")
    assert rebuilt.import_rows(rows) == 3
    assert rebuilt.import_rows(rows) == 0
    rebuilt.restore_pointers({e.key: e.version_id for e in catalog.current_entries()})
    rebuilt.revive_versions_of_keys()
    assert rebuilt.all_versions() == catalog.all_versions()
    assert rebuilt.current_entries() == catalog.current_entries()
    assert rebuilt.search(bbox=(0, 0, 2, 3), all_versions=True) == [entries[0]]
    assert [rebuilt.manifest(e) for e in entries] == [catalog.manifest(e) for e in entries]


def test_unknown_key_suggests_close_ones(catalog):
    save(catalog, "era5/t2m")
    with pytest.raises(mg.KeyNotFoundError, match=r"Did you mean \['era5/t2m'\]"):
        catalog.current("other/t2m")


# -- search ---------------------------------------------------------------------------------


@pytest.fixture
def stocked(catalog):
    save(catalog, "era5/t2m", bbox=(-10.0, 35.0, 5.0, 45.0), time=("2024-01-01", "2024-01-31"),
         tags=["qa", "era5"])
    save(catalog, "era5/tp", bbox=(20.0, 40.0, 30.0, 50.0), time=("2024-03-01", "2024-03-31"),
         tags=["era5"], tier="warm")
    save(catalog, "fields", kind="vector", bbox=(5.0, 45.0, 6.0, 46.0), tags=["qa"])
    save(catalog, "Fields2", kind="vector")
    return catalog


def keys(entries):
    return [e.key for e in entries]


@pytest.mark.parametrize("rtree", [True, False], ids=["rtree", "columns"])
@pytest.mark.parametrize(
    ("bbox", "expected"),
    [
        ((0.0, 40.0, 1.0, 41.0), ["era5/t2m"]),
        ((5.0, 45.0, 5.0, 45.0), ["era5/t2m", "fields"]),
        ((-180.0, -90.0, 180.0, 90.0), ["era5/t2m", "era5/tp", "fields"]),
        ((100.0, 0.0, 110.0, 10.0), []),
    ],
)
def test_search_by_bbox_matches_intersecting_footprints(stocked, rtree, bbox, expected):
    assert stocked.has_rtree
    stocked.has_rtree = rtree
    assert keys(stocked.search(bbox=bbox)) == expected


@pytest.mark.parametrize(
    ("time", "expected"),
    [
        (("2024-01-31T00:00:00.000000", "2024-03-01T00:00:00.000000"), ["era5/t2m", "era5/tp"]),
        (("2024-02-01T00:00:00.000000", "2024-02-29T23:59:59.999999"), []),
        ((None, "2024-01-01T00:00:00.000000"), ["era5/t2m"]),
        (("2024-03-31T00:00:00.000000", None), ["era5/tp"]),
        ((None, None), ["era5/t2m", "era5/tp"]),
    ],
)
def test_search_by_time_is_inclusive_and_skips_entries_without_time(stocked, time, expected):
    assert keys(stocked.search(time=time)) == expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("era5/*", ["era5/t2m", "era5/tp"]),
        ("era5/t?", ["era5/tp"]),
        ("[EF]*", ["Fields2"]),
        ("f*", ["fields"]),
        ("*", ["Fields2", "era5/t2m", "era5/tp", "fields"]),
        ("era5", []),
    ],
)
def test_search_by_key_glob_is_case_sensitive(stocked, pattern, expected):
    assert keys(stocked.search(key=pattern)) == expected


def test_search_by_tags_needs_them_all(stocked):
    assert keys(stocked.search(tags=["qa"])) == ["era5/t2m", "fields"]
    assert keys(stocked.search(tags=["qa", "era5"])) == ["era5/t2m"]
    assert keys(stocked.search(tags=["missing"])) == []
    assert len(stocked.search(tags=[])) == 4


def test_search_by_tier_kind_and_every_version(stocked):
    assert keys(stocked.search(tier="warm")) == ["era5/tp"]
    assert keys(stocked.search(kind=["vector"], tier=("hot", "warm"))) == ["Fields2", "fields"]
    save(stocked, "fields", kind="vector")
    assert keys(stocked.search(bbox=(5.0, 45.0, 6.0, 46.0), kind="vector")) == []
    old = stocked.search(bbox=(5.0, 45.0, 6.0, 46.0), kind="vector", all_versions=True)
    assert [(e.key, e.version) for e in old] == [("fields", 1)]


def test_search_filters_combine(stocked):
    found = stocked.search(bbox=(-180, -90, 180, 90), time=("2024-01-15T00:00:00.000000", None),
                           key="era5/*", tags=["era5"], tier="hot", kind="raster")
    assert keys(found) == ["era5/t2m"]


def test_search_filter_normalises_names():
    search = SearchFilter.build(bbox=(0, 1, 2, 3), tier="hot", kind=["raster", "vector"], tags=["a"])
    assert search.bbox == (0.0, 1.0, 2.0, 3.0)
    assert (search.tiers, search.kinds, search.tags) == (("hot",), ("raster", "vector"), {"a"})


# -- schema, index and corruption --------------------------------------------------------------


def test_a_lost_bbox_index_is_rebuilt_on_open(stocked):
    with sqlite3.connect(stocked.path) as con:
        con.execute("DROP TABLE versions_bbox")
    reopened = Catalog(stocked.path)
    assert reopened.has_rtree
    assert keys(reopened.search(bbox=(0.0, 40.0, 1.0, 41.0))) == ["era5/t2m"]


def test_older_schemas_are_migrated_and_newer_ones_refused(catalog, monkeypatch):
    entry = save(catalog, "k")
    newest = catalog_schema.SCHEMA_VERSION
    monkeypatch.setattr(catalog_schema, "SCHEMA_VERSION", newest + 1)
    monkeypatch.setattr(catalog_schema, "MIGRATIONS", {
        **catalog_schema.MIGRATIONS, newest: ["ALTER TABLE versions ADD COLUMN extra TEXT"]})
    migrated = Catalog(catalog.path)
    assert migrated.current("k") == entry
    with sqlite3.connect(catalog.path) as con:
        columns = {row[1] for row in con.execute("PRAGMA table_info(versions)")}
        (version,) = con.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    assert "extra" in columns
    assert version == str(newest + 1)
    monkeypatch.setattr(catalog_schema, "SCHEMA_VERSION", newest)
    with pytest.raises(mg.ConfigError, match=rf"schema version {newest + 1}.*upgrade memories_geo"):
        Catalog(catalog.path)


@pytest.mark.parametrize("marked", [True, False], ids=["version-1", "unversioned"])
def test_a_version_1_catalog_gains_the_storage_class_column(catalog, marked):
    entry = save(catalog, "k")
    with sqlite3.connect(catalog.path) as con:
        con.execute("ALTER TABLE versions DROP COLUMN storage_class")
        if marked:
            con.execute("UPDATE meta SET value = '1' WHERE name = 'schema_version'")
        else:
            con.execute("DELETE FROM meta WHERE name = 'schema_version'")
    migrated = Catalog(catalog.path)
    assert migrated.current("k") == entry
    assert entry.storage_class is None
    with sqlite3.connect(catalog.path) as con:
        assert "storage_class" in {row[1] for row in con.execute("PRAGMA table_info(versions)")}
        (version,) = con.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    assert version == str(catalog_schema.SCHEMA_VERSION)


def test_a_corrupt_file_raises_catalog_corrupt_error(tmp_path):
    path = tmp_path / "catalog.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(mg.CatalogCorruptError, match="rebuild_catalog"):
        Catalog(path)
    assert path.read_bytes() == b"this is not a database" * 100


def test_check_passes_on_a_healthy_catalog_and_names_a_damaged_one(catalog):
    save(catalog, "k")
    catalog.check()
    catalog.path.write_bytes(b"\0" * 4096)
    with pytest.raises(mg.CatalogCorruptError, match=str(catalog.path)):
        catalog.check()


def test_a_directory_is_not_a_catalog(tmp_path):
    with pytest.raises(mg.ConfigError, match="is a directory"):
        Catalog(tmp_path)


# -- catalog locations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/data/catalog.sqlite", "/data/catalog.sqlite"),
        ("relative/catalog.sqlite", "relative/catalog.sqlite"),
        ("sqlite:///data/catalog.sqlite", "/data/catalog.sqlite"),
        ("sqlite:////data/catalog.sqlite", "/data/catalog.sqlite"),
        ("file:///data/my%20catalog.sqlite", "/data/my catalog.sqlite"),
        ("file://localhost/data/catalog.sqlite", "/data/catalog.sqlite"),
        (Path("/data/catalog.sqlite"), "/data/catalog.sqlite"),
    ],
)
def test_supported_catalog_locations(location, expected):
    assert sqlite_path(location).as_posix() == expected


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("postgresql://me:secret@db:5432/geo", "is a PostgreSQL database, not a SQLite file"),
        ("postgres://db/geo", "is a PostgreSQL database, not a SQLite file"),
        ("postgresql+psycopg://db/geo", "write a PostgreSQL catalog as 'postgresql://"),
        ("s3://bucket/catalog.sqlite", "unsupported scheme 's3'"),
        ("https://example.org/catalog.sqlite", "unsupported scheme 'https'"),
        ("sqlite://host/catalog.sqlite", "local file, without host"),
        ("sqlite:///catalog.sqlite?mode=ro", "local file, without host, query"),
        ("file://server/share/catalog.sqlite", "local file, without host"),
        ("sqlite://", "names no file"),
        ("sqlite:///", "names no file"),
    ],
)
def test_other_catalog_locations_are_refused(tmp_path, monkeypatch, location, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(mg.ConfigError, match=message) as info:
        Catalog(location)
    text = str(info.value)
    assert "sqlite:///" in text
    assert "file:///" in text
    assert "secret" not in text
    assert list(tmp_path.iterdir()) == []


def test_a_memory_refuses_an_unknown_catalog_scheme_before_creating_anything(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    config = StorageConfig.from_dict({"home": str(home), "catalog": "mysql://me:secret@db/geo"})
    with pytest.raises(mg.ConfigError, match="unsupported scheme 'mysql'") as info:
        mg.Memory(config)
    assert "secret" not in str(info.value)
    assert not home.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_memory_accepts_a_file_url_catalog(tmp_path):
    path = tmp_path / "my catalog" / "catalog.sqlite"
    config = StorageConfig.from_dict({"home": str(tmp_path / "home"), "catalog": path.as_uri()})
    assert mg.Memory(config).catalog.path == path
    assert path.is_file()


def test_many_processes_creating_one_new_catalog_at_once(tmp_path):
    import subprocess
    import sys
    import time

    go = tmp_path / "go"
    path = tmp_path / "new" / "catalog.sqlite"
    code = (
        "import os, sys, time\n"
        "from memories_geo.catalog import SQLiteCatalog\n"
        "open(sys.argv[1] + '.' + str(os.getpid()), 'w').close()\n"
        "while not os.path.exists(sys.argv[1]): time.sleep(0.001)\n"
        "SQLiteCatalog(sys.argv[2]).current_entries()\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(go), str(path)], stderr=subprocess.PIPE)
             for _ in range(8)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.*"))) < 8 and time.monotonic() < deadline:
        time.sleep(0.01)  # every child has imported the catalog and waits on the flag
    go.touch()
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [e for e in errors if e][:1]
