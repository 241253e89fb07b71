"""File backends on any fsspec filesystem: local, S3, GCS, Azure Blob, memory."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from memories_geo.backends.base import Capability
from memories_geo.config import redact_url
from memories_geo.errors import InvalidKeyError, TierUnavailableError
from memories_geo.keys import VERSIONS_DIR
from memories_geo.records import RECORD_SUFFIX

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = ["FileBackend"]


class FileBackend:
    """Files under a root URL, through fsspec.

    Parameters
    ----------
    url : str
        Root, e.g. ``"file:///data/hot"``, ``"/data/hot"``, ``"s3://bucket/warm"``.
    storage_options : mapping, optional
        Passed to the fsspec filesystem (credentials, endpoint...). Never shown.
    """

    #: Object stores whose fsspec ``copy`` runs inside the store.
    _SERVER_SIDE_COPY: ClassVar[frozenset[str]] = frozenset(
        {"s3", "s3a", "gs", "gcs", "az", "abfs", "memory"}
    )

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.storage_options = dict(storage_options or {})
        if "://" in url and not url.startswith(("file://", "memory://")):
            # A cached listing goes stale when another writer (or zarr's own store
            # instance) adds objects; consolidated metadata and manifests built from a
            # stale listing would miss data, so object stores list afresh by default.
            self.storage_options.setdefault("use_listings_cache", False)

    @cached_property
    def _fs_and_root(self) -> tuple[AbstractFileSystem, str]:
        from fsspec.core import url_to_fs

        try:
            fs, root = url_to_fs(self.url, **self.storage_options)
        except (ImportError, ValueError) as exc:
            raise TierUnavailableError(f"cannot open {redact_url(self.url)!r}: {exc}") from exc
        return fs, root.rstrip("/") or "/"

    @property
    def fs(self) -> AbstractFileSystem:
        """The fsspec filesystem."""
        return self._fs_and_root[0]

    @property
    def root(self) -> str:
        """Root path on :attr:`fs`."""
        return self._fs_and_root[1]

    @property
    def capabilities(self) -> frozenset[Capability]:
        """Writes, listing, files; atomic rename on local disks; server-side copy on object stores."""
        caps = {Capability.WRITES, Capability.LISTING, Capability.FILES}
        if self.protocol == "file":
            caps.add(Capability.ATOMIC_RENAME)
        if self.protocol in self._SERVER_SIDE_COPY:
            caps.add(Capability.SERVER_SIDE_COPY)
        return frozenset(caps)

    @property
    def protocol(self) -> str:
        """First protocol name of the filesystem (``"file"``, ``"s3"``...)."""
        proto = self.fs.protocol
        return proto if isinstance(proto, str) else proto[0]

    def full_path(self, path: str) -> str:
        """Join ``path`` to the root, refusing anything that would escape it."""
        if not path:
            return self.root
        joined = posixpath.normpath(posixpath.join(self.root, path))
        inside = joined == self.root or joined.startswith(self.root.rstrip("/") + "/")
        if path.startswith("/") or not inside:
            raise InvalidKeyError(f"path {path!r} escapes the tier root")
        return joined

    def url_for(self, path: str) -> str:
        """Display URL of ``path``."""
        full = self.full_path(path)
        if self.protocol == "file":
            return f"file://{full}"
        return redact_url(self.fs.unstrip_protocol(full))

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists."""
        return bool(self.fs.exists(self.full_path(path)))

    def remove(self, path: str) -> None:
        """Delete ``path`` recursively, then prune empty parent directories up to the root."""
        full = self.full_path(path)
        if self.fs.exists(full):
            self.fs.rm(full, recursive=True)
        if self.protocol == "file":
            self._prune_empty_parents(full)

    def _prune_empty_parents(self, full: str) -> None:
        parent = posixpath.dirname(full)
        while parent.startswith(self.root + "/"):
            try:
                if self.fs.ls(parent):
                    return
                self.fs.rmdir(parent)
            except (FileNotFoundError, OSError):
                return
            parent = posixpath.dirname(parent)

    def listdir(self, path: str) -> list[str]:
        """Names directly under ``path``."""
        full = self.full_path(path)
        try:
            return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(full, detail=False))
        except FileNotFoundError:
            return []

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write a small object at ``path`` (parents created where the store has folders)."""
        full = self.full_path(path)
        if self.protocol == "file":
            self.fs.makedirs(posixpath.dirname(full), exist_ok=True)
        self.fs.pipe_file(full, data)

    def read_bytes(self, path: str) -> bytes:
        """Read a small object at ``path``."""
        return bytes(self.fs.cat_file(self.full_path(path)))

    def version_paths(self) -> list[str]:
        """Logical path of every version under the root, found by walking the ``@v`` folders.

        A version record whose data is missing counts as that version (so orphan
        recovery removes the lone record too). Folders whose name starts with ``@``
        (``@checkpoints``) are not descended into.
        """
        found: dict[str, None] = {}
        pending = [""]
        while pending:
            path = pending.pop()
            for name in self.listdir(path):
                child = posixpath.join(path, name) if path else name
                if name == VERSIONS_DIR:
                    for version in self.listdir(child):
                        found[posixpath.join(child, version.removesuffix(RECORD_SUFFIX))] = None
                elif not name.startswith("@") and self.fs.isdir(self.full_path(child)):
                    pending.append(child)
        return sorted(found)

    def makedirs(self, path: str) -> None:
        """Create ``path`` and its parents (no-op on object stores)."""
        self.fs.makedirs(self.full_path(path), exist_ok=True)

    def __repr__(self) -> str:
        return f"FileBackend({redact_url(self.url)!r})"
