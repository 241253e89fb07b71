"""A transaction whose view cannot be published after its catalog commit (issue 14).

Real servers only: PostGIS tiers on the plugin's PostgreSQL, a SQLite or a PostgreSQL
catalog. The publication fails for a real reason: while the block runs, another session
creates a table under the name the new key's view needs. The commit point is the catalog
transaction: everything the transaction did stays committed and visible through
``mem.open``, ``mem.search`` and the catalog, the deletions are finished (views dropped,
data purged), the other views are published, the error says so, and ``mem.recover()``
publishes the lagging view once the table is gone.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
from geopandas.testing import assert_geodataframe_equal
from shapely.geometry import Point

import memories_geo as mg
from memories_geo.errors import FormatError, KeyNotFoundError


def _gdf(n: int, seed: int = 0) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    return gpd.GeoDataFrame({"value": rng.normal(size=n)},
                            geometry=[Point(x, y) for x, y in rng.uniform(0, 10, (n, 2))], crs="EPSG:4326")


def _in(tx: Any, body: Any) -> None:
    """Run ``body(tx)`` inside ``tx``'s ``with`` block."""
    with tx:
        body(tx)


def _same(back: gpd.GeoDataFrame, expected: gpd.GeoDataFrame) -> None:
    assert_geodataframe_equal(back.reset_index(drop=True), expected, check_like=True)


@pytest.fixture
def schemas(postgres_dsn: str) -> Iterator[list[str]]:
    import psycopg
    from psycopg import sql

    made: list[str] = []
    yield made
    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        for name in made:
            con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _memory(tmp_path: Path, catalog: str, dsn: str, schemas: list[str]) -> mg.Memory:
    """hot: GeoParquet on the local disk; cold: PostGIS; the catalog SQLite or PostgreSQL."""
    tier = f"txp_tier_{uuid.uuid4().hex[:10]}"
    schemas.append(tier)
    config: dict[str, Any] = {"home": str(tmp_path / "home"),
                              "tiers": {"cold": {"url": dsn, "storage_options": {"schema": tier}}}}
    if catalog == "postgresql":
        name = f"txp_cat_{uuid.uuid4().hex[:10]}"
        schemas.append(name)
        config["catalog"] = f"{dsn}{'&' if '?' in dsn else '?'}schema={name}"
    return mg.Memory(mg.StorageConfig.from_dict(config))


def _rows_of_view(backend: Any, key: str) -> int:
    from psycopg import sql

    from memories_geo.formats.postgis import view_name_for

    with backend.connection() as con:
        row = con.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(backend.schema, view_name_for(key)))).fetchone()
    return int(row[0])


def _relation_exists(backend: Any, name: str) -> bool:
    with backend.connection() as con:
        row = con.execute("SELECT to_regclass(%s)", (f'"{backend.schema}"."{name}"',)).fetchone()
    return row is not None and row[0] is not None


