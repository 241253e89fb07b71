"""Options, progress bars, logging, typed errors for unreachable services, checkpoint names."""

from __future__ import annotations

import io
import logging
import os
import re
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from geopandas import GeoDataFrame
from shapely.geometry import Point

import memories_geo as mg
from memories_geo.backends.files import FileBackend
from memories_geo.examples import sample_raster
from memories_geo.progress import compute, progress_bar, progress_enabled
from memories_geo.testing.services import AZURITE_ACCOUNT, AZURITE_KEY, free_port

TIMING = re.compile(r"\(\d+\.\d ms\)$")


def _gdf(n: int = 20, seed: int = 0) -> GeoDataFrame:
    rng = np.random.default_rng(seed)
    points = [Point(x, y) for x, y in rng.uniform(0, 5, (n, 2))]
    return GeoDataFrame({"v": rng.normal(size=n)}, geometry=points, crs="EPSG:4326")


@pytest.fixture
def mem(tmp_path):
    return mg.Memory(tmp_path / "home")


@pytest.fixture
def chunked():
    return sample_raster().chunk({"time": 3})


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def _messages(caplog, level=logging.INFO):
    ours = [r for r in caplog.records if r.name.startswith("memories_geo")]
    return [r.getMessage() for r in ours if r.levelno == level]


# -- options -------------------------------------------------------------------------------


def test_set_options_as_function_and_context_manager():
    before = mg.get_options()
    assert before["progress"] in (True, False, "auto")
    with mg.set_options(progress=False) as ctx:
        assert mg.get_options()["progress"] is False
        assert ctx.previous == {"progress": before["progress"]}
        with mg.set_options(progress=True):
            assert progress_enabled()
        assert not progress_enabled()
    assert mg.get_options() == before
    mg.set_options(progress=True)
    try:
        assert mg.get_options()["progress"] is True
    finally:
        mg.set_options(progress=before["progress"])
    options = mg.get_options()
    options["progress"] = "changed"
    assert mg.get_options() == before


def test_unknown_options_and_bad_values_name_the_accepted_ones():
    accepted = r"progres.*accepted: \['log_level', 'progress'\].*did you mean 'progress'"
    with pytest.raises(mg.OptionError, match=accepted):
        mg.set_options(progres=False)
    with pytest.raises(mg.OptionError, match="True, False or 'auto'"):
        mg.set_options(progress="yes")
    with pytest.raises(ValueError, match="'DEBUG', 'INFO', 'WARNING'"):
        mg.set_options(log_level="LOUD")
    with pytest.raises(mg.OptionError):
        mg.set_options(progress=1)
    assert mg.get_options()["progress"] != "yes"


def test_log_level_is_applied_and_the_applications_level_restored():
    package = logging.getLogger("memories_geo")
    before = package.level
    package.setLevel(logging.ERROR)
    try:
        with mg.set_options(progress=False):
            assert package.level == logging.ERROR
        with mg.set_options(log_level="debug"):
            assert mg.get_options()["log_level"] == "DEBUG"
            assert package.level == logging.DEBUG
            with mg.set_options(log_level="INFO"):
                assert package.level == logging.INFO
            assert package.level == logging.DEBUG
        assert package.level == logging.ERROR
        assert mg.get_options()["log_level"] is None
    finally:
        package.setLevel(before)


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MEMORIES_GEO_")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**environ, **env}, timeout=120, check=False)


def test_environment_sets_the_starting_values():
    code = "import memories_geo as mg; print(mg.get_options())"
    assert _python(code).stdout.strip() == "{'progress': 'auto', 'log_level': None}"
    set_by_env = _python(code, MEMORIES_GEO_PROGRESS="0", MEMORIES_GEO_LOG_LEVEL="debug").stdout
    assert set_by_env.strip() == "{'progress': False, 'log_level': 'DEBUG'}"
    code = "import memories_geo as mg\nprint('imported')\nmg.get_options()"
    bad = _python(code, MEMORIES_GEO_PROGRESS="maybe")
    assert bad.stdout == "imported\n"
    assert "ConfigError: MEMORIES_GEO_PROGRESS='maybe' is not valid; accepted: 1, 0 or auto" in bad.stderr


