"""The PostgreSQL catalog's schema: tables, the GiST bbox index, and migrations between versions.

The tables mirror the SQLite catalog's (:mod:`memories_geo.catalog.schema`) column for
column, with the same value types (timestamps as ISO 8601 text, structured values as
JSON text), so rows move between the two unchanged. The bbox index is a GiST index over
a generated native ``box`` column: no extension (PostGIS) is needed.

The schema version is kept in ``meta``. Opening a catalog creates what is missing and then
applies :data:`MIGRATIONS` from the stored version up to :data:`SCHEMA_VERSION`, in one
transaction holding an advisory lock, so several processes opening the same catalog at
once do the work once; a catalog written by a newer memories_geo is refused, never
downgraded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from memories_geo.catalog.postgres.connection import DEFAULT_SCHEMA, PostgresConnections, split_catalog_url
from memories_geo.errors import CatalogCorruptError, ConfigError

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "DDL_LOCK",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "TABLES",
    "VERSION_ORDER",
    "ensure_schema",
    "set_aside_catalog",
]

SCHEMA_VERSION = 1

#: Statements (templates over ``{table}`` names) taking a catalog from version ``n`` to ``n + 1``.
MIGRATIONS: Mapping[int, Sequence[str]] = {}

#: Advisory-lock name taken around schema creation and migration.
DDL_LOCK = "memories_geo.catalog.ddl"

#: Columns of ``versions`` in table order (as SQLite's ``SELECT v.*`` returns them, less ``id``).
VERSION_ORDER = (
    "key", "version", "version_id", "status", "tier", "format", "kind", "path", "uri", "crs",
    "minx", "miny", "maxx", "maxy", "native_bbox", "time_start", "time_end", "variables", "shape",
    "size_bytes", "checksum", "object_info", "attrs", "tags", "created_at", "writer",
    "stat_fingerprint", "last_accessed_at", "access_count", "storage_class",
)

#: Every table of the catalog, in creation order.
TABLES = (
    "meta", "versions", "manifests", "keys", "checkpoints", "checkpoint_versions", "audit",
    "operations", "alert_events", "restores", "moves", "migration_jobs", "migration_items",
)

_DDL = (
    'CREATE TABLE IF NOT EXISTS {meta} (name TEXT COLLATE "C" PRIMARY KEY, value TEXT COLLATE "C" NOT NULL)',
    """CREATE TABLE IF NOT EXISTS {versions} (
    id BIGSERIAL PRIMARY KEY,
    key TEXT COLLATE "C" NOT NULL,
    version INTEGER,
    version_id TEXT COLLATE "C" NOT NULL UNIQUE,
    status TEXT COLLATE "C" NOT NULL CHECK (status IN ('staged', 'committed', 'retired')),
    tier TEXT COLLATE "C" NOT NULL,
    format TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    path TEXT COLLATE "C" NOT NULL,
    uri TEXT COLLATE "C" NOT NULL,
    crs TEXT COLLATE "C",
    minx DOUBLE PRECISION, miny DOUBLE PRECISION, maxx DOUBLE PRECISION, maxy DOUBLE PRECISION,
    native_bbox TEXT COLLATE "C",
    time_start TEXT COLLATE "C",
    time_end TEXT COLLATE "C",
    variables TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    shape TEXT COLLATE "C" NOT NULL DEFAULT '{{}}',
    size_bytes BIGINT NOT NULL DEFAULT 0,
    checksum TEXT COLLATE "C" NOT NULL DEFAULT '',
    object_info TEXT COLLATE "C" NOT NULL DEFAULT '{{}}',
    attrs TEXT COLLATE "C" NOT NULL DEFAULT '{{}}',
    tags TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    created_at TEXT COLLATE "C" NOT NULL,
    writer TEXT COLLATE "C" NOT NULL DEFAULT '',
    stat_fingerprint TEXT COLLATE "C",
    last_accessed_at TEXT COLLATE "C",
    access_count BIGINT NOT NULL DEFAULT 0,
    storage_class TEXT COLLATE "C",
    bbox BOX GENERATED ALWAYS AS (
        CASE WHEN minx IS NULL OR miny IS NULL OR maxx IS NULL OR maxy IS NULL THEN NULL
        ELSE box(point(minx, miny), point(maxx, maxy)) END
    ) STORED,
    UNIQUE (key, version)
)""",
    "CREATE INDEX IF NOT EXISTS {versions_key} ON {versions} (key, status)",
    "CREATE INDEX IF NOT EXISTS {versions_time} ON {versions} (time_start, time_end)",
    "CREATE INDEX IF NOT EXISTS {versions_bbox} ON {versions} USING gist (bbox) "
    "WHERE status <> 'staged'",
    """CREATE TABLE IF NOT EXISTS {manifests} (
    version_pk BIGINT PRIMARY KEY REFERENCES {versions} (id) ON DELETE CASCADE,
    manifest TEXT COLLATE "C" NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS {keys} (
    key TEXT COLLATE "C" PRIMARY KEY,
    current_pk BIGINT NOT NULL REFERENCES {versions} (id)
)""",
    """CREATE TABLE IF NOT EXISTS {checkpoints} (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL CHECK (kind IN ('manual', 'auto', 'safety')),
    n_keys INTEGER NOT NULL,
    size_bytes BIGINT NOT NULL,
    checksum TEXT COLLATE "C" NOT NULL,
    message TEXT COLLATE "C" NOT NULL DEFAULT '',
    backed_up BOOLEAN NOT NULL DEFAULT FALSE
)""",
    "CREATE INDEX IF NOT EXISTS {checkpoints_name} ON {checkpoints} (name, created_at)",
    """CREATE TABLE IF NOT EXISTS {checkpoint_versions} (
    checkpoint_id TEXT COLLATE "C" NOT NULL REFERENCES {checkpoints} (id) ON DELETE CASCADE,
    key TEXT COLLATE "C" NOT NULL,
    version_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (checkpoint_id, key)
)""",
    "CREATE INDEX IF NOT EXISTS {checkpoint_versions_vid} ON {checkpoint_versions} (version_id)",
    """CREATE TABLE IF NOT EXISTS {audit} (
    seq BIGSERIAL PRIMARY KEY,
    at TEXT COLLATE "C" NOT NULL,
    "user" TEXT NOT NULL,
    host TEXT COLLATE "C" NOT NULL,
    pid INTEGER NOT NULL,
    operation TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C",
    version INTEGER,
    version_id TEXT COLLATE "C",
    outcome TEXT COLLATE "C" NOT NULL,
    detail TEXT COLLATE "C" NOT NULL DEFAULT '',
    pointers TEXT COLLATE "C",
    replace_all BOOLEAN NOT NULL DEFAULT FALSE
)""",
    "CREATE INDEX IF NOT EXISTS {audit_key} ON {audit} (key)",
    """CREATE TABLE IF NOT EXISTS {operations} (
    id BIGSERIAL PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    operation TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C",
    version INTEGER,
    tier TEXT COLLATE "C",
    format TEXT COLLATE "C",
    seconds DOUBLE PRECISION NOT NULL,
    bytes BIGINT NOT NULL DEFAULT 0,
    requests BIGINT NOT NULL DEFAULT 0,
    outcome TEXT COLLATE "C" NOT NULL,
    error TEXT COLLATE "C" NOT NULL DEFAULT '',
    detail TEXT COLLATE "C" NOT NULL DEFAULT '{{}}'
)""",
    "CREATE INDEX IF NOT EXISTS {operations_at} ON {operations} (at)",
    """CREATE TABLE IF NOT EXISTS {alert_events} (
    id BIGSERIAL PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    event TEXT COLLATE "C" NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS {alert_events_name} ON {alert_events} (name, at)",
    """CREATE TABLE IF NOT EXISTS {restores} (
    version_id TEXT COLLATE "C" PRIMARY KEY,
    state TEXT COLLATE "C" NOT NULL,
    requested_at TEXT COLLATE "C",
    days INTEGER,
    restore_tier TEXT COLLATE "C",
    until TEXT COLLATE "C",
    checked_at TEXT COLLATE "C" NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS {moves} (
    version_id TEXT COLLATE "C" PRIMARY KEY,
    tier TEXT COLLATE "C" NOT NULL,
    path TEXT COLLATE "C" NOT NULL,
    uri TEXT COLLATE "C" NOT NULL,
    writer TEXT COLLATE "C" NOT NULL,
    started_at TEXT COLLATE "C" NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS {migration_jobs} (
    id TEXT COLLATE "C" PRIMARY KEY,
    spec TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL CHECK (state IN ('running', 'interrupted', 'completed', 'failed')),
    created_at TEXT COLLATE "C" NOT NULL,
    started_at TEXT COLLATE "C",
    finished_at TEXT COLLATE "C",
    writer TEXT COLLATE "C" NOT NULL DEFAULT '',
    seconds DOUBLE PRECISION NOT NULL DEFAULT 0
)""",
    """CREATE TABLE IF NOT EXISTS {migration_items} (
    job_id TEXT COLLATE "C" NOT NULL REFERENCES {migration_jobs} (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    version_id TEXT COLLATE "C" NOT NULL,
    size_bytes BIGINT NOT NULL,
    action TEXT COLLATE "C" NOT NULL CHECK (action IN ('move', 'copy', 'convert')),
    source_format TEXT COLLATE "C" NOT NULL,
    target_format TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL CHECK (state IN ('pending', 'copying', 'done', 'failed', 'skipped')),
    bytes_done BIGINT NOT NULL DEFAULT 0,
    target_version_id TEXT COLLATE "C",
    error TEXT COLLATE "C" NOT NULL DEFAULT '',
    updated_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (job_id, key)
)""",
)


def stored_version(cur: psycopg.Cursor[Any], db: PostgresConnections) -> int | None:
    """Schema version recorded in the catalog (``None`` when it has no ``meta`` table yet)."""
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (db.qualified("meta"),))
    row = cur.fetchone()
    if not (row and row[0]):
        return None
    cur.execute(db.sql("SELECT value FROM {meta} WHERE name = 'schema_version'"))
    found = cur.fetchone()
    return None if found is None else int(found[0])


