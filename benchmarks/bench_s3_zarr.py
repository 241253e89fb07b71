"""Zarr on S3 (moto on loopback): memories_geo (obstore) next to raw xarray through s3fs.

Rows:

- ``save (S3)``: ``mem.save`` (chunk uploads through obstore, checksum manifest,
  catalog commit) against ``ds.to_zarr("s3://...", storage_options=...)`` with the same
  chunks and codec through s3fs; target >= 1.5x faster (time ratio <= 0.67).
- ``open+load (S3)``: ``mem.open(key).load()`` against ``xr.open_zarr("s3://...").load()``
  through s3fs; target >= 1.5x faster.
- ``bytes and requests``: one more run of each operation through a counting proxy
  (requests, bytes sent, bytes received), for both clients.
- ``append 1 step``: a new version with one more time step (chunks carried by
  server-side copies) against an Icechunk commit of the same step on the same bucket,
  see :mod:`benchmarks.bench_s3_icechunk`.

Timed runs go straight to moto; only the counted runs pass through the proxy (a Python
proxy on two cores would otherwise be what is measured).
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import Any

from benchmarks.bench_zarr import make_dataset
from benchmarks.harness import compare
from benchmarks.s3proxy import CountingProxy


def counted(proxy: CountingProxy, fn: Any) -> dict[str, int]:
    """Requests and bytes of one call of ``fn`` through ``proxy``."""
    proxy.reset()
    fn()
    requests, sent, received = proxy.reset()
    return {"requests": requests, "MB_sent": round(sent / 1e6, 2), "MB_received": round(received / 1e6, 2)}


def s3_memory(service: Any, root: Path, endpoint: str | None = None) -> Any:
    """A Memory whose default tier is ``service``'s bucket, reached at ``endpoint`` if given."""
    import memories_geo as mg

    options = copy.deepcopy(service.options)
    if endpoint is not None:
        options["client_kwargs"]["endpoint_url"] = endpoint
    prefix = uuid.uuid4().hex[:8]
    return mg.Memory(mg.StorageConfig.from_dict({
        "home": str(root / f"home-{prefix}"),
        "default_tier": "warm",
        "tiers": {"warm": {"url": f"{service.url}/{prefix}/warm", "storage_options": options}},
    }))


def run(quick: bool) -> list[dict[str, Any]]:
    """Run the S3 Zarr benchmarks; ``quick`` uses ~32 MB instead of ~500 MB."""
    import xarray as xr
    import zarr

    from memories_geo.testing.services import start_moto

    warnings.filterwarnings("ignore", message="Consolidated metadata")
    nt = 8 if quick else 125
    pairs = 3 if quick else 5
    ds = make_dataset(nt)
    nbytes = ds["t2m"].nbytes
    root = Path(tempfile.mkdtemp(prefix="bench-s3-zarr-"))
    service = start_moto()
    proxy = CountingProxy(service.options["client_kwargs"]["endpoint_url"])
    rows: list[dict[str, Any]] = []
    try:
        mem = s3_memory(service, root)
        backend = mem.tiers.backend("warm")
        raw_root = f"{service.url}/raw-{uuid.uuid4().hex[:6]}"
        options = dict(service.options)

        entry = mem.save(ds, "bench/layout")
        stored_at = f"s3://{backend.full_path(entry.path)}"
        layout = zarr.open_group(stored_at, mode="r", storage_options=options)["t2m"]
        encoding = {"t2m": {"chunks": layout.chunks, "compressors": layout.compressors}}

        def ours_save(i: int) -> None:
            mem.save(ds, f"bench/save{i}")

        def raw_save(i: int) -> None:
            ds.to_zarr(f"{raw_root}/raw{i}.zarr", zarr_format=3, consolidated=True, encoding=encoding,
                       mode="w", storage_options=options)

        def cleanup() -> None:
            for key in mem.ls("bench/save*")["key"]:
                mem.delete(key)
            fs = backend.remote_fs
            for path in fs.glob(f"{raw_root.removeprefix('s3://')}/raw*.zarr"):
                if not path.endswith("raw-open.zarr"):
                    fs.rm(path, recursive=True)

        save = compare(
            "save (S3)", ours_save, raw_save, pairs=pairs, cleanup=cleanup, target="<= 0.67 (1.5x)"
        )
        save.extra.update(MB=round(nbytes / 1e6), chunks=str(layout.chunks))
        rows.append(save.row())

        raw_open = f"{raw_root}/raw-open.zarr"
        ds.to_zarr(
            raw_open, zarr_format=3, consolidated=True, encoding=encoding, mode="w", storage_options=options
        )
        opened = compare(
            "open+load (S3)",
            lambda i: mem.open("bench/layout").load(),
            lambda i: xr.open_zarr(raw_open, storage_options=options).load(),
            pairs=pairs,
            target="<= 0.67 (1.5x)",
        )
        opened.extra["MB"] = round(nbytes / 1e6)
        rows.append(opened.row())

        counting = s3_memory(service, root, proxy.url)
        proxied = copy.deepcopy(options)
        proxied["client_kwargs"]["endpoint_url"] = proxy.url
        counted_raw = f"{raw_root}/counted.zarr"
        figures = [
            ("Zarr save", "memories_geo", lambda: counting.save(ds, "bench/counted")),
            ("Zarr save", "raw to_zarr (s3fs)", lambda: ds.to_zarr(
                counted_raw, zarr_format=3, consolidated=True, encoding=encoding, mode="w",
                storage_options=proxied)),
            ("Zarr open+load", "memories_geo", lambda: counting.open("bench/counted").load()),
            ("Zarr open+load", "raw open_zarr (s3fs)", lambda: xr.open_zarr(
                counted_raw, storage_options=proxied).load()),
        ]
        for operation, client, fn in figures:
            rows.append({"benchmark": f"bytes and requests: {operation}", "client": client,
                         **counted(proxy, fn), "MB_data": round(nbytes / 1e6, 1)})
    finally:
        proxy.stop()
        service.stop()
        shutil.rmtree(root, ignore_errors=True)
    return rows
