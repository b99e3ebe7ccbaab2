"""Config loading, destination merging, validation errors, legacy keys and derived names."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from deployer.config import load_config
from deployer.errors import ConfigError
from tests.deployer.conftest import ConfigFactory

BASE_YML = """\
service: app
image: dhh/app
registry:
  username: dhh
  password:
    - KAMAL_REGISTRY_PASSWORD
servers:
  web:
    - 1.1.1.1
    - 1.1.1.2
  workers:
    hosts:
      - 1.1.1.3
    cmd: bin/jobs
env:
  clear:
    A: 1
  secret:
    - DB_URL
builder:
  arch: amd64
"""


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def load(root: Path, text: str, destination: str | None = None, **files: str) -> Any:
    write(root, "config/deploy.yml", text)
    for name, content in files.items():
        write(root, name.replace("__", "/").replace("_dot_", "."), content)
    return load_config("config/deploy.yml", destination=destination, version="abc", root=root)


def test_basic_load_and_derived_names(tmp_path: Path) -> None:
    config = load(tmp_path, BASE_YML)
    assert [r.name for r in config.roles] == ["web", "workers"]
    assert config.primary_role.name == "web"
    assert config.primary_host == "1.1.1.1"
    assert config.all_hosts == ["1.1.1.1", "1.1.1.2", "1.1.1.3"]
    web, workers = config.roles
    assert web.container_name("abc") == "app-web-abc"
    assert web.proxy is not None and workers.proxy is None
    assert workers.cmd == "bin/jobs"
    assert web.env.clear == {"A": "1"} and [s.name for s in web.env.secrets] == ["DB_URL"]
    assert config.absolute_image == "dhh/app:abc"
    assert config.lock_directory == ".kamal/lock-app"
    assert config.audit_log_file == ".kamal/app-audit.log"


def test_roles_keep_kamals_order_and_primary_comes_from_primary_role(tmp_path: Path) -> None:
    config = load(tmp_path, BASE_YML.replace("service: app", "service: app\nprimary_role: workers"))
    assert [r.name for r in config.roles] == ["web", "workers"]  # sorted, as Kamal; not moved
    assert config.primary_role.name == "workers"
    assert config.primary_host == "1.1.1.3"
    # the primary role runs the proxy by default, the others do not
    assert config.role("workers").proxy is not None and config.role("web").proxy is None


def test_destination_file_is_deep_merged(tmp_path: Path) -> None:
    dest = """\
    servers:
      web:
        - 2.2.2.2
    env:
      clear:
        B: two
    proxy:
      host: staging.example.com
    """
    config = load(tmp_path, BASE_YML, "staging", config__deploy_dot_staging_dot_yml=dest)
    assert config.role("web").hosts == ["2.2.2.2"]  # arrays replace
    assert config.role("workers").hosts == ["1.1.1.3"]  # untouched hashes stay
    assert config.env.clear == {"A": "1", "B": "two"}  # hashes merge
    assert config.role("web").container_name("v") == "app-web-staging-v"
    assert config.source.endswith("config/deploy.yml + " + str(tmp_path / "config/deploy.staging.yml"))
    assert config.latest_image == "dhh/app:latest-staging"


def test_multi_document_destination(tmp_path: Path) -> None:
    text = BASE_YML + textwrap.dedent("""\
    ---
    destination: staging
    servers:
      web:
        hosts:
          - 3.3.3.3
    ---
    destination: development
    servers:
      web:
        - 4.4.4.4
    """)
    assert load(tmp_path, text).role("web").hosts == ["1.1.1.1", "1.1.1.2"]
    assert load(tmp_path, text, "staging").role("web").hosts == ["3.3.3.3"]
    assert load(tmp_path, text, "development").role("web").hosts == ["4.4.4.4"]
    with pytest.raises(ConfigError, match=r"destination 'prod' not found"):
        load(tmp_path, text, "prod")


def test_multi_document_errors_name_the_document(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"document 2: expected a map with a `destination: NAME` key"):
        load(tmp_path, BASE_YML + "---\nservers: []\n")
    with pytest.raises(ConfigError, match=r"deploy.yml \(destination staging\): bogus: unknown key"):
        load(tmp_path, BASE_YML + "---\ndestination: staging\nbogus: 1\n")


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("bogus: 1", r"config/deploy.yml: bogus: unknown key \(allowed here: .*accessories"),
        ("proxy:\n  bogus: 1", r"config/deploy.yml: proxy/bogus: unknown key"),
        (
            "proxy:\n  healthcheck:\n    interval: soon",
            r"proxy/healthcheck/interval: expected a number of seconds",
        ),
        ("proxy:\n  app_port: http", r"proxy/app_port: expected an integer >= 1, got 'http'"),
        ("boot:\n  limit: lots", r"boot/limit: expected an integer or a percentage like \"25%\", got 'lots'"),
        ("retain_containers: 0", r"retain_containers: expected an integer >= 1, got 0"),
        ("ssh:\n  keys: id_rsa", r"ssh/keys: expected a list of strings, got 'id_rsa'"),
        ("proxy:\n  host: a.com\n  hosts: [b.com]", r"proxy: specify one of host or hosts, not both"),
        ("accessories:\n  db:\n    host: 1.1.1.1", r"accessories/db/image: required key is missing"),
        ("accessories:\n  db:\n    image: x\n    hots: 1", r"accessories/db/hots: unknown key"),
        ("aliases:\n  deploy: app exec ls", r"aliases/deploy: conflicts with the built-in command"),
        (
            "accessories:\n  db:\n    image: x\n    host: h\n    env:\n      secret:\n        - 'BAD NAME'",
            r"accessories/db/env/secret/0: expected a secret name \(NAME or NAME:ALIAS\), got 'BAD NAME'",
        ),
    ],
)
def test_validation_errors_name_file_path_and_expectation(tmp_path: Path, snippet: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, BASE_YML + snippet + "\n")


def test_role_level_errors(tmp_path: Path) -> None:
    bad_role = BASE_YML.replace("    cmd: bin/jobs", "    cmd: bin/jobs\n    commands: 1")
    with pytest.raises(ConfigError, match=r"config/deploy.yml: servers/workers/commands: unknown key"):
        load(tmp_path, bad_role)
    no_primary = BASE_YML.replace("service: app", "service: app\nprimary_role: api")
    with pytest.raises(ConfigError, match=r"primary_role: The primary_role api isn't defined"):
        load(tmp_path, no_primary)


def test_error_names_destination_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config/deploy.staging.yml: proxy/ssl: expected true or false"):
        load(tmp_path, BASE_YML, "staging", config__deploy_dot_staging_dot_yml="proxy:\n  ssl: 3\n")


def test_missing_required_keys(make_config: ConfigFactory) -> None:
    with pytest.raises(ConfigError, match=r"service: required key is missing"):
        make_config({"image": "x", "registry": {"username": "u", "password": "p"}, "servers": ["h"]})
    with pytest.raises(ConfigError, match=r"registry: required key is missing"):
        make_config({"service": "s", "image": "x", "servers": ["h"]})
    with pytest.raises(ConfigError, match=r"registry/password: is required \(unless the registry is local"):
        make_config({"service": "s", "image": "x", "registry": {"username": "u"}, "servers": ["h"]})
    with pytest.raises(ConfigError, match=r"servers: required key is missing"):
        make_config({"service": "s", "image": "x", "registry": {"username": "u", "password": "p"}})
    with pytest.raises(
        ConfigError,
        match=r"service: Service name can only include alphanumeric characters, hyphens, and underscores",
    ):
        make_config(
            {"service": "My App", "image": "x", "registry": {"server": "localhost:5000"}, "servers": ["h"]}
        )
    # a local registry needs no credentials, and image defaults to service
    config = make_config({"service": "s", "registry": {"server": "localhost:5000"}, "servers": ["h"]})
    assert config.absolute_image == "localhost:5000/s:999"
    assert config.registry.local


def test_x_keys_are_ignored_and_anchors_work(tmp_path: Path) -> None:
    text = "x-common: &hosts\n  - 9.9.9.9\n" + BASE_YML.replace(
        "  web:\n    - 1.1.1.1\n    - 1.1.1.2", "  web: *hosts"
    )
    config = load(tmp_path, text)
    assert config.role("web").hosts == ["9.9.9.9"]


def test_duplicate_keys_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config/deploy.yml: line \d+: duplicate key 'image'"):
        load(tmp_path, BASE_YML + "image: other\n")


def test_invalid_yaml_names_the_file_and_line_not_unicode_string(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, "service: app\nimage: [unclosed\n")
    message = str(exc.value)
    assert message.endswith(
        "config/deploy.yml:3:1: invalid YAML: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence)"
    ), message
    assert "<unicode string>" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"deploy.yml: configuration file not found"):
        load_config("config/deploy.yml", root=tmp_path)


def test_legacy_healthcheck_is_mapped_with_warning(tmp_path: Path, warnings_seen: list[str]) -> None:
    text = (
        BASE_YML
        + "healthcheck:\n  path: /up\n  port: 3000\n  max_attempts: 7\n  interval: 20s\n  cord: /tmp/c\n"
    )
    config = load(tmp_path, text)
    web = config.role("web")
    assert web.proxy is not None
    assert web.proxy.app_port == 3000
    assert web.proxy.healthcheck_path == "/up"
    assert config.deploy_timeout == 140  # 7 attempts x 20 s
    assert web.proxy.deploy_options()["health-check-interval"] == "20s"
    assert any("healthcheck: is a Kamal 1 key" in w for w in warnings_seen)
    assert any("cord: ignored" in w for w in warnings_seen)


def test_proxy_healthcheck_max_attempts_maps_to_deploy_timeout(
    tmp_path: Path, warnings_seen: list[str]
) -> None:
    text = (
        BASE_YML
        + "proxy:\n  healthcheck:\n    path: /health\n    max_attempts: 15\n    interval: 20\n    timeout: 10s\n"
    )
    config = load(tmp_path, text)
    assert config.deploy_timeout == 300
    assert config.role("web").proxy.deploy_options()["health-check-timeout"] == "10s"
    assert any("max_attempts" in w for w in warnings_seen)
    text2 = text.replace("service: app", "service: app\ndeploy_timeout: 60")
    assert load(tmp_path, text2).deploy_timeout == 60


def test_legacy_hooks_map(tmp_path: Path, warnings_seen: list[str]) -> None:
    text = (
        BASE_YML
        + "hooks:\n  post-deploy:\n    - path: scripts/update_lb.sh\n  pre-deploy: scripts/check.sh\n"
    )
    config = load(tmp_path, text)
    assert config.legacy_hooks == {
        "post-deploy": ["scripts/update_lb.sh"],
        "pre-deploy": ["scripts/check.sh"],
    }
    assert any("hooks: is not a Kamal key" in w for w in warnings_seen)
    with pytest.raises(ConfigError, match=r"hooks/after-deploy: unknown hook"):
        load(tmp_path, BASE_YML + "hooks:\n  after-deploy: x.sh\n")


def test_role_proxy_settings(make_config: ConfigFactory) -> None:
    raw = {
        "service": "app",
        "image": "i",
        "registry": {"server": "localhost:5000"},
        "proxy": {"host": "a.com", "app_port": 3000},
        "servers": {
            "web": {"hosts": ["h1"], "proxy": False},
            "api": {"hosts": ["h2"], "proxy": {"path_prefix": "/api"}},
            "jobs": {"hosts": ["h3"], "proxy": True},
        },
        "primary_role": "api",
    }
    config = make_config(raw)
    assert config.role("web").proxy is None
    api = config.role("api").proxy
    assert (
        api is not None and api.hosts == ["a.com"] and api.path_prefixes == ["/api"] and api.app_port == 3000
    )
    assert config.role("jobs").proxy is not None
    assert config.proxy_hosts == ["h2", "h3"]


def test_tls_constraints(make_config: ConfigFactory) -> None:
    base = {"service": "app", "image": "i", "registry": {"server": "localhost:5000"}}
    with pytest.raises(ConfigError, match=r"proxy: Must set a host to enable automatic SSL"):
        make_config({**base, "servers": ["h1"], "proxy": {"ssl": True}})
    with pytest.raises(
        ConfigError,
        match=r"proxy/ssl: SSL is only supported on a single server .* found 2 servers for role web",
    ):
        make_config({**base, "servers": ["h1", "h2"], "proxy": {"ssl": True, "host": "a.com"}})


def test_env_tags_and_role_env(make_config: ConfigFactory) -> None:
    raw = {
        "service": "app",
        "image": "i",
        "registry": {"server": "localhost:5000"},
        "servers": {"web": {"hosts": [{"h1": ["blue", "big"]}, "h2"], "env": {"ROLE": "web", "A": "role"}}},
        "env": {
            "clear": {"A": "root"},
            "secret": ["S1", "S2:ALIAS"],
            "tags": {"blue": {"COLOR": "blue"}, "big": {"clear": {"SIZE": 9}}},
        },
    }
    role = make_config(raw).role("web")
    assert role.env.clear == {"A": "role", "ROLE": "web"}
    assert role.env_for_host("h1").clear == {"A": "role", "ROLE": "web", "COLOR": "blue", "SIZE": "9"}
    assert role.env_for_host("h2").clear == {"A": "role", "ROLE": "web"}
    assert [(s.name, s.secret) for s in role.env.secrets] == [("S1", "S1"), ("S2", "ALIAS")]


def test_boot_groups(make_config: ConfigFactory) -> None:
    raw = {
        "service": "app",
        "image": "i",
        "registry": {"server": "localhost:5000"},
        "servers": ["h1", "h2", "h3", "h4"],
    }
    assert make_config(raw).boot_groups(["h1", "h2", "h3", "h4"]) == [["h1", "h2", "h3", "h4"]]
    pct = make_config({**raw, "boot": {"limit": "25%", "wait": 2}})
    assert pct.boot_groups(["h1", "h2", "h3", "h4"]) == [["h1"], ["h2"], ["h3"], ["h4"]]
    assert pct.boot.wait == 2
    assert make_config({**raw, "boot": {"limit": 3}}).boot_groups(["h1", "h2", "h3", "h4"]) == [
        ["h1", "h2", "h3"],
        ["h4"],
    ]
    # a tiny percentage still boots at least one host per group
    assert make_config({**raw, "boot": {"limit": "10%"}}).boot_groups(["h1", "h2"]) == [["h1"], ["h2"]]


def test_accessory_hosts_from_roles_and_tags(make_config: ConfigFactory) -> None:
    raw = {
        "service": "app",
        "image": "i",
        "registry": {"server": "localhost:5000"},
        "servers": {"web": [{"h1": "db"}, "h2"]},
        "accessories": {
            "db": {
                "image": "postgres:15",
                "tag": "db",
                "port": "127.0.0.1:5432:5432",
                "directories": ["data:/var/lib/postgresql/data"],
            },
            "redis": {"image": "redis", "roles": ["web"], "port": 6379},
        },
    }
    config = make_config(raw)
    assert config.accessories["db"].hosts == ["h1"]
    assert config.accessories["db"].port == "127.0.0.1:5432:5432"
    assert config.accessories["redis"].hosts == ["h1", "h2"]
    assert config.accessories["redis"].port == "6379:6379"


def test_require_destination(make_config: ConfigFactory) -> None:
    raw = {
        "service": "app",
        "image": "i",
        "registry": {"server": "localhost:5000"},
        "servers": ["h"],
        "require_destination": True,
    }
    with pytest.raises(ConfigError, match="pass -d DESTINATION"):
        make_config(raw)


def test_redacted_config_has_no_secrets(make_config: ConfigFactory) -> None:
    raw = {
        "service": "app",
        "image": "i",
        "registry": {"username": "u", "password": ["PW"]},
        "servers": ["h"],
        "env": {"secret": ["DB"]},
    }
    config = make_config(raw, secrets="PW=hunter22\nDB=postgres://x:y@z\n")
    text = repr(config.to_redacted_dict())
    assert "hunter22" not in text and "postgres://" not in text
    assert config.to_redacted_dict()["registry"]["password"] == "[REDACTED]"


def test_secret_env_file_content(make_config: ConfigFactory) -> None:
    raw = {
        "service": "app",
        "image": "i",
        "registry": {"server": "localhost:5000"},
        "servers": ["h"],
        "env": {"secret": ["DB", "KEY:OTHER_KEY"]},
    }
    config = make_config(raw, secrets='DB=pg://x\nOTHER_KEY="multi\nline"\n')
    assert config.secret_env_content(config.role("web").env) == "DB=pg://x\nKEY=multi\\nline\n"
