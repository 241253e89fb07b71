"""Encryption settings of a tier, and URLs and messages with their credentials removed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from memories_geo.errors import ConfigError

__all__ = ["S3_ENCRYPTION_ALGORITHMS", "check_encryption", "encryption_label", "redact_text", "redact_url"]

#: Server-side encryption algorithms an S3 tier takes (``encryption={"algorithm": ...}``).
S3_ENCRYPTION_ALGORITHMS = ("AES256", "aws:kms")
_S3_SCHEMES = frozenset({"s3", "s3a"})
_GCS_SCHEMES = frozenset({"gs", "gcs"})
_AZURE_SCHEMES = frozenset({"az", "abfs", "abfss"})
#: Settings of ``encryption`` per kind of store, and an example of each.
_ENCRYPTION_SETTINGS: dict[frozenset[str], tuple[frozenset[str], str]] = {
    _S3_SCHEMES: (
        frozenset({"algorithm", "kms_key_id"}),
        '{"algorithm": "AES256"} or {"algorithm": "aws:kms", "kms_key_id": "<key id, ARN or alias>"}',
    ),
    _GCS_SCHEMES: (
        frozenset({"kms_key_name"}),
        '{"kms_key_name": "projects/P/locations/L/keyRings/R/cryptoKeys/K"}',
    ),
    _AZURE_SCHEMES: (frozenset({"encryption_scope"}), '{"encryption_scope": "<scope name>"}'),
}
_KMS_KEY_NAME = re.compile(r"projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+")


def check_encryption(
    url: str, encryption: Mapping[str, Any] | None, *, where: str = "encryption"
) -> dict[str, str]:
    """Validate a tier's ``encryption`` setting against its URL; return it as a plain dict.

    S3 tiers take ``{"algorithm": "AES256"}`` or ``{"algorithm": "aws:kms", "kms_key_id":
    ...}`` (server-side encryption of every object); GCS tiers ``{"kms_key_name": ...}``
    and Azure tiers ``{"encryption_scope": ...}`` (the bucket's default key or the
    container's default scope, checked when the tier is first used). Any other tier
    (local files, memory, PostgreSQL) refuses it: its storage is encrypted, if at all,
    below memories_geo.

    Parameters
    ----------
    url : str
        The tier's URL (its scheme decides which settings apply).
    encryption : mapping or None
        The setting; ``None`` or empty means none.
    where : str
        Name of the setting in error messages (``"tiers.warm.encryption"``).

    Returns
    -------
    dict
        The setting, empty when there is none.

    Raises
    ------
    ConfigError
        An unknown or missing setting, an algorithm that is not accepted, or encryption
        on a tier that cannot take it; the message names the accepted values.

    Examples
    --------
    >>> check_encryption("s3://bucket/warm", {"algorithm": "AES256"})
    {'algorithm': 'AES256'}
    >>> check_encryption("/data/hot", None)
    {}
    """
    if not encryption:
        return {}
    if not isinstance(encryption, Mapping):
        raise ConfigError(f"{where}: must be a table of settings, got {encryption!r}")
    scheme = urlsplit(url).scheme if "://" in url else "file"
    group = next((g for g in _ENCRYPTION_SETTINGS if scheme in g), None)
    if group is None:
        raise ConfigError(
            f"{where}: tier {redact_url(url)!r} cannot take an encryption setting; memories_geo "
            "sets encryption at rest on s3://, gs:// and az:// tiers only. A local (file://) or "
            "PostgreSQL tier is encrypted by its disk or database server: remove 'encryption'"
        )
    accepted, example = _ENCRYPTION_SETTINGS[group]
    settings = dict(encryption)
    unknown = set(settings) - accepted
    if unknown:
        raise ConfigError(
            f"{where}: unknown settings {sorted(unknown)} for a {scheme}:// tier; "
            f"accepted: {sorted(accepted)}, e.g. {example}"
        )
    bad = {k: v for k, v in settings.items() if not isinstance(v, str) or not v}
    if bad:
        raise ConfigError(f"{where}: {sorted(bad)} must be non-empty strings, got {bad!r}")
    if group is _S3_SCHEMES:
        _check_s3_encryption(settings, where)
    elif group is _GCS_SCHEMES and not _KMS_KEY_NAME.fullmatch(settings.get("kms_key_name", "")):
        raise ConfigError(
            f"{where}: a gs:// tier needs kms_key_name, the full name of a Cloud KMS key "
            f"(projects/P/locations/L/keyRings/R/cryptoKeys/K), got {settings.get('kms_key_name')!r}"
        )
    elif group is _AZURE_SCHEMES and "encryption_scope" not in settings:
        raise ConfigError(f"{where}: an az:// tier needs encryption_scope, e.g. {example}")
    return settings


def _check_s3_encryption(settings: Mapping[str, str], where: str) -> None:
    algorithm = settings.get("algorithm")
    if algorithm not in S3_ENCRYPTION_ALGORITHMS:
        raise ConfigError(
            f"{where}: algorithm must be one of {list(S3_ENCRYPTION_ALGORITHMS)}, got {algorithm!r}"
        )
    if algorithm == "aws:kms" and "kms_key_id" not in settings:
        raise ConfigError(
            f"{where}: algorithm 'aws:kms' needs kms_key_id (a KMS key id, ARN or alias; "
            "'alias/aws/s3' is the AWS-managed key)"
        )
    if algorithm == "AES256" and "kms_key_id" in settings:
        raise ConfigError(f"{where}: kms_key_id applies to 'aws:kms' only, not 'AES256'")


def encryption_label(encryption: Mapping[str, str]) -> str | None:
    """A short name of an encryption setting for reprs (no key ids)."""
    if not encryption:
        return None
    if "algorithm" in encryption:
        return encryption["algorithm"]
    return "kms_key_name" if "kms_key_name" in encryption else "encryption_scope"


def redact_url(url: str) -> str:
    """Remove the password (and any query string) from a URL before showing it.

    Examples
    --------
    >>> redact_url("postgresql://me:secret@db:5432/geo")
    'postgresql://me:***@db:5432/geo'
    >>> redact_url("redis://:secret@[not-a-host/0")
    'redis://:***@[not-a-host/0'
    """
    try:
        parts = urlsplit(url)
        password, port = parts.password, parts.port
    except ValueError:  # not a URL urllib can split (brackets, a port that is not a number)
        return _USERINFO.sub(r"\1:***@", url.split("?", 1)[0])
    if password is None and not parts.query:
        return url
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}:***@{netloc}"
    if port:
        netloc = f"{netloc}:{port}"
    return parts._replace(netloc=netloc, query="").geturl()


_USERINFO = re.compile(r"(//[^/:@\s]*):[^@/\s]*@")


_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_text(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url`.

    Examples
    --------
    >>> redact_text("cannot reach postgresql://me:secret@db/geo: refused")
    'cannot reach postgresql://me:***@db/geo: refused'
    """
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
