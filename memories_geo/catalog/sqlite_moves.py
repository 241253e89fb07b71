"""The SQLite catalog's record of versions being moved to another tier.

A move copies a version's files to another tier, verifies them, then re-points the
version (same id, same number) at the copy in one transaction. While the copy is under
way, the destination is recorded here, so :meth:`stored_paths` counts it and a
concurrent ``recover()`` leaves it alone; a move whose writer is gone is an orphan.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memories_geo.catalog.model import utc_now, writer_id
from memories_geo.catalog.sqlite_audit import insert_audit
from memories_geo.catalog.sqlite_queries import connect, entries, transaction
from memories_geo.entry import Entry
from memories_geo.errors import KeyNotFoundError
from memories_geo.integrity import Manifest

__all__ = ["PendingMove", "SQLiteMoves"]


@dataclass(frozen=True)
class PendingMove:
    """A version whose copy to another tier has started and not been committed."""

    version_id: str
    tier: str
    path: str
    uri: str
    writer: str
    started_at: str


class SQLiteMoves:
    """Move methods of :class:`~memories_geo.catalog.sqlite.SQLiteCatalog`."""

    path: Path

    def begin_move(self, version_id: str, tier: str, path: str, uri: str) -> PendingMove:
        """Record that ``version_id`` is being copied to ``path`` on ``tier`` by this process."""
        move = PendingMove(version_id, tier, path, uri, writer_id(), utc_now())
        with transaction(self.path) as con:
            con.execute(
                "INSERT INTO moves (version_id, tier, path, uri, writer, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (version_id) DO UPDATE SET tier = excluded.tier, path = excluded.path, "
                "uri = excluded.uri, writer = excluded.writer, started_at = excluded.started_at",
                (move.version_id, move.tier, move.path, move.uri, move.writer, move.started_at),
            )
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
        with transaction(self.path) as con:
            found = con.execute(
                "SELECT id FROM versions WHERE version_id = ? AND status IN ('committed', 'retired')",
                (move.version_id,),
            ).fetchone()
            con.execute("DELETE FROM moves WHERE version_id = ?", (move.version_id,))
            if found is None:
                raise KeyNotFoundError(f"version {move.version_id} was deleted while it was being moved")
            con.execute(
                "UPDATE versions SET tier = ?, path = ?, uri = ?, storage_class = ?, stat_fingerprint = NULL "
                "WHERE id = ?",
                (move.tier, move.path, move.uri, storage_class, found[0]),
            )
            if manifest is not None:
                con.execute("UPDATE manifests SET manifest = ? WHERE version_pk = ?",
                            (manifest.to_json(), found[0]))
            entry = entries(con, "v.id = ?", (found[0],))[0]
            if audit is not None:
                audit.update(key=entry.key, version=entry.version, version_id=entry.version_id)
                insert_audit(con, audit)
        return entry

    def forget_move(self, version_id: str) -> None:
        """Drop the record of a move that will not be committed."""
        with transaction(self.path) as con:
            con.execute("DELETE FROM moves WHERE version_id = ?", (version_id,))

    def pending_moves(self) -> list[PendingMove]:
        """Moves started and not committed (orphans unless their writer is still copying)."""
        with connect(self.path) as con:
            rows = con.execute(
                "SELECT version_id, tier, path, uri, writer, started_at FROM moves ORDER BY started_at"
            ).fetchall()
        return [PendingMove(*row) for row in rows]
