from __future__ import annotations

import json
import logging
import threading
import uuid
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
from shapely.geometry import LineString, Point
from vector_cases import (
    CUSTOM_PROJ,
    VECTOR_CASES,
    assert_same_vector,
    attributes_frame,
    make_case,
    make_grid_layer,
)

import memories_geo as mg
from memories_geo.backends import make_backend
from memories_geo.backends.base import Capability, Location
from memories_geo.backends.postgres import PostgresBackend, safe_identifier, table_name_for
from memories_geo.errors import ChecksumMismatchError, FormatError, OptionError, UnsupportedObjectError
from memories_geo.footprint import vector_footprint
from memories_geo.formats.postgis import CUSTOM_SRID_START, PostGISFormat, view_name_for
from memories_geo.formats.postgis import copy as pgcopy
from memories_geo.formats.postgis.layout import Prepared
from memories_geo.formats.registry import get_format
from memories_geo.query import open_request
from memories_geo.records import record_path
from memories_geo.testing import FormatRoundTripTests

psycopg = pytest.importorskip("psycopg")
from psycopg import sql  # noqa: E402

pytestmark = pytest.mark.postgres

KEY = "tests/layer"
INJECTION_KEY = "Robert'); DROP TABLE--"

#: The whole vector test matrix, as every format runs it.
ROUND_TRIP_CASES = dict(VECTOR_CASES)


def _schema_fixture(dsn: str):
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def schema(postgres_dsn: str):
    """A schema of its own for each test, dropped afterwards."""
    yield from _schema_fixture(postgres_dsn)


def _memory(tmp_path: Path, dsn: str, schema: str, **options: Any) -> mg.Memory:
    config = mg.StorageConfig.from_dict(
        {
            "home": str(tmp_path / "home"),
            "tiers": {"warm": {"url": dsn, "storage_options": {"schema": schema, **options}}},
        }
    )
    return mg.Memory(config)


@pytest.fixture
def mem(tmp_path: Path, postgres_dsn: str, schema: str) -> mg.Memory:
    return _memory(tmp_path, postgres_dsn, schema)


def _query(dsn: str, statement: Any, params: Any = None) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as con:
        cur = con.execute(statement, params)
        return cur.fetchall() if cur.description is not None else []


def _table(mem: mg.Memory, key: str, version: int | None = None) -> str:
    entry = mem.info(key, version=version)
    table = mem.tiers.backend("warm").table_for(entry.path)
    assert table is not None
    return table


# -- the shared round-trip contract ------------------------------------------------------


class TestPostGISRoundTrip(FormatRoundTripTests):
    format_name = "postgis"
    tier = "warm"

    @pytest.fixture
    def memory(self, tmp_path: Path, postgres_dsn: str, schema: str) -> mg.Memory:
        return _memory(tmp_path, postgres_dsn, schema)

    @pytest.fixture(params=list(ROUND_TRIP_CASES))
    def case(self, request: pytest.FixtureRequest) -> Any:
        return ROUND_TRIP_CASES[request.param]()

    def assert_same(self, expected: Any, actual: Any) -> None:
        assert_same_vector(expected, actual)

    def corrupt(self, memory: mg.Memory, entry: Any) -> str:
        """Renumber the last row (or, in an empty table, insert one): the table digest changes."""
        backend = memory.tiers.backend(entry.tier)
        table = backend.table_for(entry.path)
        row_id = sql.Identifier(entry.object_info["row_id"])
        with backend.connection() as con:
            changed = con.execute(
                sql.SQL("UPDATE {t} SET {r} = {r} + 1000000 WHERE {r} = (SELECT max({r}) FROM {t})").format(
                    t=backend.identifier(table), r=row_id
                )
            ).rowcount
            if not changed:
                insert = sql.SQL("INSERT INTO {} ({}) VALUES (1)")
                con.execute(insert.format(backend.identifier(table), row_id))
        return table

    def test_input_is_not_modified(self, memory: mg.Memory, case: Any) -> None:
        before = case.copy(deep=True)
        memory.save(case, self.key, format=self.format_name, tier=self.tier)
        assert_same_vector(before, case)


# -- nanosecond times ---------------------------------------------------------------------


def _nanosecond_layer() -> gpd.GeoDataFrame:
    times = ["1969-12-31T23:59:59.999999999", None, "2024-01-01T00:00:00.000000001", "1677-09-22",
             "2262-04-11T23:47:16.854775807", "2024-06-01T12:00:00.123456789"]
    return gpd.GeoDataFrame(
        {
            "when": pd.array(times, dtype="datetime64[ns]"),
            "when_paris": pd.to_datetime(pd.array(times, dtype="datetime64[ns]")).tz_localize("Europe/Paris"),
            "whole_us": pd.array(["2024-01-01T00:00:00.000001"] * 6, dtype="datetime64[ns]"),
            "when.ns": np.arange(6),  # the name a companion column would take first
        },
        geometry=[Point(i, i) for i in range(6)], crs="EPSG:4326",
    )


@pytest.mark.parametrize("engine", ["adbc", "psycopg"])
def test_nanosecond_times_round_trip_through_a_companion_column(
    mem: mg.Memory, postgres_dsn: str, schema: str, engine: str
) -> None:
    """PostgreSQL keeps microseconds: the rest (0-999 ns) goes into a smallint column beside them."""
    gdf = _nanosecond_layer()
    entry = mem.save(gdf, KEY, tier="warm")
    assert_same_vector(gdf, mem.open(KEY, engine=engine))
    mem.verify(KEY)
    columns = {e["name"]: e for e in entry.object_info["columns"]}
    assert "ns_column" not in columns["whole_us"]
    assert "ns_column" not in columns["when.ns"]
    companion = columns["when"]["ns_column"]
    assert companion not in {e["column"] for e in entry.object_info["columns"]}
    # SQL clients see a microsecond timestamp (floored, so it never moves a time forward) and the rest
    rows = _query(postgres_dsn, sql.SQL("SELECT {}, {}, {} FROM {} ORDER BY mg_row").format(
        sql.Identifier(columns["when"]["column"]), sql.Identifier(companion),
        sql.Identifier(columns["when_paris"]["ns_column"]), sql.Identifier(schema, view_name_for(KEY))))
    assert [r[1] for r in rows] == [999, None, 1, 0, 807, 789]
    assert [r[2] for r in rows] == [999, None, 1, 0, 807, 789]
    assert str(rows[0][0]) == "1969-12-31 23:59:59.999999"
    back = mem.open(KEY, columns=["when"], where={"when.ns": 4}, engine=engine)
    assert back["when"].tolist() == [gdf["when"][4]]


