"""Lifecycle policies: ``[[lifecycle]]`` parsing, scheduled runs (resumable, dry), the background
runner, promotion on access, and ``memories-geo migrate`` (local tiers, and one S3 tier on moto)."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from geopandas import GeoDataFrame
from geopandas.testing import assert_geodataframe_equal
from shapely.geometry import Point

import memories_geo as mg
from memories_geo.config import StorageConfig, TierConfig
from memories_geo.errors import ConfigError, MigrationError, OptionError
from memories_geo.examples import sample_vector
from memories_geo.lifecycle import MigrationPlan, MigrationStatus, migration_jobs, select_keys
from memories_geo.lifecycle.policies import apply_policies, jobs_for_policies, promote_on_access
from memories_geo.lifecycle.runner import LifecycleRunner
from memories_geo.lifecycle_policy import LifecyclePolicy, check_policies, parse_after

IDLE = {"from": "hot", "to": "warm", "after": "30 days idle"}
PROMOTE = {"from": "warm", "to": "hot", "on_access": True}


def _points(seed: int, n: int = 30) -> GeoDataFrame:
    rng = np.random.default_rng(seed)
    points = [Point(x, y) for x, y in rng.uniform(0, 5, (n, 2))]
    return GeoDataFrame({"v": rng.normal(size=n)}, geometry=points, crs="EPSG:4326")


def _mem(home: Path, *policies: dict[str, Any], **tiers: dict[str, Any]) -> mg.Memory:
    config = {"home": str(home), "tiers": tiers, "lifecycle": list(policies)}
    return mg.Memory(StorageConfig.from_dict(config))


def _age(mem: mg.Memory, key: str, *, created: timedelta, accessed: timedelta | None) -> None:
    """Make ``key``'s versions look saved (and last opened) that long ago."""
    now = datetime.now(UTC)

    def stamp(ago: timedelta) -> str:
        return (now - ago).strftime("%Y-%m-%dT%H:%M:%S.%f")

    with sqlite3.connect(mem.catalog.path) as con:
        con.execute("UPDATE versions SET created_at = ?, last_accessed_at = ? WHERE key = ?",
                    (stamp(created), None if accessed is None else stamp(accessed), key))


def _fill(mem: mg.Memory) -> dict[str, GeoDataFrame]:
    """Four keys on hot: two idle for over 30 days (one never opened), one recent, one old but opened."""
    data = {k: _points(i) for i, k in enumerate(("idle/a", "idle/never", "fresh", "old/opened"))}
    for key, gdf in data.items():
        mem.save(gdf, key, tier="hot")
    _age(mem, "idle/a", created=timedelta(days=100), accessed=timedelta(days=40))
    _age(mem, "idle/never", created=timedelta(days=50), accessed=None)
    _age(mem, "fresh", created=timedelta(days=3), accessed=None)
    _age(mem, "old/opened", created=timedelta(days=200), accessed=timedelta(days=1))
    return data


def _tiers(mem: mg.Memory) -> dict[str, str]:
    return {e.key: e.tier for e in mem.catalog.current_entries()}


# -- parsing ----------------------------------------------------------------------------------


def test_policies_parse_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "memories.toml"
    path.write_text(f"""
home = "{tmp_path / 'home'}"

[[lifecycle]]
from = "hot"
to = "warm"
after = "30 days idle"
kinds = ["raster"]
min_size = "1MB"

[[lifecycle]]
from = "warm"
to = "cold"
after = "1 year"
format = "geoparquet"

[[lifecycle]]
from = "warm"
to = "hot"
on_access = true
""")
    demote, archive, promote = StorageConfig.from_toml(path).lifecycle
    assert demote == LifecyclePolicy("hot", "warm", timedelta(days=30), True, False,
                                     {"kinds": ["raster"], "min_size": "1MB"})
    assert demote.selection_criteria() == {"kinds": ["raster"], "min_size": "1MB",
                                           "last_accessed_before": timedelta(days=30)}
    assert demote.describe() == "hot -> warm after 30 days idle (kinds=['raster'], min_size='1MB')"
    assert archive.selection_criteria() == {"created_before": timedelta(days=365)}
    assert (archive.format, archive.scheduled) == ("geoparquet", True)
    assert archive.describe() == "warm -> cold as geoparquet after 365 days old"
    assert promote.on_access
    assert not promote.scheduled
    assert promote.after is None
    assert promote.to_dict() == {"from": "warm", "to": "hot", "on_access": True}


