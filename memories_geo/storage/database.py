"""The original ``DatabaseStorage``: tables in PostgreSQL, saved as versions of a collection, indexed.

``DatabaseStorage(url, table_prefix, pool_size).save_structured(collection, data,
index_fields)`` stores ``data`` through a :class:`~memories_geo.memory.Memory` whose only
database tier is the PostgreSQL URL: each save is a new, verified, catalogued version
(a table behind the stable view named after the key ``{table_prefix}{collection}``),
then gets a B-tree index on each named scalar column and a GiST index on each named
geometry column.

Which format stores what:

- a GeoDataFrame: ``postgis`` (one table per version, with a GiST index on each geometry
  column already);
- a DataFrame (or a list of dicts, or a mapping of columns) with a datetime column or
  index: ``timescaledb`` (a view over segment tables: hypertables where the extension
  is installed, natively partitioned tables otherwise; the indexes go on the segments);
- a DataFrame with neither geometry nor time: refused (:class:`UnsupportedObjectError`).
  No format of the library stores a plain table on PostgreSQL, and ``postgis`` needs a
  geometry column.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from memories_geo.awaitable import awaitable_twin, awaitable_when_in_loop
from memories_geo.backends.base import redact_url
from memories_geo.backends.postgres import safe_identifier
from memories_geo.config import StorageConfig, expand_env
from memories_geo.config.env import default_home
from memories_geo.errors import ConfigError, KeyNotFoundError, OptionError, UnsupportedObjectError
from memories_geo.memory import Memory
from memories_geo.types import Mode

if TYPE_CHECKING:
    import pandas as pd

    from memories_geo.backends.postgres import PostgresBackend
    from memories_geo.entry import Entry

__all__ = ["DATABASE_TIER", "DatabaseStorage"]

logger = logging.getLogger(__name__)

#: Name of the tier holding the database in the collection's configuration.
DATABASE_TIER = "database"

#: Catalog attribute recording the fields a version was indexed on.
_INDEX_ATTR = "index_fields"

#: Access methods reported first when a column has several indexes.
_PREFERRED = ("gist", "btree")

_MODES = ("w", "w-", "a")


class DatabaseStorage:
    """Structured collections as versioned PostgreSQL tables with indexes on named fields.

    Parameters
    ----------
    url : str
        ``postgresql://user:password@host:port/dbname`` (``${VAR}`` references are
        expanded; the password is never shown).
    table_prefix : str
        Prepended to each collection name to make its key (and the name of its view).
    pool_size : int
        Most connections of the pool (opened as they are needed, one at first).
    schema : str, optional
        Where tables and views are created (default ``public``).
    home : str or path, optional
        Where the collection's catalog is kept: the SQLite file
        ``{home}/databases/{host}-{dbname}-{schema}-{hash}.sqlite`` (one per database
        and schema). Default: ``$MEMORIES_GEO_HOME``, else ``./.memories``.

    Attributes
    ----------
    memory : Memory
        The collection: ``storage.memory.versions(key)``, checkpoints, monitoring...

    Notes
    -----
    Each save is a new version (``mode="w"``): its table gets the indexes, the key's view
    then shows it; earlier versions keep their own tables until deleted. Fields indexed
    by one save are indexed again on later saves that do not name any.

    Examples
    --------
    >>> db = DatabaseStorage("postgresql://me:secret@db/gis", table_prefix="earth_")
    >>> db
    DatabaseStorage('postgresql://me:***@db/gis', table_prefix='earth_', schema='public')
    >>> db.save_structured("sites", gdf, index_fields=["name", "geometry"])  # doctest: +SKIP
    >>> db.indexes("sites")  # doctest: +SKIP
    {'geometry': 'gist', 'name': 'btree'}
    >>> db.load_structured("sites", where={"name": "Paris"})  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str,
        table_prefix: str = "",
        pool_size: int = 5,
        schema: str | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
    ) -> None:
        url = str(expand_env(url))
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
            raise ConfigError(
                f"DatabaseStorage needs a postgresql://user@host:port/dbname URL, got {redact_url(url)!r}"
            )
        if not isinstance(pool_size, int) or isinstance(pool_size, bool) or pool_size < 1:
            raise ConfigError(f"DatabaseStorage: pool_size must be a positive integer, got {pool_size!r}")
        if not isinstance(table_prefix, str):
            raise ConfigError(f"DatabaseStorage: table_prefix must be a string, got {table_prefix!r}")
        self.url = url
        self.table_prefix = table_prefix
        self.pool_size = pool_size
        self.schema = schema or "public"
        self.home = Path(home).expanduser().resolve() if home is not None else default_home()
        self.catalog_path = self.home / "databases" / f"{_catalog_name(url, self.schema)}.sqlite"
        self.catalog_path.parent.mkdir(parents=True, exist_ok=True)
        options = {"schema": self.schema, "min_size": 1, "max_size": pool_size}
        config = StorageConfig.from_dict(
            {
                "home": str(self.home),
                "catalog": str(self.catalog_path),
                "default_tier": DATABASE_TIER,
                "tiers": {DATABASE_TIER: {"url": url, "storage_options": options}},
            }
        )
        self.memory = Memory(config)

    # -- keys and tables ----------------------------------------------------------------

    def key_for(self, collection: str) -> str:
        """The key of ``collection``: ``table_prefix`` + ``collection``.

        Examples
        --------
        >>> DatabaseStorage("postgresql://db/gis", table_prefix="earth_").key_for("sites")
        'earth_sites'
        """
        return f"{self.table_prefix}{collection}"

    @property
    def backend(self) -> PostgresBackend:
        """The PostgreSQL backend of the database tier."""
        backend: PostgresBackend = self.memory.tiers.backend(DATABASE_TIER)  # type: ignore[assignment]
        return backend

    def tables(self, collection: str, *, version: int | None = None) -> list[str]:
        """Physical tables holding the rows of the current (or a given) version of ``collection``.

        One table for a ``postgis`` version; the segment tables of a ``timescaledb`` one.

        Examples
        --------
        >>> db.tables("sites")  # doctest: +SKIP
        ['earth_sites__v_1a2b3c4d5e6f']
        """
        entry = self.memory.info(self.key_for(collection), version=version)
        return self._tables(entry)

    def _tables(self, entry: Entry) -> list[str]:
        found = self.backend.lookup(entry.path)
        if found is None:
            raise UnsupportedObjectError(
                f"the table of {self.backend.url_for(entry.path)!r} is not registered in the database"
            )
        segments = [str(t) for t in found.info.get("tables") or []]
        return segments or [found.table]

    # -- saving --------------------------------------------------------------------------

    @awaitable_when_in_loop
    def save_structured(
        self,
        collection: str,
        data: Any,
        index_fields: Sequence[str] | str | None = None,
        *,
        mode: Mode = "w",
        metadata: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Entry:
        """Store ``data`` as a new version of ``collection``, then index the named fields.

        Parameters
        ----------
        collection : str
            Name of the collection (its key is ``table_prefix + collection``).
        data : DataFrame, GeoDataFrame, list of dicts or mapping of columns
            The rows (see the module docstring for which format stores what).
        index_fields : sequence of str, optional
            Columns to index: B-tree on scalar columns, GiST on geometry columns.
            Default: the fields the previous version was indexed on; ``()`` for none.
        mode : {"w", "w-", "a"}
            ``"w"`` a new version, ``"w-"`` refuse an existing collection, ``"a"`` a
            new version holding the stored rows then these.
        metadata : mapping, optional
            Stored in the catalog with the version.
        **options
            Keywords of the format's ``save`` (``srid=``, ``chunk_time_interval=``...).

        Returns
        -------
        Entry
            The catalog entry of the new version. Awaitable when called from a
            running event loop.

        Raises
        ------
        OptionError
            For an unknown field (the message names the columns) or mode.
        UnsupportedObjectError
            For data with neither geometry nor a datetime column, or of another type.

        Examples
        --------
        >>> db.save_structured("stations", records, index_fields=["station_id"])  # doctest: +SKIP
        >>> await db.save_structured("stations", records, index_fields=["station_id"])  # doctest: +SKIP
        """
        if mode not in _MODES:
            raise OptionError(f"save_structured: mode must be one of {list(_MODES)}, got {mode!r}")
        frame, fmt = _as_table(data)
        key = self.key_for(collection)
        fields = self._fields_to_index(key, index_fields)
        _check_fields(frame, fields, collection)
        attrs = {**dict(metadata or {}), _INDEX_ATTR: fields}
        entry: Entry = self.memory.save(frame, key, format=fmt, mode=mode, attrs=attrs, **options)
        self._create_indexes(entry, fields)
        return entry

    def _fields_to_index(self, key: str, index_fields: Sequence[str] | str | None) -> list[str]:
        if isinstance(index_fields, str):
            return [index_fields]
        if index_fields is not None:
            return [str(f) for f in dict.fromkeys(index_fields)]
        try:
            previous = self.memory.info(key)
        except KeyNotFoundError:
            return []
        return [str(f) for f in previous.attrs.get(_INDEX_ATTR) or []]

    def _create_indexes(self, entry: Entry, fields: Sequence[str]) -> None:
        """A B-tree or GiST index per field on each table of ``entry``, unless one is there."""
        from psycopg import sql

        if not fields:
            return
        backend = self.backend
        found = backend.lookup(entry.path)
        info = found.info if found is not None else {}
        by_field = _stored_columns(info)
        tables = self._tables(entry)
        existing = _index_rows(backend, tables)
        with backend.connection() as con:
            for table in tables:
                for field in fields:
                    column, geometry = by_field[field]
                    method = "gist" if geometry else "btree"
                    if (table, column, method) in existing:
                        continue
                    name = index_name(table, column)
                    con.execute(
                        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING {} ({})").format(
                            sql.Identifier(name), backend.identifier(table), sql.SQL(method),
                            sql.Identifier(column),
                        )
                    )
                    logger.debug("%s: %s index %s on %s", redact_url(self.url), method, name, table)
            for table in tables:
                con.execute(sql.SQL("ANALYZE {}").format(backend.identifier(table)))

    # -- reading -------------------------------------------------------------------------

    @awaitable_when_in_loop
    def load_structured(
        self,
        collection: str,
        *,
        where: Any = None,
        columns: Sequence[str] | None = None,
        bbox: Sequence[float] | None = None,
        version: int | None = None,
        **options: Any,
    ) -> Any:
        """The rows of ``collection`` (its current or a given version), filtered in the database.

        Parameters
        ----------
        collection : str
            Name of the collection.
        where : mapping or psycopg.sql.Composable, optional
            ``{column: value}`` (equality; ``None`` is ``IS NULL``; a list is ``IN``).
        columns : list of str, optional
            Columns to read.
        bbox : (minx, miny, maxx, maxy), optional
            Rows whose geometry intersects this box (EPSG:4326 unless ``bbox_crs=``).
        version : int, optional
            A version number (default: the current one).
        **options
            Other keywords of ``Memory.open`` (``time=``, ``bbox_crs=``, ``engine=``...).

        Returns
        -------
        pandas.DataFrame or geopandas.GeoDataFrame
            The rows as they were saved (same columns, dtypes and index).

        Examples
        --------
        >>> db.load_structured("stations", where={"station_id": ["a", "b"]})  # doctest: +SKIP
        """
        if where is not None:
            options["where"] = where
        return self.memory.open(
            self.key_for(collection), version=version, columns=columns, bbox=bbox, **options
        )

    @awaitable_when_in_loop
    def list_collections(self) -> list[str]:
        """Names of the collections stored with this ``table_prefix``, sorted.

        Examples
        --------
        >>> db.list_collections()  # doctest: +SKIP
        ['sites', 'stations']
        """
        keys = {e.key for e in self.memory.catalog.search(tier=DATABASE_TIER)}
        prefix = self.table_prefix
        return sorted(k[len(prefix):] for k in keys if k.startswith(prefix) and len(k) > len(prefix))

    @awaitable_when_in_loop
    def delete_structured(self, collection: str) -> list[Entry]:
        """Delete ``collection``: every version (not pinned by a checkpoint), its tables and view.

        Examples
        --------
        >>> db.delete_structured("stations")  # doctest: +SKIP
        """
        return self.memory.delete(self.key_for(collection))

    @awaitable_when_in_loop
    def indexes(self, collection: str) -> dict[str, str]:
        """Indexed fields of the current version of ``collection`` -> access method (``btree``, ``gist``...).

        Read from the database (``pg_index``/``pg_am``): every single-column index of
        its tables, the format's own ones (GiST on geometries, the time index of a time
        series) included.

        Examples
        --------
        >>> db.indexes("sites")  # doctest: +SKIP
        {'geometry': 'gist', 'name': 'btree'}
        """
        entry = self.memory.info(self.key_for(collection))
        found = self.backend.lookup(entry.path)
        stored = _stored_columns(found.info if found else {})
        columns = {column: field for field, (column, _) in stored.items()}
        methods: dict[str, list[str]] = {}
        for _, column, method in sorted(_index_rows(self.backend, self._tables(entry))):
            if column in columns:
                methods.setdefault(columns[column], []).append(method)
        return {
            field: min(found_methods, key=lambda m: (*_PREFERRED, m).index(m))
            for field, found_methods in sorted(methods.items())
        }

    # -- awaitable twins ---------------------------------------------------------------------

    asave_structured = awaitable_twin(save_structured)
    aload_structured = awaitable_twin(load_structured)

    def close(self) -> None:
        """Close the connection pool (a later call opens a new one).

        Examples
        --------
        >>> db.close()  # doctest: +SKIP
        """
        self.backend.close()

    def __repr__(self) -> str:
        return (
            f"DatabaseStorage({redact_url(self.url)!r}, table_prefix={self.table_prefix!r}, "
            f"schema={self.schema!r})"
        )


