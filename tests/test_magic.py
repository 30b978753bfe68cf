"""The %%agent / %agent magics in a real IPython InteractiveShell, against the simulator."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from traitlets import TraitError

from claude_force_nb import AgentRunFailed, ConfigError, define_agent
from claude_force_nb._display import AgentRun
from claude_force_nb._magic import AgentMagics, BackgroundRun
from claude_force_nb.sim import Fault, Simulator


def cell(shell: InteractiveShell, line: str, body: str) -> Any:
    return shell.run_cell_magic("agent", line, body)


def last_user_turn(sim: Simulator) -> str:
    return str(sim.requests[-1]["json"]["messages"][-1]["content"])


def test_one_call_returns_a_run_and_keeps_braces_literal(
    shell: InteractiveShell, magics: AgentMagics, sim: Simulator
) -> None:
    """{{name}} is interpolated; {x}, $y and f-string braces reach the model untouched."""
    shell.user_ns["snippet"] = "def f(x): return {x: 1}"
    run = cell(shell, "code-reviewer", "Review {{snippet}} and keep {x} $y f'{z!r}'")
    assert isinstance(run, AgentRun) and run.success
    assert last_user_turn(sim) == "<task>\nReview def f(x): return {x: 1} and keep {x} $y f'{z!r}'\n</task>"
    assert run.text.startswith("[simulated ")
    assert shell.user_ns["_agent_last"] is run


def test_capture_forms_store_and_show(shell: InteractiveShell, magics: AgentMagics) -> None:
    """`v << agent` stores silently, `v= << agent` stores and shows, -o stores and shows."""
    assert cell(shell, "quiet << code-reviewer", "a") is None
    assert isinstance(shell.user_ns["quiet"], AgentRun)
    shown = cell(shell, "loud= << code-reviewer", "b")
    assert shown is shell.user_ns["loud"]
    out = cell(shell, "code-reviewer -o named", "c")
    assert out is shell.user_ns["named"]


@pytest.mark.parametrize(
    ("line", "body", "message"),
    [
        ("ghost", "x", r"unknown agent 'ghost'"),
        ("code-reviwer", "x", r"did you mean 'code-reviewer'"),
        ("code-reviewer", "Use {{missing}}", r"\{\{missing\}\} is not defined"),
        ("code-reviewer", "   ", r"the cell is empty"),
        ("", "x", r"which agent\?"),
        ("code-reviewer --workflow bug-fix", "x", r"not both"),
        ("code-reviewer -t 3", "x", r"--temperature must be within 0\.\.1"),
        ("code-reviewer --max-tokens 0", "x", r"--max-tokens must be a positive integer"),
        ("code-reviewer -f yaml", "x", r"invalid choice: 'yaml'"),
        ("code-reviewer --bogus", "x", r"unrecognized arguments: --bogus"),
        ("a,a", "x", r"listed twice"),
        ("code-reviewer,fixer --chat c", "x", r"--chat works with a single agent"),
        ("--workflow nope", "x", r"unknown workflow 'nope'"),
        ("code-reviewer --inputs nothing", "x", r"--inputs nothing: no variable"),
    ],
)
def test_bad_input_is_a_usage_error(
    shell: InteractiveShell, magics: AgentMagics, line: str, body: str, message: str
) -> None:
    """Bad options, unknown agents and unknown {{names}} raise UsageError with one line saying what to fix."""
    with pytest.raises(UsageError, match=message):
        cell(shell, line, body)


def test_fan_out_runs_each_agent_on_the_task(
    shell: InteractiveShell, magics: AgentMagics, sim: Simulator
) -> None:
    """Several agents run concurrently on one task; the run renders each under its name."""
    run = cell(shell, "code-reviewer,bug-investigator --quiet", "what is wrong?")
    assert [r.agent_name for r in run.results] == ["code-reviewer", "bug-investigator"]
    assert "#### code-reviewer" in run._repr_mimebundle_()[0]["text/markdown"]
    assert len(sim.requests) == 2


def test_inputs_give_one_row_per_input(shell: InteractiveShell, magics: AgentMagics, sim: Simulator) -> None:
    """--inputs fills {{column}} per row and returns a frame with the input columns and the outputs."""
    shell.user_ns["df"] = pd.DataFrame(
        {"module": ["json", "csv", "heapq"], "focus": ["speed", "errors", "api"]}
    )
    frame = cell(shell, "rows << code-reviewer --inputs df --quiet", "Review {{module}} for {{focus}}")
    assert frame is None
    frame = shell.user_ns["rows"]
    assert list(frame["module"]) == ["json", "csv", "heapq"]
    assert {"output", "cost_usd", "latency_s", "cached", "error"} <= set(frame.columns)
    assert sorted(last_user_turn_for(sim, i) for i in range(3)) == sorted(
        f"<task>\nReview {m} for {f}\n</task>"
        for m, f in [("json", "speed"), ("csv", "errors"), ("heapq", "api")]
    )


def last_user_turn_for(sim: Simulator, index: int) -> str:
    return str(sim.requests[index]["json"]["messages"][-1]["content"])


def test_chat_keeps_the_conversation(shell: InteractiveShell, magics: AgentMagics, sim: Simulator) -> None:
    """--chat NAME sends earlier turns with the next cell; `%agent chat reset` forgets them."""
    first = cell(shell, "code-reviewer --chat c1", "hello")
    cell(shell, "code-reviewer --chat c1", "and again")
    messages = sim.requests[-1]["json"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == first.text
    shell.run_line_magic("agent", "chat reset c1")
    cell(shell, "code-reviewer --chat c1", "fresh")
    assert len(sim.requests[-1]["json"]["messages"]) == 1


def test_failed_call_raises_at_the_end_and_keeps_results(
    shell: InteractiveShell, magics: AgentMagics, sim: Simulator
) -> None:
    """One failing agent of a fan-out raises AgentRunFailed after the others finished; all are kept."""
    sim.script(Fault("status", status=400), match="Find root causes")
    with pytest.raises(AgentRunFailed, match=r"1 of 2 calls failed; bug-investigator: 400") as info:
        cell(shell, "res << code-reviewer,bug-investigator --quiet", "x")
    run = info.value.run
    assert [r.success for r in run.results] == [True, False]
    assert shell.user_ns["_agent_last"] is run
    assert info.value._render_traceback_()[0].startswith("AgentRunFailed:")


def test_cell_budget_refuses_calls(shell: InteractiveShell, magics: AgentMagics, sim: Simulator) -> None:
    """--budget caps the cell's spend: a call whose worst case does not fit is refused, never sent."""
    with pytest.raises(AgentRunFailed, match="refused before sending") as info:
        cell(shell, "code-reviewer --budget 0.000001 --quiet", "x")
    assert sim.requests == []
    message = str(info.value)
    assert message.count("code-reviewer") == 1, message  # once, not "code-reviewer: code-reviewer call:"


