"""The SQLite/SpatiaLite tier: vector layers as SpatiaLite tables behind a stable view per key (issue 16).

Everything runs against real SQLite databases with the SpatiaLite extension loaded
(Debian's ``libsqlite3-mod-spatialite``), real child processes and GDAL (pyogrio).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
from vector_cases import CUSTOM_PROJ, VECTOR_CASES, assert_same_vector, make_grid_layer, make_timed_layer

import memories_geo as mg
from memories_geo.backends.base import Capability, Location
from memories_geo.backends.registry import make_backend
from memories_geo.backends.sqlite import SQLiteBackend, connect, quote
from memories_geo.errors import (
    ChecksumMismatchError,
    ConfigError,
    FormatError,
    KeyNotFoundError,
    OptionError,
    TierUnavailableError,
)
from memories_geo.formats.registry import get_format
from memories_geo.formats.spatialite import view_name_for
from memories_geo.formats.spatialite.query import select_statement
from memories_geo.query import open_request
from memories_geo.testing import BackendTests, FormatRoundTripTests, VectorQueryTests

KEY = "tests/layer"

def _config(tmp_path: Path) -> dict[str, Any]:
    return {"home": str(tmp_path / "home"), "tiers": {"hot": {"url": f"sqlite:///{tmp_path}/hot.sqlite"}}}


@pytest.fixture
def config(tmp_path: Path) -> dict[str, Any]:
    return _config(tmp_path)


@pytest.fixture
def mem(config: dict[str, Any]) -> mg.Memory:
    return mg.Memory(mg.StorageConfig.from_dict(config))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "hot.sqlite"


def _sql(db: Path, statement: str, params: Any = ()) -> list[tuple[Any, ...]]:
    con = connect(str(db))
    try:
        return con.execute(statement, params).fetchall()
    finally:
        con.close()


def _table(mem: mg.Memory, key: str, version: int | None = None) -> str:
    entry = mem.info(key, version=version)
    table = mem.tiers.backend("hot").table_for(entry.path)
    assert table is not None
    return table


def _view_reads(db: Path, key: str) -> str:
    """The table the view of ``key`` selects from, from its definition."""
    (definition,) = _sql(db, "SELECT sql FROM sqlite_master WHERE type = 'view' AND name = ?",
                         (view_name_for(key),))[0]
    return str(definition.rsplit(" FROM ", 1)[1]).strip('"')


# -- the shared contracts --------------------------------------------------------------------


class TestSpatiaLite(VectorQueryTests, FormatRoundTripTests):
    format_name = "spatialite"
    tier = "hot"

    @pytest.fixture
    def memory(self, tmp_path: Path) -> mg.Memory:
        return mg.Memory(mg.StorageConfig.from_dict(_config(tmp_path)))

    @pytest.fixture(params=list(VECTOR_CASES))
    def case(self, request: pytest.FixtureRequest) -> Any:
        return VECTOR_CASES[request.param]()

    def assert_same(self, expected: Any, actual: Any) -> None:
        assert_same_vector(expected, actual)

    def corrupt(self, memory: mg.Memory, entry: Any) -> str:
        """Renumber the last row (or, in an empty table, insert one) behind the library's back."""
        backend = memory.tiers.backend(entry.tier)
        table = backend.table_for(entry.path)
        row_id = quote(entry.object_info["row_id"])
        con = connect(str(backend.path))  # SpatiaLite's triggers run on the geometry columns
        with con:
            changed = con.execute(
                f"UPDATE {quote(table)} SET {row_id} = {row_id} + 1000000 "
                f"WHERE {row_id} = (SELECT max({row_id}) FROM {quote(table)})"
            ).rowcount
            if not changed:
                con.execute(f"INSERT INTO {quote(table)} ({row_id}) VALUES (1)")
        con.close()
        return table

    def test_input_is_not_modified(self, memory: mg.Memory, case: Any) -> None:
        before = case.copy(deep=True)
        memory.save(case, self.key, format=self.format_name, tier=self.tier)
        assert_same_vector(before, case)


class TestSQLiteBackend(BackendTests):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> SQLiteBackend:
        backend = make_backend(f"sqlite:///{tmp_path}/backend.sqlite")
        assert isinstance(backend, SQLiteBackend)
        return backend


# -- the tier ----------------------------------------------------------------------------------


