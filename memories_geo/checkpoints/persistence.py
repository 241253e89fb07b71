"""Persistence around checkpoints: a backup store, automatic checkpoints, and their metrics."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import asdict, dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memories_geo.awaitable import awaitable_when_in_loop
from memories_geo.backends.base import Backend, Capability, require
from memories_geo.backends.registry import make_backend
from memories_geo.checkpoints.manager import CheckpointManager
from memories_geo.periodic import PeriodicTask
from memories_geo.versions import VersionStore, open_version_store

if TYPE_CHECKING:
    from memories_geo.checkpoints.info import CheckpointInfo, CheckpointList

__all__ = [
    "AutoPersistence", "MemoryPersistence", "PersistenceMetrics", "PersistenceMonitor", "parse_interval",
]

_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_interval(interval: str | float | timedelta) -> float:
    """Seconds in ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"``, a number of seconds or a timedelta.

    Raises
    ------
    ValueError
        For anything else, or a non-positive interval.
    """
    if isinstance(interval, timedelta):
        seconds = interval.total_seconds()
    elif isinstance(interval, int | float):
        seconds = float(interval)
    else:
        match = _INTERVAL.match(str(interval))
        if not match:
            raise ValueError(f"interval must look like '30s', '5m', '1h' or '1d', got {interval!r}")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"interval must be positive, got {interval!r}")
    return seconds


def as_backup_backend(storage: Any, storage_options: dict[str, Any] | None = None) -> Backend | None:
    """A backup store from a directory, a URL or a backend (``None`` stays ``None``).

    Raises
    ------
    TierUnavailableError
        When the backend does not store files.
    """
    if storage is None or isinstance(storage, Backend):
        return storage
    if isinstance(storage, str | os.PathLike) and "://" not in str(storage):
        path = Path(storage).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        storage = path.as_uri()
    backend = make_backend(str(storage), storage_options)
    require(backend, Capability.FILES, "a backup store (a directory, s3://, gs:// or az://)")
    return backend


class MemoryPersistence:
    """A collection plus an optional backup store that receives every checkpoint.

    Parameters
    ----------
    primary_storage : Memory, VersionStore, StorageConfig, str or None
        The collection (``None``: the default one; a path or TOML file: opened).
    backup_storage : str, path or Backend, optional
        Where checkpoints are copied: a directory, or an ``s3://``/``gs://``/``az://`` URL.
    backup_storage_options : dict, optional
        fsspec options for the backup store.

    Examples
    --------
    >>> persistence = mg.MemoryPersistence(mem, backup_storage="/mnt/backup")  # doctest: +SKIP
    >>> persistence.checkpoints.save("nightly")  # doctest: +SKIP
    """

    def __init__(
        self,
        primary_storage: Any = None,
        backup_storage: str | os.PathLike[str] | Backend | None = None,
        *,
        backup_storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.versions = open_version_store(primary_storage)
        self.backup = as_backup_backend(backup_storage, backup_storage_options)

    @property
    def version_store(self) -> VersionStore:
        """The collection's versions (so a persistence wrapper names a collection too)."""
        return self.versions

    @property
    def checkpoints(self) -> CheckpointManager:
        """Checkpoints that also copy their data to the backup store."""
        return CheckpointManager(self.versions, backup=self.backup)

    @awaitable_when_in_loop
    def save_checkpoint(self, name: str | None = None, **kwargs: Any) -> CheckpointInfo:
        """Shortcut for ``checkpoints.save``; awaitable when called from a running event loop.

        Outside an event loop it returns the :class:`CheckpointInfo`. Called from one
        (Jupyter, an async application), as the original API's
        ``await persistence.save_checkpoint(...)``, it runs in a worker thread and returns
        an awaitable :class:`~memories_geo.awaitable.Deferred`.
        """
        return self.checkpoints.save(name, **kwargs)

    @awaitable_when_in_loop
    def restore_checkpoint(self, ref: str = "latest", **kwargs: Any) -> CheckpointInfo:
        """Shortcut for ``checkpoints.restore``; awaitable from an event loop (as :meth:`save_checkpoint`)."""
        return self.checkpoints.restore(ref, **kwargs)

    @awaitable_when_in_loop
    def list_checkpoints(self) -> CheckpointList:
        """Shortcut for ``checkpoints.list``; awaitable from an event loop (as :meth:`save_checkpoint`)."""
        return self.checkpoints.list()

    def __repr__(self) -> str:
        return f"MemoryPersistence(catalog={self.versions.catalog.path!s}, backup={self.backup!r})"


