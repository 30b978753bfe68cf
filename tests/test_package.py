"""The public facade: exports, lazy heavy imports, and the extension's load time."""

from __future__ import annotations

import subprocess
import sys

import claude_force_nb


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, and every public name of the package is in it (and exists)."""
    exported = claude_force_nb.__all__
    assert list(exported) == sorted(exported)
    public = {n for n in vars(claude_force_nb) if not n.startswith("_")} - {"annotations"}
    modules = {n for n in public if type(getattr(claude_force_nb, n)).__name__ == "module"}
    assert public - modules == set(exported) - {"__version__"}
    for name in exported:
        assert hasattr(claude_force_nb, name), name


def test_import_does_not_load_heavy_dependencies() -> None:
    """`import claude_force_nb` loads neither IPython, ipywidgets, matplotlib, pandas, the SDK nor aiohttp."""
    heavy = ["IPython", "ipywidgets", "matplotlib", "pandas", "anthropic", "aiohttp", "redis", "numpy"]
    code = f"import sys, claude_force_nb; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_load_ext_does_not_load_pandas_matplotlib_widgets_or_the_sdk() -> None:
    """`%load_ext` in a fresh IPython loads neither pandas, matplotlib, ipywidgets nor the SDK."""
    code = (
        "import sys\n"
        "from IPython.testing.globalipapp import start_ipython\n"
        "ip = start_ipython()\n"
        "before = set(sys.modules)\n"
        "ip.run_line_magic('load_ext', 'claude_force_nb')\n"
        "new = set(sys.modules) - before\n"
        "print([m for m in ('pandas', 'matplotlib', 'ipywidgets', 'anthropic', 'aiohttp') if m in new])\n"
        "cells = ip.magics_manager.magics['cell']\n"
        "print('agent' in cells, 'claude_agent' in cells)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert lines[-2] == "[]"
    assert lines[-1] == "True True"
