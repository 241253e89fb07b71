"""Storage used per tier, from catalog entries: current versions and the older ones kept."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from memories_geo.display import (
    Html,
    footprint_svg,
    human_size,
    repr_html,
    row,
    section,
    span,
    table,
    tier_color,
)
from memories_geo.entry import Entry

__all__ = ["USAGE_FIGURES", "TierUsage", "tier_usage", "usage_from_totals", "usage_html"]

#: Figures of every tier in :meth:`TierUsage.figures`.
USAGE_FIGURES = (
    "used_bytes", "available_bytes", "utilization_percentage", "objects", "keys", "versions",
    "current_bytes", "retained_bytes", "max_size",
)


@dataclass(frozen=True)
class TierUsage:
    """What one tier holds.

    Attributes
    ----------
    tier : str
        Tier name.
    keys : int
        Keys whose current version is on this tier.
    versions : int
        Versions stored on this tier, current or not (retired versions pinned by a
        checkpoint included).
    current_bytes : int
        Size of the current versions.
    retained_bytes : int
        Size of the other versions kept on this tier (history, checkpoints).
    """

    tier: str
    keys: int = 0
    versions: int = 0
    current_bytes: int = 0
    retained_bytes: int = 0
    objects: int = 0
    max_size: int | None = None
    free_bytes: int | None = None

    @property
    def total_bytes(self) -> int:
        """Everything stored on the tier."""
        return self.current_bytes + self.retained_bytes

    @property
    def used_bytes(self) -> int:
        """Everything stored on the tier (the original API's name for :attr:`total_bytes`)."""
        return self.total_bytes

    @property
    def available_bytes(self) -> int | None:
        """Room left: the quota left (``max_size``), capped by the free space of a local disk.

        ``None`` when neither is known (an object store without a quota).
        """
        left = None if self.max_size is None else max(self.max_size - self.total_bytes, 0)
        if self.free_bytes is None:
            return left
        return self.free_bytes if left is None else min(left, self.free_bytes)

    @property
    def utilization_percentage(self) -> float | None:
        """Used bytes as a percentage of ``used + available`` (``None`` when nothing bounds the tier)."""
        available = self.available_bytes
        if available is None:
            return None
        capacity = self.total_bytes + available
        return 100.0 * self.total_bytes / capacity if capacity else 0.0

    def figures(self) -> dict[str, float | None]:
        """The figures alerts can name, as ``"<tier>.<figure>"``: bytes, counts, percent.

        Examples
        --------
        >>> usage = TierUsage("hot", keys=1, versions=2, current_bytes=10, max_size=40)
        >>> usage.figures()["hot.utilization_percentage"]
        25.0
        """
        values: dict[str, float | None] = {
            "used_bytes": self.used_bytes, "available_bytes": self.available_bytes,
            "utilization_percentage": self.utilization_percentage, "objects": self.objects,
            "keys": self.keys, "versions": self.versions, "current_bytes": self.current_bytes,
            "retained_bytes": self.retained_bytes, "max_size": self.max_size,
        }
        return {f"{self.tier}.{name}": value for name, value in values.items()}


def tier_usage(current: Iterable[Entry], stored: Iterable[Entry], tiers: Sequence[str]) -> list[TierUsage]:
    """Usage of every tier in ``tiers`` (then of any other tier the entries name).

    Parameters
    ----------
    current : iterable of Entry
        The current version of every key (``catalog.current_entries()``).
    stored : iterable of Entry
        Every stored version (``catalog.all_versions(include_retired=True)``); the
        current ones may be included or not.
    tiers : sequence of str
        Tier names, in display order.

    Examples
    --------
    >>> usage = tier_usage(mem.catalog.current_entries(), mem.catalog.all_versions(), mem.tiers.names)
    ... # doctest: +SKIP
    >>> [(u.tier, u.keys) for u in usage]  # doctest: +SKIP
    [('hot', 2), ('warm', 1), ('cold', 0), ('glacier', 0)]
    """
    counts: dict[str, list[int]] = {name: [0, 0, 0, 0] for name in tiers}
    seen: set[str] = set()
    for entry in current:
        slot = counts.setdefault(entry.tier, [0, 0, 0, 0])
        slot[0] += 1
        slot[1] += 1
        slot[2] += entry.size_bytes
        seen.add(entry.version_id)
    for entry in stored:
        if entry.version_id in seen:
            continue
        seen.add(entry.version_id)
        slot = counts.setdefault(entry.tier, [0, 0, 0, 0])
        slot[1] += 1
        slot[3] += entry.size_bytes
    return [TierUsage(name, *slot) for name, slot in counts.items()]


def usage_from_totals(
    current: Iterable[Entry], totals: Mapping[str, Mapping[str, int]], tiers: Sequence[str]
) -> list[TierUsage]:
    """Usage of every tier in ``tiers`` (then of any other tier named) from the catalog's totals.

    The versions, bytes and objects of each tier come from ``totals`` (counted by the
    catalog over every stored version); one pass over the current versions adds the keys
    and splits the bytes into current and retained. The same figures as
    :func:`tier_usage`, without reading every stored version.

    Parameters
    ----------
    current : iterable of Entry
        The current version of every key (``catalog.current_entries()``).
    totals : mapping of str to mapping
        ``catalog.tier_totals()``: per tier, ``versions``, ``bytes`` and ``objects`` of
        every stored version, current or not.
    tiers : sequence of str
        Tier names, in display order.

    Examples
    --------
    >>> totals = {"hot": {"versions": 3, "bytes": 30, "objects": 7}}
    >>> [(u.tier, u.versions, u.retained_bytes, u.objects) for u in usage_from_totals([], totals, ["hot"])]
    [('hot', 3, 30, 7)]
    """
    counts: dict[str, list[int]] = {name: [0, 0] for name in tiers}
    for entry in current:
        slot = counts.setdefault(entry.tier, [0, 0])
        slot[0] += 1
        slot[1] += entry.size_bytes
    for name in totals:
        counts.setdefault(name, [0, 0])
    out = []
    for name, (keys, current_bytes) in counts.items():
        found = totals.get(name, {})
        out.append(TierUsage(
            name, keys=keys, versions=max(found.get("versions", 0), keys), current_bytes=current_bytes,
            retained_bytes=max(found.get("bytes", 0) - current_bytes, 0), objects=found.get("objects", 0),
        ))
    return out


def usage_html(
    usage: Sequence[TierUsage],
    *,
    urls: Mapping[str, str],
    location: str,
    default_tier: str,
    boxes: Sequence[tuple[Sequence[float], str, str]],
    text: str,
) -> Html:
    """The HTML repr of a collection: a per-tier usage table and a footprint picture.

    Parameters
    ----------
    usage : list of TierUsage
        From :func:`tier_usage`.
    urls : mapping of str to str
        Display URL of each tier (credentials already removed).
    location : str
        Where the catalog is.
    default_tier : str
        Tier used when a save names none.
    boxes : list of (bbox, tier, label)
        Footprints of the current entries.
    text : str
        The plain-text repr (fallback).

    Examples
    --------
    >>> page = usage_html([TierUsage("hot", 1, 2, 10, 5)], urls={"hot": "file:///data/hot"},
    ...                   location="catalog.sqlite", default_tier="hot", boxes=[], text="Memory")
    >>> "15 B" in page
    True
    """
    names = [u.tier for u in usage]
    default = Html(" <span class='mg-muted'>(default)</span>")
    rows = [
        [
            Html(f"<span class='mg-swatch' style='background:{tier_color(u.tier, names)}'></span>"
                 + span(u.tier) + (default if u.tier == default_tier else "")),
            span(urls.get(u.tier, "?"), cls="mg-mono mg-wrapping"),
            u.keys, u.versions, u.objects, span(human_size(u.total_bytes), title=f"{u.total_bytes:,} bytes"),
            human_size(u.retained_bytes),
            "" if u.available_bytes is None else human_size(u.available_bytes),
            "" if u.utilization_percentage is None else f"{u.utilization_percentage:.1f} %",
        ]
        for u in usage
    ]
    keys, versions = sum(u.keys for u in usage), sum(u.versions for u in usage)
    total, retained = sum(u.total_bytes for u in usage), sum(u.retained_bytes for u in usage)
    tiers = table(
        ("tier", "url", "keys", "versions", "objects", "size", "older versions", "available", "used"), rows,
        numeric={2, 3, 4, 5, 6, 7, 8},
        footer=("all", "", keys, versions, sum(u.objects for u in usage), human_size(total),
                human_size(retained), "", ""),
    )
    picture = footprint_svg(
        [(bbox, tier_color(tier, names), label) for bbox, tier, label in boxes], width=360,
        caption=f"current versions with a footprint ({len(boxes)}), coloured by tier",
        title="footprints of the current versions",
    )
    sections = [
        row("catalog", span(location, cls="mg-mono"), title=location),
        section("Tiers", tiers, count=len(usage), preview=", ".join(names)),
        section("Footprints", picture, count=len(boxes), expanded=bool(boxes)),
    ]
    return repr_html(
        obj_type="memories_geo.Memory", text=text, sections=sections,
        badges=[f"{keys} keys", f"{versions} versions", human_size(total)],
    )
