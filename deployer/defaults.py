"""Every default the deployer uses, named, in one place (Kamal 2.12's values unless noted)."""

from __future__ import annotations

# Kamal compatibility: `minimum_version` in deploy.yml is checked against this.
KAMAL_COMPATIBILITY_VERSION = "2.12.0"

# Files
CONFIG_FILE = "config/deploy.yml"
SECRETS_PATH = ".kamal/secrets"
HOOKS_PATH = ".kamal/hooks"
RUN_DIRECTORY = ".kamal"

# Roles and containers
PRIMARY_ROLE = "web"
NETWORK = "kamal"
RESTART_POLICY = "unless-stopped"
LOG_MAX_SIZE = "10m"
DEPLOY_TIMEOUT = 30  # seconds
DRAIN_TIMEOUT = 30  # seconds
READINESS_DELAY = 7  # seconds, for roles without the proxy
RETAIN_CONTAINERS = 5

# The proxy
PROXY_CONTAINER = "kamal-proxy"
PROXY_DEFAULT_REPOSITORY = "basecamp/kamal-proxy"
PROXY_MINIMUM_VERSION = "v0.9.2"
PROXY_CONTAINER_APPS_CONFIG = "/home/kamal-proxy/.apps-config"
APP_PORT = 80
HEALTHCHECK_PATH = "/up"
LOG_REQUEST_HEADERS = ("Cache-Control", "Last-Modified", "User-Agent")

# SSH
SSH_USER = "root"
SSH_PORT = 22
MAX_CONCURRENT_STARTS = 30

# Builder
BUILDER_ARCH = ("amd64", "arm64")
BUILDER_DRIVER = "docker-container"
DOCKERFILE = "Dockerfile"

# Hooks: Kamal's names, in the order a deploy runs them.
HOOK_NAMES = (
    "pre-connect",
    "pre-build",
    "pre-deploy",
    "post-deploy",
    "pre-app-boot",
    "post-app-boot",
    "pre-proxy-reboot",
    "post-proxy-reboot",
    "docker-setup",
)
# These hooks also get every secret in their environment, as in Kamal.
SECRET_HOOKS = frozenset({"pre-connect", "pre-deploy", "post-deploy"})
# Kamal 1's names; Kamal 2 refuses to load while these files exist.
TRAEFIK_HOOKS = ("pre-traefik-reboot", "post-traefik-reboot")
HOOKS_OUTPUT_LEVELS = ("quiet", "verbose")
