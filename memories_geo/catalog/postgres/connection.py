"""Connections to a PostgreSQL catalog: a lazy, fork-safe pool, locked write transactions, retries.

psycopg and psycopg_pool are imported on first use, never when this module is imported.
Every statement is composed with :mod:`psycopg.sql` (tables are qualified with the
catalog's schema through :class:`psycopg.sql.Identifier`) and takes its values as
parameters. The password is never shown: :attr:`PostgresConnections.label` is the
redacted URL, and errors are redacted before they are raised.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import string
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from memories_geo.config import redact_text, redact_url
from memories_geo.errors import ConfigError, TierUnavailableError

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql
    from psycopg_pool import ConnectionPool

__all__ = [
    "DEFAULT_SCHEMA",
    "POSTGRES_SCHEMES",
    "WRITE_LOCK",
    "PostgresConnections",
    "is_postgres_url",
    "split_catalog_url",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Schema of a catalog whose URL names none.
DEFAULT_SCHEMA = "memories_geo_catalog"
#: URL schemes of a PostgreSQL catalog.
POSTGRES_SCHEMES = ("postgresql", "postgres")
#: Advisory-lock name every transaction that moves current pointers takes (with the schema).
WRITE_LOCK = "memories_geo.catalog.write"
#: Attempts of a write transaction that fails to serialize (SQLSTATE 40001) or deadlocks (40P01).
ATTEMPTS = 8
_CONNECT_TIMEOUT = 5
_POOLS_LEFT_BEHIND: list[Any] = []


def _close_in(pool: ConnectionPool, pid: int) -> None:
    """Close ``pool`` when its owner is collected, in the process that opened it only."""
    if os.getpid() == pid:
        pool.close()


def is_postgres_url(location: object) -> bool:
    """Whether ``location`` is a ``postgresql://`` or ``postgres://`` URL.

    Examples
    --------
    >>> is_postgres_url("postgres://db/geo"), is_postgres_url("/data/catalog.sqlite")
    (True, False)
    """
    if not isinstance(location, str) or "://" not in location:
        return False
    return location.split("://", 1)[0].lower() in POSTGRES_SCHEMES


def split_catalog_url(url: str) -> tuple[str, str | None]:
    """The connection URL of a catalog URL, and the schema its ``schema`` parameter names.

    Examples
    --------
    >>> split_catalog_url("postgresql://me@db/geo?schema=team_a&sslmode=require")
    ('postgresql://me@db/geo?sslmode=require', 'team_a')
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [v for k, v in query if k == "schema"]
    rest = [(k, v) for k, v in query if k != "schema"]
    return parts._replace(query=urlencode(rest)).geturl(), (schemas[-1] if schemas else None)


