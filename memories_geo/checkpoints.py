"""Checkpoints: named, immutable, verifiable snapshots of which version each key points to.

A checkpoint pins ``key -> version`` for every key (versions it pins are never
garbage-collected) and writes a JSON manifest (catalog rows with checksum manifests) to
the primary store under ``@checkpoints/``. With a backup store, the pinned data is
copied there (incrementally, verified) before the manifest, so a checkpoint present in
the backup is complete there.
"""

from __future__ import annotations

import contextlib
import html
import json
import posixpath
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from memories_geo.backends.base import Location
from memories_geo.catalog import CheckpointRow, utc_now
from memories_geo.errors import CheckpointNotFoundError, ChecksumMismatchError, KeyNotFoundError
from memories_geo.events import emit
from memories_geo.formats.base import WriteOptions
from memories_geo.integrity import Manifest, hash_bytes, verify_manifest
from memories_geo.records import record_path
from memories_geo.types import CompressionLevel

if TYPE_CHECKING:
    from memories_geo.backends.base import Backend
    from memories_geo.entry import Entry
    from memories_geo.memory import Memory

__all__ = ["CheckpointDiff", "CheckpointInfo", "CheckpointList", "CheckpointManager"]

CHECKPOINT_DIR = "@checkpoints"
#: Suffix of the GeoParquet export that backs up a database version.
_TABLE_EXPORT = ".table.parquet"
MANIFEST_FORMAT = "memories_geo.checkpoint/1"
Validate = bool | Literal["full"]


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint: ``id`` (unique), ``name`` (may repeat), time, size and checksum.

    Attributes
    ----------
    id : str
        Unique, time-sortable identifier.
    name : str
        Label given at save time (``"daily"``); ``restore("daily")`` takes the newest.
    timestamp : str
        Creation time, ISO 8601 UTC.
    keys : int
        Number of keys pinned.
    bytes : int
        Total size of the pinned versions.
    checksum : str
        Digest over every pinned ``(key, version id, version checksum)``.
    kind : str
        ``"manual"``, ``"auto"`` (rotated by :class:`AutoPersistence`) or ``"safety"``
        (taken automatically before a restore).
    message : str
        Free text.
    backed_up : bool
        Whether the data and manifest were copied to a backup store.
    """

    id: str
    name: str
    timestamp: str
    keys: int
    bytes: int
    checksum: str
    kind: str = "manual"
    message: str = ""
    backed_up: bool = False

    @classmethod
    def from_row(cls, row: CheckpointRow) -> CheckpointInfo:
        """Build from the catalog's row."""
        return cls(row.id, row.name, row.created_at, row.n_keys, row.size_bytes, row.checksum,
                   row.kind, row.message, row.backed_up)

    def _repr_html_(self) -> str:
        return CheckpointList([self])._repr_html_()


