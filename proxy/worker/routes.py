"""A worker's routes, rebuilt from each snapshot the control process sends.

The data plane reads ``routes`` (an immutable ServiceMap) exactly as in one process; a snapshot is
applied by building the next map completely and then replacing the reference, so no request ever
sees half of a change. A whole snapshot (the first one, or one sent to catch up) builds every
service and a new map; a change to the version served builds only the services it lists and
derives the map from the current one, so its cost follows the size of the change. Objects that carry live state survive snapshots that do not change them:
a Service keeps its held requests, a TargetSet (same id) keeps its targets' pools and in-flight
requests. A target set a deploy replaced is kept aside until the control process asks to drain it.
"""

from __future__ import annotations

from proxy import defaults
from proxy.error_pages import ErrorPages, TemplateError, load_error_pages
from proxy.http.tls_rules import sync_entry_rules
from proxy.ipc import Entry, MessageError, ServiceState, Snapshot
from proxy.log import JsonLog
from proxy.service import Service
from proxy.service_map import ServiceMap, bindings_of, rebind
from proxy.state import SavedService
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
        self.built = 0  # services the last snapshot listed: what applying it looked at

    def current(self) -> ServiceMap[Service]:
        return self.routes

    def services(self) -> dict[str, Service]:
        return self._services

    def service(self, name: str) -> Service | None:
        return self._services.get(name)

    def apply(self, snapshot: Snapshot) -> bool:
        """Serve ``snapshot`` from now on; False (and nothing changes) if it is older than what is
        served. MessageError (and nothing changes) if it names a revision this worker lacks, or is
        a change to another version than the one served."""
        if not snapshot.base and snapshot.version <= self.version and self.version:
            return False
        if snapshot.base and snapshot.base != self.version:
            raise MessageError(f"a change to version {snapshot.base} cannot apply to version {self.version}")
        unknown = [name for name in snapshot.removed if name not in self._services]
        if unknown:
            raise MessageError(f"service {unknown[0]}: removed but never sent")
        entries = self._checked_entries(snapshot)
        if snapshot.base:
            self._apply_change(snapshot, entries)
        else:
            self._apply_whole(entries, snapshot.services)
        self.version = snapshot.version
        return True

    def _checked_entries(self, snapshot: Snapshot) -> dict[str, Entry]:
        """The entry of each service the snapshot lists, checked against its health (no change yet)."""
        entries: dict[str, Entry] = {}
        for state in snapshot.services:
            entry = snapshot.entries.get(state.revision)
            if entry is None:
                entry = self._entries.get(state.name)
                if entry is None or entry.revision != state.revision:
                    raise MessageError(f"service {state.name}: revision {state.revision} was never sent")
            saved = entry.saved
            if len(saved.active_targets) + len(saved.active_readers) != len(state.health) or (
                len(saved.rollout_targets) + len(saved.rollout_readers) != len(state.rollout_health)
            ):
                raise MessageError(f"service {state.name}: health does not list one state per target")
            entries[state.name] = entry
        return entries

    def _apply_whole(self, entries: dict[str, Entry], states: tuple[ServiceState, ...]) -> None:
        """Exactly these services: build them all and a new map."""
        services: dict[str, Service] = {}
        sets: dict[int, TargetSet] = {}
        for state in states:
            service = self._service_for(state, entries[state.name])
            services[state.name] = service
            for target_set in service.target_sets():
                sets[target_set.ident] = target_set
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
        self.built = len(states)
        if not same:  # (a change of health only keeps the map: it holds the same Service objects)
            routes = ServiceMap(
                (host, prefix, service)
                for service in services.values()
                for host in service.options.hosts
                for prefix in service.options.path_prefixes
            )
            sync_entry_rules(services.values(), routes)
            self.routes = routes

    def _apply_change(self, snapshot: Snapshot, entries: dict[str, Entry]) -> None:
        """Only what changed: the listed services are rebuilt (or kept, on health alone), the
        removed ones dropped, and the map is derived from the current one."""
        unbind: list[tuple[str, str]] = []
        rebound: list[Service] = []
        for name in snapshot.removed:
            service = self._services.pop(name)
            unbind += bindings_of(self._entries.pop(name).saved.options)
            for target_set in service.target_sets():
                if self._sets.pop(target_set.ident, None) is not None:
                    target_set.close_idle()
        for state in snapshot.services:
            entry = entries[state.name]
            before = self._entries.get(state.name)
            old_sets = self._services[state.name].target_sets() if state.name in self._services else []
            service = self._service_for(state, entry)
            self._services[state.name] = service
            self._entries[state.name] = entry
            sets = service.target_sets()
            for target_set in sets:
                self._sets[target_set.ident] = target_set
            for old in old_sets:
                if all(old is not s for s in sets) and self._sets.pop(old.ident, None) is not None:
                    self.replaced[old.ident] = old  # a deploy replaced it: the control process drains it
            if before is not entry:
                if before is not None:
                    unbind += bindings_of(before.saved.options)
                rebound.append(service)
        self.built = len(snapshot.services)
        if unbind or rebound:
            self.routes = rebind(self.routes, unbind=unbind, services=rebound, sync=sync_entry_rules)

    def _target_set(
        self, saved: SavedService, ident: int, writers: tuple[str, ...], readers: tuple[str, ...]
    ) -> TargetSet:
        target_set = self._sets.get(ident)
        if target_set is None:
            target_set = TargetSet(
                addresses=writers,
                readers=readers,
                health=saved.target_options.health_check_config,
                log=self._log,
                service=saved.name,
                log_health=False,
                ident=ident,
            )
        return target_set

    def _service_for(self, state: ServiceState, entry: Entry) -> Service:
        saved = entry.saved
        service = self._services.get(saved.name)
        target_set = self._target_set(saved, state.target_set, saved.active_targets, saved.active_readers)
        target_set.mirror(state.health)
        rollout = None
        if state.rollout_set and saved.rollout_targets:
            rollout = self._target_set(saved, state.rollout_set, saved.rollout_targets, saved.rollout_readers)
            rollout.mirror(state.rollout_health)
        if service is not None and self._entries[saved.name] is entry:
            service.active = target_set  # the same configuration: only health moved
            service.rollout = rollout
            service.update_routing()
            return service
        pages = self._error_pages(saved)
        if service is None:
            service = Service(
                name=saved.name,
                options=saved.options,
                target_options=saved.target_options,
                active=target_set,
                rollout=rollout,
                rollout_split=saved.rollout_split,
                error_pages=pages,
            )
        else:
            service.active = target_set
            service.rollout = rollout
            service.rollout_split = saved.rollout_split
            service.configure(options=saved.options, target_options=saved.target_options, error_pages=pages)
            service.update_routing()
        service.set_mode(
            saved.mode,
            stop_message=saved.stop_message,
            pause_timeout=saved.pause_timeout or defaults.MAX_PAUSE,
        )
        return service

    def _error_pages(self, saved: SavedService) -> ErrorPages | None:
        """The service's --error-pages (the control process checked they load when deploying)."""
        directory = saved.options.error_page_path
        if not directory:
            return None
        try:
            return load_error_pages(directory)
        except (TemplateError, OSError) as exc:
            self._log.error("Unable to parse custom error pages", service=saved.name, error=str(exc))
            return None
