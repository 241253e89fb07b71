"""Running a write plan: in-memory images at once, dask-backed ones streamed chunk by chunk.

In-memory (numpy) steps are written into a MEM dataset, overviews built there, and the
COG driver copies it. Dask-backed steps are streamed: each chunk is written into a
temporary, uncompressed, tiled GeoTIFF, overviews are built from that complete file,
and the COG driver copies it to its final layout, so peak memory stays at a few chunks
plus GDAL's block cache (:data:`~memories_geo.formats.cog.profile.GDAL_CACHE_MB`).
Remote tiers get each COG staged locally and uploaded with ``fs.put_file``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from memories_geo.errors import FormatError
from memories_geo.formats.cog.plan import Plan, Step
from memories_geo.formats.cog.profile import GDAL_CACHE_MB
from memories_geo.integrity import FileDigest, Manifest, hash_bytes
from memories_geo.progress import compute as compute_with_progress

if TYPE_CHECKING:
    import numpy as np

    from memories_geo.backends.base import Location

__all__ = ["run_plan"]


def run_plan(plan: Plan, location: Location, *, compute: bool = True) -> Any:
    """Write every file of ``plan`` at ``location``.

    Returns
    -------
    dask.delayed.Delayed or None
        With ``compute=False`` and dask-backed data, the chunk writes and COG
        translations still to run; otherwise ``None`` (everything is written).
    """
    job = _Job(plan.steps, plan.creation_options, plan.factors, plan.resampling, location)
    if not plan.lazy:
        job.run_eager(plan.temp_dir)
        return None
    pending = job.delayed(plan.temp_dir)
    if compute:
        nbytes = sum(int(getattr(step.data, "nbytes", 0)) for step in plan.steps)
        compute_with_progress(pending, nbytes=nbytes, desc=f"save {location.path.rsplit('/@v/', 1)[0]}")
        return None
    return pending


@dataclass
class _Job:
    """Produce every COG of a plan, eagerly (numpy) or as a dask graph (dask)."""

    steps: list[Step]
    creation_options: dict[str, Any]
    factors: list[int]
    resampling: str
    location: Location

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
        """Dask graph: one task that streams the chunks into local GeoTIFFs and publishes each COG.

        The task makes its staging folder where it runs (a worker's local directory on a
        cluster), has the chunks computed (by the cluster's workers, gathered a few at a
        time), writes each as a window, builds the overviews, translates to a COG,
        uploads it and returns the :class:`~memories_geo.integrity.Manifest` of what it
        stored, hashed from its local copy.
        """
        import dask
        import dask.array as dsa

        sources = _Sources([dsa.asarray(step.data) for step in self.steps])
        without_data = replace(self, steps=[replace(step, data=None) for step in self.steps])
        return dask.delayed(_stream_and_publish, pure=False)(without_data, sources, temp_dir)

    def stream_and_publish(self, sources: list[Any], temp_dir: str | None) -> Manifest:
        """Stream each source's chunks into a staged GeoTIFF, then publish it as a COG (:meth:`delayed`)."""
        import rasterio

        staging = tempfile.mkdtemp(prefix="memories_geo-cog-", dir=_local_dir(temp_dir))
        files: dict[str, FileDigest] = {}
        try:
            for i, (step, source) in enumerate(zip(self.steps, sources, strict=True)):
                path = os.path.join(staging, f"stream{i}.tif")
                _create_stream_file(path, step, self.creation_options["BLOCKSIZE"])
                writer = _WindowWriter(path)
                for key, block in _computed_blocks(source):
                    writer[key] = block
                with self._env():
                    with rasterio.open(path, "r+") as src:
                        self._build_overviews(src)
                    with rasterio.open(path) as src:
                        relative, digest = self._publish(src, step.target, staging, i)
                files[relative] = digest
                os.remove(path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return Manifest(files)

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

    def _publish(self, src: Any, target: str, staging: str | None, index: int) -> tuple[str, FileDigest]:
        """Copy ``src`` to ``target`` as a COG (through a local file for remote tiers).

        Returns the target's path relative to the version and its digest.
        """
        import rasterio.shutil

        if self.location.is_local:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            rasterio.shutil.copy(src, target, driver="COG", **self.creation_options)
            return self._relative(target), _file_digest(target)
        if staging is None:
            raise FormatError("a remote tier needs a local staging directory")
        local = os.path.join(staging, f"cog{index}.tif")
        rasterio.shutil.copy(src, local, driver="COG", **self.creation_options)
        digest = _file_digest(local)
        fs = self.location.fs
        parent = posixpath.dirname(target)
        if parent:
            fs.makedirs(parent, exist_ok=True)
        fs.put_file(local, target)
        os.remove(local)
        return self._relative(target), digest

    def _relative(self, target: str) -> str:
        root = self.location.full_path.rstrip("/")
        return posixpath.basename(root) if target.rstrip("/") == root else target[len(root) + 1:]


def _stream_and_publish(job: _Job, sources: _Sources, temp_dir: str | None) -> Manifest:
    return job.stream_and_publish(sources.arrays, temp_dir)


class _Sources:
    """Dask arrays handed to the streaming task as they are (dask does not compute them first)."""

    def __init__(self, arrays: list[Any]) -> None:
        self.arrays = arrays


def _local_dir(temp_dir: str | None) -> str | None:
    """``temp_dir`` if it exists here, else the dask worker's local directory, else the system's."""
    if temp_dir is not None and os.path.isdir(temp_dir):
        return temp_dir
    try:
        from distributed import get_worker

        return str(get_worker().local_directory)
    except (ImportError, ValueError):
        return None


def _computed_blocks(source: Any) -> Iterator[tuple[tuple[slice, ...], Any]]:
    """``(window, values)`` of each chunk of ``source``, a few chunks in memory at a time.

    On a dask worker the chunks are computed by the whole cluster (through a
    ``worker_client``), elsewhere by dask's default scheduler.
    """
    import numpy as np

    windows = list(itertools.product(*[_slices(c) for c in source.chunks]))
    blocks = source.to_delayed().ravel().tolist()
    client = _worker_client()
    if client is None:
        import dask

        batch = max(2, os.cpu_count() or 2)
        for start in range(0, len(blocks), batch):
            computed = dask.compute(*blocks[start:start + batch])
            yield from zip(windows[start:start + batch], (np.asarray(b) for b in computed), strict=True)
        return
    with client as cluster:
        from distributed import as_completed

        batch = max(2, 2 * sum(cluster.nthreads().values()))
        for start in range(0, len(blocks), batch):
            futures = cluster.compute(blocks[start:start + batch])
            index = {f.key: start + i for i, f in enumerate(futures)}
            for future, value in as_completed(futures, with_results=True):
                yield windows[index[future.key]], np.asarray(value)
                future.release()


def _worker_client() -> Any:
    try:
        from distributed import get_worker, worker_client

        get_worker()
    except (ImportError, ValueError):
        return None
    return worker_client()


def _slices(chunks: tuple[int, ...]) -> list[slice]:
    bounds = list(itertools.accumulate(chunks, initial=0))
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


def _file_digest(path: str) -> FileDigest:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        return FileDigest(size, hash_bytes(iter(lambda: f.read(8 * 1024 * 1024), b"")))


def _apply_metadata(dst: Any, step: Step) -> None:
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


def _create_stream_file(path: str, step: Step, blocksize: int) -> None:
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
