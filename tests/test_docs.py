"""The documentation site: code blocks run, notebooks execute, the site builds strictly.

Conventions for code blocks in ``docs/*.md`` (every page, whoever writes it):

- A ```` ```python ```` block **runs**. The blocks of one page run in order, in one fresh
  namespace, in a subprocess whose working directory is an empty temporary directory and
  whose ``$MEMORIES_GEO_HOME`` is a fresh temporary home (so ``mg.save(...)`` writes there).
  A page that needs data makes it, visibly (``memories_geo.examples`` has samples).
- A ```` ```python title="not run: <why>" ```` block is **shown, not run**: the title is
  rendered above the block, so readers see it too. Use it only for code that needs what a
  test cannot have (a server, a cloud account, files of the reader's), and say why.
  Configuration is better shown as ```` ```toml ````.
- A ```` ```text title="Output" ```` block right after a python block is what that block
  prints; the test compares them with doctest's rules (``...`` matches anything, runs of
  whitespace are equal).
- Blocks in other languages (``bash``, ``toml``, ``text``, ...) are not run.

The tutorial notebooks (``docs/tutorials/*.ipynb``) are executed with nbclient on a kernel
running this interpreter (a kernel spec written to a temporary directory, so a clean venv
with ipykernel is enough), each in a fresh home, and must not raise; cells tagged
``figure`` must draw a picture. The committed notebooks keep their outputs (the site shows
them as they are, executing nothing); after editing a notebook, refresh them with::

    python tests/test_docs.py --refresh-notebooks

The site is built from the repository's ``mkdocs.yml`` with ``--strict`` (any warning
fails: a broken link or anchor, a page missing from the nav, a docstring griffe cannot
parse), and the reference tables generated from the code (``docs/hooks/reference.py``)
are checked against the constants they come from.

The pages, the notebooks and the build are independent subprocesses: the first test that
needs one starts all those the selected tests need, a few at a time, to keep the whole
file near a minute on two cores.
"""

from __future__ import annotations

import doctest
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NOTEBOOKS = sorted((DOCS / "tutorials").glob("*.ipynb"))
PAGES = sorted(DOCS.rglob("*.md"))
CELL_TIMEOUT = 120  # seconds per notebook cell
JOB_TIMEOUT = 600  # seconds per page, notebook or build
PARALLEL = 3  # subprocesses at once
NOT_RUN = "not run"
KERNEL = "memories-geo-docs"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")
_TITLE = re.compile(r'title="(?P<title>[^"]*)"')


# -- code blocks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown page."""

    page: str
    line: int  # 1-based line of the opening fence
    language: str
    title: str
    code: str


def code_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, in order."""
    name = str(path.relative_to(DOCS)) if DOCS in path.parents else path.name
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, info = match["indent"], match["fence"], match["info"].strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (
            lines[j].strip().startswith(fence) and not lines[j].strip().strip(fence[0])
        ):
            line = lines[j]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            j += 1
        language = info.split()[0].lstrip(".{") if info else ""
        title = _TITLE.search(info)
        blocks.append(Block(
            page=name, line=i + 1, language=language.lower(),
            title=title["title"] if title else "", code="\n".join(body) + "\n",
        ))
        i = j + 1
    return blocks


@dataclass(frozen=True)
class Step:
    """A python block to run, with the output shown after it (if any)."""

    block: Block
    expected: str | None


def runnable_steps(path: Path) -> list[Step]:
    blocks = code_blocks(path)
    steps = []
    for n, block in enumerate(blocks):
        if block.language not in ("python", "py") or block.title.lower().startswith(NOT_RUN):
            continue
        after = blocks[n + 1] if n + 1 < len(blocks) else None
        expected = None
        if after is not None and after.language == "text" and after.title.lower() == "output":
            expected = after.code
        steps.append(Step(block, expected))
    return steps


def _matches(expected: str, actual: str) -> bool:
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    return doctest.OutputChecker().check_output(expected, actual, flags)


def _fresh_env(tmp: Path, *, mpl_backend: str | None = "Agg") -> dict[str, str]:
    """The environment of a subprocess: a fresh home under ``tmp``, no other MEMORIES_GEO_*.

    Notebooks get no ``MPLBACKEND``: the kernel's inline backend puts the figures in them.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORIES_GEO_")}
    env.pop("MPLBACKEND", None)
    env.update(
        MEMORIES_GEO_HOME=str(tmp / "home"),
        PYTHONDONTWRITEBYTECODE="1",
        XDG_CACHE_HOME=str(tmp / "cache"),
    )
    if mpl_backend:
        env["MPLBACKEND"] = mpl_backend
    return env


