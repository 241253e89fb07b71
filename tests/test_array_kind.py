"""Every xarray object can be stored: the ``array`` kind and xarray time series go to Zarr.

Through the public API only (``mg.Memory`` / ``save`` / ``open`` / ``search``).
"""

from __future__ import annotations

import functools
import pickle
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from geopandas.testing import assert_geodataframe_equal

import memories_geo as mg
from memories_geo.testing import FormatRoundTripTests, OnMemoryFilesystem

import raster_cases as rc  # isort: skip

pytest.importorskip("zarr")
pytest.importorskip("dask")



@functools.cache
def _xarray_test_data() -> bytes:
    """xarray's own ``xarray.tests.create_test_data()``, pickled by a child interpreter.

    The wheel ships ``xarray.tests``, but importing it inside this session fails under
    ``--strict-markers`` (its module-level ``pytest.mark.flaky`` is not a marker of ours),
    so a child process imports it as xarray's test suite does and hands the dataset over.
    """
    code = (
        "import pickle, sys\n"
        "from xarray.tests import create_test_data\n"
        "sys.stdout.buffer.write(pickle.dumps(create_test_data()))\n"
    )
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True).stdout


def create_test_data() -> xr.Dataset:
    """A fresh copy of xarray's ``create_test_data()`` (dims dim1..dim3 and time)."""
    return pickle.loads(_xarray_test_data())


# -- cases -------------------------------------------------------------------------------


