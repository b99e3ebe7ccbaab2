"""End to end: the deployer CLI drives real "hosts" over SSH, each with a real Docker-API engine,
running this repository's proxy, and we assert on what a user sees through each host's proxy.

What is real
    * ``python -m deployer.cli`` from a temporary project (config/deploy.yml + .kamal/secrets),
      exactly as a user runs it; nothing in-process is patched.
    * OpenSSH: one ``sshd`` on 127.0.0.2, 127.0.0.3 and 127.0.0.4 (the third host is added to the
      config later, for ``deploy --hosts``). ``Match LocalAddress`` gives each host its own working
      directory and ``DOCKER_HOST`` (tests/deployer/sshd.py).
    * The Docker CLI (``docker`` 28 from the image) on each host, talking to that host's own engine:
      Debian's podman 4.3 serving the Docker API (``podman system service``) with its own
      ``--root/--runroot``, runc, netavark and aardvark-dns. Each engine runs inside its own network
      namespace, so every host publishes 80/443 like a real server (``proxy.run`` keeps its defaults)
      and has its own ``kamal`` network (10.89.0.0/24) with container DNS.
    * Kamal's addressing: the proxy reaches the app as ``<short container id>:80`` through aardvark-dns
      on the ``kamal`` network, as Docker's embedded DNS does in production (checked below against
      ``kamal-proxy list``).
    * The proxy container runs *our* proxy image, ``kamal-proxy run``, as the non-root ``kamal-proxy`` user,
      state in the ``kamal-proxy-config`` volume at /home/kamal-proxy/.config/kamal-proxy, booted by
      the deployer from ``proxy.run`` (registry/repository/version) and driven with
      ``docker exec kamal-proxy kamal-proxy deploy|stop|resume|remove``.
    * App images ``FROM scratch`` with busybox-static: ``httpd`` serves ``/`` (the version) and ``/up``;
      v3 has no ``/up``, so its health check fails. ``httpd -vv`` logs every request (path and
      status) to the container's log, which ``app logs`` / ``app logs -f`` show. Images carry the ``service=demo`` label the
      deployer verifies after pulling.
    * Debian's ``docker-registry`` on 127.0.0.1:<free port>; the hosts pull from it.

What differs from production, and how the behaviour is still covered
    * Images are built and pushed by the test (``podman build`` + ``podman push``) and every deploy
      uses ``-P`` (skip push): the deployer builds with ``docker buildx build --output=type=registry``,
      and buildx does not work against podman's Docker API. The pull/verify/boot half of ``deploy`` is
      unchanged; the build command itself is covered by tests/deployer/test_commands_other.py.
    * The registry is Kamal's *local registry* form (``server: localhost:<port>``, no ``docker login``):
      podman's Docker-API ``/auth`` only skips TLS for ``localhost``, so logging in to a plain-HTTP
      registry at another address fails. Kamal reaches a local registry from a server through an SSH
      port forward; here a relay inside each host's namespace (``env.Relay``) plays that part, since
      the engines live in their own namespaces. ``docker login`` is covered by the command tests.
    * The proxy image is built from the repository's ``Dockerfile`` by the test (conftest.py,
      image.py) on a local Debian bookworm base made with debootstrap instead of python:3.11-slim
      (Docker Hub cannot be reached here), with its wheels from a directory mounted into the build.
    * ``proxy.run.options`` and ``servers.web.options`` add ``--ulimit nofile=1024:1024 --ulimit
      nproc=1024:1024`` (podman otherwise asks for rlimits above this sandbox's hard limits), and the
      proxy gets ``--sysctl net.ipv4.ip_unprivileged_port_start=0``, which Docker sets by default in a
      container's own network namespace but podman 4.3 does not (without it the non-root proxy cannot
      bind :80).
    * Each engine gets a private ``/run/containers/networks`` (bind mount in its own mount
      namespace): rootful netavark hard-codes that directory for its IPAM db and aardvark-dns state,
      assuming one engine per network namespace.
    * ``docker`` on the hosts is a thin shim (``env.DOCKER_SHIM``) around the real CLI that works
      around two podman 4.3 Docker-API incompatibilities the deployer's Kamal-identical commands hit:
      podman rejects ``docker ps --filter status=restarting`` ("unknown container state"), which would
      make every "current version" lookup empty (old containers never stopped, no rollback target),
      and ``docker image ls --filter reference=repo:latest --format {{.ID}}`` prints the ID once per
      tag, which breaks ``--filter ancestor=$(…)``. The shim drops that filter and de-duplicates those
      lines; every other argument reaches the real CLI unchanged.
    * aardvark-dns 1.4 drops queries while it reloads its config (each container start/stop on the
      ``kamal`` network); glibc then waits for its resolver timeout. The proxy resolves its target on
      each new upstream connection, so requests during a reload stall; the proxy container gets
      ``--dns-option timeout:1`` (``proxy.run.options``) and the load clients allow 15 s per request.
      Docker's embedded DNS does not drop queries. Occasionally (≈1 run in 3 here) a request still
      gets a 502 during a deploy/rollback after such a stall; the test reports it with the proxy's
      non-200 log lines — see the report for the open question of whether that is the environment or
      the proxy.
    * Requests are made from inside each host's namespace to 127.0.0.1:80 (``env.http_get``), i.e. the
      way a client on the server's own address would reach the published port.
    * ``app logs -f`` and ``app exec -i`` ``exec`` a local ``ssh -t``; the test runs them under a
      pseudo-terminal (``Terminal``), as from a user's shell, so ssh allocates a remote tty and
      ``docker exec -it`` / ``docker run -it`` get one.
    * TLS (the last test, ``proxy: ssl: true`` on one host): the certificate comes from Pebble, Let's
      Encrypt's test CA, instead of Let's Encrypt. It runs inside that host's namespace with
      pebble-challtestsrv as its DNS (every name → 127.0.0.1, i.e. the ports the proxy publishes
      there), so HTTP-01 and TLS-ALPN-01 validations reach the proxy as Let's Encrypt's would reach a
      server's public address. The proxy container gets, through ``proxy.run.options`` as a Kamal user
      would write them, ``--env KAMAL_PROXY_TLS_ACME_DIRECTORY=https://<kamal gateway>:<port>/dir``
      (our extension; ``deploy`` reads it from the environment ``docker exec`` inherits) and
      ``SSL_CERT_FILE`` pointing at Pebble's HTTPS CA mounted with ``--volume``. The client trusts
      Pebble's issuing root, fetched from its management API (``/roots/0``).
    * No accessories, a single role.
"""

