"""`rollout deploy SERVICE --target …`: health-check rollout targets and install them beside the active ones."""

from __future__ import annotations

from proxy import defaults
from proxy.cli.common import Usage, seconds, send
from proxy.cli.flags import Flag
from proxy.commands import RolloutDeployCommand
from proxy.options import DeploymentOptions

USAGE = Usage(
    name="deploy",
    use="deploy <service>",
    short="Deploy the rollout target",
    flags=[
        Flag("target", "strings", [], "Target host(s) to deploy", required=True),
        Flag("read-target", "strings", [], "Read-only target host(s) to deploy"),
        Flag(
            "deploy-timeout",
            "duration",
            defaults.DEPLOY_TIMEOUT,
            "Maximum time to wait for the new target to become healthy",
        ),
        Flag(
            "drain-timeout",
            "duration",
            defaults.DRAIN_TIMEOUT,
            "Maximum time to allow existing connections to drain before removing old target",
        ),
    ],
    nargs=1,
    parent="rollout",
)


def main(argv: list[str]) -> int:
    parsed = USAGE.parse(argv)
    if parsed is None:
        return 0
    targets, readers = parsed.values["target"], parsed.values["read-target"]
    assert isinstance(targets, list) and isinstance(readers, list)
    send(
        RolloutDeployCommand(
            service=parsed.args[0],
            targets=tuple(str(t) for t in targets),
            read_targets=tuple(str(t) for t in readers),
            deployment_options=DeploymentOptions(
                deploy_timeout=seconds(parsed, "deploy-timeout"),
                drain_timeout=seconds(parsed, "drain-timeout"),
            ),
        )
    )
    return 0