def test_appending_nanosecond_times_to_a_layer_without_them(mem: mg.Memory) -> None:
    first = _nanosecond_layer()
    first["when"] = first["when"].dt.floor("us")
    first["when_paris"] = first["when_paris"].dt.floor("us")
    mem.save(first, KEY, tier="warm")
    assert all("ns_column" not in e for e in mem.info(KEY).object_info["columns"])
    more = _nanosecond_layer()
    mem.save(more, KEY, tier="warm", mode="a")
    assert_same_vector(pd.concat([first, more], ignore_index=True), mem.open(KEY))
    mem.save(first, KEY, tier="warm", mode="a")  # and back: rows without a rest append too
    assert_same_vector(pd.concat([first, more, first], ignore_index=True), mem.open(KEY))
    mem.verify(KEY)


# -- configuration, registry, backend -----------------------------------------------------


def test_database_tier_chooses_postgis(mem: mg.Memory) -> None:
    gdf = make_case("geometry-points")
    entry = mem.save(gdf, KEY, tier="warm")
    assert entry.format == "postgis"
    assert isinstance(get_format("postgis"), PostGISFormat)
    assert isinstance(mem.tiers.backend("warm"), PostgresBackend)
    assert_same_vector(gdf, mem.open(KEY))


def test_backend_capabilities_and_lazy_pool(postgres_dsn: str) -> None:
    backend = make_backend(postgres_dsn, {"schema": "lazy_x"})
    assert isinstance(backend, PostgresBackend)
    assert backend.capabilities == {
        Capability.WRITES, Capability.LISTING, Capability.TABLES, Capability.POSTGRESQL,
    }
    assert not backend.connected
    assert not hasattr(backend, "fs")
    assert not hasattr(backend, "full_path")
    with pytest.raises(mg.TierUnavailableError, match="'files'"):
        _ = Location(backend, "x/@v/1").fs
    assert not backend.connected
    with pytest.raises(mg.ConfigError, match="unknown storage_options"):
        PostgresBackend(postgres_dsn, {"schemaa": "x"})


def test_small_objects_are_stored_like_files(postgres_dsn: str, schema: str) -> None:
    """write_bytes / read_bytes / remove work on PostgreSQL as on file tiers."""
    backend = PostgresBackend(postgres_dsn, {"schema": schema})
    with pytest.raises(FileNotFoundError, match=r"a/@v/1\.record\.json"):
        backend.read_bytes("a/@v/1.record.json")
    assert not backend.exists("a")
    data = bytes(range(256)) * 3
    backend.write_bytes("a/@v/1.record.json", data)
    backend.write_bytes("a/@v/1.record.json", data + b"!")
    backend.write_bytes("@checkpoints/one.json", b"{}")
    assert backend.read_bytes("a/@v/1.record.json") == data + b"!"
    assert backend.exists("a/@v/1.record.json")
    assert backend.exists("a")
    assert backend.listdir("") == ["@checkpoints", "a"]
    assert backend.listdir("a/@v") == ["1.record.json"]
    assert backend.version_paths() == ["a/@v/1"]  # a lone record names its version, for recovery
    backend.remove("a/@v/1.record.json")
    with pytest.raises(FileNotFoundError):
        backend.read_bytes("a/@v/1.record.json")
    assert backend.read_bytes("@checkpoints/one.json") == b"{}"
    backend.remove("@checkpoints")
    assert backend.listdir("") == []
    backend.close()


def test_postgis_needs_a_tables_backend(tmp_path: Path) -> None:
    from memories_geo.backends.files import FileBackend

    location = Location(FileBackend(str(tmp_path)), "k/@v/1")
    with pytest.raises(mg.TierUnavailableError, match="'postgresql'"):
        PostGISFormat().open(location, {}, open_request())


def test_unreachable_server_is_a_tier_error(tmp_path: Path) -> None:
    from memories_geo.testing.services import free_port

    backend = PostgresBackend(f"postgresql://nobody@127.0.0.1:{free_port()}/db", {"timeout": 2})
    with pytest.raises(mg.TierUnavailableError, match="cannot connect"):
        backend.version_paths()


def test_physical_names_are_safe_and_unique() -> None:
    a = table_name_for(f"{INJECTION_KEY}/@v/1")
    b = table_name_for(f"{INJECTION_KEY}/@v/2")
    assert a != b
    assert a.startswith("robert_drop_table__v_")
    long_key = "données/été/" + "x" * 200
    name = table_name_for(f"{long_key}/@v/1")
    assert len(name.encode()) <= 63
    assert all(c.isascii() and (c.isalnum() or c == "_") for c in name)
    view = view_name_for(long_key)
    assert len(view.encode()) <= 63
    assert view != view_name_for(long_key + "y")
    assert view_name_for("données/été") == "données/été"
    assert safe_identifier("a\x00b") != "a\x00b"


def test_registry_lists_and_removes_versions(mem: mg.Memory) -> None:
    entry = mem.save(make_case("geometry-points"), KEY, tier="warm")
    backend = mem.tiers.backend("warm")
    assert backend.version_paths() == [entry.path]
    assert backend.exists(entry.path)
    assert backend.exists("tests")
    assert backend.listdir("") == ["tests"]
    assert backend.listdir("tests/layer") == ["@v"]
    name = entry.path.rsplit("/", 1)[1]
    assert backend.listdir("tests/layer/@v") == [name, record_path(name)]
    assert json.loads(backend.read_bytes(record_path(entry.path)))["version_id"] == entry.version_id
    mem.delete(KEY)
    assert not backend.exists(entry.path)
    assert not backend.exists(record_path(entry.path))
    assert backend.version_paths() == []


# -- what gets created ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "geometry_type", "dims"),
    [
        ("geometry-points", "POINT", 2),
        ("geometry-polygons_with_holes", "POLYGON", 2),
        ("geometry-mixed_types", "GEOMETRY", 2),
        ("geometry-3d", "GEOMETRY", 3),
    ],
)
def test_typmod_gist_index_and_primary_key(
    mem: mg.Memory, postgres_dsn: str, schema: str, case: str, geometry_type: str, dims: int
) -> None:
    gdf = make_case(case)
    mem.save(gdf, KEY, tier="warm")
    table = _table(mem, KEY)
    rows = _query(
        postgres_dsn,
        "SELECT f_table_name, type, srid, coord_dimension FROM geometry_columns "
        "WHERE f_table_schema = %s ORDER BY f_table_name",
        (schema,),
    )
    assert sorted(rows) == sorted([
        (table, geometry_type, 4326, dims), (view_name_for(KEY), geometry_type, 4326, dims)
    ])
    assert _indexes(postgres_dsn, schema, table) == [("btree", True), ("gist", False)]
    (analyzed,) = _query(
        postgres_dsn, "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE schemaname = %s "
        "AND relname = %s", (schema, table),
    )
    assert analyzed == (True,)


