"""The rules: from one key's access figures and stored layout to the recommendations they support.

Each rule returns a :class:`Recommendation` only when the records and the layout
support it (enough opens, a large enough estimated gain); its ``evidence`` holds the
figures it used and its ``parameters`` what applying it would do.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from memories_geo.display import human_size
from memories_geo.monitor.optimizer.analysis import axis_share
from memories_geo.monitor.optimizer.layout import cog_overviews, parquet_layout, zarr_arrays
from memories_geo.monitor.optimizer.model import KINDS, Improvement, Recommendation

if TYPE_CHECKING:
    from memories_geo.entry import Entry
    from memories_geo.monitor.optimizer.analysis import Query
    from memories_geo.monitor.optimizer.layout import ZarrArray
    from memories_geo.monitor.optimizer.model import AccessAnalysis, KeyAccess

__all__ = [
    "HOT_OPENS", "MIN_GAIN", "MIN_OPENS", "MOVABLE_TIERS", "ZARR_MIN_CHUNK_BYTES", "recommend",
    "zarr_amplification", "zarr_chunks_for",
]

#: Opens of a key in the period before its layout is judged.
MIN_OPENS = 3
#: Opens in the period that make a key on a slow tier worth moving up.
HOT_OPENS = 5
#: Smallest estimated gain (factor) worth a layout change.
MIN_GAIN = 2.0
#: Tiers whose keys move up or down one step, fastest first.
MOVABLE_TIERS = ("hot", "warm", "cold")
#: Smallest uncompressed chunk a re-chunk aims at (tiny chunks cost a request each).
ZARR_MIN_CHUNK_BYTES = 256 << 10
#: Largest uncompressed chunk a re-chunk chooses.
ZARR_MAX_CHUNK_BYTES = 16 << 20
#: Image side below which overviews are not worth building.
COG_MIN_SIDE = 256
#: Rows below which a GeoParquet layer is one row group whatever its order.
PARQUET_MIN_ROWS = 8192
#: Rows per row group of a Parquet time series (the format's default).
PARQUET_ROW_GROUP = 131_072

_X = frozenset({"x", "lon", "longitude"})
_Y = frozenset({"y", "lat", "latitude"})
_T = frozenset({"time", "t", "date", "datetime"})


def _id(kind: str, key: str) -> str:
    return f"{kind}:{key}"


def _queries(access: KeyAccess) -> list[tuple[Query, int]]:
    return [((q.bbox, q.time, q.columns, tuple(q.options.items())), q.count) for q in access.queries]


def _weighted_median(values: Sequence[tuple[float, int]]) -> float:
    expanded = [v for v, n in values for _ in range(n)]
    return statistics.median(expanded)


def _requested(array: ZarrArray, query: Query, entry: Entry) -> tuple[int, ...]:
    share = axis_share(query, entry)
    out = []
    for dim, n in zip(array.dims, array.shape, strict=True):
        if dim in _X:
            out.append(max(1, math.ceil(share.x * n)))
        elif dim in _Y:
            out.append(max(1, math.ceil(share.y * n)))
        elif dim in _T:
            out.append(1 if share.single_time else max(1, min(n, round(share.time * (n - 1)) + 1)))
        else:
            out.append(n)
    return tuple(out)


def zarr_amplification(requested: Sequence[int], shape: Sequence[int], chunks: Sequence[int]) -> float:
    """Elements decoded per element asked for, reading a window of ``requested`` sizes.

    Examples
    --------
    >>> zarr_amplification((1, 10, 10), (365, 200, 200), (365, 200, 200))
    146000.0
    """
    decoded = asked = 1
    for want, n, chunk in zip(requested, shape, chunks, strict=True):
        touched = min(math.ceil(n / chunk), math.ceil((want - 1) / chunk) + 1)
        decoded *= min(n, touched * chunk)
        asked *= want
    return decoded / asked


def zarr_chunks_for(requested: Sequence[int], array: ZarrArray) -> tuple[int, ...]:
    """Chunks that fit the typical window ``requested``, grown to :data:`ZARR_MIN_CHUNK_BYTES`.

    Each dim gets the window size (a power of two, at least 32, for x/y), capped at the
    array size; then the x/y chunks are doubled until a chunk holds
    :data:`ZARR_MIN_CHUNK_BYTES` (or the plane), and the largest dim halved while it
    holds more than :data:`ZARR_MAX_CHUNK_BYTES`.

    Examples
    --------
    >>> from memories_geo.monitor.optimizer.layout import ZarrArray
    >>> cube = ZarrArray("t2m", ("time", "y", "x"), (365, 2000, 2000), (365, 2000, 2000), None, 4)
    >>> zarr_chunks_for((1, 10, 10), cube)
    (1, 256, 256)
    """
    chunks = []
    for dim, n, want in zip(array.dims, array.shape, requested, strict=True):
        size = max(32, 1 << max(0, (want - 1).bit_length())) if dim in _X | _Y else want
        chunks.append(min(n, size))
    plane = [i for i, d in enumerate(array.dims) if d in _X | _Y]

    def nbytes() -> int:
        return array.itemsize * math.prod(chunks)

    while nbytes() < ZARR_MIN_CHUNK_BYTES:
        free = [i for i in plane if chunks[i] < array.shape[i]]
        if not free:
            break
        for i in free:
            chunks[i] = min(array.shape[i], chunks[i] * 2)
    while nbytes() > ZARR_MAX_CHUNK_BYTES:
        i = max(range(len(chunks)), key=lambda j: chunks[j])
        chunks[i] = max(1, chunks[i] // 2)
    return tuple(chunks)


def _rechunk(store: Any, entry: Entry, access: KeyAccess) -> Recommendation | None:
    if entry.format != "zarr" or access.opens < MIN_OPENS:
        return None
    arrays = [a for a in zarr_arrays(store, entry).values() if len(a.shape) >= 2]
    if not arrays:
        return None
    array = max(arrays, key=lambda a: math.prod(a.shape))
    queries = _queries(access)
    windows = [(_requested(array, q, entry), n) for q, n in queries]
    before = _weighted_median([(zarr_amplification(w, array.shape, array.chunks), n) for w, n in windows])
    typical = tuple(
        max(1, round(_weighted_median([(w[i], n) for w, n in windows]))) for i in range(len(array.shape))
    )
    new = zarr_chunks_for(typical, array)
    after = _weighted_median([(zarr_amplification(w, array.shape, new), n) for w, n in windows])
    gain = before / after
    if new == array.chunks or gain < MIN_GAIN:
        return None
    same = sorted(a.name for a in arrays if a.dims == array.dims and a.shape == array.shape)
    return Recommendation(
        id=_id("chunk-size-adjustment", entry.key), kind="chunk-size-adjustment", key=entry.key,
        description=(
            f"{entry.key} is read in windows of about {dict(zip(array.dims, typical, strict=True))} "
            f"elements but stored in chunks of {dict(zip(array.dims, array.chunks, strict=True))}: "
            f"each open decodes {before:,.0f}x what it asks for. Re-chunk to {new}."
        ),
        expected_improvement=Improvement(
            f"about {gain:,.0f}x less data decoded per open ({before:,.0f}x -> {after:,.1f}x the window)",
            factor=gain, basis="estimated",
        ),
        complexity="medium", parameters={"new_chunk_size": new, "variables": same},
        evidence={"dims": array.dims, "shape": array.shape, "stored_chunks": array.chunks,
                  "shards": array.shards, "typical_window": typical, "opens": access.opens,
                  "read_amplification": round(before, 1), "read_amplification_after": round(after, 2)},
    )


def _overviews(entry: Entry, access: KeyAccess) -> Recommendation | None:
    if entry.format != "cog" or access.opens + access.errors < MIN_OPENS or cog_overviews(entry):
        return None
    x_dim, y_dim = entry.object_info.get("x_dim"), entry.object_info.get("y_dim")
    width, height = int(entry.shape.get(str(x_dim), 0)), int(entry.shape.get(str(y_dim), 0))
    if max(width, height) < COG_MIN_SIDE:
        return None
    zoomed = sum(q.count for q in access.queries if "overview_level" in q.options)
    whole = sum(q.count for q in access.queries
                if "overview_level" not in q.options and axis_share(_queries_of(q), entry).area >= 0.5)
    if zoomed + whole < MIN_OPENS:
        return None
    blocksize = max(16, min(512, 1 << max(4, int(math.log2(max(width, height) / 4)))))
    blocksize -= blocksize % 16
    from memories_geo.formats.cog.plan import overview_factors

    factors = overview_factors(width, height, blocksize)
    return Recommendation(
        id=_id("cog-overviews", entry.key), kind="cog-overviews", key=entry.key,
        description=(
            f"{entry.key} ({width}x{height} pixels) has no overviews, and {whole} opens read its whole "
            f"extent at full resolution ({zoomed} asked for an overview level). Re-write it with "
            f"{blocksize}-pixel tiles, which gives overviews at factors {factors}."
        ),
        expected_improvement=Improvement(
            "a whole-extent read at half resolution decodes 4x fewer pixels; the smallest overview "
            f"{factors[-1] ** 2}x fewer", factor=4.0, basis="estimated",
        ),
        complexity="low", parameters={"blocksize": blocksize, "read_overview_level": 0},
        evidence={"width": width, "height": height, "overviews": [], "whole_extent_opens": whole,
                  "overview_level_opens": zoomed, "blocksize": entry.object_info.get("blocksize")},
    )


def _queries_of(q: Any) -> Query:
    return (q.bbox, q.time, q.columns, tuple(q.options.items()))


def _hilbert(store: Any, entry: Entry, access: KeyAccess) -> Recommendation | None:
    if entry.format != "geoparquet" or access.opens < MIN_OPENS or access.bbox_fraction is None:
        return None
    if access.bbox_fraction > 0.25:
        return None
    layout = parquet_layout(store, entry)
    if layout is None or layout.sort == "hilbert" or layout.partition_cols or layout.rows < PARQUET_MIN_ROWS:
        return None
    row_group = max(1024, min(32_768, layout.rows // 16))
    groups = math.ceil(layout.rows / row_group)
    share = max(access.bbox_fraction, 1 / groups)
    gain = groups / (share * groups + 1)
    if gain < MIN_GAIN:
        return None
    return Recommendation(
        id=_id("hilbert-sort", entry.key), kind="hilbert-sort", key=entry.key,
        description=(
            f"{entry.key} is filtered by bbox (a median {access.bbox_fraction:.1%} of its extent) but its "
            f"{layout.rows:,} rows are not in spatial order, so every row group overlaps every box. "
            f"Sort it along a Hilbert curve in row groups of {row_group:,} rows."
        ),
        expected_improvement=Improvement(
            f"about {gain:.1f}x fewer row groups read per bbox query", factor=gain, basis="estimated",
        ),
        complexity="medium", parameters={"sort": "hilbert", "row_group_size": row_group},
        evidence={"rows": layout.rows, "row_groups": layout.row_groups, "sort": layout.sort,
                  "median_bbox_fraction": round(access.bbox_fraction, 4), "opens": access.opens},
    )


def _time_partition(store: Any, entry: Entry, access: KeyAccess) -> Recommendation | None:
    if entry.format != "parquet" or access.opens < MIN_OPENS or access.time_fraction is None:
        return None
    info = entry.object_info
    if info.get("time") is None or access.time_fraction > 1 / 24:
        return None
    layout = parquet_layout(store, entry)
    if layout is None or layout.rows < PARQUET_ROW_GROUP:
        return None
    have = list(layout.partition_cols)
    finer = next((p for p in ("year", "month", "day") if p not in have), None)
    if finer is None or (finer == "day" and access.time_fraction > 1 / 365):
        return None
    new = [*have, finer]
    gain = {"year": 2.0, "month": 12.0, "day": 30.0}[finer]
    return Recommendation(
        id=_id("time-partition", entry.key), kind="time-partition", key=entry.key,
        description=(
            f"{entry.key} is filtered by time (a median {access.time_fraction:.2%} of its span) but "
            f"partitioned by {have or 'nothing'}: partition it by {new} so a query opens only its "
            f"{finer}'s files."
        ),
        expected_improvement=Improvement(
            f"up to {gain:.0f}x fewer rows scanned per time query", factor=gain, basis="estimated",
        ),
        complexity="medium", parameters={"partition_cols": new},
        evidence={"rows": layout.rows, "partition_cols": have, "opens": access.opens,
                  "median_time_fraction": round(access.time_fraction, 5)},
    )


def _table_compression(entry: Entry, access: KeyAccess) -> Recommendation | None:
    if entry.format != "timescaledb":
        return None
    settings = entry.object_info.get("settings") or {}
    if settings.get("compression_enabled", True) or (access.opens and entry.tier != "cold"):
        return None
    return Recommendation(
        id=_id("table-compression", entry.key), kind="table-compression", key=entry.key,
        description=(
            f"{entry.key} is a TimescaleDB table without compression on tier {entry.tier!r}, opened "
            f"{access.opens} times in the period: compress its chunks."
        ),
        expected_improvement=Improvement(
            f"less storage for {human_size(entry.size_bytes)} of rows (columnar compression of time "
            "series is commonly several times smaller)", bytes=entry.size_bytes, basis="estimated",
        ),
        complexity="low", parameters={"compression_enabled": True},
        evidence={"size_bytes": entry.size_bytes, "opens": access.opens, "tier": entry.tier},
    )


def _tier_median(analysis: AccessAnalysis, tier: str) -> float | None:
    values = [a.median_open_seconds for a in analysis.keys.values()
              if a.tier == tier and a.median_open_seconds is not None]
    return statistics.median(values) if values else None


def _tier_moves(entry: Entry, access: KeyAccess, analysis: AccessAnalysis,
                tiers: Sequence[str]) -> Recommendation | None:
    order = [t for t in MOVABLE_TIERS if t in tiers]
    if entry.tier not in order:
        return None
    at = order.index(entry.tier)
    if access.opens == 0 and at + 1 < len(order):
        created = datetime.fromisoformat(entry.created_at) if entry.created_at else None
        if created is not None and created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        if created is None or created >= analysis.since:
            return None
        down = order[at + 1]
        return Recommendation(
            id=_id("tier-down", entry.key), kind="tier-down", key=entry.key,
            description=(f"{entry.key} ({human_size(entry.size_bytes)}) was not opened in the last "
                         f"{analysis.period}: move it from {entry.tier!r} to {down!r}."),
            expected_improvement=Improvement(
                f"{human_size(entry.size_bytes)} freed on tier {entry.tier!r}", bytes=entry.size_bytes,
            ),
            complexity="low", parameters={"tier": down},
            evidence={"opens": 0, "period": str(analysis.period), "created_at": entry.created_at,
                      "last_accessed_at": entry.last_accessed_at, "size_bytes": entry.size_bytes},
        )
    if access.opens >= HOT_OPENS and at > 0 and entry.tier == "cold":
        up = order[at - 1]
        here, there = _tier_median(analysis, entry.tier), _tier_median(analysis, up)
        factor = here / there if here and there else None
        text = (f"opens {factor:.1f}x faster (median open latency {here:.3g} s on {entry.tier!r}, "
                f"{there:.3g} s on {up!r})" if factor and here and there
                else f"opens served by tier {up!r} instead of {entry.tier!r}")
        return Recommendation(
            id=_id("tier-up", entry.key), kind="tier-up", key=entry.key,
            description=(f"{entry.key} was opened {access.opens} times in the last {analysis.period} on "
                         f"tier {entry.tier!r}: move it up to {up!r}."),
            expected_improvement=Improvement(text, factor=factor, bytes=entry.size_bytes,
                                             basis="measured" if factor else "estimated"),
            complexity="low", parameters={"tier": up},
            evidence={"opens": access.opens, "median_open_seconds": access.median_open_seconds,
                      "tier_median_open_seconds": {entry.tier: here, up: there}},
        )
    return None


def recommend(store: Any, entries: Sequence[Entry], analysis: AccessAnalysis,
              tiers: Sequence[str]) -> list[Recommendation]:
    """Every recommendation the records and layouts support, layout changes first."""
    out: list[Recommendation] = []
    for entry in entries:
        access = analysis.keys.get(entry.key)
        if access is None:
            continue
        for found in (_rechunk(store, entry, access), _overviews(entry, access),
                      _hilbert(store, entry, access), _time_partition(store, entry, access),
                      _table_compression(entry, access), _tier_moves(entry, access, analysis, tiers)):
            if found is not None:
                out.append(found)
    return sorted(out, key=lambda r: (KINDS.index(r.kind), r.key))
