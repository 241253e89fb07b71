"""What a checkpoint is, as shown to users: its info, a list of them, and a diff of two states."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memories_geo.catalog import CheckpointRow

__all__ = ["CheckpointDiff", "CheckpointInfo", "CheckpointList"]


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

    def _repr_html_(self) -> str:
        return CheckpointList([self])._repr_html_()


class CheckpointList(list[CheckpointInfo]):
    """Checkpoints, newest first, with a table view for Jupyter."""

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per checkpoint."""
        import pandas as pd

        columns = ["id", "name", "timestamp", "kind", "keys", "bytes", "checksum", "backed_up", "message"]
        return pd.DataFrame([{c: getattr(cp, c) for c in columns} for cp in self], columns=columns)

    def _repr_html_(self) -> str:
        titles = ("name", "id", "time (UTC)", "kind", "keys", "bytes", "backup")
        head = "".join(f"<th>{c}</th>" for c in titles)
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
                cp.name, cp.id, cp.timestamp, cp.kind, cp.keys, f"{cp.bytes:,}",
                "yes" if cp.backed_up else "no",
            )) + "</tr>"
            for cp in self
        )
        return f"<div><strong>{len(self)} checkpoint(s)</strong><table><tr>{head}</tr>{rows}</table></div>"


@dataclass(frozen=True)
class CheckpointDiff:
    """What changed between two states: keys added, removed, and re-pointed."""

    added: dict[str, str] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)
    changed: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def __repr__(self) -> str:
        return (f"CheckpointDiff(added={sorted(self.added)}, removed={sorted(self.removed)}, "
                f"changed={sorted(self.changed)})")
