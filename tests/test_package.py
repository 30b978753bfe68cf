"""The public facade: exports, lazy heavy imports, the layering rule, and the extension's load time."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import claude_force_nb
from claude_force_nb.sim import Simulator

PACKAGE = Path(claude_force_nb.__file__).parent
EDGE_MODULES = frozenset({"_magic", "_batch_magic", "_panel", "_panel_views", "_display", "_plots"})
"""The notebook edge (docs/architecture.md): the only modules that may use IPython, widgets or matplotlib."""
NOTEBOOK_LIBRARIES = ("IPython", "ipywidgets", "ipykernel", "traitlets", "matplotlib")


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


def _runtime_imports(tree: ast.Module, module: str) -> list[str]:
    """Absolute names a module imports at run time (anywhere, functions included; not under TYPE_CHECKING)."""
    package = module.split(".")
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            names.extend(f"{target}.{alias.name}" if not node.module else target for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def test_the_core_imports_no_notebook_library_nor_the_edge() -> None:
    """No core module imports IPython, ipywidgets, traitlets, matplotlib or an edge module, even lazily."""
    offences = []
    core = [p for p in PACKAGE.rglob("*.py") if p.stem not in EDGE_MODULES and p.name != "__init__.py"]
    assert len(core) > 30
    for path in core:
        module = ".".join(["claude_force_nb", *path.relative_to(PACKAGE).with_suffix("").parts])
        for name in _runtime_imports(ast.parse(path.read_text()), module):
            parts = name.split(".")
            if parts[0] in NOTEBOOK_LIBRARIES or (
                parts[0] == "claude_force_nb" and EDGE_MODULES & set(parts)
            ):
                offences.append(f"{module} imports {name}")
    assert offences == []


def test_calls_cache_batches_and_workflows_load_no_notebook_library(sim: Simulator) -> None:
    """Running the core end to end in a fresh interpreter (calls, a cache hit, a batch, a workflow, the
    runs frame) imports none of IPython, ipywidgets, traitlets or matplotlib."""
    code = (
        "import asyncio, sys\n"
        "from claude_force_nb import AsyncAgentOrchestrator, define_agent\n"
        "async def main():\n"
        "    define_agent('a', 'Answer briefly.')\n"
        f"    async with AsyncAgentOrchestrator(base_url={sim.base_url!r}) as orch:\n"
        "        assert (await orch.execute_agent('a', 'q')).success\n"
        "        assert (await orch.execute_agent('a', 'q')).cached\n"
        "        assert all(r.success for r in await orch.execute_multiple([('a', 'x'), ('a', 'y')]))\n"
        "        assert (await orch.run_workflow('w', 't', steps=['a', 'a'])).success\n"
        "        assert len(orch.runs.to_frame()) == 6\n"
        "asyncio.run(main())\n"
        f"print(sorted(m for m in {NOTEBOOK_LIBRARIES!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _distribution_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_distribution_is_declared() -> None:
    """Each third-party package the source imports (anywhere, lazily included) is a declared dependency, not
    something another dependency happens to bring along; redis, the one optional tier, is in the `redis`
    extra. The SDK is required with its aiohttp extra, so the fast transport is always there."""
    declared: dict[str, set[str]] = {}  # distribution -> the extras that declare it ("" = always)
    for requirement in importlib.metadata.requires("claude-force-nb") or []:
        name = re.match(r"[A-Za-z0-9._-]+", requirement)
        assert name is not None
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", requirement)
        declared.setdefault(_distribution_name(name[0]), set()).add(extra[1] if extra else "")
    providers = importlib.metadata.packages_distributions()
    imported: dict[str, str] = {}  # distribution -> a module that imports it
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                roots = [node.module.split(".")[0]]
            else:
                continue
            for root in roots:
                if root in sys.stdlib_module_names or root in ("claude_force_nb", "__future__"):
                    continue
                for dist in providers.get(root, [root]):
                    imported.setdefault(_distribution_name(dist), path.name)
    assert {"anthropic", "httpx2", "ipython", "traitlets", "numpy"} <= set(imported)
    undeclared = {dist: where for dist, where in imported.items() if dist not in declared}
    assert undeclared == {}
    optional = {dist for dist in imported if "" not in declared[dist]}
    assert optional == {"redis"} and "redis" in declared["redis"]
    sdk = [r for r in importlib.metadata.requires("claude-force-nb") or [] if r.startswith("anthropic")]
    assert len(sdk) == 1 and re.match(r"anthropic\[([^\]]*\b)?aiohttp\b", sdk[0])
