"""Parquet for time series: a directory of files partitioned by time, sorted by (time, station).

A version is a Hive-partitioned directory (``year=2024/part-<token>.parquet``, and any
other partition columns asked for) plus ``_common_metadata`` (the Arrow schema and a file
index: rows, time range, partition values, bbox, size and digest of each file). Inside a
file, rows are sorted by time then station, so row-group statistics prune ``time=``
reads; ``time=`` and ``bbox=`` first drop whole files from the index, ``filters=`` prune
partitions by their values. GeoDataFrames keep WKB geometry with GeoParquet 1.1 ``geo``
metadata and a ``bbox`` covering column.

``mode="a"`` makes a new version from the previous version's files (shared, not
rewritten) plus files for the new rows; ``on_duplicate=`` decides what happens to rows
whose time (and station) is already stored.

Modules: :mod:`.options` (keywords and defaults), :mod:`.frame` (frames to Arrow and
back, ``object_info``), :mod:`.layout` (partitions, sort order, files, the file index),
:mod:`.write` (new versions), :mod:`.read` (pruning and reading), :mod:`.append`.
See ``docs/formats-timeseries.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from memories_geo.backends.base import Capability
from memories_geo.errors import UnsupportedObjectError
from memories_geo.formats.base import FileFormat, WriteOptions, WriteResult
from memories_geo.formats.parquet.options import (
    CODECS,
    DEFAULT_PARTITION_COLS,
    LEVEL_CODECS,
    ON_DUPLICATE,
    OPEN_OPTIONS,
    ROW_GROUP_SIZE,
    WRITE_OPTIONS,
    write_settings,
)
from memories_geo.types import Kind

if TYPE_CHECKING:
    from memories_geo.backends.base import Location
    from memories_geo.query import OpenRequest

__all__ = [
    "CODECS",
    "DEFAULT_PARTITION_COLS",
    "LEVEL_CODECS",
    "ON_DUPLICATE",
    "ROW_GROUP_SIZE",
    "ParquetFormat",
]


def _is_frame(obj: Any) -> bool:
    import pandas as pd

    return isinstance(obj, pd.DataFrame)


class ParquetFormat(FileFormat):
    """Time series (DataFrame or GeoDataFrame with a time axis) as partitioned Parquet.

    Save keywords (:attr:`write_options`) are those of the original
    ``ParquetStorage(partition_cols=["year", "variable"], compression="snappy",
    row_group_size=10000, page_size=8192)`` plus ``time_column``, ``station_column``,
    ``compression_level`` and ``on_duplicate``. Without ``compression=`` the tier's level
    picks the codec (:data:`LEVEL_CODECS`).

    Examples
    --------
    >>> import memories_geo as mg
    >>> mem = mg.Memory("/tmp/mg-doc")  # doctest: +SKIP
    >>> mem.save(obs, "stations/obs", partition_cols=["year", "variable"])  # doctest: +SKIP
    >>> mem.open("stations/obs", time="2024-03", filters=[("station", "=", "s042")])  # doctest: +SKIP
    >>> mem.save(today, "stations/obs", mode="a", on_duplicate="skip")  # doctest: +SKIP
    """

    name: ClassVar[str] = "parquet"
    kinds: ClassVar[frozenset[Kind]] = frozenset({Kind.TIMESERIES})
    extension: ClassVar[str] = ".parquet"
    default_for: ClassVar[frozenset[tuple[Kind, Capability]]] = frozenset(
        {(Kind.TIMESERIES, Capability.FILES)}
    )
    write_options: ClassVar[Mapping[str, str]] = WRITE_OPTIONS
    open_options: ClassVar[Mapping[str, str]] = OPEN_OPTIONS

    def default_priority(self, obj: Any) -> int:
        """10 for a pandas DataFrame or GeoDataFrame, 0 for anything else (xarray goes to Zarr)."""
        return 10 if _is_frame(obj) else 0

    def can_store(self, obj: Any) -> bool:
        """Whether ``obj`` is a DataFrame or GeoDataFrame with a time axis."""
        from memories_geo.kinds import time_column

        return _is_frame(obj) and time_column(obj) is not None

    def write(self, obj: Any, location: Location, options: WriteOptions) -> WriteResult:
        """Write ``obj`` as a new version at ``location`` (or extend ``options.previous`` with ``mode="a"``).

        Parameters
        ----------
        obj : pandas.DataFrame or geopandas.GeoDataFrame
            A frame with a datetime column or a DatetimeIndex.
        location : Location
            Where the version goes (it does not exist yet).
        options : WriteOptions
            Mode, compression level, CRS (assigned to a GeoDataFrame without one), the
            previous version for ``mode="a"``, and the keywords of :attr:`write_options`.
            A pandas frame is in memory, so the files are written at once even with
            ``compute=False`` (only the commit is deferred then).

        Returns
        -------
        WriteResult
            Manifest (digests taken while writing), footprint and ``object_info``.

        Raises
        ------
        UnsupportedObjectError
            For an object that is not a time-series frame, a GeoDataFrame without CRS,
            or rows that do not fit the stored series in an append.
        OptionError
            For keywords with values outside the accepted ones.
        DuplicateTimesError
            For appended rows already stored, with ``on_duplicate="error"``.
        """
        if not self.can_store(obj):
            raise UnsupportedObjectError(
                f"the parquet format stores pandas DataFrames and GeoDataFrames with a datetime "
                f"column or DatetimeIndex, not this {type(obj).__name__}"
            )
        settings = write_settings(options.extra, options.compression)
        from memories_geo.formats.parquet.frame import is_geo

        if is_geo(obj):
            from memories_geo.formats._vector import with_crs

            obj = with_crs(obj, options.crs, kind="GeoDataFrame")

        if options.mode == "a" and options.previous is not None:
            from memories_geo.formats.parquet.append import append

            footprint, info, manifest = append(obj, location, options.previous, settings)
        else:
            from memories_geo.formats.parquet.write import write_new

            footprint, info, manifest = write_new(obj, location, settings)
        return WriteResult(manifest=manifest, footprint=footprint, object_info=info)

    def open(self, location: Location, object_info: Mapping[str, Any], request: OpenRequest) -> Any:
        """Read the version back as the DataFrame or GeoDataFrame that was saved.

        ``request.time`` and ``request.bbox`` drop files from the index and prune row
        groups; ``request.columns`` selects columns (the time column and the geometry
        are kept); ``request.options["filters"]`` are pyarrow filters. See
        :func:`memories_geo.formats.parquet.read.read_timeseries`.
        """
        from memories_geo.formats.parquet.read import read_timeseries

        return read_timeseries(location.full_path, object_info, request, filesystem=location.fs,
                               reads=location.reads)
