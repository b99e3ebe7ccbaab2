"""The control plane: deploy / remove / pause / stop / resume / list.

Every command is all-or-nothing. A deploy prepares outside the lock (targets, health checks), then,
under the lock and without awaiting: checks the routes, writes the new state file, and only once it
is persisted swaps the targets and publishes the new routes; the old targets drain after. A command
whose state cannot be saved changes nothing and answers an error.

The data plane never waits on anything here. It reads ``routes``, an immutable ServiceMap that
this class replaces (one reference assignment) after each change.

Each command in ``proxy/commands.py`` is carried out by the method of the same name here.
"""

from __future__ import annotations

import asyncio
from typing import Any

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
    StopCommand,
)
from proxy.gotext import format_duration
from proxy.health import Probe, probe
from proxy.http.tls_rules import sync_entry_rules
from proxy.lifecycle import ModeEvent, ServiceMode, next_mode
from proxy.log import JsonLog
from proxy.options import OptionsError, ServiceOptions, validate_service_options
from proxy.service import Service
from proxy.service_map import ServiceMap
from proxy.state import SavedService, StateFile
from proxy.targets import InvalidTarget, TargetSet
from proxy.tls import CertificateStore, ServiceTls, TlsConfigError, prepare_service_tls


class ControlError(Exception):
    """A command failed; the message is what the CLI prints after `Error: `."""


