"""Tier policies on stored versions: storage classes, archive restores and retention.

After a version's bytes are written, :func:`apply_tier_policies` gives every object the
tier's storage class and, on a tier under retention, an Object Lock until the period
ends. Opening a version whose objects sit in an archive class raises
:class:`~memories_geo.errors.RestoreRequiredError` naming the call to make
(:func:`request_restore`); :func:`restore_status` follows the restore, and the catalog
keeps what it last saw. :func:`check_deletable` refuses to delete (or move away) a
version whose retention period has not ended.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from memories_geo.backends.base import Capability
from memories_geo.errors import RestoreRequiredError, RetentionError
from memories_geo.storage_policy import needs_restore

if TYPE_CHECKING:
    from memories_geo.backends.base import Location
    from memories_geo.entry import Entry
    from memories_geo.versions import VersionStore

__all__ = [
    "RestoreStatus",
    "apply_tier_policies",
    "check_deletable",
    "check_lockable",
    "check_readable",
    "raise_if_archived",
    "request_restore",
    "restore_status",
]

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class RestoreStatus:
    """Where a version stands: ``online``, ``archived``, ``restoring`` or ``restored`` (until a time)."""

    key: str
    version: int
    tier: str
    state: str
    requested_at: str | None = None
    until: str | None = None

    @property
    def readable(self) -> bool:
        """Whether ``open`` works now."""
        return self.state in ("online", "restored")

    def __str__(self) -> str:
        until = f" until {self.until}" if self.until else ""
        asked = f", requested {self.requested_at}" if self.requested_at else ""
        return f"{self.key} v{self.version} on {self.tier}: {self.state}{until}{asked}"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else str(value)


def apply_tier_policies(store: VersionStore, location: Location, tier: str) -> None:
    """Give a freshly written version its tier's storage class and retention lock."""
    backend = location.backend
    config = store.tiers.tier_config(tier)
    if config.storage_class and Capability.STORAGE_CLASSES in backend.capabilities:
        backend.apply_storage_class(location.path)  # type: ignore[attr-defined]
    if config.retention is not None and Capability.OBJECT_LOCK in backend.capabilities:
        backend.apply_retention(  # type: ignore[attr-defined]
            location.path, _now() + config.retention.period, mode=config.retention.mode
        )


def check_lockable(store: VersionStore, tier: str) -> None:
    """Before writing on a tier under retention, check that its store can lock objects."""
    backend = store.tiers.backend(tier)
    if store.tiers.tier_config(tier).retention is not None and Capability.OBJECT_LOCK in backend.capabilities:
        backend.check_object_lock()  # type: ignore[attr-defined]


def _archived_tier(store: VersionStore, entry: Entry) -> bool:
    return needs_restore(store.tiers.tier_config(entry.tier).storage_class)


def _status(store: VersionStore, entry: Entry) -> RestoreStatus:
    backend = store.tiers.backend(entry.tier)
    found = backend.archive_state(entry.path)  # type: ignore[attr-defined]
    record = store.catalog.record_restore(entry.version_id, found.state, until=_iso(found.until))
    return RestoreStatus(entry.key, entry.version, entry.tier, found.state, record.requested_at,
                         _iso(found.until))


def _refusal(status: RestoreStatus) -> RestoreRequiredError:
    doing = "is being restored" if status.state == "restoring" else "is archived"
    return RestoreRequiredError(
        f"{status.key!r} v{status.version} {doing} on tier {status.tier!r}; "
        + ("wait until mg.restore_status(" if status.state == "restoring"
           else "call mg.request_restore(") + f"{status.key!r}" + (
            ") says restored" if status.state == "restoring" else ", days=7), then open it once "
            f"mg.restore_status({status.key!r}) says restored")
    )


def check_readable(store: VersionStore, entry: Entry) -> None:
    """Raise :class:`RestoreRequiredError` before opening a version stored in an archive class."""
    backend = store.tiers.backend(entry.tier)
    if Capability.RESTORE not in backend.capabilities or not _archived_tier(store, entry):
        return
    status = _status(store, entry)
    if not status.readable:
        raise _refusal(status)


def raise_if_archived(store: VersionStore, entry: Entry, exc: BaseException) -> None:
    """After a read was refused, raise :class:`RestoreRequiredError` if the objects are archived."""
    backend = store.tiers.backend(entry.tier)
    if Capability.RESTORE not in backend.capabilities:
        return
    try:
        status = _status(store, entry)
    except Exception:  # the read error is the one to report
        return
    if not status.readable:
        raise _refusal(status) from exc


def request_restore(
    store: VersionStore, entry: Entry, *, days: int = 7, tier: str | None = None
) -> RestoreStatus:
    """Ask the store to restore an archived version for ``days``; return its status."""
    store.check_writable(f"restoring {entry.key!r} from the archive")
    backend = store.tiers.backend(entry.tier)
    if Capability.RESTORE not in backend.capabilities:
        return RestoreStatus(entry.key, entry.version, entry.tier, "online")
    tier = tier or store.tiers.tier_config(entry.tier).restore_tier or "standard"
    backend.request_restore(entry.path, days=days, tier=tier)  # type: ignore[attr-defined]
    found = backend.archive_state(entry.path)  # type: ignore[attr-defined]
    record = store.catalog.record_restore(entry.version_id, found.state, requested=True, days=days,
                                          restore_tier=tier, until=_iso(found.until))
    logger.info("restore of %s v%d requested (%d days, %s): %s", entry.key, entry.version, days, tier,
                found.state)
    return RestoreStatus(entry.key, entry.version, entry.tier, found.state, record.requested_at,
                         _iso(found.until))


def restore_status(store: VersionStore, entry: Entry) -> RestoreStatus:
    """The archive state of a version, as the store reports it now (kept in the catalog)."""
    backend = store.tiers.backend(entry.tier)
    if Capability.RESTORE not in backend.capabilities:
        return RestoreStatus(entry.key, entry.version, entry.tier, "online")
    return _status(store, entry)


def check_deletable(store: VersionStore, entries: Sequence[Entry], doing: str) -> None:
    """Raise :class:`RetentionError` if any of ``entries`` is still under its tier's retention."""
    now = _now()
    held = []
    for entry in entries:
        retention = store.tiers.tier_config(entry.tier).retention
        if retention is None:
            continue
        period = retention.period
        created = datetime.fromisoformat(entry.created_at or "")
        created = created if created.tzinfo else created.replace(tzinfo=UTC)
        if created + period > now:
            held.append(f"{entry.key} v{entry.version} (until {(created + period).date().isoformat()})")
    if held:
        raise RetentionError(f"{doing} refused: under retention on its tier: {', '.join(held)}")
