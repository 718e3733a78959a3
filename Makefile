# Two commands from a fresh clone: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# Tests wait on real processes most of the time, so two workers fit two cores.
PYTEST_WORKERS ?= 2

.PHONY: install browser lint typecheck test test-quick test-image image-base demo crd bench bench-venv clean ray-examples

$(VENV)/.installed: requirements-dev.txt worker_sdk/pyproject.toml operator/pyproject.toml localcluster/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

# The dashboard's browser tests drive Debian's Chromium (Playwright's own browser download is not
# reachable from these machines). CI runs as root and installs it; elsewhere, say how.
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser)
browser:
	@if [ -z "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null)) \
	      && echo "installed chromium"; \
	  else echo "the dashboard tests need Chromium: sudo apt-get install -y chromium" >&2; exit 1; fi; \
	fi

# Ray Train's own PyTorch examples, which tests/e2e/test_ray_examples.py runs with the README's
# renames: the ray wheel is downloaded (not installed, never committed) into an ignored cache.
RAY_VERSION := 2.60.0
RAY_WHEEL_DIR ?= .cache/ray-wheel
$(RAY_WHEEL_DIR)/.fetched:
	mkdir -p $(RAY_WHEEL_DIR)
	$(PY) -m pip download -q --no-deps ray==$(RAY_VERSION) -d $(RAY_WHEEL_DIR)
	touch $@

ray-examples: install $(RAY_WHEEL_DIR)/.fetched

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

test: lint typecheck browser ray-examples
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-quick: install browser ray-examples
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) -m "not slow and not image" $(PYTEST_ARGS)

# The operator image built from the Dockerfile and its `trainjob operator` run against the local
# cluster (tests/deploy/test_image.py). No container engine or registry here: buildah with chroot
# isolation on a Debian bookworm base that mmdebstrap makes (python:3.11-slim cannot be pulled).
# As root (CI is): it apt-installs buildah, podman and mmdebstrap when they are missing.
IMAGE_BASE ?= localhost/trainjob-pybase:3.11
IMAGE_STORAGE := --storage-driver vfs
image-base:
	@command -v buildah >/dev/null && command -v podman >/dev/null && command -v mmdebstrap >/dev/null \
		|| if [ "$$(id -u)" = 0 ]; then \
		  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q buildah podman mmdebstrap; \
		else echo "the image test needs root (buildah, podman, mmdebstrap from apt)" >&2; exit 1; fi
	@if podman $(IMAGE_STORAGE) image exists $(IMAGE_BASE); then echo "$(IMAGE_BASE) exists"; else \
		work=$$(mktemp -d) && trap 'rm -rf "$$work"' EXIT && \
		mmdebstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
			bookworm "$$work/rootfs.tar" && \
		podman $(IMAGE_STORAGE) import "$$work/rootfs.tar" $(IMAGE_BASE)-raw && \
		printf '%s\n' 'FROM $(IMAGE_BASE)-raw' \
			'RUN ln -sf /usr/bin/python3 /usr/local/bin/python && ln -sf /usr/bin/pip3 /usr/local/bin/pip && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED' \
			> "$$work/Containerfile" && \
		buildah $(IMAGE_STORAGE) bud --isolation chroot -f "$$work/Containerfile" -t $(IMAGE_BASE) "$$work" && \
		podman $(IMAGE_STORAGE) rmi $(IMAGE_BASE)-raw; fi

test-image: install image-base
	TRAINJOB_IMAGE_BASE=$(IMAGE_BASE) $(VENV)/bin/pytest -m image $(PYTEST_ARGS)

crd: install
	$(VENV)/bin/trainjob crd --output deploy/crds/trainjob.dev_trainjobs.yaml

demo: install
	$(VENV)/bin/trainjob demo $(if $(CHAOS),--chaos) $(if $(KEEP),--keep)

# The peer (Ray Train) in a venv of its own: its pins must not touch the project's.
BENCH_VENV ?= .venv-bench
$(BENCH_VENV)/.installed:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q "ray[train]==2.60.0" torch==2.13.0
	touch $@

bench-venv: $(BENCH_VENV)/.installed

# Every scenario (JSON lines on stdout, table in bench/RESULTS.md); BENCH_ARGS=--no-ray skips the peer.
bench: install bench-venv
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-bench .pytest_cache .mypy_cache .ruff_cache .cache

# deploy/ (plain manifests + kustomization) from the chart's default render; the chart's copy of the CRD.
.PHONY: manifests
manifests: crd
	$(PY) deploy/render.py