def test_log_level_prints_to_stderr_when_the_application_configured_no_logging(tmp_path):
    code = f"""
        import geopandas, shapely, memories_geo as mg
        mem = mg.Memory({str(tmp_path / "home")!r})
        mem.save(geopandas.GeoDataFrame(geometry=[shapely.Point(1, 2)], crs=4326), "pts")
        mg.set_options(log_level=None)
        mem.delete("pts")
        """
    run = _python(code, MEMORIES_GEO_LOG_LEVEL="INFO")
    assert run.returncode == 0, run.stderr
    saved = r"INFO memories_geo\.versions: saved pts v1 \(geoparquet on hot, \d+ bytes\)"
    assert re.search(saved, run.stderr)
    assert "deleted" not in run.stderr
    assert "DEBUG" not in run.stderr
    quiet = _python(code)
    assert quiet.returncode == 0
    assert quiet.stderr == ""


# -- progress -------------------------------------------------------------------------------


def test_progress_bar_shows_bytes_rate_and_time_left(capsys):
    with mg.set_options(progress=True), progress_bar(3 * 1024**2, "copy demo") as bar:
        for _ in range(3):
            bar.update(1024**2)
    err = capsys.readouterr().err
    assert "copy demo" in err
    assert "100%" in err
    assert "3.00M/3.00M" in err
    assert "B/s" in err
    assert bar.n == 3 * 1024**2


def test_progress_is_quiet_when_off_and_in_auto_mode_without_a_terminal(capsys):
    with mg.set_options(progress=False), progress_bar(100, "off") as bar:
        bar.update(100)
    with mg.set_options(progress="auto"), progress_bar(100, "auto") as bar:
        bar.update(100)
    assert bar.n == 100
    assert capsys.readouterr().err == ""


def test_auto_mode_draws_on_a_terminal_once_the_operation_lasts(capsys):
    tty = FakeTTY()
    with mg.set_options(progress="auto"):
        assert progress_enabled(tty)
        assert not progress_enabled(io.StringIO())
        with progress_bar(100, "quick", stream=tty) as bar:
            bar.update(100)
        assert tty.getvalue() == ""
        with progress_bar(100, "slow", stream=tty) as bar:
            time.sleep(0.6)
            bar.update(50)
            bar.update(50)
    assert "slow" in tty.getvalue()
    assert "100/100" in tty.getvalue()


def test_nothing_to_do_draws_nothing(capsys):
    with mg.set_options(progress=True), progress_bar(0, "empty"):
        pass
    assert capsys.readouterr().err == ""


def test_a_failed_operation_leaves_its_bar_unfilled(capsys):
    def fail() -> None:
        with progress_bar(100, "fails") as bar:
            bar.update(40)
            seen.append(bar)
            raise RuntimeError("boom")

    seen = []
    with mg.set_options(progress=True), pytest.raises(RuntimeError):
        fail()
    (bar,) = seen
    assert bar.n == 40
    assert "40.0/100" in capsys.readouterr().err


def test_dask_save_verify_backup_and_restore_show_progress(mem, chunked, tmp_path, capsys):
    persistence = mg.MemoryPersistence(mem, backup_storage=tmp_path / "backup")
    with mg.set_options(progress=True):
        entry = mem.save(chunked, "era5/t2m")
        saved = capsys.readouterr().err
        mem.verify()
        verified = capsys.readouterr().err
        persistence.checkpoints.save("nightly")
        backed_up = capsys.readouterr().err
        path = mem.tiers.backend("hot").full_path(entry.path)
        chunk = next(os.path.join(d, n) for d, _, names in os.walk(path) for n in names if "/c/" in d)
        with open(chunk, "r+b") as f:
            f.write(b"\0\0\0\0")
        persistence.checkpoints.restore("nightly", validate="full")
        restored = capsys.readouterr().err
    assert "save era5/t2m" in saved
    assert re.search(r"100%\|\S+\| (\S+)/\1 \[.*B/s\]", saved)
    assert "verify 1 version(s)" in verified
    assert "100%" in verified
    assert "backup nightly" in backed_up
    assert "100%" in backed_up
    assert "restore era5/t2m v1" in restored
    mem.verify()


