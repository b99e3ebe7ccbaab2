#!/bin/sh
# Debian packages the deployer's unit tests use (idempotent; run as root). The e2e loop's own
# packages are in tests/deployer/e2e/setup.sh.
#   ruby            Ruby's erb: tests/deployer/test_erb.py and the ERB cases of test_cases.py render
#                   with it as well as with the built-in subset (they skip the Ruby half without it)
#   openssh-server  sshd for tests/deployer/test_runner_sshd.py and test_cli.py::*_over_ssh
set -eu

if [ "$(id -u)" != 0 ]; then
    echo "tests/deployer/setup.sh: must run as root" >&2
    exit 1
fi

PACKAGES="ruby openssh-server openssh-client"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
fi
mkdir -p /run/sshd
