"""Planning a write: which files, with which pixels, grid, tiles, overviews and metadata.

A single image becomes one step (one COG); a stack (a time-like dimension, or the first
of two non-spatial dims) becomes one step per position along it. Nothing is written
here: :mod:`memories_geo.formats.cog.writer` runs the plan.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memories_geo._jsonvalue import encode_value
from memories_geo.crs import assign_crs, grid_mapping_name, xarray_crs
from memories_geo.errors import FormatError, OptionError, UnsupportedObjectError
from memories_geo.footprint import Footprint, raster_footprint
from memories_geo.formats.base import WriteOptions
from memories_geo.formats.cog.info import (
    INFO_VERSION,
    encode_attrs,
    encode_coords,
    encode_encoding,
    file_paths,
    generated_coords,
)
from memories_geo.formats.cog.profile import (
    DEFAULT_BLOCKSIZE,
    check_blocksize,
    check_resampling,
    cog_creation_options,
    default_resampling,
)
from memories_geo.kinds import spatial_dims

if TYPE_CHECKING:
    import numpy as np
    import xarray as xr
    from affine import Affine

    from memories_geo.backends.base import Location

__all__ = ["WRITE_OPTIONS", "Plan", "Step", "overview_factors", "plan_write"]

#: Format-specific keywords of ``save``.
WRITE_OPTIONS = (
    "blocksize", "overview_resampling", "temp_dir", "compression", "compression_level", "predictor",
    "overviews",
)

#: dtypes GDAL cannot store, and what they are stored as (restored on open).
_STORAGE_DTYPES = {"bool": "uint8", "float16": "float32"}
#: Attributes written to the GeoTIFF as band properties instead of tags.
_BAND_ATTRS = frozenset({"_FillValue", "scale_factor", "add_offset", "long_name", "units"})


def overview_factors(width: int, height: int, blocksize: int = DEFAULT_BLOCKSIZE) -> list[int]:
    """Decimation factors of the overviews: halve until the image fits in one tile.

    Examples
    --------
    >>> overview_factors(8192, 6000, 512)
    [2, 4, 8, 16]
    >>> overview_factors(300, 200, 512)
    []
    """
    factors: list[int] = []
    factor = 1
    while math.ceil(width / factor) > blocksize or math.ceil(height / factor) > blocksize:
        factor *= 2
        factors.append(factor)
    return factors


@dataclass
class Step:
    """One COG file to produce: its pixels (count, rows, cols) and GeoTIFF metadata."""

    data: Any
    target: str
    profile: dict[str, Any]
    band_meta: dict[str, Any]
    tags: dict[str, str]


@dataclass
class Plan:
    """Everything a write needs, decided before any byte is written."""

    steps: list[Step]
    creation_options: dict[str, Any]
    factors: list[int]
    resampling: str
    footprint: Footprint
    info: dict[str, Any]
    lazy: bool
    temp_dir: str | None = None


def plan_write(obj: Any, location: Location, options: WriteOptions) -> Plan:
    """Check ``obj`` and ``options`` and decide the files, their grid and their metadata.

    Raises
    ------
    UnsupportedObjectError
        For objects a GeoTIFF cannot hold, or ``mode="a"``.
    FormatError
        For ``encoding=`` or unknown or invalid options.
    """
    import numpy as np

    if options.mode == "a":
        raise UnsupportedObjectError(
            "the cog format cannot append to a stored version; save the combined object "
            "with mode='w', or use format='zarr' for appendable rasters"
        )
    if options.encoding:
        raise FormatError(
            "the cog format takes no encoding=; pass blocksize=, overview_resampling= or "
            "compression= to save() instead"
        )
    extra = dict(options.extra)
    unknown = sorted(set(extra) - set(WRITE_OPTIONS))
    if unknown:
        raise FormatError(f"unknown options {unknown} for the cog format; supported: {list(WRITE_OPTIONS)}")
    blocksize = check_blocksize(extra.get("blocksize", DEFAULT_BLOCKSIZE))
    overviews = extra.get("overviews", True)
    if not isinstance(overviews, bool):
        raise OptionError(f"overviews must be True or False, got {overviews!r}")

    obj = assign_crs(obj, options.crs)
    da, info = _as_dataarray(obj)
    x_dim, y_dim = _spatial_dims(da)
    stack_dim, band_dim = _other_dims(da, x_dim, y_dim)
    dtype = np.dtype(da.dtype)
    if dtype.kind not in "biuf":
        raise UnsupportedObjectError(_dtype_refusal(da, dtype))
    crs = xarray_crs(da)
    if crs is None:
        raise UnsupportedObjectError(
            f"this raster has spatial dims {(x_dim, y_dim)} but no CRS. Set one with "
            "obj.rio.write_crs('EPSG:32631') or pass crs=... to save()."
        )
    storage_dtype = np.dtype(_STORAGE_DTYPES.get(dtype.name, dtype.name))
    resampling = check_resampling(extra.get("overview_resampling", default_resampling(dtype)))

    file_dims = [d for d in (stack_dim, band_dim, y_dim, x_dim) if d is not None]
    ordered = da.transpose(*file_dims)
    transform, explicit = _transform(ordered, x_dim, y_dim)
    nodata = _nodata(ordered, x_dim, y_dim, storage_dtype)

    info.update(
        {
            "dims": [str(d) for d in da.dims],
            "x_dim": str(x_dim),
            "y_dim": str(y_dim),
            "band_dim": band_dim,
            "stack_dim": stack_dim,
            "dtype": dtype.str,
            "attrs": encode_attrs(da.attrs, "attributes"),
            "encoding": encode_encoding(da.encoding),
            "coords": encode_coords(da, x_dim, y_dim, explicit),
            "blocksize": blocksize,
        }
    )
    if stack_dim is None:
        info["layout"] = "file"
    else:
        digits = max(4, len(str(da.sizes[stack_dim] - 1)))
        info["layout"] = "stack"
        info["files"] = [f"t{i:0{digits}d}.tif" for i in range(da.sizes[stack_dim])]

    values = ordered.data
    if band_dim is None:
        values = values[..., None, :, :] if stack_dim is not None else values[None]
    if storage_dtype != dtype:
        values = values.astype(storage_dtype)
    height, width = int(da.sizes[y_dim]), int(da.sizes[x_dim])
    count = int(da.sizes[band_dim]) if band_dim is not None else 1
    profile = {
        "width": width, "height": height, "count": count, "dtype": storage_dtype.name,
        "crs": _rasterio_crs(crs), "transform": transform, "nodata": nodata,
    }
    band_meta = _band_metadata(da.attrs, count)
    tags = _tags(da.attrs)
    targets = file_paths(location, info)
    if stack_dim is None:
        steps = [Step(values, targets[0], profile, band_meta, tags)]
    else:
        stamps = [str(v) for v in da[stack_dim].values] if stack_dim in da.coords else None
        steps = [
            Step(values[i], targets[i], profile, band_meta,
                 {**tags, str(stack_dim): stamps[i]} if stamps else tags)
            for i in range(len(targets))
        ]
    return Plan(
        steps=steps,
        creation_options=cog_creation_options(
            options.compression, storage_dtype, blocksize=blocksize, codec=extra.get("compression"),
            codec_level=extra.get("compression_level"), predictor=extra.get("predictor"),
            overviews=overviews,
        ),
        factors=overview_factors(width, height, blocksize) if overviews else [],
        resampling=resampling,
        footprint=raster_footprint(obj, crs=crs),
        info=info,
        lazy=type(values).__module__.startswith("dask"),
        temp_dir=extra.get("temp_dir"),
    )


def _as_dataarray(obj: Any) -> tuple[xr.DataArray, dict[str, Any]]:
    import xarray as xr

    if isinstance(obj, xr.DataArray):
        name = encode_value(obj.name, "the DataArray name")
        return obj, {"version": INFO_VERSION, "type": "DataArray", "name": name}
    if not isinstance(obj, xr.Dataset):
        raise UnsupportedObjectError(
            f"the cog format stores xarray DataArray or Dataset objects, not {type(obj).__name__}"
        )
    names = list(obj.data_vars)
    if len(names) != 1:
        raise UnsupportedObjectError(
            f"the cog format stores one variable per key, and this Dataset has {len(names)} "
            f"({[str(n) for n in names]}); save it with format='zarr' (the default for "
            "Datasets), or save each variable under its own key"
        )
    variable = names[0]
    extra_dims = sorted(str(d) for d in set(obj.dims) - set(obj[variable].dims))
    if extra_dims:
        raise UnsupportedObjectError(
            f"coordinates on dims {extra_dims} that variable {variable!r} does not use cannot be "
            "stored in a COG; drop them or save with format='zarr'"
        )
    info = {
        "version": INFO_VERSION,
        "type": "Dataset",
        "name": encode_value(variable, "the variable name"),
        "dataset_attrs": encode_attrs(obj.attrs, "Dataset attributes"),
        "dataset_encoding": encode_encoding(obj.encoding),
    }
    return obj[variable], info


def _dtype_refusal(da: xr.DataArray, dtype: Any) -> str:
    """Why a GeoTIFF cannot hold ``da``'s values, naming it, and what to do instead."""
    subject = f"variable {str(da.name)!r}" if da.name is not None else "the DataArray"
    if dtype.kind == "O":
        fix = ("cast it to one numeric type first (da.astype('float64')), or save it with "
               "format='zarr' if its values are strings")
    else:
        fix = "save this object with format='zarr'"
    return f"{subject} has dtype {dtype}; a GeoTIFF holds booleans, integers and floats only; {fix}"