def test_capabilities_and_default_format(mem: mg.Memory) -> None:
    backend = mem.tiers.backend("hot")
    assert backend.capabilities == {Capability.WRITES, Capability.LISTING, Capability.TABLES,
                                    Capability.SPATIALITE}
    assert Capability.POSTGRESQL not in backend.capabilities
    entry = mem.save(make_grid_layer(3), KEY)
    assert (entry.tier, entry.format) == ("hot", "spatialite")
    timed = make_timed_layer(6).set_index("observed")
    assert mem.save(timed, "tests/indexed-by-time").format == "spatialite"
    with pytest.raises(mg.errors.MemoriesError, match="no installed format"):
        mem.save(pd.DataFrame({"time": pd.date_range("2024", periods=3), "v": [1, 2, 3]}), "tests/table")


@pytest.mark.parametrize("url", [
    "sqlite://relative/hot.sqlite", "sqlite:///", "sqlite:///data/", "sqlite:///data/hot.sqlite?mode=ro",
    "sqlite:///:memory:", "sqlite://host/data/hot.sqlite",
])
def test_only_absolute_database_files_are_accepted(url: str) -> None:
    with pytest.raises(ConfigError, match="sqlite:///absolute/path"):
        SQLiteBackend(url)


def test_both_absolute_forms_name_the_same_file(tmp_path: Path) -> None:
    assert SQLiteBackend(f"sqlite:///{tmp_path}/a.sqlite").path == SQLiteBackend(f"sqlite:////{tmp_path}/a.sqlite").path


def test_unknown_storage_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="spatialite_library"):
        SQLiteBackend(f"sqlite:///{tmp_path}/a.sqlite", {"schema": "x"})


def test_a_missing_extension_is_a_typed_error_naming_the_package(tmp_path: Path) -> None:
    backend = SQLiteBackend(f"sqlite:///{tmp_path}/a.sqlite", {"spatialite_library": "mod_not_installed"})
    with pytest.raises(TierUnavailableError, match="apt install libsqlite3-mod-spatialite") as info:
        backend.write_bytes("a/b.json", b"{}")
    assert "mod_not_installed" in str(info.value)


def test_the_database_is_in_wal_mode_with_spatialite_metadata(mem: mg.Memory, db: Path) -> None:
    mem.save(make_grid_layer(3), KEY)
    assert _sql(db, "PRAGMA journal_mode") == [("wal",)]
    assert _sql(db, "SELECT CheckSpatialMetaData()")[0][0] == 3  # SpatiaLite 4+ layout
    con = sqlite3.connect(str(db))  # without the extension: the library's own tables are plain SQLite
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    con.close()
    assert {"memories_geo_tables", "memories_geo_objects", "memories_geo_views", "geometry_columns"} <= names


def test_sql_load_extension_stays_disabled(db: Path, tmp_path: Path) -> None:
    SQLiteBackend(f"sqlite:///{db}").ensure_ready()
    with pytest.raises(sqlite3.OperationalError, match="not authorized"):
        _sql(db, "SELECT load_extension('mod_spatialite')")


# -- what is stored how ----------------------------------------------------------------------------


def test_each_version_is_a_spatialite_table_with_a_spatial_index(mem: mg.Memory, db: Path) -> None:
    mem.save(make_grid_layer(4), KEY)
    mem.save(make_grid_layer(6), KEY, mode="w")
    first, second = _table(mem, KEY, 1), _table(mem, KEY, 2)
    assert first != second
    rows = _sql(db, "SELECT f_table_name, f_geometry_column, geometry_type, coord_dimension, srid, "
                    "spatial_index_enabled FROM geometry_columns ORDER BY f_table_name")
    assert sorted(rows) == sorted([(first, "geometry", 0, 2, 32631, 1), (second, "geometry", 0, 2, 32631, 1)])
    assert _sql(db, f"SELECT count(*) FROM {quote('idx_' + second + '_geometry')}")[0][0] == 6 * 3
    assert _view_reads(db, KEY) == second
    assert _sql(db, f"SELECT count(*) FROM {quote(view_name_for(KEY))}")[0][0] == 6 * 3 + 2
    registered = "SELECT view_name, view_geometry, view_rowid, f_table_name FROM views_geometry_columns"
    assert _sql(db, registered) == [
        (KEY, "geometry", "mg_row", second)
    ]


