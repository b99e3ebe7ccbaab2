#!/bin/sh
# One-time, idempotent setup for tests/deployer/e2e (Debian 12 / bookworm, run as root).
# Installs the engine (podman + runc + netavark + aardvark-dns), the registry, busybox-static,
# debootstrap (the proxy image's Debian base, base-image.sh), sshd and the tools the test uses. Starts no services: the test starts sshd, one
# `podman system service` per fake host, and the registry itself, and stops them at the end.
set -eu

if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: must run as root" >&2
    exit 1
fi

PACKAGES="podman runc conmon netavark aardvark-dns containernetworking-plugins docker-registry \
busybox-static openssh-server openssh-client iproute2 util-linux iptables file debootstrap pebble"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    apt-get update -q
    # policy-rc.d / no systemd: the docker-registry service is not started (the test runs its own)
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
fi

# The Docker *client*: the CI image ships /usr/local/bin/docker (28.x). Fall back to Debian's CLI
# only when none is installed (docker.io also brings dockerd/containerd, which the test never starts).
if ! command -v docker >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io
fi

# Rootful netavark keeps its IPAM db and aardvark-dns state here; the test bind-mounts a private
# directory over it per engine, so it only has to exist.
mkdir -p /run/containers/networks /run/netns /run/sshd

# Debian enables the registry's systemd unit on install; without systemd nothing runs. If a
# registry is running anyway it does not matter: the test uses its own on a free port.
echo "e2e prerequisites installed:"
podman --version
runc --version | head -1
/usr/lib/podman/netavark --version
/usr/lib/podman/aardvark-dns --version
docker-registry --version
docker --version
