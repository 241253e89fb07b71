"""Cloud-optimized GeoTIFFs for single images and stacks of images.

A version of a single image (a DataArray on ``(y, x)`` or ``(band, y, x)``, or a
Dataset holding one such variable) is one COG file, ``<version_id>.tif``. A stack
(``(time, y, x)`` or ``(time, band, y, x)``) is a directory of that name holding
one COG per step of the stacking dimension, ``t0000.tif``, ``t0001.tif``...

Every file is written by GDAL's COG driver: square tiles (``blocksize=``, default
512), internal overviews down to one tile (``overview_resampling=``), the codec of
the tier's compression level from :data:`COG_PROFILES`, horizontal (integers) or
floating-point predictor, and all CPUs compressing. The files stand on their own:
CRS, transform, nodata, band descriptions, scales, offsets and units, and scalar
attributes as tags.

What GeoTIFF cannot say exactly (dimension and coordinate names, coordinate values
and attributes, the ``spatial_ref`` grid mapping as rioxarray wrote it, attributes
with their numpy types, the DataArray name) is recorded in ``object_info``, so
:meth:`COGFormat.open` gives back an object identical to the one saved.

Dask-backed arrays are streamed: each chunk is written into a temporary,
uncompressed tiled GeoTIFF, overviews are built from it, and the COG driver
copies it to its final layout, so peak memory stays at a few chunks plus GDAL's
block cache (:data:`GDAL_CACHE_MB`).
"""

from __future__ import annotations

import contextlib
import math
import os
import posixpath
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

from memories_geo.crs import assign_crs, grid_mapping_name, xarray_crs
from memories_geo.errors import FormatError, UnsupportedObjectError
from memories_geo.footprint import Footprint, raster_footprint
from memories_geo.formats.base import FileFormat, WriteOptions, WriteResult
from memories_geo.integrity import Manifest
from memories_geo.kinds import spatial_dims
from memories_geo.types import CompressionLevel, Kind

if TYPE_CHECKING:
    import numpy as np
    import xarray as xr
    from affine import Affine

    from memories_geo.backends.base import Location

__all__ = [
    "COG_PROFILES",
    "DEFAULT_BLOCKSIZE",
    "GDAL_CACHE_MB",
    "COGFormat",
    "cog_creation_options",
    "overview_factors",
]

#: Compression level -> COG driver codec options (predictor and threads are added by
#: :func:`cog_creation_options`). Chosen by measurement on smooth terrain plus noise
#: (int16, float32, uint8), see docs/formats-cog.md: ZSTD 1 is the fastest codec
#: that still halves int16 terrain; ZSTD 6 gains 5-12 % more at a third of the
#: speed; DEFLATE 9 matches ZSTD 12-15 in size and every GeoTIFF reader decodes it;
#: ZSTD 19 is the smallest lossless option readers commonly support (ZSTD 22 gives
#: the same size on 512x512 tiles at a third of the speed).
COG_PROFILES: dict[CompressionLevel, dict[str, Any]] = {
    CompressionLevel.FAST: {"COMPRESS": "ZSTD", "LEVEL": 1},
    CompressionLevel.MEDIUM: {"COMPRESS": "ZSTD", "LEVEL": 6},
    CompressionLevel.HIGH: {"COMPRESS": "DEFLATE", "LEVEL": 9},
    CompressionLevel.MAXIMUM: {"COMPRESS": "ZSTD", "LEVEL": 19},
}

#: Tile width and height when ``blocksize=`` is not given.
DEFAULT_BLOCKSIZE = 512

#: GDAL block cache (MB) while writing: bounds the memory used on top of the chunks.
GDAL_CACHE_MB = 64

#: Layout version of ``object_info``.
INFO_VERSION = 1

#: Overview resampling methods GDAL accepts when building overviews.
_OVERVIEW_RESAMPLINGS = (
    "nearest", "average", "bilinear", "cubic", "cubic_spline", "lanczos", "mode", "gauss", "rms",
)
#: dtypes GDAL cannot store, and what they are stored as (restored on open).
_STORAGE_DTYPES = {"bool": "uint8", "float16": "float32"}
#: Attributes written to the GeoTIFF as band properties instead of tags.
_BAND_ATTRS = frozenset({"_FillValue", "scale_factor", "add_offset", "long_name", "units"})
#: Encoding entries describing the layout of the object's source, not its meaning.
_LAYOUT_ENCODINGS = frozenset(
    {
        "source", "preferred_chunks", "chunks", "chunksizes", "compressor", "compressors",
        "filters", "serializer", "shards", "zlib", "complevel", "shuffle", "fletcher32",
        "contiguous", "original_shape", "blosc_shuffle", "szip_coding", "szip_pixels_per_block",
    }
)
_WRITE_OPTIONS = ("blocksize", "overview_resampling", "temp_dir")
_QUERY_KEYS = ("chunks", "bbox", "bbox_crs", "overview_level")
#: Serialises opens through fsspec openers: rasterio's opener registry is not thread-safe.
_OPENER_LOCK = threading.Lock()


