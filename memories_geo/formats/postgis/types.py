"""Arrow <-> PostgreSQL types: column types, load casts, nanosecond companions, restoring on read.

PostgreSQL timestamps hold microseconds. A nanosecond timestamp column with
sub-microsecond times is stored as microseconds (floored) plus a ``smallint``
companion column holding the rest (0-999 ns), joined back on reading.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from memories_geo.errors import UnsupportedObjectError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "TIME_TYPES",
    "arrow_type",
    "b64decode",
    "b64encode",
    "column_types",
    "deserialize_array",
    "has_sub_microseconds",
    "join_nanoseconds",
    "object_columns_back",
    "pg_type",
    "restore",
    "serialize_array",
    "split_nanoseconds",
    "stored_columns",
    "to_load_type",
]

#: PostgreSQL types of stored datetime columns.
TIME_TYPES = ("timestamp", "timestamptz")


def pg_type(field: pa.Field, column: str) -> tuple[str, Any]:
    """PostgreSQL type of an Arrow field, and the Arrow type the loader sends.

    Raises
    ------
    UnsupportedObjectError
        For an Arrow type PostgreSQL has no column type for here (durations, lists...).
    """
    import pyarrow as pa

    t = field.type
    if pa.types.is_dictionary(t):
        return pg_type(pa.field(field.name, t.value_type), column)
    simple: list[tuple[Any, str, Any]] = [
        (pa.types.is_boolean, "boolean", pa.bool_()),
        (lambda x: x in (pa.int8(), pa.int16(), pa.uint8()), "smallint", pa.int16()),
        (lambda x: x in (pa.int32(), pa.uint16()), "integer", pa.int32()),
        (lambda x: x in (pa.int64(), pa.uint32(), pa.uint64()), "bigint", pa.int64()),
        (lambda x: x in (pa.float16(), pa.float32()), "real", pa.float32()),
        (lambda x: x == pa.float64(), "double precision", pa.float64()),
        (lambda x: pa.types.is_string(x) or pa.types.is_large_string(x) or pa.types.is_null(x),
         "text", pa.string()),
        (lambda x: pa.types.is_binary(x) or pa.types.is_large_binary(x), "bytea", pa.binary()),
        (pa.types.is_date32, "date", pa.date32()),
    ]
    for test, pg, arrow in simple:
        if test(t):
            return pg, arrow
    if pa.types.is_timestamp(t):
        if t.tz is None:
            return "timestamp", pa.timestamp("us")
        return "timestamptz", pa.timestamp("us", tz="UTC")
    raise UnsupportedObjectError(
        f"column {column!r} has Arrow type {t}, which format 'postgis' does not store; "
        "convert it (e.g. to str or a number) first"
    )


def arrow_type(pg: str) -> Any:
    """Arrow type a column of PostgreSQL type ``pg`` is read as."""
    import pyarrow as pa

    return {
        "smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64(), "real": pa.float32(),
        "double precision": pa.float64(), "boolean": pa.bool_(), "text": pa.string(),
        "bytea": pa.binary(), "date": pa.date32(), "timestamp": pa.timestamp("us"),
        "timestamptz": pa.timestamp("us", tz="UTC"),
    }[pg]


def to_load_type(column: pa.ChunkedArray, target: Any, name: str) -> pa.ChunkedArray:
    """``column`` cast to the Arrow type ``target`` the loader sends, refusing lossy casts."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_null(column.type):
        return pa.chunked_array([pa.nulls(len(column), target)], type=target)
    if column.type == pa.uint64() and len(column) and (pc.max(column).as_py() or 0) > 2**63 - 1:
        raise UnsupportedObjectError(f"column {name!r} holds uint64 values above 2**63-1, beyond bigint")
    try:
        return column.cast(target, safe=True)
    except pa.ArrowInvalid as exc:
        raise UnsupportedObjectError(f"column {name!r} cannot be stored as {target}: {exc}") from None


def has_sub_microseconds(column: pa.ChunkedArray) -> bool:
    """Whether a timestamp column holds times PostgreSQL's microsecond timestamps cannot."""
    import pyarrow as pa

    kind = column.type
    if pa.types.is_dictionary(kind) or not pa.types.is_timestamp(kind) or kind.unit != "ns":
        return False
    values = column.cast(pa.int64()).fill_null(0).to_numpy()
    return bool(len(values)) and bool(np.any(values % 1000))