# -- subprocesses ----------------------------------------------------------------------------

# Runs one page's blocks: reads [{"name", "code"}] as JSON on stdin, runs each in one
# namespace with stdout captured, stops at the first error, prints the results as JSON.
_RUN_PAGE = textwrap.dedent('''
    import contextlib, io, json, sys, traceback
    steps = json.load(sys.stdin)
    namespace = {"__name__": "__main__"}
    results = []
    for step in steps:
        out = io.StringIO()
        error = None
        try:
            code = compile(step["code"], step["name"], "exec")
            with contextlib.redirect_stdout(out):
                exec(code, namespace)
        except BaseException:
            error = traceback.format_exc()
        results.append({"stdout": out.getvalue(), "error": error})
        if error:
            break
    sys.__stdout__.write("\\n@@RESULTS@@" + json.dumps(results))
''')

# Executes a notebook: argv = notebook, kernel spec dir, kernel name, cell timeout, target.
_RUN_NOTEBOOK = textwrap.dedent('''
    import os, sys
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    source, kernels, name, timeout, target = sys.argv[1:6]
    nb = nbformat.read(source, as_version=4)
    manager = KernelManager(kernel_name=name, kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernels]))
    NotebookClient(nb, km=manager, timeout=int(timeout), allow_errors=False).execute(cwd=os.getcwd())
    nbformat.write(nb, target)
''')

# Builds the site strictly: argv = mkdocs.yml, site dir. Warnings go to stderr.
_BUILD = textwrap.dedent('''
    import logging, sys
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    build(load_config(config_file=sys.argv[1], site_dir=sys.argv[2], strict=True))
''')


def write_kernel_spec(directory: Path) -> Path:
    """A kernel spec running this interpreter; ``directory`` is a Jupyter ``kernels`` dir."""
    spec = directory / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "memories_geo docs", "language": "python",
    }))
    return directory


def run_page(path: Path, tmp: Path) -> list[str]:
    """Run the page's python blocks; return the problems found (empty when all is well)."""
    steps = runnable_steps(path)
    if not steps:
        return []
    work = tmp / "work"
    work.mkdir(parents=True)
    payload = [{"name": f"{s.block.page}:{s.block.line}", "code": s.block.code} for s in steps]
    proc = subprocess.run(
        [sys.executable, "-c", _RUN_PAGE], input=json.dumps(payload), capture_output=True,
        text=True, cwd=work, env=_fresh_env(tmp), timeout=JOB_TIMEOUT, check=False,
    )
    marker = proc.stdout.rfind("@@RESULTS@@")
    if marker < 0:
        return [f"{path.name}: the runner failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"]
    results = json.loads(proc.stdout[marker + len("@@RESULTS@@"):])
    problems = []
    for step, result in zip(steps, results, strict=False):
        where = f"docs/{step.block.page}, block at line {step.block.line}"
        if result["error"]:
            problems.append(f"{where} raised:\n{result['error']}")
        elif step.expected is not None and not _matches(step.expected, result["stdout"]):
            problems.append(
                f"{where}: the Output box below it says\n{step.expected}\nbut the block printed\n"
                f"{result['stdout']}"
            )
    return problems


