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
attributes as tags. What GeoTIFF cannot say exactly is recorded in ``object_info``,
so :meth:`COGFormat.open` gives back an object identical to the one saved.

Modules: :mod:`~memories_geo.formats.cog.profile` (GDAL creation options per
compression level), :mod:`~memories_geo.formats.cog.plan` (what to write),
:mod:`~memories_geo.formats.cog.info` (``object_info``),
:mod:`~memories_geo.formats.cog.writer` (in-memory and dask streaming writes) and
:mod:`~memories_geo.formats.cog.reader` (lazy window reads).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from memories_geo.backends.base import Capability
from memories_geo.formats.base import FileFormat, WriteOptions, WriteResult
from memories_geo.formats.cog.plan import overview_factors, plan_write
from memories_geo.formats.cog.profile import (
    COG_PROFILES,
    DEFAULT_BLOCKSIZE,
    GDAL_CACHE_MB,
    cog_creation_options,
)
from memories_geo.formats.cog.reader import OPEN_OPTIONS, open_cog
from memories_geo.formats.cog.writer import run_plan
from memories_geo.integrity import Manifest
from memories_geo.types import Kind

if TYPE_CHECKING:
    from memories_geo.backends.base import Location
    from memories_geo.query import OpenRequest

__all__ = [
    "COG_PROFILES",
    "DEFAULT_BLOCKSIZE",
    "GDAL_CACHE_MB",
    "COGFormat",
    "cog_creation_options",
    "overview_factors",
]


class COGFormat(FileFormat):
    """Cloud-optimized GeoTIFF, for single images and stacks of images.

    Write options (keywords of ``save``): ``blocksize=`` (tile size, multiple of
    16, default 512), ``overview_resampling=`` (default ``"nearest"`` for
    integers and booleans, ``"average"`` for floats), ``temp_dir=`` (where
    dask-backed arrays are staged, default the system temporary directory),
    ``compression=`` (a GDAL codec such as ``"DEFLATE"`` instead of the tier
    level's), ``compression_level=``, ``predictor=`` (1, 2 or 3) and
    ``overviews=False`` (no overviews).

    Open options (keywords of ``open``, besides ``bbox=``, ``bbox_crs=`` and
    ``time=``): ``chunks=`` and ``overview_level=``, see :attr:`open_options`.

    Examples
    --------
    >>> import memories_geo as mg
    >>> mem = mg.Memory("/tmp/mg-doc")  # doctest: +SKIP
    >>> mem.save(dem, "dem/alps", format="cog", compression="high")  # doctest: +SKIP
    >>> mem.open("dem/alps", bbox=(10.1, 46.0, 10.3, 46.2))  # doctest: +SKIP
    """

    name: ClassVar[str] = "cog"
    kinds: ClassVar[frozenset[Kind]] = frozenset({Kind.RASTER})
    extension: ClassVar[str] = ".tif"
    open_options: ClassVar[Mapping[str, str]] = OPEN_OPTIONS
    default_for: ClassVar[frozenset[tuple[Kind, Capability]]] = frozenset({(Kind.RASTER, Capability.FILES)})
    write_options: ClassVar[Mapping[str, str]] = {
        "blocksize": "internal tile size in pixels (a multiple of 16, default 512)",
        "overview_resampling": "GDAL resampling for the overviews (default: by dtype)",
        "temp_dir": "local folder for staging files written to a remote tier",
        "compression": "GDAL codec instead of the tier level's: DEFLATE, ZSTD, LZW, LZMA, PACKBITS or NONE",
        "compression_level": "LEVEL of the codec (DEFLATE 1-12, ZSTD 1-22, LZMA 0-9)",
        "predictor": "1 (none), 2 (horizontal) or 3 (floating point); default by data type",
        "overviews": "build internal overviews (default True)",
    }

    def default_priority(self, obj: Any) -> int:
        """2 for a single image (a DataArray on ``(y, x)`` or ``(band, y, x)``), else 0.

        Above the priority 1 of a format that is the default for every raster (Zarr),
        so single images on file tiers are stored as COGs and the rest as Zarr.
        """
        import xarray as xr

        if not isinstance(obj, xr.DataArray):
            return 0
        return 2 if obj.ndim == 2 or (obj.ndim == 3 and obj.dims[0] == "band") else 0

    def can_store(self, obj: Any) -> bool:
        """Whether ``obj`` is an xarray DataArray or Dataset (its layout is checked on write)."""
        import xarray as xr

        return isinstance(obj, xr.DataArray | xr.Dataset)

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
        plan = plan_write(obj, location, options)
        pending = run_plan(plan, location, compute=options.compute)
        if pending is not None:
            return WriteResult(manifest=Manifest(), footprint=plan.footprint, object_info=plan.info,
                               pending=pending)
        return WriteResult(manifest=self.manifest(location), footprint=plan.footprint,
                           object_info=plan.info)

    def open(self, location: Location, object_info: Mapping[str, Any], request: OpenRequest) -> Any:
        """Open a stored version lazily (dask-backed), as the type that was saved.

        Parameters
        ----------
        location : Location
            Where the version is stored.
        object_info : mapping
            What :meth:`write` returned as ``object_info``.
        request : OpenRequest
            ``bbox`` (pixels whose centre lies inside it, in ``bbox_crs``,
            EPSG:4326 by default), ``time`` (steps of a time stack by label),
            ``columns`` (only for a stored Dataset: its one variable) and the
            options ``chunks`` and ``overview_level`` (:attr:`open_options`).

        Returns
        -------
        xarray.DataArray or xarray.Dataset
            Identical to the object saved when the request does not reduce it.

        Raises
        ------
        OptionError
            For ``columns=`` on a DataArray, ``time=`` on an image without a time
            dimension, or an invalid ``chunks=`` or ``overview_level=``.
        FormatError
            For a bbox or time range selecting nothing, or an overview level
            that does not exist.
        """
        return open_cog(location, object_info, request)
