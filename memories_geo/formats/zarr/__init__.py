"""Zarr v3 stores for any xarray object (Dataset, DataArray, DataTree), read back lazily.

Rasters, station time series (CF discrete sampling geometry, station x time) and plain
arrays alike; only rasters need a CRS.

A version is one Zarr v3 group with consolidated metadata. The package has one module
per job:

- :mod:`~memories_geo.formats.zarr.cf`: CF attributes and GeoZarr metadata, made
  storable on write and restored exactly on open;
- :mod:`~memories_geo.formats.zarr.encoding`: codecs per compression level, encodings;
- :mod:`~memories_geo.formats.zarr.layout`: chunk and shard shapes;
- :mod:`~memories_geo.formats.zarr.writer`: new versions;
- :mod:`~memories_geo.formats.zarr.append` and
  :mod:`~memories_geo.formats.zarr.copy_on_write`: appends and region writes that
  share unchanged chunk files with the previous version;
- :mod:`~memories_geo.formats.zarr.reader` and :mod:`~memories_geo.formats.zarr.select`:
  lazy opening, bbox / time / data-variable selection;
- :mod:`~memories_geo.formats.zarr.store`: stores and the one ``to_zarr`` call.

See ``docs/formats-zarr.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from memories_geo.backends.base import Capability
from memories_geo.errors import FormatError, UnsupportedObjectError
from memories_geo.formats.base import FileFormat, WriteOptions, WriteResult
from memories_geo.formats.zarr.cf import DATAARRAY_VARIABLE, INFO_ATTR, INFO_VERSION
from memories_geo.formats.zarr.encoding import (
    STORAGE_OPTIONS,
    VALID_ENCODINGS,
    ZARR_CODECS,
    storage_layout,
    zarr_codec,
)
from memories_geo.formats.zarr.layout import CHUNK_BYTES, SHARD_BYTES, SHARDED_LEVELS, choose_chunks
from memories_geo.integrity import DigestLog, FileDigest, build_manifest
from memories_geo.types import Kind

if TYPE_CHECKING:
    from memories_geo.backends.base import Location
    from memories_geo.query import OpenRequest

__all__ = [
    "CHUNK_BYTES",
    "DATAARRAY_VARIABLE",
    "INFO_ATTR",
    "INFO_VERSION",
    "SHARDED_LEVELS",
    "SHARD_BYTES",
    "VALID_ENCODINGS",
    "ZARR_CODECS",
    "ZarrFormat",
    "choose_chunks",
    "zarr_codec",
]

#: ``to_zarr`` arguments this format sets itself.
_RESERVED_WRITE_KWARGS = frozenset(
    {"mode", "zarr_format", "consolidated", "append_dim", "encoding", "compute", "store"}
)


class ZarrFormat(FileFormat):
    """Zarr v3 with consolidated metadata, for xarray Dataset, DataArray and DataTree.

    The default on file tiers for rasters (but single images, which go to COG), for
    xarray time series (station x time) and for every other xarray object (the
    ``array`` kind). Writes keep dask chunks as they are; opening is lazy
    (dask-backed) and gives back the type that was saved, identical to it (values,
    dtypes, attributes, encodings that carry meaning, coordinates, CRS). ``open``
    honours ``bbox=`` (on x/y, or on the latitude/longitude coordinates of stations),
    ``time=`` and ``columns=`` (data variables) by selecting on the stored
    coordinates, lazily.

    ``chunks=``, ``compression=`` (``"zstd"``, ``"gzip"``, ``"blosc"``, ``"lz4"``,
    ``"none"``), ``compression_level=`` and ``dimension_separator=`` (``"/"`` or
    ``"."``) set the layout of every array of a new version (``encoding=`` still wins
    per variable; an append keeps the stored layout).

    Examples
    --------
    >>> import memories_geo as mg
    >>> mem = mg.Memory("/tmp/mg-doc")  # doctest: +SKIP
    >>> mem.save(ds, "era5/t2m", format="zarr", compression="high")  # doctest: +SKIP
    >>> mem.open("era5/t2m", bbox=(5, 45, 10, 48), time="2024-03", columns=["t2m"])  # doctest: +SKIP
    """

    name: ClassVar[str] = "zarr"
    kinds: ClassVar[frozenset[Kind]] = frozenset({Kind.RASTER, Kind.TIMESERIES, Kind.ARRAY})
    extension: ClassVar[str] = ".zarr"
    default_for: ClassVar[frozenset[tuple[Kind, Capability]]] = frozenset(
        {
            (Kind.RASTER, Capability.FILES),
            (Kind.TIMESERIES, Capability.FILES),
            (Kind.ARRAY, Capability.FILES),
        }
    )
    write_options: ClassVar[Mapping[str, str]] = {
        "region": "with mode='a': a dict of dim -> slice (or 'auto') to overwrite in a new version",
        "safe_chunks": "as in to_zarr: refuse writes where dask chunks straddle Zarr chunks",
        "write_empty_chunks": "as in to_zarr: store chunks holding only the fill value",
        **STORAGE_OPTIONS,
    }
    open_options: ClassVar[Mapping[str, str]] = {
        "chunks": "dask chunks, as in xarray.open_zarr (default {}: the stored chunks or shards; "
        "None: no dask, lazily indexed arrays)",
    }

    def default_priority(self, obj: Any) -> int:
        """1 for an xarray object, 0 for anything else (time-series tables go to Parquet).

        Below the 2 COG claims for a single image, so those stay COGs.
        """
        return int(self.can_store(obj))

    def can_store(self, obj: Any) -> bool:
        """Whether ``obj`` is an xarray Dataset, DataArray or DataTree."""
        import xarray as xr

        return isinstance(obj, xr.Dataset | xr.DataArray | xr.DataTree)

    def write(self, obj: Any, location: Location, options: WriteOptions) -> WriteResult:
        """Write ``obj`` as a new version at ``location``.

        Parameters
        ----------
        obj : xarray.Dataset, DataArray or DataTree
            What to store.
        location : Location
            Where the version goes (it does not exist yet).
        options : WriteOptions
            Mode, compression level, encoding, append dimension and CRS. With
            ``compute=False`` the metadata is written now and the chunk writes are
            returned as ``WriteResult.pending`` (a ``dask.delayed`` object), with the
            files shared with the previous version as its manifest. Format
            keyword ``region=`` (a mapping of dimension to slice, or ``"auto"``)
            with ``mode="a"`` overwrites that region of the previous version; other
            format keywords go to ``to_zarr``.

        Returns
        -------
        WriteResult
            Manifest, footprint and ``object_info``. The manifest takes the digests of
            what was uploaded as it was uploaded (object stores reached through
            obstore) and hashes the rest; an append or region write on an object store
            lists the files it shares with the previous version
            (:attr:`~memories_geo.integrity.Manifest.shared`), which it did not copy.

        Raises
        ------
        UnsupportedObjectError
            For an object that is not an xarray Dataset, DataArray or DataTree, or an
            append this format cannot do.
        FormatError
            For ``to_zarr`` keywords the format sets itself, or ``region=`` without
            ``mode="a"``.
        """
        import xarray as xr

        from memories_geo.formats.zarr.append import append, write_region
        from memories_geo.formats.zarr.writer import write_new, write_tree

        if not self.can_store(obj):
            raise UnsupportedObjectError(
                f"the zarr format stores xarray Dataset, DataArray or DataTree objects, "
                f"not a {type(obj).__name__}; tables go to 'parquet' (time series) or "
                "'geoparquet' (vector layers)"
            )
        extra = dict(options.extra)
        reserved = sorted(_RESERVED_WRITE_KWARGS & set(extra))
        if reserved:
            raise FormatError(
                f"the zarr format sets {reserved} itself; pass mode=, append_dim= and "
                "encoding= to save() instead"
            )
        layout = storage_layout(extra)
        region = extra.pop("region", None)
        if region is not None and options.mode != "a":
            raise FormatError("region= overwrites part of the current version; pass mode='a' with it")
        if options.mode == "a" and isinstance(obj, xr.DataTree):
            raise UnsupportedObjectError(
                "appending (mode='a') is supported for Dataset and DataArray, not DataTree; "
                "save the combined tree with mode='w'"
            )
        digests: dict[str, FileDigest] = {}
        if options.mode == "a" and region is not None:
            written = write_region(obj, location, options, region, extra, digests=digests)
        elif options.mode == "a":
            written = append(obj, location, options, extra, digests=digests)
        elif isinstance(obj, xr.DataTree):
            written = write_tree(obj, location, options, extra, layout, digests=digests)
        else:
            written = write_new(obj, location, options, extra, layout, digests=digests)
        if not options.compute and written.pending is not None:
            return WriteResult(manifest=written.carried, footprint=written.footprint,
                               object_info=written.info, pending=written.pending, taken=DigestLog(digests))
        manifest = build_manifest(location.fs, location.full_path, known=digests, shared=written.carried)
        return WriteResult(manifest=manifest, footprint=written.footprint, object_info=written.info)

    def open(self, location: Location, object_info: Mapping[str, Any], request: OpenRequest) -> Any:
        """Open a stored version lazily (dask-backed), as the type that was saved.

        Parameters
        ----------
        location : Location
            Where the version is stored.
        object_info : mapping
            What :meth:`write` returned as ``object_info``.
        request : OpenRequest
            ``bbox`` / ``bbox_crs`` (pixels whose centre, the stored x/y coordinate,
            lies in the box; for data without x/y, the stations whose
            latitude/longitude coordinates lie in it), ``time`` (steps of the datetime
            dimension inside the inclusive range), ``columns`` (data variables of a
            Dataset) and the option ``chunks`` (see :attr:`open_options`).

        Returns
        -------
        xarray.Dataset, xarray.DataArray or xarray.DataTree
            Identical to the object saved, or to its selected part.

        Raises
        ------
        OptionError
            ``columns=`` on a DataArray or DataTree; ``bbox=`` on data without a
            spatial extent (neither x/y nor latitude/longitude coordinates), ``time=``
            on data without a datetime dimension.
        FormatError
            For a column that is not stored, or a bbox or time range that selects
            nothing (the message names the data's bounds or time range).
        """
        from memories_geo.formats.zarr.reader import open_version

        return open_version(location, object_info, request)
