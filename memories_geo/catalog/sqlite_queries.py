"""SQL shared by the SQLite catalog's parts: connections, row lookups, current pointers."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from memories_geo.catalog.model import ENTRY_COLUMNS, entry_from_row, not_found_message
from memories_geo.entry import Entry

__all__ = [
    "connect",
    "current_pk",
    "delete_versions",
    "entries",
    "index_bbox",
    "is_pinned",
    "next_version",
    "not_found",
    "pk_of",
    "retire_or_delete",
    "set_current",
    "transaction",
    "visible_pk",
]

_SELECT_ENTRIES = f"SELECT {', '.join('v.' + c for c in ENTRY_COLUMNS)} FROM versions v"  # noqa: S608


@contextlib.contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A short-lived autocommit connection with foreign keys on and a 60 s busy timeout."""
    con = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("PRAGMA busy_timeout=60000")
        yield con
    finally:
        con.close()


@contextlib.contextmanager
def transaction(path: Path) -> Iterator[sqlite3.Connection]:
    """A write transaction (``BEGIN IMMEDIATE``): all or nothing."""
    with connect(path) as con:
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")


def entries(con: sqlite3.Connection, where: str, params: Sequence[Any] = ()) -> list[Entry]:
    """Entries of the ``versions v`` rows matching ``where``, by key then version."""
    sql = f"{_SELECT_ENTRIES} WHERE {where} ORDER BY v.key, v.version"
    return [entry_from_row(dict(zip(ENTRY_COLUMNS, row, strict=True))) for row in con.execute(sql, params)]


def current_pk(con: sqlite3.Connection, key: str) -> int | None:
    """Row id of ``key``'s current version (``None`` when the key does not exist)."""
    row = con.execute("SELECT current_pk FROM keys WHERE key = ?", (key,)).fetchone()
    return None if row is None else int(row[0])


def visible_pk(con: sqlite3.Connection, version_id: str) -> int | None:
    """Row id of a committed or retired version."""
    row = con.execute(
        "SELECT id FROM versions WHERE version_id = ? AND status != 'staged'", (version_id,)
    ).fetchone()
    return None if row is None else int(row[0])


def pk_of(con: sqlite3.Connection, entry: Entry) -> int:
    """Row id of an entry's version."""
    (pk,) = con.execute(
        "SELECT id FROM versions WHERE key = ? AND version = ?", (entry.key, entry.version)
    ).fetchone()
    return int(pk)


def next_version(con: sqlite3.Connection, key: str) -> int:
    """The number the next version of ``key`` gets."""
    (last,) = con.execute("SELECT COALESCE(MAX(version), 0) FROM versions WHERE key = ?", (key,)).fetchone()
    return int(last) + 1


def set_current(con: sqlite3.Connection, key: str, pk: int) -> None:
    """Point ``key`` at the version with row id ``pk``."""
    con.execute(
        "INSERT INTO keys (key, current_pk) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET current_pk = excluded.current_pk",
        (key, pk),
    )


def index_bbox(con: sqlite3.Connection, pk: int, row: Mapping[str, Any]) -> None:
    """Add a version's EPSG:4326 bbox (if it has one) to the R*Tree index."""
    if row.get("minx") is not None:
        con.execute(
            "INSERT INTO versions_bbox (id, minx, maxx, miny, maxy) VALUES (?, ?, ?, ?, ?)",
            (pk, row["minx"], row["maxx"], row["miny"], row["maxy"]),
        )


def is_pinned(con: sqlite3.Connection, version_id: str) -> bool:
    """Whether a checkpoint pins the version."""
    row = con.execute(
        "SELECT 1 FROM checkpoint_versions WHERE version_id = ? LIMIT 1", (version_id,)
    ).fetchone()
    return row is not None


def delete_versions(con: sqlite3.Connection, pks: Sequence[int], *, rtree: bool) -> None:
    """Delete version rows with their manifests and index entries."""
    for pk in pks:
        con.execute("DELETE FROM manifests WHERE version_pk = ?", (pk,))
        if rtree:
            con.execute("DELETE FROM versions_bbox WHERE id = ?", (pk,))
        con.execute("DELETE FROM versions WHERE id = ?", (pk,))


def retire_or_delete(con: sqlite3.Connection, found: Sequence[Entry], *, rtree: bool) -> list[Entry]:
    """Retire the versions a checkpoint pins, delete the rest; return the deleted ones."""
    purge = []
    for entry in found:
        if is_pinned(con, entry.version_id):
            con.execute("UPDATE versions SET status = 'retired' WHERE version_id = ?", (entry.version_id,))
        else:
            delete_versions(con, [pk_of(con, entry)], rtree=rtree)
            purge.append(entry)
    return purge


def not_found(con: sqlite3.Connection, key: str) -> str:
    """Message for a missing ``key``, suggesting close existing keys."""
    keys = [row[0] for row in con.execute("SELECT key FROM keys ORDER BY key")]
    return not_found_message(key, keys)
