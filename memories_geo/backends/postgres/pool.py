"""Connections to a PostgreSQL tier: the libpq connection string, a lazy pool, password redaction.

psycopg and psycopg_pool are imported on first use, never when this module is imported;
the pool itself is opened by the first database operation.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from memories_geo.backends.base import redact_url
from memories_geo.errors import ConfigError, TierUnavailableError

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ["CONNECT_TIMEOUT", "POOL_OPTIONS", "LazyPool", "conninfo", "prepare_threshold", "redact"]

logger = logging.getLogger(__name__)

#: ``storage_options`` keys that configure the pool.
POOL_OPTIONS = frozenset(
    {"min_size", "max_size", "timeout", "connect_timeout", "application_name", "prepare_threshold"}
)
#: Seconds libpq waits for a server to answer, unless ``connect_timeout`` is set (option or URL).
CONNECT_TIMEOUT = 5
_FIX = "check the host and port in the tier URL and that the PostgreSQL server is running"


def conninfo(url: str, password: Any = None) -> str:
    """The libpq connection URI of ``url``, with ``password`` added as a query parameter.

    The result may hold the password: never show it.

    Examples
    --------
    >>> conninfo("postgresql://me@db/gis", "s3cret")
    'postgresql://me@db/gis?password=s3cret'
    """
    if password is None:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "password"]
    query.append(("password", str(password)))
    return parts._replace(query=urlencode(query)).geturl()


def prepare_threshold(value: Any) -> int | None:
    """The ``prepare_threshold`` storage option: ``None`` (or ``"none"``) or a count of at least 0.

    Raises
    ------
    ConfigError
        For anything else.

    Examples
    --------
    >>> prepare_threshold("none") is None, prepare_threshold("0")
    (True, 0)
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ConfigError(f"prepare_threshold must be None ('none') or an integer >= 0, got {value!r}")


def redact(text: str, password: Any) -> str:
    """``text`` with every occurrence of ``password`` replaced by ``***``."""
    return text.replace(str(password), "***") if password else text


class LazyPool:
    """A psycopg connection pool opened on first use (and again after :meth:`close`).

    Parameters
    ----------
    url : str
        The tier URL (may hold a password; it is never shown).
    password : object, optional
        A password given apart from the URL.
    options : mapping
        ``min_size`` / ``max_size`` (default 1 / 4), ``timeout`` (seconds to wait for
        a free connection of the pool, default 30), ``connect_timeout`` (seconds libpq
        waits for the server to answer, default 5), ``application_name`` (default
        ``"memories_geo"``) and ``prepare_threshold`` (psycopg's: executions of a query
        before it is prepared on the server, default 5; ``None`` or ``"none"`` never
        prepares, for servers and poolers without prepared statements).

    Notes
    -----
    Opening the pool first makes one direct connection: a server nobody listens on
    fails at once with :class:`TierUnavailableError` naming the endpoint, instead of
    the pool retrying until its timeout.

    A pickled pool (a backend sent to a dask worker) arrives closed and opens again
    where it is used.
    """

    def __init__(self, url: str, password: Any, options: Mapping[str, Any]) -> None:
        self.url = url
        self._password = password
        self._options = dict(options)
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()

    @property
    def conninfo(self) -> str:
        """The libpq connection URI (may hold the password: never show it)."""
        return conninfo(self.url, self._password)

    @property
    def opened(self) -> bool:
        """Whether the pool is open (nothing connects before the first operation)."""
        return self._pool is not None

    def get(self) -> ConnectionPool:
        """The open pool (opened now if needed).

        Raises
        ------
        TierUnavailableError
            When the server cannot be reached (the message never holds the password).
        """
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = self._open()
        return self._pool

    def _connect_kwargs(self) -> dict[str, Any]:
        options = self._options
        kwargs: dict[str, Any] = {"application_name": options.get("application_name", "memories_geo")}
        if "connect_timeout" in options:
            kwargs["connect_timeout"] = int(options["connect_timeout"])
        elif "connect_timeout" not in dict(parse_qsl(urlsplit(self.url).query)):
            kwargs["connect_timeout"] = CONNECT_TIMEOUT
        if "prepare_threshold" in options:
            kwargs["prepare_threshold"] = prepare_threshold(options["prepare_threshold"])
        return kwargs

    def unavailable(self, exc: BaseException) -> TierUnavailableError:
        """The typed error for a server that cannot be reached (no password in it)."""
        reason = " ".join(self.redact(str(exc)).split()) or type(exc).__name__
        return TierUnavailableError(
            f"PostgreSQL tier {redact_url(self.url)!r} is unreachable: cannot connect ({reason}); {_FIX}"
        )

    def _open(self) -> ConnectionPool:
        import psycopg
        from psycopg_pool import ConnectionPool, PoolTimeout

        options = self._options
        timeout = float(options.get("timeout", 30))
        kwargs = self._connect_kwargs()
        start = time.perf_counter()
        try:
            psycopg.connect(self.conninfo, **kwargs).close()
        except psycopg.Error as exc:
            raise self.unavailable(exc) from None
        pool = ConnectionPool(
            self.conninfo,
            kwargs=kwargs,
            min_size=int(options.get("min_size", 1)),
            max_size=int(options.get("max_size", 4)),
            timeout=timeout,
            open=False,
            name=f"memories_geo {redact_url(self.url)}",
        )
        try:
            pool.open(wait=True, timeout=timeout)
        except (PoolTimeout, psycopg.Error) as exc:
            pool.close()
            raise self.unavailable(exc) from None
        logger.debug("%s: connection pool opened (%.1f ms)", redact_url(self.url),
                     (time.perf_counter() - start) * 1000)
        return pool

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection from the pool, inside a transaction (committed on success).

        Raises
        ------
        TierUnavailableError
            When no connection can be had: the server is down, or every pooled
            connection stayed busy for ``timeout`` seconds.
        """
        import psycopg
        from psycopg_pool import PoolTimeout

        with contextlib.ExitStack() as stack:
            pool = self.get()
            try:
                con = stack.enter_context(pool.connection())
            except PoolTimeout:
                raise TierUnavailableError(
                    f"PostgreSQL tier {redact_url(self.url)!r}: no connection within {pool.timeout:g} s "
                    f"(all {pool.max_size} pooled connections busy, or the server stopped answering); "
                    "raise max_size or timeout in storage_options, or " + _FIX
                ) from None
            except psycopg.OperationalError as exc:
                raise self.unavailable(exc) from None
            yield con

    def redact(self, text: str) -> str:
        """``text`` without this pool's password."""
        return redact(text, self._password)

    def close(self) -> None:
        """Close the pool; a later :meth:`get` opens a new one."""
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_pool=None, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
