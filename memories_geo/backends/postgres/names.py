"""Physical names: PostgreSQL identifiers made from logical paths and user-given names.

Keys may be longer than PostgreSQL's 63-byte identifiers and may hold any character,
so tables are named from a sanitized prefix of the key plus a hash of the path, and
other names are kept as they are when PostgreSQL can hold them unchanged. Every name
is only ever used through :class:`psycopg.sql.Identifier`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

__all__ = ["MAX_IDENTIFIER_BYTES", "safe_identifier", "short_hash", "table_name_for"]

#: PostgreSQL truncates identifiers longer than this many bytes (NAMEDATALEN - 1).
MAX_IDENTIFIER_BYTES = 63


def short_hash(text: str, n: int = 12) -> str:
    """The first ``n`` hex digits of a BLAKE2b hash of ``text``."""
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()[:n]


def table_name_for(path: str) -> str:
    """Physical table name of the version stored at logical ``path``.

    Lower-case ASCII letters, digits and ``_`` taken from the key (at most 40), then
    ``__v_`` and 12 hex digits of a hash of the whole path: always a valid, unique
    identifier of at most 63 bytes, whatever the key holds.

    Examples
    --------
    >>> table_name_for("Robert'); DROP TABLE--/@v/20240101T000000000Z-0a1b2c3d")[:20]
    'robert_drop_table__v'
    """
    key = path.split("/@v/", 1)[0]
    ascii_key = unicodedata.normalize("NFKD", key).encode("ascii", "ignore").decode().lower()
    prefix = re.sub(r"[^a-z0-9]+", "_", ascii_key).strip("_")[:40].rstrip("_") or "layer"
    return f"{prefix}__v_{short_hash(path)}"


def safe_identifier(name: str, *, reserved: frozenset[str] = frozenset()) -> str:
    """``name`` itself when PostgreSQL can hold it unchanged, else a truncated, hashed form.

    A name is kept when it has no NUL character, fits in 63 bytes of UTF-8 and is not
    in ``reserved``; otherwise it becomes its longest prefix that fits in 50 bytes
    (cut on a character boundary) plus ``~`` and 12 hex digits of a hash of the name.

    Examples
    --------
    >>> safe_identifier("select")
    'select'
    >>> len(safe_identifier("x" * 100).encode())
    63
    """
    encoded = name.encode()
    if "\x00" not in name and len(encoded) <= MAX_IDENTIFIER_BYTES and name not in reserved:
        return name
    head = encoded[:50].decode("utf-8", "ignore").replace("\x00", "")
    out = f"{head}~{short_hash(name)}"
    return out + "_" * (MAX_IDENTIFIER_BYTES - len(out.encode())) if name in reserved else out
