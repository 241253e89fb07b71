"""Backend objects of database tiers: PostgreSQL (PostGIS, TimescaleDB) and SQLite (SpatiaLite)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from memories_geo.config import redact_url
from memories_geo.errors import ConfigError
from memories_geo.storage.backends.base import BackendObject, resolved_path

__all__ = ["PostgreSQLStorage", "SQLiteStorage"]


@dataclass(frozen=True, repr=False)
class PostgreSQLStorage(BackendObject):
    """A tier in a PostgreSQL database: vectors as PostGIS tables, time series as (hyper)tables.

    Parameters
    ----------
    connection_string : str, optional
        ``postgresql://user:password@host/db`` (password never shown). Without it, as
        a ``vector_backend`` of a PostgreSQL tier, the primary's database is used.
    schema : str, optional
        Where tables and views are created (default ``public``).
    postgis_enabled : bool
        Vectors on this tier are PostGIS tables. ``False`` is refused: memories_geo
        keeps vector data in PostgreSQL only as PostGIS.
    timescaledb_enabled : bool, optional
        ``True``: time series are saved with the ``timescaledb`` format (hypertables
        where the extension is installed, native partitions otherwise); ``False``:
        native partitions, never the extension; ``None``: the built-in default.
    pool_size, max_overflow : int, optional
        Connection pool: ``min_size = pool_size``, ``max_size = pool_size + max_overflow``.
    max_connections : int, optional
        The original's other spelling of the pool's ``max_size``.
    spatial_index : bool
        PostGIS tables always get a GiST index; ``False`` is refused.

    Examples
    --------
    >>> pg = PostgreSQLStorage("postgresql://me:pw@db/geo", pool_size=2, max_overflow=3)
    >>> pg.tier_settings()["storage_options"]
    {'min_size': 2, 'max_size': 5}
    """

    connection_string: str | None = None
    schema: str | None = None
    postgis_enabled: bool = True
    timescaledb_enabled: bool | None = None
    pool_size: int | None = None
    max_overflow: int | None = None
    max_connections: int | None = None
    spatial_index: bool = True

    def __post_init__(self) -> None:
        if self.postgis_enabled is not True:
            raise ConfigError(
                "PostgreSQLStorage(postgis_enabled=False): memories_geo stores vector data in "
                "PostgreSQL as PostGIS tables only; leave it True, or keep vectors on another "
                "tier (vector_backend=LocalFileStorage(...))"
            )
        if self.spatial_index is not True:
            raise ConfigError("PostgreSQLStorage(spatial_index=False): every PostGIS table gets a GiST index")
        for name in ("pool_size", "max_overflow", "max_connections"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int) or value < (1 if name != "max_overflow" else 0)
            ):
                raise ConfigError(f"PostgreSQLStorage.{name} must be a positive integer, got {value!r}")
        if self.max_connections is not None and self.max_overflow is not None:
            raise ConfigError("PostgreSQLStorage: give max_overflow or max_connections, not both")
        url = self.connection_string
        if url is not None and "${" not in url and not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(
                f"PostgreSQLStorage.connection_string must be a postgresql:// URL, got {redact_url(url)!r}"
            )

    def tier_settings(self) -> dict[str, Any]:
        """``url`` (the connection string), pool and schema options, and the formats it implies."""
        options: dict[str, Any] = {}
        if self.schema is not None:
            options["schema"] = self.schema
        if self.pool_size is not None:
            options["min_size"] = self.pool_size
            options["max_size"] = self.pool_size + (self.max_overflow or 0)
        if self.max_connections is not None:
            options["max_size"] = self.max_connections
        out: dict[str, Any] = {"url": self.connection_string} if self.connection_string else {}
        if options:
            out["storage_options"] = options
        if self.timescaledb_enabled is True:
            out["formats"] = {"timeseries": "timescaledb"}
        elif self.timescaledb_enabled is False:
            out["format_options"] = {"timescaledb": {"partitioning": "native"}}
        return out


@dataclass(frozen=True, repr=False)
class SQLiteStorage(BackendObject):
    """A tier in one SQLite file, vector layers as SpatiaLite tables.

    Parameters
    ----------
    database_path : str or path
        The database file (created if missing).
    spatialite_enabled : bool
        Vectors as SpatiaLite tables; ``False`` is refused (SQLite tiers hold vectors only).

    Examples
    --------
    >>> SQLiteStorage("/data/hot.db").tier_settings()
    {'url': 'sqlite:////data/hot.db', 'formats': {'vector': 'spatialite'}}
    """

    database_path: str | os.PathLike[str]
    spatialite_enabled: bool = True

    def __post_init__(self) -> None:
        if self.spatialite_enabled is not True:
            raise ConfigError(
                "SQLiteStorage(spatialite_enabled=False): a SQLite tier stores vector layers as "
                "SpatiaLite tables only; leave it True"
            )

    def tier_settings(self) -> dict[str, Any]:
        """``url`` (``sqlite:///`` + the absolute path) and the SpatiaLite vector format."""
        url = "sqlite:///" + str(resolved_path(self.database_path))
        return {"url": url, "formats": {"vector": "spatialite"}}
