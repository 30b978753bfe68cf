"""One exception tree for the whole package.

```
ClaudeForceError
├── ConfigError (ValueError)           a malformed .claude/claude.json, agent entry, unsafe path, or argument
│   ├── UnknownAgentError (KeyError)   a name that is not an agent (or workflow) of this orchestrator
│   └── RetiredModelError              a call to a model the rate card says is retired (not sent)
├── BudgetExceededError                a call refused before dispatch: it could push spend past the budget
├── CacheMiss                          replay mode: the answer is not in the cache, and no call is allowed
├── CacheUnavailableError              an operation asked of the cache by name (clear, export...) cannot
│                                      run: its store is broken or down (calls never see this: no cache)
├── BundleError (ValueError)           a replay bundle that is malformed, oversized, or fails its checksums
├── CallFailedError                    `AgentResult.raise_for_error()` on a call that did not succeed
├── AgentRunFailed                     a `%%agent` cell whose calls did not all succeed (raised at its end)
├── BatchError                         a Message Batches job that cannot be sent, found or collected
├── CoordinationError                  the shared rate limits cannot be reached and
│                                      coordination_failure='closed' (the call is not sent)
└── BackendError                       the API call itself failed (after translation from the SDK)
    ├── APICallError                   the API answered with an error (status, error type, retry hints)
    ├── ConnectionFailedError          no answer: connection refused/reset, stream cut short
    ├── AttemptTimeoutError            one attempt ran past `timeout_seconds`
    └── MalformedResponseError         an answer we could not parse
```

Outside the tree, `AgentRunInterrupted` is a `KeyboardInterrupt` (an interrupted `%%agent` cell must stop
"Run All" as any interrupt does); its `.run` keeps every call's result.

Warnings have one base, `ClaudeForceWarning` (UserWarning): `UnpricedModelWarning` and the transport
fallback. In a notebook (`%load_ext`) each is shown as one line, "claude_force_nb: ...", not with the
internal file and source line Python's default format adds.

SDK exceptions never leak out of the backend: `claude_force_nb._backends.anthropic` translates them with
`raise ... from exc`, so callers match on this tree and still see the original in `__cause__`. The notebook
layer turns user-input errors (ConfigError, UnknownAgentError, bad options) into IPython `UsageError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._retry import is_retryable_status

if TYPE_CHECKING:
    from ._display import AgentRun
    from ._results import AgentResult

__all__ = [
    "APICallError",
    "AgentRunFailed",
    "AttemptTimeoutError",
    "BackendError",
    "BatchError",
    "BudgetExceededError",
    "BundleError",
    "CacheMiss",
    "CacheUnavailableError",
    "CallFailedError",
    "ClaudeForceError",
    "ClaudeForceWarning",
    "ConfigError",
    "ConnectionFailedError",
    "CoordinationError",
    "MalformedResponseError",
    "RetiredModelError",
    "UnknownAgentError",
]


class ClaudeForceError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(ClaudeForceError, ValueError):
    """The agent configuration or an argument is unusable; the message names the file and the place in it,
    or the argument (see `_validate.py`)."""


class UnknownAgentError(ConfigError, KeyError):
    """An agent or workflow name that this orchestrator does not know."""

    def __str__(self) -> str:  # KeyError would quote the message; we want it readable
        return str(self.args[0]) if self.args else "unknown agent"


class RetiredModelError(ConfigError):
    """A call names a model the rate card says is retired; it was refused before sending. The message names
    the replacement; `allow_retired=True` sends it anyway (a proxy may still serve it)."""

    def __init__(self, message: str, *, model: str) -> None:
        super().__init__(message)
        self.model = model


class BudgetExceededError(ClaudeForceError):
    """A call was refused before it was sent, because its worst-case cost could exceed the budget."""


class CacheUnavailableError(ClaudeForceError):
    """The response cache's store cannot do what was asked by name (clear, delete, export, import); the
    message names the store and how to fix it. Calls never raise this: for them a broken cache is no cache."""


class CacheMiss(ClaudeForceError):
    """Replay mode found no cached answer for this request; nothing was sent to the API."""

    def __init__(self, message: str, *, agent: str | None = None, task: str | None = None) -> None:
        super().__init__(message)
        self.agent = agent
        self.task = task


class BundleError(ClaudeForceError, ValueError):
    """A replay bundle was refused; the message names the entry at fault."""


class CallFailedError(ClaudeForceError):
    """A call did not succeed and its result was asked to raise; `.result` is that AgentResult.

    Raised by `AgentResult.raise_for_error()` when the call's own error is not one of this package's (a
    cancelled call, an invalid item, a custom backend's bug); the original, if any, is the `__cause__`.
    """

    def __init__(self, result: AgentResult) -> None:
        super().__init__(f"{result.agent_name}: {result.error or result.status}")
        self.result = result


class AgentRunFailed(ClaudeForceError):
    """Some calls of a `%%agent` cell failed. `.run` holds every result, the finished ones included."""

    def __init__(self, run: AgentRun) -> None:
        failed = run.failed
        first = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        super().__init__(
            f"{len(failed)} of {len(run.results)} calls failed; "
            f"{first.agent_name}: {first.error or first.status}{more}. "
            "Finished results are in `_agent_last` (and -o/capture variables)."
        )
        self.run = run

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [f"AgentRunFailed: {self}"]


class BatchError(ClaudeForceError):
    """A Message Batches job (or one of its items) could not be sent, found or collected; the message says
    which and what to do."""


class AgentRunInterrupted(KeyboardInterrupt):
    """A blocking `%%agent` cell was interrupted (the kernel's stop button); in-flight calls were cancelled.

    A `KeyboardInterrupt`, not a ClaudeForceError, so "Run All" stops as on any interrupt. `.run` holds every
    call's result in order, the unfinished ones with status `cancelled`. IPython shows one line, not a
    traceback through the event loop's internals.
    """

    def __init__(self, run: AgentRun) -> None:
        finished = sum(r.success for r in run.results)
        super().__init__(
            f"in-flight calls were cancelled; {finished} of {len(run.results)} finished and are kept "
            "(in `_agent_last`, -o/capture variables and `%agent runs`)."
        )
        self.run = run

    def _render_traceback_(self) -> list[str]:
        return [f"Interrupted: {self}"]


class CoordinationError(ClaudeForceError):
    """The coordination store (Redis) cannot be reached and its failure policy says not to send the call."""


class BackendError(ClaudeForceError):
    """A call to the model failed.

    `retryable` is the backend's verdict on whether trying again can help; `retry_after` is the wait (in
    seconds) the server asked for, when it asked.
    """

    retryable: bool = False

    def __init__(
        self, message: str, *, retry_after: float | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.request_id = request_id


class APICallError(BackendError):
    """The API answered with an error status (or an error event inside a stream)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        error_type: str | None = None,
        should_retry: bool | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after, request_id=request_id)
        self.status = status
        self.error_type = error_type
        self.should_retry = should_retry
        # Decided once, here, by the pure policy function, so every layer agrees on it.
        self.retryable = is_retryable_status(status, error_type=error_type, should_retry=should_retry)


class ConnectionFailedError(BackendError):
    """No (complete) answer arrived: the connection failed or a stream ended early."""

    retryable = True


class AttemptTimeoutError(BackendError):
    """One attempt took longer than the per-attempt timeout and was abandoned."""

    retryable = True


class MalformedResponseError(BackendError):
    """The API answered 2xx with a body we could not understand. Not retried: it is not a known transient."""


class ClaudeForceWarning(UserWarning):
    """The base of the package's warnings (shown as one readable line in a notebook)."""
