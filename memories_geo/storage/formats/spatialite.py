"""``SpatiaLiteStorage``: vector layers as SpatiaLite tables in a SQLite file."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

from memories_geo.config import StorageConfig
from memories_geo.errors import OptionError
from memories_geo.storage.formats.base import FormatStorage, checked_keywords

__all__ = ["SpatiaLiteStorage"]


@checked_keywords
@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class SpatiaLiteStorage(FormatStorage):
    """SpatiaLite tables in a SQLite database: one table per version, a view per key.

    The layers are readable by QGIS and GDAL/OGR through their views (see the SpatiaLite
    format page). The format takes no save options: geometry columns, SRIDs and spatial
    indexes are set from the data.

    Parameters
    ----------
    database_path : str or Path, optional
        The SQLite file (created if missing). Needed for standalone use and as a tier
        backend of its own; as ``storage=`` the tier's database is used.
    base_path : str or Path, optional
        Where standalone use keeps its catalog (default: beside the database, in
        ``<database>.memories``).

    Raises
    ------
    OptionError
        For an unknown keyword, or a ``database_path`` that is not a path.

    Examples
    --------
    >>> import memories_geo as mg
    >>> lite = mg.SpatiaLiteStorage(database_path="/data/hot.sqlite")
    >>> lite.tier_settings()
    {'url': 'sqlite:////data/hot.sqlite'}
    """

    format_name: ClassVar[str] = "spatialite"
    kinds: ClassVar[frozenset[str]] = frozenset({"vector", "timeseries"})

    database_path: Any = None
    base_path: Any = None

    def __post_init__(self) -> None:
        if self.database_path is not None and not isinstance(self.database_path, str | Path):
            raise OptionError(f"database_path must be a file path, got {type(self.database_path).__name__}")

    def save_options(self) -> dict[str, Any]:
        """No keywords: the ``spatialite`` format takes none."""
        return {}

    def tier_settings(self) -> dict[str, Any]:
        """Settings of a tier on this database (``{}`` without ``database_path``)."""
        if self.database_path is None:
            return {}
        return {"url": f"sqlite:///{Path(self.database_path).expanduser().absolute()}"}

    @property
    def location(self) -> str | None:
        """Where standalone use keeps its catalog."""
        if self.base_path is not None:
            return str(self.base_path)
        if self.database_path is None:
            return None
        return f"{Path(self.database_path).expanduser().absolute()}.memories"

    def _config(self) -> StorageConfig:
        if self.database_path is None:
            raise OptionError("SpatiaLiteStorage needs database_path= to save, load, list or delete on its "
                              "own; or pass it as storage= to Memory.save on a sqlite:// tier")
        return StorageConfig.from_dict({"home": self.location, "tiers": {"hot": self.tier_settings()}})
