"""Writing a version: a segment table (hypertable or partitioned) and the view over its segments.

A version is a view (named :func:`table_name_for` its path, registered with the backend)
over one or more immutable segment tables, ``SELECT ... UNION ALL SELECT ...`` in load
order. Each load writes one segment: created, partitioned (:func:`create_hypertable` or
native partitions), viewed, registered and loaded in one transaction (engine
``psycopg``: one binary ``COPY``). An append writes only its new rows into its segment
and its view reads the previous version's segments too; rows whose (station, time) is
already stored are refused or skipped (``on_duplicate``, :mod:`.append`). An append
that replaces stored rows, changes column types, keeps continuous aggregates, or
would read more than :data:`MAX_SEGMENTS` segments instead copies the previous rows
server-side (``INSERT ... SELECT``) into its one new segment. Indexes (natively: a
BRIN on the time; on a hypertable: time, station + time; GiST per geometry; side by
side when the pool allows), continuous aggregates and
compression follow, on the new segment only; everything else runs on one connection at
a time (a server that takes one connection at a time is fine).

The registry's info lists the version's segment tables (``tables``): removing a
version drops its view, then each of those tables no other version's view uses.

The new rows' checksum (:mod:`.checksums`) is the digest of the stream sent, once the
server has written the first rows back byte for byte (they are loaded through a small
probe table).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from memories_geo.backends.postgres import table_name_for
from memories_geo.formats.postgis import copy as pgcopy
from memories_geo.formats.postgis.layout import check_append, schema_of
from memories_geo.formats.postgis.load import assign_srids, load_rows
from memories_geo.formats.postgis.types import b64encode, column_types, stored_columns
from memories_geo.formats.timescaledb import append, checksums, hypertable, partitions
from memories_geo.formats.timescaledb.footprint import native_bbox, series_footprint
from memories_geo.formats.timescaledb.layout import Series, entry_named, time_bounds, time_field, utc_bounds

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

    from memories_geo.backends.postgres import PostgresBackend, VersionTable
    from memories_geo.footprint import Footprint
    from memories_geo.formats.postgis.layout import Prepared
    from memories_geo.integrity import FileDigest, Manifest

__all__ = [
    "ANALYZE_TARGET", "MAX_SEGMENTS", "PARALLEL_INDEX_ROWS", "PROBE_ROWS", "segment_name_for",
    "write_version",
]

#: Fewest rows of a segment whose indexes are built side by side (smaller ones: on one connection).
PARALLEL_INDEX_ROWS = 50_000
#: Most segment tables a version reads (an append past it copies every row into one new segment).
MAX_SEGMENTS = 32

#: Statistics target of the ``ANALYZE`` of a new segment (it samples 300 rows per unit).
ANALYZE_TARGET = 10

#: Rows loaded through the probe table whose server copy is compared with the stream.
PROBE_ROWS = 1000


def segment_name_for(path: str) -> str:
    """A new name for a segment table written by the version at ``path`` (its view is :func:`table_name_for`).

    The key's prefix, ``__s_`` and 12 random hex digits: a version re-written at the
    same path (a restored backup) never meets a segment of its former self that
    another version still reads. The names are recorded in the version's info.

    Examples
    --------
    >>> segment_name_for("obs/@v/20240101T000000000Z-0a1b2c3d")[:7]
    'obs__s_'
    """
    view = table_name_for(path)
    return f"{view[:-16]}__s_{secrets.token_hex(6)}"


def write_version(
    backend: PostgresBackend,
    path: str,
    series: Series,
    previous: VersionTable | None,
    partitioning: str,
) -> tuple[dict[str, Any], Manifest, Footprint]:
    """Write the segment of the version at ``path``, and its view; register, index, compress, checksum.

    The version is the view :func:`table_name_for` over its segment tables. An append
    that can (see :func:`_shares`) writes only the new rows into a new segment, the
    view reading the previous version's segments too; otherwise the one new segment
    holds every row (the previous ones copied on the server).

    Returns
    -------
    tuple
        The version's info, its manifest (one pseudo-file per row-id range) and footprint.

    Examples
    --------
    >>> info, manifest, footprint = write_version(backend, path, series, None, "native")  # doctest: +SKIP
    """
    from psycopg import sql

    found = append.Duplicates(series)
    prepared = series.prepared()
    if previous is not None:
        check_append(previous.info, prepared.info)
        found = append.find_duplicates(backend, previous, series)
        if found.series is not series:
            series = found.series
            prepared = series.prepared()
    replaced = found.replaced
    info = _describe(backend, path, series, prepared, previous, partitioning, replaced)
    first_row = info["next_row"] - prepared.info["rows"]
    view, segment = table_name_for(path), segment_name_for(path)
    sent: FileDigest | None = None
    engine = series.settings.engine
    rows = prepared.info["rows"]
    with backend.connection() as con:
        srids = assign_srids(con, info)
        shared = _shares(previous, info, replaced, partitioning)
        bounds = _partition_bounds(info, time_bounds(series) if shared else info.get("time_range"))
        names = [partitions.partition_name(segment, i) for i in range(max(len(bounds) - 1, 0))]
        if shared and previous is not None:
            info["partitions"] = [*previous.info.get("partitions", []), *names] if rows else list(
                previous.info.get("partitions", []))
            info["tables"] = [*previous.info["tables"], segment] if rows else list(previous.info["tables"])
        else:
            info["partitions"], info["tables"] = names, [segment]
        if partitioning != "native":
            info.pop("partitions")
        if segment in info["tables"]:
            _create_segment(con, backend, segment, info, bounds, partitioning)
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in stored_columns(info))
        union = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {} FROM {}").format(columns, backend.identifier(t)) for t in info["tables"]
        )
        con.execute(sql.SQL("CREATE VIEW {} AS {}").format(backend.identifier(view), union))
        backend.register_table(con, path, view, info)
        if engine == "psycopg" and segment in info["tables"]:
            sent = _copy_new(con, backend, segment, prepared, srids, first_row)
            if previous is not None and not shared:
                append.renumber(con, backend, segment, info["row_id"], first_row, found.moved)
                append.copy_previous(con, backend, segment, info, previous, replaced)
    if engine == "adbc" and segment in info["tables"]:
        if rows:
            load_rows(backend, segment, prepared, srids, first_row, "adbc")
        if previous is not None and not shared:
            with backend.connection() as con:
                append.renumber(con, backend, segment, info["row_id"], first_row, found.moved)
                append.copy_previous(con, backend, segment, info, previous, replaced)
    if found.moved:
        sent = None  # the stream no longer holds the rows in row-id order
    if segment in info["tables"]:
        _finish(backend, segment, info, partitioning, rows if shared else int(info["rows"]))
    info["segments"] = checksums.segments_for(
        backend, segment, info, previous, first_row, sent, shared=shared, replaced=replaced
    )
    backend.update_info(path, info)
    return info, checksums.segments_manifest(view, info["segments"]), series_footprint(info)


def _shares(previous: VersionTable | None, info: Mapping[str, Any], replaced: int, partitioning: str) -> bool:
    """Whether an append writes only its new rows, reading the previous version's segments as they are.

    Not when rows are replaced, the stored column types change, continuous aggregates
    are kept (they read one table), the partitioning differs, or the previous version
    has :data:`MAX_SEGMENTS` segments already (the append then copies every row into
    one new segment).
    """
    if previous is None or replaced or info.get("continuous_aggregates"):
        return False
    before = previous.info
    tables = before.get("tables") or []
    return (
        0 < len(tables) < MAX_SEGMENTS
        and before.get("partitioning") == partitioning
        and before.get("row_id") == info["row_id"]
        and column_types(before["columns"]) == column_types(info["columns"])
    )


def _create_segment(
    con: psycopg.Connection[Any], backend: PostgresBackend, segment: str, info: Mapping[str, Any],
    bounds: list[Any], partitioning: str,
) -> None:
    """``CREATE TABLE`` of a segment: partitioned by time natively (``bounds``), or a hypertable."""
    from psycopg import sql

    from memories_geo.formats.timescaledb.options import Settings

    time_entry = entry_named(info, info["time"])
    definitions = [sql.SQL("{} bigint NOT NULL").format(sql.Identifier(info["row_id"]))] + [
        sql.SQL("{} {}{}").format(
            sql.Identifier(name), sql.SQL(kind),
            sql.SQL(" NOT NULL" if name == time_entry["column"] else ""),
        )
        for name, kind in column_types(info["columns"])
    ]
    layout: sql.Composable = sql.SQL("")
    if partitioning == "native":
        layout = sql.SQL(" PARTITION BY RANGE ({})").format(sql.Identifier(time_entry["column"]))
    target = backend.identifier(segment)
    con.execute(sql.SQL("CREATE TABLE {} ({}){}").format(target, sql.SQL(", ").join(definitions), layout))
    if partitioning == "native":
        aware = time_entry["type"] == "timestamptz"
        partitions.create_partitions(con, backend, segment, bounds, aware=aware)
    else:
        interval = Settings.from_recorded(info["settings"]).chunk_time_interval
        hypertable.create_hypertable(con, backend, segment, time_entry["column"], interval)


def _describe(
    backend: PostgresBackend,
    path: str,
    series: Series,
    prepared: Prepared,
    previous: VersionTable | None,
    partitioning: str,
    replaced: int,
) -> dict[str, Any]:
    """The info of the new version: layout, settings, time axis, row count, continuous aggregates."""
    import pandas as pd

    info = dict(prepared.info)
    new_rows = info["rows"]
    first_row = 1
    if previous is not None:
        info = check_append(previous.info, info)
        first_row = int(previous.info.get("next_row", previous.info["rows"] + 1))
        if replaced:
            info = _with_rows(info, info["rows"] - replaced)
    settings = series.settings
    field = time_field(series, info)
    time_type = schema_of(info).field(field).type
    bounds = time_bounds(series)
    if previous is not None and previous.info.get("time_range"):
        old = previous.info["time_range"]
        bounds = old if bounds is None else (
            min(old[0], bounds[0], key=pd.Timestamp), max(old[1], bounds[1], key=pd.Timestamp)
        )
    label_of = {series.time_label: field}
    freq = series.frame.index.freqstr if series.on_index and previous is None else None
    info.update(
        time=field,
        time_label=series.time_label,
        time_zone=getattr(time_type, "tz", None),
        segmentby=[label_of.get(c, c) for c in settings.segmentby or ()],
        orderby=[[label_of.get(c, c), d] for c, d in settings.orderby or ()],
        settings=settings.recorded(),
        partitioning=partitioning,
        time_range=list(bounds) if bounds else None,
        next_row=first_row + new_rows,
        freq=freq,
        native_bbox=native_bbox(series, previous.info if previous is not None else None),
    )
    info.pop("partitions", None)
    info["continuous_aggregates"] = hypertable.plan_continuous_aggregates(
        table_name_for(path), info, settings.continuous_aggregates
    )
    return info


def _with_rows(info: Mapping[str, Any], rows: int) -> dict[str, Any]:
    """``info`` with ``rows`` rows (a RangeIndex recorded in the schema is resized)."""
    schema = schema_of(info)
    meta = json.loads((schema.metadata or {}).get(b"pandas", b"{}"))
    ranges = [i for i in meta.get("index_columns", []) if isinstance(i, dict)]
    out = {**info, "rows": rows}
    if ranges:
        (rng,) = ranges
        meta["index_columns"] = [{**rng, "stop": rng["start"] + rng["step"] * rows}]
        schema = schema.with_metadata({**(schema.metadata or {}), b"pandas": json.dumps(meta).encode()})
        out["schema"] = b64encode(schema.serialize().to_pybytes())
    return out


def _partition_bounds(info: Mapping[str, Any], bounds: Sequence[str] | None) -> list[Any]:
    """Boundaries of the native partitions covering ``bounds`` (none without rows)."""
    from memories_geo.formats.timescaledb.options import Settings

    if not bounds:
        return []
    start, end = utc_bounds(bounds)
    width = Settings.from_recorded(info["settings"]).chunk_time_interval
    return partitions.partition_bounds(start, end, width)


def _copy_new(
    con: psycopg.Connection[Any],
    backend: PostgresBackend,
    table: str,
    prepared: Prepared,
    srids: Mapping[str, int],
    first_row: int,
) -> FileDigest | None:
    """``COPY`` the new rows into ``table``; the digest of their stream when the server echoes it.

    The first :data:`PROBE_ROWS` rows go through a probe table first, whose server copy
    must equal the start of the stream for the stream's digest to be the rows' own. At
    most :data:`PROBE_ROWS` rows are copied straight into ``table`` (``None``: reading
    them back costs less than the probe).
    """
    from psycopg import sql

    rows = prepared.info["rows"]
    head = min(rows, PROBE_ROWS)
    digest = pgcopy.StreamDigest()
    if rows <= PROBE_ROWS:
        names, (every,) = prepared.load_parts(srids, first_row, [0, rows])
        pgcopy.copy_in(con, backend, table, names, every, rows, digest, freeze=False)
        return None
    names, (first, rest) = prepared.load_parts(srids, first_row, [0, head, rows])
    probe = backend.identifier(f"{table}_probe")
    con.execute(sql.SQL("CREATE TABLE {} (LIKE {})").format(probe, backend.identifier(table)))
    pgcopy.copy_in(con, backend, f"{table}_probe", names, first, head, digest, freeze=True)
    echoed = pgcopy.stream_matches_server(con, backend, f"{table}_probe", names[0], bytes(digest.head))
    con.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(backend.identifier(table), probe))
    con.execute(sql.SQL("DROP TABLE {}").format(probe))
    pgcopy.copy_in(con, backend, table, names, rest, rows - head, digest, freeze=False)
    return digest.finish() if echoed else None


def _finish(
    backend: PostgresBackend, table: str, info: Mapping[str, Any], partitioning: str, rows: int
) -> None:
    """Indexes, continuous aggregates, compression, ANALYZE (statistics target :data:`ANALYZE_TARGET`).

    Natively partitioned segments get a BRIN index on the time (rows load in time
    order, so it is near free and narrows a range inside a partition; a station's month
    is a scan of the pruned partitions); hypertables a btree on the time and one on the
    station column(s) + time. Each geometry gets a GiST index.

    With a pool of several connections, the indexes of a segment of at least
    :data:`PARALLEL_INDEX_ROWS` rows are built side by side.
    """
    from psycopg import sql

    from memories_geo.formats.timescaledb.options import Settings

    target = backend.identifier(table)
    time_column = sql.Identifier(entry_named(info, info["time"])["column"])
    groups = [sql.Identifier(entry_named(info, g)["column"]) for g in info["segmentby"]]
    if partitioning == "native":  # rows arrive in time order: a BRIN costs next to nothing
        statements = [sql.SQL("CREATE INDEX {} ON {} USING brin ({})").format(
            sql.Identifier(f"{table}_t"), target, time_column)]
    else:
        statements = [sql.SQL("CREATE INDEX {} ON {} ({} DESC)").format(
            sql.Identifier(f"{table}_t"), target, time_column)]
        if groups:
            statements.append(sql.SQL("CREATE INDEX {} ON {} ({}, {} DESC)").format(
                sql.Identifier(f"{table}_s"), target, sql.SQL(", ").join(groups), time_column))
    statements += [
        sql.SQL("CREATE INDEX {} ON {} USING gist ({})").format(
            sql.Identifier(f"{table}_g{i}"), target, sql.Identifier(e["column"]))
        for i, e in enumerate(info["columns"]) if e.get("geometry")
    ]

    def build(batch: Sequence[sql.Composed]) -> None:
        with backend.connection() as con:
            con.execute("SET LOCAL maintenance_work_mem = '256MB'")
            for statement in batch:
                con.execute(statement)

    workers = min(len(statements), backend.pool.max_size) if rows >= PARALLEL_INDEX_ROWS else 1
    if workers > 1:  # each index on its own connection, built side by side
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for job in [pool.submit(build, [s]) for s in statements]:
                job.result()
    else:
        build(statements)
    hypertable.create_continuous_aggregates(backend, table, info, partitioning)
    settings = Settings.from_recorded(info["settings"])
    if partitioning == "timescaledb" and settings.compression_enabled:
        orderby = [(entry_named(info, c)["column"], bool(d)) for c, d in info["orderby"]]
        segmentby = [entry_named(info, g)["column"] for g in info["segmentby"]]
        with backend.connection() as con:
            hypertable.compress(con, backend, table, segmentby, orderby)
    with backend.connection() as con:
        con.execute(f"SET LOCAL default_statistics_target = {ANALYZE_TARGET}")
        con.execute(sql.SQL("ANALYZE {}").format(target))
