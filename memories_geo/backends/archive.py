"""Storage classes, archive restores and Object Lock retention, per object store.

A :class:`~memories_geo.backends.files.FileBackend` hands these jobs to the
:class:`ObjectPolicies` of its store (:func:`policies_for`): S3 (s3fs), Google Cloud
Storage (gcsfs) and Azure Blob (adlfs) each set classes, read archive states and
request restores their own way; other file systems have none of it. A backend that
declares ``storage_classes``, ``restore`` or ``object_lock`` implements
:class:`~memories_geo.backends.base.ArchiveStore`.

How each store applies a tier's class to a version's objects:

- **S3**: a class readable at once (``STANDARD_IA``, ``GLACIER_IR``...) is sent with
  every upload (s3fs ``s3_additional_kwargs``), so nothing is left to do after the
  write. ``GLACIER`` and ``DEEP_ARCHIVE`` objects cannot be read back, so the version
  is written in ``STANDARD``, read back for its checksums, then moved into the class by
  an in-place server-side copy (the copied-over version is deleted on a versioned bucket).
- **GCS**: gcsfs sends no class with uploads; each object is rewritten in place
  (``objects.rewrite`` with ``storageClass``, inside the store).
- **Azure**: adlfs sends no access tier with uploads; each blob gets ``Set Blob Tier``.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import posixpath
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from memories_geo.backends.base import ArchiveState, Capability
from memories_geo.errors import ConfigError, OptionError, TierUnavailableError
from memories_geo.storage_policy import RETENTION_MODES, needs_restore

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = [
    "ArchiveState", "ObjectPolicies", "check_days", "check_lock_request", "policies_for",
    "relative", "s3_class_kwargs",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: Requests in flight at once when a call touches every object of a version.
CONCURRENCY = 16
#: Largest object S3 copies in one ``CopyObject`` request.
_S3_COPY_LIMIT = 5 * 2**30


def s3_class_kwargs(current: Mapping[str, Any], storage_class: str) -> dict[str, Any]:
    """``s3_additional_kwargs`` with ``StorageClass`` added (classes readable at once only).

    Raises
    ------
    ConfigError
        When ``current`` already sets a different class.

    Examples
    --------
    >>> s3_class_kwargs({"ServerSideEncryption": "AES256"}, "STANDARD_IA")
    {'ServerSideEncryption': 'AES256', 'StorageClass': 'STANDARD_IA'}
    """
    wanted = None if needs_restore(storage_class) else storage_class
    if "StorageClass" in current and current["StorageClass"] != wanted:
        raise ConfigError(
            f"storage_options['s3_additional_kwargs'] sets StorageClass={current['StorageClass']!r}, "
            f"but the tier's storage_class is {storage_class!r}; set it in one place (the tier's "
            "storage_class)"
        )
    return {**current, "StorageClass": wanted} if wanted else dict(current)


def _gather(fs: Any, calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run ``calls`` on the filesystem's event loop, :data:`CONCURRENCY` at a time."""
    if not calls:
        return []
    from fsspec.asyn import sync

    async def run_all() -> list[T]:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(call: Callable[[], Awaitable[T]]) -> T:
            async with gate:
                return await call()

        return list(await asyncio.gather(*(one(c) for c in calls)))

    return sync(fs.loop, run_all)


def relative(root: str, path: str) -> str:
    """Name of ``path`` inside the version at ``root``, as manifests name files.

    Examples
    --------
    >>> relative("b/k/@v/1.zarr", "b/k/@v/1.zarr/t2m/c/0"), relative("b/k/@v/1.tif", "b/k/@v/1.tif")
    ('t2m/c/0', '1.tif')
    """
    root = root.rstrip("/")
    return path[len(root) + 1 :] if path != root else posixpath.basename(path)


def check_days(days: Any) -> int:
    """Validate the ``days`` of a restore request: a whole number, at least 1.

    Examples
    --------
    >>> check_days(7)
    7
    """
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise OptionError(f"days must be a whole number of days, at least 1; got {days!r}")
    return days


def check_lock_request(until: Any, mode: Any) -> str:
    """Validate a lock's ``until`` (aware, in the future) and ``mode``; return the mode in lower case.

    Examples
    --------
    >>> from datetime import timedelta
    >>> check_lock_request(datetime.now(UTC) + timedelta(days=1), "COMPLIANCE")
    'compliance'
    """
    if not isinstance(until, datetime) or until.tzinfo is None:
        raise OptionError(f"until must be a timezone-aware datetime, got {until!r}")
    if until <= datetime.now(UTC):
        raise OptionError(f"until must be in the future, got {until.isoformat()}")
    if not isinstance(mode, str) or mode.lower() not in RETENTION_MODES:
        raise OptionError(f"mode must be one of {list(RETENTION_MODES)}, got {mode!r}")
    return mode.lower()


