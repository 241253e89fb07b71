"""What interrupted checkpoint saves and deletions left, settled (``CheckpointManager.recover_orphans``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from memories_geo.checkpoints.manifests import (
    final_ids,
    finalise,
    manifest_path,
    pending_abandoned,
    pending_ids,
    pending_path,
    remove_manifest,
)

if TYPE_CHECKING:
    from memories_geo.versions import VersionStore

logger = logging.getLogger(__name__)

__all__ = ["settle_orphans"]


def settle_orphans(versions: VersionStore, delete: Callable[[str], object], *, grace: timedelta) -> list[str]:
    """Finish interrupted deletions and settle pending manifests; return the URLs settled.

    Parameters
    ----------
    versions : VersionStore
        The collection's versions (its journal store holds the manifests).
    delete : callable
        Deletes a checkpoint by id (:meth:`CheckpointManager.delete`).
    grace : timedelta
        How long a pending manifest written on another host is left to its writer.

    Examples
    --------
    >>> settle_orphans(mem.version_store, mem.checkpoints.delete, grace=PENDING_GRACE)  # doctest: +SKIP
    []
    """
    store = versions.journal_store
    if store is None:
        return []
    catalog = versions.catalog
    deleted = {r["detail"] for r in catalog.audit_rows(operation="checkpoint.delete", outcome="ok")}
    known = {cp.id for cp in catalog.checkpoints()}
    settled = []
    for checkpoint_id in sorted(deleted & known):
        delete(checkpoint_id)
        settled.append(store.url_for(manifest_path(checkpoint_id)))
        logger.info("checkpoint %s: interrupted deletion finished", checkpoint_id)
    known -= deleted
    for checkpoint_id in final_ids(store):
        if checkpoint_id in deleted and checkpoint_id not in known:
            remove_manifest(store, checkpoint_id)
            settled.append(store.url_for(manifest_path(checkpoint_id)))
            logger.info("checkpoint %s: manifest of a deleted checkpoint removed", checkpoint_id)
    for checkpoint_id in pending_ids(store):
        path = pending_path(checkpoint_id)
        if checkpoint_id not in known:
            try:
                data = store.read_bytes(path)
            except FileNotFoundError:
                continue
            if not pending_abandoned(data, checkpoint_id, grace=grace):
                continue
            # Its writer may have recorded the row after ``known`` was read.
            known = {cp.id for cp in catalog.checkpoints()}
        if checkpoint_id in known:
            if finalise(store, checkpoint_id):
                settled.append(store.url_for(path))
                logger.info("checkpoint %s: manifest of an interrupted save completed", checkpoint_id)
        else:
            store.remove(path)
            settled.append(store.url_for(path))
            logger.info("checkpoint %s: manifest of a save killed before its catalog row removed",
                        checkpoint_id)
    return settled
