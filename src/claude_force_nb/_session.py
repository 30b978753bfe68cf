"""The notebook session: one orchestrator, one run log, one simulator (when offline), and the chats.

The magic, the panel and the module-level functions (`runs_frame()`, `panel()`, ...) all talk to the same
`NotebookSession`, so a call made from the panel shows up in `%agent runs` and the other way round. The
session's `SessionSettings` are the one source of truth for settings: `AgentMagics` derives its `%config`
options from them and follows their changes (`on_change`). Changing one that the orchestrator is built from
(concurrency, cache, endpoint...) rebuilds it at the next use, keeping the run log and the money spent.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._agents import AgentConfig, load_config
from ._config import (
    DEFAULT_CACHE_BACKEND,
    DEFAULT_CACHE_MAX_SIZE_MB,
    DEFAULT_CACHE_TIMEOUT_S,
    DEFAULT_CACHE_TTL_HOURS,
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_MAX_TEMPLATE_CHARS,
    DEFAULT_MAX_TOKENS,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT_S,
    mask_secret,
    mask_url,
    read_environment,
)
from ._coord.store import DEFAULT_SCOPE, Coordination, check_coordination, check_scope
from ._exceptions import ConfigError
from ._limits import Budget
from ._orchestrator import AsyncAgentOrchestrator
from ._parse import FORMATS
from ._pricing import LifecycleNotices, RateCard
from ._records import RunLog
from ._request import ChatMessage
from ._retry import DEFAULT_MAX_RETRIES
from ._validate import check_bool, check_int, check_number, check_path_text, check_text, shorten

if TYPE_CHECKING:
    import pandas as pd

    from .sim import Simulator

log = logging.getLogger(__name__)

__all__ = [
    "SIM_TTFT_S",
    "NotebookSession",
    "SessionSettings",
    "cache_stats_frame",
    "get_session",
    "orchestrator",
    "reset_session",
    "runs_frame",
]

SIM_TTFT_S = 0.15
SIM_PER_TOKEN_S = 0.003
"""The simulator's latency in a notebook: slow enough that streaming is visible, fast enough to demo."""

# Settings the orchestrator is built from; the others (model, max_tokens, replay...) apply to the live one.
_REBUILD_FIELDS = frozenset(
    {
        "max_concurrent",
        "timeout_seconds",
        "max_retries",
        "cache_backend",
        "cache_dir",
        "cache_ttl_hours",
        "cache_max_size_mb",
        "cache_timeout_s",
        "enable_cache",
        "config_path",
        "offline",
        "sim_latency",
        "requests_per_minute",
        "prompt_caching",
        "coordination",
        "scope",
    }
)


@dataclass(frozen=True, kw_only=True)
class SessionSettings:
    """What a notebook session runs with: the one definition of each setting and its default.

    `AgentMagics` derives a `%config` option from each field listed in `SETTING_OPTIONS` (its type and
    default come from here), and the panel changes them through `NotebookSession.update`, so the two never
    disagree.

    Every field is checked when a SessionSettings is made (so also by `dataclasses.replace`): an unusable
    value raises ConfigError naming the setting, and nothing is built from it.
    """

    model: str = DEFAULT_MODEL
    max_tokens: int = DEFAULT_MAX_TOKENS
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    timeout_seconds: float = DEFAULT_TIMEOUT_S
    max_retries: int = DEFAULT_MAX_RETRIES
    enable_cache: bool = True
    cache_backend: str = DEFAULT_CACHE_BACKEND
    cache_dir: str = ""
    cache_ttl_hours: float = DEFAULT_CACHE_TTL_HOURS
    cache_max_size_mb: float = DEFAULT_CACHE_MAX_SIZE_MB
    cache_timeout_s: float = DEFAULT_CACHE_TIMEOUT_S
    budget_usd: float | None = None
    requests_per_minute: float | None = None
    default_format: str = "markdown"
    offline: bool = False
    config_path: str = ""
    runlog_path: str = ""
    prompt_caching: bool = True
    stream: bool = True
    replay: bool = False
    max_template_chars: int = DEFAULT_MAX_TEMPLATE_CHARS
    sim_latency: float = 1.0
    """How much slower than its default (SIM_TTFT_S to the first token, SIM_PER_TOKEN_S a token) the
    session's simulator answers: 10 makes a call last several seconds, time to try Cancel or an interrupt."""

    def __post_init__(self) -> None:
        validate_settings(self)

    coordination: str = ""
    scope: str = DEFAULT_SCOPE

    def shown(self) -> dict[str, Any]:
        """The settings as they may be displayed: a password in a Redis URL masked."""
        shown = {name: getattr(self, name) for name in self.__dataclass_fields__}
        shown["cache_backend"] = mask_url(self.cache_backend)
        shown["coordination"] = mask_url(self.coordination)
        return shown

    def __repr__(self) -> str:
        return f"SessionSettings({', '.join(f'{k}={v!r}' for k, v in self.shown().items())})"