def _refuse_newer(stored: int | None, where: str) -> None:
    if stored is not None and stored > SCHEMA_VERSION:
        raise ConfigError(
            f"the catalog {where} has schema version {stored}, newer than the {SCHEMA_VERSION} this "
            "memories_geo knows; upgrade memories_geo to use it"
        )


def _missing(cur: psycopg.Cursor[Any], db: PostgresConnections) -> list[str]:
    """Tables (and the bbox index) of the catalog that do not exist in its schema."""
    names = [*TABLES, "versions_bbox"]
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = ANY(%s)",
        (db.schema, names),
    )
    found = {row[0] for row in cur.fetchall()}
    return [name for name in names if name not in found]


def ensure_schema(db: PostgresConnections) -> None:
    """Create the schema and what is missing in it, then migrate to :data:`SCHEMA_VERSION`.

    Nothing is locked when the catalog is complete and at the current version. Otherwise the
    work runs in one transaction holding a transaction-level advisory lock, so processes
    opening a new catalog at the same time create it once. Tables added by a newer
    release are created; a catalog that lost its core tables (``versions``, ``keys``,
    ``meta``) is damaged and refused.

    Raises
    ------
    ConfigError
        If the catalog has a newer schema than this version of memories_geo knows.
    CatalogCorruptError
        If its core tables are gone (rebuild it from the version records).
    """
    with db.read() as cur:
        stored = stored_version(cur, db)
        _refuse_newer(stored, db.label)
        missing = _missing(cur, db)
    if len(missing) < len(TABLES) + 1 and (stored is None or "versions" in missing or "keys" in missing):
        raise CatalogCorruptError(
            f"catalog {db.label} is damaged: {missing} missing; rebuild it with "
            "memories_geo.RecoveryManager(...).rebuild_catalog() or `memories-geo recover --rebuild-catalog`"
        )
    if stored == SCHEMA_VERSION and not missing:
        return

    def create(cur: psycopg.Cursor[Any]) -> None:
        from psycopg import sql

        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))", (DDL_LOCK, db.schema))
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(db.schema)))
        found = stored_version(cur, db)
        _refuse_newer(found, db.label)
        for version in range(found or SCHEMA_VERSION, SCHEMA_VERSION):
            for statement in MIGRATIONS[version]:
                cur.execute(db.sql(statement))
        for statement in _DDL:
            cur.execute(db.sql(statement))
        cur.execute(
            db.sql(
                "INSERT INTO {meta} (name, value) VALUES ('schema_version', %s) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value"
            ),
            (str(SCHEMA_VERSION),),
        )

    db.write(create, lock=False)


