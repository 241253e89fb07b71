"""Footprint pictures: bounding boxes on a small lon/lat world frame, as inline SVG.

Drawn without any network access: a plate carrée frame with a 30-degree graticule and
coarse land outlines (:mod:`memories_geo.display.land`). Boxes too small to see at this
scale get a ring around their centre. Colours other than the boxes' follow the text
colour, so the picture suits light and dark notebooks alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import cycle, islice

from memories_geo.display.land import LAND_PATH
from memories_geo.display.markup import Html, esc

__all__ = ["TIER_COLORS", "footprint_svg", "tier_color"]

#: Colour of each built-in tier, in the HTML reprs and the plots.
TIER_COLORS = {"hot": "#d94841", "warm": "#f08c00", "cold": "#1c7ed6", "glacier": "#15aabf"}
_OTHER_COLORS = ("#7048e8", "#37b24d", "#e64980", "#868e96", "#a0522d")

#: Smallest drawn size of a box, and radius of the ring around a tiny one, in pixels.
_MIN_PX = 2.0
_RING_PX = 6.0


def tier_color(tier: str, tiers: Sequence[str] = ()) -> str:
    """Colour of ``tier``: fixed for the built-in tiers, else by its place in ``tiers``.

    Examples
    --------
    >>> tier_color("hot")
    '#d94841'
    >>> tier_color("scratch", ["hot", "scratch"])
    '#7048e8'
    """
    if tier in TIER_COLORS:
        return TIER_COLORS[tier]
    others = [t for t in tiers if t not in TIER_COLORS]
    index = others.index(tier) if tier in others else len(others)
    return next(islice(cycle(_OTHER_COLORS), index, None))


def _num(v: float) -> str:
    return f"{v:.3f}".rstrip("0").rstrip(".")


def _frame(scale: float) -> str:
    lines = [f"M{x} -90V90" for x in range(-120, 180, 60)] + [f"M-180 {y}H180" for y in range(-60, 90, 30)]
    hair = _num(0.6 / scale)
    return (
        "<rect x='-180' y='-90' width='360' height='180' fill='currentColor' fill-opacity='0.03'/>"
        f"<path d='{''.join(lines)}' fill='none' stroke='currentColor' stroke-opacity='0.12' "
        f"stroke-width='{hair}'/>"
        f"<path d='{LAND_PATH}' fill='currentColor' fill-opacity='0.17' stroke='none'/>"
        "<rect x='-180' y='-90' width='360' height='180' fill='none' stroke='currentColor' "
        f"stroke-opacity='0.35' stroke-width='{_num(1 / scale)}'/>"
    )


def _box(bbox: Sequence[float], color: str, label: str, scale: float) -> str:
    minx, miny, maxx, maxy = (float(v) for v in bbox)
    crosses = minx > maxx
    spans = [(minx, 180.0), (-180.0, maxx)] if crosses else [(minx, maxx)]
    least = _MIN_PX / scale
    share = (maxx - minx + (360.0 if crosses else 0.0)) * (maxy - miny) / (360.0 * 180.0)
    opacity = "0.08" if share > 0.25 else "0.3"
    out = [f"<g><title>{esc(label)}</title>"]
    for x0, x1 in spans:
        w, h = max(x1 - x0, least), max(maxy - miny, least)
        x, y = (x0 + x1 - w) / 2, -(miny + maxy + h) / 2
        out.append(
            f"<rect x='{_num(x)}' y='{_num(y)}' width='{_num(w)}' height='{_num(h)}' fill='{color}' "
            f"fill-opacity='{opacity}' stroke='{color}' stroke-width='{_num(1.2 / scale)}'/>"
        )
    width = maxx - minx + (360.0 if crosses else 0.0)
    if max(width, maxy - miny) * scale < 2 * _RING_PX:
        cx = minx + width / 2
        cx = cx - 360.0 if cx > 180.0 else cx
        out.append(
            f"<circle cx='{_num(cx)}' cy='{_num(-(miny + maxy) / 2)}' r='{_num(_RING_PX / scale)}' "
            f"fill='none' stroke='{color}' stroke-width='{_num(1.5 / scale)}'/>"
        )
    out.append("</g>")
    return "".join(out)


def footprint_svg(
    boxes: Sequence[tuple[Sequence[float], str, str]],
    *,
    width: int = 220,
    caption: str | None = None,
    title: str = "footprint",
) -> Html:
    """A world frame with ``boxes`` drawn on it, as a ``<figure>`` holding an ``<svg>``.

    Parameters
    ----------
    boxes : list of (bbox, colour, label)
        ``(minx, miny, maxx, maxy)`` in EPSG:4326 (``minx > maxx`` crosses the
        antimeridian), a CSS colour and a tooltip. Larger boxes are drawn first.
    width : int
        Width in pixels (the height is half of it).
    caption : str, optional
        Text under the picture.
    title : str
        Accessible name of the picture.

    Examples
    --------
    >>> page = footprint_svg([((-10, 35, 20, 60), "#d94841", "era5/t2m")])
    >>> page.count("<rect")
    3
    """
    scale = width / 360.0

    def area(item: tuple[Sequence[float], str, str]) -> float:
        minx, miny, maxx, maxy = (float(v) for v in item[0])
        return -(maxx - minx + (360.0 if minx > maxx else 0.0)) * (maxy - miny)

    drawn = "".join(_box(b, c, label, scale) for b, c, label in sorted(boxes, key=area))
    svg = (
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='-180 -90 360 180' width='{width}' "
        f"height='{width // 2}' role='img' aria-label='{esc(title)}'><title>{esc(title)}</title>"
        f"{_frame(scale)}{drawn}</svg>"
    )
    text = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return Html(f"<figure class='mg-figure'>{svg}{text}</figure>")
