"""Tables of record of a PostgreSQL tier: which version tables exist, and small objects.

Two tables in the tier's schema, created by :meth:`TablesOfRecord.create` and written
only through the methods here:

- ``memories_geo_tables`` (:data:`REGISTRY_TABLE`): logical path of a version
  (``{key}/@v/{version_id}``) -> physical table (or view) name, plus what its format
  recorded (``info``, JSON; its ``"tables"``: tables the version may share with other
  versions, dropped with the last version whose relation uses them);
- ``memories_geo_objects`` (:data:`OBJECTS_TABLE`): small objects (version records,
  checkpoint manifests) by logical path, so ``write_bytes`` / ``read_bytes`` work as on
  file tiers.

Every method takes a psycopg connection, so a caller can put it in its own transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memories_geo.records import RECORD_SUFFIX

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

__all__ = ["OBJECTS_TABLE", "REGISTRY_TABLE", "TablesOfRecord", "VersionTable", "drop_unless_used"]

#: Registry of version tables: logical path -> physical table name (+ what ``open`` needs).
REGISTRY_TABLE = "memories_geo_tables"

#: Small objects (version records, checkpoint manifests) by logical path.
OBJECTS_TABLE = "memories_geo_objects"

_LOCK_ID = 0x6D656D67  # "memg": serialises creation of the tables of record


@dataclass(frozen=True)
class VersionTable:
    """A registered version table.

    Attributes
    ----------
    path : str
        Logical path of the version (``{key}/@v/{version_id}``).
    table : str
        Physical table name (in the tier's schema).
    info : dict
        What the format recorded when it registered the table.
    """

    path: str
    table: str
    info: dict[str, Any]


def _under(path: str) -> tuple[str, str]:
    """``path`` itself and the prefix of everything under it."""
    return path, path.rstrip("/") + "/"


class TablesOfRecord:
    """SQL over the tables of record of one schema.

    Parameters
    ----------
    schema : str
        The schema holding the tables.
    """

    def __init__(self, schema: str) -> None:
        self.schema = schema

    def _id(self, name: str) -> sql.Identifier:
        from psycopg import sql

        return sql.Identifier(self.schema, name)

    def create(self, con: psycopg.Connection[Any]) -> None:
        """Create the schema and both tables if they are missing (safe to run concurrently)."""
        from psycopg import sql

        con.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        con.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        con.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " path text PRIMARY KEY, table_name text NOT NULL UNIQUE, key text NOT NULL,"
                " info jsonb NOT NULL DEFAULT '{{}}',"
                " created_at timestamptz NOT NULL DEFAULT now())"
            ).format(self._id(REGISTRY_TABLE))
        )
        con.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " path text PRIMARY KEY, data bytea NOT NULL,"
                " updated_at timestamptz NOT NULL DEFAULT now())"
            ).format(self._id(OBJECTS_TABLE))
        )

    # -- version tables -----------------------------------------------------------

    def register(
        self, con: psycopg.Connection[Any], path: str, table: str, info: Mapping[str, Any]
    ) -> None:
        """Record that the version at ``path`` is stored in ``table``, with ``info``."""
        from psycopg import sql

        con.execute(
            sql.SQL("INSERT INTO {} (path, table_name, key, info) VALUES (%s, %s, %s, %s)").format(
                self._id(REGISTRY_TABLE)
            ),
            (path, table, path.split("/@v/", 1)[0], json.dumps(dict(info))),
        )

    def update(self, con: psycopg.Connection[Any], path: str, info: Mapping[str, Any]) -> None:
        """Replace the ``info`` recorded for the version table at ``path``."""
        from psycopg import sql

        con.execute(
            sql.SQL("UPDATE {} SET info = %s WHERE path = %s").format(self._id(REGISTRY_TABLE)),
            (json.dumps(dict(info)), path),
        )

    def lookup(self, con: psycopg.Connection[Any], path: str) -> VersionTable | None:
        """The version table registered at ``path``, or ``None``."""
        from psycopg import sql

        row = con.execute(
            sql.SQL("SELECT table_name, info FROM {} WHERE path = %s").format(self._id(REGISTRY_TABLE)),
            (path,),
        ).fetchone()
        return VersionTable(path, row[0], dict(row[1])) if row else None

    def version_paths(self, con: psycopg.Connection[Any]) -> list[str]:
        """Logical path of every registered version table, and of every lone version record, sorted.

        A version record (``{path}.record.json`` under a ``/@v/`` folder) whose table is
        gone still names its version, so orphan recovery removes the record too.
        """
        from psycopg import sql

        rows = con.execute(
            sql.SQL(
                "SELECT path FROM {} UNION SELECT left(path, -length(%s)) FROM {} "
                "WHERE path LIKE %s AND right(path, length(%s)) = %s ORDER BY 1"
            ).format(self._id(REGISTRY_TABLE), self._id(OBJECTS_TABLE)),
            (RECORD_SUFFIX, "%/@v/%", RECORD_SUFFIX, RECORD_SUFFIX),
        ).fetchall()
        return [p for (p,) in rows if not p.startswith("@")]

    # -- small objects ------------------------------------------------------------

    def write_object(self, con: psycopg.Connection[Any], path: str, data: bytes) -> None:
        """Store ``data`` at ``path``, replacing what was there."""
        from psycopg import sql

        con.execute(
            sql.SQL(
                "INSERT INTO {} (path, data) VALUES (%s, %s) ON CONFLICT (path) "
                "DO UPDATE SET data = excluded.data, updated_at = now()"
            ).format(self._id(OBJECTS_TABLE)),
            (path, data),
        )

    def read_object(self, con: psycopg.Connection[Any], path: str) -> bytes | None:
        """The small object at ``path``, or ``None``."""
        from psycopg import sql

        row = con.execute(
            sql.SQL("SELECT data FROM {} WHERE path = %s").format(self._id(OBJECTS_TABLE)), (path,)
        ).fetchone()
        return bytes(row[0]) if row else None

    # -- both ---------------------------------------------------------------------

    def paths(self, con: psycopg.Connection[Any], prefix: str) -> list[str]:
        """Every stored path (version tables and small objects) starting with ``prefix``."""
        from psycopg import sql

        rows = con.execute(
            sql.SQL("SELECT path FROM {} WHERE starts_with(path, %s) "
                    "UNION SELECT path FROM {} WHERE starts_with(path, %s)").format(
                self._id(REGISTRY_TABLE), self._id(OBJECTS_TABLE)
            ),
            (prefix, prefix),
        ).fetchall()
        return [p for (p,) in rows]

    def exists(self, con: psycopg.Connection[Any], path: str) -> bool:
        """Whether anything is stored at ``path`` or under it."""
        from psycopg import sql

        query = sql.SQL(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE path = %s OR starts_with(path, %s)) "
            "OR EXISTS (SELECT 1 FROM {} WHERE path = %s OR starts_with(path, %s))"
        ).format(self._id(REGISTRY_TABLE), self._id(OBJECTS_TABLE))
        row = con.execute(query, (*_under(path), *_under(path))).fetchone()
        return bool(row and row[0])

    def remove(self, con: psycopg.Connection[Any], path: str) -> None:
        """Forget and drop the version tables at or under ``path``, and delete small objects there.

        The registered relation (a table, or a view) is dropped. A table or view
        something else depends on (a user's view) is not dropped: PostgreSQL's error is
        raised and the caller's transaction rolls back. Then each table the version's
        info lists under ``"tables"`` (tables it shares with other versions, see
        :func:`drop_unless_used`) is dropped unless another relation still depends on it.
        """
        from psycopg import sql

        delete = sql.SQL("DELETE FROM {} WHERE path = %s OR starts_with(path, %s)")
        con.execute(delete.format(self._id(OBJECTS_TABLE)), _under(path))
        rows = con.execute(
            sql.SQL(
                "DELETE FROM {} WHERE path = %s OR starts_with(path, %s) RETURNING table_name, info"
            ).format(self._id(REGISTRY_TABLE)),
            _under(path),
        ).fetchall()
        for table, info in rows:
            kind = con.execute(
                "SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (self._id(table).as_string(con),)
            ).fetchone()
            drop = "DROP VIEW IF EXISTS {}" if kind and kind[0] == "v" else "DROP TABLE IF EXISTS {}"
            con.execute(sql.SQL(drop).format(self._id(table)))
            for shared in dict(info or {}).get("tables") or []:
                if shared != table:
                    drop_unless_used(con, self._id(str(shared)))


def drop_unless_used(con: psycopg.Connection[Any], table: sql.Identifier) -> bool:
    """``DROP TABLE ... RESTRICT`` in a savepoint: ``False`` (and nothing dropped) while something uses it.

    PostgreSQL's own dependencies count the users of a table shared by several
    versions (the views of those versions): the last one removed drops it.
    """
    import psycopg
    from psycopg import sql

    try:
        with con.transaction():
            con.execute(sql.SQL("DROP TABLE IF EXISTS {} RESTRICT").format(table))
    except psycopg.errors.DependentObjectsStillExist:
        return False
    return True
