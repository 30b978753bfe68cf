"""Structured-output emulation: a request showing a JSON example gets JSON of that shape."""

from __future__ import annotations

import json
import random

import anthropic

from claude_force_nb.sim import Simulator
from claude_force_nb.sim._structured import fill_template, json_template

EXAMPLE = '{"severity": "none|low|medium|high", "line": 40, "finding": "text", "ok": true, "tags": ["t"]}'


def test_template_is_found_in_system_then_user_turn() -> None:
    """A fenced json block in the system prompt wins; otherwise the last user turn's is used."""
    system = f"Answer with only JSON:\n```json\n{EXAMPLE}\n```"
    assert json_template(system, []) == json.loads(EXAMPLE)
    user = [{"role": "user", "content": 'Reply as\n```json\n["x"]\n```'}]
    assert json_template("plain", user) == ["x"]
    assert json_template("```json\nnot json\n```", []) is None
    assert json_template("no example", [{"role": "user", "content": "hi"}]) is None


def test_fill_follows_the_shape() -> None:
    """Choices pick an option, numbers stay within range, lists and objects keep their shape."""
    rng = random.Random(1)
    for _ in range(50):
        value = fill_template(json.loads(EXAMPLE), rng)
        assert value["severity"] in {"none", "low", "medium", "high"}
        assert 0 <= value["line"] <= 40 and isinstance(value["ok"], bool)
        assert 1 <= len(value["tags"]) <= 3 and all(isinstance(t, str) for t in value["tags"])


async def test_the_server_answers_with_bare_deterministic_json(sim: Simulator) -> None:
    """Through the SDK, the answer parses as JSON of the example's shape, and repeats are identical."""
    client = anthropic.AsyncAnthropic(base_url=sim.base_url, api_key="k", max_retries=0)
    system = f"Answer with only JSON like:\n```json\n{EXAMPLE}\n```"
    answers = []
    for _ in range(2):
        message = await client.messages.create(
            model="claude-haiku-5-5",
            max_tokens=300,
            system=system,
            messages=[{"role": "user", "content": "x"}],
        )
        answers.append(message.content[0].text)
    await client.close()
    assert answers[0] == answers[1]
    assert set(json.loads(answers[0])) == {"severity", "line", "finding", "ok", "tags"}