def stations(n: int = 4, nt: int = 10, start: str = "2024-01-01") -> xr.Dataset:
    """A CF discrete-sampling-geometry station x time dataset (featureType timeSeries)."""
    rng = np.random.default_rng(0)
    time = pd.date_range(start, periods=nt, freq="h").as_unit("ns")
    lat = np.array([45.0, 46.5, 48.0, -10.0, 60.0, 10.0][:n])
    lon = np.array([5.0, 6.5, 8.0, 120.0, 25.0, -70.0][:n])
    return xr.Dataset(
        {
            "temperature": (
                ("station", "time"),
                rng.normal(10, 5, size=(n, nt)).astype("float32"),
                {"units": "degC", "_FillValue": np.float32(-999.0), "long_name": "air temperature"},
            ),
            "precip": (
                ("station", "time"),
                np.arange(n * nt, dtype="int16").reshape(n, nt),
                {"units": "mm", "_FillValue": np.int16(-1)},
            ),
        },
        coords={
            "station_id": ("station", [f"ST{i:03d}" for i in range(n)], {"cf_role": "timeseries_id"}),
            "time": ("time", time, {"standard_name": "time"}),
            "lat": ("station", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("station", lon, {"units": "degrees_east", "standard_name": "longitude"}),
            "station_name": ("station", np.array(["Grenoble", "Genève", "Basel", "Far", "Oulu", "X"][:n],
                                                 dtype=object)),
        },
        attrs={"featureType": "timeSeries", "Conventions": "CF-1.8", "title": "stations"},
    )


def dataarray() -> xr.DataArray:
    return xr.DataArray(
        np.arange(12.0).reshape(3, 4), dims=("sample", "channel"),
        coords={"channel": ["a", "b", "c", "d"]}, name="signal", attrs={"units": "V"},
    )


def datatree() -> xr.DataTree:
    return xr.DataTree.from_dict(
        {
            "/": xr.Dataset(attrs={"title": "experiment"}),
            "/runs": xr.Dataset({"loss": ("epoch", np.linspace(1, 0.1, 5))}, coords={"epoch": np.arange(5)}),
            "/runs/best": xr.Dataset({"weights": (("layer", "unit"), np.ones((2, 3), dtype="float32"))}),
        },
        name="training",
    )


def string_coords() -> xr.Dataset:
    return xr.Dataset(
        {"v": ("item", [1.5, 2.5, 3.5])},
        coords={
            "item": ("item", np.array(["alpha", "béta", "gamma"], dtype=object)),
            "fixed": ("item", np.array(["x", "yy", "zzz"])),
            "maybe": ("item", np.array(["p", None, ""], dtype=object)),
            "nan_str": ("item", np.array([np.nan, "q", "r"], dtype=object)),
            "raw": ("item", np.array([b"a", b"", None], dtype=object)),
        },
    )


def scalar_variable() -> xr.Dataset:
    return xr.Dataset(
        {"total": ((), np.float64(42.5), {"units": "kg"}), "flag": ((), np.int8(1)), "v": ("n", [1, 2, 3])}
    )


def non_dimension_coordinate() -> xr.Dataset:
    return xr.Dataset(
        {"v": (("a", "b"), np.arange(6, dtype="int32").reshape(2, 3))},
        coords={"a": [10, 20], "label": ("a", ["first", "second"]), "weight": (("a", "b"), np.ones((2, 3)))},
    )


def datetime_resolutions() -> xr.Dataset:
    return xr.Dataset(
        {
            "seen": ("time", pd.to_datetime(["2024-01-01", None, "2024-03-01"]).as_unit("s").values),
            "delay": ("time", np.array([1, 2, 3], dtype="timedelta64[ms]")),
            "v": ("time", [1.0, np.nan, 3.0]),
        },
        coords={"time": pd.date_range("2024-01-01", periods=3, freq="D").as_unit("us")},
    )


CASES = {
    "create_test_data": create_test_data,
    "dataarray": dataarray,
    "dataarray_unnamed": lambda: dataarray().rename(None),
    "stations": stations,
    "stations_dask": lambda: stations().chunk({"time": 4}),
    "datatree": datatree,
    "string_coords": string_coords,
    "scalar_variable": scalar_variable,
    "non_dimension_coordinate": non_dimension_coordinate,
    "datetime_resolutions": datetime_resolutions,
}


def _datasets(obj: Any) -> list[xr.Dataset]:
    if isinstance(obj, xr.DataTree):
        return [node.to_dataset(inherit=False) for node in obj.subtree]
    if isinstance(obj, xr.DataArray):
        return [obj.to_dataset(name="_")]
    return [obj]


def assert_same(expected: Any, actual: Any) -> None:
    """Identical, same type, name and dtypes of every variable, and dask-backed."""
    assert type(actual) is type(expected)
    xr.testing.assert_identical(expected, actual)
    if isinstance(expected, xr.DataArray | xr.DataTree):
        assert actual.name == expected.name
    for want, got in zip(_datasets(expected), _datasets(actual), strict=True):
        dtypes = {k: v.dtype for k, v in got.variables.items()}
        assert {k: v.dtype for k, v in want.variables.items()} == dtypes
        for name, var in want.variables.items():
            if var.dtype.kind == "O":
                assert [type(v) for v in var.values.ravel()] == [type(v) for v in got[name].values.ravel()]
    assert is_lazy(actual)


def is_lazy(obj: Any) -> bool:
    """Whether every data variable with dimensions is dask-backed (0-d ones are lazily indexed)."""
    import dask.array as dsa

    return all(
        isinstance(var.variable._data, dsa.Array)
        for ds in _datasets(obj) for var in ds.data_vars.values() if var.ndim
    )


@pytest.fixture
def mem(tmp_path: Path) -> mg.Memory:
    return mg.Memory(mg.StorageConfig.embedded(tmp_path / "memories"))


def _store_path(memory: mg.Memory, key: str, version: int | None = None) -> Path:
    entry = memory.info(key, version=version)
    return Path(memory.tiers.backend(entry.tier).full_path(entry.path))


class TestArrayRoundTrip(FormatRoundTripTests):
    format_name = "zarr"

    @pytest.fixture(params=list(CASES))
    def case(self, request: pytest.FixtureRequest) -> Any:
        return CASES[request.param]()

    def assert_same(self, expected: Any, actual: Any) -> None:
        assert_same(expected, actual)


class TestArrayOnMemoryFilesystem(OnMemoryFilesystem, FormatRoundTripTests):
    format_name = "zarr"

    @pytest.fixture(params=["create_test_data", "stations", "datatree"])
    def case(self, request: pytest.FixtureRequest) -> Any:
        return CASES[request.param]()

    def assert_same(self, expected: Any, actual: Any) -> None:
        assert_same(expected, actual)


# -- kinds and defaults ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("create_test_data", "array"),
        ("dataarray", "array"),
        ("stations", "timeseries"),
        ("datatree", "array"),
        ("scalar_variable", "array"),
        ("datetime_resolutions", "array"),
    ],
)
def test_default_save_is_zarr_and_returns_the_saved_type(mem: mg.Memory, name: str, kind: str) -> None:
    obj = CASES[name]()
    entry = mem.save(obj, f"default/{name}")
    assert (entry.kind, entry.format) == (kind, "zarr")
    assert_same(obj, mem.open(f"default/{name}"))


@pytest.mark.parametrize(
    "make",
    [
        lambda ds: ds.rename(station="site"),
        lambda ds: ds.rename(station="loc").drop_vars("station_id"),
        lambda ds: ds.rename(station="loc").drop_attrs().drop_vars(["lat", "lon"]).assign_coords(
            code=("loc", ["a", "b", "c", "d"], {"cf_role": "timeseries_id"})
        ),
    ],
    ids=["station-named-dim", "featureType", "cf_role"],
)
def test_station_time_series_is_recognised_three_ways(mem: mg.Memory, make: Any) -> None:
    obj = make(stations())
    assert mem.save(obj, "ts").kind == "timeseries"
    xr.testing.assert_identical(obj, mem.open("ts"))


