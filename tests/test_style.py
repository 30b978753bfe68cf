"""Math-safe rendering and the shared status palette: what our Markdown and HTML look like as strings."""

from __future__ import annotations

import re

import pytest
from IPython.core.interactiveshell import InteractiveShell

from claude_force_nb._display import AgentRun, BatchTable
from claude_force_nb._magic import AgentMagics
from claude_force_nb._records import RunRecord
from claude_force_nb._results import AgentResult, WorkflowResult
from claude_force_nb._style import (
    MATH_IGNORE,
    STATUS_COLOURS,
    escape_markdown_math,
    math_safe_markdown,
    small_note,
    status_badge,
)

from .test_magic import cell

_CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)


def bare_dollars(markdown: str) -> int:
    """`$` signs a Markdown renderer could take as a maths delimiter: unescaped and outside code."""
    return len(re.findall(r"(?<!\\)\$", _CODE.sub("", markdown)))


def guarded(markdown: str) -> bool:
    """The Markdown sits inside an element MathJax skips."""
    return f'class="{MATH_IGNORE}"' in markdown


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$0.0020 then $0.0017", r"\$0.0020 then \$0.0017"),
        (r"already \$5", r"already \$5"),
        (r"a backslash then \\$5", r"a backslash then \\\$5"),
        ("`$HOME` and $x", r"`$HOME` and \$x"),
        ("``a ` $b`` and $c", r"``a ` $b`` and \$c"),
        ("```sh\necho $PATH\n```\ncost $3", "```sh\necho $PATH\n```\ncost \\$3"),
        ("~~~\n$a\n~~~\n$b", "~~~\n$a\n~~~\n\\$b"),
        ("```\nstill streaming $a", "```\nstill streaming $a"),
        ("$$x^2$$", r"\$\$x^2\$\$"),
        ("no dollars", "no dollars"),
    ],
)
def test_dollars_are_escaped_outside_code(text: str, expected: str) -> None:
    """Every `$` outside code gets one backslash (escaped ones keep theirs); code is left as typed."""
    assert escape_markdown_math(text) == expected


def test_math_safe_markdown_keeps_markdown_inside_an_ignored_block() -> None:
    """The wrapper is an HTML block with blank lines around the text, so the text inside is still Markdown."""
    wrapped = math_safe_markdown("**$1** and $2")
    assert wrapped.startswith(f'<div class="{MATH_IGNORE}">\n\n') and wrapped.endswith("\n\n</div>")
    assert r"**\$1** and \$2" in wrapped and bare_dollars(wrapped) == 0


def test_small_note_escapes_html_and_dollars() -> None:
    """A summary note is HTML-escaped, dollar-escaped and marked for MathJax to skip."""
    note = small_note("2 calls · $0.0020 · <b>")
    assert MATH_IGNORE in note and "&lt;b&gt;" in note and bare_dollars(note) == 0


def _result(agent: str, output: str, cost: float, *, status: str = "succeeded") -> AgentResult:
    return AgentResult(
        agent_name=agent,
        success=status in ("succeeded", "cached"),
        output=output,
        errors=[] if status == "succeeded" else [f"budget $0.0010 left, call needs $0.0020 ({agent})"],
        status=status,
        model="claude-haiku-4-5",
        cost_usd=cost,
    )


def test_workflow_summary_with_two_costs_is_not_maths() -> None:
    """The defect: a workflow's step list shows costs on every line; rendered, none is a maths delimiter."""
    steps = [_result("a", "step one", 0.002), _result("b", "It costs $5, not $3.", 0.0017)]
    markdown = AgentRun(steps, kind="workflow", workflow="wf")._repr_mimebundle_()[0]["text/markdown"]
    assert markdown.count(r"\$0.00") >= 3  # two step summaries and the run summary
    assert r"It costs \$5, not \$3." in markdown
    assert bare_dollars(markdown) == 0 and guarded(markdown)
    for shown in (WorkflowResult("wf", ["a", "b"], steps)._repr_markdown_(), steps[1]._repr_markdown_()):
        assert bare_dollars(shown) == 0 and guarded(shown)


