"""Time filters on Arrow timestamp columns, shared by the Parquet readers (GeoParquet, time series)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["time_filter"]


def time_filter(field: pa.Field, time: tuple[Any, Any]) -> Any:
    """Expression keeping the rows of timestamp ``field`` inside the inclusive naive-UTC ``time``.

    A time-zone-aware column compares instants; a naive one compares its own values.
    Bounds are rounded inwards to the column's unit, so the comparison is exact and
    pyarrow prunes row groups on the column statistics.

    Examples
    --------
    >>> import pandas as pd, pyarrow as pa
    >>> time_filter(pa.field("t", pa.timestamp("s")), (pd.Timestamp("2024-01-01"), None))
    <pyarrow.compute.Expression (is_valid(t) and (t >= 2024-01-01 00:00:00))>
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as ds

    unit, tz = field.type.unit, field.type.tz
    start, end = (None if v is None else pd.Timestamp(v) for v in time)
    if unit == "ns":
        low, high = pd.Timestamp.min, pd.Timestamp.max
        if (start is not None and start > high) or (end is not None and end < low):
            return ds.scalar(False)
        start = None if start is not None and start < low else start
        end = None if end is not None and end > high else end

    def scalar(value: pd.Timestamp) -> Any:
        return pa.scalar(value.tz_localize("UTC") if tz is not None else value, type=field.type)

    column = ds.field(field.name)
    expression = column.is_valid()
    if start is not None:
        expression = expression & (column >= scalar(start.ceil(unit)))
    if end is not None:
        expression = expression & (column <= scalar(end.floor(unit)))
    return expression
