"""Copy-on-write versions: an append or region write carries the previous version's files.

Files the write replaces entirely are not carried; files it rewrites in part and every
metadata document are real copies; every other file is shared: a hard link on a local
filesystem (versions are immutable, and zarr replaces files by rename, never in place),
a reference in the manifest on another store of the same tier (nothing copied), else a
streamed copy.
"""

from __future__ import annotations

import itertools
import os
import posixpath
import shutil
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from memories_geo.errors import FormatError
from memories_geo.formats.zarr.shared import recorded_manifest
from memories_geo.integrity import Manifest
from memories_geo.storage_policy import needs_restore

if TYPE_CHECKING:
    import xarray as xr

    from memories_geo.backends.base import Location

__all__ = ["append_targets", "copy_version", "region_targets", "resolve_region"]


def _chunk_index_ranges(array: Any, bounds: Mapping[int, tuple[int, int]]) -> list[range]:
    """Per axis, the stored-object (shard or chunk) indices overlapping ``bounds`` (all if absent)."""
    grid = tuple(array.shards or array.chunks)
    ranges = []
    for axis, (size, step) in enumerate(zip(array.shape, grid, strict=True)):
        if axis in bounds:
            start, stop = bounds[axis]
            ranges.append(range(start // step, -(-stop // step)) if stop > start else range(0))
        else:
            ranges.append(range(-(-size // step)))
    return ranges


def _object_keys(array: Any, ranges: Sequence[range]) -> set[str]:
    """Store keys (relative to the group) of the stored objects in the index ``ranges``."""
    return {
        f"{array.path}/{array.metadata.encode_chunk_key(coords)}"
        for coords in itertools.product(*ranges)
    }


def append_targets(group: Any, ds: xr.Dataset, append_dim: str) -> tuple[set[str], set[str]]:
    """Files an append rewrites in place (copied) and files it replaces entirely (not carried)."""
    rewritten: set[str] = set()
    replaced: set[str] = set()
    for name, array in group.arrays():
        dims = tuple(array.metadata.dimension_names or ())
        if name not in ds.variables:
            continue
        if append_dim not in dims:
            replaced |= _object_keys(array, _chunk_index_ranges(array, {}))
            continue
        axis = dims.index(append_dim)
        size = array.shape[axis]
        step = tuple(array.shards or array.chunks)[axis]
        if size % step:
            rewritten |= _object_keys(array, _chunk_index_ranges(array, {axis: (size, size + 1)}))
    return rewritten, replaced


def region_targets(group: Any, ds: xr.Dataset, slices: Mapping[str, slice]) -> tuple[set[str], set[str]]:
    """Files a region write changes in part (copied) and covers entirely (not carried)."""
    rewritten: set[str] = set()
    replaced: set[str] = set()
    for name in ds.variables:
        array = group[str(name)]
        dims = tuple(array.metadata.dimension_names or ())
        grid = tuple(array.shards or array.chunks)
        bounds = {dims.index(d): (s.start, s.stop) for d, s in slices.items() if d in dims}
        touched = _object_keys(array, _chunk_index_ranges(array, bounds))
        inner: dict[int, tuple[int, int]] = {}
        for axis, (start, stop) in bounds.items():
            step = grid[axis]
            end = stop if stop == array.shape[axis] else stop // step * step
            inner[axis] = (-(-start // step) * step, end)
        full_ranges = [
            range(-(-inner[a][0] // grid[a]), -(-inner[a][1] // grid[a])) if a in inner else r
            for a, r in enumerate(_chunk_index_ranges(array, {}))
        ]
        covered = _object_keys(array, full_ranges)
        replaced |= covered
        rewritten |= touched - covered
    return rewritten, replaced


def resolve_region(ds: xr.Dataset, stored: Any, region: Mapping[str, Any] | str) -> dict[str, slice]:
    """Integer slices of the stored version that ``ds`` overwrites."""
    import numpy as np

    stored_ds = stored if hasattr(stored, "data_vars") else stored.to_dataset(name="_")
    if region == "auto":
        region = {}
        for dim in ds.dims:
            if dim in ds.indexes and dim in stored_ds.indexes:
                region[str(dim)] = "auto"
    if not isinstance(region, Mapping) or not region:
        raise FormatError(
            f"region= must map dimension names to slices or 'auto', or be 'auto'; got {region!r}"
        )
    slices: dict[str, slice] = {}
    for dim, spec in region.items():
        if dim not in ds.dims or dim not in stored_ds.dims:
            raise FormatError(f"region dimension {dim!r} is not a dimension of both the data and the store")
        size = stored_ds.sizes[dim]
        if spec == "auto":
            positions = stored_ds.indexes[dim].get_indexer(ds.indexes[dim])
            if (positions < 0).any() or not (np.diff(positions) == 1).all():
                raise FormatError(
                    f"region {dim!r}='auto': the coordinates of {dim!r} are not a contiguous "
                    "run of the stored ones"
                )
            spec = slice(int(positions[0]), int(positions[-1]) + 1)
        if not isinstance(spec, slice) or spec.step not in (None, 1):
            raise FormatError(f"region[{dim!r}] must be a slice with step 1 or 'auto', got {spec!r}")
        start, stop, _ = spec.indices(size)
        if stop - start != ds.sizes[dim]:
            raise FormatError(
                f"region[{dim!r}] covers {stop - start} positions but the data has {ds.sizes[dim]}"
            )
        slices[str(dim)] = slice(start, stop)
    return slices



def copy_version(
    source: Location, target: Location, *, rewritten: set[str], skipped: set[str], share: bool = False,
) -> Manifest:
    """Carry the files of ``source`` into the new version ``target``; return what is shared.

    Files in ``skipped`` are about to be replaced entirely and are not carried. Files
    in ``rewritten`` and every metadata document (``zarr.json``) are real copies.
    Every other file is shared: a hard link on a local filesystem (versions are
    immutable, and zarr replaces files by rename, never in place). With ``share=True``
    (readers that honour :attr:`~memories_geo.integrity.Manifest.shared`, such as
    Zarr's), on another store of the same tier it is not copied at all: the new
    version's manifest lists it
    with the folder holding it (the source's, or the one the source shares it from),
    read from there (:mod:`memories_geo.formats.zarr.shared`), unless the tier's
    storage class is an archive one (each version is restored on its own there, so
    files are copied server-side). Without ``share``, a server-side copy on the same
    store; between stores, a streamed copy.

    Returns
    -------
    Manifest
        The shared files (digests from the source's manifest, and
        :attr:`~memories_geo.integrity.Manifest.shared`); empty when nothing is shared.
    """
    src_root = source.full_path.rstrip("/")
    dst_root = target.full_path.rstrip("/")
    manifest = recorded_manifest(source)
    if manifest is None:
        relative = [
            posixpath.relpath(p, src_root)
            for p, detail in source.fs.find(src_root, detail=True).items()
            if detail["type"] == "file"
        ]
        manifest = Manifest()
    else:
        relative = sorted(manifest.files)
    carried = [r for r in relative if r not in skipped]
    copied = [r for r in carried if r in rewritten or posixpath.basename(r) == "zarr.json"]
    if source.is_local and target.is_local:
        for rel in carried:
            src, dst = manifest.path_of(src_root, rel), os.path.join(dst_root, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if rel in copied:
                shutil.copyfile(src, dst)
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        return Manifest()
    same_tier = source.backend is target.backend or (
        source.backend.url_for("") == target.backend.url_for("")
        and source.storage_options == target.storage_options
    )
    archived = needs_restore(getattr(target.backend, "storage_class", None))
    if share and same_tier and manifest.files and not archived:
        owner = posixpath.basename(src_root)
        shared = {r: manifest.shared.get(r, owner) for r in carried if r not in copied}
        if copied:
            source.fs.copy([manifest.path_of(src_root, r) for r in copied],
                           [posixpath.join(dst_root, r) for r in copied])
        return Manifest({r: manifest.files[r] for r in shared}, shared=shared)
    same_store = source.fs is target.fs or (
        source.fs.protocol == target.fs.protocol and source.storage_options == target.storage_options
    )
    if same_store and carried:
        source.fs.copy(
            [manifest.path_of(src_root, r) for r in carried],
            [posixpath.join(dst_root, r) for r in carried],
        )
        return Manifest()
    for rel in carried:
        data = source.fs.cat_file(manifest.path_of(src_root, rel))
        target.fs.pipe_file(posixpath.join(dst_root, rel), data)
    return Manifest()
