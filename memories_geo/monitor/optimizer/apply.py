"""Applying a recommendation as a new version, and replaying the access pattern that caused it.

A layout change re-saves the current version with the new layout through ``Memory.save``
(``mode="w"``: staged, verified, committed; the previous version stays readable). A tier
move runs a one-key migration (the version keeps its number). The recorded queries are
then replayed against the previous and the new version, interleaved A B B A.
"""

from __future__ import annotations

import ast
import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from memories_geo.errors import OptionError
from memories_geo.monitor.optimizer.model import OptimizationResult, QueryPattern, Recommendation

__all__ = ["ACCEPTED_PARAMETERS", "MAX_REPLAY_QUERIES", "apply_recommendation", "check_parameters", "replay"]

logger = logging.getLogger(__name__)

#: Parameters each kind of recommendation takes.
ACCEPTED_PARAMETERS: Mapping[str, tuple[str, ...]] = {
    "chunk-size-adjustment": ("new_chunk_size", "variables"),
    "cog-overviews": ("blocksize", "overview_resampling", "read_overview_level"),
    "hilbert-sort": ("sort", "row_group_size"),
    "time-partition": ("partition_cols",),
    "table-compression": ("compression_enabled",),
    "tier-up": ("tier",),
    "tier-down": ("tier",),
}
#: Distinct recorded queries replayed (the most frequent first).
MAX_REPLAY_QUERIES = 16
#: Bytes of the dask chunks a re-chunked array is written with (whole Zarr chunks each).
_WRITE_CHUNK_BYTES = 64 << 20


def check_parameters(
    rec: Recommendation, given: Mapping[str, Any] | None, tiers: Sequence[str]
) -> dict[str, Any]:
    """``rec.parameters`` overridden by ``given``, checked.

    Raises
    ------
    OptionError
        An unknown parameter or a bad value, naming the accepted ones.
    """
    accepted = ACCEPTED_PARAMETERS[rec.kind]
    given = dict(given or {})
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise OptionError(f"{rec.kind} does not take parameters {unknown}; accepted: {list(accepted)}")
    params = {**rec.parameters, **given}
    if rec.kind == "chunk-size-adjustment":
        dims = tuple(rec.evidence.get("dims", ()))
        chunks = params["new_chunk_size"]
        if (not isinstance(chunks, Sequence) or len(chunks) != len(dims)
                or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in chunks)):
            raise OptionError(
                f"new_chunk_size must be {len(dims)} positive integers, one per dim {list(dims)}; "
                f"got {chunks!r}"
            )
        params["new_chunk_size"] = tuple(chunks)
    elif rec.kind in ("tier-up", "tier-down") and params["tier"] not in tiers:
        raise OptionError(f"tier={params['tier']!r} is not a configured tier; accepted: {list(tiers)}")
    elif rec.kind == "cog-overviews":
        level = params.get("read_overview_level", 0)
        if isinstance(level, bool) or not isinstance(level, int) or level < 0:
            raise OptionError(f"read_overview_level must be an integer >= 0; got {level!r}")
    elif rec.kind == "hilbert-sort" and params["sort"] not in ("hilbert", "auto"):
        raise OptionError(f"sort={params['sort']!r}: accepted 'hilbert' or 'auto'")
    return params


def _dask_chunks(new: Sequence[int], shape: Sequence[int], itemsize: int) -> tuple[int, ...]:
    """Write chunks: whole multiples of ``new``, grown along the first dims to about 64 MiB."""
    out = list(new)
    for i in range(len(out)):
        while out[i] < shape[i] and itemsize * math.prod(out) * 2 <= _WRITE_CHUNK_BYTES:
            out[i] = min(shape[i], out[i] * 2)
        if itemsize * math.prod(out) * 2 > _WRITE_CHUNK_BYTES:
            break
    return tuple(out)


def _rechunked(obj: Any, params: Mapping[str, Any], rec: Recommendation) -> tuple[Any, dict[str, Any]]:
    import xarray as xr

    dims = tuple(rec.evidence["dims"])
    shape = tuple(rec.evidence["shape"])
    new = tuple(params["new_chunk_size"])
    ds = obj if isinstance(obj, xr.Dataset) else obj.to_dataset()
    variables = [v for v in (params.get("variables") or [n for n in ds.data_vars]) if v in ds.data_vars]
    itemsize = max((ds[v].dtype.itemsize for v in variables), default=8)
    write = dict(zip(dims, _dask_chunks(new, shape, itemsize), strict=True))
    obj = obj.chunk({d: c for d, c in write.items() if d in obj.dims})
    encoding = {v: {"chunks": new} for v in variables if tuple(ds[v].dims) == dims}
    if not isinstance(obj, xr.Dataset):
        return obj, encoding.get(str(obj.name), {})
    return obj, encoding


