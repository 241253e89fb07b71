"""Is TimescaleDB there? Detecting (and creating) the extension, and the one-time fallback warning."""

from __future__ import annotations

import logging
import threading
import warnings
import weakref
from typing import TYPE_CHECKING

from memories_geo.errors import TierUnavailableError

if TYPE_CHECKING:
    from memories_geo.backends.postgres import PostgresBackend

__all__ = ["TimescaleDBFallbackWarning", "partitioning_for", "timescaledb_version"]

logger = logging.getLogger(__name__)

_found: weakref.WeakKeyDictionary[PostgresBackend, str | None] = weakref.WeakKeyDictionary()
_warned: set[str] = set()
_lock = threading.Lock()


class TimescaleDBFallbackWarning(UserWarning):
    """TimescaleDB is not installed: time series go to natively partitioned tables instead."""


def timescaledb_version(backend: PostgresBackend, *, create: bool = True) -> str | None:
    """The version of the TimescaleDB extension in the tier's database, or ``None``.

    When it is not installed but the server offers it (``pg_available_extensions``) and
    ``create`` is true, ``CREATE EXTENSION IF NOT EXISTS timescaledb`` is tried; a role
    without the privilege, or a server without TimescaleDB in
    ``shared_preload_libraries``, leaves it absent. The answer is kept per backend.

    Examples
    --------
    >>> timescaledb_version(backend)  # doctest: +SKIP
    '2.17.2'
    """
    if backend in _found:
        return _found[backend]
    import psycopg

    query = "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    with backend.connection() as con:
        row = con.execute(query).fetchone()
        offered = row is None and con.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone() is not None
    if row is None and offered and create:
        try:
            with backend.connection() as con:
                con.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                row = con.execute(query).fetchone()
        except psycopg.Error as exc:
            logger.info("%s: CREATE EXTENSION timescaledb failed: %s", backend.url_for(""),
                        exc.diag.message_primary or type(exc).__name__)
            row = None
    version = str(row[0]) if row else None
    with _lock:
        _found[backend] = version
    return version


def partitioning_for(backend: PostgresBackend, asked: str) -> str:
    """``"timescaledb"`` or ``"native"``: how a new version table on ``backend`` is partitioned.

    ``asked="auto"`` uses TimescaleDB when it is (or can be) installed and otherwise
    falls back to native range partitioning, warning once per tier
    (:class:`TimescaleDBFallbackWarning`) and logging it.

    Raises
    ------
    TierUnavailableError
        For ``asked="timescaledb"`` when the extension is absent.

    Examples
    --------
    >>> partitioning_for(backend, "native")  # doctest: +SKIP
    'native'
    """
    if asked == "native":
        return "native"
    version = timescaledb_version(backend)
    if version is not None:
        return "timescaledb"
    where = backend.url_for("")
    if asked == "timescaledb":
        raise TierUnavailableError(
            f"partitioning='timescaledb' but the database of {where!r} has no TimescaleDB extension "
            "(CREATE EXTENSION timescaledb needs it installed on the server and in "
            "shared_preload_libraries); install it, or save with partitioning='auto' or 'native'"
        )
    with _lock:
        first = where not in _warned
        _warned.add(where)
    if first:
        message = (
            f"TimescaleDB is not installed in {where!r}: time series are stored in tables with native "
            "PostgreSQL range partitioning by time and resampled with date_bin (no compression, "
            "continuous aggregates as materialized views); pass partitioning='native' to silence this"
        )
        logger.warning("%s", message)
        warnings.warn(message, TimescaleDBFallbackWarning, stacklevel=2)
    return "native"