def _spatial_dims(da: xr.DataArray) -> tuple[Any, Any]:
    dims = spatial_dims(da)
    if dims is None:
        raise UnsupportedObjectError(
            f"no spatial dims among {tuple(da.dims)}; a COG needs x/y, lon/lat or "
            "longitude/latitude dims"
        )
    return dims


def _is_time_like(da: xr.DataArray, dim: Any) -> bool:
    import pandas as pd

    if dim == "time":
        return True
    index = da.indexes.get(dim)
    return isinstance(index, pd.DatetimeIndex)


def _other_dims(da: xr.DataArray, x_dim: Any, y_dim: Any) -> tuple[str | None, str | None]:
    """The stacking dimension (one file per step) and the band dimension, if any."""
    others = [d for d in da.dims if d not in (x_dim, y_dim)]
    for dim in da.dims:
        if not isinstance(dim, str):
            raise UnsupportedObjectError(f"dimension names must be strings to be stored, got {dim!r}")
    if len(others) > 2:
        raise UnsupportedObjectError(
            f"a COG stack holds at most a stacking dimension (time) and a band dimension "
            f"besides {(x_dim, y_dim)}; this object has {others}. Save it with format='zarr'"
        )
    if not others:
        return None, None
    if len(others) == 1:
        dim = str(others[0])
        return (dim, None) if _is_time_like(da, dim) else (None, dim)
    first, second = str(others[0]), str(others[1])
    if _is_time_like(da, second) and not _is_time_like(da, first):
        return second, first
    return first, second


