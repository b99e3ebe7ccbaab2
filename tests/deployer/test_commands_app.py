"""App commands, compared with the exact lines of Kamal 2.12's test/commands/app_test.rb."""

from __future__ import annotations

import re
from typing import Any

import pytest

from deployer.commands.app import App
from deployer.utils import join, redact
from tests.deployer.conftest import ConfigFactory

BASE: dict[str, Any] = {
    "service": "app",
    "image": "dhh/app",
    "registry": {"username": "dhh", "password": "secret"},
    "servers": {"web": ["1.1.1.1"], "workers": ["1.1.1.2"]},
    "env": {"secret": ["RAILS_MASTER_KEY"]},
    "builder": {"arch": "amd64"},
}

CURRENT = (
    "sh -c 'docker ps --latest --quiet --filter label=service=app --filter label=destination= "
    "--filter label=role={role} --filter status=running --filter status=restarting "
    "--filter ancestor=$(docker image ls --filter reference=dhh/app:latest --format '\\''{{{{.ID}}}}'\\'') ; "
    "docker ps --latest --quiet --filter label=service=app --filter label=destination= --filter label={role2} "
    "--filter status=running --filter status=restarting' | head -1"
)


def current(role: str = "web") -> str:
    return CURRENT.format(role=role, role2=f"role={role}")


@pytest.fixture
def app(make_config: ConfigFactory) -> Any:
    def factory(
        role: str = "web",
        host: str = "1.1.1.1",
        destination: str | None = None,
        extra: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None,
    ) -> App:
        config = make_config(
            raw or BASE, destination=destination, secrets="RAILS_MASTER_KEY=456", extra=extra
        )
        return App(config, config.role(role), host)

    return factory


def test_run(app: Any) -> None:
    assert join(app().run()) == (
        "docker run --detach --restart unless-stopped --name app-web-999 --network kamal "
        '--env KAMAL_CONTAINER_NAME="app-web-999" --env KAMAL_VERSION="999" --env KAMAL_HOST="1.1.1.1" '
        '--env-file .kamal/apps/app/env/roles/web.env --log-opt max-size="10m" '
        '--label service="app" --label role="web" --label destination dhh/app:999'
    )


def test_run_with_destination(app: Any) -> None:
    assert join(app(destination="staging").run()) == (
        "docker run --detach --restart unless-stopped --name app-web-staging-999 --network kamal "
        '--env KAMAL_CONTAINER_NAME="app-web-staging-999" --env KAMAL_VERSION="999" --env KAMAL_HOST="1.1.1.1" '
        '--env KAMAL_DESTINATION="staging" --env-file .kamal/apps/app-staging/env/roles/web.env '
        '--log-opt max-size="10m" --label service="app" --label role="web" --label destination="staging" '
        "dhh/app:999"
    )


def test_run_with_hostname(app: Any) -> None:
    assert join(app().run(hostname="myhost")) == (
        "docker run --detach --restart unless-stopped --name app-web-999 --network kamal --hostname myhost "
        '--env KAMAL_CONTAINER_NAME="app-web-999" --env KAMAL_VERSION="999" --env KAMAL_HOST="1.1.1.1" '
        '--env-file .kamal/apps/app/env/roles/web.env --log-opt max-size="10m" '
        '--label service="app" --label role="web" --label destination dhh/app:999'
    )


def test_run_with_volumes(app: Any) -> None:
    assert join(app(extra={"volumes": ["/local/path:/container/path"]}).run()) == (
        "docker run --detach --restart unless-stopped --name app-web-999 --network kamal "
        '--env KAMAL_CONTAINER_NAME="app-web-999" --env KAMAL_VERSION="999" --env KAMAL_HOST="1.1.1.1" '
        '--env-file .kamal/apps/app/env/roles/web.env --log-opt max-size="10m" '
        "--volume /local/path:/container/path "
        '--label service="app" --label role="web" --label destination dhh/app:999'
    )