_FORMATS = FORMATS  # one list, shared with the magic's -f option


@dataclass(frozen=True)
class SettingOption:
    """How a SessionSettings field is offered as a `%config AgentMagics.<name>` option."""

    help: str
    name: str = ""
    """The option's name, when it is not the field's."""
    none_as: float | None = None
    """For an optional number: the option value that means None (traitlets numbers cannot be None)."""
    choices: tuple[str, ...] = ()

    def to_setting(self, value: Any) -> Any:
        """The setting's value for an option value."""
        return None if self.none_as is not None and value == self.none_as else value

    def to_option(self, value: Any) -> Any:
        """The option's value for a setting's value."""
        return self.none_as if value is None and self.none_as is not None else value


SETTING_OPTIONS: dict[str, SettingOption] = {
    "model": SettingOption("Default model id for calls (an agent's own model wins)."),
    "max_tokens": SettingOption("Default max_tokens for calls."),
    "max_concurrent": SettingOption("Calls in flight at once."),
    "timeout_seconds": SettingOption("Per-attempt timeout in seconds."),
    "max_retries": SettingOption("Retries after the first attempt, for retryable failures."),
    "enable_cache": SettingOption("Use the response cache.", name="cache"),
    "cache_backend": SettingOption("Response cache tier: disk, memory, or redis://host:port/db."),
    "cache_dir": SettingOption("Folder of the disk cache (default: the user's cache dir)."),
    "cache_ttl_hours": SettingOption("How long cached answers stay valid."),
    "cache_max_size_mb": SettingOption("Size cap of the response cache, in MB."),
    "cache_timeout_s": SettingOption(
        "Deadline of each cache lookup and store, in seconds; past it the call goes on without the cache."
    ),
    "budget_usd": SettingOption("Session spending cap in dollars.", none_as=-1.0),
    "requests_per_minute": SettingOption("Client-side cap on requests per minute.", none_as=-1.0),
    "default_format": SettingOption(f"How answers are shown: {', '.join(_FORMATS)}.", choices=_FORMATS),
    "offline": SettingOption("Use the bundled simulator even when ANTHROPIC_API_KEY is set."),
    "config_path": SettingOption("claude-force config (default: the nearest .claude/claude.json)."),
    "runlog_path": SettingOption("SQLite file keeping the run log across kernel restarts (empty: off)."),
    "prompt_caching": SettingOption("Send long system prompts with Anthropic prompt caching."),
    "stream": SettingOption("Stream single-call answers into the cell as they arrive."),
    "max_template_chars": SettingOption(
        "Largest text one {{name}} in a cell may expand to; a larger value is refused, not sent."
    ),
    "sim_latency": SettingOption(
        "The bundled simulator's latency, as a multiple of its default (10: calls take seconds, so Cancel "
        "and interrupts can be tried); applies to the next call."
    ),
    "coordination": SettingOption(
        "Redis URL shared with other kernels: one budget and one set of rate limits (empty: this kernel)."
    ),
    "scope": SettingOption("Which shared budget and limits on the coordination Redis (e.g. a team's name)."),
}
"""The settings offered as `%config` options, with their help. The other fields are set by their own
commands (`replay` by `%agent cache replay on|off`)."""


def _check_format(name: str, value: object) -> object:
    if value not in _FORMATS:
        raise ConfigError(f"{name} must be one of {', '.join(_FORMATS)}, got {shorten(value)}")
    return value


