"""The ``memories-geo`` command line, driven as a user drives it: a subprocess per command.

Every run checks that stderr holds no traceback. Collections are made once per module and
shared by the read-only commands; destructive commands get their own copy.
"""

from __future__ import annotations

import doctest
import json
import os
import pty
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import memories_geo as mg
from memories_geo.examples import sample_vector

CLI = [sys.executable, "-m", "memories_geo.cli"]
DOCS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
REFERENCE_START = "<!-- reference:"
REFERENCE_END = "<!-- end of reference -->"
CANARY_KEY = "AKIAMGCANARY0001"
CANARY_SECRET = "mg-canary-secret-6d1f"
CANARY_PASSWORD = "mg-canary-pw-91c2"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMORIES_GEO_", "AWS_"))}
    env.pop("COLUMNS", None)
    return env


def run(
    *args: str, config: Path | str | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI without a terminal on stdin; stderr never holds a traceback."""
    prefix = ["--config", str(config)] if config is not None else []
    done = subprocess.run(
        [*CLI, *prefix, *args],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def run_many(*commands: Sequence[str], config: Path | None = None) -> list[subprocess.CompletedProcess[str]]:
    """Run independent read-only commands side by side."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        return list(pool.map(lambda args: run(*args, config=config), commands))


def run_in_terminal(*args: str, answer: str, config: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI with a pseudo-terminal on stdin and type ``answer`` to its question."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [*CLI, "--config", str(config), *args],
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        os.close(follower)
        os.write(leader, f"{answer}\n".encode())
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(leader)
    assert "Traceback" not in err, err
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def cli(capsys: pytest.CaptureFixture[str], *args: str, config: Path | None = None) -> tuple[int, str, str]:
    """Run :func:`memories_geo.cli.main` in this process: exit status, stdout, stderr."""
    from memories_geo.cli import main

    capsys.readouterr()
    code = main([*(["--config", str(config)] if config is not None else []), *args])
    out, err = capsys.readouterr()
    return code, out, err


def _error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("memories-geo: error:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collection: ``countries`` (two versions, hot), ``places`` (warm), checkpoint ``base``."""
    path = tmp_path_factory.mktemp("cli") / "home"
    mem = mg.Memory(path)
    countries = sample_vector()
    mem.save(countries, "countries", tier="hot", tags=["qc"])
    mem.save(countries.head(20), "countries", tier="hot", mode="w")
    mem.save(countries.head(5), "places", tier="warm")
    mem.checkpoints.save("base")
    return path


@pytest.fixture
def own_home(home: Path, tmp_path: Path) -> Path:
    """A private copy of the shared collection, for commands that change it."""
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    return copy


# -- help, version, usage ------------------------------------------------------------


def _commands() -> Iterator[tuple[list[str], object]]:
    import typer

    from memories_geo.cli import app

    def walk(command: object, path: list[str]) -> Iterator[tuple[list[str], object]]:
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


def test_every_command_and_argument_has_help_with_an_example():
    seen = []
    for path, command in _commands():
        seen.append(" ".join(path))
        assert getattr(command, "help", None), f"{path}: no help"
        if path and not hasattr(command, "commands"):
            assert re.match(r"Example: (\S+=\S+ )?memories-geo ", command.epilog or ""), f"{path}: no example"  # type: ignore[attr-defined]
        for param in command.params:  # type: ignore[attr-defined]
            if param.name in ("help",):
                continue
            assert param.help, f"{path} {param.name}: no help"
            takes_value = not getattr(param, "is_flag", False) and not getattr(param, "count", False)
            if takes_value:
                assert "e.g." in param.help, f"{path} {param.name}: no example in {param.help!r}"
    for expected in (
        "ls",
        "info",
        "versions",
        "search",
        "delete",
        "verify",
        "du",
        "quickstart",
        "recover",
        "config show",
        "checkpoint save",
        "checkpoint list",
        "checkpoint restore",
        "checkpoint verify",
        "checkpoint diff",
        "checkpoint delete",
    ):
        assert expected in seen


def test_help_version_and_usage_errors(capsys):
    top, group, version, bogus = run_many(["--help"], ["checkpoint", "--help"], ["--version"], ["bogus"])
    assert top.returncode == 0
    for name in (
        "ls",
        "info",
        "versions",
        "search",
        "delete",
        "verify",
        "du",
        "quickstart",
        "recover",
        "checkpoint",
        "config",
    ):
        assert re.search(rf"^\W*{name}\s", top.stdout, re.M), name
    assert group.returncode == 0
    assert "restore" in group.stdout
    assert version.returncode == 0
    assert re.fullmatch(r"memories-geo \d+\.\d+\S* \(Python 3\.\d+\.\d+\)\n", version.stdout)
    assert bogus.returncode == 2
    assert "No such command 'bogus'" in bogus.stderr
    for path, _ in _commands():
        code, out, _ = cli(capsys, *path, "--help")
        assert code == 0
        assert f"Usage: memories-geo {' '.join(path)}".strip() in out
    assert "--bbox -10 35 5 45" in cli(capsys, "search", "--help")[1]
    code, out, err = cli(capsys)
    assert code == 2
    assert "Usage: memories-geo" in out + err


def test_console_script_runs_main():
    script = Path(sys.executable).with_name("memories-geo")
    if not script.exists():
        pytest.skip(f"{script} is not installed (pip install -e .)")
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, env=_env(), check=True)
    assert done.stdout.startswith("memories-geo ")


# -- listing commands: --json in a subprocess, tables ------------------------------------------


def test_listing_commands_print_json(home):
    outs = run_many(
        ["ls", "count*", "--tier", "hot", "--json"],
        ["info", "countries", "--json"],
        ["versions", "countries", "--json"],
        ["search", "--bbox", "-10", "35", "5", "45", "--json"],
        ["checkpoint", "list", "--json"],
        ["checkpoint", "diff", "base", "--json"],
        ["du", "--json"],
        ["config", "show", "--json"],
        config=home,
    )
    assert [done.returncode for done in outs] == [0] * len(outs), [d.stderr for d in outs]
    ls_hot, info, versions, search, checkpoints, diff, du, config = (json.loads(d.stdout) for d in outs)
    assert [e["key"] for e in ls_hot] == ["countries"]
    assert ls_hot[0]["version"] == 2
    assert ls_hot[0]["size_bytes"] > 0
    assert len(ls_hot[0]["bbox"]) == 4
    assert info["key"] == "countries"
    assert info["format"] == "geoparquet"
    assert info["shape"] == {"rows": 20}
    assert [(v["version"], v["current"]) for v in versions] == [(1, False), (2, True)]
    assert {e["key"] for e in search} == {"countries", "places"}
    assert [cp["name"] for cp in checkpoints] == ["base"]
    assert checkpoints[0]["keys"] == 2
    assert diff == {"from": "base", "to": "current", "changes": []}
    assert [t["tier"] for t in du["tiers"]][:2] == ["hot", "warm"]
    assert du["tiers"][0]["versions"] == 2
    assert du["total"] == {"keys": 2, "versions": 3, "bytes": sum(t["bytes"] for t in du["tiers"]),
                           "objects": sum(t["objects"] for t in du["tiers"])}
    assert du["tiers"][0]["objects"] >= 2
    assert du["tiers"][0]["available_bytes"] > 0
    assert config["default_tier"] == "hot"
    assert set(config["tiers"]) >= {"hot", "warm", "cold", "glacier"}


def test_listing_commands_print_tables(home, capsys):
    code, ls, _ = cli(capsys, "ls", config=home)
    assert code == 0
    assert re.search(
        r"countries\s+v2\s+hot\s+geoparquet\s+vector\s+\d+\.\d KiB\s+\d{4}-\d\d-\d\d \d\d:\d\d", ls
    )
    assert "places" in ls
    code, info, _ = cli(capsys, "info", "countries", config=home)
    assert re.search(r"size\s+\d+\.\d KiB \([\d,]+ bytes\)", info)
    assert re.search(r"created\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(", info)
    code, versions, _ = cli(capsys, "versions", "countries", config=home)
    assert re.search(r"^\W*\*\s+v2", versions, re.M)
    assert re.search(r"^\W*v1", versions, re.M)
    code, du, _ = cli(capsys, "du", config=home)
    assert re.search(r"hot\s+1\s+2\s+\d+\s+\d+\.\d KiB\s+[\d,]+\s+\d+\.\d [KMGT]iB\s+\d+\.\d %", du), du
    assert re.search(r"total\s+2\s+3\s", du), du
    code, out, _ = cli(capsys, "ls", "--json", config=home)
    assert [e["key"] for e in json.loads(out)] == ["countries", "places"]
    code, out, _ = cli(
        capsys, "search", "--time", "2024-01/2024-06", "--kind", "raster", "--json", config=home
    )
    assert code == 0
    assert json.loads(out) == []
    code, out, _ = cli(capsys, "checkpoint", "list", config=home)
    assert re.search(r"base\s+\S+\s+\d{4}-\d\d-\d\d \d\d:\d\d\s+manual\s+2\s", out), out


def test_usage_errors_exit_2(home, capsys):
    done = run("ls", "--tier", "nope", config=home)
    assert done.returncode == 2
    assert "unknown tier 'nope'" in done.stderr
    for args, expected in [
        (["search", "--time", "yesterday"], "'yesterday'"),
        (["search", "--kind", "nope"], "--kind"),
        (["search", "--bbox", "1", "2", "3"], "--bbox"),
        (["info", "../etc"], "invalid key"),
        (["checkpoint", "delete"], "Missing argument"),
        (["ls", "--bogus"], "--bogus"),
    ]:
        code, _, err = cli(capsys, *args, config=home)
        assert code == 2, (args, err)
        assert expected in err, (args, err)
        assert "Traceback" not in err


def test_runtime_errors_exit_1_with_one_line(home, tmp_path, capsys):
    done = run("info", "nope", config=home)
    assert done.returncode == 1
    assert "'nope'" in _error_line(done)
    assert "memories-geo ls" in done.stderr
    code, _, err = cli(capsys, "checkpoint", "verify", "nope", config=home)
    assert code == 1
    assert "base" in err
    assert len(err.splitlines()) == 1
    code, _, err = cli(capsys, "ls", config=tmp_path / "nope.toml")
    assert code == 1
    assert "nope.toml" in err
    assert len(err.splitlines()) == 1


def test_config_show_masks_secrets(tmp_path, capsys):
    config = tmp_path / "memories.toml"
    config.write_text(f"""
home = "home"
catalog = "home/catalog.sqlite"
[tiers.cold]
url = "s3://bucket/cold"
storage_class = "GLACIER_IR"
[tiers.cold.storage_options]
key = "{CANARY_KEY}"
secret = "{CANARY_SECRET}"
client_kwargs = {{ endpoint_url = "http://minio:9000" }}
[tiers.vectors]
url = "postgresql://me:{CANARY_PASSWORD}@db:5432/geo"
""")
    as_json = run("config", "show", "--json", config=config)
    code, table, _ = cli(capsys, "config", "show", config=config)
    assert as_json.returncode == code == 0
    for text in (table, as_json.stdout):
        assert CANARY_KEY not in text
        assert CANARY_SECRET not in text
        assert CANARY_PASSWORD not in text
    assert "http://minio:9000" in table
    assert "GLACIER_IR" in table
    shown = json.loads(as_json.stdout)
    assert shown["source"] == f"--config {config}"
    assert shown["tiers"]["cold"]["storage_options"] == {
        "key": "***",
        "secret": "***",
        "client_kwargs": {"endpoint_url": "http://minio:9000"},
    }
    assert shown["tiers"]["vectors"]["url"] == "postgresql://me:***@db:5432/geo"


# -- destructive commands ask first --------------------------------------------------------


def test_destructive_commands_refuse_without_a_terminal_or_yes(own_home, capsys):
    done = run("delete", "countries", config=own_home)
    assert done.returncode == 2
    assert "pass --yes" in _error_line(done)
    for args in (
        ["checkpoint", "delete", "base"],
        ["checkpoint", "restore", "base"],
        ["recover"],
        ["delete", "countries", "--version", "1"],
    ):
        code, _, err = cli(capsys, *args, config=own_home)
        assert code == 2, (args, err)
        assert "pass --yes" in err, (args, err)
    mem = mg.Memory(own_home)
    assert [(e.key, e.version) for e in mem.catalog.current_entries()] == [("countries", 2), ("places", 1)]
    assert len(mem.versions("countries")) == 2
    assert [cp.name for cp in mem.checkpoints.list()] == ["base"]


def test_delete_asks_at_a_terminal(own_home):
    declined = run_in_terminal("delete", "places", answer="n", config=own_home)
    assert declined.returncode == 1
    assert "Delete 'places' and its 1 version(s)" in declined.stdout
    assert mg.Memory(own_home).info("places").version == 1
    accepted = run_in_terminal("delete", "places", answer="y", config=own_home)
    assert accepted.returncode == 0, accepted.stderr
    assert "deleted places v1" in accepted.stdout
    assert [e.key for e in mg.Memory(own_home).catalog.current_entries()] == ["countries"]


def test_checkpoint_round_trip(own_home, capsys):
    saved = run("checkpoint", "save", "-m", "cli test", config=own_home)
    assert saved.returncode == 0, saved.stderr
    name = re.search(r"saved checkpoint (cp-\d{8}T\d{6}Z) ", saved.stdout)
    assert name, saved.stdout
    for reserved in ("latest", "current", "Latest"):
        code, _, err = cli(capsys, "checkpoint", "save", reserved, config=own_home)
        assert code == 2
        assert "reserved" in err
    assert cli(capsys, "delete", "countries", "--version", "1", "--yes", config=own_home)[0] == 0
    code, out, _ = cli(capsys, "checkpoint", "verify", "base", "--full", config=own_home)
    assert code == 0
    assert "verified" in out
    deleted = run("delete", "places", "--yes", config=own_home)
    assert deleted.returncode == 0
    assert "deleted places v1" in deleted.stdout
    code, out, _ = cli(capsys, "checkpoint", "diff", "base", config=own_home)
    assert re.search(r"places\s+removed\s+v1 \(", out), out
    restored = run("checkpoint", "restore", "base", "--yes", config=own_home)
    assert restored.returncode == 0, restored.stderr
    assert mg.Memory(own_home).info("places").version == 1
    dropped = run("checkpoint", "delete", name.group(1), "--yes", config=own_home)
    assert dropped.returncode == 0
    assert f"deleted checkpoint {name.group(1)}" in dropped.stdout
    code, out, _ = cli(capsys, "checkpoint", "list", "--json", config=own_home)
    names = [cp["name"] for cp in json.loads(out)]
    assert name.group(1) not in names
    assert "base" in names
    assert "before-restore-base" in names


def test_verify_and_recover(own_home, capsys):
    code, out, _ = cli(capsys, "verify", "--all-versions", config=own_home)
    assert code == 0
    assert "verified 3 version(s)" in out
    recovered = run("recover", "--yes", config=own_home)
    assert recovered.returncode == 0
    assert "0 orphan(s) removed" in recovered.stdout
    entry = mg.Memory(own_home).info("places")
    stored = next(p for p in (own_home / entry.tier).rglob("*.parquet") if entry.version_id in p.name)
    stored.write_bytes(b"not what was saved")
    broken = run("verify", config=own_home)
    assert broken.returncode == 1
    assert "places" in broken.stderr


def test_quickstart(tmp_path):
    done = run("quickstart", config=tmp_path / "home", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "-> ['examples/t2m-2024']" in done.stdout
    assert re.search(r"examples/countries\s+v1\s+warm", done.stdout)
    mem = mg.Memory(tmp_path / "home")
    assert sorted(e.key for e in mem.catalog.current_entries()) == ["examples/countries", "examples/t2m-2024"]


# -- unreachable storage: fast, one line, the endpoint named, no credentials -------------------


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port bound on 127.0.0.1 with nobody listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def _unreachable(done: subprocess.CompletedProcess[str], seconds: float, endpoint: str) -> None:
    assert seconds < 10, f"took {seconds:.1f} s"
    assert done.returncode == 1, done.stderr
    line = _error_line(done)
    assert endpoint in line, line
    for secret in (CANARY_KEY, CANARY_SECRET, CANARY_PASSWORD):
        assert secret not in done.stderr + done.stdout


def test_unreachable_s3_endpoint(home, tmp_path, dead_port):
    config = tmp_path / "memories.toml"
    config.write_text(f"""
home = "{home}"
[tiers.hot]
url = "s3://bucket/mg"
[tiers.hot.storage_options]
key = "{CANARY_KEY}"
secret = "{CANARY_SECRET}"
[tiers.hot.storage_options.client_kwargs]
endpoint_url = "http://127.0.0.1:{dead_port}"
region_name = "us-east-1"
""")
    start = time.monotonic()
    done = run("verify", "countries", config=config)
    _unreachable(done, time.monotonic() - start, f"127.0.0.1:{dead_port}")


def test_unreachable_postgresql_server(tmp_path, dead_port):
    config = tmp_path / "memories.toml"
    config.write_text(f"""
home = "home"
[tiers.warm]
url = "postgresql://me:{CANARY_PASSWORD}@127.0.0.1:{dead_port}/geo"
""")
    start = time.monotonic()
    done = run("recover", "--yes", config=config)
    _unreachable(done, time.monotonic() - start, f"127.0.0.1:{dead_port}")


# -- in-process: main() returns the status, errors of the storage SDKs become sentences ------------


def test_sdk_errors_name_the_endpoint_and_tier_without_credentials():
    import botocore.exceptions
    import psycopg

    from memories_geo.cli.failures import describe

    config = mg.StorageConfig.from_dict(
        {
            "tiers": {
                "hot": {
                    "url": "s3://bucket/x",
                    "storage_options": {
                        "secret": CANARY_SECRET,
                        "client_kwargs": {"endpoint_url": "http://10.1.2.3:9000"},
                    },
                },
                "warm": {"url": f"postgresql://me:{CANARY_PASSWORD}@db.example:5433/geo"},
            }
        }
    )
    s3 = describe(
        botocore.exceptions.EndpointConnectionError(
            endpoint_url=f"http://10.1.2.3:9000/bucket/x?secret={CANARY_SECRET}"
        ),
        config,
    )
    assert s3 is not None
    assert s3.code == 1
    assert "http://10.1.2.3:9000" in s3.message
    assert "tier 'hot'" in s3.message
    assert "fix:" in s3.message
    pg = describe(
        psycopg.OperationalError(
            'connection failed: connection to server at "10.9.8.7", port 5433 failed: '
            f"password {CANARY_PASSWORD} rejected"
        ),
        config,
    )
    assert pg is not None
    assert "10.9.8.7:5433" in pg.message
    assert "tier 'warm'" in pg.message
    for failure in (s3, pg):
        assert CANARY_SECRET not in failure.message
        assert CANARY_PASSWORD not in failure.message
        assert "\n" not in failure.message
    assert describe(KeyError("a bug")) is None
    assert describe(ValueError("a bug elsewhere")) is None


def test_docstring_examples_of_the_cli_modules():
    import importlib
    import pkgutil

    import memories_geo.cli

    failed = 0
    for info in pkgutil.iter_modules(memories_geo.cli.__path__, "memories_geo.cli."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        failed += doctest.testmod(module, extraglobs={"mg": mg}, optionflags=doctest.ELLIPSIS).failed
    failed += doctest.testmod(memories_geo.cli, optionflags=doctest.ELLIPSIS).failed
    assert failed == 0


# -- docs/cli.md: its sessions run, its reference is the app's ---------------------------------


def console_sessions(text: str) -> list[tuple[int, list[str], str]]:
    """``(line, argv, expected output)`` of each ``$ memories-geo ...`` line in the console blocks."""
    found: list[tuple[int, list[str], list[str]]] = []
    in_block = False
    for number, line in enumerate(text.split(REFERENCE_START)[0].splitlines(), 1):
        if line.startswith("```"):
            in_block = not in_block and line.strip() == "```console"
        elif in_block and line.startswith("$ memories-geo"):
            found.append((number, shlex.split(line[2:])[1:], []))
        elif in_block and found:
            found[-1][2].append(line)
    return [(number, argv, "\n".join(lines) + "\n") for number, argv, lines in found]


def test_docs_sessions_print_what_the_page_shows(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEMORIES_GEO_HOME", str(tmp_path / ".memories"))
    monkeypatch.delenv("MEMORIES_GEO_CONFIG", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)
    sessions = console_sessions(DOCS_PAGE.read_text(encoding="utf-8"))
    assert len(sessions) >= 10
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    problems = []
    for number, argv, expected in sessions:
        _, out, err = cli(capsys, *argv)
        if not checker.check_output(expected, out + err, flags):
            problems.append(
                f"docs/cli.md:{number}: memories-geo {shlex.join(argv)}\n"
                f"--- the page shows\n{expected}--- the command printed\n{out}{err}"
            )
    assert not problems, "\n".join(problems)


def _with_reference(text: str) -> str:
    from memories_geo.cli.reference import markdown

    head, rest = text.split(REFERENCE_START, 1)
    marker, _ = rest.split("-->", 1)
    _, tail = rest.split(REFERENCE_END, 1)
    return f"{head}{REFERENCE_START}{marker}-->\n\n{markdown(level=3)}\n{REFERENCE_END}{tail}"


def test_docs_reference_is_up_to_date():
    text = DOCS_PAGE.read_text(encoding="utf-8")
    assert text == _with_reference(text), "docs/cli.md: run `python tests/test_cli.py --refresh-docs`"


if __name__ == "__main__":
    if sys.argv[1:] != ["--refresh-docs"]:
        raise SystemExit("usage: python tests/test_cli.py --refresh-docs")
    DOCS_PAGE.write_text(_with_reference(DOCS_PAGE.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"{DOCS_PAGE}: reference refreshed")