# -- creation options ------------------------------------------------------------------


def cog_creation_options(
    level: CompressionLevel | str,
    dtype: Any,
    *,
    blocksize: int = DEFAULT_BLOCKSIZE,
) -> dict[str, Any]:
    """GDAL COG driver creation options for a compression level and a data type.

    Parameters
    ----------
    level : CompressionLevel or str
        ``"fast"``, ``"medium"``, ``"high"`` or ``"maximum"`` (see :data:`COG_PROFILES`).
    dtype : numpy dtype or str
        Data type stored: integers get ``PREDICTOR=STANDARD`` (2), floats
        ``PREDICTOR=FLOATING_POINT`` (3).
    blocksize : int
        Tile width and height, a multiple of 16.

    Returns
    -------
    dict
        Keyword arguments for ``rasterio.shutil.copy(src, dst, driver="COG", **options)``.

    Examples
    --------
    >>> cog_creation_options("fast", "int16")["PREDICTOR"]
    'STANDARD'
    """
    import numpy as np

    options = dict(COG_PROFILES[CompressionLevel(level)])
    kind = np.dtype(dtype).kind
    options["PREDICTOR"] = "FLOATING_POINT" if kind == "f" else "STANDARD"
    options["BLOCKSIZE"] = _check_blocksize(blocksize)
    options["NUM_THREADS"] = "ALL_CPUS"
    options["BIGTIFF"] = "IF_SAFER"
    return options


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


def _check_blocksize(blocksize: Any) -> int:
    if isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize < 16 or blocksize % 16:
        raise FormatError(
            f"blocksize must be a positive multiple of 16 (e.g. 256, 512, 1024), got {blocksize!r}"
        )
    return blocksize


def _default_resampling(dtype: Any) -> str:
    import numpy as np

    return "average" if np.dtype(dtype).kind in "fc" else "nearest"


def _check_resampling(value: Any) -> str:
    name = str(getattr(value, "name", value)).lower()
    if name not in _OVERVIEW_RESAMPLINGS:
        raise FormatError(
            f"overview_resampling={value!r} is not supported; choose one of {list(_OVERVIEW_RESAMPLINGS)}"
        )
    return name


# -- the format ------------------------------------------------------------------------------


class COGFormat(FileFormat):
    """Cloud-optimized GeoTIFF, for single images and stacks of images.

    Write options (keywords of ``save``): ``blocksize=`` (tile size, multiple of
    16, default 512), ``overview_resampling=`` (default ``"nearest"`` for
    integers and booleans, ``"average"`` for floats) and ``temp_dir=`` (where
    dask-backed arrays are staged, default the system temporary directory).

    Examples
    --------
    >>> import memories_geo as mg
    >>> mem = mg.Memory("/tmp/mg-doc")  # doctest: +SKIP
    >>> mem.save(dem, "dem/alps", format="cog", compression="high")  # doctest: +SKIP
    >>> mem.open("dem/alps", bbox=(600_000, 5_100_000, 610_000, 5_110_000))  # doctest: +SKIP
    """

    name: ClassVar[str] = "cog"
    kinds: ClassVar[frozenset[Kind]] = frozenset({Kind.RASTER})
    extension: ClassVar[str] = ".tif"

    def can_store(self, obj: Any) -> bool:
        """Whether ``obj`` is an xarray DataArray or Dataset (its layout is checked on write)."""
        import xarray as xr

        return isinstance(obj, xr.DataArray | xr.Dataset)

    # -- writing -----------------------------------------------------------------------

    def write(self, obj: Any, location: Location, options: WriteOptions) -> WriteResult:
        """Write ``obj`` as one COG (an image) or a directory of COGs (a stack).

        With ``options.compute=False`` and a dask-backed object, the streaming of
        the chunks and the COG translation are returned as ``WriteResult.pending``.

        Raises
        ------
        UnsupportedObjectError
            For objects a GeoTIFF cannot hold (several variables, more than one
            non-spatial dimension besides the stacking one, irregular grids,
            strings, complex numbers...); the message suggests Zarr.
        FormatError
            For unknown or invalid options.
        """
        plan = _plan(obj, location, options)
        job = _Job(plan.steps, plan.creation_options, plan.factors, plan.resampling, location)
        if not plan.lazy:
            job.run_eager(plan.temp_dir)
            return WriteResult(manifest=self.manifest(location), footprint=plan.footprint,
                               object_info=plan.info)
        pending = job.delayed(plan.temp_dir)
        if options.compute:
            pending.compute()
            return WriteResult(manifest=self.manifest(location), footprint=plan.footprint,
                               object_info=plan.info)
        return WriteResult(manifest=Manifest(), footprint=plan.footprint, object_info=plan.info,
                           pending=pending)

    # -- reading -----------------------------------------------------------------------

    def open(self, location: Location, object_info: Mapping[str, Any], **query: Any) -> Any:
        """Open a stored version lazily (dask-backed), as the type that was saved.

        Parameters
        ----------
        location : Location
            Where the version is stored.
        object_info : mapping
            What :meth:`write` returned as ``object_info``.
        **query
            ``chunks=`` (dask chunks by dimension name, an int, ``"auto"``, or
            ``None`` to load into memory; default ``"auto"``, aligned with the
            tiles), ``bbox=`` ``(minx, miny, maxx, maxy)`` (read only the pixels
            intersecting it; in the raster's CRS unless ``bbox_crs=`` says
            otherwise) and ``overview_level=`` (0 is the first overview, half
            the resolution).

        Returns
        -------
        xarray.DataArray or xarray.Dataset
            Identical to the object saved when no query reduces it.

        Raises
        ------
        FormatError
            For an unknown query keyword, a bbox outside the raster or an
            overview level that does not exist.
        """
        unknown = sorted(set(query) - set(_QUERY_KEYS))
        if unknown:
            raise FormatError(
                f"unsupported query {unknown} for the cog format; supported: {list(_QUERY_KEYS)}"
            )
        if query.get("bbox_crs") is not None and query.get("bbox") is None:
            raise FormatError("bbox_crs= needs bbox=")
        return _open(location, object_info, **query)


