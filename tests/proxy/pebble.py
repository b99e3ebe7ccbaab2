"""Pebble (Let's Encrypt's test CA) and pebble-challtestsrv (its DNS, answering 127.0.0.1) on loopback.

Pebble validates HTTP-01 at ``http_port`` and TLS-ALPN-01 at ``tls_port``: the tests point those at
the proxy's listeners. Its own HTTPS certificate comes from a CA made at test time (``ca_file``),
which the proxy trusts through SSL_CERT_FILE. Pebble's orders are counted from its log.

The deployer's end-to-end loop runs it inside a fake host's network namespace (``namespace``: the
processes start and the test's own connections are made there), listening on every address so the
proxy container reaches it through its network's gateway (``listen``, ``names`` for its certificate).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from tests.proxy.certs import CA

PEBBLE = shutil.which("pebble")
CHALLTESTSRV = shutil.which("pebble-challtestsrv")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Pebble:
    def __init__(
        self,
        tmp: Path,
        *,
        validity: int = 0,
        eab: dict[str, str] | None = None,
        listen: str = "127.0.0.1",
        names: tuple[str, ...] = ("localhost", "127.0.0.1"),
        namespace: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> None:
        self.tmp = tmp
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.validity = validity
        self.eab = eab or {}
        self.listen = listen
        self.namespace = namespace
        self.ca = CA.create("Pebble front CA")
        self.ca_file = self.ca.write_ca(tmp / "pebble-front-ca.pem")
        self.cert, self.key = self.ca.write_leaf(tmp, *names, stem="pebble")
        self.port = free_port()
        self.management_port = free_port()
        self.dns_port = free_port()
        self.dns_management_port = free_port()
        self.log_path = tmp / "pebble.log"
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self, *, http_port: int, tls_port: int) -> Pebble:
        with self.namespace():
            return self._start(http_port=http_port, tls_port=tls_port)

    def _start(self, *, http_port: int, tls_port: int) -> Pebble:
        config = {
            "pebble": {
                "listenAddress": f"{self.listen}:{self.port}",
                "managementListenAddress": f"{self.listen}:{self.management_port}",
                "certificate": str(self.cert),
                "privateKey": str(self.key),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": bool(self.eab),
                "externalAccountMACKeys": self.eab,
                "domainBlocklist": ["blocked.example.com"],
                **({"certificateValidityPeriod": self.validity} if self.validity else {}),
            }
        }
        config_path = self.tmp / "pebble.json"
        config_path.write_text(json.dumps(config))
        assert PEBBLE and CHALLTESTSRV
        log = open(self.log_path, "ab")
        self.procs.append(
            subprocess.Popen(
                [
                    CHALLTESTSRV,
                    "-dns01",
                    f"127.0.0.1:{self.dns_port}",
                    "-http01",
                    "",
                    "-https01",
                    "",
                    "-tlsalpn01",
                    "",
                    "-management",
                    f"127.0.0.1:{self.dns_management_port}",
                    "-defaultIPv6",
                    "",
                    "-defaultIPv4",
                    "127.0.0.1",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        env = {
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": "0",
            "PEBBLE_AUTHZREUSE": "0",
            "PATH": "/usr/bin:/bin",
        }
        self.procs.append(
            subprocess.Popen(
                [PEBBLE, "-config", str(config_path), "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                socket.create_connection(("127.0.0.1", self.management_port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("pebble did not start: " + self.log_path.read_text())

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs = []

    def orders(self) -> int:
        """Orders Pebble has taken since it started (it logs each one)."""
        return self.log_path.read_text(errors="replace").count("Added order")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def root_pem(self) -> bytes:
        """Pebble's issuing root (new at every start), to verify the certificates it issued."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        url = f"https://127.0.0.1:{self.management_port}/roots/0"
        with self.namespace(), urllib.request.urlopen(url, context=ctx, timeout=10) as response:
            return bytes(response.read())
