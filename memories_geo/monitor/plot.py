"""Plots of a collection: storage per tier, footprints, latency and throughput over time.

matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from memories_geo.display import human_size, size_unit, tier_color
from memories_geo.display.land import land_rings
from memories_geo.entry import Entry
from memories_geo.errors import OptionError
from memories_geo.monitor.metrics import READ_OPERATIONS, latency_series, parse_period, throughput_series
from memories_geo.monitor.records import OperationLog, records_frame
from memories_geo.monitor.usage import TierUsage, tier_usage

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from memories_geo.catalog import Catalog

#: What :meth:`MemoryPlots.usage` groups by.
USAGE_GROUPS = ("tier", "format", "kind")

__all__ = ["MemoryPlots", "plot_footprints", "plot_latency", "plot_throughput", "plot_usage"]

_INSTALL = "pip install 'memories-geo[plot]'"


def _pyplot(what: str) -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(f"{what} draws with matplotlib, which is not installed: {_INSTALL}") from exc
    return plt


def _axes(ax: Axes | None, what: str, size: tuple[float, float]) -> Axes:
    plt = _pyplot(what)
    if ax is not None:
        return ax
    _, new = plt.subplots(figsize=size)
    return new


def plot_usage(usage: Sequence[TierUsage], *, ax: Axes | None = None) -> Axes:
    """Stacked bars of the bytes stored per tier: current versions, then older ones kept.

    Bar heights are in the binary unit that suits the largest tier (the y label names
    it); each bar is labelled with its total, human-readable.

    Parameters
    ----------
    usage : list of TierUsage
        From :func:`~memories_geo.monitor.usage.tier_usage`.
    ax : matplotlib Axes, optional
        Where to draw; default a new figure.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from memories_geo.monitor.usage import TierUsage
    >>> ax = plot_usage([TierUsage("hot", 2, 3, 2048, 1024), TierUsage("warm")])  # doctest: +SKIP
    >>> [p.get_height() for p in ax.patches]  # doctest: +SKIP
    [2.0, 0.0, 1.0, 0.0]
    """
    ax = _axes(ax, "plot.usage()", (6.0, 3.2))
    from matplotlib.patches import Patch

    names = [u.tier for u in usage]
    colors = [tier_color(n, names) for n in names]
    unit, factor = size_unit(max((u.total_bytes for u in usage), default=0))
    current = [u.current_bytes / factor for u in usage]
    retained = [u.retained_bytes / factor for u in usage]
    ax.bar(names, current, color=colors, edgecolor=colors)
    older = ax.bar(names, retained, bottom=current, color=colors, edgecolor=colors, alpha=0.35, hatch="///")
    ax.bar_label(older, labels=[human_size(u.total_bytes) for u in usage], padding=2, fontsize=9)
    top = max((c + r for c, r in zip(current, retained, strict=True)), default=0.0)
    ax.set_ylim(0, top * 1.18 if top > 0 else 1.0)
    ax.set_ylabel(f"stored size ({unit})")
    ax.set_title("Storage per tier")
    ax.legend(
        handles=[Patch(facecolor="0.45", label="current versions"),
                 Patch(facecolor="0.45", alpha=0.35, hatch="///", label="older versions")],
        loc="upper right", frameon=False, fontsize=9,
    )
    ax.spines[["top", "right"]].set_visible(False)
    return ax


def plot_footprints(
    entries: Sequence[Entry],
    *,
    tiers: Sequence[str] = (),
    ax: Axes | None = None,
    land: bool = True,
) -> Axes:
    """Footprints (EPSG:4326 boxes) of ``entries`` on lon/lat axes, coloured by tier.

    One rectangle patch per box (two for a box crossing the antimeridian); boxes too
    small to see also get a ring marker at their centre. The view is the boxes' extent
    with a margin, or the world when there is nothing to draw.

    Parameters
    ----------
    entries : list of Entry
        What to draw; entries without a footprint are skipped.
    tiers : sequence of str
        Tier order, for colours and the legend.
    ax : matplotlib Axes, optional
        Where to draw; default a new figure.
    land : bool
        Draw coarse land outlines (offline, Natural Earth 1:110m) underneath.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax, "plot.footprints()", (7.0, 3.8))
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Patch, Rectangle

    boxes = [(e.tier, e.bbox) for e in entries if e.bbox is not None]
    present = list(dict.fromkeys([*tiers, *(tier for tier, _ in boxes)]))
    if land:
        ax.add_collection(PolyCollection(land_rings(), facecolors="0.5", alpha=0.18, edgecolors="none",
                                         zorder=0))

    def width(bbox: Sequence[float]) -> float:
        return bbox[2] - bbox[0] + (360.0 if bbox[0] > bbox[2] else 0.0)

    xlim = _extent([v for _, b in boxes for v in (b[0], b[2])], -180.0, 180.0)
    ylim = _extent([v for _, b in boxes for v in (b[1], b[3])], -90.0, 90.0)
    least = 0.01 * max(xlim[1] - xlim[0], ylim[1] - ylim[0])
    tiny: list[tuple[float, float, str]] = []
    for tier, (minx, miny, maxx, maxy) in sorted(boxes, key=lambda b: -width(b[1]) * (b[1][3] - b[1][1])):
        color = tier_color(tier, present)
        across = width((minx, miny, maxx, maxy))
        fill = to_rgba(color, 0.12 if across * (maxy - miny) > 0.25 * 360 * 180 else 0.4)
        spans = [(minx, 180.0), (-180.0, maxx)] if minx > maxx else [(minx, maxx)]
        for x0, x1 in spans:
            ax.add_patch(Rectangle((x0, miny), x1 - x0, maxy - miny, facecolor=fill, edgecolor=color,
                                   linewidth=1.2, zorder=2))
        if max(across, maxy - miny) < least:
            centre = minx + across / 2
            tiny.append((centre - 360.0 if centre > 180.0 else centre, (miny + maxy) / 2, color))
    if tiny:
        xs, ys, colors = zip(*tiny, strict=True)
        ax.scatter(xs, ys, s=90, facecolors="none", edgecolors=list(colors), linewidths=1.5, zorder=3)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_title(f"Footprints ({len(boxes)})")
    used = [t for t in present if any(tier == t for tier, _ in boxes)]
    if used:
        ax.legend(handles=[Patch(facecolor=tier_color(t, present), alpha=0.6, label=t) for t in used],
                  loc="best", frameon=False, fontsize=9)
    return ax


