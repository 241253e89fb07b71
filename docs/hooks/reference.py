"""MkDocs hook: reference tables rendered from the code's own constants.

A page asks for a table with an HTML comment on a line of its own::

    <!-- reference: zarr-codecs -->

and the hook replaces the comment with a Markdown table built from the objects that
define it (``StorageConfig``/``TierConfig`` fields and docstrings, the tier defaults, the
per-format codec tables ``ZARR_CODECS``, ``COG_PROFILES``, ``PARQUET_COMPRESSION`` and
``GZIP_LEVEL``, the format registry). So the docs cannot drift from the code: changing a
constant changes the page at the next build. An unknown table name fails the build.

``render(name)`` is also importable, so the tests can check the tables without a build.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["MARKER", "TABLES", "on_page_markdown", "render"]

#: ``<!-- reference: NAME -->`` on a line of its own.
MARKER = re.compile(r"^<!--\s*reference:\s*([a-z0-9-]+)\s*-->[ \t]*$", re.MULTILINE)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(cell).replace("|", "\\|").replace("\n", " ") for cell in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _code(value: Any) -> str:
    return f"`{value}`"


def _field_docs(cls: type) -> dict[str, tuple[str, str]]:
    """Attribute name -> (type, description) from the class's numpydoc ``Attributes``."""
    import griffe

    out: dict[str, tuple[str, str]] = {}
    sections = griffe.Docstring(inspect.getdoc(cls) or "").parse("numpy", warnings=False)
    for section in sections:
        if section.kind.value == "attributes":
            for attr in section.value:
                out[attr.name] = (str(attr.annotation or ""), " ".join(attr.description.split()))
    return out


def _default(field: dataclasses.Field[Any]) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
        return _code(getattr(value, "value", value) if value is not None else "None")
    if field.default_factory is not dataclasses.MISSING:
        return _code(field.default_factory())
    return "required"


def _fields(cls: type) -> str:
    docs = _field_docs(cls)
    rows = []
    for field in dataclasses.fields(cls):
        kind, text = docs.get(field.name, ("", ""))
        rows.append((_code(field.name), kind, _default(field), text))
    return _table(("setting", "type", "default", "meaning"), rows)


def storage_config() -> str:
    """``StorageConfig`` fields: the top level of ``memories.toml``."""
    from memories_geo.config import StorageConfig

    return _fields(StorageConfig)


def tier_config() -> str:
    """``TierConfig`` fields: one ``[tiers.NAME]`` table of ``memories.toml``."""
    from memories_geo.config import TierConfig

    return _fields(TierConfig)


def tier_defaults() -> str:
    """The embedded default tiers (``StorageConfig.embedded``), in order."""
    from memories_geo.config import StorageConfig

    home = "/HOME"
    config = StorageConfig.embedded(home)
    rows = []
    for name, tier in config.tiers.items():
        url = tier.url.replace("file://" + home, "$MEMORIES_GEO_HOME")
        default = "yes" if name == config.default_tier else ""
        rows.append((_code(name), _code(url), _code(tier.compression.value), default))
    return _table(("tier", "URL", "compression", "default tier"), rows)


def _levels() -> list[Any]:
    from memories_geo.types import CompressionLevel

    return list(CompressionLevel)


def _tiers_by_level() -> dict[Any, str]:
    from memories_geo.config import StorageConfig

    by_level: dict[Any, list[str]] = {}
    for name, tier in StorageConfig.embedded("/HOME").tiers.items():
        by_level.setdefault(tier.compression, []).append(name)
    return {level: ", ".join(names) for level, names in by_level.items()}


def _zarr_codec(level: Any) -> str:
    from memories_geo.formats.zarr import SHARDED_LEVELS, ZARR_CODECS

    name, options = ZARR_CODECS[level]
    text = f"{name.capitalize()} {options.get('cname', '')} {options.get('clevel', '')}".strip()
    if options.get("shuffle") not in (None, "noshuffle"):
        text += " + shuffle"
    if level in SHARDED_LEVELS:
        text += ", sharded"
    return text


def _cog_codec(level: Any) -> str:
    from memories_geo.formats.cog import COG_PROFILES

    profile = COG_PROFILES[level]
    return f"{profile['COMPRESS']} {profile.get('LEVEL', '')}".strip()


def _parquet_codec(level: Any) -> str:
    from memories_geo.formats.geoparquet import PARQUET_COMPRESSION

    options = PARQUET_COMPRESSION[level]
    return f"{options['compression']} {options.get('compression_level', '')}".strip()


def _geojson_codec(level: Any) -> str:
    from memories_geo.formats.geojson import GZIP_LEVEL

    return f"gzip {GZIP_LEVEL[level]}"


