"""GDAL COG driver settings: codec profiles per compression level, tiles, overview resampling."""

from __future__ import annotations

from typing import Any

from memories_geo.errors import FormatError, OptionError
from memories_geo.types import CompressionLevel

__all__ = [
    "COG_CODECS",
    "COG_PROFILES",
    "DEFAULT_BLOCKSIZE",
    "GDAL_CACHE_MB",
    "OVERVIEW_RESAMPLINGS",
    "PREDICTORS",
    "check_blocksize",
    "check_codec",
    "check_predictor",
    "check_resampling",
    "cog_creation_options",
    "default_resampling",
]

#: Compression level -> COG driver codec options (predictor and threads are added by
#: :func:`cog_creation_options`). Chosen by measurement on smooth terrain plus noise
#: (int16, float32, uint8), see docs/formats-cog.md: ZSTD 1 is the fastest codec
#: that still halves int16 terrain; ZSTD 6 gains 5-12 % more at a third of the
#: speed; DEFLATE 9 matches ZSTD 12-15 in size and every GeoTIFF reader decodes it;
#: ZSTD 19 is the smallest lossless option readers commonly support (ZSTD 22 gives
#: the same size on 512x512 tiles at a third of the speed).
COG_PROFILES: dict[CompressionLevel, dict[str, Any]] = {
    CompressionLevel.FAST: {"COMPRESS": "ZSTD", "LEVEL": 1},
    CompressionLevel.MEDIUM: {"COMPRESS": "ZSTD", "LEVEL": 6},
    CompressionLevel.HIGH: {"COMPRESS": "DEFLATE", "LEVEL": 9},
    CompressionLevel.MAXIMUM: {"COMPRESS": "ZSTD", "LEVEL": 19},
}

#: Lossless GDAL codecs accepted by ``compression=`` (any case), with their ``LEVEL=`` range
#: (``None``: the codec takes no level).
COG_CODECS: dict[str, tuple[int, int] | None] = {
    "DEFLATE": (1, 12), "ZSTD": (1, 22), "LZMA": (0, 9), "LZW": None, "PACKBITS": None, "NONE": None,
}

#: ``predictor=`` values -> GDAL's ``PREDICTOR=`` (1 none, 2 horizontal, 3 floating point).
PREDICTORS: dict[Any, str] = {
    1: "NO", 2: "STANDARD", 3: "FLOATING_POINT",
    "none": "NO", "no": "NO", "standard": "STANDARD", "horizontal": "STANDARD",
    "floating_point": "FLOATING_POINT",
}

#: Tile width and height when ``blocksize=`` is not given.
DEFAULT_BLOCKSIZE = 512

#: GDAL block cache (MB) while writing: bounds the memory used on top of the chunks.
GDAL_CACHE_MB = 64

#: Overview resampling methods GDAL accepts when building overviews.
OVERVIEW_RESAMPLINGS = (
    "nearest", "average", "bilinear", "cubic", "cubic_spline", "lanczos", "mode", "gauss", "rms",
)


def cog_creation_options(
    level: CompressionLevel | str,
    dtype: Any,
    *,
    blocksize: int = DEFAULT_BLOCKSIZE,
    codec: str | None = None,
    codec_level: int | None = None,
    predictor: Any = None,
    overviews: bool = True,
) -> dict[str, Any]:
    """GDAL COG driver creation options for a compression level and a data type.

    Parameters
    ----------
    level : CompressionLevel or str
        ``"fast"``, ``"medium"``, ``"high"`` or ``"maximum"`` (see :data:`COG_PROFILES`).
    dtype : numpy dtype or str
        Data type stored: integers get ``PREDICTOR=STANDARD`` (2), floats
        ``PREDICTOR=FLOATING_POINT`` (3).
    blocksize : int
        Tile width and height, a multiple of 16.
    codec : str, optional
        A codec of :data:`COG_CODECS` instead of the level's; without ``codec_level``
        GDAL's default level of that codec.
    codec_level : int, optional
        ``LEVEL=`` of the codec (the level's codec when ``codec`` is not given).
    predictor : int or str, optional
        A key of :data:`PREDICTORS`; default by data type.
    overviews : bool
        ``False`` writes no overviews (``OVERVIEWS=NONE``).

    Returns
    -------
    dict
        Keyword arguments for ``rasterio.shutil.copy(src, dst, driver="COG", **options)``.

    Raises
    ------
    FormatError
        For a block size that is not a positive multiple of 16.
    OptionError
        For an unknown codec or predictor, a level outside the codec's range, or a
        predictor with a codec that takes none.

    Examples
    --------
    >>> cog_creation_options("fast", "int16")["PREDICTOR"]
    'STANDARD'
    >>> cog_creation_options("fast", "int16", codec="deflate", predictor=2)["COMPRESS"]
    'DEFLATE'
    """
    import numpy as np

    options = dict(COG_PROFILES[CompressionLevel(level)])
    if codec is not None:
        options = {"COMPRESS": check_codec(codec)}
    name = options["COMPRESS"]
    if codec_level is not None:
        options["LEVEL"] = _codec_level(name, codec_level)
    kind = np.dtype(dtype).kind
    if predictor is None:
        options["PREDICTOR"] = "FLOATING_POINT" if kind == "f" else "STANDARD"
    else:
        options["PREDICTOR"] = check_predictor(predictor, name, kind)
    if name in ("NONE", "PACKBITS") and predictor is None:
        options.pop("PREDICTOR")
    options["BLOCKSIZE"] = check_blocksize(blocksize)
    if not overviews:
        options["OVERVIEWS"] = "NONE"
    options["NUM_THREADS"] = "ALL_CPUS"
    options["BIGTIFF"] = "IF_SAFER"
    return options


