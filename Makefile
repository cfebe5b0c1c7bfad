# evac: every set-up step lives here so that a fresh machine (Debian 12, root) needs only `make`.
#   make demo   - the main job on bundled sample data (no libvirt host needed)
#   make test   - ruff, mypy and the whole test suite, the real libvirt lab included
#   make lab-up / make lab-down - a local multi-host libvirt lab to try evac on
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EVAC := $(VENV)/bin/evac
LAB ?= /tmp/evac-lab
LAB_HOSTS ?= 3
# Debian packages: libvirt-dev + pkg-config + gcc build libvirt-python; chromium loads the HTML report in
# the browser tests (headless); the rest runs the lab.
SYSTEM_PACKAGES := qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients \
	libvirt-dev pkg-config iproute2 gcc binutils make qemu-block-extra chromium
# The stamp names the package list: a machine set up before a package was added installs it on the next make.
SYSTEM_STAMP := $(VENV)/.system-packages-$(shell echo '$(SYSTEM_PACKAGES)' | md5sum | cut -c1-8)

.PHONY: all demo test lint typecheck unit lab-test lab-up lab-down bench clean system-packages venv guest

all: test

$(SYSTEM_STAMP):
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@mkdir -p $(VENV) && touch $@

system-packages: $(SYSTEM_STAMP)

$(VENV)/.installed: pyproject.toml $(SYSTEM_STAMP)
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

guest: venv
	$(PY) tests/lab/labctl.py guest

demo: venv
	$(EVAC) demo data/small.json

lint: venv
	$(VENV)/bin/ruff check planner executor tests bench

typecheck: venv
	$(VENV)/bin/mypy

unit: venv
	$(PY) -m pytest -q -m "not lab"

lab-test: venv
	$(PY) -m pytest -q -m lab

test: lint typecheck
	$(PY) -m pytest -q

lab-up: venv
	LAB=$(LAB) $(PY) tests/lab/labctl.py up --hosts $(LAB_HOSTS)

lab-down: venv
	LAB=$(LAB) $(PY) tests/lab/labctl.py down

bench: venv
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
