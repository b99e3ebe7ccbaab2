"""The routing snapshot: host → path prefixes → service, immutable once published.

Lookup (kamal-proxy's rules): bindings of the exact host, else of `*` + the host from its first
`.`, else of the catch-all `""`; only the first of these that exists is consulted. Within a host,
prefixes are tried longest first; `/api` matches `/api`, `/api/` and `/api/x`, not `/apiary`.
Host lookup is one dict access whatever the number of services.

A change makes a new map from the previous one (``changed``): the bindings of the hosts it does not
touch are shared, so a change to one service of 10,000 rebuilds one or two bindings, not 10,000.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar

S = TypeVar("S")

ROOT = "/"


class Binding(Generic[S]):
    """All the services bound under one host, prefixes longest first."""

    __slots__ = ("prefixes", "root")

    def __init__(self, prefixes: list[tuple[str, S]]) -> None:
        prefixes.sort(key=lambda item: len(item[0]), reverse=True)
        self.prefixes = [(p, p + "/", s) for p, s in prefixes if p != ROOT]
        roots = [s for p, s in prefixes if p == ROOT]
        self.root: S | None = roots[0] if roots else None

    def match(self, path: str) -> tuple[S, str] | None:
        if self.prefixes:
            probe = path + "/"
            for prefix, prefix_slash, service in self.prefixes:
                if probe.startswith(prefix_slash):
                    return service, prefix
        if self.root is not None:
            return self.root, ROOT
        return None

    def items(self) -> list[tuple[str, S]]:
        """(prefix, service) of everything bound here."""
        out = [(p, s) for p, _, s in self.prefixes]
        if self.root is not None:
            out.append((ROOT, self.root))
        return out

    def owner(self) -> S:
        """The service of the root prefix, else of the shortest one."""
        return self.root if self.root is not None else self.prefixes[-1][2]


def strip_port(host: str) -> str:
    if not host:
        return host
    if host[0] == "[":
        end = host.find("]")
        return host[: end + 1] if end >= 0 else host
    colon = host.rfind(":")
    return host[:colon] if colon >= 0 else host


class ServiceMap(Generic[S]):
    def __init__(self, entries: Iterable[tuple[str, str, S]] = ()) -> None:
        """``entries`` are (host, path prefix, service); host "" is the catch-all."""
        by_host: dict[str, list[tuple[str, S]]] = {}
        self.owners: dict[tuple[str, str], S] = {}
        for host, prefix, service in entries:
            by_host.setdefault(host, []).append((prefix, service))
            self.owners[(host, prefix)] = service
        self._hosts: dict[str, Binding[S]] = {h: Binding(p) for h, p in by_host.items()}
        self._catch_all = self._hosts.get("")
        self.rebuilt = len(self._hosts)  # bindings this map built (not shared with the one before)

    def changed(
        self, *, unbind: Iterable[tuple[str, str]] = (), bind: Iterable[tuple[str, str, S]] = ()
    ) -> ServiceMap[S]:
        """A new map: this one without the (host, prefix) pairs of ``unbind``, then with those of
        ``bind`` (a pair bound again takes its new service). Only the touched hosts' bindings are
        rebuilt; the others are shared (the dicts themselves are copied: C speed, ~0.1 ms at
        10,000 services)."""
        owners = dict(self.owners)
        hosts = dict(self._hosts)
        touched: dict[str, dict[str, S]] = {}

        def prefixes_of(host: str) -> dict[str, S]:
            found = touched.get(host)
            if found is None:
                binding = hosts.get(host)
                found = touched[host] = dict(binding.items()) if binding is not None else {}
            return found

        for host, prefix in unbind:
            if owners.pop((host, prefix), None) is not None:
                del prefixes_of(host)[prefix]
        for host, prefix, service in bind:
            owners[(host, prefix)] = service
            prefixes_of(host)[prefix] = service
        for host, prefixes in touched.items():
            if prefixes:
                hosts[host] = Binding(list(prefixes.items()))
            else:
                hosts.pop(host, None)
        new: ServiceMap[S] = ServiceMap.__new__(ServiceMap)
        new.owners = owners
        new._hosts = hosts
        new._catch_all = hosts.get("")
        new.rebuilt = len(touched)
        return new

    def bound_under(self, hosts: Iterable[str]) -> list[S]:
        """The services bound under these hosts (each once, in no particular order)."""
        found: dict[int, S] = {}
        for host in hosts:
            binding = self._hosts.get(host)
            if binding is not None:
                for _, service in binding.items():
                    found[id(service)] = service
        return list(found.values())

    def lookup(self, host: str, path: str) -> tuple[S, str] | None:
        """The service and the matched prefix for a request's Host header (port allowed) and path."""
        hosts = self._hosts
        binding = hosts.get(host)
        if binding is None:
            name = strip_port(host)
            binding = hosts.get(name)
            if binding is None:
                dot = name.find(".")
                if dot > 0:
                    binding = hosts.get("*" + name[dot:])
                if binding is None:
                    binding = self._catch_all
                    if binding is None:
                        return None
        return binding.match(path)

    def host_owner(self, host: str) -> S | None:
        """For a request no prefix matched: a service bound under the host that lookup consulted
        (its error pages answer the 404), or None when no binding applies."""
        name = strip_port(host)
        binding = self._hosts.get(name)
        if binding is None:
            dot = name.find(".")
            if dot > 0:
                binding = self._hosts.get("*" + name[dot:])
            if binding is None:
                binding = self._catch_all
        return binding.owner() if binding is not None else None

    def conflicts(self, service: S | None, hosts: Iterable[str], prefixes: Iterable[str]) -> bool:
        """Would binding ``service`` (None: a new one) to these (host, prefix) pairs take one from
        another service?"""
        prefixes = list(prefixes)
        for host in hosts:
            for prefix in prefixes:
                owner = self.owners.get((host, prefix))
                if owner is not None and owner is not service:
                    return True
        return False

    def __len__(self) -> int:
        return len(self.owners)


class _Bindings(Protocol):
    @property
    def hosts(self) -> tuple[str, ...]: ...

    @property
    def path_prefixes(self) -> tuple[str, ...]: ...


class _Routed(Protocol):
    @property
    def options(self) -> _Bindings: ...


R = TypeVar("R", bound=_Routed)


def bindings_of(options: _Bindings) -> list[tuple[str, str]]:
    """The (host, prefix) pairs a service with these options is bound under."""
    return [(host, prefix) for host in options.hosts for prefix in options.path_prefixes]


def rebind(
    routes: ServiceMap[R],
    *,
    unbind: list[tuple[str, str]],
    services: Iterable[R],
    sync: Callable[[Iterable[R], ServiceMap[R]], None],
) -> ServiceMap[R]:
    """``routes`` without the pairs of ``unbind`` (what changed and removed services were bound
    under), with ``services`` bound under their options' pairs; ``sync`` is then run over the
    services whose host-wide rules may have moved: these and every service sharing a host with a
    pair that changed."""
    services = list(services)
    bind = [(host, prefix, s) for s in services for host, prefix in bindings_of(s.options)]
    new = routes.changed(unbind=unbind, bind=bind)
    touched = {host for host, _ in unbind} | {host for host, _, _ in bind}
    affected = {id(s): s for s in services}
    for service in new.bound_under(touched):
        affected[id(service)] = service
    sync(affected.values(), new)
    return new
