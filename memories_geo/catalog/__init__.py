"""The catalog: which keys exist, their versions, footprints, checkpoints and audit log.

``Catalog`` is the SQLite catalog (:class:`~memories_geo.catalog.sqlite.SQLiteCatalog`).
The parts free of SQL (rows, staged versions, search filters, the accepted locations)
live in their own modules, shared by every catalog implementation:

- :mod:`~memories_geo.catalog.model`: rows (:func:`version_row`), :class:`StagedVersion`,
  :class:`CheckpointRow`, :func:`utc_now`, :func:`writer_id`;
- :mod:`~memories_geo.catalog.location`: catalog locations (:func:`sqlite_path`);
- :mod:`~memories_geo.catalog.search`: :class:`SearchFilter` and its SQL;
- :mod:`~memories_geo.catalog.schema`: tables and migrations;
- :mod:`~memories_geo.catalog.sqlite`: the SQLite implementation.
"""

from memories_geo.catalog.location import SUPPORTED_FORMS, sqlite_path
from memories_geo.catalog.model import (
    CheckpointRow,
    StagedVersion,
    entry_from_row,
    utc_now,
    version_row,
    writer_id,
)
from memories_geo.catalog.schema import SCHEMA_VERSION
from memories_geo.catalog.search import SearchFilter
from memories_geo.catalog.sqlite import SQLiteCatalog
from memories_geo.catalog.sqlite_moves import PendingMove
from memories_geo.catalog.sqlite_restores import RestoreRecord

Catalog = SQLiteCatalog

__all__ = [
    "SCHEMA_VERSION",
    "SUPPORTED_FORMS",
    "Catalog",
    "CheckpointRow",
    "PendingMove",
    "RestoreRecord",
    "SQLiteCatalog",
    "SearchFilter",
    "StagedVersion",
    "entry_from_row",
    "sqlite_path",
    "utc_now",
    "version_row",
    "writer_id",
]
