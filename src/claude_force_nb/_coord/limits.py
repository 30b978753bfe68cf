"""`SharedRateLimiter`: the local `RateLimiter`'s interface, with its smooth limits and pause on Redis.

Every attempt books the request's share of each limit (requests, its input tokens estimate, its
`max_tokens` of output) at the earliest moment the scope's GCRA state and pause allow, and learns how long to
wait, using the Redis server's clock: in the shared budget's round trip when there is one (see
`SharedBudget.reserve`), else in one of its own (the STEP script). Give-backs (unused output tokens, input
tokens the estimate over-counted) and corrections ride with the next round trip; a 429's `retry-after` and
nearly-spent `anthropic-ratelimit-*` headers seen by any client set the scope's pause, which holds back every
client. Each client paces to its own configured or learned limits on the shared state: give every member the
same figures (or let them all learn the API's).

When Redis cannot be reached, pacing fails open by default: this process paces on its local limiter (the same
arithmetic, this process alone) with one warning, and goes back to the shared state when Redis answers again;
`coordination_failure='closed'` fails the call instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._exceptions import CoordinationError
from .._limits import Pace, RateLimiter

if TYPE_CHECKING:
    from .._request import RateLimitSnapshot
from .store import Coordination, CoordinationDown, _text

__all__ = ["SharedRateLimiter"]

_RETRY_SHARED_AFTER_S = 2.0  # after a failure, how long to pace locally before trying Redis again


class SharedRateLimiter(RateLimiter):
    """Rate limits and pause shared by every orchestrator with the same coordination scope."""

    def __init__(self, coordination: Coordination, **options: Any) -> None:
        """`options` are `RateLimiter`'s (the limits, `burst_s`, `learn_limits`, `clock`, `sleep`)."""
        super().__init__(**options)
        self.coordination = coordination
        self._local_until = 0.0  # pacing locally (Redis down) until this clock reading

    @property
    def shared(self) -> bool:
        """True when this limiter is pacing on the shared state (False while Redis is unreachable)."""
        return self._clock() >= self._local_until

    def booking(self, pace: Pace) -> list[tuple[str, float, float]] | None:
        """`pace` as the STEP script books it on the shared state: (kind, cost, per minute) for each limit;
        None while this process paces locally (Redis unreachable)."""
        if not self.shared:
            return None
        costs = self._costs(pace.input_tokens, pace.output_tokens)
        return [(kind, costs[kind], limit.per_minute) for kind, limit in self.limits.items()]

    async def acquire(self, *, input_tokens: int, output_tokens: int) -> None:
        book = self.booking(Pace(self, input_tokens, output_tokens))
        if book is not None:
            try:
                step = await self.coordination.step(book=book, burst_s=self.burst_s)
            except CoordinationDown as exc:
                self._down(exc)
            else:
                if step.status == "epoch":  # only the budget's part cares: the deferred settles go on a join
                    self.coordination.spawn(self.coordination.rejoin())
                self.coordination.recovered("limits")
                await self.wait_booked(step.seconds)
                return
        await super().acquire(input_tokens=input_tokens, output_tokens=output_tokens)

    @property
    def enabled(self) -> bool:
        return True  # every attempt books on the shared state: another client's 429 pauses this one too

    def _down(self, exc: CoordinationDown, *, in_call: bool = True) -> None:
        coord = self.coordination
        if coord.failure == "closed":
            if in_call:
                raise CoordinationError(
                    f"refused before sending: the shared rate limits at {coord.where} cannot be reached "
                    f"({exc}) and coordination_failure='closed'"
                ) from exc
            return  # a background push (a give-back, a pause) is lost; the next call asks Redis again
        self._local_until = self._clock() + _RETRY_SHARED_AFTER_S
        coord.warn_once(
            "limits",
            f"the shared rate limits at {coord.where} cannot be reached ({exc}); pacing on this process's "
            "own limiter until Redis answers again",
        )

    async def probe(self) -> bool:
        """Limits another member learned are this one's too; only a scope with none known yet probes."""
        if not self.ready and self.shared:
            coord = self.coordination
            try:
                known = await coord.run("LEARNED", [coord.learned_key], [])
            except CoordinationDown as exc:
                self._down(exc)
            else:
                self._adopt(known)
        return await super().probe()

    def _adopt(self, known: list[Any]) -> None:
        from .._request import RateLimitSnapshot

        stated = {_text(k): int(float(_text(v))) for k, v in zip(known[::2], known[1::2], strict=True)}
        if stated:
            super().learn(RateLimitSnapshot(limit=stated))

    def learn(self, snapshot: RateLimitSnapshot | None) -> dict[str, float]:
        new = super().learn(snapshot)
        if new and self.shared:
            coord = self.coordination
            pairs: list[Any] = []
            for kind, per_minute in new.items():
                pairs += [kind, repr(per_minute)]

            async def push() -> None:
                try:
                    await coord.run("LEARNED", [coord.learned_key], pairs)
                except CoordinationDown as exc:
                    self._down(exc, in_call=False)

            coord.spawn(push())
        return new

    def _adjust(self, kind: str, units: float) -> None:
        limit = self.limits.get(kind)
        if limit is None or not units or not self.shared:
            return
        self.coordination.defer_adjust(kind, units, limit.per_minute, self.burst_s)

    def give_back_output(self, unused_tokens: int) -> None:
        super().give_back_output(unused_tokens)
        if unused_tokens > 0:
            self._adjust("output-tokens", -float(unused_tokens))

    def correct_input(self, estimated: int, counted: int) -> None:
        super().correct_input(estimated, counted)
        self._adjust("input-tokens", float(counted - estimated))

    def pause(self, seconds: float) -> None:
        super().pause(seconds)
        if seconds <= 0 or not self.shared:
            return
        coord = self.coordination

        async def push() -> None:
            try:
                await coord.run("PAUSE", [coord.pause_key], [int(seconds * 1000)])
            except CoordinationDown as exc:
                self._down(exc, in_call=False)

        coord.spawn(push())
