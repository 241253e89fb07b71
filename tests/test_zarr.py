from __future__ import annotations

import copy
import math
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import memories_geo as mg
from memories_geo.formats.zarr import DATAARRAY_VARIABLE, INFO_ATTR, ZARR_CODECS
from memories_geo.testing import FormatRoundTripTests, OnMemoryFilesystem
from memories_geo.types import CompressionLevel

import raster_cases as rc  # isort: skip

pytest.importorskip("zarr")
pytest.importorskip("dask")

SHARED_CASES = sorted(rc.SHARED_RASTERS)


def _make_case(name: str) -> Any:
    if name in rc.SHARED_RASTERS:
        return rc.open_shared_raster(name)
    return rc.CASES[name]()


def _store_path(memory: mg.Memory, key: str, version: int | None = None) -> str:
    entry = memory.info(key, version=version)
    return memory.tiers.backend(entry.tier).full_path(entry.path)


@pytest.fixture
def mem(tmp_path: Path) -> mg.Memory:
    return mg.Memory(mg.StorageConfig.embedded(tmp_path / "memories"))


class TestZarrRoundTrip(FormatRoundTripTests):
    format_name = "zarr"

    @pytest.fixture(
        params=[*rc.CASES, *(pytest.param(n, marks=pytest.mark.shared_data) for n in SHARED_CASES)]
    )
    def case(self, request: pytest.FixtureRequest) -> Any:
        return _make_case(request.param)

    def assert_same(self, expected: Any, actual: Any) -> None:
        rc.assert_same_raster(expected, actual)


class TestZarrOnMemoryFilesystem(OnMemoryFilesystem, FormatRoundTripTests):
    """The same contract through zarr's FsspecStore (a non-local tier)."""

    format_name = "zarr"

    @pytest.fixture(params=["cf_coder_attrs", "dataarray_unnamed", "chunked", "datatree"])
    def case(self, request: pytest.FixtureRequest) -> Any:
        return _make_case(request.param)

    def assert_same(self, expected: Any, actual: Any) -> None:
        xr.testing.assert_identical(expected, actual)
        assert rc.is_lazy(actual)


# -- real rasters ------------------------------------------------------------------------


@pytest.mark.shared_data
@pytest.mark.parametrize("name", SHARED_CASES)
def test_shared_raster_keeps_crs_transform_and_nodata(mem: mg.Memory, name: str) -> None:
    original = rc.open_shared_raster(name)
    mem.save(original, "real/raster", format="zarr")
    reopened = mem.open("real/raster")
    assert reopened.dtype == original.dtype
    assert reopened.rio.crs == original.rio.crs
    assert reopened.rio.transform() == original.rio.transform()
    nodata = original.rio.nodata
    if nodata is None:
        assert reopened.rio.nodata is None
    else:
        assert reopened.rio.nodata == nodata
        assert reopened.rio.nodata.dtype == nodata.dtype
    assert reopened.spatial_ref.attrs["crs_wkt"] == original.spatial_ref.attrs["crs_wkt"]
    assert reopened.spatial_ref.attrs["GeoTransform"] == original.spatial_ref.attrs["GeoTransform"]
    for key in ("_FillValue", "scale_factor", "add_offset"):
        if key in original.attrs:
            assert type(reopened.attrs[key]) is type(original.attrs[key]), key


@pytest.mark.shared_data
def test_rasterio_attrs_are_moved_not_decoded_by_plain_readers(mem: mg.Memory) -> None:
    original = rc.open_shared_raster("RGB.byte.tif")
    entry = mem.save(original, "real/rgb", format="zarr")
    moved = entry.object_info["nodes"]["/"]["attrs"][DATAARRAY_VARIABLE]
    assert {"_FillValue", "scale_factor", "add_offset"} <= set(moved)
    plain = xr.open_zarr(_store_path(mem, "real/rgb"), consolidated=True)
    assert plain[DATAARRAY_VARIABLE].dtype == np.uint8
    assert "_FillValue" not in plain[DATAARRAY_VARIABLE].attrs
    assert INFO_ATTR in plain.attrs


@pytest.mark.shared_data
def test_save_leaves_the_callers_object_untouched(mem: mg.Memory) -> None:
    original = rc.open_shared_raster("RGB.byte.tif")
    attrs, encoding = copy.deepcopy(original.attrs), copy.deepcopy(original.encoding)
    coord_encoding = copy.deepcopy(original.spatial_ref.encoding)
    mem.save(original, "real/rgb", format="zarr", compression="high")
    assert original.attrs == attrs
    assert original.encoding == encoding
    assert original.spatial_ref.encoding == coord_encoding


# -- footprints --------------------------------------------------------------------------


@pytest.mark.shared_data
def test_footprint_of_landsat_scene_matches_pyproj(mem: mg.Memory) -> None:
    import pyproj

    original = rc.open_shared_raster("RGB.byte.tif")
    entry = mem.save(original, "real/rgb", format="zarr")
    transformer = pyproj.Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True)
    expected = transformer.transform_bounds(*original.rio.bounds(), densify_pts=21)
    assert entry.bbox == pytest.approx(expected, abs=1e-6)
    assert entry.bbox == pytest.approx((-78.96, 23.56, -76.57, 25.55), abs=0.01)
    assert entry.native_bbox == pytest.approx(original.rio.bounds(), abs=1e-6)
    assert entry.crs == "EPSG:32618"
    assert entry.variables == ()
    assert dict(entry.shape) == {"band": 3, "y": 718, "x": 791}


