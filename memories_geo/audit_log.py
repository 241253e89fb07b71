"""The audit log and its journal: who changed what, when, and with which outcome.

Every mutating operation (save, delete, restore, checkpoint save and delete, recover,
migration, rebuild) appends one record to the catalog's ``audit`` table. Records that
move current pointers (a save's commit, a deletion, a restore) are appended inside the
same catalog transaction as the move, so their sequence numbers order them exactly as
the catalog applied them.

Each record is also written, as one small JSON file, to the collection's *journal*
(``@journal/`` on the store that keeps checkpoint manifests). The journal survives a
lost catalog: :func:`replay` turns it back into the last committed ``key -> version``
state, which :meth:`~memories_geo.RecoveryManager.rebuild_catalog` restores.

A record holds the UTC time, the operating-system user, host and process id, the
operation, the key, version and version id it concerned, its outcome (``"ok"`` or
``"error"``) and a short detail, with any URL in it redacted. It never holds
credentials or storage options.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import posixpath
import socket
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from memories_geo.catalog import utc_now
from memories_geo.config import redact_text
from memories_geo.keys import new_id

if TYPE_CHECKING:
    import pandas as pd

    from memories_geo.backends.base import Backend

__all__ = [
    "AUDIT_FIELDS", "JOURNAL_DIR", "JOURNAL_FORMAT", "OPERATIONS", "audit_frame", "new_record",
    "read_journal", "replay", "write_journal",
]

logger = logging.getLogger(__name__)

JOURNAL_DIR = "@journal"
JOURNAL_FORMAT = "memories_geo.audit/1"
#: Operations the library records.
OPERATIONS = (
    "save", "delete", "delete_version", "restore", "checkpoint.save", "checkpoint.delete",
    "recover", "rebuild", "migrate",
)
#: Columns of :func:`audit_frame`, in order.
AUDIT_FIELDS = (
    "seq", "at", "user", "host", "pid", "operation", "key", "version", "version_id", "outcome",
    "detail",
)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def new_record(
    operation: str,
    *,
    key: str | None = None,
    version: int | None = None,
    version_id: str | None = None,
    outcome: str = "ok",
    detail: str = "",
) -> dict[str, Any]:
    """A new audit record for ``operation`` by this process, not yet numbered.

    Examples
    --------
    >>> record = new_record("delete", key="era5/t2m")
    >>> record["operation"], record["outcome"], record["pointers"]
    ('delete', 'ok', None)
    """
    if operation not in OPERATIONS:
        raise ValueError(f"unknown audit operation {operation!r}; known: {list(OPERATIONS)}")
    return {
        "seq": None, "at": utc_now(), "user": _user(), "host": socket.gethostname(), "pid": os.getpid(),
        "operation": operation, "key": key, "version": version, "version_id": version_id,
        "outcome": outcome, "detail": redact_text(str(detail))[:2000], "pointers": None,
        "replace_all": False,
    }


def write_journal(backend: Backend, record: Mapping[str, Any]) -> str:
    """Write one numbered record to ``backend``'s journal; return its path.

    The name starts with the zero-padded sequence number, so a listing sorts in
    commit order.
    """
    name = f"{int(record['seq']):012d}-{new_id()}.json"
    path = posixpath.join(JOURNAL_DIR, name)
    document = {"format": JOURNAL_FORMAT, **record}
    backend.write_bytes(path, json.dumps(document, sort_keys=True).encode())
    return path


def read_journal(backend: Backend) -> list[dict[str, Any]]:
    """Every readable journal record on ``backend``, in sequence order.

    Unreadable files are skipped with a warning (a torn write of the newest record).
    """
    records = []
    for name in backend.listdir(JOURNAL_DIR):
        if not name.endswith(".json"):
            continue
        try:
            record = json.loads(backend.read_bytes(posixpath.join(JOURNAL_DIR, name)))
        except (OSError, ValueError) as exc:
            logger.warning("skipping unreadable journal record %s: %s", name, exc)
            continue
        if isinstance(record, dict) and record.get("format") == JOURNAL_FORMAT and record.get("seq"):
            records.append(record)
    return sorted(records, key=lambda r: (int(r["seq"]), str(r.get("at", ""))))


def replay(records: Iterable[Mapping[str, Any]]) -> dict[str, str] | None:
    """The ``key -> version_id`` state the journal's pointer moves lead to.

    Records are applied in sequence order; only successful ones that moved pointers
    count. A restore replaces the whole state, a save sets one key, a deletion removes
    one. Returns ``None`` when no record moved a pointer (no journal to go by).

    Examples
    --------
    >>> replay([
    ...     {"seq": 1, "outcome": "ok", "pointers": {"a": "v1"}, "replace_all": False},
    ...     {"seq": 2, "outcome": "ok", "pointers": {"b": "v2"}, "replace_all": False},
    ...     {"seq": 3, "outcome": "ok", "pointers": {"a": None}, "replace_all": False},
    ... ])
    {'b': 'v2'}
    """
    state: dict[str, str] | None = None
    for record in sorted(records, key=lambda r: int(r["seq"])):
        pointers = record.get("pointers")
        if record.get("outcome") != "ok" or pointers is None:
            continue
        if state is None or record.get("replace_all"):
            state = {}
        for key, version_id in pointers.items():
            if version_id is None:
                state.pop(key, None)
            else:
                state[key] = version_id
    return state


def audit_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Audit records as a DataFrame (``at`` as UTC timestamps), oldest first."""
    import pandas as pd

    frame = pd.DataFrame([{f: r.get(f) for f in AUDIT_FIELDS} for r in rows], columns=list(AUDIT_FIELDS))
    frame["at"] = pd.to_datetime(frame["at"], utc=True, format="ISO8601")
    frame["version"] = frame["version"].astype("Int64")
    frame["seq"] = frame["seq"].astype("int64")
    frame["pid"] = frame["pid"].astype("int64")
    return frame
