"""The listening sockets, created once by the control process and kept open for the daemon's life.

Workers inherit them (``pass_fds``). Because the control process never closes them, a worker that
dies leaves its queue of not-yet-accepted connections in place, and its replacement, which inherits
the same sockets, accepts them: no connection is refused while a worker is replaced.

Two ways to share one port among N workers:
- one socket for all (``reuse_port=False``): every worker accepts from the same queue;
- one socket per worker slot with ``SO_REUSEPORT`` (``reuse_port=True``): the kernel spreads new
  connections over the sockets by a hash of the addresses.
``defaults.REUSE_PORT`` is the measured choice (README, Architecture: "Listening sockets").
"""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Listeners:
    port: int  # the port bound (what port 0 became)
    per_slot: tuple[tuple[socket.socket, ...], ...]  # the sockets worker slot i accepts from

    def close(self) -> None:
        for sockets in self.per_slot:
            for sock in sockets:
                sock.close()


def _addresses(host: str | None, port: int) -> list[tuple[socket.AddressFamily, tuple[str, int]]]:
    infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    seen: list[tuple[socket.AddressFamily, tuple[str, int]]] = []
    for family, _, _, _, address in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        entry = (family, (str(address[0]), int(address[1])))
        if entry not in seen:
            seen.append(entry)
    return seen


def _bind(
    family: socket.AddressFamily, address: tuple[str, int], *, reuse_port: bool, backlog: int
) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def open_listeners(*, host: str | None, port: int, slots: int, reuse_port: bool, backlog: int) -> Listeners:
    """Bind ``host`` (None: every interface) on ``port`` (0: any free port, the same for all sockets)."""
    addresses = _addresses(host, port)
    if not addresses:
        raise OSError(f"no address to listen on for {host!r}")
    made: list[list[socket.socket]] = [[] for _ in range(slots)]
    try:
        for family, (addr, _) in addresses:
            for i in range(slots if reuse_port else 1):
                sock = _bind(family, (addr, port), reuse_port=reuse_port, backlog=backlog)
                if port == 0:
                    port = sock.getsockname()[1]  # the other sockets take the same port
                for slot in (i,) if reuse_port else range(slots):
                    made[slot].append(sock)
    except BaseException:
        for sock in {s for slot in made for s in slot}:
            sock.close()
        raise
    return Listeners(port=port, per_slot=tuple(tuple(s) for s in made))