def split_nanoseconds(column: pa.Array, target: Any) -> tuple[pa.Array, pa.Array]:
    """A nanosecond timestamp column as microseconds (floored, type ``target``) plus the rest (0-999).

    :func:`join_nanoseconds` puts them back together exactly.
    """
    import pyarrow as pa

    valid = np.asarray(column.is_valid())
    nanoseconds = column.cast(pa.int64()).fill_null(0).to_numpy()
    micro = np.floor_divide(nanoseconds, 1000)
    rest = (nanoseconds - micro * 1000).astype(np.int16)
    micro_array = pa.array(micro, type=pa.int64(), mask=~valid).cast(target)
    return micro_array, pa.array(rest, type=pa.int16(), mask=~valid)


def join_nanoseconds(raw: pa.Table, entries: list[dict[str, Any]]) -> pa.Table:
    """One column per entry: timestamps read with a nanosecond companion column are joined to it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not any(e.get("ns_column") for e in entries):
        return raw
    arrays, names, i = [], [], 0
    for entry in entries:
        column, name = raw.column(i), raw.column_names[i]
        i += 1
        if entry.get("ns_column"):
            rest = raw.column(i).cast(pa.int64()).fill_null(0)
            micro = column.cast(pa.timestamp("us", tz=column.type.tz)).cast(pa.int64())
            column = pc.add(pc.multiply(micro, 1000), rest).cast(pa.timestamp("ns", tz=column.type.tz))
            i += 1
        arrays.append(column)
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def column_types(entries: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Stored columns of column ``entries`` (nanosecond companions after their timestamps) and types."""
    result = []
    for entry in entries:
        result.append((entry["column"], entry["type"]))
        if entry.get("ns_column"):
            result.append((entry["ns_column"], "smallint"))
    return result


def stored_columns(info: Mapping[str, Any]) -> list[str]:
    """Every column of a version table, in order: the row id, then those of :func:`column_types`."""
    names = [info["row_id"]]
    for entry in info["columns"]:
        names += [entry["column"], entry["ns_column"]] if entry.get("ns_column") else [entry["column"]]
    return names


def b64encode(data: bytes) -> str:
    """``data`` as base64 text (for JSON)."""
    return base64.b64encode(data).decode()


def b64decode(text: str) -> bytes:
    """The bytes of :func:`b64encode` text."""
    return base64.b64decode(text.encode())


def serialize_array(array: pa.Array) -> str:
    """An Arrow array as base64 text of an Arrow IPC stream."""
    import pyarrow as pa

    batch = pa.RecordBatch.from_arrays([array], ["values"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return b64encode(sink.getvalue().to_pybytes())


def deserialize_array(text: str) -> pa.Array:
    """The array of :func:`serialize_array` text."""
    import pyarrow as pa

    return pa.ipc.open_stream(pa.py_buffer(b64decode(text))).read_all().column(0).combine_chunks()


def restore(column: pa.ChunkedArray, field: pa.Field, info: Mapping[str, Any]) -> pa.ChunkedArray:
    """A column as read from PostgreSQL, cast back to the Arrow type it was saved with."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column.type, pa.ExtensionType):
        column = pa.chunked_array([c.storage for c in column.chunks], type=column.type.storage_type)
    target = field.type
    if pa.types.is_null(target):
        return pa.chunked_array([pa.nulls(len(column))], type=pa.null())
    if pa.types.is_dictionary(target):
        dictionary = deserialize_array(info["dictionaries"][field.name])
        values = column.combine_chunks().cast(dictionary.type)
        indices = pc.index_in(values, value_set=dictionary).cast(target.index_type)
        array = pa.DictionaryArray.from_arrays(indices, dictionary, ordered=target.ordered)
        return pa.chunked_array([array], type=target)
    if column.type == target:
        return column
    return column.cast(target)


def object_columns_back(frame: pd.DataFrame, table: pa.Table) -> pd.DataFrame:
    """Give back their ``object`` dtype (``None`` kept) to columns saved as objects.

    pyarrow reads strings as pandas' string dtype even where the pandas metadata says
    the column was an ``object`` column; such columns are rebuilt from their values.

    Examples
    --------
    >>> import pandas as pd, pyarrow as pa
    >>> saved = pa.Table.from_pandas(pd.DataFrame({"note": pd.Series(["a", None], dtype=object)}))
    >>> object_columns_back(saved.to_pandas(), saved)["note"].tolist()
    ['a', None]
    """
    import pandas as pd

    for column in (table.schema.pandas_metadata or {}).get("columns", []):
        name, field = column.get("name"), column.get("field_name")
        wanted = column.get("numpy_type") == "object" and name in frame.columns
        if not wanted or field not in table.column_names or frame[name].dtype == object:
            continue
        frame[name] = pd.Series(table.column(field).to_pylist(), index=frame.index, dtype=object)
    return frame

