"""The common ``open`` request on an opened Dataset: bbox, time and data variables, lazily.

Selection is by label on the stored index coordinates: along x and y, the pixels whose
centre lies inside the bbox (inclusive; ascending and descending axes alike), as
``ds.sel(x=slice(minx, maxx))`` would pick them; along the datetime dimension, every
step inside the inclusive time range. Data without x/y (a CF station time series)
is selected by its latitude/longitude coordinates, read as EPSG:4326: the stations (or,
for 2-D coordinates, the smallest window of cells) whose position lies inside the bbox.
Only integer indexers are applied (``isel``), so dask-backed or lazily indexed data
stays lazy and nothing outside the window is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from memories_geo.crs import crs_to_string, xarray_crs
from memories_geo.errors import FormatError, OptionError
from memories_geo.footprint import latlon_bounds, wrap_longitudes
from memories_geo.kinds import latlon_coords, spatial_dims

if TYPE_CHECKING:
    import numpy as np
    import xarray as xr

    from memories_geo.query import OpenRequest

__all__ = ["select_dataset", "select_tree", "select_variables"]

#: What selects along one dimension: a slice, or an integer array of positions.
Indexer = Any


class _Window(NamedTuple):
    """What a bbox selects: indexers (``None`` if nothing), the data's bounds and CRS."""

    indexers: dict[str, Indexer] | None
    bounds: tuple[float, float, float, float]
    crs: Any
    dims: tuple[str, ...]
    unit: str


def select_dataset(ds: xr.Dataset, request: OpenRequest, what: str) -> xr.Dataset:
    """``ds`` restricted to ``request.bbox`` and ``request.time`` (lazily).

    Parameters
    ----------
    ds : xarray.Dataset
        The opened (lazy) data.
    request : OpenRequest
        What the caller asked for.
    what : str
        What ``ds`` is (``"this DataArray"``), for error messages.

    Raises
    ------
    OptionError
        ``bbox=`` on data without x/y index coordinates or latitude/longitude
        coordinates (no spatial extent), or ``time=`` on data without a datetime
        dimension.
    FormatError
        When nothing lies in the bbox (naming the data's bounds) or the time range,
        or the data has no CRS to interpret the bbox in.
    """
    indexers: dict[str, Indexer] = {}
    if request.bbox is not None:
        window = _bbox_window(ds, request, what)
        if window.indexers is None:
            raise FormatError(_bbox_miss(request, what, window))
        indexers.update(window.indexers)
    if request.time is not None:
        steps, dim, covered = _time_window(ds, request, what)
        if steps is None:
            raise FormatError(f"no step of {what} lies in {_time_text(request)}; it has {covered}")
        indexers[dim] = steps
    return ds.isel(indexers) if indexers else ds


def select_tree(tree: xr.DataTree, request: OpenRequest) -> xr.DataTree:
    """Every node of ``tree`` restricted to ``request.bbox`` and ``request.time`` (lazily).

    Nodes without x/y or latitude/longitude coordinates (or without a datetime
    dimension) are left whole; a node outside the bbox (or the time range) becomes
    empty along x/y or its stations (or time). Coordinates
    inherited from parent nodes are selected with their parent.

    Raises
    ------
    OptionError
        When no node has x/y index coordinates or latitude/longitude coordinates
        (``bbox=``) or a datetime dimension (``time=``).
    FormatError
        When the bbox selects no pixel of any node, or no node has a time step in the range.
    """
    import xarray as xr

    selected: dict[str, xr.Dataset] = {}
    misses: list[str] = []
    time_misses: list[str] = []
    spatial = hit = timed = time_hit = False
    for node in tree.subtree:
        full = node.to_dataset(inherit=True)
        indexers: dict[str, Indexer] = {}
        if request.bbox is not None and _has_extent(full):
            spatial = True
            window = _bbox_window(full, request, f"node {node.path!r}")
            if window.indexers is None:
                misses.append(f"{node.path}: {window.bounds} in {crs_to_string(window.crs)}")
                indexers.update({dim: slice(0, 0) for dim in window.dims})
            else:
                hit = True
                indexers.update(window.indexers)
        if request.time is not None and _time_dim(full) is not None:
            timed = True
            steps, dim, covered = _time_window(full, request, f"node {node.path!r}")
            if steps is None:
                time_misses.append(f"{node.path}: {covered}")
                steps = slice(0, 0)
            else:
                time_hit = True
            indexers[dim] = steps
        own = node.to_dataset(inherit=False)
        own_indexers = {d: i for d, i in indexers.items() if d in own.dims}
        selected[node.path] = own.isel(own_indexers) if own_indexers else own
    if request.bbox is not None and not spatial:
        raise OptionError(
            "bbox= selects on x/y or latitude/longitude coordinates; no node of this DataTree "
            "has them, so it has no spatial extent"
        )
    if request.bbox is not None and not hit:
        raise FormatError(
            f"bbox {tuple(request.bbox)} ({request.bbox_crs}) selects no pixel of any node of this "
            f"DataTree; node bounds: {'; '.join(misses)}"
        )
    if request.time is not None and not timed:
        raise OptionError("time= selects along a datetime dimension; no node of this DataTree has one")
    if request.time is not None and not time_hit:
        raise FormatError(
            f"no step of any node of this DataTree lies in {_time_text(request)}; {'; '.join(time_misses)}"
        )
    return xr.DataTree.from_dict(selected, name=tree.name)