@pytest.mark.shared_data
def test_footprint_of_geostationary_disk_is_finite(mem: mg.Memory) -> None:
    original = rc.open_shared_raster("goes.tif")
    entry = mem.save(original, "real/goes", format="zarr")
    assert entry.bbox is not None
    minx, miny, maxx, maxy = entry.bbox
    assert all(math.isfinite(v) for v in entry.bbox)
    assert -180 <= minx < -75 < maxx <= 180
    assert -90 <= miny < 0 < maxy <= 90
    assert entry.crs is not None
    assert "Geostationary" in entry.crs


def test_footprint_time_range_and_variables(mem: mg.Memory) -> None:
    ds = rc.time_coordinate()
    entry = mem.save(ds, "synthetic/t2m", format="zarr")
    assert pd.Timestamp(entry.time_start) == pd.Timestamp("2024-01-01")
    assert pd.Timestamp(entry.time_end) == pd.Timestamp("2024-01-03")
    assert entry.variables == ("t2m",)
    assert entry.crs == rc.UTM_WKT_CRS


def test_footprint_of_a_datatree_covers_its_nodes(mem: mg.Memory) -> None:
    entry = mem.save(rc.datatree(), "synthetic/tree", format="zarr")
    assert entry.bbox is not None
    assert pd.Timestamp(entry.time_end) == pd.Timestamp("2024-01-03")
    assert "/a/t2m" in entry.variables
    assert "/b/c/u2" in entry.variables


# -- CRS ---------------------------------------------------------------------------------


def test_no_crs_raises_naming_crs_keyword(mem: mg.Memory) -> None:
    with pytest.raises(mg.UnsupportedObjectError, match=r"crs="):
        mem.save(rc.bare_dataset(), "nocrs", format="zarr")
    with pytest.raises(mg.KeyNotFoundError):
        mem.open("nocrs")
    hot = Path(mem.tiers.backend("hot").full_path(""))
    assert list(hot.rglob("*.zarr")) == []


def test_crs_keyword_assigns_a_cf_grid_mapping(mem: mg.Memory) -> None:
    import pyproj

    ds = rc.bare_dataset()
    entry = mem.save(ds, "withcrs", format="zarr", crs="EPSG:32631")
    assert "spatial_ref" not in ds.coords
    assert entry.crs == "EPSG:32631"
    reopened = mem.open("withcrs")
    assert "spatial_ref" in reopened.coords
    wkt = reopened.spatial_ref.attrs["crs_wkt"]
    assert pyproj.CRS.from_wkt(wkt).to_epsg() == 32631
    assert reopened.spatial_ref.attrs["spatial_ref"] == wkt
    assert reopened.rio.crs.to_epsg() == 32631
    xr.testing.assert_identical(rc.with_crs(ds, "EPSG:32631"), reopened)


def test_conflicting_crs_keyword_raises(mem: mg.Memory) -> None:
    with pytest.raises(mg.UnsupportedObjectError, match="reproject"):
        mem.save(rc.float32_nan(), "conflict", format="zarr", crs="EPSG:4326")


def test_matching_crs_keyword_is_accepted(mem: mg.Memory) -> None:
    entry = mem.save(rc.float32_nan(), "same", format="zarr", crs=rc.UTM_WKT_CRS)
    assert entry.crs == rc.UTM_WKT_CRS


# -- appends -----------------------------------------------------------------------------


@pytest.mark.parametrize("as_dataarray", [False, True], ids=["Dataset", "DataArray"])
def test_append_along_time_makes_a_new_version(mem: mg.Memory, as_dataarray: bool) -> None:
    full = rc.cf_attributes()
    if as_dataarray:
        full = full["t2m"]
    first, second = full.isel(time=slice(0, 2)), full.isel(time=slice(2, None))
    v1 = mem.save(first, "append/t2m", format="zarr")
    v1_files = sorted(p.name for p in Path(_store_path(mem, "append/t2m")).rglob("*"))
    v2 = mem.save(second, "append/t2m", mode="a", append_dim="time")
    assert (v1.version, v2.version) == (1, 2)
    assert v2.path != v1.path
    assert pd.Timestamp(v2.time_end) == pd.Timestamp("2024-01-03")
    assert dict(v2.shape)["time"] == 3
    xr.testing.assert_identical(xr.concat([first, second], dim="time"), mem.open("append/t2m"))
    xr.testing.assert_identical(first, mem.open("append/t2m", version=1))
    assert sorted(p.name for p in Path(_store_path(mem, "append/t2m", 1)).rglob("*")) == v1_files
    mem.verify("append/t2m", all_versions=True)


def test_append_keeps_rasterio_attrs(mem: mg.Memory) -> None:
    da = rc.with_crs(
        xr.DataArray(
            np.arange(24, dtype="uint8").reshape(2, 3, 4),
            dims=("time", "y", "x"),
            coords={"time": pd.date_range("2024-01-01", periods=2), **rc._grid()},
            attrs={"_FillValue": np.uint8(0), "scale_factor": 1.0, "add_offset": 0.0},
        )
    )
    mem.save(da.isel(time=[0]), "append/raw", format="zarr")
    mem.save(da.isel(time=[1]), "append/raw", mode="a", append_dim="time")
    xr.testing.assert_identical(da, mem.open("append/raw"))


def test_append_of_another_type_is_refused(mem: mg.Memory) -> None:
    ds = rc.time_coordinate()
    mem.save(ds.isel(time=[0]), "append/mixed", format="zarr")
    with pytest.raises(mg.UnsupportedObjectError, match="DataArray"):
        mem.save(ds["t2m"].isel(time=[1]), "append/mixed", mode="a", append_dim="time")
    assert [e.version for e in mem.versions("append/mixed")] == [1]


