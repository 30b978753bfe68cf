"""claude_force_nb: a fast, correct multi-agent orchestrator for the Anthropic Claude API, inside Jupyter.

The core (config, orchestrator, cache, records) imports neither IPython, ipywidgets, matplotlib, pandas nor
the `anthropic` SDK: they load when first needed, so `import claude_force_nb` and `%load_ext` stay fast.
"""

from ._agents import AgentConfig, AgentSpec, define_agent, load_config, remove_agent
from ._cache import CacheHit, CacheStats, ResponseCache
from ._calls import CallSpec
from ._events import EventBus, RunEvent
from ._exceptions import (
    APICallError,
    AttemptTimeoutError,
    BackendError,
    BudgetExceededError,
    BundleError,
    CacheMiss,
    ClaudeForceError,
    ConfigError,
    ConnectionFailedError,
    MalformedResponseError,
    UnknownAgentError,
)
from ._orchestrator import AsyncAgentOrchestrator
from ._pricing import RateCard, UnpricedModelWarning
from ._records import RunLog, RunRecord
from ._request import ChatMessage, Completion, MessageRequest, Usage
from ._results import AgentResult, WorkflowResult
from ._retry import RetryPolicy
from ._version import __version__

__all__ = [
    "APICallError",
    "AgentConfig",
    "AgentResult",
    "AgentSpec",
    "AsyncAgentOrchestrator",
    "AttemptTimeoutError",
    "BackendError",
    "BudgetExceededError",
    "BundleError",
    "CacheHit",
    "CacheMiss",
    "CacheStats",
    "CallSpec",
    "ChatMessage",
    "ClaudeForceError",
    "Completion",
    "ConfigError",
    "ConnectionFailedError",
    "EventBus",
    "MalformedResponseError",
    "MessageRequest",
    "RateCard",
    "ResponseCache",
    "RetryPolicy",
    "RunEvent",
    "RunLog",
    "RunRecord",
    "UnknownAgentError",
    "UnpricedModelWarning",
    "Usage",
    "WorkflowResult",
    "__version__",
    "define_agent",
    "load_config",
    "remove_agent",
]

