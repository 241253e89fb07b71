"""Copying or converting one key as a new version (the ``copy`` and ``convert`` actions).

Between file tiers a ``copy`` is a byte copy through the commit protocol
(:meth:`VersionStore.copy`), checked against the source's manifest. Otherwise the
current version is opened, saved on the destination tier as a new version (staged,
written, checksummed, recorded, committed: :meth:`VersionStore.save`), read back and
compared with the source, and only then is the source version deleted (retired when a
checkpoint pins it). The new version's id is written to the journal *before* the save,
so a re-run after a crash finds it committed and does not save twice (or finds it
staged, an orphan that ``recover()`` removes, and saves again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from memories_geo.audit_log import new_record
from memories_geo.backends.base import Capability
from memories_geo.formats.registry import get_format
from memories_geo.keys import new_id
from memories_geo.lifecycle.compare import difference
from memories_geo.lifecycle.job import MigrationError
from memories_geo.query import open_request
from memories_geo.resolve import Resolver
from memories_geo.types import Kind

if TYPE_CHECKING:
    from memories_geo.catalog.sqlite_migrations import MigrationItemRow
    from memories_geo.entry import Entry
    from memories_geo.lifecycle.job import MigrationJob
    from memories_geo.versions import VersionStore

__all__ = ["open_version", "rewrite_key"]

logger = logging.getLogger(__name__)


def open_version(store: VersionStore, entry: Entry) -> Any:
    """Open a stored version for copying (lazily where the format can; no access is recorded)."""
    return get_format(entry.format).open(store.location(entry), entry.object_info, open_request())


def _byte_copy(store: VersionStore, item: MigrationItemRow, source: Entry, dest: str) -> bool:
    """Whether a planned ``copy`` is done byte for byte (both tiers hold files)."""
    return item.action == "copy" and all(
        Capability.FILES in store.tiers.backend(t).capabilities for t in (source.tier, dest)
    )


def rewrite_key(
    store: VersionStore, item: MigrationItemRow, job: MigrationJob,
    note_target: Callable[[str, str], None], on_bytes: Callable[[int], object] | None = None,
) -> tuple[str, str]:
    """Copy or convert one planned key to the job's destination; return ``(state, detail)``.

    ``note_target(version_id, format)`` records the new version in the journal before
    it is written; ``on_bytes`` counts the bytes of a byte copy. The state is ``done``,
    or ``skipped`` when the key was deleted or got a newer version meanwhile.

    Raises
    ------
    MigrationError
        The copy does not read back equal to the source (the new version is undone).
    """
    dest = job.destination_tier
    source = store.catalog.committed_entry(item.version_id)
    target = store.catalog.committed_entry(item.target_version_id) if item.target_version_id else None
    if target is None:
        if source is None:
            return "skipped", "deleted before it was migrated"
        if not store.catalog.is_current(source):
            return "skipped", f"a newer version than v{source.version} was saved meanwhile"
        if _byte_copy(store, item, source, dest):
            version_id = new_id()
            note_target(version_id, source.format)
            target = store.copy(source, dest, version_id=version_id, on_bytes=on_bytes)
        else:
            obj = open_version(store, source)
            format_name = item.target_format or store.tiers.format_for(dest, Kind(source.kind), obj)
            plan = Resolver(store.catalog, store.tiers).plan_save(
                obj, source.key, tier=dest, format=format_name, mode="w", format_options=job.format_options,
            )
            note_target(plan.version_id, format_name)
            target = store.save(obj, plan, attrs=source.attrs, tags=source.tags)
    if source is not None:
        if job.validation and not _byte_copy(store, item, source, dest):
            problem = difference(open_version(store, source), open_version(store, target))
            if problem is not None:
                _undo(store, target, source, problem)
                raise MigrationError(
                    f"{source.key}: the {target.format} copy on tier {dest!r} does not read back equal to "
                    f"v{source.version} ({problem}); the source is unchanged"
                )
        if source.tier != target.tier or source.format != target.format:
            store.unpublish(source)
        if job.delete_after_migration:
            store.delete(source.key, version=source.version)
    detail = (f"{item.source_format} on {job.source_tier} -> {target.format} on {dest} "
              f"({item.action}{', source kept' if not job.delete_after_migration else ''})")
    store.audit("migrate", key=target.key, version=target.version, detail=detail)
    logger.info("migrated %s: %s, now v%d", target.key, detail, target.version)
    return "done", ""


def _undo(store: VersionStore, target: Entry, source: Entry, problem: str) -> None:
    """Forget a committed copy that failed its check, and show the source again."""
    record = new_record("migrate", key=target.key, version=target.version, outcome="error",
                        detail=f"copy undone, it differs from the source: {problem}")
    if store.catalog.revert_commit(target, audit=record):
        store.purge([target])
    store.journal(record)
    store.publish(source)
