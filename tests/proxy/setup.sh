#!/bin/sh
# Debian packages the proxy's tests use: pebble (Let's Encrypt's ACME test CA, with
# pebble-challtestsrv) for the ACME end-to-end tests, and nghttp2-client (h2load, nghttp) for the
# HTTP/2 tests. Idempotent; needs root.
set -e
if ! command -v pebble >/dev/null 2>&1 || ! command -v pebble-challtestsrv >/dev/null 2>&1; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pebble
fi
if ! command -v h2load >/dev/null 2>&1 || ! command -v nghttp >/dev/null 2>&1; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client
fi
# A C compiler and the interpreter's headers, so that `make install` compiles the per-request modules
# (setup.py) and the tests run them compiled; without these the install is pure Python.
PY=${PYTHON:-python3}
if ! command -v gcc >/dev/null 2>&1; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev
fi
if ! "$PY" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-dev
fi
