"""The original API's backend objects: where one tier stores, as ``tier_settings()``.

Each object is a validated, frozen description of one tier's store; its
:meth:`tier_settings` are exactly the ``[tiers.NAME]`` settings of ``memories.toml`` it
stands for, so ``StorageConfig(tier="warm", primary_backend=S3Storage(...))`` is the same
configuration as the TOML. Strings may hold ``${VAR}`` references (expanded when the
configuration is built); credentials never appear in a repr.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from memories_geo.config import expand_env, redact_url
from memories_geo.config.mounts import mount_facts
from memories_geo.config.original import FORMAT_KINDS, canonical_format
from memories_geo.errors import ConfigError

__all__ = [
    "AzureBlobStorage",
    "GCSStorage",
    "LocalFileStorage",
    "NetworkFileStorage",
    "PostgreSQLStorage",
    "S3Storage",
    "SQLiteStorage",
]

_S3_CREDENTIALS = {
    "aws_access_key_id": "key",
    "access_key": "key",
    "aws_secret_access_key": "secret",
    "secret_key": "secret",
    "aws_session_token": "token",
    "session_token": "token",
}
_SECRET_FIELDS = frozenset({"credentials", "connection_string", "account_key", "sas_token"})


def _path(value: str | os.PathLike[str]) -> Path:
    return Path(expand_env(os.fspath(value))).expanduser().resolve()


def _level(compression: Any) -> dict[str, Any]:
    if compression is None or compression is True:
        return {}
    if compression is False:
        return {"compression": "fast"}
    return {"compression": compression}


def _formats(fmt: str | None, where: str) -> dict[str, Any]:
    if fmt is None:
        return {}
    name = canonical_format(fmt, where)
    return {"formats": dict.fromkeys(sorted(FORMAT_KINDS[name]), name)}


class _Backend:
    """Shared repr (secrets masked) of the backend objects."""

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None or value == {} or not f.repr:
                continue
            if f.name in _SECRET_FIELDS:
                value = "***"
            elif isinstance(value, str):
                value = redact_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def tier_settings(self) -> dict[str, Any]:
        """The ``[tiers.NAME]`` settings this object stands for."""
        raise NotImplementedError


@dataclass(frozen=True, repr=False)
class LocalFileStorage(_Backend):
    """A tier in a local directory.

    Parameters
    ----------
    root_path : str or path
        The directory (``base_path`` is the original's name for it).
    format : str, optional
        Default format of the kinds it stores (``"zarr"``, ``"cog"`` or the original
        ``"cloud-optimized-geotiff"``, ``"geoparquet"``...).
    compression : bool or str, optional
        A level (``"fast"`` ... ``"maximum"``); ``True`` keeps the tier's default,
        ``False`` means ``"fast"``.
    max_size : str or int, optional
        Quota of the tier (``"1TB"``).
    file_organization, permissions : str, optional
        Recorded only: memories_geo lays out ``{key}/@v/{version}`` itself (a key's
        slashes organise the tree) and files get the process's umask.

    Examples
    --------
    >>> LocalFileStorage("/data/hot").tier_settings()
    {'url': 'file:///data/hot'}
    """

    root_path: str | os.PathLike[str] | None = None
    base_path: str | os.PathLike[str] | None = None
    format: str | None = None
    compression: bool | str | None = None
    max_size: str | int | None = None
    file_organization: str | None = None
    permissions: str | None = None

    def __post_init__(self) -> None:
        if (self.root_path is None) == (self.base_path is None):
            raise ConfigError(f"{type(self).__name__} needs root_path (or the original base_path), once")
        if self.format is not None:
            canonical_format(self.format, f"{type(self).__name__}.format")

    @property
    def path(self) -> Path:
        """The directory, absolute."""
        return _path(self.root_path if self.root_path is not None else self.base_path)  # type: ignore[arg-type]

    def tier_settings(self) -> dict[str, Any]:
        """``{"url": "file:///..."}`` plus format, compression and quota when given."""
        out: dict[str, Any] = {"url": self.path.as_uri()}
        out.update(_formats(self.format, f"{type(self).__name__}.format"))
        out.update(_level(self.compression))
        if self.max_size is not None:
            out["max_size"] = self.max_size
        return out


@dataclass(frozen=True, repr=False)
class NetworkFileStorage(_Backend):
    """A tier in a directory on a mounted network file system, its mount facts recorded.

    Parameters
    ----------
    mount_path : str or path
        The mounted directory (``mount_point`` in the original), or a directory below it.
    protocol, server, remote_path : str, optional
        The original's description of the export: when given, the mount must match
        (file system type starting with ``protocol``, source ``server:remote_path``),
        else :class:`ConfigError` says how to mount it.
    connection_options : mapping, optional
        Mount options the original lists (``rsize``...); recorded (the mount's own
        options are in :attr:`mount`).
    format, compression, max_size
        As for :class:`LocalFileStorage`.

    Examples
    --------
    >>> NetworkFileStorage("/").mount["mount_point"]
    '/'
    """

    mount_path: str | os.PathLike[str] | None = None
    mount_point: str | os.PathLike[str] | None = None
    protocol: str | None = None
    server: str | None = None
    remote_path: str | None = None
    connection_options: Mapping[str, Any] = field(default_factory=dict)
    format: str | None = None
    compression: bool | str | None = None
    max_size: str | int | None = None

    def __post_init__(self) -> None:
        if (self.mount_path is None) == (self.mount_point is None):
            raise ConfigError("NetworkFileStorage needs mount_path (or the original mount_point), once")
        facts = self.mount
        if self.protocol is not None and not facts["fstype"].startswith(str(self.protocol)):
            self._refuse(facts)
        if self.server is not None or self.remote_path is not None:
            expected = f"{self.server or ''}:{(self.remote_path or '').rstrip('/')}"
            if facts["source"].rstrip("/") != expected:
                self._refuse(facts)
        if self.format is not None:
            canonical_format(self.format, "NetworkFileStorage.format")

    def _refuse(self, facts: Mapping[str, str]) -> None:
        export = f"{self.server or 'SERVER'}:{self.remote_path or '/EXPORT'}"
        raise ConfigError(
            f"{str(self.path)!r} is on {facts['source']!r} ({facts['fstype']}, mounted at "
            f"{facts['mount_point']!r}), not the {self.protocol or 'network'} export {export}: mount it "
            f"first, e.g. 'sudo mount -t {self.protocol or 'nfs'} {export} {self.path}'"
        )

    @property
    def path(self) -> Path:
        """The directory, absolute."""
        return _path(self.mount_path if self.mount_path is not None else self.mount_point)  # type: ignore[arg-type]

    @property
    def mount(self) -> dict[str, str]:
        """``mount_point``, ``fstype``, ``source`` and ``options`` of the mount the directory is on."""
        return mount_facts(self.path)

    def tier_settings(self) -> dict[str, Any]:
        """``{"url": "file:///...", "mount": "/..."}`` plus format, compression and quota."""
        out: dict[str, Any] = {"url": self.path.as_uri(), "mount": str(self.path)}
        out.update(_formats(self.format, "NetworkFileStorage.format"))
        out.update(_level(self.compression))
        if self.max_size is not None:
            out["max_size"] = self.max_size
        return out


def _prefixed(scheme: str, bucket: str, prefix: str | None) -> str:
    if not bucket:
        raise ConfigError(f"a {scheme}:// tier needs a bucket or container name")
    tail = str(prefix or "").strip("/")
    return f"{scheme}://{bucket}/{tail}" if tail else f"{scheme}://{bucket}"


@dataclass(frozen=True, repr=False)
class S3Storage(_Backend):
    """A tier in an S3 bucket (AWS, MinIO, moto...).

    Parameters
    ----------
    bucket : str
    region : str, optional
    endpoint : str, optional
        Endpoint URL for S3-compatible stores.
    prefix : str
        Folder in the bucket.
    credentials : mapping, optional
        ``aws_access_key_id``, ``aws_secret_access_key``, ``aws_session_token`` (or
        ``access_key``/``secret_key``), or ``{"anon": True}``; never shown.
    storage_class : str, optional
        ``STANDARD``, ``STANDARD_IA``, ``GLACIER``...
    encryption : mapping, optional
        ``{"algorithm": "AES256"}`` or ``{"algorithm": "aws:kms", "kms_key_id": ...}``
        (``None`` values are dropped).

    Examples
    --------
    >>> S3Storage(bucket="geo", prefix="data/", region="us-west-2").tier_settings()["url"]
    's3://geo/data'
    """

    bucket: str
    region: str | None = None
    endpoint: str | None = None
    prefix: str = ""
    credentials: Mapping[str, Any] | None = None
    storage_class: str | None = None
    encryption: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        unknown = set(self.credentials or {}) - set(_S3_CREDENTIALS) - {"anon"}
        if unknown:
            raise ConfigError(
                f"S3Storage.credentials: unknown keys {sorted(unknown)}; "
                f"accepted: {sorted([*_S3_CREDENTIALS, 'anon'])}"
            )

    def tier_settings(self) -> dict[str, Any]:
        """``url``, ``storage_options`` (credentials, endpoint, region), class and encryption."""
        options: dict[str, Any] = {}
        for key, value in (self.credentials or {}).items():
            if value is not None:
                options[_S3_CREDENTIALS.get(key, key)] = value
        client = {k: v for k, v in (("endpoint_url", self.endpoint), ("region_name", self.region)) if v}
        if client:
            options["client_kwargs"] = client
        out: dict[str, Any] = {"url": _prefixed("s3", self.bucket, self.prefix), "storage_options": options}
        if self.storage_class is not None:
            out["storage_class"] = self.storage_class
        encryption = {k: v for k, v in (self.encryption or {}).items() if v is not None}
        if encryption:
            out["encryption"] = encryption
        return out


@dataclass(frozen=True, repr=False)
class GCSStorage(_Backend):
    """A tier in a Google Cloud Storage bucket.

    Parameters
    ----------
    bucket, project, prefix : str
    credentials : str or mapping, optional
        A service-account key (its path, or its JSON as a mapping) or ``"anon"``; never shown.
    credentials_file : str, optional
        The original's name for a key file path.
    storage_class : str, optional
        ``STANDARD``, ``NEARLINE``, ``COLDLINE`` or ``ARCHIVE``.
    endpoint : str, optional
        Endpoint URL (an emulator).
    location, uniform_access_control : optional
        Recorded only: properties of the bucket, set when it is created.

    Examples
    --------
    >>> GCSStorage(bucket="geo", project="p", prefix="raster/").tier_settings()["url"]
    'gs://geo/raster'
    """

    bucket: str
    project: str | None = None
    prefix: str = ""
    credentials: str | Mapping[str, Any] | None = None
    credentials_file: str | None = None
    storage_class: str | None = None
    endpoint: str | None = None
    location: str | None = None
    uniform_access_control: bool | None = None

    def __post_init__(self) -> None:
        if self.credentials is not None and self.credentials_file is not None:
            raise ConfigError("GCSStorage: give credentials or credentials_file, not both")

    def tier_settings(self) -> dict[str, Any]:
        """``url``, ``storage_options`` (``project``, ``token``, ``endpoint_url``) and class."""
        token = self.credentials if self.credentials is not None else self.credentials_file
        options = {
            k: v
            for k, v in (("project", self.project), ("token", token), ("endpoint_url", self.endpoint))
            if v is not None
        }
        out: dict[str, Any] = {"url": _prefixed("gs", self.bucket, self.prefix), "storage_options": options}
        if self.storage_class is not None:
            out["storage_class"] = self.storage_class
        return out


@dataclass(frozen=True, repr=False)
class AzureBlobStorage(_Backend):
    """A tier in an Azure Blob Storage container.

    Parameters
    ----------
    container : str
    account_name : str, optional
        The storage account (``account`` in the original).
    access_tier : str, optional
        ``hot``, ``cool``, ``cold`` or ``archive``: every blob written gets it.
    connection_string : str, optional
        Never shown.
    account_key, sas_token : str, optional
        Other credentials; never shown.
    prefix : str

    Examples
    --------
    >>> AzureBlobStorage(container="sat", account_name="geo", prefix="s2/").tier_settings()["url"]
    'az://sat/s2'
    """

    container: str
    account_name: str | None = None
    account: str | None = None
    access_tier: str | None = None
    connection_string: str | None = None
    account_key: str | None = None
    sas_token: str | None = None
    prefix: str = ""

    def __post_init__(self) -> None:
        if self.account is not None and self.account_name is not None and self.account != self.account_name:
            raise ConfigError("AzureBlobStorage: account and account_name name different accounts")

    def tier_settings(self) -> dict[str, Any]:
        """``url``, ``storage_options`` (account and credentials) and ``storage_class`` (the access tier)."""
        account = self.account_name or self.account
        options = {
            k: v
            for k, v in (
                ("account_name", account),
                ("connection_string", self.connection_string),
                ("account_key", self.account_key),
                ("sas_token", self.sas_token),
            )
            if v is not None
        }
        out: dict[str, Any] = {
            "url": _prefixed("az", self.container, self.prefix),
            "storage_options": options,
        }
        if self.access_tier is not None:
            out["storage_class"] = self.access_tier
        return out


@dataclass(frozen=True, repr=False)
class PostgreSQLStorage(_Backend):
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
class SQLiteStorage(_Backend):
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
        return {"url": "sqlite:///" + str(_path(self.database_path)), "formats": {"vector": "spatialite"}}
