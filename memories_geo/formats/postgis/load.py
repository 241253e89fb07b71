"""Loading a version table: creation and registration, the load itself, indexes, the footprint.

A new table loaded by the ``psycopg`` engine is created, registered with the backend
and loaded with ``COPY ... (FREEZE)`` in one transaction, its checksum taken from the
stream sent. A new table of at least ``2 * PARTITION_MIN_ROWS`` rows is instead
partitioned by row id (the backend's ``load_partitions``): each partition is created
and loaded in its own transaction and indexed on another connection while the next one
loads. The ``adbc`` engine (ADBC's Arrow-native ingest) and appends (the previous
version's rows copied server-side first) load after the table is registered, and the
table is read back to checksum it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from memories_geo.backends.postgres import table_name_for
from memories_geo.footprint import Footprint, bbox_to_wgs84, vector_footprint
from memories_geo.formats.postgis import copy as pgcopy
from memories_geo.formats.postgis.geometry import typmod
from memories_geo.formats.postgis.layout import Prepared, active_entry, check_append, entry_crs, time_entry
from memories_geo.formats.postgis.srid import srid_for
from memories_geo.formats.postgis.types import column_types, stored_columns
from memories_geo.integrity import FileDigest, Manifest

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

    from memories_geo.backends.postgres import PostgresBackend, VersionTable

__all__ = ["ENGINES", "PARTITION_MIN_ROWS", "assign_srids", "load_rows", "load_version", "partition_bounds"]

#: Loading / reading paths: ``"adbc"`` (Arrow-native, C++) and ``"psycopg"`` (binary COPY).
ENGINES = ("adbc", "psycopg")

#: Fewest rows of a partition: smaller loads go into one plain table.
PARTITION_MIN_ROWS = 250_000


def assign_srids(con: Any, info: Mapping[str, Any]) -> dict[str, int]:
    """SRID of each geometry column (registering custom CRSs), set with its typmod on ``info``'s entries.

    Examples
    --------
    >>> assign_srids(con, info)  # doctest: +SKIP
    {'geometry': 4326}
    """
    srids = {e["name"]: srid_for(con, entry_crs(e)) for e in info["columns"] if e.get("geometry")}
    for e in info["columns"]:
        if e.get("geometry"):
            e["srid"] = srids[e["name"]]
            e["type"] = typmod(e["summary"], e["srid"])
    return srids


def load_version(
    backend: PostgresBackend,
    path: str,
    prepared: Prepared,
    previous: VersionTable | None,
    engine: str,
) -> tuple[dict[str, Any], Manifest, Footprint]:
    """Create, register, load, index and checksum the table of the version at ``path``.

    Parameters
    ----------
    backend : PostgresBackend
        Where the table goes.
    path : str
        Logical path of the new version.
    prepared : Prepared
        The rows to load and their layout.
    previous : VersionTable or None
        The version appended to (its rows come first), or ``None`` for a new layer.
    engine : {"psycopg", "adbc"}
        How rows are sent.

    Returns
    -------
    tuple
        The version's info, its manifest (the table as one pseudo-file) and footprint.
    """
    from psycopg import sql

    frame = prepared.frame
    info = prepared.info
    first_row = 1
    if previous is not None:
        info = {**check_append(previous.info, info), "spatial_index": info.get("spatial_index", True)}
        first_row = previous.info["rows"] + 1
    table = table_name_for(path)
    target = backend.identifier(table)
    row_id = sql.Identifier(info["row_id"])
    streamed = engine == "psycopg" and previous is None
    bounds = partition_bounds(len(frame), backend.load_partitions) if streamed else [0, len(frame)]
    partitioned = len(bounds) > 2
    sent: FileDigest | None = None
    with backend.connection() as con:
        srids = assign_srids(con, info)
        if partitioned:
            info["partitions"] = [_partition_name(table, i) for i in range(len(bounds) - 1)]
        definitions = [sql.SQL("{} bigint NOT NULL").format(row_id)] + [
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))
            for name, kind in column_types(info["columns"])
        ]
        layout = sql.SQL(" PARTITION BY RANGE ({})").format(row_id) if partitioned else sql.SQL("")
        con.execute(sql.SQL("CREATE TABLE {} ({}){}").format(target, sql.SQL(", ").join(definitions), layout))
        backend.register_table(con, path, table, info)
        if streamed and not partitioned:
            digest = pgcopy.StreamDigest()
            names, (batches,) = prepared.load_parts(srids, first_row, bounds)
            pgcopy.copy_in(con, backend, table, names, batches, len(frame), digest, freeze=True)
            if pgcopy.stream_matches_server(con, backend, table, info["row_id"], bytes(digest.head)):
                sent = digest.finish()
    if partitioned:
        manifest, footprint = _load_partitions(backend, table, info, prepared, srids, bounds)
        return info, manifest, footprint
    if previous is not None:
        with backend.connection() as con:
            copied = sql.SQL(", ").join(sql.Identifier(c) for c in stored_columns(previous.info))
            con.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ORDER BY {}").format(
                target, copied, copied, backend.identifier(previous.table), row_id
            ))
    if len(frame) and not streamed:
        _LOADERS[engine](backend, table, prepared, srids, first_row)
    if previous is None:
        # The footprint is computed here while the server builds the indexes.
        with ThreadPoolExecutor(max_workers=1) as pool:
            extent = pool.submit(vector_footprint, frame)
            manifest = _finish(backend, table, info, sent)
            footprint = extent.result()
    else:
        manifest = _finish(backend, table, info, sent)
        footprint = _server_footprint(backend, table, info, frame)
    return info, manifest, footprint


def _finish(
    backend: PostgresBackend, table: str, info: Mapping[str, Any], sent: FileDigest | None
) -> Manifest:
    """Index (GiST per geometry, primary key on the row id), checksum, then ANALYZE.

    ``sent`` is the digest of the ``COPY`` stream that loaded the table when it is
    known to equal the server's; otherwise the table is read back alongside the index
    builds to checksum it.
    """
    from psycopg import sql

    target = backend.identifier(table)
    pkey = sql.Identifier(f"{table}_pkey")

    def run(statement: sql.Composable) -> None:
        with backend.connection() as con:
            con.execute("SET LOCAL maintenance_work_mem = '256MB'")
            con.execute(statement)  # type: ignore[call-overload]

    statements: list[sql.Composable] = list(_gist_indexes(backend, table, info))
    statements.append(
        sql.SQL("CREATE UNIQUE INDEX {} ON {} ({})").format(pkey, target, sql.Identifier(info["row_id"]))
    )
    workers = max(1, min(len(statements) + (sent is None), backend.pool.max_size))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        digest = pool.submit(pgcopy.table_digest, backend, table, info) if sent is None else None
        for future in [pool.submit(run, s) for s in statements]:
            future.result()
        name, file_digest = digest.result() if digest is not None else (table, sent)
    assert file_digest is not None
    with backend.connection() as con:
        con.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY USING INDEX {}").format(
            target, pkey, pkey
        ))
        con.execute(sql.SQL("ANALYZE {}").format(target))
    return Manifest({name: file_digest})


def _load_partitions(
    backend: PostgresBackend,
    table: str,
    info: Mapping[str, Any],
    prepared: Prepared,
    srids: Mapping[str, int],
    bounds: Sequence[int],
) -> tuple[Manifest, Footprint]:
    """Load a new partitioned table: each partition is indexed while the next one loads.

    Partition ``i`` holds the rows at positions ``bounds[i]:bounds[i + 1]``; it is
    created and loaded with ``COPY ... (FREEZE)`` in one transaction. The streams are
    hashed as one, in row order, so the checksum is the whole table's. The parent's
    partitioned indexes then attach the partitions' own instead of building new ones.
    """
    from psycopg import sql

    digest = pgcopy.StreamDigest()
    echoed = False
    names, parts = prepared.load_parts(srids, 1, bounds)
    with ThreadPoolExecutor(max_workers=len(parts) + 1) as pool:
        extent = pool.submit(vector_footprint, prepared.frame)
        indexed = []
        for i, (batches, partition) in enumerate(zip(parts, info["partitions"], strict=True)):
            low, high = 1 + bounds[i], 1 + bounds[i + 1]
            statement = sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                backend.identifier(partition), backend.identifier(table), sql.Literal(low), sql.Literal(high)
            )
            with backend.connection() as con:
                con.execute(statement)
                pgcopy.copy_in(con, backend, partition, names, batches, high - low, digest, freeze=True)
                if i == 0:
                    head = bytes(digest.head)
                    echoed = pgcopy.stream_matches_server(con, backend, partition, info["row_id"], head)
            indexed.append(pool.submit(_index_partition, backend, partition, info))
        for job in indexed:
            job.result()
        footprint = extent.result()
    with backend.connection() as con:
        _create_indexes(con, backend, table, info, primary_key=f"{table}_pkey")
    if echoed:
        return Manifest({table: digest.finish()}), footprint
    name, file_digest = pgcopy.table_digest(backend, table, info)
    return Manifest({name: file_digest}), footprint


def _server_footprint(
    backend: PostgresBackend, table: str, info: Mapping[str, Any], frame: Any
) -> Footprint:
    """Footprint of an appended table, computed by the server (the new rows give CRS and columns)."""
    import pandas as pd
    from psycopg import sql

    active = active_entry(info)
    fresh = vector_footprint(frame)
    time_column = time_entry(info)
    parts: list[sql.Composable] = [sql.SQL("ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)")]
    if time_column is not None:
        column = sql.Identifier(time_column["column"])
        parts.append(sql.SQL("(SELECT min({c}) FROM {t}), (SELECT max({c}) FROM {t})").format(
            c=column, t=backend.identifier(table)))
    query = sql.SQL("SELECT {} FROM (SELECT ST_Extent({}) AS e FROM {}) AS x").format(
        sql.SQL(", ").join(parts), sql.Identifier(active["column"]), backend.identifier(table)
    )
    with backend.connection() as con:
        row: tuple[Any, ...] = tuple(con.execute(query).fetchone() or ())
    native = tuple(float(v) for v in row[:4]) if row and row[0] is not None else None
    start, end = (row[4], row[5]) if time_column is not None else (None, None)
    return Footprint(
        bbox=bbox_to_wgs84(native, entry_crs(active)) if native else None,
        native_bbox=native,  # type: ignore[arg-type]
        crs=fresh.crs,
        time_start=pd.Timestamp(start) if start is not None else None,
        time_end=pd.Timestamp(end) if end is not None else None,
        variables=fresh.variables,
        shape={"rows": int(info["rows"])},
    )


def partition_bounds(rows: int, most: int) -> list[int]:
    """Row positions splitting a load into at most ``most`` partitions of at least :data:`PARTITION_MIN_ROWS`.

    Examples
    --------
    >>> partition_bounds(1_000_000, 2)
    [0, 500000, 1000000]
    >>> partition_bounds(300_000, 2)
    [0, 300000]
    """
    count = max(1, min(most, rows // PARTITION_MIN_ROWS))
    return [rows * i // count for i in range(count + 1)]


def _partition_name(table: str, i: int) -> str:
    """Name of partition ``i`` of ``table`` (at most 59 bytes: its index names stay under 63)."""
    return f"{table}_p{i}"


def _index_partition(backend: PostgresBackend, partition: str, info: Mapping[str, Any]) -> None:
    """GiST index per geometry column, primary key on the row id, then ``ANALYZE``, of one partition."""
    from psycopg import sql

    with backend.connection() as con:
        con.execute("SET LOCAL maintenance_work_mem = '256MB'")
        _create_indexes(con, backend, partition, info, primary_key=f"{partition}_pk")
        con.execute(sql.SQL("ANALYZE {}").format(backend.identifier(partition)))


def _gist_indexes(backend: PostgresBackend, table: str, info: Mapping[str, Any]) -> list[sql.Composed]:
    """``CREATE INDEX`` statements of the GiST index of each geometry column of ``table``.

    None when the version was saved with ``spatial_index=False`` (``info["spatial_index"]``).
    """
    from psycopg import sql

    if info.get("spatial_index", True) is False:
        return []
    return [
        sql.SQL("CREATE INDEX {} ON {} USING gist ({})").format(
            sql.Identifier(f"{table}_g{i}"), backend.identifier(table), sql.Identifier(e["column"])
        )
        for i, e in enumerate(info["columns"]) if e.get("geometry")
    ]


def _create_indexes(
    con: psycopg.Connection[Any], backend: PostgresBackend, table: str, info: Mapping[str, Any],
    *, primary_key: str,
) -> None:
    """The GiST indexes, then the primary key on the row id, one after the other on ``con``."""
    from psycopg import sql

    for statement in _gist_indexes(backend, table, info):
        con.execute(statement)
    con.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
        backend.identifier(table), sql.Identifier(primary_key), sql.Identifier(info["row_id"])
    ))


def _load_adbc(
    backend: PostgresBackend, table: str, prepared: Prepared, srids: Mapping[str, int], first_row: int
) -> None:
    import adbc_driver_postgresql.dbapi as adbc

    data = prepared.load_table(srids, first_row)
    with adbc.connect(backend.conninfo) as con:
        with con.cursor() as cur:
            cur.adbc_ingest(table, data, mode="append", db_schema_name=backend.schema)
        con.commit()


def _load_psycopg(
    backend: PostgresBackend, table: str, prepared: Prepared, srids: Mapping[str, int], first_row: int
) -> None:
    names, batches = prepared.load_batches(srids, first_row)
    with backend.connection() as con:
        pgcopy.copy_in(con, backend, table, names, batches, len(prepared.frame), pgcopy.StreamDigest(),
                       freeze=False)


_LOADERS = {"adbc": _load_adbc, "psycopg": _load_psycopg}


def load_rows(
    backend: PostgresBackend, table: str, prepared: Prepared, srids: Mapping[str, int], first_row: int,
    engine: str,
) -> None:
    """Load the rows of ``prepared`` (row ids from ``first_row``) into the existing ``table``.

    ``engine="adbc"`` ingests Arrow through ADBC, ``"psycopg"`` sends a binary ``COPY``;
    either on a connection of its own, committed when done.
    """
    _LOADERS[engine](backend, table, prepared, srids, first_row)
