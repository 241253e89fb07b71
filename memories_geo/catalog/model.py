"""The catalog's data model, free of SQL: rows, staged versions, checkpoints, messages.

Everything here is shared by every catalog implementation (SQLite today): a row is a
plain mapping of column name to a JSON-friendly value, built once by
:func:`version_row` and stored as is, in the catalog and in version records.
"""

from __future__ import annotations

import fnmatch
import json
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from memories_geo.entry import Entry
from memories_geo.footprint import Footprint
from memories_geo.integrity import Manifest
from memories_geo.query import iso_utc

__all__ = [
    "COMMIT_COLUMNS",
    "ENTRY_COLUMNS",
    "VERSION_COLUMNS",
    "CheckpointRow",
    "StagedVersion",
    "entry_from_row",
    "exists_message",
    "not_found_message",
    "utc_now",
    "version_row",
    "writer_id",
]

#: Every column of the ``versions`` table a row may set (all fixed names, never user input).
VERSION_COLUMNS = frozenset({
    "key", "version", "version_id", "status", "tier", "format", "kind", "path", "uri", "crs",
    "minx", "miny", "maxx", "maxy", "native_bbox", "time_start", "time_end", "variables", "shape",
    "size_bytes", "checksum", "object_info", "attrs", "tags", "created_at", "writer",
    "stat_fingerprint", "last_accessed_at", "access_count", "storage_class",
})

#: Columns a commit fills in on the staged row.
COMMIT_COLUMNS = (
    "crs", "minx", "miny", "maxx", "maxy", "native_bbox", "time_start", "time_end", "variables",
    "shape", "size_bytes", "checksum", "object_info", "attrs", "tags", "stat_fingerprint",
)

#: Columns :func:`entry_from_row` reads.
ENTRY_COLUMNS = (
    "key", "version", "tier", "format", "kind", "uri", "crs", "minx", "miny", "maxx", "maxy",
    "native_bbox", "time_start", "time_end", "variables", "shape", "size_bytes", "checksum",
    "created_at", "last_accessed_at", "access_count", "attrs", "tags", "object_info",
    "version_id", "path", "storage_class",
)


def utc_now() -> str:
    """Current UTC time as ISO 8601 with microseconds.

    Examples
    --------
    >>> len(utc_now())
    26
    """
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def writer_id() -> str:
    """``host:pid`` of this process, recorded on staged versions."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class CheckpointRow:
    """A checkpoint as the catalog records it."""

    id: str
    name: str
    created_at: str
    kind: str
    n_keys: int
    size_bytes: int
    checksum: str
    message: str = ""
    backed_up: bool = False


@dataclass(frozen=True)
class StagedVersion:
    """A version being written: known to the catalog but not yet current."""

    pk: int
    key: str
    version_id: str
    tier: str
    format: str
    kind: str
    path: str
    created_at: str
    writer: str = ""
    storage_class: str | None = None


def version_row(
    staged: StagedVersion,
    *,
    uri: str,
    footprint: Footprint,
    manifest: Manifest,
    object_info: Mapping[str, Any],
    attrs: Mapping[str, Any] | None = None,
    tags: Sequence[str] = (),
) -> dict[str, Any]:
    """The catalog row of a written version, as stored in the catalog and in version records.

    Parameters
    ----------
    staged : StagedVersion
        The version, as :meth:`Catalog.stage` recorded it.
    uri : str
        Display URL of the stored version (no credentials).
    footprint : Footprint
        Extent, CRS, time range, variables and shape.
    manifest : Manifest
        Checksum manifest of the written files or tables.
    object_info : mapping
        What ``open`` needs to rebuild the Python type.
    attrs, tags : mapping, sequence of str
        User metadata.

    Returns
    -------
    dict
        Column name -> value (JSON text for structured columns), plus ``"manifest"``.
    """
    fp = footprint
    minx, miny, maxx, maxy = fp.bbox or (None, None, None, None)
    return {
        "key": staged.key, "version": None, "version_id": staged.version_id, "status": "committed",
        "tier": staged.tier, "format": staged.format, "kind": staged.kind, "path": staged.path,
        "uri": uri, "crs": fp.crs, "minx": minx, "miny": miny, "maxx": maxx, "maxy": maxy,
        "native_bbox": json.dumps(fp.native_bbox) if fp.native_bbox else None,
        "time_start": iso_utc(fp.time_start), "time_end": iso_utc(fp.time_end),
        "variables": json.dumps(list(fp.variables)), "shape": json.dumps(dict(fp.shape)),
        "size_bytes": manifest.size_bytes, "checksum": manifest.checksum,
        "object_info": json.dumps(dict(object_info), default=str),
        "attrs": json.dumps(dict(attrs or {}), default=str), "tags": json.dumps(list(tags)),
        "created_at": staged.created_at, "writer": staged.writer, "storage_class": staged.storage_class,
        "stat_fingerprint": manifest.stat, "manifest": manifest.to_json(),
    }


def entry_from_row(row: Mapping[str, Any]) -> Entry:
    """The :class:`Entry` of a stored row (a mapping holding at least :data:`ENTRY_COLUMNS`)."""
    native = row["native_bbox"]
    return Entry(
        key=row["key"], version=int(row["version"] or 0), tier=row["tier"], format=row["format"],
        kind=row["kind"], uri=row["uri"], crs=row["crs"],
        bbox=None if row["minx"] is None else (row["minx"], row["miny"], row["maxx"], row["maxy"]),
        native_bbox=tuple(json.loads(native)) if native else None,
        time_start=row["time_start"], time_end=row["time_end"],
        variables=tuple(json.loads(row["variables"])), shape=json.loads(row["shape"]),
        size_bytes=int(row["size_bytes"]), checksum=row["checksum"], created_at=row["created_at"],
        last_accessed_at=row["last_accessed_at"], access_count=int(row["access_count"]),
        attrs=json.loads(row["attrs"]), tags=tuple(json.loads(row["tags"])),
        object_info=json.loads(row["object_info"]), version_id=row["version_id"], path=row["path"],
        storage_class=row.get("storage_class"),
    )


def exists_message(key: str) -> str:
    """Message of the :class:`KeyExistsError` an exclusive commit raises."""
    return f"key {key!r} already exists; pass mode='w' to save a new version, or choose another key"


def not_found_message(key: str, keys: Sequence[str]) -> str:
    """Message of a :class:`KeyNotFoundError` for ``key``, suggesting close ``keys``."""
    import difflib

    leaf = key.rsplit("/", 1)[-1]
    close = difflib.get_close_matches(key, list(keys), n=3, cutoff=0.6)
    close += [k for k in keys if k not in close and fnmatch.fnmatch(k, f"*{leaf}*")]
    close = close[:5]
    hint = f" Did you mean {close}?" if close else (" The catalog is empty." if not keys else "")
    return f"no data stored under key {key!r}.{hint}"
