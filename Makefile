# Two commands work on a fresh machine:
#   make run    install, start the proxy on 127.0.0.1:8080 with a demo app deployed, print a curl line
#   make test   install everything the tests need and run them all
# Everything Python goes into a virtual environment, $(VENV) (created from $(PYTHON), which must be
# Python 3.11 or newer), not into the system Python.
PYTHON ?= python3
VENV ?= .venv
VPY = $(VENV)/bin/python
PORT ?= 8080
HTTPS_PORT ?= 8443
DEMO_PORT ?= 3000
# make image: this repository's proxy as a container image (a drop-in for basecamp/kamal-proxy)
DOCKER ?= docker
BASE ?= python:3.11-slim
IMAGE ?= kamal-proxy-py:v0.9.2

.PHONY: install build-ext install-system run test test-e2e lint bench bench-setup image soak clean fuzz-parsers

install: $(VENV)/.installed $(VENV)/.native

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 11) else "Python 3.11 or newer is needed; $(PYTHON) is %d.%d (run: make PYTHON=python3.11 ...)" % v[:2])'
	$(PYTHON) -m venv $(VENV)

# The editable install also compiles the per-request modules with mypyc (setup.py; pure Python when
# that is not possible). Editing one of them later makes the package run the pure-Python sources,
# with a warning (proxy/native.py), until `make build-ext` (which `make install` runs) rebuilds them.
$(VENV)/.installed: pyproject.toml setup.py | $(VENV)/bin/python
	$(VPY) -m pip install --quiet -e '.[dev,deployer]'
	@touch $@

NATIVE_SOURCES = proxy/native.py $(shell $(PYTHON) -c 'import runpy; print(" ".join(m.replace(".", "/") + ".py" for m in runpy.run_path("proxy/native.py")["COMPILED"]))' 2>/dev/null)
build-ext: $(VENV)/.installed
	$(VPY) setup.py --quiet build_ext --inplace

$(VENV)/.native: $(VENV)/.installed $(NATIVE_SOURCES)
	@$(VPY) -c 'import runpy, sys; n = runpy.run_path("proxy/native.py"); sys.exit(1 if n["stale_sources"]() or not n["compiled_present"]() else 0)' \
		|| $(VPY) setup.py --quiet build_ext --inplace
	@touch $@

# Debian packages the tests use: ruby (ERB), openssh-server, podman (+ netavark, aardvark-dns, runc),
# docker-registry, busybox-static, debootstrap (the proxy image's base), for the deployer's SSH and
# end-to-end tests; pebble for the proxy's ACME tests. Idempotent; needs root.
install-system:
	sh tests/deployer/setup.sh
	sh tests/deployer/e2e/setup.sh
	PYTHON=$(PYTHON) sh tests/proxy/setup.sh

# A fresh state every run (scripts/demo.sh); PORT, HTTPS_PORT and DEMO_PORT pick the ports.
run: install
	@PY=$(VPY) PORT=$(PORT) HTTPS_PORT=$(HTTPS_PORT) DEMO_PORT=$(DEMO_PORT) sh scripts/demo.sh

# Everything, then the deployer's end-to-end loop on podman hosts. That loop is given a second
# try: the podman engines' DNS (aardvark-dns) stalls while it reloads, which is not our code.
# The second run: the data plane's in-process tests and the request-handling ones through the real
# daemon again on the pure-Python sources, as where no compiler was at install time.
PURE_TESTS = tests/proxy/test_exchange.py tests/proxy/test_exchange_state.py tests/proxy/test_headers.py \
	tests/proxy/test_writer.py tests/proxy/test_parsers.py tests/proxy/test_proxying.py tests/proxy/test_native.py \
	tests/proxy/test_trailers.py tests/proxy/test_h2_fuzz.py tests/proxy/test_access_log.py tests/proxy/test_log.py
# install-system first: it brings the C compiler the install compiles the per-request modules with.
test: install-system install
	$(VPY) -m pytest -q
	KAMAL_PROXY_PURE=1 $(VPY) -m pytest -q $(PURE_TESTS)
	$(VPY) -m pytest -q -m e2e tests/deployer/e2e || $(VPY) -m pytest -q -m e2e tests/deployer/e2e

# Only the deployer's end-to-end loop: sshd + podman engines in network namespaces, a local registry.
test-e2e: install install-system
	$(VPY) -m pytest -q -m e2e tests/deployer/e2e

LINT_PATHS = proxy deployer tests benchmarks
lint: install
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy --strict $(LINT_PATHS)

# make bench (full, ~25-35 min) · make bench BENCH_ARGS=--quick (~5-8 min)
# bench-setup installs the peers and the load generator when missing: nginx haproxy caddy wrk
# (apt-get) and matplotlib (pip).
BENCH_ARGS ?=
bench-setup: install
	PYTHON=$(VPY) bash benchmarks/setup.sh

bench: install bench-setup
	$(VPY) -m benchmarks.run $(BENCH_ARGS)

# The proxy's image from ./Dockerfile (see its header for BASE and the ports); tag it >= v0.9.2 for Kamal.
image:
	$(DOCKER) build --build-arg BASE=$(BASE) -t $(IMAGE) .

# make soak: mixed traffic through the real daemon while it is redeployed, paused and its targets
# killed, for SOAK_SECONDS; reports requests, errors by cause, RSS and fds at start and end.
SOAK_SECONDS ?= 60
soak: install
	$(VPY) -m benchmarks.soak --seconds $(SOAK_SECONDS)

# make fuzz-parsers: the differential test of the two HTTP/1 parsers with a long random budget
# (CI runs a short, derandomized one); FUZZ_EXAMPLES per test.
FUZZ_EXAMPLES ?= 200000
fuzz-parsers: install
	PARSER_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(VPY) -m pytest -q -p no:randomly tests/proxy/test_parsers_differential.py

clean:
	rm -rf build *.egg-info .pytest_cache .mypy_cache .ruff_cache
	rm -f *__mypyc.*.so proxy/_native_sources.json $(VENV)/.native
	find proxy -name '*.so' -delete
