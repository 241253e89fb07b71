"""Switching a SQLite database to WAL mode while other processes open it too."""

from __future__ import annotations

import random
import sqlite3
import time

__all__ = ["use_wal"]


def use_wal(con: sqlite3.Connection, *, timeout: float = 60.0) -> None:
    """Switch the database to WAL mode, waiting while other processes hold it.

    Changing the journal mode needs the database to itself and SQLite answers "database
    is locked" at once (no busy timeout applies), so several processes opening one
    database at the same moment retry until one of them has switched it.

    Raises
    ------
    sqlite3.OperationalError
        Another error, or the database still locked after ``timeout`` seconds.

    Examples
    --------
    >>> con = sqlite3.connect(":memory:")
    >>> use_wal(con)
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            (mode,) = con.execute("PRAGMA journal_mode").fetchone()
            if str(mode).lower() not in ("wal", "memory"):
                con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.2)
