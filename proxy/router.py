"""The control plane: deploy / remove / pause / stop / resume / list.

Every command is all-or-nothing. A deploy prepares outside the lock (targets, health checks), then,
under the lock and without awaiting: checks the routes, writes the new state file, and only once it
is persisted swaps the targets and publishes the new routes; the old targets drain after. A command
whose state cannot be saved changes nothing and answers an error.

The data plane never waits on anything here. After each change the Router publishes a versioned
routing snapshot to its ``DataPlane`` — the worker processes (``proxy/controller/fleet.py``) — that
carries only what changed (the first one is whole), and a command returns once the data plane
applied it. What a change costs here follows its size, not the number of services: the route map is
derived from the previous one, and the state file is written from each entry's JSON, encoded once
when it changed. The control process's own Service and
TargetSet objects carry health checks and state; each worker builds its own from the snapshots.
A change of a target's health is published as a new snapshot too (coalesced per loop iteration).

Each command in ``proxy/commands.py`` is carried out by the method of the same name here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Collection
from typing import Any, Protocol

from proxy import defaults
from proxy.clock import LOOP_CLOCK, Clock
from proxy.commands import (
    COMMANDS,
    ControlCommand,
    DeployCommand,
    ListCommand,
    PauseCommand,
    RemoveCommand,
    ResumeCommand,
    RolloutDeployCommand,
    RolloutSetCommand,
    RolloutStopCommand,
    StopCommand,
)
from proxy.error_pages import ErrorPages, TemplateError, load_error_pages
from proxy.gotext import format_duration
from proxy.health import Probe, probe
from proxy.http.tls_rules import sync_entry_rules
from proxy.ipc import Entry, ServiceState, Snapshot
from proxy.lifecycle import ModeEvent, next_mode
from proxy.log import JsonLog
from proxy.options import DeploymentOptions, OptionsError, ServiceOptions, validate_service_options
from proxy.rollout import RolloutSplit
from proxy.service import Service
from proxy.service_map import ServiceMap, bindings_of, rebind
from proxy.state import SavedService, StateFile, encode_entry
from proxy.targets import InvalidTarget, TargetSet
from proxy.tls import CertificateStore, ServiceTls, TlsConfigError, prepare_service_tls


class ControlError(Exception):
    """A command failed; the message is what the CLI prints after `Error: `."""


class DataPlane(Protocol):
    """Where the routes go: the worker processes, or (tests of the Router alone) this process."""

    def publish(self, snapshot: Snapshot) -> None:
        """Serve ``snapshot`` from now on (it is whole; a later version replaces it)."""

    async def applied(self, version: int) -> None:
        """Return once ``version`` (or a later one) is what the data plane serves."""

    async def drain(self, service: str, old: TargetSet, timeout: float) -> None:
        """A deploy replaced ``old``: its requests in flight may finish until ``timeout``."""

    async def settle(self, service: Service, timeout: float) -> None:
        """A pause or stop: the requests in flight to ``service`` may finish until ``timeout``."""


class InProcessDataPlane:
    """The data plane is this process's own Service objects (the Router's unit tests)."""

    def publish(self, snapshot: Snapshot) -> None:
        pass

    async def applied(self, version: int) -> None:
        pass

    async def drain(self, service: str, old: TargetSet, timeout: float) -> None:
        await old.drain(timeout)

    async def settle(self, service: Service, timeout: float) -> None:
        await asyncio.gather(*(targets.settle(timeout) for targets in service.target_sets()))


class Router:
    def __init__(
        self,
        *,
        log: JsonLog,
        state: StateFile,
        dataplane: DataPlane,
        clock: Clock = LOOP_CLOCK,
        prober: Probe = probe,
        tls: CertificateStore | None = None,
    ) -> None:
        self._log = log
        self._dataplane = dataplane
        self._version = 0
        self._set_ids = itertools.count(1)
        self._revisions = itertools.count(1)
        # per published service: what its current entry was made from (compared by identity), and the entry
        self._entries: dict[str, tuple[tuple[Any, ...], Entry]] = {}
        self._bound: dict[str, list[tuple[str, str]]] = {}  # the (host, prefix) pairs in ``routes``
        self._health_dirty: set[str] = set()  # services whose targets' health moved, to publish
        self._health_publish: asyncio.Handle | None = None
        self._state = state
        self._clock = clock
        self._prober = prober
        self._tls = tls
        self._services: dict[str, Service] = {}
        self._lock = asyncio.Lock()
        self._health_slots: asyncio.Semaphore | None = None
        self.routes: ServiceMap[Service] = ServiceMap()
        missing = [name for name in COMMANDS if not callable(getattr(self, name, None))]
        if missing:
            raise TypeError(f"Router has no handler for the command(s) {', '.join(missing)}")

    def services(self) -> dict[str, Service]:
        """The services by name (read-only use: metrics gauges)."""
        return dict(self._services)

    @property
    def health_slots(self) -> asyncio.Semaphore:
        """Bounds how many health checks run at once, whatever the number of targets."""
        if self._health_slots is None:
            self._health_slots = asyncio.Semaphore(defaults.MAX_CONCURRENT_HEALTH_CHECKS)
        return self._health_slots

    async def close(self) -> None:
        for service in self._services.values():
            for targets in service.target_sets():
                targets.stop_health_checks()

    # ------------------------------------------------------------------ commands
    async def handle(self, command: ControlCommand) -> Any:
        """Carry out a command with the method of its name; its result is the reply's ``result``."""
        result = await getattr(self, command.name)(command)
        return True if result is None else result

    def _target_set(
        self, name: str, addresses: tuple[str, ...], options: Any, readers: tuple[str, ...] = ()
    ) -> TargetSet:
        return TargetSet(
            addresses=addresses,
            readers=readers,
            health=options.health_check_config,
            log=self._log,
            service=name,
            clock=self._clock,
            probe=self._prober,
            ident=next(self._set_ids),
            on_change=lambda: self._health_changed(name),
        )

    async def deploy(self, cmd: DeployCommand) -> None:
        options = cmd.service_options.normalized()
        try:
            validate_service_options(options)
        except OptionsError as exc:
            raise ControlError(f"service options invalid: {exc}") from None
        tls = await self._prepare_tls(cmd.service, options)
        try:
            target_set = self._target_set(cmd.service, cmd.targets, cmd.target_options, cmd.read_targets)
        except InvalidTarget as exc:
            raise ControlError(str(exc)) from None
        error_pages = self._error_pages(cmd.service, options.error_page_path)

        self._log.info(
            "Deploying",
            service=cmd.service,
            targets=list(cmd.targets),
            hosts=list(options.hosts),
            paths=list(options.path_prefixes),
            tls=options.tls_enabled,
        )
        # Prepare outside the lock: health checks may take up to the deploy timeout.
        await self._become_healthy(target_set, cmd.deployment_options)

        async with self._lock:  # no awaits inside: the swap is atomic for the data plane
            service = self._services.get(cmd.service)
            if self.routes.conflicts(service, options.hosts, options.path_prefixes):
                target_set.stop_health_checks()
                self._log.error("Host settings conflict with another service", service=cmd.service)
                raise ControlError("host settings conflict with another service")
            entry = SavedService(
                name=cmd.service,
                options=options,
                target_options=cmd.target_options,
                active_targets=cmd.targets,
                active_readers=cmd.read_targets,
                pause_timeout=defaults.MAX_PAUSE,
            )
            if service is not None:  # mode and rollout slot are kept across deploys
                entry = dataclasses.replace(
                    self._saved(service),
                    options=options,
                    target_options=cmd.target_options,
                    active_targets=cmd.targets,
                    active_readers=cmd.read_targets,
                )
            try:
                self._save({cmd.service: entry})
            except ControlError:
                target_set.stop_health_checks()
                raise
            old = None
            if service is None:
                service = Service(
                    name=cmd.service,
                    options=options,
                    target_options=cmd.target_options,
                    active=target_set,
                    error_pages=error_pages,
                )
                self._services[cmd.service] = service
            else:
                old = service.active
                service.active = target_set
                service.configure(options=options, target_options=cmd.target_options, error_pages=error_pages)
            if self._tls is not None:
                self._tls.set_service(tls, name=cmd.service)
            version = self._publish(cmd.service)
        await self._dataplane.applied(version)

        self._log.info(
            "Deployed",
            service=cmd.service,
            targets=list(cmd.targets),
            hosts=list(options.hosts),
            paths=list(options.path_prefixes),
            tls=options.tls_enabled,
        )
        if old is not None:
            await self._dataplane.drain(cmd.service, old, cmd.deployment_options.drain_timeout)

    def _error_pages(self, name: str, directory: str) -> ErrorPages | None:
        """The service's --error-pages, parsed; a deploy whose pages do not load fails here."""
        if not directory:
            return None
        try:
            return load_error_pages(directory)
        except TemplateError as exc:
            self._log.error(
                "Unable to parse custom error pages", service=name, path=directory, error=str(exc)
            )
            raise ControlError("unable to load error pages") from None

    async def _become_healthy(self, target_set: TargetSet, deployment: DeploymentOptions) -> None:
        """Start the new targets' health checks and wait until all passed (unless --force)."""
        timeout = deployment.deploy_timeout
        if deployment.force:
            target_set.mark_all_healthy()
            if len(target_set.targets) > 1:
                target_set.start_health_checks(slots=self.health_slots)
            return
        target_set.start_health_checks(slots=self.health_slots)
        if not await target_set.wait_healthy(timeout):
            target_set.stop_health_checks()
            raise ControlError(
                f"target failed to become healthy within configured timeout ({format_duration(timeout)})"
            )

    # ------------------------------------------------------------------ rollout
    async def rollout_deploy(self, cmd: RolloutDeployCommand) -> None:
        """Health-check and install a rollout target set on an existing service (its options)."""
        service = self._services.get(cmd.service)
        if service is None:
            raise ControlError("service not found")
        try:
            target_set = self._target_set(cmd.service, cmd.targets, service.target_options, cmd.read_targets)
        except InvalidTarget as exc:
            raise ControlError(str(exc)) from None
        self._log.info("Deploying for rollout", service=cmd.service, targets=list(cmd.targets))
        await self._become_healthy(target_set, cmd.deployment_options)
        async with self._lock:
            if self._services.get(cmd.service) is not service:
                target_set.stop_health_checks()
                raise ControlError("service not found")
            entry = dataclasses.replace(
                self._saved(service), rollout_targets=cmd.targets, rollout_readers=cmd.read_targets
            )
            try:
                self._save({cmd.service: entry})
            except ControlError:
                target_set.stop_health_checks()
                raise
            old = service.rollout
            service.rollout = target_set
            service.update_routing()
            version = self._publish(cmd.service)
        await self._dataplane.applied(version)
        self._log.info("Deployed for rollout", service=cmd.service, targets=list(cmd.targets))
        if old is not None:
            await self._dataplane.drain(cmd.service, old, cmd.deployment_options.drain_timeout)

    async def rollout_set(self, cmd: RolloutSetCommand) -> None:
        async with self._lock:
            service = self._services.get(cmd.service)
            if service is None:
                raise ControlError("service not found")
            if service.rollout is None:
                raise ControlError("rollout target not set")
            split = RolloutSplit(percent=cmd.percentage, allowlist=cmd.allowlist)
            version = self._set_split(service, split)
        await self._dataplane.applied(version)
        self._log.info(
            "Set rollout split", service=cmd.service, percentage=cmd.percentage, allowlist=list(cmd.allowlist)
        )

    async def rollout_stop(self, cmd: RolloutStopCommand) -> None:
        async with self._lock:
            service = self._services.get(cmd.service)
            if service is None:
                raise ControlError("service not found")
            version = self._set_split(service, None)
        await self._dataplane.applied(version)
        self._log.info("Stopped rollout", service=cmd.service)

    def _set_split(self, service: Service, split: RolloutSplit | None) -> int:
        self._save({service.name: dataclasses.replace(self._saved(service), rollout_split=split)})
        service.rollout_split = split
        service.update_routing()
        return self._publish(service.name)

    async def remove(self, cmd: RemoveCommand) -> None:
        async with self._lock:
            service = self._services.get(cmd.service)
            if service is None:
                raise ControlError("service not found")
            self._save({cmd.service: None})
            del self._services[cmd.service]
            for targets in service.target_sets():
                targets.stop_health_checks()
            if self._tls is not None:
                self._tls.remove_service(cmd.service)
            version = self._publish(cmd.service)
        await self._dataplane.applied(version)
        self._log.info("Removed", service=cmd.service)

    async def pause(self, cmd: PauseCommand) -> None:
        await self.change_mode(
            cmd.service, ModeEvent.PAUSE, drain_timeout=cmd.drain_timeout, pause_timeout=cmd.pause_timeout
        )

    async def stop(self, cmd: StopCommand) -> None:
        await self.change_mode(
            cmd.service, ModeEvent.STOP, drain_timeout=cmd.drain_timeout, message=cmd.message
        )

    async def resume(self, cmd: ResumeCommand) -> None:
        await self.change_mode(cmd.service, ModeEvent.RESUME)

    async def change_mode(
        self,
        name: str,
        event: ModeEvent,
        *,
        drain_timeout: float = 0.0,
        pause_timeout: float = 0.0,
        message: str = "",
    ) -> None:
        """Pause, stop or resume; a pause or stop returns once the requests in flight settled."""
        async with self._lock:
            service = self._services.get(name)
            if service is None:
                raise ControlError("service not found")
            changed = dataclasses.replace(
                self._saved(service),
                mode=next_mode(service.mode, event),
                stop_message=message if event is ModeEvent.STOP else service.stop_message,
                pause_timeout=pause_timeout if event is ModeEvent.PAUSE else service.pause_timeout,
            )
            self._save({name: changed})
            service.change_mode(event, message=message, pause_timeout=pause_timeout)
            version = self._publish(name)
        await self._dataplane.applied(version)
        verb = {ModeEvent.PAUSE: "paused", ModeEvent.STOP: "stopped", ModeEvent.RESUME: "resumed"}[event]
        self._log.info(f"Service {verb}", service=name)
        if event is not ModeEvent.RESUME:
            await self._dataplane.settle(service, drain_timeout)
            self._log.info("Service drained", service=name)

    async def list(self, cmd: ListCommand | None = None) -> dict[str, Any]:
        services = {}
        for name in sorted(self._services):
            service = self._services[name]
            options = service.options
            services[name] = {
                "host": ",".join(h or "*" for h in options.hosts) if any(options.hosts) else "*",
                "path": ",".join(options.path_prefixes),
                "target": ",".join(service.active.addresses + service.active.reader_addresses),
                "state": service.mode.label,
                "tls": options.tls_enabled,
                "hosts": [h for h in options.hosts if h],
                "path_prefixes": list(options.path_prefixes),
                "targets": _targets_json(service.active),
                "readers": [t.address for t in service.active.readers],
                "rollout": _rollout_json(service),
                "options": options.to_json(),
                "target_options": service.target_options.to_json(),
            }
        return {"services": services}

    # ------------------------------------------------------------------ state
    def restore(self) -> None:
        """Load the state file: every valid entry is restored (targets taken as healthy at once,
        modes kept); each invalid one is logged with the file's path and the reason, and a file
        that could not be fully read is copied aside before anything overwrites it."""
        path = str(self._state.path)
        for stray in self._state.remove_stray_temp_files():
            self._log.warn("Removed a temp file an interrupted save left", path=str(stray))
        loaded = self._state.load()
        if loaded is None:
            self._log.info("No previous state to restore", path=path)
            return
        if loaded.error:
            self._log.error("Unable to restore saved state", path=path, error=loaded.error)
        for bad in loaded.rejected:
            self._log.error(
                "Unable to restore service", path=path, entry=bad.index, service=bad.name, error=bad.reason
            )
        if loaded.ignored_keys:
            self._log.warn("Ignored unknown keys in saved state", path=path, keys=loaded.ignored_keys)
        restored = 0
        taken: set[tuple[str, str]] = set()  # (host, prefix) pairs of the entries restored so far
        for entry in loaded.services:
            if self._restore_entry(entry, path, taken):
                restored += 1
        if loaded.damaged or restored < len(loaded.services):
            self._keep_copy(path)
        self._publish(*self._services)
        self._log.info("Restored saved state", path=path, services=restored)

    def _restore_entry(self, entry: SavedService, path: str, taken: set[tuple[str, str]]) -> bool:
        options = entry.options
        pairs = bindings_of(options)
        if any(pair in taken for pair in pairs) or self.routes.conflicts(
            None, options.hosts, options.path_prefixes
        ):
            self._log.error(
                "Unable to restore service",
                path=path,
                service=entry.name,
                error="host settings conflict with another service",
            )
            return False
        try:
            target_set = self._target_set(
                entry.name, entry.active_targets, entry.target_options, entry.active_readers
            )
            rollout = (
                self._target_set(
                    entry.name, entry.rollout_targets, entry.target_options, entry.rollout_readers
                )
                if entry.rollout_targets
                else None
            )
        except InvalidTarget as exc:
            self._log.error("Unable to restore service", path=path, service=entry.name, error=str(exc))
            return False
        target_set.mark_all_healthy()
        if rollout is not None:
            rollout.mark_all_healthy()
        try:
            pages = self._error_pages(entry.name, options.error_page_path)
        except ControlError:
            pages = None  # served with the built-in pages rather than not at all (logged above)
        self._restore_tls(entry.name, options)
        self._services[entry.name] = Service(
            name=entry.name,
            options=options,
            target_options=entry.target_options,
            active=target_set,
            mode=entry.mode,
            stop_message=entry.stop_message,
            pause_timeout=entry.pause_timeout or defaults.MAX_PAUSE,
            rollout=rollout,
            rollout_split=entry.rollout_split,
            error_pages=pages,
        )
        taken.update(pairs)  # the next entry's conflict check sees this one (routes: once all are in)
        return True

    def _keep_copy(self, path: str) -> None:
        try:
            copy = self._state.keep_copy()
        except OSError as exc:
            self._log.error("Unable to keep a copy of the damaged state file", path=path, error=str(exc))
            return
        self._log.warn("Kept a copy of the damaged state file", path=path, copy=str(copy))

    # ------------------------------------------------------------------ TLS
    async def _prepare_tls(self, name: str, options: ServiceOptions) -> ServiceTls | None:
        """Load and check the TLS settings (certificate files are read off the event loop)."""
        if self._tls is None or not options.tls_enabled:
            return None
        try:
            return await asyncio.to_thread(prepare_service_tls, name, options)
        except TlsConfigError as exc:
            self._log.error("Unable to configure TLS", service=name, error=str(exc))
            raise ControlError(str(exc)) from None

    def _restore_tls(self, name: str, options: ServiceOptions) -> None:
        if self._tls is None or not options.tls_enabled:
            return
        try:
            self._tls.set_service(prepare_service_tls(name, options), name=name)
        except TlsConfigError as exc:
            self._log.error("Unable to configure TLS", service=name, error=str(exc))

    def start_monitoring(self) -> None:
        """Restored multi-target services keep checking their targets' health."""
        for service in self._services.values():
            for targets in service.target_sets():
                if len(targets.targets) > 1:
                    targets.start_health_checks(slots=self.health_slots, stagger=True)

    def _save(self, changes: dict[str, SavedService | None]) -> None:
        """Write the state file: every service as it is, but those in ``changes`` as given there
        (None: removed; a new name comes last). Only those are encoded; the others' JSON is their
        current entry's."""
        texts: list[str] = []
        for name, service in self._services.items():
            if name in changes:
                change = changes[name]
                if change is not None:
                    texts.append(encode_entry(change))
                continue
            cached = self._entries.get(name)
            texts.append(cached[1].text if cached is not None else encode_entry(self._saved(service)))
        texts += [
            encode_entry(s) for name, s in changes.items() if s is not None and name not in self._services
        ]
        try:
            self._state.save_encoded(texts)
        except (OSError, ValueError) as exc:
            self._log.error("Unable to save state", path=str(self._state.path), error=str(exc))
            raise ControlError(f"unable to save state: {exc}") from None

    @staticmethod
    def _saved(service: Service) -> SavedService:
        return SavedService(
            name=service.name,
            options=service.options,
            target_options=service.target_options,
            active_targets=tuple(service.active.addresses),
            active_readers=tuple(service.active.reader_addresses),
            mode=service.mode,
            stop_message=service.stop_message,
            pause_timeout=service.pause_timeout,
            rollout_targets=tuple(service.rollout.addresses) if service.rollout is not None else (),
            rollout_readers=tuple(service.rollout.reader_addresses) if service.rollout is not None else (),
            rollout_split=service.rollout_split,
        )

    # ------------------------------------------------------------------ routing snapshot
    def _publish(self, *names: str) -> int:
        """The services ``names`` changed (or were removed): bind them anew in the routes and send
        the data plane the change; the new version."""
        unbind = [pair for name in names for pair in self._bound.pop(name, ())]
        services = [self._services[name] for name in names if name in self._services]
        self.routes = rebind(self.routes, unbind=unbind, services=services, sync=sync_entry_rules)
        for service in services:
            self._bound[service.name] = bindings_of(service.options)
        return self._send(names)

    def _send(self, names: Collection[str]) -> int:
        """A new version: whole (the first one), else what changed for ``names``."""
        first = self._version == 0
        self._version += 1
        snapshot = self.whole_snapshot() if first else self._change(names)
        if first:  # (each service's health is in it)
            self._health_dirty.clear()
        else:
            self._health_dirty.difference_update(names)
        self._dataplane.publish(snapshot)
        return self._version

    def whole_snapshot(self) -> Snapshot:
        """The current version as a whole snapshot: every service, every entry."""
        states = [self._state_of(service) for service in self._services.values()]
        self._entries = {name: self._entries[name] for name in self._services}
        return Snapshot(
            version=self._version,
            services=tuple(state for state, _ in states),
            entries={entry.revision: entry for _, entry in states},
        )

    def _change(self, names: Collection[str]) -> Snapshot:
        """The change to the previous version for the services ``names``: their state, the entries
        of those whose configuration changed, the ones no longer there."""
        states: list[ServiceState] = []
        entries: dict[int, Entry] = {}
        removed: list[str] = []
        for name in dict.fromkeys(names):
            service = self._services.get(name)
            if service is None:
                if self._entries.pop(name, None) is not None:
                    removed.append(name)
                continue
            before = self._entries.get(name)
            state, entry = self._state_of(service)
            states.append(state)
            if before is None or before[1] is not entry:
                entries[entry.revision] = entry
        return Snapshot(
            version=self._version,
            base=self._version - 1,
            services=tuple(states),
            entries=entries,
            removed=tuple(removed),
        )

    def _state_of(self, service: Service) -> tuple[ServiceState, Entry]:
        entry = self._entry(service)
        rollout = service.rollout
        state = ServiceState(
            name=service.name,
            revision=entry.revision,
            target_set=service.active.ident,
            health=tuple(t.state for t in service.active.targets),
            rollout_set=rollout.ident if rollout is not None else 0,
            rollout_health=tuple(t.state for t in rollout.targets) if rollout is not None else (),
        )
        return state, entry

    def _entry(self, service: Service) -> Entry:
        """The service's configuration as a revisioned entry, made (and encoded) only when it changed."""
        # objects by identity (a new one is a change), numbers and strings by value (a compiled
        # Service hands out a new float object at every read of a float field)
        key = (
            service.options,
            service.target_options,
            service.active,
            service.rollout,
            service.error_pages,
            service.mode,
            (service.rollout_split, service.stop_message, service.pause_timeout),
        )
        cached = self._entries.get(service.name)
        if cached is not None and all(
            a is b or (type(a) is tuple and a == b) for a, b in zip(cached[0], key, strict=True)
        ):
            return cached[1]
        entry = Entry.of(next(self._revisions), self._saved(service))
        self._entries[service.name] = (key, entry)
        return entry

    def _health_changed(self, name: str) -> None:
        """A target of ``name`` changed its health: publish once, after the other changes of this
        loop iteration."""
        self._health_dirty.add(name)
        if self._health_publish is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop yet (restoring before start): publish now
                self._publish_health()
                return
            self._health_publish = loop.call_soon(self._publish_health)

    def _publish_health(self) -> None:
        """The services are the same, only their targets' health moved: a new version, same routes."""
        self._health_publish = None
        names = [n for n in self._health_dirty if n in self._services and n in self._entries]
        self._health_dirty.clear()
        if names:
            self._send(names)


def _targets_json(targets: TargetSet) -> list[dict[str, Any]]:
    return [{"address": t.address, "state": t.state.value} for t in targets.targets]


def _rollout_json(service: Service) -> dict[str, Any] | None:
    """The rollout slot for ``list``: its targets and the split (None: no split, all go to active)."""
    rollout = service.rollout
    if rollout is None:
        return None
    split = service.rollout_split
    return {
        "targets": _targets_json(rollout),
        "target": ",".join(rollout.addresses + rollout.reader_addresses),
        "readers": [t.address for t in rollout.readers],
        "percentage": split.percent if split is not None else None,
        "allowlist": list(split.allowlist) if split is not None else [],
    }