# -- compression and encoding --------------------------------------------------------------


@pytest.mark.parametrize("level", list(CompressionLevel))
def test_compression_level_sets_the_configured_codec(mem: mg.Memory, level: CompressionLevel) -> None:
    import zarr

    mem.save(rc.integers(), "codec", format="zarr", compression=level)
    group = zarr.open_group(_store_path(mem, "codec"), mode="r")
    name, params = ZARR_CODECS[level]
    for array_name in ("i2", "u2", "x"):
        (codec,) = group[array_name].compressors
        config = codec.to_dict()
        assert config["name"] == name
        for key, value in params.items():
            configured = config["configuration"][key]
            assert getattr(configured, "value", configured) == value, (array_name, key)


def test_user_encoding_wins_over_tier_compression(mem: mg.Memory) -> None:
    import zarr
    from zarr.codecs import ZstdCodec

    mem.save(
        rc.integers(),
        "codec",
        format="zarr",
        compression="fast",
        encoding={"i2": {"compressors": (ZstdCodec(level=1),), "chunks": (1, 2)}},
    )
    group = zarr.open_group(_store_path(mem, "codec"), mode="r")
    assert group["i2"].compressors[0].to_dict()["configuration"]["level"] == 1
    assert group["i2"].chunks == (1, 2)
    assert group["u2"].compressors[0].to_dict()["name"] == "blosc"


def test_unknown_encoding_parameter_raises(mem: mg.Memory) -> None:
    with pytest.raises(mg.FormatError, match=r"unknown encoding parameters \['compresion'\]"):
        mem.save(rc.integers(), "enc", format="zarr", encoding={"i2": {"compresion": 1}})
    with pytest.raises(mg.KeyNotFoundError):
        mem.open("enc")


def test_encoding_for_unknown_variable_raises(mem: mg.Memory) -> None:
    with pytest.raises(mg.FormatError, match="'nope'"):
        mem.save(rc.integers(), "enc", format="zarr", encoding={"nope": {"dtype": "int8"}})


def test_dataarray_encoding_may_be_given_directly(mem: mg.Memory) -> None:
    import zarr

    da = rc.dataarray_unnamed()
    mem.save(da, "enc/da", format="zarr", encoding={"dtype": "float64"})
    group = zarr.open_group(_store_path(mem, "enc/da"), mode="r")
    assert group[DATAARRAY_VARIABLE].dtype == np.float64
    xr.testing.assert_identical(da, mem.open("enc/da"))


def test_compute_false_returns_a_delayed_entry(mem: mg.Memory) -> None:
    delayed = mem.save(rc.chunked(), "lazy", format="zarr", compute=False)
    entry = delayed.compute()
    assert (entry.key, entry.version) == ("lazy", 1)
    xr.testing.assert_identical(rc.chunked(), mem.open("lazy"))


def test_resaving_an_opened_rechunked_object(mem: mg.Memory) -> None:
    mem.save(rc.chunked(), "resave", format="zarr")
    opened = mem.open("resave").chunk({"x": 4, "y": 3})
    entry = mem.save(opened, compression="maximum")
    assert entry.version == 2
    xr.testing.assert_identical(rc.chunked(), mem.open("resave"))


# -- opening -----------------------------------------------------------------------------


def test_open_selects_data_variables_with_columns(mem: mg.Memory) -> None:
    ds = rc.integers()
    mem.save(ds, "query", format="zarr")
    subset = mem.open("query", columns=["i2", "u2"])
    assert list(subset.data_vars) == ["i2", "u2"]
    xr.testing.assert_identical(ds[["i2", "u2"]], subset)
    single = mem.open("query", columns="i8")
    assert list(single.data_vars) == ["i8"]
    assert "spatial_ref" in single.coords


def test_open_keeps_stored_chunks_unless_told(mem: mg.Memory) -> None:
    ds = rc.chunked()
    mem.save(ds, "chunks", format="zarr")
    assert mem.open("chunks")["t2m"].chunks == ds["t2m"].chunks
    merged = mem.open("chunks", chunks={"time": 3, "y": 4, "x": 4})
    assert merged["t2m"].chunks == ((3,), (3,), (4,))
    xr.testing.assert_identical(ds, merged)


def test_unknown_open_keyword_lists_the_accepted_ones(mem: mg.Memory) -> None:
    from memories_geo.formats.zarr import ZarrFormat

    mem.save(rc.integers(), "query", format="zarr")
    with pytest.raises(mg.OptionError, match=r"'variables'.*chunks") as caught:
        mem.open("query", variables=["i2"])
    for keyword in ("bbox", "bbox_crs", "time", "columns", *ZarrFormat.open_options):
        assert keyword in str(caught.value)


def test_columns_errors(mem: mg.Memory) -> None:
    mem.save(rc.integers(), "query", format="zarr")
    with pytest.raises(mg.FormatError, match=r"\['missing'\].*'i2'"):
        mem.open("query", columns=["missing"])
    mem.save(rc.dataarray_named(), "query/da", format="zarr")
    with pytest.raises(mg.OptionError, match="DataArray"):
        mem.open("query/da", columns=["t2m"])
    mem.save(rc.datatree(), "query/tree", format="zarr")
    with pytest.raises(mg.OptionError, match="DataTree"):
        mem.open("query/tree", columns=["t2m"])