def _extent(values: Sequence[float], low: float, high: float) -> tuple[float, float]:
    if not values:
        return low, high
    lo, hi = min(values), max(values)
    margin = max((hi - lo) * 0.15, 0.5)
    return max(low, lo - margin), min(high, hi + margin)


def _times(index: pd.Index) -> Any:
    return pd.DatetimeIndex(index).tz_convert("UTC").tz_localize(None).to_numpy()


def _color(by: str | None, name: str, names: Sequence[str], tiers: Sequence[str]) -> str:
    if by == "tier":
        return tier_color(name, list(dict.fromkeys([*tiers, *names])))
    return f"C{list(names).index(name) % 10}"


def _finish(ax: Axes, title: str, ylabel: str, drawn: bool) -> Axes:
    ax.set_title(title)
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel(ylabel)
    if drawn:
        ax.legend(loc="best", frameon=False, fontsize=8)
        ax.figure.autofmt_xdate()
    else:
        ax.text(0.5, 0.5, "no operations in the window", ha="center", va="center", transform=ax.transAxes,
                color="0.5")
    ax.spines[["top", "right"]].set_visible(False)
    return ax


def plot_latency(
    frame: pd.DataFrame,
    *,
    by: str | None = "tier",
    freq: str | None = None,
    ax: Axes | None = None,
    operations: Sequence[str] = READ_OPERATIONS,
    tiers: Sequence[str] = (),
) -> Axes:
    """Read latency over time: p50 (solid) and p95 (dashed) of each time bin, one colour per group.

    Parameters
    ----------
    frame : pandas.DataFrame
        Operation records (``OperationLog.frame``); failed operations are left out.
    by : {"tier", "format", None}
        One pair of lines per tier, per format, or for everything.
    freq : str, optional
        Bin width as a pandas frequency (``"5min"``, ``"1h"``); default the first of
        :data:`FREQUENCIES` giving at most :data:`MAX_BINS` bins.
    ax : matplotlib Axes, optional
        Where to draw; default a new figure.
    operations : sequence of str
        Which operations (default ``open`` and ``read``; ``("save",)`` for write latency).
    tiers : sequence of str
        Tier order, for colours.

    Returns
    -------
    matplotlib.axes.Axes
        Milliseconds on the y axis when the highest p95 is below a second, else seconds;
        empty bins leave gaps.

    Examples
    --------
    >>> ax = plot_latency(mem.monitor.log.frame(since=timedelta(days=1)), freq="1h")  # doctest: +SKIP
    """
    ax = _axes(ax, "plot.latency()", (7.0, 3.4))
    series = latency_series(frame, by=by, freq=freq, operations=operations)
    top = max((float(s["p95"].max()) for s in series.values() if s["p95"].notna().any()), default=0.0)
    scale, unit = (1000.0, "ms") if top < 1 else (1.0, "s")
    for name, values in series.items():
        color = _color(by, name, list(series), tiers)
        x = _times(values.index)
        ax.plot(x, values["p50"] * scale, color=color, marker="o", markersize=3, label=f"{name} p50")
        ax.plot(x, values["p95"] * scale, color=color, linestyle="--", marker=".", label=f"{name} p95")
    what = "Read" if tuple(operations) == READ_OPERATIONS else "/".join(operations).capitalize()
    ax.set_ylim(bottom=0)
    return _finish(ax, f"{what} latency (p50, p95)", f"latency ({unit})", bool(series))