def test_3d_points_get_a_pointz_typmod(mem: mg.Memory, postgres_dsn: str, schema: str) -> None:
    gdf = gpd.GeoDataFrame({"v": [1, 2]}, geometry=[Point(0, 0, 1), Point(1, 1, 2)], crs="EPSG:4979")
    mem.save(gdf, KEY, tier="warm")
    rows = _query(postgres_dsn, "SELECT type, srid, coord_dimension FROM geometry_columns "
                  "WHERE f_table_schema = %s AND f_table_name = %s", (schema, view_name_for(KEY)))
    assert rows == [("POINT", 4979, 3)]
    assert_same_vector(gdf, mem.open(KEY))


def test_custom_crs_goes_into_spatial_ref_sys_once(mem: mg.Memory, postgres_dsn: str) -> None:
    gdf = make_case("crs-custom_proj")
    first = mem.save(gdf, KEY, tier="warm")
    second = mem.save(gdf, KEY + "2", tier="warm")
    (srid,) = {e["srid"] for e in (first.object_info["columns"] + second.object_info["columns"])
               if e.get("geometry")}
    assert srid >= CUSTOM_SRID_START
    (srtext,) = _query(postgres_dsn, "SELECT srtext FROM spatial_ref_sys WHERE srid = %s", (srid,))[0]
    assert pyproj.CRS.from_wkt(srtext).equals(pyproj.CRS.from_proj4(CUSTOM_PROJ), ignore_axis_order=True)
    # PostGIS itself can use it: reproject a stored point to EPSG:4326 on the server
    x, y = 500_000.0, 0.0
    ((lon, lat),) = _query(
        postgres_dsn,
        "SELECT ST_X(g), ST_Y(g) FROM ST_Transform(ST_SetSRID(ST_MakePoint(%s, %s), %s), 4326) g",
        (x, y, srid),
    )
    expected = pyproj.Transformer.from_crs(CUSTOM_PROJ, "EPSG:4326", always_xy=True).transform(x, y)
    assert (lon, lat) == pytest.approx(expected, abs=1e-6)
    assert_same_vector(gdf, mem.open(KEY))


# -- the stable view -----------------------------------------------------------------------


def test_view_swaps_atomically_and_goes_with_the_key(
    mem: mg.Memory, postgres_dsn: str, schema: str
) -> None:
    v1 = make_grid_layer(30)
    v2 = make_grid_layer(50).assign(extra=lambda d: d["value"] * 2)  # other columns: drop + create
    mem.save(v1, KEY, tier="warm")
    view = sql.Identifier(schema, view_name_for(KEY))
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        with psycopg.connect(postgres_dsn, autocommit=True) as con:
            while not stop.is_set():
                try:
                    seen.append(con.execute(sql.SQL("SELECT count(*) FROM {}").format(view)).fetchone()[0])
                except BaseException as exc:
                    errors.append(exc)
                    return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        while len(seen) < 3:
            threading.Event().wait(0.01)
        mem.save(v2, KEY, tier="warm", mode="w")
        count = len(seen)
        while len(seen) < count + 3:
            threading.Event().wait(0.01)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert set(seen) == {len(v1), len(v2)}
    switch = seen.index(len(v2))
    assert all(n == len(v1) for n in seen[:switch])
    assert all(n == len(v2) for n in seen[switch:])
    columns = _query(postgres_dsn, sql.SQL("SELECT * FROM {} LIMIT 0").format(view))
    assert columns == []
    with psycopg.connect(postgres_dsn) as con:
        cur = con.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(view))
        assert "extra" in [d.name for d in cur.description]
    mem.delete(KEY)
    regclass = f'"{schema}"."{view_name_for(KEY)}"'
    assert _query(postgres_dsn, "SELECT to_regclass(%s)", (regclass,)) == [(None,)]
    assert mem.tiers.backend("warm").version_paths() == []


def test_same_columns_keep_dependent_views(mem: mg.Memory, postgres_dsn: str, schema: str) -> None:
    mem.save(make_grid_layer(10), KEY, tier="warm")
    view = sql.Identifier(schema, view_name_for(KEY))
    user_view = sql.Identifier(schema, "users_view")
    _query(postgres_dsn, sql.SQL("CREATE VIEW {} AS SELECT label FROM {}").format(user_view, view))
    mem.save(make_grid_layer(12), KEY, tier="warm", mode="w")
    assert _query(postgres_dsn, sql.SQL("SELECT count(*) FROM {}").format(user_view)) == [(12 * 3 + 2,)]
    _query(postgres_dsn, sql.SQL("DROP VIEW {}").format(user_view))


def test_a_foreign_relation_with_the_view_name_is_not_replaced(
    mem: mg.Memory, postgres_dsn: str, schema: str
) -> None:
    mem.tiers.backend("warm").ensure_ready()
    _query(postgres_dsn, sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(schema, "precious")))
    with pytest.raises(mg.FormatError, match="already exists"):
        mem.save(make_case("geometry-points"), "precious", tier="warm")
    assert _query(postgres_dsn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "precious")))


# -- hostile names ---------------------------------------------------------------------------


def test_injection_looking_key_and_columns_are_stored_literally(
    mem: mg.Memory, postgres_dsn: str, schema: str
) -> None:
    gdf = gpd.GeoDataFrame(
        {
            "select": [1, 2],
            "order": ["a", "b"],
            'x"); DROP TABLE memories_geo_tables; --': [1.5, 2.5],
            "données été": ["é", "ü"],
            "y" * 80: [True, False],
        },
        geometry=[Point(0, 0), Point(1, 1)],
        crs="EPSG:4326",
    )
    mem.save(gdf, INJECTION_KEY, tier="warm")
    back = mem.open(INJECTION_KEY)
    assert_same_vector(gdf, back)
    assert _query(postgres_dsn, sql.SQL("SELECT \"select\", \"order\" FROM {} ORDER BY 1").format(
        sql.Identifier(schema, INJECTION_KEY))) == [(1, "a"), (2, "b")]
    tables = {r[0] for r in _query(postgres_dsn, "SELECT tablename FROM pg_tables WHERE schemaname = %s",
                                   (schema,))}
    assert {"memories_geo_tables", "memories_geo_views"} <= tables
    expected = gdf[gdf["order"] == "b"].reset_index(drop=True)
    assert_same_vector(expected, mem.open(INJECTION_KEY, where={"order": "b"}))


# -- reading with pushdown ----------------------------------------------------------------------

