"""Registry of formats: built-ins by class path (imported on first use) plus entry points."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from memories_geo.errors import FormatError

if TYPE_CHECKING:
    from memories_geo.formats.base import Format

__all__ = ["ENTRY_POINT_GROUP", "available_formats", "get_format", "known_formats"]

ENTRY_POINT_GROUP = "memories_geo.formats"


@dataclass(frozen=True)
class _Spec:
    cls: str
    requires: tuple[str, ...]
    install: str


#: Built-in formats: name -> class path, modules it needs, how to install them.
BUILTIN_FORMATS: dict[str, _Spec] = {
    "zarr": _Spec("memories_geo.formats.zarr:ZarrFormat", ("zarr", "dask"), "memories-geo[zarr]"),
    "geoparquet": _Spec("memories_geo.formats.geoparquet:GeoParquetFormat", ("pyarrow",), "memories-geo"),
    "geojson": _Spec("memories_geo.formats.geojson:GeoJSONFormat", ("pyogrio",), "memories-geo"),
    "cog": _Spec("memories_geo.formats.cog:COGFormat", ("rasterio", "rioxarray"), "memories-geo[raster]"),
    "postgis": _Spec(
        "memories_geo.formats.postgis:PostGISFormat", ("psycopg", "psycopg_pool"), "memories-geo[postgis]"
    ),
}


def _installed(modules: tuple[str, ...]) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _entry_point_formats() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_formats() -> list[str]:
    """Every format name, installed or not."""
    return sorted({*BUILTIN_FORMATS, *_entry_point_formats()})


def _module_exists(class_path: str) -> bool:
    return importlib.util.find_spec(class_path.partition(":")[0]) is not None


def available_formats() -> list[str]:
    """Format names whose dependencies are installed (checked without importing them)."""
    names = [
        n for n, spec in BUILTIN_FORMATS.items() if _installed(spec.requires) and _module_exists(spec.cls)
    ]
    return sorted({*names, *_entry_point_formats()})


@cache
def get_format(name: str) -> Format:
    """Return the format instance registered as ``name``.

    Raises
    ------
    FormatError
        If the name is unknown (the message lists the known ones) or its
        dependencies are missing (the message says what to install).

    Examples
    --------
    >>> get_format("zarr").name
    'zarr'
    """
    spec = BUILTIN_FORMATS.get(name)
    if spec is not None:
        if not _installed(spec.requires):
            missing = [m for m in spec.requires if importlib.util.find_spec(m) is None]
            raise FormatError(
                f"format {name!r} needs {', '.join(missing)}; install it with "
                f"`pip install {spec.install}`. Installed formats: {available_formats()}."
            )
        path = spec.cls
    else:
        path = _entry_point_formats().get(name, "")
        if not path:
            raise FormatError(f"unknown format {name!r}; known formats: {known_formats()}.")
    module_name, _, attr = path.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    return cls()