class AutoPersistence(PeriodicTask):
    """Checkpoint a collection every ``interval`` in a background thread.

    Each tick takes an ``"auto"`` checkpoint (skipped when nothing changed since the
    newest one) and deletes all but the newest ``backup_count`` automatic checkpoints.
    A failing tick is counted and logged, and the next tick tries again.

    Parameters
    ----------
    interval : str, float or timedelta
        ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"`` or seconds.
    storage : Memory, MemoryPersistence or None
        What to checkpoint (a :class:`MemoryPersistence` also backs up).
    backup_count : int
        Automatic checkpoints kept.
    name : str
        Name given to the automatic checkpoints.

    Examples
    --------
    >>> auto = mg.AutoPersistence(interval="1h", storage=mem, backup_count=3)  # doctest: +SKIP
    >>> auto.start()  # doctest: +SKIP
    >>> auto.stop()  # doctest: +SKIP
    """

    thread_name = "memories-geo-auto"

    def __init__(
        self,
        interval: str | float | timedelta = "1h",
        storage: Any = None,
        backup_count: int = 3,
        *,
        name: str = "auto",
    ) -> None:
        if backup_count < 1:
            raise ValueError(f"backup_count must be at least 1, got {backup_count}")
        self.interval = parse_interval(interval)
        self.storage = storage if isinstance(storage, MemoryPersistence) else MemoryPersistence(storage)
        self.backup_count = backup_count
        self.name = name
        super().__init__()
        self.last_checkpoint: CheckpointInfo | None = None

    def run_once(self, *, raise_errors: bool = True) -> CheckpointInfo | None:
        """Take one automatic checkpoint now (and rotate); return it.

        With ``raise_errors=False`` (the background thread) a failure is counted,
        recorded in the audit log and returned as ``None``.
        """
        with self._lock:
            self.runs += 1
            manager = self.storage.checkpoints
            try:
                autos = [cp for cp in manager.list() if cp.kind == "auto"]
                if autos and not manager.diff(autos[0].id, "current"):
                    info = autos[0]
                else:
                    info = manager.save(self.name, kind="auto")
                manager.rotate(kind="auto", keep=self.backup_count)
            except Exception as exc:
                self.failures += 1
                self.last_error = exc
                with contextlib.suppress(Exception):
                    self.storage.versions.audit("checkpoint.save", outcome="error",
                                                detail=f"{type(exc).__name__}: {exc}")
                if raise_errors:
                    raise
                return None
            self.last_checkpoint = info
            return info

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return (f"AutoPersistence({state}, every {self.interval:g} s, keep {self.backup_count}, "
                f"runs={self.runs}, failures={self.failures})")


@dataclass(frozen=True)
class PersistenceMetrics:
    """Usage and checkpoint health of a collection, as attributes.

    Attributes
    ----------
    usage_gb : float
        All stored versions (retired included), in GiB (1024**3 bytes).
    usage_bytes : int
        The same, in bytes.
    keys, versions, checkpoints : int
        Current keys, stored versions, checkpoints.
    last_checkpoint_time, last_backup_time : str or None
        Newest checkpoint, and newest copied to a backup store (ISO 8601 UTC).
    success_rate : float or None
        Checkpoint saves that succeeded, in percent (``None`` before the first).
    failures : int
        Checkpoint saves that failed.
    """

    usage_gb: float
    usage_bytes: int
    keys: int
    versions: int
    checkpoints: int
    last_checkpoint_time: str | None
    last_backup_time: str | None
    success_rate: float | None
    failures: int

    def __getitem__(self, name: str) -> Any:
        """The attribute ``name`` (``metrics["usage_gb"]`` reads like ``metrics.usage_gb``)."""
        if name not in {f.name for f in fields(self)}:
            raise KeyError(name)
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        """Every figure, by name."""
        return asdict(self)


class PersistenceMonitor:
    """Usage and checkpoint health of a collection.

    Examples
    --------
    >>> mg.PersistenceMonitor(mem).get_metrics().success_rate  # doctest: +SKIP
    100.0
    """

    def __init__(self, storage: Any = None) -> None:
        self.versions = open_version_store(storage)

    def get_metrics(self) -> PersistenceMetrics:
        """Current figures (:class:`PersistenceMetrics`)."""
        catalog = self.versions.catalog
        versions = catalog.all_versions(include_retired=True)
        checkpoints = catalog.checkpoints()
        attempts = catalog.audit_rows(operation="checkpoint.save")
        ok = sum(1 for record in attempts if record["outcome"] == "ok")
        backed = [cp.created_at for cp in checkpoints if cp.backed_up]
        size = sum(v.size_bytes for v in versions)
        return PersistenceMetrics(
            usage_gb=size / 1024**3,
            usage_bytes=size,
            keys=len(catalog.current_entries()),
            versions=len(versions),
            checkpoints=len(checkpoints),
            last_checkpoint_time=checkpoints[0].created_at if checkpoints else None,
            last_backup_time=max(backed) if backed else None,
            success_rate=100.0 * ok / len(attempts) if attempts else None,
            failures=len(attempts) - ok,
        )
