"""Deploy/rollback/maintenance workflows against a scripted runner: order, failure handling, lock, hooks."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path
from typing import Any

import pytest

from deployer.config import Config
from deployer.errors import BootError, HookError, LockError, SecretError
from deployer.output import NORMAL, QUIET, VERBOSE, Output
from deployer.workflows import Deployer, Options
from tests.deployer.conftest import ConfigFactory
from tests.deployer.fake_runner import FakeRunner

RAW: dict[str, Any] = {
    "service": "app",
    "image": "app",
    "registry": {"server": "localhost:5000"},
    "servers": {"web": ["h1", "h2", "h3"], "workers": {"hosts": ["h4"], "cmd": "bin/jobs"}},
    "env": {"clear": {"A": "1"}, "secret": ["DB"]},
    "boot": {"limit": 1, "wait": 2},
    "builder": {"arch": "amd64"},
}


def make(
    make_config: ConfigFactory,
    tmp_path: Path,
    options: Options | None = None,
    raw: dict[str, Any] | None = None,
) -> tuple[Deployer, FakeRunner, list[float], io.StringIO]:
    config: Config = make_config(raw or RAW, version=None, secrets="DB=postgres://secret-db\n")
    runner = FakeRunner()
    runner.when(r"current-version-marker", "")
    runner.when(r"docker container ls --all --filter 'name=\^app-web-v2\$' --quiet", "cid-new")
    runner.when(r"docker container ls --all --filter 'name=\^app-workers-v2\$' --quiet", "cid-w")
    runner.when(r"while read line; do echo \$\{line#app-web-\}", "v1")
    runner.when(r"while read line; do echo \$\{line#app-workers-\}", "v1")
    runner.when(r"docker inspect --format '\{\{if \.State\.Health", "running")
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    buf = io.StringIO()
    deployer = Deployer(
        config=config,
        runner=runner,
        out=Output(stream=buf),
        options=options or Options(version="v2"),
        root=tmp_path,
        command="deploy",
        lock_held=False,
        sleep=fake_sleep,
    )
    return deployer, runner, sleeps, buf


def test_deploy_sequence(make_config: ConfigFactory, tmp_path: Path) -> None:
    d, r, sleeps, buf = make(make_config, tmp_path)
    asyncio.run(d.main.deploy(skip_push=True))
    h1 = r.lines("h1")
    order = [
        r"docker pull localhost:5000/app:v2",
        r"docker inspect -f '\{\{ \.Config\.Labels\.service \}\}' localhost:5000/app:v2 \| grep -x app",
        r"^mkdir \.kamal/lock-app && echo",
        r"docker network create kamal",
        r"docker container start kamal-proxy \|\| echo",
        r"docker run --detach --restart unless-stopped --name app-web-v2 --network kamal --hostname h1-",
        r"docker exec kamal-proxy kamal-proxy deploy app-web --target=\"cid-new:80\"",
        r"docker container ls --all --filter 'name=\^app-web-v1\$' --quiet \| xargs docker stop$",
        r"docker tag localhost:5000/app:v2 localhost:5000/app:latest",
        r"tail -n \+6 \| while read container_id",
        r"^rm \.kamal/lock-app/details && rm -r \.kamal/lock-app$",
    ]
    positions = [r.index(p, "h1") for p in order]
    assert positions == sorted(positions), "\n".join(h1)
    # the env file was uploaded before docker run, with the secret, mode 0600
    assert r.uploads[("h1", ".kamal/apps/app/env/roles/web.env")] == b"DB=postgres://secret-db\n"
    assert r.index(r"upload \.kamal/apps/app/env/roles/web\.env 600", "h1") < r.index(
        r"docker run --detach", "h1"
    )
    # no registry login for a local registry
    assert not r.has(r"docker login")
    # workers are not proxied: readiness is polled, old version stopped with -t drain_timeout
    assert not r.has(r"kamal-proxy deploy", "h4")
    assert r.has(r"xargs docker stop -t 30$", "h4")
    # boot.limit 1 → 4 groups, sleeping boot.wait between them (not after the last)
    assert sleeps.count(2) == 3
    # readiness delay for the non-proxied role
    assert 7 in sleeps
    text = buf.getvalue()
    assert "Deployed app v2 to 4 host(s) (h1, h2, h3, h4)" in text
    # the release version was passed down, never written onto the loaded configuration
    assert d.config.version is None
    assert "secret-db" not in text


def test_lock_is_taken_on_the_configured_primary_even_with_hosts(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    d, r, _, _ = make(make_config, tmp_path, Options(hosts=["h3"], version="v2"))
    asyncio.run(d.main.deploy(skip_push=True))
    assert r.has(r"^mkdir \.kamal/lock-app && echo", "h1")
    assert not r.has(r"^mkdir \.kamal/lock-app &&", "h3")
    assert r.has(r"^rm \.kamal/lock-app/details", "h1")
    # nothing but the lock touches the other hosts
    assert not r.has(r"docker run", "h1") and not r.has(r"docker", "h2") and not r.has(r"docker", "h4")
    assert r.has(r"docker run --detach .* --name app-web-v2", "h3")


def test_failing_health_check_stops_new_container_and_skips_later_groups(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    d, r, _, _ = make(make_config, tmp_path)
    r.when(
        r"kamal-proxy deploy app-web",
        (1, "", "Error: target failed to become healthy within configured timeout (30s)"),
        host="h2",
    )
    r.when(r"docker logs --tail 30 app-web-v2", "booting...\nlistening on 3000")
    with pytest.raises(BootError) as exc:
        asyncio.run(d.main.deploy(skip_push=True))
    message = str(exc.value)
    assert "host h2: app-web-v2 failed to become healthy: Error: target failed to become healthy" in message
    assert "the old version v1 keeps serving" in message and "listening on 3000" in message
    # new container stopped, old one untouched on h2
    assert r.has(r"'name=\^app-web-v2\$' --quiet \| xargs docker stop$", "h2")
    assert not r.has(r"'name=\^app-web-v1\$' --quiet \| xargs docker stop", "h2")
    # h1 (earlier group) finished; h3/h4 (later groups) never booted; no latest tag, no prune
    assert r.has(r"'name=\^app-web-v1\$' --quiet \| xargs docker stop", "h1")
    assert not r.has(r"docker run --detach --restart", "h3") and not r.has(r"docker run --detach", "h4")
    assert not r.has(r"docker tag")
    assert not r.has(r"docker ps -q -a")
    # lock released
    assert r.has(r"^rm \.kamal/lock-app/details", "h1")


def test_lock_already_held(make_config: ConfigFactory, tmp_path: Path) -> None:
    d, r, _, _ = make(make_config, tmp_path)
    r.when(
        r"^mkdir \.kamal/lock-app &&",
        (1, "", "mkdir: cannot create directory '.kamal/lock-app': File exists"),
    )
    r.when(r"base64 -d", "Locked by: ann at 2026-01-01T00:00:00Z\nVersion: v1\nMessage: deploying")
    with pytest.raises(LockError, match=r"Deploy lock already in place on h1:\nLocked by: ann"):
        asyncio.run(d.main.deploy(skip_push=True))
    assert not r.has(r"docker run --detach --restart")
    assert not r.has(r"^rm \.kamal/lock-app/details")  # never release someone else's lock


def _hook(tmp_path: Path, name: str, body: str) -> None:
    hooks = tmp_path / ".kamal" / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    path = hooks / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def test_hooks_get_kamal_env_and_failures_abort(make_config: ConfigFactory, tmp_path: Path) -> None:
    record = tmp_path / "hooks.log"
    for name in ("pre-connect", "pre-deploy", "pre-app-boot", "post-app-boot", "post-deploy"):
        _hook(
            tmp_path,
            name,
            f'echo "{name} $KAMAL_HOSTS $KAMAL_VERSION $KAMAL_LOCK $DB $KAMAL_RUNTIME" >> {record}\n',
        )
    d, r, _, _ = make(make_config, tmp_path)
    asyncio.run(d.main.deploy(skip_push=True))
    lines = [line.split() for line in record.read_text().splitlines()]
    assert lines[0] == ["pre-connect", "h1,h2,h3,h4", "v2", "postgres://secret-db"]
    assert lines[1] == ["pre-deploy", "h1,h2,h3,h4", "v2", "true", "postgres://secret-db"]
    assert lines[2] == ["pre-app-boot", "h1", "v2", "true"]
    assert lines[3] == ["post-app-boot", "h1", "v2", "true"]
    assert [x[0] for x in lines].count("pre-app-boot") == 4  # one per boot group
    # post-deploy runs after the lock is released, with KAMAL_RUNTIME
    assert (
        lines[-1][:4] == ["post-deploy", "h1,h2,h3,h4", "v2", "postgres://secret-db"] and len(lines[-1]) == 5
    )

    _hook(tmp_path, "pre-deploy", "echo nope; exit 3\n")
    d, r, _, _ = make(make_config, tmp_path)
    with pytest.raises(HookError, match=r"Hook `pre-deploy` .* failed with exit 3:\nnope"):
        asyncio.run(d.main.deploy(skip_push=True))
    assert not r.has(r"docker run --detach --restart")
    assert r.has(r"^rm \.kamal/lock-app/details", "h1")


def test_rollback_defaults_to_previous_version(make_config: ConfigFactory, tmp_path: Path) -> None:
    d, r, _, buf = make(make_config, tmp_path, Options(version=None))
    r.when(r"--format '\{\{ \.Names \}\}'", "app-web-v2\napp-web-v1_replaced_abcd\napp-web-v1\napp-web-v0")
    r.when(r"while read line; do echo \$\{line#app-web-\}", "v2")
    r.when(r"while read line; do echo \$\{line#app-workers-\}", "v2")
    r.when(r"'name=\^app-(web|workers)-v1\$' --quiet$", "cid-v1")
    asyncio.run(d.main.rollback(None))
    assert r.has(r"docker rename app-web-v1 app-web-v1_replaced_[0-9a-f]{16}", "h1")
    assert r.has(r"docker run --detach .* --name app-web-v1 .* localhost:5000/app:v1", "h1")
    assert r.has(r"docker tag localhost:5000/app:v1 localhost:5000/app:latest", "h1")
    assert not r.has(r"docker pull")
    assert "Rolled back app to v1" in buf.getvalue()


def test_rollback_to_missing_version_does_nothing(make_config: ConfigFactory, tmp_path: Path) -> None:
    d, r, _, _ = make(make_config, tmp_path)
    r.when(r"'name=\^app-(web|workers)-v9\$' --quiet$", "cid")
    r.when(r"'name=\^app-web-v9\$' --quiet$", "", host="h1")  # later rules win
    with pytest.raises(Exception, match=r"version v9 is not available as a container on: web on h1"):
        asyncio.run(d.main.rollback("v9"))
    assert not r.has(r"docker run --detach --restart")


def test_maintenance_and_live(make_config: ConfigFactory, tmp_path: Path) -> None:
    d, r, _, _ = make(make_config, tmp_path)
    asyncio.run(d.app.maintenance(None, "Back soon"))
    assert r.has(
        r'^docker exec kamal-proxy kamal-proxy stop app-web --drain-timeout="30s" --message="Back soon"$',
        "h2",
    )
    assert not r.has(r"kamal-proxy stop", "h4")
    asyncio.run(d.app.live())
    assert r.has(r"^docker exec kamal-proxy kamal-proxy resume app-web$", "h3")


def test_app_status_shows_proxy_view(make_config: ConfigFactory, tmp_path: Path) -> None:
    d, r, _, _ = make(make_config, tmp_path, Options(hosts=["h1"]))
    r.when(
        r"kamal-proxy list", "Service  Host  Path  Target  State  TLS\napp-web  *  /  cid-new:80  running  no"
    )
    r.when(
        r"\{\{\.ID\}\}\\t\{\{\.Names\}\}",
        "cid-new\tapp-web-v1\trunning\tUp 2 minutes\ncid-old\tapp-web-v0\texited\tExited (0) 1 hour ago",
    )
    status = asyncio.run(d.app.status())
    rows = status["h1"]
    assert rows[0] == {
        "role": "web",
        "container": "app-web-v1",
        "id": "cid-new",
        "version": "v1",
        "state": "running",
        "status": "Up 2 minutes",
        "current": "yes",
        "proxy": "running → cid-new:80",
    }
    assert rows[1]["current"] == "" and rows[1]["state"] == "exited"


def test_version_from_git(
    make_config: ConfigFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VERSION", raising=False)
    d, _, _, _ = make(make_config, tmp_path, Options())
    os.system(
        f"cd {tmp_path} && git init -q && git -c user.email=a@b -c user.name=a commit -q --allow-empty -m x"
    )
    sha = os.popen(f"git -C {tmp_path} rev-parse HEAD").read().strip()
    assert d.main.resolve_version() == sha
    monkeypatch.setenv("VERSION", "from-env")
    assert d.main.resolve_version() == "from-env"


def test_missing_secret_stops_deploy_before_any_ssh_or_hook(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    record = tmp_path / "hooks.log"
    _hook(tmp_path, "pre-connect", f"echo ran >> {record}\n")
    config = make_config(RAW, version=None, secrets="OTHER=1\n")
    runner = FakeRunner()
    d = Deployer(
        config=config,
        runner=runner,
        out=Output(stream=io.StringIO()),
        options=Options(version="v2"),
        root=tmp_path,
        command="deploy",
        lock_held=False,
    )
    with pytest.raises(SecretError, match=r"secret DB referenced by the configuration but not found in"):
        asyncio.run(d.main.deploy(skip_push=True))
    assert runner.log == []  # nothing ran on any host
    assert not record.exists()  # not even the pre-connect hook
    with pytest.raises(SecretError, match=r"secret DB"):
        asyncio.run(d.main.setup(skip_push=True))
    assert runner.log == []


def test_primary_role_boots_first_on_a_shared_host(make_config: ConfigFactory, tmp_path: Path) -> None:
    raw = {
        **RAW,
        "primary_role": "workers",
        "servers": {"web": ["h1"], "workers": {"hosts": ["h1"], "cmd": "x"}},
    }
    d, r, _, _ = make(make_config, tmp_path, raw=raw)
    r.when(r"docker container ls --all --filter 'name=\^app-workers-v2\$' --quiet", "cid-w")
    asyncio.run(d.main.deploy(skip_push=True))
    assert [role.name for role in d.config.roles] == [
        "web",
        "workers",
    ]  # the configuration keeps Kamal's order
    assert r.index(r"--name app-workers-v2", "h1") < r.index(r"--name app-web-v2", "h1")


@pytest.mark.parametrize(
    ("hooks_output", "level", "shown"),
    [
        (None, NORMAL, True),
        ("quiet", NORMAL, False),
        ({"pre-connect": "quiet"}, NORMAL, False),
        ({"post-deploy": "quiet"}, NORMAL, True),
        (":verbose", NORMAL, True),
        ("quiet", VERBOSE, True),  # -v shows every hook's output
        ("verbose", QUIET, False),  # -q hides it
    ],
)
def test_hooks_output_decides_whether_hook_output_is_shown(
    make_config: ConfigFactory, tmp_path: Path, hooks_output: Any, level: int, shown: bool
) -> None:
    _hook(tmp_path, "pre-connect", "echo hello-from-the-hook\n")
    raw = {**RAW, "hooks_output": hooks_output} if hooks_output is not None else RAW
    config = make_config(raw, version=None, secrets="DB=x\n")
    buf = io.StringIO()
    d = Deployer(
        config=config, runner=FakeRunner(), out=Output(level, stream=buf), root=tmp_path, lock_held=False
    )
    d.ctx.hook("pre-connect", "v1")
    assert ("hello-from-the-hook" in buf.getvalue()) is shown
