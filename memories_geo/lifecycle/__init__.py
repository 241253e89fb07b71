"""Tier lifecycle: verified, resumable migrations of keys between tiers.

- :class:`MigrationJob`: which keys go from which tier to which, and how
  (:mod:`~memories_geo.lifecycle.job`; sizes and ages parsed by
  :mod:`~memories_geo.units`);
- :func:`execute_migration`, :func:`plan_migration`, :func:`migration_status`:
  run, preview and follow a job (:mod:`~memories_geo.lifecycle.execute`), with
  :class:`MigrationStatus` and :class:`MigrationPlan` (:mod:`~memories_geo.lifecycle.status`);
- :mod:`~memories_geo.lifecycle.select` chooses keys and how each moves (byte move,
  copy or conversion), :mod:`~memories_geo.lifecycle.convert` copies and converts through
  the save protocol, :mod:`~memories_geo.lifecycle.compare` checks a copy against its source.
"""

from memories_geo.lifecycle.execute import execute_migration, migration_jobs, migration_status, plan_migration
from memories_geo.lifecycle.job import CRITERIA, MigrationError, MigrationJob, Selection
from memories_geo.lifecycle.policies import apply_policies, jobs_for_policies, promote_on_access
from memories_geo.lifecycle.runner import LifecycleRunner
from memories_geo.lifecycle.select import ACTIONS, PlannedKey, select_keys
from memories_geo.lifecycle.status import DEFAULT_THROUGHPUT, KeyStatus, MigrationPlan, MigrationStatus
from memories_geo.units import parse_duration, parse_moment, parse_size

__all__ = [
    "ACTIONS",
    "CRITERIA",
    "DEFAULT_THROUGHPUT",
    "KeyStatus",
    "LifecycleRunner",
    "MigrationError",
    "MigrationJob",
    "MigrationPlan",
    "MigrationStatus",
    "PlannedKey",
    "Selection",
    "apply_policies",
    "execute_migration",
    "jobs_for_policies",
    "migration_jobs",
    "migration_status",
    "parse_duration",
    "parse_moment",
    "parse_size",
    "plan_migration",
    "promote_on_access",
    "select_keys",
]
