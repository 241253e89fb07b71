"""Pieces of the notebook reprs: HTML builders, the style sheet, footprint SVG, human units.

Pure functions of plain values (no catalog, no data): entries, collections and
checkpoints compose them in their ``_repr_html_``. The HTML follows xarray's habits
(collapsible sections, theme-aware CSS variables, a plain-text fallback) and is
well-formed XML.
"""

from memories_geo.display.markup import (
    Html,
    attrs_list,
    dims_list,
    esc,
    repr_html,
    row,
    section,
    span,
    table,
)
from memories_geo.display.svg import TIER_COLORS, footprint_svg, tier_color
from memories_geo.display.units import (
    format_bbox,
    human_size,
    human_time,
    human_time_range,
    round_bbox,
    short_checksum,
    short_version_id,
    size_unit,
)

__all__ = [
    "TIER_COLORS",
    "Html",
    "attrs_list",
    "dims_list",
    "esc",
    "footprint_svg",
    "format_bbox",
    "human_size",
    "human_time",
    "human_time_range",
    "repr_html",
    "round_bbox",
    "row",
    "section",
    "short_checksum",
    "short_version_id",
    "size_unit",
    "span",
    "table",
    "tier_color",
]
