"""The SQLite catalog's record of archive restores: archived -> requested -> restored until T."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from memories_geo.catalog.model import utc_now
from memories_geo.catalog.sqlite_queries import connect, transaction

__all__ = ["RestoreRecord", "SQLiteRestores"]


@dataclass(frozen=True)
class RestoreRecord:
    """What the catalog last knew of a version's archive state."""

    version_id: str
    state: str
    requested_at: str | None
    days: int | None
    restore_tier: str | None
    until: str | None
    checked_at: str


class SQLiteRestores:
    """Restore-state methods of :class:`~memories_geo.catalog.sqlite.SQLiteCatalog`."""

    path: Path

    def record_restore(
        self, version_id: str, state: str, *, requested: bool = False, days: int | None = None,
        restore_tier: str | None = None, until: str | None = None,
    ) -> RestoreRecord:
        """Remember a version's archive state (and, with ``requested=True``, a new request)."""
        now = utc_now()
        with transaction(self.path) as con:
            old = con.execute("SELECT requested_at, days, restore_tier FROM restores WHERE version_id = ?",
                              (version_id,)).fetchone()
            requested_at, kept_days, kept_tier = old if old is not None else (None, None, None)
            if requested:
                requested_at, kept_days, kept_tier = now, days, restore_tier
            con.execute(
                "INSERT INTO restores (version_id, state, requested_at, days, restore_tier, until, "
                "checked_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (version_id) DO UPDATE SET "
                "state = excluded.state, requested_at = excluded.requested_at, days = excluded.days, "
                "restore_tier = excluded.restore_tier, until = excluded.until, "
                "checked_at = excluded.checked_at",
                (version_id, state, requested_at, kept_days, kept_tier, until, now),
            )
        return RestoreRecord(version_id, state, requested_at, kept_days, kept_tier, until, now)

    def restore_record(self, version_id: str) -> RestoreRecord | None:
        """The last recorded archive state of a version, if any."""
        with connect(self.path) as con:
            row = con.execute(
                "SELECT version_id, state, requested_at, days, restore_tier, until, checked_at FROM restores "
                "WHERE version_id = ?", (version_id,),
            ).fetchone()
        return None if row is None else RestoreRecord(*row)
