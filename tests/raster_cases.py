"""Small raster objects for round-trip tests, by name, plus the shared GeoTIFFs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from conftest import IN_CI, SHARED_DATA, shared_data_path  # noqa: F401  (re-exported to tests)

#: Shared GeoTIFFs and what is known about them.
SHARED_RASTERS = {
    "RGB.byte.tif": {"crs": "EPSG:32618", "nodata": 0},
    "goes.tif": {"crs": None, "nodata": None},
    "shade.tif": {"crs": "EPSG:3857", "nodata": 255},
    "world.rgb.tif": {"crs": "EPSG:4326", "nodata": None},
    "float_raster_with_nodata.tif": {"crs": "IGNF:ETRS89LAEA", "nodata": -3.4e38},
}

UTM_WKT_CRS = "EPSG:32631"


def open_shared_raster(name: str) -> xr.DataArray:
    """A shared GeoTIFF as rioxarray opens it by default (``mask_and_scale=False``)."""
    import rioxarray

    return rioxarray.open_rasterio(shared_data_path("raster", name))


def _grid(ny: int = 3, nx: int = 4) -> dict[str, np.ndarray]:
    return {
        "x": 500_000.0 + 10.0 * np.arange(nx) + 5.0,
        "y": 5_700_000.0 - 10.0 * np.arange(ny) - 5.0,
    }


def with_crs(obj: xr.Dataset | xr.DataArray, crs: str = UTM_WKT_CRS) -> xr.Dataset | xr.DataArray:
    """``obj`` with a rioxarray-style ``spatial_ref`` grid mapping."""
    import rioxarray  # noqa: F401

    return obj.rio.write_crs(crs)


def bare_dataset(ny: int = 3, nx: int = 4) -> xr.Dataset:
    """A float Dataset on x/y with no CRS."""
    data = np.arange(ny * nx, dtype="float32").reshape(ny, nx)
    return xr.Dataset({"a": (("y", "x"), data)}, coords=_grid(ny, nx))


def _one_var(values: np.ndarray, **attrs: object) -> xr.Dataset:
    ds = xr.Dataset({"v": (("y", "x"), values, dict(attrs))}, coords=_grid(*values.shape))
    return with_crs(ds)


def float32_nan() -> xr.Dataset:
    values = np.arange(12, dtype="float32").reshape(3, 4)
    values[1, 2] = np.nan
    return _one_var(values)


def float64_nan() -> xr.Dataset:
    values = np.linspace(-1, 1, 12).reshape(3, 4)
    values[0, 0] = np.nan
    return _one_var(values)


def integers() -> xr.Dataset:
    grid = _grid()
    ds = xr.Dataset(
        {
            name: (("y", "x"), (np.arange(12) - 3).reshape(3, 4).astype(dtype))
            for name, dtype in [("i1", "int8"), ("i2", "int16"), ("i8", "int64")]
        },
        coords=grid,
    )
    ds["u2"] = (("y", "x"), np.arange(12, dtype="uint16").reshape(3, 4) * 5000)
    return with_crs(ds)


def boolean() -> xr.Dataset:
    return _one_var(np.arange(12).reshape(3, 4) % 3 == 0)


def strings() -> xr.Dataset:
    ds = xr.Dataset(
        {
            "fixed": (("y", "x"), np.array([["a", "bb", "", "dddd"]] * 3)),
            "vlen": (("y", "x"), np.array([["\u00e9t\u00e9", "bb", "", "longer text"]] * 3, dtype=object)),
        },
        coords=_grid(),
    )
    return with_crs(ds)


def datetimes_with_nat() -> xr.Dataset:
    stamps = np.array(
        ["2020-01-01T00:00", "NaT", "2021-06-30T12:30", "1999-12-31T23:59"], dtype="datetime64[ns]"
    )
    return _one_var(np.stack([stamps] * 3))


def string_coordinate() -> xr.Dataset:
    ds = float64_nan()
    return ds.assign_coords(label=("y", np.array(["north", "mid", "south"])))


def time_coordinate() -> xr.Dataset:
    grid = _grid()
    time = pd.date_range("2024-01-01", periods=3, freq="D")
    data = np.arange(36, dtype="float32").reshape(3, 3, 4)
    ds = xr.Dataset({"t2m": (("time", "y", "x"), data)}, coords={"time": time, **grid})
    return with_crs(ds)


def cf_attributes() -> xr.Dataset:
    ds = time_coordinate()
    ds["t2m"].attrs.update(
        units="K",
        long_name="2 metre temperature",
        standard_name="air_temperature",
        valid_range=np.array([150.0, 350.0], dtype="float32"),
    )
    ds["x"].attrs.update(units="m", standard_name="projection_x_coordinate")
    ds.attrs.update(title="test", history=["created", "edited"], version=3, scale=0.25, sizes=[1, 2, 3])
    return ds


def encoded_fill_and_scale() -> xr.Dataset:
    values = np.array([[0.5, 1.0, np.nan, 2.5]] * 3)
    ds = _one_var(values, units="mm")
    ds["v"].encoding.update({"_FillValue": -9999, "scale_factor": 0.5, "dtype": "int16"})
    return ds


def cf_coder_attrs() -> xr.Dataset:
    """Attributes ``to_zarr`` would refuse or CF-decode: nodata/scale in attrs, time units."""
    values = np.array([[0, 1, 2, 3]] * 3, dtype="uint8")
    ds = _one_var(
        values,
        _FillValue=np.uint8(0),
        scale_factor=1.0,
        add_offset=0.0,
        missing_value=np.uint8(255),
    )
    ds["days"] = (("y", "x"), np.ones((3, 4), dtype="int32"), {"units": "days since 2000-01-01"})
    ds["nan_fill"] = (("y", "x"), np.ones((3, 4), "float32"), {"_FillValue": np.float32(np.nan)})
    return ds


def chunked() -> xr.Dataset:
    return cf_attributes().chunk({"time": 1, "y": 2, "x": 2})


def dataarray_named() -> xr.DataArray:
    return time_coordinate()["t2m"].assign_attrs(units="K")


def dataarray_unnamed() -> xr.DataArray:
    da = float32_nan()["v"]
    da.name = None
    return da


def dataarray_chunked() -> xr.DataArray:
    return dataarray_named().chunk({"time": 1})


def datatree() -> xr.DataTree:
    root = xr.Dataset(attrs={"title": "tree"})
    return xr.DataTree.from_dict({"/": root, "/a": time_coordinate(), "/b/c": integers()})


def large_time_series(nt: int = 24, ny: int = 256, nx: int = 512, chunks: dict | None = None) -> xr.Dataset:
    """A seeded float32 (time, y, x) raster of a few MiB, optionally dask-chunked."""
    rng = np.random.default_rng(42)
    grid = _grid(ny, nx)
    data = rng.standard_normal((nt, ny, nx), dtype="float32")
    time = pd.date_range("2024-01-01", periods=nt, freq="h")
    ds = with_crs(xr.Dataset({"t2m": (("time", "y", "x"), data)}, coords={"time": time, **grid}))
    return ds.chunk(chunks) if chunks else ds


def nodata_float() -> xr.DataArray:
    """A rioxarray-style float band with a non-NaN nodata in ``attrs`` and a NaN pixel."""
    values = np.arange(12, dtype="float32").reshape(1, 3, 4)
    values[0, 0, 0] = -3.4e38
    values[0, 2, 3] = np.nan
    da = xr.DataArray(
        values,
        dims=("band", "y", "x"),
        coords={"band": [1], **_grid()},
        attrs={"_FillValue": np.float32(-3.4e38), "scale_factor": 1.0, "add_offset": 0.0},
    )
    return with_crs(da)


#: Name -> factory of every synthetic case.
CASES: dict[str, Callable[[], xr.Dataset | xr.DataArray | xr.DataTree]] = {
    "float32_nan": float32_nan,
    "float64_nan": float64_nan,
    "integers": integers,
    "bool": boolean,
    "strings": strings,
    "datetime_nat": datetimes_with_nat,
    "string_coord": string_coordinate,
    "time_coord": time_coordinate,
    "cf_attrs": cf_attributes,
    "encoded_fill_scale": encoded_fill_and_scale,
    "cf_coder_attrs": cf_coder_attrs,
    "chunked": chunked,
    "dataarray_named": dataarray_named,
    "dataarray_unnamed": dataarray_unnamed,
    "dataarray_chunked": dataarray_chunked,
    "datatree": datatree,
    "nodata_float": nodata_float,
}



def is_lazy(obj: Any) -> bool:
    """Whether every data variable (of every node) is dask-backed."""
    import dask.array as dsa

    if isinstance(obj, xr.DataTree):
        return all(is_lazy(node.to_dataset(inherit=False)) for node in obj.subtree)
    if isinstance(obj, xr.DataArray):
        return isinstance(obj.variable._data, dsa.Array)
    return all(isinstance(var.variable._data, dsa.Array) for var in obj.data_vars.values())


def assert_same_raster(expected: Any, actual: Any) -> None:
    """Identical, same type and name, and opened lazily."""
    assert type(actual) is type(expected)
    xr.testing.assert_identical(expected, actual)
    if isinstance(expected, xr.DataArray):
        assert actual.name == expected.name
    assert is_lazy(actual), "opened object is not dask-backed"
