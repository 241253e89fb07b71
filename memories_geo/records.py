"""Version records: a small JSON file beside each stored version, enough to rebuild its catalog row.

``{tier_root}/{key}/@v/{version_id}{ext}.record.json`` holds the catalog row (footprint,
object info, checksum manifest). It is written after the data is verified and before
the commit, so every committed version on a file tier has one, and a lost catalog can be
rebuilt from the stores themselves (see :class:`memories_geo.RecoveryManager`).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator, Mapping
from typing import Any

from memories_geo.keys import VERSIONS_DIR

__all__ = ["RECORD_SUFFIX", "iter_version_dirs", "read_records", "record_path", "write_record"]

RECORD_SUFFIX = ".record.json"


def record_path(path: str) -> str:
    """Record path of the version stored at ``path``."""
    return path + RECORD_SUFFIX


def write_record(backend: Any, path: str, row: Mapping[str, Any]) -> None:
    """Write the record of the version at ``path`` (file backends only)."""
    backend.write_bytes(record_path(path), json.dumps(dict(row), sort_keys=True).encode())


def iter_version_dirs(backend: Any) -> Iterator[tuple[str, list[str]]]:
    """``(key_path/@v, names)`` for every versions folder of a file backend.

    Folders whose name starts with ``@`` (``@checkpoints``) at any level are skipped,
    as are the version folders themselves (never descended into).
    """
    pending = [""]
    while pending:
        path = pending.pop()
        for name in backend.listdir(path):
            child = posixpath.join(path, name) if path else name
            if name == VERSIONS_DIR:
                yield child, backend.listdir(child)
            elif not name.startswith("@") and backend.fs.isdir(backend.full_path(child)):
                pending.append(child)


def read_records(backend: Any) -> list[dict[str, Any]]:
    """Every version record stored on a file backend (unreadable ones are skipped)."""
    rows = []
    for folder, names in iter_version_dirs(backend):
        for name in names:
            if name.endswith(RECORD_SUFFIX):
                full = backend.full_path(posixpath.join(folder, name))
                try:
                    rows.append(json.loads(backend.fs.cat_file(full)))
                except (OSError, ValueError):
                    continue
    return rows
