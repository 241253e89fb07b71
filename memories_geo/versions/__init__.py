"""The commit protocol: stage -> write -> verify -> record -> commit -> publish.

Every save goes through :meth:`VersionStore.save`; checkpoints, recovery and the
lifecycle call the same public verbs (:meth:`~VersionStore.publish`,
:meth:`~VersionStore.purge`, :meth:`~VersionStore.verify_entries`,
:meth:`~VersionStore.recover_orphans`), never a facade's private helpers.

A crash anywhere before the commit leaves the previous version current; what was
staged is an orphan that :meth:`VersionStore.recover_orphans` removes once its writer
is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from memories_geo.audit_log import new_record, read_journal, write_journal
from memories_geo.backends.base import Capability, Location, require
from memories_geo.catalog import Catalog, StagedVersion, open_catalog
from memories_geo.config import StorageConfig, redact_text
from memories_geo.errors import MemoriesError, ReadOnlyError
from memories_geo.events import emit
from memories_geo.formats.registry import formats_needing, get_format
from memories_geo.integrity import raise_for_problems, stat_fingerprint, verify_manifest_stat
from memories_geo.operations import Measurement, OperationMeter
from memories_geo.progress import progress_bar
from memories_geo.query import COMMON_OPEN_OPTIONS, check_options, open_request
from memories_geo.records import read_record_rows, record_path, write_record
from memories_geo.resolve import SavePlan, TierRouter
from memories_geo.versions.archive import (
    RestoreStatus,
    apply_tier_policies,
    check_deletable,
    check_lockable,
    check_readable,
    raise_if_archived,
    request_restore,
    restore_status,
)
from memories_geo.versions.commit import Commit
from memories_geo.versions.fanout import is_dask_backed, verify_versions
from memories_geo.versions.orphans import STAGED_GRACE
from memories_geo.versions.quota import check_quota, estimated_size
from memories_geo.versions.recovery import recover_orphans
from memories_geo.versions.shared import remove_version_data

if TYPE_CHECKING:
    from memories_geo.backends.base import Backend
    from memories_geo.entry import Entry
    from memories_geo.formats.base import Format

__all__ = ["STAGED_GRACE", "Commit", "VersionStore", "open_version_store"]

logger = logging.getLogger(__name__)



class VersionStore:
    """Versions of one collection: its catalog, its tiers, and the commit protocol over them.

    Parameters
    ----------
    config : StorageConfig
        The collection's configuration.
    catalog : Catalog, optional
        An open catalog (default: opened from ``config.catalog``).
    read_only : bool
        Refuse every operation that would change the collection
        (:class:`~memories_geo.errors.ReadOnlyError`).

    Examples
    --------
    >>> store = VersionStore(StorageConfig.embedded("/tmp/mg-doc"))  # doctest: +SKIP
    >>> store.verify_entries(store.catalog.current_entries())  # doctest: +SKIP
    """

    def __init__(
        self, config: StorageConfig, catalog: Catalog | None = None, *, read_only: bool = False
    ) -> None:
        self.config = config
        self.catalog = catalog if catalog is not None else open_catalog(config.catalog)
        self.tiers = TierRouter(config)
        self.read_only = read_only
        #: Times every operation for the monitor (measures nothing until a sink is added).
        self.meter = OperationMeter()

    # -- writes allowed, and the audit log -----------------------------------------------

    def check_writable(self, operation: str) -> None:
        """Raise :class:`~memories_geo.errors.ReadOnlyError` when the collection is read-only."""
        if self.read_only:
            raise ReadOnlyError(f"{operation} refused: this collection was opened read-only (read_only=True)")

    @property
    def journal_store(self) -> Backend | None:
        """The store of the journal and checkpoint manifests (:meth:`TierRouter.primary_store`)."""
        return self.tiers.primary_store()

    def audit(
        self, operation: str, *, key: str | None = None, version: int | None = None,
        outcome: str = "ok", detail: str = "",
    ) -> None:
        """Append an operation that moves no pointer to the audit log and the journal."""
        record = new_record(operation, key=key, version=version, outcome=outcome, detail=detail)
        self.catalog.append_audit(record)
        self.journal(record)

    def journal(self, record: Mapping[str, Any]) -> None:
        """Write a numbered audit record to the journal (a failure is logged, not raised)."""
        store = self.journal_store
        if store is None:
            return
        try:
            write_journal(store, record)
        except (OSError, MemoriesError) as exc:
            logger.warning("could not write audit record %s to the journal: %s", record.get("seq"),
                           redact_text(str(exc)))

    def journal_records(self) -> list[dict[str, Any]]:
        """Every journal record, in sequence order (empty without a file tier)."""
        store = self.journal_store
        return [] if store is None else read_journal(store)

    def restore_pointers(
        self, pins: Mapping[str, str], *, operation: str = "restore", detail: str = ""
    ) -> None:
        """Make the current versions exactly ``pins`` (``key -> version_id``), audited, then publish.

        Keys absent from ``pins`` disappear (their versions are retired, not deleted).
        """
        self.check_writable(operation)
        before = self.catalog.current_entries()
        record = new_record(operation, detail=detail)
        self.catalog.restore_pointers(pins, audit=record)
        self.journal(record)
        for entry in before:
            if entry.key not in pins:
                self.unpublish(entry)
        for entry in self.catalog.current_entries():
            self.publish(entry)

    # -- places ------------------------------------------------------------------------

    def location(self, entry: Entry | StagedVersion) -> Location:
        """Where a version (committed or staged) is stored."""
        return Location(self.tiers.backend(entry.tier), entry.path)

    # -- save ----------------------------------------------------------------------------

    def save(
        self, obj: Any, plan: SavePlan, *, attrs: Mapping[str, Any] | None = None, tags: Sequence[str] = ()
    ) -> Any:
        """Run the protocol for one resolved save; return the entry (or a delayed save).

        Parameters
        ----------
        obj : object
            What to store.
        plan : SavePlan
            From :meth:`memories_geo.resolve.Resolver.plan_save`.
        attrs, tags
            Stored with the version in the catalog.

        Returns
        -------
        Entry or dask.delayed.Delayed
            The committed entry, or with ``plan.options.compute=False`` a delayed
            object that commits when computed (after the bulk write, for a format that
            defers it); until then the key is not in the catalog.
        """
        self.check_writable(f"saving {plan.key!r}")
        require(plan.backend, Capability.WRITES, f"saving on tier {plan.tier!r}")
        check_lockable(self, plan.tier)
        self.check_quota(plan.tier, estimated_size(obj), what=f"saving {plan.key!r}")
        with self.meter.measure("save", key=plan.key, tier=plan.tier, format=plan.format.name) as measured:
            if not plan.options.compute:
                return self._save(obj, plan, attrs, tags, measured)
            entry = self._save(obj, plan, attrs, tags, measured)
            measured.describe(entry)
            measured.bytes = entry.size_bytes
        return entry

    def check_quota(self, tier: str, adding: int, *, what: str) -> None:
        """Raise :class:`~memories_geo.errors.QuotaExceededError` if ``adding`` bytes overflow ``tier``."""
        check_quota(self.config, self.catalog, tier, adding, what=what)

    def _save(
        self, obj: Any, plan: SavePlan, attrs: Mapping[str, Any] | None, tags: Sequence[str],
        measured: Measurement,
    ) -> Any:
        location = Location(plan.backend, plan.path)
        staged = self.catalog.stage(
            key=plan.key, version_id=plan.version_id, tier=plan.tier, format=plan.format.name,
            kind=plan.kind.value, path=plan.path, uri=location.url,
            storage_class=self.tiers.tier_config(plan.tier).storage_class,
        )
        emit("save.staged", key=plan.key, tier=plan.tier, format=plan.format.name, path=plan.path)
        exclusive = plan.mode == "w-"
        commit = Commit(self, plan.format, location, staged, dict(attrs or {}), tuple(tags), exclusive)
        lazy = is_dask_backed(obj)
        try:
            result = plan.format.write(obj, location, replace(plan.options, compute=False) if lazy
                                       else plan.options)
        except BaseException as exc:
            commit.fail(exc)
        if result.pending is None:
            emit("save.written", key=plan.key, tier=plan.tier, format=plan.format.name,
                 bytes=result.size_bytes)
            measured.requests = len(result.manifest.files) + 1
            if plan.options.compute:
                return commit(result)
        from memories_geo.versions.distributed import pending_save

        pending = pending_save(commit, result, location, nbytes=estimated_size(obj))
        return pending.compute() if plan.options.compute else pending

    def publish(self, entry: Entry) -> None:
        """Let a format that keeps a stable name (a database view) point it at ``entry``.

        The format checks, under its own lock, that ``entry`` is still the catalog's
        current version, so a slow writer never publishes a superseded version.
        """
        publish = getattr(get_format(entry.format), "publish", None)
        if publish is not None:
            publish(self.location(entry), entry.key, is_current=lambda: self.catalog.is_current(entry))

    def republish(self) -> list[str]:
        """Make stable names (views) agree with the catalog; return the keys repaired.

        Drops the views of keys the catalog no longer has on that tier (a deletion or a
        restore interrupted before its views were dropped), then re-points every view
        that does not show its key's current version.
        """
        current = {e.key: e for e in self.catalog.current_entries()}
        repaired = []
        for tier, fmt in self._publishing_formats():
            backend = self.tiers.backend(tier)
            for key in fmt.published_keys(backend):
                if key not in current or current[key].tier != tier:
                    fmt.unpublish(backend, key)
                    repaired.append(key)
        for entry in current.values():
            is_published = getattr(get_format(entry.format), "is_published", None)
            if is_published is not None and not is_published(self.location(entry), entry.key):
                self.publish(entry)
                repaired.append(entry.key)
        if repaired:
            logger.info("re-published %d key(s) whose view lagged the catalog: %s", len(repaired), repaired)
        return repaired

    def _publishing_formats(self) -> list[tuple[str, Any]]:
        """``(tier, format)`` pairs of formats that keep stable names on table tiers."""
        names: dict[str, set[str]] = {}
        for entry in self.catalog.all_versions(include_retired=True):
            names.setdefault(entry.tier, set()).add(entry.format)
        pairs = []
        for tier in self.tiers.names:
            capabilities = self.tiers.backend(tier).capabilities
            if Capability.TABLES not in capabilities:
                continue
            defaults = {name for capability in capabilities - {Capability.TABLES, Capability.WRITES,
                                                               Capability.LISTING}
                        for name in formats_needing(capability)}
            for name in sorted(names.get(tier, set()) | defaults):
                fmt = get_format(name)
                if hasattr(fmt, "published_keys") and hasattr(fmt, "unpublish"):
                    pairs.append((tier, fmt))
        return pairs

    def unpublish(self, entry: Entry) -> None:
        """Remove the stable name a format keeps for ``entry``'s key, if any."""
        unpublish = getattr(get_format(entry.format), "unpublish", None)
        if unpublish is not None:
            unpublish(self.tiers.backend(entry.tier), entry.key)

    def copy(
        self, entry: Entry, tier: str, *, version_id: str | None = None,
        on_bytes: Callable[[int], object] | None = None,
    ) -> Entry:
        """Copy a version to ``tier`` as its key's new version, byte for byte (:func:`.copy.copy_version`)."""
        from memories_geo.versions.copy import copy_version

        with self.meter.measure("copy", key=entry.key, tier=tier, format=entry.format,
                                bytes=entry.size_bytes, detail={"from_tier": entry.tier}) as measured:
            copied = copy_version(self, entry, tier, version_id=version_id, on_bytes=on_bytes)
            measured.version = copied.version
        return copied

    def move(self, entry: Entry, tier: str, *, on_bytes: Callable[[int], object] | None = None) -> Entry:
        """Move a stored version to ``tier`` byte for byte, verified (:func:`~.move.move_version`)."""
        from memories_geo.versions.move import move_version

        with self.meter.measure("move", key=entry.key, version=entry.version, tier=tier, format=entry.format,
                                bytes=entry.size_bytes, detail={"from_tier": entry.tier}):
            return move_version(self, entry, tier, on_bytes=on_bytes)

    def apply_tier_policies(self, location: Location, tier: str) -> None:
        """Give a written version its tier's storage class and retention (before its commit)."""
        apply_tier_policies(self, location, tier)

    def request_restore(self, entry: Entry, *, days: int = 7, tier: str | None = None) -> RestoreStatus:
        """Ask the store to restore an archived version for ``days`` (see :mod:`.archive`)."""
        return request_restore(self, entry, days=days, tier=tier)

    def restore_status(self, entry: Entry) -> RestoreStatus:
        """Where an archived version stands: archived, restoring, restored (until when) or online."""
        return restore_status(self, entry)

    def delete_stored(self, fmt: Format, location: Location) -> None:
        """Delete a version's data, then its record (keeping files later versions share)."""
        remove_version_data(self, fmt, location)

    def abandon(self, fmt: Format, location: Location, staged: StagedVersion) -> None:
        """Remove what a failed save staged: its data, its record, its catalog row."""
        try:
            self.delete_stored(fmt, location)
        finally:
            self.catalog.discard(staged)

    # -- open ------------------------------------------------------------------------------

    def open(self, entry: Entry, *, verify: bool = False, **query: Any) -> Any:
        """Open a stored version through its format, applying the one ``open`` contract.

        ``query`` holds ``bbox``, ``bbox_crs``, ``time``, ``columns`` and the format's own
        keywords; anything else raises :class:`~memories_geo.errors.OptionError` listing
        the accepted keywords. ``verify=True`` re-hashes the version's stored bytes
        against its manifest first and raises
        :class:`~memories_geo.errors.ChecksumMismatchError` naming every problem.
        """
        if verify:
            self.verify([entry])
        check_readable(self, entry)
        fmt = get_format(entry.format)
        own = {k: v for k, v in query.items() if k not in COMMON_OPEN_OPTIONS}
        check_options(own, [*COMMON_OPEN_OPTIONS, *fmt.open_options], f"open() of a {fmt.name} entry")
        common = {k: v for k, v in query.items() if k in COMMON_OPEN_OPTIONS}
        request = open_request(**common, options=own)
        with self.meter.measure("open", detail=request.describe()) as measured:
            measured.describe(entry)
            location = Location(self.tiers.backend(entry.tier), entry.path, self.meter.read_tally(measured))
            try:
                obj = fmt.open(location, entry.object_info, request)
            except PermissionError as exc:
                raise_if_archived(self, entry, exc)
                raise
        self.catalog.touch(entry)
        return obj

    # -- delete --------------------------------------------------------------------------

    def delete(self, key: str, version: int | None = None) -> list[Entry]:
        """Forget ``key`` (or one non-current version) in one catalog transaction, then purge.

        Versions pinned by a checkpoint are retired, not purged.
        """
        self.check_writable(f"deleting {key!r}")
        with self.meter.measure("delete", key=key, version=version) as measured:
            entries = self._delete(key, version)
            measured.bytes = sum(e.size_bytes for e in entries)
            if entries:
                measured.tier, measured.format = entries[0].tier, entries[0].format
        return entries

    def _delete(self, key: str, version: int | None) -> list[Entry]:
        record = new_record("delete" if version is None else "delete_version", key=key, version=version)
        doomed = self.catalog.versions(key) if version is None else [self.catalog.get(key, version)]
        check_deletable(self, doomed, f"deleting {key!r}" + ("" if version is None else f" v{version}"))
        if version is None:
            current = self.catalog.current(key)
            entries, purge = self.catalog.remove_key(key, audit=record)
            self.unpublish(current)
        else:
            entry, gone = self.catalog.remove_version(key, version, audit=record)
            entries, purge = [entry], [entry] if gone else []
        self.journal(record)
        self.purge(purge)
        if version is None:
            logger.info("deleted %s (%d version(s))", key, len(entries))
        else:
            logger.info("deleted %s v%d", key, version)
        return entries

    def purge(self, entries: Sequence[Entry]) -> None:
        """Delete the stored data of versions the catalog no longer references."""
        for entry in entries:
            self.delete_stored(get_format(entry.format), self.location(entry))

    # -- verify --------------------------------------------------------------------------

    def verify(self, entries: Sequence[Entry]) -> None:
        """Re-hash ``entries`` and raise :class:`ChecksumMismatchError` naming every problem."""
        with self.meter.measure("verify", bytes=sum(e.size_bytes for e in entries),
                                detail={"versions": len(entries)}) as measured:
            if len(entries) == 1:
                measured.describe(entries[0])
            found = self.verify_entries(entries)
        problems = [p for problems in found.values() for p in problems]
        failed = sum(1 for problems in found.values() if problems)
        logger.info("verified %d version(s) (%d bytes): %s", len(entries), sum(e.size_bytes for e in entries),
                    f"{len(problems)} problem(s) in {failed} version(s)" if problems else "intact")
        raise_for_problems(f"{failed} of {len(entries)} version(s)", problems)

    def verify_entries(self, entries: Sequence[Entry], *, quick: bool = False) -> dict[str, list[str]]:
        """Problems of each stored version, by version id (an empty list when intact).

        ``quick=True`` re-hashes only the versions whose file listing (paths, sizes,
        modification stamps) differs from the one recorded at their last full
        verification, the way git trusts its index; ``quick=False`` re-hashes all.
        """
        recorded = self.catalog.stat_fingerprints([e.version_id for e in entries]) if quick else {}
        total = sum(e.size_bytes for e in entries)
        with progress_bar(total, f"verify {len(entries)} version(s)") as bar:
            found = verify_versions(self, entries, quick=quick, recorded=recorded,
                                    on_done=lambda entry: bar.update(entry.size_bytes))
        logger.debug("checked %d version(s) (%d bytes, quick=%s): %d with problems", len(entries), total,
                     quick, sum(1 for f in found.values() if f))
        return found

    def verify_entry(self, entry: Entry, *, quick: bool = False, recorded: str | None = None) -> list[str]:
        """Problems of one stored version (empty when intact); see :meth:`verify_entries`."""
        location = self.location(entry)
        files = Capability.FILES in location.backend.capabilities
        if quick and files:
            recorded = recorded or self.catalog.stat_fingerprint(entry.version_id)
            try:
                store_fs = location.store_fs
                if recorded is not None and stat_fingerprint(store_fs, location.full_path) == recorded:
                    return []
            except FileNotFoundError:
                return [f"{entry.key} v{entry.version}: {location.url}: missing"]
        manifest = self.catalog.manifest(entry)
        if files:
            found, stat = verify_manifest_stat(location.store_fs, location.full_path, manifest)
            if not found:
                self.catalog.set_stat_fingerprint(entry.version_id, stat)
        else:
            found = get_format(entry.format).verify(location, manifest)
        return [f"{entry.key} v{entry.version}: {p}" for p in found]

    # -- recovery -------------------------------------------------------------------------

    def recover_orphans(self, *, grace: timedelta = STAGED_GRACE) -> list[str]:
        """Remove what no committed version owns, and re-publish views that lag the catalog.

        Removes staged versions whose writer is gone (a process on this host that no
        longer runs, or one on another host that staged more than ``grace`` ago), and
        stored versions the catalog does not know. Safe while other processes write:
        each tier is listed *before* the catalog is read, and a writer stages its
        version in the catalog before writing any file, so a write in progress is
        always known by the time its files can be seen. Tiers that cannot be reached
        are skipped with a warning.

        Returns
        -------
        list of str
            Display URLs of what was removed.
        """
        return recover_orphans(self, grace=grace)

    def write_missing_records(self) -> None:
        """Write the record of committed versions that lack one (a crash right after commit)."""
        for entry in self.catalog.all_versions():
            backend = self.tiers.backend(entry.tier)
            if backend.exists(record_path(entry.path)) or not backend.exists(entry.path):
                continue
            row = self.catalog.export_rows([entry.version_id])
            if row:
                write_record(backend, entry.path, row[0])

    def records(self) -> list[dict[str, Any]]:
        """Every version record found on every tier that can list its versions."""
        rows = []
        for tier in self.tiers.names:
            backend = self.tiers.backend(tier)
            if Capability.LISTING in backend.capabilities:
                rows += read_record_rows(backend)
        return rows


def open_version_store(storage: Any) -> VersionStore:
    """The one normaliser from "anything naming a collection" to its :class:`VersionStore`.

    Accepts a :class:`VersionStore`, an object with a ``version_store`` attribute (a
    ``Memory``), a :class:`StorageConfig`, a path (embedded home or ``.toml`` file) or
    ``None`` (discovered).
    """
    if isinstance(storage, VersionStore):
        return storage
    store = getattr(storage, "version_store", None)
    if isinstance(store, VersionStore):
        return store
    return VersionStore(StorageConfig.from_any(storage))