def _transform(da: xr.DataArray, x_dim: Any, y_dim: Any) -> tuple[Affine, set[str]]:
    """The transform to write, and which of x/y must be stored explicitly.

    Candidates, in order: the rioxarray ``GeoTransform`` attribute, rioxarray's
    transform, one computed from the first and last coordinates. The first whose
    pixel centres reproduce the coordinates exactly wins; else the first within
    1 % of a pixel, and the coordinates are stored in ``object_info``.
    """
    import numpy as np
    from affine import Affine

    width, height = int(da.sizes[x_dim]), int(da.sizes[y_dim])
    candidates: list[Affine] = []
    name = grid_mapping_name(da)
    geotransform = da.coords[name].attrs.get("GeoTransform") if name is not None else None
    if isinstance(geotransform, str):
        with contextlib.suppress(ValueError, TypeError):
            candidates.append(Affine.from_gdal(*(float(v) for v in geotransform.split())))
    with contextlib.suppress(Exception):
        candidates.append(_rio(da, x_dim, y_dim).rio.transform())
    has_x, has_y = x_dim in da.coords, y_dim in da.coords
    if has_x and has_y and width > 1 and height > 1:
        x = np.asarray(da[x_dim].values, dtype="float64")
        y = np.asarray(da[y_dim].values, dtype="float64")
        rx, ry = (x[-1] - x[0]) / (width - 1), (y[-1] - y[0]) / (height - 1)
        candidates.append(Affine(rx, 0.0, x[0] - rx / 2, 0.0, ry, y[0] - ry / 2))
    candidates = [t for t in candidates if t.is_rectilinear and t.a != 0 and t.e != 0]
    if not candidates:
        raise UnsupportedObjectError(
            f"cannot derive a geotransform from the {x_dim!r}/{y_dim!r} coordinates (sizes "
            f"{width}x{height}); write one with obj.rio.write_transform(...)"
        )
    if not (has_x and has_y):
        return candidates[0], set()
    best: tuple[Affine, set[str]] | None = None
    for transform in candidates:
        gx, gy = generated_coords(transform, width, height)
        coord_x, coord_y = da[x_dim].variable, da[y_dim].variable
        exact_x = coord_x.dtype == np.float64 and np.array_equal(gx, coord_x.values)
        exact_y = coord_y.dtype == np.float64 and np.array_equal(gy, coord_y.values)
        if exact_x and exact_y:
            return transform, set()
        close = _close(gx, coord_x.values, transform.a) and _close(gy, coord_y.values, transform.e)
        if close and best is None:
            explicit = {name for name, exact in ((str(x_dim), exact_x), (str(y_dim), exact_y)) if not exact}
            best = (transform, explicit)
    if best is None:
        raise UnsupportedObjectError(
            f"the {x_dim!r}/{y_dim!r} coordinates are not evenly spaced, so no geotransform "
            "describes them; a GeoTIFF needs a regular grid. Save this object with format='zarr'"
        )
    return best


