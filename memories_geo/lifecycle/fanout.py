"""Migrations on a ``dask.distributed`` cluster: workers copy bytes, the client keeps the catalog.

What runs where, for each byte move (``action="move"``) between tiers every process
reaches (object stores):

- **the client** journals the key (``copying``), checks retention, reads the version's
  manifest and records the move in the catalog (:meth:`begin_move`);
- **a worker** copies the version's files and re-hashes the copy against that manifest
  (:func:`~memories_geo.versions.fanout.copy_checked`, one task per version: it gets
  filesystems, paths and the manifest, never the catalog);
- **the client**, as each task ends, writes the version's record beside the copy,
  re-points the version in one catalog transaction (with its ``migrate`` audit record),
  deletes the source and journals the key ``done``; a task that failed or reported a
  bad copy (a killed worker, a corrupt byte) removes the copy, forgets the move and
  journals the key ``failed``, leaving the source current: running the job again
  retries it.

The other keys (copies and conversions, which go through the save protocol, and any
key on a local directory the workers may not see) migrate on the client in a thread
pool, as without a cluster; a conversion of a dask-backed object still writes its
chunks on the workers, through the distributed save.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memories_geo.backends.base import Capability, Location
from memories_geo.config import redact_text
from memories_geo.errors import ChecksumMismatchError
from memories_geo.lifecycle.item import fail_key, finish_key, migrate_key, remove_leftover, start_key
from memories_geo.records import record_path
from memories_geo.versions.archive import check_deletable
from memories_geo.versions.fanout import active_client, copy_checked, shared_location
from memories_geo.versions.move import commit_move, remove_moved_source

if TYPE_CHECKING:
    from memories_geo.catalog.sqlite_migrations import MigrationItemRow
    from memories_geo.entry import Entry
    from memories_geo.integrity import Manifest
    from memories_geo.lifecycle.job import MigrationJob
    from memories_geo.progress import ProgressBar
    from memories_geo.versions import VersionStore

__all__ = ["active_client", "migrate_on_client", "moves_on_workers"]

logger = logging.getLogger(__name__)


@dataclass
class _Move:
    """A byte move handed to a worker: what the client needs to commit or undo it."""

    item: MigrationItemRow
    entry: Entry
    source: Location
    dest: Location
    manifest: Manifest
    move: Any


def moves_on_workers(store: VersionStore, job: MigrationJob) -> bool:
    """Whether ``job``'s byte moves can be copied by a cluster's workers: both tiers hold files all reach.

    Examples
    --------
    >>> moves_on_workers(mem.version_store, MigrationJob(source_tier="hot", destination_tier="warm"))
    ... # doctest: +SKIP
    False
    """
    for tier in (job.source_tier, job.destination_tier):
        backend = store.tiers.backend(tier)
        if Capability.FILES not in backend.capabilities or not shared_location(Location(backend, "")):
            return False
    return True


def migrate_on_client(
    client: Any, store: VersionStore, job: MigrationJob, todo: list[MigrationItemRow], bar: ProgressBar,
    max_workers: int = 4,
) -> int:
    """Migrate ``todo`` with ``client``'s workers copying the bytes of byte moves; return how many failed.

    Every catalog read and write (journal, moves, commits, audit) happens in this
    process; see the module docstring for what runs where.

    Examples
    --------
    >>> from distributed import Client  # doctest: +SKIP
    >>> with Client(cluster):  # doctest: +SKIP
    ...     execute_migration(mem, job)
    """
    remote = [i for i in todo if i.action == "move"] if moves_on_workers(store, job) else []
    local = [i for i in todo if i not in remote]
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="mg-migrate") as pool:
        results = [pool.submit(migrate_key, store, job, item, bar) for item in local]
        failed = _move_on_workers(client, store, job, remote, bar)
        failed += [r.result() for r in results].count(False)
    return failed


def _move_on_workers(
    client: Any, store: VersionStore, job: MigrationJob, items: list[MigrationItemRow], bar: ProgressBar
) -> int:
    """Byte moves copied by one task per version on the workers, committed here as each ends."""
    if not items:
        return 0
    from distributed import as_completed

    failed = 0
    futures: dict[Any, _Move] = {}
    try:
        for item in items:
            try:
                move = _begin(store, job, item)
            except Exception as exc:
                fail_key(store, job, item, exc)
                failed += 1
                continue
            if isinstance(move, tuple):
                bar.update(item.size_bytes)
                finish_key(store, job, item, *move)
                continue
            future = client.submit(
                copy_checked, move.source.store_fs, move.source.full_path, move.dest.store_fs,
                move.dest.full_path, move.manifest, pure=False, key=f"copy-checked-{uuid.uuid4().hex}",
            )
            futures[future] = move
        for future in as_completed(list(futures)):
            move = futures.pop(future)
            try:
                record = _commit(store, job, move, future.result())
            except Exception as exc:
                _undo(store, move)
                fail_key(store, job, move.item, exc)
                failed += 1
                continue
            _quietly(store.journal, record)
            _remove_source(store, move, job.destination_tier)
            bar.update(move.item.size_bytes)
            finish_key(store, job, move.item, "done", "")
    finally:
        if futures:
            client.cancel(list(futures))
            for move in futures.values():
                _quietly(store.catalog.forget_move, move.entry.version_id)
    return failed


def _begin(store: VersionStore, job: MigrationJob, item: MigrationItemRow) -> _Move | tuple[str, str]:
    """Journal the key, check it and record its move; or ``(state, detail)`` when nothing is to copy."""
    start_key(store, job, item)
    entry = store.catalog.committed_entry(item.version_id)
    if entry is None:
        return "skipped", "deleted before it was migrated"
    tier = job.destination_tier
    if entry.tier == tier:
        remove_leftover(store, job.source_tier, entry.path)
        return "done", ""
    if entry.tier != job.source_tier:
        return "skipped", f"moved to tier {entry.tier!r} meanwhile"
    store.check_writable(f"moving {entry.key!r}")
    check_deletable(store, [entry], f"moving {entry.key!r} v{entry.version} off tier {entry.tier!r}")
    source = store.location(entry)
    dest = Location(store.tiers.backend(tier), entry.path)
    manifest = store.catalog.manifest(entry)
    move = store.catalog.begin_move(entry.version_id, tier, entry.path, dest.url)
    try:
        if dest.backend.exists(entry.path):
            dest.backend.remove(entry.path)
    except BaseException:
        _quietly(store.catalog.forget_move, entry.version_id)
        raise
    return _Move(item, entry, source, dest, manifest, move)


def _commit(store: VersionStore, job: MigrationJob, move: _Move, problems: list[str]) -> dict[str, Any]:
    """Record and re-point (one catalog transaction, with its audit record) a version a worker copied.

    Returns the audit record, for the journal. Raises when the worker reported problems.
    """
    entry, dest, tier = move.entry, move.dest, job.destination_tier
    if problems:
        what = f"the copy of {entry.key} v{entry.version} to tier {tier!r}"
        raise ChecksumMismatchError(f"{what} does not match its manifest", problems)
    detail = f"{entry.tier} -> {tier}, {move.manifest.size_bytes} bytes copied by a worker"
    _, record = commit_move(store, entry, dest, move.move, move.manifest, detail=detail)
    return record


def _remove_source(store: VersionStore, move: _Move, tier: str) -> None:
    """Delete the source files of a committed move (a failure leaves them to ``recover()``)."""
    entry = move.entry
    remove_moved_source(store, entry, move.source, tier)
    logger.info("moved %s v%d from %s to %s (%d bytes copied by a worker)", entry.key, entry.version,
                entry.tier, tier, move.manifest.size_bytes)


def _undo(store: VersionStore, move: _Move) -> None:
    """Forget a move whose copy failed and remove what it copied; the source stays current."""
    _quietly(store.catalog.forget_move, move.entry.version_id)
    _quietly(move.dest.backend.remove, move.entry.path)
    _quietly(move.dest.backend.remove, record_path(move.entry.path))


def _quietly(action: Any, *args: Any) -> None:
    try:
        action(*args)
    except Exception as exc:
        logger.warning("migration clean-up: %s failed (recover() finishes it): %s",
                       getattr(action, "__name__", "clean-up"), redact_text(str(exc)))
