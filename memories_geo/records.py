"""Version records: a small JSON object beside each stored version, enough to rebuild its catalog row.

``{key}/@v/{version_id}{ext}.record.json`` holds the catalog row (footprint, object
info, checksum manifest). It is written with the backend's ``write_bytes`` after the
data is verified and before the commit, so every committed version has one on every
backend, and a lost catalog can be rebuilt from the stores themselves (see
:class:`memories_geo.RecoveryManager`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from memories_geo.integrity import Manifest

__all__ = [
    "RECORD_SUFFIX", "SmallObjectStore", "read_record_manifest", "read_record_rows", "record_path",
    "write_record",
]

RECORD_SUFFIX = ".record.json"


class SmallObjectStore(Protocol):
    """What records need of a backend (every backend has it)."""

    def write_bytes(self, path: str, data: bytes) -> None:
        """Store a small object."""

    def read_bytes(self, path: str) -> bytes:
        """Read a small object (``FileNotFoundError`` when missing)."""
        ...

    def version_paths(self) -> list[str]:
        """Logical paths of the stored versions."""
        ...


def record_path(path: str) -> str:
    """Record path of the version stored at ``path``."""
    return path + RECORD_SUFFIX


def write_record(backend: SmallObjectStore, path: str, row: Mapping[str, Any]) -> None:
    """Write the record of the version at ``path``."""
    backend.write_bytes(record_path(path), json.dumps(dict(row), sort_keys=True).encode())


def read_record_manifest(backend: SmallObjectStore, path: str) -> Manifest | None:
    """The manifest in the record of the version at ``path``; ``None`` when it has no record.

    Raises
    ------
    ValueError, KeyError, TypeError
        When the record exists but cannot be parsed.
    """
    from memories_geo.integrity import Manifest

    try:
        data = backend.read_bytes(record_path(path))
    except FileNotFoundError:
        return None
    return Manifest.from_json(json.loads(data)["manifest"])


def read_record_rows(backend: SmallObjectStore) -> list[dict[str, Any]]:
    """The record of every version stored on ``backend`` (missing or unreadable ones are skipped)."""
    rows = []
    for path in backend.version_paths():
        try:
            rows.append(json.loads(backend.read_bytes(record_path(path))))
        except (OSError, ValueError):
            continue
    return rows
