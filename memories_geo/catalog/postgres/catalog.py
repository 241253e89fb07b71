"""The PostgreSQL catalog: one collection shared by many processes on many machines."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from memories_geo.catalog.model import COMMIT_COLUMNS, StagedVersion, exists_message, utc_now, writer_id
from memories_geo.catalog.postgres.audit import PostgresAuditLog, insert_audit
from memories_geo.catalog.postgres.checkpoints import PostgresCheckpointTables
from memories_geo.catalog.postgres.connection import DEFAULT_SCHEMA, PostgresConnections, split_catalog_url
from memories_geo.catalog.postgres.migrations import PostgresMigrations
from memories_geo.catalog.postgres.moves import PostgresMoves
from memories_geo.catalog.postgres.operations import PostgresOperations
from memories_geo.catalog.postgres.queries import (
    current_pk,
    delete_versions,
    entries,
    next_version,
    not_found,
    pk_of,
    postgres_where,
    retire_or_delete,
    set_current,
)
from memories_geo.catalog.postgres.restores import PostgresRestores
from memories_geo.catalog.postgres.schema import TABLES, ensure_schema
from memories_geo.catalog.search import SearchFilter
from memories_geo.entry import Entry
from memories_geo.errors import CatalogCorruptError, KeyExistsError, KeyNotFoundError
from memories_geo.footprint import BBox
from memories_geo.integrity import Manifest

if TYPE_CHECKING:
    import psycopg

    from memories_geo.catalog.postgres.connection import PostgresConnections

__all__ = ["DEFAULT_SCHEMA", "PostgresCatalog"]

_COMMITTED = "v.key = %s AND v.status = 'committed'"


class PostgresCatalog(
    PostgresCheckpointTables, PostgresAuditLog, PostgresMoves, PostgresRestores, PostgresMigrations,
    PostgresOperations,
):
    """PostgreSQL catalog: the SQLite catalog's API and guarantees, shared across machines.

    Every commit is one transaction. Transactions that move current pointers (commits,
    deletions, restores, moves) hold a catalog-wide advisory lock, so concurrent
    writers on any number of machines never lose a commit, version numbers stay unique
    and gap-free per key, and audit sequence numbers follow commit order, as in SQLite.
    Footprints are searched through a GiST index; no extension is needed.

    Parameters
    ----------
    url : str
        ``postgresql://user[:password]@host[:port]/dbname`` (or ``postgres://``); a
        ``schema`` query parameter names the schema (``?schema=team_a``), other query
        parameters go to libpq (``sslmode``, ...). The password is better left to
        ``PGPASSWORD`` or ``~/.pgpass``; it is never shown.
    schema : str, optional
        Schema holding the catalog's tables (default: the URL's ``schema`` parameter,
        else ``"memories_geo_catalog"``); created, with its tables, when missing.
    options : mapping, optional
        Connection pool settings: ``min_size`` / ``max_size`` (default 1 / 4),
        ``timeout`` and ``connect_timeout`` in seconds (default 30 / 5).

    Raises
    ------
    ConfigError
        For a URL naming no database, a schema written by a newer memories_geo.
    TierUnavailableError
        When the server cannot be reached.

    Examples
    --------
    >>> catalog = PostgresCatalog("postgresql://me@db/geo?schema=team_a")  # doctest: +SKIP
    >>> catalog  # doctest: +SKIP
    PostgresCatalog('postgresql://me@db/geo', schema='team_a')
    >>> catalog.current_entries()  # doctest: +SKIP
    []
    """

    def __init__(
        self, url: str, *, schema: str | None = None, options: Mapping[str, Any] | None = None
    ) -> None:
        conninfo, named = split_catalog_url(url)
        self.schema = schema or named or DEFAULT_SCHEMA
        self._db = PostgresConnections(conninfo, self.schema, TABLES, options)
        #: Where the catalog is, for display: the URL without its password, and the schema.
        self.path = self._db.label
        ensure_schema(self._db)

    def __repr__(self) -> str:
        return f"PostgresCatalog({self._db.label.rsplit('#', 1)[0]!r}, schema={self.schema!r})"

    def check(self) -> None:
        """Raise :class:`CatalogCorruptError` unless every catalog table can be read."""
        import psycopg

        try:
            with self._db.read() as cur:
                for table in TABLES:
                    cur.execute(self._db.sql(f"SELECT 1 FROM {{{table}}} LIMIT 1"))  # noqa: S608
        except psycopg.DatabaseError as exc:
            raise CatalogCorruptError(
                f"catalog {self.path} is unreadable: {self._db.redact(str(exc))}"
            ) from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A write transaction holding the catalog's write lock: all or nothing."""
        with self._db.transaction() as con:
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

        def work(cur: psycopg.Cursor[Any]) -> int:
            cur.execute(
                self._db.sql(
                    "INSERT INTO {versions} (key, version_id, status, tier, format, kind, path, uri, "
                    "created_at, writer, storage_class) "
                    "VALUES (%s, %s, 'staged', %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
                ),
                (key, version_id, tier, format, kind, path, uri, created, writer, storage_class),
            )
            return int(cur.fetchone()[0])  # type: ignore[index]

        pk = self._db.write(work, lock=False)
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
        db = self._db
        return db.write(lambda cur: _commit_row(cur, db, staged, row, exclusive=exclusive, audit=audit))

    def commit_many(
        self,
        commits: Sequence[tuple[StagedVersion, Mapping[str, Any], bool, MutableMapping[str, Any] | None]],
        deletions: Sequence[tuple[str, int | None, MutableMapping[str, Any] | None]] = (),
    ) -> tuple[list[Entry], list[Entry], list[Entry]]:
        """Apply deletions, then commit staged versions, all in one transaction: all or nothing.

        As :meth:`memories_geo.catalog.SQLiteCatalog.commit_many`
        (deletions ``(key, version, audit)``, commits ``(staged, row, exclusive, audit)``,
        returning ``committed, removed, purge``); the transaction holds the write lock.
        """
        db = self._db

        def work(cur: psycopg.Cursor[Any]) -> tuple[list[Entry], list[Entry], list[Entry]]:
            removed: list[Entry] = []
            purge: list[Entry] = []
            for key, version, audit in deletions:
                if version is None:
                    gone, unreferenced = _remove_key(cur, db, key, audit)
                else:
                    entry, free = _remove_version(cur, db, key, version, audit)
                    gone, unreferenced = [entry], [entry] if free else []
                removed += gone
                purge += unreferenced
            committed = [_commit_row(cur, db, staged, row, exclusive=exclusive, audit=audit)
                         for staged, row, exclusive, audit in commits]
            return committed, removed, purge

        return db.write(work)

    def revert_commit(self, entry: Entry, audit: MutableMapping[str, Any] | None = None) -> bool:
        """Undo the commit of ``entry`` (its publication failed): forget the version.

        When it is still current, the key points back to its previous version, or
        disappears if it had none. Returns whether the data is no longer referenced
        (a checkpoint taken in between keeps it, retired), for the caller to delete.
        """
        db = self._db

        def work(cur: psycopg.Cursor[Any]) -> bool:
            cur.execute(db.sql("SELECT id FROM {versions} WHERE version_id = %s"), (entry.version_id,))
            found = cur.fetchone()
            if found is None:
                return False
            pointers: dict[str, str | None] | None = None
            if current_pk(cur, db, entry.key) == found[0]:
                cur.execute(
                    db.sql("SELECT id, version_id FROM {versions} WHERE key = %s AND status = 'committed' "
                           "AND id <> %s ORDER BY version DESC LIMIT 1"),
                    (entry.key, found[0]),
                )
                previous = cur.fetchone()
                if previous is None:
                    cur.execute(db.sql("DELETE FROM {keys} WHERE key = %s"), (entry.key,))
                else:
                    set_current(cur, db, entry.key, previous[0])
                pointers = {entry.key: None if previous is None else previous[1]}
            purge = retire_or_delete(cur, db, [entry])
            if audit is not None:
                audit.update(key=entry.key, version=entry.version, version_id=entry.version_id,
                             pointers=pointers)
                insert_audit(cur, db, audit)
            return bool(purge)

        return db.write(work)

    def discard(self, staged: StagedVersion) -> None:
        """Forget a staged version that will never be committed."""
        self._db.write(lambda cur: cur.execute(
            self._db.sql("DELETE FROM {versions} WHERE id = %s AND status = 'staged'"), (staged.pk,)
        ), lock=False)

    def staged_versions(self) -> list[StagedVersion]:
        """Versions staged and never committed (orphans unless a write is in progress)."""
        with self._db.read() as cur:
            cur.execute(self._db.sql(
                "SELECT id, key, version_id, tier, format, kind, path, created_at, writer, storage_class "
                "FROM {versions} WHERE status = 'staged' ORDER BY id"
            ))
            rows = cur.fetchall()
        return [StagedVersion(*row) for row in rows]

    def touch(self, entry: Entry) -> None:
        """Record an access (time and count) to ``entry``'s version."""
        self._db.write(lambda cur: cur.execute(
            self._db.sql("UPDATE {versions} SET last_accessed_at = %s, access_count = access_count + 1 "
                         "WHERE key = %s AND version = %s"),
            (utc_now(), entry.key, entry.version),
        ), lock=False)

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
        db = self._db
        return db.write(lambda cur: _remove_key(cur, db, key, audit))

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
        db = self._db
        return db.write(lambda cur: _remove_version(cur, db, key, version, audit))

    def forget(self, entries: Sequence[Entry]) -> None:
        """Delete the rows of versions (not their data)."""
        db = self._db
        db.write(lambda cur: delete_versions(cur, db, [pk_of(cur, db, e) for e in entries]))

    # -- verification fingerprints ------------------------------------------------

    def set_stat_fingerprint(self, version_id: str, fingerprint: str | None) -> None:
        """Remember the file listing (sizes, times) a version had when last fully verified."""
        self._db.write(lambda cur: cur.execute(
            self._db.sql("UPDATE {versions} SET stat_fingerprint = %s WHERE version_id = %s"),
            (fingerprint, version_id),
        ), lock=False)

    def stat_fingerprints(self, version_ids: Sequence[str]) -> dict[str, str]:
        """Recorded listing fingerprints of many versions (those that have one)."""
        with self._db.read() as cur:
            cur.execute(
                self._db.sql("SELECT version_id, stat_fingerprint FROM {versions} "
                             "WHERE stat_fingerprint IS NOT NULL AND version_id = ANY(%s)"),
                (list(version_ids),),
            )
            return dict(cur.fetchall())

    def stat_fingerprint(self, version_id: str) -> str | None:
        """Listing fingerprint recorded by :meth:`set_stat_fingerprint`."""
        with self._db.read() as cur:
            cur.execute(self._db.sql("SELECT stat_fingerprint FROM {versions} WHERE version_id = %s"),
                        (version_id,))
            row = cur.fetchone()
        return None if row is None else row[0]

    # -- reading -----------------------------------------------------------------

    def current(self, key: str) -> Entry:
        """The current version of ``key``.

        Raises
        ------
        KeyNotFoundError
            If the key does not exist (the message suggests close keys).
        """
        with self._db.read() as cur:
            pk = current_pk(cur, self._db, key)
            if pk is None:
                raise KeyNotFoundError(not_found(cur, self._db, key))
            return entries(cur, self._db, "v.id = %s", (pk,))[0]

    def is_current(self, entry: Entry) -> bool:
        """Whether ``entry`` is its key's current version right now."""
        with self._db.read() as cur:
            cur.execute(
                self._db.sql("SELECT 1 FROM {keys} k JOIN {versions} v ON v.id = k.current_pk "
                             "WHERE k.key = %s AND v.version_id = %s"),
                (entry.key, entry.version_id),
            )
            return cur.fetchone() is not None

    def get(self, key: str, version: int | None = None) -> Entry:
        """A given version of ``key`` (the current one when ``version`` is ``None``)."""
        if version is None:
            return self.current(key)
        with self._db.read() as cur:
            found = entries(cur, self._db, _COMMITTED + " AND v.version = %s", (key, int(version)))
            if not found:
                known = [e.version for e in entries(cur, self._db, _COMMITTED, (key,))]
                raise KeyNotFoundError(
                    f"key {key!r} has no version {version}; versions: {known or 'none'}"
                )
            return found[0]

    def versions(self, key: str) -> list[Entry]:
        """Every committed version of ``key``, oldest first."""
        with self._db.read() as cur:
            found = entries(cur, self._db, _COMMITTED, (key,))
            if not found:
                raise KeyNotFoundError(not_found(cur, self._db, key))
            return found

    def current_entries(self) -> list[Entry]:
        """The current version of every key, sorted by key."""
        with self._db.read() as cur:
            return entries(cur, self._db, "v.id IN (SELECT current_pk FROM {keys})")

    def all_versions(self, *, include_retired: bool = False) -> list[Entry]:
        """Every committed version of every key (and retired ones if asked)."""
        where = "v.status <> 'staged'" if include_retired else "v.status = 'committed'"
        with self._db.read() as cur:
            return entries(cur, self._db, where)

    def stored_paths(self) -> set[tuple[str, str]]:
        """``(tier, path)`` of every version the catalog knows, staged, retired and being moved."""
        with self._db.read() as cur:
            cur.execute(self._db.sql(
                "SELECT tier, path FROM {versions} UNION SELECT tier, path FROM {moves}"
            ))
            return {(t, p) for t, p in cur.fetchall()}

    def manifest(self, entry: Entry) -> Manifest:
        """Checksum manifest of ``entry``'s version."""
        with self._db.read() as cur:
            cur.execute(
                self._db.sql("SELECT m.manifest FROM {manifests} m JOIN {versions} v ON v.id = m.version_pk "
                             "WHERE v.version_id = %s"),
                (entry.version_id,),
            )
            row = cur.fetchone()
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
        footprints (through the GiST index); ``time`` is an inclusive ``(start, end)`` of
        ISO strings (either may be ``None``; entries without a time range do not match);
        ``key`` is a glob; ``tags`` must all be present. See :class:`SearchFilter`.
        """
        search = SearchFilter.build(bbox=bbox, time=time, tier=tier, kind=kind, key=key, tags=tags,
                                    all_versions=all_versions)
        where, params = postgres_where(search)
        with self._db.read() as cur:
            found = entries(cur, self._db, where, params)
        return [e for e in found if search.keep(e)]



def _commit_row(
    cur: psycopg.Cursor[Any], db: PostgresConnections, staged: StagedVersion, row: Mapping[str, Any], *,
    exclusive: bool, audit: MutableMapping[str, Any] | None,
) -> Entry:
    if exclusive and current_pk(cur, db, staged.key) is not None:
        raise KeyExistsError(exists_message(staged.key))
    values = {c: row[c] for c in COMMIT_COLUMNS}
    assignments = ", ".join(f"{c} = %s" for c in values)
    version = next_version(cur, db, staged.key)
    cur.execute(
        db.sql(f"UPDATE {{versions}} SET status = 'committed', version = %s, {assignments} "  # noqa: S608
               "WHERE id = %s"),
        (version, *values.values(), staged.pk),
    )
    cur.execute(db.sql("INSERT INTO {manifests} (version_pk, manifest) VALUES (%s, %s)"),
                (staged.pk, row["manifest"]))
    set_current(cur, db, staged.key, staged.pk)
    if audit is not None:
        audit.update(key=staged.key, version=version, version_id=staged.version_id,
                     pointers={staged.key: staged.version_id})
        insert_audit(cur, db, audit)
    return entries(cur, db, "v.id = %s", (staged.pk,))[0]


def _remove_key(
    cur: psycopg.Cursor[Any], db: PostgresConnections, key: str, audit: MutableMapping[str, Any] | None
) -> tuple[list[Entry], list[Entry]]:
    if current_pk(cur, db, key) is None:
        raise KeyNotFoundError(not_found(cur, db, key))
    removed = entries(cur, db, _COMMITTED, (key,))
    cur.execute(db.sql("DELETE FROM {keys} WHERE key = %s"), (key,))
    purge = retire_or_delete(cur, db, removed)
    if audit is not None:
        audit.update(key=key, pointers={key: None})
        insert_audit(cur, db, audit)
    return removed, purge


def _remove_version(
    cur: psycopg.Cursor[Any], db: PostgresConnections, key: str, version: int,
    audit: MutableMapping[str, Any] | None,
) -> tuple[Entry, bool]:
    found = entries(cur, db, _COMMITTED + " AND v.version = %s", (key, version))
    if not found:
        raise KeyNotFoundError(f"key {key!r} has no version {version}")
    if current_pk(cur, db, key) == pk_of(cur, db, found[0]):
        raise ValueError(
            f"version {version} is the current version of {key!r}; delete the key "
            "instead, or save a newer version first"
        )
    purge = retire_or_delete(cur, db, found)
    if audit is not None:
        audit.update(key=key, version=version, version_id=found[0].version_id)
        insert_audit(cur, db, audit)
    return found[0], bool(purge)
