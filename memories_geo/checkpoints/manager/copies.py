"""Copying checkpointed versions to the backup store, fanned out over threads or a cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memories_geo.errors import ChecksumMismatchError

if TYPE_CHECKING:
    from memories_geo.checkpoints.backup import BackupStore
    from memories_geo.entry import Entry
    from memories_geo.progress import ProgressBar

__all__ = ["backup_versions"]


def backup_versions(backups: BackupStore, entries: list[Entry], bar: ProgressBar) -> None:
    """Copy versions to the backup store, verified: file copies fan out, one task per version.

    With an active ``dask.distributed`` client, the versions on tiers every process
    reaches (object stores) are copied to a backup store the workers reach too, by one
    task per version on the workers (:func:`~memories_geo.versions.fanout.copy_checked`:
    the tasks get filesystems, paths and manifests, never the catalog). The other file
    versions are copied in a thread pool, table versions exported one after the other.
    """
    from concurrent.futures import ThreadPoolExecutor

    from memories_geo.backends.base import Capability, Location
    from memories_geo.records import record_path
    from memories_geo.versions.fanout import active_client, copy_checked, fan_out, shared_location

    store, target = backups.versions, backups.backend
    files = [e for e in entries if Capability.FILES in store.tiers.backend(e.tier).capabilities]
    for entry in entries:
        if entry not in files:
            backups.copy(entry, bar)
    cluster = active_client() is not None and shared_location(Location(target, ""))
    remote = [e for e in files if cluster and shared_location(store.location(e))]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda entry: backups.copy(entry, bar), [e for e in files if e not in remote]))
    sources: list[Any] = [store.tiers.backend(e.tier) for e in remote]

    def copied(index: int, problems: list[str]) -> None:
        entry, source = remote[index], sources[index]
        if problems:
            raise ChecksumMismatchError(f"backup copy of {entry.key} v{entry.version} is corrupt", problems)
        record = record_path(entry.path)
        if source.exists(record):
            target.write_bytes(record_path(backups.path_of(entry)), source.read_bytes(record))
        bar.update(entry.size_bytes)

    calls = [(src.fs, src.full_path(e.path), target.fs, target.full_path(backups.path_of(e)),
              store.catalog.manifest(e)) for e, src in zip(remote, sources, strict=True)]
    fan_out(copy_checked, calls, on_done=copied)