def test_a_two_dimensional_dataarray_without_spatial_dims_is_not_a_cog(mem: mg.Memory) -> None:
    entry = mem.save(dataarray(), "matrix")
    assert (entry.kind, entry.format) == ("array", "zarr")
    with pytest.raises(mg.UnsupportedObjectError, match=r"stores \['raster'\] data, not array"):
        mem.save(dataarray(), "matrix-cog", format="cog")
    image = rc.with_crs(xr.DataArray(np.zeros((3, 4), "uint8"), dims=("y", "x"), coords=rc._grid()))
    assert mem.save(image, "image").format == "cog", "single images still default to COG"


def test_zarr_is_the_default_only_for_xarray_objects() -> None:
    from memories_geo.backends.base import Capability
    from memories_geo.formats.registry import default_format, get_format
    from memories_geo.types import Kind

    zarr = get_format("zarr")
    frame = pd.DataFrame({"time": pd.date_range("2024", periods=2), "v": [1.0, 2.0]})
    points = gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy([0, 1], [0, 1]), crs="EPSG:4326")
    assert zarr.default_priority(stations()) > 0
    assert zarr.default_priority(frame) == 0
    assert zarr.default_priority(points) == 0
    files = frozenset({Capability.FILES})
    assert default_format(Kind.TIMESERIES, files, stations()) == "zarr"
    assert default_format(Kind.ARRAY, files, create_test_data()) == "zarr"
    for table in (frame, points):
        assert default_format(Kind.TIMESERIES, files, table) not in {"zarr", "geoparquet", "geojson"}
    assert default_format(Kind.VECTOR, files, points.drop(columns="time")) == "geoparquet"


# -- footprints and search -----------------------------------------------------------------


def test_footprints_of_arrays(mem: mg.Memory) -> None:
    plain = mem.save(create_test_data(), "plain")
    assert plain.bbox is None
    assert plain.crs is None
    assert (pd.Timestamp(plain.time_start), pd.Timestamp(plain.time_end)) == (
        pd.Timestamp("2000-01-01"), pd.Timestamp("2000-01-20"),
    )
    assert set(plain.variables) == {"var1", "var2", "var3"}
    assert dict(plain.shape) == {"dim1": 8, "dim2": 9, "dim3": 10, "time": 20}

    station = mem.save(stations(), "stations")
    assert station.bbox == (5.0, -10.0, 120.0, 48.0)
    assert station.crs == "EPSG:4326"
    assert pd.Timestamp(station.time_end) == pd.Timestamp("2024-01-01T09:00")
    assert dict(station.shape) == {"station": 4, "time": 10}

    shifted = stations().assign_coords(lon=("station", [355.0, 6.5, 8.0, 120.0]))
    assert mem.save(shifted, "shifted").bbox == (-5.0, -10.0, 120.0, 48.0), "0-360 longitudes wrap"

    tree = xr.DataTree.from_dict({"/obs": stations(), "/misc": create_test_data()})
    entry = mem.save(tree, "tree")
    assert entry.bbox == station.bbox
    assert {"/obs/temperature", "/misc/var1"} <= set(entry.variables)
    assert mem.save(datatree(), "tree-plain").bbox is None


def test_search_finds_arrays_by_kind_key_time_and_stations_by_bbox(mem: mg.Memory) -> None:
    mem.save(create_test_data(), "arrays/plain")
    mem.save(stations(), "arrays/stations")
    mem.save(rc.cf_attributes(), "rasters/t2m")
    assert mem.search(kind="array").key.tolist() == ["arrays/plain"]
    assert mem.search(kind="timeseries").key.tolist() == ["arrays/stations"]
    assert sorted(mem.search(key="arrays/*").key) == ["arrays/plain", "arrays/stations"]
    assert mem.search(time=("2000-01-05", "2000-01-06")).key.tolist() == ["arrays/plain"]
    assert mem.search(bbox=(4, 44, 7, 47)).key.tolist() == ["arrays/stations"]
    assert mem.search(bbox=(100, -20, 130, 0), kind="timeseries").key.tolist() == ["arrays/stations"]
    assert mem.search(bbox=(-10, 60, -5, 70)).empty
    assert "arrays/plain" not in set(mem.search(bbox=(-180, -90, 180, 90)).key), "empty footprint"


# -- the open contract ---------------------------------------------------------------------