def execute_notebook(path: Path, tmp: Path, kernels: Path) -> Any:
    """Execute a notebook in a fresh home under ``tmp``; return it executed (or raise)."""
    import nbformat

    work = tmp / "work"
    work.mkdir(parents=True)
    target = tmp / path.name
    proc = subprocess.run(
        [sys.executable, "-c", _RUN_NOTEBOOK, str(path), str(kernels), KERNEL, str(CELL_TIMEOUT),
         str(target)],
        capture_output=True, text=True, cwd=work, env=_fresh_env(tmp, mpl_backend=None), timeout=JOB_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"{path.name} failed to execute:\n{proc.stderr[-5000:]}")
    return nbformat.read(target, as_version=4)


def build_site(tmp: Path) -> Path:
    site = tmp / "site"
    proc = subprocess.run(
        [sys.executable, "-c", _BUILD, str(ROOT / "mkdocs.yml"), str(site)],
        capture_output=True, text=True, cwd=tmp, env={**_fresh_env(tmp), "NO_MKDOCS_2_WARNING": "1"},
        timeout=JOB_TIMEOUT, check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"mkdocs build --strict failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}")
    return site


class Jobs:
    """The pages, notebooks and the site build the selected tests need, run a few at a time."""

    def __init__(self, tmp: Path, pages: list[Path], notebooks: list[Path], site: bool) -> None:
        self.tmp = tmp
        self.kernels = write_kernel_spec(tmp / "kernels")
        self.pool = ThreadPoolExecutor(max_workers=PARALLEL)
        self.futures: dict[str, Future[Any]] = {}
        for path in notebooks:  # the slowest first, so the pool drains evenly
            self._start(f"notebook:{path.stem}", execute_notebook, path, self._dir(), self.kernels)
        if site:
            self._start("site", build_site, self._dir())
        for path in pages:
            self._start(f"page:{path}", run_page, path, self._dir())

    def _dir(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.tmp))

    def _start(self, name: str, fn: Any, *args: Any) -> Future[Any]:
        if name not in self.futures:
            self.futures[name] = self.pool.submit(fn, *args)
        return self.futures[name]

    def page(self, path: Path) -> list[str]:
        return self._start(f"page:{path}", run_page, path, self._dir()).result()

    def notebook(self, path: Path) -> Any:
        name = f"notebook:{path.stem}"
        return self._start(name, execute_notebook, path, self._dir(), self.kernels).result()

    def site(self) -> Path:
        return self._start("site", build_site, self._dir()).result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _params(request: pytest.FixtureRequest, function: str) -> list[Any]:
    return [
        item.callspec.params[next(iter(item.callspec.params))]
        for item in request.session.items
        if getattr(item, "originalname", None) == function and hasattr(item, "callspec")
    ]


@pytest.fixture(scope="module")
def jobs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jobs]:
    selected = {getattr(item, "originalname", item.name) for item in request.session.items}
    site_tests = {"test_site_builds_strictly", "test_site_needs_no_network_for_fonts",
                  "test_site_has_generated_reference", "test_site_shows_the_tutorials_with_pictures"}
    runner = Jobs(
        tmp_path_factory.mktemp("docs"),
        pages=_params(request, "test_page_code_blocks_run"),
        notebooks=_params(request, "test_notebook_executes"),
        site=bool(site_tests & selected),
    )
    yield runner
    runner.close()


# -- pages ----------------------------------------------------------------------------------


def test_code_block_parser(tmp_path: Path) -> None:
    page = textwrap.dedent('''
        # t
        ```python
        a = 1
        ```
        - item

            ```python title="not run: needs a server"
            connect()
            ```

        ```python
        print(a + 1)
        ```

        ```text title="Output"
        2
        ```
        ```bash
        ls
        ```
    ''')
    path = tmp_path / "page.md"
    path.write_text(page)
    assert [(b.language, b.title, b.code) for b in code_blocks(path)] == [
        ("python", "", "a = 1\n"),
        ("python", "not run: needs a server", "connect()\n"),
        ("python", "", "print(a + 1)\n"),
        ("text", "Output", "2\n"),
        ("bash", "", "ls\n"),
    ]
    steps = runnable_steps(path)
    assert [(s.block.code, s.expected) for s in steps] == [("a = 1\n", None), ("print(a + 1)\n", "2\n")]


