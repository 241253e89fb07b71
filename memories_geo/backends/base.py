"""The backend protocol: where bytes live, what a backend can do, and places inside it.

Callers ask a backend's :attr:`Backend.capabilities`, never its type (as zarr stores
declare ``supports_writes``). Every backend implements :class:`Backend`; one with
``Capability.FILES`` also implements :class:`FileStore` (an fsspec filesystem), one with
``Capability.TABLES`` also :class:`TableStore` (database tables); one with
``Capability.STORAGE_CLASSES``, ``RESTORE`` or ``OBJECT_LOCK`` also :class:`ArchiveStore`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from memories_geo.config import redact_url
from memories_geo.errors import TierUnavailableError

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from memories_geo.operations import ReadTally

__all__ = [
    "ArchiveState", "ArchiveStore", "Backend", "Capability", "FileStore", "Location", "TableStore",
    "redact_url", "require",
]


class Capability(StrEnum):
    """What a backend can do; declared in ``Backend.capabilities``.

    Attributes
    ----------
    WRITES
        New versions can be written.
    LISTING
        Stored versions can be listed (orphan recovery, catalog rebuilds).
    FILES
        Bytes are files on an fsspec filesystem (:class:`FileStore`).
    TABLES
        Data lives in database tables (:class:`TableStore`).
    ATOMIC_RENAME
        A rename is atomic (local file systems).
    SERVER_SIDE_COPY
        Copies inside the store do not pass through the client.
    STORAGE_CLASSES
        Objects can be given a storage class or access tier
        (:meth:`ArchiveStore.apply_storage_class`, :meth:`ArchiveStore.storage_classes`).
    RESTORE
        Archived objects must be restored before they can be read
        (:meth:`ArchiveStore.archive_state`, :meth:`ArchiveStore.request_restore`).
    OBJECT_LOCK
        Objects can be locked against deletion (WORM retention:
        :meth:`ArchiveStore.apply_retention`, :meth:`ArchiveStore.check_object_lock`).
    POSTGRESQL
        Tables in PostgreSQL (the PostGIS and TimescaleDB formats need it).
    SPATIALITE
        Tables in a SQLite database with SpatiaLite (the SpatiaLite format needs it).
    """

    WRITES = "writes"
    LISTING = "listing"
    FILES = "files"
    TABLES = "tables"
    ATOMIC_RENAME = "atomic_rename"
    SERVER_SIDE_COPY = "server_side_copy"
    STORAGE_CLASSES = "storage_classes"
    RESTORE = "restore"
    OBJECT_LOCK = "object_lock"
    POSTGRESQL = "postgresql"
    SPATIALITE = "spatialite"


@runtime_checkable
class Backend(Protocol):
    """Where bytes live: a root URL, declared capabilities, and the calls every caller may use.

    Paths are relative to the root and never escape it. A version is stored at a
    logical path ``{key}/@v/{version_id}{ext}``; small objects (version records,
    checkpoint manifests) are stored with :meth:`write_bytes` on every backend.
    """

    url: str

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What this backend can do."""
        ...

    def url_for(self, path: str) -> str:
        """Display URL of ``path``, credentials removed."""
        ...

    def exists(self, path: str) -> bool:
        """Whether anything is stored at ``path``."""
        ...

    def remove(self, path: str) -> None:
        """Delete whatever is stored at ``path`` (recursively); missing is fine."""
        ...

    def listdir(self, path: str) -> list[str]:
        """Names directly under ``path`` (empty if missing)."""
        ...

    def write_bytes(self, path: str, data: bytes) -> None:
        """Store a small object at ``path``, replacing any."""
        ...

    def read_bytes(self, path: str) -> bytes:
        """Read the small object at ``path``.

        Raises
        ------
        FileNotFoundError
            When nothing is stored there.
        """
        ...

    def version_paths(self) -> list[str]:
        """Logical paths of every version stored on this backend (``{key}/@v/{id}{ext}``)."""
        ...


@runtime_checkable
class FileStore(Backend, Protocol):
    """A backend with :attr:`Capability.FILES`: files under a root on an fsspec filesystem."""

    storage_options: Mapping[str, Any]

    @property
    def fs(self) -> AbstractFileSystem:
        """The fsspec filesystem."""
        ...

    @property
    def protocol(self) -> str:
        """First protocol name of :attr:`fs` (``"file"``, ``"s3"``...)."""
        ...

    def full_path(self, path: str) -> str:
        """Path of ``path`` on :attr:`fs`, refusing anything outside the root."""
        ...


@runtime_checkable
class TableStore(Backend, Protocol):
    """A backend with :attr:`Capability.TABLES`: versions stored as database tables.

    ``dialect`` names the SQL it speaks (``"postgresql"``, ``"sqlite"``), so a format can
    refuse a database it cannot write.
    """

    dialect: str

    def ensure_ready(self) -> None:
        """Create the backend's own tables of record if they are missing."""
        ...

    def table_for(self, path: str) -> str | None:
        """Physical table name of the version at logical ``path``, ``None`` if none."""
        ...


