"""Interleaved A/B timing on the same seeded data; report medians of per-pair ratios."""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Comparison", "compare", "print_table"]


@dataclass
class Comparison:
    """Result of timing ``ours`` against ``baseline`` in alternating pairs."""

    name: str
    ours: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    target: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratios(self) -> list[float]:
        """Per-pair time ratios ours / baseline (< 1 means we are faster)."""
        return [o / b for o, b in zip(self.ours, self.baseline, strict=True)]

    @property
    def median_ratio(self) -> float:
        """Median of the per-pair ratios."""
        return statistics.median(self.ratios)

    def row(self) -> dict[str, Any]:
        """One printable row."""
        return {
            "benchmark": self.name,
            "pairs": len(self.ratios),
            "ours_s(median)": round(statistics.median(self.ours), 3),
            "baseline_s(median)": round(statistics.median(self.baseline), 3),
            "time_ratio(median of pairs)": round(self.median_ratio, 3),
            "ratio_range": f"{min(self.ratios):.3f}-{max(self.ratios):.3f}",
            "target": self.target,
            **self.extra,
        }


def _timed(fn: Callable[[], Any]) -> float:
    """Time ``fn`` after flushing dirty pages, so no run pays for its predecessor's writeback."""
    gc.collect()
    os.sync()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(
    name: str,
    ours: Callable[[int], Any],
    baseline: Callable[[int], Any],
    *,
    pairs: int = 5,
    warmup: bool = True,
    cleanup: Callable[[], Any] | None = None,
    target: str = "",
) -> Comparison:
    """Time ``baseline(i)`` and ``ours(i)`` alternately, swapping who goes first each pair.

    Both callables receive the pair index so each run can write to a fresh target.
    """
    result = Comparison(name, target=target)
    if warmup:
        baseline(-1)
        ours(-1)
        if cleanup:
            cleanup()
    for i in range(pairs):
        order = [("baseline", baseline), ("ours", ours)]
        if i % 2:
            order.reverse()
        for label, fn in order:
            elapsed = _timed(lambda fn=fn, i=i: fn(i))
            getattr(result, label).append(elapsed)
        if cleanup:
            cleanup()
    return result


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print rows as an aligned text table."""
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(pd.DataFrame(rows).to_string(index=False))
