"""The control plane in-process: Router + ControlServer over a temp state file, a ManualClock and a
fake health prober, so deploys, health checks and drains are tested without a subprocess or sleeps."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from proxy.control import MAX_REQUEST, ControlServer
from proxy.log import JsonLog
from proxy.router import ControlError, DataPlane, InProcessDataPlane, Router
from proxy.state import StateFile
from tests.proxy.manual_clock import ManualClock, settle


class CapturedLog(JsonLog):
    """A JsonLog whose lines stay in memory for the test to read."""

    def __init__(self) -> None:
        super().__init__(fd=-1)
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)

    def entries(self, msg: str | None = None) -> list[dict[str, Any]]:
        parsed = [json.loads(line) for line in self.lines]
        return [e for e in parsed if msg is None or e["msg"] == msg]


class FakeProbe:
    """Health checks without HTTP: each target answers ``status[address]`` (200 unless set; 0 means
    the connection is refused; ``hang`` never answers). Records (time, address) of every check."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.status: dict[str, int] = {}
        self.hang: set[str] = set()
        self.calls: list[tuple[float, str]] = []

    async def __call__(self, url: str, host_header: str) -> int:
        address = urlsplit(url).netloc
        self.calls.append((self.clock.time(), address))
        if address in self.hang:
            await asyncio.get_running_loop().create_future()
        status = self.status.get(address, 200)
        if status == 0:
            raise ConnectionRefusedError("connection refused")
        return status

    def checks_of(self, address: str) -> int:
        return sum(1 for _, a in self.calls if a == address)


class ControlPlane:
    def __init__(self, tmp: Path, *, dataplane: DataPlane | None = None) -> None:
        self.clock = ManualClock(settle_rounds=50)
        self.probe = FakeProbe(self.clock)
        self.state = StateFile(path=tmp / "state" / "kamal-proxy.state")
        self.log = CapturedLog()
        self.router = Router(
            log=self.log,
            state=self.state,
            dataplane=dataplane if dataplane is not None else InProcessDataPlane(),
            clock=self.clock,
            prober=self.probe,
        )
        self.server = ControlServer(
            path=tmp / "control.sock", handler=self.router.handle, errors=(ControlError,), log=self.log
        )

    async def send(self, request: dict[str, Any] | bytes) -> dict[str, Any]:
        """One request through the control server's reading, decoding and dispatch (no socket)."""
        line = request if isinstance(request, bytes) else json.dumps(request).encode() + b"\n"
        reader = asyncio.StreamReader(limit=MAX_REQUEST)
        reader.feed_data(line)
        reader.feed_eof()
        return await self.server.answer(reader)

    def start(self, request: dict[str, Any]) -> asyncio.Task[dict[str, Any]]:
        """Send without waiting (a deploy that waits for health checks)."""
        return asyncio.get_running_loop().create_task(self.send(request))

    async def ok(self, request: dict[str, Any]) -> Any:
        reply = await self.send(request)
        assert reply["ok"] is True, reply
        return reply["result"]

    async def listing(self) -> dict[str, Any]:
        result = await self.ok({"command": "list", "args": {}})
        assert isinstance(result, dict)
        return result

    def state_bytes(self) -> bytes | None:
        try:
            return self.state.path.read_bytes()
        except FileNotFoundError:
            return None

    def backend_of(self, host: str = "", path: str = "/") -> list[str] | None:
        """The active target addresses the routing snapshot sends (host, path) to."""
        found = self.router.routes.lookup(host, path)
        return None if found is None else found[0].active.addresses

    async def settle(self) -> None:
        await settle(20)

    async def close(self) -> None:
        await self.router.close()
        await settle()
        self.log.close()


def deploy(service: str, *targets: str, hosts: list[str] | None = None, **deployment: Any) -> dict[str, Any]:
    """A deploy request as the CLI sends it (defaults for everything not given)."""
    return {
        "command": "deploy",
        "args": {
            "service": service,
            "targets": list(targets),
            "service_options": {"hosts": hosts or []},
            "target_options": {"health_check_config": {"interval": 1_000_000_000}},
            "deployment_options": deployment,
        },
    }


def run(coro: Any) -> Any:
    return asyncio.run(coro)
