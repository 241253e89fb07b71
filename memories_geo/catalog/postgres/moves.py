"""The PostgreSQL catalog's record of versions being moved to another tier.

Same protocol as :mod:`memories_geo.catalog.sqlite_moves`: the destination of a copy under
way is recorded, and finishing the move re-points the version in one transaction that
holds the catalog's write lock.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from memories_geo.catalog.model import utc_now, writer_id
from memories_geo.catalog.postgres.audit import insert_audit
from memories_geo.catalog.postgres.queries import entries
from memories_geo.catalog.sqlite_moves import PendingMove
from memories_geo.entry import Entry
from memories_geo.errors import KeyNotFoundError
from memories_geo.integrity import Manifest

if TYPE_CHECKING:
    import psycopg

    from memories_geo.catalog.postgres.connection import PostgresConnections

__all__ = ["PostgresMoves"]


class PostgresMoves:
    """Move methods of :class:`~memories_geo.catalog.postgres.PostgresCatalog`."""

    _db: PostgresConnections

    def begin_move(self, version_id: str, tier: str, path: str, uri: str) -> PendingMove:
        """Record that ``version_id`` is being copied to ``path`` on ``tier`` by this process."""
        move = PendingMove(version_id, tier, path, uri, writer_id(), utc_now())
        self._db.write(lambda cur: cur.execute(
            self._db.sql(
                "INSERT INTO {moves} (version_id, tier, path, uri, writer, started_at) "
                "VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (version_id) DO UPDATE SET tier = excluded.tier, path = excluded.path, "
                "uri = excluded.uri, writer = excluded.writer, started_at = excluded.started_at"
            ),
            (move.version_id, move.tier, move.path, move.uri, move.writer, move.started_at),
        ), lock=False)
        return move

    def finish_move(
        self, move: PendingMove, audit: MutableMapping[str, Any] | None = None, *,
        storage_class: str | None = None, manifest: Manifest | None = None,
    ) -> Entry:
        """Point the version at its verified copy, in one transaction; return the moved entry.

        ``storage_class`` is the one its copied objects were given on the new tier;
        ``manifest`` replaces the stored one (same files and digests, now all in the
        copy's own folder: see :meth:`~memories_geo.integrity.Manifest.materialized`).

        Raises
        ------
        KeyNotFoundError
            If the version was deleted meanwhile (the copy is then an orphan).
        """
        db = self._db

        def work(cur: psycopg.Cursor[Any]) -> Entry:
            cur.execute(
                db.sql("SELECT id FROM {versions} "
                       "WHERE version_id = %s AND status IN ('committed', 'retired')"),
                (move.version_id,),
            )
            found = cur.fetchone()
            cur.execute(db.sql("DELETE FROM {moves} WHERE version_id = %s"), (move.version_id,))
            if found is None:
                raise KeyNotFoundError(f"version {move.version_id} was deleted while it was being moved")
            cur.execute(
                db.sql("UPDATE {versions} SET tier = %s, path = %s, uri = %s, storage_class = %s, "
                       "stat_fingerprint = NULL WHERE id = %s"),
                (move.tier, move.path, move.uri, storage_class, found[0]),
            )
            if manifest is not None:
                cur.execute(db.sql("UPDATE {manifests} SET manifest = %s WHERE version_pk = %s"),
                            (manifest.to_json(), found[0]))
            entry = entries(cur, db, "v.id = %s", (found[0],))[0]
            if audit is not None:
                audit.update(key=entry.key, version=entry.version, version_id=entry.version_id)
                insert_audit(cur, db, audit)
            return entry

        return db.write(work)

    def forget_move(self, version_id: str) -> None:
        """Drop the record of a move that will not be committed."""
        self._db.write(lambda cur: cur.execute(
            self._db.sql("DELETE FROM {moves} WHERE version_id = %s"), (version_id,)
        ), lock=False)

    def pending_moves(self) -> list[PendingMove]:
        """Moves started and not committed (orphans unless their writer is still copying)."""
        with self._db.read() as cur:
            cur.execute(self._db.sql(
                "SELECT version_id, tier, path, uri, writer, started_at FROM {moves} ORDER BY started_at"
            ))
            rows = cur.fetchall()
        return [PendingMove(*row) for row in rows]
