"""SRIDs: the EPSG code PostGIS knows for a CRS, or a custom ``spatial_ref_sys`` row."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from memories_geo.errors import FormatError, UnsupportedObjectError

if TYPE_CHECKING:
    import psycopg
    import pyproj

__all__ = ["CUSTOM_SRID_END", "CUSTOM_SRID_START", "srid_for"]

#: First SRID used for CRSs without an EPSG code (PostGIS reserves 900000-998999 for users).
CUSTOM_SRID_START = 900_000
#: Last SRID of the user range.
CUSTOM_SRID_END = 998_999
#: Longest ``srtext`` / ``proj4text`` that ``spatial_ref_sys`` holds.
_MAX_TEXT = 2048


def srid_for(con: psycopg.Connection[Any], crs: pyproj.CRS) -> int:
    """SRID for ``crs``: its EPSG code when PostGIS knows it, else a custom ``spatial_ref_sys`` row.

    A CRS without an EPSG code gets the first free SRID from :data:`CUSTOM_SRID_START`,
    once: the same WKT later finds the same row. Rows are added under an advisory
    lock inside ``con``'s transaction, so concurrent writers agree.

    Raises
    ------
    UnsupportedObjectError
        When the CRS's WKT or PROJ string is longer than ``spatial_ref_sys`` holds.
    FormatError
        When the user range of SRIDs is full.
    """
    code = crs.to_epsg(min_confidence=100)
    if code is not None:
        row = con.execute(
            "SELECT srid FROM spatial_ref_sys WHERE srid = %s AND upper(auth_name) = 'EPSG' "
            "AND auth_srid = %s", (code, code)
        ).fetchone()
        if row:
            return int(row[0])
    wkt = crs.to_wkt("WKT1_GDAL") or ""
    if not wkt or len(wkt) > _MAX_TEXT:
        wkt = crs.to_wkt()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proj4 = crs.to_proj4() or ""
    if len(wkt) > _MAX_TEXT or len(proj4) > _MAX_TEXT:
        raise UnsupportedObjectError(
            f"the CRS {crs.name!r} has no EPSG code and its WKT is longer than spatial_ref_sys "
            f"holds ({_MAX_TEXT} characters); reproject to a CRS with an EPSG code first"
        )
    con.execute("SELECT pg_advisory_xact_lock(%s)", (CUSTOM_SRID_START,))
    row = con.execute(
        "SELECT srid FROM spatial_ref_sys WHERE srid BETWEEN %s AND %s AND srtext = %s ORDER BY srid LIMIT 1",
        (CUSTOM_SRID_START, CUSTOM_SRID_END, wkt),
    ).fetchone()
    if row:
        return int(row[0])
    (srid,) = con.execute(
        "SELECT COALESCE(MAX(srid) + 1, %s) FROM spatial_ref_sys WHERE srid BETWEEN %s AND %s",
        (CUSTOM_SRID_START, CUSTOM_SRID_START, CUSTOM_SRID_END),
    ).fetchone() or (CUSTOM_SRID_START,)
    if srid > CUSTOM_SRID_END:
        raise FormatError(
            f"no free SRID left in spatial_ref_sys between {CUSTOM_SRID_START} and {CUSTOM_SRID_END}"
        )
    con.execute(
        "INSERT INTO spatial_ref_sys (srid, auth_name, auth_srid, srtext, proj4text) "
        "VALUES (%s, NULL, NULL, %s, %s)",
        (srid, wkt, proj4),
    )
    return int(srid)
