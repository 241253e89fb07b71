"""Import a STAC catalog (or stac-geoparquet file) written by ``to_stac`` into a collection.

Each Item names its key, version id, tier and path (``memories_geo:*`` properties).
The version record stored beside the data (:mod:`memories_geo.records`) holds the
full catalog row and checksum manifest; it is read from the importing collection's
tier of the same name, checked against the Item (version id, manifest checksum and
every asset's ``file:checksum`` and ``file:size``), the data is re-hashed against the
manifest, and only then are the rows imported (``Catalog.import_rows``) and the keys
pointed at their current versions (``VersionStore.restore_pointers``), the same
steps as :meth:`memories_geo.RecoveryManager.rebuild_catalog`, in one audited change.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from memories_geo.backends.base import Location
from memories_geo.catalog import entry_from_row
from memories_geo.errors import ConfigError, FormatError, KeyExistsError, TierUnavailableError
from memories_geo.formats.registry import get_format
from memories_geo.integrity import Manifest, raise_for_problems
from memories_geo.records import record_path
from memories_geo.stac.export import require_stac
from memories_geo.stac.items import PREFIX, StoredVersion, item_for, public_href

__all__ = ["import_stac", "read_stac_items"]

logger = logging.getLogger(__name__)

_ENTRY_DEFAULTS = {"last_accessed_at": None, "access_count": 0, "storage_class": None}


def read_stac_items(source: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Item dictionaries of a static catalog (``catalog.json`` or its folder) or a stac-geoparquet file.

    Examples
    --------
    >>> len(read_stac_items("/tmp/stac/items.parquet"))  # doctest: +SKIP
    4
    """
    require_stac()
    path = Path(os.fspath(source).removeprefix("file://")).expanduser()
    if path.is_dir():
        path = path / "catalog.json"
    if not path.exists():
        raise FileNotFoundError(f"no STAC catalog or stac-geoparquet file at {str(path)!r}")
    if path.suffix in (".parquet", ".geoparquet"):
        import pyarrow.parquet as pq
        from stac_geoparquet.arrow import stac_table_to_items

        table = _nan_boxes(pq.read_table(path))
        return [_footprint_or_none(dict(item)) for item in stac_table_to_items(table)]
    import pystac

    catalog = pystac.Catalog.from_file(str(path), stac_io=_local_copy_io(path))
    return [item.to_dict(include_self_link=False) for item in catalog.get_items(recursive=True)]


def _local_copy_io(path: Path) -> Any:
    """A StacIO reading the published hrefs of a catalog (``href_base``) from its local copy."""
    from pystac.stac_io import DefaultStacIO

    links = json.loads(path.read_text()).get("links", [])
    published = next((link["href"] for link in links if link.get("rel") == "self"), None)
    base = published.rsplit("/", 1)[0] + "/" if published and "://" in published else None
    local = str(path.parent.resolve()) + "/"

    class LocalCopyIO(DefaultStacIO):
        """Reads ``{href_base}/...`` from the folder the catalog was read from."""

        def read_text_from_href(self, href: str) -> str:
            if base is not None and href.startswith(base):
                href = local + href[len(base):]
            return str(super().read_text_from_href(href))

    return LocalCopyIO()