#: Archive states, least readable first.
_ORDER = ("archived", "restoring", "restored", "online")


@dataclass(frozen=True)
class ArchiveState:
    """Whether a version's objects can be read now.

    Attributes
    ----------
    state : str
        ``"online"`` (readable: not archived, or rehydrated for good on Azure),
        ``"archived"`` (a restore is needed), ``"restoring"`` (requested, not finished)
        or ``"restored"`` (S3: temporary readable copies exist, until ``until``).
    until : datetime or None
        When the restored copies expire (S3), else ``None``.

    Examples
    --------
    >>> ArchiveState.combine([ArchiveState("online"), ArchiveState("archived")]).state
    'archived'
    """

    state: Literal["online", "archived", "restoring", "restored"]
    until: datetime | None = None

    @property
    def readable(self) -> bool:
        """Whether the objects can be read now."""
        return self.state in ("online", "restored")

    @classmethod
    def combine(cls, states: Iterable[ArchiveState]) -> ArchiveState:
        """The state of a version from those of its objects: the least readable wins.

        Restored objects expire at the earliest of their ``until``.
        """
        found = list(states)
        if not found:
            return cls("online")
        worst = min(found, key=lambda s: _ORDER.index(s.state))
        if worst.state != "restored":
            return cls(worst.state)
        untils = [s.until for s in found if s.state == "restored" and s.until is not None]
        return cls("restored", min(untils) if untils else None)


@runtime_checkable
class ArchiveStore(Backend, Protocol):
    """A backend with ``storage_classes``, ``restore`` or ``object_lock`` (object stores).

    Paths are the logical paths of versions (``{key}/@v/{id}{ext}``); a version is every
    object under that path (or the one object at it). ``storage_class`` is the tier's
    class as the store spells it (``"GLACIER"``, ``"NEARLINE"``, ``"Cool"``), or ``None``.
    """

    storage_class: str | None

    def apply_storage_class(self, path: str) -> None:
        """Give every object of the version at ``path`` the tier's class (no-op without one)."""
        ...

    def storage_classes(self, path: str) -> dict[str, str]:
        """Relative file name (as in manifests) -> class as the store reports it."""
        ...

    def archive_state(self, path: str) -> ArchiveState:
        """Whether the version at ``path`` can be read now (``online`` where nothing is archived)."""
        ...

    def request_restore(self, path: str, *, days: int = 7, tier: str = "standard") -> ArchiveState:
        """Ask the store to restore the version's archived objects for ``days``; return the new state."""
        ...

    def apply_retention(self, path: str, until: datetime, *, mode: str) -> None:
        """Lock every object of the version until ``until`` (``mode``: governance or compliance)."""
        ...

    def check_object_lock(self) -> None:
        """Raise :class:`~memories_geo.errors.ConfigError` unless the store can lock objects."""
        ...

    def object_locks(self, path: str) -> dict[str, tuple[str, datetime] | None]:
        """Relative file name -> (mode, until) of its lock, ``None`` when it has none."""
        ...


def require(backend: Backend, capability: Capability, what: str) -> None:
    """Raise :class:`TierUnavailableError` unless ``backend`` has ``capability``.

    Examples
    --------
    >>> require(backend, Capability.WRITES, "saving")  # doctest: +SKIP
    """
    if capability not in backend.capabilities:
        raise TierUnavailableError(
            f"{what} needs a backend with {capability.value!r}; {backend.url_for('')!r} offers "
            f"{sorted(c.value for c in backend.capabilities)}"
        )


@dataclass(frozen=True)
class Location:
    """A place inside a backend: the backend plus a path relative to its root.

    ``reads`` counts the fetches a format can see while reading the version (Zarr
    chunks, Parquet row groups) for the collection's operation records.
    """

    backend: Backend
    path: str
    reads: ReadTally | None = field(default=None, compare=False, repr=False)

    @property
    def files(self) -> FileStore:
        """The backend as a :class:`FileStore` (formats stored as files call this).

        Raises
        ------
        TierUnavailableError
            When the backend does not store files.
        """
        require(self.backend, Capability.FILES, f"storing files at {self.url!r}")
        return self.backend  # type: ignore[return-value]

    @property
    def fs(self) -> AbstractFileSystem:
        """Filesystem of a file backend."""
        return self.files.fs

    @property
    def store_fs(self) -> AbstractFileSystem:
        """The filesystem of the store itself, never through a read cache (verification reads it)."""
        files = self.files
        return getattr(files, "remote_fs", files.fs)

    @property
    def full_path(self) -> str:
        """Path on :attr:`fs`."""
        return self.files.full_path(self.path)

    @property
    def url(self) -> str:
        """Display URL (no credentials)."""
        return self.backend.url_for(self.path)

    @property
    def storage_options(self) -> Mapping[str, Any]:
        """Options for fsspec-aware writers."""
        return self.files.storage_options

    @property
    def is_local(self) -> bool:
        """Whether the location is a local directory (writers may use fast local paths)."""
        return Capability.FILES in self.backend.capabilities and self.files.protocol == "file"