def test_cog_dask_save_shows_progress(mem, capsys):
    pytest.importorskip("rioxarray")
    image = sample_raster().t2m.isel(time=0).rename(lat="y", lon="x").expand_dims(band=[1])
    image = image.rio.write_crs("EPSG:4326").chunk({"y": 50})
    with mg.set_options(progress=True):
        mem.save(image, "img", format="cog")
    err = capsys.readouterr().err
    assert "save img" in err
    assert "100%" in err


def test_nothing_is_printed_without_progress(mem, chunked, tmp_path, capsys):
    persistence = mg.MemoryPersistence(mem, backup_storage=tmp_path / "backup")
    for setting in (False, "auto"):
        with mg.set_options(progress=setting):
            key = f"era5/{setting}"
            mem.save(chunked, key)
            mem.verify(key)
            persistence.checkpoints.save(f"cp-{setting}")
            persistence.checkpoints.restore(f"cp-{setting}", validate="full")
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == ""


def test_progress_over_a_distributed_client(capsys):
    distributed = pytest.importorskip("distributed")
    import dask.array as da

    cluster = distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None)
    with cluster, mg.set_options(progress=True):
        (total,) = compute(da.ones((400, 400), chunks=100).sum(), nbytes=400 * 400 * 8, desc="on cluster")
    assert float(total) == 160000
    err = capsys.readouterr().err
    assert "on cluster" in err
    assert "1.22M/1.22M" in err


# -- logging ---------------------------------------------------------------------------------


def test_one_info_line_per_committed_operation(mem, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="memories_geo")
    mem.save(_gdf(), "pts")
    mem.save(_gdf(5), "pts", mode="w")
    mem.delete("pts", version=1)
    persistence = mg.MemoryPersistence(mem, backup_storage=tmp_path / "backup")
    cp = persistence.checkpoints.save("nightly")
    mem.save(_gdf(7), "pts", mode="w")
    persistence.checkpoints.restore("nightly")
    persistence.checkpoints.verify("nightly")
    mem.verify()
    mem.recover()
    recovery = mg.RecoveryManager(storage=mem, backup_storage=tmp_path / "backup")
    recovery.recover_latest()
    recovery.rebuild_catalog(force=True)
    persistence.checkpoints.delete(cp.id)
    mem.delete("pts")
    lines = _messages(caplog)
    expected = [
        r"saved pts v1 \(geoparquet on hot, \d+ bytes\)",
        r"saved pts v2 ",
        r"deleted pts v1",
        rf"checkpoint nightly saved \({cp.id}, manual\): 1 key\(s\), \d+ bytes; 1 version\(s\) copied",
        r"saved pts v3 ",
        r"checkpoint before-restore-nightly saved \([\w-]+, safety\)",
        rf"checkpoint nightly restored \({cp.id}\): 1 key\(s\)",
        rf"checkpoint nightly verified \({cp.id}\): intact",
        r"verified 1 version\(s\) \(\d+ bytes\): intact",
        r"recovered: removed 0 orphan\(s\)",
        rf"recovered from checkpoint nightly \({cp.id}\); 0 newer",
        r"catalog rebuilt: \d+ version\(s\), 1 key\(s\), 0 unverifiable, old catalog moved to ",
        rf"checkpoint nightly deleted \({cp.id}\)",
        r"deleted pts \(\d+ version\(s\)\)",
    ]
    it = iter(lines)
    for pattern in expected:
        assert any(re.match(pattern, line) for line in it), (pattern, lines)
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name.startswith("memories_geo"))


def test_debug_lines_time_every_backend_call(mem, caplog):
    caplog.set_level(logging.DEBUG, logger="memories_geo")
    entry = mem.save(_gdf(), "pts")
    mem.info("pts")
    mem.recover()
    mem.delete("pts")
    files = [r for r in caplog.records if r.name == "memories_geo.backends.files"]
    debug = [r for r in files if r.levelno == logging.DEBUG]
    assert debug
    assert all(TIMING.search(r.getMessage()) for r in debug)
    calls = " ".join(r.getMessage() for r in debug)
    for operation in ("write_bytes", "exists", "listdir", "version_paths", "remove"):
        assert f": {operation}" in calls
    assert f"{entry.path}.record.json" in calls


