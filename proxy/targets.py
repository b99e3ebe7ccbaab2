"""Targets and target sets.

A Target is one upstream address with its keep-alive pool and the requests in flight to it.
A TargetSet is what one deploy installs: the targets, their health, and round-robin selection.
Redeploying the same address creates a new Target object; the old one drains independently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

from proxy import defaults
from proxy.clock import LOOP_CLOCK, Clock
from proxy.health import HealthChecker, Probe, health_check_url, probe, within
from proxy.lifecycle import TargetEvent, TargetState, next_target_state
from proxy.log import JsonLog, quote
from proxy.options import HealthCheckConfig
from proxy.schema import InvalidTarget as InvalidAddress
from proxy.schema import check_target

if TYPE_CHECKING:
    from proxy.http.upstream import UpstreamConnection

# Read once per request when a connection goes back to its pool: an enum member read through its
# class is a generic attribute look-up (~900 instructions compiled), a Final constant a C static.
_DRAINING: Final = TargetState.DRAINING
_GONE: Final = TargetState.GONE


class InvalidTarget(ValueError):
    pass


class Draining(Protocol):
    """What a target needs from a request in flight to cancel it during a drain."""

    def cancel_for_drain(self) -> None: ...

    @property
    def is_tunnel(self) -> bool: ...


def split_address(address: str) -> tuple[str, int]:
    try:
        check_target(address)
    except InvalidAddress as exc:
        raise InvalidTarget(str(exc)) from None
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, 80
    return host, int(port)


class Target:
    """One upstream address: its health state, idle connection pool and in-flight requests."""

    __slots__ = (
        "_drained",
        "_on_change",
        "address",
        "address_json",
        "connect_host",
        "header_value",
        "host",
        "idle",
        "inflight",
        "max_idle",
        "port",
        "state",
    )

    def __init__(self, *, address: str, max_idle: int = defaults.UPSTREAM_MAX_IDLE) -> None:
        self.host, self.port = split_address(address)
        # What new connections dial: the host name until one connection succeeded, then the
        # address it resolved to. A container's address does not change while it runs, and a name
        # lookup per new connection would make every burst of connections depend on the resolver.
        self.connect_host = self.host
        self.address = address
        self.address_json = quote(address)
        self.header_value = address.encode()
        self.state = TargetState.ADDING
        self.idle: list[UpstreamConnection] = []
        self.max_idle = max_idle
        self.inflight: set[Draining] = set()
        self._on_change: Callable[[Target, TargetState], None] | None = None
        self._drained: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"Target({self.address} {self.state.value})"

    # --- lifecycle ---------------------------------------------------------------------------
    def apply(self, event: TargetEvent) -> TargetState:
        was = self.state
        self.state = next_target_state(was, event)
        if self.state is not was and self._on_change is not None:
            self._on_change(self, was)
        return self.state

    def remember_address(self, peer: tuple[str, int] | None) -> None:
        if peer:
            self.connect_host = peer[0]

    def forget_address(self) -> None:
        self.connect_host = self.host

    # --- pool ---------------------------------------------------------------------------------
    def take_idle(self) -> UpstreamConnection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.usable:
                return conn
        return None

    def give_back(self, conn: UpstreamConnection) -> None:
        if self.state is _DRAINING or self.state is _GONE or len(self.idle) >= self.max_idle:
            conn.close()
        else:
            self.idle.append(conn)

    def forget_idle(self, conn: UpstreamConnection) -> None:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    # --- in-flight tracking and drain ---------------------------------------------------------
    def request_done(self, request: Draining) -> None:
        inflight = self.inflight
        inflight.discard(request)
        if not inflight and self._drained is not None:
            self._drained.set()

    async def drain(self, timeout: float, clock: Clock = LOOP_CLOCK) -> int:
        """No new requests; tunnels are cut now; others may finish until ``timeout``, then are
        cancelled. Returns how many were cancelled at the deadline."""
        self.apply(TargetEvent.DRAIN)
        cancelled = await self.settle(timeout, clock)
        for conn in self.idle:
            conn.close()
        self.idle.clear()
        self.apply(TargetEvent.DRAINED)
        return cancelled

    async def settle(self, timeout: float, clock: Clock = LOOP_CLOCK) -> int:
        """Cut tunnels now; let other requests in flight finish until ``timeout``, then cancel them.

        The target stays as it is: a deploy drains replaced targets with this, a pause or stop
        settles the active ones. Returns how many requests were cancelled at the deadline.
        """
        for request in list(self.inflight):
            if request.is_tunnel:
                request.cancel_for_drain()
        if not self.inflight:
            return 0
        self._drained = asyncio.Event()
        try:
            await within(clock, timeout, self._drained.wait())
        except TimeoutError:
            late = list(self.inflight)
            for request in late:
                request.cancel_for_drain()
            return len(late)
        finally:
            self._drained = None
        return 0

    def close_idle(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


class TargetSet:
    """The targets one deploy installed: writers (``--target``) and readers (``--read-target``),
    round-robin over the healthy ones of each."""

    def __init__(
        self,
        *,
        addresses: tuple[str, ...],
        readers: tuple[str, ...] = (),
        health: HealthCheckConfig,
        log: JsonLog,
        service: str,
        clock: Clock = LOOP_CLOCK,
        probe: Probe = probe,
        on_change: Callable[[], None] | None = None,
        log_health: bool = True,
        ident: int = 0,
    ) -> None:
        """``on_change`` is called after any target's state changed; ``log_health`` off for a
        worker's mirror of a set whose health the control process checks and logs."""
        if not addresses:
            raise InvalidTarget("at least one target is required")
        self.writers = [Target(address=a) for a in addresses]
        self.readers = [Target(address=a) for a in readers]
        self.targets = self.writers + self.readers
        self.has_readers = bool(self.readers)
        self.healthy: list[Target] = []  # healthy writers
        self.healthy_readers: list[Target] = []
        self._next_reader = 0
        self.ident = ident  # names this set in the control process's messages to workers
        self._on_change = on_change
        self._log_health = log_health
        self._health = health
        self._log = log
        self.service = service
        self._clock = clock
        self._probe = probe
        self._next = 0
        self._checkers: list[HealthChecker] = []
        self._all_healthy = asyncio.Event()
        for target in self.targets:
            target._on_change = self._target_changed

    @property
    def addresses(self) -> list[str]:
        """The writers' addresses."""
        return [t.address for t in self.writers]

    @property
    def reader_addresses(self) -> list[str]:
        return [t.address for t in self.readers]

    def pick(self) -> Target | None:
        healthy = self.healthy
        n = len(healthy)
        if n == 1:
            return healthy[0]
        if n == 0:
            return None
        i = self._next + 1
        if i >= n:
            i = 0
        self._next = i
        return healthy[i]

    def pick_reader(self) -> Target | None:
        """A healthy reader, round robin; a healthy writer when no reader is healthy."""
        readers = self.healthy_readers
        n = len(readers)
        if n == 0:
            return self.pick()
        i = self._next_reader + 1
        if i >= n:
            i = 0
        self._next_reader = i
        return readers[i]

    # --- health ------------------------------------------------------------------------------
    def start_health_checks(self, *, slots: asyncio.Semaphore, stagger: bool = False) -> None:
        """Check every target; a set of one stops checking once its target is healthy."""
        single = len(self.targets) == 1
        for target in self.targets:
            url = health_check_url(host=target.host, port=target.port, config=self._health)
            checker = HealthChecker(
                log=self._log,
                url=url,
                host_header=self._health.host or target.address,
                config=self._health,
                report=self._reporter(target),
                stop_when_healthy=single,
                slots=slots,
                stagger=stagger,
                clock=self._clock,
                probe=self._probe,
            )
            self._checkers.append(checker)
            checker.start()

    def stop_health_checks(self) -> None:
        for checker in self._checkers:
            checker.stop()
        self._checkers.clear()

    def mark_all_healthy(self) -> None:
        """Restored state and --force: trust the targets without waiting for a check."""
        for target in self.targets:
            if target.state is TargetState.ADDING or target.state is TargetState.UNHEALTHY:
                target.apply(TargetEvent.CHECK_PASSED)

    async def wait_healthy(self, timeout: float) -> bool:
        if self._all_healthy.is_set():
            return True
        try:
            await within(self._clock, timeout, self._all_healthy.wait())
        except TimeoutError:
            return False
        return True

    @property
    def inflight(self) -> int:
        return sum(len(t.inflight) for t in self.targets)

    async def drain(self, timeout: float) -> int:
        """Drain every target (see Target.drain); how many requests were cancelled at the deadline."""
        self.stop_health_checks()
        return sum(await asyncio.gather(*(t.drain(timeout, self._clock) for t in self.targets)))

    async def settle(self, timeout: float) -> int:
        return sum(await asyncio.gather(*(t.settle(timeout, self._clock) for t in self.targets)))

    def mirror(self, states: tuple[TargetState, ...]) -> None:
        """Take the targets' health as the control process checked it (one state per target)."""
        changed = False
        for target, state in zip(self.targets, states, strict=True):
            if target.state is not state and state in (TargetState.HEALTHY, TargetState.UNHEALTHY):
                target.state = state
                changed = True
        if changed:
            self._update_healthy()

    def close_idle(self) -> None:
        for target in self.targets:
            target.close_idle()

    def _reporter(self, target: Target) -> Callable[[bool], None]:
        def report(passed: bool) -> None:
            target.apply(TargetEvent.CHECK_PASSED if passed else TargetEvent.CHECK_FAILED)

        return report

    def _update_healthy(self) -> None:
        self.healthy = [t for t in self.writers if t.state is TargetState.HEALTHY]
        self.healthy_readers = [t for t in self.readers if t.state is TargetState.HEALTHY]

    def _target_changed(self, target: Target, was: TargetState) -> None:
        self._update_healthy()
        if self._log_health and (
            target.state is TargetState.HEALTHY or target.state is TargetState.UNHEALTHY
        ):
            self._log.info(
                "Target health updated",
                target=target.address,
                service=self.service,
                state=target.state.value,
                was=was.value,
            )
        if all(t.state is TargetState.HEALTHY for t in self.targets):
            self._all_healthy.set()
        if self._on_change is not None:
            self._on_change()
