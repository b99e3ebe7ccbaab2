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
