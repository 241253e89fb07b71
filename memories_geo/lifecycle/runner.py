"""Applying the lifecycle policies on an interval, in a background thread (:class:`LifecycleRunner`).

The design is :class:`~memories_geo.checkpoints.AutoPersistence`'s: a daemon thread that
waits ``interval``, runs once, and again; a failing run is counted, logged and written
to the audit log (a ``migrate`` record with outcome ``error``), and never stops the
thread. A run killed with its process resumes at the next run (policy runs have
deterministic job ids).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from memories_geo.config import redact_text
from memories_geo.display import human_time, repr_html, row, section, span, table
from memories_geo.errors import ConfigError, OptionError
from memories_geo.lifecycle.policies import apply_policies
from memories_geo.lifecycle.status import MigrationPlan, MigrationStatus
from memories_geo.periodic import PeriodicTask
from memories_geo.units import parse_duration
from memories_geo.versions import open_version_store

__all__ = ["LifecycleRunner"]

logger = logging.getLogger(__name__)


class LifecycleRunner(PeriodicTask):
    """Apply a collection's ``[[lifecycle]]`` policies every ``interval`` in a background thread.

    ``start()``, ``stop()``, ``is_running`` and the context manager come from
    :class:`~memories_geo.periodic.PeriodicTask`; the first run is one interval away.

    Parameters
    ----------
    storage : Memory, VersionStore, StorageConfig or path
        The collection; its configuration holds the policies.
    interval : str, float or timedelta
        Time between runs: ``"1 hour"``, ``"15 minutes"``, ``"1d"``, or seconds.
    max_workers : int
        Keys migrated at once within a policy.

    Attributes
    ----------
    runs, failures : int
        Runs so far, and how many of them failed.
    last_error : BaseException or None
        Why the last failed run failed.
    last_results : list of MigrationStatus
        The migrations of the last run that moved something.
    last_run_at : datetime or None
        When the last run finished (UTC).

    Raises
    ------
    ConfigError
        The configuration has no scheduled policy (one with ``after`` or criteria).
    OptionError
        A bad interval.

    Examples
    --------
    >>> runner = mg.LifecycleRunner(mem, interval="1 hour")  # doctest: +SKIP
    >>> runner.start()  # doctest: +SKIP
    >>> runner.run_once()  # doctest: +SKIP
    >>> runner.stop()  # doctest: +SKIP
    """

    thread_name = "memories-geo-lifecycle"

    def __init__(self, storage: Any = None, interval: str | float | timedelta = "1 hour", *,
                 max_workers: int = 4) -> None:
        self.interval = parse_duration(interval, name="interval").total_seconds()
        if self.interval <= 0:
            raise OptionError(f"interval must be longer than zero, e.g. '1 hour'; got {interval!r}")
        self.store = open_version_store(storage)
        self.policies = [p for p in self.store.config.lifecycle if p.scheduled]
        if not self.policies:
            raise ConfigError(
                "the configuration has no scheduled lifecycle policy; add one to memories.toml, e.g. "
                "[[lifecycle]] from = 'hot', to = 'warm', after = '30 days idle'"
            )
        super().__init__()
        self.max_workers = max_workers
        self.last_results: list[MigrationStatus] = []
        self.last_run_at: datetime | None = None

    def run_once(self, *, raise_errors: bool = True) -> list[MigrationStatus]:
        """Apply every scheduled policy now; return the migrations that moved something.

        With ``raise_errors=False`` (the background thread) a failure is counted,
        logged, recorded in the audit log and returned as an empty list.

        Raises
        ------
        MigrationError
            Some policy runs failed (with ``raise_errors=True``).
        """
        with self._lock:
            self.runs += 1
            try:
                results = apply_policies(self.store, max_workers=self.max_workers)
            except Exception as exc:
                self.failures += 1
                self.last_error = exc
                message = redact_text(f"{type(exc).__name__}: {exc}")
                logger.error("lifecycle run %d failed: %s", self.runs, message)
                with contextlib.suppress(Exception):
                    self.store.audit("migrate", outcome="error", detail=f"lifecycle run: {message}")
                if raise_errors:
                    raise
                return []
            finally:
                self.last_run_at = datetime.now(UTC)
            self.last_results = [r for r in results if not isinstance(r, MigrationPlan)]
            return self.last_results

    def _every(self) -> str:
        seconds = self.interval
        for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
            if seconds >= length and seconds % length == 0:
                return f"{seconds / length:g} {unit}"
        return f"{seconds:g} s"

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        n = len(self.policies)
        lines = [f"LifecycleRunner({state}, every {self._every()}, {n} polic{'y' if n == 1 else 'ies'}, "
                 f"runs={self.runs}, failures={self.failures})"]
        lines += [f"  {p.describe()}" for p in self.policies]
        if self.last_error is not None:
            lines.append(f"  last error: {redact_text(str(self.last_error))}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        moved = sum(len(s.keys_done) for s in self.last_results)
        sections = [
            row("state", "running" if self.is_running else "stopped"),
            row("every", self._every()),
            row("runs", f"{self.runs} ({self.failures} failed)"),
            row("last run", human_time(self.last_run_at) if self.last_run_at else "—"),
            row("last moved", f"{moved} key(s)"),
            *([row("last error", span(redact_text(str(self.last_error)), cls="mg-mono"))]
              if self.last_error is not None else []),
            section("Policies", table(["policy"], [[p.describe()] for p in self.policies]),
                    count=len(self.policies), expanded=True),
        ]
        return repr_html(obj_type="memories_geo.LifecycleRunner", text=repr(self), sections=sections,
                         badges=["running" if self.is_running else "stopped"])