class PostgresConnections:
    """The connections of one PostgreSQL catalog: a pool opened on first use, in this process.

    Parameters
    ----------
    url : str
        ``postgresql://user[:password]@host:port/dbname`` (libpq parameters allowed in
        the query string).
    schema : str
        Schema holding the catalog's tables.
    tables : collection of str
        Names of those tables (qualified with the schema in statements).
    options : mapping, optional
        ``min_size`` / ``max_size`` of the pool (default 1 / 4), ``timeout`` (seconds
        to wait for a free connection, default 30), ``connect_timeout`` (default 5).

    Notes
    -----
    The pool is closed when this object is collected. A pool opened in a parent process
    is left alone (never closed) in a forked child, which opens its own; a pickled
    instance arrives without a pool.
    """

    def __init__(
        self, url: str, schema: str, tables: Collection[str], options: Mapping[str, Any] | None = None
    ) -> None:
        if not urlsplit(url).path.strip("/"):
            raise ConfigError(
                f"catalog {redact_url(url)!r} names no database; use postgresql://user@host:port/dbname"
            )
        if not schema or "\x00" in schema or len(schema.encode()) > 63:
            raise ConfigError(f"catalog schema {schema!r} is not a PostgreSQL identifier (1 to 63 bytes)")
        self._conninfo = url
        self._password = urlsplit(url).password
        self.schema = schema
        self.tables = frozenset(tables)
        self.label = f"{redact_url(url)}#{schema}"
        self._options = dict(options or {})
        self._pool: ConnectionPool | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._statements: dict[str, sql.Composed] = {}

    def __repr__(self) -> str:
        return f"PostgresConnections({self.label!r})"

    # -- SQL -------------------------------------------------------------------------

    def qualified(self, table: str) -> str:
        """``"schema"."table"`` as text (for ``to_regclass``)."""
        from psycopg import sql

        quoted: str = sql.Identifier(self.schema, table).as_string(None)
        return quoted

    def sql(self, template: str) -> sql.Composed:
        """``template`` with each ``{name}`` replaced: tables qualified with the schema, others as is.

        Templates are fixed strings of this package; names are identifiers.
        """
        composed = self._statements.get(template)
        if composed is None:
            from psycopg import sql

            names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
            composed = sql.SQL(template).format(**{
                name: sql.Identifier(self.schema, name) if name in self.tables else sql.Identifier(name)
                for name in names
            })
            self._statements[template] = composed
        return composed

    # -- connections -----------------------------------------------------------------

    def redact(self, text: str) -> str:
        """``text`` without the password or any URL's credentials."""
        text = redact_text(text)
        return text.replace(self._password, "***") if self._password else text

    def unavailable(self, exc: BaseException) -> TierUnavailableError:
        """The typed error of a server that cannot be reached (no password in it)."""
        reason = " ".join(self.redact(str(exc)).split()) or type(exc).__name__
        return TierUnavailableError(
            f"PostgreSQL catalog {self.label!r} is unreachable ({reason}); check the host, port and "
            "database in the catalog URL and that the server is running"
        )

    def _pool_here(self) -> ConnectionPool:
        if self._pid != os.getpid():
            if self._pool is not None:
                _POOLS_LEFT_BEHIND.append(self._pool)
            self._pool, self._pid, self._lock = None, os.getpid(), threading.Lock()
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = self._open()
        return self._pool

    def _open(self) -> ConnectionPool:
        import psycopg
        from psycopg_pool import ConnectionPool, PoolTimeout

        options = self._options
        kwargs: dict[str, Any] = {"application_name": "memories_geo catalog"}
        if "connect_timeout" not in dict(parse_qsl(urlsplit(self._conninfo).query)):
            kwargs["connect_timeout"] = int(options.get("connect_timeout", _CONNECT_TIMEOUT))
        timeout = float(options.get("timeout", 30))
        try:
            psycopg.connect(self._conninfo, **kwargs).close()
        except psycopg.Error as exc:
            raise self.unavailable(exc) from None
        pool = ConnectionPool(
            self._conninfo, kwargs=kwargs, min_size=int(options.get("min_size", 1)),
            max_size=int(options.get("max_size", 4)), timeout=timeout, open=False,
            name=f"memories_geo catalog {self.label}",
        )
        try:
            pool.open(wait=True, timeout=timeout)
        except (PoolTimeout, psycopg.Error) as exc:
            pool.close()
            raise self.unavailable(exc) from None
        logger.debug("catalog %s: connection pool opened", self.label)
        weakref.finalize(self, _close_in, pool, os.getpid())
        return pool

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside a transaction (committed on success, else rolled back)."""
        import psycopg
        from psycopg_pool import PoolTimeout

        pool = self._pool_here()
        try:
            with pool.connection() as con:
                yield con
        except PoolTimeout:
            raise TierUnavailableError(
                f"PostgreSQL catalog {self.label!r}: no connection within {pool.timeout:g} s; "
                "the server stopped answering or every pooled connection stayed busy"
            ) from None
        except psycopg.OperationalError as exc:
            if getattr(exc, "sqlstate", None) is None:
                raise self.unavailable(exc) from None
            raise

    @contextlib.contextmanager
    def read(self) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor for reading (one transaction, committed at the end)."""
        with self.connection() as con, con.cursor() as cur:
            yield cur

    def lock(self, cur: psycopg.Cursor[Any]) -> None:
        """Take the catalog's write lock until the end of the current transaction."""
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))", (WRITE_LOCK, self.schema))

    @contextlib.contextmanager
    def transaction(self, *, lock: bool = True) -> Iterator[psycopg.Connection[Any]]:
        """One write transaction (holding the write lock when ``lock``), without retries."""
        with self.connection() as con:
            if lock:
                with con.cursor() as cur:
                    self.lock(cur)
            yield con

    def write(self, work: Callable[[psycopg.Cursor[Any]], T], *, lock: bool = True) -> T:
        """Run ``work(cursor)`` in one transaction and commit; return what it returns.

        With ``lock``, the transaction first takes the catalog's write lock, so writers
        that move current pointers (on any machine) run one after the other, in the
        order their audit records are numbered. A transaction that fails to serialize
        or deadlocks is rolled back and run again (at most :data:`ATTEMPTS` times, after
        a growing, jittered pause); ``work`` must therefore only touch the database and
        values it sets itself.
        """
        import psycopg.errors

        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self.connection() as con, con.cursor() as cur:
                    if lock:
                        self.lock(cur)
                    return work(cur)
            except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as exc:
                if attempt == ATTEMPTS:
                    raise
                pause = random.uniform(0, min(1.0, 0.01 * 2**attempt))
                logger.debug("catalog %s: %s; retry %d in %.3f s", self.label, exc.sqlstate, attempt, pause)
                time.sleep(pause)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close this process's pool; the next operation opens a new one."""
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close()
            self._pool = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_pool=None, _lock=None, _statements={})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()
        self._lock = threading.Lock()