def test_backup_copies_are_timed(mem, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="memories_geo")
    mem.save(_gdf(), "pts")
    mg.MemoryPersistence(mem, backup_storage=tmp_path / "backup").checkpoints.save("b")
    copies = [r.getMessage() for r in caplog.records if r.getMessage().startswith("copy ")]
    assert copies
    assert all(TIMING.search(m) and " bytes) " in m for m in copies)


def test_failed_calls_are_logged_with_their_duration(caplog):
    caplog.set_level(logging.DEBUG, logger="memories_geo")
    backend = FileBackend("memory://mg-debug-fail")
    with pytest.raises(FileNotFoundError):
        backend.read_bytes("missing")
    (line,) = [r.getMessage() for r in caplog.records if "read_bytes" in r.getMessage()]
    assert re.search(r"read_bytes 'missing' failed after \d+\.\d ms \(FileNotFoundError\)$", line)


@pytest.mark.postgres
def test_postgres_calls_are_timed_and_never_show_the_password(postgres_dsn, caplog):
    from memories_geo.backends.postgres import PostgresBackend

    canary = "pg-canary-Zq81"
    caplog.set_level(logging.DEBUG)
    backend = PostgresBackend(postgres_dsn, {"password": canary, "schema": "mg_logging"})
    try:
        backend.write_bytes("k/@v/x.record.json", b"{}")
        assert backend.read_bytes("k/@v/x.record.json") == b"{}"
        assert backend.exists("k")
        assert backend.listdir("k") == ["@v"]
        backend.remove("k")
    finally:
        backend.close()
    calls = [r.getMessage() for r in caplog.records if r.name == "memories_geo.backends.postgres.backend"]
    for operation in ("write_bytes", "read_bytes", "exists", "listdir", "remove"):
        assert any(f"#mg_logging: {operation}" in m and TIMING.search(m) for m in calls), operation
    assert any("connection pool opened" in r.getMessage() for r in caplog.records)
    assert all(canary not in r.getMessage() for r in caplog.records)


def test_no_credential_in_any_log_line(s3_service, tmp_path, caplog):
    secret = s3_service.options["secret"]
    mem = mg.Memory(mg.StorageConfig.from_dict({
        "home": str(tmp_path / "home"), "default_tier": "warm",
        "tiers": {"warm": {"url": f"{s3_service.url}/logs", "storage_options": s3_service.options}},
    }))
    caplog.set_level(logging.DEBUG)
    mem.save(_gdf(), "pts")
    mem.open("pts")
    mem.verify()
    mg.MemoryPersistence(mem, backup_storage=tmp_path / "backup").checkpoints.save()
    mem.delete("pts")
    assert any(r.name.startswith("memories_geo.backends") for r in caplog.records)
    for record in caplog.records:
        assert secret not in record.getMessage(), record.name
    assert secret not in caplog.text


# -- unreachable services ------------------------------------------------------------------


def _dead_endpoint() -> str:
    return f"127.0.0.1:{free_port()}"


def _assert_unreachable(call, endpoint, *, fix, secret=None):
    start = time.monotonic()
    with pytest.raises(mg.TierUnavailableError) as info:
        call()
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert elapsed < 10, elapsed
    assert endpoint in message
    assert fix in message
    if secret:
        assert secret not in message
    assert info.value.__suppress_context__
    return message


def test_a_dead_s3_endpoint_fails_fast_naming_it(tmp_path):
    endpoint = _dead_endpoint()
    options = {"key": "k", "secret": "s3-canary-secret",
               "client_kwargs": {"endpoint_url": f"http://{endpoint}", "region_name": "us-east-1"}}
    mem = mg.Memory(mg.StorageConfig.from_dict({
        "home": str(tmp_path / "home"), "default_tier": "warm",
        "tiers": {"warm": {"url": "s3://bucket/warm", "storage_options": options}},
    }))
    message = _assert_unreachable(lambda: mem.save(_gdf(), "pts"), f"http://{endpoint}",
                                  fix="check endpoint_url in storage_options", secret="s3-canary-secret")
    assert "s3://bucket/warm" in message
    assert len(mem.ls()) == 0


