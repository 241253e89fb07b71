"""Checksums of a version by row-id range: one range per load, each in the segment table holding it.

The digest of a range is the ``postgis`` format's table checksum restricted to it:
xxh3-128 of the server's binary ``COPY`` of those rows in row-id order. A version is a
view over segment tables (:mod:`.load`); each range recorded in its info
(``segments``: ``[first, last, size, digest, table]``) names the table holding it. An
append that writes only a new segment reuses the previous version's ranges unchanged
and adds the new rows', so it reads nothing back; one that copies the previous rows
into one new table keeps their ranges (pointed at the copy) until :data:`MAX_RANGES`
ranges (or a ``replace``) make the older rows one range again.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from memories_geo.formats.postgis import copy as pgcopy
from memories_geo.formats.postgis.types import stored_columns
from memories_geo.integrity import FileDigest, Manifest

if TYPE_CHECKING:
    from memories_geo.backends.postgres import PostgresBackend, VersionTable

__all__ = ["MAX_RANGES", "manifest_ranges", "segments_for", "segments_manifest", "table_manifest"]

#: Most row-id ranges a version copied into one table is checksummed by (past it, one for the older rows).
MAX_RANGES = 8
_RANGE = re.compile(r"#rows (\d+)-(\d+)$")


def segments_for(
    backend: PostgresBackend,
    segment: str,
    info: Mapping[str, Any],
    previous: VersionTable | None,
    first_row: int,
    sent: FileDigest | None,
    *,
    shared: bool,
    replaced: int = 0,
) -> list[list[Any]]:
    """Checksums of a version by row-id range: the previous version's ranges, then the new rows'.

    ``segment`` is the table written; ``shared``: it holds only the new rows, the
    previous ones staying in the previous version's tables (their ranges are reused
    as they are). Otherwise ``segment`` holds every row: the previous ranges are
    reused (pointed at it) when those rows were copied unchanged and there are fewer
    than :data:`MAX_RANGES`, else all previous rows become one range, read back. The
    new rows' digest is that of the stream sent when the server echoed it, else read
    back.
    """
    last = int(info["next_row"]) - 1
    tail: list[list[Any]] = []
    if last >= first_row:
        if sent is None:
            _, sent = pgcopy.table_digest(backend, segment, info, rows=(first_row, last))
        tail = [[first_row, last, sent.size, sent.digest, segment]]
    if previous is None:
        if tail:
            return tail
        _, empty = pgcopy.table_digest(backend, segment, info)
        return [[first_row, last, empty.size, empty.digest, segment]]
    before = [list(b) for b in previous.info.get("segments") or []]
    if shared:
        return before + tail
    unchanged = not replaced and stored_columns(previous.info) == stored_columns(info)
    if before and unchanged and len(before) + len(tail) <= MAX_RANGES:
        return [[*b[:4], segment] for b in before] + tail
    if first_row <= 1:
        return tail
    _, old = pgcopy.table_digest(backend, segment, info, rows=(1, first_row - 1))
    return [[1, first_row - 1, old.size, old.digest, segment], *tail]


def segments_manifest(table: str, segments: list[list[Any]]) -> Manifest:
    """The manifest of a table checksummed by row-id ranges: one pseudo-file per range.

    A table of one range is one pseudo-file named after the table, as ``postgis`` has;
    otherwise each is named ``{table}#rows {first}-{last}``.

    Examples
    --------
    >>> sorted(segments_manifest("t", [[1, 10, 80, "ab", "s1"], [11, 12, 30, "cd", "s2"]]).files)
    ['t#rows 1-10', 't#rows 11-12']
    """
    if len(segments) == 1:
        (_, _, size, digest, *_), = segments
        return Manifest({table: FileDigest(int(size), str(digest))})
    return Manifest({
        f"{table}#rows {a}-{b}": FileDigest(int(size), str(h)) for a, b, size, h, *_ in segments
    })


def manifest_ranges(manifest: Manifest) -> list[tuple[int, int]] | None:
    """The row-id ranges named in a manifest of :func:`segments_manifest` (``None``: the whole table).

    Examples
    --------
    >>> manifest_ranges(segments_manifest("t", [[1, 10, 80, "ab", "s1"], [11, 12, 30, "cd", "s2"]]))
    [(1, 10), (11, 12)]
    """
    found = [_RANGE.search(name) for name in manifest.files]
    ranges = [(int(m.group(1)), int(m.group(2))) for m in found if m is not None]
    return ranges or None


def table_manifest(
    backend: PostgresBackend, table: str, info: Mapping[str, Any], ranges: list[tuple[int, int]] | None = None
) -> Manifest:
    """The manifest of a stored version, recomputed range by range (default: the ranges of ``info``).

    ``table`` is the version's relation (its view). A range recorded in ``info`` is
    read from the segment table holding it, whole when that table holds nothing else;
    other ``ranges`` (those of another version's manifest, e.g. before a backup was
    restored into one table) are read through ``table``.

    Examples
    --------
    >>> table_manifest(backend, found.table, found.info)  # doctest: +SKIP
    Manifest(files={'obs__v_0123456789ab': FileDigest(size=9841, digest='...')}, ...)
    """
    recorded = [list(s) for s in info.get("segments") or []]
    own = [(int(s[0]), int(s[1])) for s in recorded]
    if ranges is None and len(recorded) > 1:
        ranges = own
    if not ranges:
        _, digest = pgcopy.table_digest(backend, table, info)
        return Manifest({table: digest})
    holders = Counter(str(s[4]) for s in recorded)
    files = {}
    for i, (a, b) in enumerate(ranges):
        if ranges == own and holders[str(recorded[i][4])] == 1:
            _, digest = pgcopy.table_digest(backend, str(recorded[i][4]), info)
        else:
            source = str(recorded[i][4]) if ranges == own else table
            _, digest = pgcopy.table_digest(backend, source, info, rows=(a, b))
        files[f"{table}#rows {a}-{b}"] = digest
    return Manifest(files)
