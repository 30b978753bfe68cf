"""The pure parts of the simulator, as tables: config, faults, token model, answer cutting, exports."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import claude_force_nb.sim as sim_package
from claude_force_nb.sim import FAULT_KINDS, MESSAGE_OVERHEAD_TOKENS, Fault, SimConfig, count_input_tokens
from claude_force_nb.sim import estimate_tokens as est
from claude_force_nb.sim._text import cut_answer


def test_exports_are_complete_and_sorted() -> None:
    """The facade's __all__ lists the public API, sorted, and every name resolves."""
    # Ruff's RUF022 order: CONSTANTS, then Classes, then functions, each alphabetical.
    order = sorted(sim_package.__all__, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n))
    assert sim_package.__all__ == order
    for name in ("Fault", "SimConfig", "Simulator", "estimate_tokens", "serve"):
        assert name in sim_package.__all__
    for name in sim_package.__all__:
        assert getattr(sim_package, name) is not None


def test_importing_sim_pulls_in_no_heavy_or_sdk_modules() -> None:
    """`import claude_force_nb.sim` adds neither the anthropic SDK nor IPython, pandas or matplotlib."""
    code = (
        "import sys, claude_force_nb\n"
        "before = set(sys.modules)\n"
        "import claude_force_nb.sim\n"
        "added = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(sorted(added & {'anthropic', 'IPython', 'pandas', 'matplotlib', 'ipywidgets'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(("text", "tokens"), [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("é" * 8, 2)])
def test_estimate_tokens_is_ceil_of_a_quarter_of_the_length(text: str, tokens: int) -> None:
    """estimate_tokens(text) == ceil(len(text) / 4), counting characters."""
    assert est(text) == tokens


def test_count_input_tokens_follows_the_documented_formula() -> None:
    """Tools, system blocks and message blocks each count separately, plus a fixed overhead per message."""
    request = {
        "system": [{"type": "text", "text": "abcdefgh"}, {"type": "text", "text": "x", "cache_control": {}}],
        "messages": [
            {"role": "user", "content": "hello"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "calc", "input": {"b": 1, "a": 2}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "3"}]},
        ],
    }
    expected = (
        est("abcdefgh")
        + est("x")
        + 3 * MESSAGE_OVERHEAD_TOKENS
        + est("hello")
        + est('calc{"a":2,"b":1}')
        + est("3")
    )
    assert count_input_tokens(request) == expected


@pytest.mark.parametrize(
    ("max_tokens", "stops", "expected"),
    [
        (100, (), ("Hello world. Bye.", "end_turn", None)),
        (2, (), ("Hello wo", "max_tokens", None)),
        (100, ("world", "Hello"), ("", "stop_sequence", "Hello")),
        (100, ("Bye", "world"), ("Hello ", "stop_sequence", "world")),
        (2, ("Bye",), ("Hello wo", "max_tokens", None)),  # the stop sequence lies beyond the budget
        (0, (), ("", "max_tokens", None)),
    ],
)
def test_cut_answer_is_honest_about_why_it_stopped(
    max_tokens: int, stops: tuple[str, ...], expected: tuple[str, str, str | None]
) -> None:
    """The earliest stop sequence within budget wins; else max_tokens cuts at 4 characters a token."""
    assert cut_answer("Hello world. Bye.", max_tokens=max_tokens, stop_sequences=stops) == expected


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"port": -1}, "port"),
        ({"port": 70000}, "port"),
        ({"port": True}, "port"),
        ({"ttft_s": -0.1}, "ttft_s"),
        ({"per_token_s": float("nan")}, "per_token_s"),
        ({"min_output_tokens": 0}, "min_output_tokens"),
        ({"min_output_tokens": 50, "max_output_tokens": 10}, "min_output_tokens"),
        ({"api_key": ""}, "api_key"),
        ({"models": "claude"}, "models"),
        ({"models": []}, "models"),
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"fault_rates": {"meteor": 0.1}}, "meteor"),
        ({"fault_rates": {"status": 0.1}}, "status"),
        ({"fault_rates": {"overloaded": 1.5}}, "overloaded"),
        ({"fault_rates": {"overloaded": 0.6, "reset": 0.6}}, "sum"),
        ({"min_cache_tokens": 0}, "min_cache_tokens"),
        ({"min_cache_tokens": {"claude": -5}}, "min_cache_tokens"),
        ({"retry_after_ms": "yes"}, "retry_after_ms"),
        ({"colour": "red"}, "unknown simulator option"),
    ],
)
def test_bad_options_raise_value_error(options: dict[str, Any], fragment: str) -> None:
    """Every bad option is a ValueError naming it, raised before anything starts."""
    with pytest.raises(ValueError, match=fragment):
        sim_package.serve(**options)


