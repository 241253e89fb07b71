"""``COGStorage`` and ``ZarrStorage``: the original API's raster storage classes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from memories_geo.errors import FormatError, OptionError
from memories_geo.formats.cog.profile import PREDICTORS, check_blocksize, check_codec, check_resampling
from memories_geo.formats.zarr.encoding import storage_layout
from memories_geo.storage.formats.base import FormatStorage, checked_keywords, organization_parts
from memories_geo.types import CompressionLevel

__all__ = ["COGStorage", "ZarrStorage"]


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


def _is_level(value: Any) -> bool:
    """Whether ``value`` names a compression level (``"fast"`` ... ``"maximum"``) rather than a codec."""
    return isinstance(value, str) and value.lower() in {c.value for c in CompressionLevel}


@checked_keywords
@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class COGStorage(FormatStorage):
    """Cloud-optimized GeoTIFF options (the original ``COGStorage``), for single images and stacks.

    Parameters
    ----------
    base_path : str or Path, optional
        Home of the private collection of standalone saves (:meth:`save`, :meth:`load`).
    organization : str, optional
        Key template of standalone saves, e.g. ``"sensor/year/month"``: each part from
        the metadata, the data's attributes or its time (see :meth:`key_for`).
    overviews : bool
        Build internal overviews (``False``: none).
    compression : str
        GDAL codec: ``"DEFLATE"`` (default), ``"ZSTD"``, ``"LZW"``, ``"LZMA"``,
        ``"PACKBITS"`` or ``"NONE"`` (any case); or a level (``"fast"`` ...
        ``"maximum"``) for memories_geo's codec of that level.
    compression_level : int, optional
        The codec's ``LEVEL`` (DEFLATE 1-12, ZSTD 1-22, LZMA 0-9).
    blocksize : int or (int, int)
        Tile size; COG tiles are square, a multiple of 16. Default ``(256, 256)``.
    predictor : int or str, optional
        ``1`` (none), ``2`` (horizontal differencing, default), ``3`` (floating
        point); ``None``: by data type.
    overview_resampling : str, optional
        GDAL resampling of the overviews (default by data type).

    Raises
    ------
    OptionError
        For an unknown keyword or a value outside the accepted ones.

    Examples
    --------
    >>> import memories_geo as mg
    >>> cog = mg.COGStorage(base_path="/data/rasters", organization="sensor/year/month",
    ...                     overviews=True, compression="DEFLATE", blocksize=(256, 256), predictor=2)
    >>> cog.save_options()["blocksize"]
    256
    >>> mem.save(dem, "alps/dem", storage=cog)  # doctest: +SKIP
    """

    format_name: ClassVar[str] = "cog"
    kinds: ClassVar[frozenset[str]] = frozenset({"raster"})

    base_path: Any = None
    organization: str | None = None
    overviews: bool = True
    compression: str = "DEFLATE"
    compression_level: int | None = None
    blocksize: int | tuple[int, int] = (256, 256)
    predictor: int | str | None = 2
    overview_resampling: str | None = None

    def __post_init__(self) -> None:
        organization_parts(self.organization, "organization")
        if not isinstance(self.overviews, bool):
            raise OptionError(f"overviews must be True or False, got {self.overviews!r}")
        if _is_level(self.compression):
            _set(self, "compression", self.compression.lower())
            if self.compression_level is not None:
                raise OptionError("compression_level goes with a codec (compression='DEFLATE'...), "
                                  "not a level")
        else:
            _set(self, "compression", check_codec(self.compression))
        try:
            size = check_blocksize(self.blocksize)
        except FormatError as exc:
            raise OptionError(str(exc)) from None
        _set(self, "blocksize", (size, size))
        key = self.predictor.lower() if isinstance(self.predictor, str) else self.predictor
        if self.predictor is not None and (isinstance(key, bool) or key not in PREDICTORS):
            raise OptionError(f"predictor must be one of {list(PREDICTORS)} or None, got {self.predictor!r}")
        codec_takes_none = self.compression in ("NONE", "PACKBITS")
        if self.predictor is not None and PREDICTORS[key] != "NO" and codec_takes_none:
            raise OptionError(f"predictor={self.predictor!r} needs compression DEFLATE, ZSTD, LZW or LZMA, "
                              f"not {self.compression}")
        if self.compression_level is not None and not _is_level(self.compression):
            from memories_geo.formats.cog.profile import cog_creation_options

            cog_creation_options("medium", "int16", codec=self.compression,
                                 codec_level=self.compression_level, predictor=1)
        if self.overview_resampling is not None:
            try:
                _set(self, "overview_resampling", check_resampling(self.overview_resampling))
            except FormatError as exc:
                raise OptionError(str(exc)) from None

    @property
    def organization_template(self) -> tuple[str, ...]:
        """Parts of :attr:`organization`."""
        return organization_parts(self.organization, "organization")

    def save_options(self) -> dict[str, Any]:
        """``Memory.save`` keywords of the ``cog`` format.

        Examples
        --------
        >>> COGStorage(overviews=False).save_options()
        {'compression': 'DEFLATE', 'blocksize': 256, 'predictor': 2, 'overviews': False}
        """
        size = self.blocksize if isinstance(self.blocksize, int) else self.blocksize[0]
        options: dict[str, Any] = {"compression": self.compression, "blocksize": size}
        if self.compression_level is not None:
            options["compression_level"] = self.compression_level
        if self.predictor is not None:
            options["predictor"] = self.predictor
        options["overviews"] = self.overviews
        if self.overview_resampling is not None:
            options["overview_resampling"] = self.overview_resampling
        return options


@checked_keywords
@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class ZarrStorage(FormatStorage):
    """Zarr v3 options (the original ``ZarrStorage``), for rasters, data cubes and any xarray object.

    Parameters
    ----------
    store_path : str or Path, optional
        The original's name of ``base_path`` (home of standalone saves).
    base_path : str or Path, optional
        Same as ``store_path`` (give one of them).
    chunks : tuple of int or dict, optional
        Chunk shape of the data variables with as many dimensions, e.g. ``(1, 500,
        500)`` for ``(time, y, x)``, or ``{dim: size}``; clipped to the array's shape.
        Default: memories_geo's own choice (about 1-8 MB chunks).
    compression : str
        ``"zstd"`` (default), ``"gzip"``, ``"blosc"`` (Blosc-zstd), ``"lz4"``
        (Blosc-lz4) or ``"none"``; or a level (``"fast"`` ... ``"maximum"``).
    compression_level : int, optional
        The codec's level (default 3; zstd 1-22, others 0-9).
    dimension_separator : {"/", "."}
        Separator of the chunk keys: ``c/0/0/0`` (default) or ``c.0.0.0``.
    organization : str, optional
        Key template of standalone saves, as :class:`COGStorage`'s.

    Raises
    ------
    OptionError
        For an unknown keyword or a value outside the accepted ones.

    Examples
    --------
    >>> import memories_geo as mg
    >>> zs = mg.ZarrStorage(store_path="/data/zarr", chunks=(1, 500, 500), compression="zstd",
    ...                     compression_level=3, dimension_separator="/")
    >>> zs.save_options()["chunks"]
    (1, 500, 500)
    """

    format_name: ClassVar[str] = "zarr"
    kinds: ClassVar[frozenset[str]] = frozenset({"raster", "timeseries", "array"})

    store_path: Any = None
    base_path: Any = None
    chunks: tuple[int, ...] | Mapping[str, int] | None = None
    compression: str = "zstd"
    compression_level: int | None = 3
    dimension_separator: str = "/"
    organization: str | None = None

    def __post_init__(self) -> None:
        both = self.store_path is not None and self.base_path is not None
        if both and str(self.store_path) != str(self.base_path):
            raise OptionError("give store_path= or base_path= (the same thing), not two different paths")
        organization_parts(self.organization, "organization")
        level = self.compression_level
        if isinstance(self.compression, str) and self.compression.lower() == "none":
            level = None
        if _is_level(self.compression):
            _set(self, "compression", self.compression.lower())
            _set(self, "compression_level", None)
            storage_layout({"chunks": self.chunks, "dimension_separator": self.dimension_separator})
            return
        layout = storage_layout({
            "chunks": self.chunks, "compression": self.compression, "compression_level": level,
            "dimension_separator": self.dimension_separator,
        })
        _set(self, "chunks", layout.chunks)
        _set(self, "compression", layout.codec)
        _set(self, "compression_level", layout.level)

    @property
    def location(self) -> str | None:
        """Where standalone saves go (``store_path`` or ``base_path``)."""
        value = self.store_path if self.store_path is not None else self.base_path
        return None if value is None else str(value)

    @property
    def organization_template(self) -> tuple[str, ...]:
        """Parts of :attr:`organization`."""
        return organization_parts(self.organization, "organization")

    def save_options(self) -> dict[str, Any]:
        """``Memory.save`` keywords of the ``zarr`` format.

        Examples
        --------
        >>> ZarrStorage(compression="gzip", compression_level=5).save_options()
        {'compression': 'gzip', 'compression_level': 5, 'dimension_separator': '/'}
        """
        options: dict[str, Any] = {}
        if self.chunks is not None:
            options["chunks"] = dict(self.chunks) if isinstance(self.chunks, Mapping) else self.chunks
        options["compression"] = self.compression
        if self.compression_level is not None:
            options["compression_level"] = self.compression_level
        options["dimension_separator"] = self.dimension_separator
        return options
