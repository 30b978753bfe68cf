"""The coordination store: one Redis connection per (URL, scope), its scripts, its heartbeat and journal.

`Coordination` is what an orchestrator gets for `coordination="redis://..."`: it validates the URL and the
scope at construction (a one-line `ConfigError`), connects lazily on the running loop, gives every Redis call
a short deadline, sends each call's decisions in one round trip (`step`: the settles and rate give-backs
deferred since the last trip ride along, or go within `defer_s` in one trip of their own), and keeps this
client's *journal*: what this owner has spent and the holds it has open in
the scope. The journal is what rebuilds a lost ledger (see `scripts`): a heartbeat every `heartbeat_s` renews
the owner's leases and notices a vanished or replaced epoch, and then adds the journal to the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import sys
import time
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._config import mask_url
from .._exceptions import ConfigError
from . import scripts

__all__ = [
    "DEFAULT_DEFER_S",
    "DEFAULT_HEARTBEAT_S",
    "DEFAULT_LEASE_S",
    "DEFAULT_REBUILD_WINDOW_S",
    "DEFAULT_SCOPE",
    "DEFAULT_TIMEOUT_S",
    "FAILURE_POLICIES",
    "Coordination",
    "CoordinationDown",
    "Journal",
    "Step",
    "check_coordination",
    "check_scope",
]

log = logging.getLogger("claude_force_nb")

DEFAULT_SCOPE = "default"
DEFAULT_LEASE_S = 10.0
"""How long a reservation outlives its owner's last renewal: a killed process's holds are settled (as spent
at their worst case) within this time."""
DEFAULT_HEARTBEAT_S = 0.5
"""How often a client renews its leases and checks the ledger's epoch."""
DEFAULT_REBUILD_WINDOW_S = 1.5
"""How long a new ledger refuses reservations, so every live client's heartbeat adds its journal first."""
DEFAULT_DEFER_S = 0.005
"""How long a settle or a rate give-back may wait to ride with the next call's round trip before it goes in
a trip of its own (with everything else deferred meanwhile). Until it lands the ledger holds the worst case:
it can over-count for that moment, never under-count."""
DEFAULT_TIMEOUT_S = 1.0
"""The deadline of each Redis call (a healthy loopback call takes well under a millisecond; the margin
is for a loaded machine and a first connection)."""
FAILURE_POLICIES = ("open", "closed")
_SCOPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_OWNER = re.compile(r"[^|{}\s][^|{}]{0,99}")


_LIMIT_INDEX = {"requests": 1, "input-tokens": 2, "output-tokens": 3}  # the rate keys' places in KEYS


class CoordinationDown(Exception):
    """A Redis call failed or ran past its deadline."""


@dataclass(slots=True)
class _Settle:
    lease: str
    amount: float  # what the lease holds
    cost: float  # what the call cost
    epoch: str  # the ledger epoch the lease lives in


@dataclass(slots=True)
class Step:
    """The answer to one round trip: the reservation's status ('ok' when none was asked) and `seconds`: the
    wait the rate booking asks ('ok'), or what is left of a rebuild window ('rebuilding')."""

    status: str
    seconds: float = 0.0


def check_coordination(url: str, scope: str, failure: str | None = None) -> None:
    """Raise ConfigError (one line) for a URL, scope or failure policy that cannot work."""
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            f"coordination = {url!r}: must be a redis:// (or rediss://, unix://) URL, e.g. redis://host:6379/0"
        )
    try:
        from redis.connection import parse_url

        parse_url(url)  # type: ignore[no-untyped-call]
    except ImportError:
        raise ConfigError(
            "coordination needs the redis package: pip install 'claude-force-nb[redis]'"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"coordination = {mask_url(url)!r}: {exc}") from None
    check_scope("scope", scope)
    if failure is not None and failure not in FAILURE_POLICIES:
        raise ConfigError(f"coordination_failure = {failure!r}: must be 'open' or 'closed' (or None)")


def check_scope(name: str, scope: object) -> str:
    """`scope` if it is a usable scope name (it becomes part of Redis keys and their hash tag)."""
    if not isinstance(scope, str) or not _SCOPE.fullmatch(scope):
        raise ConfigError(
            f"{name} = {scope!r}: 1-64 letters, digits, '_', '.', ':' or '-', starting with a letter or digit"
        )
    return scope


def default_owner() -> str:
    """How this process appears in the per-owner breakdown: host and process id."""
    return f"{socket.gethostname().split('.')[0] or 'host'}:{os.getpid()}"