def set_aside_catalog(url: str, suffix: str) -> str | None:
    """Rename a PostgreSQL catalog's schema out of the way (before a rebuild); return its new place.

    The schema becomes ``{schema}_{suffix}`` (the schema cut so the name fits 63 bytes);
    nothing happens to a schema that does not exist (``None`` is returned). The catalog
    is not opened, so a damaged one can be set aside.

    Examples
    --------
    >>> set_aside_catalog("postgresql://me@db/geo", "corrupt_20240101T000000")  # doctest: +SKIP
    'postgresql://me@db/geo#memories_geo_catalog_corrupt_20240101T000000'
    """
    from psycopg import sql

    conninfo, named = split_catalog_url(url)
    schema = named or DEFAULT_SCHEMA
    target = f"{schema.encode()[:62 - len(suffix.encode())].decode('utf-8', 'ignore')}_{suffix}"
    db = PostgresConnections(conninfo, schema, TABLES)

    def work(cur: psycopg.Cursor[Any]) -> bool:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))", (DDL_LOCK, schema))
        cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        if cur.fetchone() is None:
            return False
        rename = sql.SQL("ALTER SCHEMA {} RENAME TO {}")
        cur.execute(rename.format(sql.Identifier(schema), sql.Identifier(target)))
        return True

    try:
        moved = db.write(work, lock=False)
    finally:
        db.close()
    return f"{db.label.rsplit('#', 1)[0]}#{target}" if moved else None
