"""Pure parsing for the magics, as tables."""

from __future__ import annotations

import pandas as pd
import pytest

from claude_force_nb._parse import (
    Capture,
    LineCommand,
    MagicInputError,
    parse_agent_list,
    parse_line,
    render_template,
    rows_from_inputs,
    split_capture,
    to_prompt_text,
    unquote,
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("code-reviewer -m x", Capture(None, True, "code-reviewer -m x")),
        ("result << code-reviewer", Capture("result", False, "code-reviewer")),
        ("result= << a,b --quiet", Capture("result", True, "a,b --quiet")),
        ("  r  =  <<  a", Capture("r", True, "a")),
        ("2bad << a", Capture(None, True, "2bad << a")),
    ],
)
def test_split_capture(line: str, expected: Capture) -> None:
    """jupysql-style capture prefixes are recognised; anything else is left alone."""
    assert split_capture(line) == expected


def test_agent_lists() -> None:
    """Comma lists are split and validated; duplicates and bad names are refused."""
    assert parse_agent_list("a, b,c") == ("a", "b", "c")
    with pytest.raises(MagicInputError, match="listed twice"):
        parse_agent_list("a,a")
    with pytest.raises(MagicInputError, match="not an agent name"):
        parse_agent_list("a,b c")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{x}}", "1"),
        ("{{ x }} and {x} and $x and {{{x}}}", "1 and {x} and $x and {1}"),
        ("f'{x!r}' {{ not valid }}", "f'{x!r}' {{ not valid }}"),
        ("{{obj.name}}", "named"),
        ('{"a": {{x}}}', '{"a": 1}'),
    ],
)
def test_render_template(template: str, expected: str) -> None:
    """Only {{name}} and {{name.attr}} are replaced; other braces and dollars stay as typed."""

    class Obj:
        name = "named"

    values = {"x": 1, "obj": Obj()}
    assert render_template(template, lambda n: values[n]) == expected


def test_unknown_template_names_are_errors() -> None:
    """An unknown name or attribute says which, and how to fix it."""
    with pytest.raises(MagicInputError, match=r"\{\{missing\}\} is not defined: assign missing"):
        render_template("{{missing}}", lambda n: {}[n])
    with pytest.raises(MagicInputError, match="has no attribute 'nope'"):
        render_template("{{x.nope}}", lambda n: 1)


def test_values_become_prompt_text() -> None:
    """Frames become CSV, containers JSON, anything else str()."""
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    assert to_prompt_text(frame) == "a,b\n1,x\n2,y"
    assert to_prompt_text({"k": [1]}) == '{\n  "k": [\n    1\n  ]\n}'
    assert to_prompt_text(3.5) == "3.5"


def test_rows_from_inputs() -> None:
    """--inputs takes a DataFrame or a list of dicts; anything else names the problem."""
    assert rows_from_inputs(pd.DataFrame({"m": ["json"]}), name="df") == [{"m": "json"}]
    assert rows_from_inputs([{"m": 1}], name="rows") == [{"m": 1}]
    for bad, message in [("text", "expected a DataFrame"), ([1], "row 0 is a int"), ([], "has no rows")]:
        with pytest.raises(MagicInputError, match=message):
            rows_from_inputs(bad, name="v")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", LineCommand("help")),
        ("list", LineCommand("list")),
        ("plot timeline", LineCommand("plot", ("timeline",))),
        ("plot cost dark", LineCommand("plot", ("cost", "dark"))),
        ("cache", LineCommand("cache", ("info",))),
        ("cache export 'my bundle.json'", LineCommand("cache", ("export", "my bundle.json"))),
        ("cache replay ON", LineCommand("cache", ("replay", "on"))),
        ("budget $2.50", LineCommand("budget", ("$2.50",))),
        ("budget off", LineCommand("budget", ("off",))),
        ("chat reset review", LineCommand("chat", ("reset", "review"))),
    ],
)
def test_line_commands(line: str, expected: LineCommand) -> None:
    """Each %agent sub-command parses to its command and arguments."""
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "frobnicate",
        "list extra",
        "plot pie",
        "plot cost sepia",
        "budget -1",
        "budget lots",
        "chat forget x",
        "cache drop",
        "'",
    ],
)
def test_bad_line_commands_show_usage(line: str) -> None:
    """Anything else is refused with the usage text."""
    with pytest.raises(MagicInputError, match="%agent list"):
        parse_line(line)


def test_unquote() -> None:
    """One pair of matching quotes is removed; anything else is kept."""
    assert unquote('"Be terse."') == "Be terse."
    assert unquote("'x'") == "x"
    assert unquote("\"x'") == "\"x'"
    assert unquote(None) is None


def test_a_template_value_above_the_limit_is_refused_with_its_size() -> None:
    """A whole DataFrame in a {{name}} was sent silently; now its size and how to pass less are said."""
    frame = pd.DataFrame({"n": range(50_000), "label": ["module"] * 50_000})
    size = len(to_prompt_text(frame))
    with pytest.raises(MagicInputError) as info:
        render_template("Summarise {{frame}}", lambda n: frame, max_chars=size - 1)
    message = str(info.value)
    assert f"{{{{frame}}}} expands to {size:,} characters" in message
    assert "DataFrame of shape (50000, 2)" in message and "frame.head(20)" in message
    assert "max_template_chars" in message and "\n" not in message
    assert render_template("{{frame}}", lambda n: frame, max_chars=size).endswith("module")
    with pytest.raises(
        MagicInputError, match=r"\{\{text\}\} expands to 5,000 characters \(str\).*text\[:1000\]"
    ):
        render_template("{{text}}", lambda n: "x" * 5000, max_chars=4000)
