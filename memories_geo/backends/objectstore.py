"""obstore clients for object-store tiers: the fast path formats may take instead of fsspec.

`obstore <https://developmentseed.org/obstore/>`_ (Rust ``object_store`` underneath)
moves Zarr chunks to and from S3 and Azure Blob Storage faster than s3fs / adlfs, with
less memory (see ``docs/object-stores.md`` for the figures). A tier's fsspec
``storage_options`` are translated into an obstore client only when every setting has an
obstore equivalent; anything else (an unknown option, a credential object, a profile,
a GCS tier) keeps the fsspec filesystem, so no setting is silently dropped:

- S3: ``key``/``secret``/``token``, ``endpoint_url`` (also in ``client_kwargs``), the
  region, ``anon``, ``requester_pays``; ``s3_additional_kwargs`` ``ServerSideEncryption``
  and ``SSEKMSKeyId`` (client settings, sent with every upload) and ``StorageClass``
  (an attribute of every upload, see :attr:`ObjectStoreClient.attributes`);
  ``config_kwargs`` ``connect_timeout``, ``read_timeout``, ``retries``.
- Azure: ``connection_string`` (account name and key or SAS, blob endpoint),
  ``account_name``, ``account_key``, ``sas_token``. The container's default encryption
  scope is checked by the tier as for adlfs.
- GCS: always fsspec (obstore speaks GCS's XML API, which the emulator the tests run
  on does not serve, so that path is untested).

Every request is retried on 5xx answers, dropped connections and timeouts with
exponential backoff (:data:`RETRY`). An upload is one ``PUT`` or a multipart upload
completed in one request: an object is either complete or absent, never partial.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "CONNECT_TIMEOUT",
    "RETRY",
    "ObjectStoreClient",
    "ObjectStoreSettings",
    "object_store_client",
    "object_store_settings",
]

logger = logging.getLogger(__name__)

#: Retries with exponential backoff and jitter on 5xx answers, dropped connections and
#: timeouts of idempotent requests: 100 ms doubling up to 5 s, at most 6 retries or 60 s.
RETRY: Mapping[str, Any] = {
    "max_retries": 6,
    "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=5), "base": 2},
    "retry_timeout": timedelta(seconds=60),
}
#: Seconds to wait for a TCP connection, as for the fsspec clients.
CONNECT_TIMEOUT = 5

#: fsspec-only settings with no effect on what is stored (caches, event loops).
_FSSPEC_ONLY = frozenset({
    "use_listings_cache", "listings_expiry_time", "max_paths", "skip_instance_cache",
    "default_block_size", "default_fill_cache", "default_cache_type", "cache_regions",
    "asynchronous", "loop", "use_ssl", "version_aware", "max_concurrency",
})
_S3_CREDENTIALS = {"key": "access_key_id", "secret": "secret_access_key", "token": "session_token"}
_S3_UPLOAD_SETTINGS = {"ServerSideEncryption": "server_side_encryption", "SSEKMSKeyId": "sse_kms_key_id"}
_S3_CONFIG_KWARGS = frozenset({"connect_timeout", "read_timeout", "retries"})


@dataclass(frozen=True)
class ObjectStoreSettings:
    """How to build an obstore client for a tier, or why it keeps fsspec.

    Attributes
    ----------
    kind : str
        ``"s3"`` or ``"azure"``; ``""`` when the tier keeps fsspec.
    config : mapping
        The store's configuration (credentials, endpoint, encryption).
    client_options : mapping
        HTTP client settings (``allow_http``, timeouts).
    retry : mapping
        obstore ``RetryConfig``.
    attributes : mapping
        Attributes sent with every upload (``Storage-Class``).
    reason : str
        Why the tier keeps fsspec (empty when it does not).

    Examples
    --------
    >>> object_store_settings("gs://bucket", {}).reason
    'GCS tiers use gcsfs'
    """

    kind: str
    config: Mapping[str, Any] = field(default_factory=dict, repr=False)
    client_options: Mapping[str, Any] = field(default_factory=dict)
    retry: Mapping[str, Any] = field(default_factory=lambda: dict(RETRY))
    attributes: Mapping[str, str] = field(default_factory=dict)
    reason: str = ""

    @property
    def usable(self) -> bool:
        """Whether the tier can be reached through obstore."""
        return bool(self.kind)


def _keep_fsspec(reason: str) -> ObjectStoreSettings:
    return ObjectStoreSettings("", reason=reason)


def object_store_settings(url: str, storage_options: Mapping[str, Any]) -> ObjectStoreSettings:
    """Translate a tier's URL and fsspec ``storage_options`` into obstore settings.

    Parameters
    ----------
    url : str
        The tier's root URL (``s3://bucket/prefix``, ``az://container/prefix``...).
    storage_options : mapping
        The tier's fsspec options, encryption and storage class already merged in
        (:attr:`memories_geo.backends.files.FileBackend.storage_options`).

    Returns
    -------
    ObjectStoreSettings
        ``usable`` when every option has an obstore equivalent, else the reason the
        tier keeps its fsspec filesystem.

    Examples
    --------
    >>> s = object_store_settings("s3://b/warm", {"key": "k", "secret": "s", "endpoint_url": "http://127.0.0.1:9000"})
    >>> s.kind, s.client_options["allow_http"]
    ('s3', True)
    >>> object_store_settings("s3://b", {"profile": "dev"}).reason
    "storage_options ['profile'] have no obstore equivalent"
    """
    scheme = urlsplit(url).scheme if "://" in url else "file"
    try:
        import obstore  # noqa: F401
    except ImportError:
        return _keep_fsspec("obstore is not installed (pip install 'memories-geo[obstore]')")
    options = {k: v for k, v in storage_options.items() if k not in _FSSPEC_ONLY}
    if scheme in ("s3", "s3a"):
        return _s3_settings(options)
    if scheme in ("az", "abfs", "abfss"):
        return _azure_settings(options)
    if scheme in ("gs", "gcs"):
        return _keep_fsspec("GCS tiers use gcsfs")
    return _keep_fsspec(f"{scheme!r} is not an object store obstore serves")


def _client_options(endpoint: str | None, timeouts: Mapping[str, Any]) -> dict[str, Any]:
    seconds = float(timeouts.get("connect_timeout", CONNECT_TIMEOUT))
    client: dict[str, Any] = {"connect_timeout": timedelta(seconds=seconds)}
    if "read_timeout" in timeouts:
        client["timeout"] = timedelta(seconds=float(timeouts["read_timeout"]))
    if endpoint is not None and endpoint.startswith("http://"):
        client["allow_http"] = True
    return client


def _retry(attempts: Any) -> dict[str, Any]:
    retry = dict(RETRY)
    if isinstance(attempts, Mapping) and "max_attempts" in attempts:
        retry["max_retries"] = max(int(RETRY["max_retries"]), int(attempts["max_attempts"]) - 1)
    return retry


def _s3_settings(options: dict[str, Any]) -> ObjectStoreSettings:
    client_kwargs = dict(options.pop("client_kwargs", None) or {})
    config_kwargs = dict(options.pop("config_kwargs", None) or {})
    extra = dict(options.pop("s3_additional_kwargs", None) or {})
    config: dict[str, Any] = {}
    for name, setting in _S3_CREDENTIALS.items():
        if options.get(name):
            config[setting] = str(options.pop(name))
        options.pop(name, None)
    endpoint = client_kwargs.pop("endpoint_url", None) or options.pop("endpoint_url", None)
    region = client_kwargs.pop("region_name", None) or options.pop("region_name", None)
    if options.pop("anon", False):
        config["skip_signature"] = True
    if options.pop("requester_pays", False):
        config["request_payer"] = True
    unknown = sorted(options) + [f"client_kwargs[{k!r}]" for k in sorted(client_kwargs)]
    unknown += [f"config_kwargs[{k!r}]" for k in sorted(set(config_kwargs) - _S3_CONFIG_KWARGS)]
    sent = {*_S3_UPLOAD_SETTINGS, "StorageClass"}
    unknown += [f"s3_additional_kwargs[{k!r}]" for k in sorted(set(extra) - sent)]
    if unknown:
        return _keep_fsspec(f"storage_options {unknown} have no obstore equivalent")
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region is None and endpoint is None:
        return _keep_fsspec(
            "no region is set (s3fs looks the bucket's region up; set client_kwargs['region_name'])"
        )
    if os.environ.get("AWS_PROFILE") and "access_key_id" not in config:
        return _keep_fsspec("credentials come from an AWS profile, which obstore does not read")
    if endpoint is not None:
        config["endpoint"] = str(endpoint)
    if region is not None:
        config["region"] = str(region)
    for name, setting in _S3_UPLOAD_SETTINGS.items():
        if name in extra:
            config[setting] = str(extra[name])
    attributes = {"Storage-Class": str(extra["StorageClass"])} if extra.get("StorageClass") else {}
    client = _client_options(endpoint, config_kwargs)
    return ObjectStoreSettings("s3", config, client, _retry(config_kwargs.get("retries")), attributes)


def _azure_settings(options: dict[str, Any]) -> ObjectStoreSettings:
    config: dict[str, Any] = {}
    text = options.pop("connection_string", None)
    if text:
        fields = dict(part.split("=", 1) for part in str(text).split(";") if "=" in part)
        known = {
            "AccountName": "account_name", "AccountKey": "account_key",
            "SharedAccessSignature": "sas_key", "BlobEndpoint": "endpoint",
        }
        config.update({setting: fields[name] for name, setting in known.items() if fields.get(name)})
        if set(fields) - {*known, "DefaultEndpointsProtocol", "EndpointSuffix"}:
            return _keep_fsspec("the connection string has settings obstore does not read")
    for name, setting in (("account_name", "account_name"), ("account_key", "account_key"),
                          ("sas_token", "sas_key")):
        if options.get(name):
            config.setdefault(setting, str(options[name]))
        options.pop(name, None)
    if options:
        return _keep_fsspec(f"storage_options {sorted(options)} have no obstore equivalent")
    if "account_name" not in config or not ({"account_key", "sas_key"} & set(config)):
        return _keep_fsspec("no account key or SAS token (adlfs finds other credentials)")
    return ObjectStoreSettings("azure", config, _client_options(config.get("endpoint"), {}))


@dataclass(frozen=True)
class ObjectStoreClient:
    """An obstore store rooted at one path of a tier, and what every upload through it carries.

    Attributes
    ----------
    store : obstore.store.S3Store or obstore.store.AzureStore
        Keys are relative to the path it was opened at.
    attributes : mapping
        To pass to every ``obstore.put`` (``{"Storage-Class": ...}`` on S3 tiers with
        a storage class readable at once).

    Examples
    --------
    >>> import obstore
    >>> client = object_store_client(backend, "era5/@v/1.zarr")  # doctest: +SKIP
    >>> obstore.put(client.store, "zarr.json", b"{}", attributes=dict(client.attributes))  # doctest: +SKIP
    """

    store: Any
    attributes: Mapping[str, str]


def object_store_client(backend: Any, path: str) -> ObjectStoreClient | None:
    """An obstore client for ``path`` of a file tier, or ``None`` when the tier keeps fsspec.

    Parameters
    ----------
    backend : FileBackend
        A file tier (``url``, ``storage_options``, ``remote_fs``, ``full_path``).
    path : str
        Logical path inside the tier (a version's folder).

    Returns
    -------
    ObjectStoreClient or None
        ``None`` on local, in-memory and GCS tiers, and on tiers with settings
        obstore cannot honour (logged at DEBUG with the reason).

    Examples
    --------
    >>> object_store_client(FileBackend("/tmp/hot"), "k/@v/1.zarr") is None  # doctest: +SKIP
    True
    """
    settings = object_store_settings(backend.url, backend.storage_options)
    if not settings.usable:
        logger.debug("%s: fsspec, not obstore: %s", backend.url_for(""), settings.reason)
        return None
    backend.remote_fs  # noqa: B018  (opens the tier: endpoint probe, default-encryption checks)
    bucket, _, prefix = backend.full_path(path).strip("/").partition("/")
    from obstore.store import AzureStore, S3Store

    kwargs: dict[str, Any] = {
        "prefix": prefix or None, "config": dict(settings.config),
        "client_options": dict(settings.client_options), "retry_config": dict(settings.retry),
    }
    store = S3Store(bucket, **kwargs) if settings.kind == "s3" else AzureStore(bucket, **kwargs)
    return ObjectStoreClient(store, dict(settings.attributes))