def test_policies_parse_from_dicts_and_objects(tmp_path: Path) -> None:
    ready = LifecyclePolicy.from_dict({"from": "cold", "to": "glacier", "created_before": "2024-01-01"})
    cfg = StorageConfig.from_dict({"home": str(tmp_path), "lifecycle": [IDLE, ready]})
    assert cfg.lifecycle == (LifecyclePolicy.from_dict(IDLE), ready)
    assert StorageConfig.from_dict({"home": str(tmp_path)}).lifecycle == ()
    assert StorageConfig.embedded(tmp_path).lifecycle == ()
    assert parse_after("12h") == (timedelta(hours=12), False)
    assert parse_after("2 weeks idle") == (timedelta(days=14), True)
    assert parse_after("90 days old") == (timedelta(days=90), False)
    assert parse_after(timedelta(days=2)) == (timedelta(days=2), False)
    policy = LifecyclePolicy.from_dict({**IDLE, "after": "1.5 days idle"})
    assert policy.describe() == "hot -> warm after 36 hours idle"
    deep = LifecyclePolicy.from_dict({"from": "cold", "to": "glacier", "after": "1 year", "reencode": True})
    assert deep.reencode
    assert deep.describe() == "cold -> glacier re-encoded after 365 days old"
    assert LifecyclePolicy.from_dict(deep.to_dict()) == deep


