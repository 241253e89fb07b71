"""Backend objects of object-store tiers: S3, Google Cloud Storage, Azure Blob Storage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from memories_geo.errors import ConfigError
from memories_geo.storage.backends.base import BackendObject

__all__ = ["AzureBlobStorage", "GCSStorage", "S3Storage"]

#: The original's S3 credential names -> s3fs ``storage_options`` names.
_S3_CREDENTIALS = {
    "aws_access_key_id": "key",
    "access_key": "key",
    "aws_secret_access_key": "secret",
    "secret_key": "secret",
    "aws_session_token": "token",
    "session_token": "token",
}


def _prefixed(scheme: str, bucket: str, prefix: str | None) -> str:
    """``scheme://bucket/prefix`` (no trailing slash)."""
    if not bucket:
        raise ConfigError(f"a {scheme}:// tier needs a bucket or container name")
    tail = str(prefix or "").strip("/")
    return f"{scheme}://{bucket}/{tail}" if tail else f"{scheme}://{bucket}"


@dataclass(frozen=True, repr=False)
class S3Storage(BackendObject):
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
class GCSStorage(BackendObject):
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
class AzureBlobStorage(BackendObject):
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
