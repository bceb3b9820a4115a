# Two commands set everything up on a fresh machine (Python 3.11; PYTHON=... for another):
#   make run    venv + install + index corpus/ + ask the sample question
#   make test   venv + test dependencies + the whole test suite
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
QUESTION ?= when will Russia leave the ISS?

.PHONY: run test install install-test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned: left to the resolver, `torch` pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install torch==2.13.0
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PIP) install -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(VENV)/bin/qabot ask "$(QUESTION)"

# pytest exits 5 when it collects no tests; that is not a failure of the suite.
test: install-test
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

bench: install-test
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) index/chroma index/manifest*.sqlite3* index/bm25
