"""TimescaleDB: time series as hypertables (or natively partitioned tables) behind a stable view.

The default format for time series (a DataFrame or GeoDataFrame with a datetime column
or index) on a PostgreSQL tier. Each version is a view over immutable segment tables
(one per load: an append writes only its new rows, and reads its predecessor's segments
as they are), registered with the backend's tables of record and shown by the view named
after the key, swapped on publish, as with ``postgis`` (whose loader, types, checksum,
filters and views it reuses). When the database has TimescaleDB (or can create it), a
segment is a hypertable, compressed with ``segmentby`` the station column, and ``open(resample=...)``
uses ``time_bucket``; otherwise it falls back, warning once, to native range
partitioning by time and ``date_bin``, with the same keywords and results. One job per
module:

- :mod:`~memories_geo.formats.timescaledb.options`: save and open keywords, intervals;
- :mod:`~memories_geo.formats.timescaledb.detect`: the extension, and the fallback warning;
- :mod:`~memories_geo.formats.timescaledb.layout`: time axis and station columns of a frame;
- :mod:`~memories_geo.formats.timescaledb.partitions`: the native fallback's partitions;
- :mod:`~memories_geo.formats.timescaledb.hypertable`: hypertable, compression, continuous aggregates;
- :mod:`~memories_geo.formats.timescaledb.buckets`: ``time_bucket`` / ``date_bin`` and aggregates;
- :mod:`~memories_geo.formats.timescaledb.load`: writing a version (a segment and a view);
- :mod:`~memories_geo.formats.timescaledb.append`: appends, rows already stored;
- :mod:`~memories_geo.formats.timescaledb.checksums`: the checksum by row-id range, per segment;
- :mod:`~memories_geo.formats.timescaledb.query`: reading rows or buckets;
- :mod:`~memories_geo.formats.timescaledb.footprint`: what the catalog records.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from memories_geo.backends.base import Capability, require
from memories_geo.errors import FormatError, OptionError
from memories_geo.formats.postgis import views
from memories_geo.formats.timescaledb import hypertable
from memories_geo.formats.timescaledb.detect import TimescaleDBFallbackWarning, partitioning_for
from memories_geo.formats.timescaledb.options import (
    AGGREGATES,
    OPEN_OPTIONS,
    WRITE_OPTIONS,
    Settings,
    parse_interval,
    settings_from,
)
from memories_geo.integrity import Manifest, compare_manifests
from memories_geo.types import Kind

if TYPE_CHECKING:
    from memories_geo.backends.base import Backend, Location
    from memories_geo.backends.postgres import PostgresBackend
    from memories_geo.formats.base import WriteOptions, WriteResult
    from memories_geo.query import OpenRequest

__all__ = ["AGGREGATES", "TimescaleDBFallbackWarning", "TimescaleDBFormat"]


def _key_of(location: Location) -> str:
    """The key of the version at ``location`` (its path is ``{key}/@v/{version_id}``)."""
    return location.path.split("/@v/", 1)[0]


def _backend(location_or_backend: Any) -> PostgresBackend:
    """The PostgreSQL backend of a location (or a backend), refusing any other."""
    backend = getattr(location_or_backend, "backend", location_or_backend)
    require(backend, Capability.POSTGRESQL,
            "format 'timescaledb' (tables in PostgreSQL; or choose 'parquet')")
    if getattr(backend, "dialect", None) != "postgresql":
        raise FormatError(
            f"format 'timescaledb' stores tables in PostgreSQL; {backend.url_for('')!r} holds "
            f"{getattr(backend, 'dialect', 'other')} tables. Save on a postgresql:// tier or choose "
            "format='parquet'."
        )
    return backend


def _read_engine(backend: PostgresBackend, asked: Any) -> str:
    """``engine=`` of ``open``: ADBC when installed and the pool may hold more than one connection."""
    if asked is None:
        several = backend.pool.max_size > 1
        return "adbc" if several and importlib.util.find_spec("adbc_driver_postgresql") else "psycopg"
    if asked not in ("adbc", "psycopg"):
        raise OptionError(f"engine must be one of ['adbc', 'psycopg'], got {asked!r}")
    return str(asked)


class TimescaleDBFormat:
    """DataFrames and GeoDataFrames with a time axis as hypertables: a version is a view over segments.

    Saving (keywords of ``save``, as the original ``TimescaleDBStorage``):

    - ``chunk_time_interval="1 month"``: chunk width of the hypertable, or partition
      width of the native fallback (calendar months there; TimescaleDB counts 30 days);
    - ``compression_enabled=True``: compress every chunk after loading (TimescaleDB);
    - ``segmentby``: the station column(s), by default the first column named
      ``station``, ``station_id``, ``id``, ``site`` or ``sensor``; they segment
      compression, group ``resample=``, and with the time identify a row for
      ``on_duplicate``;
    - ``orderby``: compression order (default the time column descending);
    - ``time_column``: the time axis (default: as the kind was detected);
    - ``continuous_aggregates=["1 hour", "1 day"]``: per version, mean/min/max/sum/count
      of the numeric columns per bucket and station (materialized views natively);
    - ``on_duplicate="error" | "skip" | "replace"``: with ``mode="a"``, rows whose
      (station, time) is already stored: ``error`` (default) refuses the append
      (``DuplicateTimesError``), ``skip`` leaves them out, ``replace`` puts their values in
      the stored rows' places;
    - ``partitioning="auto" | "timescaledb" | "native"``; ``engine="psycopg" | "adbc"``.

    An append (``mode="a"``) makes a new version holding the previous rows then the new
    ones, with the previous version's settings unless given again: it writes one segment
    of the new rows, the new version's view reading the previous version's segments
    too. With ``on_duplicate="replace"``, continuous aggregates, changed column types, or
    32 segments already, it copies the previous rows on the server into its one segment
    instead.

    Opening: ``time=`` (pushed down: partitions and chunks outside are pruned),
    ``columns=`` (the time column and geometry are kept), ``bbox=`` (rows with
    geometry), ``where=`` (as ``postgis``), ``engine=``, and ``resample="1D"`` with
    ``agg="mean" | "min" | "max" | "sum" | "count" | "first" | "last"``.

    Examples
    --------
    >>> import memories_geo as mg
    >>> cfg = mg.StorageConfig.from_dict({"tiers": {"warm": {"url": "postgresql://me@db/obs"}}})
    >>> mem = mg.Memory(cfg)  # doctest: +SKIP
    >>> mem.save(df, "stations/obs", tier="warm", chunk_time_interval="7 days")  # doctest: +SKIP
    >>> mem.open("stations/obs", time="2024-03", resample="1D", agg="max")  # doctest: +SKIP
    """

    name: ClassVar[str] = "timescaledb"
    kinds: ClassVar[frozenset[Kind]] = frozenset({Kind.TIMESERIES})
    extension: ClassVar[str] = ""
    open_options: ClassVar[Mapping[str, str]] = OPEN_OPTIONS
    write_options: ClassVar[Mapping[str, str]] = WRITE_OPTIONS
    default_for: ClassVar[frozenset[tuple[Kind, Capability]]] = frozenset(
        {(Kind.TIMESERIES, Capability.POSTGRESQL)}
    )

    def default_priority(self, obj: Any) -> int:
        """1 for a DataFrame or GeoDataFrame: the default time-series format on database tiers."""
        return int(self.can_store(obj))

    def can_store(self, obj: Any) -> bool:
        """Whether ``obj`` is a pandas DataFrame (GeoDataFrames included)."""
        import pandas as pd

        return isinstance(obj, pd.DataFrame)

    def write(self, obj: Any, location: Location, options: WriteOptions) -> WriteResult:
        """Load ``obj`` into a new segment (hypertable or partitioned) and version view at ``location``.

        Parameters
        ----------
        obj : pandas.DataFrame or geopandas.GeoDataFrame
            The time series (not modified).
        location : Location
            A PostgreSQL tier and the logical path of the new version.
        options : WriteOptions
            ``mode="a"`` appends to the version at ``options.previous`` (its segments are
            read, not copied, when possible);
            ``options.extra`` holds the keywords of the class docstring.

        Returns
        -------
        WriteResult
            Manifest (one pseudo-file per row-id range), footprint and ``object_info``
            (its ``tables``: the version's segments; ``segments``: their ranges and digests).

        Raises
        ------
        OptionError
            For an unknown keyword or a bad value (the message lists the accepted ones).
        UnsupportedObjectError
            For a frame without time axis, missing times, columns PostgreSQL cannot
            hold, or appended rows that do not fit.
        DuplicateTimesError
            With ``on_duplicate="error"``, for appended rows already stored.
        FormatError
            When the key's view name is held by another relation (before writing).
        TierUnavailableError
            For ``partitioning="timescaledb"`` without the extension, or a
            GeoDataFrame on a database without PostGIS.
        """
        from memories_geo.formats.base import WriteResult
        from memories_geo.formats.timescaledb.layout import resolve
        from memories_geo.formats.timescaledb.load import write_version

        backend = _backend(location)
        previous = None
        if options.mode == "a" and options.previous is not None:
            previous = backend.lookup(options.previous.path)
            if previous is None:
                raise FormatError(f"cannot append: the stored table of {options.previous.url} is missing")
        before = None
        if previous is not None and "settings" in previous.info:
            before = Settings.from_recorded(previous.info["settings"])
        settings = settings_from(options.extra, before)
        series = resolve(obj, options.crs, settings)
        views.prepare(backend, postgis=series.base["type"] == "GeoDataFrame")
        views.check_free(backend, _key_of(location))
        partitioning = partitioning_for(backend, settings.partitioning)
        info, manifest, footprint = write_version(backend, location.path, series, previous, partitioning)
        return WriteResult(manifest=manifest, footprint=footprint, object_info=info)

    def publish(self, location: Location, key: str, *, is_current: Callable[[], bool] | None = None) -> bool:
        """Point the view named after ``key`` at the table of ``location``, atomically.

        See the ``postgis`` format's :meth:`~memories_geo.formats.postgis.PostGISFormat.publish`;
        the views of both formats share one registry, so a key may change format.

        Examples
        --------
        >>> fmt.publish(location, "stations/obs", is_current=lambda: True)  # doctest: +SKIP
        True
        """
        backend = _backend(location)
        found = backend.lookup(location.path)
        geometry = found is not None and found.info.get("type") == "GeoDataFrame"
        return views.publish(backend, location.path, key, is_current=is_current, postgis=geometry)

    def is_published(self, location: Location, key: str) -> bool:
        """Whether the view of ``key`` exists and reads the table of ``location``."""
        return views.is_published(_backend(location), location.path, key)

    def published_keys(self, backend: Backend) -> list[str]:
        """Keys whose view exists on ``backend`` (``mg.recover()`` drops those the catalog lacks)."""
        return views.published_keys(_backend(backend))

    def unpublish(self, backend: Backend, key: str) -> None:
        """Drop the view of ``key`` (nothing happens when there is none)."""
        views.unpublish(_backend(backend), key)

    def open(self, location: Location, object_info: Mapping[str, Any], request: OpenRequest) -> Any:
        """Read a stored version back as the type saved, filtered (or resampled) on the server.

        Parameters
        ----------
        location : Location
            The PostgreSQL tier and the version's logical path.
        object_info : mapping
            What :meth:`write` recorded.
        request : OpenRequest
            ``time``, ``columns``, ``bbox`` / ``bbox_crs`` and the options ``resample``,
            ``agg``, ``where``, ``engine`` (see the class docstring).

        Returns
        -------
        pandas.DataFrame or geopandas.GeoDataFrame
            The rows in stored order; with ``resample=``, a DataFrame of one row per
            station and bucket.

        Raises
        ------
        OptionError
            For a bad ``resample``, ``agg`` or ``engine``, ``agg`` without
            ``resample``, or ``bbox=`` on a table without geometry.
        """
        from memories_geo.formats.timescaledb import query

        backend = _backend(location)
        options = request.options
        engine = _read_engine(backend, options.get("engine"))
        table = backend.table_for(location.path)
        if table is None:
            raise FormatError(f"the table of {location.url} is missing")
        if options.get("resample") is None:
            if options.get("agg") is not None:
                raise OptionError("agg= needs resample= (the bucket width, e.g. resample='1D')")
            return query.read(backend, table, object_info, request, engine)
        width = parse_interval(options["resample"], "resample")
        agg = options.get("agg") or "mean"
        if agg not in AGGREGATES:
            raise OptionError(f"agg must be one of {list(AGGREGATES)}, got {agg!r}")
        return query.resample(backend, table, object_info, request, width, agg, engine)

    def delete(self, location: Location) -> None:
        """Drop the version's continuous aggregates, view, and segments no other version reads; forget it.

        Missing is fine.
        """
        backend = _backend(location)
        found = backend.lookup(location.path)
        if found is not None:
            hypertable.drop_continuous_aggregates(backend, found.info)
        backend.remove(location.path)

    def manifest(self, location: Location) -> Manifest:
        """The version's rows checksummed: one pseudo-file per row-id range loaded (see ``checksums``)."""
        from memories_geo.formats.timescaledb.checksums import table_manifest

        backend = _backend(location)
        found = backend.lookup(location.path)
        if found is None:
            return Manifest({})
        return table_manifest(backend, found.table, found.info)

    def verify(self, location: Location, manifest: Manifest) -> list[str]:
        """Recompute the digest of every segment of the version (or the ranges ``manifest`` names), compare.

        A version re-created from the same rows in one segment (a restored backup)
        verifies against the original manifest, whatever ranges it recorded itself.
        """
        from memories_geo.formats.timescaledb.checksums import manifest_ranges, table_manifest

        backend = _backend(location)
        found = backend.lookup(location.path)
        if found is None:
            return [f"{location.url}: missing (the whole version table is gone)"]
        actual = table_manifest(backend, found.table, found.info, manifest_ranges(manifest))
        return compare_manifests(manifest, actual)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} format={self.name!r}>"