def index_name(table: str, column: str) -> str:
    """Name of the index on ``column`` of ``table``: ``{table}_{column}_idx``, hashed when too long.

    Examples
    --------
    >>> index_name("sites__v_0123456789ab", "name")
    'sites__v_0123456789ab_name_idx'
    >>> len(index_name("sites__v_0123456789ab", "a_long_column_name" * 3).encode())
    63
    """
    return safe_identifier(f"{table}_{column}_idx")


def _catalog_name(url: str, schema: str) -> str:
    """File name (no suffix) of the catalog of one database and schema: readable, then a hash."""
    parts = urlsplit(url)
    readable = f"{parts.hostname or 'local'}-{parts.path.strip('/')}-{schema}"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", readable).strip("_")[:60]
    user = parts.username or ""
    digest = hashlib.blake2b(
        f"{user}@{parts.hostname}:{parts.port}/{parts.path.strip('/')}#{schema}".encode(), digest_size=6
    ).hexdigest()
    return f"{slug}-{digest}"


def _as_table(data: Any) -> tuple[Any, str]:
    """``data`` as a (Geo)DataFrame and the format storing it.

    Raises
    ------
    UnsupportedObjectError
        For data that is not rows, or a frame with neither geometry nor time.
    """
    import geopandas as gpd
    import pandas as pd

    from memories_geo.kinds import time_column

    if isinstance(data, gpd.GeoDataFrame):
        return data, "postgis"
    if isinstance(data, Mapping):
        scalar = all(not isinstance(v, Iterable) or isinstance(v, str | bytes) for v in data.values())
        data = pd.DataFrame([dict(data)]) if scalar else pd.DataFrame(dict(data))
    elif isinstance(data, list | tuple) and all(isinstance(r, Mapping) for r in data):
        data = pd.DataFrame([dict(r) for r in data])
    if not isinstance(data, pd.DataFrame):
        raise UnsupportedObjectError(
            "save_structured stores a DataFrame, a GeoDataFrame, a list of dicts or a mapping of "
            f"columns, not {type(data).__name__}"
        )
    if time_column(data) is None:
        raise UnsupportedObjectError(
            "save_structured: these rows have neither a geometry nor a datetime column; PostgreSQL "
            "tables are stored as PostGIS layers (make it a GeoDataFrame, e.g. geopandas.GeoDataFrame("
            "df, geometry=geopandas.points_from_xy(df.lon, df.lat), crs='EPSG:4326')) or as time "
            "series (parse the time column with pandas.to_datetime, or pass datetime values)"
        )
    return data, "timescaledb"


