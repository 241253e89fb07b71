"""The lifecycle verbs of :class:`~memories_geo.Memory`: archive restores and migrations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, overload

from memories_geo.awaitable import awaitable_twin
from memories_geo.keys import validate_key

if TYPE_CHECKING:
    from memories_geo.entry import Entry
    from memories_geo.lifecycle import MigrationJob, MigrationPlan, MigrationStatus
    from memories_geo.versions import VersionStore
    from memories_geo.versions.archive import RestoreStatus

__all__ = ["LifecycleMixin"]


class LifecycleMixin:
    """Restores of archived versions, and migrations of keys between tiers."""

    version_store: VersionStore

    def _entry(self, key: str, version: int | None) -> Entry:
        return self.version_store.catalog.get(validate_key(key), version)

    def request_restore(
        self, key: str, *, days: int = 7, tier: str | None = None, version: int | None = None
    ) -> RestoreStatus:
        """Ask the store to restore an archived version (S3 Glacier, Azure archive) for ``days``.

        Parameters
        ----------
        key : str
        days : int
            How long the restored copy stays readable.
        tier : {"standard", "bulk", "expedited"}, optional
            The store's restore speed (and price). Default: the speed the tier's
            ``retrieval_time`` calls for, else ``"standard"``.
        version : int, optional
            Default: the current version.

        Returns
        -------
        RestoreStatus
            ``state`` is ``"restoring"`` until the store finishes, then ``"restored"``
            (with ``until``); ``"online"`` for data that needs no restore.

        Examples
        --------
        >>> mem.request_restore("archive/2019", days=7)  # doctest: +SKIP
        """
        return self.version_store.request_restore(self._entry(key, version), days=days, tier=tier)

    def restore_status(self, key: str, *, version: int | None = None) -> RestoreStatus:
        """Where a version stands: ``online``, ``archived``, ``restoring`` or ``restored`` (until when).

        Asks the store, and keeps what it answered in the catalog.

        Examples
        --------
        >>> mem.restore_status("archive/2019").state  # doctest: +SKIP
        'restoring'
        """
        return self.version_store.restore_status(self._entry(key, version))

    @overload
    def execute_migration(
        self, job: MigrationJob | str, *, dry_run: Literal[False] = ..., max_workers: int = ...,
        distributed: bool | None = ...,
    ) -> MigrationStatus: ...

    @overload
    def execute_migration(
        self, job: MigrationJob | str, *, dry_run: Literal[True], max_workers: int = ...,
        distributed: bool | None = ...,
    ) -> MigrationPlan: ...

    def execute_migration(
        self, job: MigrationJob | str, *, dry_run: bool = False, max_workers: int = 4,
        distributed: bool | None = None,
    ) -> MigrationStatus | MigrationPlan:
        """Migrate the keys ``job`` selects between tiers: verified, resumable, in parallel.

        Parameters
        ----------
        job : MigrationJob or str
            The job, or the id of one that ran before (to resume it).
        dry_run : bool
            Return the plan (keys, bytes, estimated time) and change nothing.
        max_workers : int
            Keys migrated at once.
        distributed : bool or None
            Fan the keys out over the active ``dask.distributed`` client (``None``: when
            there is one and the catalog is shared, i.e. PostgreSQL, so workers can reach it).

        Returns
        -------
        MigrationStatus or MigrationPlan

        Raises
        ------
        MigrationError
            Some keys failed (``error.status`` says which and why); running the job
            again retries them.
        RetentionError
            A key under retention would be deleted from its source tier.

        Examples
        --------
        >>> job = mg.MigrationJob(source_tier="hot", destination_tier="warm",  # doctest: +SKIP
        ...                       selection_criteria={"last_accessed_before": "30 days ago"})
        >>> mem.execute_migration(job, dry_run=True)  # doctest: +SKIP
        >>> mem.execute_migration(job).state  # doctest: +SKIP
        'completed'
        """
        from memories_geo.lifecycle import execute_migration

        return execute_migration(
            self.version_store, job, dry_run=dry_run, max_workers=max_workers, distributed=distributed
        )

    def get_migration_status(self, job_id: str) -> MigrationStatus:
        """Where a migration stands: state, progress percentage, bytes migrated, keys done and failed.

        Examples
        --------
        >>> mem.get_migration_status(job.id).progress_percentage  # doctest: +SKIP
        100.0
        """
        from memories_geo.lifecycle import migration_status

        return migration_status(self.version_store, job_id)

    def migrations(self) -> list[MigrationStatus]:
        """Every migration recorded in the catalog, oldest first."""
        from memories_geo.lifecycle import migration_jobs

        return migration_jobs(self.version_store)

    # -- awaitable twins ------------------------------------------------------------------

    arequest_restore = awaitable_twin(request_restore)
    arestore_status = awaitable_twin(restore_status)
    aexecute_migration = awaitable_twin(execute_migration)
    aget_migration_status = awaitable_twin(get_migration_status)
