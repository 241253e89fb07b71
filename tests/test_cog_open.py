"""COG reads: the open contract (bbox, bbox_crs, time, columns) and the cog options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

import memories_geo as mg

import raster_cases as rc  # isort: skip
from test_cog import bands, cog_files, lonlat, stored_path, terrain, time_stack  # isort: skip

pytest.importorskip("rasterio")
pytest.importorskip("rioxarray")
pytest.importorskip("dask")


@pytest.fixture
def mem(tmp_path: Path) -> mg.Memory:
    return mg.Memory(mg.StorageConfig.embedded(tmp_path / "memories"))


# -- reading: the open contract (bbox, time, columns, options) --------------------------------


def _window_spy(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record the window of every pixel read that rasterio makes from now on."""
    import rasterio

    real_open = rasterio.open
    windows: list[Any] = []

    class Spy:
        def __init__(self, src: Any) -> None:
            self._src = src

        def __enter__(self) -> Spy:
            self._src.__enter__()
            return self

        def __exit__(self, *exc: Any) -> Any:
            return self._src.__exit__(*exc)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._src, name)

        def read(self, *args: Any, window: Any = None, **kwargs: Any) -> Any:
            windows.append(window)
            return self._src.read(*args, window=window, **kwargs)

    monkeypatch.setattr(rasterio, "open", lambda *a, **k: Spy(real_open(*a, **k)))
    return windows


def _to_wgs84(bounds: tuple[float, float, float, float]) -> tuple[float, ...]:
    import pyproj

    to_wgs84 = pyproj.Transformer.from_crs(rc.UTM_WKT_CRS, "EPSG:4326", always_xy=True)
    return tuple(to_wgs84.transform_bounds(*bounds))