def plot_throughput(
    frame: pd.DataFrame,
    *,
    by: str | None = "tier",
    freq: str | None = None,
    ax: Axes | None = None,
    tiers: Sequence[str] = (),
) -> Axes:
    """Throughput over time: bytes per second of saves (solid) and reads (dashed) per time bin.

    Parameters
    ----------
    frame : pandas.DataFrame
        Operation records (``OperationLog.frame``); failed operations are left out.
    by : {"tier", "format", None}
        One pair of lines per tier, per format, or for everything.
    freq : str, optional
        Bin width as a pandas frequency; default as in :func:`plot_latency`.
    ax : matplotlib Axes, optional
        Where to draw; default a new figure.
    tiers : sequence of str
        Tier order, for colours.

    Returns
    -------
    matplotlib.axes.Axes
        The y axis in the binary unit per second that suits the highest value.

    Examples
    --------
    >>> ax = plot_throughput(mem.monitor.log.frame(since=timedelta(days=1)), by="format")  # doctest: +SKIP
    """
    ax = _axes(ax, "plot.throughput()", (7.0, 3.4))
    series = throughput_series(frame, by=by, freq=freq)
    top = max((float(s.max().max()) for s in series.values() if s.notna().any().any()), default=0.0)
    unit, factor = size_unit(top)
    for name, values in series.items():
        color = _color(by, name, list(series), tiers)
        x = _times(values.index)
        if values["write"].notna().any():
            ax.plot(x, values["write"] / factor, color=color, marker="o", markersize=3, label=f"{name} write")
        if values["read"].notna().any():
            ax.plot(x, values["read"] / factor, color=color, linestyle="--", marker=".", label=f"{name} read")
    ax.set_ylim(bottom=0)
    drawn = bool(ax.get_lines())
    return _finish(ax, "Throughput (saves solid, reads dashed)", f"throughput ({unit}/s)", drawn)