# -- the open contract: bbox and time ------------------------------------------------------


def _utm_series(ny: int = 20, nx: int = 30, nt: int = 4) -> xr.Dataset:
    """float32 (time, y, x) in EPSG:32631 with 10 m cells, y descending."""
    data = np.arange(nt * ny * nx, dtype="float32").reshape(nt, ny, nx)
    time = pd.date_range("2024-01-01", periods=nt, freq="D")
    return rc.with_crs(
        xr.Dataset({"t2m": (("time", "y", "x"), data)}, coords={"time": time, **rc._grid(ny, nx)})
    )


def _to_wgs84(bounds: tuple[float, float, float, float], crs: str) -> tuple[float, ...]:
    import pyproj

    transformer = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    return tuple(transformer.transform_bounds(*bounds, densify_pts=21))


def test_bbox_in_wgs84_and_in_the_native_crs_select_the_same_cells(mem: mg.Memory) -> None:
    ds = _utm_series()
    mem.save(ds, "bbox/utm", format="zarr")
    expected = ds.isel(x=slice(5, 15), y=slice(3, 10))
    x, y = ds.x.values, ds.y.values
    native = (float(x[5]) - 2, float(y[9]) - 2, float(x[14]) + 2, float(y[3]) + 2)
    by_native = mem.open("bbox/utm", bbox=native, bbox_crs="EPSG:32631")
    by_wgs84 = mem.open("bbox/utm", bbox=_to_wgs84(native, "EPSG:32631"))
    xr.testing.assert_identical(expected, by_native)
    xr.testing.assert_identical(expected, by_wgs84)
    assert rc.is_lazy(by_wgs84)
    da = mem.open("bbox/utm", bbox=native, bbox_crs="EPSG:32631")["t2m"]
    assert da.rio.transform() == expected.t2m.rio.transform()


def test_module_open_takes_the_same_request(memory: mg.Memory) -> None:
    ds = _utm_series()
    memory.save(ds, "bbox/api", format="zarr")
    x, y = ds.x.values, ds.y.values
    native = (float(x[0]) - 2, float(y[1]) - 2, float(x[1]) + 2, float(y[0]) + 2)
    subset = mg.open("bbox/api", bbox=_to_wgs84(native, "EPSG:32631"), time="2024-01-01", columns=["t2m"])
    xr.testing.assert_identical(ds.isel(time=[0], x=slice(0, 2), y=slice(0, 2)), subset)


def test_bbox_keeps_the_pixels_whose_centre_is_inside(mem: mg.Memory) -> None:
    ds = _utm_series()
    mem.save(ds, "bbox/centres", format="zarr")
    x0, y0 = 500_000.0, 5_700_000.0
    on_edges = mem.open("bbox/centres", bbox=(x0 + 20, y0 - 60, x0 + 50, y0 - 30), bbox_crs="EPSG:32631")
    xr.testing.assert_identical(ds.isel(x=slice(2, 5), y=slice(3, 6)), on_edges)
    on_centres = mem.open("bbox/centres", bbox=(x0 + 25, y0 - 55, x0 + 45, y0 - 35), bbox_crs="EPSG:32631")
    xr.testing.assert_identical(on_edges, on_centres)
    point = mem.open("bbox/centres", bbox=(x0 + 25, y0 - 25, x0 + 25, y0 - 25), bbox_crs="EPSG:32631")
    xr.testing.assert_identical(ds.isel(x=[2], y=[2]), point)
    with pytest.raises(mg.FormatError, match=r"contains no pixel centre.*widen it"):
        mem.open("bbox/centres", bbox=(x0 + 26, y0 - 24, x0 + 34, y0 - 16), bbox_crs="EPSG:32631")


@pytest.mark.parametrize("ascending", [False, True], ids=["lat-descending", "lat-ascending"])
def test_bbox_on_lon_lat_grids(mem: mg.Memory, ascending: bool) -> None:
    lat = np.arange(10) + 40.5 if ascending else 49.5 - np.arange(10)
    lon = np.arange(12) - 5.5
    values = np.arange(120, dtype="float64").reshape(10, 12)
    ds = xr.Dataset({"v": (("lat", "lon"), values)}, coords={"lat": lat, "lon": lon})
    mem.save(ds, "bbox/lonlat", format="zarr")
    subset = mem.open("bbox/lonlat", bbox=(-2.0, 44.2, 1.0, 46.0))
    assert sorted(subset.lon.values.tolist()) == [-1.5, -0.5, 0.5]
    assert sorted(subset.lat.values.tolist()) == [44.5, 45.5]
    wanted = {"lat": np.isin(lat, [44.5, 45.5]), "lon": np.isin(lon, [-1.5, -0.5, 0.5])}
    xr.testing.assert_identical(ds.isel(wanted), subset)


def test_bbox_outside_the_data_names_its_bounds(mem: mg.Memory) -> None:
    mem.save(_utm_series(), "bbox/far", format="zarr")
    bounds = r"\(500000\.0, 5699800\.0, 500300\.0, 5700000\.0\) in EPSG:32631, \(3\.0, 51\.449"
    with pytest.raises(mg.FormatError, match=rf"does not intersect this Dataset, whose bounds are {bounds}"):
        mem.open("bbox/far", bbox=(100.0, 10.0, 101.0, 11.0))
    assert issubclass(mg.FormatError, ValueError)