def test_geometry_types_and_dimensions_are_declared(mem: mg.Memory, db: Path) -> None:
    points = gpd.GeoDataFrame(geometry=shapely.points([[0, 0, 1], [1, 1, 2]]), crs="EPSG:4979")
    mem.save(points, "tests/pointz")
    table = _table(mem, "tests/pointz")
    declared = "SELECT geometry_type, coord_dimension FROM geometry_columns WHERE f_table_name = ?"
    row = _sql(db, declared, (table,))
    assert row == [(1001, 3)]  # POINT Z


def test_mixed_dimensions_round_trip_and_stay_indexed(mem: mg.Memory, db: Path) -> None:
    layer = gpd.GeoDataFrame({"i": [0, 1, 2, 3]}, crs="EPSG:4326", geometry=[
        shapely.Point(1, 2, 3), shapely.Point(1, 2), None,
        shapely.Polygon([(0, 0, 1), (1, 0, 1), (1, 1, 1)])])
    mem.save(layer, KEY)
    assert_same_vector(layer, mem.open(KEY))
    assert mem.open(KEY, bbox=(-1, -1, 5, 5))["i"].tolist() == [0, 1, 3]
    table = _table(mem, KEY)
    assert _sql(db, "SELECT coord_dimension FROM geometry_columns WHERE f_table_name = ?", (table,)) == [(2,)]


def test_a_layer_sqlite_cannot_hold_is_refused_and_leaves_nothing(mem: mg.Memory, db: Path) -> None:
    layer = gpd.GeoDataFrame({"big": np.array([2**64 - 1], dtype="uint64")},
                             geometry=[shapely.Point(0, 0)], crs="EPSG:4326")
    with pytest.raises(mg.errors.UnsupportedObjectError, match="beyond SQLite"):
        mem.save(layer, KEY)
    assert _sql(db, "SELECT count(*) FROM memories_geo_tables") == [(0,)]
    assert _sql(db, "SELECT count(*) FROM geometry_columns") == [(0,)]


def test_a_custom_crs_goes_into_spatial_ref_sys_once(mem: mg.Memory, db: Path) -> None:
    layer = make_grid_layer(3).to_crs(CUSTOM_PROJ)
    mem.save(layer, "tests/a")
    mem.save(layer, "tests/b")
    rows = _sql(db, "SELECT srid, auth_name FROM spatial_ref_sys WHERE srid >= 900000")
    assert len(rows) == 1
    assert rows[0][1] == "memories_geo"
    back = mem.open("tests/b")
    assert back.crs == pyproj.CRS.from_user_input(CUSTOM_PROJ)
    assert mem.info("tests/b").object_info["columns"][-1]["srid"] == rows[0][0]


def test_injection_looking_keys_and_columns_are_stored_literally(mem: mg.Memory, db: Path) -> None:
    key = "Robert'); DROP TABLE memories_geo_tables;--"
    layer = gpd.GeoDataFrame({'a"; DROP TABLE x;--': [1, 2], "A": ["x", "y"], "a": [3.5, 4.5]},
                             geometry=shapely.points([0, 1], [0, 1]), crs="EPSG:4326")
    mem.save(layer, key)
    assert_same_vector(layer, mem.open(key))
    assert_same_vector(layer.iloc[[1]].reset_index(drop=True),
                       mem.open(key, where={'a"; DROP TABLE x;--': 2}))
    view = view_name_for(key)
    assert view != key
    assert _sql(db, "SELECT count(*) FROM views_geometry_columns WHERE view_name = ?",
                                (view,))[0][0] == 1
    assert _sql(db, "SELECT count(*) FROM memories_geo_tables")[0][0] == 1


def test_two_keys_differing_by_case_get_two_views(mem: mg.Memory, db: Path) -> None:
    mem.save(make_grid_layer(2), "roads")
    mem.save(make_grid_layer(3), "Roads")
    assert view_name_for("roads") != view_name_for("Roads")
    assert len(mem.open("roads")) == 8
    assert len(mem.open("Roads")) == 11


def test_a_foreign_table_with_the_view_name_is_refused_before_writing(mem: mg.Memory, db: Path) -> None:
    con = sqlite3.connect(str(db))
    con.execute('CREATE TABLE "tests/layer" (x)')
    con.close()
    with pytest.raises(FormatError, match="already exists"):
        mem.save(make_grid_layer(2), KEY)
    assert _sql(db, "SELECT count(*) FROM memories_geo_tables")[0][0] == 0
    with pytest.raises(KeyNotFoundError):
        mem.info(KEY)


