"""claude_force_nb: a fast, correct multi-agent orchestrator for the Anthropic Claude API, inside Jupyter.

The core (config, orchestrator, cache, records) imports neither IPython, ipywidgets, matplotlib, pandas nor
the `anthropic` SDK: they load when first needed, so `import claude_force_nb` and `%load_ext` stay fast.
"""

from ._agents import AgentConfig, AgentSpec, define_agent, load_config, remove_agent
from ._batch import BatchJob, BatchStatus
from ._cache import CacheHit, CacheStats, ResponseCache
from ._calls import CallSpec
from ._display import AgentRun
from ._estimate import CallEstimate, CostEstimate
from ._events import EventBus, RunEvent
from ._exceptions import (
    AgentRunFailed,
    AgentRunInterrupted,
    APICallError,
    AttemptTimeoutError,
    BackendError,
    BatchError,
    BudgetExceededError,
    BundleError,
    CacheMiss,
    CacheUnavailableError,
    CallFailedError,
    ClaudeForceError,
    ClaudeForceWarning,
    ConfigError,
    ConnectionFailedError,
    CoordinationError,
    MalformedResponseError,
    RetiredModelError,
    UnknownAgentError,
)
from ._orchestrator import AsyncAgentOrchestrator
from ._panel import AgentPanel, panel
from ._plots import attempts_frame, plot_cache, plot_cost, plot_latency, plot_timeline
from ._pricing import RateCard, UnpricedModelWarning
from ._records import RunLog, RunRecord
from ._request import ChatMessage, Completion, MessageRequest, Usage
from ._results import AgentResult, WorkflowResult
from ._retry import RetryPolicy
from ._session import NotebookSession, cache_stats_frame, get_session, orchestrator, runs_frame
from ._version import __version__

__all__ = [
    "APICallError",
    "AgentConfig",
    "AgentPanel",
    "AgentResult",
    "AgentRun",
    "AgentRunFailed",
    "AgentRunInterrupted",
    "AgentSpec",
    "AsyncAgentOrchestrator",
    "AttemptTimeoutError",
    "BackendError",
    "BatchError",
    "BatchJob",
    "BatchStatus",
    "BudgetExceededError",
    "BundleError",
    "CacheHit",
    "CacheMiss",
    "CacheStats",
    "CacheUnavailableError",
    "CallEstimate",
    "CallFailedError",
    "CallSpec",
    "ChatMessage",
    "ClaudeForceError",
    "ClaudeForceWarning",
    "Completion",
    "ConfigError",
    "ConnectionFailedError",
    "CoordinationError",
    "CostEstimate",
    "EventBus",
    "MalformedResponseError",
    "MessageRequest",
    "NotebookSession",
    "RateCard",
    "ResponseCache",
    "RetiredModelError",
    "RetryPolicy",
    "RunEvent",
    "RunLog",
    "RunRecord",
    "UnknownAgentError",
    "UnpricedModelWarning",
    "Usage",
    "WorkflowResult",
    "__version__",
    "attempts_frame",
    "cache_stats_frame",
    "define_agent",
    "get_session",
    "load_config",
    "load_ipython_extension",
    "orchestrator",
    "panel",
    "plot_cache",
    "plot_cost",
    "plot_latency",
    "plot_timeline",
    "remove_agent",
    "runs_frame",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython: object) -> None:
    """`%load_ext claude_force_nb` registers the `%agent` / `%%agent` magics (imported only now)."""
    from ._magic import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: object) -> None:
    from ._magic import unload_ipython_extension as unload

    unload(ipython)
