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
        """Dask graph: stream chunks into temporary GeoTIFFs, then translate each to a COG."""
        import dask
        import dask.array as dsa

        staging = tempfile.mkdtemp(prefix="memories_geo-cog-", dir=temp_dir)
        targets: list[Any] = []
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