@pytest.mark.parametrize(("policy", "message"), [
    ({**IDLE, "to": "lukewarm"},
     "'lukewarm' is not a configured tier; tiers: ['cold', 'glacier', 'hot', 'warm']"),
    ({**IDLE, "to": "hot"}, "from and to are both 'hot'"),
    ({**IDLE, "after": "thirty days"}, "after must be '30 days idle'"),
    ({**IDLE, "after": "30 fortnights idle"}, "units: seconds, minutes, hours, days"),
    ({**IDLE, "after": 30}, "after must be"),
    ({**IDLE, "when": "later"}, "unknown settings ['when']; accepted: from: "),
    ({"to": "warm", "after": "1 day"}, "needs 'from' and 'to'"),
    ({**PROMOTE, "after": "1 day"}, "takes no 'after', 'format' or 'reencode'"),
    ({**PROMOTE, "reencode": True}, "takes no 'after', 'format' or 'reencode'"),
    ({"from": "hot", "to": "cold", "after": "1 day", "reencode": "yes"}, "reencode must be true or false"),
    ({**PROMOTE, "on_access": "yes"}, "on_access must be true or false"),
    ({"from": "hot", "to": "warm"}, "would move every key of tier 'hot' at every run"),
    ({**IDLE, "kinds": ["image"]}, "unknown kinds ['image']; accepted: ['raster', 'vector'"),
    ({**IDLE, "tags": [1]}, "tags must be a string or a list of strings"),
    ({**IDLE, "min_size": True}, "min_size must be a string such as '100MB'"),
    ({**IDLE, "last_accessed_before": "3 days ago"}, "'after' and last_accessed_before say the same thing"),
    ({**IDLE, "format": ""}, "format must be a format name"),
    ("hot -> warm", "lifecycle[0] must be a table"),
])
def test_bad_policies_are_refused_naming_what_is_accepted(tmp_path: Path, policy: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        StorageConfig.from_dict({"home": str(tmp_path), "lifecycle": [policy]})
    assert message in str(info.value)
    assert "lifecycle[0]" in str(info.value)


def test_bad_policy_lists_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[\[lifecycle\]\] tables"):
        StorageConfig.from_dict({"home": str(tmp_path), "lifecycle": IDLE})
    with pytest.raises(ConfigError, match="a second on_access policy from tier 'warm'"):
        StorageConfig.from_dict({"home": str(tmp_path), "lifecycle": [PROMOTE, {**PROMOTE, "to": "cold"}]})
    with pytest.raises(ConfigError, match="tier 'db' is a database"):
        check_policies([{"from": "db", "to": "hot", "on_access": True}],
                       {"hot": TierConfig(url=tmp_path.as_uri()), "db": TierConfig(url="postgresql://me@localhost/geo")})


# -- scheduled runs ------------------------------------------------------------------------------


def test_apply_policies_moves_exactly_the_idle_keys(tmp_path: Path) -> None:
    mem = _mem(tmp_path / "home", IDLE)
    data = _fill(mem)
    before = {e.key: e.version_id for e in mem.catalog.current_entries()}
    (status,) = apply_policies(mem)
    assert isinstance(status, MigrationStatus)
    assert status.state == "completed"
    assert sorted(status.keys_done) == ["idle/a", "idle/never"]
    assert status.id.startswith("lifecycle-hot-warm-")
    assert status.id.endswith("-00001")
    assert _tiers(mem) == {"idle/a": "warm", "idle/never": "warm", "fresh": "hot", "old/opened": "hot"}
    for key, gdf in data.items():
        assert mem.info(key).version_id == before[key]  # a byte move keeps the version
        assert_geodataframe_equal(mem.open(key), gdf)
    assert apply_policies(mem) == []  # nothing left: no new run in the journal
    assert [s.id for s in migration_jobs(mem)] == [status.id]
    assert jobs_for_policies(mem)[0].id.endswith("-00002")


def test_age_policy_counts_from_the_save(tmp_path: Path) -> None:
    mem = _mem(tmp_path / "home", {"from": "hot", "to": "cold", "after": "90 days old"})
    _fill(mem)
    (status,) = apply_policies(mem)
    assert sorted(status.keys_done) == ["idle/a", "old/opened"]


def test_policies_run_in_order_and_chain(tmp_path: Path) -> None:
    mem = _mem(tmp_path / "home", IDLE, {"from": "warm", "to": "cold", "after": "35 days idle"})
    _fill(mem)
    first, second = apply_policies(mem)
    assert sorted(first.keys_done) == ["idle/a", "idle/never"]
    assert sorted(second.keys_done) == ["idle/a", "idle/never"]
    assert _tiers(mem)["idle/a"] == "cold"
    assert _tiers(mem)["idle/never"] == "cold"


def test_a_dry_run_plans_and_changes_nothing(tmp_path: Path) -> None:
    mem = _mem(tmp_path / "home", IDLE, {"from": "warm", "to": "cold", "after": "1 day idle"})
    _fill(mem)
    tiers = _tiers(mem)
    plans = apply_policies(mem, dry_run=True)
    assert [type(p) for p in plans] == [MigrationPlan, MigrationPlan]
    assert sorted(k.key for k in plans[0].keys) == ["idle/a", "idle/never"]
    assert plans[1].keys == ()
    assert _tiers(mem) == tiers
    assert migration_jobs(mem) == []


def test_an_interrupted_policy_run_resumes_with_its_id(tmp_path: Path) -> None:
    mem = _mem(tmp_path / "home", IDLE)
    _fill(mem)
    store = mem.version_store
    (job,) = jobs_for_policies(mem)
    planned = select_keys(store, job)
    rows = [p.item_row(job.id, i) for i, p in enumerate(planned)]
    store.catalog.create_migration(job.id, job.to_json(), rows)
    store.catalog.finish_migration(job.id, "interrupted", 0.0)  # as a killed run leaves it
    _age(mem, "fresh", created=timedelta(days=60), accessed=None)  # idle now, but not in that run's plan
    assert [j.id for j in jobs_for_policies(mem)] == [job.id]
    (resumed,) = apply_policies(mem)
    assert resumed.id == job.id
    assert resumed.state == "completed"
    assert sorted(resumed.keys_done) == ["idle/a", "idle/never"]
    (fresh,) = apply_policies(mem)
    assert fresh.id.endswith("-00002")
    assert fresh.keys_done == ["fresh"]


def test_a_failing_policy_is_reported_after_the_others_ran(tmp_path: Path) -> None:
    bad = {"from": "hot", "to": "cold", "after": "1 day", "key": "countries", "format": "geojson"}
    mem = _mem(tmp_path / "home", bad, IDLE)
    _fill(mem)
    # GeoJSON stores EPSG:4326: a layer in another CRS does not read back equal
    mem.save(sample_vector().to_crs("EPSG:3857"), "countries", tier="hot")
    _age(mem, "countries", created=timedelta(days=5), accessed=None)
    failed = r"1 lifecycle policy run\(s\) failed: hot -> cold as geojson"
    with pytest.raises(MigrationError, match=failed) as info:
        apply_policies(mem)
    assert isinstance(info.value.status, MigrationStatus)
    assert list(info.value.status.keys_failed) == ["countries"]
    assert _tiers(mem)["countries"] == "hot"
    assert _tiers(mem)["idle/a"] == "warm"  # the second policy ran


# -- the runner ----------------------------------------------------------------------------------


def _wait(condition: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_runner_applies_policies_on_an_interval_and_stops(tmp_path: Path) -> None:
    mem = _mem(tmp_path / "home", IDLE)
    _fill(mem)
    runner = LifecycleRunner(mem, interval=0.2)
    assert not runner.is_running
    with runner:
        assert runner.is_running
        _wait(lambda: runner.runs >= 2)
    assert not runner.is_running
    assert runner.failures == 0
    assert runner.last_error is None
    assert runner.last_run_at is not None
    assert _tiers(mem)["idle/a"] == "warm"
    assert _tiers(mem)["fresh"] == "hot"
    assert len(migration_jobs(mem)) == 1  # later runs found nothing to do
    assert "stopped, every 0.2 s, 1 policy" in repr(runner)
    assert "hot -&gt; warm after 30 days idle" in runner._repr_html_()
    runs = runner.runs
    time.sleep(0.5)
    assert runner.runs == runs
    assert runner.run_once() == []


def test_a_failing_run_is_counted_and_audited_and_the_thread_goes_on(tmp_path: Path) -> None:
    bad = {"from": "hot", "to": "cold", "after": "1 day", "format": "geojson"}
    mem = _mem(tmp_path / "home", bad)
    mem.save(sample_vector().to_crs("EPSG:3857"), "countries", tier="hot")  # GeoJSON stores EPSG:4326
    _age(mem, "countries", created=timedelta(days=5), accessed=None)
    runner = LifecycleRunner(mem, interval=timedelta(seconds=0.1)).start()
    try:
        _wait(lambda: runner.failures >= 2)
        assert runner.is_running
    finally:
        runner.stop()
    assert isinstance(runner.last_error, MigrationError)
    assert "last error: 1 lifecycle policy run(s) failed" in repr(runner)
    runs = [r for r in mem.audit(operation="migrate", outcome="error").to_dict("records")
            if r["detail"].startswith("lifecycle run: MigrationError: 1 lifecycle policy run(s) failed")]
    assert len(runs) >= 2
    with pytest.raises(MigrationError):
        runner.run_once()


def test_the_runner_refuses_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no scheduled lifecycle policy"):
        LifecycleRunner(_mem(tmp_path / "a", PROMOTE))
    with pytest.raises(OptionError, match="interval must be"):
        LifecycleRunner(_mem(tmp_path / "b", IDLE), interval="soon")
    with pytest.raises(OptionError, match="longer than zero"):
        LifecycleRunner(_mem(tmp_path / "c", IDLE), interval=0)


# -- promotion on access --------------------------------------------------------------------------


def test_promotion_on_access_moves_a_warm_key_to_hot(tmp_path: Path) -> None:
    mem = _mem(tmp_path / "home", {**PROMOTE, "kinds": ["vector"]})
    gdf = _points(1)
    mem.save(gdf, "roads", tier="warm")
    mem.save(_points(2), "old", tier="warm")
    mem.save(_points(3), "old", tier="warm", mode="w")
    mem.save(_points(4), "hot-already", tier="hot")
    entry = mem.info("roads")
    moved = promote_on_access(mem, entry)
    assert moved is not None
    assert moved.tier == "hot"
    assert (moved.version_id, moved.version) == (entry.version_id, entry.version)
    assert mem.info("roads").tier == "hot"
    assert_geodataframe_equal(mem.open("roads"), gdf)
    assert promote_on_access(mem, mem.info("old", version=1)) is None  # not the current version
    assert promote_on_access(mem, mem.info("hot-already")) is None  # no policy from hot
    assert mem.info("old").tier == "warm"
    other = _mem(tmp_path / "other", {**PROMOTE, "kinds": ["raster"]})
    other.save(gdf, "roads", tier="warm")
    assert promote_on_access(other, other.info("roads")) is None  # criteria do not match


def test_a_failed_promotion_is_logged_audited_and_not_raised(tmp_path: Path, caplog: Any) -> None:
    mem = _mem(tmp_path / "home", PROMOTE, warm={"retention": {"period": "1 day"}})
    mem.save(_points(1), "kept", tier="warm")
    assert promote_on_access(mem, mem.info("kept")) is None
    assert mem.info("kept").tier == "warm"
    assert "could not promote kept v1 from tier warm to hot on access: RetentionError" in caplog.text
    (record,) = mem.audit(operation="migrate", outcome="error").to_dict("records")
    assert "promotion on access warm -> hot failed" in record["detail"]


# -- an S3 tier (moto) ----------------------------------------------------------------------------


def test_policies_with_an_s3_warm_tier(tmp_path: Path, s3_service: Any) -> None:
    warm = {"url": f"{s3_service.url}/{uuid.uuid4().hex[:8]}/warm", "storage_options": s3_service.options}
    mem = _mem(tmp_path / "home", IDLE, PROMOTE, warm=warm)
    data = _fill(mem)
    (status,) = apply_policies(mem)
    assert sorted(status.keys_done) == ["idle/a", "idle/never"]
    assert mem.info("idle/a").uri.startswith("s3://")
    assert {p.split("/")[0] for p in mem.tiers.backend("warm").version_paths()} == {"idle"}
    moved = promote_on_access(mem, mem.info("idle/a"))
    assert moved is not None
    assert moved.tier == "hot"
    assert_geodataframe_equal(mem.open("idle/a"), data["idle/a"])
    assert not [p for p in mem.tiers.backend("warm").version_paths() if p.startswith("idle/a")]


# -- the command line ------------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *args: str, config: Path | None = None) -> tuple[int, str, str]:
    """Run :func:`memories_geo.cli.main` in this process: exit status, stdout, stderr."""
    from memories_geo.cli import main

    capsys.readouterr()
    code = main([*(["--config", str(config)] if config is not None else []), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_migrate_by_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = tmp_path / "memories.toml"
    toml.write_text(f'home = "{tmp_path / "home"}"\n\n[[lifecycle]]\nfrom = "hot"\nto = "warm"\n'
                    'after = "30 days idle"\n')
    mem = mg.Memory(StorageConfig.from_toml(toml))
    _fill(mem)
    code, out, err = cli(capsys, "migrate", "--policy", "--dry-run", "--json", config=toml)
    assert code == 0, err
    (plan,) = json.loads(out)
    assert plan["dry_run"] is True
    assert sorted(k["key"] for k in plan["keys"]) == ["idle/a", "idle/never"]
    assert _tiers(mem)["idle/a"] == "hot"
    code, out, err = cli(capsys, "migrate", "--policy", config=toml)
    assert code == 0, err
    assert "completed, 100%" in out
    assert "idle/never" in out
    job_id = migration_jobs(mem)[0].id
    code, out, _ = cli(capsys, "migrate", "--status", job_id, "--json", config=toml)
    assert code == 0
    (status,) = json.loads(out)
    assert (status["state"], sorted(status["keys_done"])) == ("completed", ["idle/a", "idle/never"])
    code, out, _ = cli(capsys, "migrate", "--policy", config=toml)
    assert (code, out.strip()) == (0, "nothing to migrate: no key meets the lifecycle policy")
    code, out, _ = cli(capsys, "migrate", "--list", config=toml)
    assert code == 0
    assert job_id in out
    assert "completed" in out


def test_cli_migrate_by_hand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    mem = mg.Memory(home)
    _fill(mem)
    args = ["migrate", "--from", "hot", "--to", "cold", "--key", "idle/*", "--key", "fresh",
            "--idle", "30 days", "--min-size", "1B"]
    code, out, err = cli(capsys, *args, "--dry-run", config=home)
    assert code == 0, err
    assert "(dry run)" in out
    assert "2 key(s)" in out
    assert _tiers(mem)["idle/a"] == "hot"
    code, out, err = cli(capsys, *args, "--json", config=home)
    assert code == 0, err
    (status,) = json.loads(out)
    assert status["state"] == "completed"
    assert sorted(status["keys_done"]) == ["idle/a", "idle/never"]
    assert _tiers(mem) == {"idle/a": "cold", "idle/never": "cold", "fresh": "hot", "old/opened": "hot"}
    code, out, _ = cli(capsys, "migrate", "--resume", status["job"]["id"], config=home)
    assert code == 0
    assert "completed" in out
    code, out, _ = cli(capsys, "migrate", "--from", "cold", "--to", "hot", "--keep-source",
                       "--kind", "vector", "--age", "1 day", "--json", config=home)
    assert code == 0
    assert json.loads(out)[0]["job"]["delete_after_migration"] is False


@pytest.mark.parametrize(("args", "code", "message"), [
    ([], 2, "migrate takes one of --policy, --from TIER --to TIER"),
    (["--policy", "--status", "x"], 2, "got --policy, --status"),
    (["--policy", "--key", "a*"], 2, "--key apply to --from/--to only; --policy takes none of them"),
    (["--from", "hot"], 2, "--from and --to go together"),
    (["--from", "hot", "--to", "warm", "--min-size", "big"], 2, "min_size"),
    (["--from", "hot", "--to", "tepid"], 1, "tepid"),
    (["--status", "no-such-job"], 1, "no migration job 'no-such-job'"),
])
def test_cli_migrate_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int,
                            message: str) -> None:
    got, _out, err = cli(capsys, "migrate", *args, config=tmp_path / "home")
    assert got == code, err
    assert err.startswith("memories-geo: error: ")
    assert message in err
    assert "Traceback" not in err