def test_workflow_runs_steps_in_order(shell: InteractiveShell, magics: AgentMagics) -> None:
    """--workflow runs the configured steps and the run shows each."""
    run = cell(shell, "--workflow bug-fix --quiet", "the parser crashes")
    assert [r.agent_name for r in run.results] == ["bug-investigator", "fixer", "code-reviewer"]
    assert run.kind == "workflow" and run.text == run.results[-1].output


def test_per_cell_options_reach_the_request(
    shell: InteractiveShell, magics: AgentMagics, sim: Simulator
) -> None:
    """-m, --max-tokens, -t and --system change the request of that cell only."""
    cell(shell, '-m claude-haiku-4-5 --max-tokens 33 -t 0.2 --system "Be terse." code-reviewer --quiet', "x")
    body = sim.requests[-1]["json"]
    assert (body["model"], body["max_tokens"], body["temperature"], body["system"]) == (
        "claude-haiku-4-5",
        33,
        0.2,
        "Be terse.",
    )


@pytest.mark.parametrize(
    ("fmt", "key"), [("markdown", "text/markdown"), ("text", "text/plain"), ("code", "text/markdown")]
)
def test_formats_choose_the_mime_type(
    shell: InteractiveShell, magics: AgentMagics, fmt: str, key: str
) -> None:
    """-f picks how the answer is shown."""
    run = cell(shell, f"code-reviewer -f {fmt} --quiet", "x")
    bundle = run._repr_mimebundle_()[0]
    assert key in bundle
    if fmt == "text":
        assert set(bundle) == {"text/plain"}


