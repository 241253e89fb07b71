"""Reaching an object store: its endpoint, "cannot connect" errors, and its encryption defaults.

Used by :class:`~memories_geo.backends.files.FileBackend`; no SDK is imported here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from memories_geo.errors import ConfigError

__all__ = [
    "CONNECT_TIMEOUT",
    "S3_CLIENT_DEFAULTS",
    "azure_default_scope",
    "endpoint_of",
    "gcs_default_key",
    "is_unreachable",
    "s3_encryption_kwargs",
    "unreachable_fix",
]

#: Seconds to wait for a TCP connection to an object store's endpoint (probe and S3 client).
CONNECT_TIMEOUT = 5
#: botocore client settings used on S3 unless ``storage_options["config_kwargs"]`` sets them:
#: a dead endpoint fails in seconds, not after minutes of retries.
S3_CLIENT_DEFAULTS: Mapping[str, Any] = {
    "connect_timeout": CONNECT_TIMEOUT, "retries": {"max_attempts": 2, "mode": "standard"},
}
#: Names of the exception classes (in any SDK) that mean "the service cannot be reached".
_UNREACHABLE = frozenset({
    "ConnectionError", "EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError",
    "ClientConnectionError", "ServerDisconnectedError", "ServiceRequestError", "NewConnectionError",
    "gaierror",
})


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (from any storage SDK) means the service could not be reached.

    Recognised by class name (botocore, aiohttp, azure-core, urllib3, the builtins),
    so no SDK is imported.

    Examples
    --------
    >>> is_unreachable(ConnectionRefusedError(111, "refused")), is_unreachable(FileNotFoundError())
    (True, False)
    """
    return any(cls.__name__ in _UNREACHABLE for cls in type(exc).__mro__)


def endpoint_of(scheme: str, options: Mapping[str, Any]) -> str | None:
    """The service endpoint a tier's ``storage_options`` (or the environment) name, if any.

    Examples
    --------
    >>> endpoint_of("s3", {"client_kwargs": {"endpoint_url": "127.0.0.1:9000"}})
    'http://127.0.0.1:9000'
    """
    found: Any = None
    if scheme in ("s3", "s3a"):
        found = (
            (options.get("client_kwargs") or {}).get("endpoint_url") or options.get("endpoint_url")
            or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        )
    elif scheme in ("gs", "gcs"):
        found = options.get("endpoint_url") or os.environ.get("STORAGE_EMULATOR_HOST")
    elif scheme in ("az", "abfs", "abfss"):
        text = options.get("connection_string") or os.environ.get("AZURE_STORAGE_CONNECTION_STRING") or ""
        fields = dict(part.split("=", 1) for part in str(text).split(";") if "=" in part)
        found = fields.get("BlobEndpoint")
        if not found and options.get("account_host"):
            found = f"https://{options['account_host']}"
    if not found:
        return None
    found = str(found)
    return found if "://" in found else f"http://{found}"


def s3_encryption_kwargs(current: Mapping[str, Any], encryption: Mapping[str, str]) -> dict[str, Any]:
    """``s3_additional_kwargs`` with the server-side encryption of ``encryption`` added.

    Raises
    ------
    ConfigError
        When ``current`` already sets a different encryption.

    Examples
    --------
    >>> s3_encryption_kwargs({"ACL": "private"}, {"algorithm": "AES256"})
    {'ACL': 'private', 'ServerSideEncryption': 'AES256'}
    """
    wanted = {"ServerSideEncryption": encryption["algorithm"]}
    if "kms_key_id" in encryption:
        wanted["SSEKMSKeyId"] = encryption["kms_key_id"]
    clash = sorted(
        k for k in ("ServerSideEncryption", "SSEKMSKeyId") if k in current and current[k] != wanted.get(k)
    )
    if clash:
        raise ConfigError(
            f"storage_options['s3_additional_kwargs'] sets {clash} differently from the tier's "
            "encryption setting; set encryption in one place (the tier's encryption)"
        )
    return {**current, **wanted}


def gcs_default_key(fs: Any, bucket: str) -> str | None:
    """The default KMS key name of a GCS bucket (``None`` when it has none).

    Examples
    --------
    >>> gcs_default_key(backend.remote_fs, "my-bucket")  # doctest: +SKIP
    'projects/p/locations/eu/keyRings/r/cryptoKeys/k'
    """
    info = fs.call("GET", "b/{}", bucket, json_out=True)
    found = (info.get("encryption") or {}).get("defaultKmsKeyName")
    return str(found) if found else None


def azure_default_scope(fs: Any, container: str) -> str | None:
    """The default encryption scope of an Azure container (``None`` when it has none).

    Examples
    --------
    >>> azure_default_scope(backend.remote_fs, "my-container")  # doctest: +SKIP
    'geo-scope'
    """
    from fsspec.asyn import sync

    async def properties() -> Any:
        return await fs.service_client.get_container_client(container).get_container_properties()

    scope = getattr(sync(fs.loop, properties), "encryption_scope", None)
    found = getattr(scope, "default_encryption_scope", None)
    return str(found) if found else None


def unreachable_fix(scheme: str) -> str:
    """What to check when a tier of ``scheme`` with an explicit endpoint cannot be reached.

    Examples
    --------
    >>> unreachable_fix("s3")
    'check endpoint_url in storage_options and that the service is running'
    """
    if scheme in ("az", "abfs", "abfss"):
        where = "the BlobEndpoint of connection_string (or account_name) in storage_options"
    else:
        where = "endpoint_url in storage_options"
    return f"check {where} and that the service is running"