def test_time_selects_steps_by_label(mem: mg.Memory) -> None:
    ds = _utm_series()
    mem.save(ds, "time/ds", format="zarr")
    xr.testing.assert_identical(ds.isel(time=[1]), mem.open("time/ds", time="2024-01-02"))
    xr.testing.assert_identical(ds.isel(time=slice(2, None)), mem.open("time/ds", time=("2024-01-03", None)))
    xr.testing.assert_identical(ds.isel(time=slice(0, 2)), mem.open("time/ds", time=(None, "2024-01-02")))
    da = ds["t2m"]
    mem.save(da, "time/da", format="zarr")
    opened = mem.open("time/da", time=slice("2024-01-02", "2024-01-03"))
    xr.testing.assert_identical(da.isel(time=slice(1, 3)), opened)
    assert opened.name == "t2m"
    with pytest.raises(mg.FormatError, match=r"'time' from 2024-01-01 00:00:00 to 2024-01-04"):
        mem.open("time/ds", time="2023")


def test_time_on_data_without_a_time_dimension_raises(mem: mg.Memory) -> None:
    mem.save(rc.integers(), "time/none", format="zarr")
    with pytest.raises(mg.OptionError, match="datetime dimension"):
        mem.open("time/none", time="2024")


def test_bbox_time_and_columns_combine(mem: mg.Memory) -> None:
    ds = _utm_series().assign(flag=lambda d: d.t2m > 100)
    per_step = {"chunks": (1, 20, 30)}
    mem.save(ds, "combined", format="zarr", encoding={"t2m": per_step, "flag": per_step})
    x, y = ds.x.values, ds.y.values
    subset = mem.open(
        "combined",
        bbox=(float(x[0]), float(y[4]), float(x[3]), float(y[0])),
        bbox_crs="EPSG:32631",
        time=("2024-01-02", "2024-01-03"),
        columns=["flag"],
        chunks={"time": 2},
    )
    xr.testing.assert_identical(ds[["flag"]].isel(time=slice(1, 3), x=slice(0, 4), y=slice(0, 5)), subset)
    assert subset["flag"].chunks[0] == (1, 1)


def test_bbox_and_time_subsets_are_lazy_and_read_nothing_outside(mem: mg.Memory) -> None:
    ds = rc.large_time_series(nt=4, ny=256, nx=256)
    mem.save(ds, "lazy/window", format="zarr", encoding={"t2m": {"chunks": (1, 64, 64)}})
    x, y = ds.x.values, ds.y.values
    bbox = (float(x[70]), float(y[120]), float(x[120]), float(y[70]))
    subset = mem.open("lazy/window", bbox=bbox, bbox_crs="EPSG:32631", time="2024-01-01T01")
    assert rc.is_lazy(subset)
    assert dict(subset.sizes) == {"time": 1, "y": 51, "x": 51}
    chunk_dir = Path(_store_path(mem, "lazy/window")) / "t2m" / "c"
    kept = chunk_dir / "1" / "1" / "1"
    damaged = [f for f in chunk_dir.rglob("*") if f.is_file() and f != kept]
    assert len(damaged) == 63
    for file in damaged:
        file.write_bytes(b"not a chunk")
    xr.testing.assert_identical(ds.isel(time=[1], x=slice(70, 121), y=slice(70, 121)), subset.compute())
    with pytest.raises(RuntimeError, match="decompression"):
        mem.open("lazy/window").compute()


def test_chunks_none_selects_without_dask(mem: mg.Memory) -> None:
    ds = _utm_series()
    mem.save(ds, "nodask", format="zarr")
    subset = mem.open("nodask", chunks=None, time="2024-01-04")
    assert not rc.is_lazy(subset)
    xr.testing.assert_identical(ds.isel(time=[3]), subset)


def test_bbox_and_time_apply_to_every_node_of_a_tree(mem: mg.Memory) -> None:
    tree = rc.datatree()
    mem.save(tree, "tree/sel", format="zarr")
    x, y = rc._grid()["x"], rc._grid()["y"]
    opened = mem.open(
        "tree/sel",
        bbox=(float(x[1]), float(y[1]), float(x[2]), float(y[0])),
        bbox_crs="EPSG:32631",
        time="2024-01-03",
    )
    assert isinstance(opened, xr.DataTree)
    xr.testing.assert_identical(
        tree["/a"].to_dataset().isel(time=[2], x=[1, 2], y=[0, 1]), opened["/a"].to_dataset()
    )
    xr.testing.assert_identical(
        tree["/b/c"].to_dataset().isel(x=[1, 2], y=[0, 1]), opened["/b/c"].to_dataset()
    )
    assert rc.is_lazy(opened)
    with pytest.raises(mg.FormatError, match="selects no pixel of any node"):
        mem.open("tree/sel", bbox=(100.0, 10.0, 101.0, 11.0))


