""":class:`PerformanceOptimizer`: advice from operation records and stored layouts, applied as versions."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from memories_geo.errors import ConfigError, OptionError
from memories_geo.monitor.optimizer.analysis import analyze
from memories_geo.monitor.optimizer.apply import apply_recommendation, check_parameters
from memories_geo.monitor.optimizer.model import DETAIL_LEVELS, KINDS
from memories_geo.monitor.optimizer.rules import recommend
from memories_geo.units import parse_duration

if TYPE_CHECKING:
    import pandas as pd

    from memories_geo.entry import Entry
    from memories_geo.monitor.optimizer.model import AccessAnalysis, OptimizationResult, Recommendation

__all__ = ["OptimizedMemory", "PerformanceOptimizer"]

logger = logging.getLogger(__name__)


class OptimizedMemory(Protocol):
    """What the optimizer uses of a :class:`~memories_geo.Memory`."""

    catalog: Any
    version_store: Any
    tiers: Any

    def info(self, key: str, *, version: int | None = None) -> Entry:
        """Catalog entry of a version."""

    def open(self, key: str, *, version: int | None = None, **query: Any) -> Any:
        """Open a version (``bbox=``, ``time=``, ``columns=``, format options)."""

    def save(self, obj: Any, key: str | None = None, **options: Any) -> Any:
        """Store a new version."""

    def execute_migration(self, job: Any, **options: Any) -> Any:
        """Run a migration job."""


class PerformanceOptimizer:
    """Recommendations from a collection's own operation records and stored layouts.

    Parameters
    ----------
    mem : Memory
        The collection.
    records : OperationLog or pandas.DataFrame, optional
        Where the operation records come from: an
        :class:`~memories_geo.monitor.records.OperationLog` or a frame with the columns
        of :data:`~memories_geo.monitor.records.RECORD_COLUMNS`. Default: the
        collection's own log (``mem.operation_log``, also ``mem.monitor.log``).

    Raises
    ------
    ConfigError
        No ``records`` and the collection keeps no operation log.

    Examples
    --------
    >>> optimizer = mg.PerformanceOptimizer(mem)  # doctest: +SKIP
    >>> optimizer.analyze_access_patterns(time_period="7 days", detail_level="high")  # doctest: +SKIP
    >>> for rec in optimizer.get_recommendations():  # doctest: +SKIP
    ...     print(rec.id, rec.expected_improvement, rec.complexity)
    chunk-size-adjustment:era5/t2m about 730x less data decoded per open ... medium
    >>> optimizer.apply_optimization("chunk-size-adjustment",  # doctest: +SKIP
    ...                              parameters={"new_chunk_size": (1, 256, 256)}).speedup
    41.7
    """

    def __init__(self, mem: OptimizedMemory, *, records: Any = None) -> None:
        if records is None:
            records = getattr(mem, "operation_log", None)
            if records is None:
                raise ConfigError("this collection keeps no operation log; pass records= (an OperationLog "
                                  "or a DataFrame of operation records)")
        if not hasattr(records, "frame") and not hasattr(records, "columns"):
            raise OptionError(f"records= takes an OperationLog or a DataFrame of operation records; "
                              f"got {type(records).__name__}")
        self.mem = mem
        self.records = records
        self._analysis: AccessAnalysis | None = None
        self._recommendations: list[Recommendation] | None = None

    def _frame(self, period: timedelta) -> pd.DataFrame:
        if hasattr(self.records, "frame"):
            return self.records.frame(since=period, operations=["open", "read"])
        return self.records

    def analyze_access_patterns(self, time_period: str | timedelta = "7 days",
                                detail_level: str = "low") -> AccessAnalysis:
        """How each current key was opened and read over the last ``time_period``.

        Parameters
        ----------
        time_period : str or timedelta
            ``"7 days"``, ``"24 hours"``, ``"30 minutes"``...
        detail_level : {"low", "medium", "high"}
            What :meth:`AccessAnalysis.to_frame` and the repr show: counts, bytes and
            latency; plus bbox/time fractions, columns and last open; plus the distinct
            queries. The recommendations use all of it whatever the level.

        Returns
        -------
        AccessAnalysis

        Raises
        ------
        OptionError
            A bad ``time_period`` or ``detail_level`` (naming the accepted ones).

        Examples
        --------
        >>> optimizer.analyze_access_patterns("24 hours", detail_level="medium").to_frame()  # doctest: +SKIP
        """
        if detail_level not in DETAIL_LEVELS:
            raise OptionError(f"detail_level={detail_level!r}; accepted: {list(DETAIL_LEVELS)}")
        period = parse_duration(time_period, name="time_period")
        if not period:
            raise OptionError(f"time_period must be longer than zero; got {time_period!r}")
        entries = self.mem.catalog.current_entries()
        self._analysis = analyze(self._frame(period), entries, period=period, detail_level=detail_level)
        self._recommendations = None
        return self._analysis

    def get_recommendations(self) -> list[Recommendation]:
        """What the last analysis supports (analysing the last 7 days first if none ran).

        Returns
        -------
        list of Recommendation
            Layout changes first, then tier moves; each with its expected gain,
            complexity, default parameters and evidence.

        Examples
        --------
        >>> [rec.id for rec in optimizer.get_recommendations()]  # doctest: +SKIP
        ['chunk-size-adjustment:era5/t2m', 'tier-down:archive/2019']
        """
        if self._analysis is None:
            self.analyze_access_patterns()
        if self._recommendations is None:
            assert self._analysis is not None
            entries = self.mem.catalog.current_entries()
            self._recommendations = recommend(self.mem.version_store, entries, self._analysis,
                                              list(self.mem.tiers.names))
        return list(self._recommendations)

    def _find(self, id_or_kind: str, key: str | None) -> Recommendation:
        recs = self.get_recommendations()
        found = [r for r in recs if r.id == id_or_kind]
        if not found:
            found = [r for r in recs if r.kind == id_or_kind and (key is None or r.key == key)]
        if len(found) == 1:
            return found[0]
        ids = [r.id for r in recs]
        if not found:
            kinds = f"; kinds: {list(KINDS)}" if id_or_kind not in KINDS else ""
            raise OptionError(f"no current recommendation {id_or_kind!r}"
                              f"{f' for key {key!r}' if key else ''}; current recommendations: {ids}{kinds}")
        raise OptionError(f"{id_or_kind!r} matches several recommendations {[r.id for r in found]}; "
                          "pass the id or key=")

    def apply_optimization(
        self, id_or_kind: str, parameters: Mapping[str, Any] | None = None, *, key: str | None = None,
        measure: bool = True, rounds: int = 3,
    ) -> OptimizationResult:
        """Apply a recommendation as a new version and measure the access pattern that caused it.

        Parameters
        ----------
        id_or_kind : str
            A recommendation id (``"chunk-size-adjustment:era5/t2m"``), or a kind when
            one recommendation (or one for ``key``) has it.
        parameters : mapping, optional
            Override the recommendation's ``parameters`` (accepted names per kind in
            :data:`~memories_geo.monitor.optimizer.apply.ACCEPTED_PARAMETERS`).
        key : str, optional
            Which key, when a kind is given.
        measure : bool
            Replay the recorded queries (their bbox, time, columns and options, the data
            computed) against the previous and the new version, A B B A.
        rounds : int
            A B B A blocks measured (two pairs each), after one unmeasured warm-up of each.

        Returns
        -------
        OptimizationResult
            Versions before and after, and the measured ``before_seconds``,
            ``after_seconds`` and ``speedup`` (median of the per-pair ratios).

        Raises
        ------
        OptionError
            An unknown id or kind (listing the current recommendation ids), or bad
            parameters (naming the accepted ones).

        Examples
        --------
        >>> result = optimizer.apply_optimization("chunk-size-adjustment:era5/t2m")  # doctest: +SKIP
        >>> mem.open("era5/t2m", version=result.previous_version)  # the old layout  # doctest: +SKIP
        """
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise OptionError(f"rounds must be a positive integer; got {rounds!r}")
        rec = self._find(id_or_kind, key)
        params = check_parameters(rec, parameters, list(self.mem.tiers.names))
        assert self._analysis is not None
        access = self._analysis.keys.get(rec.key)
        queries = list(access.queries) if access is not None else []
        logger.info("applying %s with %s", rec.id, params)
        meter = getattr(self.mem.version_store, "meter", None)
        if meter is None:
            result = apply_recommendation(self.mem, rec, params, queries, measure=measure, rounds=rounds)
        else:
            with meter.measure("optimization", key=rec.key, detail={"id": rec.id, "kind": rec.kind}) as m:
                result = apply_recommendation(self.mem, rec, params, queries, measure=measure, rounds=rounds)
                m.version, m.tier = result.new_version, result.new_tier
                m.detail.update(speedup=result.speedup, previous_version=result.previous_version)
        self._recommendations = [r for r in self._recommendations or [] if r.id != rec.id]
        return result
