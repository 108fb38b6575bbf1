# Set-up is two commands on a fresh machine: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
COMPAT_VENV := .venv-tf517
COMPAT_PY := $(COMPAT_VENV)/bin/python
OUT ?= build/smoke

.PHONY: install compat test mini-test demo demo-train smoke-train bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0

install: $(PY) requirements.txt
	$(PY) -m pip install -q -r requirements.txt
	@touch $(VENV)/.installed

$(VENV)/.installed: requirements.txt | $(PY)
	$(MAKE) install

$(COMPAT_VENV)/.installed: requirements-compat.txt
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_PY) -m pip install -q torch==2.13.0
	$(COMPAT_PY) -m pip install -q -r requirements-compat.txt
	@touch $@

compat: $(COMPAT_VENV)/.installed

# Default suite (CPU, no downloads): the remote-code files are also loaded under transformers 5.17.
test: $(VENV)/.installed $(COMPAT_VENV)/.installed
	GRAFT_COMPAT_PYTHONS=$(abspath $(COMPAT_PY)) $(PY) -m pytest -q

clean:
	rm -rf build $(VENV) $(COMPAT_VENV)
