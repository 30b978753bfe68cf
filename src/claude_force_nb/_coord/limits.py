"""`SharedRateLimiter`: the local `RateLimiter`'s interface, with its smooth limits and pause on Redis.

Every attempt runs the ACQUIRE script once: it books the request's share of each limit (requests, its input
tokens estimate, its `max_tokens` of output) at the earliest moment the scope's GCRA state and pause allow,
and answers how long to wait, using the Redis server's clock. Give-backs (unused output tokens, input tokens
the estimate over-counted) and corrections run the ADJUST script in the background; a 429's `retry-after` and
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
from .._limits import RateLimiter

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

    async def acquire(self, *, input_tokens: int, output_tokens: int) -> None:
        if not self.shared:
            await super().acquire(input_tokens=input_tokens, output_tokens=output_tokens)
            return
        coord = self.coordination
        costs = self._costs(input_tokens, output_tokens)
        kinds = list(self.limits)
        args: list[Any] = [int(self.burst_s * 1000)]
        for kind in kinds:
            args += [repr(costs[kind]), repr(self.limits[kind].per_minute)]
        try:
            reply = await coord.run("ACQUIRE", [coord.pause_key, *(coord.limit_keys[k] for k in kinds)], args)
        except CoordinationDown as exc:
            self._down(exc)
            await super().acquire(input_tokens=input_tokens, output_tokens=output_tokens)
            return
        coord.recovered("limits")
        wait = float(reply) / 1000
        go = self._clock() + wait
        while (wait := max(go, self.paused_until) - self._clock()) > 0:
            self.waited_s += wait
            await self._sleep(wait)

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
        if not self._probed and self.learn_limits and not self.limits and self.shared:
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
        coord = self.coordination

        async def push() -> None:
            try:
                await coord.run(
                    "ADJUST",
                    [coord.limit_keys[kind]],
                    [repr(units), repr(limit.per_minute), int(self.burst_s * 1000)],
                )
            except CoordinationDown as exc:
                self._down(exc, in_call=False)

        coord.spawn(push())

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