def check_codec(codec: Any) -> str:
    """The GDAL name of a lossless codec of :data:`COG_CODECS` (``"deflate"`` -> ``"DEFLATE"``).

    Raises
    ------
    OptionError
        For any other value, naming the accepted ones.
    """
    name = codec.upper() if isinstance(codec, str) else codec
    if name not in COG_CODECS:
        raise OptionError(f"compression for the cog format must be one of {list(COG_CODECS)} "
                          f"(any case) or a level {[c.value for c in CompressionLevel]}, got {codec!r}")
    return str(name)


def _codec_level(codec: str, level: Any) -> int:
    bounds = COG_CODECS[codec]
    if bounds is None:
        raise OptionError(f"compression_level applies to {[c for c, b in COG_CODECS.items() if b]}, "
                          f"not to {codec}")
    if isinstance(level, bool) or not isinstance(level, int) or not bounds[0] <= level <= bounds[1]:
        raise OptionError(f"compression_level for {codec} must be an integer from {bounds[0]} to "
                          f"{bounds[1]}, got {level!r}")
    return level


def check_predictor(predictor: Any, codec: str, kind: str) -> str:
    """GDAL's ``PREDICTOR=`` for ``predictor`` (1, 2, 3 or a name) with ``codec`` on data of dtype ``kind``.

    Raises
    ------
    OptionError
        For an unknown value, a predictor with a codec that takes none, or the
        floating-point predictor on integers.
    """
    key = predictor.lower() if isinstance(predictor, str) else predictor
    if isinstance(key, bool) or key not in PREDICTORS:
        raise OptionError(f"predictor must be one of {list(PREDICTORS)}, got {predictor!r}")
    value = PREDICTORS[key]
    if value != "NO" and codec in ("NONE", "PACKBITS"):
        raise OptionError(f"predictor={predictor!r} needs a codec that takes one (DEFLATE, ZSTD, LZW, LZMA), "
                          f"not {codec}")
    if value == "FLOATING_POINT" and kind != "f":
        raise OptionError("predictor=3 (floating point) applies to float data; use 2 for integers")
    return value


def check_blocksize(blocksize: Any) -> int:
    """``blocksize`` (or a square ``(n, n)``) if a positive multiple of 16, else a :class:`FormatError`."""
    if isinstance(blocksize, list | tuple) and len(blocksize) == 2 and blocksize[0] == blocksize[1]:
        blocksize = blocksize[0]
    if isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize < 16 or blocksize % 16:
        raise FormatError(
            f"blocksize must be a positive multiple of 16 (e.g. 256, 512, 1024, or a square "
            f"(256, 256): COG tiles are square), got {blocksize!r}"
        )
    return blocksize


def default_resampling(dtype: Any) -> str:
    """``"average"`` for floats, ``"nearest"`` for integers and booleans (categories stay categories)."""
    import numpy as np

    return "average" if np.dtype(dtype).kind in "fc" else "nearest"


def check_resampling(value: Any) -> str:
    """The GDAL name of an overview resampling (a name or a ``rasterio`` ``Resampling``).

    Raises
    ------
    FormatError
        For a method GDAL cannot build overviews with.
    """
    name = str(getattr(value, "name", value)).lower()
    if name not in OVERVIEW_RESAMPLINGS:
        raise FormatError(
            f"overview_resampling={value!r} is not supported; choose one of {list(OVERVIEW_RESAMPLINGS)}"
        )
    return name
