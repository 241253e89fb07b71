"""Recovery: remove what no committed version owns, finish what crashed writers left."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from memories_geo.backends.base import Capability
from memories_geo.config import redact_text
from memories_geo.errors import TierUnavailableError
from memories_geo.formats.registry import get_format
from memories_geo.records import record_path
from memories_geo.versions.fanout import is_abandoned
from memories_geo.versions.orphans import STAGED_GRACE, staged_writer_gone, writer_gone
from memories_geo.versions.shared import shared_owner_paths

if TYPE_CHECKING:
    from memories_geo.versions import VersionStore

__all__ = ["recover_orphans"]

logger = logging.getLogger(__name__)


def recover_orphans(store: VersionStore, *, grace: timedelta = STAGED_GRACE) -> list[str]:
    """Remove what no committed version owns, and re-publish views that lag the catalog.

    See :meth:`memories_geo.versions.VersionStore.recover_orphans`.

    Examples
    --------
    >>> recover_orphans(mem.version_store)  # doctest: +SKIP
    []
    """
    store.check_writable("recover")
    removed = []
    for staged in store.catalog.staged_versions():
        if not (staged_writer_gone(staged, grace) or is_abandoned(staged.version_id)):
            continue
        location = store.location(staged)
        store.delete_stored(get_format(staged.format), location)
        store.catalog.discard(staged)
        removed.append(location.url)
    republished = store.republish()
    for move in store.catalog.pending_moves():
        if writer_gone(move.writer, move.started_at, grace):
            store.catalog.forget_move(move.version_id)
    listed = {}
    for tier in store.tiers.names:
        backend = store.tiers.backend(tier)
        if Capability.LISTING not in backend.capabilities:
            continue
        try:
            listed[tier] = (backend, list(dict.fromkeys(backend.version_paths())))
        except (TierUnavailableError, OSError) as exc:
            logger.warning("recover: skipping tier %r, which cannot be listed: %s", tier,
                           redact_text(str(exc)))
    known = store.catalog.stored_paths() | shared_owner_paths(store)
    for tier, (backend, paths) in listed.items():
        for path in paths:
            if (tier, path) not in known:
                backend.remove(path)
                backend.remove(record_path(path))
                removed.append(backend.url_for(path))
    store.write_missing_records()
    summary = f"removed {len(removed)} orphan(s), re-published {len(republished)} view(s)"
    store.audit("recover", detail=summary)
    logger.info("recovered: %s", summary)
    return removed
