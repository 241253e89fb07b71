"""Tasks spread over the active ``dask.distributed`` client's workers, or a thread pool without one.

The tasks take filesystems, paths and manifests, never the catalog: verification and
backup copies run where the data is reachable from every process (an object store), and
the client records the results. :func:`digest_files` is how workers report what a
distributed save wrote (see :mod:`memories_geo.versions.distributed`).
"""

from __future__ import annotations

import logging
import posixpath
import sys
import threading
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from memories_geo.errors import MemoriesError
from memories_geo.integrity import (
    DigestLog,
    FileDigest,
    Manifest,
    hash_bytes,
    stat_fingerprint,
    verify_manifest_stat,
)
from memories_geo.progress import timed

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from memories_geo.backends.base import Location
    from memories_geo.entry import Entry

__all__ = [
    "active_client",
    "copy_checked",
    "digest_files",
    "fan_out",
    "is_abandoned",
    "is_dask_backed",
    "mark_abandoned",
    "merge_manifests",
    "shared_location",
    "verify_versions",
]

logger = logging.getLogger(__name__)

_BLOCK = 8 * 1024 * 1024
_ABANDONED: set[str] = set()
_LOCK = threading.Lock()


def mark_abandoned(version_id: str) -> None:
    """Note that this process gave up a staged version: ``recover()`` may remove it now."""
    with _LOCK:
        _ABANDONED.add(version_id)


def is_abandoned(version_id: str) -> bool:
    """Whether this process gave up the staged version ``version_id`` (see :func:`mark_abandoned`)."""
    with _LOCK:
        return version_id in _ABANDONED


# -- the cluster ----------------------------------------------------------------------------


def active_client() -> Any:
    """The active ``dask.distributed`` client, or ``None`` (never imports distributed).

    Examples
    --------
    >>> active_client() is None  # no Client(...) was started
    True
    """
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


def is_dask_backed(obj: Any) -> bool:
    """Whether ``obj`` is a dask collection (dask-backed xarray object, dask(-geopandas) frame).

    Examples
    --------
    >>> is_dask_backed([1, 2])
    False
    """
    if "dask" not in sys.modules:
        return False
    import dask

    return bool(dask.is_dask_collection(obj))


def shared_location(location: Location) -> bool:
    """Whether every process of a cluster reaches ``location`` (anything but a local directory)."""
    return not location.is_local


def fan_out(
    func: Callable[..., Any], calls: Sequence[tuple[Any, ...]], *, remote: bool = True,
    max_workers: int = 8, on_done: Callable[[int, Any], object] | None = None,
) -> list[Any]:
    """``[func(*args) for args in calls]``, on the active client's workers or in threads.

    Parameters
    ----------
    func : callable
        A module-level function (pickled to the workers); it must not need the catalog.
    calls : sequence of tuple
        Positional arguments of each task.
    remote : bool
        ``False`` keeps the tasks on this machine (data on a local directory).
    max_workers : int
        Threads without a cluster.
    on_done : callable, optional
        Called on this process with ``(index, result)`` as each task finishes.

    Returns
    -------
    list
        Results in the order of ``calls``; the first task error is raised.

    Examples
    --------
    >>> fan_out(pow, [(2, 3), (3, 2)])
    [8, 9]
    """
    client = active_client() if remote and calls else None
    results: list[Any] = [None] * len(calls)
    if client is not None:
        from distributed import as_completed

        futures = {client.submit(func, *args, pure=False, key=f"{_task_name(func)}-{uuid.uuid4().hex}"): i
                   for i, args in enumerate(calls)}
        try:
            for future in as_completed(list(futures)):
                index = futures[future]
                results[index] = future.result()
                if on_done is not None:
                    on_done(index, results[index])
        finally:
            client.cancel(list(futures))
        return results

    def run(index: int) -> None:
        results[index] = func(*calls[index])
        if on_done is not None:
            on_done(index, results[index])

    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        list(pool.map(run, range(len(calls))))
    return results


def _task_name(func: Callable[..., Any]) -> str:
    return getattr(func, "__name__", "task").replace("_", "-")


# -- worker tasks: digests and copies ---------------------------------------------------------


def _digest(fs: AbstractFileSystem, path: str) -> FileDigest:
    size = 0

    def blocks() -> Any:
        nonlocal size
        with fs.open(path, "rb", block_size=_BLOCK) as f:
            while block := f.read(_BLOCK):
                size += len(block)
                yield block

    digest = hash_bytes(blocks())
    return FileDigest(size, digest)


def _listing(fs: AbstractFileSystem, root: str) -> dict[str, tuple[str, int]]:
    """Stored files under ``root`` (a directory or one file): relative path -> full path and size."""
    fs.invalidate_cache(root)
    if fs.isfile(root):
        return {posixpath.basename(root.rstrip("/")): (root, int(fs.size(root) or 0))}
    base = root.rstrip("/")
    found = fs.find(root, detail=True)
    return {p[len(base) + 1:]: (p, int(info.get("size") or 0)) for p, info in sorted(found.items())
            if info.get("type") == "file"}


