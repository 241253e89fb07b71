"""Expected failures of the command line as one clear line: what failed, where, and the fix.

The library's typed errors (:class:`~memories_geo.errors.MemoriesError`) carry their own
message; errors of the storage SDKs (botocore, aiohttp, psycopg, azure, google) and of the
operating system are recognised by their class, without importing the SDKs, and turned
into a sentence naming the endpoint (credentials removed) and the tier it belongs to.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from memories_geo.config import redact_url
from memories_geo.errors import (
    CatalogCorruptError,
    CheckpointNotFoundError,
    ChecksumMismatchError,
    ConfigError,
    InvalidKeyError,
    KeyNotFoundError,
    MemoriesError,
    OptionError,
)

if TYPE_CHECKING:
    from memories_geo.config import StorageConfig

__all__ = ["Failure", "describe", "is_secret_name", "scrub"]

#: Exit status of a runtime failure (the command was right, the world was not).
RUNTIME = 1
#: Exit status of a usage error (the command line or a value on it was wrong).
USAGE = 2

#: Problems of a failed verification listed below the error line (the rest are counted).
MAX_PROBLEMS = 20

#: Storage SDKs whose exceptions are expected failures, by top-level module, and what
#: kind of service each one talks to.
SERVICES = {
    "botocore": "S3",
    "aiobotocore": "S3",
    "boto3": "S3",
    "s3transfer": "S3",
    "s3fs": "S3",
    "aiohttp": "HTTP",
    "urllib3": "HTTP",
    "requests": "HTTP",
    "psycopg": "PostgreSQL",
    "psycopg_pool": "PostgreSQL",
    "azure": "Azure Blob",
    "adlfs": "Azure Blob",
    "google": "Google Cloud Storage",
    "gcsfs": "Google Cloud Storage",
    "obstore": "object store",
}

_SECRET_NAME = re.compile(r"key|secret|token|passw|credential|sas|connection_string|auth|signature|cookie")
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_PG_HOST = re.compile(r'connection to server at "([^"]+)"(?: \([^)]*\))?, port (\d+)')


@dataclass(frozen=True)
class Failure:
    """An expected failure: the sentence to print, the exit status, and extra detail lines."""

    message: str
    code: int = RUNTIME
    details: tuple[str, ...] = ()


def is_secret_name(name: str) -> bool:
    """Whether a ``storage_options`` name looks like it holds a credential.

    Examples
    --------
    >>> is_secret_name("secret"), is_secret_name("account_key"), is_secret_name("endpoint_url")
    (True, True, False)
    """
    return bool(_SECRET_NAME.search(name.lower()))


def _secret_values(value: Any, secret: bool = False) -> Iterator[str]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _secret_values(v, secret or is_secret_name(str(k)))
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _secret_values(v, secret)
    elif secret and isinstance(value, str) and len(value) >= 4:
        yield value


def scrub(text: str, config: StorageConfig | None = None) -> str:
    """``text`` with passwords removed from URLs and the configuration's secrets masked.

    Examples
    --------
    >>> scrub("cannot connect to postgresql://me:pw@db:5432/geo")
    'cannot connect to postgresql://me:***@db:5432/geo'
    """
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    if config is not None:
        secrets = [urlsplit(u).password for u in (config.catalog, *(t.url for t in config.tiers.values()))]
        for tier in config.tiers.values():
            secrets += _secret_values(tier.storage_options)
        for secret in secrets:
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
    return text


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _service(exc: BaseException) -> str | None:
    for cls in type(exc).__mro__:
        found = SERVICES.get(cls.__module__.split(".")[0])
        if found:
            return found
    return None


def _endpoint(exc: BaseException) -> str | None:
    """``scheme://host:port`` or ``host:port`` of the server an SDK error was about."""
    for err in _chain(exc):
        kwargs = getattr(err, "kwargs", None)
        if isinstance(kwargs, Mapping) and isinstance(kwargs.get("endpoint_url"), str):
            parts = urlsplit(kwargs["endpoint_url"])
            return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        host, port = getattr(err, "host", None), getattr(err, "port", None)
        if isinstance(host, str) and host and isinstance(port, int):
            return f"{host}:{port}"
        match = _PG_HOST.search(str(err))
        if match:
            return f"{match.group(1)}:{match.group(2)}"
    return None


