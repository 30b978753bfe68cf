"""Shared fixtures: every test runs with a private HOME, cache dir and config dir, and no API credentials."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from claude_force_nb import AsyncAgentOrchestrator, RetryPolicy, _agents

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from claude_force_nb._magic import AgentMagics
from claude_force_nb.sim import Simulator, serve
from tests.redis_support import RedisServer

_CLEARED_ENV = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_PROFILE",
    "ANTHROPIC_CONFIG_DIR",
    "ANTHROPIC_CUSTOM_HEADERS",
    "CLAUDE_CACHE_SECRET",
    "CLAUDE_FORCE_NB_SIMULATE",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "CLAUDE_FORCE_NB_DATA_DIR",
)


@pytest.fixture(autouse=True)
def isolated_environment(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Point HOME, the cache dir and the config dir at a fresh folder; forget inline agents afterwards."""
    root = tmp_path_factory.mktemp("env")
    for name in ("home", "cache", "config"):
        (root / name).mkdir()
    for var in _CLEARED_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(root / "home"))
    monkeypatch.setenv("CLAUDE_FORCE_NB_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("CLAUDE_FORCE_NB_CONFIG_DIR", str(root / "config"))
    yield root
    with _agents._inline_lock:
        _agents._inline.clear()


def write_claude_dir(
    root: Path,
    *,
    agents: dict[str, dict[str, object]] | None = None,
    workflows: dict[str, list[str]] | None = None,
    **extra: object,
) -> Path:
    """Write a small claude-force `.claude/` folder under `root` and return its claude.json path."""
    claude = root / ".claude"
    (claude / "agents").mkdir(parents=True, exist_ok=True)
    (claude / "contracts").mkdir(exist_ok=True)
    if agents is None:
        (claude / "agents" / "code-reviewer.md").write_text("# Code reviewer\n\nReview code for defects.\n")
        (claude / "contracts" / "code-reviewer.contract").write_text("Report findings as a bullet list.\n")
        (claude / "agents" / "bug-investigator.md").write_text("# Bug investigator\n\nFind root causes.\n")
        (claude / "agents" / "fixer.md").write_text("# Fixer\n\nPropose a minimal fix.\n")
        agents = {
            "code-reviewer": {
                "file": "agents/code-reviewer.md",
                "contract": "contracts/code-reviewer.contract",
                "domains": ["code-quality"],
                "priority": 1,
            },
            "bug-investigator": {
                "file": "agents/bug-investigator.md",
                "domains": ["debugging"],
                "priority": 2,
            },
            "fixer": {"file": "agents/fixer.md", "priority": 3, "max_tokens": 512},
        }
        workflows = (
            {"bug-fix": ["bug-investigator", "fixer", "code-reviewer"]} if workflows is None else workflows
        )
    data: dict[str, object] = {"version": "1.0", "name": "test-project", "agents": agents}
    data["workflows"] = workflows or {}
    data.update(extra)
    path = claude / "claude.json"
    path.write_text(json.dumps(data, indent=2))
    return path


@pytest.fixture
def claude_json(tmp_path: Path) -> Path:
    """A valid three-agent, one-workflow config."""
    return write_claude_dir(tmp_path)


# -- the simulator -------------------------------------------------------------------------------------------

FAST_RETRIES = RetryPolicy(base_delay_s=0.005, max_delay_s=0.02, jitter=0.0)


@pytest.fixture(scope="session")
def _shared_sim() -> Iterator[Simulator]:
    with serve(seed=7) as simulator:
        yield simulator


@pytest.fixture
def sim(_shared_sim: Simulator) -> Simulator:
    """A running simulator (zero latency), reset for this test."""
    _shared_sim.reset()
    return _shared_sim


class FakeClock:
    """A virtual monotonic clock: `sleep(s)` returns at once (after yielding to the loop) and moves the clock
    on by `s`. Given to a RateLimiter (and to the in-thread simulator with `serve(clock=...)`), paced waits
    are checked exactly and take no real time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def make_orchestrator(simulator: Simulator, **options: object) -> AsyncAgentOrchestrator:
    """An orchestrator on `simulator` with fast retries and no response cache unless asked."""
    options.setdefault("enable_cache", False)
    options.setdefault("retry_policy", FAST_RETRIES)
    return AsyncAgentOrchestrator(base_url=simulator.base_url, **options)  # type: ignore[arg-type]


# -- IPython -----------------------------------------------------------------------------------------------


@pytest.fixture
def shell() -> InteractiveShell:
    """The process-wide test IPython shell."""
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    ip = start_ipython() or get_ipython()
    assert ip is not None
    return ip


@pytest.fixture
def magics(
    shell: InteractiveShell, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AgentMagics]:
    """The magics (and the %%claude_agent alias) on the shell, with a fresh session whose calls go to the
    simulator and whose agents come from a small .claude/ folder."""
    from claude_force_nb._magic import AgentMagics
    from claude_force_nb._session import NotebookSession, SessionSettings, reset_session

    monkeypatch.setenv("ANTHROPIC_BASE_URL", sim.base_url)
    # `%config AgentMagics.x = ...` in one test lands in the shared shell's config, which every later
    # AgentMagics reads at construction: each test starts (and leaves) without it.
    shell.config.pop("AgentMagics", None)
    config = write_claude_dir(tmp_path)
    settings = SessionSettings(config_path=str(config), stream=False)
    session = NotebookSession(settings=settings, announce=lambda _: None)
    reset_session(session)
    # `%config AgentMagics.x = ...` in a test is stored in the process-wide shell's config, where every later
    # AgentMagics would pick it up: each test starts without it.
    shell.config.pop("AgentMagics", None)
    instance = AgentMagics(shell=shell, session=session, config_path=str(config), stream=False)
    shell.register_magics(instance)
    shell.register_magic_function(instance.agent, "line_cell", "claude_agent")
    yield instance
    shell.config.pop("AgentMagics", None)
    reset_session(None)
    shell.config.pop("AgentMagics", None)  # one test's `%config AgentMagics.x = ...` stays in that test


# -- Redis -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """CFNB_TEST_REDIS_URL, else a private redis-server for the session, else skip (fail if required)."""
    given = os.environ.get("CFNB_TEST_REDIS_URL")
    if given:
        yield given
        return
    with _redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which the test may freeze (SIGSTOP), kill or restart."""
    with _redis_server(tmp_path) as server:
        yield server


@contextlib.contextmanager
def _redis_server(workdir: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CFNB_REQUIRE_REDIS") == "1":
            pytest.fail("CFNB_REQUIRE_REDIS=1 but there is no redis-server")
        pytest.skip("no redis-server on PATH")
    try:
        server = RedisServer(binary, workdir)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()