def digest_files(
    reported: list[Manifest] | None, fs: AbstractFileSystem, root: str, index: int, count: int,
    taken: DigestLog | None = None,
) -> Manifest:
    """Digests of the ``index``-th of ``count`` shares of the files under ``root`` (a worker task).

    ``reported`` holds the manifests the write's tasks built while writing, if they
    did: they are passed on as they are (by share 0) and nothing is re-read; otherwise
    this share lists the version and hashes the files whose path falls in it, except
    those ``taken`` holds a digest of with the listed size (what this process uploaded).
    Share 0 also records the listing's :func:`~memories_geo.integrity.stat_fingerprint`.
    """
    if reported:
        return merge_manifests(reported) if index == 0 else Manifest()
    known = taken.files if taken is not None else {}
    files = {rel: found for rel, found in _listing(fs, root).items()
             if zlib.crc32(rel.encode()) % count == index}
    digests = {}
    for rel, (full, size) in files.items():
        digest = known.get(rel)
        digests[rel] = digest if digest is not None and digest.size == size else _digest(fs, full)
    return Manifest(digests, stat=stat_fingerprint(fs, root) if index == 0 else None)


def merge_manifests(parts: Sequence[Manifest]) -> Manifest:
    """One manifest from the parts workers reported (a path reported twice is an error).

    Examples
    --------
    >>> a = Manifest({"a": FileDigest(1, "x")})
    >>> merge_manifests([a, Manifest({"b": FileDigest(2, "y")})]).size_bytes
    3
    """
    files: dict[str, FileDigest] = {}
    stat = None
    for part in parts:
        clash = sorted(set(files) & set(part.files))
        if clash:
            raise MemoriesError(f"two workers reported the same file(s): {clash[:5]}")
        files.update(part.files)
        stat = stat or part.stat
    return Manifest(files, stat=stat)


def copy_checked(
    src_fs: AbstractFileSystem, src_root: str, dst_fs: AbstractFileSystem, dst_root: str,
    manifest: Manifest,
) -> list[str]:
    """Copy the files of ``manifest`` from ``src_root`` to ``dst_root`` and verify the copy (a task).

    Files the version shares with another version's folder are read from there; the
    copy holds every file itself.

    Returns
    -------
    list of str
        Problems of the copy (empty when it matches ``manifest``).
    """
    single = len(manifest.files) == 1 and src_fs.isfile(src_root)
    for relative in manifest.files:
        source = src_root if single else manifest.path_of(src_root, relative)
        target = dst_root if single else posixpath.join(dst_root, relative)
        dst_fs.makedirs(posixpath.dirname(target), exist_ok=True)
        with timed(logger, "copy %s -> %s (%d bytes)", source, target, manifest.files[relative].size), \
                src_fs.open(source, "rb") as fin, dst_fs.open(target, "wb") as fout:
            while block := fin.read(16 * 1024 * 1024):
                fout.write(block)
    return verify_manifest_stat(dst_fs, dst_root, manifest.materialized())[0]


# -- verification ---------------------------------------------------------------------------------


def verify_versions(
    store: Any, entries: Sequence[Entry], *, quick: bool, recorded: Mapping[str, str],
    on_done: Callable[[Entry], object],
) -> dict[str, list[str]]:
    """Problems of each version, by version id: re-hashed on the cluster's workers when one is active.

    Versions on a tier every process reaches (an object store) are re-hashed by one
    task per version on the active client's workers, which get the manifest and the
    filesystem, never the catalog; the client reads the manifests, skips versions
    whose listing is unchanged (``quick``) and records the listing fingerprint of
    intact ones. Other versions (local directories, database tables), or all of them
    without a client, are checked in a thread pool by ``store.verify_entry``.
    """
    client = active_client()
    remote = [] if client is None else [e for e in entries if _shared_files(store.location(e))]
    found: dict[str, list[str]] = {}
    todo: list[tuple[Entry, Location, Manifest]] = []
    for entry in remote:
        location = store.location(entry)
        if quick:
            known = recorded.get(entry.version_id) or store.catalog.stat_fingerprint(entry.version_id)
            try:
                if known is not None and stat_fingerprint(location.store_fs, location.full_path) == known:
                    found[entry.version_id] = []
                    on_done(entry)
                    continue
            except FileNotFoundError:
                found[entry.version_id] = [f"{entry.key} v{entry.version}: {location.url}: missing"]
                on_done(entry)
                continue
        todo.append((entry, location, store.catalog.manifest(entry)))

    def checked(index: int, outcome: tuple[list[str], str | None]) -> None:
        entry = todo[index][0]
        problems, stat = outcome
        if not problems and stat is not None:
            store.catalog.set_stat_fingerprint(entry.version_id, stat)
        found[entry.version_id] = [f"{entry.key} v{entry.version}: {p}" for p in problems]
        on_done(entry)

    fan_out(verify_manifest_stat, [(loc.store_fs, loc.full_path, m) for _, loc, m in todo], on_done=checked)
    local = [e for e in entries if e.version_id not in found]

    def check(entry: Entry) -> list[str]:
        problems: list[str] = store.verify_entry(entry, quick=quick, recorded=recorded.get(entry.version_id))
        on_done(entry)
        return problems

    with ThreadPoolExecutor(max_workers=8) as pool:
        found.update(zip([e.version_id for e in local], pool.map(check, local), strict=True))
    return {e.version_id: found[e.version_id] for e in entries}


def _shared_files(location: Location) -> bool:
    from memories_geo.backends.base import Capability

    return Capability.FILES in location.backend.capabilities and shared_location(location)
