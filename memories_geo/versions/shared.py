"""Deleting versions whose files other versions share, and keeping shared files from recovery.

A Zarr append on an object store shares the previous version's unchanged chunk files
instead of copying them (the new version's manifest lists the folder holding each one,
``Manifest.shared``). Removing a version's data therefore keeps the files a live
version of its key still reads, and the last version to read a file left behind by a
removed one takes it away with it. Recovery counts such folders as owned.
"""

from __future__ import annotations

import logging
import posixpath
from typing import TYPE_CHECKING, Any

from memories_geo.backends.base import Capability
from memories_geo.errors import MemoriesError
from memories_geo.integrity import SHARES_FILES, Manifest
from memories_geo.records import read_record_manifest, record_path

if TYPE_CHECKING:
    from memories_geo.backends.base import Location
    from memories_geo.formats.base import Format

__all__ = ["remove_version_data", "shared_owner_paths"]

logger = logging.getLogger(__name__)


def _sharing(store: Any, key: str | None = None) -> list[tuple[str, str, Manifest]]:
    """``(tier, path, manifest)`` of the catalog's versions (committed or retired) sharing files."""
    found = []
    for entry in store.catalog.all_versions(include_retired=True):
        if (key is None or entry.key == key) and entry.object_info.get(SHARES_FILES):
            manifest = store.catalog.manifest(entry)
            if manifest.shared:
                found.append((entry.tier, entry.path, manifest))
    return found


def shared_owner_paths(store: Any) -> set[tuple[str, str]]:
    """``(tier, path)`` of every version folder holding files a catalog version shares.

    Examples
    --------
    >>> shared_owner_paths(mem.version_store)  # doctest: +SKIP
    {('warm', 'cube/@v/20261130T101500Z-1a2b.zarr')}
    """
    return {
        (tier, posixpath.join(posixpath.dirname(path), owner))
        for tier, path, manifest in _sharing(store)
        for owner in manifest.owners
    }


def _tier_of(store: Any, location: Location) -> str | None:
    root = location.backend.url_for("")
    for name in store.tiers.names:
        try:
            backend = store.tiers.backend(name)
        except MemoriesError:
            continue
        if backend is location.backend or backend.url_for("") == root:
            return str(name)
    return None


def remove_version_data(store: Any, fmt: Format | None, location: Location) -> None:
    """Delete a version's data and record, keeping the files live versions share from it.

    On a tier without shared files this is ``fmt.delete`` (removing the version's
    files or folder when ``fmt`` is ``None``) and the record's removal.
    Otherwise the files another version of the key (committed or retired) reads from
    this folder stay, and the files this version read from a folder whose version is
    gone are deleted once no other version reads them.

    Examples
    --------
    >>> remove_version_data(mem.version_store, get_format("zarr"), location)  # doctest: +SKIP
    """
    files = Capability.FILES in location.backend.capabilities and not location.is_local
    tier = _tier_of(store, location) if files else None
    if tier is None:
        _delete(fmt, location)
        location.backend.remove(record_path(location.path))
        return
    try:
        manifest = read_record_manifest(location.backend, location.path)
    except (ValueError, KeyError, TypeError):
        manifest = None
    key = location.path.rsplit("/@v/", 1)[0]
    others = [(path, m) for t, path, m in _sharing(store, key) if t == tier and path != location.path]
    name = posixpath.basename(location.path.rstrip("/"))
    kept = {rel for _, m in others for rel, owner in m.shared.items() if owner == name}
    if kept:
        _remove_files_except(location, kept)
        logger.info("%s: kept %d file(s) later versions share", location.url, len(kept))
    else:
        _delete(fmt, location)
    location.backend.remove(record_path(location.path))
    if manifest is None or not manifest.shared:
        return
    stored = store.catalog.stored_paths()
    for owner in manifest.owners:
        owner_path = posixpath.join(posixpath.dirname(location.path), owner)
        if (tier, owner_path) in stored:
            continue
        still = {rel for _, m in others for rel, o in m.shared.items() if o == owner}
        if not still:
            location.backend.remove(owner_path)
            continue
        doomed = [rel for rel, o in manifest.shared.items() if o == owner and rel not in still]
        root = location.backend.full_path(owner_path)  # type: ignore[attr-defined]
        if doomed:
            location.fs.rm([posixpath.join(root, rel) for rel in doomed])


def _delete(fmt: Format | None, location: Location) -> None:
    if fmt is None:
        location.backend.remove(location.path)
    else:
        fmt.delete(location)


def _remove_files_except(location: Location, kept: set[str]) -> None:
    fs, root = location.fs, location.full_path.rstrip("/")
    try:
        listed = fs.find(root)
    except FileNotFoundError:
        return
    doomed = [path for path in listed if posixpath.relpath(path, root) not in kept]
    if doomed:
        fs.rm(doomed)
