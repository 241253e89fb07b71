"""PostgreSQL's binary ``COPY`` format: encoding rows, sending them, and checksumming a table.

A version's checksum is the xxh3-128 of the server's own ``COPY (SELECT * ... ORDER BY
row id) TO STDOUT (FORMAT binary)`` of its table. The stream a save sends is built
(with numpy and Arrow) to be byte for byte that output, so it is hashed as it is sent;
:func:`stream_matches_server` checks the first rows before that digest is trusted, and
:func:`table_digest` reads a table back when it is not.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from memories_geo.errors import FormatError, UnsupportedObjectError
from memories_geo.integrity import FileDigest

if TYPE_CHECKING:
    import psycopg
    import pyarrow as pa

    from memories_geo.backends.postgres import PostgresBackend

__all__ = [
    "COPY_HEADER",
    "COPY_TRAILER",
    "StreamDigest",
    "body",
    "copy_chunks",
    "copy_in",
    "copy_rows",
    "stream_matches_server",
    "table_digest",
]

#: Start and end of a PostgreSQL binary ``COPY`` stream (signature, flags, no extension).
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
COPY_TRAILER = b"\xff\xff"
_PG_EPOCH_DAYS = 10_957  # 2000-01-01, PostgreSQL's epoch, in days since 1970-01-01
_PG_EPOCH_US = _PG_EPOCH_DAYS * 86_400 * 1_000_000
#: Valid ranges (since 1970-01-01) of PostgreSQL dates (days) and timestamps (microseconds).
_DATE_RANGE = (-2_451_545 + _PG_EPOCH_DAYS, 2_145_031_949 + _PG_EPOCH_DAYS)
_TIMESTAMP_RANGE = (-211_813_488_000_000_000 + _PG_EPOCH_US, 2**63 - 1)
#: Big-endian layouts of the fixed-width types, by Arrow type of the loaded column.
_FIXED_WIDTH = {
    "bool": ">u1", "int16": ">i2", "int32": ">i4", "int64": ">i8", "float": ">f4", "double": ">f8",
    "date32[day]": ">i4", "timestamp[us]": ">i8", "timestamp[us, tz=UTC]": ">i8",
}
#: Most bytes of one chunk of rows (Arrow binary arrays have 32-bit offsets).
MAX_CHUNK_BYTES = 1 << 30
#: Stream bytes kept to compare with the server's own ``COPY TO`` of the first rows.
_SPOT_CHECK_BYTES = 1 << 20


def _regular_binary(records: np.ndarray) -> pa.Array:
    """Arrow binary array whose elements are the fixed-size records of ``records``."""
    import pyarrow as pa

    n, width = len(records), records.dtype.itemsize
    offsets = np.arange(0, width * (n + 1), width, dtype=np.int32)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(records)])


def _fixed_values(array: pa.Array, name: str) -> np.ndarray:
    """Values of a fixed-width column as PostgreSQL counts them (nulls as 0)."""
    import pyarrow as pa

    kind = str(array.type)
    if kind == "bool":
        return np.asarray(array.fill_null(False).to_numpy(zero_copy_only=False), dtype=np.uint8)
    if kind == "date32[day]" or kind.startswith("timestamp"):
        days = kind == "date32[day]"
        values = array.cast(pa.int32() if days else pa.int64()).fill_null(0).to_numpy().astype(np.int64)
        low, high = _DATE_RANGE if days else _TIMESTAMP_RANGE
        if len(values) and (values.min() < low or values.max() > high):
            raise UnsupportedObjectError(
                f"column {name!r} holds {'dates' if days else 'times'} outside PostgreSQL's range "
                "(4713 BC to 294276 AD for timestamps, 5874897 AD for dates)"
            )
        return values - (_PG_EPOCH_DAYS if days else _PG_EPOCH_US)
    return array.fill_null(0).to_numpy(zero_copy_only=False)


def copy_rows(batch: pa.RecordBatch) -> pa.Array:
    """The rows of ``batch`` as PostgreSQL's binary ``COPY`` writes them, one binary element per row.

    A row is its field count (int16) and, per field, its length (int32, -1 for NULL) and
    its bytes: big-endian fixed-width values (dates and timestamps counted from
    2000-01-01), text as UTF-8, bytea and geometries (EWKB) as they are. Runs of
    fixed-width fields are laid out as one numpy structured record per row;
    variable-width fields are Arrow binary arrays; Arrow joins the pieces row by row.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n = batch.num_rows
    pieces: list[pa.Array] = []
    run: list[tuple[np.dtype, Any]] = [(np.dtype(">i2"), batch.num_columns)]

    def flush() -> None:
        if run:
            records = np.empty(n, dtype=[(f"f{i}", d) for i, (d, _) in enumerate(run)])
            for i, (_, value) in enumerate(run):
                records[f"f{i}"] = value
            pieces.append(_regular_binary(records))
            run.clear()

    for name, array in zip(batch.schema.names, batch.columns, strict=True):
        layout = _FIXED_WIDTH.get(str(array.type))
        if layout is not None:
            dtype = np.dtype(layout)
            values = _fixed_values(array, name)
            if not array.null_count:
                run += [(np.dtype(">i4"), dtype.itemsize), (dtype, values)]
                continue
            valid = np.asarray(array.is_valid())
            run.append((np.dtype(">i4"), np.where(valid, dtype.itemsize, -1)))
            flush()
            offsets = np.zeros(n + 1, dtype=np.int32)
            np.cumsum(valid * dtype.itemsize, out=offsets[1:])
            data = values[valid].astype(dtype)
            buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
            pieces.append(pa.Array.from_buffers(pa.binary(), n, buffers))
            continue
        if pa.types.is_string(array.type):
            array = array.cast(pa.binary())
        elif not pa.types.is_binary(array.type):
            raise FormatError(f"column {name!r}: no binary COPY layout for Arrow type {array.type}")
        run.append((np.dtype(">i4"), pc.binary_length(array).fill_null(-1).to_numpy(zero_copy_only=False)))
        flush()
        pieces.append(array.fill_null(b"") if array.null_count else array)
    flush()
    if len(pieces) == 1:
        return pieces[0]
    return pc.binary_join_element_wise(*pieces, b"")


