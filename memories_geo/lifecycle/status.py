"""How a migration stands (:class:`MigrationStatus`) or would go (:class:`MigrationPlan`).

Both are read from the catalog's migration journal (or, for a plan, from the
selection), with a text repr and an HTML repr for notebooks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memories_geo.display import Html, human_size, human_time, repr_html, row, section, span, table
from memories_geo.lifecycle.job import MigrationJob

if TYPE_CHECKING:
    from memories_geo.catalog.sqlite_migrations import MigrationItemRow, MigrationJobRow
    from memories_geo.lifecycle.select import PlannedKey

__all__ = ["DEFAULT_THROUGHPUT", "KeyStatus", "MigrationPlan", "MigrationStatus"]

#: Bytes per second a plan assumes when no earlier migration between the same tiers was timed.
DEFAULT_THROUGHPUT = 50 * 1024 * 1024

_SHOWN = 50


@dataclass(frozen=True)
class KeyStatus:
    """One key of a migration: its version, how it moves, and how far it got.

    ``state`` is ``pending``, ``copying``, ``done``, ``failed`` (``error`` says why) or
    ``skipped`` (deleted or replaced by a newer version meanwhile; ``error`` says which).
    """

    key: str
    version_id: str
    size_bytes: int
    action: str
    source_format: str
    target_format: str
    state: str = "pending"
    bytes_done: int = 0
    error: str = ""
    target_version_id: str | None = None

    @classmethod
    def from_row(cls, item: MigrationItemRow) -> KeyStatus:
        """From a journal row."""
        return cls(item.key, item.version_id, item.size_bytes, item.action, item.source_format,
                   item.target_format, item.state, item.bytes_done, item.error, item.target_version_id)

    @classmethod
    def planned(cls, planned: PlannedKey) -> KeyStatus:
        """From a selected key, before anything ran."""
        e = planned.entry
        return cls(e.key, e.version_id, e.size_bytes, planned.action, e.format, planned.target_format)

    @property
    def how(self) -> str:
        """``move``, ``copy``, ``re-encode zarr`` or ``convert postgis -> geoparquet``."""
        if self.action != "convert":
            return self.action
        if self.target_format == self.source_format:
            return f"re-encode {self.source_format}"
        return f"convert {self.source_format} -> {self.target_format or '(destination default)'}"


def _key_table(keys: tuple[KeyStatus, ...], *, with_state: bool) -> Html:
    columns = ["key", "size", "how", *(["state", "detail"] if with_state else [])]
    rows = [
        [span(k.key, cls="mg-mono"), human_size(k.size_bytes), k.how,
         *([k.state, k.error or "—"] if with_state else [])]
        for k in keys[:_SHOWN]
    ]
    footer = [f"… and {len(keys) - _SHOWN} more", "", "", *(["", ""] if with_state else [])] \
        if len(keys) > _SHOWN else None
    return table(columns, rows, numeric={1}, footer=footer)


def _key_lines(keys: tuple[KeyStatus, ...], *, with_state: bool) -> list[str]:
    if not keys:
        return []
    width = min(max(len(k.key) for k in keys), 40)
    lines = [
        f"  {k.key:<{width}} {human_size(k.size_bytes):>10}  {k.how}"
        + (f"  [{k.state}{': ' + k.error if k.error else ''}]" if with_state else "")
        for k in keys[:_SHOWN]
    ]
    if len(keys) > _SHOWN:
        lines.append(f"  ... and {len(keys) - _SHOWN} more")
    return lines


def _counts(keys: tuple[KeyStatus, ...]) -> str:
    found: dict[str, int] = {}
    for k in keys:
        found[k.how] = found.get(k.how, 0) + 1
    return ", ".join(f"{n} {how}" for how, n in found.items()) or "nothing to do"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class MigrationPlan:
    """What a migration would do (``execute_migration(job, dry_run=True)``); nothing changed.

    Attributes
    ----------
    job : MigrationJob
        The job.
    keys : tuple of KeyStatus
        The keys it would migrate, with how (for a job already started: those not done).
    throughput : float
        Bytes per second the estimate assumes.
    measured_on : int
        How many earlier migrations between the same tiers the throughput was measured
        on (0: :data:`DEFAULT_THROUGHPUT`, assumed).
    resumed : bool
        Whether the job has run before (its plan is fixed in the journal).
    """

    job: MigrationJob
    keys: tuple[KeyStatus, ...]
    throughput: float = DEFAULT_THROUGHPUT
    measured_on: int = 0
    resumed: bool = False

    @property
    def total_bytes(self) -> int:
        """Bytes of every planned key."""
        return sum(k.size_bytes for k in self.keys)

    @property
    def estimated_seconds(self) -> float:
        """Estimated duration at :attr:`throughput`."""
        return self.total_bytes / self.throughput if self.throughput > 0 else 0.0

    @property
    def basis(self) -> str:
        """Where the throughput comes from."""
        if self.measured_on:
            return (f"measured on {self.measured_on} earlier migration(s) "
                    f"{self.job.source_tier} -> {self.job.destination_tier}")
        return "assumed: no earlier migration between these tiers was timed"

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per key."""
        import pandas as pd

        columns = ["key", "version_id", "size_bytes", "action", "source_format", "target_format"]
        return pd.DataFrame([{c: getattr(k, c) for c in columns} for k in self.keys], columns=columns)

    def __repr__(self) -> str:
        head = [
            f"<memories_geo.MigrationPlan {self.job.id!r} (dry run{', resumed' if self.resumed else ''})>",
            f"  {self.job.describe()}",
            f"  {len(self.keys)} key(s), {human_size(self.total_bytes)}: {_counts(self.keys)}",
            f"  estimated {_duration(self.estimated_seconds)} at {human_size(int(self.throughput))}/s "
            f"({self.basis})",
        ]
        return "\n".join(head + _key_lines(self.keys, with_state=False))

    def _repr_html_(self) -> str:
        sections = [
            row("job", span(self.job.id, cls="mg-mono")),
            row("migration", self.job.describe()),
            row("keys", f"{len(self.keys):,} ({_counts(self.keys)})"),
            row("size", human_size(self.total_bytes), title=f"{self.total_bytes:,} bytes"),
            row("estimated", f"{_duration(self.estimated_seconds)} at {human_size(int(self.throughput))}/s",
                title=self.basis),
            section("Keys", _key_table(self.keys, with_state=False), count=len(self.keys),
                    expanded=len(self.keys) <= 12),
        ]
        return repr_html(obj_type="memories_geo.MigrationPlan", name=self.job.id,
                         badges=["dry run", *(["resumed"] if self.resumed else [])], text=repr(self),
                         sections=sections)


