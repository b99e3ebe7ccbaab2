"""Machinery for the end-to-end test: fake hosts with their own Docker engine, a registry, images.

* :class:`Netns` — a network namespace (``ip netns add``); each fake host's engine, containers and
  published ports live in one, so every host can publish 80/443 like a real server.
* :func:`in_netns` — switch the *calling thread* into a namespace (``setns(2)`` through ctypes);
  sockets created there stay there. Used for HTTP clients and the registry relay.
* :class:`Engine` — ``podman system service`` (Docker API) with its own ``--root/--runroot``,
  netavark + aardvark-dns (container DNS on the ``kamal`` network), started inside the host's netns.
* :class:`Registry` — Debian's ``docker-registry`` on 127.0.0.5 with htpasswd auth, and
  :class:`Relay` to make it reachable at the same address inside every host namespace.
* :class:`Builder` — ``podman build``/``push`` (root netns) for the app and proxy images.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CLONE_NEWNET = 0x40000000
REPO = Path(__file__).resolve().parents[3]
BUSYBOX = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.exists(p)), "/bin/busybox")
PODMAN = shutil.which("podman") or "/usr/bin/podman"
REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
ULIMITS = ["nofile=1024:1024", "nproc=1024:1024"]

_libc = ctypes.CDLL(None, use_errno=True)


def missing_prerequisites() -> str | None:
    """None when the end-to-end test can run here, else the precise reason to skip."""
    if sys.platform != "linux":
        return "needs Linux (network namespaces, podman)"
    if os.geteuid() != 0:
        return "needs root (network namespaces, rootful podman, sshd)"
    need = {
        PODMAN: "podman",
        "/usr/lib/podman/netavark": "netavark",
        "/usr/lib/podman/aardvark-dns": "aardvark-dns",
        REGISTRY_BIN: "docker-registry",
        BUSYBOX: "busybox-static",
        DOCKER: "the docker CLI (docker-ce-cli or docker.io)",
        "/usr/sbin/sshd": "openssh-server",
        "/usr/sbin/ip": "iproute2",
        "/usr/bin/nsenter": "util-linux (nsenter)",
        "/usr/sbin/debootstrap": "debootstrap (the proxy image's base)",
        shutil.which("pebble") or "/usr/bin/pebble": "pebble (the ACME CA of the ssl: true test)",
        shutil.which("pebble-challtestsrv") or "/usr/bin/pebble-challtestsrv": "pebble (pebble-challtestsrv)",
    }
    missing = [pkg for path, pkg in need.items() if not os.path.exists(path)]
    if not (shutil.which("runc") or os.path.exists("/usr/sbin/runc")):
        missing.append("runc")
    if missing:
        return (
            "end-to-end prerequisites missing: " + ", ".join(missing) + " (run tests/deployer/e2e/setup.sh)"
        )
    if subprocess.run([BUSYBOX, "--help"], capture_output=True).returncode not in (0, 1):
        return f"{BUSYBOX} does not run"
    if "statically linked" not in subprocess.run(
        ["file", "-L", BUSYBOX], capture_output=True, text=True
    ).stdout and not _is_static(BUSYBOX):
        return f"{BUSYBOX} is not statically linked (install busybox-static)"
    return None


def _is_static(path: str) -> bool:
    out = subprocess.run(["ldd", path], capture_output=True, text=True)
    return "not a dynamic executable" in (out.stdout + out.stderr)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def run(
    argv: list[str],
    *,
    timeout: float = 60,
    check: bool = True,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


# -- network namespaces ----------------------------------------------------------------------------
@contextlib.contextmanager
def in_netns(path: str) -> Iterator[None]:
    """Run the body with the calling thread in the network namespace at ``path``."""
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    there = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(there, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({path})")
        try:
            yield
        finally:
            if _libc.setns(here, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns(back)")
    finally:
        os.close(here)
        os.close(there)


@dataclass
class Netns:
    name: str

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def create(self) -> None:
        run(["ip", "netns", "add", self.name])
        run(["ip", "-n", self.name, "link", "set", "lo", "up"])

    def delete(self) -> None:
        run(["ip", "netns", "delete", self.name], check=False)

    def connect(self, address: tuple[str, int], timeout: float = 5) -> socket.socket:
        with in_netns(self.path):
            return socket.create_connection(address, timeout=timeout)

    def listening(self, port: int, host: str = "127.0.0.1") -> bool:
        try:
            self.connect((host, port), timeout=0.5).close()
            return True
        except OSError:
            return False


class NetnsHTTPConnection(http.client.HTTPConnection):
    def __init__(self, netns: Netns, host: str, port: int, timeout: float = 5) -> None:
        super().__init__(host, port, timeout=timeout)
        self.netns = netns

    def connect(self) -> None:
        self.sock = self.netns.connect((self.host, self.port), timeout=self.timeout or 5)


@dataclass
class Response:
    status: int
    body: str
    headers: dict[str, str]


def http_get(
    netns: Netns, path: str = "/", port: int = 80, host_header: str | None = None, timeout: float = 5
) -> Response:
    """GET http://127.0.0.1:<port><path> from inside ``netns`` (i.e. on that fake host)."""
    conn = NetnsHTTPConnection(netns, "127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host_header or "demo.example.test", "Connection": "close"})
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        return Response(resp.status, body, {k.lower(): v for k, v in resp.getheaders()})
    finally:
        conn.close()


def https_get(
    netns: Netns, server_name: str, path: str = "/", *, context: ssl.SSLContext, timeout: float = 5
) -> tuple[Response, dict[str, object]]:
    """GET https://<server_name><path> through 127.0.0.1:443 inside ``netns``, verified by
    ``context``; the response and the certificate the server presented (``getpeercert()``)."""
    sock = netns.connect(("127.0.0.1", 443), timeout=timeout)
    tls = context.wrap_socket(sock, server_hostname=server_name)
    try:
        cert = tls.getpeercert() or {}
        conn = http.client.HTTPConnection(server_name, 443, timeout=timeout)
        conn.sock = tls
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        return Response(resp.status, body, {k.lower(): v for k, v in resp.getheaders()}), dict(cert)
    finally:
        tls.close()


# -- relay: the registry at the same address inside every host namespace ---------------------------
class Relay:
    """Listen on ``address`` inside ``netns`` and forward each connection to ``address`` in the root
    namespace (the fake hosts' stand-in for "the registry is reachable from the server")."""

    def __init__(self, netns: Netns, address: tuple[str, int]) -> None:
        self.address = address
        with in_netns(netns.path):
            self.listener = socket.create_server(address)
        self.listener.settimeout(0.5)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True, name=f"relay-{netns.name}")
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.address, timeout=10)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()
        self.thread.join(2)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            with contextlib.suppress(OSError):
                s.shutdown(how)


