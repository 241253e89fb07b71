"""Which versions a migration takes, and how each one gets to its destination.

Each selected key gets one action:

- ``move``: the version's files are copied byte for byte (server-side within one object
  store), verified against its manifest, and the version is re-pointed (same id and
  number: checkpoints follow it) before the source is deleted;
- ``copy``: the destination gets a new version in the same format and the source
  version stays (``delete_after_migration=False``, or a database tier on either side);
- ``convert``: the destination gets a new version in another format (``format=``, or
  the source format cannot live on the destination: PostGIS -> a file tier), or in the
  same format re-encoded (``reencode=True`` or ``format_options=``: the destination
  tier's compression, the options given).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from memories_geo.backends.base import Capability
from memories_geo.catalog.sqlite_migrations import MigrationItemRow
from memories_geo.formats.registry import get_format
from memories_geo.query import check_options

if TYPE_CHECKING:
    from memories_geo.entry import Entry
    from memories_geo.lifecycle.job import MigrationJob
    from memories_geo.versions import VersionStore

__all__ = ["ACTIONS", "PlannedKey", "plan_action", "select_keys"]

#: How a key gets to its destination (see the module docstring).
ACTIONS = ("move", "copy", "convert")


@dataclass(frozen=True)
class PlannedKey:
    """One selected version and how it migrates.

    ``target_format`` is empty when it depends on the object itself (the destination
    tier's default for its kind, e.g. COG or Zarr for a raster); it is decided, and
    recorded in the journal, when the key is converted.
    """

    entry: Entry
    action: str
    target_format: str

    def item_row(self, job_id: str, position: int) -> MigrationItemRow:
        """The journal row of this key."""
        e = self.entry
        return MigrationItemRow(job_id, position, e.key, e.version_id, e.size_bytes, self.action, e.format,
                                self.target_format)


def _can_hold(format_name: str, capabilities: frozenset[Capability]) -> bool:
    """Whether a format is stored on backends with these capabilities (by where it is a default)."""
    return any(cap in capabilities for _, cap in get_format(format_name).default_for)


def plan_action(store: VersionStore, entry: Entry, job: MigrationJob) -> PlannedKey:
    """Decide how ``entry`` reaches ``job.destination_tier``: move, copy or convert."""
    dest = job.destination_tier
    if job.format is not None and job.format != entry.format:
        return PlannedKey(entry, "convert", job.format)
    source_caps = store.tiers.backend(entry.tier).capabilities
    dest_caps = store.tiers.backend(dest).capabilities
    if Capability.FILES in source_caps and Capability.FILES in dest_caps:
        if job.reencode:
            return PlannedKey(entry, "convert", entry.format)
        return PlannedKey(entry, "move" if job.delete_after_migration else "copy", entry.format)
    configured = store.tiers.tier_config(dest).formats.get(entry.kind)
    if configured:
        target = configured
    elif _can_hold(entry.format, dest_caps):
        target = entry.format
    else:
        target = ""
    same = target == entry.format and not job.reencode
    return PlannedKey(entry, "copy" if same else "convert", target)


def select_keys(store: VersionStore, job: MigrationJob, *, now: datetime | None = None) -> list[PlannedKey]:
    """The current versions on the job's source tier that meet its criteria, by key, with their actions.

    Relative times in the criteria (``"30 days ago"``) count back from ``now``
    (default: the current time).

    Examples
    --------
    >>> job = MigrationJob(source_tier="hot", destination_tier="warm")  # doctest: +SKIP
    >>> [p.entry.key for p in select_keys(store, job)]  # doctest: +SKIP
    ['era5/t2m', 'fields']
    """
    now = now or datetime.now(UTC)
    selection = job.selection
    found: Sequence[Entry] = store.catalog.search(
        tier=job.source_tier, kind=list(selection.kinds) or None,
        key=selection.key[0] if len(selection.key) == 1 else None,
    )
    planned = [plan_action(store, e, job) for e in found if selection.matches(e, now)]
    for target in sorted({p.target_format for p in planned if p.target_format}):
        check_options(job.format_options, get_format(target).write_options,
                      f"format_options of a migration to {target!r}")
    return planned
