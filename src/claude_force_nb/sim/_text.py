"""Deterministic, plainly fake answers, and the honest cut by max_tokens and stop sequences.

The natural answer depends only on (model, system, messages, temperature) and the seed; max_tokens and stop
sequences then cut it, as they would cut a real model's output. So a request with a small max_tokens gets a
prefix of the answer the same request gets with a large one, and adding cache_control changes nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._tokens import compact_json

__all__ = ["answer_key", "cut_answer", "last_user_line", "natural_answer", "structured_answer"]

_QUOTE_CHARS = 60

# Filler sentences are every combination of these four lists, built once at import (8**4 = 4096 of them), so
# an answer is a single `rng.choices` call rather than a word-by-word loop on the hot path.
_SUBJECTS = (
    "The simulated model",
    "This placeholder answer",
    "Each agent",
    "The orchestrator",
    "A cached prefix",
    "The local server",
    "Every request",
    "The token budget",
)
_VERBS = ("describes", "considers", "summarizes", "outlines", "revisits", "compares", "tracks", "explains")
_OBJECTS = (
    "the question",
    "a plausible plan",
    "the next step",
    "the trade-offs",
    "the main idea",
    "one detail",
    "the expected result",
    "a short example",
)
_ENDINGS = (
    "in plain words.",
    "without real reasoning.",
    "for testing only.",
    "at a steady pace.",
    "with filler prose.",
    "as deterministic text.",
    "before it stops.",
    "one more time.",
)
_SENTENCES = tuple(" ".join(words) for words in itertools.product(_SUBJECTS, _VERBS, _OBJECTS, _ENDINGS))
_MEAN_SENTENCE_CHARS = sum(len(s) + 1 for s in _SENTENCES) / len(_SENTENCES)


def _strip_cache_control(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _strip_cache_control(v) for k, v in obj.items() if k != "cache_control"}
    if isinstance(obj, list):
        return [_strip_cache_control(v) for v in obj]
    return obj


def answer_key(
    *,
    model: str,
    system: object,
    messages: Sequence[Mapping[str, Any]],
    temperature: float | None,
    has_cache_control: bool,
) -> bytes:
    """What the answer is a function of, as canonical bytes (cache markers removed when present)."""
    if has_cache_control:
        system, messages = _strip_cache_control(system), _strip_cache_control(list(messages))
    temp = 1.0 if temperature is None else float(temperature)
    return compact_json([model, system, messages, temp]).encode()


_TAG_LINE = re.compile(r"</?[A-Za-z_][\w.-]*(\s[^<>]*)?>")


def last_user_line(messages: Sequence[Mapping[str, Any]]) -> str:
    """The first non-empty line of the last user message's text (tag-only lines skipped), truncated."""
    for message in reversed(messages):
        if message["role"] != "user":
            continue
        content = message["content"]
        if isinstance(content, str):
            text = content
        else:
            text = "\n".join(str(b["text"]) for b in content if b.get("type") == "text")
        for line in text.splitlines():
            line = line.strip()
            # Skip lines that are only a delimiter tag (`<task>`, `</task-2>`, `<x attr="y">`): clients wrap
            # the real text in such tags, and the first line of the text itself is the useful thing to echo.
            if line and not _TAG_LINE.fullmatch(line):
                return line if len(line) <= _QUOTE_CHARS else line[: _QUOTE_CHARS - 3] + "..."
        return ""
    return ""


def natural_answer(*, model: str, quote: str, key: bytes, seed: int, min_tokens: int, max_tokens: int) -> str:
    """The answer a request would get with no max_tokens or stop sequence in the way."""
    digest = hashlib.blake2b(b"%d\x1e%s" % (seed, key), digest_size=16).digest()
    rng = random.Random(int.from_bytes(digest, "big"))
    target_chars = 4 * rng.randint(min_tokens, max_tokens)
    head = f'[simulated {model}]\nYou asked: "{quote}"\n'
    sentences: list[str] = []
    length = len(head) - 1  # the joins below add one space per sentence after the first
    while length < target_chars:
        k = max(1, int((target_chars - length) / _MEAN_SENTENCE_CHARS) + 1)
        for sentence in rng.choices(_SENTENCES, k=k):
            sentences.append(sentence)
            length += len(sentence) + 1
            if length >= target_chars:
                break
    # Always at least one sentence, so every answer ends in a full stop after the quoted line.
    return head + " ".join(sentences or rng.choices(_SENTENCES))


def structured_answer(template: Any, *, key: bytes, seed: int) -> str:
    """The JSON answer to a request that showed a JSON example (see `_structured`)."""
    from ._structured import fill_template

    digest = hashlib.blake2b(b"%d\x1ejson\x1e%s" % (seed, key), digest_size=16).digest()
    rng = random.Random(int.from_bytes(digest, "big"))
    return json.dumps(fill_template(template, rng), ensure_ascii=False)


def cut_answer(text: str, *, max_tokens: int, stop_sequences: Sequence[str]) -> tuple[str, str, str | None]:
    """(text, stop_reason, stop_sequence) after the model "generated" `text` under these limits.

    A stop sequence wins when it is fully produced within the max_tokens budget (4 characters per token); the
    text is cut before it. Otherwise a text longer than the budget is cut to exactly max_tokens tokens.
    """
    limit = 4 * max_tokens
    best: tuple[int, str] | None = None
    for seq in stop_sequences:
        at = text.find(seq)
        if at >= 0 and at + len(seq) <= limit and (best is None or at < best[0]):
            best = (at, seq)
    if best is not None:
        return text[: best[0]], "stop_sequence", best[1]
    if len(text) > limit:
        return text[:limit], "max_tokens", None
    return text, "end_turn", None
