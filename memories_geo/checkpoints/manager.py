"""The checkpoint manager: save, list, get, diff, verify, restore, delete and rotate checkpoints."""

from __future__ import annotations

import builtins
import json
import logging
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from memories_geo.backends.base import Capability
from memories_geo.catalog import CheckpointRow, utc_now
from memories_geo.checkpoints.backup import BackupStore
from memories_geo.checkpoints.info import CheckpointDiff, CheckpointInfo, CheckpointList
from memories_geo.errors import CheckpointNotFoundError, ChecksumMismatchError, KeyNotFoundError, OptionError
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

CHECKPOINT_DIR = "@checkpoints"
MANIFEST_FORMAT = "memories_geo.checkpoint/1"
Validate = bool | Literal["full"]
#: References that are never names: the newest checkpoint, and the live state.
RESERVED_NAMES = ("latest", "current")


def timestamped_name(now: datetime | None = None) -> str:
    """The name of an unnamed checkpoint: ``cp-`` and the UTC time, e.g. ``cp-20261130T073000Z``.

    Examples
    --------
    >>> timestamped_name(datetime(2026, 11, 30, 7, 30, tzinfo=UTC))
    'cp-20261130T073000Z'
    """
    return f"cp-{(now or datetime.now(UTC)).astimezone(UTC):%Y%m%dT%H%M%SZ}"


def check_name(name: str) -> str:
    """Return ``name`` if it can name a checkpoint.

    Raises
    ------
    OptionError
        For an empty name or a reserved one (``latest``, ``current``), naming them.

    Examples
    --------
    >>> check_name("nightly")
    'nightly'
    """
    if not isinstance(name, str) or not name.strip():
        raise OptionError(f"a checkpoint name must be a non-empty string, got {name!r}")
    if name.strip().lower() in RESERVED_NAMES:
        raise OptionError(
            f"{name!r} cannot name a checkpoint: {' and '.join(map(repr, RESERVED_NAMES))} are reserved "
            "references (the newest checkpoint, the live state); choose another name, or give none "
            "for a timestamped one (cp-YYYYmmddTHHMMSSZ)"
        )
    return name


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
        """The primary store of checkpoint manifests: the first file tier (default tier first)."""
        tiers = self.versions.tiers
        for name in [self.versions.config.default_tier, *tiers.names]:
            backend = tiers.backend(name)
            if Capability.FILES in backend.capabilities:
                return backend
        raise CheckpointNotFoundError("checkpoints need at least one file tier to keep manifests")

    @staticmethod
    def _manifest_path(checkpoint_id: str) -> str:
        return posixpath.join(CHECKPOINT_DIR, f"{checkpoint_id}.json")

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
        name = self._unused_name() if name is None else check_name(name)
        catalog = self.versions.catalog
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
            self.store.write_bytes(self._manifest_path(row.id), json.dumps(document, sort_keys=True).encode())
            try:
                catalog.create_checkpoint(row, pins)
                break
            except KeyNotFoundError:
                self.store.remove(self._manifest_path(row.id))
        else:  # pragma: no cover - five concurrent deletions in a row
            raise RuntimeError("the collection kept changing while checkpointing; try again")
        copied = 0
        if self.backup is not None:
            copied = self._copy_to_backup(row, pins, document)
            catalog.mark_backed_up(row.id)
            row = replace(row, backed_up=True)
        catalog.log_event("checkpoint", True, row.id)
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
            for entry in todo:
                self._backups.copy(entry, bar)
        self.backup.write_bytes(self._manifest_path(row.id), json.dumps(document, sort_keys=True).encode())
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
        return json.loads(self.store.read_bytes(self._manifest_path(cp.id)))

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
        cp = self.get(ref)
        pins = self.pins(cp.id)
        if validate:
            problems = self.problems(pins, quick=validate != "full", repair=True)
            if problems:
                self.versions.catalog.log_event("restore", False, f"{cp.id}: {len(problems)} problem(s)")
                raise ChecksumMismatchError(
                    f"checkpoint {cp.name!r} ({cp.id}) failed validation, nothing was restored: "
                    + "; ".join(problems[:10]),
                    problems,
                )
        if self.diff(cp.id, "current"):
            self.save(f"before-restore-{cp.name}", kind="safety",
                      message=f"state before restoring {cp.name} ({cp.id})")
        self.versions.catalog.restore_pointers(pins)
        for entry in self.versions.catalog.current_entries():
            self.versions.publish(entry)
        self.versions.catalog.log_event("restore", True, cp.id)
        emit("checkpoint.restored", id=cp.id, name=cp.name, keys=cp.keys)
        logger.info("checkpoint %s restored (%s): %d key(s)", cp.name, cp.id, cp.keys)
        return cp

    # -- deletion and rotation -----------------------------------------------------------

    def delete(self, ref: str) -> CheckpointInfo:
        """Delete a checkpoint; versions only it kept alive are garbage-collected."""
        cp = self.get(ref)
        purge = self.versions.catalog.delete_checkpoint(cp.id)
        self.store.remove(self._manifest_path(cp.id))
        self.versions.purge(purge)
        logger.info("checkpoint %s deleted (%s): %d version(s) only it kept were purged", cp.name, cp.id,
                    len(purge))
        return cp

    def rotate(self, *, kind: str = "auto", keep: int = 3) -> builtins.list[CheckpointInfo]:
        """Keep the newest ``keep`` checkpoints of ``kind``; delete the rest (returned)."""
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        old = [cp for cp in self.list() if cp.kind == kind][keep:]
        return [self.delete(cp.id) for cp in old]


