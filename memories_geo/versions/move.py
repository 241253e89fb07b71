"""Moving a stored version to another tier: copy, verify, re-point, then delete the source.

The version keeps its id and number (checkpoints that pin it follow it); only where it is
stored changes. Steps, each safe to interrupt:

1. the catalog records the move (its destination counts as known, so ``recover()``
   leaves a copy in progress alone);
2. the files are copied byte for byte (server-side when both tiers are on the same
   object store), hashed as they stream, skipped when a verified copy is already there
   (a resumed move: one the catalog records as started);
3. the copy is checked against the version's manifest: the bytes read must hash to it,
   and the destination must hold them (sizes, and the MD5 an object store reports;
   files no such check covers are read back and re-hashed);
4. the version's record is written beside the copy, and one catalog transaction points
   the version at the copy and appends a ``migrate`` audit record;
5. the source files are deleted (an interruption leaves unreferenced files that
   ``recover()`` removes).
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import xxhash

from memories_geo.audit_log import new_record
from memories_geo.backends.base import Capability, Location, require
from memories_geo.config import redact_text
from memories_geo.formats.registry import get_format
from memories_geo.integrity import raise_for_problems, verify_manifest
from memories_geo.records import record_path, write_record
from memories_geo.versions.archive import check_deletable

if TYPE_CHECKING:
    from memories_geo.catalog import PendingMove
    from memories_geo.entry import Entry
    from memories_geo.integrity import Manifest
    from memories_geo.versions import VersionStore

__all__ = [
    "COPY_BLOCK", "CopiedFile", "commit_move", "copy_problems", "copy_version_files", "is_single_file",
    "move_version", "remove_moved_source",
]

logger = logging.getLogger(__name__)

#: Bytes read and written at a time when streaming a file between two stores.
COPY_BLOCK = 8 * 1024 * 1024


@dataclass(frozen=True)
class CopiedFile:
    """One file as it was streamed: where it went, its size, its xxh3 and MD5 digests."""

    relative: str
    target: str
    size: int
    digest: str | None
    md5: str | None


def copy_version_files(
    source: Location, dest: Location, manifest: Manifest, *, on_bytes: Callable[[int], object] | None = None,
    max_workers: int = 8,
) -> list[CopiedFile]:
    """Copy the files ``manifest`` lists from ``source`` to ``dest``.

    Files the version shares with another version's folder are read from there
    (:meth:`~memories_geo.integrity.Manifest.path_of`): the copy holds them all.

    Within one object store that copies server-side, files are copied there (no digest
    is taken); otherwise each is streamed in :data:`COPY_BLOCK` pieces, several files at
    once, and hashed on the way (the manifest's xxh3, and MD5 to compare with what an
    object store reports).
    """
    src_fs, dst_fs = source.fs, dest.fs
    single = is_single_file(source, manifest)
    pairs = [
        (rel, source.full_path, dest.full_path) if single
        else (rel, manifest.path_of(source.full_path, rel), posixpath.join(dest.full_path, rel))
        for rel in manifest.files
    ]
    same_store = (
        Capability.SERVER_SIDE_COPY in source.backend.capabilities
        and getattr(source.backend, "protocol", None) == getattr(dest.backend, "protocol", None)
        and getattr(source.backend, "endpoint", None) == getattr(dest.backend, "endpoint", None)
    )

    protocols = dst_fs.protocol if isinstance(dst_fs.protocol, tuple) else (dst_fs.protocol,)
    needs_folders = bool({"file", "local", "memory"} & set(protocols))

    def copy(pair: tuple[str, str, str]) -> CopiedFile:
        rel, src, dst = pair
        parent = posixpath.dirname(dst)
        if parent and needs_folders:
            dst_fs.makedirs(parent, exist_ok=True)
        if same_store:
            src_fs.copy(src, dst)
            copied = CopiedFile(rel, dst, manifest.files[rel].size, None, None)
        else:
            digest, md5, size = xxhash.xxh3_128(), hashlib.md5(usedforsecurity=False), 0
            with src_fs.open(src, "rb") as reader, dst_fs.open(dst, "wb") as writer:
                while block := reader.read(COPY_BLOCK):
                    digest.update(block)
                    md5.update(block)
                    size += len(block)
                    writer.write(block)
            copied = CopiedFile(rel, dst, size, digest.hexdigest(), md5.hexdigest())
        if on_bytes is not None:
            on_bytes(copied.size)
        return copied

    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        return list(pool.map(copy, pairs))


def is_single_file(location: Location, manifest: Manifest) -> bool:
    """Whether the version at ``location`` is one file (its manifest lists just its own name)."""
    return list(manifest.files) == [posixpath.basename(location.path)]


def copy_problems(dest: Location, manifest: Manifest, copied: list[CopiedFile]) -> list[str]:
    """Problems of a copy: what was read differs from the manifest, or the store holds other bytes.

    What was read is checked against the manifest's digests as it streamed. What the
    destination holds is checked from one listing: sizes everywhere, and the MD5 an
    object store reports (an S3 ETag of a single-part upload) where it reports one; a
    local copy is checked by size; any file neither check covers is read back and
    re-hashed.
    """
    problems = [
        f"{c.relative}: read {c.size} bytes with digest {c.digest}, the manifest says "
        f"{manifest.files[c.relative].size} bytes with {manifest.files[c.relative].digest}"
        for c in copied
        if c.digest is not None and (c.size, c.digest) != (manifest.files[c.relative].size,
                                                           manifest.files[c.relative].digest)
    ]
    if problems:
        return problems
    fs = dest.fs
    listing = {dest.full_path: fs.info(dest.full_path)} if is_single_file(dest, manifest) else fs.find(
        dest.full_path, detail=True)
    listed = {fs._strip_protocol(path): info for path, info in listing.items()}
    local = Capability.FILES in dest.backend.capabilities and getattr(dest.backend, "protocol", "") == "file"
    unchecked = False
    for c in copied:
        info = listed.get(fs._strip_protocol(c.target))
        if info is None:
            problems.append(f"{c.relative}: missing after the copy")
            continue
        if int(info.get("size", -1)) != c.size:
            problems.append(f"{c.relative}: {info.get('size')} bytes stored, {c.size} copied")
            continue
        etag = str(info.get("ETag", info.get("etag", ""))).strip('"')
        if c.md5 is not None and etag and "-" not in etag:
            if etag != c.md5:
                problems.append(f"{c.relative}: the store holds MD5 {etag}, {c.md5} was copied")
        elif not (local and c.md5 is not None):
            unchecked = True
    if unchecked and not problems:
        problems = verify_manifest(fs, dest.full_path, manifest)
    return problems


def move_version(
    store: VersionStore, entry: Entry, tier: str, *, on_bytes: Callable[[int], object] | None = None
) -> Entry:
    """Move one stored version to ``tier``; return its entry there (same id and number).

    Raises
    ------
    ReadOnlyError
        The collection is read-only.
    TierUnavailableError
        A tier cannot be reached, or does not hold files (database tiers convert
        through a save instead).
    ChecksumMismatchError
        The source fails its manifest, or the copy does not match it (the copy is
        removed; the version stays where it was).
    """
    if entry.tier == tier:
        return entry
    store.check_writable(f"moving {entry.key!r}")
    source = store.location(entry)
    dest = Location(store.tiers.backend(tier), entry.path)
    require(source.backend, Capability.FILES, f"moving {entry.key!r} byte for byte from tier {entry.tier!r}")
    require(dest.backend, Capability.FILES, f"moving {entry.key!r} byte for byte to tier {tier!r}")
    require(dest.backend, Capability.WRITES, f"moving {entry.key!r} to tier {tier!r}")
    check_deletable(store, [entry], f"moving {entry.key!r} v{entry.version} off tier {entry.tier!r}")
    stored = store.catalog.manifest(entry)
    manifest = stored.materialized()
    resumed = any(m.version_id == entry.version_id and m.tier == tier for m in store.catalog.pending_moves())
    move = store.catalog.begin_move(entry.version_id, tier, entry.path, dest.url)
    wrote = False
    try:
        copied = 0
        there = resumed and dest.backend.exists(entry.path)
        if not there or verify_manifest(dest.store_fs, dest.full_path, manifest):
            wrote = True
            if there:
                dest.backend.remove(entry.path)
            files = copy_version_files(source, dest, stored, on_bytes=on_bytes)
            copied = sum(f.size for f in files)
            raise_for_problems(f"the copy of {entry.key} v{entry.version} to tier {tier!r}",
                               copy_problems(dest, manifest, files))
        elif on_bytes is not None:
            on_bytes(manifest.size_bytes)
        wrote = True
        moved, record = commit_move(store, entry, dest, move, stored,
                                    detail=f"{entry.tier} -> {tier}, {copied} bytes copied")
    except BaseException:
        store.catalog.forget_move(entry.version_id)
        if wrote:
            dest.backend.remove(entry.path)
            dest.backend.remove(record_path(entry.path))
        raise
    store.journal(record)
    remove_moved_source(store, entry, source, tier)
    logger.info("moved %s v%d from %s to %s (%d bytes copied)", entry.key, entry.version, entry.tier, tier,
                copied)
    return moved


def commit_move(
    store: VersionStore, entry: Entry, dest: Location, move: PendingMove, stored: Manifest, *, detail: str,
) -> tuple[Entry, dict[str, Any]]:
    """Give a verified copy its tier's policies and record, and point the version at it.

    One catalog transaction re-points the version (with a ``migrate`` audit record);
    a version that shared files with another version's folder gets its manifest
    with every file in the copy (:meth:`~memories_geo.integrity.Manifest.materialized`).

    Returns
    -------
    tuple
        The moved entry and the audit record (for the journal).
    """
    tier = move.tier
    manifest = stored.materialized()
    store.apply_tier_policies(dest, tier)
    row = store.catalog.export_rows([entry.version_id])[0]
    storage_class = store.tiers.tier_config(tier).storage_class
    moved_row = {**row, "tier": tier, "uri": dest.url, "storage_class": storage_class,
                 "manifest": manifest.to_json()}
    write_record(dest.backend, entry.path, moved_row)
    record = new_record("migrate", detail=detail)
    moved = store.catalog.finish_move(move, audit=record, storage_class=storage_class,
                                      manifest=manifest if stored.shared else None)
    return moved, record


def remove_moved_source(store: VersionStore, entry: Entry, source: Location, tier: str) -> None:
    """Delete the source of a committed move, keeping files other versions share from it.

    A failure is logged and leaves the files to ``recover()``.
    """
    try:
        store.delete_stored(get_format(entry.format), source)
    except Exception as exc:
        logger.warning("moved %s v%d to %s; its old files stay until recover(): %s", entry.key, entry.version,
                       tier, redact_text(str(exc)))
