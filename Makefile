# bertrepro: `make book` runs the whole book, `make test` runs the tests.
# Both create .venv and install the pinned dependencies on first use.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?=
ONLINE ?=

export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: book test install sync bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) requirements.txt pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

book: $(STAMP)
	$(PY) -m bertrepro.book $(if $(PROFILE),--profile $(PROFILE)) $(if $(ONLINE),--online)

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m bertrepro.bench

# Re-pair every notebooks/NN_slug.py with its .ipynb (outputs stripped).
sync: $(STAMP)
	$(VENV)/bin/jupytext --sync notebooks/[0-9]*.py

clean:
	rm -rf book/_build
