"""Connections to a SQLite tier: WAL, a busy timeout, and SpatiaLite loaded on each one.

Python's :mod:`sqlite3` loads extensions with ``Connection.enable_load_extension`` when
it was built with them. Interpreters built without (pyenv's default) still link the
SQLite library, whose C API can load them: the connection's ``sqlite3*`` handle is
taken from an auto-extension hook (:c:func:`sqlite3_auto_extension`, called by SQLite
for each connection it opens) and SpatiaLite is loaded through
:c:func:`sqlite3_load_extension`, enabled only for that call. Either way the SQL
function ``load_extension()`` stays disabled.
"""

from __future__ import annotations

import contextlib
import ctypes
import sqlite3
import threading
from collections.abc import Iterator
from functools import cache
from typing import Any

from memories_geo.errors import TierUnavailableError

__all__ = ["DEFAULT_LIBRARY", "INSTALL_HINT", "connect", "transaction"]

#: Extension loaded by default (found on the library path, e.g. ``/usr/lib/x86_64-linux-gnu``).
DEFAULT_LIBRARY = "mod_spatialite"

#: How to install SpatiaLite on Debian and Ubuntu.
INSTALL_HINT = "apt install libsqlite3-mod-spatialite"

_HOOK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_opening = threading.local()


def _entry(db: int | None, _errors: Any, _api: Any) -> int:
    if getattr(_opening, "capture", False):
        _opening.db = db
    return 0


_hook = _HOOK(_entry)


@cache
def _sqlite_library() -> Any:
    """The SQLite library :mod:`sqlite3` uses, through ctypes."""
    import _sqlite3

    lib = ctypes.CDLL(_sqlite3.__file__)
    lib.sqlite3_libversion.restype = ctypes.c_char_p
    found = lib.sqlite3_libversion().decode()
    if found != sqlite3.sqlite_version:
        raise TierUnavailableError(
            f"cannot load SpatiaLite: the SQLite library reached through ctypes ({found}) is not the "
            f"one Python's sqlite3 uses ({sqlite3.sqlite_version})"
        )
    lib.sqlite3_auto_extension.argtypes = [ctypes.c_void_p]
    lib.sqlite3_enable_load_extension.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.sqlite3_load_extension.argtypes = [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)
    ]
    lib.sqlite3_free.argtypes = [ctypes.c_void_p]
    return lib


def _missing(library: str, reason: str) -> TierUnavailableError:
    return TierUnavailableError(
        f"the SpatiaLite extension {library!r} cannot be loaded ({reason}); install it with "
        f"`{INSTALL_HINT}` or set the tier's storage option spatialite_library to its path"
    )


def _open(path: str, timeout: float, library: str) -> sqlite3.Connection:
    if hasattr(sqlite3.Connection, "enable_load_extension"):
        con = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            con.enable_load_extension(True)
            try:
                con.load_extension(library)
            finally:
                con.enable_load_extension(False)
        except sqlite3.Error as exc:
            con.close()
            raise _missing(library, str(exc)) from None
        return con
    lib = _sqlite_library()
    # Registered before every connection: other users of the library (GDAL) may reset
    # the auto-extensions; registering one already registered does nothing.
    if lib.sqlite3_auto_extension(ctypes.cast(_hook, ctypes.c_void_p)) != 0:
        raise _missing(library, "SQLite refused the auto-extension hook")
    _opening.capture, _opening.db = True, None
    try:
        con = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    finally:
        _opening.capture = False
    db = _opening.db
    if not db:
        con.close()
        raise _missing(library, "the SQLite connection handle could not be reached")
    error = ctypes.c_char_p()
    lib.sqlite3_enable_load_extension(db, 1)
    try:
        code = lib.sqlite3_load_extension(db, library.encode(), None, ctypes.byref(error))
    finally:
        lib.sqlite3_enable_load_extension(db, 0)
    if code != 0:
        reason = (error.value or b"unknown error").decode(errors="replace")
        lib.sqlite3_free(error)
        con.close()
        raise _missing(library, reason)
    return con


def connect(path: str, *, timeout: float = 30.0, library: str = DEFAULT_LIBRARY) -> sqlite3.Connection:
    """A connection to the database file ``path`` in autocommit mode, with SpatiaLite loaded.

    The database is put in WAL mode (readers never block the writer) with
    ``synchronous=NORMAL``; a writer waits up to ``timeout`` seconds for another's lock.

    Raises
    ------
    TierUnavailableError
        When the file cannot be opened, or the extension cannot be loaded (the message
        says how to install it).

    Examples
    --------
    >>> con = connect("/tmp/doc.sqlite")  # doctest: +SKIP
    >>> con.execute("SELECT spatialite_version()").fetchone()  # doctest: +SKIP
    ('5.0.1',)
    """
    try:
        con = _open(path, timeout, library)
    except sqlite3.Error as exc:
        raise TierUnavailableError(f"cannot open the SQLite database {path!r}: {exc}") from None
    try:
        con.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.Error as exc:
        con.close()
        raise TierUnavailableError(f"cannot use the SQLite database {path!r}: {exc}") from None
    return con


@contextlib.contextmanager
def transaction(con: sqlite3.Connection, *, write: bool = True) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` (or a deferred read transaction) on ``con``: committed on success, else undone.

    A write transaction takes the database's write lock at once, so concurrent writers
    queue (for the busy timeout) instead of failing half way.
    """
    con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield con
    except BaseException:
        if con.in_transaction:  # SQLite may have rolled back already (a trigger's RAISE(ROLLBACK))
            con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
