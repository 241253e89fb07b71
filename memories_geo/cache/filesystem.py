"""A read-through cache in front of an object store's fsspec filesystem.

:class:`CachedFileSystem` wraps the (async) fsspec filesystem of a remote tier. Writes,
listings and deletes go straight through; reads of a stored version's files (paths under
``<key>/@v/<version>``, which never change once written) are served from a cache store:
files up to ``block_size`` whole, larger ones block by block. Entries are named after the
file's digest in the version's manifest (read from the version record beside it), so
cached bytes never go stale, and a file whose bytes fetched from the store do not match
that digest is not cached. Paths outside a committed version (no record yet, journals)
are never cached. Sizes and types of a version's files come from the manifest too (it
lists every file of the version: a name it does not list is not there), so a second open
sends no ``HEAD`` request.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import posixpath
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fsspec.asyn import AsyncFileSystem
from fsspec.spec import AbstractBufferedFile

from memories_geo.cache.settings import CacheSettings
from memories_geo.cache.stats import CacheCounts, CacheStats
from memories_geo.integrity import FileDigest, Manifest, hash_bytes
from memories_geo.keys import VERSIONS_DIR
from memories_geo.records import RECORD_SUFFIX

__all__ = ["CacheStore", "CachedFileSystem"]

logger = logging.getLogger(__name__)

#: Seconds a missing version record is remembered (a version being saved has none yet).
_MISSING_TTL = 2.0
_SYNC_PASS = (
    "ls", "find", "walk", "glob", "du", "expand_path", "pipe_file", "pipe", "put_file", "put", "get_file",
    "get", "rm_file", "rm", "rmdir", "cp_file", "copy", "mv", "makedirs", "mkdir", "touch", "modified",
    "created", "checksum", "ukey", "invalidate_cache", "sign",
)
_ASYNC_PASS = (
    "_ls", "_find", "_glob", "_du", "_expand_path", "_pipe_file", "_pipe", "_put_file", "_put", "_get_file",
    "_get", "_rm_file", "_rm", "_cp_file", "_copy", "_makedirs", "_mkdir",
)


class CacheStore:
    """What a cache store provides (:class:`~memories_geo.cache.LocalCacheStore`, ``RedisCacheStore``)."""

    def get(self, key: str) -> bytes | None:  # pragma: no cover - protocol
        """Bytes under ``key`` or ``None``."""
        raise NotImplementedError

    def put(self, key: str, data: bytes) -> None:  # pragma: no cover - protocol
        """Keep ``data`` under ``key``."""
        raise NotImplementedError

    def __contains__(self, key: object) -> bool:  # pragma: no cover - protocol
        raise NotImplementedError


@dataclass
class _Version:
    """The manifest of one committed version: relative file name -> digest."""

    root: str
    files: dict[str, FileDigest]
    order: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.order = sorted(self.files)


@dataclass
class _Shared:
    """State shared by a filesystem and its asynchronous view."""

    versions: dict[str, tuple[float, _Version | None]] = field(default_factory=dict)
    last_block: dict[str, int] = field(default_factory=dict)
    last_file: dict[str, int] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    pool: ThreadPoolExecutor | None = None


class _CachedFile(AbstractBufferedFile):
    """A version's file opened for reading: every range comes through the cache."""

    def _fetch_range(self, start: int, end: int) -> bytes:
        return bytes(self.fs.cat_file(self.path, start=start, end=end))