def _close(generated: np.ndarray, values: Any, resolution: float) -> bool:
    import numpy as np

    values = np.asarray(values)
    if values.dtype.kind not in "iuf":
        return False
    return bool(np.all(np.abs(generated - values.astype("float64")) <= 0.01 * abs(resolution)))


def _rio(da: xr.DataArray, x_dim: Any, y_dim: Any) -> xr.DataArray:
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    if (x_dim, y_dim) == ("x", "y"):
        return da
    return da.rio.set_spatial_dims(x_dim=x_dim, y_dim=y_dim, inplace=False)


def _nodata(da: xr.DataArray, x_dim: Any, y_dim: Any, dtype: np.dtype) -> Any:
    """The nodata value to write in the GeoTIFF, if the object declares one it can hold."""
    import numpy as np

    if np.dtype(da.dtype).kind == "b":
        return None
    try:
        value = _rio(da, x_dim, y_dim).rio.nodata
    except Exception:
        return None
    if value is None:
        return None
    value = value.item() if hasattr(value, "item") else value
    if dtype.kind in "iu":
        limits = np.iinfo(dtype)
        if not (isinstance(value, int | float) and math.isfinite(value) and value == int(value)):
            return None
        return int(value) if limits.min <= value <= limits.max else None
    return float(value)


def _band_metadata(attrs: Mapping[str, Any], count: int) -> dict[str, Any]:
    """Band descriptions, scales, offsets and units from rioxarray-style attributes."""
    meta: dict[str, Any] = {}
    long_name = attrs.get("long_name")
    if isinstance(long_name, str) and count == 1:
        meta["descriptions"] = (long_name,)
    elif isinstance(long_name, list | tuple) and len(long_name) == count and all(
        isinstance(v, str) for v in long_name
    ):
        meta["descriptions"] = tuple(long_name)
    for attr, key in (("scale_factor", "scales"), ("add_offset", "offsets")):
        values = _per_band_numbers(attrs.get(attr), count)
        if values is not None:
            meta[key] = values
    units = attrs.get("units")
    if isinstance(units, str):
        meta["units"] = (units,) * count
    return meta


def _per_band_numbers(value: Any, count: int) -> tuple[float, ...] | None:
    import numpy as np

    if value is None or isinstance(value, str | bool):
        return None
    values = np.atleast_1d(np.asarray(value))
    if values.dtype.kind not in "iuf":
        return None
    if values.size == 1:
        return (float(values[0]),) * count
    if values.size == count:
        return tuple(float(v) for v in values)
    return None


def _tags(attrs: Mapping[str, Any]) -> dict[str, str]:
    """Scalar attributes as GeoTIFF tags, for readers other than memories_geo."""
    import numpy as np

    tags = {}
    for key, value in attrs.items():
        if key in _BAND_ATTRS or not isinstance(key, str):
            continue
        if isinstance(value, str | int | float) or (
            isinstance(value, np.generic) and value.dtype.kind in "biuf"
        ):
            tags[key] = str(value)
    return tags


def _rasterio_crs(crs: Any) -> Any:
    from rasterio.crs import CRS

    auth = crs.to_authority(min_confidence=100)
    if auth is not None and auth[0] == "EPSG":
        return CRS.from_epsg(int(auth[1]))
    return CRS.from_wkt(crs.to_wkt())
