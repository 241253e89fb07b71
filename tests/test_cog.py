from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import memories_geo as mg
from memories_geo.formats.cog import COG_PROFILES, cog_creation_options, overview_factors
from memories_geo.testing import FormatRoundTripTests, OnMemoryFilesystem
from memories_geo.types import CompressionLevel

import raster_cases as rc  # isort: skip

pytest.importorskip("rasterio")
pytest.importorskip("rioxarray")
pytest.importorskip("dask")

REPO = Path(__file__).resolve().parents[1]
SHARED_CASES = sorted(rc.SHARED_RASTERS)


# -- objects -----------------------------------------------------------------------------


def _grid(ny: int, nx: int, res: float = 10.0) -> dict[str, np.ndarray]:
    return {
        "y": 5_000_000.0 - res * np.arange(ny) - res / 2,
        "x": 400_000.0 + res * np.arange(nx) + res / 2,
    }


def terrain(ny: int = 300, nx: int = 400, dtype: str = "int16", seed: int = 0) -> xr.DataArray:
    """Smooth relief plus noise on a UTM grid, named ``elevation``."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 3, ny)[:, None]
    x = np.linspace(0, 4, nx)[None, :]
    z = 500 * np.sin(x) * np.cos(y) + rng.normal(0, 3, (ny, nx))
    values = np.round(z).astype(dtype) if np.dtype(dtype).kind in "iu" else z.astype(dtype)
    da = xr.DataArray(values, dims=("y", "x"), coords=_grid(ny, nx), name="elevation")
    return rc.with_crs(da)


def bands() -> xr.DataArray:
    da = terrain(40, 50, "uint16")
    stacked = xr.concat([da, da + 1, da + 2], dim="band").assign_coords(band=[1, 2, 3])
    return stacked.transpose("band", "y", "x").assign_attrs(
        long_name=("red", "green", "blue"), scale_factor=0.5, add_offset=1.0, units="dn",
        _FillValue=np.uint16(0), history=["made", "here"], valid=np.array([1.5, np.nan]),
    )


def time_stack(with_bands: bool = False) -> xr.DataArray:
    base = bands() if with_bands else terrain(30, 20, "float32")
    time = pd.date_range("2024-01-01", periods=3, freq="D")
    da = xr.concat([base + i for i in range(3)], dim=pd.Index(time, name="time"))
    da["time"].attrs["standard_name"] = "time"
    return da.assign_attrs(base.attrs)


def lonlat() -> xr.DataArray:
    values = np.arange(12, dtype="float64").reshape(3, 4)
    return xr.DataArray(
        values, dims=("lat", "lon"),
        coords={"lat": [50.5, 49.5, 48.5], "lon": [0.5, 1.5, 2.5, 3.5]}, name="t",
    ).rio.write_crs("EPSG:4326")


SYNTHETIC = {
    "terrain_int16": lambda: terrain(),
    "terrain_float32": lambda: terrain(dtype="float32"),
    "float32_nan_dataset": rc.float32_nan,
    "float64_unnamed": lambda: rc.float64_nan()["v"].rename(None),
    "bool": lambda: rc.boolean()["v"],
    "float16": lambda: terrain(20, 30, "float16"),
    "x_before_y_with_wavelengths": lambda: (
        bands().rename(band="wavelength").transpose("x", "wavelength", "y")
    ),
    "int8": lambda: rc.integers()["i1"],
    "int64": lambda: rc.integers()["i8"],
    "bands_with_attrs": bands,
    "lonlat": lonlat,
    "time_stack": lambda: time_stack(),
    "time_band_stack": lambda: time_stack(with_bands=True),
    "time_stack_dataset": rc.time_coordinate,
    "cf_attrs_dataset": rc.cf_attributes,
    "encoded_fill_scale": lambda: rc.encoded_fill_and_scale()["v"],
    "chunked_dataarray": lambda: terrain(700, 600).chunk({"y": 250, "x": 330}),
    "chunked_stack": lambda: time_stack().chunk({"time": 1, "y": 7}),
}


def _make_case(name: str) -> Any:
    if name in rc.SHARED_RASTERS:
        return rc.open_shared_raster(name)
    return SYNTHETIC[name]()




def stored_path(memory: mg.Memory, key: str, version: int | None = None) -> Path:
    entry = memory.info(key, version=version)
    return Path(memory.tiers.backend(entry.tier).full_path(entry.path))


def cog_files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(path.glob("*.tif"))


def assert_valid_cog(path: Path | str) -> None:
    from rio_cogeo.cogeo import cog_validate

    valid, errors, _ = cog_validate(str(path), quiet=True)
    assert errors == []
    assert valid


@pytest.fixture
def mem(tmp_path: Path) -> mg.Memory:
    return mg.Memory(mg.StorageConfig.embedded(tmp_path / "memories"))


# -- the round-trip contract -------------------------------------------------------------


class TestCOGRoundTrip(FormatRoundTripTests):
    format_name = "cog"

    @pytest.fixture(
        params=[*SYNTHETIC, *(pytest.param(n, marks=pytest.mark.shared_data) for n in SHARED_CASES)]
    )
    def case(self, request: pytest.FixtureRequest) -> Any:
        return _make_case(request.param)

    def assert_same(self, expected: Any, actual: Any) -> None:
        rc.assert_same_raster(expected, actual)


class TestCOGOnMemoryFilesystem(OnMemoryFilesystem, FormatRoundTripTests):
    """The same contract on a non-local tier: staged locally, uploaded with fsspec."""

    format_name = "cog"

    @pytest.fixture(params=["bands_with_attrs", "chunked_dataarray", "time_stack", "float32_nan_dataset"])
    def case(self, request: pytest.FixtureRequest) -> Any:
        return _make_case(request.param)

    def assert_same(self, expected: Any, actual: Any) -> None:
        xr.testing.assert_identical(expected, actual)
        assert rc.is_lazy(actual)


# -- real rasters ------------------------------------------------------------------------


@pytest.mark.shared_data
@pytest.mark.parametrize("name", SHARED_CASES)
def test_shared_raster_is_a_valid_cog_with_its_georeferencing(mem: mg.Memory, name: str) -> None:
    import rasterio

    original = rc.open_shared_raster(name)
    entry = mem.save(original, "real/raster", format="cog")
    reopened = mem.open("real/raster")
    xr.testing.assert_identical(original, reopened)
    assert reopened.dtype == original.dtype
    assert reopened.rio.crs == original.rio.crs
    assert reopened.rio.transform() == original.rio.transform()
    assert reopened.rio.nodata == original.rio.nodata or (
        reopened.rio.nodata is None and original.rio.nodata is None
    )
    path = stored_path(mem, "real/raster")
    assert path.suffix == ".tif"
    assert path.is_file()
    assert_valid_cog(path)
    with rasterio.open(path) as stored, rasterio.open(original.encoding["source"]) as source:
        assert stored.crs == source.crs
        assert stored.transform == source.transform
        assert stored.nodata == source.nodata
        assert stored.dtypes == source.dtypes
        assert stored.scales == source.scales
        assert stored.offsets == source.offsets
        assert stored.descriptions == source.descriptions
        assert stored.block_shapes[0] == (512, 512)
        np.testing.assert_array_equal(stored.read(), original.values)
    assert entry.crs is not None


@pytest.mark.shared_data
def test_custom_wkt_crs_without_a_code_round_trips(mem: mg.Memory) -> None:
    import pyproj

    original = rc.open_shared_raster("goes.tif")
    assert pyproj.CRS.from_wkt(original.spatial_ref.attrs["crs_wkt"]).to_epsg() is None
    entry = mem.save(original, "real/goes", format="cog")
    assert "Geostationary" in entry.crs
    coords = entry.object_info["coords"]
    assert coords["x"]["from_transform"]
    assert "data" not in coords["y"]
    reopened = mem.open("real/goes")
    assert reopened.spatial_ref.attrs["crs_wkt"] == original.spatial_ref.attrs["crs_wkt"]
    assert pyproj.CRS.from_user_input(reopened.rio.crs).equals(pyproj.CRS.from_user_input(original.rio.crs))


# -- what the files hold -----------------------------------------------------------------


@pytest.mark.parametrize("level", list(CompressionLevel))
@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_compression_level_sets_codec_and_predictor(
    mem: mg.Memory, level: CompressionLevel, dtype: str
) -> None:
    import rasterio

    mem.save(terrain(300, 400, dtype), "codec", format="cog", compression=level)
    path = stored_path(mem, "codec")
    assert_valid_cog(path)
    with rasterio.open(path) as src:
        structure = src.tags(ns="IMAGE_STRUCTURE")
    assert structure["COMPRESSION"] == COG_PROFILES[level]["COMPRESS"]
    assert structure["PREDICTOR"] == ("3" if dtype == "float32" else "2")
    assert structure["LAYOUT"] == "COG"


def test_creation_options_for_benchmarks() -> None:
    options = cog_creation_options("maximum", "uint8", blocksize=256)
    assert options["COMPRESS"] == COG_PROFILES[CompressionLevel.MAXIMUM]["COMPRESS"]
    assert options["PREDICTOR"] == "STANDARD"
    assert options["BLOCKSIZE"] == 256
    assert options["NUM_THREADS"] == "ALL_CPUS"
    assert cog_creation_options("fast", "float64")["PREDICTOR"] == "FLOATING_POINT"


def test_blocksize_option_and_overview_levels(mem: mg.Memory) -> None:
    import rasterio

    mem.save(terrain(1000, 700), "tiles", format="cog", blocksize=256)
    with rasterio.open(stored_path(mem, "tiles")) as src:
        assert src.block_shapes[0] == (256, 256)
        assert src.overviews(1) == [2, 4]
    assert overview_factors(1000, 700, 256) == [2, 4]


@pytest.mark.parametrize("blocksize", [100, 0, "512", 8])
def test_invalid_blocksize_is_refused(mem: mg.Memory, blocksize: Any) -> None:
    with pytest.raises(mg.FormatError, match="multiple of 16"):
        mem.save(terrain(), "tiles", format="cog", blocksize=blocksize)
    with pytest.raises(mg.KeyNotFoundError):
        mem.open("tiles")


def _first_overview(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path, OVERVIEW_LEVEL=0) as src:
        return src.read(1)


@pytest.mark.parametrize("chunked", [False, True], ids=["numpy", "dask"])
def test_integer_overviews_are_nearest_samples(mem: mg.Memory, chunked: bool) -> None:
    da = terrain(1024, 1536, "int16")
    mem.save(da.chunk({"y": 300, "x": 500}) if chunked else da, "ovr", format="cog")
    path = stored_path(mem, "ovr")
    assert_valid_cog(path)
    np.testing.assert_array_equal(_first_overview(path), da.values[::2, ::2])


@pytest.mark.parametrize("chunked", [False, True], ids=["numpy", "dask"])
def test_float_overviews_are_block_averages(mem: mg.Memory, chunked: bool) -> None:
    da = terrain(1024, 1536, "float32")
    mem.save(da.chunk({"y": 300, "x": 500}) if chunked else da, "ovr", format="cog")
    values = da.values.astype("float64")
    expected = values.reshape(512, 2, 768, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(_first_overview(stored_path(mem, "ovr")), expected, rtol=1e-6, atol=1e-4)


def test_overview_resampling_option(mem: mg.Memory) -> None:
    da = terrain(1024, 1024, "int16")
    mem.save(da, "ovr", format="cog", overview_resampling="average")
    expected = da.values.astype("float64").reshape(512, 2, 512, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(_first_overview(stored_path(mem, "ovr")), expected, atol=0.5)
    with pytest.raises(mg.FormatError, match="overview_resampling"):
        mem.save(da, "bad", format="cog", overview_resampling="sideways")


def test_time_stack_is_one_cog_per_step(mem: mg.Memory) -> None:
    import rasterio

    da = time_stack(with_bands=True)
    entry = mem.save(da, "stack", format="cog")
    path = stored_path(mem, "stack")
    assert path.is_dir()
    assert path.suffix == ".tif"
    files = cog_files(path)
    assert [f.name for f in files] == ["t0000.tif", "t0001.tif", "t0002.tif"]
    for i, file in enumerate(files):
        assert_valid_cog(file)
        with rasterio.open(file) as src:
            assert src.count == 3
            assert src.descriptions == ("red", "green", "blue")
            assert src.tags()["time"].startswith(f"2024-01-0{i + 1}")
            np.testing.assert_array_equal(src.read(), da.isel(time=i).values)
    assert pd.Timestamp(entry.time_start) == pd.Timestamp("2024-01-01")
    assert pd.Timestamp(entry.time_end) == pd.Timestamp("2024-01-03")
    reopened = mem.open("stack")
    xr.testing.assert_identical(da, reopened)
    assert reopened.chunks[0] == (1, 1, 1)
    assert mem.open("stack", chunks={"time": 3}).chunks[0] == (3,)


def test_two_dimensional_array_comes_back_two_dimensional(mem: mg.Memory) -> None:
    da = terrain(20, 30)
    mem.save(da, "flat", format="cog")
    reopened = mem.open("flat")
    assert reopened.dims == ("y", "x")
    assert "band" not in reopened.coords


# -- dask: streaming, delayed writes, memory --------------------------------------------------


def test_compute_false_writes_nothing_until_computed(mem: mg.Memory) -> None:
    da = terrain(900, 700).chunk({"y": 256, "x": 256})
    delayed = mem.save(da, "lazy", format="cog", compute=False)
    with pytest.raises(mg.KeyNotFoundError):
        mem.open("lazy")
    hot = Path(mem.tiers.backend("hot").full_path(""))
    assert list(hot.rglob("*.tif")) == []
    entry = delayed.compute()
    assert (entry.key, entry.version, entry.format) == ("lazy", 1, "cog")
    assert_valid_cog(stored_path(mem, "lazy"))
    xr.testing.assert_identical(da, mem.open("lazy"))
    mem.verify("lazy")


def test_compute_false_with_an_in_memory_array(mem: mg.Memory) -> None:
    da = terrain(50, 60)
    entry = mem.save(da, "eager", format="cog", compute=False).compute()
    assert entry.version == 1
    xr.testing.assert_identical(da, mem.open("eager"))


_PEAK_MEMORY_SCRIPT = """
import tempfile, threading, time
import numpy as np, psutil, xarray as xr, dask.array as dsa
import rioxarray
import memories_geo as mg

