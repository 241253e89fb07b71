"""Icechunk as the Zarr engine on S3, measured against memories_geo's own Zarr versions.

On a moto bucket, for a (time, y, x) cube of 100 steps:

- ``save``: ``mem.save`` (a new version folder, checksum manifest, catalog commit)
  against an Icechunk repository's first commit (``to_zarr`` into a writable session,
  ``session.commit``).
- ``open+load``: ``mem.open(key).load()`` against ``xr.open_zarr(readonly_session.store)``.
- ``append 1 step``: a new memories_geo version with one more step (the previous
  version's chunks carried by server-side copies) against an Icechunk commit of the
  step on the same branch (unchanged chunks shared across snapshots).
- ``bytes and requests``: the same operations through a counting proxy, for the
  decision recorded in ``docs/object-stores.md``.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import Any

from benchmarks.bench_s3_zarr import counted, s3_memory
from benchmarks.bench_zarr import make_dataset
from benchmarks.harness import compare
from benchmarks.s3proxy import CountingProxy


def icechunk_repo(service: Any, endpoint: str, prefix: str) -> Any:
    """A new Icechunk repository under ``prefix`` of the moto bucket, reached at ``endpoint``."""
    import icechunk

    options = service.options
    storage = icechunk.s3_storage(
        bucket=service.url.removeprefix("s3://"), prefix=prefix, region="us-east-1",
        endpoint_url=endpoint, allow_http=True, access_key_id=options["key"],
        secret_access_key=options["secret"], force_path_style=True,
    )
    return icechunk.Repository.create(storage)


def icechunk_save(repo: Any, ds: Any, message: str, **kwargs: Any) -> str:
    """Write ``ds`` in a writable session of ``main`` and commit; the snapshot id."""
    session = repo.writable_session("main")
    ds.to_zarr(session.store, zarr_format=3, consolidated=False, **kwargs)
    return str(session.commit(message))


def run(quick: bool) -> list[dict[str, Any]]:
    """Run the Icechunk evaluation; ``quick`` uses 256 x 256 steps instead of 1024 x 1024."""
    import xarray as xr

    from memories_geo.testing.services import start_moto

    warnings.filterwarnings("ignore")
    side = 256 if quick else 1024
    pairs = 3
    cube = make_dataset(101, side, side)
    base, step = cube.isel(time=slice(0, 100)), cube.isel(time=[100])
    encoding = {"t2m": {"chunks": (1, side, side)}}
    root = Path(tempfile.mkdtemp(prefix="bench-icechunk-"))
    service = start_moto()
    endpoint = service.options["client_kwargs"]["endpoint_url"]
    proxy = CountingProxy(endpoint)
    rows: list[dict[str, Any]] = []
    try:
        mem = s3_memory(service, root)
        repos: dict[int, Any] = {}

        def ice_save(i: int) -> None:
            repos[i] = icechunk_repo(service, endpoint, f"ice-{uuid.uuid4().hex[:8]}")
            icechunk_save(repos[i], base, "base", encoding=encoding)

        save = compare(
            "save 100 steps (S3)", lambda i: mem.save(base, f"bench/save{i}", encoding=encoding), ice_save,
            pairs=pairs, target="ours / icechunk",
        )
        save.extra["MB"] = round(base["t2m"].nbytes / 1e6)
        rows.append(save.row())

        repo = repos[0]
        opened = compare(
            "open+load 100 steps (S3)",
            lambda i: mem.open("bench/save0").load(),
            lambda i: xr.open_zarr(repo.readonly_session("main").store, consolidated=False).load(),
            pairs=pairs, target="ours / icechunk",
        )
        rows.append(opened.row())

        def ours_append(i: int) -> None:
            mem.save(step, f"bench/save{max(i, 0)}", mode="a", append_dim="time")

        def ice_append(i: int) -> None:
            icechunk_save(repos[max(i, 0)], step, f"append {i}", append_dim="time")

        append = compare("append 1 step (S3)", ours_append, ice_append, pairs=pairs, target="ours / icechunk")
        rows.append(append.row())

        counting = s3_memory(service, root, proxy.url)
        counted_repo = icechunk_repo(service, proxy.url, f"ice-counted-{uuid.uuid4().hex[:6]}")
        ice = counted_repo
        figures = [
            ("save 100 steps", "memories_geo", lambda: counting.save(base, "bench/c", encoding=encoding)),
            ("save 100 steps", "icechunk", lambda: icechunk_save(ice, base, "base", encoding=encoding)),
            ("append 1 step", "memories_geo",
             lambda: counting.save(step, "bench/c", mode="a", append_dim="time")),
            ("append 1 step", "icechunk", lambda: icechunk_save(ice, step, "step", append_dim="time")),
            ("open+load 101 steps", "memories_geo", lambda: counting.open("bench/c").load()),
            ("open+load 101 steps", "icechunk", lambda: xr.open_zarr(
                counted_repo.readonly_session("main").store, consolidated=False).load()),
        ]
        for operation, client, fn in figures:
            rows.append({"benchmark": f"bytes and requests: {operation}", "client": client,
                         **counted(proxy, fn), "MB_step": round(step["t2m"].nbytes / 1e6, 2)})
        usage = counting.tiers.backend("warm").remote_fs.du(
            counting.tiers.backend("warm").full_path("bench/c"))
        rows.append({"benchmark": "stored after append (2 versions)", "client": "memories_geo",
                     "MB_stored": round(usage / 1e6, 1)})
    finally:
        proxy.stop()
        service.stop()
        shutil.rmtree(root, ignore_errors=True)
    return rows
