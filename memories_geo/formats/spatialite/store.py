"""Writing a version table: SRIDs, creation with SpatiaLite geometry columns, rows, index, checksum.

A version is written in one ``BEGIN IMMEDIATE`` transaction: the table is created,
its geometry columns registered (``AddGeometryColumn``), the rows inserted, the R*Tree
spatial index built (``CreateSpatialIndex``), the table registered with the backend,
and the checksum of the rows as stored computed, before anything is committed.

The checksum is the xxh3-128 of a canonical serialisation of every stored value, row
by row in row-id order (type tag, length and bytes), prefixed with the column names.
"""

from __future__ import annotations

import sqlite3
import struct
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from memories_geo.backends.postgres.names import table_name_for
from memories_geo.backends.sqlite import quote
from memories_geo.errors import FormatError, UnsupportedObjectError
from memories_geo.formats.postgis.layout import entry_crs
from memories_geo.integrity import FileDigest

if TYPE_CHECKING:
    import pyproj

    from memories_geo.backends.sqlite import SQLiteBackend
    from memories_geo.formats.spatialite.layout import Prepared

__all__ = [
    "CUSTOM_SRID_END", "CUSTOM_SRID_START", "srid_for", "stored_columns", "table_digest", "write_table",
]

#: First SRID given to a CRS without an EPSG code SpatiaLite knows.
CUSTOM_SRID_START = 900_000
#: Last SRID of that range.
CUSTOM_SRID_END = 998_999
_AUTHORITY = "memories_geo"
_HEADER = b"memories_geo spatialite rows v1\n"
_BATCH = 10_000


def srid_for(con: sqlite3.Connection, crs: pyproj.CRS) -> int:
    """SRID of ``crs`` in ``spatial_ref_sys``: its EPSG code when SpatiaLite knows it, else a row of its own.

    A CRS without an EPSG code (or one SpatiaLite's tables lack) gets the first free
    SRID from :data:`CUSTOM_SRID_START`, once: the same WKT later finds the same row.
    Call inside a write transaction (concurrent writers queue on its lock).

    Raises
    ------
    FormatError
        When the range of custom SRIDs is full.
    """
    code = crs.to_epsg(min_confidence=100)
    if code is not None:
        known = con.execute(
            "SELECT 1 FROM spatial_ref_sys WHERE srid = ? AND upper(auth_name) = 'EPSG' AND auth_srid = ?",
            (code, code),
        ).fetchone()
        if known or con.execute("SELECT InsertEpsgSrid(?)", (code,)).fetchone()[0] == 1:
            return int(code)
    wkt = crs.to_wkt("WKT1_GDAL") or crs.to_wkt()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proj4 = crs.to_proj4() or ""
    row = con.execute(
        "SELECT srid FROM spatial_ref_sys WHERE auth_name = ? AND srtext = ? ORDER BY srid LIMIT 1",
        (_AUTHORITY, wkt),
    ).fetchone()
    if row:
        return int(row[0])
    (srid,) = con.execute(
        "SELECT COALESCE(MAX(srid) + 1, ?) FROM spatial_ref_sys WHERE srid BETWEEN ? AND ?",
        (CUSTOM_SRID_START, CUSTOM_SRID_START, CUSTOM_SRID_END),
    ).fetchone()
    if srid > CUSTOM_SRID_END:
        raise FormatError(
            f"no free SRID left in spatial_ref_sys between {CUSTOM_SRID_START} and {CUSTOM_SRID_END}"
        )
    con.execute(
        "INSERT INTO spatial_ref_sys (srid, auth_name, auth_srid, ref_sys_name, proj4text, srtext) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (srid, _AUTHORITY, srid, crs.name or "custom", proj4, wkt),
    )
    return int(srid)


def stored_columns(info: Mapping[str, Any]) -> list[str]:
    """Every column of a version table: the row id, attributes and geometries, then exact companions."""
    names = [info["row_id"]] + [e["column"] for e in info["columns"]]
    return names + [e["exact_column"] for e in info["columns"] if e.get("exact_column")]


