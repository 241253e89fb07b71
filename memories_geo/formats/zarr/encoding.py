"""Codecs per compression level, and the per-variable encoding handed to ``to_zarr``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from memories_geo.errors import FormatError
from memories_geo.formats.zarr.cf import CF_REFERENCE_ENCODINGS
from memories_geo.types import CompressionLevel

if TYPE_CHECKING:
    import xarray as xr
    from zarr.abc.codec import BytesBytesCodec

__all__ = [
    "VALID_ENCODINGS",
    "ZARR_CODECS",
    "merge_encoding",
    "user_encoding",
    "validate_encoding",
    "zarr_codec",
]

#: Compression level -> (codec, parameters): ``"blosc"`` is ``zarr.codecs.BloscCodec``,
#: ``"zstd"`` is ``zarr.codecs.ZstdCodec``. Build one with :func:`zarr_codec`. Zstd runs
#: inside Blosc with byte shuffling: on float rasters that compresses better than plain
#: Zstd at the same speed, and plain Zstd level 19 wrote at about 1 MB/s
#: (``docs/formats-zarr.md`` has the measurements).
ZARR_CODECS: dict[CompressionLevel, tuple[str, dict[str, Any]]] = {
    CompressionLevel.FAST: ("blosc", {"cname": "lz4", "clevel": 5, "shuffle": "shuffle"}),
    CompressionLevel.MEDIUM: ("blosc", {"cname": "zstd", "clevel": 3, "shuffle": "shuffle"}),
    CompressionLevel.HIGH: ("blosc", {"cname": "zstd", "clevel": 5, "shuffle": "shuffle"}),
    CompressionLevel.MAXIMUM: ("blosc", {"cname": "zstd", "clevel": 7, "shuffle": "shuffle"}),
}

#: Encoding keys accepted in ``encoding=`` (CF coder keys plus Zarr array keys).
VALID_ENCODINGS = frozenset(
    {
        "_FillValue",
        "dtype",
        "scale_factor",
        "add_offset",
        "units",
        "calendar",
        "chunks",
        "shards",
        "compressors",
        "filters",
        "serializer",
        "fill_value",
        "write_empty_chunks",
        "cache_metadata",
        "chunk_key_encoding",
        "preferred_chunks",
    }
)
#: Encoding entries of the object handed to ``to_zarr(encoding=...)``, which replaces them.
_PASSED_ENCODINGS = VALID_ENCODINGS | {"missing_value", *CF_REFERENCE_ENCODINGS}


def zarr_codec(level: CompressionLevel | str) -> BytesBytesCodec:
    """Build the compressor configured for ``level`` in :data:`ZARR_CODECS`.

    Parameters
    ----------
    level : CompressionLevel or str
        ``"fast"``, ``"medium"``, ``"high"`` or ``"maximum"``.

    Returns
    -------
    zarr.codecs.BloscCodec or zarr.codecs.ZstdCodec
        A new codec instance, usable in ``encoding={"var": {"compressors": (codec,)}}``.

    Examples
    --------
    >>> zarr_codec("high")  # doctest: +SKIP
    BloscCodec(typesize=None, cname=<BloscCname.zstd: 'zstd'>, clevel=5, ...)
    """
    import zarr.codecs

    name, params = ZARR_CODECS[CompressionLevel(level)]
    classes = {"blosc": zarr.codecs.BloscCodec, "zstd": zarr.codecs.ZstdCodec}
    return classes[name](**params)


def user_encoding(
    obj: Any, encoding: Mapping[str, Any] | None, info: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """``encoding=`` keyed by stored variable name (a DataArray may give its own directly).

    Raises
    ------
    FormatError
        See :func:`validate_encoding`.
    """
    import xarray as xr

    encoding = dict(encoding or {})
    if isinstance(obj, xr.DataArray) and encoding:
        variable = info["variable"]
        if obj.name is not None and obj.name in encoding and variable != obj.name:
            encoding[variable] = encoding.pop(obj.name)
        elif not all(isinstance(v, Mapping) for v in encoding.values()):
            encoding = {variable: encoding}
    ds = obj if isinstance(obj, xr.Dataset) else obj.to_dataset(name=info["variable"])
    return validate_encoding(ds, encoding)


def validate_encoding(ds: xr.Dataset, encoding: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Check ``encoding=`` against the variables of ``ds`` and :data:`VALID_ENCODINGS`.

    Raises
    ------
    FormatError
        For an unknown variable or encoding parameter.
    """
    encoding = dict(encoding or {})
    unknown_vars = sorted(str(n) for n in encoding if n not in ds.variables)
    if unknown_vars:
        raise FormatError(
            f"encoding= names variables that are not in the object: {unknown_vars}; "
            f"variables: {sorted(str(n) for n in ds.variables)}"
        )
    for name, enc in encoding.items():
        if not isinstance(enc, Mapping):
            raise FormatError(f"encoding[{name!r}] must be a dict of encoding parameters, got {enc!r}")
        bad = sorted(set(enc) - VALID_ENCODINGS)
        if bad:
            raise FormatError(
                f"unknown encoding parameters {bad} for variable {name!r}; "
                f"the zarr format accepts {sorted(VALID_ENCODINGS)}"
            )
    return {str(k): dict(v) for k, v in encoding.items()}


def merge_encoding(
    ds: xr.Dataset, level: CompressionLevel | str, user: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Encoding of every variable with the level's compressor, overridden by ``user``.

    ``to_zarr(encoding=...)`` replaces a variable's own encoding, so that is included.
    """
    codec = zarr_codec(level)
    merged = {
        str(name): {
            **{k: v for k, v in var.encoding.items() if k in _PASSED_ENCODINGS},
            "compressors": (codec,),
        }
        for name, var in ds.variables.items()
    }
    for name, enc in user.items():
        merged[name] = {**merged.get(name, {}), **enc}
    return merged
