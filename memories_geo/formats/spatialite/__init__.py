"""SpatiaLite: vector layers as tables of a SQLite database, with a stable view named after the key.

Each version is its own table with SpatiaLite geometry columns and an R*Tree spatial
index, registered with the backend's tables of record
(:mod:`memories_geo.backends.sqlite`). One job per module:

- :mod:`~memories_geo.formats.spatialite.layout`: a frame as SQLite columns and rows plus its ``info``;
- :mod:`~memories_geo.formats.spatialite.store`: SRIDs, the table, its rows, index and checksum;
- :mod:`~memories_geo.formats.spatialite.query`: the ``SELECT`` with filters pushed down;
- :mod:`~memories_geo.formats.spatialite.views`: the stable views, registered as layers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import geopandas as gpd

from memories_geo.backends.base import Capability, require
from memories_geo.errors import FormatError, OptionError
from memories_geo.footprint import vector_footprint
from memories_geo.formats._vector import as_frame, with_crs
from memories_geo.formats.spatialite import views
from memories_geo.formats.spatialite.layout import ROW_ID, Prepared
from memories_geo.formats.spatialite.query import read
from memories_geo.formats.spatialite.store import CUSTOM_SRID_START, table_digest, write_table
from memories_geo.formats.spatialite.views import VIEWS_TABLE, view_name_for
from memories_geo.integrity import Manifest, compare_manifests
from memories_geo.types import Kind

if TYPE_CHECKING:
    from memories_geo.backends.base import Backend, Location
    from memories_geo.backends.sqlite import SQLiteBackend
    from memories_geo.formats.base import WriteOptions, WriteResult
    from memories_geo.query import OpenRequest

__all__ = ["CUSTOM_SRID_START", "ROW_ID", "VIEWS_TABLE", "SpatiaLiteFormat", "view_name_for"]


def _key_of(location: Location) -> str:
    """The key of the version at ``location`` (its path is ``{key}/@v/{version_id}``)."""
    return location.path.split("/@v/", 1)[0]


def _backend(location_or_backend: Any) -> SQLiteBackend:
    """The SQLite backend of a location (or a backend), refusing any other."""
    backend = getattr(location_or_backend, "backend", location_or_backend)
    require(backend, Capability.SPATIALITE, "format 'spatialite' (tables in SQLite; or choose a file format)")
    if getattr(backend, "dialect", None) != "sqlite":
        raise FormatError(
            f"format 'spatialite' stores tables in SQLite; {backend.url_for('')!r} holds "
            f"{getattr(backend, 'dialect', 'other')} tables. Save on a sqlite:// tier or choose another "
            "format."
        )
    return backend


class SpatiaLiteFormat:
    """GeoDataFrames and GeoSeries as SpatiaLite tables, one table per version, behind a view per key.

    Reading (keywords of ``open``), all pushed down to SQLite:

    - ``bbox=(minx, miny, maxx, maxy)`` in ``bbox_crs`` (EPSG:4326 by default),
      transformed to the layer's CRS: rows whose active geometry intersects it (the R*Tree
      spatial index first, then ``ST_Intersects``);
    - ``time=``: rows whose first datetime column lies in the range (zone-aware columns
      compare in UTC);
    - ``columns=[...]``: columns to read (the active geometry is always kept);
    - ``where=``: a mapping ``{column: value}`` (equality; ``None`` tests ``IS NULL``; a
      list, tuple or set tests membership), sent as bound parameters.

    Rows come back in their stored order. Appends (``mode="a"``) are not supported: save
    a new version with ``mode="w"``.

    Examples
    --------
    >>> import memories_geo as mg
    >>> cfg = mg.StorageConfig.from_dict({"tiers": {"hot": {"url": "sqlite:///data/hot.sqlite"}}})
    >>> mem = mg.Memory(cfg)  # doctest: +SKIP
    >>> mem.save(gdf, "roads/paris", tier="hot")  # doctest: +SKIP
    >>> mem.open("roads/paris", bbox=(2.2, 48.8, 2.4, 48.9), where={"kind": "primary"})  # doctest: +SKIP
    """

    name: ClassVar[str] = "spatialite"
    kinds: ClassVar[frozenset[Kind]] = frozenset({Kind.VECTOR, Kind.TIMESERIES})
    extension: ClassVar[str] = ""
    open_options: ClassVar[Mapping[str, str]] = {
        "where": "filter rows: {column: value} (None is IS NULL, a list is IN)",
    }
    write_options: ClassVar[Mapping[str, str]] = {}
    #: A GeoDataFrame indexed by time is a time series: it is stored here too.
    default_for: ClassVar[frozenset[tuple[Kind, Capability]]] = frozenset(
        {(Kind.VECTOR, Capability.SPATIALITE), (Kind.TIMESERIES, Capability.SPATIALITE)}
    )

    def default_priority(self, obj: Any) -> int:
        """1 for a GeoDataFrame or GeoSeries (0 for anything else): the default on SQLite tiers."""
        return int(self.can_store(obj))

    def can_store(self, obj: Any) -> bool:
        """Whether ``obj`` is a GeoDataFrame or a GeoSeries."""
        return isinstance(obj, gpd.GeoDataFrame | gpd.GeoSeries)

    def write(self, obj: Any, location: Location, options: WriteOptions) -> WriteResult:
        """Write ``obj`` into a new version table at ``location``, in one transaction.

        Raises
        ------
        OptionError
            For any save keyword (this format takes none).
        FormatError
            For ``mode="a"``, or when the key's view name is held by a table or view
            that is not its view (before anything is written).
        UnsupportedObjectError
            For a layer SQLite cannot hold.
        """
        from memories_geo.formats.base import WriteResult

        backend = _backend(location)
        if options.extra:
            raise OptionError(f"format 'spatialite' does not take {sorted(options.extra)} when saving; "
                              "accepted keywords: []")
        if options.mode == "a":
            raise FormatError("format 'spatialite' does not append; save a new version with mode='w'")
        views.check_free(backend, _key_of(location))
        frame, base = as_frame(obj, self.name)
        prepared = Prepared(with_crs(frame, options.crs, kind=base["type"]), base)
        info, digest = write_table(backend, location.path, prepared)
        table = backend.table_for(location.path)
        footprint = vector_footprint(prepared.frame)
        return WriteResult(manifest=Manifest({str(table): digest}), footprint=footprint, object_info=info)

    def publish(self, location: Location, key: str, *, is_current: Callable[[], bool] | None = None) -> bool:
        """Point the view named after ``key`` at the table of ``location``, atomically.

        ``is_current`` is asked, under the database's write lock, whether the version is
        still the key's current one; when it returns ``False`` the view is left as it is.

        Examples
        --------
        >>> fmt.publish(location, "roads/paris", is_current=lambda: True)  # doctest: +SKIP
        True
        """
        return views.publish(_backend(location), location.path, key, is_current=is_current)

    def is_published(self, location: Location, key: str) -> bool:
        """Whether the view of ``key`` reads the table of ``location`` (``mg.recover()`` repairs it)."""
        return views.is_published(_backend(location), location.path, key)

    def published_keys(self, backend: Backend) -> list[str]:
        """Keys whose view exists on ``backend`` (``mg.recover()`` drops those the catalog lacks)."""
        return views.published_keys(_backend(backend))

    def unpublish(self, backend: Backend, key: str) -> None:
        """Drop the view of ``key`` and its layer registration (nothing happens when there is none)."""
        views.unpublish(_backend(backend), key)

    def open(self, location: Location, object_info: Mapping[str, Any], request: OpenRequest) -> Any:
        """Read a stored version back as the type that was saved, filtered in SQLite.

        Raises
        ------
        OptionError
            For ``time=`` on a layer without datetime column, or ``columns=`` on a GeoSeries.
        FormatError
            When the version's table is missing.
        """
        backend = _backend(location)
        table = backend.table_for(location.path)
        if table is None:
            raise FormatError(f"the table of {location.url} is missing")
        return read(backend, table, object_info, request)

    def delete(self, location: Location) -> None:
        """Drop the version table (spatial index and metadata included) and forget it; missing is fine."""
        _backend(location).remove(location.path)

    def manifest(self, location: Location) -> Manifest:
        """One pseudo-file per table: the table name, with its rows' size and digest."""
        backend = _backend(location)
        with backend.connection(write=False) as con:
            found = backend.lookup(location.path, con=con)
            if found is None:
                return Manifest({})
            return Manifest({found.table: table_digest(con, found.table, found.info)})

    def verify(self, location: Location, manifest: Manifest) -> list[str]:
        """Recompute the table's digest and compare it with ``manifest``."""
        actual = self.manifest(location)
        if not actual.files:
            return [f"{location.url}: missing (the whole version table is gone)"]
        return compare_manifests(manifest, actual)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} format={self.name!r}>"