from __future__ import annotations

import fcntl
import os
import select
import ssl
import struct
import subprocess
import sys
import termios
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deployer.e2e import env
from tests.deployer.e2e.conftest import PROXY_REPOSITORY, PROXY_VERSION
from tests.deployer.sshd import SshServer, free_port, sshd_available
from tests.proxy.pebble import Pebble

HOSTS = ["127.0.0.2", "127.0.0.3"]
NEW_HOST = "127.0.0.4"
ALL_HOSTS = [*HOSTS, NEW_HOST]
SERVICE = "demo"
TLS_HOST = "secure.example.test"  # the app's name with `proxy: ssl: true` (the last test)
DEPLOY_TIMEOUT = 8

# Slow (podman engines in network namespaces): a separate pytest run in `make test`, or `make test-e2e`.
pytestmark = [pytest.mark.timeout(120), pytest.mark.e2e]


@dataclass
class Host:
    address: str
    netns: env.Netns
    engine: env.Engine
    relay: env.Relay | None = None


@dataclass
class World:
    root: Path
    project: Path
    ssh: SshServer
    registry: env.Registry
    hosts: dict[str, Host] = field(default_factory=dict)

    def config(self, hosts: list[str]) -> dict[str, Any]:
        ulimits = list(env.ULIMITS)
        return {
            "service": SERVICE,
            "image": SERVICE,
            "servers": {"web": {"hosts": hosts, "options": {"ulimit": ulimits}}},
            "registry": {"server": self.registry.server},
            "builder": {"arch": "amd64"},
            "env": {"clear": {"GREETING": "hello"}, "secret": ["DEMO_SECRET"]},
            "ssh": {"user": "root", "port": self.ssh.port, "config": str(self.ssh.client_config)},
            "proxy": {
                "app_port": 80,
                "healthcheck": {"path": "/up", "interval": 1, "timeout": 2},
                "run": {
                    "registry": self.registry.server,
                    "repository": PROXY_REPOSITORY,
                    "version": PROXY_VERSION,
                    "options": {
                        "ulimit": ulimits,
                        "sysctl": "net.ipv4.ip_unprivileged_port_start=0",
                        "dns-option": "timeout:1",
                    },
                },
            },
            "deploy_timeout": DEPLOY_TIMEOUT,
            "drain_timeout": 2,
            "retain_containers": 5,
        }

    def write_config(self, hosts: list[str]) -> None:
        (self.project / "config" / "deploy.yml").write_text(
            yaml.safe_dump(self.config(hosts), sort_keys=False)
        )

    def deployer(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "deployer.cli", *args],
            cwd=self.project,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONPATH": str(env.REPO), "NO_COLOR": "1"},
        )
        print(f"$ deployer {' '.join(args)}  → exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        if proc.returncode != 0:
            print(self.diagnostics())
        return proc

    def proxy_log_problems(self) -> str:
        """The proxy's log lines that are not INFO requests answered 200 (for failed load checks)."""
        out = []
        for address, host in self.hosts.items():
            logs = host.engine.docker("logs", "kamal-proxy", check=False).stdout.splitlines()
            out += [f"{address} {line}" for line in logs if '"status":200' not in line]
        return "\n".join(out[-60:])

    def diagnostics(self) -> str:
        """docker ps and the proxy's last log lines on every host (printed when a command fails)."""
        out = []
        for address, host in self.hosts.items():
            ps = host.engine.docker("ps", "--all", check=False).stdout
            logs = host.engine.docker("logs", "--tail", "40", "kamal-proxy", check=False)
            out.append(f"--- {address}\n{ps}{logs.stdout}{logs.stderr}")
        return "\n".join(out)

    def get(self, host: str, path: str = "/", timeout: float = 5) -> env.Response:
        return env.http_get(self.hosts[host].netns, path, timeout=timeout)

    def containers(self, host: str) -> dict[str, str]:
        """name → state for every container on the host (``docker ps --all``)."""
        return {c["Names"]: c["State"] for c in self.hosts[host].engine.ps(all_=True)}

    def running(self, host: str) -> set[str]:
        return {n for n, state in self.containers(host).items() if state == "running"}


class Terminal:
    """``python -m deployer.cli ARGS`` under a pseudo-terminal, as a user runs ``app logs -f`` or
    ``app exec -i``: the deployer ``exec``s ``ssh -t``, which only allocates a remote tty (and so
    ``docker … -it`` only works) when its own stdin is a terminal."""

    def __init__(self, world: World, *args: str) -> None:
        self.args = args
        controller, terminal = os.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
        self.fd = controller
        self.output = b""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deployer.cli", *args],
            cwd=world.project,
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            start_new_session=True,  # its own session: signals and hangups stay away from pytest
            env={**os.environ, "PYTHONPATH": str(env.REPO), "NO_COLOR": "1", "TERM": "xterm"},
        )
        os.close(terminal)

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace").replace("\r", "")

    def _read(self, timeout: float) -> bool:
        """Append what arrives within ``timeout``; False once the terminal is closed (child gone)."""
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: every process holding the terminal has exited
            return False
        self.output += data
        return bool(data)

    def expect(self, needle: str, timeout: float) -> bool:
        """Wait until ``needle`` appears in the output (True), or timeout / end of output (False)."""
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(min(left, 0.2)):
                return needle in self.text
        return True

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self, timeout: float) -> int | None:
        """Drain the output until the process exits (its exit status) or ``timeout`` (None)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(min(deadline - time.monotonic(), 0.2)):
            pass
        try:
            return self.proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        os.close(self.fd)
        print(f"$ deployer {' '.join(self.args)}  (tty) → exit {self.proc.returncode}\n{self.text}")


def _start_host(world: World, address: str, index: int) -> None:
    netns = env.Netns(f"e2e{os.getpid()}h{index}")
    netns.create()
    engine = env.Engine(address, world.root / f"host{index}", world.registry.server, netns)
    host = Host(address, netns, engine)
    world.hosts[address] = host
    host.relay = env.Relay(netns, (world.registry.host, world.registry.port))
    engine.start()


@pytest.fixture(scope="module")
def world(e2e_root: Path, registry: env.Registry, builder: env.Builder, proxy_image: str) -> Iterator[World]:
    reason = sshd_available()
    if reason:
        pytest.skip(reason)
    root = e2e_root / "loop"
    project = root / "project"
    ssh = SshServer(root / "sshd", ALL_HOSTS, free_port())
    world = World(root, project, ssh, registry)
    try:
        shim = env.docker_shim(root / "shim")
        path = f"{shim}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ssh.env = {
            a: {"DOCKER_HOST": f"unix://{root}/host{i}/podman.sock", "PATH": path}
            for i, a in enumerate(ALL_HOSTS)
        }
        ssh.start()
        threads = [threading.Thread(target=_start_host, args=(world, a, i)) for i, a in enumerate(ALL_HOSTS)]
        for t in threads:
            t.start()
        for version, healthy in (("v1", True), ("v2", True), ("v3", False)):
            builder.build_and_push(
                env.app_context(root / f"app-{version}", version, healthy),
                f"{registry.server}/{SERVICE}:{version}",
                {"service": SERVICE},
            )
        for t in threads:
            t.join(60)
        for address in ALL_HOSTS:
            if (
                address not in world.hosts
                or world.hosts[address].engine.docker("version", check=False).returncode != 0
            ):
                raise RuntimeError(f"engine for {address} did not start")
        (project / "config").mkdir(parents=True)
        (project / ".kamal").mkdir()
        (project / ".kamal" / "secrets").write_text("DEMO_SECRET=s3cret-value\n")
        world.write_config(HOSTS)
        yield world
    finally:
        for host in world.hosts.values():
            try:
                host.engine.stop()
            finally:
                if host.relay:
                    host.relay.close()
                host.netns.delete()
        ssh.stop()


class Load:
    """A few threads doing GET / through the proxies of ``hosts`` until stopped."""

    def __init__(self, world: World, hosts: list[str], threads_per_host: int = 2) -> None:
        self.world = world
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.bodies: Counter[str] = Counter()
        self.errors: list[str] = []
        self.slowest = 0.0
        self.threads = [
            threading.Thread(target=self._loop, args=(h,), daemon=True)
            for h in hosts
            for _ in range(threads_per_host)
        ]

    def _loop(self, host: str) -> None:
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                # generous timeout: a request held for a few seconds is slow, not failed (see below)
                r = self.world.get(host, timeout=15)
                outcome = r.body.strip() if r.status == 200 else None
                error = None if r.status == 200 else f"{host}: HTTP {r.status} {r.body[:80]!r}"
            except Exception as e:
                outcome, error = None, f"{host}: {e!r}"
            with self.lock:
                self.slowest = max(self.slowest, time.monotonic() - started)
                if outcome:
                    self.bodies[f"{host} {outcome}"] += 1
                if error:
                    self.errors.append(error)
            time.sleep(0.01)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)
        self.stop_event.set()
        for t in self.threads:
            t.join(20)
        print(
            f"load: {self.total} requests, {len(self.errors)} errors, slowest {self.slowest:.2f}s, "
            f"{dict(self.bodies)}"
        )

    @property
    def total(self) -> int:
        return sum(self.bodies.values()) + len(self.errors)


def assert_serving(world: World, hosts: list[str], version: str) -> None:
    for host in hosts:
        r = world.get(host)
        assert (r.status, r.body.strip()) == (200, f"demo version {version}"), host


# -- the loop, in order ----------------------------------------------------------------------------
# the first test also waits for the session fixtures: the proxy image (a cold debootstrap of its
# base takes about a minute) and the hosts
@pytest.mark.timeout(600)
def test_setup_deploys_v1_to_fresh_hosts(world: World) -> None:
    for host in HOSTS:
        assert world.containers(host) == {}, "fresh hosts start without containers"
    result = world.deployer("setup", "-P", "--version", "v1")
    assert result.returncode == 0, result.stderr
    assert_serving(world, HOSTS, "v1")
    for host in HOSTS:
        assert world.running(host) == {"kamal-proxy", "demo-web-v1"}
        engine = world.hosts[host].engine
        # Kamal's addressing: the proxy's target is the app container's *short id* on the kamal network
        cid = engine.docker(
            "container", "ls", "--all", "--filter", "name=^demo-web-v1$", "--quiet"
        ).stdout.strip()
        listing = engine.docker("exec", "kamal-proxy", "kamal-proxy", "list").stdout
        assert f"{cid}:80" in listing, listing
        assert len(cid) == 12
        # the container got the clear env, the secret via the uploaded env file, and Kamal's own vars
        envs = engine.docker("inspect", "demo-web-v1", "--format", "{{json .Config.Env}}").stdout
        for expected in (
            "GREETING=hello",
            "DEMO_SECRET=s3cret-value",
            "KAMAL_VERSION=v1",
            f"KAMAL_HOST={host}",
            "KAMAL_CONTAINER_NAME=demo-web-v1",
        ):
            assert expected in envs
        # our proxy runs as the non-root kamal-proxy user and keeps its state in the config volume
        user = engine.docker("inspect", "kamal-proxy", "--format", "{{.Config.User}}").stdout.strip()
        assert user == "kamal-proxy:kamal-proxy"
        state = engine.docker(
            "exec", "kamal-proxy", "cat", "/home/kamal-proxy/.config/kamal-proxy/kamal-proxy.state"
        ).stdout
        assert "demo-web" in state


def test_app_logs_show_the_running_containers_requests(world: World) -> None:
    for host in HOSTS:
        assert world.get(host, f"/logs-{host}").status == 404  # httpd -vv logs the path
    result = world.deployer("app", "logs", "-n", "5")
    assert result.returncode == 0, result.stderr
    for host in HOSTS:
        assert f"App Host: {host}" in result.stdout
        assert f"url:/logs-{host}" in result.stdout, result.stdout
    other = HOSTS[1]
    assert f"url:/logs-{other}" not in result.stdout.split(f"App Host: {other}")[0]  # per host
    grep = world.deployer("app", "logs", "--grep", f"logs-{HOSTS[0]}")
    assert grep.returncode == 0, grep.stderr
    assert f"url:/logs-{HOSTS[0]}" in grep.stdout and f"url:/logs-{HOSTS[1]}" not in grep.stdout


def test_app_logs_follow_streams_new_lines(world: World) -> None:
    host = HOSTS[1]  # -f follows one host: the first --hosts entry (default: the primary host)
    world.get(host, "/before-follow")
    term = Terminal(world, "app", "logs", "-f", "-n", "3", "--hosts", host)
    try:
        assert term.expect("url:/before-follow", 15), term.text  # --tail 3 of what is there
        marker = f"/after-follow-{time.monotonic_ns()}"
        assert world.get(host, marker).status == 404
        assert term.expect(f"url:{marker}", 10), term.text  # a line written after it started
        assert term.proc.poll() is None, "logs -f keeps following"
    finally:
        term.close()


def test_app_exec_reuse_runs_in_the_running_container(world: World) -> None:
    result = world.deployer("app", "exec", "--reuse", "cat /www/index.html")
    assert result.returncode == 0, result.stderr
    for host in HOSTS:
        assert f"App Host: {host}\ndemo version v1" in result.stdout, result.stdout
    # the command ran in the running container (no exec container left behind)
    for host in HOSTS:
        assert world.containers(host).keys() == {"kamal-proxy", "demo-web-v1"}


@pytest.mark.parametrize("reuse", [True, False], ids=["reuse", "new-container"])
def test_app_exec_interactive_gets_a_terminal(world: World, reuse: bool) -> None:
    args = ["app", "exec", "-i", *(["--reuse"] if reuse else []), "sh"]
    term = Terminal(world, *args)
    try:
        # the shell's prompt, then a line typed at it; the answer is computed so that the terminal's
        # echo of the typed line cannot match, and `[ -t 0 ]` checks the container got a real tty
        assert term.expect("# ", 20), term.text
        term.send("[ -t 0 ] && echo tty-$((6*7)) || echo no-tty; cat /www/index.html; exit\n")
        assert term.expect("tty-42", 10), term.text
        assert term.expect("demo version v1", 5), term.text
        assert term.wait(10) == 0, term.text
    finally:
        term.close()
    # the shell's output line, not the echo of the typed one (line editing may put escapes into that)
    assert "no-tty" not in [line.strip() for line in term.text.splitlines()]
    # it ran on the primary host only, and a new exec container was removed afterwards (--rm)
    deadline = time.monotonic() + 5
    while (names := set(world.containers(HOSTS[0]))) != {"kamal-proxy", "demo-web-v1"}:
        assert time.monotonic() < deadline, names
        time.sleep(0.2)


def test_deploy_v2_under_load_has_zero_errors(world: World) -> None:
    with Load(world, HOSTS) as load:
        result = world.deployer("deploy", "-P", "--version", "v2")
    assert result.returncode == 0, result.stderr
    assert load.errors == [], f"{load.errors[:3]}\n{world.proxy_log_problems()}"
    for host in HOSTS:
        assert load.bodies[f"{host} demo version v1"] > 0, load.bodies
        assert load.bodies[f"{host} demo version v2"] > 0, load.bodies
    assert_serving(world, HOSTS, "v2")
    for host in HOSTS:
        containers = world.containers(host)
        assert world.running(host) == {"kamal-proxy", "demo-web-v2"}
        assert containers["demo-web-v1"] == "exited"  # kept for rollback


def test_rollback_to_v1_under_load(world: World) -> None:
    with Load(world, HOSTS) as load:
        result = world.deployer("rollback", "v1")
    assert result.returncode == 0, result.stderr
    assert load.errors == [], f"{load.errors[:3]}\n{world.proxy_log_problems()}"
    assert_serving(world, HOSTS, "v1")
    for host in HOSTS:
        containers = world.containers(host)
        assert world.running(host) == {"kamal-proxy", "demo-web-v1"}
        assert containers["demo-web-v2"] == "exited"
        assert any(n.startswith("demo-web-v1_replaced_") for n in containers), containers


def test_maintenance_then_live(world: World) -> None:
    result = world.deployer("app", "maintenance", "--message", "Back in five minutes")
    assert result.returncode == 0, result.stderr
    for host in HOSTS:
        r = world.get(host)
        assert r.status == 503
        assert "Back in five minutes" in r.body
        assert world.get(host, "/up").status == 200  # the proxy still answers its health path
    result = world.deployer("app", "live")
    assert result.returncode == 0, result.stderr
    assert_serving(world, HOSTS, "v1")


def test_deploy_to_a_new_host_only(world: World) -> None:
    def snapshot() -> dict[str, set[tuple[str, str, str]]]:
        return {
            h: {(c["ID"], c["Names"], c["State"]) for c in world.hosts[h].engine.ps(all_=True)} for h in HOSTS
        }

    before = snapshot()
    world.write_config(ALL_HOSTS)
    result = world.deployer("deploy", "-P", "--version", "v1", "--hosts", NEW_HOST)
    assert result.returncode == 0, result.stderr
    assert_serving(world, ALL_HOSTS, "v1")
    assert world.running(NEW_HOST) == {"kamal-proxy", "demo-web-v1"}
    # the other hosts were not touched: same containers, same ids, same state
    assert snapshot() == before
    # the lock was taken on the configured primary host, not on the first --hosts entry
    audit = world.ssh.host_dir(NEW_HOST) / ".kamal" / f"{SERVICE}-audit.log"
    assert "Booted app version v1" in audit.read_text()


def test_failing_health_check_keeps_the_old_version_serving(world: World) -> None:
    started = time.monotonic()
    with Load(world, ALL_HOSTS, threads_per_host=1) as load:
        result = world.deployer("deploy", "-P", "--version", "v3")
    assert result.returncode == 1
    assert time.monotonic() - started < DEPLOY_TIMEOUT + 40
    output = result.stdout + result.stderr
    assert "failed to become healthy" in output, output
    assert load.errors == [], f"{load.errors[:3]}\n{world.proxy_log_problems()}"
    assert not any("v3" in key for key in load.bodies), load.bodies
    assert_serving(world, ALL_HOSTS, "v1")
    for host in ALL_HOSTS:
        containers = world.containers(host)
        assert world.running(host) == {"kamal-proxy", "demo-web-v1"}, containers
        assert containers["demo-web-v3"] != "running"
    lock_dir = world.ssh.host_dir(HOSTS[0]) / ".kamal" / f"lock-{SERVICE}"
    assert not lock_dir.exists(), "the deploy lock is released after a failed deploy"


def test_remove_clears_every_host(world: World) -> None:
    result = world.deployer("remove", "-y")
    assert result.returncode == 0, result.stderr
    for host in ALL_HOSTS:
        assert world.containers(host) == {}
        assert not world.hosts[host].netns.listening(80), f"{host} still answers on :80"
        assert not (world.ssh.host_dir(host) / ".kamal" / "apps" / SERVICE).exists()


def _log_lines(host: Host, *needles: str) -> list[str]:
    """The proxy's log lines on ``host`` that contain every needle."""
    logs = host.engine.docker("logs", "kamal-proxy").stdout.splitlines()
    return [line for line in logs if all(n in line for n in needles)]


