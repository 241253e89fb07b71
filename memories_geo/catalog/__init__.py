"""The catalog: which keys exist, their versions, footprints, checkpoints and audit log.

``Catalog`` is the SQLite catalog (:class:`~memories_geo.catalog.sqlite.SQLiteCatalog`);
:func:`open_catalog` opens the catalog a location names, SQLite or PostgreSQL
(:class:`~memories_geo.catalog.postgres.PostgresCatalog`).
The parts free of SQL (rows, staged versions, search filters, the accepted locations)
live in their own modules, shared by every catalog implementation:

- :mod:`~memories_geo.catalog.model`: rows (:func:`version_row`), :class:`StagedVersion`,
  :class:`CheckpointRow`, :func:`utc_now`, :func:`writer_id`;
- :mod:`~memories_geo.catalog.location`: catalog locations (:func:`sqlite_path`);
- :mod:`~memories_geo.catalog.search`: :class:`SearchFilter` and its SQL;
- :mod:`~memories_geo.catalog.schema`: tables and migrations;
- :mod:`~memories_geo.catalog.sqlite`: the SQLite implementation;
- :mod:`~memories_geo.catalog.postgres`: the PostgreSQL implementation (same API).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

from memories_geo.catalog.location import SUPPORTED_FORMS, sqlite_path
from memories_geo.catalog.model import (
    CheckpointRow,
    StagedVersion,
    entry_from_row,
    utc_now,
    version_row,
    writer_id,
)
from memories_geo.catalog.postgres import PostgresCatalog, is_postgres_url, set_aside_catalog
from memories_geo.catalog.schema import SCHEMA_VERSION
from memories_geo.catalog.search import SearchFilter
from memories_geo.catalog.sqlite import SQLiteCatalog
from memories_geo.catalog.sqlite_moves import PendingMove
from memories_geo.catalog.sqlite_restores import RestoreRecord

Catalog = SQLiteCatalog

#: Any catalog implementation (they share one API).
AnyCatalog = SQLiteCatalog | PostgresCatalog


def open_catalog(location: str | os.PathLike[str]) -> Catalog:
    """The catalog a location names: PostgreSQL for a ``postgresql://`` or ``postgres://`` URL, else SQLite.

    Parameters
    ----------
    location : str or path-like
        A SQLite file (plain path, ``sqlite:///...``, ``file:///...``) or a PostgreSQL
        URL (``postgresql://user@host:5432/dbname``, with ``?schema=name`` to choose the
        schema, default ``memories_geo_catalog``).

    Returns
    -------
    SQLiteCatalog or PostgresCatalog
        Typed as :data:`Catalog`: both have the same public API (checked by the tests).

    Raises
    ------
    ConfigError
        For any other URL scheme (never taken for a local file) or an invalid location.

    Examples
    --------
    >>> open_catalog("/tmp/mg-doc/catalog.sqlite")  # doctest: +SKIP
    >>> open_catalog("postgresql://me@db:5432/geo?schema=team_a")  # doctest: +SKIP
    """
    if is_postgres_url(location):
        return cast(Catalog, PostgresCatalog(str(location)))
    return SQLiteCatalog(location if isinstance(location, str) else Path(location))


__all__ = [
    "SCHEMA_VERSION",
    "SUPPORTED_FORMS",
    "AnyCatalog",
    "Catalog",
    "CheckpointRow",
    "PendingMove",
    "PostgresCatalog",
    "RestoreRecord",
    "SQLiteCatalog",
    "SearchFilter",
    "StagedVersion",
    "entry_from_row",
    "is_postgres_url",
    "open_catalog",
    "set_aside_catalog",
    "sqlite_path",
    "utc_now",
    "version_row",
    "writer_id",
]