def test_page_runner_reports_errors_and_wrong_outputs(tmp_path: Path) -> None:
    path = tmp_path / "page.md"
    path.write_text('```python\nprint("one")\n```\n\n```text title="Output"\ntwo\n```\n')
    (problem,) = run_page(path, tmp_path / "a")
    assert "the Output box below it says\ntwo" in problem
    assert "printed\none" in problem
    path.write_text("```python\n1 / 0\n```\n\n```python\nnever()\n```\n")
    (problem,) = run_page(path, tmp_path / "b")
    assert "page.md, block at line 1 raised" in problem
    assert "ZeroDivisionError" in problem


def test_output_comparison_uses_doctest_rules() -> None:
    assert _matches("uri=file://.../@v/...\n", "uri=file:///tmp/x/@v/2026-1.zarr\n")
    assert _matches("a   b\n", "a b\n")
    assert not _matches("2\n", "3\n")


def test_not_run_blocks_say_why() -> None:
    """A block that is not run tells the reader why: ``title="not run: <why>"``."""
    bare = [
        f"docs/{b.page}:{b.line}"
        for page in PAGES
        for b in code_blocks(page)
        if b.title.lower().startswith(NOT_RUN) and not b.title.lower().startswith(NOT_RUN + ":")
    ]
    assert not bare, f"blocks marked 'not run' without a reason after a colon: {bare}"


@pytest.mark.parametrize(
    "page", [p for p in PAGES if runnable_steps(p)], ids=lambda p: str(p.relative_to(DOCS))
)
def test_page_code_blocks_run(page: Path, jobs: Jobs) -> None:
    problems = jobs.page(page)
    assert not problems, "\n\n".join(problems)


# -- generated reference tables --------------------------------------------------------------


def _hook() -> Any:
    """The MkDocs hook module, imported from its file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_reference_hook", DOCS / "hooks" / "reference.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_tables_come_from_the_code() -> None:
    from memories_geo.formats.cog import COG_PROFILES
    from memories_geo.formats.geoparquet import PARQUET_COMPRESSION
    from memories_geo.formats.zarr import ZARR_CODECS
    from memories_geo.types import CompressionLevel

    hook = _hook()
    tables = {name: hook.render(name) for name in hook.TABLES}
    for level in CompressionLevel:
        _, options = ZARR_CODECS[level]
        assert f"`clevel={options['clevel']!r}`" in tables["zarr-codecs"]
        assert f"`cname={options['cname']!r}`" in tables["zarr-codecs"]
        assert f"`COMPRESS={COG_PROFILES[level]['COMPRESS']}`" in tables["cog-profiles"]
        rows = tables["compression-levels"].splitlines()
        level_row = next(r for r in rows if r.startswith(f"| `{level.value}`"))
        assert f"{PARQUET_COMPRESSION[level]['compression_level']}" in level_row
    for name in ("url", "storage_options", "compression", "storage_class", "formats"):
        assert f"`{name}`" in tables["tier-config"]
    assert "`default_tier`" in tables["storage-config"]
    assert "`hot`" in tables["tier-defaults"]
    assert "`fast`" in tables["tier-defaults"]
    with pytest.raises(KeyError, match="unknown reference table"):
        hook.render("nope")


def test_every_reference_marker_names_a_table() -> None:
    hook = _hook()
    used = {m.group(1): page.name for page in PAGES for m in hook.MARKER.finditer(page.read_text())}
    unknown = {name: page for name, page in used.items() if name not in hook.TABLES}
    assert not unknown, f"unknown reference tables: {unknown}; known: {sorted(hook.TABLES)}"
    assert {"zarr-codecs", "cog-profiles", "tier-config", "storage-config"} <= set(used)


# -- notebooks -------------------------------------------------------------------------------


def _tagged_figure(cell: Any) -> bool:
    return "figure" in cell.get("metadata", {}).get("tags", [])


def _images(cell: Any) -> int:
    return sum(
        1 for out in cell.get("outputs", [])
        if {"image/png", "image/svg+xml"} & set(out.get("data", {}))
    )


def test_there_is_a_tutorial_per_capability() -> None:
    wanted = {"rasters", "vectors", "tiers", "checkpoints", "distributed", "lifecycle", "timeseries"}
    assert wanted <= {p.stem for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path: Path, jobs: Jobs) -> None:
    nb = jobs.notebook(path)
    for cell in nb.cells:
        if _tagged_figure(cell):
            assert _images(cell), f"{path.name}: a cell tagged 'figure' drew nothing:\n{cell.source}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_its_outputs(path: Path) -> None:
    """The site shows the committed outputs, so every code cell must have been run, in order."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.get("execution_count") for c in code]
    assert code, f"{path.name} has no code"
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name}: execution counts {counts}; run `python tests/test_docs.py --refresh-notebooks`"
    )
    assert all(_images(c) for c in code if _tagged_figure(c)), f"{path.name}: a 'figure' cell has no picture"


