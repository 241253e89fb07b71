"""PostGIS topology of a version table (``topology=True``), built with the ``postgis_topology`` extension.

Each version table with a topology has its own, named by :func:`topology_name`: nodes,
edges and faces built from the whole layer by ``topology.ST_CreateTopoGeo``, and
dropped with the version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from memories_geo.errors import FormatError
from memories_geo.formats.postgis.layout import active_entry

if TYPE_CHECKING:
    from memories_geo.backends.postgres import PostgresBackend

__all__ = ["build_topology", "drop_topology", "topology_name"]

_EXTENSION = "postgis_topology"


def topology_name(table: str) -> str:
    """Name of the topology (a schema) of version table ``table``.

    Examples
    --------
    >>> topology_name("roads__v_0123456789ab")
    'mg_topo_74d46d7a84979b01'
    """
    return "mg_topo_" + hashlib.blake2b(table.encode(), digest_size=8).hexdigest()


def _ensure_extension(con: Any) -> None:
    """Create ``postgis_topology`` if the server has it, else a :class:`FormatError` saying so."""
    installed = con.execute("SELECT 1 FROM pg_extension WHERE extname = %s", (_EXTENSION,)).fetchone()
    if installed:
        return
    available = con.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = %s", (_EXTENSION,)
    ).fetchone()
    if not available:
        raise FormatError(
            "topology=True needs the postgis_topology extension, which this PostgreSQL server does not "
            "have (not in pg_available_extensions); install PostGIS's topology package on the server "
            "(Debian: postgresql-<version>-postgis-3) or save with topology=False"
        )
    try:
        con.execute("CREATE EXTENSION IF NOT EXISTS postgis_topology")
    except Exception as exc:
        raise FormatError(
            f"topology=True needs the postgis_topology extension; creating it failed ({exc}). "
            "Ask the database owner to run CREATE EXTENSION postgis_topology"
        ) from exc


def build_topology(
    backend: PostgresBackend, table: str, info: Mapping[str, Any], tolerance: float = 0.0
) -> str:
    """Build the topology of the active geometry column of ``table``; return its name.

    Raises
    ------
    FormatError
        When the server lacks the ``postgis_topology`` extension, or PostGIS cannot
        build the topology of these geometries.
    """
    from psycopg import sql

    entry = active_entry(info)
    name = topology_name(table)
    with backend.connection() as con:
        _ensure_extension(con)
        con.execute("SELECT topology.CreateTopology(%s, %s, %s)",
                    (name, int(entry["srid"]), float(tolerance)))
        collected = sql.SQL("SELECT ST_Collect({}) FROM {}").format(
            sql.Identifier(entry["column"]), backend.identifier(table)
        )
        try:
            con.execute(
                sql.SQL("SELECT topology.ST_CreateTopoGeo(%s, ({}))").format(collected),
                (name,),
            )
        except Exception as exc:
            raise FormatError(f"PostGIS could not build the topology of this layer: {exc}") from exc
    return name


def drop_topology(backend: PostgresBackend, table: str) -> None:
    """Drop the topology of ``table`` if it has one (nothing happens otherwise)."""
    name = topology_name(table)
    with backend.connection() as con:
        if con.execute("SELECT to_regclass('topology.topology')").fetchone() == (None,):
            return
        if con.execute("SELECT 1 FROM topology.topology WHERE name = %s", (name,)).fetchone():
            con.execute("SELECT topology.DropTopology(%s)", (name,))
