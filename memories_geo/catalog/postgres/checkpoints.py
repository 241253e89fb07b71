"""The PostgreSQL catalog's checkpoint side: pins, pointer restores, row export and import."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from memories_geo.catalog.model import VERSION_COLUMNS, CheckpointRow
from memories_geo.catalog.postgres.audit import insert_audit
from memories_geo.catalog.postgres.queries import (
    delete_versions,
    entries,
    is_pinned,
    next_version,
    pk_of,
    set_current,
    visible_pk,
)
from memories_geo.catalog.postgres.schema import VERSION_ORDER
from memories_geo.entry import Entry
from memories_geo.errors import KeyNotFoundError

if TYPE_CHECKING:
    import psycopg

    from memories_geo.catalog.postgres.connection import PostgresConnections

__all__ = ["PostgresCheckpointTables"]

_CHECKPOINT_COLUMNS = "id, name, created_at, kind, n_keys, size_bytes, checksum, message, backed_up"
_EXPORTED = ", ".join(f"v.{c}" for c in VERSION_ORDER)


class PostgresCheckpointTables:
    """Checkpoint methods of :class:`~memories_geo.catalog.postgres.PostgresCatalog`."""

    _db: PostgresConnections

    def create_checkpoint(self, row: CheckpointRow, pins: Mapping[str, str]) -> None:
        """Record a checkpoint and pin its versions (``key -> version_id``) in one transaction.

        Raises
        ------
        KeyNotFoundError
            If a version was deleted meanwhile (nothing is recorded; take a new snapshot).
        """
        db = self._db

        def work(cur: psycopg.Cursor[Any]) -> None:
            for key, vid in pins.items():
                if visible_pk(cur, db, vid) is None:
                    raise KeyNotFoundError(f"version {vid} of {key!r} was deleted while checkpointing")
            cur.execute(
                db.sql(f"INSERT INTO {{checkpoints}} ({_CHECKPOINT_COLUMNS}) "  # noqa: S608
                       "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"),
                (row.id, row.name, row.created_at, row.kind, row.n_keys, row.size_bytes,
                 row.checksum, row.message, bool(row.backed_up)),
            )
            cur.executemany(
                db.sql("INSERT INTO {checkpoint_versions} (checkpoint_id, key, version_id) "
                       "VALUES (%s, %s, %s)"),
                [(row.id, k, v) for k, v in pins.items()],
            )

        db.write(work)

    def mark_backed_up(self, checkpoint_id: str) -> None:
        """Record that a checkpoint's data and manifest reached the backup store."""
        self._db.write(lambda cur: cur.execute(
            self._db.sql("UPDATE {checkpoints} SET backed_up = TRUE WHERE id = %s"), (checkpoint_id,)
        ), lock=False)

    def checkpoints(self) -> list[CheckpointRow]:
        """Every checkpoint, newest first."""
        with self._db.read() as cur:
            cur.execute(self._db.sql(
                f"SELECT {_CHECKPOINT_COLUMNS} FROM {{checkpoints}} ORDER BY created_at DESC, id DESC"  # noqa: S608
            ))
            rows = cur.fetchall()
        return [
            CheckpointRow(
                id=r[0], name=r[1], created_at=r[2], kind=r[3], n_keys=r[4], size_bytes=r[5],
                checksum=r[6], message=r[7], backed_up=bool(r[8]),
            )
            for r in rows
        ]

    def checkpoint_pins(self, checkpoint_id: str) -> dict[str, str]:
        """``key -> version_id`` pinned by a checkpoint."""
        with self._db.read() as cur:
            cur.execute(
                self._db.sql("SELECT key, version_id FROM {checkpoint_versions} WHERE checkpoint_id = %s "
                             "ORDER BY key"),
                (checkpoint_id,),
            )
            return dict(cur.fetchall())

    def delete_checkpoint(self, checkpoint_id: str) -> list[Entry]:
        """Drop a checkpoint; return retired versions no longer pinned (their data must go)."""
        db = self._db

        def work(cur: psycopg.Cursor[Any]) -> list[Entry]:
            cur.execute(
                db.sql("DELETE FROM {checkpoint_versions} WHERE checkpoint_id = %s RETURNING version_id"),
                (checkpoint_id,),
            )
            vids = [r[0] for r in cur.fetchall()]
            cur.execute(db.sql("DELETE FROM {checkpoints} WHERE id = %s"), (checkpoint_id,))
            purge = []
            for vid in vids:
                retired = entries(cur, db, "v.version_id = %s AND v.status = 'retired'", (vid,))
                if retired and not is_pinned(cur, db, vid):
                    delete_versions(cur, db, [pk_of(cur, db, retired[0])])
                    purge.append(retired[0])
            return purge

        return db.write(work)

    def retired_unpinned(self) -> list[Entry]:
        """Retired versions no checkpoint pins any more (garbage)."""
        with self._db.read() as cur:
            return entries(
                cur, self._db,
                "v.status = 'retired' AND NOT EXISTS "
                "(SELECT 1 FROM {checkpoint_versions} c WHERE c.version_id = v.version_id)",
            )

    def entries_by_version_id(self, version_ids: Sequence[str]) -> dict[str, Entry]:
        """Committed or retired entries by version id (missing ids are left out)."""
        with self._db.read() as cur:
            found = entries(cur, self._db, "v.status <> 'staged' AND v.version_id = ANY(%s)",
                            (list(version_ids),))
        return {e.version_id: e for e in found}

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
        db = self._db

        def work(cur: psycopg.Cursor[Any]) -> None:
            targets = {}
            for key, vid in pins.items():
                pk = visible_pk(cur, db, vid)
                if pk is None:
                    raise KeyNotFoundError(f"version {vid} of {key!r} is not in the catalog")
                targets[key] = pk
            cur.execute(db.sql("SELECT key FROM {keys}"))
            gone = [key for (key,) in cur.fetchall() if key not in pins]
            if gone:
                cur.execute(db.sql("DELETE FROM {keys} WHERE key = ANY(%s)"), (gone,))
                cur.execute(
                    db.sql("UPDATE {versions} SET status = 'retired' "
                           "WHERE key = ANY(%s) AND status = 'committed'"),
                    (gone,),
                )
            for key, pk in targets.items():
                cur.execute(db.sql("UPDATE {versions} SET status = 'committed' WHERE id = %s"), (pk,))
                set_current(cur, db, key, pk)
            if audit is not None:
                audit.update(pointers=dict(pins), replace_all=True)
                insert_audit(cur, db, audit)

        db.write(work)

    def revive_versions_of_keys(self) -> None:
        """Make retired versions of existing keys visible again (after a catalog rebuild)."""
        self._db.write(lambda cur: cur.execute(self._db.sql(
            "UPDATE {versions} SET status = 'committed' "
            "WHERE status = 'retired' AND key IN (SELECT key FROM {keys})"
        )))

    def export_rows(self, version_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Full catalog rows (with manifests) of versions, for checkpoint manifests."""
        with self._db.read() as cur:
            cur.execute(
                self._db.sql(f"SELECT {_EXPORTED}, m.manifest FROM {{versions}} v "  # noqa: S608
                             "JOIN {manifests} m ON m.version_pk = v.id WHERE v.version_id = ANY(%s)"),
                (list(version_ids),),
            )
            columns = (*VERSION_ORDER, "manifest")
            found = {row[2]: dict(zip(columns, row, strict=True)) for row in cur.fetchall()}
        return [found[vid] for vid in version_ids if vid in found]

    def import_rows(self, rows: Sequence[Mapping[str, Any]], *, status: str = "retired") -> int:
        """Insert exported rows not yet present (by version id); return how many were added.

        Used to rebuild a catalog from checkpoint manifests and version records:
        imported versions are retired until :meth:`restore_pointers` makes some of
        them current. Rows without a version number (records of a version whose
        commit was cut short) are numbered after the key's last version; import rows
        in version-id (time) order to keep numbers in order.
        """
        db = self._db

        def work(cur: psycopg.Cursor[Any]) -> int:
            added = 0
            for row in rows:
                cur.execute(db.sql("SELECT 1 FROM {versions} WHERE version_id = %s"), (row["version_id"],))
                if cur.fetchone():
                    continue
                data = {k: v for k, v in row.items() if k in VERSION_COLUMNS}
                data["status"] = status
                clash = data.get("version") is None
                if not clash:
                    cur.execute(db.sql("SELECT 1 FROM {versions} WHERE key = %s AND version = %s"),
                                (data["key"], data["version"]))
                    clash = cur.fetchone() is not None
                if clash:
                    data["version"] = next_version(cur, db, data["key"])
                cur.execute(
                    db.sql(f"INSERT INTO {{versions}} ({', '.join(data)}) "  # noqa: S608
                           f"VALUES ({', '.join(['%s'] * len(data))}) RETURNING id"),
                    list(data.values()),
                )
                pk = int(cur.fetchone()[0])  # type: ignore[index]
                cur.execute(db.sql("INSERT INTO {manifests} (version_pk, manifest) VALUES (%s, %s)"),
                            (pk, row["manifest"]))
                added += 1
            return added

        return db.write(work)
