"""`SharedBudget`: the in-process `Budget`'s interface and semantics, with the ledger on a Redis server.

`reserve` asks the ledger in one round trip (the STEP script): a worst case that fits beside the scope's
spend and holds is held at once (as a lease), with the attempt's rate booking in the same trip; one that fits
only once holds settle *waits* (for a local settle, or a short poll for other processes' settles), by priority
then arrival among this process's callers; one that cannot fit even if every hold settled at zero is refused.
`settle` and `release` stay synchronous, as the orchestrator calls them: they update this process's journal
and the displayed figures at once, and the settle rides with the next round trip (or goes in one of its own
within a few milliseconds); until it lands the lease holds the worst case, so the ledger can only over-count
for a moment, never under-count.

Each orchestrator checks its own `budget_usd` against the scope's total spend and holds: give every member
the same figure. Without a limit nothing is reserved (no round trip per call); the spend is added to the
ledger with the next heartbeat, so the team's spend still counts everyone's.

When Redis cannot be reached, a budgeted call is refused (the message names the URL and the option) unless
`coordination_failure='open'`, which reserves against a local ledger that starts from the last shared
figures and adds what it spent to the shared one when Redis is back.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from typing import Any

from .._exceptions import BudgetExceededError
from .._limits import Budget, Pace, PrioritySlots, Reservation
from .limits import SharedRateLimiter
from .store import Coordination, CoordinationDown

__all__ = ["SharedBudget", "SharedReservation"]

_POLL_S = (0.02, 0.25)  # how often a waiting call re-asks the ledger: first, and at most
_EPSILON = 1e-12


class SharedReservation(Reservation):
    """A reservation held in the shared ledger, under a lease."""

    __slots__ = ("lease",)

    def __init__(self, amount: float, lease: str) -> None:
        super().__init__(amount)
        self.lease = lease


class SharedBudget(Budget):
    """A budget whose spend and holds are those of every orchestrator with the same coordination scope."""

    def __init__(self, limit_usd: float | None, coordination: Coordination) -> None:
        super().__init__(limit_usd)
        self.coordination = coordination
        self._turn = PrioritySlots(1)  # this process's callers ask the ledger one at a time, by priority
        self._fallback: Budget | None = None  # the local ledger while Redis is down (failure policy 'open')

    # The shared figures, as of the last reply from the ledger (the base class's attributes are these).
    @property
    def spent_usd(self) -> float:
        return self.coordination.spent_usd

    @spent_usd.setter
    def spent_usd(self, value: float) -> None:
        if hasattr(self, "coordination"):
            self.coordination.spent_usd = value

    @property
    def reserved_usd(self) -> float:
        return self.coordination.held_usd

    @reserved_usd.setter
    def reserved_usd(self, value: float) -> None:
        if hasattr(self, "coordination"):
            self.coordination.held_usd = value

    @property
    def waiting(self) -> int:
        return self._turn.waiting + self._turn.in_use

    def _serve_waiters(self) -> None:  # a new limit: wake the caller asking the ledger
        if hasattr(self, "coordination"):
            self.coordination.wake()

    async def reserve(
        self,
        worst_case_usd: float,
        *,
        what: str,
        priority: tuple[int, ...] = (0,),
        pace: Pace | None = None,
        lease_s: float | None = None,
    ) -> Reservation:
        """Hold `worst_case_usd` on the shared ledger (see `Budget.reserve`). With a `pace` whose limiter
        paces on the same store, the attempt's rate booking rides in the same round trip. `lease_s` fixes the
        lease's length instead of renewing it while this process lives (a batch item: the batch runs on
        whether or not this process does, and any process may settle it by its lease id)."""
        limit = self.limit_usd
        if math.isnan(worst_case_usd):
            if limit is not None:
                return await super().reserve(worst_case_usd, what=what)  # the base class's refusal
            worst_case_usd = 0.0
        coord = self.coordination
        coord.start()
        limiter = pace.limiter if pace is not None else None
        joint = limiter if isinstance(limiter, SharedRateLimiter) and limiter.coordination is coord else None
        # With a limit, this process's callers ask the ledger one at a time, so a big call waiting at the head
        # is not overtaken by small ones; without one nothing ever waits, so they go at once.
        turn = limit is not None
        if turn:
            await self._turn.acquire(priority)
        try:
            delay = _POLL_S[0]
            while True:
                lease = uuid.uuid4().hex
                book = joint.booking(pace) if joint is not None and pace is not None else None
                try:
                    if not coord.epoch:
                        await coord.join()
                    step = await coord.step(
                        reserve=(lease, worst_case_usd, limit),
                        book=book,
                        burst_s=joint.burst_s if joint is not None else 0.0,
                        lease_s=lease_s,
                    )
                except CoordinationDown as exc:
                    return await self._unreachable(worst_case_usd, what, exc)
                coord.recovered("budget")
                self._fallback = None
                if step.status == "epoch":  # the ledger was lost or rebuilt: add our journal, then ask again
                    try:
                        await coord.join()
                    except CoordinationDown as exc:
                        return await self._unreachable(worst_case_usd, what, exc)
                    continue
                if step.status == "rebuilding":
                    await asyncio.sleep(step.seconds)
                    continue
                if step.status == "ok":
                    coord.journal.holds[lease] = (worst_case_usd, coord.epoch)
                    if lease_s is not None:
                        coord.journal.until[lease] = time.time() + lease_s
                    if book is not None and pace is not None:
                        pace.booked_wait_s = step.seconds
                    return SharedReservation(worst_case_usd, lease)
                if step.status == "refuse":
                    raise self._refusal(worst_case_usd, what)
                await coord.changed_or(delay)  # "wait": it fits once holds (ours or others') settle
                delay = min(delay * 2, _POLL_S[1])
                limit = self.limit_usd
        finally:
            if turn:
                self._turn.release()

    async def _unreachable(self, amount: float, what: str, exc: CoordinationDown) -> Reservation:
        """The failure policy: refuse (money fails closed by default), or reserve on a local ledger."""
        coord = self.coordination
        if coord.failure != "open" and self.limit_usd is not None:
            raise BudgetExceededError(
                f"{what}: refused before sending: the shared budget's ledger at {coord.where} cannot be "
                f"reached ({exc}); budgets fail closed so the team cannot overspend "
                "(coordination_failure='open' spends against a local ledger instead while Redis is down)"
            )
        coord.warn_once(
            "budget",
            f"the shared budget's ledger at {coord.where} cannot be reached ({exc}); this process now "
            "counts its spend locally and adds it to the shared ledger when Redis is back",
        )
        if self._fallback is None:
            self._fallback = Budget(self.limit_usd)
            self._fallback.spent_usd = (
                coord.spent_usd + coord.held_usd
            )  # the last figures known, holds as spent
        self._fallback.limit_usd = self.limit_usd
        return await self._fallback.reserve(amount, what=what)

    def settle(self, reservation: Reservation, actual_usd: float) -> None:
        if not reservation.open:
            return
        coord = self.coordination
        cost = reservation.amount if math.isnan(actual_usd) else actual_usd
        if not isinstance(reservation, SharedReservation):  # made on the local ledger while Redis was down
            if self._fallback is not None:
                self._fallback.settle(reservation, actual_usd)
            reservation.open = False
            coord.journal.spent += cost
            coord.journal.unsynced += cost
            return
        reservation.open = False
        # a lease this process does not hold (a batch item another process reserved) settles in the epoch
        # this process has joined
        _, epoch = coord.journal.holds.pop(reservation.lease, (reservation.amount, coord.epoch))
        coord.journal.until.pop(reservation.lease, None)
        coord.journal.spent += cost
        coord.held_usd = max(coord.held_usd - reservation.amount, 0.0)
        coord.spent_usd += cost
        coord.defer_settle(reservation.lease, reservation.amount, cost, epoch)

    def release(self, reservation: Reservation) -> None:
        self.settle(reservation, 0.0)

    def record_unreserved(self, cost_usd: float) -> None:
        """Without a limit nothing is reserved (no round trip per call); the spend goes to the ledger with
        the next heartbeat, so members with a limit see it within half a second."""
        if not cost_usd > 0 or math.isinf(cost_usd):
            return
        coord = self.coordination
        coord.start()
        coord.journal.spent += cost_usd
        coord.journal.unsynced += cost_usd
        coord.spent_usd += cost_usd

    async def breakdown(self) -> dict[str, Any]:
        """The scope's ledger now: limit, spent, held, and {owner: {spent, held, lapsed}} (who spent what)."""
        ledger, owners = await self.coordination.report()
        limit = ledger.get("limit")
        return {
            "scope": self.coordination.scope,
            "limit_usd": float(limit) if limit else self.limit_usd,
            "spent_usd": float(ledger.get("spent", 0.0)),
            "held_usd": max(float(ledger.get("held", 0.0)), 0.0),
            "owners": {
                o: {k: max(v, 0.0) if k == "held" else v for k, v in f.items()} for o, f in owners.items()
            },
        }

    @property
    def _shared_by(self) -> str:  # type: ignore[override]
        return f" shared in scope {self.coordination.scope!r} (all members' spend and holds)"

    def __repr__(self) -> str:
        limit = "none" if self.limit_usd is None else f"${self.limit_usd:.2f}"
        return (
            f"SharedBudget(scope={self.coordination.scope!r}, limit={limit}, spent=${self.spent_usd:.4f}, "
            f"reserved=${self.reserved_usd:.4f}, this process spent=${self.coordination.journal.spent:.4f})"
        )