def test_appends_are_refused(mem: mg.Memory) -> None:
    mem.save(make_grid_layer(2), KEY)
    with pytest.raises(FormatError, match="does not append"):
        mem.save(make_grid_layer(2), KEY, mode="a")
    assert [e.version for e in mem.versions(KEY)] == [1]


def test_attrs_round_trip(mem: mg.Memory) -> None:
    layer = make_grid_layer(2)
    layer.attrs = {"source": "survey", "year": 2024}
    back = mem.open(mem.save(layer, KEY).key)
    assert {k: back.attrs.get(k) for k in layer.attrs} == layer.attrs


# -- versions, deletion, verification -------------------------------------------------------------------


def test_versions_delete_and_views(mem: mg.Memory, db: Path) -> None:
    mem.save(make_grid_layer(2), KEY)
    mem.save(make_grid_layer(3), KEY, mode="w")
    assert [e.version for e in mem.versions(KEY)] == [1, 2]
    assert len(mem.open(KEY, version=1)) == 8
    fmt = get_format("spatialite")
    assert fmt.published_keys(mem.tiers.backend("hot")) == [KEY]
    mem.delete(KEY)
    assert _sql(db, "SELECT count(*) FROM sqlite_master WHERE type = 'view' AND name = ?", (KEY,)) == [(0,)]
    assert _sql(db, "SELECT count(*) FROM views_geometry_columns") == [(0,)]
    assert _sql(db, "SELECT count(*) FROM geometry_columns") == [(0,)]
    assert fmt.published_keys(mem.tiers.backend("hot")) == []


def test_a_changed_value_fails_verify_naming_the_table(mem: mg.Memory, db: Path) -> None:
    mem.save(make_grid_layer(4), KEY)
    mem.verify(KEY)
    table = _table(mem, KEY)
    con = sqlite3.connect(str(db))
    with con:
        con.execute(f"UPDATE {quote(table)} SET value = value + 0.5 WHERE mg_row = 3")
    con.close()
    with pytest.raises(ChecksumMismatchError) as info:
        mem.verify(KEY)
    assert any(table in problem for problem in info.value.problems)


def test_a_dropped_table_fails_verify(mem: mg.Memory, db: Path) -> None:
    mem.save(make_grid_layer(2), KEY)
    _sql(db, "SELECT DropTable(NULL, ?)", (_table(mem, KEY),))
    backend = mem.tiers.backend("hot")
    with backend.connection() as con:
        con.execute("DELETE FROM memories_geo_tables")
    with pytest.raises(ChecksumMismatchError, match="missing"):
        mem.verify(KEY)


def test_recover_drops_orphan_tables_and_views(mem: mg.Memory, db: Path) -> None:
    mem.save(make_grid_layer(2), KEY)
    backend = mem.tiers.backend("hot")
    fmt = get_format("spatialite")
    orphan = Location(backend, "tests/orphan/@v/20240101T000000000000Z-0a1b2c3d")
    fmt.write(make_grid_layer(2), orphan, mg.formats.base.WriteOptions())
    fmt.publish(orphan, "tests/orphan")
    assert fmt.published_keys(backend) == sorted([KEY, "tests/orphan"])
    mem.recover()
    assert fmt.published_keys(backend) == [KEY]
    assert backend.table_for(orphan.path) is None
    assert len(mem.open(KEY)) == 8


# -- pushdown -----------------------------------------------------------------------------------------


def test_bbox_reads_the_spatial_index(mem: mg.Memory, db: Path) -> None:
    layer = make_grid_layer(40)
    entry = mem.save(layer, KEY)
    box = (450_000.0, 5_050_000.0, 600_000.0, 5_250_000.0)
    request = open_request(bbox=box, bbox_crs="EPSG:32631")
    table = _table(mem, KEY)
    statement, params = select_statement(table, entry.object_info, entry.object_info["columns"], request)
    plan = " ".join(str(r[-1]) for r in _sql(db, "EXPLAIN QUERY PLAN " + statement, params))
    assert f"idx_{table}_geometry" in plan
    assert "VIRTUAL TABLE INDEX" in plan
    got = mem.open(KEY, bbox=box, bbox_crs="EPSG:32631")
    expected = layer[layer.intersects(shapely.box(*box))]
    assert 0 < len(got) < len(layer)
    assert got["label"].tolist() == expected["label"].tolist()


