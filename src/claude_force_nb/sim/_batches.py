"""Message Batches: the simulator's book of batches, with the real service's wire shapes and life cycle.

A batch belongs to the API key that created it (the real service scopes batches to a workspace; another key
gets a 404 for it). Its requests are processed in order at `batch_items_per_s`, counted from its creation, so
progress is a pure function of the clock: nothing runs in the background, and a batch "advances" whenever it
is looked at. An item's fate is decided when it is processed: a request the Messages endpoint would refuse
(bad params, a streaming request, an unknown model) is `errored` with that error; otherwise a seeded draw
against `batch_error_rate` makes it `errored` with a retryable `overloaded_error`, and the rest `succeeded`.
Cancelling freezes the processed count; the rest become `canceled` and the batch ends at the next look.
Anything unprocessed at `expires_at` becomes `expired`.

The answers themselves are produced once, when the results are first read (the responder makes them exactly
as for /v1/messages, with the batch path's own prompt-cache scope), and kept as JSONL lines until the batch
is deleted, so reading the results twice gives the same bytes. Lines come in a seeded shuffled order: like
the real service, clients must map them back by `custom_id`.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Final

from ._config import SimConfig
from ._validate import MessagesRequest, RequestError, parse_messages_request
from ._wire import dumps, new_id

__all__ = ["BatchBook", "SimBatch"]

_CUSTOM_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DEFAULT_LIST_LIMIT: Final = 20
_MAX_LIST_LIMIT: Final = 1000

# Makes one succeeded item's Message (JSON-ready) for a key's scope and a validated request.
Answer = Callable[[str, MessagesRequest], dict[str, Any]]


def _invalid(message: str) -> RequestError:
    return RequestError(400, "invalid_request_error", message)


def rfc3339(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp, tz=timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class _Item:
    custom_id: str
    request: MessagesRequest | None
    error: tuple[str, str] | None  # (error type, message) decided at creation for an invalid request


@dataclass(slots=True)
class SimBatch:
    """One batch and its state; times are Unix seconds."""

    id: str
    scope: str
    serial: int
    created: float
    expires: float
    items: list[_Item]
    processed: int = 0
    cancel_at: float | None = None
    ended: float | None = None
    fates: list[str] = field(default_factory=list)  # "succeeded" | "errored" | "canceled" | "expired"
    lines: list[bytes] | None = None  # the JSONL results, produced on first read

    @property
    def status(self) -> str:
        if self.ended is not None:
            return "ended"
        return "canceling" if self.cancel_at is not None else "in_progress"

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
        for fate in self.fates:
            counts[fate] += 1
        counts["processing"] = len(self.items) - len(self.fates)
        return counts

    def to_dict(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": self.status,
            "request_counts": self.counts(),
            "created_at": rfc3339(self.created),
            "expires_at": rfc3339(self.expires),
            "ended_at": rfc3339(self.ended),
            "cancel_initiated_at": rfc3339(self.cancel_at),
            "archived_at": None,
            "results_url": f"{base_url}/v1/messages/batches/{self.id}/results" if self.ended else None,
        }


class BatchBook:
    """Every batch the simulator holds. Thread-safe: the server's loop and a test's thread may both use it."""

    def __init__(self, config: SimConfig, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._batches: dict[str, SimBatch] = {}  # insertion order = creation order
        self._serial = 0

    # -- create ---------------------------------------------------------------------------------------------

    def create(self, scope: str, data: object, *, models: frozenset[str] | None) -> SimBatch:
        """A new batch from a create body; RequestError (400) for a malformed body or too many requests."""
        if not isinstance(data, Mapping):
            raise _invalid("The request body must be a JSON object")
        requests = data.get("requests")
        if not isinstance(requests, list) or not requests:
            raise _invalid("requests: must be a non-empty list of {custom_id, params} objects")
        limit = self._config.batch_max_requests
        if len(requests) > limit:
            raise _invalid(f"requests: a batch holds at most {limit} requests, got {len(requests)}")
        items: list[_Item] = []
        seen: set[str] = set()
        for i, entry in enumerate(requests):
            if not isinstance(entry, Mapping):
                raise _invalid(f"requests.{i}: must be an object with custom_id and params")
            custom_id = entry.get("custom_id")
            if not isinstance(custom_id, str) or not _CUSTOM_ID.fullmatch(custom_id):
                raise _invalid(
                    f"requests.{i}.custom_id: must be 1-64 characters of letters, digits, '_' and '-'"
                )
            if custom_id in seen:
                raise _invalid(f"requests.{i}.custom_id: {custom_id!r} is not unique within the batch")
            seen.add(custom_id)
            params = entry.get("params")
            if not isinstance(params, Mapping):
                raise _invalid(f"requests.{i}.params: Field required")
            items.append(_item(custom_id, params, models))
        now = self._clock()
        with self._lock:
            self._serial += 1
            batch = SimBatch(
                id=new_id("msgbatch"),
                scope=scope,
                serial=self._serial,
                created=now,
                expires=now + self._config.batch_expiry_s,
                items=items,
            )
            self._batches[batch.id] = batch
        return batch

    # -- look ups -------------------------------------------------------------------------------------------

    def get(self, scope: str, batch_id: str) -> SimBatch:
        """The batch, advanced to now; 404 when it does not exist for this key."""
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None or batch.scope != scope:
                raise RequestError(404, "not_found_error", f"message_batch_id: {batch_id} not found")
            self._advance(batch, self._clock())
            return batch

    def page(
        self, scope: str, *, after_id: str | None, before_id: str | None, limit: object
    ) -> dict[str, Any]:
        """One page of this key's batches, newest first (the list endpoint adds the base URL)."""
        if limit is None:
            size = _DEFAULT_LIST_LIMIT
        else:
            try:
                size = int(str(limit))
            except ValueError:
                raise _invalid(f"limit: Input should be a valid integer, got {limit!r}") from None
            if not 1 <= size <= _MAX_LIST_LIMIT:
                raise _invalid(f"limit: must be between 1 and {_MAX_LIST_LIMIT}, got {size}")
        now = self._clock()
        with self._lock:
            mine = [b for b in reversed(self._batches.values()) if b.scope == scope]
            for batch in mine:
                self._advance(batch, now)
            ids = [b.id for b in mine]
            if after_id is not None:
                start = _cursor(ids, after_id, "after_id") + 1
                chosen, has_more = mine[start : start + size], start + size < len(mine)
            elif before_id is not None:
                stop = _cursor(ids, before_id, "before_id")
                chosen, has_more = mine[max(stop - size, 0) : stop], stop - size > 0
            else:
                chosen, has_more = mine[:size], size < len(mine)
        return {
            "batches": chosen,
            "has_more": has_more,
            "first_id": chosen[0].id if chosen else None,
            "last_id": chosen[-1].id if chosen else None,
        }

    # -- changes --------------------------------------------------------------------------------------------

    def cancel(self, scope: str, batch_id: str) -> SimBatch:
        batch = self.get(scope, batch_id)
        with self._lock:
            if batch.ended is None and batch.cancel_at is None:
                batch.cancel_at = self._clock()
        return batch

    def delete(self, scope: str, batch_id: str) -> None:
        batch = self.get(scope, batch_id)
        with self._lock:
            if batch.ended is None:
                raise _invalid(
                    f"Batch {batch_id} cannot be deleted while it is {batch.status}; cancel it and wait "
                    "for it to end first"
                )
            self._batches.pop(batch_id, None)

    def results(self, scope: str, batch_id: str, answer: Answer) -> list[bytes]:
        """The batch's JSONL lines (produced on the first call); 400 while the batch has not ended."""
        batch = self.get(scope, batch_id)
        with self._lock:
            if batch.ended is None:
                raise _invalid(f"Batch {batch_id} has not ended yet ({batch.status}); results are not ready")
            lines = batch.lines
        if lines is None:
            lines = list(self._produce(batch, answer))
            random.Random(f"{self._config.seed}:{batch.serial}").shuffle(lines)
            with self._lock:
                if batch.lines is None:
                    batch.lines = lines
                lines = batch.lines
        return lines

    # -- internals ------------------------------------------------------------------------------------------

    def _advance(self, batch: SimBatch, now: float) -> None:
        """Bring a batch's processed count, fates and status up to `now` (the lock is held)."""
        if batch.ended is not None:
            return
        n = len(batch.items)
        speed = self._config.batch_items_per_s
        horizon = min(now, batch.cancel_at if batch.cancel_at is not None else now, batch.expires)
        due = n if speed * max(horizon - batch.created, 0.0) >= n else int(speed * (horizon - batch.created))
        if due > batch.processed:
            rng = random.Random(f"{self._config.seed}:{batch.serial}:{batch.processed}")
            rate = self._config.batch_error_rate
            for item in batch.items[batch.processed : due]:
                errored = item.error is not None or (rate > 0 and rng.random() < rate)
                batch.fates.append("errored" if errored else "succeeded")
            batch.processed = due
        if batch.processed == n:
            batch.ended = min(now, batch.created + n / speed) if speed > 0 else now
        elif batch.cancel_at is not None:
            batch.fates.extend(["canceled"] * (n - batch.processed))
            batch.ended = now
        elif now >= batch.expires:
            batch.fates.extend(["expired"] * (n - batch.processed))
            batch.ended = batch.expires

    def _produce(self, batch: SimBatch, answer: Answer) -> Iterator[bytes]:
        for item, fate in zip(batch.items, batch.fates, strict=True):
            result: dict[str, Any]
            if fate == "succeeded" and item.request is not None:
                result = {"type": "succeeded", "message": answer(batch.scope, item.request)}
            elif fate == "errored":
                error_type, message = item.error or ("overloaded_error", "Overloaded")
                result = {
                    "type": "errored",
                    "error": {
                        "type": "error",
                        "error": {"type": error_type, "message": message},
                        "request_id": new_id("req"),
                    },
                }
            else:
                result = {"type": fate}
            yield (dumps({"custom_id": item.custom_id, "result": result}) + "\n").encode()


def _item(custom_id: str, params: Mapping[str, Any], models: frozenset[str] | None) -> _Item:
    """One request of a batch, with the error the Messages endpoint would have given it, if any."""
    if params.get("stream") is True:
        return _Item(custom_id, None, ("invalid_request_error", "stream: not supported in message batches"))
    try:
        parsed = parse_messages_request(params, count_only=False)
    except RequestError as exc:
        return _Item(custom_id, None, (exc.error_type, exc.message))
    if models is not None and parsed.model not in models:
        return _Item(custom_id, None, ("not_found_error", f"model: {parsed.model}"))
    return _Item(custom_id, parsed, None)


def _cursor(ids: list[str], cursor: str, name: str) -> int:
    try:
        return ids.index(cursor)
    except ValueError:
        raise _invalid(f"{name}: no batch with id {cursor}") from None
