"""The worker processes: started, fed routing snapshots, asked to drain, replaced when they die, stopped.

One stream per worker (a Unix socket pair; the worker's end is inherited with the listening
sockets). What the Router publishes goes to every worker as a versioned snapshot — only what changed,
to a worker that has the version it changes, else the whole state; a command
waits (``applied``) until every live worker acknowledged its version. A worker that does not
acknowledge within WORKER_ACK_TIMEOUT is killed and replaced, so a command never waits forever and
no worker serves old routes for long. A new worker (at start or as a replacement) gets the current
snapshot first, and accepts only once it applied it.

The control process's certificate store mirrors itself here (``StoreMirror``): each service's TLS
settings, ACME certificates and TLS-ALPN-01 challenge certificates go to every worker as messages,
and are kept to give a worker started later the whole TLS state before its first snapshot. A
worker's ``Obtain`` (a handshake needs an ACME certificate) is answered once the control process's
issuer has it: the certificate reaches every worker first, then the ``Obtained`` reply.

A worker that exits is logged ("Worker exited", with its exit code or signal) and started again at
once — or after WORKER_RESTART_DELAY if it lived less than that, so a worker that cannot start does
not spin. The listening sockets stay open here the whole time, so its replacement accepts the
connections that queued meanwhile.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import proxy
from proxy import defaults, ipc
from proxy.lifecycle import IllegalTransition
from proxy.log import JsonLog
from proxy.metrics import RequestMetrics
from proxy.worker.process import WorkerConfig

if TYPE_CHECKING:
    from proxy.controller.sockets import Listeners
    from proxy.service import Service
    from proxy.targets import TargetSet
    from proxy.tls import ServiceTls

# the fleet's command line for slot ``index``: (index, channel_fd, HTTP fds, HTTPS fds) → its config
WorkerConfigFactory = Callable[[int, int, tuple[int, ...], tuple[int, ...]], WorkerConfig]
# (service, host) → "" once the host's certificate is in the store, else why not
ObtainHandler = Callable[[str, str], Awaitable[str]]

PACKAGE_ROOT = str(Path(proxy.__file__).resolve().parents[1])


class StartFailed(OSError):
    """A worker exited before it served; the message says which and how."""


class SlotState(Enum):
    STARTING = "starting"  # spawned, has not applied its first snapshot yet
    READY = "ready"  # accepting, following snapshots
    STOPPING = "stopping"  # asked to shut down
    EXITED = "exited"


class SlotEvent(Enum):
    APPLIED = "applied"
    STOP = "stop"
    EXIT = "exit"


_S, _E = SlotState, SlotEvent
SLOT_TRANSITIONS: dict[tuple[SlotState, SlotEvent], SlotState] = {
    (_S.STARTING, _E.APPLIED): _S.READY,
    (_S.READY, _E.APPLIED): _S.READY,
    (_S.STOPPING, _E.APPLIED): _S.STOPPING,
    (_S.STARTING, _E.STOP): _S.STOPPING,
    (_S.READY, _E.STOP): _S.STOPPING,
    (_S.STOPPING, _E.STOP): _S.STOPPING,
    (_S.STARTING, _E.EXIT): _S.EXITED,
    (_S.READY, _E.EXIT): _S.EXITED,
    (_S.STOPPING, _E.EXIT): _S.EXITED,
}


def next_slot_state(state: SlotState, event: SlotEvent) -> SlotState:
    try:
        return SLOT_TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(f"worker cannot go from {state.value} on {event.value}") from None


def describe_exit(code: int) -> dict[str, object]:
    if code < 0:
        try:
            return {"signal": signal.Signals(-code).name}
        except ValueError:
            return {"signal": -code}
    return {"code": code}


class WorkerSlot:
    """One worker position: its current process, stream and acknowledged version."""

    def __init__(self, *, index: int) -> None:
        self.index = index
        self.state = SlotState.EXITED
        self.process: asyncio.subprocess.Process | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.applied = 0
        self.metrics: RequestMetrics | None = None  # the last table it sent
        self.held: dict[str, int] = {}  # its held requests per service, as last sent
        self.idle: dict[str, int] = {}  # its idle upstream connections per service, as last sent
        self.sent = 0  # the snapshot version last sent to it (the stream keeps them in order)
        self.started_at = 0.0
        self.exited = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def apply(self, event: SlotEvent) -> None:
        self.state = next_slot_state(self.state, event)

    def send(self, frame: bytes) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(frame)

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            try:
                self.process.kill()
            except ProcessLookupError:
                pass


class WorkerFleet:
    """Implements the Router's DataPlane over N worker processes."""

    def __init__(
        self,
        *,
        count: int,
        log: JsonLog,
        worker_config: WorkerConfigFactory,
        obtain: ObtainHandler | None = None,
    ) -> None:
        """``worker_config(index, channel_fd, listen_fds, tls_fds)`` is the command line of slot
        ``index``; ``obtain`` answers the workers' ACME requests (None: every one is refused)."""
        self._log = log
        self._worker_config = worker_config
        self._obtain = obtain
        self.slots = [WorkerSlot(index=i) for i in range(count)]
        self._listeners: Listeners | None = None
        self._tls_listeners: Listeners | None = None
        # the TLS state a new worker gets before its first snapshot, as frames
        self._tls_services: dict[str, bytes] = {}
        self._certificates: dict[tuple[str, str], bytes] = {}
        self._alpn_challenges: dict[str, bytes] = {}
        self._version = 0
        # the whole routing state, kept up to date from the changes published (for new workers)
        self._states: dict[str, ipc.ServiceState] = {}
        self._entries: dict[str, ipc.Entry] = {}
        self._challenges = ipc.Challenges(tokens={})
        self._changed = asyncio.Event()  # an acknowledgement arrived or a worker exited
        self._requests = itertools.count(1)
        self._pending: dict[int, tuple[WorkerSlot, asyncio.Future[ipc.ToControl | None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._retired = RequestMetrics()  # the counters of workers that exited (their last tables)

    @property
    def version(self) -> int:
        return self._version

    async def refresh_metrics(self) -> None:
        """Ask every worker for its request table now (a scrape); those that answer in time count."""
        replies = await self._ask(
            lambda request: ipc.CollectMetrics(request=request), defaults.METRICS_REFRESH_TIMEOUT, grace=0.0
        )
        for slot, reply in replies:
            if isinstance(reply, ipc.MetricsTable):
                self._take_table(slot, reply)

    @staticmethod
    def _take_table(slot: WorkerSlot, message: ipc.MetricsTable) -> None:
        table = RequestMetrics()
        try:
            table.merge(message.table)
            held, idle = message.table.get("held", {}), message.table.get("idle", {})
            slot.held = {str(k): int(v) for k, v in held.items()}
            slot.idle = {str(k): int(v) for k, v in idle.items()}
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            return  # a malformed table counts as none (OverflowError: int() of an infinite number)
        slot.metrics = table

    def worker_gauges(self) -> tuple[dict[str, int], dict[str, int]]:
        """Held requests and idle upstream connections per service, summed over the workers."""
        held: dict[str, int] = {}
        idle: dict[str, int] = {}
        for slot in self.slots:
            if slot.state is SlotState.EXITED:
                continue
            for name, n in slot.held.items():
                held[name] = held.get(name, 0) + n
            for name, n in slot.idle.items():
                idle[name] = idle.get(name, 0) + n
        return held, idle

    def metrics_tables(self) -> list[RequestMetrics]:
        """The request table each live worker last sent, and the counters of those that exited
        (so the sums never go backwards when a worker is replaced)."""
        return [self._retired, *(s.metrics for s in self.slots if s.metrics is not None)]

    def _retire_metrics(self, slot: WorkerSlot) -> None:
        """A worker exited: its counters stay in the sums; its gauges (requests in flight, held
        requests, idle connections) went with it."""
        if slot.metrics is not None:
            table = slot.metrics.snapshot()
            table["in_flight"] = {}
            self._retired.merge(table)
        slot.metrics = None
        slot.held, slot.idle = {}, {}

    def pids(self) -> list[int]:
        return [s.pid for s in self.slots if s.pid is not None and s.state is not SlotState.EXITED]

    # ------------------------------------------------------------------ DataPlane
    def publish(self, snapshot: ipc.Snapshot) -> None:
        """Serve ``snapshot`` (whole, or a change to the version published before) on every worker
        and on every worker started later. A worker that was sent the change's base gets the change
        (encoded once for all of them); any other gets the whole state."""
        by_name = {state.name: state for state in snapshot.services}
        if snapshot.base:
            if snapshot.base != self._version:
                raise ValueError(f"a change to version {snapshot.base} published after {self._version}")
            for name in snapshot.removed:
                self._states.pop(name, None)
                self._entries.pop(name, None)
        else:
            self._states, self._entries = {}, {}
        entries = self._entries
        for state in snapshot.services:
            entry = snapshot.entries.get(state.revision)
            if entry is None:
                entry = entries[state.name]
                if entry.revision != state.revision:
                    raise ValueError(f"service {state.name}: revision {state.revision} was never published")
            entries[state.name] = entry
        self._states.update(by_name)
        self._version = snapshot.version
        frames: dict[bool, bytes] = {}
        for slot in self.slots:
            if slot.writer is not None:
                change = bool(snapshot.base) and slot.sent == snapshot.base
                frame = frames.get(change)
                if frame is None:
                    frame = frames[change] = ipc.encode(snapshot if change else self.whole())
                slot.send(frame)
                slot.sent = snapshot.version

    def whole(self) -> ipc.Snapshot:
        """The current routing state as one whole snapshot (with every entry)."""
        return ipc.Snapshot(
            version=self._version,
            services=tuple(self._states.values()),
            entries={e.revision: e for e in self._entries.values()},
        )

    def set_challenges(self, tokens: dict[str, str]) -> None:
        """The ACME HTTP-01 answers every worker gives (and every worker started later)."""
        self._challenges = ipc.Challenges(tokens=tokens)
        frame = ipc.encode(self._challenges)
        for slot in self.slots:
            slot.send(frame)

    # ------------------------------------------------------------------ StoreMirror
    def service_tls(self, name: str, tls: ServiceTls | None) -> None:
        """A service's TLS settings changed (deploy, remove, restore): every worker before the
        snapshot that follows (the Router publishes after setting them), so ``applied`` covers them."""
        frame = ipc.encode(ipc.TlsService.of(name, tls))
        if tls is None:
            self._tls_services.pop(name, None)
        else:
            self._tls_services[name] = frame
        self._broadcast(frame)

    def certificate(self, *, cache_dir: str, host: str, pem: bytes, not_after: float) -> None:
        frame = ipc.encode(
            ipc.Certificate(cache_dir=cache_dir, host=host, pem=pem.decode("latin-1"), not_after=not_after)
        )
        self._certificates[(cache_dir, host)] = frame
        self._broadcast(frame)

    def alpn_challenge(self, host: str, pem: bytes | None) -> None:
        frame = ipc.encode(ipc.AlpnChallenge(host=host, pem=(pem or b"").decode("latin-1")))
        if pem:
            self._alpn_challenges[host] = frame
        else:
            self._alpn_challenges.pop(host, None)
        self._broadcast(frame)

    def _broadcast(self, frame: bytes) -> None:
        for slot in self.slots:
            slot.send(frame)

    async def synced(self) -> None:
        """Return once every live worker applied what was sent before (within WORKER_ACK_TIMEOUT)."""
        await self._ask(lambda request: ipc.Sync(request=request), 0.0)

    async def _answer_obtain(self, slot: WorkerSlot, message: ipc.Obtain) -> None:
        writer = slot.writer
        if self._obtain is None:
            error = "no ACME issuer"
        else:
            error = await self._obtain(message.service, message.host)
        if slot.writer is writer:  # (a replacement never asked)
            slot.send(ipc.encode(ipc.Obtained(request=message.request, error=error)))

    async def applied(self, version: int) -> None:
        """Return once every live worker serves ``version`` (or a later one); a worker that does
        not acknowledge within WORKER_ACK_TIMEOUT is killed and replaced."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + defaults.WORKER_ACK_TIMEOUT
        while True:
            behind = [s for s in self.slots if s.state is not SlotState.EXITED and s.applied < version]
            if not behind:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                for slot in behind:
                    self._log.error(
                        "Worker did not apply routes in time; replacing it",
                        worker=slot.index,
                        pid=slot.pid,
                        version=version,
                        applied=slot.applied,
                    )
                    slot.kill()
                return
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    async def drain(self, service: str, old: TargetSet, timeout: float) -> None:
        """Every worker drains its copy of ``old`` (a deploy replaced it)."""
        old.stop_health_checks()

        def message(request: int) -> ipc.ToWorker:
            return ipc.Drain(
                request=request,
                service=service,
                target_set=old.ident,
                addresses=tuple(old.addresses),
                timeout=timeout,
            )

        inflight, cancelled = await self._ask_all(message, timeout)
        if inflight:
            self._log.info(
                "Drained targets",
                service=service,
                targets=old.addresses,
                inflight=inflight,
                cancelled=cancelled,
            )

    async def settle(self, service: Service, timeout: float) -> None:
        """Every worker lets the requests in flight to ``service`` finish (pause, stop)."""
        await self._ask_all(
            lambda request: ipc.Settle(request=request, service=service.name, timeout=timeout), timeout
        )

    async def _ask_all(self, message: Callable[[int], ipc.ToWorker], timeout: float) -> tuple[int, int]:
        drained = [r for _, r in await self._ask(message, timeout) if isinstance(r, ipc.Drained)]
        return sum(r.inflight for r in drained), sum(r.cancelled for r in drained)

    async def _ask(
        self,
        message: Callable[[int], ipc.ToWorker],
        timeout: float,
        *,
        grace: float = defaults.WORKER_ACK_TIMEOUT,
    ) -> list[tuple[WorkerSlot, ipc.ToControl | None]]:
        """Send every live worker a request; their replies within ``timeout`` + ``grace``."""
        loop = asyncio.get_running_loop()
        futures = []
        asked: dict[asyncio.Future[ipc.ToControl | None], WorkerSlot] = {}
        for slot in self.slots:
            if slot.state is SlotState.EXITED:
                continue
            request = next(self._requests)
            future: asyncio.Future[ipc.ToControl | None] = loop.create_future()
            self._pending[request] = (slot, future)
            futures.append(future)
            asked[future] = slot
            slot.send(ipc.encode(message(request)))
        if not futures:
            return []
        try:
            done, _ = await asyncio.wait(futures, timeout=timeout + grace)
        finally:
            for request in [r for r, (_, f) in self._pending.items() if f in futures]:
                del self._pending[request]
        return [(asked[f], f.result()) for f in done if not f.cancelled()]

    # ------------------------------------------------------------------ processes
    async def start(self, listeners: Listeners, tls_listeners: Listeners | None = None) -> None:
        """Start every worker and return once all serve the current snapshot; StartFailed if one exits first."""
        self._listeners = listeners
        self._tls_listeners = tls_listeners
        for slot in self.slots:
            await self._spawn(slot)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + defaults.WORKER_START_TIMEOUT
        while any(s.state is SlotState.STARTING for s in self.slots):
            dead = [s for s in self.slots if s.state is SlotState.EXITED]
            if dead:
                raise StartFailed(f"worker {dead[0].index} exited while starting")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise StartFailed("workers did not start in time")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
        if any(s.state is SlotState.EXITED for s in self.slots):
            raise StartFailed("a worker exited while starting")

    async def _spawn(self, slot: WorkerSlot) -> None:
        assert self._listeners is not None
        loop = asyncio.get_running_loop()
        parent_end, child_end = _socketpair()
        listen_fds = tuple(s.fileno() for s in self._listeners.per_slot[slot.index])
        tls = self._tls_listeners
        tls_fds = tuple(s.fileno() for s in tls.per_slot[slot.index]) if tls is not None else ()
        config = self._worker_config(slot.index, child_end.fileno(), listen_fds, tls_fds)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
        try:
            slot.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "proxy.worker",
                config.to_json(),
                pass_fds=(child_end.fileno(), *listen_fds, *tls_fds),
                stdin=asyncio.subprocess.DEVNULL,
                env=env,
            )
        finally:
            child_end.close()
        reader, slot.writer = await asyncio.open_unix_connection(sock=parent_end)
        slot.state = SlotState.STARTING
        slot.applied = 0
        slot.started_at = loop.time()
        slot.exited.clear()
        # the whole TLS state first: the worker applies it before the snapshot that lets it serve
        for frame in (
            *self._tls_services.values(),
            *self._certificates.values(),
            *self._alpn_challenges.values(),
        ):
            slot.send(frame)
        if self._challenges.tokens:
            slot.send(ipc.encode(self._challenges))
        slot.send(ipc.encode(self.whole()))
        slot.sent = self._version
        self._track(loop.create_task(self._follow(slot, reader)))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow(self, slot: WorkerSlot, reader: asyncio.StreamReader) -> None:
        """Read a worker's messages until its stream closes, then reap and replace it."""
        try:
            while True:
                header = await reader.readexactly(ipc.HEADER.size)
                message = ipc.decode(await reader.readexactly(ipc.frame_length(header)))
                self._received(slot, message)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except ipc.MessageError as exc:
            self._log.error("Worker sent a bad message; replacing it", worker=slot.index, error=str(exc))
            slot.kill()
        except Exception as exc:  # a bug handling one: the worker is replaced, never left unread
            self._log.error(
                "Unable to handle a worker's message; replacing it",
                worker=slot.index,
                error=f"{type(exc).__name__}: {exc}",
            )
            slot.kill()
        await self._exited(slot)

    def _received(self, slot: WorkerSlot, message: ipc.Message) -> None:
        if isinstance(message, ipc.Applied):
            slot.applied = max(slot.applied, message.version)
            slot.apply(SlotEvent.APPLIED)
            self._changed.set()
        elif isinstance(message, ipc.MetricsTable) and message.request == 0:  # pushed
            self._take_table(slot, message)
        elif isinstance(message, ipc.Obtain):
            self._track(asyncio.get_running_loop().create_task(self._answer_obtain(slot, message)))
        elif isinstance(message, ipc.Drained | ipc.MetricsTable | ipc.Synced):
            pending = self._pending.get(message.request)
            if pending is not None and pending[0] is slot and not pending[1].done():
                pending[1].set_result(message)

    async def _exited(self, slot: WorkerSlot) -> None:
        process = slot.process
        assert process is not None
        if slot.writer is not None:
            slot.writer.close()
            slot.writer = None
        try:
            code = await asyncio.wait_for(process.wait(), defaults.WORKER_ACK_TIMEOUT)
        except TimeoutError:  # it closed its stream but lives on: make sure
            slot.kill()
            code = await process.wait()
        was = slot.state
        slot.apply(SlotEvent.EXIT)
        self._retire_metrics(slot)
        for pending_slot, future in list(self._pending.values()):
            if pending_slot is slot and not future.done():
                future.set_result(None)  # it had nothing left to drain
        self._changed.set()
        slot.exited.set()
        if self._stopping or was is SlotState.STOPPING:
            return
        self._log.error("Worker exited", worker=slot.index, pid=process.pid, **describe_exit(code))
        loop = asyncio.get_running_loop()
        lived = loop.time() - slot.started_at
        if lived < defaults.WORKER_RESTART_DELAY:
            await asyncio.sleep(defaults.WORKER_RESTART_DELAY - lived)
        if self._stopping:
            return
        await self._spawn(slot)
        self._log.info("Worker replaced", worker=slot.index, pid=slot.pid)

    async def shutdown(self, timeout: float) -> None:
        """Every worker stops accepting and finishes within ``timeout``; stragglers are killed."""
        self._stopping = True
        frame = ipc.encode(ipc.Shutdown(timeout=timeout))
        live = [s for s in self.slots if s.state is not SlotState.EXITED]
        for slot in live:
            slot.apply(SlotEvent.STOP)
            slot.send(frame)
        waits = [asyncio.ensure_future(s.exited.wait()) for s in live]
        if waits:
            _, late = await asyncio.wait(waits, timeout=timeout + defaults.WORKER_STOP_GRACE)
            for wait in late:
                wait.cancel()
        for slot in live:
            if slot.state is not SlotState.EXITED:
                self._log.error("Worker did not stop in time; killing it", worker=slot.index, pid=slot.pid)
                slot.kill()
        for task in list(self._tasks):
            try:
                await asyncio.wait_for(asyncio.shield(task), defaults.WORKER_STOP_GRACE)
            except TimeoutError:
                task.cancel()


def _socketpair() -> tuple[socket.socket, socket.socket]:
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child_end.set_inheritable(True)
    return parent_end, child_end
