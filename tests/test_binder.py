"""Binder: a fresh environment built from exactly the files in binder/ runs every notebook.

mybinder.org (repo2docker) installs `binder/requirements.txt`, runs `binder/postBuild` from the repository
root, and starts each session through `binder/start`. This test does the same in a brand-new virtualenv, on
a copy of the tracked files, then executes the notebooks in that environment's own kernel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _tracked_copy(target: Path) -> None:
    """The repository as a clone would have it: tracked and not-yet-committed files, nothing ignored."""
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listing.split("\0")):
        source = ROOT / name
        if source.is_file():
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


def test_binder_files_build_an_environment_that_runs_every_notebook(tmp_path: Path) -> None:
    """requirements.txt + postBuild in a fresh venv, then every notebook through binder/start."""
    repo = tmp_path / "repo"
    _tracked_copy(repo)
    env_dir = tmp_path / "binder-env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    environ = dict(os.environ)
    environ["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{environ['PATH']}"
    environ["VIRTUAL_ENV"] = str(env_dir)
    environ.pop("PYTHONPATH", None)
    # Reuse downloads between runs (a cache folder inside the checkout, ignored by git).
    environ.setdefault("PIP_CACHE_DIR", str(ROOT / ".cache" / "pip"))
    environ["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    def run(*command: str | Path) -> None:
        done = subprocess.run(
            [str(c) for c in command], cwd=repo, env=environ, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    run(python, "-m", "pip", "install", "--quiet", "-r", "binder/requirements.txt")
    run("bash", "binder/postBuild")
    # The notebook runner (not part of what Binder installs; JupyterLab plays its part there).
    run(python, "-m", "pip", "install", "--quiet", "nbclient", "nbconvert")
    check = subprocess.run(
        [str(python), "-c", "import claude_force_nb, sys; print(claude_force_nb.__file__)"],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(env_dir) in check.stdout  # the installed copy, not this checkout
    notebooks = sorted(str(p.relative_to(repo)) for p in (repo / "notebooks").glob("*.ipynb"))
    assert notebooks and notebooks == sorted(  # every notebook of the checkout, however many there are
        str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").glob("*.ipynb")
    )
    run(
        "bash",
        "binder/start",
        python,
        "scripts/run_notebooks.py",
        *notebooks,
        "--out",
        tmp_path / "out",
        "--no-html",
    )
    for name in notebooks:
        assert (tmp_path / "out" / Path(name).name).is_file()


def test_binder_start_forces_the_simulator() -> None:
    """binder/start sets CLAUDE_FORCE_NB_SIMULATE=1 before handing over, so a stray key is never used."""
    out = subprocess.run(
        [
            "bash",
            str(ROOT / "binder" / "start"),
            sys.executable,
            "-c",
            "import os; print(os.environ['CLAUDE_FORCE_NB_SIMULATE'])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "1"
