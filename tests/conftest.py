from __future__ import annotations

import os
from pathlib import Path

import pytest

import memories_geo as mg

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IN_CI = os.environ.get("CI") == "true"


def shared_data_path(*parts: str) -> Path:
    """Path inside ../shared/data; skips outside CI when absent, fails in CI."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        message = f"{path} is absent: the shared test data lives beside the repository"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty MEMORIES_GEO_HOME, made the default collection's home."""
    path = tmp_path / "home"
    monkeypatch.setenv("MEMORIES_GEO_HOME", str(path))
    monkeypatch.delenv("MEMORIES_GEO_CONFIG", raising=False)
    mg.set_default(None)
    yield path
    mg.set_default(None)


@pytest.fixture
def memory(home: Path) -> mg.Memory:
    """The default collection, in a temporary home."""
    return mg.default()