def test_run_with_custom_options(app: Any) -> None:
    raw = {
        **BASE,
        "servers": {
            "web": ["1.1.1.1"],
            "jobs": {
                "hosts": ["1.1.1.2"],
                "cmd": "bin/jobs",
                "options": {"mount": "somewhere", "cap-add": True},
            },
        },
    }
    assert join(app(role="jobs", host="1.1.1.2", raw=raw).run()) == (
        "docker run --detach --restart unless-stopped --name app-jobs-999 --network kamal "
        '--env KAMAL_CONTAINER_NAME="app-jobs-999" --env KAMAL_VERSION="999" --env KAMAL_HOST="1.1.1.2" '
        '--env-file .kamal/apps/app/env/roles/jobs.env --log-opt max-size="10m" '
        '--label service="app" --label role="jobs" --label destination --mount "somewhere" --cap-add '
        "dhh/app:999 bin/jobs"
    )


def test_run_with_restart_option_and_labels(app: Any) -> None:
    raw = {
        **BASE,
        "labels": {"team": "a"},
        "servers": {
            "web": {
                "hosts": ["1.1.1.1"],
                "labels": {"x": 1},
                "options": {"restart": "always", "memory": "2g"},
            }
        },
    }
    assert join(app(raw=raw).run()) == (
        "docker run --detach --restart always --name app-web-999 --network kamal "
        '--env KAMAL_CONTAINER_NAME="app-web-999" --env KAMAL_VERSION="999" --env KAMAL_HOST="1.1.1.1" '
        '--env-file .kamal/apps/app/env/roles/web.env --log-opt max-size="10m" '
        '--label service="app" --label role="web" --label destination --label team="a" --label x="1" '
        '--memory "2g" dhh/app:999'
    )


def test_run_with_logging_config(app: Any) -> None:
    extra = {"logging": {"driver": "local", "options": {"max-size": "100m", "max-file": "3"}}}
    assert join(app(extra=extra).run()) == (
        "docker run --detach --restart unless-stopped --name app-web-999 --network kamal "
        '--env KAMAL_CONTAINER_NAME="app-web-999" --env KAMAL_VERSION="999" --env KAMAL_HOST="1.1.1.1" '
        '--env-file .kamal/apps/app/env/roles/web.env --log-driver "local" --log-opt max-size="100m" '
        '--log-opt max-file="3" --label service="app" --label role="web" --label destination dhh/app:999'
    )


def test_run_with_role_logging_config(app: Any) -> None:
    raw = {
        **BASE,
        "logging": {"driver": "local", "options": {"max-size": "10m", "max-file": "3"}},
        "servers": {
            "web": {"hosts": ["1.1.1.1"], "logging": {"driver": "local", "options": {"max-size": "100m"}}}
        },
    }
    assert join(app(raw=raw).run()) == (
        "docker run --detach --restart unless-stopped --name app-web-999 --network kamal "
        '--env KAMAL_CONTAINER_NAME="app-web-999" --env KAMAL_VERSION="999" --env KAMAL_HOST="1.1.1.1" '
        '--env-file .kamal/apps/app/env/roles/web.env --log-driver "local" --log-opt max-size="100m" '
        '--log-opt max-file="3" --label service="app" --label role="web" --label destination dhh/app:999'
    )


def test_run_with_tags(app: Any) -> None:
    raw = {
        **BASE,
        "servers": [{"1.1.1.1": "tag1"}],
        "env": {"secret": ["RAILS_MASTER_KEY"], "tags": {"tag1": {"ENV1": "value1"}}},
    }
    assert join(app(raw=raw).run()) == (
        "docker run --detach --restart unless-stopped --name app-web-999 --network kamal "
        '--env KAMAL_CONTAINER_NAME="app-web-999" --env KAMAL_VERSION="999" --env KAMAL_HOST="1.1.1.1" '
        '--env ENV1="value1" --env-file .kamal/apps/app/env/roles/web.env --log-opt max-size="10m" '
        '--label service="app" --label role="web" --label destination dhh/app:999'
    )


def test_start(app: Any) -> None:
    assert join(app().start()) == "docker start app-web-999"
    assert join(app(destination="staging").start()) == "docker start app-web-staging-999"


def test_stop(app: Any) -> None:
    assert join(app().stop()) == current() + " | xargs docker stop"


def test_stop_with_custom_drain_timeout(app: Any) -> None:
    assert join(app(extra={"drain_timeout": 20}).stop()) == current() + " | xargs docker stop"
    workers = app(role="workers", host="1.1.1.2", extra={"drain_timeout": 20})
    assert join(workers.stop()) == current("workers") + " | xargs docker stop -t 20"