def test_config_round_trips_through_json_form() -> None:
    """to_dict/from_dict carry every field, including sets and mappings, to a subprocess unchanged."""
    config = SimConfig(
        models={"b", "a"},
        fault_rates={"overloaded": 0.1},
        min_cache_tokens={"claude-haiku": 2048},
        requests_per_minute=10,
        ttft_s=1,
    )
    assert SimConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["models"] == ["a", "b"]
    assert isinstance(config.ttft_s, float)


def test_serve_merges_config_and_options() -> None:
    """serve(config=..., **options) applies the options on top of the config."""
    handle = sim_package.serve(config=SimConfig(seed=4, ttft_s=0.5), ttft_s=0.25)
    assert (handle.config.seed, handle.config.ttft_s) == (4, 0.25)


def test_min_cache_tokens_uses_the_longest_matching_prefix() -> None:
    """A mapping picks the longest model prefix, and falls back to 1024 when nothing matches."""
    config = SimConfig(min_cache_tokens={"claude": 100, "claude-haiku": 2048})
    assert config.min_cache_tokens_for("claude-haiku-4") == 2048
    assert config.min_cache_tokens_for("claude-opus-4") == 100
    assert config.min_cache_tokens_for("other") == 1024
    assert SimConfig(min_cache_tokens=7).min_cache_tokens_for("anything") == 7


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"kind": "meteor"}, "unknown fault kind"),
        ({"kind": "status"}, "status="),
        ({"kind": "status", "status": 200}, "status="),
        ({"kind": "overloaded", "status": 500}, "only applies"),
        ({"kind": "rate_limit", "retry_after": -1}, "retry_after"),
        ({"kind": "hang", "hang_s": float("inf")}, "hang_s"),
        ({"kind": "stream_overloaded", "after_tokens": -1}, "after_tokens"),
        ({"kind": "overloaded", "should_retry": "yes"}, "should_retry"),
    ],
)
def test_bad_faults_raise_value_error(kwargs: dict[str, Any], fragment: str) -> None:
    """Fault validates its fields when built, so a bad script fails at the call site."""
    kind = kwargs.pop("kind")
    with pytest.raises(ValueError, match=fragment):
        Fault(kind, **kwargs)


def test_fault_round_trips_and_knows_its_status() -> None:
    """Fault.to_dict/from_dict are inverse, and status_code is what the client sees first."""
    fault = Fault("rate_limit", retry_after=0.5, should_retry=True)
    assert Fault.from_dict(fault.to_dict()) == fault
    assert {
        kind: Fault(kind, status=418 if kind == "status" else None).status_code for kind in FAULT_KINDS
    } == {
        "rate_limit": 429,
        "overloaded": 529,
        "server_error": 500,
        "status": 418,
        "stream_overloaded": 529,
        "reset": None,
        "hang": None,
        "malformed": 200,
    }


def test_quote_skips_delimiter_tag_lines() -> None:
    """The echoed line is the task's first real line, not the `<task>` tag a client wraps it in."""
    from claude_force_nb.sim._text import last_user_line

    assert last_user_line([{"role": "user", "content": "<task>\nReview json\n</task>"}]) == "Review json"
    assert last_user_line([{"role": "user", "content": '<step agent="a">\n\nfix it'}]) == "fix it"
    assert last_user_line([{"role": "user", "content": "<b>bold</b> text"}]) == "<b>bold</b> text"


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"ttft_s": float("nan")}, "ttft_s"),
        ({"per_token_s": float("inf")}, "per_token_s"),
        ({"port": float("nan")}, "port"),
        ({"requests_per_minute": float("inf")}, "requests_per_minute"),
        ({"fault_rates": {"overloaded": float("nan")}}, "overloaded"),
        ({"startup_timeout_s": float("nan")}, "startup_timeout_s"),
        ({"startup_timeout_s": 0}, "startup_timeout_s"),
    ],
)
def test_non_finite_options_are_refused(options: dict[str, Any], fragment: str) -> None:
    """NaN and infinity are never a usable latency, port, limit, probability or start-up wait."""
    with pytest.raises(ValueError, match=fragment):
        sim_package.serve(**options)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fault", "overloaded=abc"], "--fault expects KIND=PROBABILITY, got 'overloaded=abc'"),
        (["--ttft", "nan"], "ttft_s must be a finite number of seconds"),
        (["--config-json", "[" * 100_000], "--config-json is nested too deeply"),
        (["--config-json", "[]"], "--config-json must be a JSON object of SimConfig fields, got a list"),
        (["--config-json", "{"], "--config-json is not valid JSON"),
    ],
)
def test_cli_refuses_bad_values_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command line exits 2 with a usage line and one error line naming the option."""
    from claude_force_nb.sim.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in error and "Traceback" not in error