def test_json_format_parses_fenced_json() -> None:
    """-f json shows and exposes the JSON in the answer (bare or fenced)."""
    from claude_force_nb import AgentResult

    result = AgentResult(
        agent_name="a", success=True, output='Here:\n```json\n{"ok": [1, 2]}\n```', status="succeeded"
    )
    run = AgentRun([result], fmt="json")
    assert run.value == {"ok": [1, 2]}
    assert run._repr_mimebundle_()[0]["application/json"] == {"ok": [1, 2]}


def test_background_run_returns_a_handle(shell: InteractiveShell, magics: AgentMagics) -> None:
    """--bg returns at once with a handle whose result() waits for the run."""
    handle = cell(shell, "code-reviewer --bg --quiet", "x")
    assert isinstance(handle, BackgroundRun)
    run = handle.result()
    assert run.success and handle.done()
    assert "done:" in repr(handle)


def test_alias_runs_the_same_magic(shell: InteractiveShell, magics: AgentMagics) -> None:
    """%%claude_agent is the same magic (a way out when another extension owns %%agent)."""
    run = shell.run_cell_magic("claude_agent", "code-reviewer --quiet", "x")
    assert isinstance(run, AgentRun) and run.success


def test_line_commands(
    shell: InteractiveShell, magics: AgentMagics, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """list, runs, stats, cache, budget, config and help work; nonsense is a UsageError."""
    cell(shell, "code-reviewer --quiet", "x")
    runs = shell.run_line_magic("agent", "runs")
    assert list(runs["agent"]) == ["code-reviewer"]
    assert shell.run_line_magic("agent", "stats")["entries"].iloc[0] >= 1
    info = shell.run_line_magic("agent", "cache info")
    assert len(info) >= 1
    bundle = tmp_path / "bundle.json"
    shell.run_line_magic("agent", f"cache export {bundle}")
    assert json.loads(bundle.read_text())
    shell.run_line_magic("agent", "budget 2.5")
    shell.run_line_magic("agent", "config")
    shell.run_line_magic("agent", "help")
    out = capsys.readouterr().out
    assert "Wrote 1 cached answer(s)" in out and "Budget: $2.5000" in out and "%agent plot" in out
    assert magics.session.budget.limit_usd == 2.5
    for bad in ("nonsense", "plot pie", "budget lots", "cache explode"):
        with pytest.raises(UsageError):
            shell.run_line_magic("agent", bad)


def test_cache_hit_on_rerun_and_replay_mode(
    shell: InteractiveShell, magics: AgentMagics, sim: Simulator
) -> None:
    """Re-running a cell is served from the cache; replay mode refuses what is not cached."""
    first = cell(shell, "code-reviewer --quiet", "cache me")
    second = cell(shell, "code-reviewer --quiet", "cache me")
    assert not first.results[0].cached and second.results[0].cached
    assert second.results[0].cost_usd == 0 and second.text == first.text
    shell.run_line_magic("agent", "cache replay on")
    assert cell(shell, "code-reviewer --quiet", "cache me").results[0].cached
    with pytest.raises(AgentRunFailed, match="replay mode: no cached answer"):
        cell(shell, "code-reviewer --quiet", "never seen")
    shell.run_line_magic("agent", "cache replay off")
    assert len(sim.requests) == 1


def test_config_lists_the_options(shell: InteractiveShell, magics: AgentMagics) -> None:
    """`%config AgentMagics` knows the documented options, and setting one reaches the session."""
    names = set(AgentMagics.class_trait_names(config=True))
    assert {
        "model",
        "max_concurrent",
        "cache_backend",
        "cache_dir",
        "budget_usd",
        "default_format",
        "offline",
    } <= names
    shell.run_line_magic("config", "AgentMagics.default_format = 'text'")
    assert magics.session.settings.default_format == "text"


def test_inline_agents_are_usable(shell: InteractiveShell, magics: AgentMagics) -> None:
    """An agent defined with define_agent can be used from the magic."""
    define_agent("haiku-poet", "Answer in a haiku.")
    assert cell(shell, "haiku-poet --quiet", "x").success


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_concurrent", 0),
        ("max_tokens", 0),
        ("timeout_seconds", -1.0),
        ("cache_backend", "redis:/x"),
        ("cache_ttl_hours", 0.0),
        ("budget_usd", math.nan),
        ("max_retries", -2),
    ],
)
def test_unusable_settings_are_refused_and_the_old_value_kept(
    magics: AgentMagics, name: str, value: Any
) -> None:
    """A bad %config value is refused with the reason; the session keeps working with the previous one."""
    before = getattr(magics, name)
    with pytest.raises(TraitError, match=name):
        setattr(magics, name, value)
    assert getattr(magics, name) == before or (isinstance(before, float) and math.isnan(before))


