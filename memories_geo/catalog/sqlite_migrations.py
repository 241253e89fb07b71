"""The SQLite catalog's migration journal: jobs and the state of each of their keys.

A migration's plan (which version of which key goes where, and how) is written once,
when the job first runs; every key then goes ``pending -> copying -> done`` (or
``failed``, or ``skipped`` when it was deleted or replaced meanwhile). Re-running the job
reads the plan back and carries on with the keys that are not done, so an interrupted
migration finishes without selecting, copying or converting anything twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from memories_geo.catalog.model import utc_now, writer_id
from memories_geo.catalog.sqlite_queries import connect, entries, transaction
from memories_geo.entry import Entry

__all__ = ["ITEM_STATES", "JOB_STATES", "MigrationItemRow", "MigrationJobRow", "SQLiteMigrations"]

#: States of a job as stored (a job left ``running`` by a process that is gone is interrupted too).
JOB_STATES = ("running", "interrupted", "completed", "failed")
#: States of one key of a job.
ITEM_STATES = ("pending", "copying", "done", "failed", "skipped")

_JOB_COLUMNS = "id, spec, state, created_at, started_at, finished_at, writer, seconds"
_ITEM_COLUMNS = (
    "job_id, position, key, version_id, size_bytes, action, source_format, target_format, state, "
    "bytes_done, target_version_id, error, updated_at"
)


@dataclass(frozen=True)
class MigrationJobRow:
    """A migration job as the journal records it (``spec`` is the job as JSON)."""

    id: str
    spec: str
    state: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    writer: str
    seconds: float


@dataclass(frozen=True)
class MigrationItemRow:
    """One key of a migration job: the version it moves, how, and how far it got."""

    job_id: str
    position: int
    key: str
    version_id: str
    size_bytes: int
    action: str
    source_format: str
    target_format: str
    state: str = "pending"
    bytes_done: int = 0
    target_version_id: str | None = None
    error: str = ""
    updated_at: str = ""


class SQLiteMigrations:
    """Migration-journal methods of :class:`~memories_geo.catalog.sqlite.SQLiteCatalog`."""

    path: Path

    def create_migration(self, job_id: str, spec: str, items: Sequence[MigrationItemRow]) -> bool:
        """Record a new job and its planned keys in one transaction; ``False`` if the id exists."""
        now = utc_now()
        with transaction(self.path) as con:
            if con.execute("SELECT 1 FROM migration_jobs WHERE id = ?", (job_id,)).fetchone():
                return False
            con.execute(
                "INSERT INTO migration_jobs (id, spec, state, created_at, writer, seconds) "
                "VALUES (?, ?, 'running', ?, ?, 0)",
                (job_id, spec, now, writer_id()),
            )
            con.executemany(
                f"INSERT INTO migration_items ({_ITEM_COLUMNS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, NULL, '', ?)",
                [(job_id, i, it.key, it.version_id, it.size_bytes, it.action, it.source_format,
                  it.target_format, now) for i, it in enumerate(items)],
            )
        return True

    def claim_migration(
        self, job_id: str, is_gone: Callable[[str, str | None], bool]
    ) -> MigrationJobRow | None:
        """Make this process the job's runner, in one transaction; return the job as it was.

        Refused (``None`` returned, nothing changed) while another process that is not
        gone (``is_gone(writer, started_at)``) runs it.
        """
        with transaction(self.path) as con:
            row = con.execute(f"SELECT {_JOB_COLUMNS} FROM migration_jobs WHERE id = ?",  # noqa: S608
                              (job_id,)).fetchone()
            if row is None:
                return None
            job = MigrationJobRow(*row)
            me = writer_id()
            busy = job.state == "running" and job.writer not in ("", me)
            if busy and not is_gone(job.writer, job.started_at):
                return None
            con.execute(
                "UPDATE migration_jobs SET state = 'running', writer = ?, finished_at = NULL, "
                "started_at = COALESCE(started_at, ?) WHERE id = ?",
                (me, utc_now(), job_id),
            )
        return job

    def finish_migration(self, job_id: str, state: str, seconds: float) -> None:
        """Record the end of a run: its final ``state`` and the time it took (added up over runs)."""
        if state not in JOB_STATES:
            raise ValueError(f"migration job state must be one of {list(JOB_STATES)}, got {state!r}")
        with transaction(self.path) as con:
            con.execute(
                "UPDATE migration_jobs SET state = ?, finished_at = ?, seconds = seconds + ? WHERE id = ?",
                (state, utc_now(), float(seconds), job_id),
            )

    def update_migration_item(
        self, job_id: str, key: str, *, state: str, bytes_done: int | None = None,
        target_version_id: str | None = None, target_format: str | None = None, error: str = "",
    ) -> None:
        """Set the state of one key of a job (and what it got to), in one transaction."""
        if state not in ITEM_STATES:
            raise ValueError(f"migration item state must be one of {list(ITEM_STATES)}, got {state!r}")
        with transaction(self.path) as con:
            con.execute(
                "UPDATE migration_items SET state = ?, error = ?, updated_at = ?, "
                "bytes_done = COALESCE(?, bytes_done), target_version_id = COALESCE(?, target_version_id), "
                "target_format = COALESCE(?, target_format) WHERE job_id = ? AND key = ?",
                (state, error, utc_now(), bytes_done, target_version_id, target_format, job_id, key),
            )

    def migration_job(self, job_id: str) -> MigrationJobRow | None:
        """The job with this id, or ``None``."""
        with connect(self.path) as con:
            row = con.execute(f"SELECT {_JOB_COLUMNS} FROM migration_jobs WHERE id = ?",  # noqa: S608
                              (job_id,)).fetchone()
        return None if row is None else MigrationJobRow(*row)

    def migration_jobs(self) -> list[MigrationJobRow]:
        """Every recorded job, oldest first."""
        with connect(self.path) as con:
            rows = con.execute(
                f"SELECT {_JOB_COLUMNS} FROM migration_jobs ORDER BY created_at, id"  # noqa: S608
            ).fetchall()
        return [MigrationJobRow(*row) for row in rows]

    def migration_items(self, job_id: str) -> list[MigrationItemRow]:
        """The planned keys of a job, in plan order."""
        with connect(self.path) as con:
            rows = con.execute(
                f"SELECT {_ITEM_COLUMNS} FROM migration_items WHERE job_id = ? ORDER BY position",  # noqa: S608
                (job_id,),
            ).fetchall()
        return [MigrationItemRow(*row) for row in rows]

    def delete_migration(self, job_id: str) -> bool:
        """Forget a job and its items (never the data); return whether it existed."""
        with transaction(self.path) as con:
            con.execute("DELETE FROM migration_items WHERE job_id = ?", (job_id,))
            cur = con.execute("DELETE FROM migration_jobs WHERE id = ?", (job_id,))
        return cur.rowcount > 0

    def committed_entry(self, version_id: str) -> Entry | None:
        """The committed version with this id (current or not), or ``None``."""
        with connect(self.path) as con:
            found = entries(con, "v.version_id = ? AND v.status = 'committed'", (version_id,))
        return found[0] if found else None