def _resave(mem: Any, rec: Recommendation, params: Mapping[str, Any]) -> Any:
    previous = mem.info(rec.key)
    obj = mem.open(rec.key, version=previous.version)
    kwargs: dict[str, Any] = {}
    encoding: Any = None
    if rec.kind == "chunk-size-adjustment":
        obj, encoding = _rechunked(obj, params, rec)
    elif rec.kind == "cog-overviews":
        kwargs = {k: params[k] for k in ("blocksize", "overview_resampling") if k in params}
    elif rec.kind == "hilbert-sort":
        kwargs = {"sort": params["sort"], "row_group_size": params["row_group_size"]}
    elif rec.kind == "time-partition":
        kwargs = {"partition_cols": list(params["partition_cols"])}
    elif rec.kind == "table-compression":
        kwargs = {"compression_enabled": bool(params["compression_enabled"])}
    return mem.save(obj, rec.key, tier=previous.tier, format=previous.format, mode="w",
                    encoding=encoding or None, **kwargs)


def _move(mem: Any, rec: Recommendation, tier: str) -> Any:
    from memories_geo.lifecycle import MigrationJob

    previous = mem.info(rec.key)
    job = MigrationJob(source_tier=previous.tier, destination_tier=tier, selection_criteria={"key": rec.key})
    mem.execute_migration(job, max_workers=1)
    return mem.info(rec.key)


def _options(query: QueryPattern) -> dict[str, Any]:
    out = {}
    for name, text in query.options.items():
        try:
            out[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            logger.debug("not replaying option %s=%s (not a literal)", name, text)
    return out


def _load(obj: Any) -> None:
    if hasattr(obj, "load"):
        obj.load()
    elif hasattr(obj, "compute"):
        obj.compute()
    else:
        len(obj)


def replay(mem: Any, key: str, version: int, queries: Sequence[QueryPattern],
           extra: Mapping[str, Any] | None = None, drop: Sequence[str] = ()) -> float:
    """Seconds to run each of ``queries`` once against ``version`` of ``key``, computing the data.

    Queries whose every recorded open failed are left out; ``drop`` names format
    options not passed, ``extra`` options added.
    """
    start = time.perf_counter()
    for query in [q for q in queries if q.count > q.errors][:MAX_REPLAY_QUERIES]:
        options = {k: v for k, v in _options(query).items() if k not in drop}
        options.update(extra or {})
        obj = mem.open(key, version=version, bbox=query.bbox, time=query.time,
                       columns=list(query.columns) if query.columns is not None else None, **options)
        _load(obj)
    return time.perf_counter() - start


def _summary(pairs: Sequence[tuple[float, float]]) -> dict[str, Any]:
    ratios = [a / b for a, b in pairs if b > 0]
    if not ratios:
        return {}
    return {
        "before_seconds": statistics.median(a for a, _ in pairs),
        "after_seconds": statistics.median(b for _, b in pairs),
        "speedup": statistics.median(ratios), "speedup_range": (min(ratios), max(ratios)),
        "pairs": len(ratios),
    }


def _interleaved(before: Callable[[], float], after: Callable[[], float], rounds: int) -> dict[str, Any]:
    before(), after()
    pairs: list[tuple[float, float]] = []
    for _ in range(rounds):
        a1, b1 = before(), after()
        b2, a2 = after(), before()
        pairs += [(a1, b1), (a2, b2)]
    return _summary(pairs)


def apply_recommendation(
    mem: Any, rec: Recommendation, params: Mapping[str, Any], queries: Sequence[QueryPattern], *,
    measure: bool, rounds: int,
) -> OptimizationResult:
    """Apply ``rec`` with ``params`` and, if ``measure``, replay ``queries`` before and after."""
    previous = mem.info(rec.key)
    figures: dict[str, Any] = {}
    note = ""
    if rec.kind in ("tier-up", "tier-down"):
        replayable = measure and any(q.count > q.errors for q in queries)
        run = (lambda: replay(mem, rec.key, previous.version, queries)) if replayable else None
        before = [run() for _ in range(2 * rounds + 1)][1:] if run else []
        entry = _move(mem, rec, params["tier"])
        if run:
            after = [run() for _ in range(2 * rounds + 1)][1:]
            figures = _summary(list(zip(before, after, strict=True)))
            note = ("replayed before and after the move in turn (not interleaved: the version is in "
                    "one place at a time)")
    else:
        entry = _resave(mem, rec, params)
        if measure and queries:
            extra_after: dict[str, Any] = {}
            drop: tuple[str, ...] = ()
            if rec.kind == "cog-overviews":
                extra_after = {"overview_level": int(params.get("read_overview_level", 0))}
                drop = ("overview_level",)
                note = (f"the previous version read at full resolution, the new one at overview level "
                        f"{extra_after['overview_level']} (what a low-zoom read can use now)")
            else:
                note = "recorded queries replayed A B B A against both versions, data computed"
            try:
                figures = _interleaved(
                    lambda: replay(mem, rec.key, previous.version, queries, drop=drop),
                    lambda: replay(mem, rec.key, entry.version, queries, extra_after, drop), rounds,
                )
            except Exception as exc:
                logger.warning("replaying the queries of %s failed: %r", rec.key, exc)
                note = f"applied; replaying the recorded queries failed ({type(exc).__name__}: {exc})"
    if measure and not any(q.count > q.errors for q in queries):
        note = "no recorded query to replay"
    return OptimizationResult(
        recommendation=rec, parameters=dict(params), key=rec.key, previous_version=previous.version,
        new_version=entry.version, previous_tier=previous.tier, new_tier=entry.tier, note=note, **figures,
    )
