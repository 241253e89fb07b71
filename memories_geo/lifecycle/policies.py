"""Applying the ``[[lifecycle]]`` policies of a configuration: scheduled migrations and promotion on access.

Each scheduled policy becomes one :class:`~memories_geo.lifecycle.MigrationJob` per run
(:func:`jobs_for_policies`), with a deterministic id: ``lifecycle-<digest of the
policy>-<run number>``. A run that was killed or cut off keeps its id, so the next
:func:`apply_policies` resumes it from the journal instead of starting over; a finished
run makes the next one a new run. A policy with nothing to move leaves no job behind.

A policy with ``on_access = true`` moves a version up when it is opened
(:func:`promote_on_access`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from memories_geo.config import redact_text
from memories_geo.errors import ReadOnlyError
from memories_geo.lifecycle.execute import execute_migration, migration_status, plan_migration
from memories_geo.lifecycle.job import MigrationError, MigrationJob, Selection
from memories_geo.lifecycle.select import select_keys
from memories_geo.lifecycle.status import MigrationPlan, MigrationStatus
from memories_geo.versions import open_version_store

if TYPE_CHECKING:
    from memories_geo.entry import Entry
    from memories_geo.lifecycle_policy import LifecyclePolicy
    from memories_geo.versions import VersionStore

__all__ = ["apply_policies", "jobs_for_policies", "policy_job_prefix", "promote_on_access"]

logger = logging.getLogger(__name__)

#: Job ids of policy runs start with this.
PREFIX = "lifecycle-"


def policy_job_prefix(policy: LifecyclePolicy) -> str:
    """The id every run of ``policy`` starts with: ``lifecycle-`` and a digest of its settings.

    Examples
    --------
    >>> from memories_geo.lifecycle_policy import LifecyclePolicy
    >>> policy_job_prefix(LifecyclePolicy.from_dict({"from": "hot", "to": "warm", "after": "30 days idle"}))
    'lifecycle-hot-warm-...'
    """
    digest = hashlib.blake2b(json.dumps(policy.to_dict(), sort_keys=True, default=str).encode(),
                             digest_size=5).hexdigest()
    return f"{PREFIX}{policy.source_tier}-{policy.destination_tier}-{digest}-"


def _job(store: VersionStore, policy: LifecyclePolicy) -> MigrationJob:
    """The run of ``policy`` to do now: the one cut short, if any, else the next one."""
    prefix = policy_job_prefix(policy)
    runs = {int(r.id[len(prefix):]): r for r in store.catalog.migration_jobs()
            if r.id.startswith(prefix) and r.id[len(prefix):].isdigit()}
    last = max(runs, default=0)
    number = last if last and runs[last].state in ("running", "interrupted") else last + 1
    return MigrationJob(source_tier=policy.source_tier, destination_tier=policy.destination_tier,
                        selection_criteria=policy.selection_criteria(), format=policy.format,
                        reencode=policy.reencode, id=f"{prefix}{number:05d}")


def jobs_for_policies(storage: Any) -> list[MigrationJob]:
    """The migration job of each scheduled policy for a run now, in configuration order.

    A policy whose last run was cut short (killed, interrupted) gets that run's job
    again, to resume it; otherwise a new job numbered after the last run.

    Parameters
    ----------
    storage : Memory, VersionStore, StorageConfig or path
        The collection; its configuration holds the policies.

    Examples
    --------
    >>> [job.describe() for job in jobs_for_policies(mem)]  # doctest: +SKIP
    ["hot -> warm (last_accessed_before='30 days ago')"]
    """
    store = open_version_store(storage)
    return [_job(store, p) for p in store.config.lifecycle if p.scheduled]


def apply_policies(
    storage: Any, *, dry_run: bool = False, max_workers: int = 4
) -> list[MigrationStatus | MigrationPlan]:
    """Run every scheduled ``[[lifecycle]]`` policy once: migrate the keys each one selects now.

    Policies run in configuration order (so ``hot -> warm`` then ``warm -> cold`` can
    move a long-idle key two steps in one run), each as a verified, resumable migration.

    Parameters
    ----------
    storage : Memory, VersionStore, StorageConfig or path
        The collection; its configuration holds the policies.
    dry_run : bool
        Return each policy's :class:`MigrationPlan` (keys, bytes, estimated time) and
        change nothing.
    max_workers : int
        Keys migrated at once within a policy.

    Returns
    -------
    list of MigrationStatus or MigrationPlan
        One status per policy that had keys to move (or a run to finish); with
        ``dry_run``, one plan per scheduled policy.

    Raises
    ------
    MigrationError
        Some policies failed (the message names each and why); the others ran.
        ``.status`` is the first failed run's status, if it got that far.

    Examples
    --------
    >>> for plan in apply_policies(mem, dry_run=True):  # doctest: +SKIP
    ...     print(plan.job.describe(), plan.total_bytes)
    >>> [s.state for s in apply_policies(mem)]  # doctest: +SKIP
    ['completed']
    """
    store = open_version_store(storage)
    results: list[MigrationStatus | MigrationPlan] = []
    failures: list[tuple[MigrationJob, BaseException]] = []
    for job in jobs_for_policies(store):
        if dry_run:
            results.append(plan_migration(store, job))
            continue
        resumed = store.catalog.migration_job(job.id) is not None
        try:
            if not resumed and not select_keys(store, job):
                logger.debug("lifecycle policy %s: nothing to move", job.describe())
                continue
            logger.info("lifecycle policy %s: %s run %s", job.describe(),
                        "resuming" if resumed else "starting", job.id)
            results.append(execute_migration(store, job, max_workers=max_workers))
        except Exception as exc:
            failures.append((job, exc))
            status = getattr(exc, "status", None)
            if isinstance(status, MigrationStatus):
                results.append(status)
            elif store.catalog.migration_job(job.id) is not None:
                results.append(migration_status(store, job.id))
    if failures:
        listed = "; ".join(f"{job.describe()} ({job.id}): {redact_text(f'{type(e).__name__}: {e}')}"
                           for job, e in failures)
        failed_id = failures[0][0].id
        first = next((r for r in results if isinstance(r, MigrationStatus) and r.id == failed_id), None)
        raise MigrationError(
            f"{len(failures)} lifecycle policy run(s) failed: {listed}; the other policies ran, and the next "
            "run retries (memories-geo migrate --policy)", status=first,
        ) from failures[0][1]
    return results


def promote_on_access(storage: Any, entry: Entry) -> Entry | None:
    """Move a version that was just opened up to the tier its ``on_access`` policy names.

    Applies when a policy with ``on_access = true`` starts at the version's tier, the
    version is its key's current one, and it meets the policy's criteria. The move is
    byte for byte and verified (:meth:`VersionStore.move`): same version id and number.
    A failed promotion (unreachable store, retention, an archived object...) is logged
    and audited, never raised: the data stays readable where it was.

    Parameters
    ----------
    storage : Memory or VersionStore
        The collection; its configuration holds the policies.
    entry : Entry
        The version opened.

    Returns
    -------
    Entry or None
        The moved version, or ``None`` when nothing moved.

    Examples
    --------
    >>> entry = mem.info("era5/t2m")  # doctest: +SKIP
    >>> promote_on_access(mem, entry).tier  # doctest: +SKIP
    'hot'
    """
    store = open_version_store(storage)
    policy = next((p for p in store.config.lifecycle if p.on_access and p.source_tier == entry.tier), None)
    if policy is None or store.read_only:
        return None
    try:
        selection = Selection.from_criteria(policy.selection_criteria())
        if not store.catalog.is_current(entry) or not selection.matches(entry, datetime.now(UTC)):
            return None
        moved = store.move(entry, policy.destination_tier)
    except ReadOnlyError:
        return None
    except Exception as exc:
        message = redact_text(f"{type(exc).__name__}: {exc}")
        logger.warning("could not promote %s v%d from tier %s to %s on access: %s", entry.key, entry.version,
                       entry.tier, policy.destination_tier, message)
        with contextlib.suppress(Exception):
            store.audit("migrate", key=entry.key, version=entry.version, outcome="error",
                        detail=f"promotion on access {entry.tier} -> {policy.destination_tier} failed: "
                        f"{message}")
        return None
    logger.info("promoted %s v%d from tier %s to %s on access", entry.key, entry.version, entry.tier,
                moved.tier)
    return moved