def _frame_fields(frame: pd.DataFrame) -> list[str]:
    names = [str(c) for c in frame.columns]
    index = [str(n) for n in frame.index.names if n is not None]
    return names + [n for n in index if n not in names]


def _check_fields(frame: pd.DataFrame, fields: Sequence[str], collection: str) -> None:
    fields_known = _frame_fields(frame)
    unknown = [f for f in fields if f not in fields_known]
    if unknown:
        raise OptionError(
            f"save_structured({collection!r}): cannot index {unknown}: no such column; "
            f"columns: {fields_known}"
        )


def _stored_columns(info: Mapping[str, Any]) -> dict[str, tuple[str, bool]]:
    """Field name -> (stored column, is a geometry), from a version's recorded layout."""
    return {
        str(e["name"]): (str(e["column"]), bool(e.get("geometry")))
        for e in info.get("columns") or []
    }


def _index_rows(backend: PostgresBackend, tables: Sequence[str]) -> set[tuple[str, str, str]]:
    """``(table, column, access method)`` of every single-column index of ``tables``."""
    query = (
        "SELECT c.relname, a.attname, am.amname FROM pg_index i "
        "JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam "
        "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] "
        "WHERE n.nspname = %s AND c.relname = ANY(%s) AND i.indnkeyatts = 1 AND i.indexprs IS NULL"
    )
    with backend.connection() as con:
        rows = con.execute(query, (backend.schema, list(tables))).fetchall()
    return {(str(t), str(c), str(m)) for t, c, m in rows}
