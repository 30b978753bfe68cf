"""The quickstart in a real browser: JupyterLab on loopback, driven by Playwright in Debian's Chromium.

Runs every cell of the quickstart notebook through JupyterLab's own "run all" command, waits for the panel to
render and its run to finish, and checks the DOM: one live row per call, the cost text, the chart images.
The panel's own test drives it as a user (run, select, refuse, cancel, dark theme) and saves
docs/panel.png, docs/panel-refused.png and docs/panel-dark.png with CFNB_UPDATE_SCREENSHOT=1 (else into the
test's folder); another opens the exported HTML with the network blocked.

Never downloads a browser: it uses /usr/bin/chromium (the Debian package, installed by .ci/run). Skipped
when Chromium or Playwright is missing, unless CFNB_REQUIRE_BROWSER=1 (CI), where that is a failure.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("CFNB_CHROMIUM", "/usr/bin/chromium"))
# The flags a sandboxed root session needs, and no background calls to hosts this machine cannot reach.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _require_browser() -> None:
    problem = None
    if not CHROMIUM.exists():
        problem = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "playwright is not installed (pip install -e '.[dev]')"
    if problem:
        if os.environ.get("CFNB_REQUIRE_BROWSER") == "1":
            pytest.fail(problem)
        pytest.skip(problem)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[str]:
    """JupyterLab serving a copy of notebooks/ on loopback with a token; yields the notebook's URL."""
    _require_browser()
    workdir = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", workdir)
    port, token = _free_port(), secrets.token_hex(16)
    environ = dict(os.environ, MPLBACKEND="agg", JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"))
    environ["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "jupyter-runtime")
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={workdir}",
            "--LabApp.expose_app_in_browser=True",
            *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        ],
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    output = (tmp_path / "lab.log").read_text()[-3000:]
                    raise RuntimeError(f"JupyterLab did not start:\n{output}") from None
                time.sleep(0.3)
        yield f"{base}/lab/tree/01_quickstart.ipynb?token={token}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_quickstart_runs_in_jupyterlab(lab: str, tmp_path: Path) -> None:
    """Run All in JupyterLab: streamed answer, fan-out table, chart image, and the panel's finished run."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(lab)
        page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget", timeout=60_000)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        # Wait until the kernel is ready, then run every cell through JupyterLab's own command.
        page.wait_for_function(
            "() => { const w = window.jupyterapp.shell.currentWidget;"
            " return w && w.sessionContext && w.sessionContext.session"
            " && w.sessionContext.session.kernel && w.sessionContext.session.kernel.status === 'idle'; }",
            timeout=60_000,
        )
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")

        status = page.locator(".widget-html-content", has_text="done: 2 call(s)")
        expect(status).to_be_visible(timeout=120_000)
        rows = page.locator(".jp-OutputArea-output .cfnb-row")
        assert rows.count() >= 5  # the fan-out's three rows and the panel's two
        panel_rows = page.locator(".widget-html-content .cfnb-row")
        expect(panel_rows).to_have_count(2)
        assert "$" in status.inner_text()
        expect(page.locator(".cfnb-totals").first).to_contain_text("$")
        images = page.locator(".jp-OutputArea-output img")
        expect(images.first).to_be_visible(timeout=60_000)  # %agent plot timeline
        page.locator(".widget-tab .lm-TabBar-tab", has_text="Charts").first.click()
        chart = page.locator(".cfnb-panel img.widget-image:visible")
        expect(chart.first).to_be_visible(timeout=60_000)
        assert chart.first.evaluate("img => img.naturalWidth") > 200

        page.locator(".widget-tab .lm-TabBar-tab", has_text="Calls").first.click()
        panel = page.locator(".widget-vbox", has=page.locator(".widget-tab")).first
        panel.scroll_into_view_if_needed()
        target = tmp_path / "quickstart-panel.png"  # docs/panel.png comes from the workspace test
        panel.screenshot(path=str(target))
        assert target.stat().st_size > 10_000
        browser.close()


def write_notebook(path: Path, cells: list[str]) -> None:
    """A notebook of these code cells on the python3 kernel, written to `path`."""
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)


def _open_and_run_all(page: object, url: str) -> None:
    """Open a notebook in JupyterLab, wait for an idle kernel, then run every cell."""
    page.goto(url)  # type: ignore[attr-defined]
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " return w && w.sessionContext && w.sessionContext.session"
        " && w.sessionContext.session.kernel && w.sessionContext.session.kernel.status === 'idle'; }",
        timeout=60_000,
    )
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")  # type: ignore[attr-defined]


def test_dollar_amounts_are_never_typeset_as_maths(lab: str, tmp_path: Path) -> None:
    """Answers, workflow summaries, live tables and the run log's frame (`%agent runs`, tasks with dollar
    amounts) show no MathJax element; `-f markdown+math` (the control) does typeset the answer, so the check
    can fail."""
    from playwright.sync_api import expect, sync_playwright

    task = "Is $5 more than $3? Compare $0.0020 with $0.0017."
    cells = [
        "%load_ext claude_force_nb",
        f"%%agent code-reviewer\n{task}",
        f"%%agent --workflow review\n{task}",
        f"%%agent code-reviewer,summarizer\n{task}",
        f"%%agent summarizer -f markdown+math\n{task}",
        "%agent runs",
    ]
    control = len(cells) - 2
    write_notebook(tmp_path / "notebooks" / "dollars.ipynb", cells)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        _open_and_run_all(page, lab.replace("01_quickstart.ipynb", "dollars.ipynb"))
        code_cells = page.locator(".jp-CodeCell")
        typeset = code_cells.nth(control).locator(".jp-OutputArea-output")
        expect(typeset.locator("mjx-container").first).to_be_attached(timeout=120_000)  # the control typesets
        runs = code_cells.nth(len(cells) - 1).locator(".jp-OutputArea-output")
        expect(runs.locator("table")).to_contain_text("Is $5 more than $3?", timeout=60_000)
        assert runs.locator("mjx-container, .MathJax, .katex").count() == 0, runs.inner_text()
        for index in range(1, control):
            outputs = code_cells.nth(index).locator(".jp-OutputArea-output")
            expect(outputs.last).to_contain_text("cache hit rate", timeout=60_000)  # the run's summary line
            text = " ".join(outputs.all_inner_texts())
            assert text.count("$") >= 3, text  # costs in the summaries and tables, amounts in the answers
            assert outputs.locator("mjx-container, .MathJax, .katex").count() == 0, text
        browser.close()


def test_the_exported_html_opens_offline_and_shows_the_panels_table(tmp_path: Path) -> None:
    """`scripts/run_notebooks.py` (what `make demo` runs) writes HTML that loads nothing from the network:
    opened in Chromium with every non-file request blocked, no request is even attempted, and the panel's
    saved snapshot shows its table (the widget itself needs a widget manager, which would come from a CDN)."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    cells = [
        "%load_ext claude_force_nb",
        "import claude_force_nb\npanel = claude_force_nb.panel()\n"
        "panel.agents.value = ('code-reviewer', 'security-auditor')\n"
        "panel.task.value = 'Is $5 more than $3?'\npanel_run = panel.run()\npanel",
        "await panel_run",
    ]
    source = tmp_path / "panel.ipynb"
    write_notebook(source, cells)
    shutil.copytree(ROOT / "notebooks" / ".claude", tmp_path / ".claude")
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "run_notebooks.py"), str(source), "--out", str(out)],
        check=True,
        timeout=600,
        env=dict(os.environ, MPLBACKEND="agg"),
    )
    page_file = out / "panel.html"
    assert "<script src=" not in page_file.read_text(encoding="utf-8")
    blocked: list[str] = []

    def only_files(route: object) -> None:
        url = route.request.url  # type: ignore[attr-defined]
        if url.startswith("file:"):
            route.continue_()  # type: ignore[attr-defined]
        else:
            blocked.append(url)
            route.abort()  # type: ignore[attr-defined]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(offline=True)
        context.route("**/*", only_files)
        page = context.new_page()
        page.goto(page_file.as_uri())
        page.wait_for_load_state("load")
        rows = page.locator(".cfnb-panel-snapshot .cfnb-row")
        assert rows.count() == 2
        assert "done: 2 call(s)" in page.locator(".cfnb-panel-snapshot").inner_text()
        assert "children=" not in page.locator("body").inner_text()  # no widget's text/plain repr
        assert page.locator("script[src]").count() == 0
        browser.close()
    assert blocked == []