def test_capture_variables_hold_what_finished_when_a_cell_fails(
    shell: InteractiveShell, magics: AgentMagics, sim: Simulator
) -> None:
    """`res << a,b` and -o keep the finished results even though the cell raises."""
    sim.script(Fault("status", status=400), match="Find root causes", times=2)
    with pytest.raises(AgentRunFailed):
        shell.run_cell_magic("agent", "res << code-reviewer,bug-investigator --quiet", "x")
    with pytest.raises(AgentRunFailed):
        shell.run_cell_magic("agent", "code-reviewer,bug-investigator -o out --quiet", "y")
    assert [r.success for r in shell.user_ns["res"].results] == [True, False]
    assert [r.success for r in shell.user_ns["out"].results] == [True, False]


def test_a_property_that_raises_is_a_usage_error(shell: InteractiveShell, magics: AgentMagics) -> None:
    """{{obj.attr}} whose property raises gives a one-line UsageError, not a traceback."""

    class Odd:
        @property
        def attr(self) -> str:
            raise ValueError("no")

    shell.user_ns["odd"] = Odd()
    with pytest.raises(UsageError, match=r"\{\{odd\.attr\}\}: reading it failed"):
        shell.run_cell_magic("agent", "code-reviewer", "use {{odd.attr}}")


