"""Where rows go: partition of each row, and the (partition, time, station) order inside files.

Everything is computed on the Arrow table, without converting columns to Python objects:
partition values and stations are dictionary-encoded and ranked, the time is the
column's own integers, and one composite integer key sorts all three when it fits in 63
bits (a check in one pass when the rows are already in order).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np

from memories_geo.query import iso_utc

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "NAT",
    "NULL_PARTITION",
    "contiguous_partitions",
    "encoded",
    "iso_time",
    "partition_codes",
    "partition_dir",
    "ranked",
    "row_order",
    "rows_in_order",
    "station_in_order",
    "time_ints",
]

#: Directory name of a missing partition value (Hive's).
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
#: Time integer standing for a missing time.
NAT = int(np.iinfo(np.int64).min)
#: Largest partition-by-code lookup table built (beyond it, ``numpy.unique``).
_LOOKUP_LIMIT = 1 << 24
#: Times sampled to find their common step.
_SAMPLE = 65_536


def time_ints(column: Any) -> np.ndarray:
    """Integers of a timestamp column in its own unit (UTC instants for aware ones); missing -> :data:`NAT`.

    Examples
    --------
    >>> import pyarrow as pa
    >>> time_ints(pa.array([1, None], pa.timestamp("s"))).tolist()
    [1, -9223372036854775808]
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    ints = column.cast(pa.int64())
    if ints.null_count:
        ints = pc.fill_null(ints, NAT)
    return np.asarray(ints.to_numpy(zero_copy_only=False), dtype=np.int64)


def iso_time(value: int, unit: str) -> str | None:
    """A time integer of ``unit`` as naive UTC ISO text (``None`` for :data:`NAT`).

    Examples
    --------
    >>> iso_time(86_400, "s")
    '1970-01-02T00:00:00.000000'
    """
    import pandas as pd

    if value == NAT:
        return None
    return iso_utc(pd.Timestamp(int(value), unit=unit))


def encoded(values: Any) -> tuple[np.ndarray, list[Any]]:
    """Codes of ``values`` (distinct values in order of appearance, missing last) and the distinct values.

    Examples
    --------
    >>> import pyarrow as pa
    >>> codes, found = encoded(pa.array(["b", None, "a", "b"]))
    >>> codes.tolist(), found
    ([0, 2, 1, 0], ['b', 'a'])
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        if pa.types.is_dictionary(values.type):
            values = values.unify_dictionaries()
        values = values.combine_chunks()
    encoded = values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)
    size = len(encoded.dictionary)
    indices = encoded.indices
    if indices.null_count:
        indices = pc.fill_null(indices, size)
    return np.asarray(indices.to_numpy(zero_copy_only=False)), encoded.dictionary.to_pylist()


def ranked(values: Any) -> tuple[np.ndarray, list[Any]]:
    """Codes of ``values`` that sort like the values (missing last), and the sorted distinct values.

    Examples
    --------
    >>> import pyarrow as pa
    >>> codes, found = ranked(pa.array(["b", None, "a", "b"]))
    >>> codes.tolist(), found
    ([1, 2, 0, 1], ['a', 'b'])
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        if pa.types.is_dictionary(values.type):
            values = values.unify_dictionaries()
        values = values.combine_chunks()
    encoded = values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)
    dictionary = encoded.dictionary
    order = np.asarray(pc.sort_indices(dictionary).to_numpy(), dtype=np.int64)
    rank = np.empty(len(dictionary) + 1, dtype=np.int64)
    rank[order] = np.arange(len(dictionary))
    rank[-1] = len(dictionary)
    indices = encoded.indices
    if indices.null_count:
        indices = pc.fill_null(indices, len(dictionary))
    codes = rank[np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.int64)]
    return codes, dictionary.take(pa.array(order)).to_pylist()


_PERIODS = {"year": "YS", "month": "MS", "day": "D"}


def _derived(column: Any, times: np.ndarray, name: str) -> tuple[np.ndarray, list[Any]]:
    """Codes (sorted by value, missing last) and values of a derived ``year``/``month``/``day`` partition.

    The period starts between the first and last time (in the column's time zone) are
    looked up with a binary search: no calendar arithmetic per row.
    """
    import pandas as pd
    import pyarrow.compute as pc

    kind = column.type
    missing = bool(times.size) and int(times.min()) == NAT
    present = times[times != NAT] if missing else times
    if not present.size:
        return np.zeros(times.size, dtype=np.int64), []
    tz = kind.tz
    first = pd.Timestamp(int(present.min()), unit=kind.unit, tz="UTC" if tz else None)
    last = pd.Timestamp(int(present.max()), unit=kind.unit, tz="UTC" if tz else None)
    if tz:
        first, last = first.tz_convert(tz), last.tz_convert(tz)
    try:
        start = first.normalize() if name == "day" else first.replace(
            month=1 if name == "year" else first.month, day=1, hour=0, minute=0, second=0, microsecond=0,
            nanosecond=0)
        starts = pd.date_range(start, last, freq=_PERIODS[name])
        bounds = np.asarray(starts.as_unit(kind.unit).asi8, dtype=np.int64)
    except (ValueError, OverflowError):
        return ranked(getattr(pc, name)(column))
    values = [getattr(ts, name) for ts in starts]
    distinct = sorted(set(values))
    period = np.searchsorted(bounds, times, side="right")
    period -= 1
    if missing:
        period[times == NAT] = len(values)
    if values == distinct:
        return period, distinct
    lookup = np.array([distinct.index(v) for v in values] + [len(distinct)], dtype=np.int64)
    return lookup[period], distinct


