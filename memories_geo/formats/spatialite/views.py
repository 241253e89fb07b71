"""The stable views: one view per key, pointing at the current version's table, registered as a layer.

The format owns the views and their registry table ``memories_geo_views`` (key -> view
name and the version path it shows). Each view is registered in SpatiaLite's
``views_geometry_columns`` (one row per geometry column, the row id as its rowid), so
GDAL/OGR and QGIS list it as a layer. Every change to a view runs in one
``BEGIN IMMEDIATE`` transaction: changes never interleave, and a publish asks whether
its version is still the current one while it holds the database's write lock.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from memories_geo.backends.postgres.names import short_hash
from memories_geo.backends.sqlite import OBJECTS_TABLE, REGISTRY_TABLE, quote
from memories_geo.errors import FormatError

if TYPE_CHECKING:
    from memories_geo.backends.sqlite import SQLiteBackend

__all__ = [
    "VIEWS_TABLE", "check_free", "is_published", "prepare", "publish", "published_keys", "unpublish",
    "view_name_for", "view_sql",
]

#: Registry of published views: key -> view name and the version path it shows.
VIEWS_TABLE = "memories_geo_views"

_OWN = frozenset({REGISTRY_TABLE, OBJECTS_TABLE, VIEWS_TABLE})
_MAX_NAME = 100


def view_name_for(key: str) -> str:
    """Name of the stable view of ``key``: the key itself when SpatiaLite can register it unchanged.

    SpatiaLite's metadata takes lower-case names without quotes; SQLite reserves names
    starting with ``sqlite_``. Other keys (and keys over 100 characters) become a
    lower-case form of their first 50 characters plus ``~`` and 12 hex digits of a hash
    of the whole key, so two keys never share a view.

    Examples
    --------
    >>> view_name_for("roads/paris")
    'roads/paris'
    >>> view_name_for("Roads/Paris")[:12]
    'roads/paris~'
    """
    plain = (
        key == key.lower() and not re.search(r"[\"'\x00-\x1f]", key) and len(key) <= _MAX_NAME
        and not key.startswith("sqlite_") and key not in _OWN
    )
    if plain:
        return key
    base = re.sub(r"[\"'\x00-\x1f]+", "_", key.lower())[:50]
    if base.startswith("sqlite_"):
        base = "k_" + base
    return f"{base}~{short_hash(key)}"


def prepare(con: sqlite3.Connection) -> None:
    """Create the views table if it is missing (inside ``con``'s transaction)."""
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {quote(VIEWS_TABLE)} ("
        " key TEXT PRIMARY KEY, view_name TEXT NOT NULL UNIQUE COLLATE NOCASE, path TEXT NOT NULL,"
        " updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    )


def view_sql(view: str, table: str, info: Mapping[str, Any]) -> str:
    """The ``CREATE VIEW`` statement of ``view`` over ``table``: the row id, attributes and geometries."""
    names = [info["row_id"]] + [e["column"] for e in info["columns"]]
    return f"CREATE VIEW {quote(view)} AS SELECT {', '.join(quote(n) for n in names)} FROM {quote(table)}"  # noqa: S608


def _conflict(con: sqlite3.Connection, key: str) -> str | None:
    """What holds the view name of ``key`` without being its view, described; ``None`` if nothing."""
    view = view_name_for(key)
    owner = con.execute(f"SELECT key FROM {quote(VIEWS_TABLE)} WHERE view_name = ?", (view,)).fetchone()  # noqa: S608
    if owner is not None and owner[0] != key:
        return f"{view!r} is the view of the key {owner[0]!r}"
    found = con.execute(
        "SELECT type, name FROM sqlite_master WHERE name = ? COLLATE NOCASE AND type IN ('table', 'view')",
        (view,),
    ).fetchone()
    if found is None or (found[0] == "view" and owner is not None and found[1] == view):
        return None
    return f"{found[1]!r} already exists ({found[0]}) and is not this key's view"


def _refuse(key: str, conflict: str) -> FormatError:
    return FormatError(
        f"cannot save {key!r} in SpatiaLite: its view would be named {view_name_for(key)!r}, but {conflict}; "
        "rename or drop it, or save under another key"
    )


def check_free(backend: SQLiteBackend, key: str) -> None:
    """Refuse ``key`` before anything is written when its view name is held by anything but its view.

    Raises
    ------
    FormatError
        Naming the table or view that holds the name.

    Examples
    --------
    >>> check_free(backend, "roads/paris")  # doctest: +SKIP
    """
    with backend.connection() as con:
        prepare(con)
        conflict = _conflict(con, key)
    if conflict is not None:
        raise _refuse(key, conflict)


def _drop(con: sqlite3.Connection, view: str) -> None:
    con.execute("DELETE FROM views_geometry_columns WHERE view_name = ?", (view.lower(),))
    con.execute(f"DROP VIEW IF EXISTS {quote(view)}")


def publish(
    backend: SQLiteBackend, path: str, key: str, *, is_current: Callable[[], bool] | None = None
) -> bool:
    """Point the view of ``key`` at the table of the version at ``path``, in one transaction.

    Under the database's write lock, ``is_current()`` (when given) is asked whether the
    version is still the key's current one; when it says no, the view is left as it is.

    Returns
    -------
    bool
        ``True`` when the view was swapped, ``False`` when ``is_current()`` said no.

    Raises
    ------
    FormatError
        When the name is held by something that is not this key's view, or no table is
        registered at ``path``.
    """
    view = view_name_for(key)
    with backend.connection() as con:
        prepare(con)
        if is_current is not None and not is_current():
            return False
        found = backend.lookup(path, con=con)
        if found is None:
            raise FormatError(f"cannot publish {key!r}: no table is registered at {backend.url_for(path)}")
        conflict = _conflict(con, key)
        if conflict is not None:
            raise _refuse(key, conflict)
        _drop(con, view)
        con.execute(view_sql(view, found.table, found.info))
        for entry in found.info["columns"]:
            if entry.get("geometry"):
                con.execute(
                    "INSERT INTO views_geometry_columns (view_name, view_geometry, view_rowid, f_table_name, "
                    "f_geometry_column, read_only) VALUES (?, ?, ?, ?, ?, 1)",
                    (view.lower(), entry["column"], found.info["row_id"], found.table, entry["column"]),
                )
        con.execute(
            f"INSERT INTO {quote(VIEWS_TABLE)} (key, view_name, path) VALUES (?, ?, ?) ON CONFLICT (key) "  # noqa: S608
            "DO UPDATE SET view_name = excluded.view_name, path = excluded.path, "
            "updated_at = CURRENT_TIMESTAMP",
            (key, view, path),
        )
    return True


def is_published(backend: SQLiteBackend, path: str, key: str) -> bool:
    """Whether the view of ``key`` exists exactly as :func:`publish` makes it for the version at ``path``.

    A view dropped or redefined by hand counts as not published.
    """
    view = view_name_for(key)
    with backend.connection(write=False) as con:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (VIEWS_TABLE,)).fetchone():
            return False
        row = con.execute(f"SELECT path FROM {quote(VIEWS_TABLE)} WHERE key = ?", (key,)).fetchone()  # noqa: S608
        found = backend.lookup(path, con=con)
        if row is None or row[0] != path or found is None:
            return False
        defined = con.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'view' AND name = ?", (view,)
        ).fetchone()
    return defined is not None and defined[0] == view_sql(view, found.table, found.info)


def published_keys(backend: SQLiteBackend) -> list[str]:
    """Keys that have a view on ``backend``, as the views table records them."""
    with backend.connection(write=False) as con:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (VIEWS_TABLE,)).fetchone():
            return []
        return [k for (k,) in con.execute(f"SELECT key FROM {quote(VIEWS_TABLE)} ORDER BY key")]  # noqa: S608


def unpublish(backend: SQLiteBackend, key: str) -> None:
    """Drop the view of ``key`` and its layer registration (nothing happens when there is none)."""
    with backend.connection() as con:
        prepare(con)
        delete = f"DELETE FROM {quote(VIEWS_TABLE)} WHERE key = ? RETURNING view_name"  # noqa: S608
        rows = con.execute(delete, (key,)).fetchall()
        for (view,) in rows:
            _drop(con, view)
