#!/usr/bin/env bash
# Installs what the benchmark suite needs, only when missing (Debian/Ubuntu, run as root):
# nginx, haproxy, caddy, wrk, h2load (nghttp2-client), curl, taskset (util-linux), openssl,
# plus matplotlib (charts) and this project in editable mode.
# The distro's nginx/haproxy/caddy services are not started or enabled by the suite: it runs its
# own instances with generated configs on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for bin in nginx:nginx haproxy:haproxy caddy:caddy wrk:wrk h2load:nghttp2-client curl:curl \
           taskset:util-linux openssl:openssl; do
  cmd=${bin%%:*}; pkg=${bin##*:}
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then need+=("$pkg"); fi
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # Debian's postinst scripts try to start the services; keep them from grabbing port 80 etc.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  $SUDO apt-get update -qq || true
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
  $SUDO rm -f /usr/sbin/policy-rc.d
fi

PY=${PYTHON:-python3}
$PY -c "import matplotlib" 2>/dev/null || $PY -m pip install -q "matplotlib>=3.8"
$PY -c "import proxy, uvloop, httptools, h11" 2>/dev/null || $PY -m pip install -q -e .
echo "setup: ok ($(nginx -v 2>&1); $(haproxy -v | head -1); caddy $(caddy version); $(wrk --version 2>&1 | head -1))"
