"""Structured-output emulation: a request that shows a JSON example gets JSON of that shape back.

A real model told "answer with only JSON like this: ```json {...} ```" answers with such JSON. So that
notebooks which parse answers also run offline, the simulator looks for a fenced ```json example in the system
prompt (then in the last user turn) and fills it in, deterministically per request and seed:

- a string holding `|` (`"none|low|medium|high"`): one of the options;
- any other string: a short phrase that says it is simulated;
- a number: an integer from 0 to that number;
- a boolean: true or false;
- a list: one to three items shaped like its first item;
- an object: each value filled the same way, keys kept.

The answer is then the bare JSON, like a model that follows the instruction. Requests without a JSON example
are answered with the usual marked prose.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["fill_template", "json_template"]

_FENCE = re.compile(r"```json[ \t]*\n(.*?)```", re.S)
_WORDS = ("simulated", "placeholder", "example", "offline", "sample", "synthetic", "stand-in", "demo")
_NOUNS = ("finding", "note", "detail", "summary", "answer", "result", "item", "point")


def _texts(system: object, messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """The system prompt, then the last user turn, as plain text (where an example is looked for)."""
    texts: list[str] = []
    if isinstance(system, str):
        texts.append(system)
    elif isinstance(system, list):
        texts.append("\n".join(str(b.get("text", "")) for b in system if isinstance(b, Mapping)))
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                texts.append("\n".join(str(b.get("text", "")) for b in content if isinstance(b, Mapping)))
            break
    return texts


def json_template(system: object, messages: Sequence[Mapping[str, Any]]) -> Any | None:
    """The JSON example (an object or a list) the request shows, or None."""
    for text in _texts(system, messages):
        for block in reversed(_FENCE.findall(text)):
            try:
                value = json.loads(block)
            except ValueError:
                continue
            if isinstance(value, (dict, list)):
                return value
    return None


def fill_template(template: Any, rng: random.Random) -> Any:
    """A value shaped like `template` (see the module docstring)."""
    if isinstance(template, bool):
        return rng.random() < 0.5
    if isinstance(template, (int, float)):
        return rng.randint(0, max(int(template), 0))
    if isinstance(template, str):
        options = [o.strip() for o in template.split("|") if o.strip()]
        if len(options) > 1:
            return rng.choice(options)
        return f"{rng.choice(_WORDS)} {rng.choice(_NOUNS)} {rng.randrange(16**4):04x}"
    if isinstance(template, list):
        if not template:
            return []
        return [fill_template(template[0], rng) for _ in range(rng.randint(1, 3))]
    if isinstance(template, dict):
        return {key: fill_template(value, rng) for key, value in template.items()}
    return template
