"""Connections to a PostgreSQL tier: the libpq connection string, a lazy pool, password redaction.

psycopg and psycopg_pool are imported on first use, never when this module is imported;
the pool itself is opened by the first database operation.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from memories_geo.backends.base import redact_url
from memories_geo.errors import TierUnavailableError

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

__all__ = ["POOL_OPTIONS", "LazyPool", "conninfo", "redact"]

#: ``storage_options`` keys that configure the pool.
POOL_OPTIONS = frozenset({"min_size", "max_size", "timeout", "application_name"})


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
        a connection, default 30) and ``application_name`` (default ``"memories_geo"``).

    Notes
    -----
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

    def _open(self) -> ConnectionPool:
        import psycopg
        from psycopg_pool import ConnectionPool, PoolTimeout

        options = self._options
        timeout = float(options.get("timeout", 30))
        pool = ConnectionPool(
            self.conninfo,
            kwargs={"application_name": options.get("application_name", "memories_geo")},
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
            raise TierUnavailableError(
                f"cannot connect to {redact_url(self.url)!r}: {redact(str(exc), self._password)}"
            ) from None
        return pool

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
