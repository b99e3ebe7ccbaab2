"""``deployer``: Kamal 2 workflows over SSH, driving kamal-proxy on every host.

Every command accepts the global options (``-c``, ``-d``, ``-v``, ``-q``, ``--hosts``, ``--roles``,
``-p``, ``-H``, ``--version``) either before or after the command name, as Kamal does.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shlex
import sys
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from deployer import errors
from deployer.config import Config, load_config
from deployer.defaults import CONFIG_FILE, HOOK_NAMES
from deployer.errors import DeployerError
from deployer.loading import load_raw
from deployer.output import NORMAL, QUIET, VERBOSE, Output
from deployer.runner import Runner
from deployer.versions import declared_version, git_version
from deployer.workflows import Deployer, Options

F = TypeVar("F", bound=Callable[..., Any])
GLOBAL_KEYS = (
    "config_file",
    "destination",
    "verbose",
    "quiet",
    "hosts",
    "roles",
    "primary",
    "skip_hooks",
    "version",
)


def global_options(f: F) -> F:
    """Kamal's class options, accepted on every command (values given later win)."""
    opts = [
        click.option("-c", "--config-file", default=None, help="Config file (default config/deploy.yml)."),
        click.option("-d", "--destination", default=None, help="Destination: merges config/deploy.DEST.yml."),
        click.option(
            "-v", "--verbose", is_flag=True, default=None, help="Show every command and its output."
        ),
        click.option("-q", "--quiet", is_flag=True, default=None, help="Only show errors."),
        click.option("-h", "--hosts", default=None, help="Comma-separated hosts (shell wildcards allowed)."),
        click.option("-r", "--roles", default=None, help="Comma-separated roles (wildcards allowed)."),
        click.option("-p", "--primary", is_flag=True, default=None, help="Only the primary host."),
        click.option("-H", "--skip-hooks", is_flag=True, default=None, help="Do not run hooks."),
        click.option("--version", "version", default=None, help="Version to deploy (default: git HEAD)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


class State:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def merge(self, kwargs: dict[str, Any]) -> None:
        for key in GLOBAL_KEYS:
            value = kwargs.pop(key, None)
            if value is not None:
                self.values[key] = value

    @property
    def level(self) -> int:
        if self.values.get("verbose"):
            return VERBOSE
        if self.values.get("quiet"):
            return QUIET
        return NORMAL

    def output(self) -> Output:
        out = Output(self.level)
        errors.set_warn_handler(out.warn)
        return out

    def config(self) -> Config:
        path = self.values.get("config_file") or CONFIG_FILE
        return load_config(path, self.values.get("destination"), self.values.get("version"), root=Path.cwd())

    def options(self) -> Options:
        def split(value: str | None) -> list[str] | None:
            return [x.strip() for x in value.split(",") if x.strip()] if value else None

        return Options(
            hosts=split(self.values.get("hosts")),
            roles=split(self.values.get("roles")),
            primary=bool(self.values.get("primary")),
            skip_hooks=bool(self.values.get("skip_hooks")),
            version=self.values.get("version"),
        )


def _state() -> State:
    ctx = click.get_current_context()
    root = ctx.find_root()
    if root.obj is None:
        root.obj = State()
    assert isinstance(root.obj, State)
    return root.obj


def command(group: click.Group, name: str | None = None, **kw: Any) -> Callable[[F], F]:
    """Register a command that takes the global options and receives a ready ``Deployer`` when async."""

    def decorator(f: F) -> F:
        @functools.wraps(f)
        def wrapper(**kwargs: Any) -> Any:
            _state().merge(kwargs)
            return f(**kwargs)

        group.command(name, **kw)(global_options(wrapper))
        return f

    return decorator


def run_workflow(
    fn: Callable[[Deployer], Coroutine[Any, Any, Any]], command_name: str, subcommand: str | None = None
) -> Any:
    state = _state()
    out = state.output()
    config = state.config()
    runner = Runner(config.ssh, out)
    deployer = Deployer(
        config=config,
        runner=runner,
        out=out,
        options=state.options(),
        root=Path.cwd(),
        command=command_name,
        subcommand=subcommand,
    )

    async def main() -> Any:
        try:
            return await fn(deployer)
        finally:
            await runner.close()

    return asyncio.run(main())


# --------------------------------------------------------------------------------------------------


class AliasGroup(click.Group):
    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else None
        if name and name not in self.commands and not name.startswith("-"):
            aliases = _load_aliases()
            if name in aliases:
                expanded = shlex.split(aliases[name]) + args[1:]
                return super().resolve_command(ctx, expanded)
        return super().resolve_command(ctx, args)


def _load_aliases() -> dict[str, str]:
    argv = sys.argv[1:]
    path, dest = CONFIG_FILE, None
    for i, arg in enumerate(argv[:-1]):
        if arg in ("-c", "--config-file"):
            path = argv[i + 1]
        if arg in ("-d", "--destination"):
            dest = argv[i + 1]
    try:
        raw, _ = load_raw(Path(path), dest)
    except DeployerError:
        return {}
    return dict(raw.get("aliases") or {})


@click.group(cls=AliasGroup, context_settings={"help_option_names": ["--help"]})
@global_options
def cli(**kwargs: Any) -> None:
    """Deploy containers with zero downtime through kamal-proxy (Kamal 2 compatible)."""
    _state().merge(kwargs)


@command(cli)
def version() -> None:
    """Show the deployer version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as pkg_version

    try:
        click.echo(pkg_version("kamal-proxy-py"))
    except PackageNotFoundError:
        click.echo("unknown")


INIT_DEPLOY_YML = """\
# Name of your application. Used to uniquely configure containers.
service: my-app

# Name of the container image.
image: my-user/my-app

# Deploy to these servers.
servers:
  web:
    - 192.168.0.1
  # job:
  #   hosts:
  #     - 192.168.0.1
  #   cmd: bin/jobs

# Enable SSL auto certification via Let's Encrypt and allow for multiple apps on a single web server.
# The proxy checks GET /up on app_port (default 80) before switching traffic.
proxy:
  ssl: false
  # host: app.example.com
  app_port: 80
  healthcheck:
    path: /up

# Credentials for your image host.
registry:
  # server: registry.example.com   (default: Docker Hub; localhost:PORT = a local registry)
  username: my-user
  # Always use an access token rather than a real password; read from .kamal/secrets.
  password:
    - KAMAL_REGISTRY_PASSWORD

# Inject ENV variables into containers (secrets come from .kamal/secrets).
env:
  secret:
    - RAILS_MASTER_KEY
  # clear:
  #   DB_HOST: 192.168.0.2

# Configure the image builder.
builder:
  arch: amd64

# boot:
#   limit: 25%   # roll out to a quarter of the hosts at a time
#   wait: 10

# aliases:
#   console: app exec -i --reuse "bin/rails console"
"""

INIT_SECRETS = """\
# Secrets defined here are available for reference under registry/password, env/secret, builder/secrets,
# and accessories/*/env/secret. Values can be literals, $ENV_VARS or $(commands).
KAMAL_REGISTRY_PASSWORD=$KAMAL_REGISTRY_PASSWORD
# RAILS_MASTER_KEY=$(cat config/master.key)
"""

HOOK_SAMPLE = """\
#!/bin/sh
# A sample {name} hook. Rename to `{name}` and make it executable to enable it.
# Available: KAMAL_RECORDED_AT KAMAL_PERFORMER KAMAL_VERSION KAMAL_HOSTS KAMAL_COMMAND KAMAL_SUBCOMMAND
#            KAMAL_SERVICE KAMAL_SERVICE_VERSION KAMAL_DESTINATION KAMAL_ROLES KAMAL_LOCK [KAMAL_RUNTIME]
echo "{name}: $KAMAL_SERVICE_VERSION on $KAMAL_HOSTS"
"""


@command(cli)
def init() -> None:
    """Create config/deploy.yml, .kamal/secrets and sample hooks."""
    out = _state().output()
    created = []
    for path, text in ((Path(CONFIG_FILE), INIT_DEPLOY_YML), (Path(".kamal/secrets"), INIT_SECRETS)):
        if path.exists():
            out.info(f"{path} already exists, leaving it alone")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        created.append(str(path))
    hooks = Path(".kamal/hooks")
    hooks.mkdir(parents=True, exist_ok=True)
    for name in HOOK_NAMES:
        sample = hooks / f"{name}.sample"
        if not sample.exists():
            sample.write_text(HOOK_SAMPLE.format(name=name))
            sample.chmod(0o755)
    out.info(f"Created {', '.join(created) or 'nothing new'}; sample hooks in .kamal/hooks")


@command(cli)
@click.option("-P", "--skip-push", is_flag=True, help="Skip build/push; only pull on the hosts.")
def setup(skip_push: bool) -> None:
    """Install Docker if missing, boot accessories, then deploy."""
    run_workflow(lambda d: d.main.setup(skip_push=skip_push), "setup")


@command(cli)
@click.option("-P", "--skip-push", is_flag=True, help="Skip build/push; only pull on the hosts.")
def deploy(skip_push: bool) -> None:
    """Build, push, and roll out the new version with zero downtime."""
    run_workflow(lambda d: d.main.deploy(skip_push=skip_push), "deploy")


@command(cli)
@click.option("-P", "--skip-push", is_flag=True, help="Skip build/push; only pull on the hosts.")
def redeploy(skip_push: bool) -> None:
    """Deploy without booting the proxy or pruning (cheaper)."""
    run_workflow(lambda d: d.main.deploy(skip_push=skip_push, redeploy=True), "redeploy")


@command(cli)
@click.argument("rollback_version", required=False)
def rollback(rollback_version: str | None) -> None:
    """Roll back to VERSION (default: the newest retained version that is not current)."""
    run_workflow(lambda d: d.main.rollback(rollback_version), "rollback")


@command(cli)
@click.option("--retain", type=int, default=None, help="Containers to keep (default retain_containers).")
@click.argument("what", required=False, type=click.Choice(["all", "images", "containers"]), default="all")
def prune(what: str, retain: int | None) -> None:
    """Prune old containers and images."""
    run_workflow(lambda d: d.main.prune_locked(what, retain), "prune", what)


@command(cli)
@click.option("-y", "--confirmed", is_flag=True, help="Do not ask for confirmation.")
def remove(confirmed: bool) -> None:
    """Remove the app, its proxy (when no other app uses it) and accessories from the (targeted) hosts."""
    if not confirmed:
        click.confirm("This will remove all containers and images. Are you sure?", abort=True)
    run_workflow(lambda d: d.main.remove(), "remove")


@command(cli, name="config")
def show_config() -> None:
    """Show the merged configuration (secrets redacted); exit 1 if a referenced secret is missing."""
    state = _state()
    config = state.config()
    version = declared_version(state.values.get("version")) or git_version(
        Path.cwd(), uncommitted_suffix=config.builder.context == "."
    )
    if version:
        config = config.for_version(version)
    click.echo(yaml.safe_dump(config.to_redacted_dict(), sort_keys=False).rstrip())
    config.check_secrets()


@command(cli)
def audit() -> None:
    """Show the last 50 audit log lines on every host."""

    async def go(d: Deployer) -> None:
        for host, text in (await d.main.audit()).items():
            _host_block(d.out, "App Host", host, text)

    run_workflow(go, "audit")


def _host_block(out: Output, kind: str, host: str, text: str) -> None:
    if out.level >= NORMAL:
        out.data(f"{kind}: {host}")
    out.data(text + "\n")


# -- app ---------------------------------------------------------------------------------------------
@cli.group()
def app() -> None:
    """Manage the app containers."""


@command(app, name="status")
def app_status() -> None:
    """Per host and role: container, version, state and the proxy's view of the target."""

    async def go(d: Deployer) -> None:
        results = await d.app.status()
        for host, rows in results.items():
            lines = [f"App Host: {host}"]
            for r in rows:
                mark = "*" if r["current"] else " "
                proxy = f"  proxy: {r['proxy']}" if r["proxy"] else ""
                lines.append(
                    f" {mark} {r['role']:<8} {r['container']:<40} {r['state']:<10} {r['status']}{proxy}"
                )
            d.out.data("\n".join(lines) + "\n")

    run_workflow(go, "app", "status")


def _app_per_role(what: str, doc: str) -> None:
    def handler() -> None:
        async def go(d: Deployer) -> None:
            for host, texts in (await d.app.per_role(what)).items():
                for text in texts:
                    _host_block(d.out, "App Host", host, text)

        run_workflow(go, "app", what)

    handler.__doc__ = doc
    command(app, name=what)(handler)


_app_per_role("details", "docker ps for the app containers on every host.")
_app_per_role("containers", "All app containers (including stopped ones) on every host.")
_app_per_role("version", "The running version on every host.")


@command(app, name="boot")
def app_boot() -> None:
    """Boot the given --version (default: the current one) again."""
    run_workflow(lambda d: d.app.restart(), "app", "boot")


@command(app, name="restart")
def app_restart() -> None:
    """Restart = boot the current running version again, with zero downtime."""
    run_workflow(lambda d: d.app.restart(), "app", "restart")


@command(app, name="stop")
def app_stop() -> None:
    """Remove the app from the proxy and stop its container."""
    run_workflow(lambda d: d.app.stop(), "app", "stop")


@command(app, name="start")
def app_start() -> None:
    """Start the app container again and register it with the proxy."""
    run_workflow(lambda d: d.app.start(), "app", "start")


@command(app, name="maintenance")
@click.option("--drain-timeout", type=int, default=None, help="Seconds to let in-flight requests finish.")
@click.option("--message", default=None, help="Message on the 503 maintenance page.")
def app_maintenance(drain_timeout: int | None, message: str | None) -> None:
    """Put the app in maintenance mode (the proxy answers 503)."""
    run_workflow(lambda d: d.app.maintenance(drain_timeout, message), "app", "maintenance")


@command(app, name="live")
def app_live() -> None:
    """Leave maintenance mode."""
    run_workflow(lambda d: d.app.live(), "app", "live")


@command(app, name="logs")
@click.option("-f", "--follow", is_flag=True, help="Follow the logs (primary or first --hosts host).")
@click.option("-n", "--lines", type=int, default=None, help="Number of lines (default 100).")
@click.option("-s", "--since", default=None, help="Only since, e.g. 1h or 2026-01-01T00:00:00.")
@click.option("-g", "--grep", default=None, help="Only lines matching this pattern.")
def app_logs(follow: bool, lines: int | None, since: str | None, grep: str | None) -> None:
    """Show app logs from every host."""
    if follow:
        argv = run_workflow(lambda d: d.app.follow_logs_argv(lines, grep), "app", "logs")
        os.execvp(argv[0], argv)

    async def go(d: Deployer) -> None:
        n = lines if lines is not None else (None if since or grep else 100)
        for host, texts in (await d.app.per_role("logs", lines=n, since=since, grep=grep)).items():
            for text in texts:
                _host_block(d.out, "App Host", host, text)

    run_workflow(go, "app", "logs")


@command(app, name="exec", context_settings={"ignore_unknown_options": True})
@click.option("-i", "--interactive", is_flag=True, help="Interactive, over ssh -t on the primary host.")
@click.option("--reuse", is_flag=True, help="Run in the running container (docker exec).")
@click.option("-e", "--env", "env", multiple=True, help="K=V environment variables.")
@click.argument("cmd", nargs=-1, required=True)
def app_exec(interactive: bool, reuse: bool, env: tuple[str, ...], cmd: tuple[str, ...]) -> None:
    """Run CMD in a new container (or with --reuse, in the running one) on every host."""
    command_words = shlex.split(" ".join(cmd)) if len(cmd) == 1 else list(cmd)
    env_map = dict(e.split("=", 1) for e in env)
    if interactive:
        argv = run_workflow(
            lambda d: d.app.interactive_exec_argv(command_words, env_map, reuse), "app", "exec"
        )
        os.execvp(argv[0], argv)

    async def go(d: Deployer) -> None:
        for host, text in (await d.app.exec(command_words, env_map, reuse)).items():
            _host_block(d.out, "App Host", host, text)

    run_workflow(go, "app", "exec")


# -- proxy -------------------------------------------------------------------------------------------
@cli.group()
def proxy() -> None:
    """Manage kamal-proxy on the hosts."""


@command(proxy, name="boot")
def proxy_boot() -> None:
    """Start (or create) the proxy container on every proxy host."""

    run_workflow(lambda d: d.proxy.boot_locked(), "proxy", "boot")


@command(proxy, name="reboot")
@click.option("--rolling", is_flag=True, help="One host at a time.")
@click.option("-y", "--confirmed", is_flag=True, help="Do not ask for confirmation.")
def proxy_reboot(rolling: bool, confirmed: bool) -> None:
    """Recreate the proxy container (brief outage on each host; routes are restored from its state)."""
    if not confirmed:
        click.confirm("This will cause a brief outage on each host. Are you sure?", abort=True)
    run_workflow(lambda d: d.proxy.reboot(rolling), "proxy", "reboot")


@command(proxy, name="status")
def proxy_status() -> None:
    """The proxy container's state and its routes (`kamal-proxy list`) on every host."""

    async def go(d: Deployer) -> None:
        for host, (state, listing) in (await d.proxy.status()).items():
            _host_block(d.out, "Proxy Host", host, f"container: {state}\n{listing}")

    run_workflow(go, "proxy", "status")


@command(proxy, name="details")
def proxy_details() -> None:
    """docker ps for the proxy container."""

    async def go(d: Deployer) -> None:
        for host, text in (await d.proxy.details()).items():
            _host_block(d.out, "Proxy Host", host, text)

    run_workflow(go, "proxy", "details")


@command(proxy, name="logs")
@click.option("-n", "--lines", type=int, default=None)
@click.option("-s", "--since", default=None)
@click.option("-g", "--grep", default=None)
def proxy_logs(lines: int | None, since: str | None, grep: str | None) -> None:
    """Show the proxy's logs on every host."""

    async def go(d: Deployer) -> None:
        for host, text in (await d.proxy.logs(lines, since, grep)).items():
            _host_block(d.out, "Proxy Host", host, text)

    run_workflow(go, "proxy", "logs")


@command(proxy, name="remove")
@click.option("--force", is_flag=True, help="Remove even if other apps still use the proxy.")
def proxy_remove(force: bool) -> None:
    """Remove the proxy container and its directory."""

    run_workflow(lambda d: d.proxy.remove_locked(force), "proxy", "remove")


@command(proxy, name="boot_maintenance")
@click.option("--message", default=None)
def proxy_boot_maintenance(message: str | None) -> None:
    """Deprecated alias of `app maintenance` (the guide's name)."""
    errors.warn(
        "`proxy boot_maintenance` is deprecated; use `deployer app maintenance` (and `app live` to leave)"
    )
    run_workflow(lambda d: d.app.maintenance(None, message), "app", "maintenance")


# -- lock --------------------------------------------------------------------------------------------
@cli.group()
def lock() -> None:
    """Manage the deploy lock."""


@command(lock, name="status")
def lock_status() -> None:
    """Show the lock holder, if any."""

    async def go(d: Deployer) -> None:
        d.out.data(await d.lock.status())

    run_workflow(go, "lock", "status")


@command(lock, name="acquire")
@click.option("-m", "--message", required=True)
def lock_acquire(message: str) -> None:
    """Take the deploy lock manually."""

    async def go(d: Deployer) -> None:
        primary = await d.lock.acquire(message, d.config.version)
        d.out.info(f"Acquired the deploy lock on {primary}")

    run_workflow(go, "lock", "acquire")


@command(lock, name="release")
def lock_release() -> None:
    """Release the deploy lock."""

    async def go(d: Deployer) -> None:
        primary = await d.lock.release()
        d.out.info(f"Released the deploy lock on {primary}")

    run_workflow(go, "lock", "release")


# -- accessory ---------------------------------------------------------------------------------------
@cli.group()
def accessory() -> None:
    """Manage accessories (databases, caches…): boot, stop, remove, logs, exec."""


@command(accessory, name="boot")
@click.argument("name")
def accessory_boot(name: str) -> None:
    """Boot accessory NAME (or all)."""
    run_workflow(lambda d: d.accessory.boot(name), "accessory", "boot")


def _accessory_simple(action: str) -> Callable[[str], None]:
    def handler(name: str) -> None:
        async def go(d: Deployer) -> None:
            for where, text in (await d.accessory.simple(name, action)).items():
                _host_block(d.out, "Accessory", where, text)

        run_workflow(go, "accessory", action)

    return handler


for _action in ("stop", "start", "details", "logs"):
    command(accessory, name=_action, help=f"{_action.capitalize()} accessory NAME (or all).")(
        click.argument("name")(_accessory_simple(_action))
    )


@command(accessory, name="remove")
@click.option("-y", "--confirmed", is_flag=True)
@click.argument("name")
def accessory_remove(name: str, confirmed: bool) -> None:
    """Remove accessory NAME (or all): container, image and data directories."""
    if not confirmed:
        click.confirm(
            f"This will remove accessory {name} and its data directories. Are you sure?", abort=True
        )
    run_workflow(lambda d: d.accessory.remove(name), "accessory", "remove")


@command(accessory, name="exec", context_settings={"ignore_unknown_options": True})
@click.option("--reuse", is_flag=True)
@click.argument("name")
@click.argument("cmd", nargs=-1, required=True)
def accessory_exec(name: str, reuse: bool, cmd: tuple[str, ...]) -> None:
    """Run CMD in accessory NAME (new container, or the running one with --reuse)."""
    words = shlex.split(" ".join(cmd)) if len(cmd) == 1 else list(cmd)

    async def go(d: Deployer) -> None:
        for host, text in (await d.accessory.exec(name, words, reuse)).items():
            _host_block(d.out, "Accessory", host, text)

    run_workflow(go, "accessory", "exec")


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args or "--verbose" in args
    try:
        cli.main(args=args, prog_name="deployer", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except DeployerError as e:
        from deployer.secrets import REDACTOR

        if verbose:
            traceback.print_exc()
        message = REDACTOR(str(e))
        text = f"  ERROR ({type(e).__name__}): {message}"
        click.echo(f"\x1b[31m{text}\x1b[0m" if sys.stderr.isatty() else text, err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
