"""PostGIS: vector layers as PostgreSQL tables, with a stable view named after the key.

Each version is its own table, registered with the backend's tables of record
(:mod:`memories_geo.backends.postgres`). One job per module:

- :mod:`~memories_geo.formats.postgis.types`: Arrow <-> PostgreSQL types, nanosecond companions;
- :mod:`~memories_geo.formats.postgis.geometry`: geometry typmods and EWKB;
- :mod:`~memories_geo.formats.postgis.srid`: SRIDs, custom ``spatial_ref_sys`` rows;
- :mod:`~memories_geo.formats.postgis.layout`: a frame as loadable columns plus its ``info``;
- :mod:`~memories_geo.formats.postgis.copy`: the binary ``COPY`` stream and the table checksum;
- :mod:`~memories_geo.formats.postgis.load`: table creation, (partitioned) loads, indexes;
- :mod:`~memories_geo.formats.postgis.query`: the ``SELECT`` with filters pushed down;
- :mod:`~memories_geo.formats.postgis.views`: the stable views and their table.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import geopandas as gpd

from memories_geo.backends.base import Capability, require
from memories_geo.errors import FormatError, OptionError
from memories_geo.formats._vector import as_frame, with_crs
from memories_geo.formats.postgis import copy as pgcopy
from memories_geo.formats.postgis import views
from memories_geo.formats.postgis.layout import ROW_ID, Prepared
from memories_geo.formats.postgis.load import ENGINES, PARTITION_MIN_ROWS, load_version
from memories_geo.formats.postgis.options import WRITE_OPTIONS, save_settings
from memories_geo.formats.postgis.query import read
from memories_geo.formats.postgis.srid import CUSTOM_SRID_START
from memories_geo.formats.postgis.topology import build_topology, drop_topology
from memories_geo.formats.postgis.views import VIEWS_TABLE, view_name_for
from memories_geo.integrity import Manifest, compare_manifests
from memories_geo.types import Kind

if TYPE_CHECKING:
    from memories_geo.backends.base import Backend, Location
    from memories_geo.backends.postgres import PostgresBackend
    from memories_geo.formats.base import WriteOptions, WriteResult
    from memories_geo.query import OpenRequest

__all__ = [
    "CUSTOM_SRID_START",
    "ENGINES",
    "PARTITION_MIN_ROWS",
    "ROW_ID",
    "VIEWS_TABLE",
    "PostGISFormat",
    "view_name_for",
]


def _default_engine() -> str:
    return "adbc" if importlib.util.find_spec("adbc_driver_postgresql") else "psycopg"


def _engine(value: Any, default: str) -> str:
    engine = value or default
    if engine not in ENGINES:
        raise OptionError(f"engine must be one of {list(ENGINES)}, got {engine!r}")
    return str(engine)


def _key_of(location: Location) -> str:
    """The key of the version at ``location`` (its path is ``{key}/@v/{version_id}``)."""
    return location.path.split("/@v/", 1)[0]


def _backend(location_or_backend: Any) -> PostgresBackend:
    """The PostgreSQL backend of a location (or a backend), refusing any other."""
    backend = getattr(location_or_backend, "backend", location_or_backend)
    require(backend, Capability.POSTGRESQL,
            "format 'postgis' (tables in PostgreSQL; or choose a file format)")
    if getattr(backend, "dialect", None) != "postgresql":
        raise FormatError(
            f"format 'postgis' stores tables in PostgreSQL; {backend.url_for('')!r} holds "
            f"{getattr(backend, 'dialect', 'other')} tables. Save on a postgresql:// tier or choose "
            "another format."
        )
    return backend


class PostGISFormat:
    """GeoDataFrames and GeoSeries as PostGIS tables, one table per version.

    Writing (keywords of ``save``): ``engine="psycopg"`` (default: a binary ``COPY``
    stream built with numpy/Arrow and checksummed as it is sent) or ``"adbc"`` (ADBC's
    Arrow-native ingest); ``srid=`` (reproject every geometry column to that EPSG code
    first), ``spatial_index=False`` (no GiST index), ``validate=`` (``True`` refuses
    invalid geometries naming the rows, ``"make_valid"`` repairs them) and
    ``topology=True`` (a PostGIS topology of the layer, see
    :mod:`~memories_geo.formats.postgis.topology`). A nanosecond timestamp column with sub-microsecond
    times is
    stored as microseconds plus a ``smallint`` companion column holding the rest.

    Reading (keywords of ``open``), all pushed down to the server:

    - ``bbox=(minx, miny, maxx, maxy)`` in ``bbox_crs`` (EPSG:4326 by default),
      transformed to the layer's CRS: rows whose active geometry intersects it (``&&``
      on the GiST index, then ``ST_Intersects``);
    - ``time=``: rows whose first datetime column lies in the range (time zone-aware
      columns compare in UTC);
    - ``columns=[...]``: columns to read (the active geometry is always kept);
    - ``where=``: a mapping ``{column: value}`` (equality; ``None`` tests ``IS NULL``;
      a list, tuple or set tests membership) or a :class:`psycopg.sql.Composable`;
    - ``engine="adbc"`` (default when installed) or ``"psycopg"``.

    Rows come back in their stored order; a filtered read of a layer whose index is a
    ``RangeIndex`` numbers its rows from 0, as GeoParquet reads do.

    Examples
    --------
    >>> import memories_geo as mg
    >>> cfg = mg.StorageConfig.from_dict({"tiers": {"warm": {"url": "postgresql://me@db/gis"}}})
    >>> mem = mg.Memory(cfg)  # doctest: +SKIP
    >>> mem.save(gdf, "roads/paris", tier="warm")  # doctest: +SKIP
    >>> mem.open("roads/paris", bbox=(2.2, 48.8, 2.4, 48.9), where={"kind": "primary"})  # doctest: +SKIP
    """

    name: ClassVar[str] = "postgis"
    kinds: ClassVar[frozenset[Kind]] = frozenset({Kind.VECTOR, Kind.TIMESERIES})
    extension: ClassVar[str] = ""
    open_options: ClassVar[Mapping[str, str]] = {
        "where": "filter rows: {column: value} (None is IS NULL, a list is IN) or a psycopg.sql.Composable",
        "engine": "read with 'adbc' (Arrow-native, default when installed) or 'psycopg'",
    }
    default_for: ClassVar[frozenset[tuple[Kind, Capability]]] = frozenset(
        {(Kind.VECTOR, Capability.POSTGRESQL)}
    )
    write_options: ClassVar[Mapping[str, str]] = WRITE_OPTIONS

    def default_priority(self, obj: Any) -> int:
        """1 for a GeoDataFrame or GeoSeries: the default vector format on database tiers."""
        return int(self.can_store(obj))

    def can_store(self, obj: Any) -> bool:
        """Whether ``obj`` is a GeoDataFrame or a GeoSeries."""
        return isinstance(obj, gpd.GeoDataFrame | gpd.GeoSeries)

    def write(self, obj: Any, location: Location, options: WriteOptions) -> WriteResult:
        """Load ``obj`` into a new version table at ``location``.

        Parameters
        ----------
        obj : geopandas.GeoDataFrame or geopandas.GeoSeries
            What to store (not modified).
        location : Location
            A PostgreSQL tier and the logical path of the new version.
        options : WriteOptions
            ``mode="a"`` copies the rows of ``options.previous`` server-side first;
            ``options.extra`` may hold ``engine=``.

        Returns
        -------
        WriteResult
            Manifest (one pseudo-file: the table), footprint and ``object_info``.

        Raises
        ------
        OptionError
            For an unknown keyword or engine.
        UnsupportedObjectError
            For a layer PostgreSQL cannot hold, or rows that do not fit the layer
            they are appended to.
        FormatError
            Before anything is written, when the key's view name is held by a relation
            that is not its view (a user's table, another key's view, one of the
            library's own tables): the message names it.
        """
        from memories_geo.formats.base import WriteResult

        backend = _backend(location)
        extra = dict(options.extra)
        engine = _engine(extra.pop("engine", None), "psycopg")
        settings = save_settings(extra)
        if extra:
            raise OptionError(
                f"format 'postgis' does not take {sorted(extra)} when saving; accepted keywords: "
                f"{list(WRITE_OPTIONS)}"
            )
        views.prepare(backend)
        views.check_free(backend, _key_of(location))
        frame, base = as_frame(obj, self.name)
        prepared = Prepared(settings.apply(with_crs(frame, options.crs, kind=base["type"])), base)
        prepared.info["spatial_index"] = settings.spatial_index
        previous = None
        if options.mode == "a" and options.previous is not None:
            previous = backend.lookup(options.previous.path)
            if previous is None:
                raise FormatError(f"cannot append: the stored table of {options.previous.url} is missing")
        info, manifest, footprint = load_version(backend, location.path, prepared, previous, engine)
        if settings.topology:
            table = backend.table_for(location.path)
            if table is not None:
                info = {**info, "topology": build_topology(backend, table, info, settings.tolerance)}
        return WriteResult(manifest=manifest, footprint=footprint, object_info=info)

    def publish(self, location: Location, key: str, *, is_current: Callable[[], bool] | None = None) -> bool:
        """Point the view named after ``key`` at the table of ``location``, atomically.

        Parameters
        ----------
        location : Location
            The version to show.
        key : str
            Its key (the view's name).
        is_current : callable, optional
            Asked, while holding the lock that serialises every change to this view,
            whether the version is still the key's current one; when it returns
            ``False`` the view is left as it is. Versions are committed before they are
            published, so the last swap of a view is always that of the current version.

        Returns
        -------
        bool
            ``True`` when the view now shows ``location``, ``False`` when skipped.

        Raises
        ------
        FormatError
            When the view name is held by a relation that is not this key's view, or no
            table is registered at ``location``.

        Examples
        --------
        >>> fmt.publish(location, "roads/paris", is_current=lambda: True)  # doctest: +SKIP
        True
        """
        return views.publish(_backend(location), location.path, key, is_current=is_current)

    def is_published(self, location: Location, key: str) -> bool:
        """Whether the view of ``key`` exists and reads the table of ``location``.

        ``mg.recover()`` re-publishes the current version of a key when this is
        ``False`` (a crash between the catalog commit and the view swap).

        Examples
        --------
        >>> location = mem.version_store.location(mem.info("roads/paris"))  # doctest: +SKIP
        >>> fmt.is_published(location, "roads/paris")  # doctest: +SKIP
        True
        """
        return views.is_published(_backend(location), location.path, key)

    def published_keys(self, backend: Backend) -> list[str]:
        """Keys whose view exists on ``backend`` (``mg.recover()`` drops those the catalog lacks)."""
        return views.published_keys(_backend(backend))

    def unpublish(self, backend: Backend, key: str) -> None:
        """Drop the view of ``key`` (nothing happens when there is none), under the publish lock."""
        views.unpublish(_backend(backend), key)

    def open(self, location: Location, object_info: Mapping[str, Any], request: OpenRequest) -> Any:
        """Read a stored version back as the type that was saved, filtered on the server.

        Parameters
        ----------
        location : Location
            The PostgreSQL tier and the version's logical path.
        object_info : mapping
            What :meth:`write` recorded.
        request : OpenRequest
            ``bbox`` / ``bbox_crs``, ``time``, ``columns``, and the options ``where``
            and ``engine`` (see the class docstring).

        Returns
        -------
        geopandas.GeoDataFrame or geopandas.GeoSeries
            The matching rows, in their stored order.

        Raises
        ------
        OptionError
            For ``time=`` on a layer without datetime column, ``columns=`` on a
            GeoSeries, or an unknown engine.
        """
        backend = _backend(location)
        engine = _engine(request.options.get("engine"), _default_engine())
        table = backend.table_for(location.path)
        if table is None:
            raise FormatError(f"the table of {location.url} is missing")
        return read(backend, table, object_info, request, engine)

    def delete(self, location: Location) -> None:
        """Drop the version table (and its topology, if any) and forget it; a missing table is fine."""
        backend = _backend(location)
        table = backend.table_for(location.path)
        backend.remove(location.path)
        if table is not None and backend.table_for(location.path) is None:
            drop_topology(backend, table)

    def manifest(self, location: Location) -> Manifest:
        """One pseudo-file per table: the table name, with its rows' size and digest."""
        backend = _backend(location)
        found = backend.lookup(location.path)
        if found is None:
            return Manifest({})
        name, digest = pgcopy.table_digest(backend, found.table, found.info)
        return Manifest({name: digest})

    def verify(self, location: Location, manifest: Manifest) -> list[str]:
        """Recompute the table's digest and compare it with ``manifest``."""
        actual = self.manifest(location)
        if not actual.files:
            return [f"{location.url}: missing (the whole version table is gone)"]
        return compare_manifests(manifest, actual)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} format={self.name!r}>"
