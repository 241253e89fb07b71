"""Where a catalog lives: the accepted forms of a catalog location, checked once.

A catalog is a SQLite file, given as a plain path, ``sqlite:///path`` or ``file:///path``,
or a PostgreSQL database, given as ``postgresql://`` or ``postgres://`` URL
(:class:`~memories_geo.catalog.postgres.PostgresCatalog`). Anything else that looks like a
URL is refused with the accepted forms, so that a database URL is never mistaken for a
file name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from memories_geo.config import redact_url
from memories_geo.errors import ConfigError

__all__ = ["SUPPORTED_FORMS", "sqlite_path"]

SUPPORTED_FORMS = (
    "a file path ('/data/catalog.sqlite'), 'sqlite:///data/catalog.sqlite' "
    "or 'file:///data/catalog.sqlite', or a PostgreSQL URL ('postgresql://user@host:5432/dbname')"
)

_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]+)://")
_POSTGRES = {"postgresql", "postgres"}


def sqlite_path(location: str | os.PathLike[str]) -> Path:
    """The SQLite file a catalog location names.

    Parameters
    ----------
    location : str or path-like
        A plain path, ``sqlite:///abs/path`` (the path after ``sqlite://``, so
        ``sqlite:////abs/path`` works too) or ``file:///abs/path``
        (percent-encoded, as :meth:`pathlib.Path.as_uri` writes it).

    Returns
    -------
    Path

    Raises
    ------
    ConfigError
        For any other URL scheme (a PostgreSQL URL included: open it with
        :func:`~memories_geo.catalog.open_catalog`), a URL with a host, query or
        fragment, or one naming no file.

    Examples
    --------
    >>> sqlite_path("sqlite:///data/catalog.sqlite").as_posix()
    '/data/catalog.sqlite'
    >>> sqlite_path("file:///data/my%20catalog.sqlite").as_posix()
    '/data/my catalog.sqlite'
    """
    if not isinstance(location, str):
        return Path(location)
    match = _URL.match(location)
    if match is None:
        return Path(location)
    scheme = match["scheme"].lower()
    shown = redact_url(location)
    if scheme in _POSTGRES:
        raise ConfigError(
            f"catalog {shown!r} is a PostgreSQL database, not a SQLite file; open it with "
            f"open_catalog() or PostgresCatalog; a catalog is {SUPPORTED_FORMS}"
        )
    if scheme.split("+", 1)[0] in _POSTGRES:
        raise ConfigError(
            f"catalog {shown!r}: unsupported scheme {scheme!r}; write a PostgreSQL catalog as "
            f"'postgresql://...'; a catalog is {SUPPORTED_FORMS}"
        )
    if scheme not in ("sqlite", "file"):
        raise ConfigError(
            f"catalog {shown!r}: unsupported scheme {scheme!r}; a catalog is {SUPPORTED_FORMS}"
        )
    parts = urlsplit(location)
    host_ok = not parts.netloc or (scheme == "file" and parts.netloc == "localhost")
    if not host_ok or parts.query or parts.fragment:
        raise ConfigError(
            f"catalog {shown!r}: a SQLite catalog is a local file, without host, query or "
            f"fragment; a catalog is {SUPPORTED_FORMS}"
        )
    if not parts.path.strip("/"):
        raise ConfigError(f"catalog {shown!r} names no file; a catalog is {SUPPORTED_FORMS}")
    path = "/" + parts.path.lstrip("/")
    if scheme == "file":
        from urllib.request import url2pathname

        path = url2pathname(path)
    return Path(path)
