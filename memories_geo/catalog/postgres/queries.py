"""SQL shared by the PostgreSQL catalog's parts: row lookups, current pointers, search, globs.

Every function takes the cursor of the caller's transaction and the catalog's
:class:`~memories_geo.catalog.postgres.connection.PostgresConnections` (for statements
qualified with its schema); values always travel as parameters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from memories_geo.catalog.model import ENTRY_COLUMNS, entry_from_row, not_found_message
from memories_geo.catalog.search import SearchFilter
from memories_geo.entry import Entry

if TYPE_CHECKING:
    import psycopg

    from memories_geo.catalog.postgres.connection import PostgresConnections

__all__ = [
    "current_pk",
    "delete_versions",
    "entries",
    "glob_regex",
    "is_pinned",
    "next_version",
    "not_found",
    "pk_of",
    "postgres_where",
    "retire_or_delete",
    "set_current",
    "visible_pk",
]

_SELECT_ENTRIES = f"SELECT {', '.join('v.' + c for c in ENTRY_COLUMNS)} FROM {{versions}} v"  # noqa: S608
_GLOB_PART = re.compile(r"\*|\?|\[[!^]?\]?[^\]]*\]|[^*?\[]+|\[")


def glob_regex(pattern: str) -> str:
    r"""The anchored POSIX regular expression matching what SQLite's ``GLOB pattern`` matches.

    ``*`` is any run of characters, ``?`` one character, ``[...]`` a set (``[^...]`` its
    complement); everything else stands for itself and matching is case-sensitive.

    Examples
    --------
    >>> glob_regex("era5/t?.[ch]*")
    '^era5/t.\\.[ch].*$'
    """
    out = []
    for part in _GLOB_PART.findall(pattern):
        if part == "*":
            out.append(".*")
        elif part == "?":
            out.append(".")
        elif part.startswith("[") and part.endswith("]") and len(part) > 1:
            body = part[1:-1]
            negate = body[:1] in ("^", "!")
            body = body[1:] if negate else body
            body = body.replace("\\", "\\\\")
            out.append(f"[{'^' if negate else ''}{body}]")
        else:
            out.append(re.sub(r"([\\.^$|?*+()\[\]{}])", r"\\\1", part))
    return "^" + "".join(out) + "$"


def entries(
    cur: psycopg.Cursor[Any], db: PostgresConnections, where: str, params: Sequence[Any] = ()
) -> list[Entry]:
    """Entries of the ``versions v`` rows matching ``where`` (a fixed template), by key then version."""
    cur.execute(db.sql(f"{_SELECT_ENTRIES} WHERE {where} ORDER BY v.key, v.version"), params)
    return [entry_from_row(dict(zip(ENTRY_COLUMNS, row, strict=True))) for row in cur.fetchall()]


def _one(cur: psycopg.Cursor[Any]) -> Any:
    row = cur.fetchone()
    return None if row is None else row[0]


def current_pk(cur: psycopg.Cursor[Any], db: PostgresConnections, key: str) -> int | None:
    """Row id of ``key``'s current version (``None`` when the key does not exist)."""
    cur.execute(db.sql("SELECT current_pk FROM {keys} WHERE key = %s"), (key,))
    found = _one(cur)
    return None if found is None else int(found)


def visible_pk(cur: psycopg.Cursor[Any], db: PostgresConnections, version_id: str) -> int | None:
    """Row id of a committed or retired version."""
    cur.execute(db.sql("SELECT id FROM {versions} WHERE version_id = %s AND status <> 'staged'"),
                (version_id,))
    found = _one(cur)
    return None if found is None else int(found)


def pk_of(cur: psycopg.Cursor[Any], db: PostgresConnections, entry: Entry) -> int:
    """Row id of an entry's version."""
    cur.execute(db.sql("SELECT id FROM {versions} WHERE key = %s AND version = %s"),
                (entry.key, entry.version))
    return int(_one(cur))


def next_version(cur: psycopg.Cursor[Any], db: PostgresConnections, key: str) -> int:
    """The number the next version of ``key`` gets (call it holding the write lock)."""
    cur.execute(db.sql("SELECT COALESCE(MAX(version), 0) FROM {versions} WHERE key = %s"), (key,))
    return int(_one(cur)) + 1


def set_current(cur: psycopg.Cursor[Any], db: PostgresConnections, key: str, pk: int) -> None:
    """Point ``key`` at the version with row id ``pk``."""
    cur.execute(
        db.sql(
            "INSERT INTO {keys} (key, current_pk) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET current_pk = excluded.current_pk"
        ),
        (key, pk),
    )


def is_pinned(cur: psycopg.Cursor[Any], db: PostgresConnections, version_id: str) -> bool:
    """Whether a checkpoint pins the version."""
    cur.execute(db.sql("SELECT 1 FROM {checkpoint_versions} WHERE version_id = %s LIMIT 1"), (version_id,))
    return cur.fetchone() is not None


def delete_versions(cur: psycopg.Cursor[Any], db: PostgresConnections, pks: Sequence[int]) -> None:
    """Delete version rows with their manifests (the bbox index follows the rows)."""
    if pks:
        cur.execute(db.sql("DELETE FROM {manifests} WHERE version_pk = ANY(%s)"), (list(pks),))
        cur.execute(db.sql("DELETE FROM {versions} WHERE id = ANY(%s)"), (list(pks),))


def retire_or_delete(
    cur: psycopg.Cursor[Any], db: PostgresConnections, found: Sequence[Entry]
) -> list[Entry]:
    """Retire the versions a checkpoint pins, delete the rest; return the deleted ones."""
    purge = []
    for entry in found:
        if is_pinned(cur, db, entry.version_id):
            cur.execute(db.sql("UPDATE {versions} SET status = 'retired' WHERE version_id = %s"),
                        (entry.version_id,))
        else:
            delete_versions(cur, db, [pk_of(cur, db, entry)])
            purge.append(entry)
    return purge


def not_found(cur: psycopg.Cursor[Any], db: PostgresConnections, key: str) -> str:
    """Message for a missing ``key``, suggesting close existing keys."""
    cur.execute(db.sql("SELECT key FROM {keys} ORDER BY key"))
    return not_found_message(key, [row[0] for row in cur.fetchall()])


def postgres_where(search: SearchFilter) -> tuple[str, tuple[Any, ...]]:
    """``WHERE`` template (over ``{versions} v``) and parameters of ``search`` for PostgreSQL.

    The bbox condition (``&&``, closed boxes: touching footprints match) is answered by
    the GiST index over ``v.bbox``.
    """
    where = ["v.status = 'committed'"]
    params: list[Any] = []
    if not search.all_versions:
        where.append("v.id IN (SELECT current_pk FROM {keys})")
    if search.bbox is not None:
        minx, miny, maxx, maxy = search.bbox
        where.append("v.bbox && box(point(%s, %s), point(%s, %s))")
        params += [minx, miny, maxx, maxy]
    if search.time is not None:
        start, end = search.time
        where.append("v.time_start IS NOT NULL AND v.time_end IS NOT NULL")
        if start is not None:
            where.append("v.time_end >= %s")
            params.append(start)
        if end is not None:
            where.append("v.time_start <= %s")
            params.append(end)
    for column, values in (("tier", search.tiers), ("kind", search.kinds)):
        if values is not None:
            where.append(f"v.{column} = ANY(%s)")
            params.append(list(values))
    if search.key is not None:
        where.append("v.key ~ %s")
        params.append(glob_regex(search.key))
    return " AND ".join(where), tuple(params)