def test_failures_and_fan_outs_are_escaped() -> None:
    """Error text (which quotes dollar amounts) and each fan-out answer are escaped too."""
    results = [_result("a", "$1 or $2", 0.001), _result("b", "", 0.0, status="refused")]
    markdown = AgentRun(results, kind="fanout")._repr_mimebundle_()[0]["text/markdown"]
    assert r"\$1 or \$2" in markdown and r"budget \$0.0010 left" in markdown
    assert bare_dollars(markdown) == 0 and guarded(markdown)


def test_markdown_math_format_typesets_answers_but_not_our_text() -> None:
    """`-f markdown+math` leaves the answer's `$x$` for MathJax; the summary stays escaped and skipped."""
    run = AgentRun([_result("a", "Euler: $e^{i\\pi} + 1 = 0$", 0.002)], fmt="markdown+math")
    markdown = run._repr_mimebundle_()[0]["text/markdown"]
    assert markdown.startswith("Euler: $e^{i\\pi} + 1 = 0$")
    note = markdown.split("\n\n")[-1]
    assert note.startswith(f'<small class="{MATH_IGNORE}">') and r"\$0.0020" in note


def test_magic_answer_with_dollars_renders_escaped(shell: InteractiveShell, magics: AgentMagics) -> None:
    """End to end on the simulator (which quotes the task in its answer): the cell's Markdown has no bare `$`,
    and `-f markdown+math` keeps the answer's own dollars."""
    run = cell(shell, "code-reviewer --quiet", "Is $5 more than $3?")
    assert "$5 more than $3" in run.text
    markdown = run._repr_mimebundle_()[0]["text/markdown"]
    assert r"\$5 more than \$3" in markdown and bare_dollars(markdown) == 0
    raw = cell(shell, "code-reviewer --quiet -f markdown+math", "Is $5 more than $3?")
    assert "$5 more than $3" in raw._repr_mimebundle_()[0]["text/markdown"]


def test_live_table_is_skipped_by_mathjax_and_uses_the_palette() -> None:
    """Costs in the live table never pair up as maths; each status shows its palette colour."""
    table = BatchTable(expected=2, title="2 calls")
    for status in ("succeeded", "failed"):
        record = RunRecord(run_id=status, batch_id="b", agent="a", model="m", task="t", status=status)
        table.records[record.run_id] = record
    rendered = table.render()
    assert f"class='cfnb-table {MATH_IGNORE}'" in rendered
    for status in ("succeeded", "failed"):
        assert STATUS_COLOURS[status] in rendered and status_badge(status) in rendered


def test_json_fan_out_shows_one_json_view_per_agent() -> None:
    """`-f json` on a fan-out: a JSON block under each agent (no literal `## agent` text), `.value` a dict by
    agent; an answer that is not JSON is shown as text with a note."""
    results = [_result("a", '{"score": 3}', 0.001), _result("b", "```json\n[1, 2]\n```", 0.001)]
    run = AgentRun(results, kind="fanout", fmt="json")
    bundle = run._repr_mimebundle_()[0]
    assert run.value == {"a": {"score": 3}, "b": [1, 2]}
    assert '#### a\n\n```json\n{\n  "score": 3\n}\n```' in bundle["text/markdown"]
    assert "#### b\n\n```json\n[\n  1,\n  2\n]\n```" in bundle["text/markdown"]
    assert "##" not in bundle["text/plain"]
    mixed = AgentRun([results[0], _result("c", "Sorry, $5.", 0.001)], kind="fanout", fmt="json")
    shown = mixed._repr_mimebundle_()[0]
    assert "not JSON; shown as text" in shown["text/markdown"] and bare_dollars(shown["text/markdown"]) == 0
    with pytest.raises(ValueError, match="c's answer is not JSON"):
        _ = mixed.value


def test_code_format_without_a_fenced_block_shows_the_text_with_a_note() -> None:
    """`-f code` on prose: no Python highlighting of prose; the text is shown with a note saying why."""
    prose = AgentRun([_result("a", "Use a dict; it costs $1 less.", 0.001)], fmt="code")
    bundle = prose._repr_mimebundle_()[0]
    assert "```python" not in bundle["text/markdown"]
    assert "no fenced code block in the answer; shown as text" in bundle["text/markdown"]
    assert bundle["text/plain"].startswith("Use a dict")
    code = AgentRun([_result("a", "Here:\n```python\nx = 1\n```", 0.001)], fmt="code")
    assert code._repr_mimebundle_()[0]["text/markdown"] == "```python\nx = 1\n```"
