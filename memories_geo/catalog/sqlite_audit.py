"""The SQLite catalog's audit log: one row per mutating operation, numbered in commit order.

A record is a plain mapping with the keys of :data:`AUDIT_COLUMNS` (``seq`` is
assigned here). Operations that move current pointers (a save's commit, a deletion,
a restore) insert their record inside the same transaction as the move, so the
sequence numbers order them exactly as the catalog applied them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any

from memories_geo.catalog.sqlite_queries import connect, transaction

__all__ = ["AUDIT_COLUMNS", "SQLiteAuditLog", "insert_audit"]

AUDIT_COLUMNS = (
    "seq", "at", "user", "host", "pid", "operation", "key", "version", "version_id", "outcome",
    "detail", "pointers", "replace_all",
)
_INSERTED = AUDIT_COLUMNS[1:]


def _values(record: MutableMapping[str, Any]) -> list[Any]:
    values = {c: record.get(c) for c in _INSERTED}
    pointers = values["pointers"]
    values["pointers"] = None if pointers is None else json.dumps(pointers, sort_keys=True)
    values["replace_all"] = int(bool(values["replace_all"]))
    values["detail"] = str(values["detail"] or "")[:2000]
    return list(values.values())


def insert_audit(con: sqlite3.Connection, record: MutableMapping[str, Any]) -> int:
    """Append ``record`` inside the caller's transaction; set and return its ``seq``."""
    cur = con.execute(
        f"INSERT INTO audit ({', '.join(_INSERTED)}) VALUES ({', '.join('?' * len(_INSERTED))})",  # noqa: S608
        _values(record),
    )
    record["seq"] = int(cur.lastrowid or 0)
    return record["seq"]


def _row(values: tuple[Any, ...]) -> dict[str, Any]:
    row = dict(zip(AUDIT_COLUMNS, values, strict=True))
    row["pointers"] = None if row["pointers"] is None else json.loads(row["pointers"])
    row["replace_all"] = bool(row["replace_all"])
    return row


class SQLiteAuditLog:
    """Audit-log methods of :class:`~memories_geo.catalog.sqlite.SQLiteCatalog`."""

    path: Path

    def append_audit(self, record: MutableMapping[str, Any]) -> int:
        """Append one record in its own transaction; return its sequence number."""
        with transaction(self.path) as con:
            return insert_audit(con, record)

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
        for column, value in (("operation", operation), ("outcome", outcome), ("user", user)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if key is not None:
            clauses.append("key GLOB ?")
            params.append(key)
        if since is not None:
            clauses.append("at >= ?")
            params.append(since)
        if until is not None:
            clauses.append("at < ?")
            params.append(until)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with connect(self.path) as con:
            rows = con.execute(
                f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit{where} ORDER BY seq", params  # noqa: S608
            ).fetchall()
        return [_row(r) for r in rows]

    def import_audit(self, records: Iterable[MutableMapping[str, Any]]) -> int:
        """Insert records that carry their own ``seq`` (skipping known ones); return how many.

        Later records are numbered after the highest imported ``seq``, so the log stays
        in order across a catalog rebuild.
        """
        added = 0
        with transaction(self.path) as con:
            for record in records:
                seq = record.get("seq")
                if seq is None or con.execute("SELECT 1 FROM audit WHERE seq = ?", (seq,)).fetchone():
                    continue
                con.execute(
                    f"INSERT INTO audit (seq, {', '.join(_INSERTED)}) "  # noqa: S608
                    f"VALUES (?, {', '.join('?' * len(_INSERTED))})",
                    (int(seq), *_values(record)),
                )
                added += 1
        return added