def copy_chunks(batch: pa.RecordBatch, max_bytes: int = MAX_CHUNK_BYTES) -> list[pa.Array]:
    """:func:`copy_rows` of ``batch``, in halves (recursively) while a half holds ``max_bytes`` or more.

    Arrow binary arrays have 32-bit offsets, so one array holds less than 2 GiB of rows.
    """
    size = sum(c.nbytes for c in batch.columns) + (2 + 4 * batch.num_columns) * batch.num_rows
    if batch.num_rows > 1 and size >= max_bytes:
        half = batch.num_rows // 2
        return copy_chunks(batch.slice(0, half), max_bytes) + copy_chunks(batch.slice(half), max_bytes)
    return [copy_rows(batch)]


def body(rows: pa.Array) -> memoryview:
    """The bytes of a binary array made by :func:`copy_rows`, all rows back to back."""
    if not len(rows):
        return memoryview(b"")
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32, count=len(rows) + 1, offset=rows.offset * 4)
    return memoryview(rows.buffers()[2])[int(offsets[0]): int(offsets[-1])]


class StreamDigest:
    """Size, xxh3-128 and first bytes of a table's binary ``COPY`` form, fed in row order.

    One table may be loaded by several ``COPY`` commands (one per partition); each sends
    its own header and trailer, but the digest covers the single stream the server
    writes for the whole table: one header, every row in order, one trailer.
    """

    def __init__(self) -> None:
        import xxhash

        self._hash = xxhash.xxh3_128()
        self.size = 0
        self.head = bytearray()
        self.update(COPY_HEADER)

    def update(self, block: bytes | memoryview) -> None:
        """Add the bytes of some rows."""
        self._hash.update(block)
        self.size += len(block)
        if len(self.head) < _SPOT_CHECK_BYTES:
            self.head.extend(block[: _SPOT_CHECK_BYTES - len(self.head)])

    def finish(self) -> FileDigest:
        """The digest of the whole stream (call once, after the last rows)."""
        self.update(COPY_TRAILER)
        return FileDigest(self.size, self._hash.hexdigest())


def _send(copy: psycopg.Copy, batches: Iterator[pa.RecordBatch], digest: StreamDigest) -> None:
    """Write one binary ``COPY`` stream of ``batches``, adding its rows to ``digest``.

    The stream of the next chunk is built in a worker thread while the current one is sent.
    """

    def build() -> list[pa.Array] | None:
        batch = next(batches, None)
        return None if batch is None else copy_chunks(batch)

    copy.write(COPY_HEADER)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(build)
        while (chunks := pending.result()) is not None:
            pending = pool.submit(build)
            for rows in chunks:
                block = body(rows)
                digest.update(block)
                copy.write(block)
    copy.write(COPY_TRAILER)


