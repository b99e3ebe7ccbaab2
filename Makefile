# Two commands work on a fresh machine:
#   make run    install, start the proxy on :8080 with a demo app deployed, print a curl line
#   make test   install everything the tests need and run them all
PYTHON ?= python3
PORT ?= 8080
DEMO_PORT ?= 3000
RUN_DIR ?= /tmp/kamal-proxy-demo

.PHONY: install install-system run test test-e2e lint bench bench-setup soak clean

install:
	$(PYTHON) -m pip install --quiet -e '.[dev,deployer]'

# Debian packages the tests use: openssh-server, podman (+ netavark, aardvark-dns, runc), docker-registry,
# busybox-static, for the deployer's SSH and end-to-end tests; pebble for the proxy's ACME tests.
# Idempotent; needs root.
install-system:
	sh tests/deployer/e2e/setup.sh
	sh tests/proxy/setup.sh

run: install
	@mkdir -p $(RUN_DIR)/app $(RUN_DIR)/home
	@echo "OK" > $(RUN_DIR)/app/up
	@echo "<h1>Hello from the demo app behind kamal-proxy</h1>" > $(RUN_DIR)/app/index.html
	@$(PYTHON) -m http.server $(DEMO_PORT) --bind 127.0.0.1 --directory $(RUN_DIR)/app >$(RUN_DIR)/app.log 2>&1 & echo $$! > $(RUN_DIR)/app.pid
	@HOME=$(RUN_DIR)/home KAMAL_PROXY_SOCKET=$(RUN_DIR)/kamal-proxy.sock \
		proxyctl run --http-port $(PORT) --https-port 8443 & echo $$! > $(RUN_DIR)/proxy.pid; \
	trap 'kill $$(cat $(RUN_DIR)/proxy.pid) $$(cat $(RUN_DIR)/app.pid) 2>/dev/null' EXIT INT TERM; \
	for i in $$(seq 50); do [ -S $(RUN_DIR)/kamal-proxy.sock ] && break; sleep 0.1; done; \
	HOME=$(RUN_DIR)/home KAMAL_PROXY_SOCKET=$(RUN_DIR)/kamal-proxy.sock \
		proxyctl deploy demo --target 127.0.0.1:$(DEMO_PORT) --host demo.localhost --health-check-path /up && \
	echo && echo "Demo deployed. Try:" && \
	echo "  curl -H 'Host: demo.localhost' http://127.0.0.1:$(PORT)/" && \
	echo "  HOME=$(RUN_DIR)/home KAMAL_PROXY_SOCKET=$(RUN_DIR)/kamal-proxy.sock proxyctl list" && \
	echo "Ctrl-C stops it." && echo && \
	wait $$(cat $(RUN_DIR)/proxy.pid)

# Everything, then the deployer's end-to-end loop on podman hosts. That loop is given a second
# try: the podman engines' DNS (aardvark-dns) stalls while it reloads, which is not our code.
test: install install-system
	$(PYTHON) -m pytest -q
	$(PYTHON) -m pytest -q -m e2e tests/deployer/e2e || $(PYTHON) -m pytest -q -m e2e tests/deployer/e2e

# Only the deployer's end-to-end loop: sshd + podman engines in network namespaces, a local registry.
test-e2e: install install-system
	$(PYTHON) -m pytest -q -m e2e tests/deployer/e2e

LINT_PATHS = proxy deployer tests benchmarks
lint:
	ruff check $(LINT_PATHS)
	ruff format --check $(LINT_PATHS)
	mypy --strict $(LINT_PATHS)

# make bench (full, ~25-35 min) · make bench BENCH_ARGS=--quick (~5-8 min)
# bench-setup installs the peers and the load generator when missing: nginx haproxy caddy wrk
# (apt-get) and matplotlib (pip).
BENCH_ARGS ?=
bench-setup:
	bash benchmarks/setup.sh

bench: install bench-setup
	$(PYTHON) -m benchmarks.run $(BENCH_ARGS)

# make soak: mixed traffic through the real daemon while it is redeployed, paused and its targets
# killed, for SOAK_SECONDS; reports requests, errors by cause, RSS and fds at start and end.
SOAK_SECONDS ?= 60
soak: install
	$(PYTHON) -m benchmarks.soak --seconds $(SOAK_SECONDS)

clean:
	rm -rf build *.egg-info .pytest_cache .mypy_cache .ruff_cache
