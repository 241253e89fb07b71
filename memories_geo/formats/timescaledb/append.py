"""Appending: rows already stored (``on_duplicate``), and the previous rows copied on the server.

An append makes a new version holding the previous version's rows and the new ones. The
new rows' (station, time) keys are first compared with those stored in their time range
(one query on the previous version); duplicates are refused, skipped, or replace the
stored rows in their places (the new row takes the stored row's row id). The previous
rows are then copied by the server (``INSERT ... SELECT``), without those replaced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from memories_geo.errors import DuplicateTimesError, FormatError
from memories_geo.formats.postgis.query import fetch, time_condition
from memories_geo.formats.postgis.types import column_types, stored_columns
from memories_geo.formats.timescaledb.layout import Series, entry_named, key_frame, time_bounds, utc_bounds

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

    from memories_geo.backends.postgres import PostgresBackend, VersionTable

__all__ = ["Duplicates", "copy_previous", "find_duplicates", "renumber", "same_key"]


@dataclass(frozen=True)
class Duplicates:
    """What an append does about rows whose (station, time) is already stored.

    Attributes
    ----------
    series : Series
        The rows to load (without the skipped ones).
    replaced : int
        Stored rows left out of the new version (``on_duplicate="replace"``).
    moved : list of (int, int)
        Position of a new row -> row id of the stored row it replaces: the new row
        takes that row's place.
    """

    series: Series
    replaced: int = 0
    moved: list[tuple[int, int]] = field(default_factory=list)


def find_duplicates(backend: PostgresBackend, previous: VersionTable, series: Series) -> Duplicates:
    """Compare the new rows' (station, time) keys with those stored in the new rows' time range.

    Rows with a missing station value are never duplicates.

    Raises
    ------
    DuplicateTimesError
        With ``on_duplicate="error"`` when some keys are already stored (the message
        counts them, gives their time range and names the choices).

    Examples
    --------
    >>> find_duplicates(backend, backend.lookup(previous_path), series).replaced  # doctest: +SKIP
    0
    """
    from psycopg import sql

    settings = series.settings
    frame = series.frame
    groups = list(settings.segmentby or ())
    stored_names = {e["name"] for e in previous.info["columns"]}
    time_name = previous.info.get("time")
    if not len(frame) or time_name is None or not set(groups) <= stored_names:
        return Duplicates(series)
    bounds = time_bounds(series)
    assert bounds is not None
    entries = [entry_named(previous.info, g) for g in groups] + [entry_named(previous.info, time_name)]
    row = {"name": previous.info["row_id"], "column": previous.info["row_id"], "type": "bigint"}
    condition = time_condition(previous.info, utc_bounds(bounds), entries[-1])
    statement = sql.SQL("SELECT {} FROM {} WHERE {}").format(
        sql.SQL(", ").join(sql.Identifier(c) for c, _ in column_types([*entries, row])),
        backend.identifier(previous.table), condition,
    )
    stored = fetch(backend, statement, [*entries, row], "psycopg").to_pandas()
    if not len(stored):
        return Duplicates(series)
    labels = {g: next(c for c in frame.columns if str(c) == g) for g in groups}
    new_keys = key_frame({g: frame[labels[g]] for g in groups}, series.times.to_numpy())
    old_keys = key_frame({g: stored.iloc[:, i] for i, g in enumerate(groups)}, stored.iloc[:, -2])
    known = frame[[labels[g] for g in groups]].notna().all(axis=1).to_numpy(dtype=bool)
    repeated = new_keys.isin(old_keys) & known
    if not repeated.any():
        return Duplicates(series)
    how = settings.on_duplicate
    if how == "error":
        times = series.times[repeated]
        stations = f" for {frame.loc[repeated, labels[groups[0]]].nunique()} station(s)" if groups else ""
        raise DuplicateTimesError(
            f"{int(repeated.sum())} of the {len(frame)} rows to append are already stored (times{stations} "
            f"from {times.min()} to {times.max()}); pass on_duplicate='skip' to leave them out, "
            "on_duplicate='replace' to overwrite the stored rows, or keep on_duplicate='error' (the "
            "default) and remove them yourself"
        )
    if how == "skip":
        return Duplicates(series.without(repeated))
    stored_known = stored.iloc[:, : len(groups)].notna().all(axis=1).to_numpy(dtype=bool)
    ids = dict(zip(old_keys[stored_known], stored.iloc[:, -1].to_numpy()[stored_known], strict=True))
    moved = []
    for position in np.flatnonzero(repeated):
        stored_id = ids.pop(new_keys[int(position)], None)
        if stored_id is not None:
            moved.append((int(position), int(stored_id)))
    return Duplicates(series, int((old_keys.isin(new_keys) & stored_known).sum()), moved)


def renumber(
    con: psycopg.Connection[Any], backend: PostgresBackend, table: str, row_id: str, first_row: int,
    moved: list[tuple[int, int]],
) -> None:
    """Give the new rows that replace stored ones the stored rows' row ids (their places)."""
    from psycopg import sql

    for start in range(0, len(moved), 10_000):
        pairs = sql.SQL(", ").join(
            sql.SQL("({}::bigint, {}::bigint)").format(sql.Literal(first_row + new), sql.Literal(old))
            for new, old in moved[start: start + 10_000]
        )
        con.execute(sql.SQL("UPDATE {} AS n SET {r} = m.old FROM (VALUES {}) AS m(new, old) "
                            "WHERE n.{r} = m.new").format(backend.identifier(table), pairs,
                                                          r=sql.Identifier(row_id)))


def copy_previous(
    con: psycopg.Connection[Any],
    backend: PostgresBackend,
    table: str,
    info: Mapping[str, Any],
    previous: VersionTable,
    replaced: int,
) -> None:
    """``INSERT ... SELECT`` the previous version's rows (without those replaced) into ``table``.

    Raises
    ------
    FormatError
        When another number of rows than expected was copied.
    """
    from psycopg import sql

    columns = sql.SQL(", ").join(sql.Identifier(c) for c in stored_columns(previous.info))
    source = sql.SQL("{} AS p").format(backend.identifier(previous.table))
    statement = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
        backend.identifier(table), columns, sql.SQL(", ").join(
            sql.SQL("p.{}").format(sql.Identifier(c)) for c in stored_columns(previous.info)
        ), source,
    )
    if replaced:
        statement = sql.SQL("{} WHERE NOT EXISTS (SELECT 1 FROM {} AS n WHERE {})").format(
            statement, backend.identifier(table), same_key(info, previous.info)
        )
    expected = previous.info["rows"] - replaced
    copied = con.execute(statement).rowcount
    if copied != expected:
        raise FormatError(f"appending: copied {copied} stored rows instead of {expected}")


def same_key(info: Mapping[str, Any], old: Mapping[str, Any]) -> sql.Composable:
    """``n.key = p.key`` for every station column and the time (with its nanoseconds)."""
    from psycopg import sql

    parts: list[sql.Composable] = []
    for name in [*info["segmentby"], info["time"]]:
        entry, before = entry_named(info, name), entry_named(old, name)
        column = sql.Identifier(entry["column"])
        parts.append(sql.SQL("n.{c} = p.{c}").format(c=column))
        if entry.get("ns_column"):
            rest = sql.SQL("COALESCE(p.{}, 0)").format(sql.Identifier(entry["ns_column"])) if before.get(
                "ns_column") else sql.SQL("0")
            parts.append(sql.SQL("COALESCE(n.{}, 0) = {}").format(sql.Identifier(entry["ns_column"]), rest))
    return sql.SQL(" AND ").join(parts)
