"""Coordination through Redis: one budget and one set of rate limits for many orchestrators.

Orchestrators given the same `coordination` URL and `scope` share a budget ledger (`SharedBudget`: reserve,
settle and release as atomic Lua scripts, reservations as leases) and smooth rate limits with a pause
(`SharedRateLimiter`: GCRA in Lua on the server's clock). `Coordination` is the connection, the heartbeat
and this client's journal. See `scripts` for the key layout and `docs/architecture.md` for the guarantees.
"""

from __future__ import annotations

from .budget import SharedBudget, SharedReservation
from .limits import SharedRateLimiter
from .store import (
    DEFAULT_SCOPE,
    FAILURE_POLICIES,
    Coordination,
    CoordinationDown,
    check_coordination,
)

__all__ = [
    "DEFAULT_SCOPE",
    "FAILURE_POLICIES",
    "Coordination",
    "CoordinationDown",
    "SharedBudget",
    "SharedRateLimiter",
    "SharedReservation",
    "check_coordination",
]
