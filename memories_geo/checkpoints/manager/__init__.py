"""The checkpoint manager: save, list, get, diff, verify, restore, delete and rotate checkpoints."""

from __future__ import annotations

import builtins
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from memories_geo.awaitable import awaitable_twin
from memories_geo.catalog import CheckpointRow, utc_now, writer_id
from memories_geo.checkpoints.backup import BackupStore
from memories_geo.checkpoints.info import (
    RESERVED_NAMES,
    CheckpointDiff,
    CheckpointInfo,
    CheckpointList,
    check_name,
    timestamped_name,
)
from memories_geo.checkpoints.manager.copies import backup_versions
from memories_geo.checkpoints.manager.orphans import settle_orphans
from memories_geo.checkpoints.manifests import (
    CHECKPOINT_DIR,
    MANIFEST_FORMAT,
    PENDING_GRACE,
    encode,
    finalise,
    manifest_path,
    pending_path,
    remove_manifest,
)
from memories_geo.errors import (
    CheckpointNotFoundError,
    ChecksumMismatchError,
    KeyNotFoundError,
    MemoriesError,
)
from memories_geo.events import emit
from memories_geo.integrity import hash_bytes
from memories_geo.keys import new_id
from memories_geo.progress import progress_bar

if TYPE_CHECKING:
    from memories_geo.backends.base import Backend
    from memories_geo.entry import Entry
    from memories_geo.versions import VersionStore

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_DIR", "RESERVED_NAMES", "CheckpointManager", "Validate", "check_name", "timestamped_name",
]

Validate = bool | Literal["full"]


def _checksum(pins: Mapping[str, str], entries: Mapping[str, Entry]) -> str:
    lines = [f"{k}\0{vid}\0{entries[vid].checksum}\n" for k, vid in sorted(pins.items())]
    return hash_bytes("".join(lines).encode())


