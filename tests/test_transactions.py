"""Transactions (issue 14): saves and deletions across formats and tiers, committed all or nothing.

Real collections only: a local hot tier, GeoParquet on a moto S3 server, PostGIS on a real
PostgreSQL, with a SQLite catalog and with a PostgreSQL catalog. Crashes are real: a child
process SIGKILLs itself inside the block, at the commit's start, in the middle of the
catalog transaction (``sys.setprofile``, no hook in the library) and right after it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from geopandas.testing import assert_geodataframe_equal
from shapely.geometry import Point

import memories_geo as mg
from memories_geo.errors import FormatError, KeyExistsError, KeyNotFoundError, OptionError


def _gdf(n: int, seed: int = 0) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    return gpd.GeoDataFrame({"value": rng.normal(size=n)},
                            geometry=[Point(x, y) for x, y in rng.uniform(0, 10, (n, 2))], crs="EPSG:4326")


def _cube(seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    return xr.Dataset({"t": (("y", "x"), rng.normal(size=(4, 5)))},
                      coords={"y": np.arange(4.0), "x": np.arange(5.0)})


def _in(tx: Any, body: Any) -> None:
    """Run ``body(tx)`` inside ``tx``'s ``with`` block."""
    with tx:
        body(tx)


def _state(mem: mg.Memory) -> dict[str, int]:
    return {e.key: e.version for e in mem.catalog.current_entries()}


