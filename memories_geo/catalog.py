"""The catalog: which keys exist, their versions, footprints and access statistics (SQLite)."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import socket
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memories_geo.entry import Entry
from memories_geo.errors import KeyExistsError, KeyNotFoundError
from memories_geo.footprint import BBox, Footprint
from memories_geo.integrity import Manifest

__all__ = ["Catalog", "StagedVersion", "iso_utc", "utc_now", "writer_id"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    version INTEGER,
    version_id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('staged', 'committed')),
    tier TEXT NOT NULL,
    format TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    uri TEXT NOT NULL,
    crs TEXT,
    minx REAL, miny REAL, maxx REAL, maxy REAL,
    native_bbox TEXT,
    time_start TEXT,
    time_end TEXT,
    variables TEXT NOT NULL DEFAULT '[]',
    shape TEXT NOT NULL DEFAULT '{}',
    size_bytes INTEGER NOT NULL DEFAULT 0,
    checksum TEXT NOT NULL DEFAULT '',
    object_info TEXT NOT NULL DEFAULT '{}',
    attrs TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    writer TEXT NOT NULL DEFAULT '',
    last_accessed_at TEXT,
    access_count INTEGER NOT NULL DEFAULT 0,
    UNIQUE (key, version)
);
CREATE INDEX IF NOT EXISTS versions_key ON versions (key, status);
CREATE INDEX IF NOT EXISTS versions_time ON versions (time_start, time_end);
CREATE TABLE IF NOT EXISTS manifests (
    version_pk INTEGER PRIMARY KEY REFERENCES versions (id) ON DELETE CASCADE,
    manifest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    key TEXT PRIMARY KEY,
    current_pk INTEGER NOT NULL REFERENCES versions (id)
);
"""
_RTREE = "CREATE VIRTUAL TABLE IF NOT EXISTS versions_bbox USING rtree (id, minx, maxx, miny, maxy)"

_ENTRY_COLUMNS = (
    "v.id, v.key, v.version, v.tier, v.format, v.kind, v.uri, v.crs, v.minx, v.miny, v.maxx, "
    "v.maxy, v.native_bbox, v.time_start, v.time_end, v.variables, v.shape, v.size_bytes, "
    "v.checksum, v.created_at, v.last_accessed_at, v.access_count, v.attrs, v.tags, "
    "v.object_info, v.version_id, v.path"
)


