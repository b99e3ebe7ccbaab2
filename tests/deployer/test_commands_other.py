"""Proxy/lock/auditor/prune/registry/docker/builder/accessory commands vs Kamal 2.12's exact lines."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from typing import Any

from deployer.commands import docker as docker_cmds
from deployer.commands.accessory import AccessoryCommands
from deployer.commands.auditor import Auditor
from deployer.commands.base import create_network
from deployer.commands.builder import Builder
from deployer.commands.lock import Lock
from deployer.commands.proxy import Proxy
from deployer.commands.prune import Prune
from deployer.commands.registry import RegistryCommands
from deployer.utils import join, redact
from tests.deployer.conftest import ConfigFactory

BASE: dict[str, Any] = {
    "service": "app",
    "image": "dhh/app",
    "registry": {"username": "dhh", "password": "secret"},
    "servers": ["1.1.1.1"],
    "builder": {"arch": "amd64"},
}
RUN_PREFIX = (
    "docker run --name kamal-proxy --network kamal --detach --restart unless-stopped "
    "--volume kamal-proxy-config:/home/kamal-proxy/.config/kamal-proxy "
    "--volume $PWD/.kamal/proxy/apps-config:/home/kamal-proxy/.apps-config"
)


def proxy(make_config: ConfigFactory, run: dict[str, Any] | None = None) -> Proxy:
    return Proxy(make_config(BASE, version="123", extra={"proxy": {"run": run}} if run is not None else None))


def test_proxy_legacy_run(make_config: ConfigFactory) -> None:
    assert join(proxy(make_config).run()) == (
        'echo $(cat .kamal/proxy/options 2> /dev/null || echo "--publish 80:80 --publish 443:443 '
        '--log-opt max-size=10m") $(cat .kamal/proxy/image 2> /dev/null || echo "basecamp/kamal-proxy"):'
        '$(cat .kamal/proxy/image_version 2> /dev/null || echo "v0.9.2") '
        '$(cat .kamal/proxy/run_command 2> /dev/null || echo "") | xargs ' + RUN_PREFIX
    )


def test_proxy_run_configs(make_config: ConfigFactory) -> None:
    tail = "--publish 80:80 --publish 443:443 --log-opt max-size=10m"
    assert join(proxy(make_config, {"registry": "registry:4443"}).run()) == (
        f"{RUN_PREFIX} {tail} registry:4443/basecamp/kamal-proxy:v0.9.2 kamal-proxy run"
    )
    assert join(proxy(make_config, {"repository": "custom/repo"}).run()) == (
        f"{RUN_PREFIX} {tail} custom/repo:v0.9.2 kamal-proxy run"
    )
    assert join(proxy(make_config, {"version": "v1.2.3"}).run()) == (
        f"{RUN_PREFIX} {tail} basecamp/kamal-proxy:v1.2.3 kamal-proxy run"
    )
    assert join(proxy(make_config, {"bind_ips": ["0.0.0.0", "127.0.0.1"]}).run()) == (
        f"{RUN_PREFIX} --publish 0.0.0.0:80:80 --publish 0.0.0.0:443:443 --publish 127.0.0.1:80:80 "
        "--publish 127.0.0.1:443:443 --log-opt max-size=10m basecamp/kamal-proxy:v0.9.2 kamal-proxy run"
    )
    assert join(proxy(make_config, {"log_max_size": "50m"}).run()) == (
        f"{RUN_PREFIX} --publish 80:80 --publish 443:443 --log-opt max-size=50m "
        "basecamp/kamal-proxy:v0.9.2 kamal-proxy run"
    )
    assert join(proxy(make_config, {"debug": True}).run()) == (
        f"{RUN_PREFIX} {tail} basecamp/kamal-proxy:v0.9.2 kamal-proxy run --debug"
    )
    assert join(proxy(make_config, {"metrics_port": 9090}).run()) == (
        f'{RUN_PREFIX} {tail} --expose=9090 basecamp/kamal-proxy:v0.9.2 kamal-proxy run --metrics-port "9090"'
    )
    assert join(proxy(make_config, {"publish": False}).run()) == (
        f"{RUN_PREFIX} --log-opt max-size=10m basecamp/kamal-proxy:v0.9.2 kamal-proxy run"
    )
    assert join(proxy(make_config, {"http_port": 8080, "https_port": 8443}).run()) == (
        f"{RUN_PREFIX} --publish 8080:80 --publish 8443:443 --log-opt max-size=10m "
        "basecamp/kamal-proxy:v0.9.2 kamal-proxy run"
    )


def test_proxy_other_commands(make_config: ConfigFactory) -> None:
    p = proxy(make_config)
    assert join(p.start()) == "docker container start kamal-proxy"
    assert join(p.stop()) == "docker container stop kamal-proxy"
    assert join(p.info()) == "docker ps --filter 'name=^kamal-proxy$'"
    assert join(p.logs()) == "docker logs kamal-proxy --timestamps 2>&1"
    assert join(p.logs(since="2h")) == "docker logs kamal-proxy --since 2h --timestamps 2>&1"
    assert join(p.logs(lines=10)) == "docker logs kamal-proxy --tail 10 --timestamps 2>&1"
    assert join(p.logs(timestamps=False)) == "docker logs kamal-proxy 2>&1"
    assert join(p.logs(grep="hello!")) == "docker logs kamal-proxy --timestamps 2>&1 | grep 'hello!'"
    assert join(p.follow_logs_command()) == "docker logs kamal-proxy --timestamps --tail 10 --follow 2>&1"
    assert join(p.follow_logs_command(grep="hello!")) == (
        'docker logs kamal-proxy --timestamps --tail 10 --follow 2>&1 | grep "hello!"'
    )
    assert join(p.remove_container()) == (
        "docker container prune --force --filter label=org.opencontainers.image.title=kamal-proxy"
    )
    assert join(p.remove_image()) == (
        "docker image prune --all --force --filter label=org.opencontainers.image.title=kamal-proxy"
    )
    assert (
        join(p.version()) == "docker inspect kamal-proxy --format '{{.Config.Image}}' | awk -F: '{print $NF}'"
    )
    assert join(p.ensure_proxy_directory()) == "mkdir -p .kamal/proxy"
    assert join(p.ensure_apps_config_directory()) == "mkdir -p .kamal/proxy/apps-config"
    assert join(p.list()) == "docker exec kamal-proxy kamal-proxy list"
    assert join(p.start_or_run()).startswith("docker container start kamal-proxy || echo $(cat")
    assert join(create_network()) == "docker network create kamal"


def test_lock(make_config: ConfigFactory) -> None:
    lock = Lock(make_config(BASE, destination="production", version="123", extra={}, secrets=""))
    assert join(lock.status()) == (
        "stat .kamal/lock-app-production > /dev/null && cat .kamal/lock-app-production/details | base64 -d"
    )
    assert join(lock.release()) == "rm .kamal/lock-app-production/details && rm -r .kamal/lock-app-production"
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    line = join(lock.acquire("Hello", "123", locked_by="Ann", at=at))
    m = re.fullmatch(
        r'mkdir \.kamal/lock-app-production && echo "(.*)" > \.kamal/lock-app-production/details', line
    )
    assert m
    assert base64.b64decode(m.group(1)).decode() == (
        "Locked by: Ann at 2026-01-02T03:04:05Z\nVersion: 123\nMessage: Hello"
    )


def test_auditor(make_config: ConfigFactory) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    a = Auditor(make_config(BASE, version="123"), "deployer@example.com")
    assert join(a.record("app removed container", at=at)) == (
        'mkdir -p .kamal && echo "[2026-01-02T03:04:05Z] [deployer@example.com] app removed container" '
        ">> .kamal/app-audit.log"
    )
    staging = Auditor(
        make_config(BASE, destination="staging", version="123", secrets=""), "deployer@example.com"
    )
    assert join(staging.record("app removed container", at=at)) == (
        'mkdir -p .kamal && echo "[2026-01-02T03:04:05Z] [deployer@example.com] [staging] app removed container" '
        ">> .kamal/app-staging-audit.log"
    )
    with_role = Auditor(make_config(BASE, version="123"), "deployer@example.com", role="web")
    assert join(with_role.record("app removed container", at=at)) == (
        'mkdir -p .kamal && echo "[2026-01-02T03:04:05Z] [deployer@example.com] [web] app removed container" '
        ">> .kamal/app-audit.log"
    )
    assert join(a.record("app removed container", at=at, detail="value")) == (
        'mkdir -p .kamal && echo "[2026-01-02T03:04:05Z] [deployer@example.com] [value] app removed container" '
        ">> .kamal/app-audit.log"
    )
    assert join(a.reveal()) == "tail -n 50 .kamal/app-audit.log"


def test_prune(make_config: ConfigFactory) -> None:
    p = Prune(make_config(BASE, version="123"))
    assert join(p.dangling_images()) == "docker image prune --force --filter label=service=app"
    assert join(p.tagged_images()) == (
        "docker image ls --filter label=service=app --format '{{.ID}} {{.Repository}}:{{.Tag}}' | "
        "grep -v -w \"$(docker container ls -a --format '{{.Image}}\\|' --filter label=service=app | tr -d '\\n')"
        'dhh/app:latest\\|dhh/app:<none>" | while read image tag; do docker rmi $tag; done'
    )
    assert join(p.app_containers(retain=5)) == (
        "docker ps -q -a --filter label=service=app --filter status=created --filter status=exited "
        "--filter status=dead | tail -n +6 | while read container_id; do docker rm $container_id; done"
    )
    assert join(p.app_containers(retain=3)).count("tail -n +4") == 1


REG: dict[str, Any] = {
    **BASE,
    "registry": {"username": "dhh", "password": "secret", "server": "hub.docker.com"},
    "accessories": {
        "db": {
            "image": "mysql:8.0",
            "hosts": ["1.1.1.1"],
            "registry": {"username": "user", "password": "pw", "server": "other.hub.docker.com"},
        }
    },
}


def test_registry(make_config: ConfigFactory) -> None:
    config = make_config(REG)
    r = RegistryCommands(config)
    assert join(r.login()) == 'docker login hub.docker.com -u "dhh" -p "secret"'
    assert redact(r.login()) == "docker login hub.docker.com -u [REDACTED] -p [REDACTED]"
    assert (
        join(r.login(config.accessories["db"].registry))
        == 'docker login other.hub.docker.com -u "user" -p "pw"'
    )
    assert join(r.logout()) == "docker logout hub.docker.com"
    assert join(r.logout(config.accessories["db"].registry)) == "docker logout other.hub.docker.com"
    assert join(r.remove()) == "docker stop kamal-docker-registry && docker rm kamal-docker-registry"
    local = RegistryCommands(make_config({**BASE, "registry": {"server": "localhost:5000"}}))
    assert join(local.setup()) == (
        "docker start kamal-docker-registry || docker run --detach -p 127.0.0.1:5000:5000 "
        "--name kamal-docker-registry registry:3"
    )


def test_registry_with_secrets(make_config: ConfigFactory) -> None:
    raw = {**REG, "registry": {**REG["registry"], "password": ["KAMAL_REGISTRY_PASSWORD"]}}
    raw["accessories"] = {
        "db": {
            **REG["accessories"]["db"],
            "registry": {
                **REG["accessories"]["db"]["registry"],
                "password": ["KAMAL_MYSQL_REGISTRY_PASSWORD"],
            },
        }
    }
    config = make_config(
        raw, secrets="KAMAL_REGISTRY_PASSWORD=more-secret\nKAMAL_MYSQL_REGISTRY_PASSWORD=secret-pw"
    )
    r = RegistryCommands(config)
    assert join(r.login()) == 'docker login hub.docker.com -u "dhh" -p "more-secret"'
    assert join(r.login(config.accessories["db"].registry)) == (
        'docker login other.hub.docker.com -u "user" -p "secret-pw"'
    )


def test_registry_escapes_password(make_config: ConfigFactory) -> None:
    raw = {**REG, "registry": {**REG["registry"], "password": ["KAMAL_REGISTRY_PASSWORD"]}}
    config = make_config(raw, secrets="KAMAL_REGISTRY_PASSWORD=more-secret'\"\n")
    assert (
        join(RegistryCommands(config).login()) == 'docker login hub.docker.com -u "dhh" -p "more-secret\'\\""'
    )


def test_docker_bootstrap_commands() -> None:
    assert join(docker_cmds.install()) == (
        "sh -c 'curl -fsSL https://get.docker.com || wget -O - https://get.docker.com || echo \"exit 1\"' | sh"
    )
    assert join(docker_cmds.installed()) == "docker -v"
    assert join(docker_cmds.running()) == "docker version"
    assert join(docker_cmds.superuser()) == '[ "${EUID:-$(id -u)}" -eq 0 ] || sudo -nl usermod >/dev/null'
    assert join(docker_cmds.root()) == '[ "${EUID:-$(id -u)}" -eq 0 ]'
    assert join(docker_cmds.in_docker_group()) == 'id -nG "${USER:-$(id -un)}" | grep -qw docker'
    assert join(docker_cmds.add_to_docker_group()) == 'sudo -n usermod -aG docker "${USER:-$(id -un)}"'
    assert join(docker_cmds.refresh_session()) == "kill -HUP $PPID"


def builder(make_config: ConfigFactory, b: dict[str, Any], secrets: str | None = None) -> Builder:
    return Builder(make_config({**BASE, "builder": b}, version="123", secrets=secrets))


def test_builder_push(make_config: ConfigFactory) -> None:
    prefix = "docker buildx build --output=type=registry --platform linux/amd64 --builder kamal-local-docker-container"
    tags = "-t dhh/app:123 -t dhh/app:latest"
    assert join(builder(make_config, {"arch": ["amd64"]}).push()) == (
        f'{prefix} {tags} --label service="app" --file Dockerfile . 2>&1'
    )
    assert join(builder(make_config, {"arch": "amd64", "cache": {"type": "gha"}}).push()) == (
        f'{prefix} {tags} --cache-to type=gha --cache-from type=gha --label service="app" --file Dockerfile . 2>&1'
    )
    assert join(builder(make_config, {"arch": "amd64", "args": {"a": 1, "b": 2}}).push()) == (
        f'{prefix} {tags} --label service="app" --build-arg a="1" --build-arg b="2" --file Dockerfile . 2>&1'
    )
    assert join(builder(make_config, {"arch": "amd64", "secrets": ["a", "b"]}).push()) == (
        f'{prefix} {tags} --label service="app" --secret id="a" --secret id="b" --file Dockerfile . 2>&1'
    )
    assert join(builder(make_config, {"arch": "amd64", "context": ".."}).push(context="..")) == (
        f'{prefix} {tags} --label service="app" --file Dockerfile .. 2>&1'
    )
    assert join(builder(make_config, {"arch": "amd64", "provenance": "mode=max"}).push()) == (
        f'{prefix} {tags} --label service="app" --file Dockerfile --provenance mode=max . 2>&1'
    )
    assert join(builder(make_config, {"arch": "amd64", "sbom": False}).push()) == (
        f'{prefix} {tags} --label service="app" --file Dockerfile --sbom false . 2>&1'
    )
    assert join(builder(make_config, {"arch": "amd64"}).push(no_cache=True)) == (
        f'{prefix} {tags} --label service="app" --file Dockerfile --no-cache . 2>&1'
    )
    assert (
        join(
            builder(
                make_config, {"arch": "amd64", "target": "prod", "ssh": "default=$SSH_AUTH_SOCK"}
            ).build_options()
        )
        == '--label service="app" --file Dockerfile --target prod --ssh default=$SSH_AUTH_SOCK'
    )
    assert join(builder(make_config, {"arch": "amd64", "dockerfile": "Dockerfile.xyz"}).build_options()) == (
        '--label service="app" --file Dockerfile.xyz'
    )
    assert join(builder(make_config, {"arch": ["amd64", "arm64"], "driver": "docker"}).push()) == (
        "docker buildx build --output=type=registry --platform linux/amd64,linux/arm64 "
        f'{tags} --label service="app" --file Dockerfile . 2>&1'
    )


def test_builder_host_side(make_config: ConfigFactory) -> None:
    b = builder(make_config, {"arch": "amd64"})
    assert join(b.validate_image()) == (
        "docker inspect -f '{{ .Config.Labels.service }}' dhh/app:123 | grep -x app || "
        "(echo \"Image dhh/app:123 is missing the 'service' label\" && exit 1)"
    )
    assert join(b.pull()) == "docker pull dhh/app:123"
    assert join(b.clean()) == "docker image rm --force dhh/app:123"
    assert join(b.ensure_local_dependencies_installed()) == "docker --version && docker buildx version"
    assert join(b.inspect_builder()) == "docker buildx inspect kamal-local-docker-container"
    assert (
        join(b.create())
        == "docker buildx create --name kamal-local-docker-container --driver=docker-container"
    )


ACC: dict[str, Any] = {
    **BASE,
    "registry": {"server": "private.registry", "username": "dhh", "password": "secret"},
    "accessories": {
        "mysql": {
            "image": "private.registry/mysql:8.0",
            "host": "1.1.1.5",
            "port": "3306",
            "env": {"clear": {"MYSQL_ROOT_HOST": "%"}, "secret": ["MYSQL_ROOT_PASSWORD"]},
            "options": {"cpus": "4", "memory": "2GB"},
        },
        "redis": {
            "image": "redis:latest",
            "host": "1.1.1.6",
            "port": "6379:6379",
            "labels": {"cache": "true"},
            "env": {"SOMETHING": "else"},
            "volumes": ["/var/lib/redis:/data"],
        },
        "busybox": {
            "service": "custom-busybox",
            "image": "busybox:latest",
            "host": "1.1.1.7",
            "registry": {"server": "other.registry", "username": "user", "password": "pw"},
            "proxy": {"host": "busybox.example.com"},
        },
    },
}


def test_accessory_run(make_config: ConfigFactory) -> None:
    config = make_config(ACC, secrets="MYSQL_ROOT_PASSWORD=secret123")
    assert join(AccessoryCommands(config, "mysql").run()) == (
        'docker run --name app-mysql --detach --restart unless-stopped --network kamal --log-opt max-size="10m" '
        '--publish 3306:3306 --env MYSQL_ROOT_HOST="%" --env-file .kamal/apps/app/env/accessories/mysql.env '
        '--label service="app-mysql" --cpus "4" --memory "2GB" private.registry/mysql:8.0'
    )
    assert join(AccessoryCommands(config, "redis").run()) == (
        'docker run --name app-redis --detach --restart unless-stopped --network kamal --log-opt max-size="10m" '
        '--publish 6379:6379 --env SOMETHING="else" --env-file .kamal/apps/app/env/accessories/redis.env '
        '--volume /var/lib/redis:/data --label service="app-redis" --label cache="true" redis:latest'
    )
    assert join(AccessoryCommands(config, "busybox").run()) == (
        "docker run --name custom-busybox --detach --restart unless-stopped --network kamal "
        '--log-opt max-size="10m" --env-file .kamal/apps/app/env/accessories/busybox.env '
        '--label service="custom-busybox" other.registry/busybox:latest'
    )
    custom = make_config(ACC, extra={"accessories": {"mysql": {"network": "custom"}}})
    assert "--network custom" in join(AccessoryCommands(custom, "mysql").run())


def test_accessory_other_commands(make_config: ConfigFactory) -> None:
    config = make_config(ACC)
    mysql = AccessoryCommands(config, "mysql")
    assert join(mysql.start()) == "docker container start app-mysql"
    assert join(mysql.stop()) == "docker container stop app-mysql"
    assert join(mysql.info()) == "docker ps --filter label=service=app-mysql"
    assert join(mysql.execute_in_new_container(["mysql", "-u", "root"])) == (
        'docker run --rm --network kamal --env MYSQL_ROOT_HOST="%" --env-file .kamal/apps/app/env/accessories/mysql.env '
        '--cpus "4" --memory "2GB" private.registry/mysql:8.0 mysql -u root'
    )
    assert (
        join(mysql.execute_in_existing_container(["mysql", "-u", "root"]))
        == "docker exec app-mysql mysql -u root"
    )
    assert join(mysql.logs()) == "docker logs app-mysql --timestamps 2>&1"
    assert join(mysql.logs(since="5m", lines=100, grep="thing")) == (
        "docker logs app-mysql  --since 5m  --tail 100 --timestamps 2>&1 | grep 'thing'"
    )
    assert join(mysql.logs(timestamps=False, since="5m", lines=100, grep="thing", grep_options="-C 2")) == (
        "docker logs app-mysql  --since 5m  --tail 100 2>&1 | grep 'thing' -C 2"
    )
    assert join(mysql.remove_container()) == "docker container prune --force --filter label=service=app-mysql"
    assert join(mysql.pull_image()) == "docker image pull private.registry/mysql:8.0"
    assert join(mysql.remove_image()) == "docker image rm --force private.registry/mysql:8.0"
    busybox = AccessoryCommands(config, "busybox")
    assert join(busybox.deploy(target="172.1.0.2")) == (
        'docker exec kamal-proxy kamal-proxy deploy custom-busybox --target="172.1.0.2:80" '
        '--host="busybox.example.com" --deploy-timeout="30s" --drain-timeout="30s" --buffer-requests '
        '--buffer-responses --log-request-header="Cache-Control" --log-request-header="Last-Modified" '
        '--log-request-header="User-Agent"'
    )
    assert join(busybox.remove()) == "docker exec kamal-proxy kamal-proxy remove custom-busybox"


def test_accessory_directories_strings_and_maps(make_config: ConfigFactory) -> None:
    raw = {
        **BASE,
        "accessories": {
            "mysql": {
                "image": "mysql:8.0",
                "host": "1.1.1.5",
                "options": {"restart": "always"},
                "directories": [
                    "mysql-logs:/var/log/mysql",
                    "/srv/conf:/etc/mysql/conf.d:ro",
                    {
                        "local": "mysql-data",
                        "remote": "/var/lib/mysql",
                        "mode": "0750",
                        "owner": "mysql:mysql",
                    },
                    {"local": "mysql-tmp", "remote": "/tmp/mysql", "options": "z"},
                ],
            }
        },
    }
    mysql = AccessoryCommands(make_config(raw), "mysql")
    run = join(mysql.run())
    assert "--restart always " in run and "--restart unless-stopped" not in run
    assert (
        "--volume $PWD/app-mysql/mysql-logs:/var/log/mysql --volume /srv/conf:/etc/mysql/conf.d:ro "
        "--volume $PWD/app-mysql/mysql-data:/var/lib/mysql --volume $PWD/app-mysql/mysql-tmp:/tmp/mysql:z"
    ) in run
    assert [join(c) for c in mysql.make_directories()] == [
        "mkdir -p $PWD/app-mysql/mysql-logs",
        "mkdir -p /srv/conf",
        "mkdir -p $PWD/app-mysql/mysql-data",
        "chmod 0750 $PWD/app-mysql/mysql-data",
        "chown mysql:mysql $PWD/app-mysql/mysql-data",
        "mkdir -p $PWD/app-mysql/mysql-tmp",
    ]


def test_proxy_run_is_per_server_roles_merge_the_root_run(make_config: ConfigFactory) -> None:
    raw = {
        **BASE,
        "proxy": {"run": {"http_port": 8000, "log_max_size": "5m"}},
        "servers": {
            "web": ["h1"],
            "api": {"hosts": ["h2"], "proxy": {"host": "api.example.com", "run": {"http_port": 9000}}},
            "jobs": {"hosts": ["h3"], "cmd": "bin/jobs"},
        },
    }
    config = make_config(raw)
    assert "--publish 8000:80 --publish 443:443 --log-opt max-size=5m" in join(Proxy(config, "h1").run())
    assert "--publish 9000:80 --publish 443:443 --log-opt max-size=5m" in join(Proxy(config, "h2").run())
    # a server without a proxied role has no run configuration: Kamal's boot files decide
    assert join(Proxy(config, "h3").run()).startswith("echo $(cat .kamal/proxy/options")