def test_stop_with_version(app: Any) -> None:
    assert join(app().stop(version="123")) == (
        "docker container ls --all --filter 'name=^app-web-123$' --quiet | xargs docker stop"
    )


def test_info(app: Any) -> None:
    assert (
        join(app().info())
        == "docker ps --filter label=service=app --filter label=destination= --filter label=role=web"
    )
    assert join(app(destination="staging").info()) == (
        "docker ps --filter label=service=app --filter label=destination=staging --filter label=role=web"
    )


def test_deploy(app: Any) -> None:
    assert join(app().deploy(target="172.1.0.2")) == (
        'docker exec kamal-proxy kamal-proxy deploy app-web --target="172.1.0.2:80" --deploy-timeout="30s" '
        '--drain-timeout="30s" --buffer-requests --buffer-responses --log-request-header="Cache-Control" '
        '--log-request-header="Last-Modified" --log-request-header="User-Agent"'
    )


def test_deploy_with_ssl(app: Any) -> None:
    assert join(app(extra={"proxy": {"ssl": True, "host": "example.com"}}).deploy(target="172.1.0.2")) == (
        'docker exec kamal-proxy kamal-proxy deploy app-web --target="172.1.0.2:80" --host="example.com" --tls '
        '--deploy-timeout="30s" --drain-timeout="30s" --buffer-requests --buffer-responses '
        '--log-request-header="Cache-Control" --log-request-header="Last-Modified" '
        '--log-request-header="User-Agent"'
    )


def test_deploy_with_ssl_targeting_multiple_hosts(app: Any) -> None:
    extra = {"proxy": {"ssl": True, "hosts": ["example.com", "anotherexample.com"]}}
    assert join(app(extra=extra).deploy(target="172.1.0.2")) == (
        'docker exec kamal-proxy kamal-proxy deploy app-web --target="172.1.0.2:80" --host="example.com" '
        '--host="anotherexample.com" --tls --deploy-timeout="30s" --drain-timeout="30s" --buffer-requests '
        '--buffer-responses --log-request-header="Cache-Control" --log-request-header="Last-Modified" '
        '--log-request-header="User-Agent"'
    )


def test_deploy_with_ssl_false(app: Any) -> None:
    assert join(app(extra={"proxy": {"ssl": False}}).deploy(target="172.1.0.2")) == (
        'docker exec kamal-proxy kamal-proxy deploy app-web --target="172.1.0.2:80" --deploy-timeout="30s" '
        '--drain-timeout="30s" --buffer-requests --buffer-responses --log-request-header="Cache-Control" '
        '--log-request-header="Last-Modified" --log-request-header="User-Agent"'
    )


def test_deploy_with_every_proxy_option(app: Any) -> None:
    extra = {
        "deploy_timeout": 60,
        "drain_timeout": 5,
        "error_pages_path": "public",
        "proxy": {
            "host": "a.com,b.com",
            "app_port": 3000,
            "healthcheck": {"path": "/health", "interval": 3, "timeout": "3s"},
            "response_timeout": 10,
            "buffering": {"requests": False, "memory": 2000000, "max_response_body": 0},
            "path_prefix": "/api",
            "strip_path_prefix": False,
            "forward_headers": True,
            "ssl_redirect": False,
            "logging": {"request_headers": ["X-A"], "response_headers": ["X-Request-ID"]},
        },
    }
    assert join(app(extra=extra).deploy(target="abc123")) == (
        'docker exec kamal-proxy kamal-proxy deploy app-web --target="abc123:3000" --host="a.com" --host="b.com" '
        '--deploy-timeout="60s" --drain-timeout="5s" --health-check-interval="3s" --health-check-timeout="3s" '
        '--health-check-path="/health" --target-timeout="10s" --buffer-requests="false" --buffer-responses '
        '--buffer-memory="2000000" --max-response-body="0" --path-prefix="/api" --strip-path-prefix="false" '
        '--forward-headers --tls-redirect="false" --log-request-header="X-A" '
        '--log-response-header="X-Request-ID" --error-pages="/home/kamal-proxy/.apps-config/app/error_pages/999"'
    )