def test_bbox_in_the_native_crs_reads_the_window_by_label(
    mem: mg.Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dask

    da = terrain(1200, 1000)
    mem.save(da, "dem", format="cog")
    minx, maxy = 400_000.0 + 10 * 100, 5_000_000.0 - 10 * 200
    bbox = (minx + 3, maxy - 10 * 512 + 3, minx + 10 * 512 - 3, maxy - 3)
    windows = _window_spy(monkeypatch)
    window = mem.open("dem", bbox=bbox, bbox_crs=rc.UTM_WKT_CRS)
    assert windows == []
    assert rc.is_lazy(window)
    expected = da.isel(y=slice(200, 712), x=slice(100, 612))
    xr.testing.assert_identical(expected, da.sel(x=slice(bbox[0], bbox[2]), y=slice(bbox[3], bbox[1])))
    with dask.config.set(scheduler="synchronous"):
        xr.testing.assert_identical(window, expected)
    assert window.rio.transform().c == minx
    assert windows
    for w in windows:
        assert w.col_off >= 100
        assert w.col_off + w.width <= 612
        assert w.row_off >= 200
        assert w.row_off + w.height <= 712
    assert sum(w.width * w.height for w in windows) == 512 * 512


def test_bbox_defaults_to_wgs84_and_matches_the_native_crs(mem: mg.Memory) -> None:
    from memories_geo.query import open_request

    da = terrain(1200, 1000)
    mem.save(da, "dem", format="cog")
    bbox = _to_wgs84((402_000, 4_993_000, 404_000, 4_995_000))
    default = mem.open("dem", bbox=bbox)
    explicit = mem.open("dem", bbox=bbox, bbox_crs="EPSG:4326")
    native_bbox = open_request(bbox=bbox).bbox_in(rc.UTM_WKT_CRS)
    native = mem.open("dem", bbox=native_bbox, bbox_crs=rc.UTM_WKT_CRS)
    xr.testing.assert_identical(default, explicit)
    xr.testing.assert_identical(default, native)
    minx, miny, maxx, maxy = native_bbox
    xr.testing.assert_identical(default, da.sel(x=slice(minx, maxx), y=slice(maxy, miny)))
    assert default.x.min() < 402_000 + 10
    assert default.x.max() > 404_000 - 10
    assert default.sizes["x"] < 1000
    assert default.sizes["y"] < 1200


def test_bbox_on_a_lonlat_grid(mem: mg.Memory) -> None:
    da = lonlat()
    mem.save(da, "ll", format="cog")
    window = mem.open("ll", bbox=(1.0, 48.0, 3.0, 50.0))
    xr.testing.assert_identical(window, da.sel(lon=slice(1.0, 3.0), lat=slice(50.0, 48.0)))
    assert window.sizes == {"lat": 2, "lon": 2}


def test_bbox_outside_the_raster_names_its_bounds(mem: mg.Memory) -> None:
    mem.save(terrain(), "dem", format="cog")
    bounds = r"does not intersect the raster, whose bounds are \(400000"
    with pytest.raises(mg.FormatError, match=bounds) as info:
        mem.open("dem", bbox=(0, 0, 10, 10))
    assert "(1.727967, 45.119394, 1.779413, 45.146948) in EPSG:4326" in str(info.value)
    with pytest.raises(ValueError, match="does not intersect"):
        mem.open("dem", bbox=(0, 0, 10, 10), bbox_crs=rc.UTM_WKT_CRS)
    with pytest.raises(mg.FormatError, match="no pixel centre"):
        mem.open("dem", bbox=(400_001, 4_999_991, 400_004, 4_999_994), bbox_crs=rc.UTM_WKT_CRS)


def test_overview_level_reads_a_coarser_grid(mem: mg.Memory) -> None:
    da = terrain(1200, 1000, "int16")
    mem.save(da, "dem", format="cog")
    coarse = mem.open("dem", overview_level=0)
    assert coarse.sizes == {"y": 600, "x": 500}
    assert coarse.rio.resolution() == (20.0, -20.0)
    assert coarse.rio.crs == da.rio.crs
    np.testing.assert_array_equal(coarse.values, da.values[::2, ::2])
    bbox = (401_000, 4_990_000, 405_000, 4_995_000)
    window = mem.open("dem", overview_level=0, bbox=bbox, bbox_crs=rc.UTM_WKT_CRS)
    expected = coarse.sel(x=slice(bbox[0], bbox[2]), y=slice(bbox[3], bbox[1]))
    np.testing.assert_array_equal(window.values, expected.values)
    xr.testing.assert_identical(window.x, expected.x)
    with pytest.raises(mg.FormatError, match="overview_level=5"):
        mem.open("dem", overview_level=5)
    with pytest.raises(mg.OptionError, match="non-negative integer"):
        mem.open("dem", overview_level="coarse")


def test_time_selects_steps_of_a_stack_by_label(mem: mg.Memory) -> None:
    import dask

    da = time_stack(with_bands=True)
    mem.save(da, "stack", format="cog")
    later = mem.open("stack", time=("2024-01-02", None))
    assert rc.is_lazy(later)
    xr.testing.assert_identical(later, da.sel(time=slice("2024-01-02", None)))
    one_day = mem.open("stack", time="2024-01-03")
    assert one_day.sizes["time"] == 1
    cog_files(stored_path(mem, "stack"))[0].unlink()
    with dask.config.set(scheduler="synchronous"):
        xr.testing.assert_identical(one_day, da.sel(time=["2024-01-03"]))
        xr.testing.assert_identical(later, da.isel(time=[1, 2]))
    with pytest.raises(mg.FormatError, match="selects none of the 3 steps"):
        mem.open("stack", time=("2025-01-01", None))


def test_time_and_bbox_together_on_a_dataset(mem: mg.Memory) -> None:
    ds = rc.time_coordinate()
    mem.save(ds, "t2m", format="cog")
    bbox = (500_000, 5_699_980, 500_020, 5_700_000)
    subset = mem.open("t2m", time=(None, "2024-01-02"), bbox=bbox, bbox_crs=rc.UTM_WKT_CRS)
    expected = ds.sel(
        time=slice(None, "2024-01-02"), x=slice(500_000, 500_020), y=slice(5_700_000, 5_699_980)
    )
    assert subset.sizes == {"time": 2, "y": 2, "x": 2}
    assert rc.is_lazy(subset)
    xr.testing.assert_identical(subset, expected)


def test_time_on_an_image_without_time_raises(mem: mg.Memory) -> None:
    mem.save(bands(), "rgb", format="cog")
    with pytest.raises(mg.OptionError, match="no datetime dimension"):
        mem.open("rgb", time="2024")


def test_columns_select_the_variable_of_a_dataset_only(mem: mg.Memory) -> None:
    ds = rc.float32_nan()
    mem.save(ds, "ds", format="cog")
    xr.testing.assert_identical(mem.open("ds", columns=["v"]), ds)
    with pytest.raises(mg.OptionError, match="one data variable is 'v'"):
        mem.open("ds", columns=["w"])
    mem.save(terrain(), "dem", format="cog")
    with pytest.raises(mg.OptionError, match="single DataArray"):
        mem.open("dem", columns=["elevation"])


def test_open_rejects_unknown_keywords_listing_the_accepted_ones(mem: mg.Memory) -> None:
    mem.save(terrain(), "dem", format="cog")
    with pytest.raises(mg.OptionError, match="variables") as info:
        mem.open("dem", variables=["x"])
    assert "'chunks'" in str(info.value)
    assert "'overview_level'" in str(info.value)
    with pytest.raises(mg.OptionError, match="unknown dims"):
        mem.open("dem", chunks={"z": 3})
