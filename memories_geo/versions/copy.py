"""Copying a stored version to another tier as the key's new version, byte for byte.

The copy goes through the commit protocol like a save (stage -> write -> verify ->
record -> commit), except that the bytes are copied instead of encoded: streamed (or
copied server-side within one object store), checked against the source version's
manifest, and committed with the source's footprint, metadata and manifest (a
one-file version's manifest names the file by its new version id). The source
version stays as it is, one version older.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import pandas as pd

from memories_geo.backends.base import Capability, Location, require
from memories_geo.footprint import Footprint
from memories_geo.formats.base import WriteResult
from memories_geo.formats.registry import get_format
from memories_geo.integrity import raise_for_problems
from memories_geo.keys import VERSIONS_DIR, new_id
from memories_geo.versions.archive import check_lockable
from memories_geo.versions.commit import Commit
from memories_geo.versions.move import copy_problems, copy_version_files

if TYPE_CHECKING:
    from memories_geo.entry import Entry
    from memories_geo.versions import VersionStore

__all__ = ["copy_version", "entry_footprint"]

logger = logging.getLogger(__name__)


def entry_footprint(entry: Entry) -> Footprint:
    """The footprint a version was committed with, rebuilt from its catalog entry."""
    return Footprint(
        bbox=entry.bbox, native_bbox=entry.native_bbox, crs=entry.crs,
        time_start=pd.Timestamp(entry.time_start) if entry.time_start else None,
        time_end=pd.Timestamp(entry.time_end) if entry.time_end else None,
        variables=tuple(entry.variables), shape=dict(entry.shape),
    )


def copy_version(
    store: VersionStore, entry: Entry, tier: str, *, version_id: str | None = None,
    on_bytes: Callable[[int], object] | None = None,
) -> Entry:
    """Copy ``entry``'s files to ``tier`` as a new version of its key; return that version.

    Parameters
    ----------
    store : VersionStore
        The collection's version store.
    entry : Entry
        The version to copy (stays where it is).
    tier : str
        Destination tier (a file tier).
    version_id : str, optional
        Id of the new version (a caller that journals it before copying passes it).
    on_bytes : callable, optional
        Called with the number of bytes of each file copied.

    Raises
    ------
    ReadOnlyError
        The collection is read-only.
    TierUnavailableError
        Either tier does not hold files, or cannot be reached.
    ChecksumMismatchError
        The copy does not match the source's manifest (nothing is committed).

    Examples
    --------
    >>> copy = copy_version(mem.version_store, mem.info("era5"), "cold")  # doctest: +SKIP
    >>> copy.version, copy.tier  # doctest: +SKIP
    (2, 'cold')
    """
    store.check_writable(f"copying {entry.key!r}")
    source = store.location(entry)
    backend = store.tiers.backend(tier)
    require(source.backend, Capability.FILES, f"copying {entry.key!r} byte for byte from tier {entry.tier!r}")
    require(backend, Capability.FILES, f"copying {entry.key!r} byte for byte to tier {tier!r}")
    require(backend, Capability.WRITES, f"copying {entry.key!r} to tier {tier!r}")
    check_lockable(store, tier)
    version_id = version_id or new_id()
    suffix = posixpath.basename(entry.path)[len(entry.version_id):]
    dest = Location(backend, posixpath.join(entry.key, VERSIONS_DIR, version_id + suffix))
    staged = store.catalog.stage(
        key=entry.key, version_id=version_id, tier=tier, format=entry.format, kind=entry.kind,
        path=dest.path, uri=dest.url, storage_class=store.tiers.tier_config(tier).storage_class,
    )
    commit = Commit(store, get_format(entry.format), dest, staged, dict(entry.attrs), tuple(entry.tags),
                    exclusive=False)
    stored = store.catalog.manifest(entry)
    manifest = replace(stored.materialized(), stat=None)
    try:
        files = copy_version_files(source, dest, stored, on_bytes=on_bytes)
        raise_for_problems(f"the copy of {entry.key} v{entry.version} to tier {tier!r}",
                           copy_problems(dest, manifest, files))
    except BaseException as exc:
        commit.fail(exc)
    name = posixpath.basename(entry.path)
    if list(manifest.files) == [name]:
        manifest = replace(manifest, files={posixpath.basename(dest.path): manifest.files[name]})
    copied = commit(WriteResult(manifest=manifest, footprint=entry_footprint(entry),
                                object_info=entry.object_info))
    logger.info("copied %s v%d from %s to %s as v%d (%d bytes)", entry.key, entry.version, entry.tier, tier,
                copied.version, copied.size_bytes)
    return copied
