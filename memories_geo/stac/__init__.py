"""The catalog in STAC: a static catalog and a stac-geoparquet file of the stored versions, and back.

:meth:`Memory.to_stac` writes one Item per version (footprint, time range, CRS through
the projection extension, assets with ``file:checksum`` and ``file:size``), grouped in
one Collection per top-level key prefix, plus ``items.parquet`` (stac-geoparquet) that
DuckDB, rustac or geopandas can query; :meth:`Memory.from_stac` registers such an
export in a collection whose tiers reach the same storage. Needs the ``stac`` extra
(pystac, stac-geoparquet).
"""

from memories_geo.stac.export import GEOPARQUET_NAME, StacExport, export_stac
from memories_geo.stac.importer import import_stac, read_stac_items
from memories_geo.stac.items import MEDIA_TYPES, collection_id, item_id, public_href
from memories_geo.stac.multihash import decode_multihash, encode_multihash
from memories_geo.stac.validate import extension_problems, validate_stac

__all__ = [
    "GEOPARQUET_NAME",
    "MEDIA_TYPES",
    "StacExport",
    "collection_id",
    "decode_multihash",
    "encode_multihash",
    "export_stac",
    "extension_problems",
    "import_stac",
    "item_id",
    "public_href",
    "read_stac_items",
    "validate_stac",
]
