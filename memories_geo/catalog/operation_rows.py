"""Operation records and alert events as catalog rows: shared by the SQLite and PostgreSQL catalogs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from memories_geo.operations import OperationRecord

__all__ = ["OPERATION_COLUMNS", "epoch", "event_json", "operation_from_row", "operation_row"]

#: Columns of the ``operations`` table, in row order.
OPERATION_COLUMNS = (
    "at", "operation", "key", "version", "tier", "format", "seconds", "bytes", "requests",
    "outcome", "error", "detail",
)


def epoch(moment: datetime) -> float:
    """Seconds since the epoch of ``moment`` (a naive one is UTC).

    Examples
    --------
    >>> epoch(datetime(1970, 1, 1, 0, 1))
    60.0
    """
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def operation_row(record: OperationRecord) -> tuple[Any, ...]:
    """The row of ``record``, in :data:`OPERATION_COLUMNS` order (``detail`` as JSON)."""
    r = record
    return (epoch(r.at), r.operation, r.key, r.version, r.tier, r.format, float(r.seconds), int(r.bytes),
            int(r.requests), r.outcome, r.error, json.dumps(dict(r.detail), default=str))


def operation_from_row(row: tuple[Any, ...]) -> OperationRecord:
    """The record of a row read in :data:`OPERATION_COLUMNS` order."""
    at, operation, key, version, tier, fmt, seconds, nbytes, requests, outcome, error, detail = row
    return OperationRecord(
        operation, datetime.fromtimestamp(at, UTC), seconds, outcome, key=key, version=version,
        tier=tier, format=fmt, bytes=nbytes, requests=requests, error=error, detail=json.loads(detail),
    )


def event_json(event: Mapping[str, Any]) -> str:
    """An alert event as stored (JSON; values it cannot hold as their string)."""
    return json.dumps(dict(event), default=str)