class CheckpointManager:
    """Save, list, verify, diff, restore and delete checkpoints of one :class:`Memory`.

    Parameters
    ----------
    versions : VersionStore
        The collection's versions (``Memory.version_store``).
    backup : Backend, optional
        A file backend that receives a verified copy of every checkpoint's data and
        manifest (see :class:`memories_geo.MemoryPersistence`).

    Examples
    --------
    >>> cp = mem.checkpoints.save("daily")  # doctest: +SKIP
    >>> mem.checkpoints.restore("daily", validate=True)  # doctest: +SKIP
    """

    def __init__(self, versions: VersionStore, backup: Backend | None = None) -> None:
        self.versions = versions
        self.backup = backup
        self._backups = BackupStore(versions, backup) if backup is not None else None

    # -- where manifests live -----------------------------------------------------------

    @property
    def store(self) -> Backend:
        """The store of checkpoint manifests and the journal: the first file tier, default first."""
        store = self.versions.journal_store
        if store is None:
            raise CheckpointNotFoundError("checkpoints need at least one file tier to keep manifests")
        return store

    # -- save -----------------------------------------------------------------------------

    def save(
        self,
        name: str | None = None,
        *,
        include_metadata: bool = True,
        message: str = "",
        kind: Literal["manual", "auto", "safety"] = "manual",
    ) -> CheckpointInfo:
        """Checkpoint the current version of every key.

        Incremental: nothing is re-hashed or copied on the primary store (versions are
        immutable and already carry checksum manifests); with a backup store, only
        versions not yet there are copied.

        Parameters
        ----------
        name : str, optional
            Label; several checkpoints may share one (the newest wins on restore).
            Default: a timestamped name, ``cp-YYYYmmddTHHMMSSZ`` (UTC). ``latest`` and
            ``current`` are reserved references, never names.
        include_metadata : bool
            Write the full catalog rows (footprints, checksum manifests) into the JSON
            manifest, which lets :class:`RecoveryManager` rebuild a lost catalog from it.
        message : str
            Free text stored with the checkpoint.
        kind : {"manual", "auto", "safety"}
            ``"auto"`` checkpoints are rotated by :class:`AutoPersistence`.

        Returns
        -------
        CheckpointInfo

        Raises
        ------
        OptionError
            For an empty or reserved name.
        """
        self.versions.check_writable("checkpoint save")
        name = self._unused_name() if name is None else check_name(name)
        with self.versions.meter.measure("checkpoint.save", detail={"name": name, "kind": kind}) as measured:
            info = self._save(name, include_metadata=include_metadata, message=message, kind=kind)
            measured.bytes = info.bytes
            measured.detail["id"] = info.id
        return info

    def _save(self, name: str, *, include_metadata: bool, message: str, kind: str) -> CheckpointInfo:
        catalog = self.versions.catalog
        store = self.store
        for _ in range(5):
            current = catalog.current_entries()
            pins = {e.key: e.version_id for e in current}
            by_vid = {e.version_id: e for e in current}
            row = CheckpointRow(
                id=new_id(), name=name, created_at=utc_now(), kind=kind, n_keys=len(pins),
                size_bytes=sum(e.size_bytes for e in current), checksum=_checksum(pins, by_vid),
                message=message,
            )
            document = self._document(row, pins, include_metadata)
            data = encode(document)
            # Two phases: a manifest counts only under its final name, written once the
            # catalog row exists; a save killed in between leaves a pending file that
            # recover_orphans() completes (row present) or removes (row absent).
            store.write_bytes(pending_path(row.id), data)
            try:
                catalog.create_checkpoint(row, pins)
            except KeyNotFoundError:
                store.remove(pending_path(row.id))
                continue
            except BaseException:
                store.remove(pending_path(row.id))
                raise
            finalise(store, row.id, data)
            break
        else:  # pragma: no cover - five concurrent deletions in a row
            raise RuntimeError("the collection kept changing while checkpointing; try again")
        copied = 0
        if self.backup is not None:
            copied = self._copy_to_backup(row, pins, document)
            catalog.mark_backed_up(row.id)
            row = replace(row, backed_up=True)
        self.versions.audit("checkpoint.save", detail=row.id)
        info = CheckpointInfo.from_row(row)
        emit("checkpoint.saved", id=info.id, name=info.name, keys=info.keys, bytes=info.bytes)
        logger.info("checkpoint %s saved (%s, %s): %d key(s), %d bytes%s", info.name, info.id, kind,
                    info.keys, info.bytes,
                    f"; {copied} version(s) copied to the backup store" if row.backed_up else "")
        return info

    def _unused_name(self) -> str:
        name = timestamped_name()
        taken = {cp.name for cp in self.list()}
        suffix = 1
        candidate = name
        while candidate in taken:
            suffix += 1
            candidate = f"{name}-{suffix}"
        return candidate

    def _document(
        self, row: CheckpointRow, pins: Mapping[str, str], include_metadata: bool
    ) -> dict[str, Any]:
        catalog = self.versions.catalog
        rows = catalog.export_rows(list(pins.values()))
        if not include_metadata:
            rows = [{"key": r["key"], "version_id": r["version_id"], "checksum": r["checksum"],
                     "size_bytes": r["size_bytes"]} for r in rows]
        return {
            "format": MANIFEST_FORMAT,
            "id": row.id, "name": row.name, "created_at": row.created_at, "kind": row.kind,
            "message": row.message, "checksum": row.checksum, "bytes": row.size_bytes,
            "include_metadata": include_metadata, "keys": dict(pins), "versions": rows,
            "writer": writer_id(),
        }

    # -- backup -------------------------------------------------------------------------

    def _copy_to_backup(
        self, row: CheckpointRow, pins: Mapping[str, str], document: Mapping[str, Any]
    ) -> int:
        """Copy the versions not yet in the backup store (bytes on a progress bar); return how many."""
        assert self.backup is not None
        assert self._backups is not None
        entries = self.versions.catalog.entries_by_version_id(list(pins.values()))
        todo = [e for e in entries.values() if not self._backups.has(e)]
        with progress_bar(sum(e.size_bytes for e in todo), f"backup {row.name}") as bar:
            backup_versions(self._backups, todo, bar)
        self.backup.write_bytes(manifest_path(row.id), encode(document))
        return len(todo)

    def restore_from_backup(self, entry: Entry) -> None:
        """Copy one version back from the backup store to its tier, verified."""
        if self._backups is None:
            raise CheckpointNotFoundError("no backup store is configured")
        self._backups.restore(entry)

    # -- reading --------------------------------------------------------------------------

    def list(self) -> CheckpointList:
        """Every checkpoint, newest first."""
        return CheckpointList(CheckpointInfo.from_row(r) for r in self.versions.catalog.checkpoints())

    def __iter__(self) -> Iterator[CheckpointInfo]:
        return iter(self.list())

    def get(self, ref: str) -> CheckpointInfo:
        """A checkpoint by id, by name (the newest of that name), or ``"latest"``.

        Raises
        ------
        CheckpointNotFoundError
            Naming the known checkpoints.
        """
        checkpoints = self.list()
        if ref == "latest" and checkpoints:
            return checkpoints[0]
        for cp in checkpoints:
            if ref in (cp.id, cp.name):
                return cp
        names = sorted({cp.name for cp in checkpoints})
        raise CheckpointNotFoundError(
            f"no checkpoint named or with id {ref!r}; "
            + (f"names: {names}" if names else "there are no checkpoints yet")
        )

    def pins(self, ref: str) -> dict[str, str]:
        """``key -> version_id`` pinned by a checkpoint."""
        return self.versions.catalog.checkpoint_pins(self.get(ref).id)

    def manifest(self, ref: str) -> dict[str, Any]:
        """The JSON manifest of a checkpoint, as written to the primary store."""
        cp = self.get(ref)
        return json.loads(self.store.read_bytes(manifest_path(cp.id)))

    def diff(self, a: str, b: str = "current") -> CheckpointDiff:
        """Keys added, removed and re-pointed going from ``a`` to ``b``.

        Either side may be a checkpoint reference or ``"current"`` (the live state).
        """
        left, right = self._state(a), self._state(b)
        return CheckpointDiff(
            added={k: v for k, v in right.items() if k not in left},
            removed={k: v for k, v in left.items() if k not in right},
            changed={k: (left[k], right[k]) for k in left.keys() & right.keys() if left[k] != right[k]},
        )

    def _state(self, ref: str) -> dict[str, str]:
        if ref == "current":
            return {e.key: e.version_id for e in self.versions.catalog.current_entries()}
        return self.pins(ref)

    # -- verification ------------------------------------------------------------------

    def verify(self, ref: str = "latest", *, validate: Validate = "full") -> CheckpointInfo:
        """Check every version a checkpoint pins against its checksums.

        Parameters
        ----------
        ref : str
            Checkpoint id, name or ``"latest"``.
        validate : True or "full"
            ``"full"`` re-hashes every file; ``True`` re-hashes only versions whose
            file listing changed since their last full verification.

        Raises
        ------
        ChecksumMismatchError
            Listing every failing object (``error.problems``).
        """
        cp = self.get(ref)
        problems = self.problems(self.pins(cp.id), quick=validate != "full")
        logger.info("checkpoint %s verified (%s): %s", cp.name, cp.id,
                    f"{len(problems)} problem(s)" if problems else "intact")
        if problems:
            raise ChecksumMismatchError(f"checkpoint {cp.name!r} ({cp.id}) failed verification: "
                                        + "; ".join(problems[:10]), problems)
        return cp

    def problems(self, pins: Mapping[str, str], *, quick: bool, repair: bool = False) -> builtins.list[str]:
        """Problems of the versions ``pins`` names (empty when all verify).

        With ``repair=True`` and a backup store, a failing version is first copied back
        from its backup and checked again.
        """
        entries = self.versions.catalog.entries_by_version_id(list(pins.values()))
        checked = self.versions.verify_entries(list(entries.values()), quick=quick)
        problems = []
        for key, vid in sorted(pins.items()):
            entry = entries.get(vid)
            if entry is None:
                problems.append(f"{key}: version {vid} is not in the catalog")
                continue
            found = checked[vid]
            if found and repair and self.backup is not None:
                try:
                    self.restore_from_backup(entry)
                    found = self.versions.verify_entry(entry, quick=False)
                except (OSError, ChecksumMismatchError) as exc:
                    found = [*found, f"{key}: backup copy unusable: {exc}"]
            problems += found
        return problems

    # -- restore ---------------------------------------------------------------------------

    def restore(self, ref: str = "latest", *, validate: Validate = True) -> CheckpointInfo:
        """Make every key point to the version the checkpoint pinned, atomically.

        Validation happens first; a checkpoint that fails it changes nothing. The state
        before the restore is itself kept as a ``"safety"`` checkpoint, so a restore can
        be undone. Keys created after the checkpoint disappear from the catalog, their
        versions are retired (kept), not deleted.

        Parameters
        ----------
        ref : str
            Checkpoint id, name (newest of that name) or ``"latest"``.
        validate : bool or "full"
            ``True`` checks every pinned version (re-hashing those whose files changed
            since they were last verified), ``"full"`` re-hashes everything, ``False``
            skips validation. With a backup store, a failing version is first repaired
            from its backup copy.

        Raises
        ------
        CheckpointNotFoundError
            No such checkpoint.
        ChecksumMismatchError
            Validation failed; ``error.problems`` names the failing objects.
        """
        self.versions.check_writable("restore")
        with self.versions.meter.measure("checkpoint.restore", detail={"ref": ref}) as measured:
            cp = self._restore(ref, validate)
            measured.bytes = cp.bytes
            measured.detail["id"] = cp.id
        return cp

    def _restore(self, ref: str, validate: Validate) -> CheckpointInfo:
        cp = self.get(ref)
        pins = self.pins(cp.id)
        if validate:
            problems = self.problems(pins, quick=validate != "full", repair=True)
            if problems:
                self.versions.audit("restore", outcome="error", detail=f"{cp.id}: {len(problems)} problem(s)")
                raise ChecksumMismatchError(
                    f"checkpoint {cp.name!r} ({cp.id}) failed validation, nothing was restored: "
                    + "; ".join(problems[:10]),
                    problems,
                )
        if self.diff(cp.id, "current"):
            self.save(f"before-restore-{cp.name}", kind="safety",
                      message=f"state before restoring {cp.name} ({cp.id})")
        self.versions.restore_pointers(pins, operation="restore", detail=cp.id)
        emit("checkpoint.restored", id=cp.id, name=cp.name, keys=cp.keys)
        logger.info("checkpoint %s restored (%s): %d key(s)", cp.name, cp.id, cp.keys)
        return cp

    # -- deletion and rotation -----------------------------------------------------------

    def delete(self, ref: str) -> CheckpointInfo:
        """Delete a checkpoint; versions only it kept alive are garbage-collected.

        Its manifest goes from the primary store and, with a backup store, from the
        backup too, with the backup copies of the versions purged. The deletion is
        journaled (``checkpoint.delete``) before anything is removed, so a manifest copy
        that survives (a backup unreachable meanwhile, a process killed mid-way) is never
        registered again by :meth:`RecoveryManager.rebuild_catalog`, and
        :meth:`recover_orphans` finishes an interrupted deletion.
        """
        self.versions.check_writable("checkpoint delete")
        cp = self.get(ref)
        self.versions.audit("checkpoint.delete", detail=cp.id)
        purge = self.versions.catalog.delete_checkpoint(cp.id)
        remove_manifest(self.store, cp.id)
        self.versions.purge(purge)
        if self.backup is not None and self._backups is not None:
            try:
                remove_manifest(self.backup, cp.id)
                for entry in purge:
                    self._backups.remove(entry)
            except (OSError, MemoriesError) as exc:
                logger.warning("checkpoint %s (%s) deleted, but its backup copy stays at %s: %s", cp.name,
                               cp.id, self.backup.url_for(CHECKPOINT_DIR), exc)
        logger.info("checkpoint %s deleted (%s): %d version(s) only it kept were purged", cp.name, cp.id,
                    len(purge))
        return cp

    def rotate(self, *, kind: str = "auto", keep: int = 3) -> builtins.list[CheckpointInfo]:
        """Keep the newest ``keep`` checkpoints of ``kind``; delete the rest (returned)."""
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        old = [cp for cp in self.list() if cp.kind == kind][keep:]
        return [self.delete(cp.id) for cp in old]

    # -- crash recovery ------------------------------------------------------------------

    def recover_orphans(self, *, grace: timedelta = PENDING_GRACE) -> builtins.list[str]:
        """Settle what interrupted checkpoint saves and deletions left.

        A checkpoint whose deletion was journaled but not finished is deleted (its row,
        its manifests, the versions only it kept); a manifest left by a finished
        deletion is removed.

        A pending manifest whose checkpoint has a catalog row is completed (written under
        its final name); one without a row is removed once its writer is gone: at once
        when the writer ran on this host and has exited, after ``grace`` (from the
        checkpoint's time) when it ran on another host. Manifests under their final
        names are left alone: a checkpoint the catalog lacks (a catalog lost and
        rebuilt) is registered again from them. Without a file tier there is nothing
        to settle.

        Returns
        -------
        list of str
            Display URLs of the pending manifests settled (completed or removed).

        Examples
        --------
        >>> mem.checkpoints.recover_orphans()  # doctest: +SKIP
        []
        """
        return settle_orphans(self.versions, self.delete, grace=grace)

    # -- awaitable twins (the work runs in a worker thread) ----------------------------------

    asave = awaitable_twin(save)
    arestore = awaitable_twin(restore)
    alist = awaitable_twin(list)
    adiff = awaitable_twin(diff)
    averify = awaitable_twin(verify)
    adelete = awaitable_twin(delete)
