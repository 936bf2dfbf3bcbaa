# cynode: every install step lives here, so a fresh clone needs only `make run` or `make test`.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# llama.cpp is built for a generic x86-64/arm64 CPU so the wheel pip caches works on any machine of the kind.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF
SYSTEM_PACKAGES := podman runc uidmap slirp4netns fuse-overlayfs catatonit debootstrap
SANDBOX_IMAGE ?= localhost/cynode-sandbox:0.1
# Podman needs runc here (crun fails on hybrid cgroups) and explicit ulimits: use our own containers.conf.
export CONTAINERS_CONF ?= $(CURDIR)/cynode/worker/containers.conf

.PHONY: install sysdeps run test test-unit test-features coverage-report lint bench sandbox-image clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory sysdeps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# System packages the sandbox runtime needs, installed only when run as root on Debian and missing.
sysdeps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then \
			echo "installing system packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		fi; \
	else \
		for p in podman runc; do command -v $$p >/dev/null 2>&1 || echo "note: $$p not found; install: $(SYSTEM_PACKAGES)"; done; \
	fi

# The sandbox image, built locally with no registry: debootstrap -> podman import -> podman build.
sandbox-image: install
	@$(BIN)/python -m cynode.worker.image ensure --image $(SANDBOX_IMAGE)

run: install sandbox-image
	$(BIN)/cynode serve --role all

test: install sandbox-image
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest -q
	$(BIN)/coverage run -m behave --format progress --no-capture-stderr features
	$(BIN)/coverage combine -q
	$(BIN)/coverage report --fail-under=90

test-unit: install
	$(BIN)/python -m pytest -q

test-features: install sandbox-image
	$(BIN)/python -m behave --format progress features

lint: install
	$(BIN)/ruff check cynode tests features bench
	$(BIN)/mypy

bench: install sandbox-image
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .coverage .coverage.* .pytest_cache .mypy_cache .ruff_cache build *.egg-info