# -- registry --------------------------------------------------------------------------------------
@dataclass
class Registry:
    """Debian's ``docker-registry`` on 127.0.0.1:<free port>, used as Kamal's *local registry*
    (``registry.server: localhost:<port>``: no ``docker login``)."""

    root: Path
    host: str = "127.0.0.1"
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def server(self) -> str:
        return f"localhost:{self.port}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port(self.host)
        (self.root / "config.yml").write_text(
            json.dumps(
                {
                    "version": 0.1,
                    "log": {"level": "warn", "accesslog": {"disabled": True}},
                    "storage": {
                        "filesystem": {"rootdirectory": str(self.root / "data")},
                        "delete": {"enabled": True},
                    },
                    "http": {"addr": f"{self.host}:{self.port}"},
                }
            )
        )
        log = (self.root / "registry.log").open("wb")
        self.proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(self.root / "config.yml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        _wait(
            lambda: _tcp_open((self.host, self.port)),
            10,
            f"registry on {self.server}",
            lambda: (self.root / "registry.log").read_text(),
        )

    def stop(self) -> None:
        _terminate(self.proc)


def _tcp_open(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=0.2).close()
        return True
    except OSError:
        return False


def _wait(cond: object, timeout: float, what: str, diag: object = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}" + (f":\n{diag()}" if diag else ""))  # type: ignore[operator]


