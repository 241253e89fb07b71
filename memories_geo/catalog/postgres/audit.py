"""The PostgreSQL catalog's audit log: one row per mutating operation, numbered in commit order.

A record is a plain mapping with the keys of
:data:`~memories_geo.catalog.sqlite_audit.AUDIT_COLUMNS` (``seq`` is assigned here, from a
``BIGSERIAL``). Operations that move current pointers insert their record inside the
same transaction as the move, which holds the catalog's write lock: the sequence numbers
order the records exactly as the catalog applied them, as in SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from memories_geo.catalog.postgres.queries import glob_regex
from memories_geo.catalog.sqlite_audit import AUDIT_COLUMNS

if TYPE_CHECKING:
    import psycopg

    from memories_geo.catalog.postgres.connection import PostgresConnections

__all__ = ["PostgresAuditLog", "insert_audit"]

_INSERTED = AUDIT_COLUMNS[1:]
_NAMES = ", ".join('"user"' if c == "user" else c for c in _INSERTED)
_SELECTED = ", ".join('"user"' if c == "user" else c for c in AUDIT_COLUMNS)
_PLACEHOLDERS = ", ".join(["%s"] * len(_INSERTED))


def _values(record: MutableMapping[str, Any]) -> list[Any]:
    values = {c: record.get(c) for c in _INSERTED}
    pointers = values["pointers"]
    values["pointers"] = None if pointers is None else json.dumps(pointers, sort_keys=True)
    values["replace_all"] = bool(values["replace_all"])
    values["detail"] = str(values["detail"] or "")[:2000]
    return list(values.values())


def insert_audit(cur: psycopg.Cursor[Any], db: PostgresConnections, record: MutableMapping[str, Any]) -> int:
    """Append ``record`` inside the caller's transaction; set and return its ``seq``."""
    cur.execute(db.sql(f"INSERT INTO {{audit}} ({_NAMES}) VALUES ({_PLACEHOLDERS}) RETURNING seq"),  # noqa: S608
                _values(record))
    record["seq"] = int(cur.fetchone()[0])  # type: ignore[index]
    return int(record["seq"])


def _row(values: tuple[Any, ...]) -> dict[str, Any]:
    row = dict(zip(AUDIT_COLUMNS, values, strict=True))
    row["pointers"] = None if row["pointers"] is None else json.loads(row["pointers"])
    row["replace_all"] = bool(row["replace_all"])
    return row


class PostgresAuditLog:
    """Audit-log methods of :class:`~memories_geo.catalog.postgres.PostgresCatalog`."""

    _db: PostgresConnections

    def append_audit(self, record: MutableMapping[str, Any]) -> int:
        """Append one record in its own transaction; return its sequence number."""
        return self._db.write(lambda cur: insert_audit(cur, self._db, record))

    def audit_rows(
        self,
        *,
        operation: str | None = None,
        key: str | None = None,
        outcome: str | None = None,
        user: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[dict[str, Any]]:
        """Audit records matching every filter given, oldest first.

        ``since`` and ``until`` are ISO-8601 UTC strings compared with ``at``
        (``until`` exclusive); ``key`` may be a glob (``"era5/*"``).
        """
        clauses, params = [], []
        for column, value in (("operation", operation), ("outcome", outcome), ('"user"', user)):
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(value)
        if key is not None:
            clauses.append("key ~ %s")
            params.append(glob_regex(key))
        if since is not None:
            clauses.append("at >= %s")
            params.append(since)
        if until is not None:
            clauses.append("at < %s")
            params.append(until)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._db.read() as cur:
            cur.execute(self._db.sql(f"SELECT {_SELECTED} FROM {{audit}}{where} ORDER BY seq"), params)  # noqa: S608
            rows = cur.fetchall()
        return [_row(r) for r in rows]

    def import_audit(self, records: Iterable[MutableMapping[str, Any]]) -> int:
        """Insert records that carry their own ``seq`` (skipping known ones); return how many.

        Later records are numbered after the highest imported ``seq``, so the log stays
        in order across a catalog rebuild.
        """
        wanted = [r for r in records if r.get("seq") is not None]
        db = self._db

        def work(cur: psycopg.Cursor[Any]) -> int:
            added = 0
            for record in wanted:
                cur.execute(
                    db.sql(f"INSERT INTO {{audit}} (seq, {_NAMES}) VALUES (%s, {_PLACEHOLDERS}) "  # noqa: S608
                           "ON CONFLICT (seq) DO NOTHING"),
                    (int(record["seq"]), *_values(record)),
                )
                added += cur.rowcount
            cur.execute(db.sql(
                "SELECT setval(pg_get_serial_sequence(%s, 'seq'), "
                "GREATEST((SELECT MAX(seq) FROM {audit}), 1), (SELECT COUNT(*) > 0 FROM {audit}))"
            ), (db.qualified("audit"),))
            return added

        return db.write(work)
