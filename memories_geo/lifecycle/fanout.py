"""Fanning a migration out over a ``dask.distributed`` cluster: one task per key.

Each task opens the collection from its configuration on the worker and migrates its
key with :func:`~memories_geo.lifecycle.item.migrate_key`, journaling in the shared
catalog; the client only counts what finished. The workers must reach the catalog (a
SQLite catalog: workers on the same machine) and every tier involved.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from memories_geo.lifecycle.item import migrate_key
from memories_geo.lifecycle.job import MigrationJob
from memories_geo.progress import progress_bar
from memories_geo.versions import VersionStore

if TYPE_CHECKING:
    from memories_geo.catalog.sqlite_migrations import MigrationItemRow
    from memories_geo.config import StorageConfig
    from memories_geo.progress import ProgressBar

__all__ = ["active_client", "migrate_key_on_worker", "migrate_on_client"]


def active_client() -> Any:
    """The active ``dask.distributed`` client, or ``None`` (never imports distributed)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


def migrate_key_on_worker(config: StorageConfig, job: Mapping[str, Any], key: str) -> bool:
    """Migrate one key of a job on a worker; return ``False`` when it failed (see the journal)."""
    store = VersionStore(config)
    spec = MigrationJob.from_dict(job)
    item = next(i for i in store.catalog.migration_items(spec.id) if i.key == key)
    with progress_bar(0, f"migrate {key}") as bar:
        return migrate_key(store, spec, item, bar)


def migrate_on_client(
    client: Any, store: VersionStore, job: MigrationJob, todo: list[MigrationItemRow], bar: ProgressBar
) -> int:
    """Migrate ``todo`` as one task per key on ``client``'s workers; return how many failed.

    Examples
    --------
    >>> from distributed import Client  # doctest: +SKIP
    >>> with Client(processes=True):  # doctest: +SKIP
    ...     execute_migration(mem, job, distributed=True)
    """
    from distributed import as_completed

    sizes = {i.key: i.size_bytes for i in todo}
    futures = {
        client.submit(migrate_key_on_worker, store.config, job.to_dict(), item.key, pure=False): item.key
        for item in todo
    }
    failed = 0
    for future in as_completed(list(futures)):
        failed += not future.result()
        bar.update(sizes[futures[future]])
    return failed
