"""The SQLite catalog's checkpoint side: pins, pointer restores, row export and import."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from memories_geo.catalog.model import VERSION_COLUMNS, CheckpointRow
from memories_geo.catalog.sqlite_audit import insert_audit
from memories_geo.catalog.sqlite_queries import (
    connect,
    delete_versions,
    entries,
    index_bbox,
    is_pinned,
    next_version,
    pk_of,
    set_current,
    transaction,
    visible_pk,
)
from memories_geo.entry import Entry
from memories_geo.errors import KeyNotFoundError

__all__ = ["SQLiteCheckpointTables"]


class SQLiteCheckpointTables:
    """Checkpoint methods of :class:`~memories_geo.catalog.sqlite.SQLiteCatalog`.

    Attributes
    ----------
    path : Path
        The SQLite file.
    has_rtree : bool
        Whether bboxes are indexed in the ``versions_bbox`` R*Tree.
    """

    path: Path
    has_rtree: bool

    def create_checkpoint(self, row: CheckpointRow, pins: Mapping[str, str]) -> None:
        """Record a checkpoint and pin its versions (``key -> version_id``) in one transaction.

        Raises
        ------
        KeyNotFoundError
            If a version was deleted meanwhile (nothing is recorded; take a new snapshot).
        """
        with transaction(self.path) as con:
            for key, vid in pins.items():
                if visible_pk(con, vid) is None:
                    raise KeyNotFoundError(f"version {vid} of {key!r} was deleted while checkpointing")
            con.execute(
                "INSERT INTO checkpoints (id, name, created_at, kind, n_keys, size_bytes, checksum, "
                "message, backed_up) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.id, row.name, row.created_at, row.kind, row.n_keys, row.size_bytes,
                 row.checksum, row.message, int(row.backed_up)),
            )
            con.executemany(
                "INSERT INTO checkpoint_versions (checkpoint_id, key, version_id) VALUES (?, ?, ?)",
                [(row.id, k, v) for k, v in pins.items()],
            )

    def mark_backed_up(self, checkpoint_id: str) -> None:
        """Record that a checkpoint's data and manifest reached the backup store."""
        with transaction(self.path) as con:
            con.execute("UPDATE checkpoints SET backed_up = 1 WHERE id = ?", (checkpoint_id,))

    def checkpoints(self) -> list[CheckpointRow]:
        """Every checkpoint, newest first."""
        with connect(self.path) as con:
            rows = con.execute(
                "SELECT id, name, created_at, kind, n_keys, size_bytes, checksum, message, backed_up "
                "FROM checkpoints ORDER BY created_at DESC, id DESC"
            ).fetchall()
        return [
            CheckpointRow(
                id=r[0], name=r[1], created_at=r[2], kind=r[3], n_keys=r[4], size_bytes=r[5],
                checksum=r[6], message=r[7], backed_up=bool(r[8]),
            )
            for r in rows
        ]

    def checkpoint_pins(self, checkpoint_id: str) -> dict[str, str]:
        """``key -> version_id`` pinned by a checkpoint."""
        with connect(self.path) as con:
            rows = con.execute(
                "SELECT key, version_id FROM checkpoint_versions WHERE checkpoint_id = ? ORDER BY key",
                (checkpoint_id,),
            ).fetchall()
        return dict(rows)

    def delete_checkpoint(self, checkpoint_id: str) -> list[Entry]:
        """Drop a checkpoint; return retired versions no longer pinned (their data must go)."""
        with transaction(self.path) as con:
            vids = [r[0] for r in con.execute(
                "SELECT version_id FROM checkpoint_versions WHERE checkpoint_id = ?", (checkpoint_id,)
            )]
            con.execute("DELETE FROM checkpoint_versions WHERE checkpoint_id = ?", (checkpoint_id,))
            con.execute("DELETE FROM checkpoints WHERE id = ?", (checkpoint_id,))
            purge = []
            for vid in vids:
                retired = entries(con, "v.version_id = ? AND v.status = 'retired'", (vid,))
                if retired and not is_pinned(con, vid):
                    delete_versions(con, [pk_of(con, retired[0])], rtree=self.has_rtree)
                    purge.append(retired[0])
        return purge

    def retired_unpinned(self) -> list[Entry]:
        """Retired versions no checkpoint pins any more (garbage)."""
        with connect(self.path) as con:
            return entries(
                con,
                "v.status = 'retired' AND v.version_id NOT IN (SELECT version_id FROM checkpoint_versions)",
            )

    def entries_by_version_id(self, version_ids: Sequence[str]) -> dict[str, Entry]:
        """Committed or retired entries by version id (missing ids are left out)."""
        wanted = set(version_ids)
        with connect(self.path) as con:
            found = entries(con, "v.status != 'staged'")
        return {e.version_id: e for e in found if e.version_id in wanted}

    def restore_pointers(
        self, pins: Mapping[str, str], audit: MutableMapping[str, Any] | None = None
    ) -> None:
        """Make the catalog's keys exactly ``pins`` (``key -> version_id``), in one transaction.

        Keys absent from ``pins`` disappear (their versions are retired, not deleted);
        pinned versions that were retired come back. ``audit`` is appended to the
        audit log in the same transaction.

        Raises
        ------
        KeyNotFoundError
            If a version id is unknown to the catalog (nothing is changed).
        """
        with transaction(self.path) as con:
            targets = {}
            for key, vid in pins.items():
                pk = visible_pk(con, vid)
                if pk is None:
                    raise KeyNotFoundError(f"version {vid} of {key!r} is not in the catalog")
                targets[key] = pk
            for (key,) in con.execute("SELECT key FROM keys").fetchall():
                if key not in pins:
                    con.execute("DELETE FROM keys WHERE key = ?", (key,))
                    con.execute(
                        "UPDATE versions SET status = 'retired' WHERE key = ? AND status = 'committed'",
                        (key,),
                    )
            for key, pk in targets.items():
                con.execute("UPDATE versions SET status = 'committed' WHERE id = ?", (pk,))
                set_current(con, key, pk)
            if audit is not None:
                audit.update(pointers=dict(pins), replace_all=True)
                insert_audit(con, audit)

    def revive_versions_of_keys(self) -> None:
        """Make retired versions of existing keys visible again (after a catalog rebuild)."""
        with transaction(self.path) as con:
            con.execute(
                "UPDATE versions SET status = 'committed' "
                "WHERE status = 'retired' AND key IN (SELECT key FROM keys)"
            )

    def export_rows(self, version_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Full catalog rows (with manifests) of versions, for checkpoint manifests."""
        out = []
        with connect(self.path) as con:
            con.row_factory = sqlite3.Row
            for vid in version_ids:
                row = con.execute(
                    "SELECT v.*, m.manifest FROM versions v JOIN manifests m ON m.version_pk = v.id "
                    "WHERE v.version_id = ?",
                    (vid,),
                ).fetchone()
                if row is not None:
                    data = dict(row)
                    data.pop("id")
                    out.append(data)
        return out

    def import_rows(self, rows: Sequence[Mapping[str, Any]], *, status: str = "retired") -> int:
        """Insert exported rows not yet present (by version id); return how many were added.

        Used to rebuild a catalog from checkpoint manifests and version records:
        imported versions are retired until :meth:`restore_pointers` makes some of
        them current. Rows without a version number (records of a version whose
        commit was cut short) are numbered after the key's last version; import rows
        in version-id (time) order to keep numbers in order.
        """
        added = 0
        with transaction(self.path) as con:
            for row in rows:
                if con.execute("SELECT 1 FROM versions WHERE version_id = ?",
                               (row["version_id"],)).fetchone():
                    continue
                data = {k: v for k, v in row.items() if k in VERSION_COLUMNS}
                data["status"] = status
                clash = data.get("version") is None or con.execute(
                    "SELECT 1 FROM versions WHERE key = ? AND version = ?", (data["key"], data["version"])
                ).fetchone()
                if clash:
                    data["version"] = next_version(con, data["key"])
                cur = con.execute(
                    f"INSERT INTO versions ({', '.join(data)}) "  # noqa: S608
                    f"VALUES ({', '.join('?' * len(data))})",
                    list(data.values()),
                )
                pk = int(cur.lastrowid or 0)
                con.execute("INSERT INTO manifests (version_pk, manifest) VALUES (?, ?)",
                            (pk, row["manifest"]))
                if self.has_rtree:
                    index_bbox(con, pk, data)
                added += 1
        return added