def test_importing_the_format_module_does_not_import_zarr() -> None:
    code = (
        "import sys, memories_geo, memories_geo.formats.zarr; "
        "print(sorted(m for m in ('zarr', 'dask', 'rasterio', 'rioxarray') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


# -- chunk layout --------------------------------------------------------------------------

MiB = 1 << 20


def _chunk_bytes(array: Any) -> int:
    return math.prod(array.chunks) * array.dtype.itemsize


def test_chunks_of_numpy_rasters_favour_full_spatial_planes() -> None:
    from memories_geo.formats.zarr import choose_chunks

    xy = ("x", "y")
    assert choose_chunks((365, 256, 256), 4, ("time", "y", "x"), spatial=xy) == ((16, 256, 256), None)
    assert choose_chunks((10, 4096, 4096), 4, ("time", "y", "x"), spatial=xy) == ((1, 1024, 1024), None)
    assert choose_chunks((3, 100, 200_000), 1, ("band", "y", "x"), spatial=xy)[0] == (1, 100, 41_728)
    assert choose_chunks((5, 2, 3), 8, ("time", "y", "x"), spatial=xy) == ((5, 2, 3), None)


def test_chunks_follow_dask_chunks_in_range_divide_large_and_merge_small() -> None:
    from memories_geo.formats.zarr import choose_chunks

    dims, xy = ("time", "y", "x"), ("x", "y")
    in_range = ((1,) * 100, (1024,) * 2, (1024,) * 2)
    assert choose_chunks((100, 2048, 2048), 4, dims, spatial=xy, dask_chunks=in_range) == (
        (1, 1024, 1024),
        None,
    )
    large = ((10,) * 10, (2048,), (2048,))
    zarr_chunks, rechunk = choose_chunks((100, 2048, 2048), 4, dims, spatial=xy, dask_chunks=large)
    assert rechunk is None
    assert all(have % z == 0 for have, z in zip((10, 2048, 2048), zarr_chunks, strict=True))
    assert MiB <= math.prod(zarr_chunks) * 4 <= 8 * MiB
    small = ((1,) * 100, (64,) * 32, (64,) * 32)
    zarr_chunks, rechunk = choose_chunks((100, 2048, 2048), 4, dims, spatial=xy, dask_chunks=small)
    assert zarr_chunks == rechunk == (1, 1024, 1024)
    irregular = ((1,) * 100, (1000, 1048), (2048,))
    zarr_chunks, rechunk = choose_chunks((100, 2048, 2048), 4, dims, spatial=xy, dask_chunks=irregular)
    assert zarr_chunks == rechunk == (1, 1024, 1024)


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        (None, (8, 256, 512)),
        ({"time": 1, "y": 32, "x": 32}, (8, 256, 512)),
        ({"time": 12, "y": 256, "x": 512}, (12, 256, 512)),
    ],
    ids=["numpy", "tiny-dask", "dask-in-range"],
)
def test_stored_chunks_are_chosen_and_open_matches_them(
    mem: mg.Memory, chunks: dict | None, expected: tuple[int, ...]
) -> None:
    import zarr

    ds = rc.large_time_series(chunks=chunks)
    mem.save(ds, "layout", format="zarr", compression="medium")
    array = zarr.open_group(_store_path(mem, "layout"), mode="r")["t2m"]
    assert array.chunks == expected
    assert MiB <= _chunk_bytes(array) <= 8 * MiB
    opened = mem.open("layout")
    assert opened["t2m"].chunks == tuple(
        tuple(min(c, n - i) for i in range(0, n, c)) for c, n in zip(expected, ds["t2m"].shape, strict=True)
    )
    xr.testing.assert_identical(ds, opened)


def test_explicit_chunks_win_and_dask_data_is_aligned_to_them(mem: mg.Memory) -> None:
    import zarr

    ds = rc.large_time_series(chunks={"time": 5, "y": 100, "x": 100})
    mem.save(ds, "explicit", format="zarr", encoding={"t2m": {"chunks": (4, 128, 128)}})
    array = zarr.open_group(_store_path(mem, "explicit"), mode="r")["t2m"]
    assert array.chunks == (4, 128, 128)
    xr.testing.assert_identical(ds, mem.open("explicit"))


def test_glacier_level_shards_into_few_objects(mem: mg.Memory) -> None:
    import zarr

    ds = rc.large_time_series(nt=48)
    mem.save(ds, "archive", format="zarr", compression="maximum")
    array = zarr.open_group(_store_path(mem, "archive"), mode="r")["t2m"]
    assert array.shards is not None
    assert array.shards[0] > array.chunks[0]
    files = list((Path(_store_path(mem, "archive")) / "t2m" / "c").rglob("*"))
    assert len([f for f in files if f.is_file()]) < 48 * 256 * 512 * 4 // _chunk_bytes(array)
    xr.testing.assert_identical(ds, mem.open("archive"))


# -- appends share unchanged chunk files ---------------------------------------------------


def test_append_hard_links_unchanged_chunks_and_copies_rewritten_ones(mem: mg.Memory) -> None:
    import zarr

    full = rc.large_time_series(nt=40)
    first, second = full.isel(time=slice(0, 30)), full.isel(time=slice(30, None))
    mem.save(first, "append/big", format="zarr", compression="medium")
    v1 = Path(_store_path(mem, "append/big"))
    mem.save(second, "append/big", mode="a", append_dim="time")
    v2 = Path(_store_path(mem, "append/big"))
    array = zarr.open_group(str(v2), mode="r")["t2m"]
    assert array.chunks[0] == 8
    full_chunk = ("t2m", "c", "2", "0", "0")
    partial_chunk = ("t2m", "c", "3", "0", "0")
    assert v2.joinpath(*full_chunk).stat().st_ino == v1.joinpath(*full_chunk).stat().st_ino
    assert v2.joinpath(*partial_chunk).stat().st_ino != v1.joinpath(*partial_chunk).stat().st_ino
    assert (v2 / "zarr.json").stat().st_ino != (v1 / "zarr.json").stat().st_ino
    mem.verify("append/big", all_versions=True)
    xr.testing.assert_identical(first, mem.open("append/big", version=1))
    xr.testing.assert_identical(full, mem.open("append/big"))


