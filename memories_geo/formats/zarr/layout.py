"""Chunk and shard layout: how big each stored object is, and dask chunks that match it."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from memories_geo.kinds import spatial_dims, time_dim
from memories_geo.types import CompressionLevel

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "CHUNK_BYTES",
    "SHARDED_LEVELS",
    "SHARD_BYTES",
    "align_to_region",
    "apply_layout",
    "choose_chunks",
    "plane_dims",
]

#: (smallest, aimed-for, largest) uncompressed chunk size chosen when the caller gives none.
CHUNK_BYTES: tuple[int, int, int] = (1 << 20, 4 << 20, 8 << 20)

#: Compression levels whose arrays are sharded (several chunks per stored object).
SHARDED_LEVELS: frozenset[CompressionLevel] = frozenset({CompressionLevel.MAXIMUM})

#: Aimed-for uncompressed size of one shard on a sharded level.
SHARD_BYTES = 64 << 20

#: Dtype kinds whose chunks are chosen by size (strings and objects keep zarr's defaults).
_SIZED_KINDS = frozenset("biufcmM")


def choose_chunks(
    shape: Sequence[int],
    itemsize: int,
    dims: Sequence[str],
    *,
    spatial: Iterable[str] = (),
    dask_chunks: Sequence[Sequence[int]] | None = None,
) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """Zarr chunks for an array, and the dask chunks to write it with.

    Chunks hold about :data:`CHUNK_BYTES` (1-8 MiB, aiming at 4 MiB). Non-spatial
    dimensions (time, band) are cut first, so a chunk is a full spatial plane (or a
    large square tile of it) before it spans many time steps.

    With dask chunks: regular chunks already in range are kept as they are; larger
    ones are cut into divisors of themselves (each dask task writes whole zarr
    chunks); smaller or irregular ones are merged into the chosen zarr chunks. An
    array smaller than the lower bound keeps regular dask chunks as they are.

    Parameters
    ----------
    shape : sequence of int
        Array shape.
    itemsize : int
        Bytes per element.
    dims : sequence of str
        Dimension names, in order.
    spatial : iterable of str
        The dimensions tiled last among ``dims``: a raster's x/y (lon/lat), or, for
        data without spatial dims, all but the time dim (see :func:`plane_dims`).
    dask_chunks : sequence of sequence of int, optional
        The array's dask chunks, if it is dask-backed.

    Returns
    -------
    tuple
        ``(zarr_chunks, dask_chunks)``; the second item is ``None`` when the dask
        chunks (if any) can be written as they are, else the regular chunk shape to
        rechunk to.

    Examples
    --------
    >>> choose_chunks((365, 2048, 2048), 4, ("time", "y", "x"), spatial=("x", "y"))
    ((1, 1024, 1024), None)
    >>> choose_chunks((365, 256, 256), 4, ("time", "y", "x"), spatial=("x", "y"))
    ((16, 256, 256), None)
    """
    low, _, high = CHUNK_BYTES
    shape = tuple(int(n) for n in shape)
    spatial = set(spatial)
    outer = [i for i, d in enumerate(dims) if d not in spatial]
    plane = [i for i, d in enumerate(dims) if d in spatial]
    if not plane and outer:
        plane = [outer.pop()]
    if dask_chunks is None:
        return _ideal_chunks(shape, itemsize, outer, plane), None
    regular = all(len(set(c[:-1])) <= 1 and (len(c) < 2 or c[-1] <= c[0]) for c in dask_chunks)
    if not regular:
        ideal = _ideal_chunks(shape, itemsize, outer, plane)
        return ideal, ideal
    current = tuple(max(1, int(c[0])) for c in dask_chunks)
    size = itemsize * math.prod(current)
    if low <= size <= high or itemsize * math.prod(shape) <= low:
        return current, None
    if size > high:
        ideal = _ideal_chunks(current, itemsize, outer, plane)
        zarr_chunks, dask_target, rechunk = [], [], False
        for have, want in zip(current, ideal, strict=True):
            divisor = _largest_divisor(have, want)
            if 2 * divisor >= want:
                zarr_chunks.append(divisor)
                dask_target.append(have)
            else:
                zarr_chunks.append(want)
                dask_target.append(want * max(1, have // want))
                rechunk = True
        return tuple(zarr_chunks), (tuple(dask_target) if rechunk else None)
    ideal = _ideal_chunks(shape, itemsize, outer, plane)
    grown = tuple(
        min(n, max(1, want // have) * have) for n, want, have in zip(shape, ideal, current, strict=True)
    )
    return grown, grown


def _ideal_chunks(
    shape: Sequence[int], itemsize: int, outer: Sequence[int], plane: Sequence[int]
) -> tuple[int, ...]:
    """Chunk shape of about the aimed-for size: cut ``outer`` dims first, then tile ``plane``."""
    _, target, high = CHUNK_BYTES
    chunks = [max(1, int(n)) for n in shape]
    for i in outer:
        if itemsize * math.prod(chunks) <= high:
            return tuple(chunks)
        rest = itemsize * math.prod(chunks) // chunks[i]
        chunks[i] = max(1, min(chunks[i], target // rest))
    if itemsize * math.prod(chunks) <= high:
        return tuple(chunks)
    remaining = max(1, target // (itemsize * math.prod(chunks[i] for i in outer)))
    by_size = sorted(plane, key=lambda i: chunks[i])
    for n, i in enumerate(by_size):
        side = max(1, int(remaining ** (1 / (len(by_size) - n))))
        if side >= 256:
            side -= side % 256
        chunks[i] = min(chunks[i], side)
        remaining = max(1, remaining // chunks[i])
    return tuple(chunks)


def _largest_divisor(n: int, limit: int) -> int:
    """Largest divisor of ``n`` that is at most ``limit``."""
    best = 1
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            for candidate in (d, n // d):
                if best < candidate <= limit:
                    best = candidate
    return best


def _shards(
    chunks: Sequence[int], shape: Sequence[int], itemsize: int, dims: Sequence[str], spatial: Iterable[str]
) -> tuple[int, ...] | None:
    """Shard shape of about :data:`SHARD_BYTES`, a multiple of ``chunks``; ``None`` for one chunk."""
    spatial = set(spatial)
    order = [i for i, d in enumerate(dims) if d not in spatial] + [
        i for i, d in enumerate(dims) if d in spatial
    ]
    shard = [int(c) for c in chunks]
    for i in order:
        size = itemsize * math.prod(shard)
        if size >= SHARD_BYTES:
            break
        room = SHARD_BYTES // (size // shard[i])
        whole = -(-int(shape[i]) // shard[i]) * shard[i]
        shard[i] = min(whole, max(1, room // shard[i]) * shard[i])
    if tuple(shard) == tuple(chunks):
        return None
    return tuple(shard)


def plane_dims(ds: xr.Dataset) -> set[str]:
    """The dimensions a chunk tiles rather than cuts first (see :func:`choose_chunks`).

    A raster's spatial dims; for data without them (station time series, other
    arrays), every dimension but the datetime one, so a chunk holds a run of time
    steps of all stations (when that fits the chunk size) and every dimension is
    bounded by :data:`CHUNK_BYTES`.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> sorted(plane_dims(xr.Dataset({"v": (("station", "time"), np.zeros((2, 3)))})))
    ['station']
    """
    dims = spatial_dims(ds)
    if dims is not None:
        return set(dims)
    return {str(d) for d in ds.dims} - {time_dim(ds)}


def apply_layout(
    ds: xr.Dataset,
    encoding: dict[str, dict[str, Any]],
    level: CompressionLevel | str,
    *,
    stored: Any = None,
) -> xr.Dataset:
    """Fill in ``chunks`` (and ``shards``) in ``encoding``; rechunk dask data to match them.

    Arrays already in ``stored`` (the zarr group appended to) keep their layout, and
    the new data is aligned with it.
    """
    spatial = plane_dims(ds)
    sharded = CompressionLevel(level) in SHARDED_LEVELS
    rechunked: dict[str, Any] = {}
    for name, var in ds.variables.items():
        key = str(name)
        if var.ndim == 0 or name in ds.dims or var.dtype.kind not in _SIZED_KINDS:
            continue
        target: tuple[int, ...] | None = None
        if stored is not None and key in stored:
            array = stored[key]
            grid = tuple(array.shards or array.chunks)
        elif "chunks" in encoding.get(key, {}):
            enc = encoding[key]
            grid = tuple(enc.get("shards") or enc["chunks"])
        else:
            enc = encoding.setdefault(key, {})
            chunks, target = choose_chunks(
                var.shape, var.dtype.itemsize, [str(d) for d in var.dims],
                spatial=spatial, dask_chunks=var.chunks,
            )
            enc["chunks"] = chunks
            grid = chunks
            if sharded and "shards" not in enc:
                shards = _shards(chunks, var.shape, var.dtype.itemsize, [str(d) for d in var.dims], spatial)
                if shards is not None:
                    enc["shards"] = shards
                    grid, target = shards, shards
        if var.chunks is None:
            continue
        wanted = {}
        for axis, (dim, have) in enumerate(zip(var.dims, var.chunks, strict=True)):
            step = grid[axis]
            if target is not None and target[axis] != have[0]:
                wanted[dim] = target[axis]
            elif any(c % step for c in have[:-1]):
                wanted[dim] = step
        if wanted:
            rechunked[key] = var.chunk(wanted)
    if not rechunked:
        return ds
    coords = {k: v for k, v in rechunked.items() if k in ds.coords}
    data = {k: v for k, v in rechunked.items() if k not in ds.coords}
    return ds.assign_coords(coords).assign(data)



def align_to_region(ds: xr.Dataset, group: Any, slices: Mapping[str, slice]) -> xr.Dataset:
    """Rechunk dask data so each dask chunk covers whole stored objects of the region."""
    changed: dict[str, Any] = {}
    for name, var in ds.variables.items():
        if var.chunks is None:
            continue
        array = group[str(name)]
        grid = tuple(array.shards or array.chunks)
        dims = tuple(array.metadata.dimension_names or ())
        wanted: dict[Any, tuple[int, ...]] = {}
        for dim, have in zip(var.dims, var.chunks, strict=True):
            step = grid[dims.index(dim)]
            offset = slices[str(dim)].start if str(dim) in slices else 0
            size = sum(have)
            first = min(size, (step - offset % step) % step or step)
            sizes = [first] + [step] * ((size - first) // step)
            if sum(sizes) < size:
                sizes.append(size - sum(sizes))
            if tuple(sizes) != tuple(have):
                wanted[dim] = tuple(sizes)
        if wanted:
            changed[str(name)] = var.chunk(wanted)
    if not changed:
        return ds
    coords = {k: v for k, v in changed.items() if k in ds.coords}
    data = {k: v for k, v in changed.items() if k not in ds.coords}
    return ds.assign_coords(coords).assign(data)