@pytest.mark.parametrize("catalog", ["sqlite", "postgresql"])
def test_a_view_blocked_after_the_commit_leaves_the_transaction_committed_and_recover_mends_it(
    tmp_path: Path, catalog: str, postgres_dsn: str, schemas: list[str]
) -> None:
    from psycopg import sql

    from memories_geo.formats.postgis import view_name_for

    mem = _memory(tmp_path, catalog, postgres_dsn, schemas)
    postgis = mg.formats.registry.get_format("postgis")
    backend = mem.tiers.backend("cold")
    mem.save(_gdf(3, 1), "a")
    mem.save(_gdf(3, 8), "parcels", tier="cold")
    mem.save(_gdf(3, 9), "old", tier="cold")
    mem.save(_gdf(3, 5), "gone")
    old_table = next(p for p in backend.version_paths() if p.startswith("old/"))
    gone_file = mem.catalog.current("gone")
    assert sorted(postgis.published_keys(backend)) == ["old", "parcels"]

    def body(tx: Any) -> None:
        tx.save(_gdf(4, 2), "a", mode="w")
        tx.save(_gdf(6, 4), "parcels", tier="cold", mode="w")
        tx.save(_gdf(5, 3), "blocked", tier="cold")
        tx.delete("old")
        tx.delete("gone")
        with backend.connection() as con:  # another session takes the view's name
            con.execute(sql.SQL("CREATE TABLE {} (x int)").format(
                sql.Identifier(backend.schema, view_name_for("blocked"))))

    tx = mem.transaction()
    with pytest.raises(FormatError) as raised:
        _in(tx, body)
    assert "'blocked'" in str(raised.value)
    assert "already exists (table)" in str(raised.value)
    notes = "\n".join(raised.value.__notes__)
    assert (f"transaction {tx.id} is committed: a v2, parcels v2, blocked v1 current; "
            "deleted: old, gone") in notes
    assert "the view of 'blocked' does not show v1" in notes
    assert "mem.recover()" in notes
    # committed, as seen through the catalog, search and open
    assert tx.state == "committed"
    assert [f"{e.key} v{e.version}" for e in tx.entries] == ["a v2", "parcels v2", "blocked v1"]
    assert {e.key: e.version for e in mem.catalog.current_entries()} == {"a": 2, "parcels": 2, "blocked": 1}
    assert sorted(mem.search().key) == ["a", "blocked", "parcels"]
    _same(mem.open("a"), _gdf(4, 2))
    _same(mem.open("parcels"), _gdf(6, 4))
    _same(mem.open("blocked"), _gdf(5, 3))
    for key in ("old", "gone"):
        with pytest.raises(KeyNotFoundError):
            mem.open(key)
    # the published names: the other view moved, the deleted key's view is dropped
    assert sorted(postgis.published_keys(backend)) == ["parcels"]
    assert _rows_of_view(backend, "parcels") == 6
    assert not _relation_exists(backend, view_name_for("old"))
    # the deleted data is purged, the staged rows are gone
    assert old_table not in list(backend.version_paths())
    assert not mem.tiers.backend("hot").exists(gone_file.path)
    assert mem.catalog.staged_versions() == []
    audit = mem.audit(outcome="error")
    assert audit.detail.str.contains(f"transaction {tx.id}: committed, 1 view\\(s\\) not published").any()

    # recover() cannot publish while the table holds the name, and says why
    with pytest.raises(FormatError, match="already exists"):
        mem.recover()
    with backend.connection() as con:
        con.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(backend.schema, view_name_for("blocked"))))
    assert mem.recover() == []
    assert sorted(postgis.published_keys(backend)) == ["blocked", "parcels"]
    assert _rows_of_view(backend, "blocked") == 5
    assert postgis.is_published(mem.version_store.location(mem.catalog.current("blocked")), "blocked")
    mem.verify()


def test_a_publish_failing_before_the_commit_keeps_nothing(
    tmp_path: Path, postgres_dsn: str, schemas: list[str]
) -> None:
    """The name taken *before* the save: refused at ``tx.save``; the block's exception keeps nothing."""
    from psycopg import sql

    from memories_geo.formats.postgis import view_name_for

    mem = _memory(tmp_path, "sqlite", postgres_dsn, schemas)
    backend = mem.tiers.backend("cold")
    mem.save(_gdf(3, 9), "old", tier="cold")
    with backend.connection() as con:
        con.execute(sql.SQL("CREATE TABLE {} (x int)").format(
            sql.Identifier(backend.schema, view_name_for("blocked"))))
    def body(tx: Any) -> None:
        tx.save(_gdf(4, 2), "a")
        tx.delete("old")
        tx.save(_gdf(5, 3), "blocked", tier="cold")

    tx = mem.transaction()
    with pytest.raises(FormatError, match="already exists"):
        _in(tx, body)
    assert tx.state == "rolled back"
    assert {e.key: e.version for e in mem.catalog.current_entries()} == {"old": 1}
    _same(mem.open("old"), _gdf(3, 9))
    assert mg.formats.registry.get_format("postgis").published_keys(backend) == ["old"]
    assert mem.catalog.staged_versions() == []
    assert mem.recover() == []
