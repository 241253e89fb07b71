"""GDAL COG driver settings: codec profiles per compression level, tiles, overview resampling."""

from __future__ import annotations

from typing import Any

from memories_geo.errors import FormatError
from memories_geo.types import CompressionLevel

__all__ = [
    "COG_PROFILES",
    "DEFAULT_BLOCKSIZE",
    "GDAL_CACHE_MB",
    "OVERVIEW_RESAMPLINGS",
    "check_blocksize",
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

    Returns
    -------
    dict
        Keyword arguments for ``rasterio.shutil.copy(src, dst, driver="COG", **options)``.

    Raises
    ------
    FormatError
        For a block size that is not a positive multiple of 16.

    Examples
    --------
    >>> cog_creation_options("fast", "int16")["PREDICTOR"]
    'STANDARD'
    """
    import numpy as np

    options = dict(COG_PROFILES[CompressionLevel(level)])
    kind = np.dtype(dtype).kind
    options["PREDICTOR"] = "FLOATING_POINT" if kind == "f" else "STANDARD"
    options["BLOCKSIZE"] = check_blocksize(blocksize)
    options["NUM_THREADS"] = "ALL_CPUS"
    options["BIGTIFF"] = "IF_SAFER"
    return options


def check_blocksize(blocksize: Any) -> int:
    """``blocksize`` if it is a positive multiple of 16, else a :class:`FormatError`."""
    if isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize < 16 or blocksize % 16:
        raise FormatError(
            f"blocksize must be a positive multiple of 16 (e.g. 256, 512, 1024), got {blocksize!r}"
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
