"""`rollout deploy SERVICE --target …`: health-check rollout targets and install them beside the active ones."""

from __future__ import annotations

from proxy.cli.common import DEPLOY_DRAIN_TIMEOUT, DEPLOY_TIMEOUT, READ_TARGET, TARGET, Usage, seconds, send
from proxy.commands import RolloutDeployCommand
from proxy.options import DeploymentOptions

USAGE = Usage(
    name="deploy",
    use="deploy <service>",
    short="Deploy the rollout target",
    flags=[
        TARGET,
        READ_TARGET,
        DEPLOY_TIMEOUT,
        DEPLOY_DRAIN_TIMEOUT,
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
