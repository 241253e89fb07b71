"""dask-geopandas frames as a directory of GeoParquet files, one per partition, written by the workers.

Each partition is written by the task that computes it: into the worker's local
staging folder, hashed there, then uploaded to the tier (or written straight into a
local tier). The task returns the file's digest and the partition's footprint; the
last task merges them into the version's manifest and footprint, which the client
commits. Files are named ``part.00000.parquet``, ``part.00001.parquet``... so that
reading the directory returns the rows in partition order, as they were saved.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from memories_geo.crs import crs_to_string
from memories_geo.errors import OptionError, UnsupportedObjectError
from memories_geo.footprint import Footprint, vector_footprint
from memories_geo.formats._vector import as_frame
from memories_geo.formats.base import WriteOptions, WriteResult
from memories_geo.formats.geoparquet.checks import check_arrow_columns
from memories_geo.integrity import FileDigest, Manifest, hash_bytes

if TYPE_CHECKING:
    from memories_geo.backends.base import Location

__all__ = ["is_dask_frame", "write_partitions"]

#: Partition file names: ``part.{index:05d}.parquet`` (wider when there are more partitions).
PART_NAME = "part.{index:0{width}d}.parquet"


def is_dask_frame(obj: Any) -> bool:
    """Whether ``obj`` is a dask-geopandas GeoDataFrame or GeoSeries (never imports dask).

    Examples
    --------
    >>> is_dask_frame([1])
    False
    """
    return type(obj).__module__.startswith("dask_geopandas") and hasattr(obj, "to_delayed")


def write_partitions(
    obj: Any, location: Location, options: WriteOptions, *, codec: Mapping[str, Any] | None,
    extra: Mapping[str, Any],
) -> WriteResult:
    """Write a dask-geopandas frame as one GeoParquet file per partition (always a pending write).

    Parameters
    ----------
    obj : dask_geopandas.GeoDataFrame or dask_geopandas.GeoSeries
        The frame; it must have a CRS (or ``options.crs``).
    location : Location
        The version's location (a directory).
    options : WriteOptions
        ``compression`` and ``crs`` are used; ``mode="a"`` is refused.
    codec, extra
        Parquet codec and layout keywords, as for one file (no ``sort=``/``partition_cols=``).

    Returns
    -------
    WriteResult
        With ``pending``: the partition writes, whose result is the final
        :class:`~memories_geo.formats.base.WriteResult` (manifest and footprint).

    Raises
    ------
    UnsupportedObjectError
        For an append (``mode="a"``) or a frame without CRS.
    OptionError
        For ``sort="hilbert"`` or ``partition_cols=``.
    """
    import dask

    if options.mode == "a":
        raise UnsupportedObjectError(
            "appending (mode='a') a dask-geopandas frame is not supported: save it as a new "
            "version (mode='w'), or append its computed GeoDataFrame"
        )
    for name, refused in (("sort", "hilbert"), ("partition_cols", None)):
        if name in extra and (refused is None or extra[name] == refused):
            raise OptionError(
                f"{name}={extra[name]!r} is not available for a dask-geopandas frame: each partition is "
                "one file, written by a worker in its original row order; sort it with "
                "dask_geopandas' spatial_shuffle() before saving, or compute it first"
            )
    if options.crs is not None and obj.crs is None:
        obj = obj.set_crs(options.crs)
    if obj.crs is None:
        raise UnsupportedObjectError(
            "this dask-geopandas frame has no CRS; set one (frame.set_crs('EPSG:4326')) or pass crs="
        )
    _, info = as_frame(obj._meta, "geoparquet")
    check_arrow_columns(as_frame(obj._meta, "geoparquet")[0])
    info = {**info, "partitions": obj.npartitions}
    settings = {"sort": "none", "geometry_encoding": "WKB", **{k: v for k, v in extra.items() if k != "sort"}}
    width = max(5, len(str(obj.npartitions - 1)))
    parts = [
        dask.delayed(_write_part, pure=False)(
            part, location, PART_NAME.format(index=i, width=width), options.compression, codec, settings,
        )
        for i, part in enumerate(obj.to_delayed())
    ]
    pending = dask.delayed(_combine, pure=False)(parts, info)
    return WriteResult(manifest=Manifest(), footprint=Footprint(crs=crs_to_string(obj.crs)), object_info=info,
                       pending=pending)


def _write_part(
    part: Any, location: Location, name: str, compression: Any, codec: Mapping[str, Any] | None,
    settings: Mapping[str, Any],
) -> tuple[Manifest, Footprint]:
    """Write one partition (a worker task); return its file's digest and its footprint."""
    from memories_geo.formats.geoparquet.write import write_geoparquet

    gdf, _ = as_frame(part, "geoparquet")
    root = location.full_path.rstrip("/")
    if location.is_local:
        os.makedirs(root, exist_ok=True)
        target = os.path.join(root, name)
        write_geoparquet(gdf, target, compression=compression, codec=codec, **settings)
        return Manifest({name: _file_digest(target)}), vector_footprint(gdf)
    staging = tempfile.mkdtemp(prefix="memories_geo-parquet-", dir=_local_dir())
    try:
        local = os.path.join(staging, name)
        write_geoparquet(gdf, local, compression=compression, codec=codec, **settings)
        digest = _file_digest(local)
        location.fs.put_file(local, posixpath.join(root, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Manifest({name: digest}), vector_footprint(gdf)


def _combine(parts: Sequence[tuple[Manifest, Footprint]], info: Mapping[str, Any]) -> WriteResult:
    """The written partitions as one result: merged manifest, union of the footprints."""
    files: dict[str, FileDigest] = {}
    for manifest, _ in parts:
        files.update(manifest.files)
    return WriteResult(manifest=Manifest(files), footprint=_union([f for _, f in parts]), object_info=info)


def _union(footprints: Sequence[Footprint]) -> Footprint:
    def box(boxes: list[Any]) -> Any:
        if not boxes:
            return None
        return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                max(b[3] for b in boxes))

    starts = [f.time_start for f in footprints if f.time_start is not None]
    ends = [f.time_end for f in footprints if f.time_end is not None]
    first = footprints[0]
    return Footprint(
        bbox=box([f.bbox for f in footprints if f.bbox]),
        native_bbox=box([f.native_bbox for f in footprints if f.native_bbox]),
        crs=first.crs,
        time_start=min(starts) if starts else None,
        time_end=max(ends) if ends else None,
        variables=first.variables,
        shape={"rows": sum(int(f.shape.get("rows", 0)) for f in footprints)},
    )


def _local_dir() -> str | None:
    """The dask worker's local directory when running on one, else the system's temporary folder."""
    try:
        from distributed import get_worker

        return str(get_worker().local_directory)
    except (ImportError, ValueError):
        return None


def _file_digest(path: str) -> FileDigest:
    with open(path, "rb") as f:
        return FileDigest(os.path.getsize(path), hash_bytes(iter(lambda: f.read(8 * 1024 * 1024), b"")))