class CachedFileSystem(AsyncFileSystem):
    """An fsspec filesystem that serves reads of stored versions from a cache.

    Parameters
    ----------
    remote : fsspec.asyn.AsyncFileSystem
        The object store's filesystem (s3fs, gcsfs, adlfs). Everything but reads goes to it.
    store : CacheStore
        Where cached bytes live (a local directory or Redis).
    settings : CacheSettings
        Block size, prefetching.
    stats : CacheStats, optional
        Counters (hits, misses, bytes, requests, prefetched); a new set by default.

    Examples
    --------
    >>> fs = CachedFileSystem(s3, LocalCacheStore(tmp, max_size=10**9), CacheSettings())  # doctest: +SKIP
    >>> fs.cat_file("bucket/warm/rain/@v/0001.parquet")  # doctest: +SKIP
    >>> fs.counts().hits  # doctest: +SKIP
    0
    """

    cachable = False
    mirror_sync_methods = False

    def __init__(
        self, remote: Any, store: CacheStore, settings: CacheSettings, *, stats: CacheStats | None = None,
        asynchronous: bool = False, shared: _Shared | None = None,
    ) -> None:
        super().__init__(asynchronous=asynchronous, loop=None if asynchronous else remote.loop)
        self.remote = remote
        self.store = store
        self.settings = settings
        self.stats = stats if stats is not None else CacheStats()
        self.protocol = remote.protocol
        self._shared = shared if shared is not None else _Shared()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or "remote" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["remote"], name)

    def async_view(self) -> CachedFileSystem:
        """The same cache as an asynchronous filesystem (``asynchronous=True``), for zarr's FsspecStore."""
        return CachedFileSystem(self.remote, self.store, self.settings, stats=self.stats,
                                asynchronous=True, shared=self._shared)

    def forget(self, root: str) -> None:
        """Drop what is remembered of the version at ``root`` (its record was just written)."""
        with self._shared.lock:
            self._shared.versions.pop(self._strip(root), None)

    def counts(self) -> CacheCounts:
        """Hits, misses, bytes served and fetched, requests, prefetched blocks, evictions so far."""
        return self.stats.snapshot()

    # -- what is cacheable -------------------------------------------------------------

    def _strip(self, path: str) -> str:
        return str(self.remote._strip_protocol(path))

    def _version(self, root: str) -> _Version | None:
        shared = self._shared
        with shared.lock:
            known = shared.versions.get(root)
        if known is not None and (known[1] is not None or time.monotonic() - known[0] < _MISSING_TTL):
            return known[1]
        key = "record-" + hash_bytes(self.remote.unstrip_protocol(root).encode())
        data = self.store.get(key)
        version = self._parse(root, data) if data is not None else None
        if version is None:
            try:
                data = bytes(self.remote.cat_file(root + RECORD_SUFFIX))
                self.stats.add(requests=1, bytes_fetched=len(data))
                version = self._parse(root, data)
            except FileNotFoundError:
                version = None
            if version is not None and data is not None:
                self.store.put(key, data)
        with shared.lock:
            shared.versions[root] = (time.monotonic(), version)
        return version

    @staticmethod
    def _parse(root: str, data: bytes) -> _Version | None:
        try:
            manifest = json.loads(data)["manifest"]
            files = Manifest.from_json(manifest).files
        except (ValueError, KeyError, TypeError):
            return None
        return _Version(root, dict(files))

    def _lookup(self, path: str) -> tuple[_Version, str] | None:
        """The version and relative name of ``path``, when it is a file of a committed version."""
        head, sep, tail = path.partition(f"/{VERSIONS_DIR}/")
        entry, _, rel = tail.partition("/")
        if not sep or not entry or entry.endswith(RECORD_SUFFIX) or entry.startswith("."):
            return None
        version = self._version(f"{head}/{VERSIONS_DIR}/{entry}")
        if version is None:
            return None
        return version, rel or entry

    # -- reads -------------------------------------------------------------------------

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        """Bytes ``start:end`` of ``path``, from the cache when ``path`` is a stored version's file."""
        path = self._strip(path)
        found = self._lookup(path)
        if found is None:
            return bytes(self.remote.cat_file(path, start=start, end=end, **kwargs))
        version, rel = found
        if rel not in version.files:
            raise FileNotFoundError(path)
        digest = version.files[rel]
        lo, hi = _bounds(start, end, digest.size)
        if lo >= hi:
            return b""
        if digest.size <= self.settings.block_size:
            data = self._whole(path, digest)[start:end]
            self._after_file(version, rel)
            return data
        return self._blocks(path, digest, lo, hi)

    def _whole(self, path: str, digest: FileDigest, *, ahead: bool = False) -> bytes:
        data = self.store.get(digest.digest)
        if data is not None and len(data) == digest.size:
            if not ahead:
                self.stats.add(hits=1, bytes_served=len(data))
            return data
        # A ranged GET: without a range s3fs asks for the size first (one more request).
        data = bytes(self.remote.cat_file(path, start=0, end=digest.size)) if digest.size else b""
        self.stats.add(requests=1, bytes_fetched=len(data), **({"prefetched": 1} if ahead else {"misses": 1}))
        if len(data) == digest.size and hash_bytes(data) == digest.digest:
            self.store.put(digest.digest, data)
            return data
        data = bytes(self.remote.cat_file(path))
        self.stats.add(requests=1, bytes_fetched=len(data))
        logger.warning("%s does not match its manifest (size %d, expected %d); not cached",
                       self.remote.unstrip_protocol(path), len(data), digest.size)
        return data

    def _block_key(self, digest: FileDigest, index: int) -> str:
        return f"{digest.digest}-{self.settings.block_size}-{index}"

    def _blocks(self, path: str, digest: FileDigest, lo: int, hi: int) -> bytes:
        size = self.settings.block_size
        first, last = lo // size, (hi - 1) // size
        found = {i: self.store.get(self._block_key(digest, i)) for i in range(first, last + 1)}
        missing = [i for i, data in found.items() if data is None]
        if missing:
            found.update(self._fetch_blocks(path, digest, missing))
            self.stats.add(misses=1)
        else:
            self.stats.add(hits=1)
        self.stats.add(bytes_served=sum(len(found[i] or b"") for i in found if i not in missing))
        joined = b"".join(found[i] or b"" for i in range(first, last + 1))
        self._after_blocks(path, digest, first, last)
        return joined[lo - first * size : hi - first * size]

    def _fetch_blocks(self, path: str, digest: FileDigest, indexes: Sequence[int], *,
                      ahead: bool = False) -> dict[int, bytes]:
        """Fetch blocks ``indexes`` (consecutive ones in one request) and cache them."""
        size = self.settings.block_size
        runs: list[list[int]] = []
        for i in sorted(indexes):
            if runs and runs[-1][-1] == i - 1:
                runs[-1].append(i)
            else:
                runs.append([i])
        starts = [run[0] * size for run in runs]
        ends = [min((run[-1] + 1) * size, digest.size) for run in runs]
        datas = self.remote.cat_ranges([path] * len(runs), starts, ends, on_error="raise")
        fetched: dict[int, bytes] = {}
        for run, start, data in zip(runs, starts, datas, strict=True):
            for i in run:
                block = bytes(data[i * size - start : (i + 1) * size - start])
                fetched[i] = block
                self.store.put(self._block_key(digest, i), block)
        self.stats.add(requests=len(runs), bytes_fetched=sum(len(d) for d in datas),
                       **({"prefetched": len(fetched)} if ahead else {}))
        return fetched

    def cat_ranges(self, paths: Sequence[str], starts: Sequence[int | None] | int | None,
                   ends: Sequence[int | None] | int | None, max_gap: int | None = None,
                   on_error: str = "return", **kwargs: Any) -> list[Any]:
        """Several ranges, each through :meth:`cat_file`."""
        n = len(paths)
        los = starts if isinstance(starts, Sequence) else [starts] * n
        his = ends if isinstance(ends, Sequence) else [ends] * n
        out: list[Any] = []
        for path, lo, hi in zip(paths, los, his, strict=True):
            try:
                out.append(self.cat_file(path, lo, hi))
            except Exception as exc:
                if on_error != "return":
                    raise
                out.append(exc)
        return out

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """Details of ``path``; for a stored version's files and folders, from its manifest."""
        path = self._strip(path)
        found = self._lookup(path)
        if found is not None:
            version, rel = found
            if rel in version.files:
                return {"name": path, "size": version.files[rel].size, "type": "file"}
            if rel == version.root.rsplit("/", 1)[-1] or any(f.startswith(rel + "/") for f in version.order):
                return {"name": path, "size": 0, "type": "directory"}
            raise FileNotFoundError(path)
        return dict(self.remote.info(path, **kwargs))

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, autocommit: bool = True,
              cache_options: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        path = self._strip(path)
        found = self._lookup(path) if mode == "rb" else None
        if found is not None and found[1] not in found[0].files:
            raise FileNotFoundError(path)
        if found is None:
            return self.remote._open(path, mode, block_size=block_size, autocommit=autocommit,
                                     cache_options=cache_options, **kwargs)
        return _CachedFile(self, path, mode, block_size=block_size or self.settings.block_size,
                           cache_type=kwargs.get("cache_type", "readahead"), cache_options=cache_options,
                           size=found[0].files[found[1]].size)

    # -- prefetching -------------------------------------------------------------------

    def _submit(self, name: str, work: Callable[[], Any]) -> None:
        shared = self._shared
        with shared.lock:
            if name in shared.pending:
                return
            shared.pending.add(name)
            if shared.pool is None:
                shared.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="memories-geo-prefetch")
            pool = shared.pool

        def run() -> None:
            try:
                work()
            except Exception as exc:
                logger.debug("prefetch %s failed: %s", name, exc)
            finally:
                with shared.lock:
                    shared.pending.discard(name)

        pool.submit(run)

    def _after_blocks(self, path: str, digest: FileDigest, first: int, last: int) -> None:
        shared = self._shared
        with shared.lock:
            previous = shared.last_block.get(path)
            shared.last_block[path] = last
        if not self.settings.prefetching or previous is None or first not in (previous, previous + 1):
            return
        count = -(-digest.size // self.settings.block_size)
        wanted = [i for i in range(last + 1, min(last + 1 + self.settings.prefetch_blocks, count))
                  if self._block_key(digest, i) not in self.store]
        if wanted:
            self._submit(f"{path}#{wanted[0]}", lambda: self._fetch_blocks(path, digest, wanted, ahead=True))

    def _after_file(self, version: _Version, rel: str) -> None:
        shared = self._shared
        index = version.order.index(rel) if rel in version.files else -1
        with shared.lock:
            previous = shared.last_file.get(version.root)
            shared.last_file[version.root] = index
        if not self.settings.prefetching or previous is None or index != previous + 1:
            return
        folder = posixpath.dirname(rel)
        for name in version.order[index + 1 : index + 1 + self.settings.prefetch_blocks]:
            digest = version.files[name]
            if posixpath.dirname(name) != folder or digest.size > self.settings.block_size:
                break
            if digest.digest not in self.store:
                full = posixpath.join(version.root, name)
                self._submit(full, functools.partial(self._whole, full, digest, ahead=True))

    def wait_prefetched(self, timeout: float = 30.0) -> None:
        """Block until the prefetches under way are done (or ``timeout`` seconds pass)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._shared.lock:
                if not self._shared.pending:
                    return
            time.sleep(0.01)

    # -- asynchronous twins (zarr) --------------------------------------------------------

    async def _cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        return await asyncio.to_thread(self.cat_file, path, start, end, **kwargs)

    async def _cat_ranges(self, paths: list[str], starts: Any, ends: Any, max_gap: int | None = None,
                          on_error: str = "return", **kwargs: Any) -> list[Any]:
        return await asyncio.to_thread(self.cat_ranges, paths, starts, ends, on_error=on_error)

    async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self.info, path, **kwargs)

    async def _exists(self, path: str, **kwargs: Any) -> bool:
        return await asyncio.to_thread(self.exists, path)

    async def _isfile(self, path: str) -> bool:
        return await asyncio.to_thread(self.isfile, path)

    async def _isdir(self, path: str) -> bool:
        return await asyncio.to_thread(self.isdir, path)

    async def _size(self, path: str) -> int | None:
        return await asyncio.to_thread(self.size, path)

    async def _bridge(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Run the remote filesystem's coroutine ``name`` on the loop it belongs to."""
        loop = self.remote.loop
        coroutine = getattr(self.remote, name)(*args, **kwargs)
        if asyncio.get_running_loop() is loop:
            return await coroutine
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, loop))

    def __repr__(self) -> str:
        return f"CachedFileSystem({type(self.remote).__name__}, {self.store!r})"


def _bounds(start: int | None, end: int | None, size: int) -> tuple[int, int]:
    lo = 0 if start is None else (max(size + start, 0) if start < 0 else min(start, size))
    hi = size if end is None else (max(size + end, 0) if end < 0 else min(end, size))
    return lo, hi


def _sync_pass(name: str) -> Callable[..., Any]:
    def method(self: CachedFileSystem, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.remote, name)(*args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"``{name}`` of the wrapped filesystem."
    return method


def _async_pass(name: str) -> Callable[..., Any]:
    async def method(self: CachedFileSystem, *args: Any, **kwargs: Any) -> Any:
        return await self._bridge(name, *args, **kwargs)

    method.__name__ = name
    return method


for _name in _SYNC_PASS:
    setattr(CachedFileSystem, _name, _sync_pass(_name))
for _name in _ASYNC_PASS:
    setattr(CachedFileSystem, _name, _async_pass(_name))
