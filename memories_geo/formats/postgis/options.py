"""Save keywords of the ``postgis`` format: SRID, spatial index, geometry validation, topology."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memories_geo.errors import OptionError

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["VALIDATIONS", "WRITE_OPTIONS", "SaveSettings", "save_settings"]

#: ``validate=`` values: ``False`` stores geometries as they are, ``True`` (or
#: ``"refuse"``) refuses invalid ones naming the rows, ``"make_valid"`` repairs them.
VALIDATIONS: tuple[Any, ...] = (False, True, "refuse", "make_valid")

#: Save keywords -> one-line description (``PostGISFormat.write_options``).
WRITE_OPTIONS: Mapping[str, str] = {
    "engine": "load with 'psycopg' (binary COPY, default) or 'adbc'",
    "srid": "EPSG code to reproject every geometry column to before loading (default: keep the CRS)",
    "spatial_index": "build a GiST index on each geometry column (default True)",
    "validate": "invalid geometries: False (store as they are, default), True (refuse, naming the rows) "
    "or 'make_valid' (repair them)",
    "topology": "also build a PostGIS topology (postgis_topology extension) of the layer's geometries",
    "topology_tolerance": "snapping tolerance of the topology, in CRS units (default 0)",
}


@dataclass(frozen=True)
class SaveSettings:
    """The checked PostGIS save keywords (other than ``engine``).

    Attributes
    ----------
    srid : int or None
        EPSG code to reproject to.
    spatial_index : bool
        Whether geometry columns get a GiST index.
    validate : bool or str
        One of :data:`VALIDATIONS`.
    topology : bool
        Whether a topology is built.
    tolerance : float
        Snapping tolerance of the topology.
    """

    srid: int | None = None
    spatial_index: bool = True
    validate: bool | str = False
    topology: bool = False
    tolerance: float = 0.0

    def apply(self, frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        """``frame`` reprojected to :attr:`srid` and validated (a copy when anything changes).

        Raises
        ------
        UnsupportedObjectError
            With ``validate=True``, for invalid geometries (naming the rows).
        """
        import geopandas as gpd

        geometry_names = [c for c in frame.columns if isinstance(frame[c].dtype, gpd.array.GeometryDtype)]
        if self.srid is not None:
            frame = frame.copy()
            for name in geometry_names:
                if frame[name].crs is not None and frame[name].crs.to_epsg() != self.srid:
                    frame[name] = frame[name].to_crs(epsg=self.srid)
        if self.validate is True or self.validate == "refuse":
            from memories_geo.formats._vector import raise_for_invalid

            for name in geometry_names:
                raise_for_invalid(frame[name])
        elif self.validate == "make_valid":
            frame = frame.copy()
            for name in geometry_names:
                frame[name] = frame[name].make_valid()
        return frame


def save_settings(extra: dict[str, Any]) -> SaveSettings:
    """Pop and check the keywords of :class:`SaveSettings` from ``extra``.

    Raises
    ------
    OptionError
        For a value outside the accepted ones (the message names them).

    Examples
    --------
    >>> save_settings({"srid": 3857, "spatial_index": False}).srid
    3857
    """
    srid = extra.pop("srid", None)
    if srid is not None:
        if isinstance(srid, str) and srid.upper().startswith("EPSG:"):
            srid = srid[5:]
        try:
            srid = int(srid)
        except (TypeError, ValueError):
            raise OptionError(f"srid must be an EPSG code such as 4326 or 'EPSG:3857', got {srid!r}") \
                from None
        import pyproj

        try:
            pyproj.CRS.from_epsg(srid)
        except pyproj.exceptions.CRSError:
            raise OptionError(f"srid={srid} is not an EPSG code pyproj knows") from None
    flags = {}
    for name, default in (("spatial_index", True), ("topology", False)):
        value = extra.pop(name, default)
        if not isinstance(value, bool):
            raise OptionError(f"{name} must be True or False, got {value!r}")
        flags[name] = value
    validate = extra.pop("validate", False)
    if validate is None:
        validate = False
    if not any(validate is v or (isinstance(v, str) and validate == v) for v in VALIDATIONS):
        raise OptionError(f"validate must be one of {list(VALIDATIONS)}, got {validate!r}")
    tolerance = extra.pop("topology_tolerance", 0.0)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or tolerance < 0:
        raise OptionError(f"topology_tolerance must be a non-negative number, got {tolerance!r}")
    return SaveSettings(srid=srid, spatial_index=flags["spatial_index"], validate=validate,
                        topology=flags["topology"], tolerance=float(tolerance))