def _shot(tmp_path: Path, name: str) -> Path:
    """Where a screenshot goes: docs/ with CFNB_UPDATE_SCREENSHOT=1, else the test's folder."""
    folder = ROOT / "docs" if os.environ.get("CFNB_UPDATE_SCREENSHOT") == "1" else tmp_path
    return folder / name


def _kernel_idle(page: Any) -> None:
    """Wait until the kernel has handled every message so far (a run's end redraws charts for a while)."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
        timeout=60_000,
    )


def _type_into(field: Any, text: str) -> None:
    """Replace a widget field's text as a user does (select all, type, leave with Tab), so the widget's
    change event fires and the value reaches the kernel."""
    field.click()
    field.press("Control+a")
    field.press_sequentially(text)
    field.press("Tab")


def test_the_panel_as_a_workspace_in_jupyterlab(lab: str, tmp_path: Path) -> None:
    """Drive the panel as a user: Run three agents, select a row and read its answer; run again under a
    tiny budget and read why every call was refused (row, detail, gauge); Cancel a slow run (cancelled, not
    failed); switch JupyterLab to its dark theme and check the panel's text is light on dark. Screenshots of
    each state (docs/panel*.png with CFNB_UPDATE_SCREENSHOT=1)."""
    from playwright.sync_api import expect, sync_playwright

    cells = [
        "%load_ext claude_force_nb",
        "%config AgentMagics.sim_latency = 4",
        "import claude_force_nb\npanel = claude_force_nb.panel()\n"
        "panel.agents.value = ('code-reviewer', 'security-auditor', 'summarizer')\n"
        "panel.task.value = 'Review the json module: what costs $5 to get wrong?'\npanel",
    ]
    write_notebook(tmp_path / "notebooks" / "workspace.ipynb", cells)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1300, "height": 1400})
        _open_and_run_all(page, lab.replace("01_quickstart.ipynb", "workspace.ipynb"))
        panel = page.locator(".cfnb-panel")
        expect(panel).to_be_visible(timeout=120_000)
        status = panel.locator(".widget-html-content").first
        totals = panel.locator(".cfnb-totals")

        # 1. Run, then select the second row and read its answer.
        panel.get_by_role("button", name="Run").click()
        expect(totals).to_contain_text("3/3 done", timeout=120_000)
        expect(status).to_contain_text("done: 3 call(s)")
        panel.get_by_label("Call", exact=True).select_option(label="2 · security-auditor")
        detail = panel.locator(".cfnb-detail")
        expect(detail).to_contain_text("security-auditor")
        expect(detail.locator(".cfnb-answer")).to_contain_text("[simulated")
        expect(detail).to_contain_text("attempts")
        assert detail.locator("mjx-container, .MathJax").count() == 0
        panel.scroll_into_view_if_needed()
        panel.screenshot(path=str(_shot(tmp_path, "panel.png")))

        # 2. A budget too small for any call: refused, and each row says why.
        _kernel_idle(page)
        _type_into(panel.locator(".widget-inline-hbox", has_text="Budget $").locator("input"), "0.0001")
        _type_into(panel.locator("textarea"), "Explain the json module's object_hook in one paragraph.")
        _kernel_idle(page)
        panel.get_by_role("button", name="Run").click()
        expect(totals).to_contain_text("0/3 done · 3 refused", timeout=60_000)
        expect(status).to_contain_text("3 refused")
        reasons = panel.locator(".cfnb-reason")
        expect(reasons).to_have_count(3)
        assert "budget" in reasons.first.inner_text() or "budget" in (
            reasons.first.get_attribute("title") or ""
        )
        expect(panel.locator(".cfnb-detail .cfnb-error")).to_contain_text("budget")
        expect(panel.locator(".cfnb-gauge")).to_contain_text("limit")
        panel.screenshot(path=str(_shot(tmp_path, "panel-refused.png")))

        # 3. Cancel a slow run: cancelled calls are counted as such, never as done or failed.
        _kernel_idle(page)
        _type_into(panel.locator(".widget-inline-hbox", has_text="Budget $").locator("input"), "0")
        _type_into(panel.locator("textarea"), "Write a long essay on json's parse_float and parse_int hooks.")
        _kernel_idle(page)
        panel.get_by_role("button", name="Run").click()
        expect(panel.locator(".cfnb-row", has_text="running").first).to_be_visible(timeout=60_000)
        panel.get_by_role("button", name="Cancel").click()
        expect(status).to_contain_text("cancelled", timeout=60_000)
        expect(totals).to_contain_text("cancelled")
        assert "failed" not in totals.inner_text(), totals.inner_text()

        # 4. The dark theme: the panel's own text is light on the dark background.
        page.evaluate(
            "window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})"
        )
        page.wait_for_selector("body[data-jp-theme-light='false']", state="attached", timeout=30_000)
        panel.get_by_label("Call", exact=True).select_option(label="1 · code-reviewer")
        page.wait_for_timeout(500)  # the theme's CSS variables settle
        luminance = panel.locator(".cfnb-table").first.evaluate(
            "el => { const [r, g, b] = getComputedStyle(el).color.match(/\\d+/g).map(Number);"
            " return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255; }"
        )
        assert luminance > 0.6, luminance
        panel.screenshot(path=str(_shot(tmp_path, "panel-dark.png")))
        browser.close()
