"""The SQLite catalog's schema: tables, the R*Tree bbox index, and migrations between versions.

The schema version is kept in ``meta``. Opening a catalog creates what is missing and then
applies :data:`MIGRATIONS` from the stored version up to :data:`SCHEMA_VERSION`, in one
transaction; a catalog written by a newer memories_geo is refused, never downgraded.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from memories_geo.errors import ConfigError
from memories_geo.sqlite_wal import use_wal

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "ensure_schema", "stored_version"]

SCHEMA_VERSION = 2

#: Statements taking a catalog from schema version ``n`` to ``n + 1``, by ``n``.
MIGRATIONS: Mapping[int, Sequence[str]] = {
    1: ("ALTER TABLE versions ADD COLUMN storage_class TEXT",),
}

TABLES = """
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
    storage_class TEXT,
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
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    user TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    operation TEXT NOT NULL,
    key TEXT,
    version INTEGER,
    version_id TEXT,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    pointers TEXT,
    replace_all INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS audit_key ON audit (key);
CREATE TABLE IF NOT EXISTS operations (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    operation TEXT NOT NULL,
    key TEXT,
    version INTEGER,
    tier TEXT,
    format TEXT,
    seconds REAL NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS operations_at ON operations (at);
CREATE TABLE IF NOT EXISTS alert_events (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    name TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_events_name ON alert_events (name, at);
CREATE TABLE IF NOT EXISTS restores (
    version_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    requested_at TEXT,
    days INTEGER,
    restore_tier TEXT,
    until TEXT,
    checked_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS moves (
    version_id TEXT PRIMARY KEY,
    tier TEXT NOT NULL,
    path TEXT NOT NULL,
    uri TEXT NOT NULL,
    writer TEXT NOT NULL,
    started_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS migration_jobs (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'interrupted', 'completed', 'failed')),
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    writer TEXT NOT NULL DEFAULT '',
    seconds REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS migration_items (
    job_id TEXT NOT NULL REFERENCES migration_jobs (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    key TEXT NOT NULL,
    version_id TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('move', 'copy', 'convert')),
    source_format TEXT NOT NULL,
    target_format TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'copying', 'done', 'failed', 'skipped')),
    bytes_done INTEGER NOT NULL DEFAULT 0,
    target_version_id TEXT,
    error TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL,
    PRIMARY KEY (job_id, key)
);
"""

TABLE_STATEMENTS = tuple(s.strip() for s in TABLES.split(";") if s.strip())

RTREE = "CREATE VIRTUAL TABLE versions_bbox USING rtree (id, minx, maxx, miny, maxy)"
RTREE_FILL = (
    "INSERT INTO versions_bbox (id, minx, maxx, miny, maxy) "
    "SELECT id, minx, maxx, miny, maxy FROM versions WHERE minx IS NOT NULL AND status != 'staged'"
)


def ensure_schema(con: sqlite3.Connection) -> bool:
    """Create what is missing and migrate to :data:`SCHEMA_VERSION`; return whether R*Tree is used.

    ``con`` must be in autocommit mode (``isolation_level=None``): the work runs in one
    ``BEGIN IMMEDIATE`` transaction, so concurrent openers do it once.

    Raises
    ------
    ConfigError
        If the catalog has a newer schema than this version of memories_geo knows.
    sqlite3.DatabaseError
        If the file is not a SQLite database.
    """
    use_wal(con)
    con.execute("BEGIN IMMEDIATE")
    try:
        rtree = _create_or_migrate(con)
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return rtree


def stored_version(con: sqlite3.Connection) -> int | None:
    """Schema version recorded in the catalog (``None`` for a new, empty database)."""
    has_meta = con.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if not has_meta:
        return None
    row = con.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    return None if row is None else int(row[0])


def _create_or_migrate(con: sqlite3.Connection) -> bool:
    stored = stored_version(con)
    if stored is None and con.execute("SELECT 1 FROM sqlite_master WHERE name = 'versions'").fetchone():
        stored = 1
    if stored is not None and stored > SCHEMA_VERSION:
        raise ConfigError(
            f"the catalog has schema version {stored}, newer than the {SCHEMA_VERSION} this "
            "memories_geo knows; upgrade memories_geo to use it"
        )
    for version in range(stored or SCHEMA_VERSION, SCHEMA_VERSION):
        for statement in MIGRATIONS[version]:
            con.execute(statement)
    for statement in TABLE_STATEMENTS:
        con.execute(statement)
    con.execute(
        "INSERT INTO meta (name, value) VALUES ('schema_version', ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (str(SCHEMA_VERSION),),
    )
    return _ensure_rtree(con)


def _ensure_rtree(con: sqlite3.Connection) -> bool:
    """Use an R*Tree bbox index when SQLite has the module, filling it when it is new."""
    exists = con.execute(
        "SELECT 1 FROM sqlite_master WHERE name = 'versions_bbox'"
    ).fetchone()
    try:
        if exists:
            con.execute("SELECT 1 FROM versions_bbox LIMIT 1")
            return True
        con.execute(RTREE)
    except sqlite3.OperationalError:
        return False
    con.execute(RTREE_FILL)
    return True
