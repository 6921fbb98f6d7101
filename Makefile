# nettrace: `make demo` and `make test` work on a fresh Debian 12 machine (as root).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := iproute2 iptables nftables tcpdump tshark python3-bpfcc bpftool bpftrace iperf3 \
                busybox-static tmux iputils-ping docker.io containerd runc
STAMP := $(VENV)/.nettrace-setup

.PHONY: setup system venv demo test test-fast bench clean-labs lint

setup: system venv

# Debian packages: installed only when one is missing (idempotent, no network otherwise).
system:
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	  echo "nettrace setup: installing Debian packages: $(APT_PACKAGES)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    -o Dpkg::Options::=--force-confold $(APT_PACKAGES) >/dev/null; \
	fi

venv: $(STAMP)

# The venv gets the project (editable) and its dev tools; bcc comes from Debian's
# python3-bpfcc (pure Python over libbcc), linked into the venv's site-packages.
$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@SITE=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	  ln -sfn /usr/lib/python3/dist-packages/bcc "$$SITE/bcc"
	@$(PY) -c 'import bcc, sys; sys.exit(0 if bcc.__file__ else "bcc is not importable from the venv")'
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/nettrace demo

test: setup
	$(PY) -m pytest -ra $(PYTEST_ARGS)

# Every test that needs no root, in well under a minute: pytest runs as uid 65534 (nobody) in
# a user namespace, so it has no capability over this machine's namespaces. Tests that need
# root skip themselves; one that needs root without saying so fails here. No kernel object is
# made, so the tests run on every core at once (pytest-xdist); `make test` stays serial.
test-fast: setup
	unshare --user --map-user=65534 --map-group=65534 \
	  $(PY) -m pytest -q -p no:cacheprovider -n auto $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) bench/run.py

clean-labs: setup
	$(VENV)/bin/nettrace lab down --all
