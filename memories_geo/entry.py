"""Catalog entries: one stored version of a key, with a text and an HTML repr."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Entry", "entries_to_frame"]


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


@dataclass(frozen=True)
class Entry:
    """What the catalog knows about one committed version of a key.

    Attributes
    ----------
    key, version : str, int
        Name and version number (1, 2, ...).
    tier, format, kind : str
        Where and how it is stored, and what it is.
    uri : str
        Display URL of the stored version (no credentials).
    crs : str or None
        ``"AUTH:CODE"`` or WKT2.
    bbox : tuple or None
        ``(minx, miny, maxx, maxy)`` in EPSG:4326; ``native_bbox`` in ``crs``.
    time_start, time_end : str or None
        ISO 8601 (UTC) bounds of the time covered.
    variables : tuple of str
        Variables or attribute columns.
    shape : dict
        Dimension sizes, or ``{"rows": n}``.
    size_bytes : int
        Stored size.
    checksum : str
        Manifest checksum.
    created_at, last_accessed_at : str or None
        ISO 8601 UTC.
    access_count : int
        Times opened.
    attrs, tags : dict, tuple
        User metadata.
    object_info : dict
        What ``open`` needs to rebuild the Python type.
    version_id, path : str
        Storage identifiers (path relative to the tier root).
    """

    key: str
    version: int
    tier: str
    format: str
    kind: str
    uri: str
    crs: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    native_bbox: tuple[float, float, float, float] | None = None
    time_start: str | None = None
    time_end: str | None = None
    variables: tuple[str, ...] = ()
    shape: Mapping[str, int] = field(default_factory=dict)
    size_bytes: int = 0
    checksum: str = ""
    created_at: str | None = None
    last_accessed_at: str | None = None
    access_count: int = 0
    attrs: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    object_info: Mapping[str, Any] = field(default_factory=dict)
    version_id: str = ""
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary of every field."""
        return asdict(self)

    @property
    def _crs_short(self) -> str:
        if not self.crs:
            return "no CRS"
        return self.crs if len(self.crs) < 40 else self.crs.split("[", 1)[0] + "[...]"

    def __repr__(self) -> str:
        bbox = "None" if self.bbox is None else "(" + ", ".join(f"{v:.4g}" for v in self.bbox) + ")"
        time = f"{self.time_start} .. {self.time_end}" if self.time_start else "none"
        return (
            f"<memories_geo.Entry {self.key!r} v{self.version}>\n"
            f"  tier={self.tier} format={self.format} kind={self.kind} size={_size(self.size_bytes)}\n"
            f"  crs={self._crs_short} bbox(EPSG:4326)={bbox}\n"
            f"  time={time} shape={dict(self.shape)}\n"
            f"  uri={self.uri}"
        )

    def _repr_html_(self) -> str:
        rows = [
            ("version", f"v{self.version} ({self.version_id})"),
            ("tier / format / kind", f"{self.tier} / {self.format} / {self.kind}"),
            ("size", _size(self.size_bytes)),
            ("CRS", self._crs_short),
            ("bbox (EPSG:4326)", self.bbox),
            ("time", f"{self.time_start} .. {self.time_end}" if self.time_start else "—"),
            ("shape", dict(self.shape)),
            ("variables", ", ".join(self.variables[:20]) + (" …" if len(self.variables) > 20 else "")),
            ("created", self.created_at),
            ("accessed", f"{self.access_count} times (last {self.last_accessed_at or 'never'})"),
            ("checksum", self.checksum),
            ("uri", self.uri),
        ]
        body = "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
            for k, v in rows
        )
        return (
            f"<div><strong>memories_geo.Entry</strong> <code>{html.escape(self.key)}</code>"
            f"<table>{body}</table></div>"
        )


def entries_to_frame(entries: list[Entry]) -> Any:
    """A GeoDataFrame of footprints (EPSG:4326 boxes), one row per entry, for ``.explore()``."""
    import geopandas as gpd
    import pandas as pd
    from shapely.geometry import box

    columns = ["key", "version", "tier", "format", "kind", "crs", "time_start", "time_end",
               "size_bytes", "created_at", "last_accessed_at", "access_count", "uri"]
    data = {c: [getattr(e, c) for e in entries] for c in columns}
    frame = pd.DataFrame(data, columns=columns)
    for c in ("time_start", "time_end", "created_at", "last_accessed_at"):
        frame[c] = pd.to_datetime(frame[c], utc=True)
    geometry = [box(*e.bbox) if e.bbox else None for e in entries]
    return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(geometry, crs="EPSG:4326"), crs="EPSG:4326")
