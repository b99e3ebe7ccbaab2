# kamal-proxy (Python reimplementation) image, a drop-in for basecamp/kamal-proxy:
# non-root user `kamal-proxy`, state in /home/kamal-proxy/.config/kamal-proxy (Kamal mounts the
# `kamal-proxy-config` volume there), ports 80/443, `kamal-proxy run` by default.
# Kamal requires the image tag to be a version >= v0.9.2, e.g. `docker build -t kamal-proxy-py:v0.9.2 .`
FROM python:3.11-slim

LABEL org.opencontainers.image.title=kamal-proxy

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy/ proxy/
COPY deployer/ deployer/

# Install the project, then let the interpreter bind ports < 1024 without root.
#
# Docker (>= 20.10) already sets net.ipv4.ip_unprivileged_port_start=0 inside a container's own
# network namespace, which is how the Go image binds 80/443 as non-root. That sysctl is not set
# under `--network host`, with some other runtimes, or on older engines, so the interpreter also
# gets the file capability. (Alternative without the capability: run the container with
# `--sysctl net.ipv4.ip_unprivileged_port_start=0`.) setcap needs the real binary, not the
# python3 symlink; libcap2-bin is only needed to set it and is removed again.
RUN pip install --no-cache-dir . \
    && cd / && rm -rf /src \
    && apt-get update \
    && apt-get install -y --no-install-recommends libcap2-bin \
    && setcap 'cap_net_bind_service=+ep' "$(readlink -f /usr/local/bin/python3)" \
    && apt-get purge -y --auto-remove libcap2-bin \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --home-dir /home/kamal-proxy --shell /usr/sbin/nologin kamal-proxy \
    && mkdir -p /home/kamal-proxy/.config/kamal-proxy \
    && chown -R kamal-proxy:kamal-proxy /home/kamal-proxy

WORKDIR /home/kamal-proxy
USER kamal-proxy:kamal-proxy

EXPOSE 80 443

CMD ["kamal-proxy", "run"]
