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
import os
import socket
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn

from memories_geo.backends.base import Capability, Location, require
from memories_geo.catalog import Catalog, StagedVersion, version_row
from memories_geo.config import StorageConfig
from memories_geo.errors import FormatError, MemoriesError
from memories_geo.events import emit
from memories_geo.formats.registry import get_format
from memories_geo.integrity import raise_for_problems, stat_fingerprint, verify_manifest_stat
from memories_geo.progress import progress_bar
from memories_geo.query import COMMON_OPEN_OPTIONS, check_options, open_request
from memories_geo.records import read_record_rows, record_path, write_record
from memories_geo.resolve import SavePlan, TierRouter

if TYPE_CHECKING:
    from memories_geo.entry import Entry
    from memories_geo.formats.base import Format, WriteResult

__all__ = ["Commit", "VersionStore", "open_version_store"]

logger = logging.getLogger(__name__)


class VersionStore:
    """Versions of one collection: its catalog, its tiers, and the commit protocol over them.

    Parameters
    ----------
    config : StorageConfig
        The collection's configuration.
    catalog : Catalog, optional
        An open catalog (default: opened from ``config.catalog``).

    Examples
    --------
    >>> store = VersionStore(StorageConfig.embedded("/tmp/mg-doc"))  # doctest: +SKIP
    >>> store.verify_entries(store.catalog.current_entries())  # doctest: +SKIP
    """

    def __init__(self, config: StorageConfig, catalog: Catalog | None = None) -> None:
        self.config = config
        self.catalog = catalog if catalog is not None else Catalog(config.catalog)
        self.tiers = TierRouter(config)

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
            The committed entry, or with ``plan.options.compute=False`` and a format
            that defers its bulk write, a delayed object that writes and commits.
        """
        require(plan.backend, Capability.WRITES, f"saving on tier {plan.tier!r}")
        location = Location(plan.backend, plan.path)
        staged = self.catalog.stage(
            key=plan.key, version_id=plan.version_id, tier=plan.tier, format=plan.format.name,
            kind=plan.kind.value, path=plan.path, uri=location.url,
        )
        emit("save.staged", key=plan.key, tier=plan.tier, format=plan.format.name, path=plan.path)
        exclusive = plan.mode == "w-"
        commit = Commit(self, plan.format, location, staged, dict(attrs or {}), tuple(tags), exclusive)
        try:
            result = plan.format.write(obj, location, plan.options)
        except BaseException as exc:
            commit.fail(exc)
        if result.pending is None:
            emit("save.written", key=plan.key, tier=plan.tier, format=plan.format.name,
                 bytes=result.size_bytes)
        if plan.options.compute or result.pending is None:
            entry = commit(result)
            if plan.options.compute:
                return entry
            import dask

            return dask.delayed(entry, traverse=False)
        import dask

        return dask.delayed(commit.after_pending, pure=False)(result.pending, result)

    def publish(self, entry: Entry) -> None:
        """Let a format that keeps a stable name (a database view) point it at ``entry``."""
        publish = getattr(get_format(entry.format), "publish", None)
        if publish is not None:
            publish(self.location(entry), entry.key)

    def unpublish(self, entry: Entry) -> None:
        """Remove the stable name a format keeps for ``entry``'s key, if any."""
        unpublish = getattr(get_format(entry.format), "unpublish", None)
        if unpublish is not None:
            unpublish(self.tiers.backend(entry.tier), entry.key)

    def delete_stored(self, fmt: Format, location: Location) -> None:
        """Delete a version's data, then its record."""
        fmt.delete(location)
        location.backend.remove(record_path(location.path))

    def abandon(self, fmt: Format, location: Location, staged: StagedVersion) -> None:
        """Remove what a failed save staged: its data, its record, its catalog row."""
        try:
            self.delete_stored(fmt, location)
        finally:
            self.catalog.discard(staged)

    # -- open ------------------------------------------------------------------------------

    def open(self, entry: Entry, **query: Any) -> Any:
        """Open a stored version through its format, applying the one ``open`` contract.

        ``query`` holds ``bbox``, ``bbox_crs``, ``time``, ``columns`` and the format's own
        keywords; anything else raises :class:`~memories_geo.errors.OptionError` listing
        the accepted keywords.
        """
        fmt = get_format(entry.format)
        own = {k: v for k, v in query.items() if k not in COMMON_OPEN_OPTIONS}
        check_options(own, [*COMMON_OPEN_OPTIONS, *fmt.open_options], f"open() of a {fmt.name} entry")
        common = {k: v for k, v in query.items() if k in COMMON_OPEN_OPTIONS}
        request = open_request(**common, options=own)
        obj = fmt.open(self.location(entry), entry.object_info, request)
        self.catalog.touch(entry)
        return obj

    # -- delete --------------------------------------------------------------------------

    def delete(self, key: str, version: int | None = None) -> list[Entry]:
        """Forget ``key`` (or one non-current version) in one catalog transaction, then purge.

        Versions pinned by a checkpoint are retired, not purged.
        """
        if version is None:
            current = self.catalog.current(key)
            entries, purge = self.catalog.remove_key(key)
            self.unpublish(current)
        else:
            entry, gone = self.catalog.remove_version(key, version)
            entries, purge = [entry], [entry] if gone else []
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
        problems = [p for found in self.verify_entries(entries).values() for p in found]
        logger.info("verified %d version(s) (%d bytes): %s", len(entries), sum(e.size_bytes for e in entries),
                    f"{len(problems)} problem(s)" if problems else "intact")
        raise_for_problems(f"{len(entries)} version(s)", problems)

    def verify_entries(self, entries: Sequence[Entry], *, quick: bool = False) -> dict[str, list[str]]:
        """Problems of each stored version, by version id (an empty list when intact).

        ``quick=True`` re-hashes only the versions whose file listing (paths, sizes,
        modification stamps) differs from the one recorded at their last full
        verification, the way git trusts its index; ``quick=False`` re-hashes all.
        """
        recorded = self.catalog.stat_fingerprints([e.version_id for e in entries]) if quick else {}
        total = sum(e.size_bytes for e in entries)
        with progress_bar(total, f"verify {len(entries)} version(s)") as bar:

            def check(entry: Entry) -> list[str]:
                found = self.verify_entry(entry, quick=quick, recorded=recorded.get(entry.version_id))
                bar.update(entry.size_bytes)
                return found

            with ThreadPoolExecutor(max_workers=8) as pool:
                found = dict(zip([e.version_id for e in entries], pool.map(check, entries), strict=True))
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
                if recorded is not None and stat_fingerprint(location.fs, location.full_path) == recorded:
                    return []
            except FileNotFoundError:
                return [f"{entry.key} v{entry.version}: {location.url}: missing"]
        manifest = self.catalog.manifest(entry)
        if files:
            found, stat = verify_manifest_stat(location.fs, location.full_path, manifest)
            if not found:
                self.catalog.set_stat_fingerprint(entry.version_id, stat)
        else:
            found = get_format(entry.format).verify(location, manifest)
        return [f"{entry.key} v{entry.version}: {p}" for p in found]

    # -- recovery -------------------------------------------------------------------------

    def recover_orphans(self) -> list[str]:
        """Remove staged versions whose writer is gone, and stored versions the catalog lacks.

        Safe while other processes write: a staged version whose writing process is
        still alive on this host is left alone.

        Returns
        -------
        list of str
            Display URLs of what was removed.
        """
        removed = []
        for staged in self.catalog.staged_versions():
            if _writer_alive(staged.writer):
                continue
            location = self.location(staged)
            self.delete_stored(get_format(staged.format), location)
            self.catalog.discard(staged)
            removed.append(location.url)
        known = self.catalog.stored_paths()
        for tier in self.tiers.names:
            backend = self.tiers.backend(tier)
            if Capability.LISTING not in backend.capabilities:
                continue
            for path in dict.fromkeys(backend.version_paths()):
                if (tier, path) not in known:
                    backend.remove(path)
                    backend.remove(record_path(path))
                    removed.append(backend.url_for(path))
        self.write_missing_records()
        logger.info("recovered: removed %d orphan(s)", len(removed))
        return removed

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


