"""End to end through the accessors and module-level functions on the embedded default."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from geopandas import GeoDataFrame
from geopandas.testing import assert_geodataframe_equal
from shapely.geometry import Point, box

import memories_geo as mg
from memories_geo.examples import sample_raster


@pytest.fixture
def ds():
    return sample_raster()


@pytest.fixture
def gdf():
    return GeoDataFrame(
        {"name": ["a", "b", "c"], "area": [1.5, 2.0, np.nan]},
        geometry=[box(0, 0, 1, 1), box(2, 2, 3, 3), Point(10, 10)],
        crs="EPSG:4326",
    )


def test_accessor_save_and_open_raster(memory, ds):
    entry = ds.memories.save("era5/t2m", tier="hot")
    assert (entry.key, entry.version, entry.tier, entry.format, entry.kind) == (
        "era5/t2m", 1, "hot", "zarr", "raster")
    out = mg.open("era5/t2m")
    assert out.t2m.chunks is not None, "open must be lazy (dask-backed)"
    xr.testing.assert_identical(out, ds)
    assert entry.uri.startswith(memory.config.tiers["hot"].url + "/era5/t2m/@v/")


def test_accessor_save_and_open_vector(memory, gdf):
    entry = gdf.memories.save("fields", tier="warm")
    assert (entry.format, entry.kind, entry.tier) == ("geoparquet", "vector", "warm")
    assert_geodataframe_equal(mg.open("fields"), gdf)


def test_module_function_is_the_same_call(memory, gdf):
    entry = mg.save(gdf, "fields", tier="warm")
    assert mg.info("fields") == entry


def test_resave_without_key_reuses_the_opened_key(memory, ds):
    ds.memories.save("era5/t2m", tier="hot")
    opened = mg.open("era5/t2m")
    assert opened.memories.key == "era5/t2m"
    entry = opened.memories.save(tier="warm")
    assert (entry.key, entry.version, entry.tier) == ("era5/t2m", 2, "warm")
    xr.testing.assert_identical(mg.open("era5/t2m"), ds)
    assert [e.tier for e in mg.versions("era5/t2m")] == ["hot", "warm"]


def test_resaved_object_carries_no_provenance_into_storage(memory, gdf):
    mg.save(gdf, "fields")
    opened = mg.open("fields")
    opened.memories.save()
    again = mg.open("fields")
    assert mg.info("fields").version == 2
    assert again.attrs.get("memories_geo_source") == {"key": "fields", "version": 2}
    assert_geodataframe_equal(again, gdf)


def test_save_without_any_key_generates_a_readable_one(memory, ds):
    entry = ds.t2m.memories.save()
    assert entry.key.startswith("raster/t2m-")
    xr.testing.assert_identical(mg.open(entry.key), ds.t2m)


def test_default_mode_refuses_existing_key_and_w_makes_new_version(memory, gdf):
    mg.save(gdf, "fields")
    with pytest.raises(mg.KeyExistsError, match="mode='w'"):
        mg.save(gdf, "fields")
    mg.save(gdf.iloc[:2], "fields", mode="w")
    assert [e.version for e in mg.versions("fields")] == [1, 2]
    assert len(mg.open("fields")) == 2
    assert len(mg.open("fields", version=1)) == 3


def test_search_by_bbox_and_time(memory, ds, gdf):
    mg.save(ds, "era5/t2m")  # lon -10..20, lat 35..60, 2024
    mg.save(gdf, "fields")  # lon 0..10, lat 0..10, no time
    mg.save(ds.sel(time=slice("2024-09", None)), "era5/autumn")
    result = mg.search(bbox=(-10, 35, 5, 45), time=("2024-01", "2024-06"))
    assert isinstance(result, GeoDataFrame)
    assert result.crs == "EPSG:4326"
    assert list(result.key) == ["era5/t2m"]
    assert sorted(mg.search(bbox=(-10, 35, 5, 45)).key) == ["era5/autumn", "era5/t2m"]
    assert sorted(mg.search(bbox=(5, 5, 6, 6)).key) == ["fields"]
    assert list(mg.search(time="2024-10").key) == ["era5/autumn", "era5/t2m"]
    assert list(mg.search(kind="vector").key) == ["fields"]
    assert list(mg.search(key="era5/*", time=(None, "2024-03-01")).key) == ["era5/t2m"]
    assert mg.search(bbox=(100, -50, 110, -40)).empty
    footprint = result.geometry.iloc[0]
    assert footprint.bounds == pytest.approx((-10.0, 35.0, 20.0, 60.0))


def test_search_bbox_in_another_crs(memory, gdf):
    mg.save(gdf, "fields")
    # (0.5, 0.5) degrees in Web Mercator metres
    hits = mg.search(bbox=(50_000, 50_000, 60_000, 60_000), bbox_crs="EPSG:3857")
    assert list(hits.key) == ["fields"]


def test_search_rejects_bad_arguments(memory):
    with pytest.raises(ValueError, match="min <= max"):
        mg.search(bbox=(10, 0, 0, 10))
    with pytest.raises(ValueError, match="unknown tier"):
        mg.search(tier="lukewarm")
    with pytest.raises(ValueError, match="starts after it ends"):
        mg.search(time=("2024-06", "2024-01"))


def test_ls_info_versions_delete(memory, ds, gdf):
    mg.save(ds, "era5/t2m")
    mg.save(gdf, "fields", tier="warm")
    table = mg.ls()
    assert isinstance(table, pd.DataFrame)
    assert list(table.key) == ["era5/t2m", "fields"]
    assert list(mg.ls("era5/*").key) == ["era5/t2m"]
    assert list(mg.ls(tier="warm").key) == ["fields"]
    info = mg.info("fields")
    assert info.crs == "EPSG:4326"
    assert info.bbox == pytest.approx((0.0, 0.0, 10.0, 10.0))
    assert info.shape == {"rows": 3}
    deleted = mg.delete("fields")
    assert [e.key for e in deleted] == ["fields"]
    with pytest.raises(mg.KeyNotFoundError, match="fields"):
        mg.info("fields")
    with pytest.raises(KeyError):
        mg.open("fields")
    assert list(mg.ls().key) == ["era5/t2m"]


def test_delete_one_old_version(memory, gdf):
    first = mg.save(gdf, "fields")
    mg.save(gdf, "fields", mode="w")
    backend = memory.tiers.backend("hot")
    mg.delete("fields", version=1)
    assert not backend.exists(first.path)
    assert [e.version for e in mg.versions("fields")] == [2]
    with pytest.raises(ValueError, match="current version"):
        mg.delete("fields", version=2)


def test_open_records_access(memory, gdf):
    mg.save(gdf, "fields")
    assert mg.info("fields").access_count == 0
    mg.open("fields")
    mg.open("fields")
    info = mg.info("fields")
    assert info.access_count == 2
    assert info.last_accessed_at >= info.created_at


def test_unknown_key_suggests_close_ones(memory, gdf):
    mg.save(gdf, "farm/fields")
    with pytest.raises(mg.KeyNotFoundError, match=r"Did you mean \['farm/fields'\]"):
        mg.open("fields")
    with pytest.raises(mg.KeyNotFoundError, match="no version 7"):
        mg.open("farm/fields", version=7)


def test_bad_inputs_raise_typed_errors(memory, ds, gdf):
    with pytest.raises(AttributeError, match="no geometry"):
        _ = pd.DataFrame({"a": [1]}).memories
    with pytest.raises(mg.UnsupportedObjectError, match="neither a geometry column nor a datetime column"):
        mg.save(pd.DataFrame({"a": [1]}), "table")
    with pytest.raises(mg.UnsupportedObjectError, match=r"cannot store a builtins\.list.*xarray Dataset"):
        mg.save([1, 2], "list")
    with pytest.raises(mg.UnsupportedObjectError, match="crs="):
        mg.save(gdf.set_crs(None, allow_override=True), "nocrs")
    with pytest.raises(mg.TierUnavailableError, match="configured tiers"):
        mg.save(gdf, "fields", tier="lukewarm")
    with pytest.raises(mg.FormatError, match="known formats"):
        mg.save(gdf, "fields", format="shapefile")
    with pytest.raises(mg.UnsupportedObjectError, match=r"'raster', 'timeseries'\] data, not vector"):
        mg.save(gdf, "fields", format="zarr")
    with pytest.raises(mg.InvalidKeyError):
        mg.save(gdf, "../escape")
    with pytest.raises(ValueError, match="mode must be one of"):
        mg.save(gdf, "fields", mode="x")
    assert mg.ls().empty, "failed saves must not leave entries"
    assert not list((memory.catalog.path.parent / "hot").rglob("*.parquet"))


def test_xarray_objects_without_spatial_dims_are_stored_as_arrays(memory):
    stations = xr.Dataset({"v": ("station", [1, 2])})
    entry = mg.save(stations, "stations")
    assert (entry.kind, entry.format, entry.bbox) == ("array", "zarr", None)
    xr.testing.assert_identical(mg.open("stations"), stations)


def test_gdf_without_crs_can_be_given_one(memory, gdf):
    nocrs = gdf.set_crs(None, allow_override=True)
    mg.save(nocrs, "fields", crs="EPSG:4326")
    assert_geodataframe_equal(mg.open("fields"), gdf)
    assert nocrs.crs is None, "the caller's object is not modified"


def test_failed_write_leaves_previous_version_current(memory, ds):
    mg.save(ds, "era5/t2m")
    with pytest.raises((mg.MemoriesError, ValueError, TypeError)):
        mg.save(ds, "era5/t2m", mode="w", encoding={"t2m": {"compressors": ("not-a-codec",)}})
    assert [e.version for e in mg.versions("era5/t2m")] == [1]
    xr.testing.assert_identical(mg.open("era5/t2m"), ds)
    assert memory.catalog.staged_versions() == []
    assert mg.recover() == []


def test_recover_removes_orphans(memory, ds, gdf):
    entry = mg.save(gdf, "fields")
    backend = memory.tiers.backend("hot")
    staged = memory.catalog.stage(
        key="fields", version_id="orphan-1", tier="hot", format="geoparquet", kind="vector",
        path="fields/@v/orphan-1.parquet", uri="x",
    )
    # the writer process of this staged row is gone
    import sqlite3

    with sqlite3.connect(memory.catalog.path) as con:
        con.execute("UPDATE versions SET writer = 'host-that-is-gone:1', created_at = '2000-01-01' "
                    "WHERE id = ?", (staged.pk,))
    backend.fs.pipe_file(backend.full_path("fields/@v/orphan-1.parquet"), b"partial")
    backend.makedirs("stray/@v")
    backend.fs.pipe_file(backend.full_path("stray/@v/never-staged.parquet"), b"partial")
    removed = mg.recover()
    assert len(removed) == 2
    assert not backend.exists("fields/@v/orphan-1.parquet")
    assert not backend.exists("stray")
    assert backend.exists(entry.path)
    assert memory.catalog.staged_versions() == []
    assert_geodataframe_equal(mg.open("fields"), gdf)


def test_entry_reprs(memory, gdf):
    entry = mg.save(gdf, "fields<b>")
    text = repr(entry)
    assert "'fields<b>' v1" in text
    assert "geoparquet" in text
    assert "EPSG:4326" in text
    page = entry._repr_html_()
    assert "fields&lt;b&gt;" in page
    assert "<svg" in page
    summary = memory._repr_html_()
    assert "<table>" in summary
    assert "<span>hot</span>" in summary
    assert "<td class='mg-num'>1</td>" in summary


def test_dataarray_and_geoseries_come_back_as_such(memory, ds, gdf):
    mg.save(ds.t2m, "t2m")
    mg.save(gdf.geometry, "shapes")
    assert isinstance(mg.open("t2m"), xr.DataArray)
    out = mg.open("shapes")
    assert type(out).__name__ == "GeoSeries"
    assert out.crs == gdf.crs


def test_memory_runs_and_reports_a_migration(memory, gdf):
    memory.save(gdf, "old/fields")
    memory.save(gdf, "new/fields")
    job = mg.MigrationJob(source_tier="hot", destination_tier="cold", selection_criteria={"key": "old/*"})
    plan = memory.execute_migration(job, dry_run=True)
    assert [k.key for k in plan.keys] == ["old/fields"]
    assert memory.info("old/fields").tier == "hot"
    status = memory.execute_migration(job)
    assert status.state == "completed"
    assert memory.get_migration_status(job.id).progress_percentage == 100.0
    assert memory.info("old/fields").tier == "cold"
    assert memory.info("new/fields").tier == "hot"
    assert [s.job.id for s in memory.migrations()] == [job.id]
    with pytest.raises(mg.KeyNotFoundError):
        memory.get_migration_status("no-such-job")


def test_open_promotes_a_key_a_policy_covers(tmp_path, gdf):
    config = mg.StorageConfig.from_dict({
        "home": str(tmp_path / "home"),
        "lifecycle": [{"from": "warm", "to": "hot", "on_access": True}],
    })
    mem = mg.Memory(config)
    mem.save(gdf, "fields", tier="warm")
    mem.save(gdf, "stays", tier="cold")
    assert_geodataframe_equal(mem.open("fields"), gdf)
    assert mem.info("fields").tier == "hot"
    assert list(mem.audit(operation="migrate").key) == ["fields"]
    mem.open("stays")
    assert mem.info("stays").tier == "cold"
