"""File backends on any fsspec filesystem: local, S3, GCS, Azure Blob, memory."""

from __future__ import annotations

import copy
import logging
import os
import posixpath
import re
import socket
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from memories_geo.backends.base import Capability
from memories_geo.config import redact_url
from memories_geo.errors import InvalidKeyError, TierUnavailableError
from memories_geo.keys import VERSIONS_DIR
from memories_geo.progress import timed
from memories_geo.records import RECORD_SUFFIX

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = ["CONNECT_TIMEOUT", "FileBackend", "is_unreachable"]

logger = logging.getLogger(__name__)

#: Seconds to wait for a TCP connection to an object store's endpoint (probe and S3 client).
CONNECT_TIMEOUT = 5
#: botocore client settings used on S3 unless ``storage_options["config_kwargs"]`` sets them:
#: a dead endpoint fails in seconds, not after minutes of retries.
S3_CLIENT_DEFAULTS: Mapping[str, Any] = {
    "connect_timeout": CONNECT_TIMEOUT, "retries": {"max_attempts": 2, "mode": "standard"},
}
#: Names of the exception classes (in any SDK) that mean "the service cannot be reached".
_UNREACHABLE = frozenset({
    "ConnectionError", "EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError",
    "ClientConnectionError", "ServerDisconnectedError", "ServiceRequestError", "NewConnectionError",
    "gaierror",
})
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (from any storage SDK) means the service could not be reached.

    Recognised by class name (botocore, aiohttp, azure-core, urllib3, the builtins),
    so no SDK is imported.

    Examples
    --------
    >>> is_unreachable(ConnectionRefusedError(111, "refused")), is_unreachable(FileNotFoundError())
    (True, False)
    """
    return any(cls.__name__ in _UNREACHABLE for cls in type(exc).__mro__)


def _scrub(text: str) -> str:
    """``text`` with every URL in it shown without credentials or query string."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def _endpoint(scheme: str, options: Mapping[str, Any]) -> str | None:
    """The service endpoint a tier's ``storage_options`` (or the environment) name, if any."""
    found: Any = None
    if scheme in ("s3", "s3a"):
        found = (
            (options.get("client_kwargs") or {}).get("endpoint_url") or options.get("endpoint_url")
            or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        )
    elif scheme in ("gs", "gcs"):
        found = options.get("endpoint_url") or os.environ.get("STORAGE_EMULATOR_HOST")
    elif scheme in ("az", "abfs", "abfss"):
        text = options.get("connection_string") or os.environ.get("AZURE_STORAGE_CONNECTION_STRING") or ""
        fields = dict(part.split("=", 1) for part in str(text).split(";") if "=" in part)
        found = fields.get("BlobEndpoint")
        if not found and options.get("account_host"):
            found = f"https://{options['account_host']}"
    if not found:
        return None
    found = str(found)
    return found if "://" in found else f"http://{found}"


def _fix(scheme: str) -> str:
    if scheme in ("az", "abfs", "abfss"):
        where = "the BlobEndpoint of connection_string (or account_name) in storage_options"
    else:
        where = "endpoint_url in storage_options"
    return f"check {where} and that the service is running"


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
        self._scheme = urlsplit(url).scheme if "://" in url else "file"
        self._label = redact_url(url)
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

    @cached_property
    def _fs_and_root(self) -> tuple[AbstractFileSystem, str]:
        from fsspec.core import url_to_fs

        start = time.perf_counter()
        self._probe()
        options = dict(self.storage_options)
        if "config_kwargs" in options:
            # botocore rewrites the retry settings it is given in place.
            options["config_kwargs"] = copy.deepcopy(options["config_kwargs"])
        try:
            fs, root = url_to_fs(self.url, **options)
        except (ImportError, ValueError) as exc:
            raise TierUnavailableError(f"cannot open {self._label!r}: {_scrub(str(exc))}") from exc
        logger.debug("%s: filesystem opened (%.1f ms)", self._label, (time.perf_counter() - start) * 1000)
        return fs, root.rstrip("/") or "/"

    @property
    def endpoint(self) -> str | None:
        """The service endpoint named in ``storage_options`` (or the environment), credentials removed."""
        found = _endpoint(self._scheme, self.storage_options)
        return redact_url(found) if found else None

    def _probe(self) -> None:
        """Fail fast, naming the endpoint, when an explicit endpoint does not accept connections.

        Skipped when the endpoint is reached through a proxy.
        """
        endpoint = _endpoint(self._scheme, self.storage_options)
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
        fix = _fix(self._scheme) if endpoint else "check the network (and any proxy settings)"
        return TierUnavailableError(
            f"tier {self._label!r} is unreachable: cannot connect to {target} "
            f"({type(exc).__name__}: {_scrub(str(exc))}); {fix}"
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
        with self._call("exists", path):
            return bool(self.fs.exists(self.full_path(path)))

    def remove(self, path: str) -> None:
        """Delete ``path`` recursively, then prune empty parent directories up to the root."""
        full = self.full_path(path)
        with self._call("remove", path):
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
        with self._call("listdir", path):
            try:
                return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(full, detail=False))
            except FileNotFoundError:
                return []

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write a small object at ``path`` (parents created where the store has folders)."""
        full = self.full_path(path)
        with self._call(f"write_bytes ({len(data)} bytes)", path):
            if self.protocol == "file":
                self.fs.makedirs(posixpath.dirname(full), exist_ok=True)
            self.fs.pipe_file(full, data)

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
                elif not name.startswith("@") and self.fs.isdir(self.full_path(child)):
                    pending.append(child)
        return sorted(found)

    def makedirs(self, path: str) -> None:
        """Create ``path`` and its parents (no-op on object stores)."""
        with self._call("makedirs", path):
            self.fs.makedirs(self.full_path(path), exist_ok=True)

    def __repr__(self) -> str:
        return f"FileBackend({self._label!r})"
