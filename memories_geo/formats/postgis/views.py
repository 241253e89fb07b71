"""The stable views: one view per key, named after it, pointing at the current version's table.

The format owns the views and their registry table ``memories_geo_views`` (key -> view
name and the version path it shows), and makes sure the PostGIS extension exists. The
backend's own tables of record are never touched here.

Every change to a view (publish, unpublish) runs in one transaction holding an advisory
lock on the schema-qualified view name (:func:`lock`), so changes of one view never
interleave, and a publish asks whether its version is still the current one while it
holds that lock.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from memories_geo.backends.postgres import OBJECTS_TABLE, REGISTRY_TABLE, safe_identifier
from memories_geo.errors import FormatError, TierUnavailableError

if TYPE_CHECKING:
    import psycopg

    from memories_geo.backends.postgres import PostgresBackend

__all__ = [
    "VIEWS_TABLE",
    "check_free",
    "is_published",
    "lock",
    "prepare",
    "publish",
    "published_keys",
    "unpublish",
    "view_name_for",
]

#: Registry of published views: key -> view name and the version path it shows.
VIEWS_TABLE = "memories_geo_views"

_LOCK_ID = 0x6D677677  # "mgvw": serialises creation of the views table
_prepared: weakref.WeakSet[PostgresBackend] = weakref.WeakSet()
_views_ready: weakref.WeakSet[PostgresBackend] = weakref.WeakSet()

_RELKINDS = {
    "r": "table", "p": "partitioned table", "v": "view", "m": "materialized view", "i": "index",
    "I": "partitioned index", "S": "sequence", "f": "foreign table", "c": "composite type",
    "t": "TOAST table",
}


def view_name_for(key: str) -> str:
    """Name of the stable view of ``key``: the key itself when PostgreSQL can hold it.

    Keys longer than 63 bytes of UTF-8 are cut to their first 50 bytes (on a character
    boundary) followed by ``~`` and 12 hex digits of a hash of the whole key.

    Examples
    --------
    >>> view_name_for("roads/paris")
    'roads/paris'
    """
    return safe_identifier(key)


def prepare(backend: PostgresBackend, *, postgis: bool = True) -> None:
    """Make sure the PostGIS extension and the views table exist (checked once per backend).

    ``postgis=False`` prepares the views table alone (tables without geometry need no
    PostGIS).

    Raises
    ------
    TierUnavailableError
        When PostGIS is not installed in the database and cannot be created.
    """
    if backend in _prepared or (not postgis and backend in _views_ready):
        return
    import psycopg
    from psycopg import sql

    has_postgis: Any = not postgis
    if postgis:
        with backend.connection() as con:
            has_postgis = con.execute("SELECT 1 FROM pg_extension WHERE extname = 'postgis'").fetchone()
    if not has_postgis:
        try:
            with backend.connection() as con:
                con.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        except psycopg.Error as exc:
            raise TierUnavailableError(
                f"the database {backend.url_for('')!r} has no PostGIS extension and it could not "
                f"be created ({exc.diag.message_primary}); run CREATE EXTENSION postgis as a "
                "privileged user"
            ) from None
    with backend.connection() as con:
        con.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        con.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " key text PRIMARY KEY, view_name text NOT NULL UNIQUE, path text NOT NULL,"
                " updated_at timestamptz NOT NULL DEFAULT now())"
            ).format(backend.identifier(VIEWS_TABLE))
        )
    _views_ready.add(backend)
    if postgis:
        _prepared.add(backend)


def lock(con: psycopg.Connection[Any], backend: PostgresBackend, key: str) -> None:
    """Take, for the rest of ``con``'s transaction, the lock that serialises changes to ``key``'s view.

    The lock is a transaction-level advisory lock whose id is a stable 64-bit hash of
    the schema-qualified view name, the same from every client and server version.

    Examples
    --------
    >>> with backend.connection() as con:  # doctest: +SKIP
    ...     lock(con, backend, "roads/paris")
    """
    qualified = f"memories_geo view {backend.schema}.{view_name_for(key)}".encode()
    lock_id = int.from_bytes(hashlib.blake2b(qualified, digest_size=8).digest(), "big", signed=True)
    con.execute("SELECT pg_advisory_xact_lock(%s)", (lock_id,))


def _conflict(con: psycopg.Connection[Any], backend: PostgresBackend, key: str) -> str | None:
    """What holds the view name of ``key`` without being its view, described; ``None`` if nothing."""
    from psycopg import sql

    view = view_name_for(key)
    where = f"{backend.schema}.{view}"
    if view in {REGISTRY_TABLE, OBJECTS_TABLE, VIEWS_TABLE}:
        return f"{where} is one of memories_geo's own tables"
    owner = None
    if _exists(con, backend, VIEWS_TABLE):
        query = sql.SQL("SELECT key FROM {} WHERE view_name = %s").format(backend.identifier(VIEWS_TABLE))
        found = con.execute(query, (view,)).fetchone()
        owner = found[0] if found else None
    if owner is not None and owner != key:
        return f"{where} is the view of the key {owner!r}"
    relation = con.execute(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s", (backend.schema, view)
    ).fetchone()
    if relation is not None:
        if relation[0] == "v" and owner == key:
            return None
        kind = _RELKINDS.get(relation[0], "relation")
        return f"{where} already exists ({kind}) and is not this key's view"
    type_found = con.execute(
        "SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE n.nspname = %s AND t.typname = %s", (backend.schema, view)
    ).fetchone()
    if type_found:
        return f"a type named {where} already exists (a view needs that name for its row type)"
    return None


def _refuse(key: str, conflict: str) -> FormatError:
    return FormatError(
        f"cannot save {key!r} in PostGIS: its view would be named {view_name_for(key)!r}, but {conflict}; "
        "rename or drop that relation, or save under another key"
    )


def check_free(backend: PostgresBackend, key: str) -> None:
    """Refuse ``key`` when its view name is held by anything other than its own view.

    Run before a version is written, so a save that could not be published is refused
    before it is committed.

    Raises
    ------
    FormatError
        Naming the relation (or type) that holds the name: a user's table, another
        key's view, one of the library's own tables.

    Examples
    --------
    >>> check_free(backend, "roads/paris")  # doctest: +SKIP
    """
    with backend.connection() as con:
        conflict = _conflict(con, backend, key)
    if conflict is not None:
        raise _refuse(key, conflict)


def publish(
    backend: PostgresBackend,
    path: str,
    key: str,
    *,
    is_current: Callable[[], bool] | None = None,
    postgis: bool = True,
) -> bool:
    """Point the view named after ``key`` at the table of the version at ``path``, atomically.

    Under :func:`lock`, ``is_current()`` (when given) is asked whether the version is
    still the key's current one; when it says no, the view is left as it is. Since a
    version is committed before it is published, the last swap of a view is always
    that of the current version. ``CREATE OR REPLACE VIEW`` is tried first (it keeps
    objects that depend on the view); when the columns changed, the view is dropped and
    created again in the same transaction, so readers always see one complete version.
    ``postgis=False`` publishes a table without geometry (no PostGIS needed, see
    :func:`prepare`).

    Returns
    -------
    bool
        ``True`` when the view was swapped, ``False`` when ``is_current()`` said no.

    Raises
    ------
    FormatError
        When a relation of that name exists and is not this key's view, or no table is
        registered at ``path``.
    """
    from psycopg import sql

    prepare(backend, postgis=postgis)
    view = view_name_for(key)
    with backend.connection() as con:
        lock(con, backend, key)
        if is_current is not None and not is_current():
            return False
        found = backend.lookup(path, con=con)
        if found is None:
            raise FormatError(f"cannot publish {key!r}: no table is registered at {backend.url_for(path)}")
        conflict = _conflict(con, backend, key)
        if conflict is not None:
            raise _refuse(key, conflict)
        body = sql.SQL("SELECT * FROM {}").format(backend.identifier(found.table))
        target = backend.identifier(view)
        replaced = _exists(con, backend, view) and _replace_view(con, target, body)
        if not replaced:
            con.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(target))
            con.execute(sql.SQL("CREATE VIEW {} AS {}").format(target, body))
        con.execute(
            sql.SQL(
                "INSERT INTO {} (key, view_name, path) VALUES (%s, %s, %s) ON CONFLICT (key) "
                "DO UPDATE SET view_name = excluded.view_name, path = excluded.path, updated_at = now()"
            ).format(backend.identifier(VIEWS_TABLE)),
            (key, view, path),
        )
    return True


def is_published(backend: PostgresBackend, path: str, key: str) -> bool:
    """Whether the view of ``key`` exists and reads the table of the version at ``path``.

    Both the registry row and the view's own dependencies (``pg_depend``) must say so:
    a view dropped or redefined by hand counts as not published.

    Examples
    --------
    >>> is_published(backend, "roads/paris/@v/20240101T000000000Z-0a1b2c3d", "roads/paris")  # doctest: +SKIP
    True
    """
    from psycopg import sql

    view = view_name_for(key)
    with backend.connection() as con:
        if not _exists(con, backend, VIEWS_TABLE):
            return False
        row = con.execute(
            sql.SQL("SELECT path FROM {} WHERE key = %s").format(backend.identifier(VIEWS_TABLE)), (key,)
        ).fetchone()
        found = backend.lookup(path, con=con)
        if row is None or row[0] != path or found is None:
            return False
        reads = con.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_rewrite r "
            "JOIN pg_class v ON v.oid = r.ev_class AND v.relkind = 'v' "
            "JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid "
            "WHERE r.ev_class = to_regclass(%s) AND d.refclassid = 'pg_class'::regclass "
            "AND d.refobjid = to_regclass(%s))",
            (backend.identifier(view).as_string(con), backend.identifier(found.table).as_string(con)),
        ).fetchone()
    return bool(reads and reads[0])


def published_keys(backend: PostgresBackend) -> list[str]:
    """Keys that have a view in the backend's schema, as the views table records them.

    Examples
    --------
    >>> published_keys(backend)  # doctest: +SKIP
    ['roads/paris']
    """
    from psycopg import sql

    with backend.connection() as con:
        if not _exists(con, backend, VIEWS_TABLE):
            return []
        rows = con.execute(sql.SQL("SELECT key FROM {} ORDER BY key").format(backend.identifier(VIEWS_TABLE)))
        return [row[0] for row in rows]


def _exists(con: psycopg.Connection[Any], backend: PostgresBackend, name: str) -> bool:
    """Whether a relation named ``name`` exists in the backend's schema."""
    found = con.execute("SELECT to_regclass(%s)", (backend.identifier(name).as_string(con),)).fetchone()
    return bool(found and found[0] is not None)


def _replace_view(con: psycopg.Connection[Any], target: Any, body: Any) -> bool:
    """``CREATE OR REPLACE VIEW`` in a savepoint; ``False`` when the columns changed."""
    import psycopg
    from psycopg import sql

    try:
        with con.transaction():
            con.execute(sql.SQL("CREATE OR REPLACE VIEW {} AS {}").format(target, body))
    except (psycopg.errors.InvalidTableDefinition, psycopg.errors.FeatureNotSupported):
        return False
    return True


def unpublish(backend: PostgresBackend, key: str) -> None:
    """Drop the view of ``key`` under :func:`lock` (nothing happens when there is none)."""
    from psycopg import sql

    views = backend.identifier(VIEWS_TABLE)
    with backend.connection() as con:
        if not _exists(con, backend, VIEWS_TABLE):
            return
        lock(con, backend, key)
        row = con.execute(
            sql.SQL("DELETE FROM {} WHERE key = %s RETURNING view_name").format(views),
            (key,),
        ).fetchone()
        if row:
            con.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(backend.identifier(row[0])))