def refresh_notebooks() -> None:
    """Execute every tutorial and store its outputs in the committed file."""
    import nbformat

    with tempfile.TemporaryDirectory() as tmp:
        kernels = write_kernel_spec(Path(tmp) / "kernels")
        for n, path in enumerate(NOTEBOOKS):
            nb = execute_notebook(path, Path(tmp) / str(n), kernels)
            nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
            nbformat.write(nb, path)
            print(f"{path.relative_to(ROOT)}: executed")


# -- the site --------------------------------------------------------------------------------


def test_site_builds_strictly(jobs: Jobs) -> None:
    site = jobs.site()
    assert (site / "index.html").is_file()
    assert (site / "assets" / "commit-protocol.svg").is_file()
    assert not (site / "hooks").exists(), "the hook must not be published"


def test_site_needs_no_network_for_fonts(jobs: Jobs) -> None:
    site = jobs.site()
    offenders = [
        str(p.relative_to(site)) for p in site.rglob("*.html")
        if re.search(r"fonts\.(googleapis|gstatic)\.com", p.read_text(encoding="utf-8"))
    ]
    assert not offenders, f"pages loading Google Fonts: {offenders[:5]}"


def test_site_has_generated_reference(jobs: Jobs) -> None:
    from memories_geo.formats.zarr import ZARR_CODECS
    from memories_geo.types import CompressionLevel

    site = jobs.site()
    page = (site / "configuration" / "index.html").read_text(encoding="utf-8")
    assert "<!-- reference:" not in page
    clevel = ZARR_CODECS[CompressionLevel.MAXIMUM][1]["clevel"]
    assert f"clevel={clevel}" in page
    api = (site / "api" / "memory" / "index.html").read_text(encoding="utf-8")
    raw_roles = [
        str(p.relative_to(site)) for p in (site / "api").rglob("*.html")
        if re.search(r":(meth|func|class|attr|data):`", p.read_text(encoding="utf-8"))
    ]
    assert not raw_roles, f"Sphinx roles shown raw (docs/hooks/sphinx_roles.py): {raw_roles}"
    for name in ("save", "open", "search", "checkpoints"):
        anchor = rf'id="memories_geo(\.memory)?\.Memory\.{name}"'
        assert re.search(anchor, api), f"Memory.{name} is not in the API reference"


def test_site_shows_the_tutorials_with_pictures(jobs: Jobs) -> None:
    import nbformat

    site = jobs.site()
    for path in NOTEBOOKS:
        page = site / "tutorials" / path.stem / "index.html"
        assert page.is_file(), page
        if any(_tagged_figure(c) for c in nbformat.read(path, as_version=4).cells):
            assert "data:image/png;base64" in page.read_text(encoding="utf-8"), f"{page}: no picture"


if __name__ == "__main__":
    if sys.argv[1:] == ["--refresh-notebooks"]:
        refresh_notebooks()
    else:
        sys.exit("usage: python tests/test_docs.py --refresh-notebooks")