def _drop_schema(dsn: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def mem(tmp_path: Path) -> mg.Memory:
    return mg.Memory(tmp_path / "home")


@pytest.fixture
def schemas(postgres_dsn: str) -> Iterator[list[str]]:
    """Schemas made by a test (catalogs, PostGIS tiers), dropped afterwards."""
    made: list[str] = []
    yield made
    for name in made:
        _drop_schema(postgres_dsn, name)


def _config(tmp_path: Path, catalog: str, schemas: list[str], dsn: str, s3: Any = None) -> dict[str, Any]:
    """hot: local disk; cold: PostGIS on PostgreSQL; warm: S3 when given; catalog SQLite or PostgreSQL."""
    tier_schema = f"tx_tier_{uuid.uuid4().hex[:10]}"
    schemas.append(tier_schema)
    config: dict[str, Any] = {
        "home": str(tmp_path / "home"),
        "tiers": {"cold": {"url": dsn, "storage_options": {"schema": tier_schema}}},
    }
    if s3 is not None:
        config["tiers"]["warm"] = {"url": f"{s3.url}/{uuid.uuid4().hex[:8]}/warm",
                                   "storage_options": s3.options}
    if catalog == "postgresql":
        name = f"tx_cat_{uuid.uuid4().hex[:10]}"
        schemas.append(name)
        config["catalog"] = f"{dsn}{'&' if '?' in dsn else '?'}schema={name}"
    return config


# -- semantics on one machine ------------------------------------------------------------------


def test_saves_and_a_deletion_commit_together_with_one_audited_transaction_id(mem):
    mem.save(_gdf(3), "old")
    mem.save(_gdf(2), "keep")
    before = mem.audit()["seq"].max()
    with mem.transaction() as tx:
        staged = tx.save(_cube(), "cube", crs="EPSG:4326")
        tx.save(_gdf(5, 1), "fields")
        tx.delete("old")
        assert _state(mem) == {"keep": 1, "old": 1}, "nothing is current before the commit"
        with pytest.raises(KeyNotFoundError):
            mem.open("cube")
    assert tx.state == "committed"
    assert _state(mem) == {"cube": 1, "fields": 1, "keep": 1}
    assert [e.key for e in tx.entries] == ["cube", "fields"]
    assert tx.entries[0].version_id == staged.version_id
    np.testing.assert_array_equal(mem.open("cube")["t"].values, _cube()["t"].values)
    assert_geodataframe_equal(mem.open("fields"), _gdf(5, 1))

    log = mem.audit()
    mine = log[log["seq"] > before]
    assert list(mine["operation"]) == ["delete", "save", "save"]
    assert list(mine["key"]) == ["old", "cube", "fields"]
    assert list(mine["seq"]) == list(range(before + 1, before + 4)), "consecutive: one catalog transaction"
    assert all(tx.id in d for d in mine["detail"])
    journaled = {r["seq"]: r for r in mem.version_store.journal_records()}
    assert [journaled[s]["key"] for s in mine["seq"]] == ["old", "cube", "fields"]
    assert mem.recover() == [], "the deleted version's data was purged, nothing left staged"


def test_an_exception_in_the_block_keeps_nothing_and_deletes_nothing(mem, tmp_path):
    mem.save(_gdf(3), "old")

    def body(tx):
        tx.save(_cube(), "cube", crs="EPSG:4326")
        tx.save(_gdf(4), "fields")
        tx.delete("old")
        raise RuntimeError("boom")

    tx = mem.transaction()
    with pytest.raises(RuntimeError, match="boom"):
        _in(tx, body)
    assert tx.state == "rolled back"
    assert _state(mem) == {"old": 1}
    assert mem.catalog.staged_versions() == []
    assert not list((tmp_path / "home").rglob("*.zarr")), "the staged Zarr store was removed"
    assert mem.recover() == []
    errors = mem.audit(outcome="error")
    assert sorted(errors["key"]) == ["cube", "fields"]
    assert all("rolled back" in d and tx.id in d for d in errors["detail"])


def test_rollback_ends_the_transaction_and_a_closed_one_refuses_more(mem):
    tx = mem.transaction()
    tx.save(_gdf(3), "a")
    tx.rollback()
    assert _state(mem) == {}
    assert mem.catalog.staged_versions() == []
    with pytest.raises(OptionError, match="rolled back"):
        tx.save(_gdf(3), "b")
    with pytest.raises(OptionError, match="rolled back"):
        tx.commit()
    with mem.transaction() as done:
        done.save(_gdf(3), "a")
    with pytest.raises(OptionError, match="committed"):
        done.delete("a")


def test_a_key_created_by_another_writer_before_the_commit_fails_it_whole(mem, tmp_path):
    other = mg.Memory(tmp_path / "home")

    def body(tx):
        tx.save(_gdf(3), "free")
        tx.save(_gdf(4), "contested")
        other.save(_gdf(9, 9), "contested")

    tx = mem.transaction()
    with pytest.raises(KeyExistsError):
        _in(tx, body)
    assert tx.state == "rolled back"
    assert _state(mem) == {"contested": 1}
    assert_geodataframe_equal(mem.open("contested"), _gdf(9, 9))
    assert mem.catalog.staged_versions() == []
    assert mem.recover() == []


def test_a_key_deleted_by_another_writer_before_the_commit_fails_it_whole(mem, tmp_path):
    mem.save(_gdf(3), "gone")

    def body(tx):
        tx.save(_gdf(4), "new")
        tx.delete("gone")
        mg.Memory(tmp_path / "home").delete("gone")

    with pytest.raises(KeyNotFoundError):
        _in(mem.transaction(), body)
    assert _state(mem) == {}
    assert mem.catalog.staged_versions() == []


def test_a_key_saved_twice_keeps_both_versions_the_second_current(mem):
    with mem.transaction() as tx:
        tx.save(_gdf(3, 1), "k")
        with pytest.raises(KeyExistsError, match="already saved in this transaction"):
            tx.save(_gdf(3, 2), "k")
        with pytest.raises(ValueError, match="append"):
            tx.save(_gdf(3, 2), "k", mode="a")
        tx.save(_gdf(4, 2), "k", mode="w")
        assert_geodataframe_equal(tx.open("k"), _gdf(4, 2))
    assert [e.version for e in mem.versions("k")] == [1, 2]
    assert_geodataframe_equal(mem.open("k"), _gdf(4, 2))
    assert_geodataframe_equal(mem.open("k", version=1), _gdf(3, 1))


def test_delete_then_save_replaces_a_key_and_deleting_a_staged_key_is_refused(mem):
    mem.save(_gdf(3, 1), "k")
    mem.save(_gdf(3, 1), "other")
    with mem.transaction() as tx:
        with pytest.raises(KeyNotFoundError):
            tx.delete("missing")
        tx.delete("k")
        tx.save(_gdf(5, 5), "k")
        tx.save(_gdf(2, 2), "n")
        with pytest.raises(ValueError, match="saved earlier"):
            tx.delete("n")
        assert_geodataframe_equal(tx.open("other"), _gdf(3, 1))
    assert [e.version for e in mem.versions("k")] == [1]
    assert_geodataframe_equal(mem.open("k"), _gdf(5, 5))
    assert _state(mem) == {"k": 1, "n": 1, "other": 1}


def test_deleting_one_old_version_in_a_transaction(mem):
    mem.save(_gdf(3, 1), "k")
    mem.save(_gdf(3, 2), "k", mode="w")
    with mem.transaction() as tx:
        with pytest.raises(ValueError, match="current"):
            tx.delete("k", version=2)
        tx.delete("k", version=1)
        tx.save(_gdf(3, 3), "k", mode="w")
    assert [e.version for e in mem.versions("k")] == [2, 3]


def test_a_failing_save_raises_at_its_call_and_the_block_can_go_on(mem):
    with mem.transaction() as tx:
        with pytest.raises(mg.errors.MemoriesError):
            tx.save(object(), "bad")
        tx.save(_gdf(3), "good")
    assert _state(mem) == {"good": 1}
    assert mem.catalog.staged_versions() == []


def test_a_dask_backed_cube_is_written_before_the_commit(mem):
    rng = np.random.default_rng(11)
    cube = xr.Dataset(
        {"t": (("time", "y", "x"), rng.normal(size=(4, 32, 32)))},
        coords={"time": np.arange(4), "y": np.linspace(10, 0, 32), "x": np.linspace(0, 10, 32)},
    ).rio.write_crs("EPSG:4326").chunk({"time": 1})
    with mem.transaction() as tx:
        staged = tx.save(cube, "lazy/cube")
        assert mem.catalog.current_entries() == []
    assert mem.info("lazy/cube").version_id == staged.version_id
    assert mem.info("lazy/cube").size_bytes > 0
    xr.testing.assert_identical(mem.open("lazy/cube").load(), cube.load())
    assert mem.verify("lazy/cube")


def test_compute_false_is_refused(mem):
    with mem.transaction() as tx, pytest.raises(OptionError, match="compute=False"):
        tx.save(_gdf(3), "k", compute=False)


# -- across formats, tiers and catalogs ------------------------------------------------------


@pytest.mark.parametrize("catalog", ["sqlite", "postgresql"])
def test_zarr_local_geoparquet_s3_postgis_and_a_delete_in_one_transaction(
    tmp_path, catalog, postgres_dsn, s3_service, schemas
):
    config = _config(tmp_path, catalog, schemas, postgres_dsn, s3_service)
    mem = mg.Memory(mg.StorageConfig.from_dict(config))
    mem.save(_gdf(3, 7), "old", tier="cold")
    mem.save(_gdf(3, 8), "parcels", tier="cold")
    with mem.transaction() as tx:
        tx.save(_cube(), "cube", tier="hot", crs="EPSG:4326")
        tx.save(_gdf(6, 1), "fields", tier="warm")
        tx.save(_gdf(4, 2), "parcels", tier="cold", mode="w")
        tx.delete("old")
        assert_geodataframe_equal(mem.open("parcels"), _gdf(3, 8), check_like=True)
    formats = {e.key: (e.tier, e.format) for e in mem.catalog.current_entries()}
    assert formats == {"cube": ("hot", "zarr"), "fields": ("warm", "geoparquet"),
                       "parcels": ("cold", "postgis")}
    assert_geodataframe_equal(mem.open("fields"), _gdf(6, 1))
    assert_geodataframe_equal(mem.open("parcels").reset_index(drop=True), _gdf(4, 2), check_like=True)
    backend = mem.tiers.backend("cold")
    published = mg.formats.registry.get_format("postgis").published_keys(backend)
    assert sorted(published) == ["parcels"], "the view of the new version, none for the deleted key"
    assert mem.audit(key="old")["detail"].iloc[-1] == f"transaction {tx.id}"
    assert mem.recover() == []


def test_a_view_that_cannot_be_published_leaves_the_transaction_committed(tmp_path, postgres_dsn, schemas):
    """The commit point is the catalog transaction (more in test_transaction_publish.py)."""
    from psycopg import sql

    from memories_geo.formats.postgis import view_name_for

    mem = mg.Memory(mg.StorageConfig.from_dict(_config(tmp_path, "sqlite", schemas, postgres_dsn)))
    mem.save(_gdf(3, 1), "a")
    backend = mem.tiers.backend("cold")

    def body(tx):
        tx.save(_gdf(4, 2), "a", mode="w")
        tx.save(_gdf(5, 3), "blocked", tier="cold")
        with backend.connection() as con:
            con.execute(sql.SQL("CREATE TABLE {} (x int)").format(
                sql.Identifier(backend.schema, view_name_for("blocked"))))

    tx = mem.transaction()
    with pytest.raises(FormatError) as raised:
        _in(tx, body)
    assert any("is committed" in note for note in raised.value.__notes__)
    assert tx.state == "committed"
    assert _state(mem) == {"a": 2, "blocked": 1}
    assert_geodataframe_equal(mem.open("a"), _gdf(4, 2))
    assert mem.catalog.staged_versions() == []


# -- crashes --------------------------------------------------------------------------------

#: A transaction in a child process that SIGKILLs itself at ``point``: ``block`` after its
#: saves, inside the block; ``committing`` when the commit starts; ``during`` at the second
#: staged version's commit inside the catalog transaction; ``after`` once the catalog
#: transaction returned (before the views are published).
CRASHING_TRANSACTION = textwrap.dedent(
    """
    import json, os, signal, sys
    import numpy as np, geopandas as gpd, xarray as xr
    from shapely.geometry import Point
    import memories_geo as mg

    config, point = json.loads(sys.argv[1]), sys.argv[2]
    mem = mg.Memory(mg.StorageConfig.from_dict(config))
    rng = np.random.default_rng(0)
    cube = xr.Dataset({"t": (("y", "x"), rng.normal(size=(4, 5)))},
                      coords={"y": np.arange(4.0), "x": np.arange(5.0)})
    gdf = gpd.GeoDataFrame({"value": [1.0, 2.0]}, geometry=[Point(0, 0), Point(1, 1)], crs="EPSG:4326")
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    calls = []

    def on_event(name, info):
        if (point == "committing" and name == "transaction.committing") or (
                point == "after" and name == "save.committed" and info.get("transaction")):
            die()

    def on_call(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "_commit_row":
            calls.append(1)
            if len(calls) == 2:
                die()

    mg.events.subscribe(on_event)
    with mem.transaction() as tx:
        tx.save(cube, "cube", tier="hot", crs="EPSG:4326")
        tx.save(gdf, "fields", tier="hot")
        tx.save(gdf, "parcels", tier="cold")
        tx.delete("old")
        if point == "block":
            die()
        if point == "during":
            sys.setprofile(on_call)
    print("not killed")
    """
)


@pytest.mark.parametrize("catalog", ["sqlite", "postgresql"])
@pytest.mark.parametrize("point", ["block", "committing", "during", "after"])
def test_a_transaction_killed_before_during_or_after_its_commit_is_all_or_nothing(
    tmp_path, catalog, point, postgres_dsn, schemas
):
    config = _config(tmp_path, catalog, schemas, postgres_dsn)
    mem = mg.Memory(mg.StorageConfig.from_dict(config))
    mem.save(_gdf(3, 1), "old")
    child = subprocess.run([sys.executable, "-c", CRASHING_TRANSACTION, json.dumps(config), point],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -9, child.stdout + child.stderr

    mem = mg.Memory(mg.StorageConfig.from_dict(config))
    committed = point == "after"
    staged = mem.catalog.staged_versions()
    if committed:
        assert _state(mem) == {"cube": 1, "fields": 1, "parcels": 1}
        assert staged == []
    else:
        assert _state(mem) == {"old": 1}, "all or nothing: nothing"
        assert sorted(s.key for s in staged) == ["cube", "fields", "parcels"]
    mem.recover()
    assert mem.catalog.staged_versions() == []
    for version in staged:
        assert not mem.version_store.location(version).backend.exists(version.path), version.path
    assert mem.recover() == [], "no orphan left"
    if committed:
        expected = gpd.GeoDataFrame({"value": [1.0, 2.0]}, geometry=[Point(0, 0), Point(1, 1)],
                                    crs="EPSG:4326")
        assert_geodataframe_equal(mem.open("parcels").reset_index(drop=True), expected, check_like=True)
        published = mg.formats.registry.get_format("postgis").published_keys(mem.tiers.backend("cold"))
        assert published == ["parcels"], "recover() published the view the crash left behind"
    else:
        assert_geodataframe_equal(mem.open("old"), _gdf(3, 1))
