"""The stable views: one view per key, named after it, pointing at the current version's table.

The format owns the views and their registry table ``memories_geo_views`` (key -> view
name and the version path it shows), and makes sure the PostGIS extension exists. The
backend's own tables of record are never touched here.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from memories_geo.backends.postgres import safe_identifier
from memories_geo.errors import FormatError, TierUnavailableError

if TYPE_CHECKING:
    import psycopg

    from memories_geo.backends.postgres import PostgresBackend

__all__ = ["VIEWS_TABLE", "prepare", "publish", "unpublish", "view_name_for"]

#: Registry of published views: key -> view name and the version path it shows.
VIEWS_TABLE = "memories_geo_views"

_LOCK_ID = 0x6D677677  # "mgvw": serialises creation of the views table
_prepared: weakref.WeakSet[PostgresBackend] = weakref.WeakSet()


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


def prepare(backend: PostgresBackend) -> None:
    """Make sure the PostGIS extension and the views table exist (checked once per backend).

    Raises
    ------
    TierUnavailableError
        When PostGIS is not installed in the database and cannot be created.
    """
    if backend in _prepared:
        return
    import psycopg
    from psycopg import sql

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
    _prepared.add(backend)


def publish(backend: PostgresBackend, table: str, path: str, key: str) -> None:
    """Point the view named after ``key`` at ``table`` (the version at ``path``), atomically.

    ``CREATE OR REPLACE VIEW`` is tried first (it keeps objects that depend on the
    view); when the columns changed, the view is dropped and created again in the same
    transaction, so readers always see one complete version.

    Raises
    ------
    FormatError
        When a relation of that name exists and is not this key's view.
    """
    from psycopg import sql

    prepare(backend)
    view = view_name_for(key)
    views = backend.identifier(VIEWS_TABLE)
    with backend.connection() as con:
        con.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"memories_geo view {view}",))
        owner = con.execute(
            sql.SQL("SELECT key FROM {} WHERE view_name = %s").format(views), (view,)
        ).fetchone()
        existing = con.execute(
            "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s", (backend.schema, view)
        ).fetchone()
        if existing and (owner is None or owner[0] != key or existing[0] != "v"):
            raise FormatError(
                f"cannot publish {key!r}: {backend.schema}.{view} already exists and is not this key's "
                "view; rename or drop it, or save under another key"
            )
        body = sql.SQL("SELECT * FROM {}").format(backend.identifier(table))
        target = backend.identifier(view)
        if not (existing and _replace_view(con, target, body)):
            if existing:
                con.execute(sql.SQL("DROP VIEW {}").format(target))
            con.execute(sql.SQL("CREATE VIEW {} AS {}").format(target, body))
        con.execute(
            sql.SQL(
                "INSERT INTO {} (key, view_name, path) VALUES (%s, %s, %s) ON CONFLICT (key) "
                "DO UPDATE SET view_name = excluded.view_name, path = excluded.path, updated_at = now()"
            ).format(views),
            (key, view, path),
        )


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
    """Drop the view of ``key`` (nothing happens when there is none)."""
    from psycopg import sql

    views = backend.identifier(VIEWS_TABLE)
    with backend.connection() as con:
        found = con.execute("SELECT to_regclass(%s)", (views.as_string(con),)).fetchone()
        if not found or found[0] is None:
            return
        row = con.execute(
            sql.SQL("DELETE FROM {} WHERE key = %s RETURNING view_name").format(views),
            (key,),
        ).fetchone()
        if row:
            con.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(backend.identifier(row[0])))