def _terminate(proc: subprocess.Popen[bytes] | None) -> None:
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- podman engines --------------------------------------------------------------------------------
def _podman_conf(root: Path, registry: str) -> dict[str, str]:
    """containers.conf + registries.conf for one engine; returns the env that selects them."""
    (root / "containers.conf").write_text(
        "[network]\n"
        'network_backend = "netavark"\n'
        f'network_config_dir = "{root}/networks"\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f'tmp_dir = "{root}/tmp"\n'
        f'volume_path = "{root}/volumes"\n'
    )
    (root / "registries.conf").write_text(
        f'unqualified-search-registries = []\n[[registry]]\nlocation = "{registry}"\ninsecure = true\n'
    )
    return {
        **os.environ,
        "CONTAINERS_CONF": str(root / "containers.conf"),
        "CONTAINERS_REGISTRIES_CONF": str(root / "registries.conf"),
    }


@dataclass
class Engine:
    """One fake host's Docker engine: rootful podman serving the Docker API on a unix socket."""

    name: str
    root: Path
    registry: str
    netns: Netns | None = None
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return self.root / "podman.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def podman_argv(self, *args: str) -> list[str]:
        """``podman`` for this engine, in the host's network namespace and in a private mount
        namespace where ``/run/containers/networks`` is this engine's own directory: rootful
        netavark hard-codes that path for its IPAM database and the aardvark-dns config/pid files
        (it assumes one engine per network namespace), so engines would otherwise share one
        aardvark-dns, living in whichever namespace started it first."""
        ns = ["nsenter", f"--net={self.netns.path}"] if self.netns else []
        netrun = self.root / "netavark-run"
        return [
            *ns,
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            'mount --bind "$0" /run/containers/networks && exec "$@"',
            str(netrun),
            PODMAN,
            "--root",
            str(self.root / "storage"),
            "--runroot",
            str(self.root / "run"),
            "--tmpdir",
            str(self.root / "tmp"),
            *args,
        ]

    def podman(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(self.podman_argv(*args), timeout=timeout, check=check, env=self.env)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "netavark-run").mkdir(exist_ok=True)
        Path("/run/containers/networks").mkdir(parents=True, exist_ok=True)
        self.env = _podman_conf(self.root, self.registry)
        log = (self.root / "service.log").open("wb")
        # Note: nsenter, not `ip netns exec` — the latter remounts /sys and hides the cgroup mounts.
        self.proc = subprocess.Popen(
            self.podman_argv("system", "service", "--time", "0", self.docker_host),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.root,
        )
        _wait(
            lambda: self.socket.exists() and self.docker("version", check=False).returncode == 0,
            20,
            f"podman service {self.name}",
            lambda: (self.root / "service.log").read_text(),
        )

    def docker(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_HOST": self.docker_host, "HOME": str(self.root)}
        return run([DOCKER, *args], timeout=timeout, check=check, env=env)

    def ps(self, all_: bool = False) -> list[dict[str, str]]:
        out = self.docker("ps", *(["--all"] if all_ else []), "--no-trunc", "--format", "{{json .}}").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            ids = self.docker("ps", "--all", "--quiet", check=False).stdout.split()
            if ids:
                self.docker("rm", "--force", *ids, check=False)
        _terminate(self.proc)
        if self.env:
            self.podman("system", "reset", "--force", timeout=60, check=False)
        _kill_processes_under(self.root)
        _unmount_under(self.root)


def _kill_processes_under(root: Path) -> None:
    """Kill what this engine left behind (e.g. conmon of exec sessions, which lingers for 300 s):
    processes whose command line names this engine's private directory."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if f"{root}/" in cmdline:
            with contextlib.suppress(OSError):
                os.kill(int(proc.name), 9)


def _unmount_under(root: Path) -> None:
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(str(root) + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)


# -- the docker CLI on the fake hosts --------------------------------------------------------------
DOCKER_SHIM = """#!{python}
# `docker` on the fake hosts: the real CLI, minus two podman 4.3 Docker-API incompatibilities
# (see the test module's docstring). Everything else is passed through unchanged.
import os, subprocess, sys

REAL = {docker!r}
args = sys.argv[1:]
out, i = [], 0
while i < len(args):
    # podman rejects the `restarting` state filter ("unknown container state: restarting")
    if args[i] == "--filter" and i + 1 < len(args) and args[i + 1] == "status=restarting":
        i += 2
        continue
    out.append(args[i])
    i += 1
if args[:2] not in (["image", "ls"], ["images"]) or "--format" not in args:
    os.execv(REAL, [REAL, *out])
# podman prints an image once per tag even when --filter reference= matches only one of them
proc = subprocess.run([REAL, *out], stdout=subprocess.PIPE)
sys.stdout.write("".join(dict.fromkeys(proc.stdout.decode().splitlines(keepends=True))))
sys.exit(proc.returncode)
"""


def docker_shim(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / "docker"
    shim.write_text(DOCKER_SHIM.format(python=sys.executable, docker=DOCKER))
    shim.chmod(0o755)
    return directory


# -- images ----------------------------------------------------------------------------------------
# httpd -vv logs each request (`ip:port: url:/path` and `ip:port: response:200`) to stderr, i.e. to the container's log
APP_CMD = '["/bin/sh", "-c", "trap \'exit 0\' TERM; /bin/httpd -f -vv -p 80 -h /www & wait"]'


def app_context(dest: Path, version: str, healthy: bool = True) -> Path:
    """A FROM-scratch busybox image whose httpd serves ``/`` (the version) and ``/up``."""
    (dest / "rootfs" / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, dest / "rootfs" / "bin" / "busybox")
    for applet in ("sh", "httpd", "wget", "cat", "ls", "sleep"):
        (dest / "rootfs" / "bin" / applet).symlink_to("busybox")
    www = dest / "www"
    www.mkdir()
    (www / "index.html").write_text(f"demo version {version}\n")
    if healthy:
        (www / "up").write_text("ok\n")
    (dest / "Dockerfile").write_text(
        f"FROM scratch\nCOPY rootfs/ /\nCOPY www/ /www/\nEXPOSE 80\nCMD {APP_CMD}\n"
    )
    return dest


@dataclass
class Builder:
    """Local image builds: plain ``podman build`` + ``podman push`` in the root namespace."""

    root: Path
    registry: Registry
    env: dict[str, str] = field(default_factory=dict)

    def podman(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        if not self.env:
            self.root.mkdir(parents=True, exist_ok=True)
            self.env = _podman_conf(self.root, self.registry.server)
        return run(
            [
                PODMAN,
                "--root",
                str(self.root / "storage"),
                "--runroot",
                str(self.root / "run"),
                "--tmpdir",
                str(self.root / "tmp"),
                *args,
            ],
            timeout=timeout,
            env=self.env,
        )

    def build_and_push(self, context: Path, ref: str, labels: dict[str, str] | None = None) -> None:
        label_args = [a for k, v in (labels or {}).items() for a in ("--label", f"{k}={v}")]
        self.podman("build", "--quiet", "--network", "none", *label_args, "-t", ref, str(context))
        self.podman("push", "--quiet", "--tls-verify=false", ref)

    def cleanup(self) -> None:
        if self.env:
            self.podman("system", "reset", "--force", timeout=60)
        _unmount_under(self.root)
