"""The proxy image built from the repository's Dockerfile, run the way Kamal 2 runs kamal-proxy.

One fake host (its own network namespace and podman engine, as in test_e2e.py) pulls the image from
the local registry and boots it with the ``docker run`` line the deployer generates for ``proxy.run``
(Kamal's: name ``kamal-proxy``, network ``kamal``, ``--restart unless-stopped``, the
``kamal-proxy-config`` volume at /home/kamal-proxy/.config/kamal-proxy, the apps-config volume,
``--publish 80:80 --publish 443:443``, ``--log-opt max-size=10m``), plus ``proxy.run.options``:
``--cap-drop=ALL`` (every boot here runs without any capability), the ``--sysctl`` podman needs to
let a non-root process bind 80 (Docker sets it itself), this sandbox's ``--ulimit``\\ s and
``--stop-timeout`` (Docker's default, which podman 4.3's Docker API does not apply).
Apps are driven with ``docker exec kamal-proxy kamal-proxy deploy …``, as Kamal does.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deployer.commands.proxy import Proxy
from deployer.config import build_config
from proxy import defaults
from tests.deployer.e2e import env
from tests.deployer.e2e.conftest import PROXY_REPOSITORY, PROXY_VERSION

pytestmark = [pytest.mark.timeout(120), pytest.mark.e2e]

HOST = "demo.example.test"
DOCKER_STOP_TIMEOUT = 10  # seconds: Docker's (and podman's) default before SIGKILL
SLOW_LOG = "url:/cgi-bin/slow"  # what busybox httpd -vv logs for it (without the query)
SLOW_CGI = """#!/bin/sh
sleep "${QUERY_STRING:-1}"
printf 'Content-Type: text/plain\\r\\n\\r\\nslept %s\\n' "$QUERY_STRING"
"""


@dataclass
class ImageHost:
    netns: env.Netns
    engine: env.Engine
    registry: env.Registry
    relay: env.Relay | None = None

    def boot_proxy(self) -> list[str]:
        """``docker run`` the proxy with the deployer's (Kamal's) boot line; returns that line."""
        raw = {
            "service": "demo",
            "image": "demo",
            "servers": ["127.0.0.2"],
            "registry": {"server": self.registry.server},
            "builder": {"arch": "amd64"},
            "proxy": {
                "run": {
                    "registry": self.registry.server,
                    "repository": PROXY_REPOSITORY,
                    "version": PROXY_VERSION,
                    "options": {
                        "cap-drop": "ALL",
                        "sysctl": "net.ipv4.ip_unprivileged_port_start=0",
                        "ulimit": list(env.ULIMITS),
                        # podman 4.3's Docker API creates containers with a stop timeout of 0 (an
                        # immediate SIGKILL on `docker stop`); Docker's default is 10 s
                        "stop-timeout": DOCKER_STOP_TIMEOUT,
                    },
                }
            },
        }
        line = Proxy(build_config(raw, "config/deploy.yml")).run()
        (self.engine.root / ".kamal/proxy/apps-config").mkdir(parents=True, exist_ok=True)
        shell = {**os.environ, "DOCKER_HOST": self.engine.docker_host, "HOME": str(self.engine.root)}
        env.run(["sh", "-c", " ".join(line)], env=shell, cwd=self.engine.root)
        self.wait_ready()
        return line

    def wait_ready(self, timeout: float = 20) -> None:
        """Until ``docker exec kamal-proxy kamal-proxy list`` answers (the control socket comes up
        after the HTTP listener is bound)."""
        deadline = time.monotonic() + timeout
        while self.proxy("list", check=False).returncode != 0:
            if time.monotonic() > deadline:
                logs = self.engine.docker("logs", "kamal-proxy", check=False)
                raise AssertionError(f"the proxy did not come up:\n{logs.stdout}{logs.stderr}")
            time.sleep(0.2)

    def proxy(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.engine.docker("exec", "kamal-proxy", "kamal-proxy", *args, check=check)

    def remove_proxy(self) -> None:
        self.engine.docker("rm", "--force", "kamal-proxy", check=False)

    def logs(self) -> str:
        result = self.engine.docker("logs", "kamal-proxy", check=False)
        return result.stdout + result.stderr

    def get(self, path: str = "/", timeout: float = 5) -> env.Response:
        return env.http_get(self.netns, path, host_header=HOST, timeout=timeout)

    def serving(self, body: str, timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = self.get()
                if r.status == 200 and r.body == body:
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        return False


@pytest.fixture(scope="module")
def host(
    e2e_root: Path, registry: env.Registry, builder: env.Builder, proxy_image: str
) -> Iterator[ImageHost]:
    root = e2e_root / "image"
    netns = env.Netns(f"e2e{os.getpid()}img")
    netns.create()
    engine = env.Engine("image-host", root / "host", registry.server, netns)
    host = ImageHost(netns, engine, registry)
    try:
        host.relay = env.Relay(netns, (registry.host, registry.port))
        app = env.app_context(root / "app", "img")
        cgi = app / "www" / "cgi-bin" / "slow"
        cgi.parent.mkdir()
        cgi.write_text(SLOW_CGI)
        cgi.chmod(0o755)
        app_image = f"{registry.server}/demo:img"
        builder.build_and_push(app, app_image, {"service": "demo"})
        engine.start()
        engine.docker("network", "create", "kamal")
        engine.docker("pull", "--quiet", proxy_image, timeout=120)
        engine.docker("pull", "--quiet", app_image)
        ulimits = [a for limit in env.ULIMITS for a in ("--ulimit", limit)]
        engine.docker("run", "--detach", "--name", "demo-web", "--network", "kamal", *ulimits, app_image)
        yield host
    finally:
        engine.stop()
        if host.relay:
            host.relay.close()
        netns.delete()


def deploy_app(host: ImageHost) -> str:
    cid = host.engine.docker("container", "ls", "--all", "--filter", "name=^demo-web$", "--quiet").stdout
    target = f"{cid.strip()}:80"
    # Kamal's line is `--target="…"` through a remote shell; here the argv goes to docker directly
    host.proxy("deploy", "demo-web", f"--target={target}", f"--host={HOST}", "--deploy-timeout=20s")
    return target


# the first test also waits for the session fixtures: the proxy image (a cold debootstrap of its
# base takes about a minute) and the hosts
@pytest.mark.timeout(600)
def test_the_image_boots_as_kamal_boots_it_non_root_with_every_capability_dropped(
    host: ImageHost, proxy_image: str
) -> None:
    host.remove_proxy()
    line = host.boot_proxy()
    assert line[:12] == [
        "docker",
        "run",
        "--name",
        "kamal-proxy",
        "--network",
        "kamal",
        "--detach",
        "--restart",
        "unless-stopped",
        "--volume",
        "kamal-proxy-config:/home/kamal-proxy/.config/kamal-proxy",
        "--volume",
    ]
    assert '--cap-drop="ALL"' in line and line[-3:] == [proxy_image, "kamal-proxy", "run"]
    # it bound :80 inside its namespace and answers there (no service deployed yet: 404)
    assert host.get().status == 404
    assert "No previous state to restore" in host.logs()  # what Kamal's own integration test greps
    # `docker exec … kamal-proxy` works without capabilities (it could not with a file capability)
    listing = host.proxy("list").stdout
    assert listing.split() == ["Service", "Host", "Path", "Target", "State", "TLS"]
    version = tomllib.loads((env.REPO / "pyproject.toml").read_text())["project"]["version"]
    assert host.proxy("version").stdout == f"{version}\n"
    status = host.engine.docker("exec", "kamal-proxy", "cat", "/proc/1/status").stdout
    fields = dict(row.split(":\t", 1) for row in status.splitlines() if ":\t" in row)
    assert fields["Uid"].split()[0] != "0", "runs as the non-root kamal-proxy user"
    assert int(fields["CapEff"], 16) == 0 and int(fields["CapBnd"], 16) == 0
    # the interpreter has no file capability, and the deployer's dependencies are not installed
    probe = (
        "import os, sys, importlib.util as u\n"
        "try:\n    os.getxattr(os.path.realpath(sys.executable), 'security.capability'); print('cap')\n"
        "except OSError:\n    print('no-cap')\n"
        "print([m for m in ('yaml', 'click', 'httpx') if u.find_spec(m)])\n"
        "print([c for c in ('kamal-proxy', 'proxyctl', 'deployer') if shutil.which(c)])\n"
    )
    probe = "import shutil\n" + probe
    out = host.engine.docker("exec", "kamal-proxy", "python3", "-c", probe).stdout
    # no `deployer` command either: the deployer is not in the image, so it could only fail
    assert out == "no-cap\n[]\n['kamal-proxy', 'proxyctl']\n"
    labels = host.engine.docker("image", "inspect", proxy_image, "--format", "{{json .Config.Labels}}").stdout
    assert '"org.opencontainers.image.title":"kamal-proxy"' in labels


def test_routes_survive_docker_restart_and_a_recreated_container(host: ImageHost) -> None:
    host.remove_proxy()
    host.engine.docker("volume", "rm", "--force", "kamal-proxy-config", check=False)
    host.boot_proxy()
    target = deploy_app(host)
    assert host.serving("demo version img\n")

    host.engine.docker("restart", "kamal-proxy", timeout=30)
    host.wait_ready()
    assert target in host.proxy("list").stdout
    assert host.serving("demo version img\n")

    # `kamal proxy reboot`: the container is removed and run again on the same volume
    host.remove_proxy()
    host.boot_proxy()
    assert "No previous state to restore" not in host.logs()
    assert target in host.proxy("list").stdout
    assert host.serving("demo version img\n")


def test_docker_stop_waits_for_a_request_in_flight_and_exits_before_the_kill(host: ImageHost) -> None:
    host.remove_proxy()
    host.boot_proxy()
    deploy_app(host)
    assert host.serving("demo version img\n")

    # idle: stops at once
    started = time.monotonic()
    host.engine.docker("stop", "kamal-proxy", timeout=30)
    assert time.monotonic() - started < 3
    assert host.engine.docker("inspect", "kamal-proxy", "--format", "{{.State.ExitCode}}").stdout == "0\n"

    # a request in flight finishes before the proxy exits
    host.engine.docker("start", "kamal-proxy")
    host.wait_ready()
    assert host.serving("demo version img\n")
    answers: list[env.Response | Exception] = []

    def slow(seconds: float) -> None:
        try:
            answers.append(host.get(f"/cgi-bin/slow?{seconds:g}", timeout=30))
        except Exception as exc:
            answers.append(exc)

    seen = _app_log(host).count(SLOW_LOG)
    client = threading.Thread(target=slow, args=(2,))
    client.start()
    _wait_for_app_log(host, seen)
    started = time.monotonic()
    host.engine.docker("stop", "kamal-proxy", timeout=30)
    elapsed = time.monotonic() - started
    client.join(10)
    assert [(a.status, a.body) for a in answers if isinstance(a, env.Response)] == [(200, "slept 2\n")], (
        answers
    )
    assert elapsed < defaults.SHUTDOWN_TIMEOUT

    # a request that outlasts SHUTDOWN_TIMEOUT is cut, and the proxy still exits by itself (status 0)
    # well inside Docker's default stop timeout, so Docker never has to SIGKILL it
    assert defaults.SHUTDOWN_TIMEOUT <= DOCKER_STOP_TIMEOUT - 3
    host.engine.docker("start", "kamal-proxy")
    host.wait_ready()
    assert host.serving("demo version img\n")
    answers.clear()
    seen = _app_log(host).count(SLOW_LOG)
    client = threading.Thread(target=slow, args=(25,))
    client.start()
    _wait_for_app_log(host, seen)
    started = time.monotonic()
    host.engine.docker("stop", "kamal-proxy", timeout=30)
    elapsed = time.monotonic() - started
    client.join(10)
    assert defaults.SHUTDOWN_TIMEOUT - 0.5 < elapsed < DOCKER_STOP_TIMEOUT - 1, elapsed
    assert host.engine.docker("inspect", "kamal-proxy", "--format", "{{.State.ExitCode}}").stdout == "0\n"
    assert answers and not (isinstance(answers[0], env.Response) and answers[0].status == 200), answers


def _wait_for_app_log(host: ImageHost, seen: int, timeout: float = 10) -> None:
    """Until the app's httpd logged one more slow request (so it is in flight through the proxy)."""
    deadline = time.monotonic() + timeout
    while _app_log(host).count(SLOW_LOG) <= seen:
        assert time.monotonic() < deadline, "the app never saw the slow request"
        time.sleep(0.1)


def _app_log(host: ImageHost) -> str:
    result = host.engine.docker("logs", "demo-web", check=False)
    return result.stdout + result.stderr
