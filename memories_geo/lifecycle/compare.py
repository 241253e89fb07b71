"""Whether two opened versions hold the same data: the check after a copy or a conversion.

Frames are compared with geopandas' and pandas' testing functions (values, dtypes,
index, CRS, geometry exactly), xarray objects with ``identical`` (values, coordinates,
attributes; lazily, chunk by chunk). Encodings (codecs, chunking, table layout) are
what a conversion may change, so they are not compared.
"""

from __future__ import annotations

from typing import Any

__all__ = ["difference"]


def difference(source: Any, copy: Any) -> str | None:
    """What differs between ``source`` and ``copy`` (``None`` when they hold the same data).

    Examples
    --------
    >>> import pandas as pd
    >>> difference(pd.DataFrame({"a": [1]}), pd.DataFrame({"a": [1]})) is None
    True
    >>> difference(pd.DataFrame({"a": [1]}), pd.DataFrame({"a": [2]})) is not None
    True
    """
    if type(source) is not type(copy):
        return f"the copy is a {type(copy).__name__}, the source a {type(source).__name__}"
    module = type(source).__module__.split(".")[0]
    if module == "xarray":
        if source.identical(copy):
            return None
        import xarray as xr

        try:
            xr.testing.assert_identical(source, copy)
        except AssertionError as exc:
            return _first_lines(str(exc))
        return "the copy differs from the source"
    try:
        _assert_frames_equal(source, copy)
    except AssertionError as exc:
        return _first_lines(str(exc)) or "the copy differs from the source"
    return None


def _assert_frames_equal(source: Any, copy: Any) -> None:
    import pandas as pd

    if type(source).__name__ == "GeoDataFrame":
        from geopandas.testing import assert_geodataframe_equal

        assert_geodataframe_equal(source, copy, check_crs=True)
    elif type(source).__name__ == "GeoSeries":
        from geopandas.testing import assert_geoseries_equal

        assert_geoseries_equal(source, copy, check_crs=True)
    elif isinstance(source, pd.DataFrame):
        pd.testing.assert_frame_equal(source, copy)
    elif isinstance(source, pd.Series):
        pd.testing.assert_series_equal(source, copy)
    elif not bool(source.equals(copy)):
        raise AssertionError("the copy differs from the source")


def _first_lines(text: str, n: int = 6, width: int = 300) -> str:
    joined = " ".join(line.strip() for line in text.strip().splitlines()[:n] if line.strip())
    return joined if len(joined) <= width else joined[: width - 1] + "…"
