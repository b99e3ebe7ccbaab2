"""Config generation and start/stop for every proxy under test.

All of them listen on a free port on 127.0.0.1, round-robin over the same two backends with
keep-alive upstream connections, run one worker/thread pinned to one core, and log every request
(access log on, as a user runs it):

* ``nginx``   worker_processes 1; access_log (combined format) to a file, one write() per request;
              ``upstream { keepalive 64; }`` + ``proxy_http_version 1.1`` + ``Connection ""``;
              proxy_buffering/proxy_request_buffering off (stream bodies, like kamal-proxy).
* ``haproxy`` nbthread 1; ``option httplog`` to ``log stdout`` (redirected to a file);
              ``option http-keep-alive`` + ``http-reuse always``.
* ``caddy``   GOMAXPROCS=1 + taskset; JSON access log (zap) to a file; reverse_proxy keeps
              upstream connections alive by default (idle pool raised to 64 per host).
* ``ours``    ``python -m proxy.cli.main run`` with the httptools or h11 parser; JSON access log on
              stdout redirected to a file; backends registered with ``deploy``.
* ``direct``  no proxy: wrk straight at one backend -- the physical limit of this machine.

Each peer also sets X-Forwarded-For/-Proto and a request id, roughly the per-request header work
kamal-proxy does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

from .backend import free_port, stop_process, taskset, wait_port

REPO = Path(__file__).resolve().parent.parent


def tree_pids(root: int) -> list[int]:
    """root and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_kib(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """user+system CPU time consumed so far by these processes (all threads)."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / _CLK_TCK


class Proxy:
    """A proxy under test. Subclasses write a config and start one pinned process."""

    name: ClassVar[str] = "proxy"
    label: str

    def __init__(self, workdir: Path, backends: list[str], cpu: str | None = "0") -> None:
        self.workdir = workdir
        self.backends = backends
        self.cpu = cpu
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.label = self.name

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def rss_kib(self) -> int:
        return rss_kib(tree_pids(self.proc.pid)) if self.proc is not None else 0

    def cpu_seconds(self) -> float:
        return cpu_seconds(tree_pids(self.proc.pid)) if self.proc is not None else 0.0

    def _spawn(
        self, cmd: list[str], env: dict[str, str] | None = None, stdout_name: str = "stdout.log"
    ) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [*taskset(self.cpu), *cmd],
            cwd=self.workdir,
            env={**os.environ, **(env or {})},
            stdout=open(self.workdir / stdout_name, "wb"),
            stderr=open(self.workdir / "stderr.log", "wb"),
            start_new_session=True,
        )

    def stderr_tail(self, n: int = 2000) -> str:
        try:
            return (self.workdir / "stderr.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""


class Direct(Proxy):
    name = "direct"

    def start(self) -> None:
        self.port = int(self.backends[0].rsplit(":", 1)[1])


NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {w}/nginx.pid;
error_log {w}/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 16384; multi_accept on; }}
http {{
    access_log {w}/access.log combined;
    client_body_temp_path {w}/client_body;
    proxy_temp_path {w}/proxy;
    fastcgi_temp_path {w}/fastcgi;
    uwsgi_temp_path {w}/uwsgi;
    scgi_temp_path {w}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_max_body_size 0;
    upstream backends {{
{servers}
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-ID $request_id;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
{extra}
}}
"""


class Nginx(Proxy):
    name = "nginx"
    extra = ""  # more server blocks (raw nginx config), e.g. the TLS listener

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        servers = "\n".join(f"        server {b};" for b in self.backends)
        conf = self.workdir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(w=self.workdir, servers=servers, port=self.port, extra=self.extra))
        self._spawn(
            ["nginx", "-c", str(conf), "-p", str(self.workdir), "-e", str(self.workdir / "error.log")]
        )
        wait_port(self.port, proc=self.proc)


HAPROXY_CONF = """\
global
    nbthread 1
    # RLIMIT_NOFILE hard limit here is 20000 and HAProxy reserves 2 fds per conn
    maxconn 9900
    log stdout format raw local0 info
defaults
    mode http
    log global
    option httplog
    option http-keep-alive
    option forwardfor
    http-reuse always
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    maxconn 9900
frontend fe
    bind 127.0.0.1:{port}
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Request-ID %[uuid]
    default_backend be
{extra}
backend be
    balance roundrobin
{servers}
"""


class HAProxy(Proxy):
    name = "haproxy"
    extra = ""  # more frontends (raw HAProxy config), e.g. the TLS listener

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        servers = "\n".join(f"    server s{i} {b} maxconn 10000" for i, b in enumerate(self.backends))
        conf = self.workdir / "haproxy.cfg"
        conf.write_text(HAPROXY_CONF.format(port=self.port, servers=servers, extra=self.extra))
        # -db: stay in the foreground; the access log goes to stdout -> access.log
        self._spawn(["haproxy", "-db", "-f", str(conf)], stdout_name="access.log")
        wait_port(self.port, proc=self.proc)


