"""What a checkpoint is, as shown to users: its name, its info, a list of them, and a diff of two states."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from memories_geo.display import (
    Html,
    human_size,
    human_time,
    repr_html,
    row,
    section,
    short_checksum,
    short_version_id,
    span,
    table,
)
from memories_geo.errors import OptionError

if TYPE_CHECKING:
    from memories_geo.catalog import CheckpointRow

__all__ = [
    "RESERVED_NAMES", "CheckpointDiff", "CheckpointInfo", "CheckpointList", "check_name", "timestamped_name",
]

#: References that are never names: the newest checkpoint, and the live state.
RESERVED_NAMES = ("latest", "current")


def timestamped_name(now: datetime | None = None) -> str:
    """The name of an unnamed checkpoint: ``cp-`` and the UTC time, e.g. ``cp-20261130T073000Z``.

    Examples
    --------
    >>> timestamped_name(datetime(2026, 11, 30, 7, 30, tzinfo=UTC))
    'cp-20261130T073000Z'
    """
    return f"cp-{(now or datetime.now(UTC)).astimezone(UTC):%Y%m%dT%H%M%SZ}"


def check_name(name: str) -> str:
    """Return ``name`` if it can name a checkpoint.

    Raises
    ------
    OptionError
        For an empty name or a reserved one (``latest``, ``current``), naming them.

    Examples
    --------
    >>> check_name("nightly")
    'nightly'
    """
    if not isinstance(name, str) or not name.strip():
        raise OptionError(f"a checkpoint name must be a non-empty string, got {name!r}")
    if name.strip().lower() in RESERVED_NAMES:
        raise OptionError(
            f"{name!r} cannot name a checkpoint: {' and '.join(map(repr, RESERVED_NAMES))} are reserved "
            "references (the newest checkpoint, the live state); choose another name, or give none "
            "for a timestamped one (cp-YYYYmmddTHHMMSSZ)"
        )
    return name


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint: ``id`` (unique), ``name`` (may repeat), time, size and checksum.

    Attributes
    ----------
    id : str
        Unique, time-sortable identifier.
    name : str
        Label given at save time (``"daily"``); ``restore("daily")`` takes the newest.
    timestamp : str
        Creation time, ISO 8601 UTC.
    keys : int
        Number of keys pinned.
    bytes : int
        Total size of the pinned versions.
    checksum : str
        Digest over every pinned ``(key, version id, version checksum)``.
    kind : str
        ``"manual"``, ``"auto"`` (rotated by :class:`AutoPersistence`) or ``"safety"``
        (taken automatically before a restore).
    message : str
        Free text.
    backed_up : bool
        Whether the data and manifest were copied to a backup store.
    """

    id: str
    name: str
    timestamp: str
    keys: int
    bytes: int
    checksum: str
    kind: str = "manual"
    message: str = ""
    backed_up: bool = False

    @classmethod
    def from_row(cls, row: CheckpointRow) -> CheckpointInfo:
        """Build from the catalog's row."""
        return cls(row.id, row.name, row.created_at, row.n_keys, row.size_bytes, row.checksum,
                   row.kind, row.message, row.backed_up)

    def __repr__(self) -> str:
        return (f"<memories_geo.CheckpointInfo {self.name!r} {self.id} {self.kind}: {self.keys} keys, "
                f"{human_size(self.bytes)}{', backed up' if self.backed_up else ''}>")

    def _repr_html_(self) -> str:
        sections = [
            row("id", span(self.id, cls="mg-mono")),
            row("time", human_time(self.timestamp)),
            row("kind", self.kind),
            row("keys", f"{self.keys:,}"),
            row("size", human_size(self.bytes), title=f"{self.bytes:,} bytes"),
            row("checksum", span(short_checksum(self.checksum), cls="mg-mono"), title=self.checksum),
            row("backup", "yes" if self.backed_up else "no"),
            row("message", self.message or "—"),
        ]
        return repr_html(obj_type="memories_geo.CheckpointInfo", name=self.name, text=repr(self),
                         sections=sections)


class CheckpointList(list[CheckpointInfo]):
    """Checkpoints, newest first, with a table view for Jupyter."""

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per checkpoint."""
        import pandas as pd

        columns = ["id", "name", "timestamp", "kind", "keys", "bytes", "checksum", "backed_up", "message"]
        return pd.DataFrame([{c: getattr(cp, c) for c in columns} for cp in self], columns=columns)

    def __repr__(self) -> str:
        if not self:
            return "CheckpointList([])"
        width = max(len(cp.name) for cp in self)
        lines = [f"<memories_geo.CheckpointList: {len(self)} checkpoint{'' if len(self) == 1 else 's'}>"]
        lines += [
            f"  {cp.name:<{width}}  {human_time(cp.timestamp)}  {cp.kind:<6} {cp.keys:>6} keys "
            f"{human_size(cp.bytes):>10}{'  backed up' if cp.backed_up else ''}"
            for cp in self
        ]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        columns = ("name", "time", "kind", "keys", "size", "backup", "message", "id")
        rows = [
            [span(cp.name, cls="mg-mono"), human_time(cp.timestamp), cp.kind, f"{cp.keys:,}",
             human_size(cp.bytes), "yes" if cp.backed_up else "no", cp.message, span(cp.id, cls="mg-mono")]
            for cp in self
        ]
        listing = table(columns, rows, numeric={3, 4})
        return repr_html(
            obj_type="memories_geo.CheckpointList", badges=[f"{len(self)} checkpoints"], text=repr(self),
            sections=[section("Checkpoints", listing, count=len(self))],
        )


@dataclass(frozen=True)
class CheckpointDiff:
    """What changed between two states: keys added, removed, and re-pointed."""

    added: dict[str, str] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)
    changed: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def _changes(self) -> list[tuple[str, str, str | None, str | None]]:
        """``(sign, key, before, after)`` for every change, sorted by key."""
        out: list[tuple[str, str, str | None, str | None]] = []
        out += [("+", k, None, v) for k, v in self.added.items()]
        out += [("-", k, v, None) for k, v in self.removed.items()]
        out += [("~", k, a, b) for k, (a, b) in self.changed.items()]
        return sorted(out, key=lambda change: change[1])

    def _counts(self) -> str:
        return f"{len(self.added)} added, {len(self.removed)} removed, {len(self.changed)} changed"

    def __repr__(self) -> str:
        if not self:
            return "<memories_geo.CheckpointDiff: no changes>"
        changes = self._changes()
        width = max(len(key) for _, key, _, _ in changes)
        lines = [f"<memories_geo.CheckpointDiff: {self._counts()}>"]
        lines += [
            f"  {sign} {key:<{width}}  {short_version_id(a) if a else '(absent)':<31} -> "
            f"{short_version_id(b) if b else '(absent)'}"
            for sign, key, a, b in changes
        ]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        names = {"+": ("added", "mg-added"), "-": ("removed", "mg-removed"), "~": ("changed", "mg-changed")}

        def side(version_id: str | None) -> Html:
            if version_id is None:
                return Html("<span class='mg-muted'>absent</span>")
            return span(short_version_id(version_id), cls="mg-mono", title=version_id)

        rows = [
            [span(f"{sign} {names[sign][0]}", cls=names[sign][1]), span(key, cls="mg-mono"), side(a), side(b)]
            for sign, key, a, b in self._changes()
        ]
        if rows:
            body = section("Changes", table(("change", "key", "before", "after"), rows), count=len(rows))
        else:
            body = row("changes", "none: both sides hold the same version of every key")
        return repr_html(obj_type="memories_geo.CheckpointDiff", badges=[self._counts()], text=repr(self),
                         sections=[body])
