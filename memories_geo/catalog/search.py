"""Catalog search: the filters of a query, normalised once, and their SQL for SQLite.

:class:`SearchFilter` holds what a search asks for, independent of the database;
:func:`sqlite_where` turns it into a ``WHERE`` clause over ``versions v``. What SQL does
not express portably (all wanted tags present) is checked by :meth:`SearchFilter.keep`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memories_geo.entry import Entry
from memories_geo.footprint import BBox

__all__ = ["SearchFilter", "sqlite_where"]


def _names(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (str(value),) if isinstance(value, str) else tuple(str(v) for v in value)


@dataclass(frozen=True)
class SearchFilter:
    """What a catalog search asks for; every given filter must match.

    Attributes
    ----------
    bbox : tuple or None
        ``(minx, miny, maxx, maxy)`` in EPSG:4326; footprints that intersect it match.
    time : tuple or None
        Inclusive ``(start, end)`` ISO 8601 UTC strings, either may be ``None``;
        entries without a time range never match a time filter.
    tiers, kinds : tuple of str or None
        Accepted tiers and kinds.
    key : str or None
        Glob over keys (``*``, ``?``, ``[...]``; case-sensitive).
    tags : frozenset of str
        Tags that must all be present.
    all_versions : bool
        Match every committed version, not only current ones.
    """

    bbox: BBox | None = None
    time: tuple[str | None, str | None] | None = None
    tiers: tuple[str, ...] | None = None
    kinds: tuple[str, ...] | None = None
    key: str | None = None
    tags: frozenset[str] = frozenset()
    all_versions: bool = False

    @classmethod
    def build(
        cls,
        *,
        bbox: BBox | None = None,
        time: tuple[str | None, str | None] | None = None,
        tier: str | Sequence[str] | None = None,
        kind: str | Sequence[str] | None = None,
        key: str | None = None,
        tags: Sequence[str] | None = None,
        all_versions: bool = False,
    ) -> SearchFilter:
        """From the keywords of :meth:`Catalog.search` (a name or a list of names for tier and kind).

        Examples
        --------
        >>> SearchFilter.build(tier="hot", tags=["qa"]).tiers
        ('hot',)
        """
        return cls(
            bbox=None if bbox is None else (
                float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3])
            ),
            time=None if time is None else (time[0], time[1]),
            tiers=_names(tier),
            kinds=_names(kind),
            key=key,
            tags=frozenset(tags or ()),
            all_versions=all_versions,
        )

    def keep(self, entry: Entry) -> bool:
        """Whether ``entry`` has every wanted tag (the filter applied after the query)."""
        return self.tags <= set(entry.tags)


def sqlite_where(search: SearchFilter, *, rtree: bool) -> tuple[str, tuple[Any, ...]]:
    """``WHERE`` clause (over ``versions v``) and parameters of ``search`` for SQLite.

    Parameters
    ----------
    search : SearchFilter
        The filters.
    rtree : bool
        Whether the ``versions_bbox`` R*Tree index exists (else bbox columns are compared).

    Returns
    -------
    where, params : str, tuple
    """
    where = ["v.status = 'committed'"]
    params: list[Any] = []
    if not search.all_versions:
        where.append("v.id IN (SELECT current_pk FROM keys)")
    if search.bbox is not None:
        minx, miny, maxx, maxy = search.bbox
        if rtree:
            where.append(
                "v.id IN (SELECT id FROM versions_bbox WHERE minx <= ? AND maxx >= ? "
                "AND miny <= ? AND maxy >= ?)"
            )
        else:
            where.append("v.minx <= ? AND v.maxx >= ? AND v.miny <= ? AND v.maxy >= ?")
        params += [maxx, minx, maxy, miny]
    if search.time is not None:
        start, end = search.time
        where.append("v.time_start IS NOT NULL AND v.time_end IS NOT NULL")
        if start is not None:
            where.append("v.time_end >= ?")
            params.append(start)
        if end is not None:
            where.append("v.time_start <= ?")
            params.append(end)
    for column, values in (("tier", search.tiers), ("kind", search.kinds)):
        if values is not None:
            where.append(f"v.{column} IN ({', '.join('?' * len(values))})")
            params += values
    if search.key is not None:
        where.append("v.key GLOB ?")
        params.append(search.key)
    return " AND ".join(where), tuple(params)