GRID_BOXES = {
    "partial": (450_000.0, 5_050_000.0, 600_000.0, 5_250_000.0),
    "small": (500_000.0, 5_100_000.0, 520_000.0, 5_120_000.0),
    "everything": (0.0, 0.0, 1e7, 1e7),
    "nothing": (0.0, 0.0, 1.0, 1.0),
}


@pytest.mark.parametrize("engine", ["adbc", "psycopg"])
@pytest.mark.parametrize("name", list(GRID_BOXES))
def test_bbox_returns_exactly_the_intersecting_rows(mem: mg.Memory, name: str, engine: str) -> None:
    gdf = make_grid_layer(60)
    mem.save(gdf, KEY, tier="warm")
    box = GRID_BOXES[name]
    mask = shapely.intersects(np.asarray(gdf.geometry.values._data), shapely.box(*box))
    expected = gdf[mask]
    if name == "partial":
        assert 0 < len(expected) < len(gdf) - 2
    if not mask.all():
        expected = expected.reset_index(drop=True)
    assert_same_vector(expected, mem.open(KEY, bbox=box, bbox_crs="EPSG:32631", engine=engine))


def test_bbox_excludes_geometries_whose_envelope_alone_intersects(mem: mg.Memory) -> None:
    gdf = gpd.GeoDataFrame(
        {"name": ["diagonal", "far", "inside"]},
        geometry=[LineString([(0, 0), (10, 10)]), Point(50, 50), Point(9, 1)],
        index=pd.Index(["d", "f", "i"], name="id"),
        crs="EPSG:3857",
    )
    mem.save(gdf, KEY, tier="warm")
    assert_same_vector(gdf.loc[["i"]], mem.open(KEY, bbox=(8, 0, 10, 2), bbox_crs="EPSG:3857"))


def test_bbox_is_validated(mem: mg.Memory) -> None:
    mem.save(make_grid_layer(5), KEY, tier="warm")
    with pytest.raises(ValueError, match="min <= max"):
        mem.open(KEY, bbox=(10, 0, 0, 10))
    with pytest.raises(ValueError, match="four finite numbers"):
        mem.open(KEY, bbox=(0, 0, 1))
    with pytest.raises(ValueError, match="bbox_crs= needs bbox="):
        mem.open(KEY, bbox_crs="EPSG:32631")


def test_columns_reads_only_those_columns(mem: mg.Memory) -> None:
    gdf = attributes_frame()
    gdf.index = pd.Index(list("vwxyz"), name="code")
    mem.save(gdf, KEY, tier="warm")
    back = mem.open(KEY, columns=["unicode", "datetime_ns", "datetime_paris", "geometry"])
    assert_same_vector(gdf[["unicode", "datetime_ns", "datetime_paris", "geometry"]], back)
    assert list(mem.open(KEY, columns=["int64"]).columns) == ["int64", "geometry"]
    assert list(mem.open(KEY, columns="int64").columns) == ["int64", "geometry"]
    with pytest.raises(ValueError, match="unknown column"):
        mem.open(KEY, columns=["nope"])


@pytest.mark.parametrize("engine", ["adbc", "psycopg"])
def test_where_bbox_and_columns_together(mem: mg.Memory, engine: str) -> None:
    gdf = make_grid_layer(40)
    gdf["kind"] = np.where(np.arange(len(gdf)) % 3 == 0, "a", "b")
    gdf.loc[5, "kind"] = None
    mem.save(gdf, KEY, tier="warm")
    box = GRID_BOXES["partial"]
    inside = gdf.intersects(shapely.box(*box))
    expected = gdf[inside & (gdf["kind"] == "a")][["label", "geometry"]].reset_index(drop=True)
    got = mem.open(KEY, bbox=box, bbox_crs="EPSG:32631", columns=["label", "geometry"], where={"kind": "a"},
                   engine=engine)
    assert_same_vector(expected, got)
    assert_same_vector(gdf[gdf["kind"].isna()].reset_index(drop=True), mem.open(KEY, where={"kind": None}))
    labels = ["f1", "f7", "nope"]
    assert_same_vector(
        gdf[gdf["label"].isin(labels)].reset_index(drop=True), mem.open(KEY, where={"label": labels})
    )
    composed = sql.SQL("{} >= {}").format(sql.Identifier("value"), sql.Literal(50.0))
    assert_same_vector(gdf[gdf["value"] >= 50].reset_index(drop=True), mem.open(KEY, where=composed))


def test_where_refuses_raw_sql_and_unknown_columns(mem: mg.Memory) -> None:
    mem.save(make_grid_layer(5), KEY, tier="warm")
    with pytest.raises(TypeError, match="raw SQL strings are refused"):
        mem.open(KEY, where="value > 1; DROP TABLE x")
    with pytest.raises(ValueError, match="unknown column"):
        mem.open(KEY, where={"value; --": 1})
    hostile = "x' OR '1'='1"
    assert len(mem.open(KEY, where={"label": hostile})) == 0
    with pytest.raises(OptionError, match=r"'chunks'.*accepted keywords.*'where', 'engine'"):
        mem.open(KEY, chunks={})
    with pytest.raises(OptionError, match="engine must be one of"):
        mem.open(KEY, engine="odbc")


# -- the open contract: bbox in any CRS, time, columns, options ---------------------------------


def test_bbox_is_in_wgs84_unless_bbox_crs_says_otherwise(mem: mg.Memory) -> None:
    """A lon/lat box and the same box in the layer's CRS select the same rows, on the server."""
    gdf = make_grid_layer(60)  # EPSG:32631
    mem.save(gdf, KEY, tier="warm")
    box = (2.0, 45.5, 3.5, 47.0)
    native = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32631", always_xy=True).transform_bounds(
        *box, densify_pts=21)
    expected = gdf[gdf.intersects(shapely.box(*native))].reset_index(drop=True)
    assert 0 < len(expected) < len(gdf) - 10
    in_wgs84 = mem.open(KEY, bbox=box)
    assert_same_vector(expected, in_wgs84)
    assert_same_vector(expected, mem.open(KEY, bbox=native, bbox_crs="EPSG:32631"))
    assert_same_vector(expected, mem.open(KEY, bbox=native, bbox_crs=pyproj.CRS("EPSG:32631")))
    assert len(mem.open(KEY, bbox=(-60.0, -10.0, -50.0, 0.0))) == 0


