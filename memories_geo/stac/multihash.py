"""Multihash encoding of the manifests' digests, for the STAC file extension's ``file:checksum``.

A multihash is ``varint(code) + varint(length) + digest`` written as hex
(https://multiformats.io/multihash/). The manifests hash with XXH3-128
(:data:`memories_geo.integrity.ALGORITHM`), whose code in the multicodec table is
``0xb3e4``; a 16-byte XXH3-128 digest therefore becomes ``e4e70210`` followed by its
32 hex digits.
"""

from __future__ import annotations

__all__ = ["MULTIHASH_CODES", "decode_multihash", "encode_multihash"]

#: Multicodec code of each digest algorithm the manifests may name.
MULTIHASH_CODES: dict[str, int] = {
    "xxh3_128": 0xB3E4,
    "xxh3-128": 0xB3E4,
    "sha2-256": 0x12,
    "sha256": 0x12,
    "blake2b-256": 0xB220,
}
_NAMES = {0xB3E4: "xxh3_128", 0x12: "sha2-256", 0xB220: "blake2b-256"}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, start: int) -> tuple[int, int]:
    value = shift = 0
    for i in range(start, min(len(data), start + 9)):
        value |= (data[i] & 0x7F) << shift
        if not data[i] & 0x80:
            return value, i + 1
        shift += 7
    raise ValueError("truncated or over-long varint in multihash")


def encode_multihash(algorithm: str, hex_digest: str) -> str:
    """The multihash (hex) of a digest given as hex.

    Parameters
    ----------
    algorithm : str
        Digest algorithm, as a manifest names it (``"xxh3_128"``) or its multicodec
        name (``"sha2-256"``).
    hex_digest : str
        The digest, hex.

    Returns
    -------
    str
        Lower-case hex multihash.

    Raises
    ------
    ValueError
        For an algorithm without a multicodec code, or a digest that is not hex.

    Examples
    --------
    >>> encode_multihash("xxh3_128", "00" * 16)[:8]
    'e4e70210'
    >>> encode_multihash("sha2-256", "ab" * 32)[:4]
    '1220'
    """
    try:
        code = MULTIHASH_CODES[algorithm.lower()]
    except KeyError:
        raise ValueError(
            f"no multihash code for digest algorithm {algorithm!r}; known: {sorted(MULTIHASH_CODES)}"
        ) from None
    digest = bytes.fromhex(hex_digest)
    return (_varint(code) + _varint(len(digest)) + digest).hex()


def decode_multihash(multihash: str) -> tuple[str, str]:
    """``(algorithm, hex digest)`` of a hex multihash; the inverse of :func:`encode_multihash`.

    Raises
    ------
    ValueError
        When ``multihash`` is not hex, is truncated, or names an unknown code.

    Examples
    --------
    >>> decode_multihash(encode_multihash("xxh3_128", "ab" * 16))
    ('xxh3_128', 'abababababababababababababababab')
    """
    data = bytes.fromhex(multihash)
    code, at = _read_varint(data, 0)
    length, at = _read_varint(data, at)
    if code not in _NAMES:
        raise ValueError(f"unknown multihash code {code:#x}; known: {sorted(hex(c) for c in _NAMES)}")
    digest = data[at:]
    if len(digest) != length:
        raise ValueError(f"multihash says {length} digest bytes, holds {len(digest)}")
    return _NAMES[code], digest.hex()