def _check_cache_backend(name: str, value: object) -> object:
    if not isinstance(value, str) or not (
        value in ("disk", "memory") or value.startswith(("redis://", "rediss://", "unix://"))
    ):
        raise ConfigError(f"{name} must be 'disk', 'memory' or a redis:// URL, got {shorten(value)}")
    return value


def _check_coordination_url(name: str, value: object) -> object:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a redis:// URL or empty, got {shorten(value)}")
    if value:
        check_coordination(value, DEFAULT_SCOPE)
    return value


def _optional(check: Callable[[str, Any], object]) -> Callable[[str, Any], object]:
    return lambda name, value: None if value is None else check(name, value)


_SETTING_CHECKS: dict[str, Callable[[str, Any], object]] = {
    "model": check_text,
    "max_tokens": lambda n, v: check_int(n, v, minimum=1),
    "max_concurrent": lambda n, v: check_int(n, v, minimum=1),
    "timeout_seconds": lambda n, v: check_number(n, v, above=0.0, unit="seconds"),
    "max_retries": lambda n, v: check_int(n, v, minimum=0),
    "enable_cache": check_bool,
    "cache_backend": _check_cache_backend,
    "cache_dir": check_path_text,
    "cache_ttl_hours": lambda n, v: check_number(n, v, above=0.0, unit="hours"),
    "cache_max_size_mb": lambda n, v: check_number(n, v, above=0.0, unit="MB"),
    "cache_timeout_s": lambda n, v: check_number(n, v, above=0.0, unit="seconds"),
    "budget_usd": _optional(lambda n, v: check_number(n, v, minimum=0.0, unit="dollars")),
    "requests_per_minute": _optional(lambda n, v: check_number(n, v, above=0.0)),
    "default_format": _check_format,
    "offline": check_bool,
    "config_path": check_path_text,
    "runlog_path": check_path_text,
    "prompt_caching": check_bool,
    "stream": check_bool,
    "replay": check_bool,
    "max_template_chars": lambda n, v: check_int(n, v, minimum=1),
    "sim_latency": lambda n, v: check_number(n, v, minimum=0.0),
    "coordination": _check_coordination_url,
    "scope": check_scope,
}
"""One check per setting (type, finiteness, range), shared by the session, `%config` and the panel."""


def validate_settings(settings: SessionSettings) -> None:
    """Raise ConfigError naming the first unusable setting (checked before anything is built from them)."""
    for name, check in _SETTING_CHECKS.items():
        check(name, getattr(settings, name))
    if settings.coordination:
        check_coordination(settings.coordination, settings.scope)


def find_config(start: Path) -> Path | None:
    """The nearest `.claude/claude.json` from `start` upwards (the way git finds `.git`)."""
    for folder in (start, *start.parents):
        candidate = folder / ".claude" / "claude.json"
        if candidate.is_file():
            return candidate
    return None


def _retired_today(model: str) -> bool:
    life = RateCard.default().lifecycle(model)
    return life is not None and life.status == "retired"


@dataclass
class _Endpoint:
    base_url: str | None
    api_key: str | None = field(repr=False)  # never shown: a cell ending in the session would save it
    simulated: bool
    note: str

    def __repr__(self) -> str:
        where = self.base_url or "the Anthropic API"
        kind = "simulator" if self.simulated else f"key {mask_secret(self.api_key)}"
        return f"_Endpoint({where}, {kind})"