def relief(block_info=None):
    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    y = np.arange(r0, r1, dtype="float32")[:, None]
    x = np.arange(c0, c1, dtype="float32")[None, :]
    return (1000 * np.sin(x / 500) * np.cos(y / 700)).astype("float32")

def array(n, chunk):
    data = dsa.map_blocks(relief, chunks=((chunk,) * (n // chunk),) * 2, dtype="float32")
    coords = {"y": 5e6 - 10 * np.arange(n) - 5.0, "x": 4e5 + 10 * np.arange(n) + 5.0}
    return xr.DataArray(data, dims=("y", "x"), coords=coords).rio.write_crs("EPSG:32631")

mem = mg.Memory(tempfile.mkdtemp())
mem.save(array(2048, 1024), "warmup", format="cog")
big = array(10240, 1024)
process = psutil.Process()
base = process.memory_info().rss
peak = [base]
done = threading.Event()

def watch():
    while not done.is_set():
        peak[0] = max(peak[0], process.memory_info().rss)
        time.sleep(0.005)

watcher = threading.Thread(target=watch)
watcher.start()
mem.save(big, "big", format="cog")
done.set()
watcher.join()
print(big.nbytes, peak[0] - base)
"""


def test_dask_write_keeps_peak_memory_to_a_few_chunks() -> None:
    pytest.importorskip("psutil")
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_PEAK_MEMORY_SCRIPT)],
        capture_output=True, text=True, check=True, cwd=REPO, timeout=300,
    ).stdout.split()
    nbytes, increase = int(out[0]), int(out[1])
    assert nbytes > 400e6
    assert increase < 150e6, f"RSS grew by {increase / 1e6:.0f} MB writing {nbytes / 1e6:.0f} MB"


# -- what the format refuses ---------------------------------------------------------------


def test_dataset_with_several_variables_is_refused_suggesting_zarr(mem: mg.Memory) -> None:
    with pytest.raises(mg.UnsupportedObjectError, match="format='zarr'"):
        mem.save(rc.integers(), "multi", format="cog")
    with pytest.raises(mg.KeyNotFoundError):
        mem.open("multi")


def test_irregular_grid_is_refused(mem: mg.Memory) -> None:
    da = terrain(5, 6)
    da = da.assign_coords(x=da.x.values * np.array([1, 1, 1.001, 1, 1, 1]))
    with pytest.raises(mg.UnsupportedObjectError, match="evenly spaced"):
        mem.save(da, "irregular", format="cog")


def test_strings_are_refused(mem: mg.Memory) -> None:
    with pytest.raises(mg.UnsupportedObjectError, match="zarr"):
        mem.save(rc.strings()["fixed"], "text", format="cog")


def test_append_and_encoding_are_refused(mem: mg.Memory) -> None:
    da = time_stack()
    mem.save(da.isel(time=[0]), "stack", format="cog")
    with pytest.raises(mg.UnsupportedObjectError, match="append"):
        mem.save(da.isel(time=[1]), "stack", mode="a", append_dim="time")
    with pytest.raises(mg.FormatError, match="encoding"):
        mem.save(terrain(), "enc", format="cog", encoding={"dtype": "int32"})
    with pytest.raises(mg.OptionError, match=r"tile_size.*blocksize"):
        mem.save(terrain(), "opt", format="cog", tile_size=256)


def test_crs_keyword_is_written_when_missing(mem: mg.Memory) -> None:
    import rasterio

    da = xr.DataArray(np.ones((4, 5), "float32"), dims=("y", "x"), coords=_grid(4, 5))
    entry = mem.save(da, "withcrs", format="cog", crs="EPSG:32631")
    assert entry.crs == "EPSG:32631"
    with rasterio.open(stored_path(mem, "withcrs")) as src:
        assert src.crs.to_epsg() == 32631
    xr.testing.assert_identical(rc.with_crs(da, "EPSG:32631"), mem.open("withcrs"))


# -- defaults and imports -------------------------------------------------------------------


def test_single_images_default_to_cog_and_datasets_to_zarr(mem: mg.Memory) -> None:
    assert mem.save(terrain(), "image").format == "cog"
    assert mem.save(bands(), "rgb").format == "cog"
    assert mem.save(rc.float32_nan(), "dataset").format == "zarr"


def test_importing_the_format_module_does_not_import_rasterio() -> None:
    code = (
        "import sys, memories_geo, memories_geo.formats.cog; "
        "print(sorted(m for m in ('rasterio', 'rioxarray', 'dask', 'rio_cogeo') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.strip()
    assert out == "[]"


def test_an_object_raster_is_refused_naming_the_variable(mem: mg.Memory) -> None:
    """Issue 15, defect 5: the error names the variable and its dtype, and nothing is kept."""
    da = terrain(4, 5).astype(object).rename("labels")
    for obj in (da, da.to_dataset()):
        with pytest.raises(mg.UnsupportedObjectError, match=r"'labels'.*dtype object.*astype") as raised:
            mem.save(obj, "objects", format="cog")
        assert isinstance(raised.value, TypeError)
    assert mem.ls().empty
    hot = Path(mem.tiers.backend("hot").full_path(""))
    kept = [p for p in hot.rglob("*") if p.is_file() and not p.relative_to(hot).parts[0].startswith("@")]
    assert kept == []