class Commit:
    """The verify -> record -> commit -> publish steps of a save, runnable now or after a dask write."""

    def __init__(
        self, store: VersionStore, fmt: Format, location: Location, staged: StagedVersion,
        attrs: dict[str, Any], tags: tuple[str, ...], exclusive: bool,
    ) -> None:
        self.store, self.fmt, self.location, self.staged = store, fmt, location, staged
        self.attrs, self.tags, self.exclusive = attrs, tags, exclusive

    def __call__(self, result: WriteResult) -> Entry:
        """Record and commit a finished write; return the new current entry."""
        try:
            if not result.manifest.files:
                raise FormatError(f"format {self.fmt.name!r} wrote nothing for {self.staged.key!r}")
            row = version_row(
                self.staged, uri=self.location.url, footprint=result.footprint,
                manifest=result.manifest, object_info=result.object_info,
                attrs=self.attrs, tags=self.tags,
            )
            write_record(self.location.backend, self.location.path, row)
            emit("save.verified", key=self.staged.key, tier=self.staged.tier)
            entry = self.store.catalog.commit(self.staged, row, exclusive=self.exclusive)
        except BaseException as exc:
            self.fail(exc)
        emit("save.committed", key=entry.key, version=entry.version, tier=entry.tier,
             format=entry.format, bytes=entry.size_bytes)
        self.store.publish(entry)
        emit("save.published", key=entry.key, version=entry.version)
        logger.info("saved %s v%d (%s on %s, %d bytes)", entry.key, entry.version, entry.format,
                    entry.tier, entry.size_bytes)
        return entry

    def after_pending(self, _: Any, result: WriteResult) -> Entry:
        """Run once the pending write has been computed."""
        try:
            manifest = self.fmt.manifest(self.location)
        except BaseException as exc:
            self.fail(exc)
        emit("save.written", key=self.staged.key, tier=self.staged.tier, format=self.fmt.name,
             bytes=manifest.size_bytes)
        return self(replace(result, manifest=manifest, pending=None))

    def fail(self, exc: BaseException) -> NoReturn:
        """Remove what was staged and re-raise (library errors as they are)."""
        self.store.abandon(self.fmt, self.location, self.staged)
        if isinstance(exc, MemoriesError | ValueError | TypeError | KeyboardInterrupt):
            raise exc
        raise FormatError(f"writing {self.staged.key!r} as {self.fmt.name} failed: {exc}") from exc


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


def _writer_alive(writer: str) -> bool:
    host, _, pid = writer.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