class MemoryPlots:
    """``mem.plot``: matplotlib views of a collection, each returning its Axes.

    Examples
    --------
    >>> mem.plot.usage()  # doctest: +SKIP
    >>> mem.plot.footprints(key="era5/*")  # doctest: +SKIP
    >>> mem.plot.latency(since="7 days", freq="1h")  # doctest: +SKIP

    Parameters
    ----------
    catalog : Catalog
        The collection's catalog.
    tiers : sequence of str
        Tier names, in display order.
    log : OperationLog, optional
        Where :meth:`latency` and :meth:`throughput` read operation records (buffered
        ones included); without it they read those already in the catalog.
    """

    def __init__(self, catalog: Catalog, tiers: Sequence[str], log: OperationLog | None = None) -> None:
        self.catalog = catalog
        self.tiers = list(tiers)
        self.log = log

    def records(self, since: str | timedelta | datetime | None = "24 hours") -> pd.DataFrame:
        """Operation records since ``since`` (a period back from now, a moment, or ``None`` for all)."""
        start = parse_period(since, name="since") if isinstance(since, str) else since
        if self.log is not None:
            return self.log.frame(since=start)
        moment = datetime.now(UTC) - start if isinstance(start, timedelta) else start
        return records_frame(self.catalog.operations(since=moment))

    def latency(
        self,
        *,
        since: str | timedelta | datetime | None = "24 hours",
        by: str | None = "tier",
        freq: str | None = None,
        ax: Axes | None = None,
        operations: Sequence[str] = READ_OPERATIONS,
    ) -> Axes:
        """Read latency p50 and p95 over time (:func:`plot_latency`), per tier by default.

        Examples
        --------
        >>> ax = mem.plot.latency(since="7 days", by="format", freq="6h")  # doctest: +SKIP
        """
        return plot_latency(self.records(since), by=by, freq=freq, ax=ax, operations=operations,
                            tiers=self.tiers)

    def throughput(
        self,
        *,
        since: str | timedelta | datetime | None = "24 hours",
        by: str | None = "tier",
        freq: str | None = None,
        ax: Axes | None = None,
    ) -> Axes:
        """Bytes per second of saves and reads over time (:func:`plot_throughput`).

        Examples
        --------
        >>> ax = mem.plot.throughput(since="24 hours")  # doctest: +SKIP
        """
        return plot_throughput(self.records(since), by=by, freq=freq, ax=ax, tiers=self.tiers)

    def usage(self, *, by: str = "tier", ax: Axes | None = None) -> Axes:
        """Bytes stored, stacked: current versions, then older versions kept.

        Parameters
        ----------
        by : {"tier", "format", "kind"}
            One bar per tier (in configuration order), per format or per kind.
        ax : matplotlib Axes, optional
            Where to draw; default a new figure.

        Examples
        --------
        >>> ax = mem.plot.usage(by="format")  # doctest: +SKIP
        """
        if by not in USAGE_GROUPS:
            raise OptionError(f"by must be one of {list(USAGE_GROUPS)}, got {by!r}")
        current = self.catalog.current_entries()
        stored = self.catalog.all_versions(include_retired=True)
        if by == "tier":
            return plot_usage(tier_usage(current, stored, self.tiers), ax=ax)
        groups = sorted({str(getattr(e, by)) for e in stored})
        regrouped = [replace(e, tier=str(getattr(e, by))) for e in current]
        usage = tier_usage(regrouped, [replace(e, tier=str(getattr(e, by))) for e in stored], groups)
        drawn = plot_usage(usage, ax=ax)
        drawn.set_title(f"Storage per {by}")
        return drawn

    def footprints(
        self,
        *,
        ax: Axes | None = None,
        key: str | None = None,
        tier: str | Sequence[str] | None = None,
        all_versions: bool = False,
        land: bool = True,
    ) -> Axes:
        """Footprints of the current versions (or all versions), coloured by tier.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Where to draw; default a new figure.
        key : str, optional
            Glob on keys, as in ``search(key=...)``.
        tier : str or list of str, optional
            Only these tiers.
        all_versions : bool
            Draw every stored version, not only the current ones.
        land : bool
            Draw coarse land outlines underneath.

        Examples
        --------
        >>> ax = mem.plot.footprints(key="era5/*")  # doctest: +SKIP
        """
        entries = self.catalog.search(key=key, tier=tier, all_versions=all_versions)
        return plot_footprints(entries, tiers=self.tiers, ax=ax, land=land)

    def __repr__(self) -> str:
        return f"<MemoryPlots: usage(), footprints(), latency(), throughput() over tiers {self.tiers}>"
