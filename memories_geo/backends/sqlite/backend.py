"""``SQLiteBackend``: a SQLite tier (with SpatiaLite) storing each version as a table of one database file."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from memories_geo.backends.base import Capability
from memories_geo.backends.sqlite.connect import DEFAULT_LIBRARY, connect, transaction
from memories_geo.errors import ConfigError
from memories_geo.keys import check_path
from memories_geo.progress import timed
from memories_geo.records import RECORD_SUFFIX

__all__ = [
    "ACCEPTED_FORMS", "OBJECTS_TABLE", "REGISTRY_TABLE", "SQLiteBackend", "VersionTable", "database_path",
    "drop_table", "quote",
]

#: Registry of version tables: logical path -> physical table name (+ what ``open`` needs).
REGISTRY_TABLE = "memories_geo_tables"

#: Small objects (version records, checkpoint manifests) by logical path.
OBJECTS_TABLE = "memories_geo_objects"

#: The tier URLs a SQLite backend takes.
ACCEPTED_FORMS = "'sqlite:///absolute/path/to/db.sqlite' (also 'sqlite:////absolute/path/to/db.sqlite')"

_OPTION_KEYS = frozenset({"timeout", "spatialite_library"})

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionTable:
    """A registered version table.

    Attributes
    ----------
    path : str
        Logical path of the version (``{key}/@v/{version_id}``).
    table : str
        Physical table name.
    info : dict
        What the format recorded when it registered the table.
    """

    path: str
    table: str
    info: dict[str, Any]


def database_path(url: str) -> Path:
    """The database file a ``sqlite://`` tier URL names.

    Raises
    ------
    ConfigError
        For another scheme, a host, query or fragment, a relative path or no path
        (the message lists the accepted forms).

    Examples
    --------
    >>> database_path("sqlite:///data/hot.sqlite").as_posix()
    '/data/hot.sqlite'
    """
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc or parts.query or parts.fragment or not url.startswith("sqlite:///"):
        raise ConfigError(f"{url!r} is not a SQLite tier URL; a SQLite tier is {ACCEPTED_FORMS}")
    path = "/" + parts.path.lstrip("/")
    if path == "/" or path.endswith("/") or path.split("/")[-1] in (".", "..") or ":memory:" in path:
        raise ConfigError(f"{url!r} names no database file; a SQLite tier is {ACCEPTED_FORMS}")
    return Path(path)


def _under(path: str) -> tuple[str, str]:
    """``path`` itself and a ``GLOB`` pattern of everything under it."""
    escaped = "".join(f"[{c}]" if c in "*?[" else c for c in path.rstrip("/"))
    return path, escaped + "/*"


class SQLiteBackend:
    """Version tables in one SQLite database file with SpatiaLite, found through its tables of record.

    Parameters
    ----------
    url : str
        ``sqlite:///absolute/path/to/db.sqlite``. Relative paths are refused: every
        process (and QGIS) must find the same file.
    storage_options : mapping, optional
        ``timeout``: seconds a writer waits for another's lock (default 30);
        ``spatialite_library``: the extension to load (default ``"mod_spatialite"``,
        found on the library path; or a full path).

    Notes
    -----
    Each operation opens a short connection of its own (safe across threads and
    processes), in WAL mode, with SpatiaLite loaded. Logical paths
    (``{key}/@v/{version_id}``) are mapped to physical tables by ``memories_geo_tables``;
    small objects (version records, checkpoint manifests) live in ``memories_geo_objects``.
    Both are created by :meth:`ensure_ready`, with SpatiaLite's metadata tables.

    Examples
    --------
    >>> backend = SQLiteBackend("sqlite:///tmp/hot.sqlite")
    >>> backend
    SQLiteBackend('sqlite:///tmp/hot.sqlite')
    >>> sorted(c.value for c in backend.capabilities)
    ['listing', 'spatialite', 'tables', 'writes']
    """

    #: SQL dialect of the tables (formats that write SQL check it).
    dialect: ClassVar[str] = "sqlite"

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        options = dict(storage_options or {})
        unknown = set(options) - _OPTION_KEYS
        if unknown:
            raise ConfigError(
                f"unknown storage_options {sorted(unknown)} for a SQLite tier; valid: {sorted(_OPTION_KEYS)}"
            )
        self.url = url
        self.path = database_path(url)
        try:
            self.timeout = float(options.get("timeout", 30.0))
        except (TypeError, ValueError):
            shown = options.get("timeout")
            raise ConfigError(f"timeout must be a number of seconds, got {shown!r}") from None
        self.library = str(options.get("spatialite_library", DEFAULT_LIBRARY))
        self._ready = False

    @property
    def capabilities(self) -> frozenset[Capability]:
        """Writes, listing and tables (in SQLite with SpatiaLite)."""
        return frozenset({Capability.WRITES, Capability.LISTING, Capability.TABLES, Capability.SPATIALITE})

    # -- connections --------------------------------------------------------------

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A new connection (autocommit, SpatiaLite loaded), closed afterwards."""
        self.ensure_ready()
        con = connect(str(self.path), timeout=self.timeout, library=self.library)
        try:
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def connection(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """A new connection inside a transaction (``BEGIN IMMEDIATE`` when ``write``), committed on success.

        Raises
        ------
        TierUnavailableError
            When the database cannot be opened or SpatiaLite cannot be loaded.
        """
        with self.connect() as con, transaction(con, write=write):
            yield con

    def ensure_ready(self) -> None:
        """Create the database file, SpatiaLite's metadata and the tables of record if missing."""
        if self._ready:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = connect(str(self.path), timeout=self.timeout, library=self.library)
        try:
            with transaction(con):
                if not con.execute("SELECT CheckSpatialMetaData()").fetchone()[0]:
                    con.execute("SELECT InitSpatialMetaData(0)")
                con.execute(
                    f'CREATE TABLE IF NOT EXISTS "{REGISTRY_TABLE}" ('
                    " path TEXT PRIMARY KEY, table_name TEXT NOT NULL UNIQUE, key TEXT NOT NULL,"
                    " info TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
                )
                con.execute(
                    f'CREATE TABLE IF NOT EXISTS "{OBJECTS_TABLE}" ('
                    " path TEXT PRIMARY KEY, data BLOB NOT NULL,"
                    " updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
                )
        finally:
            con.close()
        self._ready = True

    def _timed(self, operation: str, path: str) -> timed:
        return timed(logger, "%s: %s %r", self.url, operation, path)

    # -- version tables -------------------------------------------------------------

    def register_table(self, con: sqlite3.Connection, path: str, table: str, info: Mapping[str, Any]) -> None:
        """Record, in ``con``'s transaction, that the version at ``path`` is stored in ``table``."""
        check_path(path)
        con.execute(
            f'INSERT INTO "{REGISTRY_TABLE}" (path, table_name, key, info) VALUES (?, ?, ?, ?)',  # noqa: S608
            (path, table, path.split("/@v/", 1)[0], json.dumps(dict(info))),
        )

    def update_info(
        self, path: str, info: Mapping[str, Any], *, con: sqlite3.Connection | None = None
    ) -> None:
        """Replace what the format recorded for the table at ``path`` (in ``con``'s transaction if given)."""
        statement = f'UPDATE "{REGISTRY_TABLE}" SET info = ? WHERE path = ?'  # noqa: S608
        if con is not None:
            con.execute(statement, (json.dumps(dict(info)), path))
            return
        with self._timed("update_info", path), self.connection() as own:
            own.execute(statement, (json.dumps(dict(info)), path))

    def lookup(self, path: str, *, con: sqlite3.Connection | None = None) -> VersionTable | None:
        """The table registered at ``path`` and its info, or ``None`` (looked up in ``con`` if given)."""
        statement = f'SELECT table_name, info FROM "{REGISTRY_TABLE}" WHERE path = ?'  # noqa: S608
        if con is None:
            with self._timed("lookup", path), self.connection(write=False) as own:
                row = own.execute(statement, (path,)).fetchone()
        else:
            row = con.execute(statement, (path,)).fetchone()
        return VersionTable(path, row[0], json.loads(row[1])) if row else None

    def table_for(self, path: str) -> str | None:
        """Physical table name registered for ``path``, or ``None``."""
        found = self.lookup(path)
        return found.table if found else None

    def info_for(self, path: str) -> dict[str, Any] | None:
        """What the format recorded for ``path`` when registering its table (``None`` if none)."""
        found = self.lookup(path)
        return found.info if found else None

    def version_paths(self) -> list[str]:
        """Logical paths of every registered version table, and of every lone version record, sorted."""
        with self._timed("version_paths", ""), self.connection(write=False) as con:
            rows = con.execute(
                f'SELECT path FROM "{REGISTRY_TABLE}" UNION '  # noqa: S608
                f'SELECT substr(path, 1, length(path) - ?) FROM "{OBJECTS_TABLE}" '
                "WHERE path GLOB '*/@v/*' AND substr(path, -?) = ? ORDER BY 1",
                (len(RECORD_SUFFIX), len(RECORD_SUFFIX), RECORD_SUFFIX),
            ).fetchall()
        return [p for (p,) in rows if not p.startswith("@")]

    # -- the Backend protocol -------------------------------------------------------

    def url_for(self, path: str) -> str:
        """Display URL: the tier URL plus ``#path``."""
        return f"{self.url}#{path}"

    def exists(self, path: str) -> bool:
        """Whether a version table or a small object is stored at ``path`` (or under it)."""
        check_path(path)
        exact, pattern = _under(path)
        with self._timed("exists", path), self.connection(write=False) as con:
            row = con.execute(
                f'SELECT EXISTS (SELECT 1 FROM "{REGISTRY_TABLE}" WHERE path = ? OR path GLOB ?) '  # noqa: S608
                f'OR EXISTS (SELECT 1 FROM "{OBJECTS_TABLE}" WHERE path = ? OR path GLOB ?)',
                (exact, pattern, exact, pattern),
            ).fetchone()
        return bool(row and row[0])

    def remove(self, path: str) -> None:
        """Drop the version tables at or under ``path`` (indexes included), delete small objects there.

        Missing is fine. Everything is removed in one transaction.
        """
        check_path(path)
        exact, pattern = _under(path)
        with self._timed("remove", path), self.connection() as con:
            con.execute(f'DELETE FROM "{OBJECTS_TABLE}" WHERE path = ? OR path GLOB ?', (exact, pattern))  # noqa: S608
            tables = [t for (t,) in con.execute(
                f'SELECT table_name FROM "{REGISTRY_TABLE}" WHERE path = ? OR path GLOB ?', (exact, pattern)  # noqa: S608
            ).fetchall()]
            con.execute(f'DELETE FROM "{REGISTRY_TABLE}" WHERE path = ? OR path GLOB ?', (exact, pattern))  # noqa: S608
            for table in tables:
                drop_table(con, table)

    def listdir(self, path: str) -> list[str]:
        """Names directly under ``path`` in the tree of stored logical paths."""
        check_path(path)
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        pattern = _under(prefix)[1] if prefix else "*"
        with self._timed("listdir", path), self.connection(write=False) as con:
            rows = con.execute(
                f'SELECT path FROM "{REGISTRY_TABLE}" WHERE path GLOB ? '  # noqa: S608
                f'UNION SELECT path FROM "{OBJECTS_TABLE}" WHERE path GLOB ?', (pattern, pattern)
            ).fetchall()
        return sorted({p[len(prefix):].split("/", 1)[0] for (p,) in rows})

    def write_bytes(self, path: str, data: bytes) -> None:
        """Store a small object at ``path``, replacing any."""
        check_path(path)
        with self._timed(f"write_bytes ({len(data)} bytes)", path), self.connection() as con:
            con.execute(
                f'INSERT INTO "{OBJECTS_TABLE}" (path, data) VALUES (?, ?) ON CONFLICT (path) '  # noqa: S608
                "DO UPDATE SET data = excluded.data, updated_at = CURRENT_TIMESTAMP",
                (path, bytes(data)),
            )

    def read_bytes(self, path: str) -> bytes:
        """Read the small object at ``path``.

        Raises
        ------
        FileNotFoundError
            When no small object is stored there.
        """
        check_path(path)
        with self._timed("read_bytes", path), self.connection(write=False) as con:
            row = con.execute(f'SELECT data FROM "{OBJECTS_TABLE}" WHERE path = ?', (path,)).fetchone()  # noqa: S608
        if row is None:
            raise FileNotFoundError(f"nothing is stored at {self.url_for(path)}")
        return bytes(row[0])

    def __repr__(self) -> str:
        return f"SQLiteBackend({self.url!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_ready"] = False
        return state


def quote(name: str) -> str:
    """``name`` as a quoted SQL identifier (``"`` doubled).

    Examples
    --------
    >>> quote('a"b')
    '"a""b"'
    """
    if "\x00" in name:
        raise ValueError("an SQL identifier cannot hold a NUL character")
    return '"' + name.replace('"', '""') + '"'


def drop_table(con: sqlite3.Connection, table: str) -> None:
    """Drop ``table`` with SpatiaLite's ``DropTable`` (metadata, index, triggers too); missing is fine."""
    found = con.execute("SELECT type FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    if found is None:
        return
    if found[0] == "view":
        con.execute(f"DROP VIEW {quote(table)}")
        return
    con.execute("SELECT DropTable(NULL, ?)", (table,))
    if con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone():
        con.execute(f"DROP TABLE {quote(table)}")
