"""The PostgreSQL catalog's record of archive restores: archived -> requested -> restored until T."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memories_geo.catalog.model import utc_now
from memories_geo.catalog.sqlite_restores import RestoreRecord

if TYPE_CHECKING:
    import psycopg

    from memories_geo.catalog.postgres.connection import PostgresConnections

__all__ = ["PostgresRestores"]


class PostgresRestores:
    """Restore-state methods of :class:`~memories_geo.catalog.postgres.PostgresCatalog`."""

    _db: PostgresConnections

    def record_restore(
        self, version_id: str, state: str, *, requested: bool = False, days: int | None = None,
        restore_tier: str | None = None, until: str | None = None,
    ) -> RestoreRecord:
        """Remember a version's archive state (and, with ``requested=True``, a new request)."""
        now = utc_now()
        db = self._db

        def work(cur: psycopg.Cursor[Any]) -> RestoreRecord:
            cur.execute(
                db.sql("INSERT INTO {restores} (version_id, state, checked_at) VALUES (%s, %s, %s) "
                       "ON CONFLICT (version_id) DO NOTHING"),
                (version_id, state, now),
            )
            cur.execute(
                db.sql("SELECT requested_at, days, restore_tier FROM {restores} "
                       "WHERE version_id = %s FOR UPDATE"),
                (version_id,),
            )
            requested_at, kept_days, kept_tier = cur.fetchone() or (None, None, None)
            if requested:
                requested_at, kept_days, kept_tier = now, days, restore_tier
            cur.execute(
                db.sql("UPDATE {restores} SET state = %s, requested_at = %s, days = %s, restore_tier = %s, "
                       "until = %s, checked_at = %s WHERE version_id = %s"),
                (state, requested_at, kept_days, kept_tier, until, now, version_id),
            )
            return RestoreRecord(version_id, state, requested_at, kept_days, kept_tier, until, now)

        return db.write(work, lock=False)

    def restore_record(self, version_id: str) -> RestoreRecord | None:
        """The last recorded archive state of a version, if any."""
        with self._db.read() as cur:
            cur.execute(
                self._db.sql("SELECT version_id, state, requested_at, days, restore_tier, until, checked_at "
                             "FROM {restores} WHERE version_id = %s"),
                (version_id,),
            )
            row = cur.fetchone()
        return None if row is None else RestoreRecord(*row)