def kamal_gateway(engine: env.Engine) -> str:
    """The host's address on the ``kamal`` network (its bridge's gateway), which containers on that
    network reach the host through; the network is created as the deployer would, if missing."""
    if engine.docker("network", "inspect", "kamal", check=False).returncode != 0:
        engine.docker("network", "create", "kamal")
    out = engine.docker(
        "network", "inspect", "kamal", "--format", "{{range .IPAM.Config}}{{.Gateway}}{{end}}"
    )
    gateway = out.stdout.strip()
    assert gateway, "the kamal network has no gateway"
    return gateway


@pytest.mark.timeout(180)
def test_ssl_app_gets_its_certificate_from_pebble_and_serves_https(world: World) -> None:
    """``proxy: ssl: true`` on a fresh host (after the loop's remove): the proxy orders a certificate
    from Pebble on the first handshake and serves the app over https; plain http redirects.

    Pebble (and pebble-challtestsrv, its DNS, answering 127.0.0.1 for every name) runs inside the
    host's network namespace, so its validation requests reach the ports the proxy publishes there.
    The proxy container reaches Pebble's directory through the ``kamal`` network's gateway, and trusts
    Pebble's HTTPS certificate through ``SSL_CERT_FILE``; both are set as a Kamal user sets them, with
    ``proxy.run.options`` (``env``, ``volume``): ``docker exec kamal-proxy kamal-proxy deploy`` inherits
    the container's environment, whose KAMAL_PROXY_TLS_ACME_DIRECTORY replaces Let's Encrypt."""
    address = HOSTS[0]
    host = world.hosts[address]
    # the proxy must boot with this config's options: none may be left running (if remove failed)
    host.engine.docker("rm", "--force", "kamal-proxy", check=False)
    gateway = kamal_gateway(host.engine)
    pebble = Pebble(
        world.root / "pebble",
        listen="0.0.0.0",
        names=("localhost", "127.0.0.1", gateway),
        namespace=lambda: env.in_netns(host.netns.path),
    )
    ca_dir = world.root / "pebble-ca"  # mounted read-only; readable by the proxy's non-root user
    ca_dir.mkdir(mode=0o755)
    ca_dir.chmod(0o755)
    (ca_dir / "ca.pem").write_bytes(pebble.ca_file.read_bytes())
    (ca_dir / "ca.pem").chmod(0o644)
    config = world.config([address])
    config["proxy"]["ssl"] = True
    config["proxy"]["host"] = TLS_HOST
    config["proxy"]["run"]["options"] |= {
        "volume": f"{ca_dir}:/pebble:ro",
        "env": [
            f"KAMAL_PROXY_TLS_ACME_DIRECTORY=https://{gateway}:{pebble.port}/dir",
            "SSL_CERT_FILE=/pebble/ca.pem",
        ],
    }
    (world.project / "config" / "deploy.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    pebble.start(http_port=80, tls_port=443)
    try:
        result = world.deployer("setup", "-P", "--version", "v1")
        assert result.returncode == 0, result.stderr
        listing = host.engine.docker("exec", "kamal-proxy", "kamal-proxy", "list").stdout
        assert TLS_HOST in listing and listing.split()[-1] == "yes", listing  # the TLS column

        context = ssl.create_default_context(cadata=pebble.root_pem().decode())
        started = time.monotonic()
        # the first handshake waits while the proxy gets the certificate
        response, cert = env.https_get(host.netns, TLS_HOST, context=context, timeout=60)
        first = time.monotonic() - started
        assert (response.status, response.body) == (200, "demo version v1\n"), world.diagnostics()
        assert cert["subjectAltName"] == (("DNS", TLS_HOST),)
        assert pebble.orders() == 1
        # the proxy's log line (written by its log thread: it may reach `docker logs` a moment later)
        deadline = time.monotonic() + 10
        while not (obtained := _log_lines(host, '"msg":"Certificate obtained"', TLS_HOST)):
            assert time.monotonic() < deadline, host.engine.docker("logs", "kamal-proxy").stdout[-2000:]
            time.sleep(0.2)
        assert len(obtained) == 1, obtained
        again, _ = env.https_get(host.netns, TLS_HOST, "/up", context=context)
        assert (again.status, again.body) == (200, "ok\n")
        print(f"https: first request (with the ACME order) {first:.1f}s")

        plain = env.http_get(host.netns, "/page?q=1", host_header=TLS_HOST)
        assert plain.status == 301
        assert plain.headers["location"] == f"https://{TLS_HOST}/page?q=1"
    finally:
        pebble.stop()
