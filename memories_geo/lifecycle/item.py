"""Migrating one key of a job: a byte move (:meth:`VersionStore.move`) or a copy or conversion.

Each step is journaled (``copying``, then ``done``, ``skipped`` or ``failed`` with the
error), so a re-run knows where the key got to. A byte move cut short after its catalog
commit is finished by deleting its leftover source files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from memories_geo.backends.base import Location
from memories_geo.config import redact_text
from memories_geo.events import emit
from memories_geo.lifecycle.convert import rewrite_key
from memories_geo.records import record_path
from memories_geo.versions.shared import remove_version_data

if TYPE_CHECKING:
    from memories_geo.catalog.sqlite_migrations import MigrationItemRow
    from memories_geo.lifecycle.job import MigrationJob
    from memories_geo.progress import ProgressBar
    from memories_geo.versions import VersionStore

__all__ = ["fail_key", "finish_key", "migrate_key", "remove_leftover", "start_key"]

logger = logging.getLogger(__name__)


def migrate_key(store: VersionStore, job: MigrationJob, item: MigrationItemRow, bar: ProgressBar) -> bool:
    """Migrate one planned key of ``job``, journaling each state; return ``False`` when it failed.

    The failure (any exception but an interruption) is logged and recorded in the
    journal as the key's error; ``bar`` counts the key's bytes.

    Examples
    --------
    >>> item = store.catalog.migration_items(job.id)[0]  # doctest: +SKIP
    >>> with progress_bar(item.size_bytes, "migrate") as bar:  # doctest: +SKIP
    ...     migrate_key(store, job, item, bar)
    True
    """
    catalog = store.catalog
    start_key(store, job, item)
    counted = [0]

    def on_bytes(n: int) -> None:
        counted[0] += n
        bar.update(n)

    try:
        if item.action == "move":
            state, detail = _move_key(store, job, item, on_bytes)
        else:
            def note_target(version_id: str, format_name: str) -> None:
                catalog.update_migration_item(job.id, item.key, state="copying", target_version_id=version_id,
                                              target_format=format_name)

            state, detail = rewrite_key(store, item, job, note_target, on_bytes)
    except Exception as exc:
        fail_key(store, job, item, exc)
        return False
    bar.update(max(item.size_bytes - counted[0], 0))
    finish_key(store, job, item, state, detail)
    return True


def start_key(store: VersionStore, job: MigrationJob, item: MigrationItemRow) -> None:
    """Journal that ``item`` is being copied (its state ``copying``)."""
    store.catalog.update_migration_item(job.id, item.key, state="copying")
    emit("migration.key", job=job.id, key=item.key, state="copying")


def finish_key(
    store: VersionStore, job: MigrationJob, item: MigrationItemRow, state: str, detail: str
) -> None:
    """Journal the end of ``item``: ``done`` (its bytes counted) or ``skipped`` (``detail`` says why)."""
    store.catalog.update_migration_item(job.id, item.key, state=state, error=detail,
                                        bytes_done=item.size_bytes if state == "done" else 0)
    emit("migration.key", job=job.id, key=item.key, state=state)
    if state == "skipped":
        logger.info("migration %s: %s skipped: %s", job.id, item.key, detail)


def fail_key(store: VersionStore, job: MigrationJob, item: MigrationItemRow, exc: BaseException) -> None:
    """Log ``exc`` and journal it as ``item``'s error (state ``failed``; a re-run retries the key)."""
    message = redact_text(f"{type(exc).__name__}: {exc}")
    logger.error("migration %s: %s failed: %s", job.id, item.key, message)
    store.catalog.update_migration_item(job.id, item.key, state="failed", error=message)
    emit("migration.key", job=job.id, key=item.key, state="failed")


def _move_key(
    store: VersionStore, job: MigrationJob, item: MigrationItemRow, on_bytes: Callable[[int], object]
) -> tuple[str, str]:
    """Move one version byte for byte (:meth:`VersionStore.move`), or finish a move a crash cut short."""
    entry = store.catalog.committed_entry(item.version_id)
    if entry is None:
        return "skipped", "deleted before it was migrated"
    if entry.tier == job.source_tier:
        store.move(entry, job.destination_tier, on_bytes=on_bytes)
    elif entry.tier == job.destination_tier:
        remove_leftover(store, job.source_tier, entry.path)
    else:
        return "skipped", f"moved to tier {entry.tier!r} meanwhile"
    return "done", ""


def remove_leftover(store: VersionStore, tier: str, path: str) -> None:
    """Delete the source files of a move committed just before a crash (nothing references them)."""
    if (tier, path) in store.catalog.stored_paths():
        return
    backend = store.tiers.backend(tier)
    if backend.exists(path) or backend.exists(record_path(path)):
        location = Location(backend, path)
        logger.info("removing the source of a move committed before an interruption: %s", location.url)
        remove_version_data(store, None, location)
