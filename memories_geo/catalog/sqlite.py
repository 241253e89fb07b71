"""The SQLite catalog: WAL mode, one short connection per operation, safe across processes."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from memories_geo.catalog.location import sqlite_path
from memories_geo.catalog.model import (
    COMMIT_COLUMNS,
    StagedVersion,
    exists_message,
    utc_now,
    writer_id,
)
from memories_geo.catalog.schema import ensure_schema
from memories_geo.catalog.search import SearchFilter, sqlite_where
from memories_geo.catalog.sqlite_audit import SQLiteAuditLog, insert_audit
from memories_geo.catalog.sqlite_checkpoints import SQLiteCheckpointTables
from memories_geo.catalog.sqlite_migrations import SQLiteMigrations
from memories_geo.catalog.sqlite_moves import SQLiteMoves
from memories_geo.catalog.sqlite_operations import SQLiteOperations
from memories_geo.catalog.sqlite_queries import (
    connect,
    current_pk,
    delete_versions,
    entries,
    index_bbox,
    next_version,
    not_found,
    pk_of,
    retire_or_delete,
    set_current,
)
from memories_geo.catalog.sqlite_queries import transaction as write_transaction
from memories_geo.catalog.sqlite_restores import SQLiteRestores
from memories_geo.entry import Entry
from memories_geo.errors import CatalogCorruptError, ConfigError, KeyExistsError, KeyNotFoundError
from memories_geo.footprint import BBox
from memories_geo.integrity import Manifest

__all__ = ["SQLiteCatalog"]

_COMMITTED = "v.key = ? AND v.status = 'committed'"


class SQLiteCatalog(
    SQLiteCheckpointTables, SQLiteAuditLog, SQLiteMoves, SQLiteRestores, SQLiteMigrations,
    SQLiteOperations,
):
    """SQLite catalog (WAL mode, one short connection per operation, safe across processes).

    Parameters
    ----------
    path : str or Path
        Database file (a plain path, ``sqlite:///...`` or ``file:///...``); its
        directory is created.

    Raises
    ------
    ConfigError
        For a location that is not a SQLite file (another URL scheme, a directory).
    CatalogCorruptError
        If the file is not a readable SQLite catalog.

    Examples
    --------
    >>> catalog = SQLiteCatalog("/tmp/mg-doc/catalog.sqlite")  # doctest: +SKIP
    >>> catalog.current_entries()  # doctest: +SKIP
    []
    """

    def __init__(self, path: str | Path) -> None:
        self.path = sqlite_path(path)
        if self.path.is_dir():
            raise ConfigError(f"catalog {str(self.path)!r} is a directory; give a file path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with connect(self.path) as con:
                self.has_rtree = ensure_schema(con)
        except sqlite3.DatabaseError as exc:
            raise CatalogCorruptError(
                f"catalog {self.path} is unreadable ({exc}); rebuild it with "
                "memories_geo.RecoveryManager(...).rebuild_catalog() or "
                "`memories-geo recover --rebuild-catalog`"
            ) from exc

    def check(self) -> None:
        """Raise :class:`CatalogCorruptError` unless SQLite's integrity check passes."""
        try:
            with connect(self.path) as con:
                (result,) = con.execute("PRAGMA quick_check").fetchone()
                con.execute("SELECT COUNT(*) FROM versions").fetchone()
        except sqlite3.DatabaseError as exc:
            raise CatalogCorruptError(f"catalog {self.path} is unreadable: {exc}") from exc
        if result != "ok":
            raise CatalogCorruptError(f"catalog {self.path} failed its integrity check: {result}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): all or nothing."""
        with write_transaction(self.path) as con:
            yield con

    # -- writing -----------------------------------------------------------------

    def stage(
        self, *, key: str, version_id: str, tier: str, format: str, kind: str, path: str, uri: str,
        storage_class: str | None = None,
    ) -> StagedVersion:
        """Record the intent to write a version (so a crash leaves a findable orphan).

        ``storage_class`` is the class (S3), storage class (GCS) or access tier (Azure)
        its objects are given, recorded with the version.
        """
        created, writer = utc_now(), writer_id()
        with write_transaction(self.path) as con:
            cur = con.execute(
                "INSERT INTO versions (key, version_id, status, tier, format, kind, path, uri, "
                "created_at, writer, storage_class) VALUES (?, ?, 'staged', ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, version_id, tier, format, kind, path, uri, created, writer, storage_class),
            )
            pk = int(cur.lastrowid or 0)
        return StagedVersion(pk, key, version_id, tier, format, kind, path, created, writer, storage_class)

    def commit(
        self, staged: StagedVersion, row: Mapping[str, Any], *, exclusive: bool = False,
        audit: MutableMapping[str, Any] | None = None,
    ) -> Entry:
        """Make a staged version the key's current one, in one transaction.

        ``row`` is what :func:`version_row` made of the written version; ``audit``, a
        record appended to the audit log in the same transaction (its ``version``,
        ``version_id``, ``pointers`` and ``seq`` are filled in).

        Raises
        ------
        KeyExistsError
            With ``exclusive=True`` when the key already has a current version
            (the staged row is left for the caller to discard).
        """
        with write_transaction(self.path) as con:
            return _commit_row(con, staged, row, exclusive=exclusive, audit=audit, rtree=self.has_rtree)

    def commit_many(
        self,
        commits: Sequence[tuple[StagedVersion, Mapping[str, Any], bool, MutableMapping[str, Any] | None]],
        deletions: Sequence[tuple[str, int | None, MutableMapping[str, Any] | None]] = (),
    ) -> tuple[list[Entry], list[Entry], list[Entry]]:
        """Apply deletions, then commit staged versions, all in one transaction: all or nothing.

        Each deletion ``(key, version, audit)`` is :meth:`remove_key` (``version`` is
        ``None``) or :meth:`remove_version`; each commit ``(staged, row, exclusive,
        audit)`` is :meth:`commit`, in the order given (a key committed twice ends at
        its last version). Audit records are appended in that order, in the same
        transaction. Any error (:class:`KeyExistsError` for an exclusive key that
        exists, :class:`KeyNotFoundError` for a deletion of a missing key) changes
        nothing and leaves the staged rows for the caller to discard.

        Returns
        -------
        committed, removed, purge : list of Entry
            The committed versions in order, every version the deletions removed, and
            those whose data is no longer referenced (for the caller to delete).
        """
        removed: list[Entry] = []
        purge: list[Entry] = []
        with write_transaction(self.path) as con:
            for key, version, audit in deletions:
                if version is None:
                    gone, unreferenced = _remove_key(con, key, audit, rtree=self.has_rtree)
                else:
                    entry, free = _remove_version(con, key, version, audit, rtree=self.has_rtree)
                    gone, unreferenced = [entry], [entry] if free else []
                removed += gone
                purge += unreferenced
            committed = [
                _commit_row(con, staged, row, exclusive=exclusive, audit=audit, rtree=self.has_rtree)
                for staged, row, exclusive, audit in commits
            ]
        return committed, removed, purge

    def revert_commit(self, entry: Entry, audit: MutableMapping[str, Any] | None = None) -> bool:
        """Undo the commit of ``entry`` (its publication failed): forget the version.

        When it is still current, the key points back to its previous version, or
        disappears if it had none. Returns whether the data is no longer referenced
        (a checkpoint taken in between keeps it, retired), for the caller to delete.
        """
        with write_transaction(self.path) as con:
            pk = con.execute("SELECT id FROM versions WHERE version_id = ?", (entry.version_id,)).fetchone()
            if pk is None:
                return False
            pointers: dict[str, str | None] | None = None
            if current_pk(con, entry.key) == pk[0]:
                previous = con.execute(
                    "SELECT id, version_id FROM versions WHERE key = ? AND status = 'committed' AND id != ? "
                    "ORDER BY version DESC LIMIT 1", (entry.key, pk[0]),
                ).fetchone()
                if previous is None:
                    con.execute("DELETE FROM keys WHERE key = ?", (entry.key,))
                else:
                    set_current(con, entry.key, previous[0])
                pointers = {entry.key: None if previous is None else previous[1]}
            purge = retire_or_delete(con, [entry], rtree=self.has_rtree)
            if audit is not None:
                audit.update(key=entry.key, version=entry.version, version_id=entry.version_id,
                             pointers=pointers)
                insert_audit(con, audit)
        return bool(purge)

    def discard(self, staged: StagedVersion) -> None:
        """Forget a staged version that will never be committed."""
        with write_transaction(self.path) as con:
            con.execute("DELETE FROM versions WHERE id = ? AND status = 'staged'", (staged.pk,))

    def staged_versions(self) -> list[StagedVersion]:
        """Versions staged and never committed (orphans unless a write is in progress)."""
        with connect(self.path) as con:
            rows = con.execute(
                "SELECT id, key, version_id, tier, format, kind, path, created_at, writer, storage_class "
                "FROM versions WHERE status = 'staged' ORDER BY id"
            ).fetchall()
        return [StagedVersion(*row) for row in rows]

    def touch(self, entry: Entry) -> None:
        """Record an access (time and count) to ``entry``'s version."""
        with write_transaction(self.path) as con:
            con.execute(
                "UPDATE versions SET last_accessed_at = ?, access_count = access_count + 1 "
                "WHERE key = ? AND version = ?",
                (utc_now(), entry.key, entry.version),
            )

    def remove_key(
        self, key: str, audit: MutableMapping[str, Any] | None = None
    ) -> tuple[list[Entry], list[Entry]]:
        """Remove ``key`` and its versions from the catalog, in one transaction.

        ``audit`` is appended to the audit log in the same transaction.

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
        with write_transaction(self.path) as con:
            return _remove_key(con, key, audit, rtree=self.has_rtree)

    def remove_version(
        self, key: str, version: int, audit: MutableMapping[str, Any] | None = None
    ) -> tuple[Entry, bool]:
        """Remove one non-current version from the catalog (retired if a checkpoint pins it).

        ``audit`` is appended to the audit log in the same transaction.

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
        with write_transaction(self.path) as con:
            return _remove_version(con, key, version, audit, rtree=self.has_rtree)

    def forget(self, entries: Sequence[Entry]) -> None:
        """Delete the rows of versions (not their data)."""
        with write_transaction(self.path) as con:
            delete_versions(con, [pk_of(con, e) for e in entries], rtree=self.has_rtree)

    # -- verification fingerprints ------------------------------------------------

    def set_stat_fingerprint(self, version_id: str, fingerprint: str | None) -> None:
        """Remember the file listing (sizes, times) a version had when last fully verified."""
        with write_transaction(self.path) as con:
            con.execute("UPDATE versions SET stat_fingerprint = ? WHERE version_id = ?",
                        (fingerprint, version_id))

    def stat_fingerprints(self, version_ids: Sequence[str]) -> dict[str, str]:
        """Recorded listing fingerprints of many versions (those that have one)."""
        wanted = set(version_ids)
        with connect(self.path) as con:
            rows = con.execute(
                "SELECT version_id, stat_fingerprint FROM versions WHERE stat_fingerprint IS NOT NULL"
            ).fetchall()
        return {vid: fp for vid, fp in rows if vid in wanted}

    def stat_fingerprint(self, version_id: str) -> str | None:
        """Listing fingerprint recorded by :meth:`set_stat_fingerprint`."""
        with connect(self.path) as con:
            row = con.execute("SELECT stat_fingerprint FROM versions WHERE version_id = ?",
                              (version_id,)).fetchone()
        return None if row is None else row[0]

    # -- reading -----------------------------------------------------------------

    def current(self, key: str) -> Entry:
        """The current version of ``key``.

        Raises
        ------
        KeyNotFoundError
            If the key does not exist (the message suggests close keys).
        """
        with connect(self.path) as con:
            pk = current_pk(con, key)
            if pk is None:
                raise KeyNotFoundError(not_found(con, key))
            return entries(con, "v.id = ?", (pk,))[0]

    def is_current(self, entry: Entry) -> bool:
        """Whether ``entry`` is its key's current version right now."""
        with connect(self.path) as con:
            row = con.execute(
                "SELECT 1 FROM keys k JOIN versions v ON v.id = k.current_pk "
                "WHERE k.key = ? AND v.version_id = ?", (entry.key, entry.version_id),
            ).fetchone()
        return row is not None

    def get(self, key: str, version: int | None = None) -> Entry:
        """A given version of ``key`` (the current one when ``version`` is ``None``)."""
        if version is None:
            return self.current(key)
        with connect(self.path) as con:
            found = entries(con, _COMMITTED + " AND v.version = ?", (key, int(version)))
            if not found:
                known = [e.version for e in entries(con, _COMMITTED, (key,))]
                raise KeyNotFoundError(
                    f"key {key!r} has no version {version}; versions: {known or 'none'}"
                )
            return found[0]

    def versions(self, key: str) -> list[Entry]:
        """Every committed version of ``key``, oldest first."""
        with connect(self.path) as con:
            found = entries(con, _COMMITTED, (key,))
            if not found:
                raise KeyNotFoundError(not_found(con, key))
            return found

    def current_entries(self) -> list[Entry]:
        """The current version of every key, sorted by key."""
        with connect(self.path) as con:
            return entries(con, "v.id IN (SELECT current_pk FROM keys)", ())

    def all_versions(self, *, include_retired: bool = False) -> list[Entry]:
        """Every committed version of every key (and retired ones if asked)."""
        where = "v.status != 'staged'" if include_retired else "v.status = 'committed'"
        with connect(self.path) as con:
            return entries(con, where, ())

    def stored_paths(self) -> set[tuple[str, str]]:
        """``(tier, path)`` of every version the catalog knows, staged, retired and being moved."""
        with connect(self.path) as con:
            known = {(t, p) for t, p in con.execute("SELECT tier, path FROM versions")}
            return known | {(t, p) for t, p in con.execute("SELECT tier, path FROM moves")}

    def manifest(self, entry: Entry) -> Manifest:
        """Checksum manifest of ``entry``'s version."""
        with connect(self.path) as con:
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
        be ``None``; entries without a time range do not match); ``key`` is a glob;
        ``tags`` must all be present. See :class:`SearchFilter`.
        """
        search = SearchFilter.build(bbox=bbox, time=time, tier=tier, kind=kind, key=key, tags=tags,
                                    all_versions=all_versions)
        where, params = sqlite_where(search, rtree=self.has_rtree)
        with connect(self.path) as con:
            found = entries(con, where, params)
        return [e for e in found if search.keep(e)]


def _commit_row(
    con: sqlite3.Connection, staged: StagedVersion, row: Mapping[str, Any], *, exclusive: bool,
    audit: MutableMapping[str, Any] | None, rtree: bool,
) -> Entry:
    if exclusive and current_pk(con, staged.key) is not None:
        raise KeyExistsError(exists_message(staged.key))
    values = {c: row[c] for c in COMMIT_COLUMNS}
    version = next_version(con, staged.key)
    con.execute(
        "UPDATE versions SET status = 'committed', version = ?, "  # noqa: S608
        + ", ".join(f"{c} = ?" for c in values) + " WHERE id = ?",
        (version, *values.values(), staged.pk),
    )
    con.execute("INSERT INTO manifests (version_pk, manifest) VALUES (?, ?)",
                (staged.pk, row["manifest"]))
    if rtree:
        index_bbox(con, staged.pk, row)
    set_current(con, staged.key, staged.pk)
    if audit is not None:
        audit.update(key=staged.key, version=version, version_id=staged.version_id,
                     pointers={staged.key: staged.version_id})
        insert_audit(con, audit)
    return entries(con, "v.id = ?", (staged.pk,))[0]


def _remove_key(
    con: sqlite3.Connection, key: str, audit: MutableMapping[str, Any] | None, *, rtree: bool
) -> tuple[list[Entry], list[Entry]]:
    if current_pk(con, key) is None:
        raise KeyNotFoundError(not_found(con, key))
    removed = entries(con, _COMMITTED, (key,))
    con.execute("DELETE FROM keys WHERE key = ?", (key,))
    purge = retire_or_delete(con, removed, rtree=rtree)
    if audit is not None:
        audit.update(key=key, pointers={key: None})
        insert_audit(con, audit)
    return removed, purge


def _remove_version(
    con: sqlite3.Connection, key: str, version: int, audit: MutableMapping[str, Any] | None, *, rtree: bool
) -> tuple[Entry, bool]:
    found = entries(con, _COMMITTED + " AND v.version = ?", (key, version))
    if not found:
        raise KeyNotFoundError(f"key {key!r} has no version {version}")
    if current_pk(con, key) == pk_of(con, found[0]):
        raise ValueError(
            f"version {version} is the current version of {key!r}; delete the key "
            "instead, or save a newer version first"
        )
    purge = retire_or_delete(con, found, rtree=rtree)
    if audit is not None:
        audit.update(key=key, version=version, version_id=found[0].version_id)
        insert_audit(con, audit)
    return found[0], bool(purge)
