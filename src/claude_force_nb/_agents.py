"""Agents: the claude-force `.claude/claude.json` format, inline agents, and path-safe lazy file reads.

A config maps agent names to a markdown definition file (and optionally a contract file), with domains, a
priority and optional model/max_tokens/temperature overrides; `workflows` are ordered lists of agent names.
Loading validates the structure and every path (existence, and that it stays inside the config's folder)
but reads no definition text: that happens on first use, and again only when the file changes on disk (so
editing an agent's markdown takes effect at its next call, and changes its cache key).
"""

from __future__ import annotations

import difflib
import errno
import json
import math
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from types import MappingProxyType
from typing import Any

from ._exceptions import ConfigError, UnknownAgentError
from ._validate import check_path_text, nesting_place, path_problem, shorten

__all__ = [
    "AGENT_NAME_PATTERN",
    "AgentConfig",
    "AgentSpec",
    "define_agent",
    "describe_unknown",
    "inline_agent",
    "inline_agents",
    "load_config",
    "remove_agent",
    "validate_agent_name",
]

AGENT_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+\Z")
"""`\\Z`, not `$`: `$` also matches before a trailing newline, which would let "name\\n" through."""

_KNOWN_AGENT_KEYS = frozenset(
    {"file", "contract", "domains", "priority", "model", "max_tokens", "temperature"}
)


def validate_agent_name(name: object, *, where: str = "agent name") -> str:
    """Return `name` if it is a valid agent name, else raise ConfigError saying what is allowed."""
    if not isinstance(name, str) or not AGENT_NAME_PATTERN.match(name):
        raise ConfigError(f"{where} {name!r} is not valid: use only letters, digits, '-' and '_'")
    return name


# -- lazy, change-aware file reads --------------------------------------------------------------------------

_file_cache: dict[Path, tuple[tuple[int, int, int], str]] = {}
_file_cache_lock = threading.Lock()


def _read_inside(root: Path, relative: str, *, agent: str, what: str) -> str:
    """Read `root/relative` as UTF-8, refusing anything that resolves outside `root`.

    The check is repeated at read time, not only at load time, so a symlink swapped in after loading is
    still refused. The text is cached against the file's (mtime, size, inode), so repeated calls cost one
    `stat` and an edited file is picked up at once.
    """
    path = _contained(root, relative, agent=agent, what=what)
    try:
        stat = path.stat()
    except OSError as exc:
        raise ConfigError(
            f"agent {agent!r}: {what} file {relative!r} cannot be read: {exc.strerror}"
        ) from exc
    stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    with _file_cache_lock:
        cached = _file_cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"agent {agent!r}: {what} file {relative!r} is not UTF-8 text") from exc
    except OSError as exc:
        raise ConfigError(
            f"agent {agent!r}: {what} file {relative!r} cannot be read: {exc.strerror}"
        ) from exc
    with _file_cache_lock:
        _file_cache[path] = (stamp, text)
    return text


