"""Run records: one row per call, cached or not, failed or not, and the log that holds them.

The orchestrator is the only writer of a `RunRecord`: it creates one when a call is queued and updates it as
the call moves on (running, retrying, finished). UIs read the live record from progress events; analyses read
`RunLog.to_frame()`. pandas is imported only when a frame is asked for.
"""

from __future__ import annotations

import itertools
import logging
import math
import operator
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FRAME_COLUMNS", "AttemptSpan", "RunLog", "RunRecord", "RunStatus", "new_run_id"]

RunStatus = Literal["queued", "running", "retrying", "succeeded", "failed", "cancelled", "refused", "cached"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "refused", "cached"})

FRAME_COLUMNS = (
    "run_id",
    "agent",
    "model",
    "status",
    "cached",
    "attempts",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cost_usd",
    "cost_is_estimate",
    "cost_saved_usd",
    "latency_s",
    "ttft_s",
    "queue_s",
    "started_at",
    "finished_at",
    "workflow",
    "workflow_step",
    "batch_id",
    "mode",
    "stop_reason",
    "error",
    "task",
    "output",
)
_TIME_COLUMNS = ("started_at", "finished_at")
_FRAME_GETTERS = {name: operator.attrgetter(name) for name in FRAME_COLUMNS}

log = logging.getLogger("claude_force_nb")
_counter = itertools.count(1)
_prefix = os.urandom(3).hex()


def new_run_id() -> str:
    """Short, unique within the process, sortable by creation: `<6 hex of this process>-<counter>`."""
    return f"{_prefix}-{next(_counter):06d}"


@dataclass(slots=True)
class AttemptSpan:
    """One attempt of a call, for timelines: wall-clock start and end, and how it ended."""

    start: float
    end: float | None = None
    outcome: str = "running"


@dataclass(slots=True, kw_only=True)
class RunRecord:
    """Everything known about one call. Times are Unix seconds; durations are seconds.

    `ttft_s` is the last attempt's time to first byte: to the first text delta when streamed, to the
    response's headers when not (a non-streamed answer is sent once complete, so it is near `latency_s`);
    NaN for a cache hit.
    """

    run_id: str
    agent: str
    model: str
    task: str = ""
    status: RunStatus = "queued"
    cached: bool = False
    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float = 0.0
    cost_is_estimate: bool = False
    """True when `cost_usd` counts an attempt the API may have billed without reporting usage (cut off or
    cancelled in flight) at its worst case, as the budget does: an upper bound, not a measured cost."""
    cost_saved_usd: float = 0.0
    latency_s: float = math.nan
    ttft_s: float = math.nan
    queue_s: float = math.nan
    queued_at: float = 0.0
    started_at: float = math.nan
    finished_at: float = math.nan
    workflow: str | None = None
    workflow_step: int | None = None
    batch_id: str | None = None
    mode: str = "interactive"  # "batch" for calls sent through the Message Batches API
    stop_reason: str | None = None
    error: str | None = None
    error_type: str | None = None
    output: str | None = None
    spans: list[AttemptSpan] = field(default_factory=list)

    @classmethod
    def queued(cls, agent: str, model: str, task: str, **fields: Any) -> RunRecord:
        """The record of a call entering the queue now, with a fresh run id: the one constructor the
        interactive and the batch paths share. `fields` sets the others (workflow, batch_id, mode...)."""
        return cls(run_id=new_run_id(), agent=agent, model=model, task=task, queued_at=time.time(), **fields)

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATUSES

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FRAME_COLUMNS}

    def to_dict(self) -> dict[str, Any]:
        """Every field, spans included, as JSON-friendly data (used by run-log persistence)."""
        return asdict(self)


class RunLog:
    """The ordered list of run records of a session. Thread-safe appends; cheap to read.

    `on_finish` callbacks run when a record reaches a final status (persistence hooks use it).
    """

    def __init__(self) -> None:
        self._records: list[RunRecord] = []
        self._lock = threading.Lock()
        self._finish_hooks: list[Callable[[RunRecord], None]] = []

    def add(self, record: RunRecord) -> RunRecord:
        with self._lock:
            self._records.append(record)
        return record

    def finished(self, record: RunRecord) -> None:
        """Called by the orchestrator once `record` has reached its final status.

        A failing hook (say, persistence hitting a full disk) is logged and skipped: the call it reports on
        has already happened and its result must still reach the caller.
        """
        for hook in list(self._finish_hooks):
            try:
                hook(record)
            except Exception:
                log.exception("run-log hook %r failed for run %s", hook, record.run_id)

    def on_finish(self, hook: Callable[[RunRecord], None]) -> Callable[[], None]:
        """Run `hook(record)` whenever a record finishes; returns a function that removes the hook."""
        self._finish_hooks.append(hook)
        return lambda: self._finish_hooks.remove(hook) if hook in self._finish_hooks else None

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[RunRecord]:
        with self._lock:
            return iter(list(self._records))

    def __getitem__(self, index: int) -> RunRecord:
        return self._records[index]

    def get(self, run_id: str) -> RunRecord | None:
        with self._lock:
            return next((r for r in reversed(self._records) if r.run_id == run_id), None)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def extend(self, records: list[RunRecord]) -> None:
        with self._lock:
            self._records.extend(records)

    def to_frame(self) -> pd.DataFrame:
        """One row per call, in the order calls were queued (columns: `FRAME_COLUMNS`)."""
        import pandas as pd

        with self._lock:
            records = list(self._records)
        # Built column by column, one C-level attribute getter per column: no row dicts for pandas to match
        # key by key, and no per-record tuples for the garbage collector to chase (both measured slower, see
        # benchmarks/bench_display.py).
        data: dict[str, Any] = {}
        for name, getter in _FRAME_GETTERS.items():
            column = list(map(getter, records))
            if name in _TIME_COLUMNS:
                data[name] = pd.to_datetime(pd.Series(column, dtype="float64"), unit="s", utc=True)
            else:
                data[name] = column if records else pd.Series(column, dtype=object)
        return pd.DataFrame(data, columns=list(FRAME_COLUMNS))

    def __repr__(self) -> str:
        return f"RunLog({len(self)} runs)"