@dataclass
class NotebookSession:
    """Shared state behind the magic and the panel. Create through `get_session()`."""

    settings: SessionSettings = field(default_factory=SessionSettings)
    environ: Mapping[str, str] | None = None
    run_log: RunLog = field(default_factory=RunLog)
    chats: dict[str, list[ChatMessage]] = field(default_factory=dict)
    announce: Callable[[str], None] = print
    _orchestrator: AsyncAgentOrchestrator | None = None
    _simulator: Simulator | None = None
    _endpoint: _Endpoint | None = None
    _budget: Budget | None = None
    _coordination: Coordination | None = None
    _persist_close: Callable[[], None] | None = None
    _announced: bool = False
    _notices: LifecycleNotices | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _listeners: list[Callable[[frozenset[str]], None]] = field(default_factory=list)
    _closing: set[asyncio.Task[Any]] = field(default_factory=set)  # closing in the background (see aclose)

    def __repr__(self) -> str:
        # Not the dataclass repr: that would show the endpoint's key and the `environ` mapping, and a cell
        # ending in `get_session()` saves its repr into the notebook file.
        endpoint = repr(self._endpoint) if self._endpoint is not None else "not started"
        built = "built" if self._orchestrator is not None else "not built"
        return (
            f"NotebookSession(endpoint={endpoint}, orchestrator={built}, "
            f"runs={len(self.run_log)}, chats={len(self.chats)}, settings={self.settings!r})"
        )

    # -- settings -------------------------------------------------------------------------------------------

    def update(self, **changes: Any) -> None:
        """Change settings (ConfigError for an unusable value, nothing changed then).

        Per-call defaults (model, max_tokens) and replay mode apply to the live orchestrator at once. An
        orchestrator built from a changed setting (concurrency, cache, endpoint...) is replaced at its next
        use, keeping the run log and the budget (money spent and calls in flight); the old one closes once
        its calls have finished.
        """
        unknown = set(changes) - set(SessionSettings.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        old = self.settings
        new = replace(old, **changes)
        validate_settings(new)
        changed = {k for k in changes if getattr(old, k) != getattr(new, k)}
        if not changed:
            return
        self.settings = new
        orch = self._orchestrator
        if changed & _REBUILD_FIELDS:
            self._drop_orchestrator()
        elif orch is not None:
            orch.model, orch.max_tokens = new.model, new.max_tokens
            if orch.cache is not None:
                orch.cache.replay = new.replay
        if "offline" in changed or ("sim_latency" in changed and self._simulator is not None):
            self._close_endpoint()  # the next call starts a simulator with the new latency
        if "offline" in changed:
            self._close_endpoint()
        if changed & {"coordination", "scope"}:
            self._drop_coordination()
        if "budget_usd" in changed:
            self.set_budget(new.budget_usd)
        if "runlog_path" in changed:
            self.persist_runs(new.runlog_path or None)
        for listener in list(self._listeners):
            listener(frozenset(changed))

    def on_change(self, listener: Callable[[frozenset[str]], None]) -> Callable[[], None]:
        """Call `listener(names)` after settings change, whoever changed them (the magic keeps its `%config`
        options in step with changes made by the panel this way). Returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def set_budget(self, usd: float | None) -> Budget:
        """Set the session budget's limit (None removes it). Money spent and reservations held by calls in
        flight stay on the same Budget, so they still count against the new limit."""
        budget = self.budget
        _SETTING_CHECKS["budget_usd"]("budget_usd", usd)
        budget.limit_usd = usd
        return budget

    @property
    def budget(self) -> Budget:
        """The session's budget: shared with every kernel on the coordination Redis and scope, if set."""
        if self._budget is None:
            coordination = self.coordination()
            if coordination is None:
                self._budget = Budget(self.settings.budget_usd)
            else:
                from ._coord import SharedBudget

                self._budget = SharedBudget(self.settings.budget_usd, coordination)
        return self._budget

    def coordination(self) -> Coordination | None:
        """The coordination store (`coordination` setting, else CLAUDE_FORCE_NB_COORDINATION), or None."""
        if self._coordination is None:
            url = self.settings.coordination or read_environment(self.environ).coordination
            if url:
                self._coordination = Coordination(url, scope=self.settings.scope)
        return self._coordination

    def _drop_coordination(self) -> None:
        """Forget the coordination store and the budget on it (a new one is built for the new scope)."""
        old, self._coordination = self._coordination, None
        self._budget = None
        if old is None:
            return
        self._closing_soon(old.aclose())

    # -- the orchestrator -----------------------------------------------------------------------------------

    def config(self) -> AgentConfig:
        """The claude-force config in use: `config_path`, else the nearest `.claude/claude.json`."""
        path = (
            Path(self.settings.config_path).expanduser()
            if self.settings.config_path
            else find_config(Path.cwd())
        )
        return load_config(path) if path is not None else AgentConfig.empty()

    def mode_note(self) -> tuple[bool, str]:
        """(simulated, one line saying where calls go), decided from the environment without starting
        anything (so `%load_ext` can say it at once and stay fast)."""
        env = read_environment(self.environ)
        if env.has_credentials and not (self.settings.offline or env.simulate):
            return False, f"claude_force_nb: calls go to {env.base_url or 'the Anthropic API'}."
        reason = "offline mode is on" if (self.settings.offline or env.simulate) else "no ANTHROPIC_API_KEY"
        return True, (
            f"claude_force_nb: {reason}, so answers are simulated by the bundled local simulator "
            "(set ANTHROPIC_API_KEY and restart the kernel to use the real API)."
        )

    @property
    def notices(self) -> LifecycleNotices:
        """Model lifecycle notes, said once per model per session (through `announce`)."""
        if self._notices is None:
            self._notices = LifecycleNotices(lambda line: self.announce(line))
        return self._notices

    def announce_mode(self) -> None:
        """Print the one line saying where calls go (once per endpoint)."""
        if not self._announced:
            self._announced = True
            self.announce(self.mode_note()[1])

    def endpoint(self) -> _Endpoint:
        """Where calls go: the real API (key or base URL set), else the bundled simulator, started here."""
        if self._endpoint is not None:
            return self._endpoint
        simulated, note = self.mode_note()
        if not simulated:
            env = read_environment(self.environ)
            self._endpoint = _Endpoint(env.base_url, env.api_key, False, note)
        else:
            from .sim import serve

            # The simulator answers 404 for the models the rate card says are retired today, as the API does.
            retired = [m for m in RateCard.default().models if _retired_today(m)]
            slower = self.settings.sim_latency
            simulator = serve(
                ttft_s=SIM_TTFT_S * slower, per_token_s=SIM_PER_TOKEN_S * slower, retired_models=retired
            )
            simulator.__enter__()
            atexit.register(simulator.close)
            self._simulator = simulator
            self._endpoint = _Endpoint(simulator.base_url, "simulated", True, note)
        self.announce_mode()
        return self._endpoint

    @property
    def simulated(self) -> bool:
        return self.endpoint().simulated

    @property
    def simulator(self) -> Simulator | None:
        """The bundled simulator this session started (None when calls go to a real endpoint)."""
        self.endpoint()
        return self._simulator

    def orchestrator(self) -> AsyncAgentOrchestrator:
        """The session's orchestrator, built (or rebuilt after a settings change) on first use."""
        with self._lock:
            if self._orchestrator is None:
                s = self.settings
                endpoint = self.endpoint()
                orch = AsyncAgentOrchestrator(
                    config=self.config(),
                    api_key=endpoint.api_key,
                    base_url=endpoint.base_url,
                    model=s.model,
                    max_tokens=s.max_tokens,
                    max_concurrent=s.max_concurrent,
                    timeout_seconds=s.timeout_seconds,
                    max_retries=s.max_retries,
                    enable_cache=s.enable_cache,
                    cache_backend=s.cache_backend,
                    cache_dir=s.cache_dir or None,
                    cache_ttl_hours=s.cache_ttl_hours,
                    cache_max_size_mb=s.cache_max_size_mb,
                    cache_timeout_s=s.cache_timeout_s,
                    requests_per_minute=s.requests_per_minute,
                    prompt_caching=s.prompt_caching,
                    coordination=self.coordination(),
                    run_log=self.run_log,
                    environ=self.environ,
                    notices=self.notices,
                )
                orch.budget = self.budget
                if s.replay and orch.cache is not None:
                    orch.cache.replay = True
                self._orchestrator = orch
            return self._orchestrator

    def _drop_orchestrator(self) -> None:
        """Forget the orchestrator; its connections and cache close on the notebook loop when possible."""
        orch, self._orchestrator = self._orchestrator, None
        if orch is None:
            return

        async def close_when_idle() -> None:
            await orch.drain()  # calls still running (say, a --bg cell) finish on the old orchestrator
            await orch.aclose()

        self._closing_soon(close_when_idle())

    def _closing_soon(self, closing: Coroutine[Any, Any, None]) -> None:
        """Close something on the notebook's loop: in the background in a kernel (kept in `_closing` until it
        ends, so `aclose()` can wait for it), at once in a script or terminal (see `_loop.finish_soon`)."""
        from ._loop import finish_soon

        try:
            task = finish_soon(closing)
        except Exception:  # closing is best effort: a broken connection must not stop the session closing
            log.debug("closing on the notebook loop failed", exc_info=True)
            return
        if task is not None:
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    # -- run log --------------------------------------------------------------------------------------------

    def persist_runs(self, path: str | Path | None) -> int:
        """Keep the run log in a SQLite file across kernel restarts (None stops). Returns rows loaded."""
        if self._persist_close is not None:
            self._persist_close()
            self._persist_close = None
        if path is None:
            return 0
        from ._persist import RunStore

        store = RunStore(Path(path).expanduser())
        loaded = store.load_into(self.run_log)
        self._persist_close = store.attach(self.run_log)
        return loaded

    def runs_frame(self) -> pd.DataFrame:
        return self.run_log.to_frame()

    async def aclose(self) -> None:
        """`close()`, then wait until the orchestrator's connections and the coordination store are closed:
        for async code (an async test, a script's own loop) whose loop ends right after."""
        self.close()
        while self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)

    def close(self) -> None:
        """Stop the simulator and persistence; used at kernel shutdown and by tests. In a kernel the old
        orchestrator closes on the notebook loop once its calls end (`aclose()` waits for that)."""
        self._drop_orchestrator()
        self._drop_coordination()
        if self._persist_close is not None:
            self._persist_close()
            self._persist_close = None
        self._close_endpoint()

    def _close_endpoint(self) -> None:
        if self._simulator is not None:
            self._simulator.close()
            self._simulator = None
        self._endpoint = None
        self._announced = False