def select_variables(ds: xr.Dataset, columns: tuple[str, ...]) -> xr.Dataset:
    """The data variables ``columns`` of ``ds`` (with their coordinates).

    Raises
    ------
    FormatError
        For a name that is not a data variable.
    """
    missing = [n for n in columns if n not in ds.data_vars]
    if missing:
        stored = [str(v) for v in ds.data_vars]
        raise FormatError(f"columns {missing} are not stored; data variables: {stored}")
    return ds[list(columns)]


def _xy(ds: xr.Dataset) -> tuple[str, str] | None:
    dims = spatial_dims(ds)
    if dims is None or not all(d in ds.indexes for d in dims):
        return None
    return dims


def _has_extent(ds: xr.Dataset) -> bool:
    return _xy(ds) is not None or latlon_coords(ds) is not None


def _bbox_window(ds: xr.Dataset, request: OpenRequest, what: str) -> _Window:
    """The pixels centred in the bbox, or the points inside it for data without x/y."""
    dims = _xy(ds)
    if dims is None:
        names = latlon_coords(ds)
        if names is None:
            raise OptionError(
                f"bbox= selects on x/y or latitude/longitude coordinates; {what} has neither, so "
                f"it has no spatial extent (dims: {tuple(map(str, ds.dims))}); open it without bbox="
            )
        return _point_window(ds, request, names)
    crs = xarray_crs(ds)
    if crs is None:
        raise FormatError(f"bbox= needs the CRS of the data, and {what} has none")
    box = request.bbox_in(crs)
    assert box is not None
    x_dim, y_dim = dims
    x_sel, x_bounds = _axis_window(ds.indexes[x_dim].values, box[0], box[2])
    y_sel, y_bounds = _axis_window(ds.indexes[y_dim].values, box[1], box[3])
    bounds = (x_bounds[0], y_bounds[0], x_bounds[1], y_bounds[1])
    window = None if x_sel is None or y_sel is None else {x_dim: x_sel, y_dim: y_sel}
    return _Window(window, bounds, crs, (x_dim, y_dim), "pixel centre")


def _point_window(ds: xr.Dataset, request: OpenRequest, names: tuple[str, str]) -> _Window:
    """Positions whose longitude/latitude (EPSG:4326) lie in the bbox, along each of their dims."""
    import numpy as np
    import pyproj

    variables = [ds[name].variable for name in names]
    dims = tuple(dict.fromkeys(str(d) for v in variables for d in v.dims))
    sizes = {d: ds.sizes[d] for d in dims}
    lon, lat = (v.set_dims(sizes).transpose(*dims) for v in variables)
    lons = wrap_longitudes(np.asarray(lon.values, dtype="float64"))
    lats = np.asarray(lat.values, dtype="float64")
    crs = pyproj.CRS.from_epsg(4326)
    box = request.bbox_in(crs)
    assert box is not None
    with np.errstate(invalid="ignore"):
        inside = (lons >= box[0]) & (lons <= box[2]) & (lats >= box[1]) & (lats <= box[3])
    bounds = latlon_bounds(lons, lats) or (float("nan"),) * 4
    indexers: dict[str, Indexer] | None = {}
    for axis, dim in enumerate(dims):
        others = tuple(i for i in range(len(dims)) if i != axis)
        positions = _positions(np.asarray(inside.any(axis=others) if others else inside))
        if positions is None:
            indexers = None
            break
        assert indexers is not None
        indexers[dim] = positions
    return _Window(indexers, bounds, crs, dims, "point")


