"""The PostgreSQL catalog's migration journal: jobs and the state of each of their keys.

Same journal as :mod:`memories_geo.catalog.sqlite_migrations` (the row types are shared);
a job is claimed under a row lock (``SELECT ... FOR UPDATE``), so two machines never run
the same job at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from memories_geo.catalog.model import utc_now, writer_id
from memories_geo.catalog.postgres.queries import entries
from memories_geo.catalog.sqlite_migrations import ITEM_STATES, JOB_STATES, MigrationItemRow, MigrationJobRow
from memories_geo.entry import Entry

if TYPE_CHECKING:
    import psycopg

    from memories_geo.catalog.postgres.connection import PostgresConnections

__all__ = ["PostgresMigrations"]

_JOB_COLUMNS = "id, spec, state, created_at, started_at, finished_at, writer, seconds"
_ITEM_COLUMNS = (
    "job_id, position, key, version_id, size_bytes, action, source_format, target_format, state, "
    "bytes_done, target_version_id, error, updated_at"
)


class PostgresMigrations:
    """Migration-journal methods of :class:`~memories_geo.catalog.postgres.PostgresCatalog`."""

    _db: PostgresConnections

    def create_migration(self, job_id: str, spec: str, items: Sequence[MigrationItemRow]) -> bool:
        """Record a new job and its planned keys in one transaction; ``False`` if the id exists."""
        now = utc_now()
        db = self._db

        def work(cur: psycopg.Cursor[Any]) -> bool:
            cur.execute(
                db.sql("INSERT INTO {migration_jobs} (id, spec, state, created_at, writer, seconds) "
                       "VALUES (%s, %s, 'running', %s, %s, 0) ON CONFLICT (id) DO NOTHING"),
                (job_id, spec, now, writer_id()),
            )
            if cur.rowcount == 0:
                return False
            cur.executemany(
                db.sql(f"INSERT INTO {{migration_items}} ({_ITEM_COLUMNS}) "  # noqa: S608
                       "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'pending', 0, NULL, '', %s)"),
                [(job_id, i, it.key, it.version_id, it.size_bytes, it.action, it.source_format,
                  it.target_format, now) for i, it in enumerate(items)],
            )
            return True

        return db.write(work, lock=False)

    def claim_migration(
        self, job_id: str, is_gone: Callable[[str, str | None], bool]
    ) -> MigrationJobRow | None:
        """Make this process the job's runner, in one transaction; return the job as it was.

        Refused (``None`` returned, nothing changed) while another process that is not
        gone (``is_gone(writer, started_at)``) runs it.
        """
        db = self._db

        def work(cur: psycopg.Cursor[Any]) -> MigrationJobRow | None:
            cur.execute(db.sql(f"SELECT {_JOB_COLUMNS} FROM {{migration_jobs}} WHERE id = %s FOR UPDATE"),  # noqa: S608
                        (job_id,))
            row = cur.fetchone()
            if row is None:
                return None
            job = MigrationJobRow(*row)
            me = writer_id()
            busy = job.state == "running" and job.writer not in ("", me)
            if busy and not is_gone(job.writer, job.started_at):
                return None
            cur.execute(
                db.sql("UPDATE {migration_jobs} SET state = 'running', writer = %s, finished_at = NULL, "
                       "started_at = COALESCE(started_at, %s) WHERE id = %s"),
                (me, utc_now(), job_id),
            )
            return job

        return db.write(work, lock=False)

    def finish_migration(self, job_id: str, state: str, seconds: float) -> None:
        """Record the end of a run: its final ``state`` and the time it took (added up over runs)."""
        if state not in JOB_STATES:
            raise ValueError(f"migration job state must be one of {list(JOB_STATES)}, got {state!r}")
        self._db.write(lambda cur: cur.execute(
            self._db.sql("UPDATE {migration_jobs} SET state = %s, finished_at = %s, seconds = seconds + %s "
                         "WHERE id = %s"),
            (state, utc_now(), float(seconds), job_id),
        ), lock=False)

    def update_migration_item(
        self, job_id: str, key: str, *, state: str, bytes_done: int | None = None,
        target_version_id: str | None = None, target_format: str | None = None, error: str = "",
    ) -> None:
        """Set the state of one key of a job (and what it got to), in one transaction."""
        if state not in ITEM_STATES:
            raise ValueError(f"migration item state must be one of {list(ITEM_STATES)}, got {state!r}")
        self._db.write(lambda cur: cur.execute(
            self._db.sql(
                "UPDATE {migration_items} SET state = %s, error = %s, updated_at = %s, "
                "bytes_done = COALESCE(%s, bytes_done), target_version_id = COALESCE(%s, target_version_id), "
                "target_format = COALESCE(%s, target_format) WHERE job_id = %s AND key = %s"
            ),
            (state, error, utc_now(), bytes_done, target_version_id, target_format, job_id, key),
        ), lock=False)

    def migration_job(self, job_id: str) -> MigrationJobRow | None:
        """The job with this id, or ``None``."""
        with self._db.read() as cur:
            cur.execute(self._db.sql(f"SELECT {_JOB_COLUMNS} FROM {{migration_jobs}} WHERE id = %s"),  # noqa: S608
                        (job_id,))
            row = cur.fetchone()
        return None if row is None else MigrationJobRow(*row)

    def migration_jobs(self) -> list[MigrationJobRow]:
        """Every recorded job, oldest first."""
        with self._db.read() as cur:
            cur.execute(self._db.sql(
                f"SELECT {_JOB_COLUMNS} FROM {{migration_jobs}} ORDER BY created_at, id"  # noqa: S608
            ))
            rows = cur.fetchall()
        return [MigrationJobRow(*row) for row in rows]

    def migration_items(self, job_id: str) -> list[MigrationItemRow]:
        """The planned keys of a job, in plan order."""
        with self._db.read() as cur:
            cur.execute(
                self._db.sql(f"SELECT {_ITEM_COLUMNS} FROM {{migration_items}} WHERE job_id = %s "  # noqa: S608
                             "ORDER BY position"),
                (job_id,),
            )
            rows = cur.fetchall()
        return [MigrationItemRow(*row) for row in rows]

    def delete_migration(self, job_id: str) -> bool:
        """Forget a job and its items (never the data); return whether it existed."""
        db = self._db

        def work(cur: psycopg.Cursor[Any]) -> bool:
            cur.execute(db.sql("DELETE FROM {migration_items} WHERE job_id = %s"), (job_id,))
            cur.execute(db.sql("DELETE FROM {migration_jobs} WHERE id = %s"), (job_id,))
            return cur.rowcount > 0

        return db.write(work, lock=False)

    def committed_entry(self, version_id: str) -> Entry | None:
        """The committed version with this id (current or not), or ``None``."""
        with self._db.read() as cur:
            found = entries(cur, self._db, "v.version_id = %s AND v.status = 'committed'", (version_id,))
        return found[0] if found else None