# -- planning a write ------------------------------------------------------------------------


@dataclass
class _Step:
    """One COG file to produce: its pixels (count, rows, cols) and GeoTIFF metadata."""

    data: Any
    target: str
    profile: dict[str, Any]
    band_meta: dict[str, Any]
    tags: dict[str, str]


@dataclass
class _Plan:
    steps: list[_Step]
    creation_options: dict[str, Any]
    factors: list[int]
    resampling: str
    footprint: Footprint
    info: dict[str, Any]
    lazy: bool
    temp_dir: str | None = None


def _plan(obj: Any, location: Location, options: WriteOptions) -> _Plan:
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
    unknown = sorted(set(extra) - set(_WRITE_OPTIONS))
    if unknown:
        raise FormatError(f"unknown options {unknown} for the cog format; supported: {list(_WRITE_OPTIONS)}")
    blocksize = _check_blocksize(extra.get("blocksize", DEFAULT_BLOCKSIZE))

    obj = assign_crs(obj, options.crs)
    da, info = _as_dataarray(obj)
    x_dim, y_dim = _spatial_dims(da)
    stack_dim, band_dim = _other_dims(da, x_dim, y_dim)
    crs = xarray_crs(da)
    if crs is None:
        raise UnsupportedObjectError(
            f"this raster has spatial dims {(x_dim, y_dim)} but no CRS. Set one with "
            "obj.rio.write_crs('EPSG:32631') or pass crs=... to save()."
        )
    dtype = np.dtype(da.dtype)
    if dtype.kind not in "biuf":
        raise UnsupportedObjectError(
            f"a GeoTIFF holds booleans, integers and floats, not {dtype}; save this "
            "object with format='zarr'"
        )
    storage_dtype = np.dtype(_STORAGE_DTYPES.get(dtype.name, dtype.name))
    resampling = _check_resampling(extra.get("overview_resampling", _default_resampling(dtype)))

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
            "attrs": _encode_mapping(da.attrs, "attributes"),
            "encoding": _encode_encoding(da.encoding),
            "coords": _encode_coords(da, x_dim, y_dim, explicit),
            "blocksize": blocksize,
        }
    )
    if stack_dim is None:
        info["layout"] = "file"
    else:
        width = max(4, len(str(da.sizes[stack_dim] - 1)))
        info["layout"] = "stack"
        info["files"] = [f"t{i:0{width}d}.tif" for i in range(da.sizes[stack_dim])]

    values = ordered.data
    if band_dim is None:
        values = values[..., None, :, :] if stack_dim is not None else values[None]
    if storage_dtype != dtype:
        values = values.astype(storage_dtype)
    lazy = _is_dask(values)
    height, width = int(da.sizes[y_dim]), int(da.sizes[x_dim])
    count = int(da.sizes[band_dim]) if band_dim is not None else 1
    profile = {
        "width": width, "height": height, "count": count, "dtype": storage_dtype.name,
        "crs": _rasterio_crs(crs), "transform": transform, "nodata": nodata,
    }
    band_meta = _band_metadata(da.attrs, count)
    tags = _tags(da.attrs)
    targets = _targets(location, info)
    if stack_dim is None:
        steps = [_Step(values, targets[0], profile, band_meta, tags)]
    else:
        stamps = [str(v) for v in da[stack_dim].values] if stack_dim in da.coords else None
        steps = [
            _Step(values[i], targets[i], profile, band_meta,
                  {**tags, str(stack_dim): stamps[i]} if stamps else tags)
            for i in range(len(targets))
        ]
    return _Plan(
        steps=steps,
        creation_options=cog_creation_options(options.compression, storage_dtype, blocksize=blocksize),
        factors=overview_factors(width, height, blocksize),
        resampling=resampling,
        footprint=raster_footprint(obj, crs=crs),
        info=info,
        lazy=lazy,
        temp_dir=extra.get("temp_dir"),
    )