def _axis_window(values: np.ndarray, low: float, high: float) -> tuple[Indexer | None, tuple[float, float]]:
    """Positions of the centres ``values`` inside ``[low, high]``, and the axis bounds (cell edges)."""
    import numpy as np

    centres = np.asarray(values, dtype="float64")
    if centres.size < 2:
        edges = (float(centres.min()), float(centres.max())) if centres.size else (float("nan"),) * 2
    else:
        first, last = centres[1] - centres[0], centres[-1] - centres[-2]
        ends = (centres[0] - first / 2, centres[-1] + last / 2)
        edges = (float(min(ends)), float(max(ends)))
    return _positions((centres >= low) & (centres <= high)), edges


def _bbox_miss(request: OpenRequest, what: str, window: _Window) -> str:
    """Why a bbox selected nothing, with the data's bounds (also in the bbox's CRS)."""
    import pyproj

    bounds, crs = window.bounds, window.crs
    box = request.bbox_in(crs)
    assert box is not None
    assert request.bbox is not None
    overlaps = box[0] <= bounds[2] and box[2] >= bounds[0] and box[1] <= bounds[3] and box[3] >= bounds[1]
    reason = f"contains no {window.unit} of" if overlaps else "does not intersect"
    message = (
        f"bbox {tuple(request.bbox)} ({request.bbox_crs}) {reason} {what}, whose bounds are "
        f"{bounds} in {crs_to_string(crs)}"
    )
    asked = pyproj.CRS.from_user_input(request.bbox_crs)
    if not asked.equals(crs, ignore_axis_order=True):
        try:
            minx, miny, maxx, maxy = (float(v) for v in bounds)
            transformer = pyproj.Transformer.from_crs(crs, asked, always_xy=True)
            out = transformer.transform_bounds(minx, miny, maxx, maxy)
            message += f", {tuple(round(float(v), 6) for v in out)} in {request.bbox_crs}"
        except pyproj.exceptions.ProjError:
            pass
    return message + (f"; widen it to at least one {window.unit.split()[0]}" if overlaps else "")


def _positions(mask: np.ndarray) -> Indexer | None:
    """A slice when the ``True`` positions are contiguous, else the positions; ``None`` if none."""
    import numpy as np

    found = np.flatnonzero(mask)
    if found.size == 0:
        return None
    if found[-1] - found[0] + 1 == found.size:
        return slice(int(found[0]), int(found[-1]) + 1)
    return found


def _time_dim(ds: xr.Dataset) -> str | None:
    """The datetime dimension (``time`` first) of ``ds``, or ``None``."""
    import pandas as pd

    dims = [str(d) for d in ds.dims if d in ds.indexes and isinstance(ds.indexes[d], pd.DatetimeIndex)]
    if not dims:
        return None
    return "time" if "time" in dims else dims[0]


def _time_window(ds: xr.Dataset, request: OpenRequest, what: str) -> tuple[Indexer | None, str, str]:
    """Positions inside ``request.time`` (``None`` if none), the datetime dimension and its range."""
    import numpy as np

    dim = _time_dim(ds)
    if dim is None:
        raise OptionError(
            f"time= selects along a datetime dimension; {what} has none "
            f"(dims: {tuple(map(str, ds.dims))})"
        )
    index = ds.indexes[dim]
    assert request.time is not None
    start, end = request.time
    mask = np.ones(len(index), dtype=bool)
    if start is not None:
        mask &= np.asarray(index >= start)
    if end is not None:
        mask &= np.asarray(index <= end)
    covered = f"{dim!r} from {index.min()} to {index.max()}" if len(index) else f"{dim!r} empty"
    return _positions(mask), dim, covered


def _time_text(request: OpenRequest) -> str:
    assert request.time is not None
    start, end = (str(t) if t is not None else "open" for t in request.time)
    return f"time ({start}, {end})"
