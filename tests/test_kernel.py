"""The notebook layer in a real ipykernel (driven by nbclient), against the simulator.

These run the magics as a user does: cells executed in a kernel, on the kernel's own event loop, with
display updates, background tasks, widgets and a real kernel interrupt.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from claude_force_nb.sim import Fault, Simulator

from .conftest import write_claude_dir

pytestmark = pytest.mark.slow


class Kernel:
    """A live kernel that runs one cell at a time and returns its outputs."""

    def __init__(self, client: NotebookClient, notebook: Any) -> None:
        self.client = client
        self.notebook = notebook

    async def run(self, source: str, *, allow_error: bool = False) -> list[dict[str, Any]]:
        cell = nbformat.v4.new_code_cell(source)
        if allow_error:
            cell.metadata["tags"] = ["raises-exception"]
        self.notebook.cells.append(cell)
        await self.client.async_execute_cell(cell, len(self.notebook.cells) - 1)
        return list(cell.outputs)

    async def value(self, expression: str) -> Any:
        """Evaluate `expression` in the kernel and return it (JSON round trip)."""
        outputs = await self.run(f"import json as _j; print(_j.dumps({expression}))")
        return json.loads(text_of(outputs))


def text_of(outputs: list[dict[str, Any]]) -> str:
    parts = []
    for output in outputs:
        if output["output_type"] == "stream":
            parts.append(output["text"])
        elif "data" in output:
            data = output["data"]
            parts.append(data.get("text/markdown") or data.get("text/plain") or "")
    return "".join(parts)


def errors_of(outputs: list[dict[str, Any]]) -> list[str]:
    return [f"{o['ename']}: {o['evalue']}" for o in outputs if o["output_type"] == "error"]


@pytest.fixture
async def kernel(sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Kernel]:
    """A kernel in a project folder with a .claude config, whose calls go to the test's simulator."""
    write_claude_dir(tmp_path)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", sim.base_url)
    monkeypatch.setenv("MPLBACKEND", "agg")
    notebook = nbformat.v4.new_notebook()
    client = NotebookClient(
        notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    async with client.async_setup_kernel():
        kernel = Kernel(client, notebook)
        outputs = await kernel.run("%load_ext claude_force_nb\n%config AgentMagics.stream = True")
        assert f"calls go to {sim.base_url}" in text_of(outputs)
        yield kernel


async def test_blocking_runs_capture_templates_and_fan_out(kernel: Kernel, sim: Simulator) -> None:
    """A blocking cell shows the streamed answer; capture, {{var}}, fan-out and -o behave as documented."""
    await kernel.run("snippet = 'def mean(xs): return sum(xs) / len(xs)'")
    outputs = await kernel.run("%%agent code-reviewer\nReview {{snippet}}; keep {x} and $y")
    assert "[simulated" in text_of(outputs)
    assert sim.requests[-1]["json"]["messages"][-1]["content"] == (
        "<task>\nReview def mean(xs): return sum(xs) / len(xs); keep {x} and $y\n</task>"
    )
    await kernel.run("%%agent res << code-reviewer,bug-investigator\nCheck {{snippet}}")
    assert await kernel.value("[r.agent_name for r in res.results]") == ["code-reviewer", "bug-investigator"]
    outputs = await kernel.run("%%agent bug-investigator -o found --quiet\nWhy?")
    assert "[simulated" in text_of(outputs)
    assert await kernel.value("found.success") is True


async def test_inputs_chat_and_background(kernel: Kernel, sim: Simulator) -> None:
    """--inputs gives a frame, --chat carries turns between cells, --bg returns a handle one can await."""
    await kernel.run("import pandas as pd\ndf = pd.DataFrame({'module': ['json', 'csv']})")
    outputs = await kernel.run("%%agent table= << code-reviewer --inputs df --quiet\nReview {{module}}")
    assert any("text/html" in o.get("data", {}) for o in outputs)
    assert await kernel.value("list(table['module'])") == ["json", "csv"]
    await kernel.run("%%agent code-reviewer --chat review --quiet\nfirst")
    await kernel.run("%%agent code-reviewer --chat review --quiet\nsecond")
    assert [m["role"] for m in sim.requests[-1]["json"]["messages"]] == ["user", "assistant", "user"]
    await kernel.run("%%agent handle << code-reviewer --bg --quiet\nin the background")
    await kernel.run("result = await handle")
    assert await kernel.value("result.success and handle.done()") is True


async def test_a_failed_call_stops_the_notebook(kernel: Kernel, sim: Simulator) -> None:
    """A failing call raises at the end of the cell with a one-line error, so Run All stops there."""
    sim.script(Fault("status", status=400), match="make it fail")
    outputs = await kernel.run("%%agent code-reviewer --quiet\nmake it fail", allow_error=True)
    assert errors_of(outputs) and "1 of 1 calls failed" in errors_of(outputs)[0]
    outputs = await kernel.run("%agent nonsense", allow_error=True)  # IPython prints usage errors on stderr
    assert "UsageError: unknown %agent command 'nonsense'" in text_of(outputs)


async def test_interrupt_cancels_in_flight_and_keeps_finished(kernel: Kernel, sim: Simulator) -> None:
    """An interrupt mid-run cancels the hanging calls, keeps the finished ones, and leaves nothing running."""
    sim.script(Fault("hang", hang_s=30), times=2, match="slow")
    await kernel.run("import claude_force_nb\nclaude_force_nb.define_agent('a', 'x')\nimport pandas as pd")
    await kernel.run("df = pd.DataFrame({'speed': ['fast 1', 'fast 2', 'slow 1', 'slow 2']})")
    cell = asyncio.ensure_future(
        kernel.run("%%agent a --inputs df --quiet\n{{speed}} task", allow_error=True)
    )
    for _ in range(200):
        await asyncio.sleep(0.05)
        done = [r for r in sim.requests if r.get("status") == 200]
        if len(done) >= 2 and len(sim.requests) >= 4:
            break
    await asyncio.sleep(0.2)
    await kernel.client.km.interrupt_kernel()
    outputs = await asyncio.wait_for(cell, timeout=30)
    errors = [o for o in outputs if o["output_type"] == "error"]
    assert len(errors) == 1 and errors[0]["ename"] == "AgentRunInterrupted"
    assert errors[0]["traceback"] == ["Interrupted: " + errors[0]["evalue"]]  # one line, no loop internals
    assert "2 of 4 finished" in errors[0]["evalue"]
    statuses = await kernel.value("sorted(r.status for r in claude_force_nb._session.get_session().run_log)")
    assert statuses == ["cancelled", "cancelled", "succeeded", "succeeded"]
    assert await kernel.value("[r.status for r in _agent_last.results]") == [
        "succeeded",
        "succeeded",
        "cancelled",
        "cancelled",
    ]
    assert await kernel.value("claude_force_nb._loop.pending_tasks()") == 0


async def test_panel_runs_and_cancels(kernel: Kernel, sim: Simulator) -> None:
    """The panel's Run returns at once; rows, totals and charts appear; Cancel keeps finished results."""
    await kernel.run(
        "import asyncio, claude_force_nb\np = claude_force_nb.panel()\n"
        "p.agents.value = ('code-reviewer', 'bug-investigator')\np.task.value = 'Audit json'\nt = p.run()\np"
    )
    await kernel.run("await asyncio.wait([t])")
    state = await kernel.value(
        "{'status': p.status.value, 'rows': p.calls.value.count(\"class='cfnb-row'\"), "
        "'charts': p.charts.value[:4] == b'\\x89PNG'}"
    )
    assert "done: 2 call(s), $" in state["status"] and state["rows"] == 2  # inside a math-safe wrapper
    assert state["charts"] is True
    sim.script(Fault("hang", hang_s=30), match="hang here")
    await kernel.run("p.task.value = 'hang here'\np.agents.value = ('code-reviewer',)\nt = p.run()")
    await kernel.run("await asyncio.sleep(0.3)\np.cancel()\nawait asyncio.wait([t])")
    state = await kernel.value(
        "{'status': p.status.value, 'run': p.run_button.disabled, 'cancel': p.cancel_button.disabled}"
    )
    assert state == {"status": "<b>cancelled</b>: 0 finished result(s) kept", "run": False, "cancel": True}


async def test_plots_render_images(kernel: Kernel) -> None:
    """%agent plot draws each chart as an image in the cell."""
    await kernel.run("%%agent code-reviewer,fixer --quiet\nx")
    for which in ("latency", "cost", "cache", "timeline"):
        outputs = await kernel.run(f"%agent plot {which}")
        assert any("image/png" in o.get("data", {}) for o in outputs), which


async def test_outputs_carry_provenance_into_the_saved_notebook(kernel: Kernel, sim: Simulator) -> None:
    """Every %%agent output (streamed answer, fan-out summary line, quiet result) has its provenance in the
    output metadata nbformat saves: agent, model, run id, cost, cache key, cached/replayed; `%agent runs N`
    shows that cell's rows."""
    await kernel.run("%%agent code-reviewer\nWhat is $5 in cents?")
    await kernel.run("%%agent code-reviewer,bug-investigator\nCheck it")
    await kernel.run("%%agent code-reviewer --quiet\nWhat is $5 in cents?")  # a cache hit of the first
    saved = nbformat.reads(nbformat.writes(kernel.notebook), as_version=4)
    found = []
    for cell in saved.cells[1:]:
        marks = [
            o["metadata"].get("claude_force_nb")
            or o["metadata"].get("text/markdown", {}).get("claude_force_nb")
            for o in cell.outputs
            if o["output_type"] in ("display_data", "execute_result")
        ]
        found.append([m for m in marks if m])
    single, fan_out, hit = (marks[-1] for marks in found)
    assert [c["agent"] for c in fan_out["calls"]] == ["code-reviewer", "bug-investigator"]
    call = single["calls"][0]
    assert call["model"] and call["run_id"] and call["cost_usd"] > 0 and len(call["cache_key"]) == 64
    assert call["cached"] is False and call["replayed"] is False
    assert hit["calls"][0]["cached"] is True and hit["calls"][0]["cache_key"] == call["cache_key"]
    assert fan_out["cell"] == saved.cells[2].execution_count
    await kernel.run(f"_rows = %agent runs {fan_out['cell']}")
    assert sorted(await kernel.value("list(_rows['agent'])")) == ["bug-investigator", "code-reviewer"]


async def test_a_streamed_answer_is_replaced_once_by_its_rendering(kernel: Kernel) -> None:
    """The streamed text does not stay behind: the cell ends with one rendering of the answer alone."""
    outputs = await kernel.run("%%agent code-reviewer --max-tokens 300\nExplain this at length")
    answer = await kernel.value("_agent_last.text")
    assert len(answer) > 100
    assert [o["output_type"] for o in outputs] == ["display_data"]
    assert answer in outputs[0]["data"]["text/markdown"]


async def test_the_saved_output_of_a_large_run_stays_small(kernel: Kernel) -> None:
    """A 1,000-call --inputs cell saves about what a 100-call one does (a compact table and frame),
    and well under what one row per call would take; the full frame is still in _agent_last."""
    await kernel.run("import pandas as pd\nbig = pd.DataFrame({'n': range(1000)})\nsmall = big[:100]")
    saved = {}
    for name in ("small", "big"):
        outputs = await kernel.run(f"%%agent code-reviewer --inputs {name}\nReview item {{{{n}}}}")
        saved[name] = len(json.dumps(outputs))
    assert await kernel.value("len(_agent_last.to_frame())") == 1000
    assert saved["big"] <= 1.5 * saved["small"]
    assert saved["big"] < 40_000  # 1,000 rows at the ~450 bytes a drawn row took would be ~450 KB


async def test_live_views_without_updates_in_place_append_instead(kernel: Kernel) -> None:
    """The fallback for a front end that does not apply `update_display`: a table is shown once, final,
    and a --bg stream appends its text (as stream output) instead of redrawing one display."""
    outputs = await kernel.run(
        "from claude_force_nb._display import TableView, StreamView, AgentRun\n"
        "from claude_force_nb._results import AgentResult\n"
        "view = TableView(expected=2, title='2 calls', updates=False)\nview.finish()"
    )
    tables = [o for o in outputs if "cfnb-table" in str(o.get("data", {}).get("text/html", ""))]
    assert len(tables) == len(outputs) == 1 and "display_id" not in str(tables[0].get("transient", ""))
    outputs = await kernel.run(
        "stream = StreamView(label='a', append=False, updates=False)\n"
        "for piece in ('one ', 'two '): stream.on_text(piece)\n"
        "stream.finish(AgentRun([AgentResult(agent_name='a', success=True, output='one two ')]))"
    )
    assert not any("display_id" in str(o.get("transient", "")) for o in outputs)
    rendered = [o for o in outputs if "text/markdown" in o.get("data", {})]
    assert len(rendered) == 1 and "one two" in rendered[0]["data"]["text/markdown"]


async def test_a_panel_run_that_ends_between_cells_still_updates_the_saved_snapshot(kernel: Kernel) -> None:
    """A run that ends while no cell executes (the kernel idles between cells, as a fast or cached run does
    under `make demo`) sends its snapshot update with no cell to take it, and nbclient, which applies only a
    running cell's messages, drops it. The next cell re-sends it, so the saved notebook (and its HTML) shows
    the finished table, not "running"."""
    await kernel.run(
        "import claude_force_nb\np = claude_force_nb.panel()\n"
        "p.agents.value = ('code-reviewer',)\np.task.value = 'Audit json'\nt = p.run()\np"
    )
    panel_cell = kernel.notebook.cells[-1]
    await asyncio.sleep(3.0)  # the kernel runs the call (tens of milliseconds) while it idles between cells
    await kernel.run("x = 1")  # any next cell
    assert await kernel.value("t.done()") is True
    snapshots = [
        o for o in panel_cell.outputs if "cfnb-panel-snapshot" in o.get("data", {}).get("text/html", "")
    ]
    assert len(snapshots) == 1
    assert "done: 1 call(s)" in snapshots[0]["data"]["text/html"]
