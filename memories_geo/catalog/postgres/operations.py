"""The PostgreSQL catalog's operation records and alert history (monitoring side tables)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from memories_geo.catalog.operation_rows import (
    OPERATION_COLUMNS,
    epoch,
    event_json,
    operation_from_row,
    operation_row,
)
from memories_geo.operations import OperationRecord

if TYPE_CHECKING:
    from memories_geo.catalog.postgres.connection import PostgresConnections

__all__ = ["PostgresOperations"]

_NAMES = ", ".join(OPERATION_COLUMNS)
_PLACEHOLDERS = ", ".join(["%s"] * len(OPERATION_COLUMNS))
_FILES = (
    "CASE jsonb_typeof(m.manifest::jsonb -> 'files') "
    "WHEN 'object' THEN (SELECT COUNT(*) FROM jsonb_object_keys(m.manifest::jsonb -> 'files')) "
    "WHEN 'array' THEN jsonb_array_length(m.manifest::jsonb -> 'files') ELSE 0 END"
)


class PostgresOperations:
    """Operation records and alert history of :class:`~memories_geo.catalog.postgres.PostgresCatalog`."""

    _db: PostgresConnections

    def add_operations(self, records: Iterable[OperationRecord]) -> None:
        """Append operation records in one transaction."""
        rows = [operation_row(r) for r in records]
        if not rows:
            return
        self._db.write(lambda cur: cur.executemany(
            self._db.sql(f"INSERT INTO {{operations}} ({_NAMES}) VALUES ({_PLACEHOLDERS})"),  # noqa: S608
            rows,
        ), lock=False)

    def operations(
        self, *, since: datetime | None = None, until: datetime | None = None,
        operations: Sequence[str] | None = None,
    ) -> list[OperationRecord]:
        """Operation records started in ``[since, until]``, of the named operations, oldest first."""
        clauses: list[str] = []
        params: list[Any] = []
        if since is not None:
            clauses.append("at >= %s")
            params.append(epoch(since))
        if until is not None:
            clauses.append("at <= %s")
            params.append(epoch(until))
        if operations is not None:
            clauses.append("operation = ANY(%s)")
            params.append(list(operations))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._db.read() as cur:
            cur.execute(self._db.sql(f"SELECT {_NAMES} FROM {{operations}}{where} ORDER BY at, id"), params)  # noqa: S608
            rows = cur.fetchall()
        return [operation_from_row(row) for row in rows]

    def prune_operations(self, before: datetime) -> int:
        """Delete operation records started before ``before``; return how many."""
        def work(cur: Any) -> int:
            cur.execute(self._db.sql("DELETE FROM {operations} WHERE at < %s"), (epoch(before),))
            return int(cur.rowcount)

        return self._db.write(work, lock=False)

    def add_alert_event(self, name: str, at: datetime, event: Mapping[str, Any]) -> None:
        """Keep one fired alert (``event`` is JSON-serialisable) in the alert history."""
        self._db.write(lambda cur: cur.execute(
            self._db.sql("INSERT INTO {alert_events} (at, name, event) VALUES (%s, %s, %s)"),
            (epoch(at), name, event_json(event)),
        ), lock=False)

    def alert_events(self, *, name: str | None = None, since: datetime | None = None) -> list[dict[str, Any]]:
        """Fired alerts (the mappings given to :meth:`add_alert_event`), oldest first."""
        clauses: list[str] = []
        params: list[Any] = []
        if name is not None:
            clauses.append("name = %s")
            params.append(name)
        if since is not None:
            clauses.append("at >= %s")
            params.append(epoch(since))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._db.read() as cur:
            cur.execute(self._db.sql(f"SELECT event FROM {{alert_events}}{where} ORDER BY at, id"), params)  # noqa: S608
            rows = cur.fetchall()
        return [json.loads(event) for (event,) in rows]

    def tier_totals(self) -> dict[str, dict[str, int]]:
        """Per tier: ``versions``, ``bytes`` and ``objects`` (files) of every stored version.

        Committed and retired versions count (staged ones are not stored yet).
        """
        with self._db.read() as cur:
            cur.execute(self._db.sql(
                f"SELECT v.tier, COUNT(*), COALESCE(SUM(v.size_bytes), 0), COALESCE(SUM({_FILES}), 0) "  # noqa: S608
                "FROM {versions} v LEFT JOIN {manifests} m ON m.version_pk = v.id "
                "WHERE v.status <> 'staged' GROUP BY v.tier"
            ))
            rows = cur.fetchall()
        return {
            tier: {"versions": int(n), "bytes": int(size), "objects": int(objects)}
            for tier, n, size, objects in rows
        }

    def tier_bytes(self, tier: str) -> int:
        """Bytes of every stored version on ``tier`` (what counts towards its quota)."""
        with self._db.read() as cur:
            cur.execute(
                self._db.sql("SELECT COALESCE(SUM(size_bytes), 0) FROM {versions} "
                             "WHERE tier = %s AND status <> 'staged'"),
                (tier,),
            )
            row = cur.fetchone()
        return int(row[0]) if row else 0
