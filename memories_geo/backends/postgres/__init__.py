"""PostgreSQL backend: version tables in one schema, found through the tier's tables of record.

- :mod:`~memories_geo.backends.postgres.names`: physical table names and safe identifiers;
- :mod:`~memories_geo.backends.postgres.pool`: connection string, lazy pool, redaction;
- :mod:`~memories_geo.backends.postgres.tables`: the tables of record (version tables,
  small objects);
- :mod:`~memories_geo.backends.postgres.backend`: :class:`PostgresBackend`.

psycopg and psycopg_pool are imported on first use, never when this package is imported.
"""

from memories_geo.backends.postgres.backend import MAX_LOAD_PARTITIONS, PostgresBackend
from memories_geo.backends.postgres.names import MAX_IDENTIFIER_BYTES, safe_identifier, table_name_for
from memories_geo.backends.postgres.tables import OBJECTS_TABLE, REGISTRY_TABLE, VersionTable

__all__ = [
    "MAX_IDENTIFIER_BYTES",
    "MAX_LOAD_PARTITIONS",
    "OBJECTS_TABLE",
    "REGISTRY_TABLE",
    "PostgresBackend",
    "VersionTable",
    "safe_identifier",
    "table_name_for",
]