def _timed_layer(tz: str | None = None) -> gpd.GeoDataFrame:
    when = pd.to_datetime([
        "2024-01-01T23:59:59.999999", "2024-01-02T00:00:00", "2024-01-02T12:00:00.000000001", None,
        "2024-01-03T23:59:59.999999", "2024-01-03T23:59:59.999999500", "2024-01-04T00:00:00",
        "2024-01-02T00:30:00",
    ], format="ISO8601")
    gdf = gpd.GeoDataFrame(
        {
            "label": [f"r{i}" for i in range(len(when))],
            "when": when if tz is None else when.tz_localize(tz),
            "later": pd.to_datetime(["2030-01-01"] * len(when)),  # a second datetime column, not used
        },
        geometry=[Point(i, i) for i in range(len(when))], crs="EPSG:4326",
    )
    return gdf


def _utc_naive(values: pd.Series) -> pd.Series:
    return values.dt.tz_convert("UTC").dt.tz_localize(None) if values.dt.tz is not None else values


@pytest.mark.parametrize("tz", [None, "Europe/Paris"])
@pytest.mark.parametrize("engine", ["adbc", "psycopg"])
@pytest.mark.parametrize(
    "time", [("2024-01-02", "2024-01-03"), "2024-01-02", (None, "2024-01-02T00:00:00"), ("2024-01-03", None),
             slice("2023", "2025")],
)
def test_time_selects_rows_on_the_first_datetime_column(mem: mg.Memory, tz: str | None, engine: str,
                                                         time: Any) -> None:
    gdf = _timed_layer(tz)
    entry = mem.save(gdf, KEY, tier="warm")
    lo, hi = open_request(time=time).time
    when = _utc_naive(gdf["when"])
    assert pd.Timestamp(entry.time_start) == when.min()  # the column the footprint's time range comes from
    mask = when.notna()
    if lo is not None:
        mask &= when >= lo
    if hi is not None:
        mask &= when <= hi
    expected = gdf[mask].reset_index(drop=True)
    assert 0 < len(expected) < len(gdf)
    got = mem.open(KEY, time=time, engine=engine)
    assert_same_vector(expected, got)


def test_time_with_bbox_columns_and_where_through_the_format(mem: mg.Memory) -> None:
    gdf = _timed_layer()
    entry = mem.save(gdf, KEY, tier="warm")
    location = Location(mem.tiers.backend("warm"), entry.path)
    request = open_request(bbox=(1.5, 1.5, 10, 10), time="2024-01-02", columns=["label"],
                           options={"where": {"label": ["r2", "r7", "r1"]}})
    got = PostGISFormat().open(location, entry.object_info, request)
    expected = gdf.iloc[[2, 7]][["label", "geometry"]].reset_index(drop=True)
    assert_same_vector(expected, got)


def test_time_needs_a_datetime_column(mem: mg.Memory) -> None:
    gdf = make_grid_layer(5)
    gdf.index = pd.date_range("2024-01-01", periods=len(gdf), name="when")  # an index is not a column
    mem.save(gdf, KEY, tier="warm", format="postgis")
    with pytest.raises(OptionError, match=r"first datetime column.*has none"):
        mem.open(KEY, time="2024-01-01")


def test_columns_means_nothing_for_a_geoseries(mem: mg.Memory) -> None:
    series = gpd.GeoSeries([Point(0, 0), Point(1, 1)], crs="EPSG:4326", name="shape")
    mem.save(series, KEY, tier="warm")
    with pytest.raises(OptionError, match="GeoSeries"):
        mem.open(KEY, columns=["shape"])
    assert_same_vector(series.iloc[1:].reset_index(drop=True), mem.open(KEY, bbox=(0.5, 0.5, 2, 2)))


def test_columns_always_keep_the_active_geometry(mem: mg.Memory) -> None:
    gdf = make_case("second-geometry-column")
    mem.save(gdf, KEY, tier="warm")
    back = mem.open(KEY, columns=["centroid_3857"])
    assert list(back.columns) == ["centroid_3857", "geometry"]
    assert back.geometry.name == "geometry"
    assert_same_vector(gdf[["centroid_3857", "geometry"]], back)


def test_the_views_table_belongs_to_the_format(mem: mg.Memory, postgres_dsn: str, schema: str) -> None:
    """The backend creates its tables of record; the view registry comes with the first PostGIS save."""
    mem.tiers.backend("warm").ensure_ready()

    def tables() -> set[str]:
        return {r[0] for r in _query(postgres_dsn, "SELECT tablename FROM pg_tables WHERE schemaname = %s",
                                     (schema,))}

    assert tables() == {"memories_geo_tables", "memories_geo_objects"}
    mem.save(make_case("geometry-points"), KEY, tier="warm")
    assert tables() - {_table(mem, KEY)} == {
        "memories_geo_tables", "memories_geo_objects", "memories_geo_views"
    }


# -- appending ------------------------------------------------------------------------------------


def test_mode_a_appends_server_side_and_keeps_v1(mem: mg.Memory) -> None:
    first = make_grid_layer(10)
    second = make_grid_layer(10).iloc[:7].reset_index(drop=True)
    second["value"] += 1000
    v1 = mem.save(first, KEY, tier="warm")
    v2 = mem.save(second, KEY, mode="a")
    assert (v1.version, v2.version) == (1, 2)
    assert v2.format == "postgis"
    assert_same_vector(pd.concat([first, second], ignore_index=True), mem.open(KEY))
    assert_same_vector(first, mem.open(KEY, version=1))
    assert v2.shape == {"rows": len(first) + len(second)}
    assert v2.bbox == pytest.approx(mem.info(KEY).bbox)
    full = vector_footprint(pd.concat([first, second], ignore_index=True))
    assert v2.native_bbox == pytest.approx(full.native_bbox)
    mem.verify(KEY, all_versions=True)


def test_mode_a_keeps_labelled_indexes_and_widens_the_typmod(mem: mg.Memory, postgres_dsn: str) -> None:
    first = make_case("index-string")
    second = gpd.GeoDataFrame(
        {"id": [10]}, geometry=[LineString([(0, 0), (1, 1)])], crs="EPSG:4326",
        index=pd.Index(["new"], name="code"),
    )
    mem.save(first, KEY, tier="warm")
    mem.save(second, KEY, mode="a")
    assert_same_vector(pd.concat([first, second]), mem.open(KEY))


@pytest.mark.parametrize(
    ("change", "message"),
    [("drop_column", "columns differ"), ("crs", "reproject"), ("dtype", "column types would change")],
)
def test_mode_a_refuses_incompatible_rows(mem: mg.Memory, change: str, message: str) -> None:
    first = make_grid_layer(5)
    mem.save(first, KEY, tier="warm")
    other = first.copy()
    if change == "drop_column":
        other = other.drop(columns="label")
    elif change == "crs":
        other = other.to_crs("EPSG:4326")
    else:
        other["label"] = np.arange(len(other))
    with pytest.raises(UnsupportedObjectError, match=message):
        mem.save(other, KEY, mode="a")
    assert [e.version for e in mem.versions(KEY)] == [1]
    assert len(mem.tiers.backend("warm").version_paths()) == 1