def test_an_interrupted_inputs_run_keeps_its_frame_and_says_so_in_one_line(
    shell: InteractiveShell, magics: AgentMagics, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """Interrupting an --inputs run stores the promised DataFrame: every input row under its own index label,
    a status column with `cancelled` for the rows that did not finish; the interrupt is one line, not a
    traceback through the event loop."""
    from claude_force_nb._loop import current_loop

    sim.script(Fault("hang", hang_s=30), times=2, match="slow")
    shell.user_ns["df"] = pd.DataFrame(
        {"module": ["fast json", "slow csv", "fast re", "slow os"]}, index=["w", "x", "y", "z"]
    )
    loop = current_loop()
    fired: list[bool] = []

    def interrupt() -> None:
        raise KeyboardInterrupt  # what the kernel's stop button raises inside the running loop

    def on_event(_: object) -> None:
        if not fired and sum(r.status == "succeeded" for r in magics.session.run_log) == 2:
            fired.append(True)
            loop.call_soon(interrupt)

    unsubscribe = magics.session.orchestrator().events.subscribe(on_event)
    try:
        outcome = shell.run_cell("%%agent table << code-reviewer --inputs df --quiet\nReview {{module}}")
    finally:
        unsubscribe()
    shown = capsys.readouterr().out
    assert isinstance(outcome.error_in_exec, KeyboardInterrupt)  # so "Run All" stops as on any interrupt
    assert "Interrupted: in-flight calls were cancelled; 2 of 4 finished" in shown
    assert "Traceback" not in shown and "_loop.py" not in shown and "selectors" not in shown
    frame = shell.user_ns["table"]
    assert isinstance(frame, pd.DataFrame) and list(frame.index) == ["w", "x", "y", "z"]
    assert list(frame["module"]) == ["fast json", "slow csv", "fast re", "slow os"]
    assert list(frame["status"]) == ["succeeded", "cancelled", "succeeded", "cancelled"]
    assert all("fast" in output for output in frame["output"][frame["status"] == "succeeded"])
    assert len(shell.user_ns["_agent_last"].results) == 4


def test_inputs_frames_keep_the_input_index(shell: InteractiveShell, magics: AgentMagics) -> None:
    """The --inputs frame carries the input DataFrame's row labels (a filtered frame keeps its own)."""
    frame = pd.DataFrame({"module": ["json", "csv", "re"]}, index=[10, 20, 30])
    shell.user_ns["subset"] = frame[frame["module"] != "csv"]
    result = cell(shell, "code-reviewer --inputs subset --quiet", "Review {{module}}")
    assert list(result.index) == [10, 30] and list(result["module"]) == ["json", "re"]


def test_a_cell_runs_with_a_corrupt_cache_file(
    magics: AgentMagics, shell: InteractiveShell, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`%%agent` answers when the disk cache file is not a database (each cell failed with a ~95-line
    traceback before); one warning says which file and how to fix it."""
    import logging

    folder = tmp_path / "broken-cache"
    folder.mkdir()
    (folder / "responses.sqlite3").write_bytes(b"not a database " * 100)
    magics.cache_dir = str(folder)
    with caplog.at_level(logging.WARNING):
        shell.run_cell_magic("agent", "code-reviewer -o answer", "Review this.")
        shell.run_cell_magic("agent", "code-reviewer -o again", "Review this.")
    assert shell.user_ns["answer"].success and shell.user_ns["again"].success
    warnings = [r.getMessage() for r in caplog.records if "response cache" in r.getMessage()]
    assert len(warnings) == 1 and "responses.sqlite3" in warnings[0] and "aside" in warnings[0]


def test_the_panels_concurrency_survives_later_config_changes(
    shell: InteractiveShell, magics: AgentMagics
) -> None:
    """The session's settings are the one source of truth: a concurrency set in the panel is not reverted by
    the next `%config AgentMagics.*`, the option shows it, and a magics object made later adopts it."""
    import asyncio

    from claude_force_nb._loop import run_blocking
    from claude_force_nb._panel import AgentPanel

    panel = AgentPanel(magics.session)
    panel.concurrency.value = 7
    panel.task.value = "x"
    task = panel.run()
    assert task is not None
    run_blocking(asyncio.wait([task]))
    shell.run_line_magic("config", "AgentMagics.model = 'claude-haiku-4-5'")
    settings = magics.session.settings
    assert (settings.max_concurrent, settings.model) == (7, "claude-haiku-4-5")
    assert magics.max_concurrent == 7
    later = AgentMagics(shell=shell, session=magics.session)
    assert later.max_concurrent == 7 and magics.session.settings.max_concurrent == 7
    later.max_retries = 1  # one option changes one setting
    assert magics.session.settings.max_concurrent == 7 and magics.max_retries == 1


def test_every_setting_is_one_option_with_one_default() -> None:
    """Each `%config` option is derived from a SessionSettings field (same default); every field but the
    ones with their own command is an option; the orchestrator's defaults are the same constants."""
    import dataclasses
    import inspect

    from claude_force_nb import AsyncAgentOrchestrator, RetryPolicy
    from claude_force_nb._session import SETTING_OPTIONS, SessionSettings

    names = {f.name for f in dataclasses.fields(SessionSettings)}
    assert set(SETTING_OPTIONS) == names - {"replay"}
    defaults = SessionSettings()
    traits = AgentMagics.class_traits(config=True)
    for field_name, option in SETTING_OPTIONS.items():
        trait = traits[option.name or field_name]
        assert trait.default_value == option.to_option(getattr(defaults, field_name)), field_name
    orchestrator = inspect.signature(AsyncAgentOrchestrator).parameters
    for name in ("max_retries", "max_concurrent", "timeout_seconds", "max_tokens", "cache_backend", "model"):
        assert orchestrator[name].default == getattr(defaults, name), name
    assert RetryPolicy().max_retries == defaults.max_retries


def test_an_unterminated_quote_is_a_usage_error(shell: InteractiveShell, magics: AgentMagics) -> None:
    """shlex's ValueError on the %%agent line became a traceback; now it is one line saying what it read."""
    with pytest.raises(UsageError, match=r"cannot read the %%agent line .*No closing quotation"):
        cell(shell, 'code-reviewer --system "Be terse.', "x")


def test_a_huge_template_value_is_refused_not_sent(
    shell: InteractiveShell, magics: AgentMagics, sim: Simulator
) -> None:
    """A {{frame}} above max_template_chars is a UsageError with its size; nothing reaches the API."""
    shell.run_line_magic("config", "AgentMagics.max_template_chars = 1000")
    shell.user_ns["frame"] = pd.DataFrame({"n": range(2000)})
    with pytest.raises(UsageError, match=r"\{\{frame\}\} expands to [\d,]+ characters .*frame\.head\(20\)"):
        cell(shell, "code-reviewer", "Summarise {{frame}}")
    assert sim.requests == []
    shell.user_ns["small"] = shell.user_ns["frame"].head(20)
    assert cell(shell, "code-reviewer --quiet", "Summarise {{small}}").success


def test_unusable_config_values_are_refused_in_one_line(shell: InteractiveShell, magics: AgentMagics) -> None:
    """%config with NaN/inf or an impossible path keeps the old value; the session never sees the bad one."""
    from traitlets import TraitError

    bad = (("timeout_seconds", math.inf), ("timeout_seconds", math.nan), ("cache_dir", "a\x00b"))
    for name, value in bad:
        with pytest.raises(TraitError, match=rf"^{name} (must|contains)"):
            setattr(magics, name, value)
    assert math.isfinite(magics.session.settings.timeout_seconds) and magics.session.settings.cache_dir == ""


def test_a_malformed_config_file_is_a_usage_error(
    shell: InteractiveShell, magics: AgentMagics, tmp_path: Path
) -> None:
    """A config nested too deeply (RecursionError before) stops the cell with one line naming the file."""
    deep = tmp_path / "deep" / "claude.json"
    deep.parent.mkdir()
    deep.write_text('{"agents": ' + "[" * 100_000 + "]" * 100_000 + "}")
    magics.config_path = str(deep)
    with pytest.raises(UsageError, match=r"deep/claude\.json: JSON nested more than 100 levels deep"):
        cell(shell, "code-reviewer", "x")


def test_a_malformed_bundle_is_a_usage_error(
    shell: InteractiveShell, magics: AgentMagics, tmp_path: Path
) -> None:
    """`%agent cache import` of a too deeply nested bundle: one line naming the file (was RecursionError)."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(
        UsageError, match=r"deep\.json: not a readable JSON bundle: nested more than 100 levels"
    ):
        shell.run_line_magic("agent", f"cache import {deep}")


def test_package_warnings_are_one_readable_line(capsys: pytest.CaptureFixture[str]) -> None:
    """In a notebook the package's warnings print as one "claude_force_nb: ..." line, without the internal
    file and source line; other warnings keep Python's format."""
    import warnings

    from claude_force_nb import UnpricedModelWarning
    from claude_force_nb._magic import _install_warning_format

    with warnings.catch_warnings(record=True) as others:
        warnings.simplefilter("always")
        _install_warning_format()
        _install_warning_format()  # idempotent: a second %load_ext does not wrap twice
        warnings.warn("model 'x' is not in the rate card", UnpricedModelWarning, stacklevel=1)
        warnings.warn("someone else's", UserWarning, stacklevel=1)
    assert capsys.readouterr().err.splitlines() == ["claude_force_nb: model 'x' is not in the rate card"]
    assert [str(w.message) for w in others] == ["someone else's"]  # handed on to the previous handler


def test_agent_list_shows_every_workflow_step(
    shell: InteractiveShell, magics: AgentMagics, tmp_path: Path
) -> None:
    """`%agent list` shows a long workflow's steps in full (pandas would cut the column at 50 characters)."""
    from IPython.utils.capture import capture_output

    from .conftest import write_claude_dir

    steps = ["bug-investigator", "fixer", "code-reviewer", "bug-investigator", "fixer", "code-reviewer"]
    config = write_claude_dir(tmp_path / "long", workflows={"long-one": steps})
    magics.session.update(config_path=str(config))
    with capture_output() as captured:
        shell.run_line_magic("agent", "list")
    shown = "\n".join(str(value) for output in captured.outputs for value in output.data.values())
    assert " → ".join(steps) in shown


def test_make_lab_allows_root_only_as_root() -> None:
    """`make lab` passes --allow-root to Jupyter when run as root (Jupyter refuses root without it), and only
    then."""
    import os
    import subprocess

    root = Path(__file__).resolve().parent.parent
    command = subprocess.run(["make", "-n", "lab"], cwd=root, capture_output=True, text=True, check=True)
    lab_line = [line for line in command.stdout.splitlines() if "jupyter lab" in line][-1]
    assert ("--allow-root" in lab_line) == (os.geteuid() == 0)


def test_code_insert_puts_the_code_into_the_next_cell(shell: InteractiveShell, magics: AgentMagics) -> None:
    """`-f code --insert` hands the answer's code to `set_next_input` (a new cell below, as jupyter-ai)."""
    shell.rl_next_input = None  # type: ignore[attr-defined]
    run = cell(shell, "fixer -f code --insert --quiet", "Reply with a fenced python block.")
    assert shell.rl_next_input == run.code  # type: ignore[attr-defined]
    with pytest.raises(UsageError, match="--insert goes with -f code"):
        cell(shell, "fixer --insert", "x")


def test_in_and_out_templates_read_the_history(
    shell: InteractiveShell, magics: AgentMagics, sim: Simulator
) -> None:
    """`{{In[n]}}` and `{{Out[n]}}` put an earlier cell's input / output into the task; a cell without an
    output is a one-line UsageError."""
    shell.user_ns["In"] = ["", "total = sum(xs)", "total"]
    shell.user_ns["Out"] = {2: 42}
    cell(shell, "code-reviewer --quiet", "Review {{In[1]}} which gave {{Out[2]}}")
    assert last_user_turn_for(sim, 0) == "<task>\nReview total = sum(xs) which gave 42\n</task>"
    with pytest.raises(UsageError, match=r"\{\{Out\[9\]\}\}: cell 9 has no output"):
        cell(shell, "code-reviewer", "{{Out[9]}}")


def test_error_option_appends_the_last_traceback(
    shell: InteractiveShell, magics: AgentMagics, sim: Simulator
) -> None:
    """`--error` adds the last exception's traceback to the task (jupyter-ai's `%ai error`)."""
    shell.run_cell("def ratio(a, b):\n    return a / b\nratio(1, 0)")
    cell(shell, "bug-investigator --error --quiet", "Why does this fail?")
    task = last_user_turn_for(sim, 0)
    assert task.startswith("<task>\nWhy does this fail?\n\nThe last error in the notebook:")
    assert "ZeroDivisionError: division by zero" in task and "return a / b" in task


def test_help_lists_cell_options_and_examples(
    shell: InteractiveShell, magics: AgentMagics, capsys: pytest.CaptureFixture[str]
) -> None:
    """`%agent help` shows the cell options (not only the line commands) and examples."""
    shell.run_line_magic("agent", "help")
    shown = capsys.readouterr().out
    for option in ("--format", "--inputs", "--insert", "--error", "--budget", "--workflow"):
        assert option in shown
    assert "Examples:" in shown and "%agent list" in shown


def test_an_unknown_option_names_the_closest_valid_ones(shell: InteractiveShell, magics: AgentMagics) -> None:
    """A misspelt option is refused with the nearest real ones."""
    with pytest.raises(UsageError, match=r"--tempreture: did you mean --temperature\?"):
        cell(shell, "code-reviewer --tempreture 0.2", "x")
    with pytest.raises(UsageError, match=r"--zzzzzz: no such option"):
        cell(shell, "code-reviewer --zzzzzz", "x")


def test_the_cache_deadline_is_a_config_option(magics: AgentMagics, shell: InteractiveShell) -> None:
    """`%config AgentMagics.cache_timeout_s` reaches the session's cache; an unusable value is refused."""
    shell.run_line_magic("config", "AgentMagics.cache_timeout_s = 0.25")
    cache = magics.session.orchestrator().cache
    assert cache is not None and cache.timeout_s == 0.25
    with pytest.raises(ConfigError, match="cache_timeout_s"):
        magics.session.update(cache_timeout_s=0.0)
    assert magics.session.settings.cache_timeout_s == 0.25


def test_runs_of_one_cell(shell: InteractiveShell, magics: AgentMagics) -> None:
    """`%agent runs last` (or a cell number, or a batch id) shows only that cell's rows."""
    cell(shell, "code-reviewer --quiet", "first")
    run = cell(shell, "code-reviewer,fixer --quiet", "second")
    frame = shell.run_line_magic("agent", "runs last")
    assert sorted(frame["agent"]) == ["code-reviewer", "fixer"] and set(frame["task"]) == {"second"}
    assert list(shell.run_line_magic("agent", f"runs {run.batch_id}")["run_id"]) == list(frame["run_id"])
    assert len(shell.run_line_magic("agent", "runs")) == 3
    with pytest.raises(UsageError, match="cell 9999 ran no %%agent calls"):
        shell.run_line_magic("agent", "runs 9999")


def test_provenance_is_the_outputs_metadata(shell: InteractiveShell, magics: AgentMagics) -> None:
    """The result's display metadata names each call's agent, model, run id, cost and cache key."""
    run = cell(shell, "code-reviewer,fixer --quiet", "x")
    _data, metadata = shell.display_formatter.format(run)
    calls = metadata["claude_force_nb"]["calls"]
    assert [c["run_id"] for c in calls] == [r.run_id for r in run.results]
    assert all(c["model"] and c["cost_usd"] > 0 and c["cached"] is False for c in calls)
    assert metadata["claude_force_nb"]["batch_id"] == run.batch_id


def test_frames_the_magic_shows_are_never_typeset_as_maths(
    shell: InteractiveShell, magics: AgentMagics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every DataFrame the magic returns or displays (the run log, cache entries, models, `--inputs` results,
    `%agent list`) renders HTML that MathJax skips, so a task or answer with `$` amounts stays text; each is
    still a pandas DataFrame (so are the frames derived from it), and pandas' own option and any other frame
    are untouched."""
    from IPython.utils.capture import capture_output

    shell.user_ns["df"] = pd.DataFrame({"item": ["a $5 lamp", "a $7 chair"]})
    cell(shell, "rows << code-reviewer --inputs df --quiet", "Is {{item}} worth $6?")
    frames = {
        "inputs": shell.user_ns["rows"],
        "runs": shell.run_line_magic("agent", "runs"),
        "runs last": shell.run_line_magic("agent", "runs last"),
        "cache info": shell.run_line_magic("agent", "cache info"),
        "stats": shell.run_line_magic("agent", "stats"),
        "models": shell.run_line_magic("agent", "models"),
    }
    frames["derived"] = frames["runs"][frames["runs"]["status"] == "succeeded"].head()
    html_formatter = shell.display_formatter.formatters["text/html"]
    monkeypatch.setattr(html_formatter, "enabled", True)  # the test shell formats text/plain only
    monkeypatch.setattr(shell.display_formatter, "active_types", ["text/plain", "text/html"])
    with capture_output() as captured:
        shell.run_line_magic("agent", "list")
    shown = [output.data["text/html"] for output in captured.outputs if "text/html" in output.data]
    assert len(shown) == 2 and all("mathjax_ignore" in html for html in shown)
    assert "a $5 lamp" in frames["runs"]._repr_html_()
    for name, frame in frames.items():
        assert isinstance(frame, pd.DataFrame), name
        html = shell.display_formatter.format(frame)[0]["text/html"]
        assert "tex2jax_ignore" in html and "mathjax_ignore" in html, name
    assert pd.get_option("display.html.use_mathjax") is True
    for plain in (pd.DataFrame(frames["runs"]), shell.user_ns["df"]):
        assert type(plain) is pd.DataFrame and "mathjax_ignore" not in plain._repr_html_()
