"""Checkpoint manifest files, written in two phases and trusted only under their final names.

A checkpoint save writes its manifest as ``@checkpoints/{id}.json.pending``, then records
the checkpoint in the catalog, then writes ``@checkpoints/{id}.json`` and removes the
pending file. Object stores have no atomic rename, so the final name is written as a new
object: only final names count, and every reader ignores pending ones. A save killed
before its catalog row leaves only a pending file, which :func:`pending_abandoned`
recognises once its writer is gone; one killed after its catalog row leaves a pending
file that :func:`finalise` completes.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from memories_geo.versions.orphans import writer_gone

if TYPE_CHECKING:
    from memories_geo.backends.base import Backend

__all__ = [
    "CHECKPOINT_DIR", "MANIFEST_FORMAT", "PENDING_GRACE", "PENDING_SUFFIX", "encode", "final_ids",
    "finalise", "id_time", "manifest_path", "pending_abandoned", "pending_ids", "pending_path",
    "read_manifests", "remove_manifest",
]

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "@checkpoints"
MANIFEST_FORMAT = "memories_geo.checkpoint/1"
_FINAL_SUFFIX = ".json"
#: Suffix of a manifest whose checkpoint is not (yet) in the catalog.
PENDING_SUFFIX = ".json.pending"
#: How long a pending manifest written by a process on another host (whose liveness
#: cannot be checked) is presumed to belong to a save still under way. A save spends
#: milliseconds between writing it and recording its catalog row, so ten minutes is
#: far beyond any live save; a writer on this host is checked directly.
PENDING_GRACE = timedelta(minutes=10)


def manifest_path(checkpoint_id: str) -> str:
    """Final path of a checkpoint's manifest.

    Examples
    --------
    >>> manifest_path("20261130T073000000000Z-ab12cd34")
    '@checkpoints/20261130T073000000000Z-ab12cd34.json'
    """
    return posixpath.join(CHECKPOINT_DIR, f"{checkpoint_id}{_FINAL_SUFFIX}")


def pending_path(checkpoint_id: str) -> str:
    """Path of a checkpoint's manifest before its catalog row exists.

    Examples
    --------
    >>> pending_path("20261130T073000000000Z-ab12cd34")
    '@checkpoints/20261130T073000000000Z-ab12cd34.json.pending'
    """
    return posixpath.join(CHECKPOINT_DIR, f"{checkpoint_id}{PENDING_SUFFIX}")


def encode(document: Mapping[str, Any]) -> bytes:
    """The bytes of a manifest document (sorted keys, so equal documents are equal bytes).

    Examples
    --------
    >>> encode({"b": 1, "a": 2})
    b'{"a": 2, "b": 1}'
    """
    return json.dumps(document, sort_keys=True).encode()


def final_ids(store: Backend) -> list[str]:
    """Ids of the checkpoints whose manifest is under its final name on ``store``.

    Examples
    --------
    >>> final_ids(mem.checkpoints.store)  # doctest: +SKIP
    ['20261130T073000000000Z-ab12cd34']
    """
    return [n[: -len(_FINAL_SUFFIX)] for n in store.listdir(CHECKPOINT_DIR) if n.endswith(_FINAL_SUFFIX)]


def pending_ids(store: Backend) -> list[str]:
    """Ids of the checkpoints whose manifest is still pending on ``store``.

    Examples
    --------
    >>> pending_ids(mem.checkpoints.store)  # doctest: +SKIP
    []
    """
    return [n[: -len(PENDING_SUFFIX)] for n in store.listdir(CHECKPOINT_DIR) if n.endswith(PENDING_SUFFIX)]


def read_manifests(store: Backend) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(id, document)`` of every readable manifest under a final name on ``store``.

    An unreadable one (a torn write) is skipped with a warning.

    Examples
    --------
    >>> dict(read_manifests(mem.checkpoints.store)).keys()  # doctest: +SKIP
    dict_keys(['20261130T073000000000Z-ab12cd34'])
    """
    for checkpoint_id in final_ids(store):
        try:
            document = json.loads(store.read_bytes(manifest_path(checkpoint_id)))
        except (OSError, ValueError) as exc:
            logger.warning("skipping unreadable checkpoint manifest %s: %s",
                           store.url_for(manifest_path(checkpoint_id)), exc)
            continue
        if isinstance(document, dict) and document.get("id") == checkpoint_id:
            yield checkpoint_id, document


def finalise(store: Backend, checkpoint_id: str, data: bytes | None = None) -> bool:
    """Write a manifest under its final name (from ``data`` or its pending file); drop the pending one.

    Returns ``False`` when there is no ``data`` and no pending file (another process
    finalised it meanwhile).

    Examples
    --------
    >>> finalise(mem.checkpoints.store, cp.id)  # doctest: +SKIP
    True
    """
    if data is None:
        try:
            data = store.read_bytes(pending_path(checkpoint_id))
        except FileNotFoundError:
            return False
    store.write_bytes(manifest_path(checkpoint_id), data)
    store.remove(pending_path(checkpoint_id))
    return True


def remove_manifest(store: Backend, checkpoint_id: str) -> None:
    """Remove a checkpoint's manifest from ``store``, under its final and its pending name.

    Examples
    --------
    >>> remove_manifest(mem.checkpoints.store, cp.id)  # doctest: +SKIP
    """
    store.remove(manifest_path(checkpoint_id))
    store.remove(pending_path(checkpoint_id))


def id_time(identifier: str) -> datetime | None:
    """When a checkpoint or version id was made (ids start with the UTC time), ``None`` if it does not parse.

    Examples
    --------
    >>> id_time("20261130T073000000001Z-ab12cd34")
    datetime.datetime(2026, 11, 30, 7, 30, 0, 1, tzinfo=datetime.timezone.utc)
    """
    try:
        return datetime.strptime(identifier[:21], "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)
    except ValueError:
        return None


def pending_abandoned(
    data: bytes, checkpoint_id: str, *, grace: timedelta = PENDING_GRACE, now: datetime | None = None
) -> bool:
    """Whether a pending manifest with no catalog row belongs to a save that can no longer finish.

    Its writer (``host:pid`` in the document) is gone when it ran on this host and no
    such process exists; a writer on another host is presumed alive for ``grace`` after
    the checkpoint id's time. An unreadable pending file counts by its id's time alone.

    Examples
    --------
    >>> pending_abandoned(b'{"writer": "elsewhere:1"}', "20000101T000000000000Z-00000000")
    True
    """
    try:
        writer = str(json.loads(data).get("writer", ""))
    except (ValueError, AttributeError):
        writer = ""
    return writer_gone(writer, id_time(checkpoint_id), grace)
