"""What a call gives back: `AgentResult` (one call) and `WorkflowResult` (the steps of a workflow).

`AgentResult` keeps the claude-force seed's fields (`agent_name, success, output, errors, metadata`) so code
written for the seed keeps working, and adds typed fields for everything the run log knows. Both render as
markdown in a notebook and export tidy frames.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from ._exceptions import CallFailedError, ClaudeForceError
from ._records import RunRecord
from ._style import math_safe_markdown, small_note

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AgentResult", "WorkflowResult"]


@dataclass(kw_only=True)
class AgentResult:
    """The outcome of one agent call.

    `success` is False for failed, refused, cancelled or replay-missed calls; `errors` then says why and
    `exception` holds the error itself.
    """

    agent_name: str
    success: bool
    output: str = ""
    errors: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    model: str = ""
    status: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float = 0.0
    cost_is_estimate: bool = False
    cost_saved_usd: float = 0.0
    latency_s: float = math.nan
    ttft_s: float = math.nan
    attempts: int = 0
    cached: bool = False
    started_at: float = math.nan
    finished_at: float = math.nan
    stop_reason: str | None = None
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_record(
        cls, record: RunRecord, *, exception: BaseException | None = None, **metadata: Any
    ) -> AgentResult:
        return cls(
            agent_name=record.agent,
            success=record.status in ("succeeded", "cached"),
            output=record.output or "",
            errors=[record.error] if record.error else [],
            metadata={k: v for k, v in metadata.items() if v is not None},
            run_id=record.run_id,
            model=record.model,
            status=record.status,
            input_tokens=record.input_tokens,
            output_tokens=record.output_tokens,
            cache_creation_input_tokens=record.cache_creation_input_tokens,
            cache_read_input_tokens=record.cache_read_input_tokens,
            cost_usd=record.cost_usd,
            cost_is_estimate=record.cost_is_estimate,
            cost_saved_usd=record.cost_saved_usd,
            latency_s=record.latency_s,
            ttft_s=record.ttft_s,
            attempts=record.attempts,
            cached=record.cached,
            started_at=record.started_at,
            finished_at=record.finished_at,
            stop_reason=record.stop_reason,
            exception=exception,
        )

    @property
    def text(self) -> str:
        """The answer's text (same as `output`)."""
        return self.output

    @property
    def error(self) -> str | None:
        return self.errors[0] if self.errors else None

    def raise_for_error(self) -> AgentResult:
        """Raise if the call did not succeed; return self otherwise (so it chains).

        Always a `ClaudeForceError`: the call's own error when it is one of the package's (APICallError,
        BudgetExceededError, CacheMiss...), else `CallFailedError` with the original as its cause.
        """
        if not self.success:
            if isinstance(self.exception, ClaudeForceError):
                raise self.exception
            raise CallFailedError(self) from self.exception
        return self

    def summary(self) -> str:
        """One line: agent, model, status, tokens, cost, latency."""
        if self.cached:
            cost = f"cached, saved ${self.cost_saved_usd:.4f}"
        elif math.isnan(self.cost_usd):
            cost = "cost unpriced"
        else:
            cost = f"{'≤' if self.cost_is_estimate else ''}${self.cost_usd:.4f}"
        latency = "" if math.isnan(self.latency_s) else f" · {self.latency_s:.2f}s"
        prompt = self.input_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens
        tokens = f"{prompt}→{self.output_tokens} tok"
        return f"{self.agent_name} · {self.model} · {self.status} · {tokens} · {cost}{latency}"

    def _repr_markdown_(self) -> str:
        """The answer and a summary line; `$` is never typeset as maths (see `_style`)."""
        body = self.output if self.success else f"**{self.agent_name} failed:** {self.error or self.status}"
        return math_safe_markdown(body) + "\n\n" + small_note(self.summary())


class WorkflowResult(Sequence[AgentResult]):
    """The steps that ran, in order. `success` is True only if every step ran and succeeded."""

    def __init__(self, name: str, steps: Sequence[str], results: Sequence[AgentResult]) -> None:
        self.name = name
        self.steps = tuple(steps)
        self.results = list(results)

    @property
    def success(self) -> bool:
        return len(self.results) == len(self.steps) and all(r.success for r in self.results)

    @property
    def output(self) -> str:
        """The last successful step's output (the workflow's answer when it succeeded)."""
        return next((r.output for r in reversed(self.results) if r.success), "")

    @property
    def failed_step(self) -> AgentResult | None:
        return next((r for r in self.results if not r.success), None)

    @property
    def cost_usd(self) -> float:
        return sum(r.cost_usd for r in self.results)

    @overload
    def __getitem__(self, index: int) -> AgentResult: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[AgentResult]: ...
    def __getitem__(self, index: int | slice) -> AgentResult | Sequence[AgentResult]:
        return self.results[index]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[AgentResult]:
        return iter(self.results)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "step": i,
                    "agent": r.agent_name,
                    "status": r.status,
                    "cost_usd": r.cost_usd,
                    "cost_is_estimate": r.cost_is_estimate,
                    "latency_s": r.latency_s,
                    "output": r.output,
                }
                for i, r in enumerate(self.results)
            ]
        )

    def __repr__(self) -> str:
        state = "succeeded" if self.success else f"stopped after {len(self.results)}/{len(self.steps)} steps"
        return f"WorkflowResult({self.name!r}, {state})"

    def _repr_markdown_(self) -> str:
        lines = [f"**workflow {self.name}**: {'succeeded' if self.success else 'failed'}", ""]
        for i, r in enumerate(self.results, 1):
            lines.append(f"{i}. {r.summary()}")
        lines += [
            "",
            self.output
            if self.success
            else f"**error:** {(self.failed_step and self.failed_step.error) or ''}",
        ]
        return math_safe_markdown("\n".join(lines))