def test_deploy_with_custom_certificates(app: Any) -> None:
    extra = {"proxy": {"host": "a.com", "ssl": {"certificate_pem": "CERT", "private_key_pem": "KEY"}}}
    line = join(app(extra=extra).deploy(target="abc"))
    assert (
        '--host="a.com" --tls --tls-certificate-path="/home/kamal-proxy/.apps-config/app/tls/web/cert.pem" '
        '--tls-private-key-path="/home/kamal-proxy/.apps-config/app/tls/web/key.pem" --deploy-timeout="30s"'
    ) in line


def test_remove_live_maintenance(app: Any) -> None:
    assert join(app().remove()) == "docker exec kamal-proxy kamal-proxy remove app-web"
    assert join(app().live()) == "docker exec kamal-proxy kamal-proxy resume app-web"
    assert join(app().maintenance()) == "docker exec kamal-proxy kamal-proxy stop app-web"
    assert join(app().maintenance(drain_timeout=10, message="Hi")) == (
        'docker exec kamal-proxy kamal-proxy stop app-web --drain-timeout="10s" --message="Hi"'
    )
    assert (
        join(app(destination="staging").remove())
        == "docker exec kamal-proxy kamal-proxy remove app-web-staging"
    )


def test_logs(app: Any) -> None:
    a = app()
    assert join(a.logs()) == current() + " | xargs docker logs --timestamps 2>&1"
    assert join(a.logs(container_id="C137")) == "echo C137 | xargs docker logs --timestamps 2>&1"
    assert join(a.logs(since="5m")) == current() + " | xargs docker logs --timestamps --since 5m 2>&1"
    assert join(a.logs(lines="100")) == current() + " | xargs docker logs --timestamps --tail 100 2>&1"
    assert join(a.logs(since="5m", lines="100")) == (
        current() + " | xargs docker logs --timestamps --since 5m --tail 100 2>&1"
    )
    assert join(a.logs(grep="my-id")) == current() + " | xargs docker logs --timestamps 2>&1 | grep 'my-id'"
    assert join(a.logs(grep="my-id", grep_options="-C 2")) == (
        current() + " | xargs docker logs --timestamps 2>&1 | grep 'my-id' -C 2"
    )


def test_follow_logs_command(app: Any) -> None:
    assert join(app().follow_logs_command(lines=123, grep="Completed")) == (
        current() + ' | xargs docker logs --timestamps --tail 123 --follow 2>&1 | grep "Completed"'
    )
    assert join(app().follow_logs_command(container_id="ID321")) == (
        "echo ID321 | xargs docker logs --timestamps --follow 2>&1"
    )


def test_execute_in_new_container(app: Any) -> None:
    assert re.fullmatch(
        r"docker run --rm --name app-web-exec-999-[0-9a-f]{6} --network kamal "
        r"--env-file \.kamal/apps/app/env/roles/web\.env --env foo=\"bar\" --log-opt max-size=\"10m\" "
        r"dhh/app:999 bin/rails db:setup",
        join(app().execute_in_new_container(["bin/rails", "db:setup"], env={"foo": "bar"})),
    )
    assert re.fullmatch(
        r"docker run --detach --name app-web-exec-999-[0-9a-f]{6} --network kamal "
        r"--env-file \.kamal/apps/app/env/roles/web\.env --log-opt max-size=\"10m\" dhh/app:999 bin/rails db:setup",
        join(app().execute_in_new_container(["bin/rails", "db:setup"], detach=True)),
    )
    assert re.fullmatch(
        r"docker run -it --rm --name app-web-exec-999-[0-9a-f]{6} --network kamal "
        r"--env-file \.kamal/apps/app/env/roles/web\.env --log-opt max-size=\"10m\" dhh/app:999 bin/rails c",
        join(app().execute_in_new_container(["bin/rails", "c"], interactive=True)),
    )


def test_execute_in_existing_container(app: Any) -> None:
    assert join(app().execute_in_existing_container(["bin/rails", "db:setup"])) == (
        "docker exec app-web-999 bin/rails db:setup"
    )
    assert join(app().execute_in_existing_container(["bin/rails", "db:setup"], env={"foo": "bar"})) == (
        'docker exec --env foo="bar" app-web-999 bin/rails db:setup'
    )
    assert join(app().execute_in_existing_container(["bin/rails", "c"], interactive=True)) == (
        "docker exec -it app-web-999 bin/rails c"
    )
    assert join(app().execute_in_existing_container(["bin/rails", "c"], interactive=True, tty=False)) == (
        "docker exec -i app-web-999 bin/rails c"
    )


