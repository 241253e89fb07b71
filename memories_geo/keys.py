"""Key validation: a key is a safe, relative, slash-separated name."""

from __future__ import annotations

import re
import secrets
import unicodedata

from memories_geo.errors import InvalidKeyError

__all__ = ["VERSIONS_DIR", "check_path", "generate_key", "new_id", "validate_key"]

#: Reserved path segment under which the versions of a key are stored.
VERSIONS_DIR = "@v"

MAX_KEY_LENGTH = 512
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
_SLUG_UNSAFE = re.compile(r"[^a-z0-9]+")


def validate_key(key: object) -> str:
    """Return ``key`` unchanged if it is a valid key, else raise :class:`InvalidKeyError`.

    A valid key is a non-empty string of slash-separated segments with no empty,
    ``.`` or ``..`` segment, no segment starting with ``@`` (reserved for ``@v``
    version folders and ``@checkpoints``), no backslash, no control
    character, no leading ``/`` or ``~`` and no drive letter, so it can never
    resolve outside the root of its tier.

    Parameters
    ----------
    key : object
        The candidate key.

    Returns
    -------
    str
        The key.

    Raises
    ------
    InvalidKeyError
        If the key is not a string or is unsafe; the message names the reason.

    Examples
    --------
    >>> validate_key("sentinel2/tile-31UFU")
    'sentinel2/tile-31UFU'
    """
    if not isinstance(key, str):
        raise InvalidKeyError(f"a key must be a str, got {type(key).__name__}: {key!r}")
    problem = _key_problem(key)
    if problem:
        raise InvalidKeyError(
            f"invalid key {key!r}: {problem}. Use slash-separated names such as "
            "'sentinel2/tile-31UFU'."
        )
    return key


def _key_problem(key: str) -> str | None:
    if not key:
        return "it is empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"it is longer than {MAX_KEY_LENGTH} characters"
    if _CONTROL.search(key):
        return "it contains a control character"
    if "\\" in key:
        return "it contains a backslash"
    if key.startswith(("/", "~")) or _WINDOWS_DRIVE.match(key):
        return "it is an absolute path"
    if unicodedata.normalize("NFC", key) != key:
        return "it is not in Unicode normal form NFC"
    for segment in key.split("/"):
        if segment == "":
            return "it has an empty segment (a leading, trailing or double slash)"
        if segment in (".", ".."):
            return f"it has a {segment!r} segment"
        if segment.startswith("@"):
            return f"segments starting with '@' ({VERSIONS_DIR!r}, '@checkpoints') are reserved"
        if segment != segment.strip():
            return "a segment starts or ends with whitespace"
    return None


def generate_key(hint: str | None, kind: str) -> str:
    """Make a readable, unique key from a name hint (a variable or layer name).

    Parameters
    ----------
    hint : str or None
        A human name such as the DataArray name; ``None`` uses the data kind.
    kind : str
        The data kind, used as a prefix.

    Returns
    -------
    str
        A key such as ``"raster/t2m-3f9c1a"``.
    """
    slug = _SLUG_UNSAFE.sub("-", (hint or kind).lower()).strip("-")[:40] or kind
    return f"{kind}/{slug}-{secrets.token_hex(3)}"


def new_id() -> str:
    """A unique, time-sortable id: UTC time to the microsecond plus randomness.

    Used for version ids and checkpoint ids; ids made later sort after earlier ones
    (to the microsecond).

    Examples
    --------
    >>> len(new_id())
    31
    """
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}{now.microsecond:06d}Z-{secrets.token_hex(4)}"


def check_path(path: str) -> str:
    """``path`` if it is a relative storage path that stays inside its tier root.

    Backends with no directory tree (databases) call this where a file backend would
    resolve the path against its root.

    Raises
    ------
    InvalidKeyError
        For an absolute path, a ``..`` segment, a backslash or a control character.

    Examples
    --------
    >>> check_path("era5/t2m/@v/1.zarr")
    'era5/t2m/@v/1.zarr'
    """
    if (
        not isinstance(path, str)
        or path.startswith("/")
        or "\\" in path
        or ".." in path.split("/")
        or any(ord(c) < 32 or ord(c) == 127 for c in path)
    ):
        raise InvalidKeyError(f"path {path!r} escapes the tier root")
    return path
