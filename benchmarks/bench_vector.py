"""Vector benchmarks: GeoParquet spatial layout, bbox reads, and save/open against raw geopandas.

Every pair runs on the same seeded data, interleaved (:func:`benchmarks.harness.compare`).
Rows:

- ``bbox 1% read``: ``mg.open(key, bbox=...)`` of 1% of the area against the full
  ``mg.open(key)`` of the same stored point layer (target: 20x faster).
- ``bbox 1% read, plain to_parquet``: the same two reads with ``geopandas.read_parquet``
  on an unsorted ``to_parquet(write_covering_bbox=True)`` file, for reference.
- ``write vs to_parquet defaults``: ``mg.save`` of the point layer against
  ``gdf.to_parquet`` with its defaults (snappy, WKB, no covering); time and size.
- ``save vs to_parquet same settings`` and ``open vs read_parquet``: a polygon layer
  saved with the defaults (Hilbert layout) and with ``sort="none"``, against
  ``gdf.to_parquet(**write_settings(level))`` and ``geopandas.read_parquet``.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import Comparison, compare

__all__ = ["make_points", "make_polygons", "run"]

_SEED = 20240604


def make_points(n: int, seed: int = _SEED) -> Any:
    """Seeded point layer in EPSG:4326: clustered like settlements, with three attributes.

    Coordinates are clustered around 200 centres over Europe and rounded to 1e-6
    degrees (GPS precision); ``value`` is a measurement with one decimal, ``kind``
    one of eight labels and ``id`` a running number.
    """
    import geopandas as gpd

    rng = np.random.default_rng(seed)
    centres = np.column_stack([rng.uniform(-10, 30, 200), rng.uniform(36, 60, 200)])
    which = rng.integers(0, len(centres), n)
    spread = rng.uniform(0.05, 1.5, len(centres))[which]
    x = np.round(centres[which, 0] + rng.normal(0, 1, n) * spread, 6)
    y = np.round(centres[which, 1] + rng.normal(0, 1, n) * spread, 6)
    kinds = np.array(["school", "shop", "park", "stop", "cafe", "bank", "clinic", "museum"])
    return gpd.GeoDataFrame(
        {
            "id": np.arange(n, dtype="int64"),
            "value": np.round(rng.gamma(2.0, 10.0, n), 1),
            "kind": kinds[rng.integers(0, len(kinds), n)],
        },
        geometry=gpd.points_from_xy(x, y),
        crs="EPSG:4326",
    )


def make_polygons(n: int, seed: int = _SEED) -> Any:
    """Seeded layer of small rotated rectangles (building footprints) in UTM zone 31N."""
    import geopandas as gpd
    import shapely

    rng = np.random.default_rng(seed + 1)
    cx = rng.uniform(400_000, 700_000, n)
    cy = rng.uniform(5_000_000, 5_400_000, n)
    w = rng.uniform(5, 40, n)
    h = rng.uniform(5, 40, n)
    angle = rng.uniform(0, np.pi, n)
    cos, sin = np.cos(angle), np.sin(angle)
    corners = []
    for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1)):
        px = cx + (dx * w * cos - dy * h * sin) / 2
        py = cy + (dx * w * sin + dy * h * cos) / 2
        corners.append(np.column_stack([px, py]))
    rings = np.round(np.stack(corners, axis=1), 2)
    geoms = shapely.polygons(rings)
    return gpd.GeoDataFrame(
        {
            "height": np.round(rng.uniform(3, 60, n), 1),
            "levels": rng.integers(1, 20, n).astype("int32"),
            "use": np.array(["house", "flat", "office", "shed"])[rng.integers(0, 4, n)],
        },
        geometry=geoms,
        crs="EPSG:32631",
    )


def _box_of_fraction(gdf: Any, fraction: float) -> tuple[float, float, float, float]:
    """A box covering ``fraction`` of the layer's extent, centred on its densest cluster."""
    minx, miny, maxx, maxy = gdf.total_bounds
    side = fraction**0.5
    cx, cy = float(gdf.geometry.x.median()), float(gdf.geometry.y.median())
    half_w, half_h = (maxx - minx) * side / 2, (maxy - miny) * side / 2
    return (cx - half_w, cy - half_h, cx + half_w, cy + half_h)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(quick: bool) -> list[dict[str, Any]]:
    """Run the vector benchmarks and return one row per comparison.

    Parameters
    ----------
    quick : bool
        Small data (100k points, 50k polygons) and 3 pairs, for a smoke run;
        otherwise 2M points, 1M polygons and 5 pairs.
    """
    import geopandas as gpd

    import memories_geo as mg
    from memories_geo.formats.geoparquet import write_settings

    n_points, n_polygons, pairs = (100_000, 50_000, 3) if quick else (2_000_000, 1_000_000, 5)
    work = Path(tempfile.mkdtemp(prefix="mg-bench-vector-"))
    rows: list[dict[str, Any]] = []
    try:
        mem = mg.Memory(mg.StorageConfig.embedded(work / "memories"))
        tier = mem.config.default_tier
        level = mem.tiers.compression(tier)
        points = make_points(n_points)
        box = _box_of_fraction(points, 0.01)

        entry = mem.save(points, "bench/points")
        path = Path(mem.tiers.backend(entry.tier).full_path(entry.path))
        selected = len(mem.open("bench/points", bbox=box))
        result = compare(
            "geoparquet bbox 1% area read / full read (points)",
            lambda i: mem.open("bench/points", bbox=box),
            lambda i: mem.open("bench/points"),
            pairs=pairs,
            target="ratio <= 0.05 (20x faster)",
        )
        result.extra.update(rows_read=selected, rows_total=n_points, speedup=_speedup(result))
        rows.append(result.row())

        plain = work / "plain-covering.parquet"
        points.to_parquet(plain, write_covering_bbox=True)
        result = compare(
            "reference: plain to_parquet(covering) bbox 1% / full read",
            lambda i: gpd.read_parquet(plain, bbox=box),
            lambda i: gpd.read_parquet(plain),
            pairs=pairs,
        )
        result.extra.update(speedup=_speedup(result))
        rows.append(result.row())

        raw_dir = work / "raw"
        raw_dir.mkdir()

        def cleanup() -> None:
            for version in mem.ls("bench/w*")["key"]:
                mem.delete(version)
            for p in raw_dir.iterdir():
                p.unlink()

        result = compare(
            "mg.save (points) / gdf.to_parquet defaults (snappy, WKB)",
            lambda i: mem.save(points, f"bench/w{i + 1}"),
            lambda i: points.to_parquet(raw_dir / f"{i + 1}.parquet"),
            pairs=pairs,
            target="ratio <= 1.25 (>= 0.8x the speed); size_ratio <= 0.8",
        )
        raw = work / "default.parquet"
        points.to_parquet(raw)
        result.extra.update(
            size_ours=_size(path), size_baseline=_size(raw), size_ratio=round(_size(path) / _size(raw), 3)
        )
        rows.append(result.row())
        cleanup()
        result = compare(
            "mg.save (points, keep_order=False) / gdf.to_parquet defaults (snappy, WKB)",
            lambda i: mem.save(points, f"bench/w{i + 1}", keep_order=False),
            lambda i: points.to_parquet(raw_dir / f"{i + 1}.parquet"),
            pairs=pairs,
            target="ratio <= 1.25 (>= 0.8x the speed); size_ratio <= 0.8",
        )
        unordered = Path(mem.tiers.backend(tier).full_path(mem.info("bench/w1").path))
        result.extra.update(
            size_ours=_size(unordered), size_baseline=_size(raw),
            size_ratio=round(_size(unordered) / _size(raw), 3),
        )
        rows.append(result.row())
        cleanup()
        points = None

        polygons = make_polygons(n_polygons)
        settings = write_settings(level)
        same = raw_dir / "same.parquet"
        for sort in ("auto", "none"):
            label = "default (hilbert layout)" if sort == "auto" else "sort='none'"
            result = compare(
                f"mg.save (polygons, {label}) / to_parquet(**write_settings('{level}'))",
                lambda i, sort=sort: mem.save(polygons, f"bench/w{i + 1}", sort=sort),
                lambda i: polygons.to_parquet(raw_dir / f"{i + 1}.parquet", **settings),
                pairs=pairs,
                cleanup=cleanup,
                target="ratio <= 1.10",
            )
            rows.append(result.row())
        polygons.to_parquet(same, **settings)
        for sort in ("auto", "none"):
            key = f"bench/polygons-{sort}"
            entry = mem.save(polygons, key, sort=sort)
            stored = Path(mem.tiers.backend(entry.tier).full_path(entry.path))
            label = "default (hilbert layout)" if sort == "auto" else "sort='none'"
            result = compare(
                f"mg.open (polygons, {label}) / gpd.read_parquet",
                lambda i, key=key: mem.open(key),
                lambda i: gpd.read_parquet(same),
                pairs=pairs,
                target="ratio <= 1.10",
            )
            result.extra.update(size_ratio=round(_size(stored) / _size(same), 3))
            rows.append(result.row())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _speedup(result: Comparison) -> float:
    return round(statistics.median(b / o for o, b in zip(result.ours, result.baseline, strict=True)), 1)
