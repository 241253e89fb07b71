"""Catalog entries: one stored version of a key, and lists of them, with text and HTML reprs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from html import escape
from typing import Any

from memories_geo.display import (
    Html,
    attrs_list,
    dims_list,
    footprint_svg,
    format_bbox,
    human_size,
    human_time,
    human_time_range,
    repr_html,
    row,
    section,
    short_checksum,
    span,
    table,
    tier_color,
)

__all__ = ["FRAME_COLUMNS", "Entry", "EntryList", "entries_to_frame"]

#: Columns of :func:`entries_to_frame` (``ls()``, ``search()``), besides the geometry.
FRAME_COLUMNS = ("key", "version", "tier", "format", "kind", "size", "modified")

#: Variables or attributes listed before a section starts closed.
_OPEN_UP_TO = 12


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
    storage_class : str or None
        Storage class (S3, GCS) or access tier (Azure) its objects were given; ``None``
        where the tier has none.
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
    storage_class: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary of every field."""
        return asdict(self)

    @property
    def _crs_short(self) -> str:
        if not self.crs:
            return "no CRS"
        return self.crs if len(self.crs) < 40 else self.crs.split("[", 1)[0] + "[...]"

    @property
    def _variables_text(self) -> str:
        if self.variables:
            return ", ".join(self.variables)
        if self.object_info.get("type") == "DataArray":
            return "unnamed DataArray"
        return "none"

    def __repr__(self) -> str:
        time = human_time_range(self.time_start, self.time_end, sep=" .. ")
        return (
            f"<memories_geo.Entry {self.key!r} v{self.version}>\n"
            f"  tier={self.tier}{f' ({self.storage_class})' if self.storage_class else ''} "
            f"format={self.format} kind={self.kind} size={human_size(self.size_bytes)}\n"
            f"  crs={self._crs_short} bbox(EPSG:4326)={format_bbox(self.bbox)}\n"
            f"  time={'none' if time == '—' else time} shape={dict(self.shape)}\n"
            f"  variables={_clip(self._variables_text, 70)}\n"
            f"  uri={self.uri}"
        )

    @property
    def _storage_class_html(self) -> str:
        if not self.storage_class:
            return ""
        return f" <span class='mg-muted'>{escape(self.storage_class)}</span>"

    def _repr_html_(self) -> str:
        is_table = self.kind == "vector" or set(self.shape) == {"rows"}
        names = list(self.variables)
        swatch = Html(f"<span class='mg-swatch' style='background:{tier_color(self.tier)}'></span>")
        sections = [
            row("tier", Html(swatch + span(self.tier) + self._storage_class_html)),
            row("format", f"{self.format} ({self.kind})"),
            row("CRS", self._crs_short, title=self.crs),
            row("bbox", Html(span(format_bbox(self.bbox), cls="mg-mono") + " <span class='mg-muted'>"
                             "lon/lat</span>")),
            row("time", human_time_range(self.time_start, self.time_end)),
            row("shape", dims_list(self.shape)),
            row("size", human_size(self.size_bytes), title=f"{self.size_bytes:,} bytes"),
            row("created", human_time(self.created_at)),
            section(
                "Columns" if is_table else "Variables",
                Html(", ".join(span(v, cls="mg-mono") for v in names)) if names else self._variables_text,
                preview=_clip(self._variables_text, 120), count=len(names) or None,
                expanded=0 < len(names) <= _OPEN_UP_TO,
            ),
            section(
                "Attributes", attrs_list(self.attrs),
                preview=_clip(", ".join(f"{k}: {v}" for k, v in self.attrs.items()), 120),
                count=len(self.attrs), expanded=len(self.attrs) <= _OPEN_UP_TO,
            ),
            row("tags", ", ".join(self.tags) if self.tags else "—"),
            section(
                "Storage",
                attrs_list({
                    "version id": span(self.version_id, cls="mg-mono"),
                    "checksum": span(self.checksum, cls="mg-mono"),
                    "uri": span(self.uri, cls="mg-mono"),
                    "accessed": f"{self.access_count} times, last {human_time(self.last_accessed_at)}"
                    if self.access_count else "never",
                }),
                preview=Html(f"checksum {span(short_checksum(self.checksum), cls='mg-mono')}"),
                expanded=False,
            ),
        ]
        figure = ""
        if self.bbox is not None:
            figure = footprint_svg(
                [(self.bbox, tier_color(self.tier), f"{self.key} v{self.version}")],
                caption=format_bbox(self.bbox), title=f"footprint of {self.key}",
            )
        return repr_html(obj_type="memories_geo.Entry", name=self.key, badges=[f"v{self.version}"],
                         text=repr(self), sections=sections, figure=figure)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class EntryList(list[Entry]):
    """Entries (the versions of a key, or search hits), with a table view for Jupyter.

    Examples
    --------
    >>> mem.versions("era5/t2m").to_frame()  # doctest: +SKIP
    """

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per entry (the columns of ``ls()``)."""
        import pandas as pd

        return pd.DataFrame(entries_to_frame(self).drop(columns="geometry"))

    def __repr__(self) -> str:
        if not self:
            return "EntryList([])"
        lines = [f"<memories_geo.EntryList: {len(self)} entr{'y' if len(self) == 1 else 'ies'}>"]
        width = max(len(e.key) for e in self)
        lines += [
            f"  {e.key:<{width}} v{e.version:<3} {human_time(e.created_at)}  {e.tier:<8} {e.format:<11} "
            f"{human_size(e.size_bytes):>10}  {short_checksum(e.checksum)}"
            for e in self
        ]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        keys = sorted({e.key for e in self})
        one_key = len(keys) == 1
        columns = ["version", "created", "tier", "format", "kind", "size", "checksum"]
        rows = [
            [f"v{e.version}", human_time(e.created_at), e.tier, e.format, e.kind,
             human_size(e.size_bytes), span(short_checksum(e.checksum), cls="mg-mono", title=e.checksum)]
            for e in self
        ]
        if not one_key:
            columns.insert(0, "key")
            rows = [[span(e.key, cls="mg-mono"), *r] for e, r in zip(self, rows, strict=True)]
        numeric = {columns.index("size")}
        label = "Versions" if one_key else "Entries"
        return repr_html(
            obj_type="memories_geo.EntryList", name=keys[0] if one_key else None,
            badges=[f"{len(self)} {label.lower()}"], text=repr(self),
            sections=[section(label, table(columns, rows, numeric=numeric), count=len(self))],
        )


def entries_to_frame(entries: Iterable[Entry]) -> Any:
    """A GeoDataFrame of footprints (EPSG:4326 boxes), one row per entry, for ``.explore()``.

    Columns: :data:`FRAME_COLUMNS` (``size`` human-readable, ``modified`` the
    version's creation time, UTC, to the second) and ``geometry``. Every other field
    is on the entries (``mem.info(key)``, ``mem.versions(key)``).
    """
    import geopandas as gpd
    import pandas as pd
    from shapely.geometry import box

    entries = list(entries)
    frame = pd.DataFrame(
        {
            "key": [e.key for e in entries],
            "version": pd.Series([e.version for e in entries], dtype="int64"),
            "tier": [e.tier for e in entries],
            "format": [e.format for e in entries],
            "kind": [e.kind for e in entries],
            "size": [human_size(e.size_bytes) for e in entries],
            "modified": pd.to_datetime(pd.Series([e.created_at for e in entries], dtype="object"),
                                       utc=True).dt.floor("s"),
        },
        columns=list(FRAME_COLUMNS),
    )
    geometry = [box(*e.bbox) if e.bbox else None for e in entries]
    return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(geometry, crs="EPSG:4326"), crs="EPSG:4326")