@dataclass
class Journal:
    """What this client knows it spent and holds in the scope: enough to rebuild a lost ledger.

    `spent` is every dollar this owner has put in the ledger (or would have, while it was unreachable);
    `holds` maps open lease ids to (amount, the epoch the lease lives in); `until` gives the wall-clock expiry
    of the holds whose lease is fixed instead of renewed by the heartbeat (a Message Batch's items: the
    batch runs on the API whether or not this process lives); `unsynced` is spend made against a local
    ledger while Redis was down (coordination_failure='open'), added to the shared one when it is back.
    """

    spent: float = 0.0
    holds: dict[str, tuple[float, str]] = field(default_factory=dict)
    until: dict[str, float] = field(default_factory=dict)
    unsynced: float = 0.0

    def lease_ms(self, lease: str, renewed_s: float) -> int:
        """How long the ledger should hold `lease` from now: a renewed lease's length, or what is left of a
        fixed one."""
        until = self.until.get(lease)
        if until is None:
            return int(renewed_s * 1000)
        return max(int((until - time.time()) * 1000), 1)


class Coordination:
    """A Redis URL and a scope: the orchestrators sharing both share one budget and one set of rate limits.

    `failure` says what happens when Redis cannot be reached: None (the default) refuses budgeted calls
    (money fails closed) and paces on the local limiter (pacing fails open, with one warning); 'open' and
    'closed' apply one policy to both.
    """

    def __init__(
        self,
        url: str,
        *,
        scope: str = DEFAULT_SCOPE,
        failure: str | None = None,
        owner: str | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
        rebuild_window_s: float = DEFAULT_REBUILD_WINDOW_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        defer_s: float = DEFAULT_DEFER_S,
    ) -> None:
        check_coordination(url, scope, failure)
        owner = default_owner() if owner is None else owner
        if not _OWNER.fullmatch(owner):
            raise ConfigError(f"owner = {owner!r}: 1-100 characters, no '|', braces or surrounding spaces")
        if not 0 < heartbeat_s < lease_s:
            raise ConfigError(f"heartbeat_s ({heartbeat_s}) must be positive and below lease_s ({lease_s})")
        self.url = url
        self.scope = scope
        self.failure = failure
        self.owner = owner
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self.rebuild_window_s = rebuild_window_s
        self.timeout_s = timeout_s
        self.defer_s = defer_s
        self.epoch = ""  # the ledger epoch this client has joined ('' = none yet)
        self.journal = Journal()
        self.spent_usd = 0.0  # the shared figures, as of the last reply
        self.held_usd = 0.0
        prefix = f"cfnb:{{{scope}}}:"  # the hash tag: every key of a scope in one slot
        self.budget_keys = [prefix + name for name in ("ledger", "holds", "leases", "owners")]
        self.pause_key = prefix + "pause"
        self.learned_key = prefix + "learned"
        self.limit_keys = {kind: f"{prefix}rate:{kind}" for kind in _LIMIT_INDEX}
        self.step_keys = [*self.budget_keys, self.pause_key, *self.limit_keys.values()]
        self._settles: list[_Settle] = []  # deferred: they ride with the next round trip
        self._adjusts: list[Any] = []  # deferred rate corrections, as STEP's arguments
        self._push_at: asyncio.TimerHandle | None = None
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._join_lock: asyncio.Lock | None = None
        self._warned: set[str] = set()
        self._changed: asyncio.Event | None = None
        self.closed = False

    @property
    def where(self) -> str:
        """The URL (password masked) and scope, for messages."""
        return f"{mask_url(self.url)} (scope {self.scope!r})"

    def __repr__(self) -> str:
        return f"Coordination({self.where}, owner={self.owner!r})"

    # -- connection ----------------------------------------------------------------------------------------

    def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return
        import redis.asyncio

        self._loop = loop
        self._client = redis.asyncio.Redis.from_url(
            self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s
        )
        self._scripts = {
            name: self._client.register_script(getattr(scripts, name))
            for name in ("STEP", "SPEND", "JOIN", "REPORT", "PAUSE", "LEARNED")
        }
        self._changed = asyncio.Event()
        self._join_lock = asyncio.Lock()
        self._heartbeat = None
        self._push_at = None

    async def run(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one script under the deadline; CoordinationDown if Redis fails or is late."""
        if self.closed:
            raise CoordinationDown("the coordination store is closed")
        import redis

        self._connect()
        for attempt in (1, 2):
            try:
                if sys.version_info >= (3, 11):  # the deadline in this task: no wrapper task per call
                    async with asyncio.timeout(self.timeout_s):
                        return await self._scripts[script](keys=keys, args=args)
                return await asyncio.wait_for(self._scripts[script](keys=keys, args=args), self.timeout_s)
            except (redis.ConnectionError, ConnectionError) as exc:
                # A pooled connection to a server that restarted fails once; a fresh one may work.
                if attempt == 2:
                    raise CoordinationDown(f"{type(exc).__name__}: {exc}") from exc
            except (asyncio.TimeoutError, OSError, redis.RedisError) as exc:
                raise CoordinationDown(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        raise AssertionError("unreachable")

    def warn_once(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning(message)

    def recovered(self, what: str) -> None:
        self._warned.discard(what)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a push (a settle, a give-back) in the background, kept until `aclose` waits for it."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def wake(self) -> None:
        """Tell local waiters the shared figures may have changed (a settle landed)."""
        if self._changed is not None:
            self._changed.set()

    async def changed_or(self, seconds: float) -> None:
        """Wait until `wake()` or `seconds` pass, whichever comes first."""
        self._connect()
        event = self._changed
        assert event is not None
        event.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

    # -- one round trip per call ---------------------------------------------------------------------------

    def defer_settle(self, lease: str, amount: float, cost: float, epoch: str) -> None:
        """Settle a lease at `cost` with the next round trip (or within `defer_s`)."""
        self._settles.append(_Settle(lease, amount, cost, epoch))
        self._defer()

    def defer_adjust(self, kind: str, units: float, per_minute: float, burst_s: float) -> None:
        """Charge (`units` > 0) or give back (< 0) a limit's units with the next round trip."""
        self._adjusts += [_LIMIT_INDEX[kind], repr(units), repr(per_minute), int(burst_s * 1000)]
        self._defer()

    def _defer(self) -> None:
        if self._push_at is None and not self.closed:
            self._connect()
            assert self._loop is not None
            self._push_at = self._loop.call_later(self.defer_s, self._push_due)

    def _push_due(self) -> None:
        self._push_at = None
        if self._settles or self._adjusts:
            self.spawn(self._push())

    async def _push(self) -> None:
        """A round trip of its own for what was deferred (no call came along to carry it)."""
        with contextlib.suppress(CoordinationDown):
            if (await self.step()).status == "epoch":
                await self.rejoin()

    async def rejoin(self) -> None:
        """`join`, for callers that go on without Redis: after a step found the ledger's epoch replaced (the
        journal, which has the settled costs, goes to the new one), or before settling holds another process
        left. A failure waits for the heartbeat's next try."""
        with contextlib.suppress(CoordinationDown):
            await self.join()

    async def step(
        self,
        *,
        reserve: tuple[str, float, float | None] | None = None,
        book: Sequence[tuple[str, float, float]] | None = None,
        burst_s: float = 0.0,
        lease_s: float | None = None,
    ) -> Step:
        """One round trip: the deferred settles and corrections, then `reserve` (lease id, amount, limit),
        then, if that was granted (or none was asked), `book` (kind, cost, per minute) on the rate limits.
        The reservation's lease lasts `lease_s` (default: the renewed lease's length).

        A failure raises CoordinationDown; the settles it carried are then counted in the journal as their
        leases will be in the ledger, at their worst case (see `_lost`).
        """
        self._connect()
        settles, self._settles = self._settles, []
        adjusts, self._adjusts = self._adjusts, []
        if self._push_at is not None:
            self._push_at.cancel()
            self._push_at = None
        # A settle from an older epoch is in the journal the join carried to the current one: drop it.
        settles = [s for s in settles if s.epoch == self.epoch]
        lease_ms = int((self.lease_s if lease_s is None else lease_s) * 1000)
        args: list[Any] = [self.epoch, self.owner, lease_ms, int(burst_s * 1000)]
        args.append(len(settles))
        for s in settles:
            args += [s.lease, repr(s.cost)]
        args += [len(adjusts) // 4, *adjusts]
        if reserve is None:
            args += ["", "0", ""]
        else:
            lease, amount, limit = reserve
            args += [lease, repr(amount), "" if limit is None else repr(limit)]
        if book is None:
            args.append(-1)
        else:
            args.append(len(book))
            for kind, cost, per_minute in book:
                args += [_LIMIT_INDEX[kind], repr(cost), repr(per_minute)]
        try:
            reply = _text(await self.run("STEP", self.step_keys, ["|".join(map(str, args))]))
        except CoordinationDown as exc:
            self._lost(settles, exc)
            raise
        status, spent, held, ms, gone = reply.split("|")
        if status != "epoch":  # (on 'epoch' nothing of the budget was applied, and the caller joins)
            self.spent_usd, self.held_usd = float(spent), max(float(held), 0.0)
            if gone:
                lapsed = set(gone.split(","))
                for s in settles:
                    if s.lease in lapsed:  # its lease lapsed first: the ledger counted the whole worst case
                        self.journal.spent += s.amount - s.cost
        if settles:
            self.wake()
        return Step(status, float(ms) / 1000)

    def _lost(self, settles: list[_Settle], exc: CoordinationDown) -> None:
        """Settles that did not reach the ledger: their leases will lapse and be counted as spent at their
        worst case, so the journal counts the same."""
        if not settles:
            return
        for s in settles:
            self.journal.spent += s.amount - s.cost
        self.warn_once(
            "settle",
            f"settles could not reach the shared ledger at {self.where} ({exc}); their holds will be "
            "counted as spent at their worst case when their leases lapse",
        )
        self.wake()

    # -- the ledger's epoch and the heartbeat ---------------------------------------------------------------

    def start(self) -> None:
        """Start the heartbeat on the running loop (idempotent)."""
        self._connect()
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.ensure_future(self._beat())

    async def join(self) -> str:
        """Renew this owner's leases, or (no epoch, or another one) add the journal to the ledger's epoch.

        Returns the ledger's status ('same' or 'joined'). Raises CoordinationDown when Redis cannot answer.
        """
        self._connect()
        assert self._join_lock is not None
        async with self._join_lock:
            journal = self.journal
            holds = [(lease, amount) for lease, (amount, _) in journal.holds.items()]
            args: list[Any] = [
                self.epoch,
                uuid.uuid4().hex,
                self.owner,
                int(self.lease_s * 1000),
                int(self.rebuild_window_s * 1000),
                repr(journal.spent),
            ]
            for lease, amount in holds:
                args += [lease, repr(amount), journal.lease_ms(lease, self.lease_s)]
            reply = await self.run("JOIN", self.budget_keys, args)
            status, epoch = _text(reply[0]), _text(reply[1])
            self.spent_usd, self.held_usd = float(reply[2]), max(float(reply[3]), 0.0)
            if status == "joined":
                if self.epoch:
                    log.warning(
                        "the shared budget's ledger at %s was lost (Redis restarted without persistence?); "
                        "rebuilt from this client's journal: spent $%.4f, %d holds",
                        self.where,
                        journal.spent,
                        len(holds),
                    )
                self.epoch = epoch
                journal.unsynced = 0.0
                for lease, amount in holds:
                    journal.holds[lease] = (amount, epoch)
            elif journal.unsynced > 0:
                unsynced, journal.unsynced = journal.unsynced, 0.0
                try:
                    await self.run("SPEND", self.budget_keys, [self.epoch, self.owner, repr(unsynced)])
                except CoordinationDown:
                    journal.unsynced += unsynced
                    raise
            self.wake()
            return status

    async def _beat(self) -> None:
        while not self.closed:
            with contextlib.suppress(CoordinationDown):
                await self.join()
            await asyncio.sleep(self.heartbeat_s)

    async def report(self) -> tuple[dict[str, str], dict[str, dict[str, float]]]:
        """The ledger's fields and {owner: {spent, held, lapsed}} (who spent what), lapsed leases reaped."""
        await self.flush()  # this client's own settles first
        ledger_raw, owners_raw = await self.run("REPORT", self.budget_keys, [])
        ledger = {_text(k): _text(v) for k, v in zip(ledger_raw[::2], ledger_raw[1::2], strict=True)}
        owners: dict[str, dict[str, float]] = {}
        for key, value in zip(owners_raw[::2], owners_raw[1::2], strict=True):
            owner, _, what = _text(key).rpartition("|")
            owners.setdefault(owner, {"spent": 0.0, "held": 0.0, "lapsed": 0.0})[what] = float(value)
        return ledger, owners

    async def flush(self) -> None:
        """Push what is deferred now, and wait (briefly) for this client's background pushes to land."""
        if (self._settles or self._adjusts) and not self.closed:
            await self._push()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=max(self.timeout_s * 4, 1.0))

    async def aclose(self) -> None:
        """Let pushes land (briefly), add spend not yet in the ledger, stop the heartbeat, close."""
        await self.flush()
        if self.journal.unsynced > 0 and not self.closed:
            with contextlib.suppress(CoordinationDown):
                await self.join()
        self.closed = True
        if self._push_at is not None:
            self._push_at.cancel()
            self._push_at = None
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(BaseException):
                await self._heartbeat
            self._heartbeat = None
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            with contextlib.suppress(Exception):
                await client.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
