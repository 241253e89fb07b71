"""Codecs per compression level, and the per-variable encoding handed to ``to_zarr``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memories_geo.errors import FormatError, OptionError
from memories_geo.formats.zarr.cf import CF_REFERENCE_ENCODINGS
from memories_geo.types import CompressionLevel

if TYPE_CHECKING:
    import xarray as xr
    from zarr.abc.codec import BytesBytesCodec

__all__ = [
    "CODEC_LEVELS",
    "SEPARATORS",
    "STORAGE_OPTIONS",
    "VALID_ENCODINGS",
    "ZARR_CODECS",
    "StorageLayout",
    "merge_encoding",
    "storage_layout",
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


#: ``compression=`` names of the zarr format -> accepted ``compression_level`` range
#: (``"blosc"`` is Blosc with zstd inside, ``"lz4"`` Blosc with lz4, both byte-shuffled).
CODEC_LEVELS: dict[str, tuple[int, int] | None] = {
    "zstd": (1, 22), "gzip": (0, 9), "blosc": (0, 9), "lz4": (0, 9), "none": None,
}

#: ``dimension_separator=`` values: the separator of Zarr v3's default chunk key encoding.
SEPARATORS = ("/", ".")

#: Save keywords that set the layout of every array written (``encoding=`` overrides them).
STORAGE_OPTIONS: Mapping[str, str] = {
    "chunks": "chunk shape of the data variables: a tuple per dimension, e.g. (1, 500, 500), or {dim: size}",
    "compression": f"codec of every array: one of {list(CODEC_LEVELS)} (default: from the tier's level)",
    "compression_level": "level of that codec (zstd 1-22, gzip and blosc 0-9)",
    "dimension_separator": "separator of the chunk keys, '/' (c/0/0/0, default) or '.' (c.0.0.0)",
}


@dataclass(frozen=True)
class StorageLayout:
    """The layout asked by ``chunks=``, ``compression=``, ``compression_level=``, ``dimension_separator=``.

    Attributes
    ----------
    chunks : tuple of int, mapping of str to int, or None
        Chunk shape of data variables with as many dimensions (a tuple) or on those dims.
    codec : str or None
        A key of :data:`CODEC_LEVELS`.
    level : int or None
        The codec's level.
    separator : str or None
        One of :data:`SEPARATORS`.
    """

    chunks: tuple[int, ...] | Mapping[str, int] | None = None
    codec: str | None = None
    level: int | None = None
    separator: str | None = None

    def encoding(self, ds: xr.Dataset, user: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """Per-variable encoding of ``ds`` with this layout, overridden by the user's ``encoding=``."""
        result: dict[str, dict[str, Any]] = {}
        for name, var in ds.variables.items():
            enc: dict[str, Any] = {}
            chunks = self._chunks_for(var, name in ds.dims)
            if chunks is not None:
                enc["chunks"] = chunks
            if self.codec is not None:
                enc["compressors"] = self._compressors()
            if self.separator is not None:
                enc["chunk_key_encoding"] = {"name": "default", "separator": self.separator}
            result[str(name)] = {**enc, **user.get(str(name), {})}
        return {k: v for k, v in result.items() if v}

    def _chunks_for(self, var: Any, is_dimension: bool) -> tuple[int, ...] | None:
        if self.chunks is None or is_dimension or var.ndim == 0 or var.dtype.kind not in "biufcmM":
            return None
        if isinstance(self.chunks, Mapping):
            if not set(self.chunks) & {str(d) for d in var.dims}:
                return None
            wanted = [self.chunks.get(str(d), n) for d, n in zip(var.dims, var.shape, strict=True)]
        elif len(self.chunks) == var.ndim:
            wanted = list(self.chunks)
        else:
            return None
        return tuple(max(1, min(int(c), int(n))) for c, n in zip(wanted, var.shape, strict=True))

    def _compressors(self) -> Any:
        import zarr.codecs

        if self.codec == "none":
            return None
        if self.codec == "zstd":
            return (zarr.codecs.ZstdCodec(level=3 if self.level is None else self.level),)
        if self.codec == "gzip":
            return (zarr.codecs.GzipCodec(level=5 if self.level is None else self.level),)
        level = 5 if self.level is None else self.level
        if self.codec == "lz4":
            return (zarr.codecs.BloscCodec(cname="lz4", clevel=level, shuffle="shuffle"),)
        return (zarr.codecs.BloscCodec(cname="zstd", clevel=level, shuffle="shuffle"),)


def storage_layout(extra: dict[str, Any]) -> StorageLayout:
    """Pop and check the :data:`STORAGE_OPTIONS` in ``extra``.

    Raises
    ------
    OptionError
        For a value outside the accepted ones (the message names them).

    Examples
    --------
    >>> storage_layout({"compression": "zstd", "compression_level": 3}).codec
    'zstd'
    """
    chunks = extra.pop("chunks", None)
    codec = extra.pop("compression", None)
    level = extra.pop("compression_level", None)
    separator = extra.pop("dimension_separator", None)
    if chunks is not None:
        values = list(chunks.values()) if isinstance(chunks, Mapping) else chunks
        if isinstance(chunks, str) or not isinstance(values, list | tuple) or not values or not all(
            isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in values
        ):
            raise OptionError(f"chunks must be a tuple of positive integers, e.g. (1, 500, 500), or a "
                              f"dict {{dim: size}}, got {chunks!r}")
        chunks = {str(k): int(v) for k, v in chunks.items()} if isinstance(chunks, Mapping) else tuple(chunks)
    if codec is not None:
        codec = codec.lower() if isinstance(codec, str) else codec
        if codec not in CODEC_LEVELS:
            raise OptionError(f"compression for the zarr format must be one of {list(CODEC_LEVELS)} or a "
                              f"level {[c.value for c in CompressionLevel]}, got {codec!r}")
    if level is not None:
        bounds = CODEC_LEVELS.get(codec or "zstd")
        if codec is None:
            raise OptionError("compression_level needs compression= (e.g. compression='zstd')")
        if bounds is None:
            raise OptionError(f"compression_level does not apply to compression={codec!r}")
        if isinstance(level, bool) or not isinstance(level, int) or not bounds[0] <= level <= bounds[1]:
            raise OptionError(f"compression_level for {codec} must be an integer from {bounds[0]} to "
                              f"{bounds[1]}, got {level!r}")
    if separator is not None and separator not in SEPARATORS:
        raise OptionError(f"dimension_separator must be one of {list(SEPARATORS)}, got {separator!r}")
    return StorageLayout(chunks=chunks, codec=codec, level=level, separator=separator)