def _as_dataarray(obj: Any) -> tuple[xr.DataArray, dict[str, Any]]:
    import xarray as xr

    if isinstance(obj, xr.DataArray):
        return obj, {"version": INFO_VERSION, "type": "DataArray", "name": _encode_value(obj.name, "name")}
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
        "name": _encode_value(variable, "name"),
        "dataset_attrs": _encode_mapping(obj.attrs, "Dataset attributes"),
        "dataset_encoding": _encode_encoding(obj.encoding),
    }
    return obj[variable], info


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
        dim = others[0]
        return (dim, None) if _is_time_like(da, dim) else (None, dim)
    first, second = others
    if _is_time_like(da, second) and not _is_time_like(da, first):
        return second, first
    return first, second


def _generated_coords(transform: Affine, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of a north-up transform, computed as rioxarray does."""
    import numpy as np

    centre = transform @ transform.translation(0.5, 0.5)
    x, _ = centre @ (np.arange(width), np.zeros(width))
    _, y = centre @ (np.zeros(height), np.arange(height))
    return np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")


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
        gx, gy = _generated_coords(transform, width, height)
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
        info = np.iinfo(dtype)
        if not (isinstance(value, int | float) and math.isfinite(value) and value == int(value)):
            return None
        return int(value) if info.min <= value <= info.max else None
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


def _is_dask(values: Any) -> bool:
    return type(values).__module__.startswith("dask")


def _targets(location: Location, info: Mapping[str, Any]) -> list[str]:
    root = location.full_path
    if info["layout"] == "file":
        return [root]
    return [posixpath.join(root, name) for name in info["files"]]


# -- writing files -------------------------------------------------------------------------


@dataclass
class _Job:
    """Produce every COG of a plan, eagerly (numpy) or as a dask graph (dask)."""

    steps: list[_Step]
    creation_options: dict[str, Any]
    factors: list[int]
    resampling: str
    location: Location
    temp_dirs: list[str] = field(default_factory=list)

    def _env(self) -> Any:
        import rasterio

        return rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_CACHEMAX=GDAL_CACHE_MB)

    def run_eager(self, temp_dir: str | None) -> None:
        """Write in-memory steps: a MEM dataset with overviews, copied by the COG driver."""
        import numpy as np
        import rasterio

        with self._staging(temp_dir) as staging:
            for i, step in enumerate(self.steps):
                with self._env(), rasterio.open("memories_geo", "w", driver="MEM", **step.profile) as src:
                    src.write(np.asarray(step.data))
                    _apply_metadata(src, step)
                    self._build_overviews(src)
                    self._publish(src, step.target, staging, i)

    def delayed(self, temp_dir: str | None) -> Any:
        """Dask graph: stream chunks into temporary GeoTIFFs, then translate each to a COG."""
        import dask
        import dask.array as dsa

        staging = tempfile.mkdtemp(prefix="memories_geo-cog-", dir=temp_dir)
        self.temp_dirs.append(staging)
        targets = []
        try:
            for i, step in enumerate(self.steps):
                path = os.path.join(staging, f"stream{i}.tif")
                _create_stream_file(path, step, self.creation_options["BLOCKSIZE"])
                targets.append(_WindowWriter(path))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        sources = [dsa.asarray(step.data) for step in self.steps]
        stored = dsa.store(sources, targets, lock=False, compute=False)
        if not isinstance(stored, tuple):
            stored = (stored,)
        written = [chunk for array in stored for chunk in array.to_delayed().ravel().tolist()]
        without_data = replace(self, steps=[replace(step, data=None) for step in self.steps])
        return dask.delayed(_finish_streams, pure=False)(written, without_data, staging)

    def finish_streams(self, staging: str) -> None:
        """Build overviews in each streamed file and copy it to its COG target."""
        import rasterio

        try:
            for i, step in enumerate(self.steps):
                path = os.path.join(staging, f"stream{i}.tif")
                with self._env():
                    with rasterio.open(path, "r+") as src:
                        self._build_overviews(src)
                    with rasterio.open(path) as src:
                        self._publish(src, step.target, staging, i)
                os.remove(path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _build_overviews(self, src: Any) -> None:
        from rasterio.enums import Resampling

        if self.factors:
            src.build_overviews(self.factors, Resampling[self.resampling])

    @contextlib.contextmanager
    def _staging(self, temp_dir: str | None) -> Iterator[str | None]:
        if self.location.is_local:
            yield None
            return
        staging = tempfile.mkdtemp(prefix="memories_geo-cog-", dir=temp_dir)
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _publish(self, src: Any, target: str, staging: str | None, index: int) -> None:
        """Copy ``src`` to ``target`` as a COG (through a local file for remote tiers)."""
        import rasterio.shutil

        if self.location.is_local:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            rasterio.shutil.copy(src, target, driver="COG", **self.creation_options)
            return
        if staging is None:
            raise FormatError("a remote tier needs a local staging directory")
        local = os.path.join(staging, f"cog{index}.tif")
        rasterio.shutil.copy(src, local, driver="COG", **self.creation_options)
        fs = self.location.fs
        parent = posixpath.dirname(target)
        if parent:
            fs.makedirs(parent, exist_ok=True)
        fs.put_file(local, target)
        os.remove(local)


def _finish_streams(_: Any, job: _Job, staging: str) -> None:
    job.finish_streams(staging)


def _apply_metadata(dst: Any, step: _Step) -> None:
    meta = step.band_meta
    if "descriptions" in meta:
        dst.descriptions = meta["descriptions"]
    if "scales" in meta:
        dst.scales = meta["scales"]
    if "offsets" in meta:
        dst.offsets = meta["offsets"]
    if "units" in meta:
        dst.units = meta["units"]
    if step.tags:
        dst.update_tags(**step.tags)


def _create_stream_file(path: str, step: _Step, blocksize: int) -> None:
    """An empty, uncompressed, tiled GeoTIFF the chunks are written into (sparse until then)."""
    import rasterio

    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), rasterio.open(
        path, "w", driver="GTiff", tiled=True, blockxsize=blocksize, blockysize=blocksize,
        compress="NONE", interleave="pixel", SPARSE_OK=True, BIGTIFF="IF_NEEDED",
        **step.profile,
    ) as dst:
        _apply_metadata(dst, step)


class _WindowWriter:
    """``dask.array.store`` target writing each chunk as a window of a GeoTIFF (picklable)."""

    def __init__(self, path: str) -> None:
        from dask.utils import SerializableLock

        self.path = path
        self.lock = SerializableLock()

    def __setitem__(self, key: tuple[slice, ...], value: np.ndarray) -> None:
        import rasterio
        from rasterio.windows import Window

        bands, rows, cols = key
        window = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        indexes = list(range(bands.start + 1, bands.stop + 1))
        with self.lock, rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), rasterio.open(self.path, "r+") as dst:
            dst.write(value, indexes=indexes, window=window)


# -- reading --------------------------------------------------------------------------------


class _COGWindow:
    """A window of one band-interleaved COG (or one of its overviews), read per dask chunk."""

    def __init__(
        self, path: str, fs: Any, overview_level: int | None,
        offset: tuple[int, int], shape: tuple[int, int, int], dtype: Any,
    ) -> None:
        import numpy as np

        self.path, self.fs, self.overview_level = path, fs, overview_level
        self.offset = offset
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.ndim = 3

    def __getitem__(self, key: Any) -> np.ndarray:
        import numpy as np
        from rasterio.windows import Window

        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (3 - len(key))
        ranges, post, drop = [], [], []
        for axis, (k, size) in enumerate(zip(key, self.shape, strict=True)):
            if isinstance(k, int | np.integer):
                k = int(k) + size if k < 0 else int(k)
                ranges.append((k, k + 1))
                post.append(slice(None))
                drop.append(axis)
                continue
            start, stop, step = k.indices(size)
            if step == 1 or start == stop:
                ranges.append((start, max(start, stop)))
                post.append(slice(None))
            else:
                lo, hi = (start, stop) if step > 0 else (stop + 1, start + 1)
                ranges.append((lo, max(lo, hi)))
                post.append(slice(start - lo, stop - lo if stop - lo >= 0 else None, step))
        (b0, b1), (r0, r1), (c0, c1) = ranges
        if b1 <= b0 or r1 <= r0 or c1 <= c0:
            out = np.empty((b1 - b0, r1 - r0, c1 - c0), dtype=self.dtype)
        else:
            window = Window(self.offset[1] + c0, self.offset[0] + r0, c1 - c0, r1 - r0)
            with _opened(self.path, self.fs, self.overview_level) as src:
                out = src.read(list(range(b0 + 1, b1 + 1)), window=window)
        out = out[tuple(post)]
        return out.squeeze(axis=tuple(drop)) if drop else out


@contextlib.contextmanager
def _opened(path: str, fs: Any, overview_level: int | None) -> Iterator[Any]:
    """Open a stored COG with rasterio: a local path, or through ``fs.open`` for remote tiers."""
    import rasterio

    kwargs = {} if overview_level is None else {"OVERVIEW_LEVEL": overview_level}
    if fs is None:
        with rasterio.open(path, **kwargs) as src:
            yield src
        return
    with _OPENER_LOCK, rasterio.open(path, opener=fs.open, **kwargs) as src:
        yield src


def _open(location: Location, info: Mapping[str, Any], **query: Any) -> Any:
    import dask.array as dsa
    import numpy as np
    import xarray as xr
    from dask.base import tokenize

    fs = None if location.is_local else location.fs
    paths = _targets(location, info)
    overview_level = query.get("overview_level")
    if overview_level is not None and (isinstance(overview_level, bool) or not isinstance(overview_level, int)
                                       or overview_level < 0):
        raise FormatError(f"overview_level must be a non-negative integer, got {overview_level!r}")
    with _opened(paths[0], fs, None) as src:
        full_transform, full_shape, count = src.transform, (src.height, src.width), src.count
        file_dtype, crs = src.dtypes[0], src.crs
        levels = src.overviews(1)
    transform, shape = full_transform, full_shape
    if overview_level is not None:
        if overview_level >= len(levels):
            raise FormatError(
                f"overview_level={overview_level} does not exist; this COG has {len(levels)} "
                f"overview level(s) (decimation factors {levels}); valid levels: "
                f"{list(range(len(levels)))}"
            )
        with _opened(paths[0], fs, overview_level) as src:
            transform, shape = src.transform, (src.height, src.width)
    rows, cols = (0, shape[0]), (0, shape[1])
    if query.get("bbox") is not None:
        rows, cols = _bbox_window(query["bbox"], query.get("bbox_crs"), crs, transform, shape)

    x_dim, y_dim = info["x_dim"], info["y_dim"]
    band_dim, stack_dim = info.get("band_dim"), info.get("stack_dim")
    window_shape = (count, rows[1] - rows[0], cols[1] - cols[0])
    chunks = _file_chunks(query.get("chunks", "auto"), info, window_shape, file_dtype)
    arrays = [
        dsa.from_array(
            _COGWindow(p, fs, overview_level, (rows[0], cols[0]), window_shape, file_dtype),
            chunks=chunks,
            name=f"cog-{tokenize(location.url, p, overview_level, rows, cols, chunks)}",
            lock=False,
            asarray=True,
            fancy=False,
        )
        for p in paths
    ]
    data = arrays[0] if stack_dim is None else dsa.stack(arrays, axis=0)
    if band_dim is None:
        data = data[..., 0, :, :]
    dtype = np.dtype(info["dtype"])
    if data.dtype != dtype:
        data = data.astype(dtype)
    file_dims = [d for d in (stack_dim, band_dim, y_dim, x_dim) if d is not None]

    window = {y_dim: slice(*rows), x_dim: slice(*cols)}
    coords = {
        name: var.isel(window, missing_dims="ignore")
        for name, var in _decode_coords(info, transform, shape, overview_level is not None).items()
    }
    da = xr.DataArray(data, dims=file_dims, coords=coords, attrs=_decode_mapping(info.get("attrs", {})))
    da.encoding = _decode_mapping(info.get("encoding", {}))
    if (rows, cols) != ((0, full_shape[0]), (0, full_shape[1])):
        _update_geotransform(da, transform @ transform.translation(cols[0], rows[0]))
    da = da.transpose(*info["dims"])
    stack_chunks = _stack_chunks(query.get("chunks", "auto"), stack_dim)
    if stack_chunks is not None:
        da = da.chunk({stack_dim: stack_chunks})
    if query.get("chunks", "auto") is None:
        da = da.load()
    name = _decode_value(info.get("name"))
    if info.get("type") == "Dataset":
        ds = da.to_dataset(name=name, promote_attrs=False)
        ds.attrs = _decode_mapping(info.get("dataset_attrs", {}))
        ds.encoding = _decode_mapping(info.get("dataset_encoding", {}))
        return ds
    da.name = name
    return da


def _bbox_window(
    bbox: Sequence[float], bbox_crs: Any, crs: Any, transform: Affine, shape: tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Row and column ranges of the pixels intersecting ``bbox``."""
    if len(bbox) != 4:
        raise FormatError(f"bbox must be (minx, miny, maxx, maxy), got {bbox!r}")
    minx, miny, maxx, maxy = (float(v) for v in bbox)
    if minx > maxx or miny > maxy:
        raise FormatError(f"bbox must be (minx, miny, maxx, maxy) with min <= max, got {bbox!r}")
    if bbox_crs is not None:
        from rasterio.warp import transform_bounds

        minx, miny, maxx, maxy = transform_bounds(bbox_crs, crs, minx, miny, maxx, maxy, densify_pts=21)
    inverse = ~transform
    corners = [inverse @ (x, y) for x in (minx, maxx) for y in (miny, maxy)]
    cs = [c for c, _ in corners]
    rs = [r for _, r in corners]
    eps = 1e-9
    c0 = max(0, math.floor(min(cs) + eps))
    c1 = min(shape[1], math.ceil(max(cs) - eps))
    r0 = max(0, math.floor(min(rs) + eps))
    r1 = min(shape[0], math.ceil(max(rs) - eps))
    if c0 >= c1 or r0 >= r1:
        left, top = transform @ (0, 0)
        right, bottom = transform @ (shape[1], shape[0])
        raise FormatError(
            f"bbox {tuple(bbox)} does not intersect the raster, whose bounds are "
            f"{(min(left, right), min(top, bottom), max(left, right), max(top, bottom))} in its CRS"
            + ("" if bbox_crs is None else f" (bbox_crs={bbox_crs!r})")
        )
    return (r0, r1), (c0, c1)


def _file_chunks(chunks: Any, info: Mapping[str, Any], shape: tuple[int, int, int], dtype: Any) -> Any:
    """Dask chunks of one file (band, row, col), aligned with the tiles unless given."""
    from dask.array.core import normalize_chunks

    blocksize = int(info.get("blocksize", DEFAULT_BLOCKSIZE))
    previous = (shape[0], blocksize, blocksize)
    file_dims = (info.get("band_dim"), info["y_dim"], info["x_dim"])
    if chunks is None or chunks is True or chunks == "auto" or (isinstance(chunks, Mapping) and not chunks):
        wanted: tuple[Any, ...] = (shape[0], "auto", "auto")
    elif isinstance(chunks, int) and not isinstance(chunks, bool):
        wanted = (chunks, chunks, chunks)
    elif isinstance(chunks, Mapping):
        known = {d for d in info["dims"]}
        unknown = sorted(str(d) for d in set(chunks) - known)
        if unknown:
            raise FormatError(f"chunks= names unknown dims {unknown}; dims: {list(info['dims'])}")
        wanted = tuple(
            chunks.get(dim, shape[0] if axis == 0 else "auto") if dim is not None else shape[0]
            for axis, dim in enumerate(file_dims)
        )
        wanted = tuple(-1 if w is None else w for w in wanted)
    else:
        raise FormatError(
            f"chunks must be a mapping of dim -> size, an int, 'auto' or None; got {chunks!r}"
        )
    return normalize_chunks(wanted, shape, dtype=dtype, previous_chunks=previous)


def _stack_chunks(chunks: Any, stack_dim: str | None) -> Any:
    if stack_dim is None:
        return None
    if isinstance(chunks, int) and not isinstance(chunks, bool):
        return chunks
    if isinstance(chunks, Mapping) and stack_dim in chunks:
        return -1 if chunks[stack_dim] is None else chunks[stack_dim]
    return None


def _update_geotransform(da: xr.DataArray, transform: Affine) -> None:
    name = grid_mapping_name(da)
    if name is not None and "GeoTransform" in da.coords[name].attrs:
        da.coords[name].attrs["GeoTransform"] = " ".join(str(v) for v in transform.to_gdal())


# -- object_info: coordinates, attributes, encodings -------------------------------------


def _encode_coords(da: xr.DataArray, x_dim: Any, y_dim: Any, explicit: set[str]) -> dict[str, Any]:
    coords: dict[str, Any] = {}
    for name, coord in da.coords.items():
        if not isinstance(name, str):
            raise UnsupportedObjectError(f"coordinate names must be strings to be stored, got {name!r}")
        var = coord.variable
        entry: dict[str, Any] = {
            "dims": [str(d) for d in var.dims],
            "attrs": _encode_mapping(var.attrs, f"attributes of coordinate {name!r}"),
            "encoding": _encode_encoding(var.encoding),
        }
        if name in (x_dim, y_dim) and var.dims == (name,):
            if name in explicit:
                entry["data"] = _encode_array(var.values, name)
            else:
                entry["from_transform"] = True
        elif x_dim in var.dims and y_dim in var.dims:
            raise UnsupportedObjectError(
                f"coordinate {name!r} spans both spatial dims {var.dims}; a COG cannot hold 2-D "
                "coordinates. Drop it (obj.drop_vars(...)) or save with format='zarr'"
            )
        else:
            entry["data"] = _encode_array(var.values, name)
        coords[name] = entry
    return coords


def _decode_coords(
    info: Mapping[str, Any], transform: Affine, shape: tuple[int, int], overview: bool
) -> dict[str, Any]:
    import xarray as xr

    x_dim, y_dim = info["x_dim"], info["y_dim"]
    gx, gy = _generated_coords(transform, shape[1], shape[0])
    coords: dict[str, Any] = {}
    for name, entry in info.get("coords", {}).items():
        dims = tuple(entry["dims"])
        if name in (x_dim, y_dim) and dims == (name,) and (overview or entry.get("from_transform")):
            values: Any = gx if name == x_dim else gy
        elif overview and (x_dim in dims or y_dim in dims):
            continue
        else:
            values = _decode_array(entry["data"])
        coords[name] = xr.Variable(
            dims, values, attrs=_decode_mapping(entry.get("attrs", {})),
            encoding=_decode_mapping(entry.get("encoding", {})),
        )
    return coords


def _encode_encoding(encoding: Mapping[str, Any]) -> dict[str, Any]:
    """Encoding entries that carry meaning (CF units, fill values...), JSON-encoded."""
    kept = {}
    for key, value in encoding.items():
        if key in _LAYOUT_ENCODINGS or not isinstance(key, str):
            continue
        with contextlib.suppress(UnsupportedObjectError):
            kept[key] = _encode_value(value, key)
    return kept


def _encode_mapping(mapping: Mapping[str, Any], what: str) -> dict[str, Any]:
    out = {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise UnsupportedObjectError(f"{what} must have string keys to be stored, got {key!r}")
        out[key] = _encode_value(value, f"{what}[{key!r}]")
    return out


def _decode_mapping(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _decode_value(value) for key, value in mapping.items()}


def _encode_value(value: Any, where: str) -> Any:
    """JSON form of an attribute value that keeps numpy types, tuples and non-finite floats."""
    import numpy as np

    if value is None or isinstance(value, bool | str):
        return value if not isinstance(value, np.str_) else str(value)
    if isinstance(value, int) and not isinstance(value, np.generic):
        return value
    if isinstance(value, float) and not isinstance(value, np.generic):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, np.generic):
        return {"scalar": _encode_array(np.asarray(value), where)}
    if isinstance(value, np.ndarray):
        return {"ndarray": _encode_array(value, where)}
    if isinstance(value, tuple):
        return {"tuple": [_encode_value(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode_value(v, where) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {"dict": {k: _encode_value(v, where) for k, v in value.items()}}
    raise UnsupportedObjectError(
        f"{where} is a {type(value).__name__}, which the cog format cannot record; store numbers, "
        "strings, lists, dicts or numpy values, or save with format='zarr'"
    )


def _decode_value(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    if not isinstance(value, Mapping):
        return value
    if "float" in value:
        return float(value["float"])
    if "scalar" in value:
        return _decode_array(value["scalar"])[()]
    if "ndarray" in value:
        return _decode_array(value["ndarray"])
    if "tuple" in value:
        return tuple(_decode_value(v) for v in value["tuple"])
    if "dict" in value:
        return {k: _decode_value(v) for k, v in value["dict"].items()}
    raise FormatError(f"unrecognised value in object_info: {value!r}")


def _encode_array(values: Any, where: str) -> dict[str, Any]:
    import numpy as np

    values = np.asarray(values)
    kind = values.dtype.kind
    out: dict[str, Any] = {"dtype": values.dtype.str, "shape": list(values.shape)}
    flat = values.ravel()
    if kind in "biu":
        out["data"] = flat.tolist()
    elif kind == "f":
        out["data"] = [v if math.isfinite(v) else {"float": repr(v)} for v in flat.tolist()]
    elif kind in "mM":
        out["data"] = flat.view("int64").tolist()
    elif kind == "U" or (kind == "O" and all(isinstance(v, str) for v in flat.tolist())):
        out["data"] = flat.tolist()
    else:
        raise UnsupportedObjectError(
            f"{where!s} holds {values.dtype} values, which the cog format cannot record; "
            "save with format='zarr'"
        )
    return out


def _decode_array(encoded: Mapping[str, Any]) -> np.ndarray:
    import numpy as np

    dtype = np.dtype(encoded["dtype"])
    shape = tuple(encoded["shape"])
    data = encoded["data"]
    if dtype.kind == "f":
        data = [float(v["float"]) if isinstance(v, Mapping) else v for v in data]
    if dtype.kind in "mM":
        return np.array(data, dtype="int64").view(dtype).reshape(shape)
    if dtype.kind == "O":
        array = np.empty(len(data), dtype=object)
        array[:] = data
        return array.reshape(shape)
    return np.array(data, dtype=dtype).reshape(shape)
