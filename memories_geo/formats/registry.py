"""Registry of formats: built-ins by class path (imported on first use), ``register_format``, entry points.

Like xarray's engines, built-ins are listed only when their dependencies are installed,
checked without importing them; errors list what is installed and how to install the
rest. Third-party formats register with :func:`register_format` or through the
``memories_geo.formats`` entry-point group. A plugin that fails to load warns and is
left out; it never breaks saves in other formats.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
import warnings
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from memories_geo.errors import FormatError

if TYPE_CHECKING:
    from memories_geo.backends.base import Capability
    from memories_geo.formats.base import Format
    from memories_geo.types import Kind

__all__ = [
    "ENTRY_POINT_GROUP",
    "available_formats",
    "default_format",
    "get_format",
    "known_formats",
    "refresh_formats",
    "register_format",
    "unregister_format",
]

ENTRY_POINT_GROUP = "memories_geo.formats"


@dataclass(frozen=True)
class _Spec:
    target: str | type
    requires: tuple[str, ...] = ()
    install: str = "memories-geo"


#: Built-in formats: name -> class path, modules it needs, how to install them.
_BUILTIN: dict[str, _Spec] = {
    "zarr": _Spec("memories_geo.formats.zarr:ZarrFormat", ("zarr", "dask"), "memories-geo[zarr]"),
    "cog": _Spec("memories_geo.formats.cog:COGFormat", ("rasterio", "rioxarray"), "memories-geo[raster]"),
    "geoparquet": _Spec("memories_geo.formats.geoparquet:GeoParquetFormat", ("pyarrow",)),
    "geojson": _Spec("memories_geo.formats.geojson:GeoJSONFormat", ("pyogrio",), "memories-geo pyogrio"),
    "postgis": _Spec(
        "memories_geo.formats.postgis:PostGISFormat", ("psycopg", "psycopg_pool"), "memories-geo[postgis]"
    ),
    "parquet": _Spec("memories_geo.formats.parquet:ParquetFormat", ("pyarrow",)),
    "timescaledb": _Spec(
        "memories_geo.formats.timescaledb:TimescaleDBFormat", ("psycopg", "psycopg_pool"),
        "memories-geo[postgis]",
    ),
    "spatialite": _Spec("memories_geo.formats.spatialite:SpatiaLiteFormat", ("pyarrow",)),
}

_registered: dict[str, _Spec] = {}
_lock = threading.Lock()


def register_format(name: str, fmt: str | type, *, requires: tuple[str, ...] = (), install: str = "") -> None:
    """Register a format under ``name`` (replacing a built-in of that name).

    Parameters
    ----------
    name : str
        The name users pass as ``format=``.
    fmt : type or str
        A class implementing :class:`~memories_geo.formats.base.Format` (instantiated
        without arguments), or its ``"module:Class"`` path (imported on first use).
    requires : tuple of str
        Modules it needs (checked without importing them).
    install : str
        What to ``pip install`` when they are missing.

    Examples
    --------
    >>> register_format("myformat", "mypackage.formats:MyFormat")  # doctest: +SKIP
    """
    if not name or not name.isidentifier():
        raise FormatError(f"a format name must be an identifier, got {name!r}")
    with _lock:
        _registered[name] = _Spec(fmt, tuple(requires), install)
    refresh_formats()


def unregister_format(name: str) -> None:
    """Forget a format registered with :func:`register_format` (built-ins come back)."""
    with _lock:
        _registered.pop(name, None)
    refresh_formats()


def refresh_formats() -> None:
    """Forget cached format instances and entry points (after installing a plugin)."""
    get_format.cache_clear()
    _entry_point_specs.cache_clear()


@cache
def _entry_point_specs() -> dict[str, _Spec]:
    return {ep.name: _Spec(ep.value) for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _specs() -> dict[str, _Spec]:
    return {**_entry_point_specs(), **_BUILTIN, **_registered}


def _missing(spec: _Spec) -> list[str]:
    modules = list(spec.requires)
    if isinstance(spec.target, str):
        modules.append(spec.target.partition(":")[0])
    return [m for m in modules if not _findable(m)]


def _findable(module: str) -> bool:
    """Whether ``module`` can be imported, checked without importing it (parents aside)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def known_formats() -> list[str]:
    """Every format name, installed or not."""
    return sorted(_specs())


def available_formats() -> list[str]:
    """Format names whose dependencies are installed (checked without importing them)."""
    return sorted(name for name, spec in _specs().items() if not _missing(spec))


@cache
def get_format(name: str) -> Format:
    """Return the format instance registered as ``name``.

    Raises
    ------
    FormatError
        If the name is unknown (the message lists the known ones), its dependencies
        are missing (the message says what to install), or it fails to load.

    Examples
    --------
    >>> get_format("geoparquet").name
    'geoparquet'
    """
    spec = _specs().get(name)
    if spec is None:
        raise FormatError(f"unknown format {name!r}; known formats: {known_formats()}.")
    missing = _missing(spec)
    if missing:
        raise FormatError(
            f"format {name!r} needs {', '.join(missing)}; install it with "
            f"`pip install {spec.install}`. Installed formats: {available_formats()}."
        )
    cls = spec.target
    if isinstance(cls, str):
        module_name, _, attr = cls.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise FormatError(f"format {name!r} ({spec.target}) failed to load: {exc}") from exc
    fmt: Format = cls()
    return fmt


def _loadable() -> list[Format]:
    out = []
    for name in available_formats():
        try:
            out.append(get_format(name))
        except FormatError as exc:
            warnings.warn(f"{exc}; it is left out", RuntimeWarning, stacklevel=3)
    return out


def default_format(kind: Kind, capabilities: frozenset[Capability], obj: Any) -> str | None:
    """The installed format that is the default for ``obj`` of ``kind`` on a backend with ``capabilities``.

    Each format declares ``default_for`` (pairs of kind and the backend capability it
    needs) and ``default_priority(obj)`` (0: not for this object); the highest wins.
    ``None`` when no installed format is a default there.
    """
    best: tuple[int, str] | None = None
    for fmt in _loadable():
        for wanted_kind, capability in getattr(fmt, "default_for", ()):
            if wanted_kind is kind and capability in capabilities:
                priority = int(fmt.default_priority(obj)) if hasattr(fmt, "default_priority") else 1
                if priority > 0 and (best is None or priority > best[0]):
                    best = (priority, fmt.name)
    return best[1] if best else None


def formats_needing(capability: Capability) -> list[str]:
    """Names of the installed formats that are a default somewhere only a ``capability`` backend offers.

    Examples
    --------
    >>> formats_needing(Capability.POSTGRESQL)  # doctest: +SKIP
    ['postgis', 'timescaledb']
    """
    return sorted(
        fmt.name for fmt in _loadable()
        if any(needed is capability for _, needed in getattr(fmt, "default_for", ()))
    )