@dataclass(frozen=True)
class MigrationStatus:
    """Where a migration stands, from the catalog's journal (``get_migration_status(job_id)``).

    Attributes
    ----------
    job : MigrationJob
        The job, as first run.
    state : str
        ``running``, ``interrupted`` (stopped, or its process is gone: run the job again to
        finish it), ``completed`` or ``failed`` (some keys failed: run it again to retry them).
    keys : tuple of KeyStatus
        Every planned key and its state.
    created_at, started_at, finished_at : str or None
        ISO 8601 UTC times.
    seconds : float
        Time spent running, over every run.
    """

    job: MigrationJob
    state: str
    keys: tuple[KeyStatus, ...]
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    seconds: float = 0.0

    @classmethod
    def from_journal(
        cls, job_row: MigrationJobRow, items: list[MigrationItemRow], state: str
    ) -> MigrationStatus:
        """From a journal's rows; ``state`` is the job's, with ``interrupted`` already derived."""
        return cls(MigrationJob.from_dict(json.loads(job_row.spec)), state,
                   tuple(KeyStatus.from_row(i) for i in items), job_row.created_at, job_row.started_at,
                   job_row.finished_at, job_row.seconds)

    @property
    def id(self) -> str:
        """The job's id."""
        return self.job.id

    @property
    def total_bytes(self) -> int:
        """Bytes of every planned key."""
        return sum(k.size_bytes for k in self.keys)

    @property
    def bytes_migrated(self) -> int:
        """Bytes of the keys done."""
        return sum(k.size_bytes for k in self.keys if k.state == "done")

    @property
    def progress_percentage(self) -> float:
        """Share of the planned bytes done or skipped, in percent (by keys when they hold no bytes)."""
        finished = [k for k in self.keys if k.state in ("done", "skipped")]
        if self.total_bytes:
            return 100.0 * sum(k.size_bytes for k in finished) / self.total_bytes
        return 100.0 * len(finished) / len(self.keys) if self.keys else 100.0

    @property
    def keys_done(self) -> list[str]:
        """Keys migrated."""
        return [k.key for k in self.keys if k.state == "done"]

    @property
    def keys_failed(self) -> dict[str, str]:
        """Keys that failed, with why."""
        return {k.key: k.error for k in self.keys if k.state == "failed"}

    @property
    def keys_pending(self) -> list[str]:
        """Keys not done yet (pending, or interrupted while copying)."""
        return [k.key for k in self.keys if k.state in ("pending", "copying")]

    @property
    def keys_skipped(self) -> dict[str, str]:
        """Keys left alone because they changed meanwhile, with why."""
        return {k.key: k.error for k in self.keys if k.state == "skipped"}

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per key."""
        import pandas as pd

        columns = ["key", "version_id", "size_bytes", "action", "source_format", "target_format", "state",
                   "error", "target_version_id"]
        return pd.DataFrame([{c: getattr(k, c) for c in columns} for k in self.keys], columns=columns)

    def _summary(self) -> str:
        parts = [f"{len(self.keys_done)} done"]
        for label, found in (("failed", self.keys_failed), ("pending", self.keys_pending),
                             ("skipped", self.keys_skipped)):
            if found:
                parts.append(f"{len(found)} {label}")
        return ", ".join(parts)

    def __repr__(self) -> str:
        head = [
            f"<memories_geo.MigrationStatus {self.id!r}: {self.state}, {self.progress_percentage:.0f}%>",
            f"  {self.job.describe()}",
            f"  {len(self.keys)} key(s): {self._summary()}; "
            f"{human_size(self.bytes_migrated)} of {human_size(self.total_bytes)} migrated"
            + (f" in {_duration(self.seconds)}" if self.seconds else ""),
        ]
        return "\n".join(head + _key_lines(self.keys, with_state=True))

    def _repr_html_(self) -> str:
        sections = [
            row("state", f"{self.state} ({self.progress_percentage:.0f}%)"),
            row("migration", self.job.describe()),
            row("keys", f"{len(self.keys):,}: {self._summary()}"),
            row("migrated", f"{human_size(self.bytes_migrated)} of {human_size(self.total_bytes)}",
                title=f"{self.bytes_migrated:,} of {self.total_bytes:,} bytes"),
            row("started", human_time(self.started_at)),
            row("finished", human_time(self.finished_at) if self.finished_at else "—"),
            row("time", _duration(self.seconds) if self.seconds else "—"),
            section("Keys", _key_table(self.keys, with_state=True), count=len(self.keys),
                    expanded=len(self.keys) <= 12),
        ]
        return repr_html(obj_type="memories_geo.MigrationStatus", name=self.id, badges=[self.state],
                         text=repr(self), sections=sections)