_session: NotebookSession | None = None
_session_lock = threading.Lock()


def _close_at_exit() -> None:
    """Close the process-wide session when the interpreter exits (a script, terminal IPython): its
    connections are closed on the loop that opened them, not left to the garbage collector, which warns
    "Unclosed client session". Registered after `_loop`'s own exit hook, so it runs before that one closes
    the private loop."""
    session = _session
    if session is not None:
        session.close()


_exit_hook: list[bool] = []  # registered yet?


def _register_exit_hook() -> None:
    if _exit_hook:
        return
    from . import _loop  # noqa: F401  (imported first: its exit hook must run after ours)

    atexit.register(_close_at_exit)
    _exit_hook.append(True)


def get_session() -> NotebookSession:
    """The process-wide notebook session (created with default settings on first use)."""
    global _session
    with _session_lock:
        if _session is None:
            _session = NotebookSession()
            _register_exit_hook()
        return _session


def reset_session(session: NotebookSession | None = None) -> NotebookSession | None:
    """Replace the process-wide session (closing the old one); returns the old one. For tests and restarts."""
    global _session
    with _session_lock:
        old, _session = _session, session
    if session is not None:
        _register_exit_hook()
    if old is not None and old is not session:
        old.close()
    return old


def runs_frame() -> pd.DataFrame:
    """The notebook session's run log: one row per call (see `RunLog.to_frame`)."""
    return get_session().runs_frame()


def cache_stats_frame() -> pd.DataFrame:
    """The session's response-cache statistics as a one-row DataFrame (empty if the cache is off)."""
    import pandas as pd

    cache = get_session().orchestrator().cache
    return cache.stats().to_frame() if cache is not None else pd.DataFrame()


def orchestrator(**options: Any) -> AsyncAgentOrchestrator:
    """A new orchestrator on the notebook session's endpoint (the real API, or the bundled simulator when
    there is no key), with the session's agents and run log unless `options` say otherwise.

    For work that needs its own settings (a budget, rate limits, a different cache) beside the session's
    default orchestrator: `orch = claude_force_nb.orchestrator(budget_usd=0.05, max_concurrent=50)`.
    Close it with `await orch.aclose()` (or use `async with`).
    """
    session = get_session()
    endpoint = session.endpoint()
    options.setdefault("api_key", endpoint.api_key)
    options.setdefault("base_url", endpoint.base_url)
    options.setdefault("run_log", session.run_log)
    options.setdefault("notices", session.notices)
    if "config_path" not in options:
        options.setdefault("config", session.config())
    options.setdefault("model", session.settings.model)
    return AsyncAgentOrchestrator(**options)
