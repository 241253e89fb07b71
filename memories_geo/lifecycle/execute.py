"""Running a migration: plan once into the journal, then migrate every key not done yet.

:func:`execute_migration` is resumable: the first run writes the plan (each selected
key, its version and how it moves) to the catalog's migration journal; every key then
goes ``pending -> copying -> done``. Run the same job again (same id) after a crash, a
network failure or a stopped object store, and it carries on with the keys that are not
done: a byte move skips files already copied and verified, a conversion finds its
committed copy. Keys migrate in parallel (``max_workers`` threads); with an active
``dask.distributed`` client, the workers copy the bytes of byte moves and this process
keeps every catalog read and write (:mod:`~memories_geo.lifecycle.fanout`).
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal, overload

from memories_geo.errors import KeyNotFoundError, OptionError
from memories_geo.events import emit
from memories_geo.formats.registry import get_format
from memories_geo.lifecycle.fanout import active_client, migrate_on_client
from memories_geo.lifecycle.item import migrate_key
from memories_geo.lifecycle.job import MigrationError, MigrationJob
from memories_geo.lifecycle.select import select_keys
from memories_geo.lifecycle.status import DEFAULT_THROUGHPUT, KeyStatus, MigrationPlan, MigrationStatus
from memories_geo.progress import progress_bar
from memories_geo.versions import open_version_store
from memories_geo.versions.orphans import writer_gone

if TYPE_CHECKING:
    from memories_geo.catalog.sqlite_migrations import MigrationItemRow
    from memories_geo.versions import VersionStore

__all__ = ["execute_migration", "migration_jobs", "migration_status", "plan_migration"]

logger = logging.getLogger(__name__)

#: Earlier migrations between the same tiers that a plan's time estimate is measured on.
_MEASURED_JOBS = 5


def _job_of(store: VersionStore, job: MigrationJob | str) -> MigrationJob:
    if isinstance(job, MigrationJob):
        return job
    if not isinstance(job, str):
        raise OptionError(f"job must be a MigrationJob or the id of one; got {type(job).__name__}")
    row = store.catalog.migration_job(job)
    if row is None:
        raise _not_found(store, job)
    return MigrationJob.from_dict(json.loads(row.spec))


def _not_found(store: VersionStore, job_id: str) -> KeyNotFoundError:
    known = [r.id for r in store.catalog.migration_jobs()][-10:]
    return KeyNotFoundError(f"no migration job {job_id!r} in the journal; recent jobs: {known or 'none'}")


def _check(store: VersionStore, job: MigrationJob) -> None:
    for tier in (job.source_tier, job.destination_tier):
        store.tiers.tier_config(tier)
    if job.format is not None:
        get_format(job.format)
    row = store.catalog.migration_job(job.id)
    if row is not None and json.loads(row.spec) != job.to_dict():
        first = MigrationJob.from_dict(json.loads(row.spec)).describe()
        raise OptionError(
            f"migration job {job.id!r} was first run as {first}; "
            "run it with the same settings to resume it, or give the new job another id"
        )


def _throughput(store: VersionStore, job: MigrationJob) -> tuple[float, int]:
    """Bytes per second of the last completed migrations between the same tiers, and how many."""
    done_bytes, seconds, n = 0, 0.0, 0
    for row in reversed(store.catalog.migration_jobs()):
        spec = json.loads(row.spec)
        if (row.state != "completed" or row.seconds <= 0 or spec.get("source_tier") != job.source_tier
                or spec.get("destination_tier") != job.destination_tier):
            continue
        moved = sum(i.size_bytes for i in store.catalog.migration_items(row.id) if i.state == "done")
        if moved:
            done_bytes, seconds, n = done_bytes + moved, seconds + row.seconds, n + 1
        if n == _MEASURED_JOBS:
            break
    return (done_bytes / seconds, n) if n else (float(DEFAULT_THROUGHPUT), 0)


def plan_migration(storage: Any, job: MigrationJob | str) -> MigrationPlan:
    """What :func:`execute_migration` would do now: keys, bytes, estimated time. Changes nothing.

    A job that already ran shows the keys it has left; a new job shows its selection.

    Examples
    --------
    >>> plan = plan_migration(mem, MigrationJob(source_tier="hot", destination_tier="warm"))  # doctest: +SKIP
    >>> plan.total_bytes, plan.estimated_seconds  # doctest: +SKIP
    """
    store = open_version_store(storage)
    job = _job_of(store, job)
    _check(store, job)
    throughput, measured = _throughput(store, job)
    if store.catalog.migration_job(job.id) is not None:
        items = store.catalog.migration_items(job.id)
        keys = tuple(KeyStatus.from_row(i) for i in items if i.state not in ("done", "skipped"))
        return MigrationPlan(job, keys, throughput, measured, resumed=True)
    keys = tuple(KeyStatus.planned(p) for p in select_keys(store, job))
    return MigrationPlan(job, keys, throughput, measured)


def migration_status(storage: Any, job_id: str) -> MigrationStatus:
    """Where the migration ``job_id`` stands, from the journal.

    A job still marked running whose process is gone is reported ``interrupted``.

    Raises
    ------
    KeyNotFoundError
        No such job (the message lists recent ones).

    Examples
    --------
    >>> status = migration_status(mem, job.id)  # doctest: +SKIP
    >>> status.state, status.progress_percentage, status.keys_failed  # doctest: +SKIP
    ('completed', 100.0, {})
    """
    store = open_version_store(storage)
    row = store.catalog.migration_job(job_id)
    if row is None:
        raise _not_found(store, job_id)
    state = row.state
    if state == "running" and writer_gone(row.writer, row.started_at):
        state = "interrupted"
    return MigrationStatus.from_journal(row, store.catalog.migration_items(job_id), state)


def migration_jobs(storage: Any) -> list[MigrationStatus]:
    """Every migration in the journal, oldest first."""
    store = open_version_store(storage)
    return [migration_status(store, row.id) for row in store.catalog.migration_jobs()]


@overload
def execute_migration(
    storage: Any, job: MigrationJob | str, *, dry_run: Literal[False] = ..., max_workers: int = ...,
    distributed: bool | None = ...,
) -> MigrationStatus: ...


@overload
def execute_migration(
    storage: Any, job: MigrationJob | str, *, dry_run: Literal[True], max_workers: int = ...,
    distributed: bool | None = ...,
) -> MigrationPlan: ...


@overload
def execute_migration(
    storage: Any, job: MigrationJob | str, *, dry_run: bool, max_workers: int = ...,
    distributed: bool | None = ...,
) -> MigrationStatus | MigrationPlan: ...


def execute_migration(
    storage: Any, job: MigrationJob | str, *, dry_run: bool = False, max_workers: int = 4,
    distributed: bool | None = None,
) -> MigrationStatus | MigrationPlan:
    """Migrate the keys ``job`` selects; resumable, verified, in parallel, under a progress bar.

    Parameters
    ----------
    storage : VersionStore, Memory, StorageConfig or path
        The collection.
    job : MigrationJob or str
        The job, or the id of one in the journal (to resume it).
    dry_run : bool
        Return the :class:`MigrationPlan` (keys, bytes, estimated time) and change nothing.
    max_workers : int
        Keys migrated at once (threads).
    distributed : bool, optional
        ``True``: the active ``dask.distributed`` client's workers copy and verify the
        bytes of byte moves between tiers every process reaches (object stores), one
        task per version; the catalog (journal, moves, commits, audit) is only read
        and written here, so the workers need not reach it
        (:mod:`~memories_geo.lifecycle.fanout`). ``False``: threads only. ``None``
        (default): the active client when there is one, else threads.

    Returns
    -------
    MigrationStatus or MigrationPlan
        The job's final status (``state="completed"``), or the plan of a dry run.

    Raises
    ------
    MigrationError
        Some keys failed (``.status`` names them and why); the others are migrated,
        and running the job again retries the failed ones. Also raised while another
        live process runs the same job.
    OptionError
        The job's id was first run with other settings, or a bad ``max_workers``.
    TierUnavailableError, FormatError
        An unknown tier or format.
    ReadOnlyError
        The collection is read-only (a dry run is allowed).

    Examples
    --------
    >>> job = MigrationJob(source_tier="hot", destination_tier="warm",
    ...                    selection_criteria={"last_accessed_before": "30 days ago"})  # doctest: +SKIP
    >>> execute_migration(mem, job, dry_run=True)  # doctest: +SKIP
    >>> status = execute_migration(mem, job)  # doctest: +SKIP
    >>> status.state, status.bytes_migrated  # doctest: +SKIP
    """
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise OptionError(f"max_workers must be a positive integer; got {max_workers!r}")
    store = open_version_store(storage)
    job = _job_of(store, job)
    if dry_run:
        return plan_migration(store, job)
    client = active_client() if distributed or distributed is None else None
    if distributed and client is None:
        raise OptionError("distributed=True needs an active dask.distributed client "
                          "(distributed.Client(...)); leave it out to migrate in threads")
    store.check_writable(f"migrating {job.source_tier} -> {job.destination_tier}")
    _check(store, job)
    if store.catalog.migration_job(job.id) is None:
        planned = select_keys(store, job)
        if store.catalog.create_migration(job.id, job.to_json(), [p.item_row(job.id, i)
                                                                  for i, p in enumerate(planned)]):
            logger.info("migration %s planned: %s, %d key(s)", job.id, job.describe(), len(planned))
    if store.catalog.claim_migration(job.id, writer_gone) is None:
        row = store.catalog.migration_job(job.id)
        runner = row.writer if row else "?"
        raise MigrationError(f"migration job {job.id!r} is being run by process {runner}; "
                             "wait for it, or check get_migration_status()")
    todo = [i for i in store.catalog.migration_items(job.id) if i.state not in ("done", "skipped")]
    emit("migration.started", job=job.id, keys=len(todo))
    started = time.perf_counter()
    state = "interrupted"
    with store.meter.measure("migration", tier=job.destination_tier,
                             detail={"job": job.id, "from_tier": job.source_tier}) as measured:
        try:
            failed = _run(store, job, todo, max_workers, client)
            state = "failed" if failed else "completed"
        finally:
            store.catalog.finish_migration(job.id, state, time.perf_counter() - started)
        status = migration_status(store, job.id)
        measured.bytes = status.bytes_migrated
        measured.detail.update(keys=len(status.keys_done), failed=len(status.keys_failed), state=status.state)
    emit("migration.finished", job=job.id, state=status.state)
    logger.info("migration %s %s: %d key(s) done, %d failed, %d bytes", job.id, status.state,
                len(status.keys_done), len(status.keys_failed), status.bytes_migrated)
    if status.keys_failed:
        listed = "; ".join(f"{k}: {e}" for k, e in list(status.keys_failed.items())[:5])
        raise MigrationError(
            f"migration {job.id!r}: {len(status.keys_failed)} of {len(status.keys)} key(s) failed "
            f"({listed}); "
            f"the others are migrated; run the job again to retry (execute_migration({job.id!r}))",
            status=status,
        )
    return status


def _run(
    store: VersionStore, job: MigrationJob, todo: list[MigrationItemRow], max_workers: int, client: Any
) -> int:
    """Migrate ``todo`` in parallel under one progress bar; return how many failed."""
    total = sum(i.size_bytes for i in todo)
    desc = f"migrate {len(todo)} key(s) {job.source_tier} -> {job.destination_tier}"
    with progress_bar(total, desc) as bar:
        if client is not None:
            return migrate_on_client(client, store, job, todo, bar, max_workers)

        def one(item: MigrationItemRow) -> bool:
            return migrate_key(store, job, item, bar)

        if max_workers == 1 or len(todo) <= 1:
            results = [one(i) for i in todo]
        else:
            with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="mg-migrate") as pool:
                results = list(pool.map(one, todo))
    return results.count(False)
