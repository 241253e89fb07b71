"""Reading stored COGs lazily: one dask chunk per window read, only the pixels asked for.

``bbox=`` and ``time=`` select by label, on the ``x``/``y`` pixel centres and on the
stack's datetime coordinate, before any pixel is read: the dask array is built over
the selected window of the selected files only. ``overview_level=`` reads an internal
overview instead of the full-resolution image.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memories_geo._jsonvalue import decode_mapping, decode_value
from memories_geo.crs import grid_mapping_name
from memories_geo.errors import FormatError, OptionError
from memories_geo.formats.cog.info import decode_coords, file_paths, generated_coords, recorded_values
from memories_geo.formats.cog.profile import DEFAULT_BLOCKSIZE

if TYPE_CHECKING:
    import numpy as np
    import xarray as xr
    from affine import Affine

    from memories_geo.backends.base import Location
    from memories_geo.query import OpenRequest

__all__ = ["OPEN_OPTIONS", "open_cog"]

#: Format-specific keywords of ``open``.
OPEN_OPTIONS: Mapping[str, str] = {
    "chunks": "dask chunks: a mapping of dim -> size, an int, 'auto' (default, aligned with the tiles) "
    "or None to load into memory",
    "overview_level": "read an internal overview instead of the full resolution: 0 is half the "
    "resolution, 1 a quarter...",
}

#: Serialises opens through fsspec openers: rasterio's opener registry is not thread-safe.
_OPENER_LOCK = threading.Lock()


@dataclass(frozen=True)
class _Grid:
    """The pixel grid read: the full image or one overview of it."""

    transform: Affine
    shape: tuple[int, int]
    full_shape: tuple[int, int]
    count: int
    dtype: str
    crs: Any


def open_cog(location: Location, info: Mapping[str, Any], request: OpenRequest) -> Any:
    """Open what the writer stored at ``location``, lazily, as the type that was saved.

    Raises
    ------
    OptionError
        For ``columns=`` on a DataArray (or naming another variable than the stored
        one), ``time=`` on an image with no time dimension, or an invalid
        ``overview_level=`` or ``chunks=``.
    FormatError
        For a bbox or time range that selects nothing, or an overview level the
        files do not have.
    """
    import dask.array as dsa
    import numpy as np
    import xarray as xr
    from dask.base import tokenize

    _check_columns(info, request.columns)
    options = request.options
    overview_level = _check_overview_level(options.get("overview_level"))
    chunks = options.get("chunks", "auto")
    fs = None if location.is_local else location.fs
    paths = file_paths(location, info)
    x_dim, y_dim = info["x_dim"], info["y_dim"]
    band_dim, stack_dim = info.get("band_dim"), info.get("stack_dim")

    indexers: dict[str, Any] = {}
    steps = _time_steps(info, request.time)
    if steps is not None:
        paths = [paths[i] for i in steps]
        indexers[str(stack_dim)] = steps
    grid = _read_grid(paths[0], fs, overview_level)
    coords = decode_coords(info, grid.transform, grid.shape, overview_level is not None)
    rows, cols = (0, grid.shape[0]), (0, grid.shape[1])
    box = request.bbox_in(grid.crs.to_wkt())
    if box is not None:
        rows, cols = _bbox_window(box, request, info, coords, grid)
        indexers.update({y_dim: slice(*rows), x_dim: slice(*cols)})

    window_shape = (grid.count, rows[1] - rows[0], cols[1] - cols[0])
    file_chunks = _file_chunks(chunks, info, window_shape, grid.dtype)
    arrays = [
        dsa.from_array(
            _COGWindow(p, fs, overview_level, (rows[0], cols[0]), window_shape, grid.dtype),
            chunks=file_chunks,
            name=f"cog-{tokenize(location.url, p, overview_level, rows, cols, file_chunks)}",
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

    coords = {name: var.isel(indexers, missing_dims="ignore") for name, var in coords.items()}
    da = xr.DataArray(data, dims=file_dims, coords=coords, attrs=decode_mapping(info.get("attrs", {})))
    da.encoding = decode_mapping(info.get("encoding", {}))
    if (rows, cols) != ((0, grid.full_shape[0]), (0, grid.full_shape[1])):
        _update_geotransform(da, grid.transform @ grid.transform.translation(cols[0], rows[0]))
    da = da.transpose(*info["dims"])
    stack_chunks = _stack_chunks(chunks, stack_dim)
    if stack_chunks is not None:
        da = da.chunk({stack_dim: stack_chunks})
    if chunks is None:
        da = da.load()
    name = decode_value(info.get("name"))
    if info.get("type") == "Dataset":
        ds = da.to_dataset(name=name, promote_attrs=False)
        ds.attrs = decode_mapping(info.get("dataset_attrs", {}))
        ds.encoding = decode_mapping(info.get("dataset_encoding", {}))
        return ds if request.columns is None else ds[list(request.columns)]
    da.name = name
    return da


def _check_columns(info: Mapping[str, Any], columns: tuple[str, ...] | None) -> None:
    if columns is None:
        return
    if info.get("type") != "Dataset":
        raise OptionError(
            "columns= selects data variables of a Dataset or columns of a table, and this cog "
            "entry is a single DataArray; drop columns= (bbox= and time= subset it)"
        )
    name = decode_value(info.get("name"))
    unknown = [c for c in columns if c != name]
    if unknown:
        raise OptionError(f"columns= names {unknown}, not in this Dataset; its one data variable is {name!r}")


def _check_overview_level(level: Any) -> int | None:
    if level is None:
        return None
    if isinstance(level, bool) or not isinstance(level, int) or level < 0:
        raise OptionError(f"overview_level must be a non-negative integer, got {level!r}")
    return level


def _time_steps(info: Mapping[str, Any], time: tuple[Any, Any] | None) -> list[int] | None:
    """Positions along the stack whose datetime label lies within ``time`` (inclusive)."""
    import numpy as np

    if time is None:
        return None
    stack_dim = info.get("stack_dim")
    labels = recorded_values(info, stack_dim)
    if labels is None or labels.dtype.kind != "M":
        raise OptionError(
            f"time= selects steps of a time stack, and this cog entry (dims {list(info['dims'])}) "
            "has no datetime dimension coordinate; drop time="
        )
    start, end = time
    keep = np.ones(labels.shape, dtype=bool)
    if start is not None:
        keep &= labels >= start.to_datetime64()
    if end is not None:
        keep &= labels <= end.to_datetime64()
    steps = np.flatnonzero(keep).tolist()
    if not steps:
        raise FormatError(
            f"time= {tuple(None if t is None else str(t) for t in time)} selects none of the "
            f"{labels.size} steps of {stack_dim!r}, which run from {labels.min()} to {labels.max()}"
        )
    return steps


def _bbox_window(
    box: tuple[float, float, float, float],
    request: OpenRequest,
    info: Mapping[str, Any],
    coords: Mapping[str, Any],
    grid: _Grid,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Row and column ranges of the pixels whose centre lies in ``box`` (the raster's CRS, inclusive)."""
    import numpy as np

    minx, miny, maxx, maxy = box
    gx, gy = generated_coords(grid.transform, grid.shape[1], grid.shape[0])
    x_dim, y_dim = info["x_dim"], info["y_dim"]
    x = np.asarray(coords[x_dim].values, dtype="float64") if x_dim in coords else gx
    y = np.asarray(coords[y_dim].values, dtype="float64") if y_dim in coords else gy
    cols = np.flatnonzero((x >= minx) & (x <= maxx))
    rows = np.flatnonzero((y >= miny) & (y <= maxy))
    if cols.size and rows.size:
        return (int(rows[0]), int(rows[-1]) + 1), (int(cols[0]), int(cols[-1]) + 1)
    left, top = grid.transform @ (0, 0)
    right, bottom = grid.transform @ (grid.shape[1], grid.shape[0])
    bounds = (min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    asked = f"bbox {request.bbox} ({request.bbox_crs}, {(minx, miny, maxx, maxy)} in the raster's CRS)"
    inside = minx <= bounds[2] and maxx >= bounds[0] and miny <= bounds[3] and maxy >= bounds[1]
    reason = (
        "contains no pixel centre of the raster; widen it to at least one pixel"
        if inside else "does not intersect the raster"
    )
    raise FormatError(
        f"{asked} {reason}, whose bounds are {bounds} in its CRS ({grid.crs})"
        f"{_bounds_in(bounds, grid.crs, request.bbox_crs)}"
    )


def _bounds_in(bounds: tuple[float, ...], crs: Any, target: str) -> str:
    """``", (...) in <target>"`` for an error message, or ``""`` when it cannot be computed."""
    import pyproj

    try:
        source = pyproj.CRS.from_user_input(crs.to_wkt())
        wanted = pyproj.CRS.from_user_input(target)
        if source.equals(wanted, ignore_axis_order=True):
            return ""
        minx, miny, maxx, maxy = (float(v) for v in bounds)
        transformer = pyproj.Transformer.from_crs(source, wanted, always_xy=True)
        out = transformer.transform_bounds(minx, miny, maxx, maxy)
    except pyproj.exceptions.ProjError:
        return ""
    return f", {tuple(round(float(v), 6) for v in out)} in {target}"


def _read_grid(path: str, fs: Any, overview_level: int | None) -> _Grid:
    with _opened(path, fs, None) as src:
        full_transform, full_shape, count = src.transform, (src.height, src.width), src.count
        dtype, crs, levels = src.dtypes[0], src.crs, src.overviews(1)
    if overview_level is None:
        return _Grid(full_transform, full_shape, full_shape, count, dtype, crs)
    if overview_level >= len(levels):
        raise FormatError(
            f"overview_level={overview_level} does not exist; this COG has {len(levels)} "
            f"overview level(s) (decimation factors {levels}); valid levels: "
            f"{list(range(len(levels)))}"
        )
    with _opened(path, fs, overview_level) as src:
        return _Grid(src.transform, (src.height, src.width), full_shape, count, dtype, crs)


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
        unknown = sorted(str(d) for d in set(chunks) - set(info["dims"]))
        if unknown:
            raise OptionError(f"chunks= names unknown dims {unknown}; dims: {list(info['dims'])}")
        wanted = tuple(
            chunks.get(dim, shape[0] if axis == 0 else "auto") if dim is not None else shape[0]
            for axis, dim in enumerate(file_dims)
        )
        wanted = tuple(-1 if w is None else w for w in wanted)
    else:
        raise OptionError(
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


@contextlib.contextmanager
def _opened(path: str, fs: Any, overview_level: int | None) -> Iterator[Any]:
    """Open a stored COG with rasterio: a local path, or by byte ranges on remote tiers.

    Remote files are read through the tier's own filesystem (its endpoint and
    credentials) by :class:`~memories_geo.formats.cog.remote.RangeOpener`; GDAL is told
    the folder holds no side-car files, so it asks for nothing but the COG itself.
    """
    import rasterio

    kwargs = {} if overview_level is None else {"OVERVIEW_LEVEL": overview_level}
    if fs is None:
        with rasterio.open(path, **kwargs) as src:
            yield src
        return
    from memories_geo.formats.cog.remote import RangeOpener

    with (
        _OPENER_LOCK,
        rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"),
        rasterio.open(path, opener=RangeOpener(fs), **kwargs) as src,
    ):
        yield src


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