def copy_in(
    con: psycopg.Connection[Any],
    backend: PostgresBackend,
    table: str,
    names: list[str],
    batches: Iterator[pa.RecordBatch],
    rows: int,
    digest: StreamDigest,
    *,
    freeze: bool,
) -> None:
    """Load ``batches`` with one binary ``COPY`` on ``con`` (inside its transaction).

    Raises
    ------
    FormatError
        When the server refuses a value (the message names the column and line) or
        loads another number of rows than sent.
    """
    import psycopg
    from psycopg import sql

    options = sql.SQL("FORMAT binary, FREEZE" if freeze else "FORMAT binary")
    statement = sql.SQL("COPY {} ({}) FROM STDIN ({})").format(
        backend.identifier(table), sql.SQL(", ").join(sql.Identifier(n) for n in names), options
    )
    con.execute("SET LOCAL client_encoding TO 'UTF8'")
    cur = con.cursor()
    try:
        with cur.copy(statement) as copy:
            _send(copy, iter(batches), digest)
    except psycopg.DataError as exc:
        where = f" ({exc.diag.context.strip()})" if exc.diag.context else ""
        raise FormatError(
            f"PostgreSQL refused a value loading {table}: {exc.diag.message_primary}{where}"
        ) from exc
    if cur.rowcount != rows:
        raise FormatError(f"COPY into {table} loaded {cur.rowcount} rows instead of {rows}")


def stream_matches_server(
    con: psycopg.Connection[Any], backend: PostgresBackend, table: str, row_id: str, head: bytes
) -> bool:
    """Whether the server writes back exactly the bytes that were sent, on a first sample.

    The digest of a version is defined over the server's own binary ``COPY TO`` output
    (what :func:`table_digest` recomputes). The stream sent is that output when each
    value's binary form round-trips unchanged, which holds for every type stored here
    (tests/test_postgis.py checks the whole round-trip matrix) provided the server
    converts no text (UTF8 or SQL_ASCII database) and writes little-endian EWKB. This
    checks those conditions, and compares the rows of the table's first two heap pages
    (a TID range scan, PostgreSQL 14+) with the start of the stream.
    """
    from psycopg import sql

    if con.info.parameter_status("server_encoding") not in ("UTF8", "SQL_ASCII"):
        return False
    if con.info.server_version < 140000:
        return False
    (has_geometry,) = con.execute("SELECT to_regtype('geometry') IS NOT NULL").fetchone() or (False,)
    if has_geometry:
        (probe,) = con.execute("SELECT geometry_send('SRID=4326;POINT(1 2)'::geometry)").fetchone() or (b"",)
        if bytes(probe)[:1] != b"\x01":
            return False
    statement = sql.SQL(
        "COPY (SELECT * FROM {} WHERE ctid < '(2,0)'::tid ORDER BY {}) TO STDOUT (FORMAT binary)"
    ).format(backend.identifier(table), sql.Identifier(row_id))
    sample = bytearray()
    with con.cursor().copy(statement) as copy:
        for block in copy:
            sample.extend(block)
    if not sample.startswith(COPY_HEADER) or not sample.endswith(COPY_TRAILER):
        return False
    rows = bytes(sample[len(COPY_HEADER): -len(COPY_TRAILER)])
    sent = head[len(COPY_HEADER):]
    if not rows:
        return not sent
    k = min(len(rows), len(sent))
    return rows[:k] == sent[:k]


def table_digest(
    backend: PostgresBackend, table: str, info: Mapping[str, Any], rows: tuple[int, int] | None = None
) -> tuple[str, FileDigest]:
    """xxh3-128 of the binary ``COPY`` of every row ordered by row id (text in UTF-8), and its length.

    ``rows=(first, last)``: only the rows whose row id lies in that inclusive range.
    """
    import xxhash
    from psycopg import sql

    h = xxhash.xxh3_128()
    size = 0
    where: sql.Composable = sql.SQL("")
    if rows is not None:
        where = sql.SQL(" WHERE {} BETWEEN {} AND {}").format(
            sql.Identifier(info["row_id"]), sql.Literal(int(rows[0])), sql.Literal(int(rows[1]))
        )
    statement = sql.SQL("COPY (SELECT * FROM {}{} ORDER BY {}) TO STDOUT (FORMAT binary)").format(
        backend.identifier(table), where, sql.Identifier(info["row_id"])
    )
    with backend.connection() as con:
        con.execute("SET LOCAL client_encoding TO 'UTF8'")  # text as sent, whatever PGCLIENTENCODING says
        with con.cursor().copy(statement) as copy:
            for block in copy:
                h.update(block)
                size += len(block)
    return table, FileDigest(size, h.hexdigest())