def test_consolidated_metadata_shows_the_appended_shape(mem: mg.Memory) -> None:
    import zarr

    full = rc.time_coordinate()
    mem.save(full.isel(time=[0]), "append/meta", format="zarr")
    mem.save(full.isel(time=[1, 2]), "append/meta", mode="a", append_dim="time")
    group = zarr.open_consolidated(_store_path(mem, "append/meta"), zarr_format=3)
    assert group["t2m"].shape == (3, 3, 4)
    assert group.metadata.consolidated_metadata.metadata["t2m"].shape == (3, 3, 4)


def test_append_of_sharded_archive_keeps_v1_intact(mem: mg.Memory) -> None:
    full = rc.large_time_series(nt=40)
    mem.save(full.isel(time=slice(0, 30)), "append/glacier", format="zarr", compression="maximum")
    mem.save(full.isel(time=slice(30, None)), "append/glacier", mode="a", append_dim="time")
    mem.verify("append/glacier", all_versions=True)
    xr.testing.assert_identical(full.isel(time=slice(0, 30)), mem.open("append/glacier", version=1))
    xr.testing.assert_identical(full, mem.open("append/glacier"))


def test_append_on_an_object_store_copies_server_side(tmp_path: Path) -> None:
    config = mg.StorageConfig.embedded(tmp_path / "memories")
    remote = mg.TierConfig(url=f"memory://mg-{uuid.uuid4().hex}/remote")
    memory = mg.Memory(replace(config, tiers={**config.tiers, "remote": remote}))
    full = rc.large_time_series(nt=20, ny=64, nx=64)
    memory.save(full.isel(time=slice(0, 12)), "append/remote", format="zarr", tier="remote")
    memory.save(full.isel(time=slice(12, None)), "append/remote", mode="a", append_dim="time")
    memory.verify("append/remote", all_versions=True)
    xr.testing.assert_identical(full, memory.open("append/remote"))


# -- region writes -------------------------------------------------------------------------


def _region_write(mem: mg.Memory, key: str, part: Any, region: Any) -> tuple[Any, Any]:
    from memories_geo.backends.base import Location
    from memories_geo.formats.base import WriteOptions
    from memories_geo.formats.zarr import ZarrFormat
    from memories_geo.query import open_request

    entry = mem.info(key)
    backend = mem.tiers.backend(entry.tier)
    target = Location(backend, entry.path.replace(".zarr", "-region.zarr"))
    options = WriteOptions(mode="a", previous=Location(backend, entry.path), extra={"region": region})
    fmt = ZarrFormat()
    result = fmt.write(part, target, options)
    return fmt.open(target, result.object_info, open_request()), target


@pytest.mark.parametrize("region", ["auto", {"time": slice(5, 9)}], ids=["auto", "slices"])
def test_region_write_makes_a_new_version_and_keeps_the_old(mem: mg.Memory, region: Any) -> None:
    full = rc.large_time_series(nt=20)
    mem.save(full, "region/t2m", format="zarr", compression="medium")
    part = full.isel(time=slice(5, 9)).copy(deep=True)
    part["t2m"] = part["t2m"] + 100
    written, _ = _region_write(mem, "region/t2m", part.chunk({"time": 2}), region)
    expected = full.copy(deep=True)
    expected["t2m"][5:9] = part["t2m"].values
    xr.testing.assert_identical(expected, written)
    mem.verify("region/t2m")
    xr.testing.assert_identical(full, mem.open("region/t2m"))


def test_region_outside_the_store_raises(mem: mg.Memory) -> None:
    full = rc.time_coordinate()
    mem.save(full.isel(time=[0, 1]), "region/bad", format="zarr")
    with pytest.raises(mg.FormatError, match="contiguous"):
        _region_write(mem, "region/bad", full.isel(time=[2]), "auto")


def test_region_write_through_memory_save(mem: mg.Memory) -> None:
    full = rc.time_coordinate()
    mem.save(full, "region/mem", format="zarr")
    part = full.isel(time=[1]) * 2
    entry = mem.save(part, "region/mem", mode="a", region="auto")
    assert entry.version == 2
    expected = full.copy(deep=True)
    expected["t2m"][1] = part["t2m"][0].values
    xr.testing.assert_identical(expected, mem.open("region/mem"))


# -- what other readers see ----------------------------------------------------------------


@pytest.mark.shared_data
@pytest.mark.parametrize("name", SHARED_CASES)
def test_plain_xarray_and_rioxarray_read_crs_and_transform(mem: mg.Memory, name: str) -> None:
    import rioxarray  # noqa: F401

    original = rc.open_shared_raster(name)
    mem.save(original, "plain/raster", format="zarr")
    plain = xr.open_zarr(_store_path(mem, "plain/raster"))
    assert "spatial_ref" in plain.coords
    assert plain.rio.crs == original.rio.crs
    assert plain.rio.transform() == original.rio.transform()
    assert plain.attrs["spatial:transform"] == pytest.approx(list(original.rio.transform())[:6], rel=1e-9)
    if original.rio.crs is not None and original.rio.crs.to_epsg() is not None:
        assert plain.attrs["proj:code"] == f"EPSG:{original.rio.crs.to_epsg()}"
    xr.testing.assert_identical(original, mem.open("plain/raster"))


@pytest.mark.parametrize("case", ["nodata_float", "cf_coder_attrs"])
def test_nodata_is_the_zarr_fill_value_for_other_readers(mem: mg.Memory, case: str) -> None:
    import zarr

    original = rc.CASES[case]()
    mem.save(original, "nodata", format="zarr")
    group = zarr.open_group(_store_path(mem, "nodata"), mode="r")
    name = DATAARRAY_VARIABLE if case == "nodata_float" else "v"
    assert group[name].fill_value == (original if case == "nodata_float" else original[name]).attrs[
        "_FillValue"
    ]
    assert "_FillValue" not in group[name].attrs
    xr.testing.assert_identical(original, mem.open("nodata"))


