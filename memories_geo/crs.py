"""Find the CRS of xarray and geopandas objects without importing rioxarray."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyproj
    import xarray as xr

__all__ = ["assign_crs", "crs_to_string", "explicit_crs", "grid_mapping_name", "xarray_crs"]

_GEOGRAPHIC_DIMS = {("lon", "lat"), ("longitude", "latitude")}


def grid_mapping_name(obj: xr.Dataset | xr.DataArray) -> str | None:
    """Name of the CF grid-mapping variable of ``obj`` (``spatial_ref`` by convention)."""
    variables = [obj] if _is_dataarray(obj) else list(obj.data_vars.values())
    for var in variables:
        name = var.attrs.get("grid_mapping") or var.encoding.get("grid_mapping")
        if isinstance(name, str) and name in obj.coords:
            return name
    for name in ("spatial_ref", "crs"):
        if name in obj.coords or (not _is_dataarray(obj) and name in obj.variables):
            return name
    return None


def xarray_crs(obj: xr.Dataset | xr.DataArray) -> pyproj.CRS | None:
    """CRS stored the CF/rioxarray way (``crs_wkt``/``spatial_ref`` on the grid mapping).

    Falls back to EPSG:4326 for datasets whose spatial dims are named lon/lat, as
    CF implies, and to ``None`` when nothing says which CRS applies.
    """
    import pyproj

    name = grid_mapping_name(obj)
    if name is not None:
        attrs = obj[name].attrs
        for attr in ("crs_wkt", "spatial_ref"):
            if attrs.get(attr):
                return pyproj.CRS.from_user_input(attrs[attr])
        if attrs.get("grid_mapping_name"):
            return pyproj.CRS.from_cf(dict(attrs))
    from memories_geo.kinds import spatial_dims

    dims = spatial_dims(obj)
    if dims is not None and dims in _GEOGRAPHIC_DIMS:
        return pyproj.CRS.from_epsg(4326)
    return None


def crs_to_string(crs: Any) -> str | None:
    """Compact text form of a CRS: ``"EPSG:32618"`` when it has a code, else its WKT2."""
    if crs is None:
        return None
    import pyproj

    crs = pyproj.CRS.from_user_input(crs)
    auth = crs.to_authority(min_confidence=100)
    if auth is not None:
        return f"{auth[0]}:{auth[1]}"
    return crs.to_wkt()


def _is_dataarray(obj: Any) -> bool:
    import xarray as xr

    return isinstance(obj, xr.DataArray)


def explicit_crs(obj: xr.Dataset | xr.DataArray) -> pyproj.CRS | None:
    """CRS written on a grid mapping (the lon/lat-implies-EPSG:4326 guess does not count)."""
    return xarray_crs(obj) if grid_mapping_name(obj) is not None else None


def assign_crs(obj: Any, crs: Any) -> Any:
    """``obj`` with ``crs`` written as a ``spatial_ref`` grid mapping if it has none.

    Raises
    ------
    UnsupportedObjectError
        If ``obj`` already has a different CRS (``crs=`` never reprojects).
    """
    if crs is None:
        return obj
    import pyproj

    from memories_geo.errors import UnsupportedObjectError

    wanted = pyproj.CRS.from_user_input(crs)
    current = explicit_crs(obj)
    if current is not None:
        if current.equals(wanted, ignore_axis_order=True):
            return obj
        raise UnsupportedObjectError(
            f"this {type(obj).__name__} already has the CRS {crs_to_string(current)!r}, which "
            f"differs from crs={crs_to_string(wanted)!r}; reproject it first "
            f"(obj.rio.reproject({crs_to_string(wanted)!r})) or leave crs= unset"
        )
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    return obj.rio.write_crs(crs)
