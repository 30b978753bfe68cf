"""The example notebooks: committed clean, and each runs top to bottom on the simulator with no API key."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
_SECRET = re.compile(r"sk-ant-[A-Za-z0-9_-]{8,}|ANTHROPIC_API_KEY\s*=\s*['\"]")
_MACHINE_PATH = re.compile(r"(/home/|/root/|/Users/|/tmp/|C:\\\\Users)")


def test_there_are_five_notebooks() -> None:
    """Quickstart, cache explorer, reproducible analysis, workflows and scale, and batches: all five ship."""
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart.ipynb",
        "02_cache_explorer.ipynb",
        "03_reproducible_analysis.ipynb",
        "04_workflows_and_scale.ipynb",
        "05_batches.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_committed_clean(path: Path) -> None:
    """No outputs, no execution counts, no widget state, no secrets or machine paths: they diff well."""
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:40]
    assert set(notebook.metadata) <= {"kernelspec", "language_info"}
    text = path.read_text()
    assert not _SECRET.search(text)
    assert not _MACHINE_PATH.search(text)


def test_the_committed_bundle_is_clean() -> None:
    """The replay bundle beside the analysis notebook holds no machine paths or secrets."""
    text = (ROOT / "notebooks" / "data" / "analysis_bundle.json").read_text()
    assert json.loads(text)["entries"]
    assert not _SECRET.search(text) and not _MACHINE_PATH.search(text)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_the_simulator(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each notebook executes without error in a real kernel, with no API key (answers simulated)."""
    workdir = tmp_path / "notebooks"
    shutil.copytree(
        ROOT / "notebooks", workdir
    )  # notebooks write beside themselves (../out): not in the repo
    redis_url = os.environ.get("CFNB_TEST_REDIS_URL")
    if redis_url:
        monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("MPLBACKEND", "agg")
    notebook = nbformat.read(workdir / path.name, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    text = json.dumps([cell.get("outputs", []) for cell in notebook.cells])
    assert "answers are simulated by the bundled local simulator" in text
    assert "Traceback" not in text
    if path.name.startswith("01"):  # "Re-run for free" re-runs the fan-out: every call from the cache, at $0
        rerun = re.search(
            r"(\d+) of (\d+) calls answered from the cache; cost \$([\d.]+), saved \$([\d.]+)", text
        )
        assert rerun is not None, "the quickstart's re-run printed no cache line"
        hits, calls, cost, saved = rerun.groups()
        assert hits == calls == "3" and float(cost) == 0.0 and float(saved) > 0
    if path.name.startswith("02") and redis_url:
        assert "same answer: True" in text
