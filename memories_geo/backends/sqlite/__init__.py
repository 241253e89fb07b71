"""SQLite backend: version tables in one SQLite database file with SpatiaLite.

- :mod:`~memories_geo.backends.sqlite.connect`: connections (WAL, busy timeout, the
  SpatiaLite extension loaded on each);
- :mod:`~memories_geo.backends.sqlite.backend`: :class:`SQLiteBackend` and its tables of
  record (version tables, small objects).
"""

from memories_geo.backends.sqlite.backend import (
    ACCEPTED_FORMS,
    OBJECTS_TABLE,
    REGISTRY_TABLE,
    SQLiteBackend,
    VersionTable,
    database_path,
    drop_table,
    quote,
)
from memories_geo.backends.sqlite.connect import DEFAULT_LIBRARY, INSTALL_HINT, connect, transaction

__all__ = [
    "ACCEPTED_FORMS",
    "DEFAULT_LIBRARY",
    "INSTALL_HINT",
    "OBJECTS_TABLE",
    "REGISTRY_TABLE",
    "SQLiteBackend",
    "VersionTable",
    "connect",
    "database_path",
    "drop_table",
    "quote",
    "transaction",
]
