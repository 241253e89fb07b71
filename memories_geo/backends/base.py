"""Backend protocol, locations, and the one normaliser from a URL to a backend."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable
from urllib.parse import urlsplit

from memories_geo.errors import ConfigError, TierUnavailableError

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = ["Backend", "Location", "make_backend", "redact_url"]


@runtime_checkable
class Backend(Protocol):
    """Where bytes live: a root URL plus capability flags, checked on every write."""

    url: str
    supports_writes: ClassVar[bool]
    supports_listing: ClassVar[bool]
    is_database: ClassVar[bool]

    @property
    def fs(self) -> AbstractFileSystem:
        """The fsspec filesystem (file backends only)."""
        ...

    def full_path(self, path: str) -> str:
        """Path of ``path`` (relative to the root) on :attr:`fs`."""
        ...

    def url_for(self, path: str) -> str:
        """Display URL of ``path``, credentials removed."""
        ...

    def exists(self, path: str) -> bool:
        """Whether anything is stored at ``path``."""
        ...

    def remove(self, path: str) -> None:
        """Delete ``path`` recursively; missing is fine."""
        ...

    def listdir(self, path: str) -> list[str]:
        """Names directly under ``path`` (empty if missing)."""
        ...


@dataclass(frozen=True)
class Location:
    """A place inside a backend: the backend plus a path relative to its root."""

    backend: Backend
    path: str

    @property
    def fs(self) -> AbstractFileSystem:
        """Filesystem of the backend."""
        return self.backend.fs

    @property
    def full_path(self) -> str:
        """Path on :attr:`fs`."""
        return self.backend.full_path(self.path)

    @property
    def url(self) -> str:
        """Display URL (no credentials)."""
        return self.backend.url_for(self.path)

    @property
    def storage_options(self) -> Mapping[str, Any]:
        """Options for fsspec-aware writers."""
        return getattr(self.backend, "storage_options", {})

    @property
    def is_local(self) -> bool:
        """Whether the location is a local directory (writers may use fast local paths)."""
        return getattr(self.backend, "protocol", "") == "file"


_FILES = "memories_geo.backends.files:FileBackend"
_POSTGRES = "memories_geo.backends.postgres:PostgresBackend"
_POSTGRES_HINT = "Install psycopg and psycopg-pool: pip install memories-geo[postgis]"

#: URL scheme -> backend class path, modules it needs, install hint (like fsspec's registry).
BACKENDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "file": (_FILES, (), ""),
    "memory": (_FILES, (), ""),
    "s3": (_FILES, ("s3fs",), "Install s3fs: pip install memories-geo[s3]"),
    "gs": (_FILES, ("gcsfs",), "Install gcsfs: pip install memories-geo[gcs]"),
    "gcs": (_FILES, ("gcsfs",), "Install gcsfs: pip install memories-geo[gcs]"),
    "az": (_FILES, ("adlfs",), "Install adlfs: pip install memories-geo[azure]"),
    "abfs": (_FILES, ("adlfs",), "Install adlfs: pip install memories-geo[azure]"),
    "postgresql": (_POSTGRES, ("psycopg", "psycopg_pool"), _POSTGRES_HINT),
    "postgres": (_POSTGRES, ("psycopg", "psycopg_pool"), _POSTGRES_HINT),
}


def make_backend(url: str, storage_options: Mapping[str, Any] | None = None) -> Backend:
    """Turn a tier URL and its ``storage_options`` into a backend.

    Raises
    ------
    ConfigError
        For a scheme no backend handles.
    TierUnavailableError
        When the backend's package is not installed.
    """
    scheme = urlsplit(url).scheme or "file"
    entry = BACKENDS.get(scheme)
    if entry is None:
        raise ConfigError(
            f"no backend for URL scheme {scheme!r} in {redact_url(url)!r}; "
            f"supported: {sorted(BACKENDS)}."
        )
    cls_path, requires, hint = entry
    missing = [m for m in requires if importlib.util.find_spec(m) is None]
    if missing:
        raise TierUnavailableError(f"{redact_url(url)!r} needs {', '.join(missing)}. {hint}")
    module_name, _, attr = cls_path.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    return cls(url, storage_options=dict(storage_options or {}))


def redact_url(url: str) -> str:
    """Remove the password (and any query string) from a URL before showing it."""
    parts = urlsplit(url)
    if parts.password is None and not parts.query:
        return url
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}:***@{netloc}"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return parts._replace(netloc=netloc, query="").geturl()
