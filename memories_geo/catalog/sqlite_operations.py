"""The SQLite catalog's operation records and alert history (monitoring side tables)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from memories_geo.catalog.operation_rows import (
    OPERATION_COLUMNS,
    epoch,
    event_json,
    operation_from_row,
    operation_row,
)
from memories_geo.catalog.sqlite_queries import connect, transaction
from memories_geo.operations import OperationRecord

__all__ = ["SQLiteOperations"]



class SQLiteOperations:
    """Operation-record and alert-history methods of :class:`~memories_geo.catalog.sqlite.SQLiteCatalog`."""

    path: Path

    def add_operations(self, records: Iterable[OperationRecord]) -> None:
        """Append operation records in one transaction."""
        rows = [operation_row(r) for r in records]
        if not rows:
            return
        with transaction(self.path) as con:
            con.executemany(
                f"INSERT INTO operations ({', '.join(OPERATION_COLUMNS)}) "  # noqa: S608
                f"VALUES ({', '.join('?' * len(OPERATION_COLUMNS))})",
                rows,
            )

    def operations(
        self, *, since: datetime | None = None, until: datetime | None = None,
        operations: Sequence[str] | None = None,
    ) -> list[OperationRecord]:
        """Operation records started in ``[since, until]``, of the named operations, oldest first."""
        clauses: list[str] = []
        params: list[Any] = []
        if since is not None:
            clauses.append("at >= ?")
            params.append(epoch(since))
        if until is not None:
            clauses.append("at <= ?")
            params.append(epoch(until))
        if operations is not None:
            clauses.append(f"operation IN ({', '.join('?' * len(operations))})")
            params.extend(operations)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with connect(self.path) as con:
            rows = con.execute(
                f"SELECT {', '.join(OPERATION_COLUMNS)} FROM operations{where} ORDER BY at, id", params  # noqa: S608
            ).fetchall()
        return [operation_from_row(row) for row in rows]

    def prune_operations(self, before: datetime) -> int:
        """Delete operation records started before ``before``; return how many."""
        with transaction(self.path) as con:
            return con.execute("DELETE FROM operations WHERE at < ?", (epoch(before),)).rowcount

    def add_alert_event(self, name: str, at: datetime, event: Mapping[str, Any]) -> None:
        """Keep one fired alert (``event`` is JSON-serialisable) in the alert history."""
        with transaction(self.path) as con:
            con.execute(
                "INSERT INTO alert_events (at, name, event) VALUES (?, ?, ?)",
                (epoch(at), name, event_json(event)),
            )

    def alert_events(self, *, name: str | None = None, since: datetime | None = None) -> list[dict[str, Any]]:
        """Fired alerts (the mappings given to :meth:`add_alert_event`), oldest first."""
        clauses: list[str] = []
        params: list[Any] = []
        if name is not None:
            clauses.append("name = ?")
            params.append(name)
        if since is not None:
            clauses.append("at >= ?")
            params.append(epoch(since))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with connect(self.path) as con:
            rows = con.execute(f"SELECT event FROM alert_events{where} ORDER BY at, id", params).fetchall()  # noqa: S608
        return [json.loads(event) for (event,) in rows]

    def tier_totals(self) -> dict[str, dict[str, int]]:
        """Per tier: ``versions``, ``bytes`` and ``objects`` (files) of every stored version.

        Committed and retired versions count (staged ones are not stored yet).
        """
        with connect(self.path) as con:
            rows = con.execute(
                "SELECT v.tier, COUNT(*), COALESCE(SUM(v.size_bytes), 0), "
                "COALESCE(SUM((SELECT COUNT(*) FROM json_each(m.manifest, '$.files'))), 0) "
                "FROM versions v LEFT JOIN manifests m ON m.version_pk = v.id "
                "WHERE v.status != 'staged' GROUP BY v.tier"
            ).fetchall()
        return {tier: {"versions": n, "bytes": size, "objects": objects} for tier, n, size, objects in rows}

    def tier_bytes(self, tier: str) -> int:
        """Bytes of every stored version on ``tier`` (what counts towards its quota)."""
        with connect(self.path) as con:
            (size,) = con.execute(
                "SELECT COALESCE(SUM(size_bytes), 0) FROM versions WHERE tier = ? AND status != 'staged'",
                (tier,),
            ).fetchone()
        return int(size)