# -- dask: delayed writes and distributed --------------------------------------------------


def test_compute_false_writes_metadata_now_and_chunks_on_compute(mem: mg.Memory) -> None:
    import zarr

    ds = rc.large_time_series(chunks={"time": 8})
    delayed = mem.save(ds, "delayed", format="zarr", compute=False)
    stores = list(Path(mem.tiers.backend("hot").full_path("delayed")).rglob("*.zarr"))
    assert len(stores) == 1
    array = zarr.open_group(str(stores[0]), mode="r")["t2m"]
    assert array.nchunks_initialized == 0
    with pytest.raises(mg.KeyNotFoundError):
        mem.open("delayed")
    entry = delayed.compute()
    assert entry.size_bytes > ds["t2m"].nbytes // 2
    mem.verify("delayed")
    xr.testing.assert_identical(ds, mem.open("delayed"))


def test_memory_pickles_and_saves_on_a_distributed_cluster(tmp_path: Path) -> None:
    import pickle

    distributed = pytest.importorskip("distributed")
    memory = pickle.loads(pickle.dumps(mg.Memory(mg.StorageConfig.embedded(tmp_path / "memories"))))
    ds = rc.large_time_series(chunks={"time": 8})
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None)
        as cluster,
        distributed.Client(cluster) as client,
    ):
        entry = client.compute(memory.save(ds, "dist", format="zarr", compute=False)).result()
    assert entry.version == 1
    xr.testing.assert_identical(ds, memory.open("dist"))


# -- missing chunks (issue 15, defect 9) and objects zarr cannot store (defect 5) ------------


def _chunk_files(memory: mg.Memory, key: str, variable: str) -> list[Path]:
    return sorted(p for p in Path(_store_path(memory, key)).rglob("*") if p.is_file()
                  and f"/{variable}/c/" in p.as_posix())


@pytest.mark.parametrize("chunks", [{}, None], ids=["dask", "lazily-indexed"])
def test_a_deleted_chunk_raises_on_read(mem: mg.Memory, chunks: Any) -> None:
    ds = rc.large_time_series(nt=6, ny=32, nx=48, chunks={"time": 1})
    mem.save(ds, "gone", format="zarr")
    victim = _chunk_files(mem, "gone", "t2m")[2]
    victim.unlink()
    opened = mem.open("gone", chunks=chunks)
    with pytest.raises(mg.ChecksumMismatchError, match=r"t2m/c/2/0/0.*missing") as raised:
        opened.t2m.mean().compute()
    assert isinstance(raised.value, OSError)
    xr.testing.assert_identical(opened.t2m.isel(time=[0, 1, 3]).load(), ds.t2m.isel(time=[0, 1, 3]))


def test_an_all_nan_chunk_is_not_written_and_reads_back_exactly(mem: mg.Memory) -> None:
    ds = rc.large_time_series(nt=4, ny=32, nx=48, chunks={"time": 1})
    ds["t2m"] = ds.t2m.where(ds.time != ds.time[1])
    mem.save(ds, "sparse", format="zarr")
    stored = {p.name for p in Path(_store_path(mem, "sparse"), "t2m", "c").iterdir()}
    assert stored == {"0", "2", "3"}
    xr.testing.assert_identical(mem.open("sparse").load(), ds.load())
    mem.verify("sparse")


def test_a_missing_chunk_of_an_appended_version_raises(mem: mg.Memory) -> None:
    ds = rc.large_time_series(nt=4, ny=16, nx=24, chunks={"time": 1})
    mem.save(ds.isel(time=slice(0, 2)), "grown", format="zarr")
    mem.save(ds.isel(time=slice(2, 4)), "grown", mode="a", append_dim="time")
    xr.testing.assert_identical(mem.open("grown").load(), ds.load())
    _chunk_files(mem, "grown", "t2m")[0].unlink()
    with pytest.raises(mg.ChecksumMismatchError, match="missing"):
        mem.open("grown").t2m.load()
    xr.testing.assert_identical(mem.open("grown", version=1).load(), ds.isel(time=slice(0, 2)).load())


def _tier_files(memory: mg.Memory) -> list[str]:
    root = Path(memory.tiers.backend("hot").full_path(""))
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and not p.relative_to(root).parts[0].startswith("@"))


@pytest.mark.parametrize("where", ["data", "coordinate"])
def test_an_object_array_of_mixed_types_is_refused_naming_the_variable(mem: mg.Memory, where: str) -> None:
    ds = rc.with_crs(rc.bare_dataset())
    mixed = np.array([1, "a", None, 2.5], dtype=object)
    if where == "data":
        ds["labels"] = (("y", "x"), np.resize(mixed, ds.sizes["y"] * ds.sizes["x"]).reshape(3, 4))
        name = "labels"
    else:
        ds = ds.assign_coords(tag=("x", mixed))
        name = "tag"
    with pytest.raises(mg.UnsupportedObjectError, match=rf"'{name}'.*object") as raised:
        mem.save(ds, "mixed", format="zarr")
    assert isinstance(raised.value, TypeError)
    assert "int" in str(raised.value)
    assert "str" in str(raised.value)
    assert mem.ls().empty
    assert _tier_files(mem) == []