class ObjectPolicies:
    """What a store does about classes, restores and locks; this base: nothing (local, memory).

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
        The backend's filesystem.
    storage_class : str or None
        The tier's class, as :func:`~memories_geo.storage_policy.check_storage_class` spells it.
    label : str
        The tier's URL without credentials, for messages.
    """

    #: Capabilities this store adds to a file backend's.
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    #: Restore speeds: name users give -> name the store takes.
    restore_tiers: ClassVar[Mapping[str, str]] = {"standard": "standard"}

    def __init__(self, fs: AbstractFileSystem, storage_class: str | None, label: str) -> None:
        self.fs, self.storage_class, self.label = fs, storage_class, label

    def pipe(self, full: str, data: bytes) -> None:
        """Write a small object (a record or manifest), in the tier's class where it stays readable."""
        self.fs.pipe_file(full, data)

    def objects(self, full: str) -> dict[str, dict[str, Any]]:
        """Path -> listing details of every object of the version at ``full``."""
        found: dict[str, dict[str, Any]] = self.fs.find(full, detail=True)
        return {p: info for p, info in found.items() if info.get("type", "file") == "file"}

    def classes(self, full: str) -> dict[str, str]:
        """Path -> storage class of every object of the version at ``full``."""
        raise TierUnavailableError(f"{self.label!r} has no storage classes")

    def apply(self, full: str) -> None:
        """Give every object of the version at ``full`` the tier's class."""

    def state(self, full: str) -> ArchiveState:
        """The archive state of the version at ``full``."""
        return ArchiveState("online")

    def restore_tier(self, tier: str) -> str:
        """The store's name of restore speed ``tier``, or :class:`OptionError` naming the accepted ones."""
        if not isinstance(tier, str) or tier.lower() not in self.restore_tiers:
            raise OptionError(
                f"tier must be one of {sorted(self.restore_tiers)} on {self.label!r}, got {tier!r}"
            )
        return self.restore_tiers[tier.lower()]

    def restore(self, full: str, days: int, tier: str) -> None:
        """Ask the store to restore the archived objects of the version at ``full``."""
        self.restore_tier(tier)

    def check_lock(self, full: str) -> None:
        """Raise unless the bucket holding ``full`` can lock objects."""
        raise TierUnavailableError(f"{self.label!r} cannot lock objects (no Object Lock)")

    def lock(self, full: str, until: datetime, mode: str) -> None:
        """Lock every object of the version at ``full`` until ``until``."""
        self.check_lock(full)

    def locks(self, full: str) -> dict[str, tuple[str, datetime] | None]:
        """Path -> (mode, until) of each object's lock, ``None`` when unlocked."""
        self.check_lock(full)
        return {}