def test_an_s3_endpoint_that_stops_answering_fails_fast_naming_it():
    listener = socket.create_server(("127.0.0.1", 0))
    endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
    backend = FileBackend("s3://bucket/x", {"key": "k", "secret": "s",
                                            "client_kwargs": {"endpoint_url": endpoint}})
    assert backend.fs is not None
    listener.close()
    _assert_unreachable(lambda: backend.exists("a"), endpoint, fix="check endpoint_url in storage_options")
    assert backend.storage_options["config_kwargs"] == {
        "connect_timeout": 5, "retries": {"max_attempts": 2, "mode": "standard"}}


def test_s3_client_settings_of_the_user_are_kept():
    own = {"retries": {"max_attempts": 10}}
    backend = FileBackend("s3://bucket/x", {"config_kwargs": own})
    assert backend.storage_options["config_kwargs"] == {"retries": {"max_attempts": 10}, "connect_timeout": 5}
    assert own == {"retries": {"max_attempts": 10}}


def test_dead_gcs_and_azure_endpoints_fail_fast_naming_them():
    pytest.importorskip("gcsfs")
    pytest.importorskip("adlfs")
    endpoint = _dead_endpoint()
    gcs = FileBackend("gs://bucket/x", {"token": "anon", "endpoint_url": f"http://{endpoint}"})
    _assert_unreachable(lambda: gcs.exists("a"), f"http://{endpoint}",
                        fix="check endpoint_url in storage_options")
    connection = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                  f"BlobEndpoint=http://{endpoint}/{AZURITE_ACCOUNT};")
    azure = FileBackend("az://container/x", {"connection_string": connection})
    _assert_unreachable(lambda: azure.listdir(""), f"http://{endpoint}/{AZURITE_ACCOUNT}",
                        fix="BlobEndpoint of connection_string", secret=AZURITE_KEY)


def test_a_dead_postgres_server_fails_fast_naming_it(tmp_path):
    pytest.importorskip("psycopg_pool")
    from memories_geo.backends.postgres import PostgresBackend

    endpoint = _dead_endpoint()
    backend = PostgresBackend(f"postgresql://me:pg-canary@{endpoint}/gis")
    _assert_unreachable(lambda: backend.exists("a"), f"postgresql://me:***@{endpoint}/gis",
                        fix="check the host and port in the tier URL", secret="pg-canary")
    mem = mg.Memory(mg.StorageConfig.from_dict({
        "home": str(tmp_path / "home"), "default_tier": "db",
        "tiers": {"db": {"url": f"postgresql://me@{endpoint}/gis",
                         "storage_options": {"password": "pg-canary"}}},
    }))
    _assert_unreachable(lambda: mem.save(_gdf(), "pts"), endpoint, fix="PostgreSQL server is running",
                        secret="pg-canary")


# -- checkpoint names ---------------------------------------------------------------------


def test_unnamed_checkpoints_get_a_timestamped_name(mem):
    mem.save(_gdf(), "pts")
    first = mem.checkpoints.save()
    second = mem.checkpoints.save()
    assert re.fullmatch(r"cp-\d{8}T\d{6}Z", first.name)
    assert second.name != first.name
    assert re.fullmatch(r"cp-\d{8}T\d{6}Z(-\d+)?", second.name)
    assert mem.checkpoints.get("latest").id == second.id


@pytest.mark.parametrize("name", ["latest", "current", " Latest", ""])
def test_aliases_and_empty_names_are_refused(mem, name):
    mem.save(_gdf(), "pts")
    reason = "'latest' and 'current' are reserved" if name.strip() else "non-empty"
    with pytest.raises(ValueError, match=reason):
        mem.checkpoints.save(name)
    with pytest.raises(mg.OptionError):
        mem.checkpoints.save(name)
    assert mem.checkpoints.list() == []
