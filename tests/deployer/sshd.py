"""A throwaway OpenSSH server on loopback addresses, one "host" per 127.0.0.x address.

Each host gets its own working directory (sshd ``Match LocalAddress`` + ``ForceCommand``), so relative
paths like ``.kamal/…`` land in ``<tmp>/hosts/<addr>`` instead of the real home directory, and its own
environment (``SetEnv``), e.g. a per-host ``DOCKER_HOST``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def sshd_available() -> str | None:
    """None if usable, else the reason to skip."""
    if not os.path.exists(SSHD):
        return "sshd not installed (apt-get install openssh-server)"
    if os.geteuid() != 0:
        return "the sshd end-to-end tests need root (to log in over ssh as the current user with StrictModes off)"
    if not shutil.which("ssh-keygen") or not shutil.which("ssh"):
        return "openssh-client (ssh, ssh-keygen) not installed"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SshServer:
    root: Path
    hosts: list[str]
    port: int
    env: dict[str, dict[str, str]] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.root / "sshd.log"

    @property
    def client_config(self) -> Path:
        return self.root / "ssh_config"

    def host_dir(self, host: str) -> Path:
        return self.root / "hosts" / host

    def connections_to(self, host: str) -> int:
        text = self.log.read_text() if self.log.exists() else ""
        return sum(
            1
            for line in text.splitlines()
            if "Connection from" in line and f" on {host} port {self.port}" in line
        )

    def start(self) -> None:
        (self.root / "hosts").mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
        subprocess.run([*keygen, "-f", str(self.root / "host_key")], check=True)
        subprocess.run([*keygen, "-f", str(self.root / "id_ed25519")], check=True)
        shutil.copy(self.root / "id_ed25519.pub", self.root / "authorized_keys")
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        lines = [
            f"Port {self.port}",
            *[f"ListenAddress {h}" for h in self.hosts],
            f"HostKey {self.root / 'host_key'}",
            f"PidFile {self.root / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            "StrictModes no",
            "LogLevel VERBOSE",
            "MaxStartups 200",
            "MaxSessions 100",
            "PermitUserEnvironment no",
        ]
        for host in self.hosts:
            hdir = self.host_dir(host)
            hdir.mkdir(parents=True, exist_ok=True)
            env = {"HOME": str(hdir), **self.env.get(host, {})}
            lines += [
                f"Match LocalAddress {host}",
                "  SetEnv " + " ".join(f"{k}={v}" for k, v in env.items()),
                f'  ForceCommand cd {hdir} && exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"',
            ]
        (self.root / "sshd_config").write_text("\n".join(lines) + "\n")
        self.client_config.write_text(
            "Host *\n"
            f"  IdentityFile {self.root / 'id_ed25519'}\n"
            f"  UserKnownHostsFile {self.root / 'known_hosts'}\n"
            "  StrictHostKeyChecking accept-new\n"
            "  IdentitiesOnly yes\n"
            "  LogLevel ERROR\n"
        )
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-f", str(self.root / "sshd_config"), "-E", str(self.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"sshd exited {self.proc.returncode}: {err} {self.log.read_text()}")
            try:
                with socket.create_connection((self.hosts[0], self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
