"""Recovery: restore the newest checkpoint that verifies, rebuild a lost catalog, clean orphans."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memories_geo.audit_log import read_journal, replay
from memories_geo.awaitable import awaitable_when_in_loop
from memories_geo.backends.base import Capability, redact_url
from memories_geo.catalog import (
    CheckpointRow,
    is_postgres_url,
    open_catalog,
    set_aside_catalog,
    sqlite_path,
    utc_now,
)
from memories_geo.checkpoints.info import CheckpointInfo, CheckpointList
from memories_geo.checkpoints.manager import CheckpointManager, Validate
from memories_geo.checkpoints.manifests import id_time, read_manifests
from memories_geo.checkpoints.persistence import MemoryPersistence, as_backup_backend
from memories_geo.config import StorageConfig, redact_text
from memories_geo.errors import (
    CatalogCorruptError,
    CheckpointNotFoundError,
    ChecksumMismatchError,
    MemoriesError,
    TierUnavailableError,
)
from memories_geo.records import read_record_rows
from memories_geo.resolve import TierRouter
from memories_geo.versions import VersionStore

if TYPE_CHECKING:
    from memories_geo.backends.base import Backend

__all__ = ["RecoveryManager"]

logger = logging.getLogger(__name__)


class RecoveryManager:
    """Bring a collection back to a verified state.

    Parameters
    ----------
    storage : Memory, MemoryPersistence, StorageConfig, str or None
        The collection. Pass a configuration or path (not a ``Memory``) when the
        catalog itself is corrupt, since opening it would fail.
    backup_storage : str, path or Backend, optional
        Backup store (taken from ``storage`` when it is a :class:`MemoryPersistence`).
    max_attempts : int
        Checkpoints tried, newest first, by :meth:`recover_latest`.
    timeout : float
        Seconds :meth:`recover_latest` may spend before giving up between attempts.

    Examples
    --------
    >>> recovery = mg.RecoveryManager(storage=mem, max_attempts=3, timeout=30)  # doctest: +SKIP
    >>> recovery.recover_latest()  # doctest: +SKIP
    """

    def __init__(
        self,
        storage: Any = None,
        backup_storage: str | os.PathLike[str] | Backend | None = None,
        *,
        max_attempts: int = 3,
        timeout: float = 30,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.max_attempts = max_attempts
        self.timeout = float(timeout)
        backup = as_backup_backend(backup_storage)
        if isinstance(storage, MemoryPersistence):
            backup = backup or storage.backup
            storage = storage.versions
        self.backup = backup
        store = getattr(storage, "version_store", storage)
        self._versions: VersionStore | None = store if isinstance(store, VersionStore) else None
        if self._versions is not None:
            self.config = self._versions.config
        else:
            self.config = StorageConfig.from_any(storage)

    @property
    def versions(self) -> VersionStore:
        """The collection's versions (opened on first use; raises if the catalog is corrupt)."""
        if self._versions is None:
            self._versions = VersionStore(self.config)
        return self._versions

    @property
    def checkpoints(self) -> CheckpointManager:
        """Checkpoint manager using the backup store, if any."""
        return CheckpointManager(self.versions, backup=self.backup)

    # -- checkpoint manifests, readable without a catalog -------------------------------

    def _stores(self) -> list[Backend]:
        """Every tier backend that can list (no catalog needed), then the backup store."""
        router = TierRouter(self.config)
        stores = [router.backend(name) for name in router.names]
        stores = [b for b in stores if Capability.LISTING in b.capabilities]
        return stores + ([self.backup] if self.backup is not None else [])

    def _reachable_stores(self) -> Iterator[Backend]:
        """Like :meth:`_stores`, skipping (with a warning) a store that cannot be reached."""
        router = TierRouter(self.config)
        stores = [router.backend(name) for name in router.names]
        for store in stores + ([self.backup] if self.backup is not None else []):
            try:
                if Capability.LISTING in store.capabilities:
                    yield store
            except (TierUnavailableError, OSError) as exc:
                logger.warning("checkpoint manifests on %s skipped: %s", redact_url(store.url),
                               redact_text(str(exc)))

    def _journal(self) -> list[dict[str, Any]]:
        """The collection's journal (empty when there is none or its store cannot be reached)."""
        try:
            store = TierRouter(self.config).primary_store()
            return [] if store is None else read_journal(store)
        except (TierUnavailableError, OSError) as exc:
            logger.warning("the journal cannot be read, deleted checkpoints are not filtered out: %s",
                           redact_text(str(exc)))
            return []

    def _manifests(self, journal: list[dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
        """Every checkpoint manifest on the reachable file tiers and the backup, by id.

        Only final names count (a pending manifest belongs to a save that has not
        recorded its checkpoint); a checkpoint the journal says was deleted is left out.
        """
        records = self._journal() if journal is None else journal
        deleted = {r.get("detail") for r in records
                   if r.get("operation") == "checkpoint.delete" and r.get("outcome") == "ok"}
        found: dict[str, dict[str, Any]] = {}
        for store in self._reachable_stores():
            try:
                for checkpoint_id, document in read_manifests(store):
                    if checkpoint_id not in deleted:
                        found.setdefault(checkpoint_id, document)
            except (TierUnavailableError, OSError) as exc:
                logger.warning("checkpoint manifests on %s skipped: %s", redact_url(store.url),
                               redact_text(str(exc)))
        return found

    @awaitable_when_in_loop
    def list_checkpoints(self) -> CheckpointList:
        """Checkpoints found as manifests on the stores (works without a catalog), newest first.

        A store that cannot be reached is skipped with a logged warning; a checkpoint
        whose save was interrupted before it was recorded, or that was deleted, is not
        listed.
        """
        infos = [
            CheckpointInfo(
                id=m["id"], name=m["name"], timestamp=m["created_at"], keys=len(m["keys"]),
                bytes=int(m.get("bytes", 0)), checksum=m["checksum"], kind=m.get("kind", "manual"),
                message=m.get("message", ""),
            )
            for m in self._manifests().values()
        ]
        return CheckpointList(sorted(infos, key=lambda cp: (cp.timestamp, cp.id), reverse=True))

    def _register(self, manifest: dict[str, Any]) -> None:
        """Make a checkpoint known to the catalog from its manifest (rows imported if needed)."""
        catalog = self.versions.catalog
        if any(cp.id == manifest["id"] for cp in catalog.checkpoints()):
            return
        if not manifest.get("include_metadata", True):
            raise CheckpointNotFoundError(
                f"checkpoint {manifest['id']} was saved with include_metadata=False and is not in "
                "the catalog: its versions cannot be re-registered"
            )
        catalog.import_rows(manifest["versions"])
        row = CheckpointRow(
            id=manifest["id"], name=manifest["name"], created_at=manifest["created_at"],
            kind=manifest.get("kind", "manual"), n_keys=len(manifest["keys"]),
            size_bytes=int(manifest.get("bytes", 0)), checksum=manifest["checksum"],
            message=manifest.get("message", ""),
        )
        catalog.create_checkpoint(row, manifest["keys"])

    # -- restoring ------------------------------------------------------------------------

    def _recover_from_checkpoint(
        self, ref: str | None = None, *, checkpoint_id: str | None = None, validate: Validate = True
    ) -> CheckpointInfo:
        """Restore one checkpoint (id, name or ``"latest"``), even one the catalog lost.

        ``checkpoint_id=`` is the original API's name of ``ref``.

        A checkpoint the catalog does not know is registered from its manifest, and
        versions that fail validation are repaired from the backup store when possible.

        Raises
        ------
        CheckpointNotFoundError
            No checkpoint matches ``ref``.
        ChecksumMismatchError
            It fails validation (nothing is changed).
        """
        if (ref is None) == (checkpoint_id is None):
            raise TypeError("recover_from_checkpoint() takes the checkpoint once: ref or checkpoint_id=")
        ref = str(ref if ref is not None else checkpoint_id)
        manifests = self._manifests()
        known = {cp.id for cp in self.versions.catalog.checkpoints()}
        by_ref = [m for m in manifests.values() if ref in (m["id"], m["name"])]
        if ref == "latest" and manifests:
            by_ref = [max(manifests.values(), key=lambda m: (m["created_at"], m["id"]))]
        for manifest in sorted(by_ref, key=lambda m: (m["created_at"], m["id"]), reverse=True)[:1]:
            if manifest["id"] not in known:
                self._register(manifest)
                logger.info("checkpoint %s (%s) registered again from its manifest", manifest["name"],
                            manifest["id"])
            ref = manifest["id"]
        return self.checkpoints.restore(ref, validate=validate)

    #: Awaitable from a running event loop, as the original API awaited it.
    recover_from_checkpoint = awaitable_when_in_loop(_recover_from_checkpoint)

    @awaitable_when_in_loop
    def recover_latest(self, *, validate: Validate = True) -> CheckpointInfo:
        """Restore the newest checkpoint that verifies, trying up to ``max_attempts`` of them.

        Raises
        ------
        CheckpointNotFoundError
            There is no checkpoint at all.
        ChecksumMismatchError
            None of the tried checkpoints verifies (``problems`` lists them all).
        """
        candidates = [cp for cp in self.list_checkpoints() if cp.kind != "safety"]
        if not candidates:
            raise CheckpointNotFoundError("no checkpoint found to recover from")
        deadline = time.monotonic() + self.timeout
        problems: list[str] = []
        for cp in candidates[: self.max_attempts]:
            if time.monotonic() > deadline:
                problems.append(f"gave up after {self.timeout:g} s")
                break
            try:
                info = self._recover_from_checkpoint(cp.id, validate=validate)
            except ChecksumMismatchError as exc:
                problems += [f"{cp.name} ({cp.id}): {p}" for p in exc.problems]
                continue
            self.versions.audit("recover", detail=cp.id)
            logger.info("recovered from checkpoint %s (%s); %d newer checkpoint(s) failed validation",
                        info.name, info.id, candidates.index(cp))
            return info
        raise ChecksumMismatchError(
            f"no checkpoint among the newest {min(len(candidates), self.max_attempts)} verifies", problems
        )

    # -- catalog rebuild -------------------------------------------------------------------

    def rebuild_catalog(self, *, force: bool = False) -> dict[str, Any]:
        """Rebuild a lost or corrupt catalog from version records and checkpoint manifests.

        A corrupt catalog file is moved aside (``catalog.sqlite.corrupt-<time>``), never
        deleted. Every version found (records beside the data on each file tier, and the
        rows in checkpoint manifests, on the tiers and the backup) is imported and the
        checkpoints are registered again, except those the journal says were deleted.
        Each key then gets the version the journal's last committed state gives it
        (saves, deletions, restores replayed in commit order), when that version's data
        verifies (repaired from the backup when possible); a key the journal never
        moved, or whose journaled version fails, points to its newest version that
        verifies. A key the journal deleted stays deleted.

        Parameters
        ----------
        force : bool
            Rebuild even if the current catalog opens and passes its integrity check.

        Returns
        -------
        dict
            ``versions`` imported, ``keys`` restored, ``checkpoints`` registered,
            ``unverifiable`` versions skipped (with reasons), ``moved_aside`` path or None.
        """
        path = None if is_postgres_url(self.config.catalog) else sqlite_path(self.config.catalog)
        moved: Path | str | None = None
        healthy = path is None or path.exists()
        if healthy:
            try:
                open_catalog(self.config.catalog).check()
            except CatalogCorruptError:
                healthy = False
        if healthy and not force:
            return {"versions": 0, "keys": 0, "checkpoints": 0, "unverifiable": [], "moved_aside": None}
        stamp = utc_now().replace(":", "").replace("-", "")
        if path is None:
            moved = set_aside_catalog(self.config.catalog, f"corrupt_{stamp}")
        elif path.exists():
            moved = path.with_name(f"{path.name}.corrupt-{stamp}")
            for suffix in ("", "-wal", "-shm"):
                side = Path(str(path) + suffix)
                if side.exists():
                    side.rename(Path(str(moved) + suffix))
        self._versions = None
        memory = self.versions
        journal = self._journal()
        manifests = self._manifests(journal)
        rows = self._all_rows(manifests)
        memory.catalog.import_audit(journal)
        memory.catalog.import_rows(rows)
        for manifest in sorted(manifests.values(), key=lambda m: m["created_at"]):
            try:
                self._register(manifest)
            except MemoriesError:
                continue
        current, unverifiable = self._current_state(rows, journal)
        memory.restore_pointers(current, operation="rebuild",
                                detail=f"{len(rows)} versions, {len(current)} keys")
        memory.catalog.revive_versions_of_keys()
        logger.info("catalog rebuilt: %d version(s), %d key(s), %d unverifiable, old catalog %s",
                    len(rows), len(current), len(unverifiable), f"moved to {moved}" if moved else "absent")
        return {
            "versions": len(rows), "keys": len(current), "checkpoints": len(memory.catalog.checkpoints()),
            "unverifiable": unverifiable, "moved_aside": str(moved) if moved else None,
        }

    def _all_rows(self, manifests: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Catalog rows from checkpoint manifests (numbered) then version records, in time order."""
        rows: dict[str, dict[str, Any]] = {}
        for manifest in manifests.values():
            for row in manifest.get("versions", []):
                if "manifest" in row:
                    rows.setdefault(row["version_id"], row)
        for store in self._stores():
            for row in read_record_rows(store):
                rows.setdefault(row["version_id"], row)
        return sorted(rows.values(), key=lambda r: (r["key"], r["version_id"]))

    def _current_state(
        self, rows: list[dict[str, Any]], journal: list[dict[str, Any]]
    ) -> tuple[dict[str, str], list[str]]:
        """Per key, the journaled version if it verifies, else the newest version that verifies."""
        manager = self.checkpoints
        by_key: dict[str, list[str]] = {}
        for row in rows:
            by_key.setdefault(row["key"], []).append(row["version_id"])
        state = replay(journal)
        moved = set() if state is None else _moved_keys(journal, by_key)
        current: dict[str, str] = {}
        unverifiable: list[str] = []
        for key, vids in sorted(by_key.items()):
            candidates = sorted(vids, reverse=True)
            if key in moved:
                assert state is not None
                wanted = state.get(key)
                if wanted is None:
                    continue
                if wanted in candidates:
                    candidates.remove(wanted)
                    candidates.insert(0, wanted)
            for vid in candidates:
                problems = manager.problems({key: vid}, quick=False, repair=True)
                if not problems:
                    current[key] = vid
                    break
                unverifiable += problems
        return current, unverifiable

    def clean_orphans(self) -> list[str]:
        """Remove what interrupted writes left (see ``Memory.recover``).

        Staged-but-never-committed versions and unreferenced files go; pending manifests
        of interrupted checkpoint saves are completed or removed
        (:meth:`CheckpointManager.recover_orphans`).
        """
        return self.versions.recover_orphans() + self.checkpoints.recover_orphans()


def _moved_keys(journal: list[dict[str, Any]], by_key: dict[str, list[str]]) -> set[str]:
    """Keys whose current pointer the journal accounts for.

    A key is accounted for when a successful record moved its pointer, or when a
    restore replaced the whole state after all of its versions were made (the restore
    removed it, or the key would be among the pointers it set).
    """
    done = [r for r in journal if r.get("outcome") == "ok" and r.get("pointers") is not None]
    moved = {key for r in done for key in r["pointers"]}
    replaced = [_parse_time(str(r.get("at", ""))) for r in done if r.get("replace_all")]
    last = max((t for t in replaced if t is not None), default=None)
    if last is not None:
        for key, vids in by_key.items():
            made = [id_time(v) for v in vids]
            if all(t is not None and t < last for t in made):
                moved.add(key)
    return moved


def _parse_time(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
