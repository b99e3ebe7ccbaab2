"""The routing snapshot: host → path prefixes → service, immutable once published.

Lookup (kamal-proxy's rules): bindings of the exact host, else of `*` + the host from its first
`.`, else of the catch-all `""`; only the first of these that exists is consulted. Within a host,
prefixes are tried longest first; `/api` matches `/api`, `/api/` and `/api/x`, not `/apiary`.
Host lookup is one dict access whatever the number of services.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

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