def _tier_of(config: StorageConfig | None, endpoint: str | None, service: str | None) -> str | None:
    """The tier (and its URL) an endpoint or a service belongs to, as words."""
    if config is None:
        return None
    wanted = endpoint.split("://", 1)[-1] if endpoint else None
    family = {
        "PostgreSQL": ("postgres",),
        "S3": ("s3",),
        "Azure Blob": ("az", "abfs"),
        "Google Cloud Storage": ("gs", "gcs"),
    }.get(service or "", ())
    by_endpoint = [n for n, t in config.tiers.items() if wanted and wanted in f"{t.url} {t.storage_options}"]
    by_family = [n for n, t in config.tiers.items() if family and urlsplit(t.url).scheme.startswith(family)]
    hits = by_endpoint or by_family
    return ", ".join(f"tier {n!r} ({redact_url(config.tiers[n].url)})" for n in hits) or None


def _fix(service: str | None, exc: BaseException) -> str:
    text = str(exc).lower()
    if isinstance(exc, PermissionError) or any(
        w in text for w in ("accessdenied", "access denied", "forbidden", "invalidaccesskeyid", "signature")
    ):
        return "check the credentials in the tier's storage_options (`memories-geo config show`)"
    if "nosuchbucket" in text or "bucket does not exist" in text:
        return "create the bucket, or correct the tier's url in the configuration"
    if service == "PostgreSQL":
        return (
            "start PostgreSQL there, or correct the tier's url in the configuration "
            "(`memories-geo config show`)"
        )
    return (
        "check that the server is running and reachable, or correct the tier's url and endpoint "
        "in the configuration (`memories-geo config show`)"
    )


def _last_module(exc: BaseException) -> str:
    tb = exc.__traceback__
    name = ""
    while tb is not None:
        name = str(tb.tb_frame.f_globals.get("__name__", ""))
        tb = tb.tb_next
    return name


def _library(exc: MemoriesError) -> Failure:
    message = str(exc)
    if isinstance(exc, (OptionError, InvalidKeyError)):
        return Failure(message, USAGE)
    if isinstance(exc, KeyNotFoundError):
        return Failure(f"{message.rstrip('.')}; `memories-geo ls` lists the keys")
    if isinstance(exc, CheckpointNotFoundError):
        return Failure(f"{message.rstrip('.')}; `memories-geo checkpoint list` lists them")
    if isinstance(exc, ChecksumMismatchError):
        shown = exc.problems[:MAX_PROBLEMS]
        more = len(exc.problems) - len(shown)
        details = (*shown, *([f"... and {more} more"] if more > 0 else []))
        return Failure(message.split(": ", 1)[0] if exc.problems else message, RUNTIME, details)
    if isinstance(exc, ConfigError):
        return Failure(f"configuration: {message}")
    if isinstance(exc, CatalogCorruptError) and "recover --rebuild-catalog" not in message:
        return Failure(f"{message.rstrip('.')}; from the shell: `memories-geo recover --rebuild-catalog`")
    return Failure(message)


def describe(exc: BaseException, config: StorageConfig | None = None) -> Failure | None:
    """The failure to report for ``exc``, or ``None`` when it is a bug (keep the traceback).

    Parameters
    ----------
    exc : BaseException
        What a command raised.
    config : StorageConfig, optional
        The collection's configuration, to name the tier an endpoint belongs to and to
        mask its secrets.

    Examples
    --------
    >>> describe(KeyError("x")) is None
    True
    >>> describe(ConnectionRefusedError(111, "Connection refused")).message
    '[Errno 111] Connection refused'
    """
    failure = _describe(exc, config)
    if failure is None:
        return None
    message = " ".join(failure.message.split())
    return Failure(scrub(message, config), failure.code, tuple(scrub(d, config) for d in failure.details))


def _describe(exc: BaseException, config: StorageConfig | None) -> Failure | None:
    service = next((s for s in map(_service, _chain(exc)) if s), None)
    if isinstance(exc, MemoriesError):
        return _library(exc)
    if service is not None:
        endpoint = _endpoint(exc)
        tier = _tier_of(config, endpoint, service)
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return Failure(
            f"{service} request failed"
            + (f" at {endpoint}" if endpoint else "")
            + (f" ({tier})" if tier else "")
            + f": {reason}; fix: {_fix(service, exc)}"
        )
    if isinstance(exc, OSError):
        return Failure(str(exc) or type(exc).__name__)
    if isinstance(exc, ImportError):
        return Failure(
            f"{exc}; a package this needs is not installed (`pip install 'memories-geo[...]'` with "
            "the extra for your storage or format: s3, gcs, azure, postgis, zarr, raster)"
        )
    if isinstance(exc, ValueError) and _last_module(exc).startswith("memories_geo"):
        return Failure(str(exc), USAGE)
    return None
