"""File backends on any fsspec filesystem: local, S3, GCS, Azure Blob, memory."""

from __future__ import annotations

import copy
import logging
import posixpath
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from memories_geo.backends.archive import (
    ObjectPolicies,
    check_days,
    check_lock_request,
    policies_for,
    relative,
    s3_class_kwargs,
)
from memories_geo.backends.base import ArchiveState, Capability, require
from memories_geo.backends.endpoints import (
    CONNECT_TIMEOUT,
    S3_CLIENT_DEFAULTS,
    azure_default_scope,
    endpoint_of,
    gcs_default_key,
    is_unreachable,
    s3_encryption_kwargs,
    unreachable_fix,
)
from memories_geo.config import check_encryption, redact_text, redact_url
from memories_geo.errors import ConfigError, InvalidKeyError, TierUnavailableError
from memories_geo.keys import VERSIONS_DIR
from memories_geo.progress import timed
from memories_geo.records import RECORD_SUFFIX
from memories_geo.storage_policy import check_storage_class

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = ["CONNECT_TIMEOUT", "FileBackend", "is_unreachable"]

logger = logging.getLogger(__name__)


class FileBackend:
    """Files under a root URL, through fsspec.

    Parameters
    ----------
    url : str
        Root, e.g. ``"file:///data/hot"``, ``"/data/hot"``, ``"s3://bucket/warm"``.
    storage_options : mapping, optional
        Passed to the fsspec filesystem (credentials, endpoint...). Never shown.
    encryption : mapping, optional
        Encryption at rest (see :func:`memories_geo.config.check_encryption`). On S3 it
        becomes ``s3_additional_kwargs`` of the filesystem, so every object written
        through it (and through filesystems built from :attr:`storage_options`) carries
        ``ServerSideEncryption`` (and ``SSEKMSKeyId``). On GCS and Azure, whose fsspec
        filesystems take no default key, the bucket's default KMS key or the container's
        default encryption scope is checked when the filesystem is opened.
    storage_class : str, optional
        The tier's storage class (see :func:`memories_geo.storage_policy.check_storage_class`),
        given to every object of every version by :meth:`apply_storage_class` (on S3, a
        class readable at once is sent with every upload instead). Small objects
        (:meth:`write_bytes`) get it too unless it needs a restore (``GLACIER``,
        ``DEEP_ARCHIVE``, Azure ``archive``): records and manifests stay readable.

    Examples
    --------
    >>> backend = FileBackend("s3://bucket/warm", encryption={"algorithm": "AES256"})
    >>> backend.storage_options["s3_additional_kwargs"]
    {'ServerSideEncryption': 'AES256'}
    """

    #: Object stores whose fsspec ``copy`` runs inside the store.
    _SERVER_SIDE_COPY: ClassVar[frozenset[str]] = frozenset(
        {"s3", "s3a", "gs", "gcs", "az", "abfs", "memory"}
    )

    def __init__(
        self,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        encryption: Mapping[str, str] | None = None,
        storage_class: str | None = None,
        cache: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.cache: Any = None
        self.storage_options = dict(storage_options or {})
        self._scheme = urlsplit(url).scheme if "://" in url else "file"
        self._label = redact_url(url)
        self.encryption = check_encryption(url, encryption)
        self.storage_class = check_storage_class(url, storage_class)
        if self.encryption and self._scheme in ("s3", "s3a"):
            self.storage_options["s3_additional_kwargs"] = s3_encryption_kwargs(
                self.storage_options.get("s3_additional_kwargs") or {}, self.encryption
            )
        if self.storage_class and self._scheme in ("s3", "s3a"):
            self.storage_options["s3_additional_kwargs"] = s3_class_kwargs(
                self.storage_options.get("s3_additional_kwargs") or {}, self.storage_class
            )
        if self._scheme not in ("file", "memory"):
            # A cached listing goes stale when another writer (or zarr's own store
            # instance) adds objects; consolidated metadata and manifests built from a
            # stale listing would miss data, so object stores list afresh by default.
            self.storage_options.setdefault("use_listings_cache", False)
        if self._scheme in ("s3", "s3a"):
            config = copy.deepcopy(dict(self.storage_options.get("config_kwargs") or {}))
            for name, value in S3_CLIENT_DEFAULTS.items():
                config.setdefault(name, copy.deepcopy(value))
            self.storage_options["config_kwargs"] = config
        if cache:
            self.use_cache(cache)

    @cached_property
    def _fs_and_root(self) -> tuple[AbstractFileSystem, str]:
        from fsspec.core import url_to_fs

        if self._scheme in ("redis", "rediss"):
            from memories_geo.backends.redisfs import register_protocols

            register_protocols()
        start = time.perf_counter()
        self._probe()
        options = dict(self.storage_options)
        if "config_kwargs" in options:
            # botocore rewrites the retry settings it is given in place.
            options["config_kwargs"] = copy.deepcopy(options["config_kwargs"])
        try:
            fs, root = url_to_fs(self.url, **options)
        except (ImportError, ValueError) as exc:
            raise TierUnavailableError(f"cannot open {self._label!r}: {redact_text(str(exc))}") from exc
        if self.encryption and self._scheme in ("gs", "gcs"):
            self._check_default(fs, root, "kms_key_name", gcs_default_key)
        elif self.encryption and self._scheme in ("az", "abfs", "abfss"):
            self._check_default(fs, root, "encryption_scope", azure_default_scope)
        logger.debug("%s: filesystem opened (%.1f ms)", self._label, (time.perf_counter() - start) * 1000)
        return fs, root.rstrip("/") or "/"

    def _check_default(
        self, fs: AbstractFileSystem, root: str, setting: str, read: Callable[[Any, str], str | None]
    ) -> None:
        """Refuse a GCS/Azure tier whose bucket or container does not encrypt with the configured key.

        gcsfs and adlfs take no default key for every write, but the stores apply the
        bucket's default KMS key (GCS) or the container's default encryption scope
        (Azure) to every object written without one: that default must be the one
        configured.
        """
        bucket = root.strip("/").split("/", 1)[0]
        wanted = self.encryption[setting]
        noun = "container" if setting == "encryption_scope" else "bucket"
        try:
            found = read(fs, bucket)
        except Exception as exc:
            if is_unreachable(exc):
                raise self._unavailable(exc) from None
            raise TierUnavailableError(
                f"tier {self._label!r}: cannot read the encryption settings of {noun} {bucket!r} "
                f"to check its default ({type(exc).__name__}: {redact_text(str(exc))}); the credentials "
                f"need permission to read the {noun}'s properties"
            ) from exc
        if found != wanted:
            fix = (
                f"gcloud storage buckets update gs://{bucket} --default-encryption-key={wanted}"
                if noun == "bucket" else
                f"create the container with --default-encryption-scope {wanted} "
                "--prevent-encryption-scope-override true"
            )
            raise ConfigError(
                f"tier {self._label!r} is configured with {setting}={wanted!r}, but {noun} {bucket!r} "
                f"encrypts new objects with {found or 'the provider-managed default'}"
                f"{'' if found else ' (no default set)'}; memories_geo relies on the {noun}'s "
                f"default to encrypt every object: {fix}"
            )

    @property
    def endpoint(self) -> str | None:
        """The service endpoint named in ``storage_options`` (or the environment), credentials removed."""
        found = endpoint_of(self._scheme, self.storage_options)
        return redact_url(found) if found else None

    def _probe(self) -> None:
        """Fail fast, naming the endpoint, when an explicit endpoint does not accept connections.

        Skipped when the endpoint is reached through a proxy.
        """
        endpoint = endpoint_of(self._scheme, self.storage_options)
        if endpoint is None:
            return
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        proxies = urllib.request.getproxies()
        if (proxies.get(parts.scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(host):
            return
        if (self.storage_options.get("config_kwargs") or {}).get("proxies"):
            return
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
        except (OSError, ValueError) as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: BaseException) -> TierUnavailableError:
        endpoint = self.endpoint
        target = f"the endpoint {endpoint}" if endpoint else f"the {self._scheme} service"
        fix = unreachable_fix(self._scheme) if endpoint else "check the network (and any proxy settings)"
        return TierUnavailableError(
            f"tier {self._label!r} is unreachable: cannot connect to {target} "
            f"({type(exc).__name__}: {redact_text(str(exc))}); {fix}"
        )

    @contextmanager
    def _call(self, operation: str, path: str) -> Iterator[None]:
        """Time one backend call (a DEBUG line) and turn "cannot connect" into TierUnavailableError."""
        with timed(logger, "%s: %s %r", self._label, operation, path):
            try:
                yield
            except TierUnavailableError:
                raise
            except Exception as exc:
                if is_unreachable(exc):
                    raise self._unavailable(exc) from None
                raise

    @property
    def fs(self) -> AbstractFileSystem:
        """The fsspec filesystem formats read and write through (behind the tier's cache, if any)."""
        return self._cached_fs if self.cache is not None else self._fs_and_root[0]

    @property
    def remote_fs(self) -> AbstractFileSystem:
        """The store's own fsspec filesystem, never cached (listings, deletes, verification)."""
        return self._fs_and_root[0]

    def use_cache(self, settings: Any) -> None:
        """Serve reads of stored versions from a cache (see :func:`memories_geo.cache.check_cache_settings`).

        Only object stores are cached; on local and in-memory tiers :attr:`fs` stays the store's own.
        """
        from memories_geo.cache import check_cache_settings

        self.cache = check_cache_settings(settings)
        self.__dict__.pop("_cached_fs", None)

    @cached_property
    def _cached_fs(self) -> AbstractFileSystem:
        from memories_geo.cache import cached_filesystem

        return cached_filesystem(self._fs_and_root[0], self.cache)

    @property
    def root(self) -> str:
        """Root path on :attr:`fs`."""
        return self._fs_and_root[1]

    @cached_property
    def _policies(self) -> ObjectPolicies:
        return policies_for(self.protocol, self.remote_fs, self.storage_class, self._label)

    @property
    def capabilities(self) -> frozenset[Capability]:
        """Writes, listing, files; atomic rename on local disks; server-side copy on object stores.

        Plus storage classes on S3, GCS and Azure, restores on S3 and Azure, Object Lock on S3.
        """
        caps = {Capability.WRITES, Capability.LISTING, Capability.FILES, *self._policies.capabilities}
        if self.protocol == "file":
            caps.add(Capability.ATOMIC_RENAME)
        if self.protocol in self._SERVER_SIDE_COPY:
            caps.add(Capability.SERVER_SIDE_COPY)
        return frozenset(caps)

    @property
    def protocol(self) -> str:
        """First protocol name of the filesystem (``"file"``, ``"s3"``...)."""
        proto = self.remote_fs.protocol
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
        return redact_url(self.remote_fs.unstrip_protocol(full))

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists."""
        with self._call("exists", path):
            return bool(self.remote_fs.exists(self.full_path(path)))

    def remove(self, path: str) -> None:
        """Delete ``path`` recursively, then prune empty parent directories up to the root."""
        full = self.full_path(path)
        with self._call("remove", path):
            if self.remote_fs.exists(full):
                self.remote_fs.rm(full, recursive=True)
            if self.protocol == "file":
                self._prune_empty_parents(full)

    def _prune_empty_parents(self, full: str) -> None:
        parent = posixpath.dirname(full)
        while parent.startswith(self.root + "/"):
            try:
                if self.remote_fs.ls(parent):
                    return
                self.remote_fs.rmdir(parent)
            except (FileNotFoundError, OSError):
                return
            parent = posixpath.dirname(parent)

    def listdir(self, path: str) -> list[str]:
        """Names directly under ``path``."""
        full = self.full_path(path)
        with self._call("listdir", path):
            try:
                found = self.remote_fs.ls(full, detail=False)
                return sorted(posixpath.basename(p.rstrip("/")) for p in found)
            except FileNotFoundError:
                return []

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write a small object at ``path`` (parents created where the store has folders)."""
        full = self.full_path(path)
        with self._call(f"write_bytes ({len(data)} bytes)", path):
            if self.protocol == "file":
                self.remote_fs.makedirs(posixpath.dirname(full), exist_ok=True)
            self._policies.pipe(full, data)
        forget = getattr(self.__dict__.get("_cached_fs"), "forget", None)
        if forget is not None and path.endswith(RECORD_SUFFIX):
            forget(full.removesuffix(RECORD_SUFFIX))

    def read_bytes(self, path: str) -> bytes:
        """Read a small object at ``path``."""
        with self._call("read_bytes", path):
            return bytes(self.fs.cat_file(self.full_path(path)))

    def version_paths(self) -> list[str]:
        """Logical path of every version under the root, found by walking the ``@v`` folders.

        A version record whose data is missing counts as that version (so orphan
        recovery removes the lone record too). Folders whose name starts with ``@``
        (``@checkpoints``) are not descended into.
        """
        with self._call("version_paths", ""):
            return self._version_paths()

    def _version_paths(self) -> list[str]:
        found: dict[str, None] = {}
        pending = [""]
        while pending:
            path = pending.pop()
            for name in self.listdir(path):
                child = posixpath.join(path, name) if path else name
                if name == VERSIONS_DIR:
                    for version in self.listdir(child):
                        found[posixpath.join(child, version.removesuffix(RECORD_SUFFIX))] = None
                elif not name.startswith("@") and self.remote_fs.isdir(self.full_path(child)):
                    pending.append(child)
        return sorted(found)

    def makedirs(self, path: str) -> None:
        """Create ``path`` and its parents (no-op on object stores)."""
        with self._call("makedirs", path):
            self.remote_fs.makedirs(self.full_path(path), exist_ok=True)

    def apply_storage_class(self, path: str) -> None:
        """Give every object of the version at ``path`` the tier's storage class (no-op without one)."""
        with self._call("apply_storage_class", path):
            self._policies.apply(self.full_path(path))

    def storage_classes(self, path: str) -> dict[str, str]:
        """Relative file name -> storage class, as the store reports it, of the version at ``path``."""
        require(self, Capability.STORAGE_CLASSES, f"reading storage classes at {self._label!r}")
        full = self.full_path(path)
        with self._call("storage_classes", path):
            return {relative(full, p): c for p, c in sorted(self._policies.classes(full).items())}

    def archive_state(self, path: str) -> ArchiveState:
        """Whether the version at ``path`` can be read now (``online`` on stores without archives)."""
        with self._call("archive_state", path):
            return self._policies.state(self.full_path(path))

    def request_restore(self, path: str, *, days: int = 7, tier: str = "standard") -> ArchiveState:
        """Restore the archived objects of the version at ``path`` for ``days``; return the new state.

        ``tier`` is the speed: ``standard``, ``bulk`` or ``expedited`` on S3; ``standard``
        or ``high`` (rehydrate priority) on Azure, where blobs are rehydrated to ``Hot``
        and stay there (``days`` does not apply).
        """
        days = check_days(days)
        with self._call(f"request_restore ({days} days, {tier})", path):
            self._policies.restore(self.full_path(path), days, tier)
            return self._policies.state(self.full_path(path))

    def apply_retention(self, path: str, until: datetime, *, mode: str) -> None:
        """Lock every object of the version at ``path`` until ``until`` (S3 Object Lock, ``mode``).

        Raises :class:`~memories_geo.errors.ConfigError` when the bucket has no Object Lock.
        """
        require(self, Capability.OBJECT_LOCK, f"locking objects at {self._label!r}")
        mode = check_lock_request(until, mode)
        with self._call(f"apply_retention (until {until.isoformat()}, {mode})", path):
            self._policies.lock(self.full_path(path), until, mode)

    def check_object_lock(self) -> None:
        """Raise :class:`~memories_geo.errors.ConfigError` unless the tier's bucket has Object Lock."""
        require(self, Capability.OBJECT_LOCK, f"locking objects at {self._label!r}")
        with self._call("check_object_lock", ""):
            self._policies.check_lock(self.root)

    def object_locks(self, path: str) -> dict[str, tuple[str, datetime] | None]:
        """Relative file name -> (mode, until) of the Object Lock of each object, ``None`` when unlocked."""
        require(self, Capability.OBJECT_LOCK, f"reading object locks at {self._label!r}")
        full = self.full_path(path)
        with self._call("object_locks", path):
            return {relative(full, p): lock for p, lock in self._policies.locks(full).items()}

    def __repr__(self) -> str:
        return f"FileBackend({self._label!r})"