def test_bbox_excludes_geometries_whose_envelope_alone_intersects(mem: mg.Memory) -> None:
    line = shapely.LineString([(0, 0), (10, 10)])
    layer = gpd.GeoDataFrame({"n": [1, 2]}, geometry=[line, shapely.Point(9, 1)], crs="EPSG:32631")
    mem.save(layer, KEY)
    got = mem.open(KEY, bbox=(8, 0, 10, 2), bbox_crs="EPSG:32631")
    assert got["n"].tolist() == [2]


def test_where_columns_and_bbox_together(mem: mg.Memory) -> None:
    layer = make_grid_layer(30)
    layer["kind"] = np.where(np.arange(len(layer)) % 3 == 0, "a", "b")
    mem.save(layer, KEY)
    box = (450_000.0, 5_050_000.0, 600_000.0, 5_250_000.0)
    got = mem.open(KEY, bbox=box, bbox_crs="EPSG:32631", where={"kind": "a"}, columns=["label"])
    expected = layer[layer.intersects(shapely.box(*box)) & (layer["kind"] == "a")]
    assert list(got.columns) == ["label", "geometry"]
    assert got["label"].tolist() == expected["label"].tolist()
    assert mem.open(KEY, where={"kind": ["a", "b"]}).shape[0] == len(layer)
    assert mem.open(KEY, where={"kind": []}).empty
    assert mem.open(KEY, where={"label": None}).empty


def test_where_refuses_raw_sql_and_unknown_columns(mem: mg.Memory) -> None:
    mem.save(make_grid_layer(3), KEY)
    with pytest.raises(TypeError, match="raw SQL"):
        mem.open(KEY, where="1=1; DROP TABLE memories_geo_tables")
    with pytest.raises(ValueError, match="unknown column"):
        mem.open(KEY, where={"nope": 1})
    with pytest.raises(ValueError, match="geometry column"):
        mem.open(KEY, where={"geometry": 1})
    with pytest.raises(OptionError, match="engine"):
        mem.open(KEY, engine="psycopg")


def test_where_on_typed_columns(mem: mg.Memory) -> None:
    layer = make_timed_layer(10)
    layer["flag"] = [True, False] * 5
    layer["small"] = np.arange(10, dtype="int8")
    mem.save(layer, KEY)
    assert mem.open(KEY, where={"flag": True})["count"].tolist() == [0, 2, 4, 6, 8]
    assert mem.open(KEY, where={"small": np.int8(3)})["count"].tolist() == [3]
    stamp = layer["observed"].iloc[1]
    assert mem.open(KEY, where={"observed": stamp})["count"].tolist() == [1]


@pytest.mark.parametrize("tz", [None, "Europe/Paris"])
@pytest.mark.parametrize("unit", ["s", "ns"])
def test_time_selects_rows_on_the_first_datetime_column(mem: mg.Memory, tz: str | None, unit: str) -> None:
    layer = make_timed_layer(48, tz=tz, unit=unit)
    mem.save(layer, KEY)
    start, end = pd.Timestamp("2024-01-01T05:00:00Z"), pd.Timestamp("2024-01-01T20:00:00.5Z")
    got = mem.open(KEY, time=(start, end))
    observed = layer["observed"] if tz is not None else layer["observed"].dt.tz_localize("UTC")
    expected = layer[(observed >= start) & (observed <= end)]
    assert got["label"].tolist() == expected["label"].tolist()
    assert got["observed"].tolist() == expected["observed"].tolist()
    assert got["observed"].dtype == layer["observed"].dtype


def test_time_needs_a_datetime_column(mem: mg.Memory) -> None:
    mem.save(make_grid_layer(2), KEY)
    with pytest.raises(OptionError, match="datetime column"):
        mem.open(KEY, time=("2024-01-01", "2024-02-01"))


# -- crashes and concurrency --------------------------------------------------------------------------