CADDYFILE = """\
{{
    admin off
    auto_https off
}}
http://127.0.0.1:{port} {{
    bind 127.0.0.1
    log {{
        output file {w}/access.log
        format json
    }}
    reverse_proxy {servers} {{
        lb_policy round_robin
        flush_interval -1
        header_up X-Request-ID {{http.request.uuid}}
        transport http {{
            keepalive 300s
            keepalive_idle_conns 128
            keepalive_idle_conns_per_host 64
        }}
    }}
}}
{extra}
"""


class Caddy(Proxy):
    name = "caddy"
    extra = ""  # more site blocks (raw Caddyfile), e.g. the TLS listener

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = self.workdir / "Caddyfile"
        conf.write_text(
            CADDYFILE.format(
                w=self.workdir, port=self.port, servers=" ".join(self.backends), extra=self.extra
            )
        )
        env = {
            "GOMAXPROCS": "1",
            "HOME": str(self.workdir),
            "XDG_DATA_HOME": str(self.workdir / "data"),
            "XDG_CONFIG_HOME": str(self.workdir / "config"),
        }
        self._spawn(["caddy", "run", "--config", str(conf), "--adapter", "caddyfile"], env=env)
        wait_port(self.port, timeout=20, proc=self.proc)


_HELP_CACHE: dict[tuple[str, str], bool] = {}


class Ours(Proxy):
    """This project's proxy, driven through its kamal-proxy compatible CLI."""

    name = "ours"

    def __init__(
        self,
        workdir: Path,
        backends: list[str],
        cpu: str | None = "0",
        parser: str = "httptools",
        extra_args: list[str] | None = None,
    ) -> None:
        super().__init__(workdir, backends, cpu)
        self.parser = parser
        self.label = f"ours-{parser}"
        self.extra_args = extra_args or []
        self.https_port = 0
        self.home = workdir / "home"
        self.socket = workdir / "kamal-proxy.sock"

    @property
    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "KAMAL_PROXY_SOCKET": str(self.socket),
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }

    def start_daemon(self, timeout: float = 30) -> None:
        """Start `run` only (no deploy); the state file, if any, is restored by the daemon."""
        self.home.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
            self.https_port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "proxy.cli.main",
            "run",
            "--http-port",
            str(self.port),
            "--https-port",
            str(self.https_port),
            "--http-parser",
            self.parser,
            *(["--bind", "127.0.0.1"] if self.supports("run", "--bind") else []),
            *self.extra_args,
        ]
        # access log (JSON lines on stdout) -> file, as `docker logs` would capture it
        self._spawn(cmd, env=self.env, stdout_name="access.log")
        wait_port(self.port, timeout=timeout, proc=self.proc)
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"control socket {self.socket} never appeared: {self.stderr_tail()}")
            time.sleep(0.05)

    def start(self) -> None:
        self.start_daemon()
        self.deploy("bench", self.backends)

    def supports(self, command: str, flag: str) -> bool:
        """Whether `proxyctl <command> --help` mentions flag (cached)."""
        key = (command, flag)
        if key not in _HELP_CACHE:
            try:
                _HELP_CACHE[key] = flag in self.cli(command, "--help", timeout=30).stdout
            except Exception:
                _HELP_CACHE[key] = False
        return _HELP_CACHE[key]

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(
            [sys.executable, "-m", "proxy.cli.main", *args],
            cwd=REPO,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if p.returncode != 0:
            raise RuntimeError(
                f"proxyctl {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[-1000:]}"
            )
        return p

    def deploy(self, service: str, targets: list[str], *extra: str) -> float:
        """Deploy and return how long the CLI call took (seconds)."""
        args = ["deploy", service]
        for t in targets:
            args += ["--target", t]
        args += ["--health-check-path", "/", *extra]
        t0 = time.perf_counter()
        self.cli(*args)
        return time.perf_counter() - t0


PEERS: dict[str, type[Proxy]] = {"direct": Direct, "nginx": Nginx, "haproxy": HAProxy, "caddy": Caddy}


def make(name: str, workdir: Path, backends: list[str], cpu: str | None = "0") -> Proxy:
    """name: direct | nginx | haproxy | caddy | ours-httptools | ours-h11 | ours-httptools-metrics
    (the last: `run --metrics-port`, the Prometheus endpoint on, scraped by nobody)"""
    if name.startswith("ours"):
        parts = name.split("-")
        parser = parts[1] if len(parts) > 1 else "httptools"
        extra = ["--metrics-port", str(free_port())] if parts[2:] == ["metrics"] else []
        ours = Ours(workdir, backends, cpu, parser=parser, extra_args=extra)
        ours.label = name
        return ours
    return PEERS[name](workdir, backends, cpu)
