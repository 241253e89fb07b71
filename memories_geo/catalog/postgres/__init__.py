"""The PostgreSQL catalog: the SQLite catalog's API and guarantees, shared by many machines.

One module per concern, mirroring the SQLite catalog's parts:

- :mod:`~memories_geo.catalog.postgres.catalog`: :class:`PostgresCatalog` (commit protocol,
  reads, search);
- :mod:`~memories_geo.catalog.postgres.connection`: the pool, locked write transactions
  with retries, URL handling and redaction;
- :mod:`~memories_geo.catalog.postgres.schema`: tables, the GiST bbox index, migrations;
- :mod:`~memories_geo.catalog.postgres.queries`: shared SQL (rows, pointers, search, globs);
- ``audit``, ``checkpoints``, ``migrations``, ``moves``, ``operations``, ``restores``: the
  tables of each concern.

psycopg and psycopg_pool are imported on first use, never when this package is imported.
"""

from memories_geo.catalog.postgres.catalog import PostgresCatalog
from memories_geo.catalog.postgres.connection import (
    DEFAULT_SCHEMA,
    POSTGRES_SCHEMES,
    is_postgres_url,
    split_catalog_url,
)
from memories_geo.catalog.postgres.schema import SCHEMA_VERSION, set_aside_catalog

__all__ = [
    "DEFAULT_SCHEMA",
    "POSTGRES_SCHEMES",
    "SCHEMA_VERSION",
    "PostgresCatalog",
    "is_postgres_url",
    "set_aside_catalog",
    "split_catalog_url",
]
