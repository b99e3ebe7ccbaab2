"""The control plane: deploy / remove / pause / stop / resume / list.

A deploy prepares outside the lock, swaps under it and drains after.

The data plane never waits on anything here. It reads ``routes``, an immutable ServiceMap that
this class replaces (one reference assignment) after each change.
"""

from __future__ import annotations

import asyncio
from typing import Any

from proxy import defaults
from proxy.commands import (
    Command,
    DeployCommand,
    PauseCommand,
    RemoveCommand,
    ResumeCommand,
    StopCommand,
)
from proxy.gotext import format_duration
from proxy.http.tls_rules import sync_entry_rules
from proxy.lifecycle import ModeEvent
from proxy.log import JsonLog
from proxy.options import OptionsError, ServiceOptions, validate_service_options
from proxy.service import Service
from proxy.service_map import ServiceMap
from proxy.state import SavedService, StateError, StateFile
from proxy.targets import InvalidTarget, TargetSet
from proxy.tls import CertificateStore, ServiceTls, TlsConfigError, prepare_service_tls


class ControlError(Exception):
    """A command failed; the message is what the CLI prints after `Error: `."""


class Router:
    def __init__(self, *, log: JsonLog, state: StateFile, tls: CertificateStore | None = None) -> None:
        self._log = log
        self._state = state
        self._tls = tls
        self._services: dict[str, Service] = {}
        self._lock = asyncio.Lock()
        self._health_slots: asyncio.Semaphore | None = None
        self.routes: ServiceMap[Service] = ServiceMap()

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
    async def handle(self, command: Command) -> Any:
        if isinstance(command, DeployCommand):
            await self.deploy(command)
        elif isinstance(command, RemoveCommand):
            await self.remove(command.service)
        elif isinstance(command, PauseCommand):
            await self.change_mode(
                command.service,
                ModeEvent.PAUSE,
                drain_timeout=command.drain_timeout,
                pause_timeout=command.pause_timeout,
            )
        elif isinstance(command, StopCommand):
            await self.change_mode(
                command.service, ModeEvent.STOP, drain_timeout=command.drain_timeout, message=command.message
            )
        elif isinstance(command, ResumeCommand):
            await self.change_mode(command.service, ModeEvent.RESUME)
        else:
            return self.list()
        return True

    async def deploy(self, cmd: DeployCommand) -> None:
        options = cmd.service_options.normalized()
        try:
            validate_service_options(options)
        except OptionsError as exc:
            raise ControlError(f"service options invalid: {exc}") from None
        tls = await self._prepare_tls(cmd.service, options)
        try:
            target_set = TargetSet(
                addresses=cmd.targets,
                health=cmd.target_options.health_check_config,
                log=self._log,
                service=cmd.service,
            )
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
            if self._conflicts(cmd.service, options):
                target_set.stop_health_checks()
                self._log.error("Host settings conflict with another service", service=cmd.service)
                raise ControlError("host settings conflict with another service")
            service = self._services.get(cmd.service)
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
            self._persist()

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

    async def remove(self, name: str) -> None:
        async with self._lock:
            service = self._services.pop(name, None)
            if service is None:
                raise ControlError("service not found")
            service.active.stop_health_checks()
            if self._tls is not None:
                self._tls.remove_service(name)
            self._publish()
            self._persist()
        self._log.info("Removed", service=name)

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
            service.change_mode(event, message=message, pause_timeout=pause_timeout)
            self._persist()
        verb = {ModeEvent.PAUSE: "paused", ModeEvent.STOP: "stopped", ModeEvent.RESUME: "resumed"}[event]
        self._log.info(f"Service {verb}", service=name)
        if event is not ModeEvent.RESUME:
            await service.active.settle(drain_timeout)
            self._log.info("Service drained", service=name)

    def list(self) -> dict[str, Any]:
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
        """Load the state file: targets are taken as healthy at once, modes are kept."""
        path = str(self._state.path)
        try:
            saved = self._state.load()
        except StateError as exc:
            self._log.error("Unable to restore saved state", path=path, error=str(exc))
            return
        if saved is None:
            self._log.info("No previous state to restore", path=path)
            return
        for entry in saved:
            try:
                target_set = TargetSet(
                    addresses=entry.active_targets,
                    health=entry.target_options.health_check_config,
                    log=self._log,
                    service=entry.name,
                )
            except InvalidTarget as exc:
                self._log.error("Unable to restore service", service=entry.name, error=str(exc))
                continue
            target_set.mark_all_healthy()
            self._restore_tls(entry.name, entry.options)
            self._services[entry.name] = Service(
                name=entry.name,
                options=entry.options,
                target_options=entry.target_options,
                active=target_set,
                mode=entry.mode,
                stop_message=entry.stop_message,
                pause_timeout=entry.pause_timeout or defaults.MAX_PAUSE,
            )
        self._publish()
        self._log.info("Restored saved state", path=path)

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

    def _persist(self) -> None:
        self._state.save([self._saved(s) for s in self._services.values()])

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
    def _conflicts(self, name: str, options: ServiceOptions) -> bool:
        owners = self.routes.owners
        for host in options.hosts:
            for prefix in options.path_prefixes:
                owner = owners.get((host, prefix))
                if owner is not None and owner.name != name:
                    return True
        return False

    def _publish(self) -> None:
        routes = ServiceMap(
            (host, prefix, service)
            for service in self._services.values()
            for host in service.options.hosts
            for prefix in service.options.path_prefixes
        )
        sync_entry_rules(self._services.values(), routes)
        self.routes = routes