def compression_levels() -> str:
    """Every compression level: its default tier and what each format makes of it."""
    tiers = _tiers_by_level()
    rows = [
        (_code(level.value), tiers.get(level, ""), _zarr_codec(level), _cog_codec(level),
         _parquet_codec(level), _geojson_codec(level))
        for level in _levels()
    ]
    header = ("level", "default for tier", "Zarr", "COG", "GeoParquet", "GeoJSON (`compress=True`)")
    return _table(header, rows)


def zarr_codecs() -> str:
    """``memories_geo.formats.zarr.ZARR_CODECS`` with the sharded levels."""
    from memories_geo.formats.zarr import SHARD_BYTES, SHARDED_LEVELS, ZARR_CODECS

    rows = []
    for level in _levels():
        name, options = ZARR_CODECS[level]
        settings = ", ".join(f"`{k}={v!r}`" for k, v in options.items())
        sharded = level in SHARDED_LEVELS
        layout = f"sharded, shards of about {SHARD_BYTES // 2**20} MiB" if sharded else "chunks"
        rows.append((_code(level.value), _code(name), settings, layout))
    return _table(("level", "compressor", "settings", "layout"), rows)


def cog_profiles() -> str:
    """``memories_geo.formats.cog.COG_PROFILES`` (GDAL COG driver creation options)."""
    from memories_geo.formats.cog import COG_PROFILES, DEFAULT_BLOCKSIZE

    rows = []
    for level in _levels():
        options = ", ".join(f"`{k}={v}`" for k, v in COG_PROFILES[level].items())
        rows.append((_code(level.value), options, f"`BLOCKSIZE={DEFAULT_BLOCKSIZE}`"))
    return _table(("level", "creation options", "tiles (default)"), rows)


def parquet_compression() -> str:
    """``memories_geo.formats.geoparquet.PARQUET_COMPRESSION`` (``to_parquet`` keywords)."""
    from memories_geo.formats.geoparquet import PARQUET_COMPRESSION, ROW_GROUP_SIZE

    rows = []
    for level in _levels():
        options = ", ".join(f"`{k}={v!r}`" for k, v in PARQUET_COMPRESSION[level].items())
        rows.append((_code(level.value), options, f"{ROW_GROUP_SIZE:,}"))
    return _table(("level", "writer keywords", "rows per row group"), rows)


def geojson_gzip() -> str:
    """``memories_geo.formats.geojson.GZIP_LEVEL`` (with ``compress=True``)."""
    from memories_geo.formats.geojson import GZIP_LEVEL

    return _table(("level", "gzip level"), ((_code(lv.value), GZIP_LEVEL[lv]) for lv in _levels()))


def formats() -> str:
    """Every known format: kinds, file extension, where it is the default, open keywords."""
    from memories_geo.formats.registry import available_formats, get_format, known_formats

    installed = set(available_formats())
    rows = []
    for name in known_formats():
        if name not in installed:
            rows.append((_code(name), "", "", "not installed", ""))
            continue
        fmt = get_format(name)
        kinds = ", ".join(sorted(k.value for k in fmt.kinds))
        default = ", ".join(sorted(f"{k.value} on `{c.value}` backends" for k, c in fmt.default_for))
        options = "; ".join(f"`{k}=`: {v}" for k, v in fmt.open_options.items())
        rows.append((_code(name), kinds, _code(fmt.extension) if fmt.extension else "(tables)",
                     default or "only when asked (`format=`)", options))
    return _table(("format", "kinds", "extension", "default for", "format keywords of `open`"), rows)


def environment() -> str:
    """Environment variables read by the configuration."""
    from memories_geo import config

    rows = [
        (_code(config.HOME_ENV), "embedded home: the four tiers and the catalog (default `./.memories`)"),
        (_code(config.CONFIG_ENV), "a `memories.toml` to use instead of `./memories.toml`"),
    ]
    return _table(("variable", "meaning"), rows)


#: Table name (as written in the marker) -> function returning Markdown.
TABLES: dict[str, Callable[[], str]] = {
    "storage-config": storage_config,
    "tier-config": tier_config,
    "tier-defaults": tier_defaults,
    "compression-levels": compression_levels,
    "zarr-codecs": zarr_codecs,
    "cog-profiles": cog_profiles,
    "parquet-compression": parquet_compression,
    "geojson-gzip": geojson_gzip,
    "formats": formats,
    "environment": environment,
}


def render(name: str) -> str:
    """The Markdown table called ``name`` (a key of :data:`TABLES`)."""
    try:
        make = TABLES[name]
    except KeyError:
        raise KeyError(f"unknown reference table {name!r}; known: {sorted(TABLES)}") from None
    return make()


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace every ``<!-- reference: NAME -->`` line with its table."""
    return MARKER.sub(lambda match: render(match.group(1)), markdown)