def utc_now() -> str:
    """Current UTC time as ISO 8601 with microseconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def iso_utc(value: Any) -> str | None:
    """ISO 8601 (UTC, microseconds) for a timestamp-like value; ``None`` stays ``None``."""
    if value is None:
        return None
    import pandas as pd

    ts = pd.Timestamp(value)
    if pd.isna(ts):
        return None
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%f")


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


def writer_id() -> str:
    """``host:pid`` of this process, recorded on staged versions."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Catalog:
    """SQLite catalog (WAL mode, one short connection per operation, safe across processes).

    Parameters
    ----------
    path : str or Path
        Database file; its directory is created.
    """

    def __init__(self, path: str | Path) -> None:
        path = str(path)
        if path.startswith("sqlite:///"):
            path = path[len("sqlite:///") - 1 :]
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)
            try:
                con.execute(_RTREE)
                self.has_rtree = True
            except sqlite3.OperationalError:
                self.has_rtree = False
            con.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            con.execute("PRAGMA foreign_keys=ON")
            con.execute("PRAGMA busy_timeout=60000")
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): all or nothing."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # -- writing -----------------------------------------------------------------

    def stage(
        self, *, key: str, version_id: str, tier: str, format: str, kind: str, path: str, uri: str
    ) -> StagedVersion:
        """Record the intent to write a version (so a crash leaves a findable orphan)."""
        created = utc_now()
        with self.transaction() as con:
            cur = con.execute(
                "INSERT INTO versions (key, version_id, status, tier, format, kind, path, uri, "
                "created_at, writer) VALUES (?, ?, 'staged', ?, ?, ?, ?, ?, ?, ?)",
                (key, version_id, tier, format, kind, path, uri, created, writer_id()),
            )
            pk = int(cur.lastrowid or 0)
        return StagedVersion(pk, key, version_id, tier, format, kind, path, created, writer_id())

    def commit(
        self,
        staged: StagedVersion,
        *,
        footprint: Footprint,
        manifest: Manifest,
        object_info: Mapping[str, Any],
        attrs: Mapping[str, Any] | None = None,
        tags: Sequence[str] = (),
        exclusive: bool = False,
    ) -> Entry:
        """Make a staged version the key's current one, in one transaction.

        Raises
        ------
        KeyExistsError
            With ``exclusive=True`` when the key already has a current version
            (the staged row is left for the caller to discard).
        """
        fp = footprint
        with self.transaction() as con:
            if exclusive and self._current_pk(con, staged.key) is not None:
                raise KeyExistsError(_exists_message(staged.key))
            (last,) = con.execute(
                "SELECT COALESCE(MAX(version), 0) FROM versions WHERE key = ?", (staged.key,)
            ).fetchone()
            bbox = fp.bbox or (None, None, None, None)
            con.execute(
                "UPDATE versions SET status = 'committed', version = ?, crs = ?, minx = ?, "
                "miny = ?, maxx = ?, maxy = ?, native_bbox = ?, time_start = ?, time_end = ?, "
                "variables = ?, shape = ?, size_bytes = ?, checksum = ?, object_info = ?, "
                "attrs = ?, tags = ? WHERE id = ?",
                (
                    last + 1, fp.crs, *bbox,
                    json.dumps(fp.native_bbox) if fp.native_bbox else None,
                    iso_utc(fp.time_start), iso_utc(fp.time_end),
                    json.dumps(list(fp.variables)), json.dumps(dict(fp.shape)),
                    manifest.size_bytes, manifest.checksum,
                    json.dumps(dict(object_info), default=str),
                    json.dumps(dict(attrs or {}), default=str), json.dumps(list(tags)),
                    staged.pk,
                ),
            )
            con.execute(
                "INSERT INTO manifests (version_pk, manifest) VALUES (?, ?)",
                (staged.pk, manifest.to_json()),
            )
            if self.has_rtree and fp.bbox:
                minx, miny, maxx, maxy = fp.bbox
                con.execute(
                    "INSERT INTO versions_bbox (id, minx, maxx, miny, maxy) VALUES (?, ?, ?, ?, ?)",
                    (staged.pk, minx, maxx, miny, maxy),
                )
            con.execute(
                "INSERT INTO keys (key, current_pk) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET current_pk = excluded.current_pk",
                (staged.key, staged.pk),
            )
            return self._entry_by_pk(con, staged.pk)

    def discard(self, staged: StagedVersion) -> None:
        """Forget a staged version that will never be committed."""
        with self.transaction() as con:
            con.execute("DELETE FROM versions WHERE id = ? AND status = 'staged'", (staged.pk,))

    def staged_versions(self) -> list[StagedVersion]:
        """Versions staged and never committed (orphans unless a write is in progress)."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT id, key, version_id, tier, format, kind, path, created_at, writer "
                "FROM versions WHERE status = 'staged' ORDER BY id"
            ).fetchall()
        return [StagedVersion(*row) for row in rows]

    def touch(self, entry: Entry) -> None:
        """Record an access (time and count) to ``entry``'s version."""
        with self.transaction() as con:
            con.execute(
                "UPDATE versions SET last_accessed_at = ?, access_count = access_count + 1 "
                "WHERE key = ? AND version = ?",
                (utc_now(), entry.key, entry.version),
            )

    def remove_key(self, key: str) -> list[Entry]:
        """Remove ``key`` and all its versions from the catalog; return them (data still stored).

        Raises
        ------
        KeyNotFoundError
            If the key does not exist.
        """
        with self.transaction() as con:
            if self._current_pk(con, key) is None:
                raise KeyNotFoundError(self._not_found_message(con, key))
            entries = self._entries(con, "v.key = ? AND v.status = 'committed'", (key,))
            con.execute("DELETE FROM keys WHERE key = ?", (key,))
            self._delete_rows(con, [self._pk(con, e) for e in entries])
        return entries

    def remove_version(self, key: str, version: int) -> Entry:
        """Remove one non-current version from the catalog; return it (data still stored).

        Raises
        ------
        KeyNotFoundError
            If the version does not exist.
        ValueError
            If it is the current version (delete the key, or save a newer one first).
        """
        with self.transaction() as con:
            found = self._entries(con, "v.key = ? AND v.version = ?", (key, version))
            if not found:
                raise KeyNotFoundError(f"key {key!r} has no version {version}")
            pk = self._pk(con, found[0])
            if self._current_pk(con, key) == pk:
                raise ValueError(
                    f"version {version} is the current version of {key!r}; delete the key "
                    "instead, or save a newer version first"
                )
            self._delete_rows(con, [pk])
        return found[0]

    def _delete_rows(self, con: sqlite3.Connection, pks: list[int]) -> None:
        for pk in pks:
            con.execute("DELETE FROM manifests WHERE version_pk = ?", (pk,))
            if self.has_rtree:
                con.execute("DELETE FROM versions_bbox WHERE id = ?", (pk,))
            con.execute("DELETE FROM versions WHERE id = ?", (pk,))

    # -- reading -----------------------------------------------------------------

    def current(self, key: str) -> Entry:
        """The current version of ``key``.

        Raises
        ------
        KeyNotFoundError
            If the key does not exist (the message suggests close keys).
        """
        with self._connect() as con:
            pk = self._current_pk(con, key)
            if pk is None:
                raise KeyNotFoundError(self._not_found_message(con, key))
            return self._entry_by_pk(con, pk)

    def get(self, key: str, version: int | None = None) -> Entry:
        """A given version of ``key`` (the current one when ``version`` is ``None``)."""
        if version is None:
            return self.current(key)
        with self._connect() as con:
            found = self._entries(con, "v.key = ? AND v.version = ? AND v.status = 'committed'",
                                  (key, int(version)))
            if not found:
                known = [
                    e.version
                    for e in self._entries(con, "v.key = ? AND v.status = 'committed'", (key,))
                ]
                raise KeyNotFoundError(
                    f"key {key!r} has no version {version}; versions: {known or 'none'}"
                )
            return found[0]

    def versions(self, key: str) -> list[Entry]:
        """Every committed version of ``key``, oldest first."""
        with self._connect() as con:
            entries = self._entries(con, "v.key = ? AND v.status = 'committed'", (key,))
            if not entries:
                raise KeyNotFoundError(self._not_found_message(con, key))
            return entries

    def current_entries(self) -> list[Entry]:
        """The current version of every key, sorted by key."""
        with self._connect() as con:
            return self._entries(con, "v.id IN (SELECT current_pk FROM keys)", ())

    def all_versions(self) -> list[Entry]:
        """Every committed version of every key."""
        with self._connect() as con:
            return self._entries(con, "v.status = 'committed'", ())

    def manifest(self, entry: Entry) -> Manifest:
        """Checksum manifest of ``entry``'s version."""
        with self._connect() as con:
            row = con.execute(
                "SELECT m.manifest FROM manifests m JOIN versions v ON v.id = m.version_pk "
                "WHERE v.key = ? AND v.version = ?",
                (entry.key, entry.version),
            ).fetchone()
        if row is None:
            raise KeyNotFoundError(f"no manifest for {entry.key!r} v{entry.version}")
        return Manifest.from_json(row[0])

    def search(
        self,
        *,
        bbox: BBox | None = None,
        time: tuple[str | None, str | None] | None = None,
        tier: str | Sequence[str] | None = None,
        kind: str | Sequence[str] | None = None,
        key: str | None = None,
        tags: Sequence[str] | None = None,
        all_versions: bool = False,
    ) -> list[Entry]:
        """Entries matching every given filter (current versions unless ``all_versions``).

        ``bbox`` is ``(minx, miny, maxx, maxy)`` in EPSG:4326 and matches intersecting
        footprints; ``time`` is an inclusive ``(start, end)`` of ISO strings (either may
        be ``None``); ``key`` is a glob; ``tags`` must all be present.
        """
        where = ["v.status = 'committed'"]
        params: list[Any] = []
        if not all_versions:
            where.append("v.id IN (SELECT current_pk FROM keys)")
        if bbox is not None:
            minx, miny, maxx, maxy = bbox
            if self.has_rtree:
                where.append(
                    "v.id IN (SELECT id FROM versions_bbox WHERE minx <= ? AND maxx >= ? "
                    "AND miny <= ? AND maxy >= ?)"
                )
            else:
                where.append("v.minx <= ? AND v.maxx >= ? AND v.miny <= ? AND v.maxy >= ?")
            params += [maxx, minx, maxy, miny]
        if time is not None:
            start, end = time
            if start is not None:
                where.append("v.time_end >= ?")
                params.append(start)
            if end is not None:
                where.append("v.time_start <= ?")
                params.append(end)
        for column, value in (("tier", tier), ("kind", kind)):
            if value is not None:
                values = [value] if isinstance(value, str) else list(value)
                where.append(f"v.{column} IN ({', '.join('?' * len(values))})")
                params += [str(v) for v in values]
        if key is not None:
            where.append("v.key GLOB ?")
            params.append(key)
        with self._connect() as con:
            entries = self._entries(con, " AND ".join(where), tuple(params))
        if tags:
            wanted = set(tags)
            entries = [e for e in entries if wanted <= set(e.tags)]
        return entries

    # -- helpers -----------------------------------------------------------------

    @staticmethod
    def _current_pk(con: sqlite3.Connection, key: str) -> int | None:
        row = con.execute("SELECT current_pk FROM keys WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    @staticmethod
    def _pk(con: sqlite3.Connection, entry: Entry) -> int:
        (pk,) = con.execute(
            "SELECT id FROM versions WHERE key = ? AND version = ?", (entry.key, entry.version)
        ).fetchone()
        return int(pk)

    def _not_found_message(self, con: sqlite3.Connection, key: str) -> str:
        keys = [row[0] for row in con.execute("SELECT key FROM keys ORDER BY key")]
        close = [k for k in keys if fnmatch.fnmatch(k, f"*{key.rsplit('/', 1)[-1]}*")][:5]
        hint = f" Did you mean {close}?" if close else (" The catalog is empty." if not keys else "")
        return f"no data stored under key {key!r}.{hint}"

    def _entry_by_pk(self, con: sqlite3.Connection, pk: int) -> Entry:
        return self._entries(con, "v.id = ?", (pk,))[0]

    def _entries(self, con: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> list[Entry]:
        sql = f"SELECT {_ENTRY_COLUMNS} FROM versions v WHERE {where} ORDER BY v.key, v.version"  # noqa: S608
        return [_row_to_entry(row) for row in con.execute(sql, params)]


def _exists_message(key: str) -> str:
    return (
        f"key {key!r} already exists; pass mode='w' to save a new version, or choose another key"
    )


def _row_to_entry(row: Sequence[Any]) -> Entry:
    (_, key, version, tier, fmt, kind, uri, crs, minx, miny, maxx, maxy, native, t0, t1,
     variables, shape, size, checksum, created, accessed, count, attrs, tags, info,
     version_id, path) = row
    return Entry(
        key=key, version=int(version or 0), tier=tier, format=fmt, kind=kind, uri=uri, crs=crs,
        bbox=None if minx is None else (minx, miny, maxx, maxy),
        native_bbox=tuple(json.loads(native)) if native else None,
        time_start=t0, time_end=t1,
        variables=tuple(json.loads(variables)), shape=json.loads(shape),
        size_bytes=int(size), checksum=checksum, created_at=created,
        last_accessed_at=accessed, access_count=int(count),
        attrs=json.loads(attrs), tags=tuple(json.loads(tags)), object_info=json.loads(info),
        version_id=version_id, path=path,
    )