# -- credentials and recovery ----------------------------------------------------------------------


def test_password_never_shown(
    tmp_path: Path, postgres_dsn: str, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    role = f"r_{uuid.uuid4().hex[:8]}"
    password = f"S3cr3t-{uuid.uuid4().hex}"
    _query(postgres_dsn, sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(password)))
    base = postgres_dsn.split("://", 1)[1].split("@", 1)[1]
    dsn = f"postgresql://{role}:{password}@{base}"
    caplog.set_level(logging.DEBUG)
    mem = _memory(tmp_path, dsn, schema)
    entry = mem.save(make_case("geometry-points"), KEY, tier="warm")
    opened = mem.open(KEY)
    shown = [repr(entry), entry.uri, repr(mem.tiers.backend("warm")), entry._repr_html_(), mem._repr_html_(),
             repr(mem.tiers.tier_config("warm")), caplog.text, str(mem.ls()), str(mem.search())]
    assert all(password not in text for text in shown)
    assert password.encode() not in Path(mem.catalog.path).read_bytes()
    assert len(opened) == 4
    with_option = _memory(tmp_path / "b", f"postgresql://{role}@{base}", schema, password=password)
    assert_same_vector(make_case("geometry-points"), opened)
    entry2 = with_option.save(make_case("geometry-points"), KEY + "2", tier="warm")
    assert password not in repr(entry2) + entry2.uri + repr(with_option.tiers.backend("warm"))


def test_recover_drops_orphan_tables(mem: mg.Memory, postgres_dsn: str, schema: str) -> None:
    import sqlite3

    from memories_geo.formats.base import WriteOptions

    entry = mem.save(make_case("geometry-points"), KEY, tier="warm")
    backend = mem.tiers.backend("warm")
    fmt = get_format("postgis")
    staged = mem.catalog.stage(
        key=KEY, version_id="orphan-1", tier="warm", format="postgis", kind="vector",
        path=f"{KEY}/@v/orphan-1", uri="x",
    )
    fmt.write(make_case("geometry-points"), Location(backend, f"{KEY}/@v/orphan-1"), WriteOptions())
    with sqlite3.connect(mem.catalog.path) as con:  # the writer of this staged row is gone, long ago
        con.execute("UPDATE versions SET writer = 'host-that-is-gone:1', created_at = '2000-01-01T00:00:00' "
                    "WHERE id = ?", (staged.pk,))
    fmt.write(make_case("geometry-points"), Location(backend, "stray/@v/never-staged"), WriteOptions())
    orphans = [backend.table_for(f"{KEY}/@v/orphan-1"), backend.table_for("stray/@v/never-staged")]
    removed = mem.recover()
    assert len(removed) == 2
    assert backend.version_paths() == [entry.path]
    assert mem.catalog.staged_versions() == []
    remaining = {r[0] for r in _query(postgres_dsn, "SELECT tablename FROM pg_tables WHERE schemaname = %s",
                                      (schema,))}
    assert not remaining & set(orphans)
    assert_same_vector(make_case("geometry-points"), mem.open(KEY))
    assert mem.recover() == []


def test_failed_write_leaves_nothing(mem: mg.Memory) -> None:
    gdf = make_case("geometry-points")
    gdf["bad"] = [pd.Timedelta(1), pd.Timedelta(2), pd.Timedelta(3), pd.Timedelta(4)]
    with pytest.raises(UnsupportedObjectError, match="bad"):
        mem.save(gdf, KEY, tier="warm")
    assert mem.tiers.backend("warm").version_paths() == []
    assert mem.catalog.staged_versions() == []


def test_memory_repr_hides_the_password(tmp_path: Path, schema: str) -> None:
    mem = _memory(tmp_path, "postgresql://someone:hunter2-secret@127.0.0.1:1/db", schema)
    assert "hunter2-secret" not in repr(mem)


# -- the load stream and its checksum -----------------------------------------------------


def _edge_frame() -> gpd.GeoDataFrame:
    """Values whose binary forms are easy to get wrong: nulls, extremes, NaN, -0.0, empties."""
    return gpd.GeoDataFrame(
        {
            "i8": pd.array([-(2**63), 2**63 - 1, None, 0, 7, -1], dtype="Int64"),
            "i2": pd.array([-(2**15), 2**15 - 1, 0, None, 1, -1], dtype="Int16"),
            "u8": np.array([0, 255, 1, 2, 3, 4], dtype=np.uint8),
            "f4": np.array([np.inf, -np.inf, -0.0, 1.5, np.finfo(np.float32).tiny, 3], dtype=np.float32),
            "f8": [np.nan, -0.0, np.inf, 5e-324, -1e308, 0.1],
            "flag": pd.array([True, False, None, True, False, None], dtype="boolean"),
            "text": ["", "é€😀", None, "tab\tand\nnewline", "x" * 5000, "'; DROP TABLE x --"],
            "raw": [b"", b"\x00\xff\x00", None, b"abc", bytes(range(256)), b"\xff\xff"],
            "day": [pd.Timestamp("0001-01-01").date(), pd.Timestamp("9999-12-31").date(), None,
                    pd.Timestamp("2000-01-01").date(), pd.Timestamp("1969-12-31").date(),
                    pd.Timestamp("1970-01-01").date()],
            "when": pd.to_datetime(["1677-09-22", "2262-04-11", None, "2000-01-01 00:00:00.000001",
                                    "1999-12-31 23:59:59.999999", "1970-01-01"], format="ISO8601"),
            "when_tz": pd.to_datetime(["2024-03-31 01:30", None, "1900-01-01", "2000-01-01", "2038-01-19",
                                       "1970-01-01"], format="ISO8601").tz_localize("Europe/Paris"),
        },
        geometry=[
            Point(1, 2), None, shapely.Point(), LineString(), shapely.Polygon(),
            shapely.from_wkt("MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 6, 5 5)))"),
        ],
        crs="EPSG:4326",
    )


STREAM_CASES = {**{k: v for k, v in ROUND_TRIP_CASES.items()}, "edge-values": _edge_frame}


