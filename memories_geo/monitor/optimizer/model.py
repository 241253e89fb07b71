"""What the optimizer reports: access figures per key, recommendations, and applied results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from memories_geo.display import Html, attrs_list, human_size, repr_html, row, section, table

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COMPLEXITIES", "DETAIL_LEVELS", "KINDS", "AccessAnalysis", "Improvement", "KeyAccess",
    "OptimizationResult", "QueryPattern", "Recommendation",
]

#: Kinds of recommendation, in the order they are listed.
KINDS = (
    "chunk-size-adjustment", "cog-overviews", "hilbert-sort", "time-partition",
    "table-compression", "tier-up", "tier-down",
)
#: Accepted ``complexity`` values.
COMPLEXITIES = ("low", "medium", "high")
#: Accepted ``detail_level`` values of :meth:`PerformanceOptimizer.analyze_access_patterns`.
DETAIL_LEVELS = ("low", "medium", "high")


@dataclass(frozen=True)
class QueryPattern:
    """One distinct ``open`` query of a key, and how often it was made.

    Attributes
    ----------
    bbox : tuple of 4 floats or None
        The box asked for, in EPSG:4326 (``None``: everything).
    time : tuple of 2 str or None
        ISO start and end (``None`` for an open end, or no time filter).
    columns : tuple of str or None
        Columns or variables asked for.
    options : mapping
        Format keywords, as the reprs the record keeps.
    count : int
        Opens with this query.
    seconds : float
        Median duration of those opens.
    errors : int
        Of those, the opens that failed (they are not replayed).
    """

    bbox: tuple[float, float, float, float] | None
    time: tuple[str | None, str | None] | None
    columns: tuple[str, ...] | None
    options: Mapping[str, str]
    count: int
    seconds: float
    errors: int = 0


@dataclass(frozen=True)
class KeyAccess:
    """How one key was used in the analysed period.

    Attributes
    ----------
    key, tier, format, kind : str
        The key and where and how its current version is stored.
    size_bytes : int
        Stored size of the current version.
    opens, reads, errors : int
        ``open`` records, ``read`` records (lazy reads after an open) and failed opens.
    bytes_read : int
        Bytes counted by opens and reads.
    median_open_seconds : float or None
        Median duration of an open.
    bbox_fraction, time_fraction : float or None
        Median share of the stored footprint (area) and time span an open asked for
        (1.0 for an open without bbox or time).
    columns : tuple of str
        Columns or variables named by some open (empty: all were read).
    last_opened : datetime or None
        Last open in the period.
    queries : tuple of QueryPattern
        Distinct queries, most frequent first.
    """

    key: str
    tier: str
    format: str
    kind: str
    size_bytes: int
    opens: int
    reads: int
    errors: int
    bytes_read: int
    median_open_seconds: float | None
    bbox_fraction: float | None
    time_fraction: float | None
    columns: tuple[str, ...]
    last_opened: datetime | None
    queries: tuple[QueryPattern, ...] = ()


#: Columns of :meth:`AccessAnalysis.to_frame` per detail level.
_FRAME_COLUMNS = {
    "low": ("key", "tier", "format", "size_bytes", "opens", "reads", "errors", "bytes_read",
            "median_open_seconds"),
    "medium": ("bbox_fraction", "time_fraction", "columns", "last_opened"),
    "high": ("queries",),
}


@dataclass(frozen=True)
class AccessAnalysis:
    """Access figures of every current key over a period (``analyze_access_patterns``).

    Attributes
    ----------
    period : timedelta
        How far back the records were read.
    since : datetime
        Start of the period (UTC).
    detail_level : str
        ``"low"`` (counts, bytes, latency), ``"medium"`` (+ bbox/time fractions,
        columns, last open) or ``"high"`` (+ the distinct queries).
    keys : mapping of str to KeyAccess
        Per key, every current key of the collection (idle ones with zero opens).
    records : int
        Operation records read.

    Examples
    --------
    >>> analysis = optimizer.analyze_access_patterns("7 days", detail_level="high")  # doctest: +SKIP
    >>> analysis.keys["era5/t2m"].opens, analysis.to_frame().columns[:3].tolist()  # doctest: +SKIP
    (40, ['key', 'tier', 'format'])
    """

    period: timedelta
    since: datetime
    detail_level: str
    keys: Mapping[str, KeyAccess]
    records: int

    def _columns(self) -> list[str]:
        levels = DETAIL_LEVELS[: DETAIL_LEVELS.index(self.detail_level) + 1]
        return [c for level in levels for c in _FRAME_COLUMNS[level]]

    def to_frame(self) -> pd.DataFrame:
        """One row per key, with the columns of the detail level."""
        import pandas as pd

        columns = self._columns()
        rows = []
        for access in self.keys.values():
            values = {c: getattr(access, c) for c in columns}
            if "queries" in values:
                values["queries"] = [_query_text(q) for q in access.queries]
            if "columns" in values:
                values["columns"] = list(access.columns)
            rows.append(values)
        return pd.DataFrame(rows, columns=columns)

    def __repr__(self) -> str:
        opened = sum(1 for a in self.keys.values() if a.opens)
        lines = [f"<memories_geo.AccessAnalysis {len(self.keys)} keys, {opened} opened in {self.period}>"]
        for access in self.keys.values():
            lines.append(
                f"  {access.key}: {access.opens} opens, {human_size(access.bytes_read)} read"
                f" ({access.tier}, {access.format})"
            )
        return "\n".join(lines)

    def _repr_html_(self) -> Html:
        columns = self._columns()
        rows = [[_cell(getattr(a, c) if c != "queries" else len(a.queries)) for c in columns]
                for a in self.keys.values()]
        text = ("key", "tier", "format", "columns", "last_opened")
        numeric = {i for i, c in enumerate(columns) if c not in text}
        return repr_html(
            obj_type="memories_geo.AccessAnalysis", text=repr(self),
            sections=[row("period", f"{self.period} since {self.since:%Y-%m-%d %H:%M} UTC"),
                      row("records", self.records),
                      section("Keys", table(columns, rows, numeric=numeric), count=len(rows))],
        )


@dataclass(frozen=True)
class Improvement:
    """An expected or measured gain.

    Attributes
    ----------
    text : str
        The gain in words.
    factor : float or None
        How many times faster (or smaller) the access pattern should get.
    bytes : int or None
        Bytes saved or moved (a tier move frees them on the faster tier).
    basis : str
        ``"estimated"`` (from the layout and the records) or ``"measured"``.
    """

    text: str
    factor: float | None = None
    bytes: int | None = None
    basis: str = "estimated"

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Recommendation:
    """One change the optimizer advises, with the figures behind it.

    Attributes
    ----------
    id : str
        ``"<kind>:<key>"``, stable across analyses.
    kind : str
        One of :data:`KINDS`.
    key : str
    description : str
    expected_improvement : Improvement
    complexity : str
        ``"low"``, ``"medium"`` or ``"high"``.
    parameters : mapping
        What :meth:`PerformanceOptimizer.apply_optimization` uses unless told otherwise.
    evidence : mapping
        The figures the advice came from.

    Examples
    --------
    >>> rec = optimizer.get_recommendations()[0]  # doctest: +SKIP
    >>> rec.id, rec.parameters  # doctest: +SKIP
    ('chunk-size-adjustment:era5/t2m', {'new_chunk_size': (1, 128, 128)})
    """

    id: str
    kind: str
    key: str
    description: str
    expected_improvement: Improvement
    complexity: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"<memories_geo.Recommendation {self.id} ({self.complexity})>\n  {self.description}\n"
            f"  expected: {self.expected_improvement.text} ({self.expected_improvement.basis})\n"
            f"  parameters: {dict(self.parameters)}"
        )

    def _repr_html_(self) -> Html:
        return repr_html(
            obj_type="memories_geo.Recommendation", text=repr(self), name=self.id,
            badges=[self.complexity, self.expected_improvement.basis],
            sections=[row("description", self.description),
                      row("expected", self.expected_improvement.text),
                      section("Parameters", attrs_list(self.parameters), count=len(self.parameters)),
                      section("Evidence", attrs_list(self.evidence), count=len(self.evidence),
                              expanded=False)],
        )


@dataclass(frozen=True)
class OptimizationResult:
    """What :meth:`PerformanceOptimizer.apply_optimization` did and measured.

    Attributes
    ----------
    recommendation : Recommendation
        What was applied.
    parameters : mapping
        The parameters used.
    key : str
    previous_version, new_version : int
        Versions before and after (the same number for a tier move, which keeps the version).
    previous_tier, new_tier : str
    before_seconds, after_seconds : float or None
        Median time of one replay of the recorded access pattern against each version.
    speedup : float or None
        Median of the per-pair ratios ``before / after`` (``None`` without measurement).
    speedup_range : (float, float) or None
        Smallest and largest per-pair ratio.
    pairs : int
        Measured pairs.
    note : str
        How the replay ran.

    Examples
    --------
    >>> result = optimizer.apply_optimization("chunk-size-adjustment:era5/t2m")  # doctest: +SKIP
    >>> result.speedup > 1, result.new_version - result.previous_version  # doctest: +SKIP
    (True, 1)
    """

    recommendation: Recommendation
    parameters: Mapping[str, Any]
    key: str
    previous_version: int
    new_version: int
    previous_tier: str
    new_tier: str
    before_seconds: float | None = None
    after_seconds: float | None = None
    speedup: float | None = None
    speedup_range: tuple[float, float] | None = None
    pairs: int = 0
    note: str = ""

    def _figure(self) -> str:
        if self.speedup is None or self.before_seconds is None or self.after_seconds is None:
            return "not measured"
        low, high = self.speedup_range or (self.speedup, self.speedup)
        return (f"{self.before_seconds:.4g} s -> {self.after_seconds:.4g} s: {self.speedup:.2f}x "
                f"(range {low:.2f}-{high:.2f}, {self.pairs} pairs)")

    def __repr__(self) -> str:
        return (
            f"<memories_geo.OptimizationResult {self.recommendation.id}>\n"
            f"  v{self.previous_version} ({self.previous_tier}) -> v{self.new_version} ({self.new_tier})\n"
            f"  {self._figure()}" + (f"\n  {self.note}" if self.note else "")
        )

    def _repr_html_(self) -> Html:
        return repr_html(
            obj_type="memories_geo.OptimizationResult", text=repr(self), name=self.key,
            badges=[self.recommendation.kind],
            sections=[row("versions", f"v{self.previous_version} ({self.previous_tier}) -> "
                                      f"v{self.new_version} ({self.new_tier})"),
                      row("measured", self._figure()), row("note", self.note or "-"),
                      section("Parameters", attrs_list(self.parameters), count=len(self.parameters))],
        )


def _cell(value: Any) -> Any:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return ", ".join(str(v) for v in value) or "all"
    return value


def _query_text(query: QueryPattern) -> str:
    parts = []
    if query.bbox is not None:
        parts.append("bbox=" + ",".join(f"{v:.4g}" for v in query.bbox))
    if query.time is not None:
        parts.append(f"time={query.time[0]}..{query.time[1]}")
    if query.columns is not None:
        parts.append("columns=" + ",".join(query.columns))
    parts += [f"{k}={v}" for k, v in query.options.items()]
    return f"{query.count}x " + (" ".join(parts) or "everything")
