"""A worker's routes, rebuilt from each snapshot the control process sends.

The data plane reads ``routes`` (an immutable ServiceMap) exactly as in one process; a snapshot is
applied by building the next map completely and then replacing the reference, so no request ever
sees half of a change. Objects that carry live state survive snapshots that do not change them:
a Service keeps its held requests, a TargetSet (same id) keeps its targets' pools and in-flight
requests. A target set a deploy replaced is kept aside until the control process asks to drain it.
"""

from __future__ import annotations

from proxy import defaults
from proxy.http.tls_rules import sync_entry_rules
from proxy.ipc import Entry, MessageError, ServiceState, Snapshot
from proxy.log import JsonLog
from proxy.service import Service
from proxy.service_map import ServiceMap
from proxy.targets import TargetSet


class WorkerRoutes:
    def __init__(self, *, log: JsonLog) -> None:
        self._log = log
        self.version = 0
        self.routes: ServiceMap[Service] = ServiceMap()
        self._services: dict[str, Service] = {}
        self._entries: dict[str, Entry] = {}  # the configuration each service was built from
        self._sets: dict[int, TargetSet] = {}  # active target sets by id
        self.replaced: dict[int, TargetSet] = {}  # replaced by a deploy, waiting for their drain

    def current(self) -> ServiceMap[Service]:
        return self.routes

    def service(self, name: str) -> Service | None:
        return self._services.get(name)

    def apply(self, snapshot: Snapshot) -> bool:
        """Serve ``snapshot`` from now on; False (and nothing changes) if it is older than what is
        served. MessageError (and nothing changes) if it names a revision this worker lacks."""
        if snapshot.version <= self.version and self.version:
            return False
        entries: dict[str, Entry] = {}
        for state in snapshot.services:
            entry = snapshot.entries.get(state.revision)
            if entry is None:
                entry = self._entries.get(state.name)
                if entry is None or entry.revision != state.revision:
                    raise MessageError(f"service {state.name}: revision {state.revision} was never sent")
            if len(entry.saved.active_targets) != len(state.health):
                raise MessageError(f"service {state.name}: health does not list one state per target")
            entries[state.name] = entry
        services: dict[str, Service] = {}
        sets: dict[int, TargetSet] = {}
        for state in snapshot.services:
            service = self._service_for(state, entries[state.name])
            services[state.name] = service
            sets[state.target_set] = service.active
        for set_id, old in self._sets.items():
            if set_id not in sets:
                if old.service in services:
                    self.replaced[set_id] = old  # a deploy replaced it: the control process drains it
                else:
                    old.close_idle()  # the service was removed
        same = entries.keys() == self._entries.keys() and all(
            entry is self._entries[name] for name, entry in entries.items()
        )
        self._services = services
        self._entries = entries
        self._sets = sets
        if not same:  # (a change of health only keeps the map: it holds the same Service objects)
            routes = ServiceMap(
                (host, prefix, service)
                for service in services.values()
                for host in service.options.hosts
                for prefix in service.options.path_prefixes
            )
            sync_entry_rules(services.values(), routes)
            self.routes = routes
        self.version = snapshot.version
        return True

    def _service_for(self, state: ServiceState, entry: Entry) -> Service:
        saved = entry.saved
        service = self._services.get(saved.name)
        target_set = self._sets.get(state.target_set)
        if target_set is None:
            target_set = TargetSet(
                addresses=saved.active_targets,
                health=saved.target_options.health_check_config,
                log=self._log,
                service=saved.name,
                log_health=False,
                ident=state.target_set,
            )
        target_set.mirror(state.health)
        if service is not None and self._entries[saved.name] is entry:
            service.active = target_set  # the same configuration: only health moved
            return service
        if service is None:
            service = Service(
                name=saved.name,
                options=saved.options,
                target_options=saved.target_options,
                active=target_set,
            )
        else:
            service.configure(options=saved.options, target_options=saved.target_options)
            service.active = target_set
        service.set_mode(
            saved.mode,
            stop_message=saved.stop_message,
            pause_timeout=saved.pause_timeout or defaults.MAX_PAUSE,
        )
        return service
