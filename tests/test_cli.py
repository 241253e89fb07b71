import os
import subprocess
import sys

import memories_geo as mg
from memories_geo.cli import main


def test_quickstart_saves_searches_and_prints_the_catalog(tmp_path):
    env = {**os.environ, "MEMORIES_GEO_HOME": str(tmp_path / "home")}
    env.pop("MEMORIES_GEO_CONFIG", None)
    out = subprocess.run(
        [sys.executable, "-m", "memories_geo.cli", "quickstart"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=True,
    ).stdout
    assert "examples/t2m-2024" in out
    assert "examples/countries" in out
    assert "-> ['examples/t2m-2024']" in out
    mem = mg.Memory(tmp_path / "home")
    assert list(mem.ls().key) == ["examples/countries", "examples/t2m-2024"]
    assert mem.verify()


def test_cli_commands(memory, capsys):
    from memories_geo.examples import sample_vector

    mg.save(sample_vector(), "countries")
    assert main(["ls"]) == 0
    assert "countries" in capsys.readouterr().out
    assert main(["info", "countries"]) == 0
    assert "geoparquet" in capsys.readouterr().out
    assert main(["search", "--bbox", "-10", "35", "5", "45"]) == 0
    assert "countries" in capsys.readouterr().out
    assert main(["verify"]) == 0
    assert "all intact" in capsys.readouterr().out
    assert main(["versions", "countries"]) == 0
    assert "v1" in capsys.readouterr().out
    assert main(["info", "nope"]) == 2
    assert "no data stored under key 'nope'" in capsys.readouterr().err
    assert main(["delete", "countries"]) == 0
    assert main(["recover"]) == 0
    assert "0 orphan(s) removed" in capsys.readouterr().out
