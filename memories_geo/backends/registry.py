"""Registry of backends by URL scheme: built-ins by class path, ``register_backend``, entry points.

Like fsspec's registry, built-ins are listed as class paths with the modules they need
and an install hint, and imported only when a tier uses them. Third-party backends
register with :func:`register_backend` or the ``memories_geo.backends`` entry-point group.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlsplit

from memories_geo.backends.base import Backend, redact_url
from memories_geo.config import check_encryption
from memories_geo.errors import ConfigError, TierUnavailableError
from memories_geo.storage_policy import check_storage_class

__all__ = ["ENTRY_POINT_GROUP", "known_schemes", "make_backend", "register_backend"]

ENTRY_POINT_GROUP = "memories_geo.backends"


@dataclass(frozen=True)
class _Spec:
    target: str | type
    requires: tuple[str, ...] = ()
    install: str = ""


_FILES = "memories_geo.backends.files:FileBackend"
_POSTGRES = "memories_geo.backends.postgres:PostgresBackend"
_PG_HINT = "Install psycopg and psycopg-pool: pip install memories-geo[postgis]"
_PG = _Spec(_POSTGRES, ("psycopg", "psycopg_pool"), _PG_HINT)

#: Built-in backends: URL scheme -> class path, modules it needs, install hint.
_BUILTIN: dict[str, _Spec] = {
    "file": _Spec(_FILES),
    "memory": _Spec(_FILES),
    "s3": _Spec(_FILES, ("s3fs",), "Install s3fs: pip install memories-geo[s3]"),
    "gs": _Spec(_FILES, ("gcsfs",), "Install gcsfs: pip install memories-geo[gcs]"),
    "gcs": _Spec(_FILES, ("gcsfs",), "Install gcsfs: pip install memories-geo[gcs]"),
    "az": _Spec(_FILES, ("adlfs",), "Install adlfs: pip install memories-geo[azure]"),
    "abfs": _Spec(_FILES, ("adlfs",), "Install adlfs: pip install memories-geo[azure]"),
    "postgresql": _PG,
    "postgres": _PG,
    "sqlite": _Spec("memories_geo.backends.sqlite:SQLiteBackend"),
    "redis": _Spec(_FILES, ("redis",), "Install redis: pip install memories-geo[redis]"),
    "rediss": _Spec(_FILES, ("redis",), "Install redis: pip install memories-geo[redis]"),
}

_registered: dict[str, _Spec] = {}


def register_backend(
    scheme: str, backend: str | type, *, requires: tuple[str, ...] = (), install: str = ""
) -> None:
    """Make tiers whose URL starts with ``scheme://`` use ``backend``.

    Parameters
    ----------
    scheme : str
        URL scheme, e.g. ``"myfs"``.
    backend : type or str
        A class implementing :class:`~memories_geo.backends.base.Backend`, called as
        ``cls(url, storage_options=...)``, or its ``"module:Class"`` path (imported on
        first use).
    requires : tuple of str
        Modules the backend needs; a tier using it fails with ``install`` when missing.
    install : str
        How to install them.

    Examples
    --------
    >>> register_backend("myfs", "mypackage.store:MyBackend")  # doctest: +SKIP
    """
    if not scheme or not scheme.isascii() or ":" in scheme or "/" in scheme:
        raise ConfigError(f"invalid URL scheme {scheme!r}; give the part before '://', e.g. 'myfs'")
    _registered[scheme] = _Spec(backend, tuple(requires), install)


@cache
def _entry_point_specs() -> dict[str, _Spec]:
    return {ep.name: _Spec(ep.value) for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _spec(scheme: str) -> _Spec | None:
    return _registered.get(scheme) or _BUILTIN.get(scheme) or _entry_point_specs().get(scheme)


def known_schemes() -> list[str]:
    """Every URL scheme a tier may use."""
    return sorted({*_BUILTIN, *_registered, *_entry_point_specs()})


def _load(target: str | type, scheme: str) -> type:
    if isinstance(target, type):
        return target
    module_name, _, attr = target.partition(":")
    try:
        cls: type = getattr(importlib.import_module(module_name), attr)
        return cls
    except (ImportError, AttributeError) as exc:
        warnings.warn(f"backend for {scheme!r} ({target}) cannot be loaded: {exc}", stacklevel=3)
        raise TierUnavailableError(
            f"the backend for {scheme!r} URLs ({target}) cannot be loaded: {exc}"
        ) from exc


def make_backend(
    url: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    encryption: Mapping[str, str] | None = None,
    storage_class: str | None = None,
) -> Backend:
    """Turn a tier URL, its ``storage_options``, ``encryption`` and ``storage_class`` into a backend.

    ``encryption`` and ``storage_class`` (a tier's settings, see
    :class:`~memories_geo.config.TierConfig`) are passed to the backend as keywords of
    the same names when given; a backend class that takes no such keyword refuses them.

    Raises
    ------
    ConfigError
        For a scheme no backend handles (the message lists the known ones), or an
        encryption setting or storage class the tier cannot take.
    TierUnavailableError
        When the backend's package is not installed (the message says what to install).

    Examples
    --------
    >>> make_backend("memory://doc/hot").capabilities  # doctest: +SKIP
    >>> make_backend("s3://bucket/warm", encryption={"algorithm": "AES256"})  # doctest: +SKIP
    >>> make_backend("s3://bucket/cold", storage_class="glacier").storage_class  # doctest: +SKIP
    'GLACIER'
    """
    keywords: dict[str, Any] = {}
    if settings := check_encryption(url, encryption):
        keywords["encryption"] = settings
    if found := check_storage_class(url, storage_class):
        keywords["storage_class"] = found
    scheme = urlsplit(url).scheme or "file"
    spec = _spec(scheme)
    if spec is None:
        raise ConfigError(
            f"no backend for URL scheme {scheme!r} in {redact_url(url)!r}; known: {known_schemes()}. "
            "Register one with memories_geo.register_backend()."
        )
    missing = [m for m in spec.requires if importlib.util.find_spec(m) is None]
    if missing:
        raise TierUnavailableError(f"{redact_url(url)!r} needs {', '.join(missing)}. {spec.install}".rstrip())
    cls = _load(spec.target, scheme)
    refused = [name for name in keywords if not _takes(cls, name)]
    if refused:
        raise ConfigError(
            f"the backend for {scheme!r} URLs ({cls.__module__}.{cls.__qualname__}) takes no "
            f"{refused[0]} setting; remove {refused[0]!r} from the tier {redact_url(url)!r}"
        )
    backend: Backend = cls(url, storage_options=dict(storage_options or {}), **keywords)
    return backend


def _takes(cls: type, keyword: str) -> bool:
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == keyword or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