def _contained(root: Path, relative: str, *, agent: str, what: str) -> Path:
    """The resolved path of `relative` under `root`, or ConfigError if it is absolute or escapes `root`."""
    if (
        PurePosixPath(relative).is_absolute()
        or PureWindowsPath(relative).is_absolute()
        or PureWindowsPath(relative).drive
    ):
        raise ConfigError(f"agent {agent!r}: {what} path {relative!r} is absolute; use a path inside {root}")
    if ".." in PurePosixPath(relative.replace("\\", "/")).parts:
        raise ConfigError(f"agent {agent!r}: {what} path {relative!r} uses '..' to leave the config folder")
    try:
        check_path_text(f"agent {agent!r}: {what} path", relative)
        resolved = (root / relative).resolve()
        _refuse_loop(resolved)
    except (OSError, RuntimeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(
            f"agent {agent!r}: {what} path {shorten(relative)} cannot be used: {path_problem(exc)}"
        ) from None
    if not resolved.is_relative_to(root.resolve()):
        raise ConfigError(
            f"agent {agent!r}: {what} path {relative!r} resolves outside the config folder "
            "(a symlink pointing out is not followed)"
        )
    return resolved


# -- agents ----------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AgentSpec:
    """One agent: where its definition comes from, and its per-agent defaults.

    A config agent has `definition_file` (and maybe `contract_file`) relative to `root`; an inline agent has
    `prompt` (and maybe `contract`) text. `extra` keeps keys of the config entry this package does not
    interpret, so nothing in a claude-force config is lost.
    """

    name: str
    prompt: str | None = None
    contract: str | None = None
    definition_file: str | None = None
    contract_file: str | None = None
    root: Path | None = None
    domains: tuple[str, ...] = ()
    priority: int = 2
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    description: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """Where the definition lives: the file path, or "inline"."""
        return self.definition_file if self.definition_file is not None else "inline"

    def definition_text(self) -> str:
        if self.prompt is not None:
            return self.prompt
        if self.definition_file is None or self.root is None:
            raise ConfigError(f"agent {self.name!r} has neither a prompt nor a definition file")
        return _read_inside(self.root, self.definition_file, agent=self.name, what="definition")

    def contract_text(self) -> str | None:
        if self.contract is not None:
            return self.contract
        if self.contract_file is None or self.root is None:
            return None
        return _read_inside(self.root, self.contract_file, agent=self.name, what="contract")

    def system_prompt(self) -> str:
        """The definition, then the contract (when there is one) in a clearly marked block."""
        return build_system_prompt(self.definition_text(), self.contract_text())


def build_system_prompt(definition: str, contract: str | None) -> str:
    """System prompt = definition (+ contract): trusted text from the agent's author, kept verbatim."""
    if not contract or not contract.strip():
        return definition
    return f"{definition.rstrip()}\n\n{wrap_block('agent_contract', contract)}"


def wrap_block(tag: str, text: str, attributes: str = "") -> str:
    """`text` between `<tag>` and `</tag>`, verbatim.

    The text is never escaped or rewritten. If it already contains the closing tag, a numbered tag
    (`task-2`, `task-3`, ...) that it does not contain is used instead, so the block always has exactly one
    real end. The choice depends only on the text, so the same task always produces the same prompt (and
    the same cache key).
    """
    name = tag
    lowered = text.lower()
    n = 1
    while f"</{name}>" in lowered:
        n += 1
        name = f"{tag}-{n}"
    opening = f"<{name} {attributes}>" if attributes else f"<{name}>"
    return f"{opening}\n{text}\n</{name}>"


def build_user_turn(
    task: str, *, previous_output: str | None = None, previous_agent: str | None = None
) -> str:
    """The user turn: the task in a delimited block, plus the previous workflow step's output if any."""
    if previous_output is None:
        return wrap_block("task", task)
    step = validate_agent_name(previous_agent or "previous", where="workflow step")
    return "\n\n".join(
        (
            wrap_block("original_task", task),
            wrap_block("previous_step_output", previous_output, f'agent="{step}"'),
            "Continue the workflow: do your part of the original task, building on the previous step.",
        )
    )


# -- inline registry -------------------------------------------------------------------------------

_inline: dict[str, AgentSpec] = {}
_inline_lock = threading.Lock()


def define_agent(
    name: str,
    prompt: str,
    *,
    model: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    contract: str | None = None,
    domains: Iterable[str] = (),
    priority: int = 2,
    description: str | None = None,
) -> AgentSpec:
    """Define (or redefine) an agent without a config file; every orchestrator in the process can use it.

    An inline agent with the same name as a config agent takes precedence over it.
    """
    validate_agent_name(name)
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConfigError(f"agent {name!r}: the prompt must be non-empty text")
    spec = AgentSpec(
        name=name,
        prompt=prompt,
        contract=contract,
        domains=tuple(domains),
        priority=_check_priority(priority, f"agent {name!r} priority"),
        model=_check_model(model, f"agent {name!r} model"),
        max_tokens=_check_max_tokens(max_tokens, f"agent {name!r} max_tokens"),
        temperature=_check_temperature(temperature, f"agent {name!r} temperature"),
        description=description,
    )
    with _inline_lock:
        _inline[name] = spec
    return spec


def remove_agent(name: str) -> bool:
    """Forget an inline agent; True if there was one."""
    with _inline_lock:
        return _inline.pop(name, None) is not None


def inline_agent(name: str) -> AgentSpec | None:
    """The inline agent called `name`, if one was defined."""
    return _inline.get(name)  # a single dict read is atomic; no lock needed


def inline_agents() -> Mapping[str, AgentSpec]:
    """A snapshot of the inline agents defined so far."""
    with _inline_lock:
        return MappingProxyType(dict(_inline))


# -- config ----------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    """A loaded `.claude/claude.json`: agents, workflows, and every other top-level key, kept as is."""

    path: Path | None
    agents: Mapping[str, AgentSpec]
    workflows: Mapping[str, tuple[str, ...]]
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> AgentConfig:
        return cls(path=None, agents=MappingProxyType({}), workflows=MappingProxyType({}))

    def agent(self, name: str) -> AgentSpec:
        spec = self.agents.get(name)
        if spec is None:
            raise UnknownAgentError(describe_unknown("agent", name, self.agents, self.path))
        return spec

    def workflow(self, name: str) -> tuple[str, ...]:
        steps = self.workflows.get(name)
        if steps is None:
            raise UnknownAgentError(describe_unknown("workflow", name, self.workflows, self.path))
        return steps


def describe_unknown(kind: str, name: str, known: Iterable[str], path: Path | None) -> str:
    """The message for a name that is not a known agent or workflow, with close matches if any."""
    names = sorted(known)
    where = f" in {path}" if path else ""
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    listing = (
        f" (known: {', '.join(names[:12])}{', ...' if len(names) > 12 else ''})"
        if names and not close
        else ""
    )
    if not names:
        listing = f" (there are no {kind}s{where})"
        where = ""
    return f"unknown {kind} {name!r}{where}{hint}{listing}"


def load_config(path: str | Path) -> AgentConfig:
    """Load a claude-force config: a `claude.json` file, a `.claude` folder, or a folder holding `.claude/`.

    Raises ConfigError naming the file and the place (`agents.<name>.<field>`, `workflows.<name>[i]`) for
    malformed JSON, wrong types, unsafe or missing files, and workflows naming unknown agents.
    """
    file = _find_config_file(Path(check_path_text("config path", os.fspath(path))).expanduser())
    try:
        raw = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the config ({path_problem(exc)})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: the config is not UTF-8 text") from exc
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{file}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc
    except RecursionError:
        line, column = nesting_place(raw) or (1, 1)
        raise ConfigError(
            f"{file}: JSON nested more than 100 levels deep at line {line}, column {column} "
            "(a claude-force config needs three)"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the top level must be a JSON object, not {_json_type(data)}")
    root = file.parent
    agents_raw = data.get("agents", {})
    if not isinstance(agents_raw, dict):
        raise ConfigError(f"{file}: 'agents' must be an object mapping names to agents")
    agents = {name: _parse_agent(file, root, name, entry) for name, entry in agents_raw.items()}
    workflows_raw = data.get("workflows", {})
    if not isinstance(workflows_raw, dict):
        raise ConfigError(f"{file}: 'workflows' must be an object mapping names to lists of agent names")
    workflows = {name: _parse_workflow(file, name, steps, agents) for name, steps in workflows_raw.items()}
    extra = {k: v for k, v in data.items() if k not in ("agents", "workflows")}
    return AgentConfig(
        path=file,
        agents=MappingProxyType(agents),
        workflows=MappingProxyType(workflows),
        extra=MappingProxyType(extra),
    )


def _find_config_file(path: Path) -> Path:
    candidates = (
        [path] if path.suffix == ".json" else [path / "claude.json", path / ".claude" / "claude.json"]
    )
    for candidate in candidates:
        try:
            if candidate.is_file():
                return candidate
        except OSError as exc:  # a name too long; is_file() answers False only for missing files and loops
            problem = path_problem(exc)
            raise ConfigError(f"config path {shorten(str(candidate))} cannot be used: {problem}") from None
    raise ConfigError(
        f"no claude-force config found at {path} (looked for {', '.join(map(str, candidates))})"
    )


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _parse_agent(file: Path, root: Path, name: str, entry: object) -> AgentSpec:
    validate_agent_name(name, where=f"{file}: agent name")
    where = f"{file}: agents.{name}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected an object, got {_json_type(entry)}")
    definition = entry.get("file")
    if not isinstance(definition, str) or not definition.strip():
        raise ConfigError(f"{where}.file: expected the path of the agent's markdown definition")
    _check_file(root, definition, agent=name, what="definition", where=f"{where}.file")
    contract = entry.get("contract")
    if contract is not None:
        if not isinstance(contract, str) or not contract.strip():
            raise ConfigError(f"{where}.contract: expected a path, got {_json_type(contract)}")
        _check_file(root, contract, agent=name, what="contract", where=f"{where}.contract")
    domains = entry.get("domains", [])
    if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
        raise ConfigError(f"{where}.domains: expected a list of strings")
    return AgentSpec(
        name=name,
        definition_file=definition,
        contract_file=contract,
        root=root,
        domains=tuple(domains),
        priority=_check_priority(entry.get("priority", 2), f"{where}.priority"),
        model=_check_model(entry.get("model"), f"{where}.model"),
        max_tokens=_check_max_tokens(entry.get("max_tokens"), f"{where}.max_tokens"),
        temperature=_check_temperature(entry.get("temperature"), f"{where}.temperature"),
        description=entry.get("description") if isinstance(entry.get("description"), str) else None,
        extra=MappingProxyType({k: v for k, v in entry.items() if k not in _KNOWN_AGENT_KEYS}),
    )


def _refuse_loop(path: Path) -> None:
    """Raise OSError(ELOOP) if `path` is a symlink loop; a missing file is left to the caller.

    Before Python 3.13, `resolve()` raised RuntimeError on a loop; since 3.13 it returns the looping path as
    is, so the loop would only surface later, as "not found" or a bare strerror. One `stat` makes every
    version report it the same way, here.
    """
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise


def _check_file(root: Path, relative: str, *, agent: str, what: str, where: str) -> None:
    try:
        path = _contained(root, relative, agent=agent, what=what)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    try:
        found = path.is_file()
    except OSError as exc:
        problem = path_problem(exc)
        raise ConfigError(f"{where}: {what} file {shorten(relative)} cannot be used: {problem}") from None
    if not found:
        raise ConfigError(f"{where}: {what} file {relative!r} not found under {root}")


def _parse_workflow(file: Path, name: str, steps: object, agents: Mapping[str, AgentSpec]) -> tuple[str, ...]:
    validate_agent_name(name, where=f"{file}: workflow name")
    where = f"{file}: workflows.{name}"
    if not isinstance(steps, list) or not steps:
        raise ConfigError(f"{where}: expected a non-empty list of agent names")
    for i, step in enumerate(steps):
        if not isinstance(step, str):
            raise ConfigError(f"{where}[{i}]: expected an agent name, got {_json_type(step)}")
        if step not in agents:
            raise ConfigError(f"{where}[{i}]: {describe_unknown('agent', step, agents, None)}")
    return tuple(steps)


def _check_priority(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 3:
        raise ConfigError(f"{where}: expected an integer 1..3, got {value!r}")
    return value


def _check_model(value: object, where: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(f"{where}: expected a model id string, got {value!r}")
    return value


def _check_max_tokens(value: object, where: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ConfigError(f"{where}: expected a positive integer, got {value!r}")
    return value


def _check_temperature(value: object, where: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or not 0 <= value <= 1
    ):
        raise ConfigError(f"{where}: expected a number within 0..1, got {value!r}")
    return float(value)