class Router:
    def __init__(
        self,
        *,
        log: JsonLog,
        state: StateFile,
        clock: Clock = LOOP_CLOCK,
        prober: Probe = probe,
        tls: CertificateStore | None = None,
    ) -> None:
        self._log = log
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

    def current_routes(self) -> ServiceMap[Service]:
        return self.routes

    @property
    def health_slots(self) -> asyncio.Semaphore:
        """Bounds how many health checks run at once, whatever the number of targets."""
        if self._health_slots is None:
            self._health_slots = asyncio.Semaphore(defaults.MAX_CONCURRENT_HEALTH_CHECKS)
        return self._health_slots

    async def close(self) -> None:
        for service in self._services.values():
            service.active.stop_health_checks()

    # ------------------------------------------------------------------ commands
    async def handle(self, command: ControlCommand) -> Any:
        """Carry out a command with the method of its name; its result is the reply's ``result``."""
        result = await getattr(self, command.name)(command)
        return True if result is None else result

    def _target_set(self, name: str, addresses: tuple[str, ...], options: Any) -> TargetSet:
        return TargetSet(
            addresses=addresses,
            health=options.health_check_config,
            log=self._log,
            service=name,
            clock=self._clock,
            probe=self._prober,
        )

    async def deploy(self, cmd: DeployCommand) -> None:
        options = cmd.service_options.normalized()
        try:
            validate_service_options(options)
        except OptionsError as exc:
            raise ControlError(f"service options invalid: {exc}") from None
        tls = await self._prepare_tls(cmd.service, options)
        try:
            target_set = self._target_set(cmd.service, cmd.targets, cmd.target_options)
        except InvalidTarget as exc:
            raise ControlError(str(exc)) from None

        self._log.info(
            "Deploying",
            service=cmd.service,
            targets=list(cmd.targets),
            hosts=list(options.hosts),
            paths=list(options.path_prefixes),
            tls=options.tls_enabled,
        )
        # Prepare outside the lock: health checks may take up to the deploy timeout.
        timeout = cmd.deployment_options.deploy_timeout
        if cmd.deployment_options.force:
            target_set.mark_all_healthy()
            if len(cmd.targets) > 1:
                target_set.start_health_checks(slots=self.health_slots)
        else:
            target_set.start_health_checks(slots=self.health_slots)
            if not await target_set.wait_healthy(timeout):
                target_set.stop_health_checks()
                raise ControlError(
                    f"target failed to become healthy within configured timeout ({format_duration(timeout)})"
                )

        async with self._lock:  # no awaits inside: the swap is atomic for the data plane
            service = self._services.get(cmd.service)
            if self.routes.conflicts(service, options.hosts, options.path_prefixes):
                target_set.stop_health_checks()
                self._log.error("Host settings conflict with another service", service=cmd.service)
                raise ControlError("host settings conflict with another service")
            saved = self._saved_all()
            saved[cmd.service] = SavedService(
                name=cmd.service,
                options=options,
                target_options=cmd.target_options,
                active_targets=cmd.targets,
                mode=service.mode if service is not None else ServiceMode.RUNNING,
                stop_message=service.stop_message if service is not None else "",
                pause_timeout=service.pause_timeout if service is not None else defaults.MAX_PAUSE,
            )
            try:
                self._save(saved)
            except ControlError:
                target_set.stop_health_checks()
                raise
            old = None
            if service is None:
                service = Service(
                    name=cmd.service, options=options, target_options=cmd.target_options, active=target_set
                )
                self._services[cmd.service] = service
            else:
                old = service.active
                service.configure(options=options, target_options=cmd.target_options)
                service.active = target_set
            if self._tls is not None:
                self._tls.set_service(tls, name=cmd.service)
            self._publish()

        self._log.info(
            "Deployed",
            service=cmd.service,
            targets=list(cmd.targets),
            hosts=list(options.hosts),
            paths=list(options.path_prefixes),
            tls=options.tls_enabled,
        )
        if old is not None:
            await old.drain(cmd.deployment_options.drain_timeout)

    async def remove(self, cmd: RemoveCommand) -> None:
        async with self._lock:
            service = self._services.get(cmd.service)
            if service is None:
                raise ControlError("service not found")
            saved = self._saved_all()
            del saved[cmd.service]
            self._save(saved)
            del self._services[cmd.service]
            service.active.stop_health_checks()
            if self._tls is not None:
                self._tls.remove_service(cmd.service)
            self._publish()
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
            saved = self._saved_all()
            entry = saved[name]
            saved[name] = SavedService(
                name=name,
                options=entry.options,
                target_options=entry.target_options,
                active_targets=entry.active_targets,
                mode=next_mode(service.mode, event),
                stop_message=message if event is ModeEvent.STOP else service.stop_message,
                pause_timeout=pause_timeout if event is ModeEvent.PAUSE else service.pause_timeout,
            )
            self._save(saved)
            service.change_mode(event, message=message, pause_timeout=pause_timeout)
        verb = {ModeEvent.PAUSE: "paused", ModeEvent.STOP: "stopped", ModeEvent.RESUME: "resumed"}[event]
        self._log.info(f"Service {verb}", service=name)
        if event is not ModeEvent.RESUME:
            await service.active.settle(drain_timeout)
            self._log.info("Service drained", service=name)

    async def list(self, cmd: ListCommand | None = None) -> dict[str, Any]:
        services = {}
        for name in sorted(self._services):
            service = self._services[name]
            options = service.options
            services[name] = {
                "host": ",".join(h or "*" for h in options.hosts) if any(options.hosts) else "*",
                "path": ",".join(options.path_prefixes),
                "target": ",".join(service.active.addresses),
                "state": service.mode.label,
                "tls": options.tls_enabled,
                "hosts": [h for h in options.hosts if h],
                "path_prefixes": list(options.path_prefixes),
                "targets": [{"address": t.address, "state": t.state.value} for t in service.active.targets],
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
        for entry in loaded.services:
            if self._restore_entry(entry, path):
                restored += 1
        if loaded.damaged or restored < len(loaded.services):
            self._keep_copy(path)
        self._publish()
        self._log.info("Restored saved state", path=path, services=restored)

    def _restore_entry(self, entry: SavedService, path: str) -> bool:
        options = entry.options
        if self.routes.conflicts(None, options.hosts, options.path_prefixes):
            self._log.error(
                "Unable to restore service",
                path=path,
                service=entry.name,
                error="host settings conflict with another service",
            )
            return False
        try:
            target_set = self._target_set(entry.name, entry.active_targets, entry.target_options)
        except InvalidTarget as exc:
            self._log.error("Unable to restore service", path=path, service=entry.name, error=str(exc))
            return False
        target_set.mark_all_healthy()
        self._restore_tls(entry.name, options)
        self._services[entry.name] = Service(
            name=entry.name,
            options=options,
            target_options=entry.target_options,
            active=target_set,
            mode=entry.mode,
            stop_message=entry.stop_message,
            pause_timeout=entry.pause_timeout or defaults.MAX_PAUSE,
        )
        self._publish()  # the next entry's conflict check sees this one
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
            if len(service.active.targets) > 1:
                service.active.start_health_checks(slots=self.health_slots, stagger=True)

    def _saved_all(self) -> dict[str, SavedService]:
        return {name: self._saved(s) for name, s in self._services.items()}

    def _save(self, saved: dict[str, SavedService]) -> None:
        try:
            self._state.save(list(saved.values()))
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
            mode=service.mode,
            stop_message=service.stop_message,
            pause_timeout=service.pause_timeout,
        )

    # ------------------------------------------------------------------ routing snapshot
    def _publish(self) -> None:
        routes = ServiceMap(
            (host, prefix, service)
            for service in self._services.values()
            for host in service.options.hosts
            for prefix in service.options.path_prefixes
        )
        sync_entry_rules(self._services.values(), routes)
        self.routes = routes