def _child(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


CRASH_AFTER_COMMIT = """
import json, os, signal, sys
import memories_geo as mg
from vector_cases import make_grid_layer

mem = mg.Memory(mg.StorageConfig.from_dict(json.loads(sys.argv[1])))

def crash(name, info):
    if name == "save.committed":
        os.kill(os.getpid(), signal.SIGKILL)

mg.events.subscribe(crash)
mem.save(make_grid_layer(int(sys.argv[3])), sys.argv[2], tier="hot", mode="w")
print("the view was swapped before the crash")
"""


def test_a_crash_between_commit_and_view_swap_is_repaired_by_recover(
    mem: mg.Memory, config: dict[str, Any], db: Path
) -> None:
    first = mem.save(make_grid_layer(5), KEY)
    child = _child(CRASH_AFTER_COMMIT, json.dumps(config), KEY, "8")
    out, err = child.communicate(timeout=300)
    assert child.returncode == -signal.SIGKILL, out + err
    current = mem.info(KEY)
    assert current.version == 2
    backend = mem.tiers.backend("hot")
    assert _view_reads(db, KEY) == backend.table_for(first.path)  # the view lags the catalog
    fmt = get_format("spatialite")
    assert not fmt.is_published(mem.version_store.location(current), KEY)
    mem.recover()
    assert fmt.is_published(mem.version_store.location(current), KEY)
    assert _view_reads(db, KEY) == backend.table_for(current.path)
    assert _sql(db, f"SELECT count(*) FROM {quote(view_name_for(KEY))}")[0][0] == 8 * 3 + 2


def test_a_superseded_version_is_not_published(mem: mg.Memory, db: Path) -> None:
    first = mem.save(make_grid_layer(5), KEY)
    second = mem.save(make_grid_layer(7), KEY, mode="w")
    fmt = get_format("spatialite")
    assert fmt.publish(mem.version_store.location(first), KEY, is_current=lambda: False) is False
    assert _view_reads(db, KEY) == _table(mem, KEY, second.version)
    assert fmt.publish(mem.version_store.location(first), KEY) is True  # no check: swaps
    mem.recover()
    assert _view_reads(db, KEY) == _table(mem, KEY, second.version)


def test_a_view_redefined_by_hand_is_not_published(mem: mg.Memory, db: Path) -> None:
    entry = mem.save(make_grid_layer(2), KEY)
    fmt = get_format("spatialite")
    location = mem.version_store.location(entry)
    assert fmt.is_published(location, KEY)
    con = sqlite3.connect(str(db))
    con.executescript('DROP VIEW "tests/layer"; '
                      'CREATE VIEW "tests/layer" AS SELECT * FROM memories_geo_tables;')
    con.close()
    assert not fmt.is_published(location, KEY)
    mem.recover()
    assert fmt.is_published(location, KEY)


SAVE_MANY = """
import json, sys
import memories_geo as mg
from vector_cases import make_grid_layer

mem = mg.Memory(mg.StorageConfig.from_dict(json.loads(sys.argv[1])))
for i in range(int(sys.argv[3])):
    mem.save(make_grid_layer(2 + i), sys.argv[2], tier="hot", mode="w")
print("done")
"""


def test_two_processes_save_to_the_same_key(mem: mg.Memory, config: dict[str, Any], db: Path) -> None:
    children = [_child(SAVE_MANY, json.dumps(config), KEY, "4") for _ in range(2)]
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, out + err
    versions = mem.versions(KEY)
    assert [e.version for e in versions] == list(range(1, 9))
    current = mem.info(KEY)
    assert get_format("spatialite").is_published(mem.version_store.location(current), KEY)
    assert len(mem.verify(KEY, all_versions=True)) == 8
    assert len(mem.open(KEY)) == current.object_info["rows"]


# -- GDAL / QGIS --------------------------------------------------------------------------------------


def test_gdal_lists_and_reads_the_stable_view(mem: mg.Memory, db: Path) -> None:
    pyogrio = pytest.importorskip("pyogrio")
    layer = gpd.GeoDataFrame(
        {"name": ["a", "b", "c"], "count": np.array([1, 2, 3], dtype="int64"), "value": [0.5, 1.5, 2.5]},
        geometry=[shapely.Point(2.35, 48.85), shapely.LineString([(0, 0), (1, 1)]),
                  shapely.Polygon([(0, 0), (1, 0), (1, 1)])],
        crs="EPSG:4326",
    )
    mem.save(layer, "gdal/roads")
    layers = {str(name): str(kind) for name, kind in pyogrio.list_layers(db)}
    assert "gdal/roads" in layers
    read = pyogrio.read_dataframe(db, layer="gdal/roads")
    assert list(read.columns) == ["name", "count", "value", "geometry"]
    assert read.crs.to_epsg() == 4326
    pd.testing.assert_frame_equal(pd.DataFrame(read.drop(columns="geometry")),
                                  pd.DataFrame(layer.drop(columns="geometry")), check_dtype=False)
    assert read.geometry.geom_equals_exact(layer.geometry, tolerance=0).all()
    mem.save(layer.iloc[:2], "gdal/roads", mode="w")  # the same layer name shows the new version
    assert len(pyogrio.read_dataframe(db, layer="gdal/roads")) == 2