@pytest.mark.parametrize("name", sorted(STREAM_CASES))
def test_sent_stream_is_the_servers_copy_output(
    mem: mg.Memory, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checksum made from the COPY stream sent is the one verify() recomputes from the table.

    The table is not read back during the save (the stream was accepted as the server's own
    binary COPY output), and verify() then reads it back and finds the same size and digest.
    """
    read_back = []
    real = pgcopy.table_digest
    monkeypatch.setattr(pgcopy, "table_digest", lambda *a: read_back.append(a) or real(*a))
    gdf = STREAM_CASES[name]()
    entry = mem.save(gdf, KEY, tier="warm", format="postgis")
    assert read_back == [], "the save fell back to reading the table back"
    location = Location(mem.tiers.backend("warm"), entry.path)
    assert PostGISFormat().manifest(location).files == mem.catalog.manifest(entry).files
    mem.verify(KEY)
    assert len(read_back) >= 2
    assert_same_vector(gdf, mem.open(KEY))


def test_stream_is_the_same_in_any_chunking(mem: mg.Memory) -> None:
    """Rows split over many chunks give the byte stream the server writes for the whole table."""
    gdf = pd.concat([_edge_frame()] * 7, ignore_index=True)
    entry = mem.save(gdf, KEY, tier="warm", engine="adbc")
    backend = mem.tiers.backend("warm")
    table = backend.table_for(entry.path)
    info = backend.info_for(entry.path)
    prepared = Prepared(gdf, {"type": "GeoDataFrame", "geometry": "geometry"})
    srids = {e["name"]: e["srid"] for e in info["columns"] if e.get("geometry")}
    server = bytearray()
    statement = sql.SQL("COPY (SELECT * FROM {} ORDER BY {}) TO STDOUT (FORMAT binary)").format(
        backend.identifier(table), sql.Identifier(info["row_id"]))
    with backend.connection() as con, con.cursor().copy(statement) as copy:
        for block in copy:
            server.extend(block)
    for chunk_rows in (1, 5, 6, 17, 1000):
        _, batches = prepared.load_batches(srids, 1, chunk_rows=chunk_rows)
        body = b"".join(bytes(pgcopy.body(pgcopy.copy_rows(b))) for b in batches)
        assert pgcopy.COPY_HEADER + body + pgcopy.COPY_TRAILER == bytes(server)
    (batch,) = prepared.load_batches(srids, 1, chunk_rows=len(gdf))[1]
    chunks = pgcopy.copy_chunks(batch, max_bytes=300)  # as chunks too big for 32-bit offsets are split
    assert len(chunks) > 4
    body = b"".join(bytes(pgcopy.body(c)) for c in chunks)
    assert pgcopy.COPY_HEADER + body + pgcopy.COPY_TRAILER == bytes(server)
    recomputed = pgcopy.table_digest(backend, table, info)[1]
    assert mem.catalog.manifest(entry).files[table].digest == recomputed.digest


def test_a_stream_the_server_does_not_echo_is_read_back(
    mem: mg.Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the spot check of the first rows fails, the checksum comes from reading the table back."""
    real = pgcopy.stream_matches_server
    seen = []

    def tampered(con: Any, backend: Any, table: str, row_id: str, head: bytes) -> bool:
        i = len(pgcopy.COPY_HEADER) + 8  # inside the first row
        changed = head[:i] + bytes([head[i] ^ 1]) + head[i + 1:]
        seen.append(real(con, backend, table, row_id, head))
        return real(con, backend, table, row_id, changed)

    monkeypatch.setattr(pgcopy, "stream_matches_server", tampered)
    read_back = []
    real_digest = pgcopy.table_digest
    monkeypatch.setattr(pgcopy, "table_digest", lambda *a: read_back.append(a) or real_digest(*a))
    gdf = make_case("geometry-polygons_with_holes")
    mem.save(gdf, KEY, tier="warm")
    assert seen == [True]
    assert len(read_back) == 1
    mem.verify(KEY)


@pytest.mark.parametrize("engine", ["adbc", "psycopg"])
def test_both_loaders_store_the_same_table(mem: mg.Memory, engine: str) -> None:
    gdf = STREAM_CASES["edge-values"]()
    first = mem.save(gdf, KEY, tier="warm", engine=engine)
    other = mem.save(make_case("geometry-points"), KEY + "2", tier="warm", engine=engine)
    mem.verify(KEY)
    mem.verify(KEY + "2")
    assert_same_vector(gdf, mem.open(KEY))
    assert first.size_bytes > 0
    assert other.size_bytes > 0


def test_dates_beyond_postgresql_are_refused(mem: mg.Memory) -> None:
    gdf = make_case("geometry-points")
    gdf["when"] = pd.array([np.datetime64(-(2**62), "us")] * 4, dtype="datetime64[us]")
    with pytest.raises(UnsupportedObjectError, match=r"when.*outside PostgreSQL's range"):
        mem.save(gdf, KEY, tier="warm")
    assert mem.tiers.backend("warm").version_paths() == []


def test_a_load_the_server_refuses_leaves_nothing(mem: mg.Memory) -> None:
    """A COPY failing on the server (text with a NUL) rolls back the table and its registry row."""
    gdf = make_case("geometry-points")
    gdf["label"] = ["a", "b", "c\x00d", "e"]
    with pytest.raises(FormatError, match=r"label") as info:
        mem.save(gdf, KEY, tier="warm")
    assert isinstance(info.value.__cause__, psycopg.errors.DataError)
    assert mem.tiers.backend("warm").version_paths() == []
    assert mem.catalog.staged_versions() == []
    with pytest.raises(mg.KeyNotFoundError):
        mem.info(KEY)


def test_checksums_do_not_depend_on_the_client_encoding(
    tmp_path: Path, postgres_dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Text is sent and checksummed as UTF-8 even when libpq is told to use another encoding."""
    monkeypatch.setenv("PGCLIENTENCODING", "LATIN1")
    mem = _memory(tmp_path, postgres_dsn, schema)
    gdf = make_case("geometry-points")
    gdf["label"] = ["é", "ß", "a", "ü"]
    mem.save(gdf, KEY, tier="warm")
    mem.verify(KEY)
    assert_same_vector(gdf, mem.open(KEY, engine="psycopg"))


# -- large loads: partitions indexed while the next one loads ----------------------------------

LARGE_ROWS = 2 * 250_000 + 3  # two partitions (PARTITION_MIN_ROWS is 250,000)


def _large_layer(rows: int = LARGE_ROWS) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(7)
    x, y = rng.uniform(-10, 30, rows), rng.uniform(35, 60, rows)
    label = pd.array([f"s{i % 977}" if i % 11 else None for i in range(rows)], dtype=object)
    gdf = gpd.GeoDataFrame(
        {"count": rng.integers(0, 1000, rows), "value": rng.random(rows), "label": label},
        geometry=gpd.points_from_xy(x, y), crs="EPSG:4326",
    )
    gdf["projected"] = gpd.GeoSeries(gpd.points_from_xy(x * 1e5, y * 1e5), crs="EPSG:3857")
    return gdf


@pytest.fixture(scope="module")
def large_layer() -> gpd.GeoDataFrame:
    return _large_layer()


def _relkinds(dsn: str, schema: str) -> dict[str, str]:
    rows = _query(dsn, "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
                  "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v')",
                  (schema,))
    return {name: kind for name, kind in rows if not name.startswith("memories_geo_")}


def _indexes(dsn: str, schema: str, table: str) -> list[tuple[str, bool]]:
    return sorted(_query(
        dsn,
        "SELECT am.amname, i.indisprimary FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_am am ON am.oid = c.relam WHERE i.indrelid = %s::regclass",
        (f'"{schema}"."{table}"',),
    ))


def test_a_large_layer_is_loaded_as_indexed_partitions(
    mem: mg.Memory, postgres_dsn: str, schema: str, large_layer: gpd.GeoDataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read_back = []
    real_digest = pgcopy.table_digest
    monkeypatch.setattr(pgcopy, "table_digest", lambda *a: read_back.append(a) or real_digest(*a))
    entry = mem.save(large_layer, KEY, tier="warm")
    assert read_back == [], "the checksum of a partitioned load comes from its streams"
    table = _table(mem, KEY)
    partitions = [f"{table}_p0", f"{table}_p1"]
    assert entry.object_info["partitions"] == partitions
    kinds = _relkinds(postgres_dsn, schema)
    assert kinds == {table: "p", partitions[0]: "r", partitions[1]: "r", view_name_for(KEY): "v"}
    bounds = _query(postgres_dsn, "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
                    "AND c.relispartition AND c.relkind = 'r' ORDER BY 1", (schema,))
    half = LARGE_ROWS // 2
    assert bounds == [(partitions[0], f"FOR VALUES FROM ('1') TO ('{half + 1}')"),
                      (partitions[1], f"FOR VALUES FROM ('{half + 1}') TO ('{LARGE_ROWS + 1}')")]
    # one GiST per geometry column and the primary key on every partition, attached to the
    # parent's partitioned indexes (not built twice)
    for name in [table, *partitions]:
        assert _indexes(postgres_dsn, schema, name) == [("btree", True), ("gist", False), ("gist", False)]
    analyzed = _query(postgres_dsn, "SELECT relname FROM pg_stat_user_tables WHERE schemaname = %s "
                      "AND last_analyze IS NOT NULL ORDER BY 1", (schema,))
    assert [r[0] for r in analyzed if r[0] != table] == partitions
    listed = _query(postgres_dsn, "SELECT f_table_name, f_geometry_column, srid FROM geometry_columns "
                    "WHERE f_table_schema = %s", (schema,))
    for name in [table, *partitions, view_name_for(KEY)]:
        expected_columns = {(name, "geometry", 4326), (name, "projected", 3857)}
        assert {(n, c, s) for n, c, s in listed if n == name} == expected_columns
    # the checksum is the whole table's, exactly what a read-back computes
    backend = mem.tiers.backend("warm")
    recomputed = real_digest(backend, table, backend.info_for(entry.path))[1]
    assert mem.catalog.manifest(entry).files == {table: recomputed}
    mem.verify(KEY)
    assert_same_vector(large_layer, mem.open(KEY))
    box = (5.0, 40.0, 5.5, 40.5)
    expected = large_layer.cx[box[0]:box[2], box[1]:box[3]]
    got = mem.open(KEY, bbox=box)
    assert len(got) == len(expected) > 0
    assert_same_vector(expected.reset_index(drop=True), got)


def test_the_checksum_does_not_depend_on_the_partitioning(
    tmp_path: Path, postgres_dsn: str, schema: str, large_layer: gpd.GeoDataFrame
) -> None:
    split_memory = _memory(tmp_path / "a", postgres_dsn, schema)
    split = split_memory.save(large_layer, "split", tier="warm")
    single_memory = _memory(tmp_path / "b", postgres_dsn, schema, load_partitions=1)
    single = single_memory.save(large_layer, "single", tier="warm")
    assert "partitions" not in single.object_info
    assert _relkinds(postgres_dsn, schema)[single_memory.tiers.backend("warm").table_for(single.path)] == "r"
    (split_digest,) = split_memory.catalog.manifest(split).files.values()
    (single_digest,) = single_memory.catalog.manifest(single).files.values()
    assert split_digest == single_digest


def test_a_changed_row_in_a_partition_fails_verify(
    mem: mg.Memory, postgres_dsn: str, schema: str, large_layer: gpd.GeoDataFrame
) -> None:
    mem.save(large_layer, KEY, tier="warm")
    partition = f"{_table(mem, KEY)}_p1"
    _query(postgres_dsn, sql.SQL("UPDATE {} SET value = value + 1 WHERE mg_row = %s").format(
        sql.Identifier(schema, partition)), (LARGE_ROWS,))
    with pytest.raises(ChecksumMismatchError):
        mem.verify(KEY)


def test_appending_to_a_partitioned_version_and_deleting_it(
    mem: mg.Memory, postgres_dsn: str, schema: str, large_layer: gpd.GeoDataFrame
) -> None:
    mem.save(large_layer, KEY, tier="warm")
    more = large_layer.iloc[:5].copy()
    mem.save(more, KEY, tier="warm", mode="a")
    expected = pd.concat([large_layer, more], ignore_index=True)
    assert_same_vector(expected, mem.open(KEY))
    mem.verify(KEY)
    assert_same_vector(large_layer, mem.open(KEY, version=1))
    mem.delete(KEY)
    assert _relkinds(postgres_dsn, schema) == {}


def test_a_partition_the_server_refuses_leaves_nothing(
    mem: mg.Memory, postgres_dsn: str, schema: str, large_layer: gpd.GeoDataFrame
) -> None:
    """A COPY failing in the second partition removes the first one and the parent too."""
    gdf = large_layer.copy()
    gdf["label"] = gdf["label"].astype(object)
    gdf.loc[LARGE_ROWS - 2, "label"] = "bad\x00text"
    with pytest.raises(FormatError, match=r"label"):
        mem.save(gdf, KEY, tier="warm")
    assert _relkinds(postgres_dsn, schema) == {}
    assert mem.tiers.backend("warm").version_paths() == []
    assert mem.catalog.staged_versions() == []


@pytest.mark.parametrize("value", [0, 9, "many", True, 2.5])
def test_load_partitions_is_validated(postgres_dsn: str, value: Any) -> None:
    with pytest.raises(mg.ConfigError, match="load_partitions must be an integer from 1 to 8"):
        PostgresBackend(postgres_dsn, {"load_partitions": value})
    assert PostgresBackend(postgres_dsn, {"load_partitions": "3"}).load_partitions == 3
