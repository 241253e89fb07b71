"""One STAC Item per stored version: footprint, time range, projection, assets with checksums."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from memories_geo.backends.base import Capability
from memories_geo.stac.multihash import encode_multihash

if TYPE_CHECKING:
    import pystac

    from memories_geo.backends.base import Backend
    from memories_geo.entry import Entry
    from memories_geo.integrity import Manifest

__all__ = ["MEDIA_TYPES", "PREFIX", "StoredVersion", "collection_id", "item_for", "item_id", "public_href"]

#: Prefix of this library's own properties.
PREFIX = "memories_geo:"

#: Media type of each format's asset (tables have none).
MEDIA_TYPES: dict[str, str] = {
    "zarr": "application/vnd+zarr",
    "cog": "image/tiff; application=geotiff; profile=cloud-optimized",
    "geoparquet": "application/vnd.apache.parquet",
    "parquet": "application/vnd.apache.parquet",
    "geojson": "application/geo+json",
}

#: Formats stored as a directory that readers take as one whole (a Zarr store, a
#: partitioned Parquet dataset): one asset for the root, whatever it holds.
_WHOLE_DIRECTORIES = frozenset({"zarr", "parquet", "geoparquet"})
_Y_DIMS = ("y", "lat", "latitude", "rlat", "northing")
_X_DIMS = ("x", "lon", "longitude", "rlon", "easting")


@dataclass(frozen=True)
class StoredVersion:
    """What an Item is made from: the catalog entry, its manifest, where it is stored.

    Attributes
    ----------
    entry : Entry
        The version's catalog entry.
    manifest : Manifest
        Its checksum manifest.
    backend : Backend
        The backend of its tier.
    current : bool
        Whether it is the key's current version.
    """

    entry: Entry
    manifest: Manifest
    backend: Backend
    current: bool = True


def public_href(url: str) -> str:
    """``url`` without user password, query string or fragment: safe to publish.

    Examples
    --------
    >>> public_href("postgresql://me:secret@db:5432/geo?sslpassword=x")
    'postgresql://me@db:5432/geo'
    >>> public_href("file:///data/hot/a.tif")
    'file:///data/hot/a.tif'
    """
    parts = urlsplit(url)
    if parts.password is None and not parts.query and not parts.fragment:
        return url
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return parts._replace(netloc=netloc, query="", fragment="").geturl()


def item_id(key: str, version: int) -> str:
    """Item id of a version: the key with ``/`` as ``__``, then ``__v{version}``.

    Examples
    --------
    >>> item_id("era5/t2m", 3)
    'era5__t2m__v3'
    """
    return f"{key.replace('/', '__')}__v{version}"


def collection_id(key: str) -> str:
    """Collection of a key: its first segment; keys without ``/`` go to ``ungrouped``.

    Examples
    --------
    >>> collection_id("era5/t2m/daily"), collection_id("roads")
    ('era5', 'ungrouped')
    """
    return key.split("/", 1)[0] if "/" in key else "ungrouped"


def _utc(text: str | None) -> datetime | None:
    if not text:
        return None
    when = datetime.fromisoformat(text)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _checksum(manifest: Manifest, digest: str | None = None) -> str:
    return encode_multihash(manifest.algorithm, digest if digest is not None else manifest.checksum)


def _raster_shape(entry: Entry) -> list[int] | None:
    if entry.kind != "raster":
        return None
    shape = dict(entry.shape)
    ydim = entry.object_info.get("y_dim") or next((d for d in _Y_DIMS if d in shape), None)
    xdim = entry.object_info.get("x_dim") or next((d for d in _X_DIMS if d in shape), None)
    if ydim in shape and xdim in shape:
        return [int(shape[ydim]), int(shape[xdim])]
    return None


def _apply_projection(item: pystac.Item, entry: Entry) -> None:
    from pystac.extensions.projection import ProjectionExtension

    if not entry.crs:
        return
    code = wkt2 = None
    if "[" in entry.crs:
        import pyproj

        crs = pyproj.CRS.from_user_input(entry.crs)
        found = crs.to_authority()
        code = f"{found[0]}:{found[1]}" if found else None
        wkt2 = None if code else crs.to_wkt()
    else:
        code = entry.crs
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.apply(
        code=code, wkt2=wkt2,
        bbox=[float(v) for v in entry.native_bbox] if entry.native_bbox else None,
        shape=_raster_shape(entry),
    )


def _add_asset(
    item: pystac.Item, name: str, href: str, media_type: str | None, size: int, checksum: str,
    *, title: str | None = None, extra: dict[str, Any] | None = None,
) -> None:
    import pystac
    from pystac.extensions.file import FileExtension

    asset = pystac.Asset(href=href, media_type=media_type, roles=["data"], title=title,
                         extra_fields=dict(extra or {}))
    item.add_asset(name, asset)
    FileExtension.ext(asset, add_if_missing=True).apply(size=int(size), checksum=checksum)


def _add_assets(item: pystac.Item, stored: StoredVersion) -> None:
    entry, manifest, backend = stored.entry, stored.manifest, stored.backend
    media_type = MEDIA_TYPES.get(entry.format)
    if Capability.FILES not in backend.capabilities:
        table = getattr(backend, "table_for", lambda _: None)(entry.path)
        schema = getattr(backend, "schema", None)
        name = f"{schema}.{table}" if schema and table else (table or entry.path)
        only = next(iter(manifest.files.values())) if len(manifest.files) == 1 else None
        _add_asset(item, "data", f"{public_href(backend.url)}#{name}", None, manifest.size_bytes,
                   _checksum(manifest, only.digest if only else None), title=f"table {name}",
                   extra={f"{PREFIX}table": name})
        return
    root = public_href(backend.url_for(entry.path))
    base = posixpath.basename(entry.path)
    if list(manifest.files) == [base]:
        digest = manifest.files[base]
        _add_asset(item, "data", root, media_type, digest.size, _checksum(manifest, digest.digest))
    elif entry.format in _WHOLE_DIRECTORIES:
        _add_asset(item, "data", root, media_type, manifest.size_bytes, _checksum(manifest),
                   extra={f"{PREFIX}files": len(manifest.files)})
    else:
        for rel, digest in sorted(manifest.files.items()):
            _add_asset(item, rel, f"{root}/{rel}", media_type, digest.size,
                       _checksum(manifest, digest.digest))


def item_for(stored: StoredVersion) -> pystac.Item:
    """The STAC Item of one stored version.

    Geometry and ``bbox`` come from the footprint (EPSG:4326; none for data without
    one), ``datetime`` from the time range (``null`` with ``start_datetime`` and
    ``end_datetime`` for a range; the creation time when the data has no time),
    ``proj:*`` from the CRS, native bbox and raster shape, the assets from the
    stored files with ``file:size`` and ``file:checksum``.

    Examples
    --------
    >>> item = item_for(StoredVersion(entry, mem.catalog.manifest(entry), backend))  # doctest: +SKIP
    >>> item.properties["memories_geo:key"]  # doctest: +SKIP
    'era5/t2m'
    """
    import pystac

    entry = stored.entry
    start, end = _utc(entry.time_start), _utc(entry.time_end)
    created = _utc(entry.created_at)
    single = start if start is not None and (end is None or end == start) else None
    ranged = start is not None and single is None
    geometry = bbox = None
    if entry.bbox is not None:
        minx, miny, maxx, maxy = (float(v) for v in entry.bbox)
        bbox = [minx, miny, maxx, maxy]
        geometry = {"type": "Polygon", "coordinates": [[[minx, miny], [maxx, miny], [maxx, maxy],
                                                        [minx, maxy], [minx, miny]]]}
    properties: dict[str, Any] = {
        "title": entry.key,
        f"{PREFIX}key": entry.key,
        f"{PREFIX}version": int(entry.version),
        f"{PREFIX}version_id": entry.version_id,
        f"{PREFIX}path": entry.path,
        f"{PREFIX}format": entry.format,
        f"{PREFIX}kind": entry.kind,
        f"{PREFIX}tier": entry.tier,
        f"{PREFIX}storage_class": entry.storage_class,
        f"{PREFIX}checksum": entry.checksum,
        f"{PREFIX}current": bool(stored.current),
        f"{PREFIX}variables": list(entry.variables),
    }
    if entry.tags:
        properties["keywords"] = list(entry.tags)
    item = pystac.Item(
        id=item_id(entry.key, entry.version), geometry=geometry, bbox=bbox,
        datetime=None if ranged else (single if single is not None else created),
        start_datetime=start if ranged else None, end_datetime=end if ranged else None,
        properties=properties,
    )
    item.common_metadata.created = created
    _apply_projection(item, entry)
    _add_assets(item, stored)
    return item