def _s3_code(exc: BaseException) -> str | None:
    """The S3 error code behind ``exc`` (s3fs keeps botocore's error as the cause)."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, Mapping):
            return str((response.get("Error") or {}).get("Code") or "") or None
        seen = seen.__cause__ or seen.__context__
    return None


def _s3_state(head: Mapping[str, Any]) -> ArchiveState:
    if not needs_restore(head.get("StorageClass")):
        return ArchiveState("online")
    restore = str(head.get("Restore") or "")
    if 'ongoing-request="true"' in restore:
        return ArchiveState("restoring")
    if 'ongoing-request="false"' in restore:
        expiry = restore.partition('expiry-date="')[2].partition('"')[0]
        return ArchiveState("restored", email.utils.parsedate_to_datetime(expiry) if expiry else None)
    return ArchiveState("archived")


class S3Policies(ObjectPolicies):
    """S3 through s3fs: ``StorageClass``, ``RestoreObject`` and Object Lock."""

    capabilities = frozenset({Capability.STORAGE_CLASSES, Capability.RESTORE, Capability.OBJECT_LOCK})
    restore_tiers = {"standard": "Standard", "bulk": "Bulk", "expedited": "Expedited"}

    def __init__(self, fs: AbstractFileSystem, storage_class: str | None, label: str) -> None:
        super().__init__(fs, storage_class, label)
        self._locked_buckets: set[str] = set()

    def classes(self, full: str) -> dict[str, str]:
        return {p: str(info.get("StorageClass") or "STANDARD") for p, info in self.objects(full).items()}

    def apply(self, full: str) -> None:
        if not self.storage_class:
            return
        wrong = {p: i for p, i in self.objects(full).items() if i.get("StorageClass") != self.storage_class}
        _gather(self.fs, [partial(self._transition, p, int(i.get("size") or 0)) for p, i in wrong.items()])

    async def _transition(self, path: str, size: int) -> None:
        fs: Any = self.fs
        bucket, key, _ = fs.split_path(path)
        if size <= _S3_COPY_LIMIT:
            out = await fs._call_s3(
                "copy_object", Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
                StorageClass=self.storage_class, MetadataDirective="COPY",
            )
            previous = out.get("CopySourceVersionId")
        else:
            previous = (await fs._call_s3("head_object", Bucket=bucket, Key=key)).get("VersionId")
            await fs._cp_file(path, path, StorageClass=self.storage_class)
        if previous and previous != "null":
            try:
                await fs._call_s3("delete_object", Bucket=bucket, Key=key, VersionId=previous)
            except PermissionError as exc:
                logger.warning("%s: the copy of %s before its class change is kept: %s",
                               self.label, path, exc)

    async def _head(self, path: str) -> dict[str, Any]:
        fs: Any = self.fs
        bucket, key, _ = fs.split_path(path)
        found: dict[str, Any] = await fs._call_s3("head_object", Bucket=bucket, Key=key)
        return found

    def _heads(self, paths: Sequence[str]) -> dict[str, dict[str, Any]]:
        found = _gather(self.fs, [partial(self._head, p) for p in paths])
        return dict(zip(paths, found, strict=True))

    def _archived(self, full: str) -> list[str]:
        return sorted(p for p, c in self.classes(full).items() if needs_restore(c))

    def state(self, full: str) -> ArchiveState:
        return ArchiveState.combine(_s3_state(h) for h in self._heads(self._archived(full)).values())

    def restore(self, full: str, days: int, tier: str) -> None:
        speed = self.restore_tier(tier)
        heads = self._heads(self._archived(full))
        if speed == "Expedited" and any(h.get("StorageClass") == "DEEP_ARCHIVE" for h in heads.values()):
            raise OptionError(
                "tier 'expedited' is not available for DEEP_ARCHIVE objects; use 'standard' or 'bulk'"
            )
        todo = [p for p, h in heads.items() if _s3_state(h).state != "restoring"]
        _gather(self.fs, [partial(self._restore_one, p, days, speed) for p in todo])

    async def _restore_one(self, path: str, days: int, speed: str) -> None:
        fs: Any = self.fs
        bucket, key, _ = fs.split_path(path)
        try:
            await fs._call_s3("restore_object", Bucket=bucket, Key=key,
                              RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": speed}})
        except OSError as exc:
            if _s3_code(exc) != "RestoreAlreadyInProgress":
                raise

    def check_lock(self, full: str) -> None:
        fs: Any = self.fs
        bucket = fs.split_path(full)[0]
        if bucket in self._locked_buckets:
            return
        try:
            found = fs.call_s3("get_object_lock_configuration", Bucket=bucket)
        except OSError as exc:
            if _s3_code(exc) != "ObjectLockConfigurationNotFoundError":
                raise
            found = {}
        if (found.get("ObjectLockConfiguration") or {}).get("ObjectLockEnabled") != "Enabled":
            raise ConfigError(
                f"tier {self.label!r} has a retention period, but bucket {bucket!r} does not have S3 Object "
                "Lock enabled, so its objects cannot be locked. Create the bucket with Object Lock "
                f"(aws s3api create-bucket --bucket {bucket} --object-lock-enabled-for-bucket), or enable "
                f"it on the versioned bucket (aws s3api put-object-lock-configuration --bucket {bucket} "
                "--object-lock-configuration ObjectLockEnabled=Enabled), or remove the tier's retention"
            )
        self._locked_buckets.add(bucket)

    def lock(self, full: str, until: datetime, mode: str) -> None:
        self.check_lock(full)
        retention = {"Mode": mode.upper(), "RetainUntilDate": until}
        _gather(self.fs, [partial(self._lock_one, p, retention) for p in self.objects(full)])

    async def _lock_one(self, path: str, retention: Mapping[str, Any]) -> None:
        fs: Any = self.fs
        bucket, key, _ = fs.split_path(path)
        await fs._call_s3("put_object_retention", Bucket=bucket, Key=key, Retention=dict(retention))

    def locks(self, full: str) -> dict[str, tuple[str, datetime] | None]:
        return {
            p: (str(h["ObjectLockMode"]).lower(), h["ObjectLockRetainUntilDate"])
            if h.get("ObjectLockMode") else None
            for p, h in self._heads(sorted(self.objects(full))).items()
        }


class GcsPolicies(ObjectPolicies):
    """Google Cloud Storage through gcsfs: classes set by rewriting objects in place.

    GCS ``ARCHIVE`` objects are readable at any time: there is nothing to restore.
    """

    capabilities = frozenset({Capability.STORAGE_CLASSES})

    def pipe(self, full: str, data: bytes) -> None:
        self.fs.pipe_file(full, data)
        if self.storage_class:
            _gather(self.fs, [partial(self._rewrite, full)])

    def classes(self, full: str) -> dict[str, str]:
        return {p: str(info.get("storageClass") or "STANDARD") for p, info in self.objects(full).items()}

    def apply(self, full: str) -> None:
        if not self.storage_class:
            return
        wrong = [p for p, c in self.classes(full).items() if c != self.storage_class]
        _gather(self.fs, [partial(self._rewrite, p) for p in wrong])

    async def _rewrite(self, path: str) -> None:
        fs: Any = self.fs
        bucket, key, _ = fs.split_path(path)
        route = "b/{}/o/{}/rewriteTo/b/{}/o/{}"
        body = {"storageClass": self.storage_class}
        out = await fs._call("POST", route, bucket, key, bucket, key, json=body, json_out=True)
        while not out.get("done", True):
            out = await fs._call("POST", route, bucket, key, bucket, key, json=body, json_out=True,
                                 rewriteToken=out["rewriteToken"])


class AzurePolicies(ObjectPolicies):
    """Azure Blob through adlfs' SDK client: access tiers and rehydration."""

    capabilities = frozenset({Capability.STORAGE_CLASSES, Capability.RESTORE})
    restore_tiers = {"standard": "Standard", "high": "High"}

    def pipe(self, full: str, data: bytes) -> None:
        if self.storage_class and not needs_restore(self.storage_class):
            from azure.storage.blob import StandardBlobTier

            self.fs.pipe_file(full, data, standard_blob_tier=StandardBlobTier(self.storage_class))
        else:
            self.fs.pipe_file(full, data)

    def _blobs(self, full: str) -> list[Any]:
        fs: Any = self.fs
        container, key, _ = fs.split_path(full)
        key = key.rstrip("/")

        async def listing() -> list[Any]:
            client = fs.service_client.get_container_client(container)
            return [b async for b in client.list_blobs(name_starts_with=key or None)
                    if not key or b.name == key or b.name.startswith(key + "/")]

        return _gather(fs, [listing])[0]

    def _path(self, full: str, blob: Any) -> str:
        fs: Any = self.fs
        return f"{fs.split_path(full)[0]}/{blob.name}"

    def classes(self, full: str) -> dict[str, str]:
        return {self._path(full, b): str(b.blob_tier or "") for b in self._blobs(full)}

    async def _set_tier(self, container: str, name: str, tier: str, priority: str | None = None) -> None:
        fs: Any = self.fs
        async with fs.service_client.get_blob_client(container=container, blob=name) as client:
            await client.set_standard_blob_tier(tier, rehydrate_priority=priority)

    def apply(self, full: str) -> None:
        if not self.storage_class:
            return
        fs: Any = self.fs
        container = fs.split_path(full)[0]
        wrong = [b.name for b in self._blobs(full) if b.blob_tier != self.storage_class]
        _gather(fs, [partial(self._set_tier, container, name, self.storage_class) for name in wrong])

    def _blob_state(self, blob: Any) -> ArchiveState:
        """Archived, being rehydrated, or online (a rehydrated blob stays in its new tier)."""
        if blob.blob_tier != "Archive":
            return ArchiveState("online")
        pending = str(blob.archive_status or "").startswith("rehydrate-pending")
        return ArchiveState("restoring" if pending else "archived")

    def state(self, full: str) -> ArchiveState:
        return ArchiveState.combine(self._blob_state(b) for b in self._blobs(full))

    def restore(self, full: str, days: int, tier: str) -> None:
        priority = self.restore_tier(tier)
        fs: Any = self.fs
        container = fs.split_path(full)[0]
        todo = [b.name for b in self._blobs(full) if self._blob_state(b).state == "archived"]
        _gather(fs, [partial(self._set_tier, container, name, "Hot", priority) for name in todo])


_POLICIES: dict[str, type[ObjectPolicies]] = {
    **dict.fromkeys(("s3", "s3a"), S3Policies),
    **dict.fromkeys(("gs", "gcs"), GcsPolicies),
    **dict.fromkeys(("az", "abfs", "abfss"), AzurePolicies),
}


def policies_for(
    protocol: str, fs: AbstractFileSystem, storage_class: str | None, label: str
) -> ObjectPolicies:
    """The :class:`ObjectPolicies` of a filesystem protocol (the base class for stores without any).

    Examples
    --------
    >>> import fsspec
    >>> policies_for("memory", fsspec.filesystem("memory"), None, "memory://x").capabilities
    frozenset()
    """
    return _POLICIES.get(protocol, ObjectPolicies)(fs, storage_class, label)

