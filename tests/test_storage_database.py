"""``DatabaseStorage``: structured collections as versioned, indexed PostgreSQL tables (real server)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from geopandas.testing import assert_geodataframe_equal
from shapely.geometry import Point

from memories_geo.errors import (
    ConfigError,
    KeyNotFoundError,
    OptionError,
    TierUnavailableError,
    UnsupportedObjectError,
)
from memories_geo.formats.postgis import view_name_for
from memories_geo.storage.database import DatabaseStorage, index_name

psycopg = pytest.importorskip("psycopg")
from psycopg import sql  # noqa: E402

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.filterwarnings("ignore::memories_geo.formats.timescaledb.TimescaleDBFallbackWarning"),
]

PASSWORD = "Pw-n0t-Sh0wn-7f3a"


def _with_password(dsn: str) -> str:
    """``dsn`` with a password (the test server trusts local connections, so it is not checked)."""
    parts = urlsplit(dsn)
    user = parts.username or "postgres"
    host = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{user}:{PASSWORD}@{host}").geturl()


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def db(tmp_path: Path, postgres_dsn: str, schema: str) -> Iterator[DatabaseStorage]:
    storage = DatabaseStorage(
        _with_password(postgres_dsn), table_prefix="earth_", pool_size=3, schema=schema,
        home=tmp_path / "home",
    )
    yield storage
    storage.close()


def _query(dsn: str, statement: Any, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as con:
        cur = con.execute(statement, params)
        return cur.fetchall() if cur.description is not None else []


def _sites(n: int = 6, offset: int = 0) -> gpd.GeoDataFrame:
    """A layer with mixed dtypes."""
    rng = np.random.default_rng(n + offset)
    return gpd.GeoDataFrame(
        {
            "name": [f"site-{i + offset}" for i in range(n)],
            "code": np.arange(offset, offset + n, dtype=np.int64),
            "small": np.arange(n, dtype=np.int16),
            "value": rng.normal(size=n),
            "ratio": rng.random(n).astype(np.float32),
            "active": [i % 2 == 0 for i in range(n)],
            "count": pd.array([i if i % 3 else None for i in range(n)], dtype="Int64"),
            "observed": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
            "kind": pd.Categorical(["a", "b"] * (n // 2)),
        },
        geometry=[Point(2.0 + i * 0.01, 48.0 + i * 0.01) for i in range(n)],
        crs="EPSG:4326",
    )


def _records() -> list[dict[str, Any]]:
    return [
        {"station_id": f"st{i % 3}", "time": pd.Timestamp("2024-03-01") + pd.Timedelta(hours=i),
         "temperature": 10.0 + i / 4, "flag": i % 2 == 0}
        for i in range(12)
    ]


def _indexes_in_database(dsn: str, schema: str, tables: list[str]) -> dict[tuple[str, str], str]:
    """(table, index name) -> access method, read from pg_indexes and pg_am."""
    rows = _query(
        dsn,
        "SELECT i.tablename, i.indexname, am.amname FROM pg_indexes i "
        "JOIN pg_class c ON c.relname = i.indexname "
        "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = i.schemaname "
        "JOIN pg_am am ON am.oid = c.relam WHERE i.schemaname = %s AND i.tablename = ANY(%s)",
        (schema, tables),
    )
    return {(t, name): method for t, name, method in rows}


# -- round trips --------------------------------------------------------------------------


def test_geodataframe_round_trip_is_exact(db: DatabaseStorage) -> None:
    gdf = _sites()
    entry = db.save_structured("sites", gdf, index_fields=["name", "code", "geometry"])
    assert entry.key == "earth_sites"
    assert entry.format == "postgis"
    assert entry.tier == "database"
    back = db.load_structured("sites")
    assert_geodataframe_equal(back, gdf, check_like=False)
    assert db.list_collections() == ["sites"]


def test_records_round_trip_as_time_series(db: DatabaseStorage) -> None:
    records = _records()
    entry = db.save_structured("readings", records, index_fields=["station_id"])
    assert entry.format == "timescaledb"
    pd.testing.assert_frame_equal(db.load_structured("readings"), pd.DataFrame(records))


def test_dataframe_round_trip_and_filters(db: DatabaseStorage) -> None:
    frame = pd.DataFrame(_records())
    db.save_structured("frame", frame, index_fields="station_id")
    pd.testing.assert_frame_equal(db.load_structured("frame"), frame)
    some = db.load_structured("frame", where={"station_id": "st1"}, columns=["station_id", "temperature"])
    expected = frame.loc[frame.station_id == "st1", ["time", "station_id", "temperature"]]
    assert list(some["temperature"]) == list(expected["temperature"])
    assert set(some["station_id"]) == {"st1"}


def test_bbox_and_where_are_pushed_down(db: DatabaseStorage) -> None:
    gdf = _sites(10)
    db.save_structured("sites", gdf, index_fields=["code"])
    inside = db.load_structured("sites", bbox=(1.99, 47.99, 2.025, 48.025))
    assert list(inside["code"]) == [0, 1, 2]
    one = db.load_structured("sites", where={"code": 7})
    assert list(one["name"]) == ["site-7"]


def test_plain_table_without_geometry_or_time_is_refused(db: DatabaseStorage) -> None:
    with pytest.raises(UnsupportedObjectError, match="neither a geometry nor a datetime"):
        db.save_structured("plain", [{"a": 1, "b": "x"}], index_fields=["a"])
    with pytest.raises(UnsupportedObjectError, match="not int"):
        db.save_structured("plain", 3)
    assert db.list_collections() == []


# -- indexes ----------------------------------------------------------------------------


def test_indexes_have_the_right_access_method(db: DatabaseStorage, postgres_dsn: str, schema: str) -> None:
    db.save_structured("sites", _sites(), index_fields=["name", "observed", "geometry"])
    (table,) = db.tables("sites")
    found = _indexes_in_database(postgres_dsn, schema, [table])
    assert found[(table, index_name(table, "name"))] == "btree"
    assert found[(table, index_name(table, "observed"))] == "btree"
    gist = [name for (t, name), method in found.items() if method == "gist"]
    assert len(gist) == 1, "the layer's own GiST index serves the geometry: no second one"
    assert db.indexes("sites") == {"geometry": "gist", "name": "btree", "observed": "btree"}


def test_index_is_used_by_a_query_on_the_field(db: DatabaseStorage, postgres_dsn: str, schema: str) -> None:
    db.save_structured("sites", _sites(2000), index_fields=["name"])
    (table,) = db.tables("sites")
    view = view_name_for("earth_sites")
    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        con.execute("SET enable_seqscan = off")
        plan = con.execute(
            sql.SQL("EXPLAIN SELECT * FROM {} WHERE name = %s").format(sql.Identifier(schema, view)),
            ("site-1234",),
        ).fetchall()
    text = "\n".join(row[0] for row in plan)
    assert index_name(table, "name") in text, text


def test_time_series_segments_are_indexed(db: DatabaseStorage, postgres_dsn: str, schema: str) -> None:
    db.save_structured("readings", _records(), index_fields=["station_id", "temperature"])
    tables = db.tables("readings")
    assert tables
    found = _indexes_in_database(postgres_dsn, schema, tables)
    for table in tables:
        assert found[(table, index_name(table, "station_id"))] == "btree"
        assert found[(table, index_name(table, "temperature"))] == "btree"
    indexed = db.indexes("readings")
    assert indexed["station_id"] == "btree"
    assert indexed["temperature"] == "btree"


def test_second_save_is_a_new_version_with_its_own_indexes(
    db: DatabaseStorage, postgres_dsn: str, schema: str
) -> None:
    first = db.save_structured("sites", _sites(), index_fields=["name"])
    (old_table,) = db.tables("sites")
    second = db.save_structured("sites", _sites(8, offset=100))
    assert (first.version, second.version) == (1, 2)
    (new_table,) = db.tables("sites")
    assert new_table != old_table
    found = _indexes_in_database(postgres_dsn, schema, [old_table, new_table])
    assert found[(new_table, index_name(new_table, "name"))] == "btree"
    assert found[(old_table, index_name(old_table, "name"))] == "btree"
    assert list(db.load_structured("sites")["code"]) == list(range(100, 108))
    assert list(db.load_structured("sites", version=1)["code"]) == list(range(6))
    third = db.save_structured("sites", _sites(4), index_fields=["code"], mode="a")
    (appended,) = db.tables("sites")
    assert third.version == 3
    assert len(db.load_structured("sites")) == 12
    assert db.indexes("sites") == {"code": "btree", "geometry": "gist"}
    names = {n for (_, n) in _indexes_in_database(postgres_dsn, schema, [appended])}
    assert index_name(appended, "code") in names


def test_unknown_field_is_an_option_error_naming_the_columns(db: DatabaseStorage) -> None:
    with pytest.raises(OptionError, match=r"cannot index \['nope'\].*columns: \['name', 'code'"):
        db.save_structured("sites", _sites(), index_fields=["name", "nope"])
    with pytest.raises(KeyNotFoundError):
        db.load_structured("sites")
    with pytest.raises(OptionError, match="mode must be one of"):
        db.save_structured("sites", _sites(), mode="x")  # type: ignore[arg-type]


def test_delete_and_list(db: DatabaseStorage, postgres_dsn: str, schema: str) -> None:
    db.save_structured("b", _sites())
    db.save_structured("a", _records())
    other = DatabaseStorage(db.url, table_prefix="other_", schema=db.schema, home=db.home)
    try:
        other.save_structured("c", _sites())
        assert db.list_collections() == ["a", "b"]
        assert other.list_collections() == ["c"]
    finally:
        other.close()
    (table,) = db.tables("b")
    db.delete_structured("b")
    assert db.list_collections() == ["a"]
    left = _query(
        postgres_dsn,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (schema, table),
    )
    assert left == [(0,)]


def test_catalog_lives_under_home(tmp_path: Path, postgres_dsn: str, schema: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORIES_GEO_HOME", str(tmp_path / "env-home"))
    storage = DatabaseStorage(postgres_dsn, schema=schema)
    try:
        assert storage.catalog_path.parent == tmp_path / "env-home" / "databases"
        storage.save_structured("sites", _sites())
        assert storage.catalog_path.is_file()
        again = DatabaseStorage(postgres_dsn, schema=schema)
        assert again.list_collections() == ["sites"]
        again.close()
    finally:
        storage.close()


# -- async -----------------------------------------------------------------------------


def test_awaitable_forms(db: DatabaseStorage) -> None:
    gdf = _sites()

    async def main() -> tuple[Any, Any, Any]:
        entry = await db.save_structured("sites", gdf, index_fields=["name"])  # type: ignore[misc]
        twin = await db.asave_structured("sites", gdf)
        back = await db.aload_structured("sites")
        names = await db.list_collections()  # type: ignore[misc]
        return entry, twin, (back, names)

    entry, twin, (back, names) = asyncio.run(main())
    assert (entry.version, twin.version) == (1, 2)
    assert_geodataframe_equal(back, gdf)
    assert names == ["sites"]
    assert db.indexes("sites") == {"geometry": "gist", "name": "btree"}


# -- secrets ---------------------------------------------------------------------------


def test_password_is_never_shown(
    db: DatabaseStorage, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG, logger="memories_geo")
    assert PASSWORD in db.url
    assert PASSWORD not in repr(db)
    assert "***" in repr(db)
    db.save_structured("sites", _sites(), index_fields=["name"])
    entry = db.memory.info("earth_sites")
    assert PASSWORD not in repr(entry)
    assert PASSWORD not in entry.uri
    assert PASSWORD not in db.catalog_path.name
    objects = _query(
        db.url,
        sql.SQL("SELECT count(*) FROM {} WHERE position(%s in convert_from(data, 'UTF8')) > 0").format(
            sql.Identifier(db.schema, "memories_geo_objects")
        ),
        (PASSWORD,),
    )
    assert objects == [(0,)]
    for stored in db.catalog_path.parent.iterdir():
        assert PASSWORD.encode() not in stored.read_bytes(), stored
    with pytest.raises(OptionError) as unknown:
        db.save_structured("sites", _sites(), index_fields=["nope"])
    assert PASSWORD not in str(unknown.value)
    with pytest.raises(ConfigError) as bad_url:
        DatabaseStorage(f"mysql://me:{PASSWORD}@db/gis", home=tmp_path)
    assert PASSWORD not in str(bad_url.value)
    down = DatabaseStorage(f"postgresql://me:{PASSWORD}@127.0.0.1:9/gis", home=tmp_path)
    with pytest.raises(TierUnavailableError) as unreachable:
        down.save_structured("sites", _sites())
    assert PASSWORD not in str(unreachable.value)
    assert PASSWORD not in caplog.text
