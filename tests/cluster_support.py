"""A dask cluster whose workers are "another machine", shared by the cluster tests.

``LocalCluster(processes=True, n_workers=2)`` with the workers' home and working
directory apart from the client's; an audit hook on each worker records every SQLite
database it opens (the catalog must only be opened on the client).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import cloudpickle

# The worker-side helpers defined here are shipped to the worker processes by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def record_sqlite_opens(log_dir: str) -> None:
    """On a worker: note every SQLite database opened, in a file per process."""
    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "sqlite3.connect":
            with open(os.path.join(log_dir, f"sqlite-{os.getpid()}.txt"), "a") as f:
                f.write(f"{args[0]}\n")

    sys.addaudithook(hook)


def sqlite_opened(log_dir: Path) -> list[str]:
    """The SQLite databases the workers opened."""
    return [line for p in log_dir.glob("sqlite-*.txt") for line in p.read_text().splitlines()]


def start_cluster(root: Path, **config: Any) -> tuple[Any, Any]:
    """A two-process cluster with its own home under ``root``, and its client."""
    import dask
    import distributed

    home = root / "worker-home"
    home.mkdir(parents=True, exist_ok=True)
    with dask.config.set(config):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
            local_directory=str(root / "worker-scratch"),
            env={"HOME": str(home), "MEMORIES_GEO_HOME": str(home / ".memories")},
        )
    client = distributed.Client(cluster)
    client.run(record_sqlite_opens, str(root))
    return cluster, client
