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
from memories_geo.errors import CatalogCorruptError, KeyExistsError, KeyNotFoundError
from memories_geo.footprint import BBox, Footprint
from memories_geo.integrity import Manifest

__all__ = ["Catalog", "CheckpointRow", "StagedVersion", "iso_utc", "utc_now", "version_row", "writer_id"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    version INTEGER,
    version_id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('staged', 'committed', 'retired')),
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
    stat_fingerprint TEXT,
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
CREATE TABLE IF NOT EXISTS checkpoints (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('manual', 'auto', 'safety')),
    n_keys INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    checksum TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    backed_up INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS checkpoints_name ON checkpoints (name, created_at);
CREATE TABLE IF NOT EXISTS checkpoint_versions (
    checkpoint_id TEXT NOT NULL REFERENCES checkpoints (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    version_id TEXT NOT NULL,
    PRIMARY KEY (checkpoint_id, key)
);
CREATE INDEX IF NOT EXISTS checkpoint_versions_vid ON checkpoint_versions (version_id);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    ok INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
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


_VERSION_COLUMNS = frozenset({
    "key", "version", "version_id", "status", "tier", "format", "kind", "path", "uri", "crs",
    "minx", "miny", "maxx", "maxy", "native_bbox", "time_start", "time_end", "variables", "shape",
    "size_bytes", "checksum", "object_info", "attrs", "tags", "created_at", "writer",
    "stat_fingerprint", "last_accessed_at", "access_count",
})


#: Columns a commit fills in on the staged row (all fixed names, never user input).
_COMMIT_COLUMNS = (
    "crs", "minx", "miny", "maxx", "maxy", "native_bbox", "time_start", "time_end", "variables",
    "shape", "size_bytes", "checksum", "object_info", "attrs", "tags", "stat_fingerprint",
)


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
    """The catalog row of a written version, as stored in the catalog and in version records."""
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
        "created_at": staged.created_at, "writer": staged.writer,
        "stat_fingerprint": manifest.stat, "manifest": manifest.to_json(),
    }


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
        try:
            self._create()
        except sqlite3.DatabaseError as exc:
            raise CatalogCorruptError(
                f"catalog {self.path} is unreadable ({exc}); rebuild it with "
                "memories_geo.RecoveryManager(...).rebuild_catalog() or "
                "`memories-geo recover --rebuild-catalog`"
            ) from exc

    def _create(self) -> None:
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

    def check(self) -> None:
        """Raise :class:`CatalogCorruptError` unless SQLite's integrity check passes."""
        try:
            with self._connect() as con:
                (result,) = con.execute("PRAGMA quick_check").fetchone()
                con.execute("SELECT COUNT(*) FROM versions").fetchone()
        except sqlite3.DatabaseError as exc:
            raise CatalogCorruptError(f"catalog {self.path} is unreadable: {exc}") from exc
        if result != "ok":
            raise CatalogCorruptError(f"catalog {self.path} failed its integrity check: {result}")

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

    def commit(self, staged: StagedVersion, row: Mapping[str, Any], *, exclusive: bool = False) -> Entry:
        """Make a staged version the key's current one, in one transaction.

        ``row`` is what :func:`version_row` made of the written version.

        Raises
        ------
        KeyExistsError
            With ``exclusive=True`` when the key already has a current version
            (the staged row is left for the caller to discard).
        """
        with self.transaction() as con:
            if exclusive and self._current_pk(con, staged.key) is not None:
                raise KeyExistsError(_exists_message(staged.key))
            (last,) = con.execute(
                "SELECT COALESCE(MAX(version), 0) FROM versions WHERE key = ?", (staged.key,)
            ).fetchone()
            values = {c: row[c] for c in _COMMIT_COLUMNS}
            con.execute(
                "UPDATE versions SET status = 'committed', version = ?, "  # noqa: S608
                + ", ".join(f"{c} = ?" for c in values) + " WHERE id = ?",
                (last + 1, *values.values(), staged.pk),
            )
            con.execute(
                "INSERT INTO manifests (version_pk, manifest) VALUES (?, ?)",
                (staged.pk, row["manifest"]),
            )
            if self.has_rtree and row["minx"] is not None:
                con.execute(
                    "INSERT INTO versions_bbox (id, minx, maxx, miny, maxy) VALUES (?, ?, ?, ?, ?)",
                    (staged.pk, row["minx"], row["maxx"], row["miny"], row["maxy"]),
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

    def remove_key(self, key: str) -> tuple[list[Entry], list[Entry]]:
        """Remove ``key`` and its versions from the catalog, in one transaction.

        Versions pinned by a checkpoint are kept as *retired* (invisible, restorable);
        the others are forgotten and their data must be purged by the caller.

        Returns
        -------
        removed, purge : list of Entry
            Every version the key had, and those whose data is no longer referenced.

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
            purge = self._retire_or_delete(con, entries)
        return entries, purge

    def _retire_or_delete(self, con: sqlite3.Connection, entries: list[Entry]) -> list[Entry]:
        """Retire pinned versions, delete the rest; return the deleted ones."""
        purge = []
        for entry in entries:
            if self._is_pinned(con, entry.version_id):
                con.execute("UPDATE versions SET status = 'retired' WHERE version_id = ?",
                            (entry.version_id,))
            else:
                self._delete_rows(con, [self._pk(con, entry)])
                purge.append(entry)
        return purge

    @staticmethod
    def _is_pinned(con: sqlite3.Connection, version_id: str) -> bool:
        row = con.execute(
            "SELECT 1 FROM checkpoint_versions WHERE version_id = ? LIMIT 1", (version_id,)
        ).fetchone()
        return row is not None

    def remove_version(self, key: str, version: int) -> tuple[Entry, bool]:
        """Remove one non-current version from the catalog (retired if a checkpoint pins it).

        Returns
        -------
        entry, purge : Entry, bool
            The version, and whether its data is no longer referenced.

        Raises
        ------
        KeyNotFoundError
            If the version does not exist.
        ValueError
            If it is the current version (delete the key, or save a newer one first).
        """
        with self.transaction() as con:
            found = self._entries(
                con, "v.key = ? AND v.version = ? AND v.status = 'committed'", (key, version)
            )
            if not found:
                raise KeyNotFoundError(f"key {key!r} has no version {version}")
            pk = self._pk(con, found[0])
            if self._current_pk(con, key) == pk:
                raise ValueError(
                    f"version {version} is the current version of {key!r}; delete the key "
                    "instead, or save a newer version first"
                )
            purge = self._retire_or_delete(con, found)
        return found[0], bool(purge)

    def _delete_rows(self, con: sqlite3.Connection, pks: list[int]) -> None:
        for pk in pks:
            con.execute("DELETE FROM manifests WHERE version_pk = ?", (pk,))
            if self.has_rtree:
                con.execute("DELETE FROM versions_bbox WHERE id = ?", (pk,))
            con.execute("DELETE FROM versions WHERE id = ?", (pk,))

    # -- checkpoints -------------------------------------------------------------

    def create_checkpoint(self, row: CheckpointRow, pins: Mapping[str, str]) -> None:
        """Record a checkpoint and pin its versions (``key -> version_id``) in one transaction.

        Raises
        ------
        KeyNotFoundError
            If a version was deleted meanwhile (nothing is recorded; take a new snapshot).
        """
        with self.transaction() as con:
            for key, vid in pins.items():
                if not con.execute(
                    "SELECT 1 FROM versions WHERE version_id = ? AND status != 'staged'", (vid,)
                ).fetchone():
                    raise KeyNotFoundError(f"version {vid} of {key!r} was deleted while checkpointing")
            con.execute(
                "INSERT INTO checkpoints (id, name, created_at, kind, n_keys, size_bytes, checksum, "
                "message, backed_up) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.id, row.name, row.created_at, row.kind, row.n_keys, row.size_bytes,
                 row.checksum, row.message, int(row.backed_up)),
            )
            con.executemany(
                "INSERT INTO checkpoint_versions (checkpoint_id, key, version_id) VALUES (?, ?, ?)",
                [(row.id, k, v) for k, v in pins.items()],
            )

    def mark_backed_up(self, checkpoint_id: str) -> None:
        """Record that a checkpoint's data and manifest reached the backup store."""
        with self.transaction() as con:
            con.execute("UPDATE checkpoints SET backed_up = 1 WHERE id = ?", (checkpoint_id,))

    def checkpoints(self) -> list[CheckpointRow]:
        """Every checkpoint, newest first."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT id, name, created_at, kind, n_keys, size_bytes, checksum, message, backed_up "
                "FROM checkpoints ORDER BY created_at DESC, id DESC"
            ).fetchall()
        return [CheckpointRow(*r[:8], backed_up=bool(r[8])) for r in rows]

    def checkpoint_pins(self, checkpoint_id: str) -> dict[str, str]:
        """``key -> version_id`` pinned by a checkpoint."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT key, version_id FROM checkpoint_versions WHERE checkpoint_id = ? ORDER BY key",
                (checkpoint_id,),
            ).fetchall()
        return dict(rows)

    def delete_checkpoint(self, checkpoint_id: str) -> list[Entry]:
        """Drop a checkpoint; return retired versions no longer pinned (their data must go)."""
        with self.transaction() as con:
            vids = [r[0] for r in con.execute(
                "SELECT version_id FROM checkpoint_versions WHERE checkpoint_id = ?", (checkpoint_id,)
            )]
            con.execute("DELETE FROM checkpoint_versions WHERE checkpoint_id = ?", (checkpoint_id,))
            con.execute("DELETE FROM checkpoints WHERE id = ?", (checkpoint_id,))
            purge = []
            for vid in vids:
                retired = self._entries(con, "v.version_id = ? AND v.status = 'retired'", (vid,))
                if retired and not self._is_pinned(con, vid):
                    self._delete_rows(con, [self._pk(con, retired[0])])
                    purge.append(retired[0])
        return purge

    def entries_by_version_id(self, version_ids: Sequence[str]) -> dict[str, Entry]:
        """Committed or retired entries by version id (missing ids are left out)."""
        wanted = set(version_ids)
        with self._connect() as con:
            entries = self._entries(con, "v.status != 'staged'", ())
        return {e.version_id: e for e in entries if e.version_id in wanted}

    def restore_pointers(self, pins: Mapping[str, str]) -> None:
        """Make the catalog's keys exactly ``pins`` (``key -> version_id``), in one transaction.

        Keys absent from ``pins`` disappear (their versions are retired, not deleted);
        pinned versions that were retired come back.

        Raises
        ------
        KeyNotFoundError
            If a version id is unknown to the catalog (nothing is changed).
        """
        with self.transaction() as con:
            targets = {}
            for key, vid in pins.items():
                row = con.execute(
                    "SELECT id FROM versions WHERE version_id = ? AND status != 'staged'", (vid,)
                ).fetchone()
                if row is None:
                    raise KeyNotFoundError(f"version {vid} of {key!r} is not in the catalog")
                targets[key] = int(row[0])
            for (key,) in con.execute("SELECT key FROM keys").fetchall():
                if key not in pins:
                    con.execute("DELETE FROM keys WHERE key = ?", (key,))
                    con.execute(
                        "UPDATE versions SET status = 'retired' WHERE key = ? AND status = 'committed'",
                        (key,),
                    )
            for key, pk in targets.items():
                con.execute("UPDATE versions SET status = 'committed' WHERE id = ?", (pk,))
                con.execute(
                    "INSERT INTO keys (key, current_pk) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET current_pk = excluded.current_pk",
                    (key, pk),
                )

    def revive_versions_of_keys(self) -> None:
        """Make retired versions of existing keys visible again (after a catalog rebuild)."""
        with self.transaction() as con:
            con.execute(
                "UPDATE versions SET status = 'committed' "
                "WHERE status = 'retired' AND key IN (SELECT key FROM keys)"
            )

    def export_rows(self, version_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Full catalog rows (with manifests) of versions, for checkpoint manifests."""
        out = []
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            for vid in version_ids:
                row = con.execute(
                    "SELECT v.*, m.manifest FROM versions v JOIN manifests m ON m.version_pk = v.id "
                    "WHERE v.version_id = ?",
                    (vid,),
                ).fetchone()
                if row is not None:
                    data = dict(row)
                    data.pop("id")
                    out.append(data)
        return out

    def import_rows(self, rows: Sequence[Mapping[str, Any]], *, status: str = "retired") -> int:
        """Insert exported rows not yet present (by version id); return how many were added.

        Used to rebuild a catalog from checkpoint manifests and version records:
        imported versions are retired until :meth:`restore_pointers` makes some of
        them current. Rows without a version number (records of a version whose
        commit was cut short) are numbered after the key's last version; import rows
        in version-id (time) order to keep numbers in order.
        """
        added = 0
        with self.transaction() as con:
            for row in rows:
                exists = con.execute(
                    "SELECT 1 FROM versions WHERE version_id = ?", (row["version_id"],)
                ).fetchone()
                if exists:
                    continue
                data = {k: v for k, v in row.items() if k != "manifest"}
                data["status"] = status
                clash = data.get("version") is None or con.execute(
                    "SELECT 1 FROM versions WHERE key = ? AND version = ?", (data["key"], data["version"])
                ).fetchone()
                if clash:
                    (last,) = con.execute(
                        "SELECT COALESCE(MAX(version), 0) FROM versions WHERE key = ?", (data["key"],)
                    ).fetchone()
                    data["version"] = last + 1
                columns = [c for c in data if c in _VERSION_COLUMNS]
                cur = con.execute(
                    f"INSERT INTO versions ({', '.join(columns)}) "  # noqa: S608
                    f"VALUES ({', '.join('?' * len(columns))})",
                    [data[c] for c in columns],
                )
                pk = int(cur.lastrowid or 0)
                con.execute("INSERT INTO manifests (version_pk, manifest) VALUES (?, ?)",
                            (pk, row["manifest"]))
                if self.has_rtree and data.get("minx") is not None:
                    con.execute(
                        "INSERT INTO versions_bbox (id, minx, maxx, miny, maxy) VALUES (?, ?, ?, ?, ?)",
                        (pk, data["minx"], data["maxx"], data["miny"], data["maxy"]),
                    )
                added += 1
        return added

    def set_stat_fingerprint(self, version_id: str, fingerprint: str | None) -> None:
        """Remember the file listing (sizes, times) a version had when last fully verified."""
        with self.transaction() as con:
            con.execute("UPDATE versions SET stat_fingerprint = ? WHERE version_id = ?",
                        (fingerprint, version_id))

    def stat_fingerprints(self, version_ids: Sequence[str]) -> dict[str, str]:
        """Recorded listing fingerprints of many versions (those that have one)."""
        wanted = set(version_ids)
        with self._connect() as con:
            rows = con.execute(
                "SELECT version_id, stat_fingerprint FROM versions WHERE stat_fingerprint IS NOT NULL"
            ).fetchall()
        return {vid: fp for vid, fp in rows if vid in wanted}

    def stat_fingerprint(self, version_id: str) -> str | None:
        """Listing fingerprint recorded by :meth:`set_stat_fingerprint`."""
        with self._connect() as con:
            row = con.execute("SELECT stat_fingerprint FROM versions WHERE version_id = ?",
                              (version_id,)).fetchone()
        return None if row is None else row[0]

    def retired_unpinned(self) -> list[Entry]:
        """Retired versions no checkpoint pins any more (garbage)."""
        with self._connect() as con:
            return self._entries(
                con,
                "v.status = 'retired' AND v.version_id NOT IN (SELECT version_id FROM checkpoint_versions)",
                (),
            )

    def forget(self, entries: Sequence[Entry]) -> None:
        """Delete the rows of versions (not their data)."""
        with self.transaction() as con:
            self._delete_rows(con, [self._pk(con, e) for e in entries])

    def log_event(self, kind: str, ok: bool, detail: str = "") -> None:
        """Append to the event log (checkpoint and persistence outcomes)."""
        with self.transaction() as con:
            con.execute("INSERT INTO events (at, kind, ok, detail) VALUES (?, ?, ?, ?)",
                        (utc_now(), kind, int(ok), detail[:2000]))

    def events(self, kind: str | None = None) -> list[tuple[str, str, bool, str]]:
        """Logged events ``(at, kind, ok, detail)``, oldest first."""
        with self._connect() as con:
            sql = "SELECT at, kind, ok, detail FROM events"
            rows = (con.execute(sql + " WHERE kind = ? ORDER BY id", (kind,)) if kind
                    else con.execute(sql + " ORDER BY id"))
            return [(a, k, bool(o), d) for a, k, o, d in rows]

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

    def all_versions(self, *, include_retired: bool = False) -> list[Entry]:
        """Every committed version of every key (and retired ones if asked)."""
        where = "v.status != 'staged'" if include_retired else "v.status = 'committed'"
        with self._connect() as con:
            return self._entries(con, where, ())

    def stored_paths(self) -> set[tuple[str, str]]:
        """``(tier, path)`` of every version the catalog knows, staged and retired included."""
        with self._connect() as con:
            return {(t, p) for t, p in con.execute("SELECT tier, path FROM versions")}

    def manifest(self, entry: Entry) -> Manifest:
        """Checksum manifest of ``entry``'s version."""
        with self._connect() as con:
            row = con.execute(
                "SELECT m.manifest FROM manifests m JOIN versions v ON v.id = m.version_pk "
                "WHERE v.version_id = ?",
                (entry.version_id,),
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
