"""PostgreSQL backend: version tables in one schema, found through a small registry table.

A PostgreSQL tier stores each version as its own table. Logical paths
(``{key}/@v/{version_id}``, as on file tiers) are mapped to physical table names by
the registry table ``memories_geo_tables``, because keys may be longer than
PostgreSQL's 63-byte identifiers and may hold any character. Physical names are a
sanitized prefix of the key plus a hash of the path, and are only ever used through
:class:`psycopg.sql.Identifier`.

psycopg and psycopg_pool are imported on first use, never when this module is imported;
the connection pool is created on first use too.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import unicodedata
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from memories_geo.backends.base import redact_url
from memories_geo.errors import ConfigError, TierUnavailableError

if TYPE_CHECKING:
    import psycopg
    from fsspec import AbstractFileSystem
    from psycopg import sql
    from psycopg_pool import ConnectionPool

__all__ = [
    "MAX_IDENTIFIER_BYTES",
    "REGISTRY_TABLE",
    "VIEWS_TABLE",
    "PostgresBackend",
    "safe_identifier",
    "table_name_for",
]

#: PostgreSQL truncates identifiers longer than this many bytes (NAMEDATALEN - 1).
MAX_IDENTIFIER_BYTES = 63

#: Registry of version tables: logical path -> physical table name (+ what ``open`` needs).
REGISTRY_TABLE = "memories_geo_tables"

#: Registry of published views: key -> view name and the version table it shows.
VIEWS_TABLE = "memories_geo_views"

_OPTION_KEYS = {
    "schema", "password", "min_size", "max_size", "timeout", "application_name", "load_partitions"
}
#: Most partitions a large load is split into (each is indexed while the next one loads).
MAX_LOAD_PARTITIONS = 8
_LOCK_ID = 0x6D656D67  # "memg": serialises creation of the registry tables


def _short_hash(text: str, n: int = 12) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()[:n]


def table_name_for(path: str) -> str:
    """Physical table name of the version stored at logical ``path``.

    Lower-case ASCII letters, digits and ``_`` taken from the key (at most 40), then
    ``__v_`` and 12 hex digits of a hash of the whole path: always a valid, unique
    identifier of at most 63 bytes, whatever the key holds.

    Examples
    --------
    >>> table_name_for("Robert'); DROP TABLE--/@v/20240101T000000000Z-0a1b2c3d")[:20]
    'robert_drop_table__v'
    """
    key = path.split("/@v/", 1)[0]
    ascii_key = unicodedata.normalize("NFKD", key).encode("ascii", "ignore").decode().lower()
    prefix = re.sub(r"[^a-z0-9]+", "_", ascii_key).strip("_")[:40].rstrip("_") or "layer"
    return f"{prefix}__v_{_short_hash(path)}"


def safe_identifier(name: str, *, reserved: frozenset[str] = frozenset()) -> str:
    """``name`` itself when PostgreSQL can hold it unchanged, else a truncated, hashed form.

    A name is kept when it has no NUL character, fits in 63 bytes of UTF-8 and is not
    in ``reserved``; otherwise it becomes its longest prefix that fits in 50 bytes
    (cut on a character boundary) plus ``~`` and 12 hex digits of a hash of the name.

    Examples
    --------
    >>> safe_identifier("select")
    'select'
    >>> len(safe_identifier("x" * 100).encode())
    63
    """
    encoded = name.encode()
    if "\x00" not in name and len(encoded) <= MAX_IDENTIFIER_BYTES and name not in reserved:
        return name
    head = encoded[:50].decode("utf-8", "ignore").replace("\x00", "")
    out = f"{head}~{_short_hash(name)}"
    return out + "_" * (MAX_IDENTIFIER_BYTES - len(out.encode())) if name in reserved else out


class PostgresBackend:
    """Version tables in a PostgreSQL (+ PostGIS) database.

    Parameters
    ----------
    url : str
        ``postgresql://user@host:port/dbname`` (``${ENV}`` references are expanded by
        the configuration). A password may be in the URL, but ``storage_options`` or
        the environment (``PGPASSWORD``, ``~/.pgpass``) are better places for it.
    storage_options : mapping, optional
        ``schema`` (default ``"public"``): where tables and views are created;
        ``password``; ``min_size`` / ``max_size`` of the connection pool (default 1 / 4);
        ``timeout`` (seconds to wait for a connection, default 30);
        ``application_name``; ``load_partitions`` (default 2, at most 8): how many
        partitions a large new version table (250,000 rows or more per partition) is
        split into so their indexes build in parallel, 1 for one plain table. Never shown.

    Notes
    -----
    Nothing connects until the first database operation. ``url_for`` and ``repr``
    never show the password.

    Examples
    --------
    >>> backend = PostgresBackend("postgresql://me:secret@db:5432/gis")
    >>> backend
    PostgresBackend('postgresql://me:***@db:5432/gis', schema='public')
    """

    supports_writes: ClassVar[bool] = True
    supports_listing: ClassVar[bool] = True
    is_database: ClassVar[bool] = True

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        options = dict(storage_options or {})
        unknown = set(options) - _OPTION_KEYS
        if unknown:
            raise ConfigError(
                f"unknown storage_options {sorted(unknown)} for a PostgreSQL tier; "
                f"valid: {sorted(_OPTION_KEYS)}"
            )
        parts = urlsplit(url)
        if not parts.path.strip("/"):
            raise ConfigError(f"{redact_url(url)!r} names no database; use postgresql://user@host:port/dbname")
        self.url = url
        self.schema = str(options.pop("schema", "public"))
        self._password = options.pop("password", None)
        self.load_partitions = _load_partitions(options.pop("load_partitions", 2))
        self._pool_options = options
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()
        self._ready = False

    # -- connections --------------------------------------------------------------

    @property
    def conninfo(self) -> str:
        """The libpq connection URI (may hold the password: never show it)."""
        if self._password is None:
            return self.url
        parts = urlsplit(self.url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "password"]
        query.append(("password", str(self._password)))
        return parts._replace(query=urlencode(query)).geturl()

    @property
    def pool(self) -> ConnectionPool:
        """The psycopg connection pool, opened on first use."""
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = self._open_pool()
        return self._pool

    def _open_pool(self) -> ConnectionPool:
        import psycopg
        from psycopg_pool import ConnectionPool, PoolTimeout

        options = self._pool_options
        kwargs: dict[str, Any] = {"application_name": options.get("application_name", "memories_geo")}
        pool = ConnectionPool(
            self.conninfo,
            kwargs=kwargs,
            min_size=int(options.get("min_size", 1)),
            max_size=int(options.get("max_size", 4)),
            timeout=float(options.get("timeout", 30)),
            open=False,
            name=f"memories_geo {redact_url(self.url)}",
        )
        try:
            pool.open(wait=True, timeout=float(options.get("timeout", 30)))
        except (PoolTimeout, psycopg.Error) as exc:
            pool.close()
            raise TierUnavailableError(
                f"cannot connect to {redact_url(self.url)!r}: {_redact(str(exc), self._password)}"
            ) from None
        return pool

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside a transaction (committed on success, else rolled back)."""
        self.ensure_ready()
        with self.pool.connection() as con:
            yield con

    def ensure_ready(self) -> None:
        """Create the schema, the PostGIS extension (if allowed) and the registry tables."""
        if self._ready:
            return
        from psycopg import sql

        with self.pool.connection() as con:
            con.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            con.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            con.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " path text PRIMARY KEY, table_name text NOT NULL UNIQUE, key text NOT NULL,"
                    " info jsonb NOT NULL DEFAULT '{{}}',"
                    " created_at timestamptz NOT NULL DEFAULT now())"
                ).format(self.identifier(REGISTRY_TABLE))
            )
            con.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " key text PRIMARY KEY, view_name text NOT NULL UNIQUE, path text NOT NULL,"
                    " updated_at timestamptz NOT NULL DEFAULT now())"
                ).format(self.identifier(VIEWS_TABLE))
            )
            has_postgis = con.execute("SELECT 1 FROM pg_extension WHERE extname = 'postgis'").fetchone()
        if not has_postgis:
            self._create_postgis()
        self._ready = True

    def _create_postgis(self) -> None:
        import psycopg

        try:
            with self.pool.connection() as con:
                con.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        except psycopg.Error as exc:
            raise TierUnavailableError(
                f"the database {redact_url(self.url)!r} has no PostGIS extension and it could not "
                f"be created ({exc.diag.message_primary}); run CREATE EXTENSION postgis as a "
                "privileged user"
            ) from None

    def identifier(self, name: str) -> sql.Identifier:
        """``schema.name`` as a quoted SQL identifier."""
        from psycopg import sql

        return sql.Identifier(self.schema, name)

    def close(self) -> None:
        """Close the connection pool (a later operation opens a new one)."""
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    # -- the Backend protocol -------------------------------------------------------

    @property
    def fs(self) -> AbstractFileSystem:
        """Not available: a PostgreSQL tier stores tables, not files."""
        raise TierUnavailableError(
            f"{redact_url(self.url)!r} is a PostgreSQL tier: it stores tables, not files, "
            "so it has no filesystem"
        )

    def full_path(self, path: str) -> str:
        """The logical path itself (tables have no filesystem path)."""
        return path

    def url_for(self, path: str) -> str:
        """Display URL: the tier URL (password removed) plus ``#schema/path``."""
        return f"{redact_url(self.url)}#{self.schema}/{path}"

    def table_for(self, path: str) -> str | None:
        """Physical table name registered for ``path``, or ``None``."""
        from psycopg import sql

        with self.connection() as con:
            row = con.execute(
                sql.SQL("SELECT table_name FROM {} WHERE path = %s").format(self.identifier(REGISTRY_TABLE)),
                (path,),
            ).fetchone()
        return row[0] if row else None

    def info_for(self, path: str) -> dict[str, Any] | None:
        """What the format recorded in the registry for ``path`` (``None`` if unknown)."""
        from psycopg import sql

        with self.connection() as con:
            row = con.execute(
                sql.SQL("SELECT info FROM {} WHERE path = %s").format(self.identifier(REGISTRY_TABLE)),
                (path,),
            ).fetchone()
        return dict(row[0]) if row else None

    def exists(self, path: str) -> bool:
        """Whether a version table is registered at ``path`` (or under it)."""
        from psycopg import sql

        with self.connection() as con:
            row = con.execute(
                sql.SQL("SELECT 1 FROM {} WHERE path = %s OR starts_with(path, %s) LIMIT 1").format(
                    self.identifier(REGISTRY_TABLE)
                ),
                (path, path.rstrip("/") + "/"),
            ).fetchone()
        return row is not None

    def remove(self, path: str) -> None:
        """Drop the version table of ``path`` (or of every version under it) and forget it.

        Missing is fine. A table something else depends on (a user's view) is not
        dropped: PostgreSQL's error is raised instead.
        """
        from psycopg import sql

        registry = self.identifier(REGISTRY_TABLE)
        with self.connection() as con:
            rows = con.execute(
                sql.SQL(
                    "DELETE FROM {} WHERE path = %s OR starts_with(path, %s) RETURNING table_name"
                ).format(registry),
                (path, path.rstrip("/") + "/"),
            ).fetchall()
            for (table,) in rows:
                con.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.identifier(table)))

    def listdir(self, path: str) -> list[str]:
        """Names directly under ``path`` in the tree of registered logical paths."""
        from psycopg import sql

        prefix = path.strip("/") + "/" if path.strip("/") else ""
        with self.connection() as con:
            rows = con.execute(
                sql.SQL("SELECT path FROM {} WHERE starts_with(path, %s)").format(
                    self.identifier(REGISTRY_TABLE)
                ),
                (prefix,),
            ).fetchall()
        return sorted({p[len(prefix):].split("/", 1)[0] for (p,) in rows})

    def version_paths(self) -> list[str]:
        """Logical paths (``{key}/@v/{version_id}``) of every version table held here."""
        from psycopg import sql

        with self.connection() as con:
            rows = con.execute(
                sql.SQL("SELECT path FROM {} ORDER BY path").format(self.identifier(REGISTRY_TABLE))
            ).fetchall()
        return [p for (p,) in rows]

    def __repr__(self) -> str:
        return f"PostgresBackend({redact_url(self.url)!r}, schema={self.schema!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_pool=None, _lock=None, _ready=False)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


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


def _redact(text: str, password: Any) -> str:
    return text.replace(str(password), "***") if password else text