class CheckpointList(list[CheckpointInfo]):
    """Checkpoints, newest first, with a table view for Jupyter."""

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per checkpoint."""
        import pandas as pd

        columns = ["id", "name", "timestamp", "kind", "keys", "bytes", "checksum", "backed_up", "message"]
        return pd.DataFrame([{c: getattr(cp, c) for c in columns} for cp in self], columns=columns)

    def _repr_html_(self) -> str:
        titles = ("name", "id", "time (UTC)", "kind", "keys", "bytes", "backup")
        head = "".join(f"<th>{c}</th>" for c in titles)
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
                cp.name, cp.id, cp.timestamp, cp.kind, cp.keys, f"{cp.bytes:,}",
                "yes" if cp.backed_up else "no",
            )) + "</tr>"
            for cp in self
        )
        return f"<div><strong>{len(self)} checkpoint(s)</strong><table><tr>{head}</tr>{rows}</table></div>"


@dataclass(frozen=True)
class CheckpointDiff:
    """What changed between two states: keys added, removed, and re-pointed."""

    added: dict[str, str] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)
    changed: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def __repr__(self) -> str:
        return (f"CheckpointDiff(added={sorted(self.added)}, removed={sorted(self.removed)}, "
                f"changed={sorted(self.changed)})")


def _new_id() -> str:
    now = datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}{now.microsecond:06d}Z-{secrets.token_hex(3)}"


def _checksum(pins: Mapping[str, str], entries: Mapping[str, Entry]) -> str:
    lines = [f"{k}\0{vid}\0{entries[vid].checksum}\n" for k, vid in sorted(pins.items())]
    return hash_bytes("".join(lines).encode())


class CheckpointManager:
    """Save, list, verify, diff, restore and delete checkpoints of one :class:`Memory`.

    Parameters
    ----------
    memory : Memory
        The collection.
    backup : Backend, optional
        A file backend that receives a verified copy of every checkpoint's data and
        manifest (see :class:`memories_geo.MemoryPersistence`).

    Examples
    --------
    >>> cp = mem.checkpoints.save("daily")  # doctest: +SKIP
    >>> mem.checkpoints.restore("daily", validate=True)  # doctest: +SKIP
    """

    def __init__(self, memory: Memory, backup: Backend | None = None) -> None:
        self.memory = memory
        self.backup = backup

    # -- where manifests live -----------------------------------------------------------

    @property
    def store(self) -> Backend:
        """The primary store of checkpoint manifests: the first file tier (default tier first)."""
        tiers = self.memory.tiers
        for name in [self.memory.config.default_tier, *tiers.names]:
            backend = tiers.backend(name)
            if not backend.is_database:
                return backend
        raise CheckpointNotFoundError("checkpoints need at least one file tier to keep manifests")

    @staticmethod
    def _manifest_path(checkpoint_id: str) -> str:
        return posixpath.join(CHECKPOINT_DIR, f"{checkpoint_id}.json")

    # -- save -----------------------------------------------------------------------------

    def save(
        self,
        name: str,
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
        name : str
            Label; several checkpoints may share one (the newest wins on restore).
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
        """
        if not name or not isinstance(name, str):
            raise ValueError(f"a checkpoint needs a non-empty name, got {name!r}")
        catalog = self.memory.catalog
        for _ in range(5):
            current = catalog.current_entries()
            pins = {e.key: e.version_id for e in current}
            by_vid = {e.version_id: e for e in current}
            row = CheckpointRow(
                id=_new_id(), name=name, created_at=utc_now(), kind=kind, n_keys=len(pins),
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
        if self.backup is not None:
            self._copy_to_backup(row, pins, document)
            catalog.mark_backed_up(row.id)
            row = replace(row, backed_up=True)
        catalog.log_event("checkpoint", True, row.id)
        info = CheckpointInfo.from_row(row)
        emit("checkpoint.saved", id=info.id, name=info.name, keys=info.keys, bytes=info.bytes)
        return info

    def _document(
        self, row: CheckpointRow, pins: Mapping[str, str], include_metadata: bool
    ) -> dict[str, Any]:
        catalog = self.memory.catalog
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
    ) -> None:
        from tqdm.auto import tqdm

        assert self.backup is not None
        entries = self.memory.catalog.entries_by_version_id(list(pins.values()))
        todo = [e for e in entries.values() if not self._backup_has(e)]
        for entry in tqdm(todo, desc=f"backup {row.name}", unit="version", disable=len(todo) < 20):
            self._copy_version(entry)
        self.backup.write_bytes(self._manifest_path(row.id), json.dumps(document, sort_keys=True).encode())

    @staticmethod
    def _backup_path(entry: Entry) -> str:
        return posixpath.join(entry.tier, entry.path)

    def _backup_has(self, entry: Entry) -> bool:
        """A backup copy with the right files and sizes is taken as present (copies are verified)."""
        assert self.backup is not None
        if self.memory.tiers.backend(entry.tier).is_database:
            return bool(self.backup.exists(self._backup_path(entry) + _TABLE_EXPORT))
        manifest = self.memory.catalog.manifest(entry)
        root = self.backup.full_path(self._backup_path(entry))
        fs = self.backup.fs
        if not fs.exists(root):
            return False
        infos = {root: fs.info(root)} if fs.isfile(root) else fs.find(root, detail=True)
        sizes = {(posixpath.relpath(p, root) if p != root else posixpath.basename(root)): i["size"]
                 for p, i in infos.items() if i.get("type") == "file"}
        return sizes == {p: d.size for p, d in manifest.files.items()}

    def _copy_version(self, entry: Entry) -> None:
        assert self.backup is not None
        source = self.memory.tiers.backend(entry.tier)
        if source.is_database:
            self._export_table(entry)
            return
        manifest = self.memory.catalog.manifest(entry)
        _copy_tree(source, entry.path, self.backup, self._backup_path(entry), manifest)
        problems = verify_manifest(self.backup.fs, self.backup.full_path(self._backup_path(entry)), manifest)
        if problems:
            raise ChecksumMismatchError(f"backup copy of {entry.key} v{entry.version} is corrupt", problems)
        rec = record_path(entry.path)
        if source.exists(rec):
            self.backup.write_bytes(record_path(self._backup_path(entry)), source.read_bytes(rec))

    def _export_table(self, entry: Entry) -> None:
        """Back up a database version as GeoParquet, proven by a full round trip through it."""
        assert self.backup is not None
        from memories_geo.formats.registry import get_format

        obj = get_format(entry.format).open(self.memory._location(entry), entry.object_info)
        target = Location(self.backup, self._backup_path(entry) + _TABLE_EXPORT)
        get_format("geoparquet").write(obj, target, WriteOptions(mode="w", compression=CompressionLevel.HIGH))

    def _import_table(self, entry: Entry) -> None:
        """Re-create a database version from its GeoParquet backup; the table digest must match."""
        assert self.backup is not None
        from memories_geo.formats.registry import get_format

        source = Location(self.backup, self._backup_path(entry) + _TABLE_EXPORT)
        obj = get_format("geoparquet").open(source, {"type": entry.object_info.get("type", "GeoDataFrame")})
        fmt = get_format(entry.format)
        location = self.memory._location(entry)
        unpublish = getattr(fmt, "unpublish", None)
        if unpublish is not None:
            unpublish(location.backend, entry.key)
        fmt.delete(location)
        result = fmt.write(obj, location, WriteOptions(mode="w"))
        if result.manifest.checksum != entry.checksum:
            fmt.delete(location)
            raise ChecksumMismatchError(
                f"re-created table of {entry.key} v{entry.version} differs from the original",
                [f"{entry.key} v{entry.version}: table digest {result.manifest.checksum} "
                 f"!= {entry.checksum}"],
            )
        with contextlib.suppress(KeyNotFoundError):
            self.memory._publish(self.memory.catalog.current(entry.key))

    def restore_from_backup(self, entry: Entry) -> None:
        """Copy one version back from the backup store to its tier, verified."""
        if self.backup is None:
            raise CheckpointNotFoundError("no backup store is configured")
        if self.memory.tiers.backend(entry.tier).is_database:
            self._import_table(entry)
            return
        manifest = self.memory.catalog.manifest(entry)
        target = self.memory.tiers.backend(entry.tier)
        if target.exists(entry.path):
            target.remove(entry.path)
        _copy_tree(self.backup, self._backup_path(entry), target, entry.path, manifest)
        problems = verify_manifest(target.fs, target.full_path(entry.path), manifest)
        if problems:
            raise ChecksumMismatchError(f"restored copy of {entry.key} v{entry.version} is corrupt", problems)

    # -- reading --------------------------------------------------------------------------

    def list(self) -> CheckpointList:
        """Every checkpoint, newest first."""
        return CheckpointList(CheckpointInfo.from_row(r) for r in self.memory.catalog.checkpoints())

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
        return self.memory.catalog.checkpoint_pins(self.get(ref).id)

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
            return {e.key: e.version_id for e in self.memory.catalog.current_entries()}
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
        problems = self._problems(self.pins(cp.id), quick=validate != "full")
        if problems:
            raise ChecksumMismatchError(f"checkpoint {cp.name!r} ({cp.id}) failed verification: "
                                        + "; ".join(problems[:10]), problems)
        return cp

    def _problems(self, pins: Mapping[str, str], *, quick: bool, repair: bool = False) -> list[str]:
        entries = self.memory.catalog.entries_by_version_id(list(pins.values()))
        checked = self.memory.verify_entries(list(entries.values()), quick=quick)
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
                    found = self.memory.verify_entry(entry, quick=False)
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
            problems = self._problems(pins, quick=validate != "full", repair=True)
            if problems:
                self.memory.catalog.log_event("restore", False, f"{cp.id}: {len(problems)} problem(s)")
                raise ChecksumMismatchError(
                    f"checkpoint {cp.name!r} ({cp.id}) failed validation, nothing was restored: "
                    + "; ".join(problems[:10]),
                    problems,
                )
        if self.diff(cp.id, "current"):
            self.save(f"before-restore-{cp.name}", kind="safety",
                      message=f"state before restoring {cp.name} ({cp.id})")
        self.memory.catalog.restore_pointers(pins)
        for entry in self.memory.catalog.current_entries():
            self.memory._publish(entry)
        self.memory.catalog.log_event("restore", True, cp.id)
        emit("checkpoint.restored", id=cp.id, name=cp.name, keys=cp.keys)
        return cp

    # -- deletion and rotation -----------------------------------------------------------

    def delete(self, ref: str) -> CheckpointInfo:
        """Delete a checkpoint; versions only it kept alive are garbage-collected."""
        cp = self.get(ref)
        purge = self.memory.catalog.delete_checkpoint(cp.id)
        self.store.remove(self._manifest_path(cp.id))
        self.memory._purge(purge)
        return cp

    def rotate(self, *, kind: str = "auto", keep: int = 3) -> list[CheckpointInfo]:
        """Keep the newest ``keep`` checkpoints of ``kind``; delete the rest (returned)."""
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        old = [cp for cp in self.list() if cp.kind == kind][keep:]
        return [self.delete(cp.id) for cp in old]


def _copy_tree(src: Backend, src_path: str, dst: Backend, dst_path: str, manifest: Manifest) -> None:
    """Copy the files of a manifest between file backends, streaming each file."""
    src_root, dst_root = src.full_path(src_path), dst.full_path(dst_path)
    single = len(manifest.files) == 1 and src.fs.isfile(src_root)
    for relative in manifest.files:
        source = src_root if single else posixpath.join(src_root, relative)
        target = dst_root if single else posixpath.join(dst_root, relative)
        dst.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        with src.fs.open(source, "rb") as fin, dst.fs.open(target, "wb") as fout:
            while block := fin.read(16 * 1024 * 1024):
                fout.write(block)