def _nan_boxes(table: Any) -> Any:
    """``table`` with its null ``bbox`` rows (Items without a footprint) as NaN boxes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    bbox = table["bbox"].combine_chunks()
    if not bbox.null_count:
        return table
    names = [bbox.type.field(i).name for i in range(bbox.type.num_fields)]
    valid = pc.is_valid(bbox)
    fields = [pc.if_else(valid, pc.fill_null(bbox.field(n), float("nan")), float("nan")) for n in names]
    boxes = pa.StructArray.from_arrays(fields, names)
    return table.set_column(table.schema.get_field_index("bbox"), "bbox", boxes)


def _footprint_or_none(item: dict[str, Any]) -> dict[str, Any]:
    """The Item as ``to_stac`` made it: no geometry or bbox where it had no footprint."""
    bbox = item.get("bbox")
    if bbox is not None and any(v != v for v in bbox):
        item["bbox"], item["geometry"] = None, None
    return item


def _asset_fields(assets: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[Any, Any]]:
    return {name: (a.get("file:checksum"), a.get("file:size")) for name, a in assets.items()}


def _checked_row(memory: Any, item: Mapping[str, Any]) -> dict[str, Any]:
    """The version record of ``item``, checked against the Item and the stored data."""
    props = item["properties"]
    tier, path, name = props[f"{PREFIX}tier"], props[f"{PREFIX}path"], item["id"]
    if tier not in memory.tiers.names:
        raise ConfigError(
            f"item {name!r} is stored on tier {tier!r}, which this configuration does not have "
            f"(tiers: {memory.tiers.names}); configure a tier {tier!r} pointing at its storage"
        )
    backend = memory.tiers.backend(tier)
    try:
        row = json.loads(backend.read_bytes(record_path(path)))
    except (FileNotFoundError, TierUnavailableError) as exc:
        raise ConfigError(
            f"item {name!r}: no version record at {public_href(backend.url_for(path))}.record.json; "
            f"does tier {tier!r} point at the storage the catalog was exported from?"
        ) from exc
    manifest = Manifest.from_json(row["manifest"])
    if row["version_id"] != props[f"{PREFIX}version_id"] or manifest.checksum != props[f"{PREFIX}checksum"]:
        raise FormatError(f"item {name!r}: the version record beside the data describes another version")
    entry = entry_from_row({**_ENTRY_DEFAULTS, **row, "version": props[f"{PREFIX}version"]})
    expected = item_for(StoredVersion(entry, manifest, backend)).to_dict(include_self_link=False)
    if _asset_fields(expected["assets"]) != _asset_fields(item.get("assets", {})):
        raise FormatError(f"item {name!r}: file:checksum/file:size of its assets differ from the manifest")
    problems = get_format(entry.format).verify(Location(backend, path), manifest)
    raise_for_problems(f"item {name!r}", [f"{entry.key} v{entry.version}: {p}" for p in problems])
    return row


def _ours(items: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    items = list(items)
    mine = [i for i in items if f"{PREFIX}key" in i.get("properties", {})]
    if items and not mine:
        raise FormatError(
            f"none of the {len(items)} item(s) carries memories_geo properties: only catalogs written "
            "by Memory.to_stac can be imported"
        )
    if len(mine) < len(items):
        logger.warning("from_stac: %d item(s) without memories_geo properties skipped",
                       len(items) - len(mine))
    return mine


def import_stac(memory: Any, source: str | os.PathLike[str]) -> int:
    """Register in ``memory``'s catalog every version a STAC export lists; return how many were new.

    Everything is checked before anything is imported: a missing record, an Item
    that disagrees with it, or data that fails its manifest raises and leaves the
    catalog unchanged.

    Raises
    ------
    ConfigError
        An Item's tier is not configured, or holds no record for it.
    FormatError
        The source holds no memories_geo Items, or an Item disagrees with its record.
    ChecksumMismatchError
        Stored data differs from its manifest.
    KeyExistsError
        A key is already current at another version in ``memory``.

    Examples
    --------
    >>> import_stac(mem, "/tmp/stac/catalog.json")  # doctest: +SKIP
    4
    """
    memory.version_store.check_writable("import")
    items = _ours(read_stac_items(source))
    rows = [_checked_row(memory, item) for item in items]
    pins = {e.key: e.version_id for e in memory.catalog.current_entries()}
    wanted = {item["properties"][f"{PREFIX}key"]: item["properties"][f"{PREFIX}version_id"]
              for item in items if item["properties"].get(f"{PREFIX}current", True)}
    clashes = sorted(k for k, vid in wanted.items() if pins.get(k, vid) != vid)
    if clashes:
        raise KeyExistsError(f"keys {clashes} already exist in this collection at other versions; "
                             "import into a fresh collection or delete them first")
    rows = [{**row, "version": item["properties"][f"{PREFIX}version"]}
            for row, item in zip(rows, items, strict=True)]
    added = memory.catalog.import_rows(sorted(rows, key=lambda r: (r["key"], r["version_id"])))
    memory.version_store.restore_pointers(
        {**pins, **wanted}, operation="rebuild",
        detail=f"imported {added} version(s) of {len(wanted)} key(s) from STAC",
    )
    if len(wanted) < len(items):
        memory.catalog.revive_versions_of_keys()
    logger.info("from_stac: %d version(s) imported, %d key(s) current", added, len(wanted))
    return added