def write_table(backend: SQLiteBackend, path: str, prepared: Prepared) -> tuple[dict[str, Any], FileDigest]:
    """Create, fill, index, register and checksum the table of the version at ``path``, in one transaction.

    Returns
    -------
    tuple
        The version's info (SRIDs added) and the digest of its rows.

    Raises
    ------
    UnsupportedObjectError
        When SQLite refuses the rows (the transaction is rolled back: nothing is left).
    """
    info = prepared.info
    table = table_name_for(path)
    attributes = [e for e in info["columns"] if not e.get("geometry")]
    try:
        with backend.connection() as con:
            for entry, _, _ in prepared.geometries:
                entry["srid"] = srid_for(con, entry_crs(entry))
            definitions = [f"{quote(info['row_id'])} INTEGER PRIMARY KEY"]
            definitions += [f"{quote(e['column'])} {e['type']}" for e in attributes]
            definitions += [f"{quote(e['exact_column'])} BLOB" for e, _, _ in prepared.geometries
                            if e.get("exact_column")]
            con.execute(f"CREATE TABLE {quote(table)} ({', '.join(definitions)})")
            for entry, _, _ in prepared.geometries:
                added = con.execute(
                    "SELECT AddGeometryColumn(?, ?, ?, ?, ?)",
                    (table, entry["column"], entry["srid"], entry["type"], entry["dims"]),
                ).fetchone()[0]
                if added != 1:
                    raise FormatError(f"SpatiaLite refused the geometry column {entry['name']!r} of {table}")
            _insert(con, table, info, prepared)
            for entry, _, _ in prepared.geometries:
                con.execute("SELECT CreateSpatialIndex(?, ?)", (table, entry["column"]))
            backend.register_table(con, path, table, info)
            digest = table_digest(con, table, info)
    except (sqlite3.IntegrityError, sqlite3.DataError, OverflowError) as exc:
        raise UnsupportedObjectError(f"SQLite refused the rows of {backend.url_for(path)}: {exc}") from None
    return info, digest


def _insert(con: sqlite3.Connection, table: str, info: Mapping[str, Any], prepared: Prepared) -> None:
    names = [info["row_id"]] + [e["column"] for e in info["columns"] if not e.get("geometry")]
    marks = ["?"] * len(names)
    columns: list[list[Any]] = [list(range(1, len(prepared.frame) + 1)), *prepared.values]
    for entry, plain, exact in prepared.geometries:
        names.append(entry["column"])
        marks.append(f"GeomFromWKB(?, {int(entry['srid'])})")
        columns.append(plain)
        if exact is not None:
            names.append(entry["exact_column"])
            marks.append("?")
            columns.append(exact)
    statement = (f"INSERT INTO {quote(table)} ({', '.join(quote(n) for n in names)}) "  # noqa: S608
                 f"VALUES ({', '.join(marks)})")
    rows = list(zip(*columns, strict=True)) if columns else []
    for start in range(0, len(rows), _BATCH):
        con.executemany(statement, rows[start:start + _BATCH])
    for entry, plain, exact in prepared.geometries:
        kept = f"{quote(entry['column'])} IS NOT NULL"
        if exact is not None:
            kept += f" OR {quote(entry['exact_column'])} IS NOT NULL"
        found = con.execute(f"SELECT count(*) FROM {quote(table)} WHERE {kept}").fetchone()[0]  # noqa: S608
        expected = sum(a is not None or (exact is not None and b is not None)
                       for a, b in zip(plain, exact or plain, strict=True))
        if found != expected:
            raise UnsupportedObjectError(
                f"SpatiaLite could not read {expected - found} geometries of column {entry['name']!r}; "
                "make them valid ISO geometries (shapely.make_valid) first"
            )


def _encode(value: Any) -> bytes:
    if value is None:
        return b"N"
    if isinstance(value, int):
        return b"I" + struct.pack("<q", value)
    if isinstance(value, float):
        return b"F" + struct.pack("<d", value)
    data = value.encode() if isinstance(value, str) else bytes(value)
    return (b"S" if isinstance(value, str) else b"B") + struct.pack("<q", len(data)) + data


def table_digest(con: sqlite3.Connection, table: str, info: Mapping[str, Any]) -> FileDigest:
    """xxh3-128 and size of the canonical serialisation of every stored row of ``table``, by row id."""
    import xxhash

    names = stored_columns(info)
    h = xxhash.xxh3_128()
    head = _HEADER + "\x1f".join(names).encode() + b"\n"
    h.update(head)
    size = len(head)
    cursor = con.execute(
        f"SELECT {', '.join(quote(n) for n in names)} FROM {quote(table)} ORDER BY {quote(info['row_id'])}"  # noqa: S608
    )
    while rows := cursor.fetchmany(_BATCH):
        block = b"".join(b"".join(_encode(v) for v in row) + b"\n" for row in rows)
        h.update(block)
        size += len(block)
    return FileDigest(size, h.hexdigest())
