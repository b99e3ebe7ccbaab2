# kamal-proxy (Python reimplementation) image, a drop-in for basecamp/kamal-proxy:
# non-root user `kamal-proxy`, state in /home/kamal-proxy/.config/kamal-proxy (Kamal mounts the
# `kamal-proxy-config` volume there), ports 80/443, `kamal-proxy run` by default.
# Kamal requires the image tag to be a version >= v0.9.2, e.g. `docker build -t kamal-proxy-py:v0.9.2 .`
#
# Binding 80/443 as a non-root user: Docker (>= 20.10) sets net.ipv4.ip_unprivileged_port_start=0 in
# a container's own network namespace, as for the Go image. Runtimes that do not (podman, or any
# engine with `--network host`) need `--sysctl net.ipv4.ip_unprivileged_port_start=0` on
# `docker run` (with Kamal: `proxy: run: options: sysctl: net.ipv4.ip_unprivileged_port_start=0`).
# The interpreter deliberately has no file capability: with one, a container started with
# `--cap-drop ALL` could not run Python at all (exec fails with EPERM), `docker exec` included.
#
# BASE: any Debian-like image with `python3` (>= 3.11, with venv/ensurepip) and `useradd` on PATH.
# PIP_OPTIONS: extra `pip install` options, e.g. for an offline build from a wheel directory mounted
# at build time: `--no-index --find-links /wheels` (how the tests build it).
ARG BASE=python:3.11-slim

# --- build: the virtual environment, with the per-request modules compiled by mypyc (setup.py) when a
# C compiler is available. The compiler is installed here only (apt-get, when the base has it and the
# build has a network); without one the same install is pure Python, which works the same, slower.
FROM ${BASE} AS build

ARG PIP_OPTIONS=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN packages="" \
    && { command -v gcc >/dev/null || packages="gcc libc6-dev"; } \
    && { python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
         || packages="$packages python3-dev"; } \
    && if [ -n "$packages" ]; then \
         { command -v apt-get >/dev/null \
           && apt-get update -qq \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages >/dev/null; } \
         || echo "kamal-proxy: no C compiler could be installed ($packages): the image runs pure Python"; \
       fi

COPY pyproject.toml setup.py README.md /src/
COPY proxy/ /src/proxy/

# The proxy and its dependencies only (not the deployer's: that is the `deployer` extra), in a virtual
# environment so the paths are the same whatever base provides python3; pip and setuptools (seeded into
# every venv by Python 3.11, not needed to run) are removed after, and so is the `deployer` command
# (its package is not copied in, so it could only fail).
RUN python3 -m venv /opt/kamal-proxy \
    && /opt/kamal-proxy/bin/pip install --no-cache-dir $PIP_OPTIONS /src \
    && /opt/kamal-proxy/bin/pip uninstall --yes --quiet setuptools pip \
    && rm /opt/kamal-proxy/bin/deployer \
    && /opt/kamal-proxy/bin/python -c 'import proxy.http.exchange as e, proxy.native as n; print("kamal-proxy: compiled per-request modules:", n.is_compiled(e))'

# --- the image: the same base, the virtual environment, no compiler
FROM ${BASE}

LABEL org.opencontainers.image.title=kamal-proxy

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/kamal-proxy/bin:$PATH

COPY --from=build /opt/kamal-proxy /opt/kamal-proxy

RUN ln -s /opt/kamal-proxy/bin/kamal-proxy /usr/local/bin/kamal-proxy \
    && useradd --create-home --home-dir /home/kamal-proxy --shell /usr/sbin/nologin kamal-proxy \
    && mkdir -p /home/kamal-proxy/.config/kamal-proxy \
    && chown -R kamal-proxy:kamal-proxy /home/kamal-proxy

WORKDIR /home/kamal-proxy
USER kamal-proxy:kamal-proxy

EXPOSE 80 443

CMD ["kamal-proxy", "run"]