def test_current_running_container_id(app: Any) -> None:
    assert join(app().current_running_container_id()) == current()
    assert join(app(destination="staging").current_running_container_id()) == (
        "sh -c 'docker ps --latest --quiet --filter label=service=app --filter label=destination=staging "
        "--filter label=role=web --filter status=running --filter status=restarting --filter "
        "ancestor=$(docker image ls --filter reference=dhh/app:latest-staging --format '\\''{{.ID}}'\\'') ; "
        "docker ps --latest --quiet --filter label=service=app --filter label=destination=staging "
        "--filter label=role=web --filter status=running --filter status=restarting' | head -1"
    )


def test_container_id_for_version(app: Any) -> None:
    assert join(app().container_id_for_version("999")) == (
        "docker container ls --all --filter 'name=^app-web-999$' --quiet"
    )


def test_current_running_version(app: Any) -> None:
    assert join(app().current_running_version()) == (
        "sh -c 'docker ps --latest --format '\\''{{.Names}}'\\'' --filter label=service=app "
        "--filter label=destination= --filter label=role=web --filter status=running --filter status=restarting "
        "--filter ancestor=$(docker image ls --filter reference=dhh/app:latest --format '\\''{{.ID}}'\\'') ; "
        "docker ps --latest --format '\\''{{.Names}}'\\'' --filter label=service=app --filter label=destination= "
        "--filter label=role=web --filter status=running --filter status=restarting' | head -1 | "
        "while read line; do echo ${line#app-web-}; done"
    )


def test_list_versions(app: Any) -> None:
    assert join(app().list_versions()) == (
        "docker ps --filter label=service=app --filter label=destination= --filter label=role=web "
        '--format "{{.Names}}" | while read line; do echo ${line#app-web-}; done'
    )
    assert join(app().list_versions("--latest", statuses=("running", "restarting"))) == (
        "docker ps --filter label=service=app --filter label=destination= --filter label=role=web "
        '--filter status=running --filter status=restarting --latest --format "{{.Names}}" | '
        "while read line; do echo ${line#app-web-}; done"
    )


def test_list_and_remove_containers(app: Any) -> None:
    assert join(app().list_containers()) == (
        "docker container ls --all --filter label=service=app --filter label=destination= --filter label=role=web"
    )
    assert join(app(destination="staging").list_containers()) == (
        "docker container ls --all --filter label=service=app --filter label=destination=staging "
        "--filter label=role=web"
    )
    assert join(app().list_container_names()) == (
        "docker container ls --all --filter label=service=app --filter label=destination= --filter label=role=web "
        "--format '{{ .Names }}'"
    )
    assert join(app().remove_container(version="999")) == (
        "docker container ls --all --filter 'name=^app-web-999$' --quiet | xargs docker container rm"
    )
    assert join(app(destination="staging").remove_container(version="999")) == (
        "docker container ls --all --filter 'name=^app-web-staging-999$' --quiet | xargs docker container rm"
    )
    assert join(app().remove_containers()) == (
        "docker container prune --force --filter label=service=app --filter label=destination= "
        "--filter label=role=web"
    )


def test_images(app: Any) -> None:
    assert join(app().list_images()) == "docker image ls dhh/app"
    assert join(app().remove_images()) == "docker image prune --all --force --filter label=service=app"
    assert join(app(destination="staging").remove_images()) == (
        "docker image prune --all --force --filter label=service=app"
    )
    assert join(app().tag_latest_image()) == "docker tag dhh/app:999 dhh/app:latest"
    assert (
        join(app(destination="staging").tag_latest_image()) == "docker tag dhh/app:999 dhh/app:latest-staging"
    )


def test_remove_proxy_app_directory(app: Any) -> None:
    assert join(app().remove_proxy_app_directory()) == "rm -r .kamal/proxy/apps-config/app"


def test_registry_server_prefixes_image(app: Any) -> None:
    raw = {**BASE, "registry": {"server": "registry.example:5000", "username": "u", "password": "p"}}
    assert join(app(raw=raw).tag_latest_image()) == (
        "docker tag registry.example:5000/dhh/app:999 registry.example:5000/dhh/app:latest"
    )


def test_redacted_display_hides_nothing_for_plain_commands(app: Any) -> None:
    assert redact(app().start()) == "docker start app-web-999"