def partition_codes(table: pa.Table, info: Mapping[str, Any],
                    times: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Partition of each row and each partition's values.

    Derived partitions (``year``, ``month``, ``day``) are read from the time column
    (``times``: its integers) in its own time zone.

    Returns
    -------
    codes : numpy.ndarray
        One integer per row, from 0.
    values : list of dict
        Column -> JSON value (``None`` for missing) of each code.

    Examples
    --------
    >>> codes, partitions = partition_codes(table, info, time_ints(table.column("time")))  # doctest: +SKIP
    >>> partitions  # doctest: +SKIP
    [{'year': 2023}, {'year': 2024}]
    """
    names = list(info["partition_cols"])
    n = table.num_rows
    if not names:
        return np.zeros(n, dtype=np.int64), [{}]
    combined: np.ndarray | None = None
    found = []
    for name in names:
        if name in info["derived"]:
            codes, distinct = _derived(table.column(info["time"]["field"]), times, name)
        else:
            codes, distinct = encoded(table.column(name))
        if combined is None:
            combined = codes.astype(np.int64)
        else:
            combined *= len(distinct) + 1
            combined += codes
        found.append([*distinct, None])
    assert combined is not None
    size = int(np.prod([len(f) for f in found]))
    if size <= _LOOKUP_LIMIT:
        present = np.flatnonzero(np.bincount(combined, minlength=size))
        lookup = np.full(size, -1, dtype=np.int64)
        lookup[present] = np.arange(len(present))
        dense = lookup[combined]
    else:
        present, dense = np.unique(combined, return_inverse=True)
    partitions = []
    for key in present:
        value, parts = int(key), []
        for distinct in reversed(found):
            value, code = divmod(value, len(distinct))
            parts.append(distinct[code])
        parts.reverse()
        partitions.append(dict(zip(names, parts, strict=True)))
    return dense.astype(np.int64), partitions


def _bits(count: int) -> int:
    return max(int(count).bit_length(), 1)


def _time_step(present: np.ndarray, low: int) -> int:
    """Largest step dividing every time's distance to ``low`` (1 at worst): fewer key bits."""
    sample = present[:_SAMPLE] - low
    step = int(np.gcd.reduce(sample)) if sample.size else 0
    if step > 1 and not bool(((present - low) % step == 0).all()):
        step = int(np.gcd.reduce(present - low))
    return step or 1


def _composite(parts: np.ndarray, times: np.ndarray, station: np.ndarray | None) -> np.ndarray | None:
    """One integer per row ordering like (partition, time, station), or ``None`` if it needs over 63 bits.

    Times are counted from the first one, in steps of their common divisor only when
    they would not fit otherwise (a division per row costs more than the rest).
    """
    missing = times == NAT
    any_missing = bool(missing.any())
    present = times[~missing] if any_missing else times
    low = int(present.min()) if present.size else 0
    high = int(present.max()) if present.size else 0
    station_bits = _bits(int(station.max()) + 1) if station is not None and station.size else 0
    part_bits = _bits(int(parts.max()) + 1 if parts.size else 1)
    step = 1
    if part_bits + _bits(high - low + 2) + station_bits > 63:
        step = _time_step(present, low)
    time_bits = _bits((high - low) // step + 2)
    if part_bits + time_bits + station_bits > 63:
        return None
    shifted = times - (low - 1) if step == 1 else (times - low) // step + 1
    if any_missing:
        shifted[missing] = 0
    key = shifted << station_bits if station_bits else shifted
    if parts.size and parts.max() > 0:
        key |= parts << (time_bits + station_bits)
    return key | station if station is not None else key


def station_in_order(column: Any) -> Callable[[], np.ndarray]:
    """Station order test for :func:`row_order`: ``out[i]`` tells whether row ``i + 1`` may follow row ``i``.

    Strings and integers without missing values are compared directly; other columns
    through their ranks (:func:`ranked`).

    Examples
    --------
    >>> import pyarrow as pa
    >>> station_in_order(pa.array(["a", "b", "a"]))().tolist()
    [True, False]
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    def compare() -> np.ndarray:
        values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        n = len(values)
        if n < 2:
            return np.ones(0, dtype=bool)
        kind = values.type
        direct = pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
        if direct and not values.null_count:
            out = pc.less_equal(values.slice(0, n - 1), values.slice(1))
            return np.asarray(out.to_numpy(zero_copy_only=False), dtype=bool)
        codes = ranked(values)[0]
        return codes[1:] >= codes[:-1]

    return compare


def contiguous_partitions(
    column: Any, times: np.ndarray, names: list[str]
) -> tuple[list[tuple[int, int]], list[dict[str, Any]]] | None:
    """Row ranges and values of derived time partitions of rows already sorted by time.

    When the partition columns are a leading run of ``year``, ``month``, ``day`` and no
    time is missing, each partition is one run of rows: its bounds are found by a binary
    search of the period starts, with no code per row. ``None`` when that does not apply.

    Examples
    --------
    >>> import pyarrow as pa
    >>> times = np.array([0, 86_400 * 40], dtype=np.int64)
    >>> contiguous_partitions(pa.array(times, pa.timestamp("s")), times, ["year", "month"])
    ([(0, 1), (1, 2)], [{'year': 1970, 'month': 1}, {'year': 1970, 'month': 2}])
    """
    import pandas as pd

    chain = ("year", "month", "day")
    if not names or tuple(names) != chain[:len(names)] or not times.size or int(times[0]) == NAT:
        return None
    kind = column.type
    tz = kind.tz
    first = pd.Timestamp(int(times[0]), unit=kind.unit, tz="UTC" if tz else None)
    last = pd.Timestamp(int(times[-1]), unit=kind.unit, tz="UTC" if tz else None)
    if tz:
        first, last = first.tz_convert(tz), last.tz_convert(tz)
    finest = names[-1]
    try:
        start = first.normalize() if finest == "day" else first.replace(
            month=1 if finest == "year" else first.month, day=1, hour=0, minute=0, second=0,
            microsecond=0, nanosecond=0)
        starts = pd.date_range(start, last, freq=_PERIODS[finest])
        bounds = np.asarray(starts.as_unit(kind.unit).asi8, dtype=np.int64)
    except (ValueError, OverflowError):
        return None
    edges = [*np.searchsorted(times, bounds, side="left").tolist(), int(times.size)]
    ranges, partitions = [], []
    for i, stamp in enumerate(starts):
        low, high = int(edges[i]), int(edges[i + 1])
        if high > low:
            ranges.append((low, high))
            partitions.append({name: int(getattr(stamp, name)) for name in names})
    return ranges, partitions


def rows_in_order(times: np.ndarray, station: Callable[[], np.ndarray] | None) -> bool:
    """Whether rows are in (time, station) order (missing times first)."""
    return _time_station_sorted(times, station)


def _time_station_sorted(times: np.ndarray, station: Callable[[], np.ndarray] | None) -> bool:
    """Whether rows are in (time, station) order (missing times first)."""
    if times.size < 2:
        return True
    later, same = times[1:] > times[:-1], times[1:] == times[:-1]
    if not bool((later | same).all()):
        return False
    if station is None or not bool(same.any()):
        return True
    return bool(station()[same].all())


def row_order(parts: np.ndarray, times: np.ndarray, station: Callable[[], np.ndarray] | None,
              ranks: Callable[[], np.ndarray] | None = None) -> np.ndarray | None:
    """Row order sorting by (partition, time, station), or ``None`` when the rows already are.

    Missing times sort first. ``station`` tests the station order of consecutive rows
    (:func:`station_in_order`) and ``ranks`` gives station ranks; both are asked for only
    when needed. Rows already in (time, station) order, the usual case, need a stable
    sort of their small partition codes at most (a radix sort for up to 65536
    partitions); other rows are sorted on one composite key (or ``numpy.lexsort``).

    Examples
    --------
    >>> import numpy as np
    >>> row_order(np.zeros(3, dtype=np.int64), np.array([2, 1, 3]), None).tolist()
    [1, 0, 2]
    """
    if _time_station_sorted(times, station):
        if parts.size < 2 or bool((parts[1:] >= parts[:-1]).all()):
            return None
        small = parts.astype(np.uint16) if parts.max() < 2**16 else parts
        return np.argsort(small, kind="stable")
    codes = ranks() if ranks is not None else None
    key = _composite(parts, times, codes)
    if key is None:
        keys = (times, parts) if codes is None else (codes, times, parts)
        return np.lexsort(keys)
    return np.argsort(key, kind="stable")


def partition_dir(partition: Mapping[str, Any]) -> str:
    """``col=value/...`` of a partition (values URI-encoded, missing ones Hive's default name).

    Examples
    --------
    >>> partition_dir({"year": 2024, "variable": "t2m/max"})
    'year=2024/variable=t2m%2Fmax'
    """
    parts = []
    for name, value in partition.items():
        if value is None:
            text = NULL_PARTITION
        else:
            text = quote(str(value).lower() if isinstance(value, bool) else str(value), safe="")
        parts.append(f"{quote(name, safe='')}={text}")
    return "/".join(parts)
