"""``PostgresBackend``: a PostgreSQL tier storing each version as a table in one schema."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from memories_geo.backends.base import Capability, redact_url
from memories_geo.backends.postgres.pool import POOL_OPTIONS, LazyPool
from memories_geo.backends.postgres.tables import TablesOfRecord, VersionTable
from memories_geo.errors import ConfigError
from memories_geo.keys import check_path
from memories_geo.progress import timed

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql
    from psycopg_pool import ConnectionPool

__all__ = ["MAX_LOAD_PARTITIONS", "PostgresBackend"]

#: Most partitions a large load is split into (each is indexed while the next one loads).
MAX_LOAD_PARTITIONS = 8

_OPTION_KEYS = POOL_OPTIONS | {"schema", "password", "load_partitions"}

logger = logging.getLogger(__name__)


class PostgresBackend:
    """Version tables in a PostgreSQL database, found through the tier's tables of record.

    Parameters
    ----------
    url : str
        ``postgresql://user@host:port/dbname`` (``${ENV}`` references are expanded by
        the configuration). A password may be in the URL, but ``storage_options`` or
        the environment (``PGPASSWORD``, ``~/.pgpass``) are better places for it.
    storage_options : mapping, optional
        ``schema`` (default ``"public"``): where tables and views are created;
        ``password``; ``min_size`` / ``max_size`` of the connection pool (default 1 / 4);
        ``timeout`` (seconds to wait for a free pooled connection, default 30);
        ``connect_timeout`` (seconds to wait for the server to answer, default 5);
        ``application_name``; ``prepare_threshold`` (psycopg's, default 5; ``None`` or
        ``"none"`` never prepares statements on the server, for poolers and servers
        without them); ``load_partitions`` (default 2, at most 8): how many
        partitions a large new version table may be split into so their indexes build
        in parallel, 1 for one plain table. Never shown.

        A server that takes one connection at a time (PGlite over its socket) needs
        ``min_size=1, max_size=1, prepare_threshold=None`` and ``sslmode=disable`` in the
        URL (ADBC opens connections of its own: the ``timescaledb`` format then reads
        through the pool, and ``postgis`` reads need ``engine="psycopg"``).

    Notes
    -----
    Logical paths (``{key}/@v/{version_id}``, as on file tiers) are mapped to physical
    table names by the registry table ``memories_geo_tables``; small objects (version
    records, checkpoint manifests) live in ``memories_geo_objects``. Both are created by
    :meth:`ensure_ready` and written only by this class. Nothing connects until the
    first database operation; ``url_for`` and ``repr`` never show the password.

    Examples
    --------
    >>> backend = PostgresBackend("postgresql://me:secret@db:5432/gis")
    >>> backend
    PostgresBackend('postgresql://me:***@db:5432/gis', schema='public')
    >>> sorted(c.value for c in backend.capabilities)
    ['listing', 'postgresql', 'tables', 'writes']
    """

    #: SQL dialect of the tables (formats that write SQL check it).
    dialect: ClassVar[str] = "postgresql"

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        options = dict(storage_options or {})
        unknown = set(options) - _OPTION_KEYS
        if unknown:
            raise ConfigError(
                f"unknown storage_options {sorted(unknown)} for a PostgreSQL tier; "
                f"valid: {sorted(_OPTION_KEYS)}"
            )
        if not urlsplit(url).path.strip("/"):
            raise ConfigError(f"{redact_url(url)!r} names no database; use postgresql://user@host:port/dbname")
        self.url = url
        self.schema = str(options.pop("schema", "public"))
        self.load_partitions = _load_partitions(options.pop("load_partitions", 2))
        self._connections = LazyPool(url, options.pop("password", None), options)
        self._records = TablesOfRecord(self.schema)
        self._ready = False
        self._label = f"{redact_url(url)}#{self.schema}"

    @property
    def capabilities(self) -> frozenset[Capability]:
        """Writes, listing and tables (in PostgreSQL)."""
        return frozenset({Capability.WRITES, Capability.LISTING, Capability.TABLES, Capability.POSTGRESQL})

    # -- connections --------------------------------------------------------------

    @property
    def conninfo(self) -> str:
        """The libpq connection URI (may hold the password: never show it)."""
        return self._connections.conninfo

    @property
    def pool(self) -> ConnectionPool:
        """The psycopg connection pool, opened on first use."""
        return self._connections.get()

    @property
    def connected(self) -> bool:
        """Whether the connection pool has been opened."""
        return self._connections.opened

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside a transaction (committed on success, else rolled back).

        Raises
        ------
        TierUnavailableError
            When the server cannot be reached (the message names it and the fix).
        """
        self.ensure_ready()
        with self._connections.connection() as con:
            yield con

    def ensure_ready(self) -> None:
        """Create the schema and the tables of record if they are missing."""
        if self._ready:
            return
        with self._connections.connection() as con:
            self._records.create(con)
        self._ready = True

    def _timed(self, operation: str, path: str) -> timed:
        return timed(logger, "%s: %s %r", self._label, operation, path)

    def identifier(self, name: str) -> sql.Identifier:
        """``schema.name`` as a quoted SQL identifier."""
        from psycopg import sql

        return sql.Identifier(self.schema, name)

    def redact(self, text: str) -> str:
        """``text`` without the password (for error messages)."""
        return self._connections.redact(text)

    def close(self) -> None:
        """Close the connection pool (a later operation opens a new one)."""
        self._connections.close()

    # -- version tables -------------------------------------------------------------

    def register_table(
        self, con: psycopg.Connection[Any], path: str, table: str, info: Mapping[str, Any]
    ) -> None:
        """Record, in ``con``'s transaction, that the version at ``path`` is stored in ``table``.

        Parameters
        ----------
        con : psycopg.Connection
            A connection from :meth:`connection`: the registration commits or rolls
            back with the caller's other work (the ``CREATE TABLE`` of ``table``).
        path : str
            Logical path of the version.
        table : str
            Physical table name, in :attr:`schema`.
        info : mapping
            JSON-serialisable description kept beside it (see :meth:`lookup`).
        """
        self._records.register(con, path, table, info)

    def update_info(self, path: str, info: Mapping[str, Any]) -> None:
        """Replace what the format recorded for the table at ``path`` (e.g. checksums known after loading)."""
        with self._timed("update_info", path), self.connection() as con:
            self._records.update(con, path, info)

    def lookup(self, path: str, *, con: psycopg.Connection[Any] | None = None) -> VersionTable | None:
        """The table registered at ``path`` and its info, or ``None``.

        ``con``: a connection from :meth:`connection` to look it up in (inside the
        caller's transaction, holding no second pooled connection); default: a new one.
        """
        if con is not None:
            return self._records.lookup(con, path)
        with self._timed("lookup", path), self.connection() as own:
            return self._records.lookup(own, path)

    def table_for(self, path: str) -> str | None:
        """Physical table name registered for ``path``, or ``None``."""
        found = self.lookup(path)
        return found.table if found else None

    def info_for(self, path: str) -> dict[str, Any] | None:
        """What the format recorded for ``path`` when registering its table (``None`` if none)."""
        found = self.lookup(path)
        return found.info if found else None

    def version_paths(self) -> list[str]:
        """Logical paths (``{key}/@v/{version_id}``) of every version table held here."""
        with self._timed("version_paths", ""), self.connection() as con:
            return self._records.version_paths(con)

    # -- the Backend protocol -------------------------------------------------------

    def url_for(self, path: str) -> str:
        """Display URL: the tier URL (password removed) plus ``#schema/path``."""
        return f"{redact_url(self.url)}#{self.schema}/{path}"

    def exists(self, path: str) -> bool:
        """Whether a version table or a small object is stored at ``path`` (or under it)."""
        check_path(path)
        with self._timed("exists", path), self.connection() as con:
            return self._records.exists(con, path)

    def remove(self, path: str) -> None:
        """Drop the version tables at or under ``path`` and delete the small objects there.

        Missing is fine. A table (or a version's view) something else depends on (a
        user's view) is not dropped: PostgreSQL's error is raised and nothing is
        removed. Tables a version shares with others (its info's ``"tables"``) are
        dropped only once no other version's view reads them (see
        :meth:`TablesOfRecord.remove <memories_geo.backends.postgres.tables.TablesOfRecord.remove>`).
        """
        check_path(path)
        with self._timed("remove", path), self.connection() as con:
            self._records.remove(con, path)

    def listdir(self, path: str) -> list[str]:
        """Names directly under ``path`` in the tree of stored logical paths."""
        check_path(path)
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        with self._timed("listdir", path), self.connection() as con:
            paths = self._records.paths(con, prefix)
        return sorted({p[len(prefix):].split("/", 1)[0] for p in paths})

    def write_bytes(self, path: str, data: bytes) -> None:
        """Store a small object at ``path``, replacing any."""
        check_path(path)
        with self._timed(f"write_bytes ({len(data)} bytes)", path), self.connection() as con:
            self._records.write_object(con, path, bytes(data))

    def read_bytes(self, path: str) -> bytes:
        """Read the small object at ``path``.

        Raises
        ------
        FileNotFoundError
            When no small object is stored there.
        """
        check_path(path)
        with self._timed("read_bytes", path), self.connection() as con:
            data = self._records.read_object(con, path)
        if data is None:
            raise FileNotFoundError(f"nothing is stored at {self.url_for(path)}")
        return data

    def __repr__(self) -> str:
        return f"PostgresBackend({redact_url(self.url)!r}, schema={self.schema!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_ready"] = False
        return state


def _load_partitions(value: Any) -> int:
    """The ``load_partitions`` option as an int from 1 to :data:`MAX_LOAD_PARTITIONS` (``"4"`` allowed)."""
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    if number is None or not 1 <= number <= MAX_LOAD_PARTITIONS:
        raise ConfigError(
            f"load_partitions must be an integer from 1 to {MAX_LOAD_PARTITIONS}, got {value!r}"
        )
    return number
