"""Awaitable twins: the work runs in worker threads and the event loop keeps running."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import xarray as xr
from geopandas.testing import assert_geodataframe_equal

import memories_geo as mg
from memories_geo.awaitable import Deferred
from memories_geo.examples import sample_raster, sample_vector


async def _ticks_during(awaitable, interval: float = 0.005) -> tuple[object, int]:
    """Await ``awaitable`` while a ticker counts how often the loop got to run it."""
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(interval)

    task = asyncio.create_task(ticker())
    try:
        result = await awaitable
    finally:
        stop.set()
        await task
    return result, ticks


def test_memory_twins_do_not_block_the_loop(tmp_path):
    mem = mg.Memory(tmp_path)
    raster = sample_raster()

    async def main() -> None:
        started = time.perf_counter()
        entry, ticks = await _ticks_during(mem.asave(raster, "era5/t2m"))
        elapsed = time.perf_counter() - started
        assert entry.key == "era5/t2m"
        assert ticks >= max(2, int(elapsed / 0.005 * 0.3))  # the loop kept running during the save
        opened = await mem.aopen("era5/t2m", bbox=(5, 45, 6, 46))
        window = raster.t2m.sel(lat=slice(46, 45), lon=slice(5, 6))
        xr.testing.assert_identical(opened.t2m.load(), window.load())
        assert [e.key for e in await mem.averify("era5/t2m")] == ["era5/t2m"]
        assert list((await mem.als())["key"]) == ["era5/t2m"]
        usage = await mem.monitor.aget_storage_usage()
        assert usage["hot"].keys == 1
        assert (await mem.monitor.aget_performance_metrics("1 hour")).write_latency.count == 1
        assert [e.key for e in await mem.adelete("era5/t2m")] == ["era5/t2m"]

    asyncio.run(main())


def test_twins_run_in_worker_threads_and_raise_the_same_errors(tmp_path):
    mem = mg.Memory(tmp_path)
    threads: list[int] = []

    def staged(name: str, info: object) -> None:
        if name == "save.staged":
            threads.append(threading.get_ident())

    unsubscribe = mg.events.subscribe(staged)

    async def main() -> int:
        await mem.asave(sample_vector(), "fields")
        with pytest.raises(mg.KeyExistsError):
            await mem.asave(sample_vector(), "fields")
        with pytest.raises(mg.KeyNotFoundError):
            await mem.aopen("missing")
        return threading.get_ident()

    try:
        loop_thread = asyncio.run(main())
    finally:
        unsubscribe()
    assert threads
    assert loop_thread not in threads


def test_module_functions_and_checkpoints_have_twins(home):
    async def main() -> None:
        gdf = sample_vector()
        await mg.aio.save(gdf, "fields")
        assert_geodataframe_equal(await mg.aio.open("fields"), gdf)
        mem = mg.default()
        info = await mem.checkpoints.asave("first")
        assert [cp.name for cp in await mem.checkpoints.alist()] == ["first"]
        await mg.aio.delete("fields")
        restored = await mem.checkpoints.arestore(info.id)
        assert restored.id == info.id
        assert_geodataframe_equal(await mg.aio.open("fields"), gdf)

    asyncio.run(main())


def test_the_original_persistence_calls_are_awaitable_in_a_loop(tmp_path):
    mem = mg.Memory(tmp_path / "home")
    mem.save(sample_vector(), "fields")
    persistence = mg.MemoryPersistence(mem, backup_storage=str(tmp_path / "backup"))

    assert isinstance(persistence.save_checkpoint("outside"), mg.CheckpointInfo)

    async def main() -> None:
        info, ticks = await _ticks_during(persistence.save_checkpoint("inside"))
        assert ticks >= 1
        assert isinstance(info, mg.CheckpointInfo)
        assert info.name == "inside"
        listed = await persistence.list_checkpoints()
        assert [cp.name for cp in listed] == ["inside", "outside"]
        pending = persistence.save_checkpoint("not-awaited")
        assert isinstance(pending, Deferred)
        assert pending.name == "not-awaited"  # used as the result, it waits for it
        restored = await persistence.restore_checkpoint("outside")
        assert restored.name == "outside"

    asyncio.run(main())
