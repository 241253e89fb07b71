"""Saves and checks spread over a ``dask.distributed`` cluster, committed once on the client.

What runs where:

- **workers** write chunks and files to the tier (which every process must reach: an
  object store, or a shared file system) and report what they wrote with its digests;
  they never open the catalog;
- **the client** (the process that called ``save``) assembles the manifest from those
  reports, then records, commits (one catalog transaction) and publishes, once.

:class:`PendingSave` is the delayed save: its graph ends in the manifest parts, and
``pending.compute()`` gathers them and commits in the calling process. Its
``__dask_postcompute__`` commits too, but dask (2025+) makes it the graph's last task
(``FinalizeCompute``): on dask's local schedulers that runs in the caller, with a
``dask.distributed`` client on a worker, where it refuses to commit (see
:class:`PendingSave`). Verification and backups fan out with
:func:`memories_geo.versions.fanout.fan_out`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dask.delayed import Delayed

from memories_geo.errors import MemoriesError
from memories_geo.footprint import Footprint
from memories_geo.formats.base import WriteResult
from memories_geo.integrity import Manifest
from memories_geo.progress import compute as compute_with_progress
from memories_geo.versions.fanout import active_client, digest_files, mark_abandoned, merge_manifests

if TYPE_CHECKING:
    from memories_geo.backends.base import Location
    from memories_geo.entry import Entry
    from memories_geo.versions.commit import Commit

__all__ = ["STRAGGLER_WAIT", "PendingSave", "complete_write", "pending_save"]

logger = logging.getLogger(__name__)

#: How long a failed save waits for its tasks still running on workers before cleaning up.
STRAGGLER_WAIT = 60.0


# -- the delayed save ---------------------------------------------------------------------------


@dataclass
class _Job:
    commit: Commit
    result: WriteResult
    keys: frozenset[Any]


_JOBS: dict[str, _Job] = {}
_HOLDERS: dict[str, int] = {}
#: Graphs submitted with the commit as their last task (dask.compute, client.compute) not finished yet.
_SUBMITTED: dict[str, int] = {}
#: What finished jobs gave (their entry, or the error), while a pending save of them exists.
_OUTCOMES: dict[str, Entry | BaseException] = {}
_LOCK = threading.RLock()


class PendingSave(Delayed):
    """A save whose writes are still to run: computing it writes on the workers, then commits here.

    Its dask graph ends in the manifest parts the workers report (digests of what
    they wrote); :meth:`compute` gathers them and records and commits the version once,
    in this process, against the catalog. ``pending.compute()`` (and, on dask's local
    schedulers, ``dask.compute(pending)``) return the committed
    :class:`~memories_geo.entry.Entry`; ``pending.persist()`` starts the writes on the
    cluster and returns a pending save to compute later.

    With a ``dask.distributed`` client, use ``pending.compute()``: ``dask.compute`` and
    ``client.compute`` run a collection's ``__dask_postcompute__`` as a task, which on
    a worker process cannot reach the catalog and raises, naming ``pending.compute()``
    (nothing is committed; computing ``pending`` again finishes the save). A
    pending save dropped without being computed leaves an orphan that
    :meth:`~memories_geo.versions.VersionStore.recover_orphans` removes.

    Examples
    --------
    >>> pending = mem.save(ds, "cube", compute=False)  # doctest: +SKIP
    >>> entry = pending.compute()  # doctest: +SKIP
    >>> (entry,) = dask.compute(other_pending, scheduler="threads")  # doctest: +SKIP
    """

    def __init__(self, parts: Delayed, token: str, nbytes: int = 0, desc: str = "save") -> None:
        super().__init__(parts.key, parts.dask)
        self.token, self.nbytes, self.desc = token, nbytes, desc
        with _LOCK:
            _HOLDERS[token] = _HOLDERS.get(token, 0) + 1
        weakref.finalize(self, _dropped, token)

    def __dask_postcompute__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        with _LOCK:
            _SUBMITTED[self.token] = _SUBMITTED.get(self.token, 0) + 1
        return _finish, (self.token,)

    def __dask_postpersist__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return _rebuild, (self.token, self.nbytes, self.desc)

    def compute(self, **kwargs: Any) -> Any:
        """Run the writes (on the active client's workers, if any), then commit here.

        ``kwargs`` go to :func:`dask.compute` (``scheduler=``...). On failure the staged
        version is removed (after the tasks still running on workers end) and the error
        is raised as a library error.
        """
        with _LOCK:
            outcome = _OUTCOMES.get(self.token)
        if outcome is not None:
            return _finish([[]], self.token)
        parts = Delayed(self.key, self.dask)
        try:
            if kwargs:
                import dask

                (written,) = dask.compute(parts, **kwargs)
            else:
                (written,) = compute_with_progress(parts, nbytes=self.nbytes, desc=self.desc)
        except BaseException as exc:
            _abandon(self.token, exc)
        return _finish([written], self.token)

    def __repr__(self) -> str:
        job = _JOBS.get(self.token)
        what = f"{job.commit.staged.key!r}" if job is not None else "(finished)"
        return f"PendingSave({what}, {len(self.dask)} task(s))"


def _rebuild(dsk: Any, token: str, nbytes: int, desc: str, *, rename: Any = None) -> PendingSave:
    return PendingSave(Delayed(f"manifest-parts-{token}", dsk), token, nbytes, desc)


def _reported(written: Any) -> tuple[list[Manifest] | None, Footprint | None]:
    """Manifests (the files written, with digests) and footprint the write's tasks returned, if any."""
    values = written if isinstance(written, list | tuple) else [written]
    found = [v.manifest if isinstance(v, WriteResult) else v for v in values
             if isinstance(v, Manifest | WriteResult)]
    return found or None, written.footprint if isinstance(written, WriteResult) else None


def _finish(results: Sequence[list[Any]], token: str) -> Entry:
    """Commit a pending save from its workers' reports (runs in the caller of compute)."""
    with _LOCK:
        job = _JOBS.get(token)
        if token in _SUBMITTED:
            _SUBMITTED[token] -= 1
        outcome = _OUTCOMES.get(token)
    if isinstance(outcome, BaseException):
        raise MemoriesError("this delayed save already failed (and was cleaned up); save again") from outcome
    if outcome is not None:
        return outcome
    if job is None:
        raise MemoriesError(
            "the commit of a distributed save runs in the process that saved it, against its "
            "catalog: compute it there with pending.compute(), not dask.compute(pending) or "
            "client.compute(pending), which run it as a task on a worker; nothing was committed"
        )
    (parts,) = results
    *manifests, footprint = parts
    result = job.result if footprint is None else replace(job.result, footprint=footprint)
    try:
        entry = job.commit.after_pending(merge_manifests(manifests), result)
    except BaseException as exc:
        _forget(token, exc)
        raise
    _forget(token, entry)
    return entry


def _dropped(token: str) -> None:
    """The last pending save of ``token`` is gone uncomputed: let ``recover()`` remove what it staged."""
    with _LOCK:
        _HOLDERS[token] -= 1
        if _HOLDERS[token] or _SUBMITTED.get(token, 0):
            return
        del _HOLDERS[token]
        _OUTCOMES.pop(token, None)
        job = _JOBS.pop(token, None)
    if job is not None:
        mark_abandoned(job.commit.staged.version_id)
        logger.info("a delayed save of %r was dropped before it was computed; recover() removes it",
                    job.commit.staged.key)


def _forget(token: str, outcome: Entry | BaseException) -> None:
    """Retire a finished job; its ``outcome`` is kept while a pending save of it exists."""
    with _LOCK:
        _JOBS.pop(token, None)
        _SUBMITTED.pop(token, None)
        if _HOLDERS.get(token):
            _OUTCOMES[token] = outcome


def _abandon(token: str, exc: BaseException) -> None:
    """Clean up after a pending save whose tasks failed, and raise ``exc`` as a library error."""
    with _LOCK:
        job = _JOBS.get(token)
    if job is None:
        raise exc
    _forget(token, exc)
    _wait_for_stragglers(job.keys)
    job.commit.fail(exc)


def _wait_for_stragglers(keys: frozenset[Any]) -> None:
    """Wait (up to :data:`STRAGGLER_WAIT`) until no task of a failed save still runs on a worker."""
    client = active_client()
    if client is None:
        return
    deadline = time.monotonic() + STRAGGLER_WAIT
    while time.monotonic() < deadline:
        try:
            running = {k for tasks in client.processing().values() for k in tasks}
        except Exception:
            return
        if not running & keys:
            return
        time.sleep(0.1)
    logger.warning("tasks of a failed save still run after %.0f s; recover() removes what they write",
                   STRAGGLER_WAIT)


def pending_save(commit: Commit, result: WriteResult, location: Location, *, nbytes: int = 0) -> PendingSave:
    """The delayed save of a write: ``result.pending`` (or nothing left to write), then the commit.

    The graph's last task gathers the manifest parts: what the write's tasks reported,
    or digests computed on the workers by :func:`digest_files` shares (one per worker
    thread of the active client, else four).
    """
    token = uuid.uuid4().hex
    parts = _parts(result, location, token)
    keys = frozenset(parts.dask.keys())
    with _LOCK:
        _JOBS[token] = _Job(commit, replace(result, pending=None), keys)
    return PendingSave(parts, token, nbytes, _describe(location))


def complete_write(result: WriteResult, location: Location, *, nbytes: int = 0) -> WriteResult:
    """Run a pending write (on the active client's workers, if any) and return it finished.

    The manifest is assembled from what the workers reported (the digests of what they
    wrote), and the footprint is the one they reported when the write learns it while
    writing (a dask-geopandas frame); nothing is committed. For callers that commit
    themselves, such as a transaction.

    Examples
    --------
    >>> result = fmt.write(ds, location, options)  # doctest: +SKIP
    >>> complete_write(result, location).manifest.size_bytes  # doctest: +SKIP
    """
    if result.pending is None:
        return result
    parts = _parts(result, location, uuid.uuid4().hex)
    (written,) = compute_with_progress(parts, nbytes=nbytes, desc=_describe(location))
    *manifests, footprint = written
    return replace(result, manifest=merge_manifests(manifests).including(result.manifest), pending=None,
                   footprint=result.footprint if footprint is None else footprint)


def _describe(location: Location) -> str:
    return f"save {location.path.rsplit('/@v/', 1)[0]}"


def _parts(result: WriteResult, location: Location, token: str) -> Delayed:
    """Graph of ``result.pending`` ending in ``[manifest, ..., footprint or None]``."""
    import dask

    if result.pending is None:
        shares: list[Any] = [result.manifest, None]
    else:
        count = _share_count()
        fs, root = location.store_fs, location.full_path
        summarise = dask.delayed(_reported, pure=False, nout=2)
        reported = summarise(result.pending, dask_key_name=f"written-{token}")
        shares = [
            dask.delayed(digest_files, pure=False)(
                reported[0], fs, root, i, count, result.taken, dask_key_name=f"digest-files-{i}-{token}"
            )
            for i in range(count)
        ]
        shares.append(reported[1])
    parts: Delayed = dask.delayed(list, pure=False)(shares, dask_key_name=f"manifest-parts-{token}")
    return parts


def _share_count() -> int:
    client = active_client()
    if client is None:
        return 4
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:
        return 4
