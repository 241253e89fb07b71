"""Run the benchmarks: ``python -m benchmarks [--quick] [name ...]``.

Each ``benchmarks/bench_<name>.py`` exposes ``run(quick: bool) -> list[dict]``; rows
are printed as a table and saved as JSON under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import time
from pathlib import Path

from benchmarks.harness import print_table


def _modules() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(here)])
                  if m.name.startswith("bench_"))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all): {_modules()}")
    parser.add_argument("--quick", action="store_true", help="small data, for a smoke run")
    args = parser.parse_args()
    names = args.names or _modules()
    unknown = sorted(set(names) - set(_modules()))
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; available: {_modules()}")
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    for name in names:
        print(f"\n== {name} ({'quick' if args.quick else 'full'}) ==", flush=True)
        start = time.perf_counter()
        rows = importlib.import_module(f"benchmarks.bench_{name}").run(quick=args.quick)
        print_table(rows)
        print(f"({time.perf_counter() - start:.0f} s)")
        stamp = time.strftime("%Y%m%dT%H%M%S")
        (out_dir / f"{name}-{'quick' if args.quick else 'full'}-{stamp}.json").write_text(
            json.dumps(rows, indent=2, default=str)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