def test_time_and_columns_select_lazily(mem: mg.Memory) -> None:
    ds = stations(nt=48)
    mem.save(ds, "obs")
    window = mem.open("obs", time=("2024-01-01T05", "2024-01-01T10"))
    assert is_lazy(window)
    xr.testing.assert_identical(ds.sel(time=slice("2024-01-01T05", "2024-01-01T10")), window)
    xr.testing.assert_identical(ds.sel(time="2024-01-02"), mem.open("obs", time="2024-01-02"))
    xr.testing.assert_identical(ds[["precip"]], mem.open("obs", columns=["precip"]))
    with pytest.raises(mg.FormatError, match="data variables"):
        mem.open("obs", columns=["wind"])
    with pytest.raises(mg.FormatError, match="2024-01-01"):
        mem.open("obs", time=("1990", "1991"))


def test_bbox_selects_the_stations_inside(mem: mg.Memory) -> None:
    ds = stations()
    mem.save(ds, "obs")
    inside = mem.open("obs", bbox=(4, 44, 7, 47))
    assert is_lazy(inside)
    xr.testing.assert_identical(ds.isel(station=[0, 1]), inside)
    scattered = mem.open("obs", bbox=(0, -20, 130, 46))
    xr.testing.assert_identical(ds.isel(station=[0, 3]), scattered)
    mercator = (556597.45, 5465442.18, 779236.44, 5942074.07)  # about (5, 44, 7, 47) in EPSG:3857
    xr.testing.assert_identical(ds.isel(station=[0, 1]), mem.open("obs", bbox=mercator, bbox_crs="EPSG:3857"))
    both = mem.open("obs", bbox=(4, 44, 7, 47), time=("2024-01-01T02", "2024-01-01T03"))
    assert dict(both.sizes) == {"station": 2, "time": 2}
    with pytest.raises(mg.FormatError, match=r"does not intersect.*\(5\.0, -10\.0, 120\.0, 48\.0\)"):
        mem.open("obs", bbox=(-60, -60, -50, -50))
    with pytest.raises(mg.FormatError, match="contains no point"):
        mem.open("obs", bbox=(9, 0, 100, 40))


def test_bbox_on_data_without_spatial_extent_and_other_refusals(mem: mg.Memory) -> None:
    mem.save(create_test_data(), "plain")
    mem.save(dataarray(), "signal")
    mem.save(datatree(), "tree")
    with pytest.raises(mg.OptionError, match="no spatial extent"):
        mem.open("plain", bbox=(0, 0, 1, 1))
    with pytest.raises(mg.OptionError, match="no spatial extent"):
        mem.open("tree", bbox=(0, 0, 1, 1))
    with pytest.raises(mg.OptionError, match="datetime dimension"):
        mem.open("signal", time="2024")
    with pytest.raises(mg.OptionError, match="columns= selects data variables of a Dataset"):
        mem.open("signal", columns=["signal"])
    with pytest.raises(mg.OptionError, match="accepted keywords"):
        mem.open("plain", variables=["var1"])
    xr.testing.assert_identical(create_test_data()[["var1"]], mem.open("plain", columns=["var1"]))
    assert dict(mem.open("plain", time=("2000-01-02", "2000-01-03")).sizes)["time"] == 2


def test_datatree_nodes_with_stations_are_selected_by_bbox(mem: mg.Memory) -> None:
    tree = xr.DataTree.from_dict({"/obs": stations(), "/misc": create_test_data()})
    mem.save(tree, "tree")
    opened = mem.open("tree", bbox=(4, 44, 7, 47))
    assert isinstance(opened, xr.DataTree)
    xr.testing.assert_identical(stations().isel(station=[0, 1]), opened["obs"].to_dataset())
    xr.testing.assert_identical(create_test_data(), opened["misc"].to_dataset())


# -- writes --------------------------------------------------------------------------------


def test_append_along_time_shares_the_unchanged_chunks(mem: mg.Memory) -> None:
    full = stations(nt=20)
    first, second = full.isel(time=slice(0, 10)), full.isel(time=slice(10, None))
    v1 = mem.save(first, "obs", encoding={"temperature": {"chunks": (4, 5)}})
    v2 = mem.save(second, "obs", mode="a", append_dim="time")
    assert (v1.version, v2.version, v2.kind) == (1, 2, "timeseries")
    assert pd.Timestamp(v2.time_end) == pd.Timestamp("2024-01-01T19:00")
    assert dict(v2.shape) == {"station": 4, "time": 20}
    assert v2.bbox == v1.bbox
    assert_same(full, mem.open("obs"))
    assert_same(first, mem.open("obs", version=1))
    old, new = _store_path(mem, "obs", 1), _store_path(mem, "obs", 2)
    chunk = ("temperature", "c", "0", "1")
    assert new.joinpath(*chunk).stat().st_ino == old.joinpath(*chunk).stat().st_ino
    mem.verify("obs", all_versions=True)


