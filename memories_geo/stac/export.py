"""Write a collection's catalog as a static STAC catalog and a stac-geoparquet file."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memories_geo.errors import OptionError
from memories_geo.stac.items import PREFIX, StoredVersion, collection_id, item_for, public_href

if TYPE_CHECKING:
    import pystac

__all__ = ["GEOPARQUET_NAME", "StacExport", "export_stac", "require_stac"]

logger = logging.getLogger(__name__)

#: File name of the stac-geoparquet file written beside ``catalog.json``.
GEOPARQUET_NAME = "items.parquet"
_WORLD = [-180.0, -90.0, 180.0, 90.0]
#: stac-geoparquet needs a geometry on every row: Items without a footprint get an empty one.
_NO_GEOMETRY = {"type": "Polygon", "coordinates": []}


def require_stac() -> None:
    """Raise an ``ImportError`` naming the extra to install when pystac or stac-geoparquet is missing."""
    try:
        import pystac  # noqa: F401
        import stac_geoparquet  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"STAC export and import need pystac and stac-geoparquet ({exc.name} is missing): "
            "pip install 'memories-geo[stac]'"
        ) from exc


@dataclass(frozen=True)
class StacExport:
    """What :meth:`Memory.to_stac` wrote.

    Attributes
    ----------
    catalog : pystac.Catalog
        The root catalog (its collections and items in memory).
    href : str
        Path of the root ``catalog.json``.
    geoparquet : str
        Path of the stac-geoparquet file of every item.
    items : int
        Items written (one per exported version).
    collections : list of str
        Collection ids (the first segment of the keys; ``ungrouped`` for the others).

    Examples
    --------
    >>> export = mem.to_stac("/tmp/stac")  # doctest: +SKIP
    >>> export.validate()  # doctest: +SKIP
    """

    catalog: pystac.Catalog
    href: str
    geoparquet: str
    items: int
    collections: list[str] = field(default_factory=list)

    def validate(self) -> int:
        """Validate every object offline (:func:`memories_geo.stac.validate_stac`); return how many."""
        from memories_geo.stac.validate import validate_stac

        return validate_stac(self.catalog)


def _time_bounds(items: Sequence[pystac.Item]) -> list[datetime | None]:
    starts, ends = [], []
    for item in items:
        meta = item.common_metadata
        start = meta.start_datetime or item.datetime
        end = meta.end_datetime or item.datetime
        if start is not None:
            starts.append(start)
        if end is not None:
            ends.append(end)
    return [min(starts) if starts else None, max(ends) if ends else None]


def _collection(name: str, items: Sequence[pystac.Item]) -> pystac.Collection:
    import pystac

    boxes = [item.bbox for item in items if item.bbox]
    bbox = ([min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
             max(b[3] for b in boxes)] if boxes else list(_WORLD))
    extent = pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([_time_bounds(items)]))
    keys = sorted({str(item.properties[f"{PREFIX}key"]) for item in items})
    collection = pystac.Collection(
        id=name, title=name, description=f"memories_geo keys under {name!r}: {', '.join(keys)}",
        extent=extent, license="other",
    )
    for item in items:
        collection.add_item(item)
    return collection


def _stored_versions(memory: Any, include_history: bool) -> list[StoredVersion]:
    catalog = memory.catalog
    current = {e.version_id for e in catalog.current_entries()}
    entries = catalog.all_versions() if include_history else catalog.current_entries()
    return [
        StoredVersion(entry=e, manifest=catalog.manifest(e), backend=memory.tiers.backend(e.tier),
                      current=e.version_id in current)
        for e in sorted(entries, key=lambda e: (e.key, e.version))
    ]


def _write_geoparquet(items: Sequence[pystac.Item], collections: Sequence[pystac.Collection],
                      path: Path) -> None:
    """Write ``items`` as stac-geoparquet; Items without a footprint get a null ``bbox``.

    stac-geoparquet needs a geometry and a bbox on every row: such Items are given an
    empty geometry and a NaN box, whose row is then made null, so a bbox filter never
    matches them.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

    dicts = [item.to_dict(include_self_link=False, transform_hrefs=False) for item in items]
    for data in dicts:
        if data["geometry"] is None:
            data["geometry"] = _NO_GEOMETRY
            data["bbox"] = [float("nan")] * 4
    table = parse_stac_items_to_arrow(dicts).read_all()
    bbox = table["bbox"].combine_chunks()
    names = [bbox.type.field(i).name for i in range(bbox.type.num_fields)]
    missing = pc.is_nan(bbox.field(names[0]))
    if pc.any(missing).as_py():
        nulled = pa.StructArray.from_arrays([bbox.field(n) for n in names], names, mask=missing)
        table = table.set_column(table.schema.get_field_index("bbox"), "bbox", nulled)
    to_parquet(table, path, collections={c.id: c.to_dict(include_self_link=False, transform_hrefs=False)
                                         for c in collections})


def export_stac(
    memory: Any,
    dest: str | os.PathLike[str],
    *,
    title: str | None = None,
    description: str | None = None,
    href_base: str | None = None,
    include_history: bool = False,
) -> StacExport:
    """Write ``memory``'s catalog as a static STAC catalog under ``dest``; see :meth:`Memory.to_stac`.

    Examples
    --------
    >>> export_stac(mem, "/tmp/stac").items  # doctest: +SKIP
    4
    """
    require_stac()
    import pystac

    if "://" in os.fspath(dest) and not os.fspath(dest).startswith("file://"):
        raise OptionError(f"to_stac writes to a local directory; got {public_href(os.fspath(dest))!r}")
    root = Path(os.fspath(dest).removeprefix("file://")).expanduser().resolve()
    stored = _stored_versions(memory, include_history)
    items = [item_for(s) for s in stored]
    groups: dict[str, list[pystac.Item]] = {}
    for s, item in zip(stored, items, strict=True):
        groups.setdefault(collection_id(s.entry.key), []).append(item)
    catalog = pystac.Catalog(
        id="memories-geo", title=title or "memories_geo collection",
        description=description or (
            f"{len(items)} {'' if include_history else 'current '}version(s) of "
            f"{len({s.entry.key for s in stored})} key(s) stored with memories_geo"
        ),
    )
    catalog.extra_fields[f"{PREFIX}tiers"] = {
        name: public_href(memory.tiers.tier_config(name).url) for name in memory.tiers.names
    }
    catalog.extra_fields[f"{PREFIX}include_history"] = bool(include_history)
    collections = [_collection(name, group) for name, group in sorted(groups.items())]
    for collection in collections:
        catalog.add_child(collection)
    parquet_path = root / GEOPARQUET_NAME
    catalog.add_link(pystac.Link("alternate", f"./{GEOPARQUET_NAME}" if href_base is None
                                 else f"{href_base.rstrip('/')}/{GEOPARQUET_NAME}",
                                 media_type="application/vnd.apache.parquet",
                                 title="stac-geoparquet of every item"))
    root.mkdir(parents=True, exist_ok=True)
    if href_base is None:
        catalog.normalize_hrefs(str(root))
        catalog.save(pystac.CatalogType.SELF_CONTAINED)
    else:
        catalog.normalize_hrefs(href_base.rstrip("/"))
        catalog.save(pystac.CatalogType.ABSOLUTE_PUBLISHED, dest_href=str(root))
    _write_geoparquet(items, collections, parquet_path)
    logger.info("STAC catalog of %d item(s) in %d collection(s) written to %s", len(items),
                len(collections), root)
    return StacExport(catalog=catalog, href=str(root / "catalog.json"), geoparquet=str(parquet_path),
                      items=len(items), collections=[c.id for c in collections])
