"""Validate a STAC catalog without the network.

pystac ships the STAC core JSON schemas (Item, Catalog, Collection 1.1.0 and the
GeoJSON schemas they reference) and validates against them offline; the extension
schemas (projection, file) are fetched from ``stac-extensions.github.io`` by
default and are not shipped by any installed package. :func:`validate_stac`
therefore runs pystac's JSON-schema validation of the core with the shipped schemas
only (a schema it would have to download is an error, never a silent network call)
and checks the projection and file extension fields against the rules of their
specifications (types, lengths, multihash structure) in Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from memories_geo.stac.multihash import decode_multihash

if TYPE_CHECKING:
    import pystac

__all__ = ["extension_problems", "validate_stac"]

PROJECTION_SCHEMA = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
FILE_SCHEMA = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
_HEX = re.compile(r"^[a-f0-9]+$")
_CODE = re.compile(r"^[A-Za-z0-9._-]+:[A-Za-z0-9._-]+$")


def _offline_validator() -> Any:
    from pystac.errors import STACValidationError
    from pystac.validation.stac_validator import JsonSchemaSTACValidator

    class OfflineValidator(JsonSchemaSTACValidator):
        """pystac's JSON-schema validator restricted to the schemas pystac ships."""

        def _get_schema(self, schema_uri: str) -> dict[str, Any]:
            if schema_uri not in self.schema_cache:
                raise STACValidationError(
                    f"schema {schema_uri} is not available offline (pystac ships only the core schemas)"
                )
            return self.schema_cache[schema_uri]

    return OfflineValidator()


def _number_list(value: Any, lengths: tuple[int, ...]) -> bool:
    return isinstance(value, list) and len(value) in lengths and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    )


def _projection(where: str, fields: Mapping[str, Any]) -> Iterator[str]:
    if not any(k in fields for k in ("proj:code", "proj:wkt2", "proj:projjson")):
        yield f"{where}: the projection extension needs proj:code, proj:wkt2 or proj:projjson"
    code = fields.get("proj:code")
    if code is not None and not (isinstance(code, str) and _CODE.match(code)):
        yield f"{where}: proj:code {code!r} is not AUTHORITY:CODE"
    if "proj:wkt2" in fields and not isinstance(fields["proj:wkt2"], str | None):
        yield f"{where}: proj:wkt2 is not a string"
    if "proj:bbox" in fields and not _number_list(fields["proj:bbox"], (4, 6)):
        yield f"{where}: proj:bbox {fields['proj:bbox']!r} is not 4 or 6 numbers"
    shape = fields.get("proj:shape")
    if shape is not None and not (isinstance(shape, list) and len(shape) == 2
                                  and all(isinstance(v, int) and v >= 0 for v in shape)):
        yield f"{where}: proj:shape {shape!r} is not two non-negative integers"


def _file(where: str, fields: Mapping[str, Any]) -> Iterator[str]:
    size = fields.get("file:size")
    if "file:size" in fields and not (isinstance(size, int) and not isinstance(size, bool) and size >= 0):
        yield f"{where}: file:size {size!r} is not a non-negative integer"
    checksum = fields.get("file:checksum")
    if checksum is not None:
        if not (isinstance(checksum, str) and _HEX.match(checksum)):
            yield f"{where}: file:checksum {checksum!r} is not lower-case hex"
        else:
            try:
                decode_multihash(checksum)
            except ValueError as exc:
                yield f"{where}: file:checksum is not a multihash: {exc}"


def extension_problems(item: Mapping[str, Any]) -> list[str]:
    """Problems with the projection and file extension fields of an Item dictionary.

    Fields of an extension not listed in ``stac_extensions`` (or listed without
    fields) are problems too.

    Examples
    --------
    >>> extension_problems(item.to_dict())  # doctest: +SKIP
    []
    """
    where = f"item {item.get('id')!r}"
    listed = set(item.get("stac_extensions", []))
    props = item.get("properties", {})
    assets = item.get("assets", {})
    problems: list[str] = []
    uses_proj = any(k.startswith("proj:") for k in props)
    uses_file = any(k.startswith("file:") for a in assets.values() for k in a)
    for uses, schema in ((uses_proj, PROJECTION_SCHEMA), (uses_file, FILE_SCHEMA)):
        if uses != (schema in listed):
            problems.append(f"{where}: {schema} {'missing from' if uses else 'listed in'} stac_extensions"
                            f"{'' if uses else ' without fields'}")
    if uses_proj:
        problems += _projection(where, props)
    for name, asset in assets.items():
        problems += _file(f"{where} asset {name!r}", asset)
    return problems


def validate_stac(catalog: pystac.Catalog | str) -> int:
    """Validate every catalog, collection and item of a STAC catalog, offline.

    Parameters
    ----------
    catalog : pystac.Catalog or str
        The root catalog, or the path or URL of its ``catalog.json``.

    Returns
    -------
    int
        How many STAC objects were validated.

    Raises
    ------
    pystac.errors.STACValidationError
        The first object that fails the core schema, or every extension problem found.

    Examples
    --------
    >>> validate_stac("/tmp/stac/catalog.json")  # doctest: +SKIP
    6
    """
    import pystac
    from pystac.errors import STACValidationError

    root = pystac.Catalog.from_file(catalog) if isinstance(catalog, str) else catalog
    validator = _offline_validator()
    objects: list[pystac.STACObject] = []
    for parent, _children, items in root.walk():
        objects += [parent, *items]
    problems: list[str] = []
    for obj in objects:
        data = obj.to_dict()
        validator.validate_core(data, obj.STAC_OBJECT_TYPE, data["stac_version"], obj.get_self_href())
        if isinstance(obj, pystac.Item):
            problems += extension_problems(data)
    if problems:
        raise STACValidationError("; ".join(problems), source=problems)
    return len(objects)