def test_append_of_strings_with_missing_values(mem: mg.Memory) -> None:
    ds = xr.Dataset(
        {"note": ("time", np.array(["ok", None, ""], dtype=object))},
        coords={"time": pd.date_range("2024-01-01", periods=3).as_unit("us")},
    )
    mem.save(ds.isel(time=[0]), "notes")
    mem.save(ds.isel(time=[1, 2]), "notes", mode="a", append_dim="time")
    assert_same(ds, mem.open("notes"))


def test_time_series_chunks_run_along_time_across_all_stations(mem: mg.Memory) -> None:
    import zarr

    n, nt = 50, 40_000
    ds = xr.Dataset(
        {"v": (("station", "time"), np.zeros((n, nt)))},
        coords={"time": pd.date_range("2000", periods=nt, freq="10min"), "station": np.arange(n)},
    )
    mem.save(ds, "big")
    array = zarr.open_group(str(_store_path(mem, "big")), mode="r")["v"]
    stations_per_chunk, steps_per_chunk = array.chunks
    assert stations_per_chunk == n
    assert steps_per_chunk < nt
    assert (1 << 20) <= 8 * n * steps_per_chunk <= (8 << 20)


def test_crs_keyword_is_refused_without_spatial_dims(mem: mg.Memory) -> None:
    with pytest.raises(mg.OptionError, match="no spatial dims"):
        mem.save(stations(), "obs", crs="EPSG:4326")
    with pytest.raises(mg.OptionError, match="no node"):
        mem.save(datatree(), "tree", crs="EPSG:4326")
    assert mem.ls().empty


def test_unsupported_objects_name_what_is_supported(mem: mg.Memory) -> None:
    with pytest.raises(mg.UnsupportedObjectError, match="xarray Dataset/DataArray/DataTree"):
        mem.save({"a": 1}, "dict")
    with pytest.raises(mg.UnsupportedObjectError, match="datetime column"):
        mem.save(pd.DataFrame({"a": [1]}), "table")
    mixed = xr.Dataset({"v": ("n", np.array([1, "a"], dtype=object))})
    with pytest.raises(mg.UnsupportedObjectError, match=r"astype\(str\)"):
        mem.save(mixed, "mixed")
    marker = xr.Dataset({"v": ("n", np.array(["a", "\u241fmissing\u241f"], dtype=object))})
    with pytest.raises(mg.UnsupportedObjectError, match="marks missing strings"):
        mem.save(marker, "marker")
    assert mem.ls().empty


# -- time-series GeoDataFrames still go to the vector formats when asked -------------------


def _station_points() -> gpd.GeoDataFrame:
    frame = pd.DataFrame(
        {
            "time": pd.date_range("2024-01-01", periods=4, freq="h"),
            "station": ["a", "b", "a", "b"],
            "value": [1.0, 2.0, 3.0, 4.0],
        }
    )
    points = gpd.points_from_xy([5, 6, 5, 6], [45, 46, 45, 46])
    return gpd.GeoDataFrame(frame, geometry=points, crs="EPSG:4326")


@pytest.mark.parametrize("fmt", ["geoparquet", "geojson"])
def test_time_series_geodataframe_can_be_saved_as_vector(mem: mg.Memory, fmt: str) -> None:
    if fmt == "geojson":
        pytest.importorskip("pyogrio")
    gdf = _station_points()
    entry = mem.save(gdf, "points", format=fmt)
    assert (entry.kind, entry.format) == ("timeseries", fmt)
    assert_geodataframe_equal(gdf, mem.open("points"), check_dtype=fmt == "geoparquet")


@pytest.mark.postgres
def test_time_series_geodataframe_can_be_saved_in_postgis(tmp_path: Path, postgres_dsn: str) -> None:
    import psycopg
    from psycopg import sql

    schema = f"t_{uuid.uuid4().hex[:12]}"
    warm = {"url": postgres_dsn, "storage_options": {"schema": schema}}
    config = mg.StorageConfig.from_dict({"home": str(tmp_path / "home"), "tiers": {"warm": warm}})
    try:
        mem = mg.Memory(config)
        gdf = _station_points()
        entry = mem.save(gdf, "points", tier="warm", format="postgis")
        assert (entry.kind, entry.format) == ("timeseries", "postgis")
        assert_geodataframe_equal(gdf, mem.open("points"))
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as con:
            con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
